#!/usr/bin/env bash
# Stops the LocalStack that localstack/start.sh started (host process or Docker Compose
# project). A LocalStack that start.sh merely reused is left running.
# Reads the same LOCALSTACK_PORT and LOCALSTACK_STATE_DIR as start.sh.
set -euo pipefail

LOG_PREFIX="localstack/stop.sh"
# shellcheck source=localstack/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
localstack_paths

mode="$(cat "${MODE_FILE}" 2>/dev/null || true)"

case "${mode}" in
host)
    if pid="$(started_pid)"; then
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
    compose down -v
    rm -f "${MODE_FILE}"
    ;;
*)
    log "no LocalStack started by localstack/start.sh on this state dir (${STATE_DIR}); nothing to stop"
    ;;
esac
