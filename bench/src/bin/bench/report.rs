//! The bench's results: one row per stack and level, a Markdown report with
//! the ratios and targets, and a plot.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

mod attributes;
mod batch;
mod scaleout;
mod webhook;

use crate::Stack;
use crate::attributes::AttributeSet;
use crate::process::Usage;
use crate::protocol::{RunResult, Stats};

/// One stack at one in-flight level.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Row {
    pub stack: Stack,
    pub in_flight: usize,
    pub calls: usize,
    pub errors: usize,
    pub calls_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub api_calls_per_call: f64,
    pub server_cpu_s_per_1k: f64,
    pub client_cpu_s_per_1k: f64,
    pub server_peak_rss_mib: f64,
    pub client_peak_rss_mib: f64,
    /// The broker's CPU seconds per 1000 calls, with `--broker-pid`.
    #[serde(default)]
    pub broker_cpu_s_per_1k: Option<f64>,
    /// The servers' AWS API calls per tool call.
    #[serde(default)]
    pub server_api_calls_per_call: f64,
    /// The client's AWS API calls per tool call.
    #[serde(default)]
    pub client_api_calls_per_call: f64,
    /// Calls/s of every run of this level (`--repeats`); the row is the
    /// run with the median.
    #[serde(default)]
    pub runs_calls_per_s: Vec<f64>,
    /// API calls per tool call by side and operation, e.g.
    /// `server ReceiveMessage` (our processes only).
    pub operations: BTreeMap<String, f64>,
    /// Server processes on the request queue (`--scenario scaleout`).
    #[serde(default)]
    pub server_processes: Option<usize>,
    /// CPU seconds per 1000 calls of each server process
    /// (`--scenario scaleout`).
    #[serde(default)]
    pub server_cpu_s_per_1k_each: Vec<f64>,
    /// The message attributes the calls carried (`--scenario attributes`).
    #[serde(default)]
    pub attributes: Option<AttributeSet>,
}

impl Row {
    /// The figures of one level from the client's result, the API calls of
    /// both processes and their usage before and after.
    pub fn new(
        stack: Stack,
        in_flight: usize,
        result: &RunResult,
        (server_calls, client_calls): ((Stats, Stats), (Stats, Stats)),
        server: (Usage, Usage),
        client: (Usage, Usage),
    ) -> Self {
        let mut latencies = result.latencies_ms.clone();
        latencies.sort_by(f64::total_cmp);
        let answered = result.answered.unwrap_or(latencies.len());
        let calls = answered + result.errors;
        let server_api_calls = server_calls.1.api_calls - server_calls.0.api_calls;
        let client_api_calls = client_calls.1.api_calls - client_calls.0.api_calls;
        let api_calls = server_api_calls + client_api_calls;
        let mut operations = BTreeMap::new();
        for (side, (before, after)) in [("server", server_calls), ("client", client_calls)] {
            for (operation, count) in after.operations {
                let delta = count - before.operations.get(&operation).copied().unwrap_or(0);
                if delta > 0 {
                    operations.insert(
                        format!("{side} {operation}"),
                        delta as f64 / calls.max(1) as f64,
                    );
                }
            }
        }
        let per_1k = |(before, after): (Usage, Usage)| {
            (after.cpu_s - before.cpu_s) * 1000.0 / calls.max(1) as f64
        };
        Row {
            stack,
            in_flight,
            calls,
            errors: result.errors,
            calls_per_s: answered as f64 / result.elapsed_s.max(f64::EPSILON),
            p50_ms: percentile(&latencies, 0.50),
            p99_ms: percentile(&latencies, 0.99),
            api_calls_per_call: api_calls as f64 / calls.max(1) as f64,
            server_api_calls_per_call: server_api_calls as f64 / calls.max(1) as f64,
            client_api_calls_per_call: client_api_calls as f64 / calls.max(1) as f64,
            runs_calls_per_s: Vec::new(),
            server_cpu_s_per_1k: per_1k(server),
            client_cpu_s_per_1k: per_1k(client),
            server_peak_rss_mib: server.1.peak_rss_mib,
            client_peak_rss_mib: client.1.peak_rss_mib,
            broker_cpu_s_per_1k: None,
            operations,
            server_processes: None,
            server_cpu_s_per_1k_each: Vec::new(),
            attributes: None,
        }
    }
}

/// The run with the median calls/s (the lower middle one of an even
/// number), with every run's calls/s noted.
pub fn median(mut runs: Vec<Row>) -> Row {
    runs.sort_by(|a, b| a.calls_per_s.total_cmp(&b.calls_per_s));
    let all: Vec<f64> = runs.iter().map(|r| r.calls_per_s).collect();
    let mut row = runs.swap_remove((all.len().max(1) - 1) / 2);
    row.runs_calls_per_s = all;
    row
}

/// A row's API calls per tool call by operation, as `Operation 0.12, …`.
fn operations(row: &Row) -> String {
    row.operations
        .iter()
        .map(|(operation, per_call)| format!("{operation} {per_call:.2}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Nearest-rank percentile of sorted values (0 when empty).
fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((sorted.len() as f64) * q).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn find<'a>(rows: &[&'a Row], stack: Stack, in_flight: usize) -> Option<&'a Row> {
    rows.iter()
        .copied()
        .find(|r| r.stack == stack && r.in_flight == in_flight)
}

/// The best Python setting's throughput at `in_flight`.
fn python_best(rows: &[&Row], in_flight: usize) -> Option<f64> {
    [Stack::Python, Stack::PythonPoll0]
        .iter()
        .filter_map(|&s| find(rows, s, in_flight))
        .map(|r| r.calls_per_s)
        .reduce(f64::max)
}

/// The report of a run, as Markdown: the transports' table, ratios and
/// targets, the `asyncmcp serve` comparison and the webhook comparison,
/// each when measured.
pub fn markdown(endpoint: &str, rows: &[Row]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "`tools/call echo` round trips; endpoint: {endpoint}\n");
    let wrapping = |r: &Row| r.stack.wraps_server_everything();
    let http = |r: &Row| r.stack.is_http();
    let batch = |r: &Row| r.stack.is_batch();
    let scaleout = |r: &Row| r.stack == Stack::Scaleout;
    let attributes = |r: &Row| r.stack == Stack::RawAttributes;
    let special = |r: &Row| wrapping(r) || http(r) || batch(r) || r.stack.is_scenario_only();
    let transports =
        rows.iter().any(|r| !special(r) && r.stack != Stack::Sqs) || !rows.iter().any(special);
    let mut sections = Vec::new();
    if transports {
        let rows: Vec<&Row> = rows.iter().filter(|r| !special(r)).collect();
        sections.push(transports_markdown(&rows));
    }
    if rows.iter().any(wrapping) {
        sections.push(serve_markdown(rows));
    }
    if rows.iter().any(http) {
        sections.push(webhook::markdown(rows));
    }
    if rows.iter().any(batch) {
        sections.push(batch::markdown(rows));
    }
    if rows.iter().any(scaleout) {
        sections.push(scaleout::markdown(rows));
    }
    if rows.iter().any(attributes) {
        sections.push(attributes::markdown(rows));
    }
    out += &sections.join("\n");
    out
}

/// The transports' table, ratios and targets.
fn transports_markdown(rows: &[&Row]) -> String {
    let mut out = String::new();
    out.push_str(
        "| stack | in flight | calls | errors | calls/s | p50 ms | p99 ms | API calls / call \
         | CPU s / 1k calls (server + client) | broker CPU s / 1k calls \
         | peak RSS MiB (server / client) |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in rows.iter().copied() {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {:.1} | {:.1} | {:.1} | {:.2} | {:.2} + {:.2} | {} | {:.0} / {:.0} |",
            r.stack.label(),
            r.in_flight,
            r.calls,
            r.errors,
            r.calls_per_s,
            r.p50_ms,
            r.p99_ms,
            r.api_calls_per_call,
            r.server_cpu_s_per_1k,
            r.client_cpu_s_per_1k,
            r.broker_cpu_s_per_1k
                .map_or_else(|| "-".to_owned(), |cpu| format!("{cpu:.2}")),
            r.server_peak_rss_mib,
            r.client_peak_rss_mib
        );
    }

    let mut levels: Vec<usize> = rows.iter().map(|r| r.in_flight).collect();
    levels.sort_unstable();
    levels.dedup();
    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
        _ => "-".into(),
    };
    let of = |stack, level, f: fn(&Row) -> f64| find(rows, stack, level).map(f);
    out.push_str(
        "\n| in flight | SQS / raw calls/s | SQS / raw p50 | SNS+SQS / raw calls/s \
         | asyncmcp SNS+SQS / raw SNS+SQS calls/s | raw SNS+SQS / raw SQS calls/s \
         | SQS / best Python calls/s | SNS+SQS / best Python calls/s |\n\
         |---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for &level in &levels {
        let _ = writeln!(
            out,
            "| {level} | {} | {} | {} | {} | {} | {} | {} |",
            ratio(
                of(Stack::Sqs, level, |r| r.calls_per_s),
                of(Stack::Raw, level, |r| r.calls_per_s)
            ),
            ratio(
                of(Stack::Sqs, level, |r| r.p50_ms),
                of(Stack::Raw, level, |r| r.p50_ms)
            ),
            ratio(
                of(Stack::SnsSqs, level, |r| r.calls_per_s),
                of(Stack::Raw, level, |r| r.calls_per_s)
            ),
            ratio(
                of(Stack::SnsSqs, level, |r| r.calls_per_s),
                of(Stack::RawSns, level, |r| r.calls_per_s)
            ),
            ratio(
                of(Stack::RawSns, level, |r| r.calls_per_s),
                of(Stack::Raw, level, |r| r.calls_per_s)
            ),
            ratio(
                of(Stack::Sqs, level, |r| r.calls_per_s),
                python_best(rows, level)
            ),
            ratio(
                of(Stack::SnsSqs, level, |r| r.calls_per_s),
                python_best(rows, level)
            ),
        );
    }

    out.push_str("\nAPI calls per tool call by operation (our processes):\n\n");
    for r in rows.iter().filter(|r| !r.operations.is_empty()) {
        let _ = writeln!(
            out,
            "- {} at {}: {}",
            r.stack.label(),
            r.in_flight,
            operations(r)
        );
    }

    out.push_str("\nTargets (asyncmcp SQS):\n");
    let check = |name: &str, value: Option<f64>, holds: fn(f64) -> bool| match value {
        Some(v) => format!(
            "- {name}: {v:.2} ({})\n",
            if holds(v) { "met" } else { "NOT met" }
        ),
        None => format!("- {name}: not measured in this run\n"),
    };
    let over =
        |a: Option<f64>, b: Option<f64>| a.zip(b).filter(|(_, b)| *b > 0.0).map(|(a, b)| a / b);
    out += &check(
        "calls/s at 50 in flight / raw, at least 0.9",
        over(
            of(Stack::Sqs, 50, |r| r.calls_per_s),
            of(Stack::Raw, 50, |r| r.calls_per_s),
        ),
        |v| v >= 0.9,
    );
    out += &check(
        "p50 at 1 in flight / raw, at most 1.2",
        over(
            of(Stack::Sqs, 1, |r| r.p50_ms),
            of(Stack::Raw, 1, |r| r.p50_ms),
        ),
        |v| v <= 1.2,
    );
    out += &check(
        "API calls per tool call at 50 in flight, at most 1.0",
        of(Stack::Sqs, 50, |r| r.api_calls_per_call),
        |v| v <= 1.0,
    );
    out += &check(
        "calls/s at 20 in flight / best Python, at least 3",
        over(of(Stack::Sqs, 20, |r| r.calls_per_s), python_best(rows, 20)),
        |v| v >= 3.0,
    );
    out
}

/// `asyncmcp serve` against the library's server (the same client load)
/// and against a process per request.
fn serve_markdown(rows: &[Row]) -> String {
    let rows: Vec<&Row> = rows
        .iter()
        .filter(|r| matches!(r.stack, Stack::Sqs | Stack::Serve | Stack::PerRequest))
        .collect();
    let mut out = String::from(
        "`asyncmcp serve` (wrapping server-everything) against the library's server \
         (demo echo) and a process per request; server CPU and RSS include its child \
         processes, RSS only those alive at the end of the level\n\n\
         | stack | in flight | calls | errors | calls/s | p50 ms | p99 ms \
         | CPU s / 1k calls (server + client) | broker CPU s / 1k calls | server peak RSS MiB |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in &rows {
        let label = match r.stack {
            Stack::Sqs => "asyncmcp library server (demo echo)",
            stack => stack.label(),
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {:.1} | {:.1} | {:.1} | {:.2} + {:.2} | {} | {:.0} |",
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
        );
    }
    let ratio = |a: Option<&Row>, b: Option<&Row>, f: Metric| match (a, b) {
        (Some(a), Some(b)) if f(b) > 0.0 => format!("{:.2}", f(a) / f(b)),
        _ => "-".into(),
    };
    let per_request_at_1 = find(&rows, Stack::PerRequest, 1);
    out.push_str(
        "\n| in flight | serve / library calls/s | serve / library p50 \
         | serve / process per request calls/s (same in flight) \
         | serve / process per request at 1 in flight, calls/s |\n\
         |---:|---:|---:|---:|---:|\n",
    );
    for serve in rows.iter().copied().filter(|r| r.stack == Stack::Serve) {
        let level = serve.in_flight;
        let library = find(&rows, Stack::Sqs, level);
        let _ = writeln!(
            out,
            "| {level} | {} | {} | {} | {} |",
            ratio(Some(serve), library, |r| r.calls_per_s),
            ratio(Some(serve), library, |r| r.p50_ms),
            ratio(Some(serve), find(&rows, Stack::PerRequest, level), |r| r
                .calls_per_s),
            ratio(Some(serve), per_request_at_1, |r| r.calls_per_s),
        );
    }
    out
}

/// A figure of a row.
type Metric = fn(&Row) -> f64;

/// Plots calls/s and p99 latency against the in-flight level, one line per
/// stack, side by side, as SVG.
pub fn plot(path: &Path, rows: &[Row]) -> anyhow::Result<()> {
    use plotters::prelude::*;

    let root = SVGBackend::new(path, (1200, 480)).into_drawing_area();
    root.fill(&WHITE)?;
    let (left, right) = root.split_horizontally(600);
    let max_level = rows.iter().map(|r| r.in_flight).max().unwrap_or(1) as f64 * 1.2;
    let mut stacks: Vec<Stack> = rows.iter().map(|r| r.stack).collect();
    stacks.dedup();
    let panels: [(_, &str, Metric, _); 2] = [
        (
            &left,
            "calls/s",
            |r| r.calls_per_s,
            SeriesLabelPosition::UpperLeft,
        ),
        (
            &right,
            "p99 latency (ms)",
            |r| r.p99_ms,
            SeriesLabelPosition::UpperLeft,
        ),
    ];
    let mut levels: Vec<f64> = rows.iter().map(|r| r.in_flight as f64).collect();
    levels.sort_by(f64::total_cmp);
    levels.dedup();
    for (area, name, value, legend) in panels {
        let values = rows.iter().map(value).filter(|v| *v > 0.0);
        let bottom = values.clone().fold(f64::INFINITY, f64::min).min(1e9) / 2.0;
        let top = values.fold(1.0, f64::max) * 2.0;
        let x = (levels[0] * 0.8..max_level)
            .log_scale()
            .with_key_points(levels.clone());
        let mut chart = ChartBuilder::on(area)
            .caption(format!("{name} by calls in flight"), ("sans-serif", 20))
            .margin(16)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(x, (bottom..top).log_scale())?;
        chart
            .configure_mesh()
            .x_desc("calls in flight")
            .y_desc(name)
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_label_formatter(&|y| format!("{y}"))
            .light_line_style(WHITE)
            .draw()?;
        for &stack in &stacks {
            let color = match stack {
                Stack::Raw => RGBColor(0x44, 0x44, 0x44),
                Stack::Sqs => RGBColor(0x1b, 0x9e, 0x77),
                Stack::SnsSqs => RGBColor(0x75, 0x70, 0xb3),
                Stack::Python => RGBColor(0xd9, 0x5f, 0x02),
                Stack::PythonPoll0 => RGBColor(0xe7, 0x29, 0x8a),
                Stack::Serve => RGBColor(0x66, 0xa6, 0x1e),
                Stack::PerRequest => RGBColor(0xa6, 0x76, 0x1d),
                Stack::RawHttp => RGBColor(0x99, 0x99, 0x99),
                Stack::Webhook => RGBColor(0x1f, 0x78, 0xb4),
                Stack::WebhookSigned => RGBColor(0xa6, 0xce, 0xe3),
                Stack::PythonWebhook => RGBColor(0xff, 0x7f, 0x00),
                Stack::BatchLib => RGBColor(0x6a, 0x3d, 0x9a),
                Stack::BatchCli => RGBColor(0xb1, 0x59, 0x28),
                Stack::RawSns => RGBColor(0x88, 0x88, 0x88),
                Stack::Scaleout => RGBColor(0x0b, 0x5e, 0x47),
                Stack::RawAttributes => RGBColor(0x55, 0x55, 0x55),
            };
            let points: Vec<(f64, f64)> = rows
                .iter()
                .filter(|r| r.stack == stack)
                .map(|r| (r.in_flight as f64, value(r).max(bottom)))
                .collect();
            chart
                .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))?
                .label(stack.label())
                .legend(move |(x, y)| {
                    PathElement::new([(x, y), (x + 16, y)], color.stroke_width(2))
                });
            chart.draw_series(
                points
                    .into_iter()
                    .map(|p| Circle::new(p, 3, color.filled())),
            )?;
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .position(legend)
            .draw()?;
    }
    root.present()?;
    Ok(())
}
