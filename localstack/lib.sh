# shellcheck shell=bash disable=SC2034  # the variables are used by the scripts that source this
# Sourced (not run) by localstack/start.sh, localstack/stop.sh and scripts/env.sh: logging,
# the LocalStack health check, the version pins and where a started LocalStack keeps its
# state, so that stop.sh finds exactly what start.sh left.
#
#   LOG_PREFIX="localstack/start.sh"; source localstack/lib.sh
#   log MESSAGE; die MESSAGE; healthy URL; localstack_paths; started_pid; compose ARGS...

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LOG_PREFIX="${LOG_PREFIX:-${0##*/}}"
VERSIONS_FILE="${REPO_ROOT}/localstack/versions.env"
# shellcheck source=localstack/versions.env
source "${VERSIONS_FILE}"

# log MESSAGE: one line on stderr (stdout carries what the scripts print for callers).
log() { echo "${LOG_PREFIX}: $*" >&2; }
die() {
    log "ERROR: $*"
    exit 1
}

# healthy URL: a LocalStack with SQS, SNS and S3 (the S3 task store's tests) answers at URL.
healthy() {
    local body
    body="$(curl -fsS --max-time 3 "$1/_localstack/health" 2>/dev/null)" || return 1
    grep -Eq '"sqs": *"(running|available)"' <<<"${body}" &&
        grep -Eq '"sns": *"(running|available)"' <<<"${body}" &&
        grep -Eq '"s3": *"(running|available)"' <<<"${body}"
}

# localstack_paths: sets PORT, STATE_DIR and the files under it from LOCALSTACK_PORT and
# LOCALSTACK_STATE_DIR, as start.sh and stop.sh both read them.
localstack_paths() {
    PORT="${LOCALSTACK_PORT:-4566}"
    STATE_DIR="${LOCALSTACK_STATE_DIR:-${REPO_ROOT}/.localstack}"
    COMPOSE_FILE="${REPO_ROOT}/localstack/docker-compose.yml"
    COMPOSE_PROJECT="asyncmcp-localstack-${PORT}"
    PID_FILE="${STATE_DIR}/localstack.pid"
    MODE_FILE="${STATE_DIR}/mode"
}

# started_pid: prints the pid of the host-mode LocalStack that start.sh started (PID_FILE),
# if it still runs. Needs localstack_paths.
started_pid() {
    local pid
    [[ -f "${PID_FILE}" ]] || return 1
    pid="$(cat "${PID_FILE}")"
    [[ "${pid}" =~ ^[0-9]+$ ]] || return 1
    kill -0 "${pid}" 2>/dev/null || return 1
    grep -q 'localstack.runtime.main' "/proc/${pid}/cmdline" 2>/dev/null || return 1
    echo "${pid}"
}

# compose ARGS...: docker compose (plugin or docker-compose) on this port's project, with
# the image tag from versions.env. Needs localstack_paths.
compose() {
    if docker compose version >/dev/null 2>&1; then
        LOCALSTACK_PORT="${PORT}" docker compose --env-file "${VERSIONS_FILE}" \
            -f "${COMPOSE_FILE}" -p "${COMPOSE_PROJECT}" "$@"
    elif command -v docker-compose >/dev/null 2>&1; then
        LOCALSTACK_PORT="${PORT}" docker-compose --env-file "${VERSIONS_FILE}" \
            -f "${COMPOSE_FILE}" -p "${COMPOSE_PROJECT}" "$@"
    else
        die "Docker works but neither 'docker compose' nor 'docker-compose' is installed; install the compose plugin or run with LOCALSTACK_MODE=host"
    fi
}
