//! The batch comparison (`--scenario batch`): the library's `Batch` and the
//! `asyncmcp batch` command against the ordinary rmcp client over SQS, the
//! same server replicas, measured in one run.

use std::fmt::Write as _;

use super::{Metric, Row, find, operations};
use crate::Stack;

/// The stacks of the comparison, in the order of the table.
const STACKS: [Stack; 3] = [Stack::Sqs, Stack::BatchLib, Stack::BatchCli];

/// The table and the ratios to the ordinary client, as Markdown.
pub fn markdown(rows: &[Row]) -> String {
    let rows: Vec<&Row> = STACKS
        .iter()
        .flat_map(|&stack| rows.iter().filter(move |r| r.stack == stack))
        .collect();
    let mut out = String::from(
        "Batches against the ordinary rmcp client (`QueueClientTransport`, concurrent \
         `call_tool`), the same server replicas (demo echo); each row the run with the \
         median calls/s. The command reports no per-call latency; its CPU includes the \
         process it runs.\n\n\
         | client | in flight | calls | errors | calls/s (each run) | p50 ms | p99 ms \
         | SQS API calls / call (client + servers) | CPU s / 1k calls (servers + client) \
         | broker CPU s / 1k calls |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in &rows {
        let label = match r.stack {
            Stack::Sqs => "rmcp client over asyncmcp SQS",
            stack => stack.label(),
        };
        let latency = |ms: f64| match r.stack {
            Stack::BatchCli => "-".to_owned(),
            _ => format!("{ms:.1}"),
        };
        let runs: Vec<String> = r
            .runs_calls_per_s
            .iter()
            .map(|c| format!("{c:.1}"))
            .collect();
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {:.1} ({}) | {} | {} | {:.2} + {:.2} | {:.2} + {:.2} | {} |",
            label,
            r.in_flight,
            r.calls,
            r.errors,
            r.calls_per_s,
            runs.join(", "),
            latency(r.p50_ms),
            latency(r.p99_ms),
            r.client_api_calls_per_call,
            r.server_api_calls_per_call,
            r.server_cpu_s_per_1k,
            r.client_cpu_s_per_1k,
            r.broker_cpu_s_per_1k
                .map_or_else(|| "-".to_owned(), |cpu| format!("{cpu:.2}")),
        );
    }

    let mut levels: Vec<usize> = rows.iter().map(|r| r.in_flight).collect();
    levels.sort_unstable();
    levels.dedup();
    let ratio = |a: Stack, level: usize, f: Metric| match (
        find(&rows, a, level),
        find(&rows, Stack::Sqs, level),
    ) {
        (Some(a), Some(b)) if f(b) > 0.0 => format!("{:.2}", f(a) / f(b)),
        _ => "-".into(),
    };
    let calls_per_s: Metric = |r| r.calls_per_s;
    let client_api: Metric = |r| r.client_api_calls_per_call;
    let all_api: Metric = |r| r.api_calls_per_call;
    out.push_str(
        "\n| in flight | Batch / rmcp client calls/s | command / rmcp client calls/s \
         | Batch / rmcp client client API calls | command / rmcp client client API calls \
         | Batch / rmcp client all API calls | command / rmcp client all API calls |\n\
         |---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for level in levels {
        let _ = writeln!(
            out,
            "| {level} | {} | {} | {} | {} | {} | {} |",
            ratio(Stack::BatchLib, level, calls_per_s),
            ratio(Stack::BatchCli, level, calls_per_s),
            ratio(Stack::BatchLib, level, client_api),
            ratio(Stack::BatchCli, level, client_api),
            ratio(Stack::BatchLib, level, all_api),
            ratio(Stack::BatchCli, level, all_api),
        );
    }

    out.push_str("\nAPI calls per tool call by operation (the command counts only its total):\n\n");
    for r in rows.iter().filter(|r| !r.operations.is_empty()) {
        let _ = writeln!(
            out,
            "- {} at {}: {}",
            r.stack.label(),
            r.in_flight,
            operations(r)
        );
    }
    out
}
