#!/usr/bin/env bash
# Stops the LocalStack that localstack/start.sh started (host process or Docker Compose
# project). A LocalStack that start.sh merely reused is left running.
# Reads the same LOCALSTACK_PORT and LOCALSTACK_STATE_DIR as start.sh.
set -euo pipefail

# shellcheck source=localstack/paths.sh
source "$(dirname "${BASH_SOURCE[0]}")/paths.sh"

log() { echo "localstack/stop.sh: $*" >&2; }

mode="$(cat "${MODE_FILE}" 2>/dev/null || true)"

case "${mode}" in
host)
    pid="$(cat "${PID_FILE}" 2>/dev/null || true)"
    if [[ "${pid}" =~ ^[0-9]+$ ]] && kill -0 "${pid}" 2>/dev/null &&
        grep -q 'localstack.runtime.main' "/proc/${pid}/cmdline" 2>/dev/null; then
        log "stopping LocalStack (pid ${pid})"
        kill -TERM "${pid}" 2>/dev/null || true
        for _ in $(seq 1 30); do
            kill -0 "${pid}" 2>/dev/null || break
            sleep 1
        done
        if kill -0 "${pid}" 2>/dev/null; then
            log "pid ${pid} still running after 30s; sending SIGKILL"
            kill -KILL "${pid}" 2>/dev/null || true
        fi
    else
        log "the LocalStack recorded in ${PID_FILE} is not running"
    fi
    rm -f "${PID_FILE}" "${MODE_FILE}"
    ;;
docker)
    log "stopping Docker Compose project ${COMPOSE_PROJECT}"
    if docker compose version >/dev/null 2>&1; then
        LOCALSTACK_PORT="${PORT}" docker compose -f "${COMPOSE_FILE}" -p "${COMPOSE_PROJECT}" down -v
    else
        LOCALSTACK_PORT="${PORT}" docker-compose -f "${COMPOSE_FILE}" -p "${COMPOSE_PROJECT}" down -v
    fi
    rm -f "${MODE_FILE}"
    ;;
*)
    log "no LocalStack started by localstack/start.sh on this state dir (${STATE_DIR}); nothing to stop"
    ;;
esac
