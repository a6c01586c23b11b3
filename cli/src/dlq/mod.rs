//! `asyncmcp dlq show|redrive`: the requests in a dead-letter queue.
//!
//! * `show` lists them ([`Record`]: reason, receive count, method, caller)
//!   and leaves them in place: each is received, held while the queue is
//!   read to its end, then made visible again.
//! * `redrive` sends each back to the request queue without what the
//!   server added (see [`held::send_copy`]) and deletes it from the
//!   dead-letter queue only once the send succeeded; a failure stops the
//!   run and leaves the rest where it was. A message the same as one already
//!   sent back in this run (a duplicate copy, or a request that failed
//!   again at once) is left in the queue, so that nothing goes round in a
//!   loop.
//!
//! Everything printed from a message is escaped (see [`crate::safe`]).

mod held;
mod record;

use std::collections::HashSet;
use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, bail};
use asyncmcp::queue::{is_queue_url, sqs};
use aws_sdk_sqs::types::Message;
use clap::Subcommand;

use crate::{aws, safe};
use held::Held;
use record::Record;

/// The examples of `asyncmcp dlq --help`.
pub(crate) const EXAMPLES: &str = "\
Examples:
  export ASYNCMCP_DLQ_URL=http://localhost:4566/queue/us-east-1/000000000000/mcp-requests-dlq
  asyncmcp dlq show
  asyncmcp dlq redrive --to http://localhost:4566/queue/us-east-1/000000000000/mcp-requests";

const SHOW_EXAMPLES: &str = "\
Examples:
  asyncmcp dlq show --queue-url http://localhost:4566/queue/us-east-1/000000000000/mcp-requests-dlq
  asyncmcp dlq show --json | jq -a '.[] | {method, client_id, reason}'   # -a: ASCII only

On a FIFO dead-letter queue SQS hands out a message group's messages in order only, so at most
the first 10 of each group are listed. Listing receives each message once more (its
ApproximateReceiveCount grows). AWS settings come from the usual chain (AWS_ENDPOINT_URL, ...).";

const REDRIVE_EXAMPLES: &str = "\
Examples:
  asyncmcp dlq redrive \\
      --queue-url http://localhost:4566/queue/us-east-1/000000000000/mcp-requests-dlq \\
      --to http://localhost:4566/queue/us-east-1/000000000000/mcp-requests --max 10

The copies lose DeadLetterReason, ReceiveCount and Signature: a server that requires signed
requests refuses them. The server process that dead-lettered a request answers the same request
sent back within its replay window (5 minutes) from its cache, with the same error.";

/// What to do with a dead-letter queue.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Lists the requests in a dead-letter queue (reason, receive count,
    /// method, caller) and leaves them there.
    #[command(after_help = SHOW_EXAMPLES)]
    Show(ShowArgs),
    /// Sends the requests in a dead-letter queue back to the request queue,
    /// deleting each from the dead-letter queue once it is sent.
    #[command(after_help = REDRIVE_EXAMPLES)]
    Redrive(RedriveArgs),
}

/// Arguments of `dlq show`.
#[derive(Debug, clap::Args)]
pub(crate) struct ShowArgs {
    /// The dead-letter queue's URL.
    #[arg(long, env = "ASYNCMCP_DLQ_URL", value_name = "URL")]
    queue_url: String,

    /// List at most this many messages.
    #[arg(long, value_name = "N", default_value_t = 100,
          value_parser = clap::value_parser!(u32).range(1..))]
    max: u32,

    /// Print a JSON array instead of text.
    #[arg(long)]
    json: bool,
}

/// Arguments of `dlq redrive`.
#[derive(Debug, clap::Args)]
pub(crate) struct RedriveArgs {
    /// The dead-letter queue's URL.
    #[arg(long, env = "ASYNCMCP_DLQ_URL", value_name = "URL")]
    queue_url: String,

    /// The request queue's URL, where the requests go.
    #[arg(long, env = "ASYNCMCP_QUEUE_URL", value_name = "REQUEST_QUEUE_URL")]
    to: String,

    /// Send back at most this many messages (default: all).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    max: Option<u32>,

    /// Print the requests sent back as a JSON array instead of text.
    #[arg(long)]
    json: bool,
}

pub(crate) async fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Show(args) => show(args).await,
        Command::Redrive(args) => redrive(args).await,
    }
}

async fn show(args: ShowArgs) -> anyhow::Result<ExitCode> {
    let client = aws::clients().await.sqs;
    existing(&client, "--queue-url", &args.queue_url).await?;
    let max = args.max as usize;
    let mut queue = Held::new(client, &args.queue_url);
    let mut seen = HashSet::new();
    let mut records = Vec::new();
    let read = async {
        while records.len() < max {
            let batch = queue.receive(max - records.len()).await?;
            // A receive with nothing new (messages held elsewhere show up
            // again after their visibility timeout) ends the listing.
            let before = records.len();
            for message in &batch {
                if seen.insert(message.message_id.clone()) {
                    records.push(Record::of(message));
                }
            }
            if records.len() == before {
                break;
            }
        }
        anyhow::Ok(())
    }
    .await;
    queue.release_all().await;
    read?;
    print(&records, args.json)?;
    eprintln!(
        "{} message(s) in {}, left there",
        records.len(),
        safe::escaped(&args.queue_url)
    );
    Ok(ExitCode::SUCCESS)
}

async fn redrive(args: RedriveArgs) -> anyhow::Result<ExitCode> {
    let client = aws::clients().await.sqs;
    let from = existing(&client, "--queue-url", &args.queue_url).await?;
    let to = existing(&client, "--to", &args.to).await?;
    if from == to {
        bail!("--to names the dead-letter queue itself ({from})");
    }
    let max = args.max.map_or(usize::MAX, |max| max as usize);
    let mut queue = Held::new(client.clone(), &args.queue_url);
    let mut seen = HashSet::new();
    let mut sent = HashSet::new();
    let mut left = 0;
    let mut moved = Vec::new();
    let result = async {
        while moved.len() < max {
            let batch = queue.receive(max - moved.len()).await?;
            let mut new = false;
            for message in &batch {
                if message.receipt_handle.is_none() || !seen.insert(message.message_id.clone()) {
                    continue;
                }
                new = true;
                let digest = held::digest(message);
                if sent.contains(&digest) {
                    left += 1;
                    continue;
                }
                send_back(&client, &mut queue, &args.to, message).await?;
                sent.insert(digest);
                moved.push(Record::of(message));
                if moved.len() == max {
                    break;
                }
            }
            if !new {
                break;
            }
        }
        anyhow::Ok(())
    }
    .await;
    queue.release_all().await;
    // What was moved is printed even when the run stopped early.
    print(&moved, args.json)?;
    eprintln!(
        "sent {} request(s) back to {}",
        moved.len(),
        safe::escaped(&args.to)
    );
    if left > 0 {
        eprintln!(
            "left {left} message(s) in {}: each is the same request as one sent back in this run \
             (a duplicate copy, or a request that failed again)",
            safe::escaped(&args.queue_url)
        );
    }
    result?;
    Ok(ExitCode::SUCCESS)
}

/// Sends `message` to `to`, then deletes it from the dead-letter queue.
async fn send_back(
    client: &aws_sdk_sqs::Client,
    queue: &mut Held,
    to: &str,
    message: &Message,
) -> anyhow::Result<()> {
    let id = safe::shown(message.message_id.as_deref().unwrap_or_default(), 120);
    held::send_copy(client, to, message)
        .await
        .with_context(|| format!("sending message {id} back; it stays in the dead-letter queue"))?;
    queue.delete(message).await.with_context(|| {
        format!(
            "message {id} was sent back but could not be deleted from the dead-letter queue: \
             a later redrive sends it again"
        )
    })
}

/// Checks that `url` (given as `flag`) is a queue URL and that the queue
/// exists, before anything is received; its ARN.
async fn existing(client: &aws_sdk_sqs::Client, flag: &str, url: &str) -> anyhow::Result<String> {
    if !is_queue_url(url) {
        bail!(
            "{flag} \"{}\" is not an SQS queue URL (like https://sqs.us-east-1.amazonaws.com/123456789012/name \
             or http://localhost:4566/queue/us-east-1/000000000000/name)",
            safe::shown(url, 200)
        );
    }
    sqs::queue_arn(client, url)
        .await
        .with_context(|| format!("{flag} {}", safe::shown(url, 200)))
}

/// Prints `records` on stdout: text, or a JSON array.
fn print(records: &[Record], json: bool) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(out, "{}", safe::json(&records)?)?;
    } else {
        record::write_all(records, &mut out)?;
    }
    out.flush()?;
    Ok(())
}
