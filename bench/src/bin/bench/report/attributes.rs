//! The attribute table (`--scenario attributes`): the raw SQS round trip
//! with message attribute sets added one at a time, one run.

use std::fmt::Write as _;

use super::Row;
use crate::Stack;
use crate::attributes::AttributeSet;

/// A reply queue URL as long as the bench's on LocalStack, for the sizes of
/// `ReplyTo` and the session id in the table (the report is made from rows
/// alone).
const SAMPLE_REPLY: &str = "http://sqs.us-east-1.localhost.localstack.cloud:4566/000000000000/\
                            bench-attributes-replies-0123456789abcdef0123456789abcdef";

/// The table, each set's cost against the one before and against none, as
/// Markdown.
pub fn markdown(rows: &[Row]) -> String {
    let rows: Vec<&Row> = rows
        .iter()
        .filter(|r| r.stack == Stack::RawAttributes)
        .collect();
    let mut out = String::from(
        "Message attributes on the raw SQS round trip (no MCP): each set adds attributes \
         to the one before, on requests / replies, with the values our stack sends (in full \
         detail), except the last, lean detail, which is what our client and server now send \
         each other; every \
         receive asks for all attributes, as our inbox does. Each row the run with the \
         median calls/s; the cost of a set is its difference from the row above.\n\n\
         | attributes | count (request / reply) | bytes (request / reply) | in flight | calls \
         | errors | calls/s (each run) | p50 ms | SQS API calls / call \
         | broker CPU s / 1k calls | broker CPU vs row above | calls/s / none |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    let mut previous: Option<&Row> = None;
    for r in rows.iter().copied() {
        let set = r.attributes.unwrap_or(AttributeSet::None);
        let (count, bytes) = match set.attributes(SAMPLE_REPLY) {
            Ok((request, reply)) => {
                let size = |a: &asyncmcp::queue::Attributes| {
                    a.iter()
                        .map(|(name, value)| name.len() + value.as_str().len())
                        .sum::<usize>()
                };
                (
                    format!("{} / {}", request.len(), reply.len()),
                    format!("{} / {}", size(&request), size(&reply)),
                )
            }
            Err(e) => (format!("({e})"), "-".to_owned()),
        };
        let none = rows
            .iter()
            .find(|o| o.attributes == Some(AttributeSet::None) && o.in_flight == r.in_flight)
            .map(|o| o.calls_per_s)
            .filter(|c| *c > 0.0);
        let step = previous
            .filter(|p| p.in_flight == r.in_flight && set != AttributeSet::Lean)
            .and_then(|p| p.broker_cpu_s_per_1k.zip(r.broker_cpu_s_per_1k))
            .map_or_else(|| "-".to_owned(), |(p, n)| format!("{:+.2}", n - p));
        let runs: Vec<String> = r
            .runs_calls_per_s
            .iter()
            .map(|c| format!("{c:.1}"))
            .collect();
        let _ = writeln!(
            out,
            "| {} | {count} | {bytes} | {} | {} | {} | {:.1} ({}) | {:.1} | {:.2} | {} | {step} | {} |",
            set.label(),
            r.in_flight,
            r.calls,
            r.errors,
            r.calls_per_s,
            runs.join(", "),
            r.p50_ms,
            r.api_calls_per_call,
            r.broker_cpu_s_per_1k
                .map_or_else(|| "-".to_owned(), |cpu| format!("{cpu:.2}")),
            none.map_or_else(|| "-".to_owned(), |n| format!("{:.2}", r.calls_per_s / n)),
        );
        previous = Some(r);
    }
    out
}
