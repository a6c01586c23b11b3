//! `asyncmcp setup`: creates what a deployment needs, idempotently.
//!
//! The request queue with its dead-letter queue and redrive count
//! ([`create_queue_with_dead_letter`]); with `--topic`, a request topic and
//! the queue's subscription to it with raw delivery and the queue policy
//! that lets the topic write ([`subscribe_queue`]); with `--reply-topic`, a
//! reply topic shared by clients; with `--reply-queue`, a reply queue shared
//! by clients. Everything made exists afterwards as asked; what existed
//! already is left as it is (a queue or topic with other attributes is not
//! changed, with a warning), so a second run changes nothing and prints the
//! same.
//!
//! The result goes to stdout as `ASYNCMCP_*=value` lines, named after the
//! variables the other subcommands read (a file a shell can source), or as
//! one JSON object with `--json`.

use std::process::ExitCode;

use anyhow::{Context, bail};
use asyncmcp::queue::is_fifo;
use asyncmcp::queue::sns::{self, SnsTopicOptions, SubscriptionOptions, subscribe_queue};
use asyncmcp::queue::sqs::{self, SqsQueueOptions, create_queue_with_dead_letter};
use clap::builder::BoolishValueParser;

use crate::aws;

const EXAMPLES: &str = "\
Examples:
  # The SQS demo on LocalStack (localstack/start.sh makes it):
  export AWS_ENDPOINT_URL=http://localhost:4566
  asyncmcp setup --queue mcp-requests --reply-queue mcp-responses

  # A request topic the queue is subscribed to, and a shared reply topic:
  asyncmcp setup --queue mcp-sns-requests --topic mcp-requests-topic \\
      --reply-topic mcp-replies-topic --json

  # FIFO, dead-lettering after 3 receives; the settings kept for later commands:
  asyncmcp setup --queue orders.fifo --fifo --max-receive-count 3 > deploy.env
  set -a; . ./deploy.env; set +a      # ASYNCMCP_QUEUE_URL, ASYNCMCP_DLQ_URL, ...

AWS settings come from the usual chain (AWS_ENDPOINT_URL, AWS_REGION, AWS_PROFILE, roles).";

/// Creates, idempotently, the queues and topics a deployment needs, and
/// prints their URLs and ARNs.
#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub(crate) struct Args {
    /// The request queue's name. Its dead-letter queue is NAME-dlq
    /// (X-dlq.fifo for a FIFO queue X.fifo).
    #[arg(long, env = "ASYNCMCP_QUEUE", value_name = "NAME")]
    queue: String,

    /// Make the request queue and its dead-letter queue FIFO queues (their
    /// names end in .fifo; a request topic must be FIFO too).
    #[arg(long, env = "ASYNCMCP_FIFO", value_parser = BoolishValueParser::new())]
    fifo: bool,

    /// Receives of a request after which SQS moves it to the dead-letter
    /// queue.
    #[arg(
        long,
        env = "ASYNCMCP_MAX_RECEIVE_COUNT",
        value_name = "N",
        default_value_t = 5,
        value_parser = clap::value_parser!(u32).range(1..=1000)
    )]
    max_receive_count: u32,

    /// Also a request topic of this name, with the request queue subscribed
    /// to it (raw delivery; the queue policy lets the topic write). FIFO
    /// when the name ends in .fifo.
    #[arg(long, env = "ASYNCMCP_TOPIC", value_name = "NAME")]
    topic: Option<String>,

    /// Also a reply topic of this name, for clients to share (each
    /// subscribes its own queue). FIFO when the name ends in .fifo.
    #[arg(long, env = "ASYNCMCP_REPLY_TOPIC", value_name = "NAME")]
    reply_topic: Option<String>,

    /// Also a reply queue of this name, for clients to share. FIFO when the
    /// name ends in .fifo.
    #[arg(long, env = "ASYNCMCP_REPLY_QUEUE", value_name = "NAME")]
    reply_queue: Option<String>,

    /// Print one JSON object instead of KEY=value lines.
    #[arg(long)]
    json: bool,
}

/// What was made, in the order made: (name, URL or ARN). The names are
/// the JSON keys; the KEY=value lines say `ASYNCMCP_` and the name in
/// capitals.
type Made = Vec<(&'static str, String)>;

pub(crate) async fn run(args: Args) -> anyhow::Result<ExitCode> {
    check(&args)?;
    let clients = aws::clients().await;
    let made = make(&args, &clients).await?;
    if args.json {
        let object: serde_json::Map<String, serde_json::Value> = made
            .into_iter()
            .map(|(key, value)| (key.to_owned(), value.into()))
            .collect();
        println!("{}", crate::safe::json(&object)?);
    } else {
        for (key, value) in &made {
            println!("ASYNCMCP_{}={}", key.to_uppercase(), shell_word(value));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Refuses, before any call, names that cannot make what is asked.
fn check(args: &Args) -> anyhow::Result<()> {
    match (args.fifo, is_fifo(&args.queue)) {
        (true, false) => bail!(
            "--fifo: a FIFO queue's name ends in .fifo (got {:?})",
            args.queue
        ),
        (false, true) => bail!(
            "queue {:?} is named as a FIFO queue: add --fifo, or drop the .fifo",
            args.queue
        ),
        _ => {}
    }
    if let Some(topic) = &args.topic
        && args.fifo
        && !is_fifo(topic)
    {
        bail!("--topic {topic:?}: a FIFO queue can subscribe only to a FIFO topic (named X.fifo)");
    }
    Ok(())
}

async fn make(args: &Args, clients: &aws::Clients) -> anyhow::Result<Made> {
    let mut made = Made::new();
    let options = SqsQueueOptions::default().with_fifo(args.fifo);
    let (queue_url, dead_letter_url) =
        create_queue_with_dead_letter(&clients.sqs, &args.queue, &options, args.max_receive_count)
            .await
            .with_context(|| {
                format!("creating queue {:?} and its dead-letter queue", args.queue)
            })?;
    made.push(("queue_url", queue_url.clone()));
    made.push(("dlq_url", dead_letter_url));

    if let Some(topic) = &args.topic {
        let topic_arn = create_topic(clients, topic).await?;
        let raw = SubscriptionOptions::default().with_raw_message_delivery(true);
        let subscription =
            subscribe_queue(&clients.sns, &clients.sqs, &topic_arn, &queue_url, &raw)
                .await
                .with_context(|| {
                    format!("subscribing queue {:?} to topic {topic:?}", args.queue)
                })?;
        made.push(("topic_arn", topic_arn));
        made.push(("subscription_arn", subscription));
    }
    if let Some(topic) = &args.reply_topic {
        made.push(("reply_topic_arn", create_topic(clients, topic).await?));
    }
    if let Some(queue) = &args.reply_queue {
        let options = SqsQueueOptions::default().with_fifo(is_fifo(queue));
        let url = sqs::create_queue(&clients.sqs, queue, &options)
            .await
            .with_context(|| format!("creating queue {queue:?}"))?;
        made.push(("reply_queue_url", url));
    }
    Ok(made)
}

/// Creates topic `name` (FIFO when the name says so); its ARN.
async fn create_topic(clients: &aws::Clients, name: &str) -> anyhow::Result<String> {
    let options = SnsTopicOptions::default().with_fifo(is_fifo(name));
    sns::create_topic(&clients.sns, name, &options)
        .await
        .with_context(|| format!("creating topic {name:?}"))
}

/// `value` as one shell word: as it is when it holds only characters no
/// shell treats specially (any URL or ARN AWS hands out), else in single
/// quotes, so that sourcing the output never runs anything.
fn shell_word(value: &str) -> String {
    let plain = !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"%+,-./:=@_".contains(&b));
    if plain {
        value.to_owned()
    } else {
        format!("'{}'", value.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    fn parse(argv: &[&str]) -> Result<Args, clap::Error> {
        Cli::try_parse_from(std::iter::once("setup").chain(argv.iter().copied())).map(|c| c.args)
    }

    #[test]
    fn urls_and_arns_stay_plain_and_the_rest_is_quoted() {
        for plain in [
            "http://localhost:4566/queue/us-east-1/000000000000/mcp-requests",
            "arn:aws:sns:us-east-1:000000000000:t.fifo:5f1c-9a",
        ] {
            assert_eq!(shell_word(plain), plain);
        }
        assert_eq!(shell_word("a b"), "'a b'");
        assert_eq!(shell_word("$(rm -rf ~)"), "'$(rm -rf ~)'");
        assert_eq!(shell_word("it's"), r"'it'\''s'");
        assert_eq!(shell_word(""), "''");
    }

    #[test]
    fn fifo_names_and_the_flag_must_agree() {
        let ok = parse(&["--queue", "q.fifo", "--fifo", "--topic", "t.fifo"]).expect("parses");
        assert!(check(&ok).is_ok());
        for argv in [
            &["--queue", "q", "--fifo"][..],
            &["--queue", "q.fifo"],
            &["--queue", "q.fifo", "--fifo", "--topic", "t"],
        ] {
            let args = parse(argv).expect("parses");
            assert!(check(&args).is_err(), "{argv:?}");
        }
        // A standard queue may subscribe to a FIFO topic.
        assert!(check(&parse(&["--queue", "q", "--topic", "t.fifo"]).expect("parses")).is_ok());
    }

    #[test]
    fn the_receive_count_is_bounded_and_defaults_to_five() {
        assert_eq!(
            parse(&["--queue", "q"]).expect("parses").max_receive_count,
            5
        );
        assert!(parse(&["--queue", "q", "--max-receive-count", "0"]).is_err());
        assert!(parse(&["--queue", "q", "--max-receive-count", "1001"]).is_err());
    }
}
