//! `asyncmcp call`: one `tools/call` to a queue-backed server, its result
//! (the `CallToolResult`) as JSON on stdout.
//!
//! The arguments are checked to be a JSON object before anything is sent.
//! Progress notifications draw a bar on stderr when it is a terminal. A stop
//! (`--timeout`, SIGINT, SIGTERM) during the call sends the server
//! `notifications/cancelled` for it. Exit codes: see [`exit`](crate::exit).
//!
//! # Tasks
//!
//! With `--task` the command declares the tasks extension, so that a server
//! may run the call as a task, which [`task`](crate::task) follows to its
//! end. Declaring it takes MCP 2026-07-28, which starts with
//! `server/discover` instead of `initialize`; the session falls back to
//! `initialize` when the server does not know `server/discover` (an older
//! server answers it with an error), and the call is then an ordinary one.
//! It is a flag, not automatic, because an older server that drops unknown
//! requests instead of answering them would cost every call rmcp's 10 s
//! wait before the fallback, and because a task outlives the connection
//! that started it: a call that is not a task ends with the command, which
//! is what scripts calling it today rely on.

use std::io::Read;
use std::time::Duration;

use rmcp::model::ProtocolVersion;
use rmcp::model::{
    CallToolRequest, CallToolRequestParams, CallToolResult, CancelledNotificationParam,
    ClientRequest, JsonObject, RequestId, ServerResult,
};
use rmcp::service::{ClientLifecycleMode, PeerRequestOptions};
use rmcp::{Peer, RoleClient};

use crate::connect::{ConnectArgs, environment_help};
use crate::exit::{Done, Failure};
use crate::output;
use crate::progress::{Progress, ProgressClient};
use crate::session::{Session, Stop, request_failure};

/// How long telling the server that a stopped call is cancelled may take.
const CANCEL_LIMIT: Duration = Duration::from_secs(5);

/// Calls one tool.
#[derive(Debug, clap::Args)]
#[command(after_help = concat!(
    "Examples:\n  \
     asyncmcp call --queue-url https://sqs.us-east-1.amazonaws.com/123456789012/mcp-requests \\\n    \
     add '{\"a\": 2, \"b\": 3}' | jq -r '.content[0].text'\n  \
     echo '{\"text\": \"hi\"}' | asyncmcp call --topic-arn arn:aws:sns:us-east-1:123456789012:mcp echo -\n  \
     asyncmcp call --task --timeout 2h render '{\"scene\": \"castle\"}' > result.json\n\n\
     Exit codes: 0 success; 1 AWS, transport or JSON-RPC error (on stderr), or a task that \
     failed, was cancelled or needs input; 2 bad usage or arguments (nothing sent); 3 the tool \
     reported an error (isError: true; the result is on stdout); 124 --timeout passed (the call \
     or task is cancelled); 130 SIGINT; 143 SIGTERM.\n\n",
    environment_help!()
))]
pub(crate) struct CallArgs {
    #[command(flatten)]
    connect: ConnectArgs,

    /// The tool to call.
    tool: String,

    /// Its arguments: a JSON object, or `-` to read it from stdin [default:
    /// none].
    #[arg(value_name = "JSON")]
    arguments: Option<String>,

    /// Let the server run the call as a task (MCP 2026-07-28 tasks
    /// extension; an older server answers as usual): `task <id>` is said on
    /// stderr, the task is polled to its end with its status message shown,
    /// and its result printed as a call's. --timeout, SIGINT and SIGTERM
    /// cancel the task.
    #[arg(long)]
    task: bool,
}

/// Runs `asyncmcp call`.
pub(crate) async fn run(args: CallArgs) -> Result<Done, Failure> {
    let target = args.connect.target()?;
    let arguments = match args.arguments.as_deref() {
        None => None,
        Some("-") => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|error| {
                    Failure::Usage(format!("cannot read the arguments from stdin: {error}"))
                })?;
            Some(parse_arguments(&text)?)
        }
        Some(text) => Some(parse_arguments(text)?),
    };
    let progress = Progress::on_stderr();
    let mut session = if args.task {
        let lifecycle = ClientLifecycleMode::Auto {
            preferred_versions: vec![ProtocolVersion::V_2026_07_28],
            legacy_version: None,
        };
        let client = ProgressClient::declaring_tasks(progress.clone());
        Session::open_with(target, client, lifecycle).await?
    } else {
        Session::open(target, ProgressClient::new(progress.clone())).await?
    };
    let called = call(&mut session, &args.tool, arguments, &progress).await;
    progress.finish();
    let outcome = called.and_then(|result| {
        output::print_json(&result)?;
        Ok(if result.is_error == Some(true) {
            Done::ToolError
        } else {
            Done::Success
        })
    });
    session.finish(outcome).await
}

/// The tool's arguments: a JSON object.
fn parse_arguments(text: &str) -> Result<JsonObject, Failure> {
    let value: serde_json::Value = serde_json::from_str(text)
        .map_err(|error| Failure::Usage(format!("the arguments are not valid JSON: {error}")))?;
    match value {
        serde_json::Value::Object(object) => Ok(object),
        other => Err(Failure::Usage(format!(
            "the arguments must be a JSON object, like '{{\"a\": 1}}', not {}",
            kind(&other)
        ))),
    }
}

/// What kind of JSON value `value` is, for a message.
fn kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// Calls `tool` and waits for its result; a stop cancels the call.
async fn call(
    session: &mut Session<ProgressClient>,
    tool: &str,
    arguments: Option<JsonObject>,
    progress: &Progress,
) -> Result<CallToolResult, Failure> {
    let mut params = CallToolRequestParams::new(tool.to_owned());
    if let Some(arguments) = arguments {
        params = params.with_arguments(arguments);
    }
    let request = ClientRequest::CallToolRequest(CallToolRequest::new(params));
    let peer = session.peer();
    let handle = session
        .run(peer.send_cancellable_request(request, PeerRequestOptions::no_options()))
        .await
        .map_err(|stop| session.failure(stop))?
        .map_err(|error| request_failure("tools/call", error))?;
    let id = handle.id.clone();
    match session.run(handle.await_response()).await {
        Ok(Ok(ServerResult::CallToolResult(result))) => Ok(result),
        Ok(Ok(ServerResult::InputRequiredResult(_))) => Err(Failure::other(anyhow::anyhow!(
            "the tool asked for input from the user, which `asyncmcp call` cannot give"
        ))),
        Ok(Ok(ServerResult::CreateTaskResult(created))) => {
            crate::task::follow(session, created, progress).await
        }
        Ok(Ok(_)) => Err(Failure::other(anyhow::anyhow!(
            "the server answered tools/call with something other than a tool result"
        ))),
        Ok(Err(error)) => Err(request_failure("tools/call", error)),
        Err(stop) => {
            cancel(&peer, id, stop).await;
            Err(session.failure(stop))
        }
    }
}

/// Tells the server the call `id` is cancelled, so that it stops working on
/// it.
async fn cancel(peer: &Peer<RoleClient>, id: RequestId, stop: Stop) {
    let reason = match stop {
        Stop::Signal(signal) => format!("the caller was stopped by {signal}"),
        Stop::Deadline => "the caller's --timeout passed".to_owned(),
    };
    let cancelled = CancelledNotificationParam::new(Some(id), Some(reason));
    match tokio::time::timeout(CANCEL_LIMIT, peer.notify_cancelled(cancelled)).await {
        Ok(Ok(())) => tracing::info!("told the server the call is cancelled"),
        Ok(Err(error)) => tracing::warn!(%error, "could not tell the server the call is cancelled"),
        Err(_) => tracing::warn!("could not tell the server the call is cancelled in time"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_must_be_a_json_object() {
        let object = parse_arguments(r#"{"a": 2, "b": 3}"#).expect("an object");
        assert_eq!(object["a"], 2);
        for (text, says) in [
            (r#"{"a": 2"#, "not valid JSON"),
            ("[1, 2]", "not an array"),
            ("3", "not a number"),
            ("", "not valid JSON"),
        ] {
            match parse_arguments(text) {
                Err(Failure::Usage(message)) => {
                    assert!(message.contains(says), "{text}: {message}")
                }
                other => panic!("{text}: {other:?}"),
            }
        }
    }
}
