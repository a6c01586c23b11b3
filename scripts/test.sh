#!/usr/bin/env bash
# The asyncmcp test command: formatting, lints, docs and the full test suite of the workspace
# (the library and the test kit, testkit/) against LocalStack.
#
#   scripts/test.sh [extra cargo test args...]
#
# Extra arguments go to `cargo test --workspace --all-features`, after fmt, clippy and doc
# have checked the whole workspace. Cargo finds a test target in the package that has it, so
#
#   scripts/test.sh --test interop          runs the library's tests/interop.rs alone
#
# It installs what the tests need (LocalStack via localstack/start.sh; the Python asyncmcp
# 0.2.1 peer into .venv/py-peer; MCP Inspector, server-everything, a Node 22 to run them and
# the Python MCP SDK 2.x into .tools), starts LocalStack unless AWS_ENDPOINT_URL already points
# at a healthy one, runs cargo fmt --check, cargo clippy, cargo doc and cargo test over the
# whole workspace, and stops the LocalStack it started when it exits. Settings: see scripts/env.sh.
set -euo pipefail

LOG_PREFIX="scripts/test.sh"
# shellcheck source=scripts/env.sh
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "${REPO_ROOT}"

require_rust clippy
ensure_python_peer
ensure_real_clients
ensure_localstack
log "AWS_ENDPOINT_URL=${AWS_ENDPOINT_URL} ASYNCMCP_PY_PEER=${ASYNCMCP_PY_PEER} ASYNCMCP_NODE=${ASYNCMCP_NODE}"

log "cargo fmt --check"
cargo fmt --all --check
log "cargo clippy --workspace --all-targets --all-features -- -D warnings"
cargo clippy --workspace --all-targets --all-features -- -D warnings
log "cargo doc --workspace (warnings are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --all-features --quiet
log "cargo test --workspace --all-features $*"
cargo test --workspace --all-features "$@"
