//! The progress bar on stderr, fed by the server's progress notifications,
//! and the rmcp client handler that feeds it.
//!
//! The bar is drawn only when stderr is a terminal, and only once a progress
//! notification has come: a call without progress, or a command whose stderr
//! goes to a file or a pipe, shows nothing extra. With a `total`, it is a bar
//! (the fraction done); without, a spinner. The server's numbers and message
//! may be anything: non-finite or negative numbers are shown as such but do
//! not move the bar, and the message is made safe for the terminal and cut
//! short.
//!
//! A task (`asyncmcp call --task`) has no numbers, only a status message:
//! [`Progress::status`] shows it on a spinner when stderr is a terminal, and
//! otherwise as a line on stderr each time it changes, so that a log of a
//! long task shows how it went.

use std::io::IsTerminal;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use rmcp::model::{ClientCapabilities, ClientConfig, Implementation, ProgressNotificationParam};
use rmcp::service::NotificationContext;
use rmcp::{ClientHandler, RoleClient};

use crate::output;

/// Steps of the bar: the fraction done is shown to a tenth of a percent.
const STEPS: u64 = 1000;
/// The most characters of a progress message shown.
const MAX_MESSAGE: usize = 120;

/// A progress bar on stderr, drawn from the first update on; a no-op when
/// hidden. Clones share the bar.
#[derive(Debug, Clone)]
pub(crate) struct Progress {
    shown: bool,
    /// Whether task statuses are written as lines when the bar is not shown.
    lines: bool,
    bar: Arc<OnceLock<ProgressBar>>,
}

impl Progress {
    /// Shown if stderr is a terminal, hidden otherwise.
    pub(crate) fn on_stderr() -> Self {
        Self {
            shown: std::io::stderr().is_terminal(),
            lines: true,
            bar: Arc::default(),
        }
    }

    /// Never shown.
    pub(crate) fn hidden() -> Self {
        Self {
            shown: false,
            lines: false,
            bar: Arc::default(),
        }
    }

    /// The bar, drawn from now on.
    fn bar(&self) -> &ProgressBar {
        self.bar.get_or_init(|| {
            let bar = ProgressBar::new(STEPS);
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        })
    }

    /// Shows a task's status (`working`, `input_required`, ...) and its
    /// status message: on the spinner, or as a line on stderr when stderr is
    /// not a terminal. The caller calls it when either changes.
    pub(crate) fn status(&self, status: &str, message: Option<&str>) {
        let mut text = one_line(status);
        if let Some(message) = message {
            text.push_str(": ");
            text.push_str(&one_line(message));
        }
        if self.shown {
            let bar = self.bar();
            bar.set_style(style(false));
            bar.set_message(text);
        } else if self.lines {
            eprintln!("asyncmcp: {text}");
        }
    }

    /// Writes `line` on stderr, above the bar if one is drawn. The caller
    /// makes it safe for a terminal.
    pub(crate) fn note(&self, line: &str) {
        match self.bar.get() {
            Some(bar) => bar.println(line),
            None => eprintln!("{line}"),
        }
    }

    /// Shows `update`.
    fn update(&self, update: &ProgressNotificationParam) {
        if !self.shown {
            return;
        }
        let bar = self.bar();
        let fraction = fraction(update.progress, update.total);
        bar.set_style(style(fraction.is_some()));
        bar.set_position(fraction.map_or(0, |f| (f * STEPS as f64).round() as u64));
        bar.set_message(label(update));
    }

    /// Clears the bar, before a result or an error is written.
    pub(crate) fn finish(&self) {
        if let Some(bar) = self.bar.get() {
            bar.finish_and_clear();
        }
    }
}

/// A bar when the total is known, a spinner otherwise.
fn style(with_total: bool) -> ProgressStyle {
    let template = if with_total {
        "{spinner} {elapsed:>4} [{bar:30}] {msg}"
    } else {
        "{spinner} {elapsed:>4} {msg}"
    };
    ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_spinner())
        .progress_chars("=> ")
}

/// The fraction done, when there is a usable total.
fn fraction(progress: f64, total: Option<f64>) -> Option<f64> {
    let total = total.filter(|total| total.is_finite() && *total > 0.0)?;
    Some(if progress.is_finite() {
        (progress / total).clamp(0.0, 1.0)
    } else {
        0.0
    })
}

/// `progress[/total] message`, safe for a terminal and short.
fn label(update: &ProgressNotificationParam) -> String {
    let mut label = number(update.progress);
    if let Some(total) = update.total {
        label.push('/');
        label.push_str(&number(total));
    }
    if let Some(message) = &update.message {
        label.push(' ');
        label.push_str(&one_line(message));
    }
    label
}

/// `message` from a server, cut short and made one line safe for a terminal.
fn one_line(message: &str) -> String {
    let message: String = message.chars().take(MAX_MESSAGE).collect();
    output::printable(&message).replace(['\n', '\t'], " ")
}

/// `x` shown briefly: whole numbers as such, others to 4 significant digits.
fn number(x: f64) -> String {
    if x.is_finite() && x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else if x.is_finite() && x.abs() >= 1e-3 && x.abs() < 1e15 {
        format!("{}", (x * 1e3).round() / 1e3)
    } else {
        format!("{x:.3e}")
    }
}

/// The client side of a session: names itself and shows progress.
#[derive(Debug, Clone)]
pub(crate) struct ProgressClient {
    progress: Progress,
    /// Whether it declares the tasks extension.
    tasks: bool,
}

impl ProgressClient {
    /// A client showing progress on `progress`.
    pub(crate) fn new(progress: Progress) -> Self {
        Self {
            progress,
            tasks: false,
        }
    }

    /// A client that also declares the tasks extension
    /// (`io.modelcontextprotocol/tasks`): a server may answer its calls
    /// with a task to poll.
    pub(crate) fn declaring_tasks(progress: Progress) -> Self {
        Self {
            progress,
            tasks: true,
        }
    }
}

impl ClientHandler for ProgressClient {
    async fn on_progress(
        &self,
        params: ProgressNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        self.progress.update(&params);
    }

    fn get_info(&self) -> ClientConfig {
        let capabilities = if self.tasks {
            ClientCapabilities::builder().enable_tasks().build()
        } else {
            ClientCapabilities::default()
        };
        ClientConfig::new(
            capabilities,
            Implementation::new("asyncmcp", env!("CARGO_PKG_VERSION")),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rmcp::model::{NumberOrString, ProgressToken};

    fn update(
        progress: f64,
        total: Option<f64>,
        message: Option<&str>,
    ) -> ProgressNotificationParam {
        let mut update =
            ProgressNotificationParam::new(ProgressToken(NumberOrString::Number(0)), progress);
        update.total = total;
        update.message = message.map(str::to_owned);
        update
    }

    #[test]
    fn the_bar_moves_only_on_a_usable_total() {
        assert_eq!(fraction(1.0, Some(4.0)), Some(0.25));
        assert_eq!(fraction(9.0, Some(4.0)), Some(1.0), "capped");
        assert_eq!(fraction(-1.0, Some(4.0)), Some(0.0), "floored");
        assert_eq!(fraction(f64::NAN, Some(4.0)), Some(0.0));
        assert_eq!(fraction(1.0, None), None);
        assert_eq!(fraction(1.0, Some(0.0)), None);
        assert_eq!(fraction(1.0, Some(f64::INFINITY)), None);
    }

    #[test]
    fn the_label_is_short_and_safe() {
        assert_eq!(
            label(&update(3.0, Some(4.0), Some("slept 750 of 1000 ms"))),
            "3/4 slept 750 of 1000 ms"
        );
        assert_eq!(label(&update(0.5, None, None)), "0.5");
        let hostile = format!("\u{1b}]0;title\u{7}{}", "x".repeat(500));
        let shown = label(&update(1e300, Some(f64::NAN), Some(&hostile)));
        assert!(shown.starts_with("1.000e300/NaN "), "{shown}");
        assert!(!shown.chars().any(char::is_control), "{shown:?}");
        assert!(shown.len() < 200, "cut short: {}", shown.len());
    }
}
