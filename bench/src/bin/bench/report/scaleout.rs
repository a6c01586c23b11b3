//! The scale-out table (`--scenario scaleout`): our SQS server as more
//! processes on one request queue, one client, one run.

use std::fmt::Write as _;

use super::{Row, operations};
use crate::Stack;

/// The table, with the cores each process kept busy, as Markdown.
pub fn markdown(rows: &[Row]) -> String {
    let rows: Vec<&Row> = rows.iter().filter(|r| r.stack == Stack::Scaleout).collect();
    let mut out = String::from(
        "Scale-out: the library's server (demo echo) as separate processes on one SQS \
         request queue, one client; each row the run with the median calls/s. Cores busy \
         = CPU seconds per call x calls/s: on a small machine, where the processes and the \
         broker together reach the cores there are, the machine bounds the figure; where \
         the broker alone nears one core, the broker does.\n\n\
         | server processes | in flight | calls | errors | calls/s (each run) | p50 ms | p99 ms \
         | SQS API calls / call (client + servers) | CPU s / 1k calls (each server; client) \
         | broker CPU s / 1k calls | cores busy (servers + client + broker) \
         | calls/s / 1 process |\n\
         |---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in &rows {
        let processes = r.server_processes.unwrap_or(1);
        let single = rows
            .iter()
            .find(|o| o.server_processes == Some(1) && o.in_flight == r.in_flight)
            .map(|o| o.calls_per_s);
        let runs: Vec<String> = r
            .runs_calls_per_s
            .iter()
            .map(|c| format!("{c:.1}"))
            .collect();
        let each: Vec<String> = r
            .server_cpu_s_per_1k_each
            .iter()
            .map(|c| format!("{c:.2}"))
            .collect();
        let cores = |cpu_s_per_1k: f64| cpu_s_per_1k * r.calls_per_s / 1000.0;
        let (servers, client) = (cores(r.server_cpu_s_per_1k), cores(r.client_cpu_s_per_1k));
        let busy = match r.broker_cpu_s_per_1k.map(cores) {
            Some(broker) => format!(
                "{servers:.2} + {client:.2} + {broker:.2} = {:.2}",
                servers + client + broker
            ),
            None => format!("{servers:.2} + {client:.2} + -"),
        };
        let _ = writeln!(
            out,
            "| {processes} | {} | {} | {} | {:.1} ({}) | {:.1} | {:.1} | {:.2} + {:.2} | {}; {:.2} \
             | {} | {busy} | {} |",
            r.in_flight,
            r.calls,
            r.errors,
            r.calls_per_s,
            runs.join(", "),
            r.p50_ms,
            r.p99_ms,
            r.client_api_calls_per_call,
            r.server_api_calls_per_call,
            each.join(" / "),
            r.client_cpu_s_per_1k,
            r.broker_cpu_s_per_1k
                .map_or_else(|| "-".to_owned(), |cpu| format!("{cpu:.2}")),
            single
                .filter(|s| *s > 0.0)
                .map_or_else(|| "-".to_owned(), |s| format!("{:.2}", r.calls_per_s / s)),
        );
    }
    out.push_str("\nAPI calls per tool call by operation (all server processes, client):\n\n");
    for r in &rows {
        let _ = writeln!(
            out,
            "- {} server processes at {}: {}",
            r.server_processes.unwrap_or(1),
            r.in_flight,
            operations(r)
        );
    }
    out
}
