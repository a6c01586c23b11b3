#!/usr/bin/env bash
# Starts LocalStack (SQS, SNS and S3) for asyncmcp development and creates the demo queues and
# topics (with `asyncmcp setup`).
#
#   localstack/start.sh        then   export AWS_ENDPOINT_URL=http://localhost:4566
#   localstack/stop.sh         stops what start.sh started
#
# Idempotent: a LocalStack already healthy on the port is reused (and left running by
# stop.sh unless this script started it). Otherwise it uses Docker Compose when a Docker
# engine answers (`docker info`), else it runs LocalStack on the host from a private
# Python virtualenv installed from PyPI.
#
# Settings (environment):
#   LOCALSTACK_PORT       port on 127.0.0.1 (default 4566)
#   LOCALSTACK_STATE_DIR  pid file, log and mode marker (default <repo>/.localstack)
#   LOCALSTACK_VENV       host-mode virtualenv (default $LOCALSTACK_STATE_DIR/venv)
#   LOCALSTACK_PYTHON     interpreter that creates the virtualenv (default python3, >= 3.9)
#   LOCALSTACK_MODE       auto (default), host or docker
#   LOCALSTACK_TIMEOUT    seconds to wait for health (default 120)
#   LOCALSTACK_DEMO_RESOURCES  1 (default): create the demo queues and topics; 0: don't
#                         (scripts/test.sh and bench.sh: their tests make their own)
#   ASYNCMCP_BIN          a built `asyncmcp` to create them with (default: cargo runs the
#                         workspace's, building it first if needed: a few minutes the first time)
set -euo pipefail

LOG_PREFIX="localstack/start.sh"
# shellcheck source=localstack/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
localstack_paths
VENV="${LOCALSTACK_VENV:-${STATE_DIR}/venv}"
PYTHON="${LOCALSTACK_PYTHON:-python3}"
MODE="${LOCALSTACK_MODE:-auto}"
TIMEOUT="${LOCALSTACK_TIMEOUT:-120}"
ENDPOINT="http://localhost:${PORT}"
LOG_FILE="${STATE_DIR}/localstack.log"
DEMO_RESOURCES="${LOCALSTACK_DEMO_RESOURCES:-1}"
[[ "${DEMO_RESOURCES}" == [01] ]] ||
    die "LOCALSTACK_DEMO_RESOURCES must be 1 or 0 (got '${DEMO_RESOURCES}')"

# Host mode: localstack-core at the version pinned in versions.env (which says what Python
# it needs). moto-ext provides SNS; the upper bounds avoid releases that break start-up.
LOCALSTACK_REQUIREMENTS=(
    "localstack-core[base-runtime]==${LOCALSTACK_CORE_VERSION}"
    'moto-ext[sns,sqs]==5.1.54'
    'cbor2<6'
    'pyopenssl<25'
    'cryptography<45'
    'service_identity<25'
    'psutil<7'
)

command -v curl >/dev/null 2>&1 || die "curl is required (Debian/Ubuntu: apt-get install curl)"

# port_open: something accepts TCP connections on the port (curl exit 7: nothing listens).
port_open() {
    local rc=0
    curl -sS --max-time 3 -o /dev/null "${ENDPOINT}/" 2>/dev/null || rc=$?
    [[ "${rc}" -ne 7 ]]
}

docker_works() {
    command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1
}

# kill_started PID: stops a host-mode LocalStack that failed to come up.
kill_started() {
    local pid="$1"
    kill -TERM "${pid}" 2>/dev/null || true
    for _ in $(seq 1 10); do
        kill -0 "${pid}" 2>/dev/null || break
        sleep 1
    done
    kill -KILL "${pid}" 2>/dev/null || true
    rm -f "${PID_FILE}" "${MODE_FILE}"
}

# wait_healthy PID_OR_EMPTY: waits up to TIMEOUT seconds; fails early if PID dies.
wait_healthy() {
    local pid="$1" waited=0
    log "waiting for ${ENDPOINT}/_localstack/health (up to ${TIMEOUT}s)"
    until healthy "${ENDPOINT}"; do
        if [[ -n "${pid}" ]] && ! kill -0 "${pid}" 2>/dev/null; then
            log "LocalStack (pid ${pid}) exited before becoming healthy; last lines of ${LOG_FILE}:"
            tail -n 40 "${LOG_FILE}" >&2 || true
            rm -f "${PID_FILE}" "${MODE_FILE}"
            exit 1
        fi
        if ((waited >= TIMEOUT)); then
            log "LocalStack did not become healthy within ${TIMEOUT}s"
            if [[ -n "${pid}" ]]; then
                log "last lines of ${LOG_FILE}:"
                tail -n 40 "${LOG_FILE}" >&2 || true
                kill_started "${pid}"
            else
                compose logs --tail 40 >&2 || true
            fi
            exit 1
        fi
        sleep 1
        waited=$((waited + 1))
    done
}

ensure_venv() {
    local stamp="${VENV}/.asyncmcp-requirements" wanted
    wanted="${LOCALSTACK_REQUIREMENTS[*]}"
    if [[ -x "${VENV}/bin/python" && -f "${stamp}" && "$(cat "${stamp}")" == "${wanted}" ]] &&
        "${VENV}/bin/python" -c 'import localstack, moto' 2>/dev/null; then
        return 0
    fi
    command -v "${PYTHON}" >/dev/null 2>&1 ||
        die "${PYTHON} not found; install Python 3.9-3.13 (or set LOCALSTACK_PYTHON), or install Docker"
    "${PYTHON}" -c 'import sys; sys.exit(0 if (3, 9) <= sys.version_info[:2] < (3, 14) else 1)' ||
        die "$("${PYTHON}" -V 2>&1) cannot run localstack-core ${LOCALSTACK_CORE_VERSION}; set LOCALSTACK_PYTHON to a Python 3.9-3.13"
    log "installing LocalStack into ${VENV} (about a minute)"
    mkdir -p "$(dirname "${VENV}")"
    if [[ ! -x "${VENV}/bin/python" ]]; then
        "${PYTHON}" -m venv "${VENV}" ||
            die "could not create a virtualenv with ${PYTHON} (Debian/Ubuntu: apt-get install python3-venv)"
    fi
    "${VENV}/bin/python" -m pip install --quiet --disable-pip-version-check "${LOCALSTACK_REQUIREMENTS[@]}" ||
        die "pip could not install LocalStack into ${VENV} (is PyPI reachable?)"
    printf '%s' "${wanted}" >"${stamp}"
}

start_host() {
    local pid
    if pid="$(started_pid)"; then
        log "LocalStack (pid ${pid}) started earlier is still coming up"
        wait_healthy "${pid}"
        return 0
    fi
    if port_open; then
        die "port ${PORT} is in use by something that is not a healthy LocalStack with SQS, SNS and S3; stop it or pick another port with LOCALSTACK_PORT"
    fi
    ensure_venv
    mkdir -p "${STATE_DIR}/data"
    log "starting LocalStack on 127.0.0.1:${PORT} (log: ${LOG_FILE})"
    (
        cd "${STATE_DIR}"
        GATEWAY_LISTEN="127.0.0.1:${PORT}" \
            LOCALSTACK_HOST="localhost:${PORT}" \
            SERVICES=sqs,sns,s3 \
            SQS_ENDPOINT_STRATEGY=path \
            DISABLE_EVENTS=1 \
            DNS_ADDRESS=0 \
            FILESYSTEM_ROOT="${STATE_DIR}/data" \
            exec nohup "${VENV}/bin/python" -m localstack.runtime.main </dev/null >"${LOG_FILE}" 2>&1
    ) &
    pid=$!
    echo "${pid}" >"${PID_FILE}"
    echo host >"${MODE_FILE}"
    wait_healthy "${pid}"
    log "LocalStack is up (pid ${pid})"
}

start_docker() {
    log "starting LocalStack in Docker (compose project ${COMPOSE_PROJECT})"
    compose up -d
    echo docker >"${MODE_FILE}"
    wait_healthy ""
    log "LocalStack is up (Docker)"
}

mkdir -p "${STATE_DIR}"

if healthy "${ENDPOINT}"; then
    log "LocalStack is already healthy on ${ENDPOINT}; reusing it"
else
    case "${MODE}" in
    auto) if docker_works; then start_docker; else start_host; fi ;;
    docker) docker_works || die "LOCALSTACK_MODE=docker but 'docker info' fails"; start_docker ;;
    host) start_host ;;
    *) die "LOCALSTACK_MODE must be auto, host or docker (got '${MODE}')" ;;
    esac
fi

# create_demo_resources: the queues and topics the README and the examples use, made with
# `asyncmcp setup` (idempotent; what it prints goes to stderr, as stdout carries the export
# line). The settings are all on the command line: ASYNCMCP_* variables of the caller's shell
# are not read, and the LocalStack credentials replace any of the caller's.
#   mcp-requests (DLQ mcp-requests-dlq after 5 receives), mcp-responses: the SQS examples
#   mcp-requests-topic -> mcp-sns-requests (raw delivery; DLQ mcp-sns-requests-dlq),
#   mcp-replies-topic: the SNS examples
create_demo_resources() {
    local asyncmcp
    if [[ -n "${ASYNCMCP_BIN:-}" ]]; then
        asyncmcp=("${ASYNCMCP_BIN}")
    else
        command -v cargo >/dev/null 2>&1 ||
            die "cargo not found: it builds the asyncmcp command that creates the demo queues (install Rust from https://rustup.rs, or set ASYNCMCP_BIN, or LOCALSTACK_DEMO_RESOURCES=0)"
        log "creating the demo queues and topics with asyncmcp setup (cargo run -p asyncmcp-cli; the first build takes a few minutes)"
        asyncmcp=(cargo run --quiet --manifest-path "${REPO_ROOT}/Cargo.toml" -p asyncmcp-cli --)
    fi
    local -a env=(env -u AWS_PROFILE -u ASYNCMCP_FIFO -u ASYNCMCP_TOPIC -u ASYNCMCP_REPLY_TOPIC
        -u ASYNCMCP_REPLY_QUEUE AWS_ENDPOINT_URL="${ENDPOINT}" AWS_REGION=us-east-1
        AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test)
    "${env[@]}" "${asyncmcp[@]}" setup --queue mcp-requests --max-receive-count 5 \
        --reply-queue mcp-responses >&2 ||
        die "asyncmcp setup could not create the SQS demo queues (see above)"
    "${env[@]}" "${asyncmcp[@]}" setup --queue mcp-sns-requests --max-receive-count 5 \
        --topic mcp-requests-topic --reply-topic mcp-replies-topic >&2 ||
        die "asyncmcp setup could not create the SNS demo topics (see above)"
}

if [[ "${DEMO_RESOURCES}" == 1 ]]; then
    create_demo_resources
fi

echo "export AWS_ENDPOINT_URL=${ENDPOINT} AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test"
