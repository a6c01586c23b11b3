#!/usr/bin/env bash
# The asyncmcp benchmark: ours against the raw SQS ceiling and Python asyncmcp 0.2.1.
#
#   scripts/bench.sh [bench options...]     e.g. scripts/bench.sh --calls 500 --in-flight 1,50
#   scripts/bench.sh --help                 every option
#
# It installs Python asyncmcp 0.2.1 into its own virtualenv (.venv/py-peer), starts
# LocalStack unless AWS_ENDPOINT_URL already points at a healthy one, and runs the bench
# binary (crate bench/) in release mode; the LocalStack it started is stopped when it exits.
# Settings: see scripts/env.sh. Against real AWS, run the binary directly:
#   cargo run --release -p asyncmcp-bench --bin bench -- --stacks raw,sqs,sns-sqs
set -euo pipefail

LOG_PREFIX="scripts/bench.sh"
# shellcheck source=scripts/env.sh
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "${REPO_ROOT}"

require_rust build
ensure_python_peer
ensure_localstack
export BENCH_PYTHON="${ASYNCMCP_PY_PEER}"
# A LocalStack that localstack/start.sh runs on this host shares the machine's cores with
# what is measured: report its CPU time per call too.
localstack_paths
if [[ -z "${BENCH_BROKER_PID:-}" ]] && pid="$(started_pid)"; then
    export BENCH_BROKER_PID="${pid}"
fi
log "AWS_ENDPOINT_URL=${AWS_ENDPOINT_URL} BENCH_PYTHON=${BENCH_PYTHON}"
cargo build --release -p asyncmcp-bench --bin bench
# Run the binary itself, not through cargo, so cargo's own memory and CPU stay out of the
# machine while it measures.
"${CARGO_TARGET_DIR:-target}/release/bench" "$@"
