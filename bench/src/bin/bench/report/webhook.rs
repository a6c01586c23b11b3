//! The webhook comparison (`--scenario webhook`): our webhook transport
//! against the raw HTTP floor, our SQS transport and Python asyncmcp's
//! webhook transport, measured in one run.

use std::fmt::Write as _;

use super::{Metric, Row, find};
use crate::Stack;

/// The stacks of the comparison, in the order of the table.
const STACKS: [Stack; 5] = [
    Stack::RawHttp,
    Stack::Webhook,
    Stack::WebhookSigned,
    Stack::Sqs,
    Stack::PythonWebhook,
];

/// The table and the ratios, as Markdown.
pub fn markdown(rows: &[Row]) -> String {
    let rows: Vec<&Row> = STACKS
        .iter()
        .flat_map(|&stack| rows.iter().filter(move |r| r.stack == stack))
        .collect();
    let mut out = String::from(
        "Webhooks on loopback (no AWS API calls) against the raw HTTP round trip, asyncmcp \
         over SQS and Python asyncmcp 0.2.1's webhook transport\n\n\
         | stack | in flight | calls | errors | calls/s | p50 ms | p99 ms \
         | CPU s / 1k calls (server + client) | broker CPU s / 1k calls \
         | peak RSS MiB (server / client) |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in &rows {
        let label = match r.stack {
            Stack::Sqs => "asyncmcp SQS (LocalStack)",
            stack => stack.label(),
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {:.1} | {:.1} | {:.1} | {:.2} + {:.2} | {} | {:.0} / {:.0} |",
            label,
            r.in_flight,
            r.calls,
            r.errors,
            r.calls_per_s,
            r.p50_ms,
            r.p99_ms,
            r.server_cpu_s_per_1k,
            r.client_cpu_s_per_1k,
            r.broker_cpu_s_per_1k
                .map_or_else(|| "-".to_owned(), |cpu| format!("{cpu:.2}")),
            r.server_peak_rss_mib,
            r.client_peak_rss_mib,
        );
    }

    let mut levels: Vec<usize> = rows.iter().map(|r| r.in_flight).collect();
    levels.sort_unstable();
    levels.dedup();
    let ratio = |a: Stack, b: Stack, level: usize, f: Metric| match (
        find(&rows, a, level),
        find(&rows, b, level),
    ) {
        (Some(a), Some(b)) if f(b) > 0.0 => format!("{:.2}", f(a) / f(b)),
        _ => "-".into(),
    };
    let calls_per_s: Metric = |r| r.calls_per_s;
    let p50: Metric = |r| r.p50_ms;
    out.push_str(
        "\n| in flight | webhook / floor calls/s | webhook / floor p50 \
         | signed / unsigned calls/s | webhook / SQS calls/s | webhook / SQS p50 \
         | webhook / Python webhook calls/s | webhook / Python webhook p50 |\n\
         |---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for level in levels {
        let _ = writeln!(
            out,
            "| {level} | {} | {} | {} | {} | {} | {} | {} |",
            ratio(Stack::Webhook, Stack::RawHttp, level, calls_per_s),
            ratio(Stack::Webhook, Stack::RawHttp, level, p50),
            ratio(Stack::WebhookSigned, Stack::Webhook, level, calls_per_s),
            ratio(Stack::Webhook, Stack::Sqs, level, calls_per_s),
            ratio(Stack::Webhook, Stack::Sqs, level, p50),
            ratio(Stack::Webhook, Stack::PythonWebhook, level, calls_per_s),
            ratio(Stack::Webhook, Stack::PythonWebhook, level, p50),
        );
    }
    out
}
