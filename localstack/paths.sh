# Sourced by start.sh and stop.sh: where a started LocalStack's state lives, so
# that stop.sh finds exactly what start.sh left. Not meant to be run.
# shellcheck shell=bash disable=SC2034  # the variables are used by the scripts that source this

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PORT="${LOCALSTACK_PORT:-4566}"
STATE_DIR="${LOCALSTACK_STATE_DIR:-${REPO_ROOT}/.localstack}"
COMPOSE_FILE="${REPO_ROOT}/localstack/docker-compose.yml"
COMPOSE_PROJECT="asyncmcp-localstack-${PORT}"
PID_FILE="${STATE_DIR}/localstack.pid"
MODE_FILE="${STATE_DIR}/mode"
