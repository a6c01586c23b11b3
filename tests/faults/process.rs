//! The server process of the fault scenarios: this test binary started again
//! with `FAULTS_SERVER_QUEUE` and `FAULTS_EFFECTS_FILE` set, serving one tool
//! whose effect is a line in a file, so that the parent can kill it with
//! SIGKILL mid-call and count how often each call's effect happened.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use asyncmcp::queue::sqs::{self, SqsInbox, SqsOutbox};
use asyncmcp::wire::session::SessionKeys;
use asyncmcp::{QueueClientTransport, QueueServer};
use asyncmcp_testkit::{aws, unique_name};
use rmcp::handler::server::{router::tool::ToolRouter, wrapper::Parameters};
use rmcp::model::{CallToolRequestParams, ServerCapabilities, ServerConfig};
use rmcp::schemars::{self, JsonSchema};
use rmcp::{RoleClient, ServerHandler, tool, tool_handler, tool_router};
use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_util::sync::CancellationToken;

/// The session key every server process of a scenario shares, as replicas
/// of one deployment do (so sessions survive a restart).
const SESSION_KEY: &[u8] = b"faults-test-session-key-0123456789abcdef";

/// Arguments of `work`.
#[derive(Debug, Deserialize, JsonSchema)]
struct WorkArgs {
    /// The call's id, recorded as its effect.
    id: String,
    /// How long the work takes, in milliseconds.
    ms: u64,
}

/// A server whose tool has an effect outside the process: a line in a file.
#[derive(Clone)]
struct EffectServer {
    effects: Arc<PathBuf>,
    #[expect(dead_code, reason = "read by the code #[tool_handler] generates")]
    tool_router: ToolRouter<Self>,
}

#[tool_router]
impl EffectServer {
    #[tool(description = "Sleeps `ms` milliseconds, then records `id` as done")]
    async fn work(&self, Parameters(args): Parameters<WorkArgs>) -> String {
        tokio::time::sleep(Duration::from_millis(args.ms)).await;
        self.record(&args.id);
        args.id
    }

    #[tool(description = "Records `id`, then kills this process at once: a poison request")]
    async fn crash(&self, Parameters(args): Parameters<CrashArgs>) -> String {
        self.record(&args.id);
        std::process::abort()
    }
}

impl EffectServer {
    /// Appends `id` to the effects file: one unbuffered write, in the file
    /// as soon as it returns, whenever the process is killed.
    fn record(&self, id: &str) {
        let recorded = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.effects.as_path())
            .and_then(|mut file| file.write_all(format!("{id}\n").as_bytes()));
        if let Err(error) = recorded {
            eprintln!("cannot record effect: {error}");
        }
    }
}

/// Arguments of `crash`.
#[derive(Debug, Deserialize, JsonSchema)]
struct CrashArgs {
    /// Recorded before the process dies.
    id: String,
}

#[tool_handler]
impl ServerHandler for EffectServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }
}

/// The server role: serves `queue` until killed, logging warnings and
/// errors to stderr.
pub(crate) async fn serve(queue: String, effects: String) {
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter("warn")
        .try_init();
    let ls = aws::localstack().await;
    let client = sqs::client(&ls.sdk_config().await);
    let inbox = SqsInbox::open(client.clone(), &queue).await.expect("queue");
    let effects = Arc::new(PathBuf::from(effects));
    let keys = SessionKeys::new(SESSION_KEY.to_vec(), None).expect("key");
    let mut builder = QueueServer::builder(inbox, SqsOutbox::new(client))
        .wait(Duration::from_secs(1))
        .session_keys(keys);
    // `FAULTS_DEAD_LETTER="<queue url> <max receive count>"`.
    if let Ok(setting) = std::env::var("FAULTS_DEAD_LETTER")
        && let Some((address, count)) = setting.split_once(' ')
    {
        builder = builder.dead_letter(address, count.parse().expect("a receive count"));
    }
    let server = builder.build(move || EffectServer {
        effects: effects.clone(),
        tool_router: EffectServer::tool_router(),
    });
    // SIGTERM shuts the server down gracefully, as a deployment would.
    let shutdown = CancellationToken::new();
    let on_signal = shutdown.clone();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::spawn(async move {
        term.recv().await;
        on_signal.cancel();
    });
    println!("READY");
    server.run(shutdown).await;
}

/// Starts a server process on `queue`, recording effects in `effects`, with
/// the AWS settings `aws_env` (e.g. `LocalStack::aws_env`, or one whose
/// endpoint goes through a proxy); returns once it polls. Its log goes to
/// this process's stderr.
pub(crate) async fn spawn_server(
    aws_env: &[(&'static str, String)],
    queue: &str,
    effects: &Effects,
) -> tokio::process::Child {
    start_server(aws_env, queue, effects, Stdio::inherit()).await
}

/// Like [`spawn_server`], but captures the server's log (its stderr) in a
/// [`ServerLog`] instead.
pub(crate) async fn spawn_logged_server(
    aws_env: &[(&'static str, String)],
    queue: &str,
    effects: &Effects,
) -> (tokio::process::Child, ServerLog) {
    let mut child = start_server(aws_env, queue, effects, Stdio::piped()).await;
    let stderr = child.stderr.take().expect("piped stderr");
    let log = ServerLog::default();
    let lines = log.lines.clone();
    tokio::spawn(async move {
        let mut stderr = BufReader::new(stderr).lines();
        while let Ok(Some(line)) = stderr.next_line().await {
            lines
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push((tokio::time::Instant::now(), line));
        }
    });
    (child, log)
}

/// Starts the server process with `stderr` as its stderr; returns once it
/// polls.
async fn start_server(
    aws_env: &[(&'static str, String)],
    queue: &str,
    effects: &Effects,
    stderr: Stdio,
) -> tokio::process::Child {
    let mut child = tokio::process::Command::new(std::env::current_exe().expect("test binary"))
        .env("FAULTS_SERVER_QUEUE", queue)
        .env("FAULTS_EFFECTS_FILE", &effects.path)
        .envs(aws_env.iter().cloned())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .kill_on_drop(true)
        .spawn()
        .expect("start the server process");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    let ready = tokio::time::timeout(Duration::from_secs(30), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.trim() == "READY" {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(ready, Ok(true), "the server process started");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    child
}

/// The log lines of a server process started by [`spawn_logged_server`],
/// each with when it was read.
#[derive(Clone, Default)]
pub(crate) struct ServerLog {
    lines: Arc<std::sync::Mutex<Vec<(tokio::time::Instant, String)>>>,
}

impl ServerLog {
    /// The lines read so far, oldest first.
    pub(crate) fn lines(&self) -> Vec<(tokio::time::Instant, String)> {
        self.lines
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// The effects file of one scenario; removed when dropped.
pub(crate) struct Effects {
    path: PathBuf,
}

impl Effects {
    /// A fresh, empty effects file.
    pub(crate) fn new(scenario: &str) -> Self {
        Self {
            path: std::env::temp_dir().join(unique_name(&format!("{scenario}-effects"))),
        }
    }

    /// How many times each call's effect happened.
    pub(crate) fn counts(&self) -> HashMap<String, usize> {
        let mut counts = HashMap::new();
        for line in std::fs::read_to_string(&self.path)
            .unwrap_or_default()
            .lines()
        {
            *counts.entry(line.to_owned()).or_default() += 1;
        }
        counts
    }
}

impl Drop for Effects {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// What a load run saw.
pub(crate) struct Load {
    /// Calls that got their own answer (the tool's result is the call's id).
    pub answered: usize,
    /// Calls without their own answer (an error, a wrong result or no answer
    /// within 120 s), with what they got.
    pub lost: Vec<(String, String)>,
    /// When each call was made, by id.
    pub started: HashMap<String, tokio::time::Instant>,
    /// When each call ended (answered, failed or given up on), by id.
    pub ended: HashMap<String, tokio::time::Instant>,
}

impl Load {
    /// How many calls had been made and had not ended at `at`: the calls in
    /// flight then.
    pub(crate) fn in_flight_at(&self, at: tokio::time::Instant) -> usize {
        self.started
            .iter()
            .filter(|(id, started)| {
                **started <= at && self.ended.get(*id).is_none_or(|ended| *ended > at)
            })
            .count()
    }
}

/// Calls `work` once with `id`, `ms` long: what it answered (its result's
/// text, `id` when all went well), or the error, or that no answer came
/// within 120 s.
pub(crate) async fn call_work(peer: &rmcp::service::Peer<RoleClient>, id: &str, ms: u64) -> String {
    let arguments = serde_json::json!({"id": id, "ms": ms});
    let request = CallToolRequestParams::new("work")
        .with_arguments(arguments.as_object().cloned().unwrap_or_default());
    match tokio::time::timeout(Duration::from_secs(120), peer.call_tool(request)).await {
        Ok(Ok(result)) => result
            .content
            .iter()
            .filter_map(|c| c.as_text().map(|t| t.text.clone()))
            .collect::<String>(),
        Ok(Err(error)) => format!("error: {error}"),
        Err(_) => "no answer within 120 s".to_owned(),
    }
}

/// Makes `calls` calls of `work` (each `ms` long, with ids `call-<n>`), at
/// most `in_flight` at a time, from a task of its own.
pub(crate) fn start_load(
    peer: rmcp::service::Peer<RoleClient>,
    calls: usize,
    in_flight: usize,
    ms: u64,
) -> tokio::task::JoinHandle<Load> {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let workers = (0..in_flight).map(move |_| {
        let peer = peer.clone();
        let next = next.clone();
        tokio::spawn(async move {
            let mut outcomes = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= calls {
                    return outcomes;
                }
                let id = format!("call-{i}");
                let started = tokio::time::Instant::now();
                let text = call_work(&peer, &id, ms).await;
                outcomes.push((id, text, started, tokio::time::Instant::now()));
            }
        })
    });
    let workers: Vec<_> = workers.collect();
    tokio::spawn(async move {
        let mut load = Load {
            answered: 0,
            lost: Vec::new(),
            started: HashMap::new(),
            ended: HashMap::new(),
        };
        for worker in futures::future::join_all(workers).await {
            for (id, text, started, ended) in worker.expect("load worker") {
                load.started.insert(id.clone(), started);
                load.ended.insert(id.clone(), ended);
                if id == text {
                    load.answered += 1;
                } else {
                    load.lost.push((id, text));
                }
            }
        }
        load
    })
}

/// A legacy (initialize) client of the server on `requests`, with its own
/// reply queue, through `client`.
pub(crate) async fn connect(
    client: &sqs::Client,
    requests: &str,
) -> rmcp::service::RunningService<RoleClient, ()> {
    use rmcp::ServiceExt;
    let transport = QueueClientTransport::builder(requests)
        .wait(Duration::from_secs(1))
        .connect_sqs(client)
        .await
        .expect("connect");
    ().serve(transport).await.expect("initialize")
}
