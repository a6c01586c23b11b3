//! `asyncmcp batch`: many `tools/call`s from a JSON-lines file, one result
//! line per key in another, resumable after a crash or a stop.
//!
//! The library's [`Batch`] does the queue work (stateless calls, request ids
//! derived from the keys, answers deleted only once kept); this command
//! keeps the two files of [`files`] and decides what a resumed run does:
//!
//! * keys with a result line are done: never sent again;
//! * keys noted `sending` in the state file may have been sent: they are
//!   reattached (their answers are awaited, not asked for again). Only once
//!   no answer to such a key has come for `--resend-after` are those still
//!   unanswered sent again: they were most likely never sent (the process
//!   died between noting and sending), and a server replica that did answer
//!   one in its replay window answers from its cache rather than run it
//!   again. Another replica would run it again: this is the one case where a
//!   tool may run twice, and only for a call whose first run has not
//!   answered for that long;
//! * the rest are sent, in input order, at most `--in-flight` pending.
//!
//! Ctrl-C or SIGTERM stops at once (exit 130, 143): what was written stays,
//! answers received and not written come back to the next run. A run that
//! ends with every key written removes the state file and the reply queue
//! it created.

mod files;
mod input;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use asyncmcp::client::batch::{self, Batch, Submitter};
use asyncmcp::queue::sqs;
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::connect::{parse_client_id, parse_queue_url, signing_keys};
use crate::signals::Signals;
use files::{AppendLog, Header};
use input::Line;

/// The visibility timeout of a reply queue the command creates: how long an
/// answer received by a run that died before writing it stays hidden.
const REPLY_VISIBILITY: Duration = Duration::from_secs(20);

/// The long poll of a reply queue: closing a run on a queue it did not
/// create waits for the poll under way (what it takes must be given back).
const SHARED_REPLY_QUEUE_WAIT: Duration = Duration::from_secs(5);

/// The state file format's version.
const STATE_VERSION: u32 = 1;

/// Most answers written in one group.
const WRITE_GROUP: usize = 512;

/// Runs many tool calls from a file.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  asyncmcp batch --queue-url \"$ASYNCMCP_QUEUE_URL\" --in calls.jsonl --out results.jsonl
  asyncmcp batch --queue-url \"$ASYNCMCP_QUEUE_URL\" --in calls.jsonl --out results.jsonl --resume

Input, one call per line:  {\"key\": \"a1\", \"tool\": \"add\", \"arguments\": {\"a\": 1, \"b\": 2}}
Output, one line per key:  {\"key\": \"a1\", \"result\": {...}}  or  {\"key\": \"a1\", \"error\": {...}}

The state of a run is kept in OUT.state (the reply queue and ClientId): after a crash,
Ctrl-C or SIGTERM, run the same command with --resume. Nothing answered is run again.

Exit codes: 0 every key has its result line; 1 AWS, file or transport failure (resume
later); 2 bad usage or input (nothing sent); 130 SIGINT; 143 SIGTERM.

Environment:
  ASYNCMCP_SIGNING_KEY, ASYNCMCP_SIGNING_KEY_PREVIOUS  sign requests; answers without a
                                  valid signature are dropped
  ASYNCMCP_LOG                   log filter on stderr (default `warn`)
  AWS_ENDPOINT_URL, AWS_REGION, AWS_PROFILE, ...  AWS settings, from the usual chain")]
pub(crate) struct BatchArgs {
    /// The server's request queue (an SQS queue URL).
    #[arg(long, env = "ASYNCMCP_QUEUE_URL", value_name = "URL", value_parser = parse_queue_url)]
    queue_url: String,

    /// The calls, one JSON object per line.
    #[arg(long = "in", value_name = "FILE")]
    input: PathBuf,

    /// The results, one JSON line per key; with OUT.state beside it while
    /// the run is unfinished.
    #[arg(long = "out", value_name = "FILE")]
    output: PathBuf,

    /// The most calls pending at once.
    #[arg(long, env = "ASYNCMCP_IN_FLIGHT", value_name = "N", default_value_t = 64,
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    in_flight: u32,

    /// Finish an earlier run of the same --in and --out.
    #[arg(long)]
    resume: bool,

    /// Receive answers on this existing queue (left in place) instead of
    /// one created for the run and deleted when it finishes. Not shared with
    /// another run at the same time unless their client ids differ.
    #[arg(long, env = "ASYNCMCP_REPLY_QUEUE_URL", value_name = "URL", value_parser = parse_queue_url)]
    reply_queue_url: Option<String>,

    /// The name of this run's ClientId (a random suffix is added and kept
    /// in the state file) [default: batch].
    #[arg(long, env = "ASYNCMCP_CLIENT_ID", value_name = "ID", value_parser = parse_client_id)]
    client_id: Option<String>,

    /// On --resume, how long without an answer to a call the earlier run
    /// may have sent before those still unanswered are sent again.
    #[arg(long, value_name = "DURATION", default_value = "60s",
          value_parser = humantime::parse_duration)]
    resend_after: Duration,
}

/// Why the command stopped without finishing.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Stop {
    /// Bad usage or input: nothing was sent.
    #[error("{0}")]
    Usage(String),
    /// A signal.
    #[error("stopped by {0}")]
    Signal(crate::signals::Signal),
    /// Anything else.
    #[error(transparent)]
    Failed(#[from] anyhow::Error),
}

/// Runs `asyncmcp batch`; reports and returns the exit code.
pub(crate) async fn run(args: BatchArgs) -> ExitCode {
    match execute(args).await {
        Ok(code) => code,
        Err(Stop::Usage(message)) => {
            eprintln!("asyncmcp batch: {}", crate::safe::escaped(&message));
            ExitCode::from(2)
        }
        Err(Stop::Signal(signal)) => {
            eprintln!("asyncmcp batch: stopped by {signal}; run it again with --resume to finish");
            ExitCode::from(signal.exit_code())
        }
        Err(Stop::Failed(error)) => {
            let causes: Vec<String> = error.chain().map(ToString::to_string).collect();
            eprintln!(
                "asyncmcp batch: error: {}; what was written stays: finish with --resume",
                crate::safe::escaped(&causes.join(": "))
            );
            ExitCode::FAILURE
        }
    }
}

async fn execute(args: BatchArgs) -> Result<ExitCode, Stop> {
    let text = std::fs::read_to_string(&args.input)
        .map_err(|error| Stop::Usage(format!("cannot read {}: {error}", args.input.display())))?;
    let lines = input::parse(&text)
        .map_err(|error| Stop::Usage(format!("{}: {error}", args.input.display())))?;
    let keys =
        signing_keys(|name| std::env::var(name).ok()).map_err(|e| Stop::Usage(e.to_string()))?;
    let state_path = files::state_path(&args.output);
    let out_exists = std::fs::metadata(&args.output).is_ok_and(|m| m.len() > 0);
    if !args.resume && (out_exists || state_path.exists()) {
        return Err(Stop::Usage(format!(
            "{} exists: pass --resume to finish that run, or remove it (and {}) to start afresh",
            args.output.display(),
            state_path.display()
        )));
    }
    // Locked before either file is read: a torn last line is cut off only
    // when no other run is writing it.
    let state_file = files::open_locked(&state_path)?;
    let mut fresh_state = files::NewStateGuard::new(&state_path);
    let by_id: HashMap<&str, &Line> = lines.iter().map(|l| (l.id.as_str(), l)).collect();
    let mut done: HashSet<String> = HashSet::new();
    for value in files::recover(&args.output)? {
        let id = value.get("key").map(Value::to_string).unwrap_or_default();
        if !by_id.contains_key(id.as_str()) {
            return Err(Stop::Usage(format!(
                "{} has a result for key {}, which {} does not have: not the same run",
                args.output.display(),
                crate::safe::escaped(&id),
                args.input.display()
            )));
        }
        done.insert(id);
    }
    let total = lines.len();
    let state = files::recover(&state_path)?;
    if done.len() == total {
        eprintln!(
            "asyncmcp batch: all {total} keys have results in {}; nothing to send",
            args.output.display()
        );
        if let Some(header) = state.first() {
            finish(serde_json::from_value(header.clone()).ok(), &state_path).await;
        }
        return Ok(ExitCode::SUCCESS);
    }
    if args.resume && state.is_empty() && !done.is_empty() {
        return Err(Stop::Usage(format!(
            "{} is missing: cannot tell which calls the earlier run sent",
            state_path.display()
        )));
    }
    let mut signals = Signals::install().context("cannot catch signals")?;
    let sdk = sqs::sdk_config_from_env().await;
    // Counted, for the summary: what SQS bills.
    let counter = sqs::ApiCallCounter::new();
    let sqs_client = sqs::client_with_counter(&sdk, &counter);
    let started = Instant::now();
    let done_before = done.len();
    let header = match state.first() {
        Some(header) => {
            let header: Header = serde_json::from_value(header.clone()).with_context(|| {
                format!("{}: not a state file of this command", state_path.display())
            })?;
            if header.queue_url != args.queue_url {
                return Err(Stop::Usage(format!(
                    "{} was run against {}, not {}",
                    state_path.display(),
                    header.queue_url,
                    args.queue_url
                )));
            }
            if let Some(url) = args
                .reply_queue_url
                .as_ref()
                .filter(|u| **u != header.reply_queue)
            {
                return Err(Stop::Usage(format!(
                    "{} receives on {}, not {url}",
                    state_path.display(),
                    header.reply_queue
                )));
            }
            header
        }
        None => {
            let (reply_queue, created) = match &args.reply_queue_url {
                Some(url) => (url.clone(), false),
                None => {
                    let name = format!("asyncmcp-batch-{}", uuid_hex());
                    let url = batch::create_reply_queue(&sqs_client, &name, REPLY_VISIBILITY)
                        .await
                        .context("cannot create the reply queue")?;
                    (url, true)
                }
            };
            let name = args.client_id.clone().unwrap_or_else(|| "batch".to_owned());
            Header {
                asyncmcp_batch: STATE_VERSION,
                queue_url: args.queue_url.clone(),
                reply_queue,
                created_reply_queue: created,
                client_id: format!("{name}.{}", &uuid_hex()[..16]),
            }
        }
    };
    let journal = AppendLog::new(state_file, state_path.display().to_string());
    if state.is_empty() {
        journal.append(files::line(&header)).await?;
    }
    fresh_state.keep();
    let sending: HashSet<String> = state
        .iter()
        .skip(1)
        .filter_map(|v| v.get("sending").and_then(Value::as_str).map(str::to_owned))
        .collect();
    let mut builder = Batch::builder(&args.queue_url)
        .client_id(&header.client_id)
        .reply_queue(&header.reply_queue)
        .in_flight(args.in_flight as usize)
        // Closing waits for a poll under way on a queue that may be shared.
        .wait(SHARED_REPLY_QUEUE_WAIT);
    if let Some(keys) = keys {
        builder = builder.signing(keys, true);
    }
    let mut batch = builder
        .connect_sqs(&sqs_client)
        .await
        .context("cannot open the reply queue")?;
    let submitter = batch.submitter();
    let mut reattached: HashSet<String> = HashSet::new();
    for line in &lines {
        if sending.contains(&line.id) && !done.contains(&line.id) {
            submitter
                .reattach(&line.id, &line.call)
                .context("reattaching")?;
            reattached.insert(line.id.clone());
        }
    }
    let fresh: Vec<Line> = lines
        .iter()
        .filter(|l| !done.contains(&l.id) && !reattached.contains(&l.id))
        .cloned()
        .collect();
    if args.resume {
        eprintln!(
            "asyncmcp batch: resuming: {} of {total} keys have results; awaiting {} calls the earlier run sent; {} to send",
            done.len(),
            reattached.len(),
            fresh.len()
        );
    }
    tracing::info!(total, done = done.len(), reattached = reattached.len(), fresh = fresh.len(), client_id = %header.client_id, "batch starting");
    let bar = progress_bar(total as u64, done.len() as u64);
    let out = AppendLog::new(
        files::open_append(&args.output)?,
        args.output.display().to_string(),
    );
    let mut sender = tokio::spawn(send_all(
        submitter.clone(),
        journal.clone(),
        fresh,
        args.in_flight as usize,
    ));
    let result = collect(Collect {
        batch: &mut batch,
        submitter: &submitter,
        lines: &by_id,
        done: &mut done,
        reattached,
        out: &out,
        bar: &bar,
        resend_after: args.resend_after,
        signals: &mut signals,
        total,
        sender: &mut sender,
    })
    .await;
    sender.abort();
    bar.abandon();
    if header.created_reply_queue {
        // The queue is this run's alone: nothing of anyone else's can be
        // caught in a poll under way, and it is deleted below or kept for
        // the next run, which gets back whatever the poll took.
        drop(batch);
    } else {
        batch.close().await;
    }
    result?;
    finish(Some(header), &state_path).await;
    let answered = total - done_before;
    let seconds = started.elapsed().as_secs_f64();
    let api_calls = counter.total();
    eprintln!(
        "asyncmcp batch: all {total} keys have results in {}; this run: {answered} answers in {seconds:.1} s ({:.1} calls/s), {api_calls} SQS API calls ({:.2} per call)",
        args.output.display(),
        answered as f64 / seconds.max(1e-9),
        api_calls as f64 / answered.max(1) as f64,
    );
    Ok(ExitCode::SUCCESS)
}

/// Sends the fresh calls in input order, each noted in the state file
/// before it is sent.
async fn send_all(
    submitter: Submitter,
    journal: AppendLog,
    fresh: Vec<Line>,
    in_flight: usize,
) -> anyhow::Result<()> {
    let submitter = Arc::new(submitter);
    let mut sends = futures::stream::iter(fresh)
        .map(|line| {
            let submitter = submitter.clone();
            let journal = journal.clone();
            async move {
                let reservation = submitter.reserve(&line.id, &line.call).await?;
                journal
                    .append(files::line(&json!({"sending": line.id})))
                    .await?;
                reservation.send().await?;
                anyhow::Ok(())
            }
        })
        .buffered(in_flight.max(1));
    while let Some(sent) = sends.next().await {
        sent?;
    }
    Ok(())
}

/// What [`collect`] works with.
struct Collect<'a> {
    batch: &'a mut Batch,
    submitter: &'a Submitter,
    lines: &'a HashMap<&'a str, &'a Line>,
    done: &'a mut HashSet<String>,
    reattached: HashSet<String>,
    out: &'a AppendLog,
    bar: &'a ProgressBar,
    resend_after: Duration,
    signals: &'a mut Signals,
    total: usize,
    /// The task sending the fresh calls.
    sender: &'a mut tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// Collects answers until every key has its result line.
async fn collect(mut c: Collect<'_>) -> Result<(), Stop> {
    let mut last_reattached = Instant::now();
    let mut resent = false;
    let mut sent_all = false;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    while c.done.len() < c.total {
        let first = tokio::select! {
            answer = c.batch.next() => match answer {
                Some(answer) => answer,
                None => return Err(Stop::Failed(anyhow::anyhow!("the batch stopped receiving"))),
            },
            signal = c.signals.recv() => return Err(Stop::Signal(signal)),
            sent = &mut *c.sender, if !sent_all => {
                match sent {
                    Ok(Ok(())) => sent_all = true,
                    Ok(Err(error)) => return Err(Stop::Failed(error.context("sending the calls"))),
                    Err(error) => return Err(Stop::Failed(anyhow::anyhow!("the sending task failed: {error}"))),
                }
                continue;
            }
            _ = tick.tick() => {
                if !resent && !c.reattached.is_empty() && last_reattached.elapsed() >= c.resend_after {
                    resent = true;
                    eprintln!("asyncmcp batch: no answer for {:?} to {} calls the earlier run noted; sending them again", c.resend_after, c.reattached.len());
                    resend(c.submitter, c.lines, &c.reattached).await?;
                }
                continue;
            }
        };
        let mut group = vec![first];
        while group.len() < WRITE_GROUP {
            match c.batch.try_next() {
                Some(answer) => group.push(answer),
                None => break,
            }
        }
        let mut bytes = Vec::new();
        let mut keep = Vec::new();
        for answer in group {
            let line = match c.lines.get(answer.key.as_str()) {
                Some(line) if !c.done.contains(&answer.key) => line,
                // Not a key of the input, or one written already.
                _ => {
                    keep.push(answer);
                    continue;
                }
            };
            let member = if answer.outcome.is_ok() {
                "result"
            } else {
                "error"
            };
            bytes.extend(files::line(&json!({"key": line.key, member: answer.raw})));
            keep.push(answer);
        }
        c.out.append(bytes).await?;
        let mut new = 0;
        for answer in &keep {
            if c.done.insert(answer.key.clone()) {
                new += 1;
            }
            if c.reattached.remove(&answer.key) {
                last_reattached = Instant::now();
            }
        }
        c.bar.inc(new);
        // Written and synced: the answers may go.
        let batch: &Batch = c.batch;
        let deletes = keep.iter().map(|answer| batch.ack(answer));
        for (answer, deleted) in keep.iter().zip(futures::future::join_all(deletes).await) {
            if let Err(error) = deleted {
                tracing::warn!(%error, key = %answer.key, "could not delete a kept answer; it is dropped when it comes again");
            }
        }
    }
    Ok(())
}

/// Sends again the reattached calls still unanswered.
async fn resend(
    submitter: &Submitter,
    lines: &HashMap<&str, &Line>,
    keys: &HashSet<String>,
) -> anyhow::Result<()> {
    for key in keys {
        if let Some(line) = lines.get(key.as_str()) {
            submitter.submit(key, &line.call).await?;
        }
    }
    Ok(())
}

/// Removes the state file and, if the run created it, the reply queue.
async fn finish(header: Option<Header>, state_path: &std::path::Path) {
    if let Some(header) = header.filter(|h| h.created_reply_queue) {
        let sdk = sqs::sdk_config_from_env().await;
        if let Err(error) = sqs::delete_queue(&sqs::client(&sdk), &header.reply_queue).await {
            tracing::warn!(%error, reply_queue = %header.reply_queue, "could not delete the reply queue");
        }
    }
    if let Err(error) = std::fs::remove_file(state_path)
        && error.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(%error, "could not remove the state file");
    }
}

/// The progress bar on stderr (drawn only when it is a terminal): keys with
/// results, rate and time left.
fn progress_bar(total: u64, done: u64) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template(
            "{elapsed_precise} [{bar:30}] {human_pos}/{human_len} {per_sec} ETA {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.set_position(done);
    bar.reset_eta();
    bar
}

/// 32 random hex digits.
fn uuid_hex() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}
