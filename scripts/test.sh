#!/usr/bin/env bash
# The asyncmcp test command: formatting, lints, docs and the full test suite of the workspace
# (the library and the test kit, testkit/) against LocalStack.
#
#   scripts/test.sh [extra test args...]
#
# The tests run with cargo-nextest when `cargo nextest` is installed (this script does not
# install it; get it with `cargo install cargo-nextest --locked`): every test in a process of its
# own, four at a time (profile `ci` of .config/nextest.toml), which takes a fraction of the
# time since the tests mostly wait on LocalStack. nextest does not run doc tests, so
# `cargo test --workspace --all-features --doc` runs them after it. Without nextest it runs
# `cargo test --workspace --all-features`, one test binary after another, as before.
#
# Extra arguments go to `cargo nextest run --workspace --all-features --profile ci` (or to
# `cargo test --workspace --all-features` without nextest), after fmt, clippy and doc have
# checked the whole workspace. Both take cargo's target selection and a test name filter:
#
#   scripts/test.sh --test interop          runs the library's tests/interop.rs alone
#   scripts/test.sh --test sqs heartbeat    runs the tests of tests/sqs.rs whose name has "heartbeat"
#
# With extra arguments, the doc tests are left out (they are part of the full run only).
# Options after `--` differ: libtest's (`-- --nocapture`) for cargo test, nextest's own
# (`--no-capture`, `-E 'test(name)'`, `--test-threads N`) before any `--` for nextest.
#
# It installs what the tests need (LocalStack via localstack/start.sh; the Python asyncmcp
# 0.2.1 peer into .venv/py-peer; MCP Inspector, server-everything, a Node 22 to run them and
# the Python MCP SDK 2.x into .tools), starts LocalStack unless AWS_ENDPOINT_URL already points
# at a healthy one, runs cargo fmt --check, cargo clippy, cargo doc and the tests over the
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
if cargo nextest --version >/dev/null 2>&1; then
    log "cargo-nextest found ($(cargo nextest --version 2>/dev/null | head -n 1)): tests run concurrently"
    log "cargo nextest run --workspace --all-features --profile ci $*"
    cargo nextest run --workspace --all-features --profile ci "$@"
    if [[ $# -eq 0 ]]; then
        log "cargo test --workspace --all-features --doc (nextest does not run doc tests)"
        cargo test --workspace --all-features --doc
    fi
else
    log "cargo-nextest not found (cargo install cargo-nextest --locked): test binaries run one after another"
    log "cargo test --workspace --all-features $*"
    cargo test --workspace --all-features "$@"
fi
