#!/usr/bin/env bash
# The asyncmcp benchmark: ours against the raw SQS ceiling and Python asyncmcp 0.2.1, or
# (--scenario serve) `asyncmcp serve` against the library's server and a process per request,
# or (--scenario webhook) the webhook transport against a raw HTTP round trip, SQS and Python,
# or (--scenario batch) `asyncmcp batch` and the library's Batch against the rmcp client,
# or (--scenario scaleout) 1, 2, 3 server processes on one queue, or (--scenario attributes)
# the raw SQS round trip with our message attributes added one set at a time.
#
#   scripts/bench.sh [bench options...]     e.g. scripts/bench.sh --calls 500 --in-flight 1,50
#   scripts/bench.sh --scenario serve       asyncmcp serve wrapping server-everything, alone
#   scripts/bench.sh --scenario webhook     webhooks on loopback; SQS on LocalStack beside them
#   scripts/bench.sh --scenario batch       2 server replicas; add --calls 10000 for the reported run
#   scripts/bench.sh --scenario scaleout    1,2,3 server processes (--server-processes) at 200 in flight
#   scripts/bench.sh --scenario attributes  the raw round trip per attribute set at 50 in flight
#   scripts/bench.sh --help                 every option
#
# It installs Python asyncmcp 0.2.1 into its own virtualenv (.venv/py-peer) and Node with
# server-everything into .tools (ensure_real_clients), starts LocalStack unless
# AWS_ENDPOINT_URL already points at a healthy one, builds the bench binary (crate bench/)
# and, for --scenario serve or batch, the asyncmcp command (crate cli/) in release mode and runs the
# bench; the LocalStack it
# started is stopped when it exits.
# Settings: see scripts/env.sh. Against real AWS, run the binary directly:
#   cargo run --release -p asyncmcp-bench --bin bench -- --stacks raw,sqs,raw-sns,sns-sqs
set -euo pipefail

LOG_PREFIX="scripts/bench.sh"
# shellcheck source=scripts/env.sh
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "${REPO_ROOT}"

require_rust build
ensure_python_peer
ensure_real_clients
ensure_localstack
export BENCH_PYTHON="${ASYNCMCP_PY_PEER}"
# A LocalStack that localstack/start.sh runs on this host shares the machine's cores with
# what is measured: report its CPU time per call too.
localstack_paths
if [[ -z "${BENCH_BROKER_PID:-}" ]] && pid="$(started_pid)"; then
    export BENCH_BROKER_PID="${pid}"
fi
log "AWS_ENDPOINT_URL=${AWS_ENDPOINT_URL} BENCH_PYTHON=${BENCH_PYTHON} ASYNCMCP_NODE=${ASYNCMCP_NODE}"
cargo build --release -p asyncmcp-bench --bin bench
# The `serve` and `batch` scenarios run the asyncmcp binary beside the bench's (target/release/asyncmcp);
# the others do not need it, and its release build takes minutes.
scenario=""
previous=""
for arg in "$@"; do
    case "${arg}" in
        --scenario=*) scenario="${arg#--scenario=}" ;;
        *) [[ "${previous}" == "--scenario" ]] && scenario="${arg}" ;;
    esac
    previous="${arg}"
done
if [[ "${scenario}" == "serve" || "${scenario}" == "batch" ]]; then
    cargo build --release -p asyncmcp-cli
fi
# Run the binary itself, not through cargo, so cargo's own memory and CPU stay out of the
# machine while it measures.
"${CARGO_TARGET_DIR:-target}/release/bench" "$@"
