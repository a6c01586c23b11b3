//! `serve --tasks`: the wrapped server's tool calls as durable tasks.
//!
//! The library does the work ([`QueueServerBuilder::tasks`]): a `tools/call`
//! from a client that declares the tasks extension (MCP 2026-07-28) is
//! answered at once with a task, runs through the [`Forwarder`] as any call
//! would, and its progress becomes the task's status message; `tasks/get`,
//! `tasks/update` and `tasks/cancel` are answered from the task store. The
//! wrapped server needs no change and never sees the extension. Clients that
//! do not declare it get ordinary results from the same `serve`.
//!
//! This module turns the flags into [`TaskSettings`]. The store is named by
//! `--task-store` (the library's [`StoreSpec`]): `memory`, `sqlite:PATH` or
//! `s3://BUCKET/PREFIX`.
//!
//! # What a sender can do with it
//!
//! Whoever can send to the request queue can already call every tool; with
//! tasks they can also make the result of each call they start be kept in
//! the store until `--task-ttl` passes. With the memory store that is this
//! process's memory: at most `--max-in-flight` tasks run at once, but ended
//! ones are kept (each result up to 1 MiB) until their TTL, so a sender
//! that starts many tasks grows the process by their results until then.
//! Keep `--task-ttl` as short as callers need and signatures required
//! (`--require-signatures`) where senders are not all trusted. A task
//! belongs to the connection (`ClientId`) that started it: another sender
//! cannot read, answer or cancel it, whatever id it names (the library
//! answers them as for an unknown task).
//!
//! [`QueueServerBuilder::tasks`]: asyncmcp::server::QueueServerBuilder::tasks
//! [`Forwarder`]: crate::bridge::Forwarder

use std::time::Duration;

use asyncmcp::tasks::{STORE_FORMS, StoreSpec, TaskSettings, TaskStoreError};

/// The task flags of `serve`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct TaskArgs {
    /// Run tool calls as durable tasks for clients that declare the tasks
    /// extension (MCP 2026-07-28): they get a task at once and poll it;
    /// other clients get ordinary results. The server needs no change.
    #[arg(long, env = "ASYNCMCP_TASKS")]
    tasks: bool,
    /// Only calls of these tools become tasks (comma-separated or
    /// repeated; implies --tasks) [default: every tool].
    #[arg(
        long,
        env = "ASYNCMCP_TASK_TOOLS",
        value_name = "NAME,...",
        value_delimiter = ','
    )]
    task_tools: Vec<String>,
    /// Where tasks and their results are kept: `memory`, in this process
    /// only (with several serve replicas on one queue, a task is known only
    /// to the replica that took its call); `sqlite:PATH`, a file shared by
    /// the replicas of one machine, surviving restarts; `s3://BUCKET/PREFIX`,
    /// replicas anywhere (AWS settings of the environment) [default: memory].
    #[arg(long, env = "ASYNCMCP_TASK_STORE", value_name = "STORE", value_parser = parse_store)]
    task_store: Option<StoreSpec>,
    /// How long a task and its result are kept from its start (seconds, or
    /// e.g. `30m`, `2h`); a task still running then fails [default: 1h].
    #[arg(long, env = "ASYNCMCP_TASK_TTL", value_name = "SECS", value_parser = parse_ttl)]
    task_ttl: Option<Duration>,
}

/// The default `--task-ttl`.
const DEFAULT_TTL: Duration = Duration::from_secs(60 * 60);

/// Task flags that cannot be used.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TaskFlagsError {
    /// A task setting without `--tasks` or `--task-tools`.
    #[error("{0} needs --tasks (or --task-tools)")]
    WithoutTasks(&'static str),
    /// `--task-tools` names no tool.
    #[error("--task-tools names no tool")]
    NoTools,
}

/// Tasks as `serve` runs them: the store to open, the tools, the TTL.
#[derive(Debug)]
pub(crate) struct Tasks {
    /// The store, opened by [`open`](Self::open); named on the ready line.
    pub(crate) store: StoreSpec,
    /// The tools whose calls become tasks (empty: every tool).
    tools: Vec<String>,
    ttl: Duration,
}

impl Tasks {
    /// Whether calls of `tool` become tasks.
    #[cfg(test)]
    fn covers(&self, tool: &str) -> bool {
        self.tools.is_empty() || self.tools.iter().any(|name| name == tool)
    }

    /// Opens the store: the settings for
    /// [`QueueServerBuilder::tasks`](asyncmcp::server::QueueServerBuilder::tasks).
    pub(crate) async fn open(self) -> Result<TaskSettings, TaskStoreError> {
        let store = self.store.open().await?;
        let mut settings = TaskSettings::shared(store).ttl(Some(self.ttl));
        if !self.tools.is_empty() {
            settings = settings.tools(self.tools);
        }
        Ok(settings)
    }
}

impl TaskArgs {
    /// The task settings, or `None` when tasks are off.
    pub(crate) fn settings(&self) -> Result<Option<Tasks>, TaskFlagsError> {
        let tools: Vec<String> = self
            .task_tools
            .iter()
            .map(|name| name.trim())
            .filter(|name| !name.is_empty())
            .map(str::to_owned)
            .collect();
        if !self.tasks && self.task_tools.is_empty() {
            if self.task_store.is_some() {
                return Err(TaskFlagsError::WithoutTasks("--task-store"));
            }
            if self.task_ttl.is_some() {
                return Err(TaskFlagsError::WithoutTasks("--task-ttl"));
            }
            return Ok(None);
        }
        if !self.task_tools.is_empty() && tools.is_empty() {
            return Err(TaskFlagsError::NoTools);
        }
        Ok(Some(Tasks {
            store: self.task_store.clone().unwrap_or(StoreSpec::Memory),
            tools,
            ttl: self.task_ttl.unwrap_or(DEFAULT_TTL),
        }))
    }
}

/// `--task-store`: one of [`STORE_FORMS`].
fn parse_store(text: &str) -> Result<StoreSpec, String> {
    text.parse::<StoreSpec>()
        .map_err(|_| format!("accepted: {STORE_FORMS}"))
}

/// `--task-ttl`: whole seconds, or a duration such as `90s`, `30m`, `2h`;
/// at least a second.
fn parse_ttl(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let ttl = match text.parse::<u64>() {
        Ok(seconds) => Duration::from_secs(seconds),
        Err(_) => humantime::parse_duration(text)
            .map_err(|error| format!("seconds, or a duration such as `30m`: {error}"))?,
    };
    if ttl < Duration::from_secs(1) {
        return Err("at least one second".to_owned());
    }
    Ok(ttl)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        tasks: TaskArgs,
    }

    fn settings(args: &[&str]) -> Result<Option<Tasks>, String> {
        let mut full = vec!["serve"];
        full.extend_from_slice(args);
        let cli = Cli::try_parse_from(full).map_err(|error| error.to_string())?;
        cli.tasks.settings().map_err(|error| error.to_string())
    }

    #[test]
    fn tasks_are_off_unless_asked_for() {
        assert!(settings(&[]).expect("no flags").is_none());
        for flag in [&["--task-store", "memory"][..], &["--task-ttl", "60"][..]] {
            let refused = settings(flag).expect_err("a task setting alone");
            assert!(refused.contains("needs --tasks"), "{refused}");
        }
    }

    #[test]
    fn tasks_cover_every_tool_or_the_named_ones() {
        let all = settings(&["--tasks"]).expect("ok").expect("on");
        assert_eq!(all.store, StoreSpec::Memory);
        assert!(all.covers("anything"));
        let some = settings(&["--task-tools", "slow, slower", "--task-tools=other"])
            .expect("ok")
            .expect("implied by --task-tools");
        for tool in ["slow", "slower", "other"] {
            assert!(some.covers(tool), "{tool}");
        }
        assert!(!some.covers("fast"));
        let empty = settings(&["--task-tools", " , "]).expect_err("no tool");
        assert!(empty.contains("names no tool"), "{empty}");
    }

    #[test]
    fn the_store_and_ttl_are_checked() {
        let unknown = settings(&["--tasks", "--task-store", "redis://x"]).expect_err("unknown");
        assert!(unknown.contains("accepted: `memory`"), "{unknown}");
        assert!(settings(&["--tasks", "--task-ttl", "0"]).is_err());
        assert!(settings(&["--tasks", "--task-ttl", "soon"]).is_err());
        assert_eq!(parse_ttl("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_ttl("2h"), Ok(Duration::from_secs(7200)));
        let on = settings(&["--tasks", "--task-ttl", "30m"])
            .expect("ok")
            .expect("on");
        assert_eq!(on.ttl, Duration::from_secs(1800));
        let sqlite = settings(&["--tasks", "--task-store", "sqlite:/tmp/t.db"])
            .expect("ok")
            .expect("on");
        assert_eq!(sqlite.store, StoreSpec::Sqlite("/tmp/t.db".into()));
    }
}
