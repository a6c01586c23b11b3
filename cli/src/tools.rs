//! `asyncmcp tools`: the tools of a queue-backed server, every page of
//! `tools/list`, as one JSON object `{"tools": [...]}` on stdout.
//!
//! A server could page without end (a new cursor every time, or the same one
//! again): a cursor seen before ends the listing with an error, and so does
//! the [`MAX_PAGES`]th page. Exit codes: see [`exit`](crate::exit).

use std::collections::HashSet;

use rmcp::model::{PaginatedRequestParams, Tool};

use crate::connect::{ConnectArgs, environment_help};
use crate::exit::{Done, Failure};
use crate::output;
use crate::progress::{Progress, ProgressClient};
use crate::session::{Session, request_failure};

/// The most pages of `tools/list` read.
const MAX_PAGES: usize = 1000;

/// Lists the server's tools.
#[derive(Debug, clap::Args)]
#[command(after_help = concat!(
    "Examples:\n  \
     asyncmcp tools --queue-url https://sqs.us-east-1.amazonaws.com/123456789012/mcp-requests \\\n    \
     | jq -r '.tools[].name'\n  \
     asyncmcp tools --topic-arn arn:aws:sns:us-east-1:123456789012:mcp-requests\n\n\
     Exit codes: 0 success; 1 AWS, transport or JSON-RPC error (on stderr); 2 bad usage; \
     124 --timeout passed; 130 SIGINT; 143 SIGTERM.\n\n",
    environment_help!()
))]
pub(crate) struct ToolsArgs {
    #[command(flatten)]
    connect: ConnectArgs,
}

/// Runs `asyncmcp tools`.
pub(crate) async fn run(args: ToolsArgs) -> Result<Done, Failure> {
    let target = args.connect.target()?;
    let mut session = Session::open(target, ProgressClient::new(Progress::hidden())).await?;
    let outcome = list(&mut session).await.and_then(|tools| {
        output::print_json(&serde_json::json!({ "tools": tools }))?;
        Ok(Done::Success)
    });
    session.finish(outcome).await
}

/// Every page of `tools/list`.
async fn list(session: &mut Session<ProgressClient>) -> Result<Vec<Tool>, Failure> {
    let peer = session.peer();
    let mut tools = Vec::new();
    let mut cursor = None;
    let mut seen = HashSet::new();
    for _ in 0..MAX_PAGES {
        let params = PaginatedRequestParams::default().with_cursor(cursor);
        let page = session
            .run(peer.list_tools(Some(params)))
            .await
            .map_err(|stop| session.failure(stop))?
            .map_err(|error| request_failure("tools/list", error))?;
        tools.extend(page.tools);
        match page.next_cursor {
            None => return Ok(tools),
            Some(next) if !seen.insert(next.clone()) => {
                return Err(Failure::other(anyhow::anyhow!(
                    "the server gave the same tools/list cursor twice; {} tools so far",
                    tools.len()
                )));
            }
            Some(next) => cursor = Some(next),
        }
    }
    Err(Failure::other(anyhow::anyhow!(
        "the server's tool list goes on past {MAX_PAGES} pages; {} tools so far",
        tools.len()
    )))
}
