#!/usr/bin/env bash
# The asyncmcp test command: formatting, lints and the full test suite against LocalStack.
#
#   scripts/test.sh [extra cargo test args...]      e.g. scripts/test.sh --test interop
#
# It installs what the tests need (LocalStack via localstack/start.sh; the Python asyncmcp
# 0.2.1 peer into .venv/py-peer), starts LocalStack unless AWS_ENDPOINT_URL already points
# at a healthy one, runs cargo fmt --check, cargo clippy and cargo test, and stops the
# LocalStack it started when it exits.
#
# Settings (environment):
#   AWS_ENDPOINT_URL     use this LocalStack instead of starting one
#   LOCALSTACK_PORT      port for a LocalStack started here (default 4566); see localstack/start.sh
#   ASYNCMCP_PEER_VENV   virtualenv of the Python peer (default <repo>/.venv/py-peer)
#   PEER_PYTHON          interpreter that creates that virtualenv (default python3)
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${REPO_ROOT}"

PEER_VENV="${ASYNCMCP_PEER_VENV:-${REPO_ROOT}/.venv/py-peer}"
PEER_PYTHON="${PEER_PYTHON:-python3}"
PEER_REQUIREMENTS=('asyncmcp==0.2.1' 'mcp==1.30.0' 'boto3' 'starlette<1')

log() { echo "scripts/test.sh: $*" >&2; }
die() {
    log "ERROR: $*"
    exit 1
}

# --- prerequisites ---------------------------------------------------------------------
command -v cargo >/dev/null 2>&1 ||
    die "cargo not found; install Rust (https://rustup.rs) and make sure ~/.cargo/bin is on PATH"
cargo fmt --version >/dev/null 2>&1 ||
    die "rustfmt is missing; install it with: rustup component add rustfmt"
cargo clippy --version >/dev/null 2>&1 ||
    die "clippy is missing; install it with: rustup component add clippy"
command -v curl >/dev/null 2>&1 || die "curl not found (Debian/Ubuntu: apt-get install curl)"

# --- Python asyncmcp peer (wire-compatibility tests) -----------------------------------
peer_ok() {
    [[ -x "${PEER_VENV}/bin/python" ]] &&
        "${PEER_VENV}/bin/python" - <<'EOF' 2>/dev/null
import sys
from importlib.metadata import version
import asyncmcp, boto3, mcp  # noqa: F401
ok = (version("asyncmcp") == "0.2.1" and version("mcp") == "1.30.0"
      and int(version("starlette").split(".")[0]) < 1)
sys.exit(0 if ok else 1)
EOF
}

if ! peer_ok; then
    command -v "${PEER_PYTHON}" >/dev/null 2>&1 ||
        die "${PEER_PYTHON} not found; install Python >= 3.10 (or set PEER_PYTHON) for the Python asyncmcp peer"
    "${PEER_PYTHON}" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' ||
        die "$("${PEER_PYTHON}" -V 2>&1) is too old for asyncmcp 0.2.1; set PEER_PYTHON to a Python >= 3.10"
    log "installing the Python asyncmcp 0.2.1 peer into ${PEER_VENV}"
    if [[ ! -x "${PEER_VENV}/bin/python" ]]; then
        mkdir -p "$(dirname "${PEER_VENV}")"
        "${PEER_PYTHON}" -m venv "${PEER_VENV}" ||
            die "could not create ${PEER_VENV} (Debian/Ubuntu: apt-get install python3-venv)"
    fi
    "${PEER_VENV}/bin/python" -m pip install --quiet --disable-pip-version-check "${PEER_REQUIREMENTS[@]}" ||
        die "pip could not install ${PEER_REQUIREMENTS[*]} into ${PEER_VENV} (is PyPI reachable?)"
    peer_ok || die "the Python peer in ${PEER_VENV} is broken; delete that directory and rerun"
fi

# --- LocalStack ------------------------------------------------------------------------
# healthy URL: a LocalStack with SQS and SNS answers at URL.
healthy() {
    local body
    body="$(curl -fsS --max-time 3 "$1/_localstack/health" 2>/dev/null)" || return 1
    grep -Eq '"sqs": *"(running|available)"' <<<"${body}" &&
        grep -Eq '"sns": *"(running|available)"' <<<"${body}"
}

STARTED_LOCALSTACK=0
cleanup() {
    local rc=$?
    if [[ "${STARTED_LOCALSTACK}" == 1 ]]; then
        localstack/stop.sh || true
    fi
    exit "${rc}"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [[ -n "${AWS_ENDPOINT_URL:-}" ]] && healthy "${AWS_ENDPOINT_URL}"; then
    log "using the LocalStack at ${AWS_ENDPOINT_URL}"
else
    if [[ -n "${AWS_ENDPOINT_URL:-}" ]]; then
        # A local endpoint that is down: start LocalStack on its port. Anything else: refuse.
        if [[ "${AWS_ENDPOINT_URL}" =~ ^http://(localhost|127\.0\.0\.1):([0-9]+)/?$ ]]; then
            export LOCALSTACK_PORT="${BASH_REMATCH[2]}"
        else
            die "AWS_ENDPOINT_URL=${AWS_ENDPOINT_URL} does not answer /_localstack/health; start LocalStack there, or unset AWS_ENDPOINT_URL to let this script start one"
        fi
    fi
    port="${LOCALSTACK_PORT:-4566}"
    if healthy "http://localhost:${port}"; then
        log "reusing the LocalStack already running on port ${port}"
    else
        STARTED_LOCALSTACK=1
    fi
    localstack/start.sh >/dev/null ||
        die "LocalStack did not start (see the messages above); Docker users can also run: docker compose -f localstack/docker-compose.yml up -d"
    export AWS_ENDPOINT_URL="http://localhost:${port}"
fi

export AWS_ACCESS_KEY_ID=test
export AWS_SECRET_ACCESS_KEY=test
export AWS_REGION=us-east-1
export AWS_DEFAULT_REGION=us-east-1
export ASYNCMCP_PY_PEER="${PEER_VENV}/bin/python"
log "AWS_ENDPOINT_URL=${AWS_ENDPOINT_URL} ASYNCMCP_PY_PEER=${ASYNCMCP_PY_PEER}"

# --- checks ----------------------------------------------------------------------------
log "cargo fmt --check"
cargo fmt --all --check
log "cargo clippy --all-targets --all-features -- -D warnings"
cargo clippy --all-targets --all-features -- -D warnings
log "cargo doc (warnings are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --all-features --quiet
log "cargo test --all-features $*"
cargo test --all-features "$@"
