//! The fault suite, on LocalStack, with real processes. Each scenario ends
//! with one summary line, e.g.
//! `crash: 200 calls, 3 kills, 0 lost, 1 duplicated effects`.
//!
//! A test of its own (`harness = false`): `cargo test --test faults [NAME]`
//! runs the scenarios whose name contains NAME, one after another.
//!
//! The server runs in a child process, this binary started again in the
//! server role (`FAULTS_SERVER_QUEUE` set), so that it can be killed with
//! SIGKILL mid-call. Its one tool, `work`, sleeps and then appends the
//! call's id to an effects file, which the parent reads to count how often
//! each call's effect happened.

mod common;

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use asyncmcp::queue::sqs::{self, SqsInbox, SqsOutbox, SqsQueueOptions};
use asyncmcp::wire::session::SessionKeys;
use asyncmcp::{QueueClientConfig, QueueClientTransport, QueueServer};
use rmcp::handler::server::{router::tool::ToolRouter, wrapper::Parameters};
use rmcp::model::{CallToolRequestParams, ServerCapabilities, ServerConfig};
use rmcp::schemars::{self, JsonSchema};
use rmcp::{ServerHandler, ServiceExt, tool, tool_handler, tool_router};
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
        // One unbuffered append per effect: it is in the file as soon as
        // write returns, whenever the process is killed.
        let recorded = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.effects.as_path())
            .and_then(|mut file| file.write_all(format!("{}\n", args.id).as_bytes()));
        if let Err(error) = recorded {
            eprintln!("cannot record effect: {error}");
        }
        args.id
    }
}

#[tool_handler]
impl ServerHandler for EffectServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }
}

/// One scenario of the suite.
type Scenario = fn() -> futures::future::BoxFuture<'static, ()>;

fn main() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    if let (Ok(queue), Ok(effects)) = (
        std::env::var("FAULTS_SERVER_QUEUE"),
        std::env::var("FAULTS_EFFECTS_FILE"),
    ) {
        runtime.block_on(serve(queue, effects));
        return;
    }
    let scenarios: [(&str, Scenario); 1] = [("crash", || Box::pin(crash()))];
    if std::env::args().any(|arg| arg == "--list") {
        for (name, _) in scenarios {
            println!("{name}: test");
        }
        return;
    }
    let filter = std::env::args()
        .skip(1)
        .find(|arg| !arg.starts_with('-'))
        .unwrap_or_default();
    for (name, scenario) in scenarios {
        if name.contains(&filter) {
            runtime.block_on(scenario());
        }
    }
}

/// The server role: serves `queue` until killed.
async fn serve(queue: String, effects: String) {
    let ls = common::localstack().await;
    let client = sqs::client(&ls.sdk_config().await);
    let inbox = SqsInbox::open(client.clone(), &queue).await.expect("queue");
    let effects = Arc::new(PathBuf::from(effects));
    let keys = SessionKeys::new(SESSION_KEY.to_vec(), None).expect("key");
    let server = QueueServer::builder(inbox, SqsOutbox::new(client))
        .wait(Duration::from_secs(1))
        .session_keys(keys)
        .build(move || EffectServer {
            effects: effects.clone(),
            tool_router: EffectServer::tool_router(),
        });
    println!("READY");
    server.run(CancellationToken::new()).await;
}

/// Starts a server process on `queue`, recording effects in `effects`;
/// returns once it polls.
async fn spawn_server(
    ls: &common::LocalStack,
    queue: &str,
    effects: &Path,
) -> tokio::process::Child {
    let mut child = tokio::process::Command::new(std::env::current_exe().expect("test binary"))
        .env("FAULTS_SERVER_QUEUE", queue)
        .env("FAULTS_EFFECTS_FILE", effects)
        .envs(ls.aws_env())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
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

/// Kill -9 the server three times while 200 calls are in flight, 20 at a
/// time, restarting it each time: every call gets its answer (late ack and
/// visibility), none is lost.
async fn crash() {
    const CALLS: usize = 200;
    const IN_FLIGHT: usize = 20;
    const KILLS: usize = 3;
    let ls = common::localstack().await;
    let client = sqs::client(&ls.sdk_config().await);
    let options = SqsQueueOptions {
        // Short, so that requests a killed server held come back soon.
        visibility_timeout: Some(Duration::from_secs(3)),
        ..SqsQueueOptions::default()
    };
    let requests = sqs::create_queue(&client, &common::unique_name("crash"), &options)
        .await
        .expect("queue");
    let effects = std::env::temp_dir().join(common::unique_name("crash-effects"));
    let mut server = spawn_server(ls, &requests, &effects).await;

    let transport = QueueClientTransport::connect_sqs(
        client.clone(),
        QueueClientConfig {
            wait: Duration::from_secs(1),
            ..QueueClientConfig::new(&requests)
        },
        None,
    )
    .await
    .expect("connect");
    let session = ().serve(transport).await.expect("initialize");
    let peer = session.peer().clone();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let workers = (0..IN_FLIGHT).map(|_| {
        let peer = peer.clone();
        let next = next.clone();
        tokio::spawn(async move {
            let mut outcomes = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= CALLS {
                    return outcomes;
                }
                let id = format!("call-{i}");
                let arguments = serde_json::json!({"id": id, "ms": 200});
                let request = CallToolRequestParams::new("work")
                    .with_arguments(arguments.as_object().cloned().unwrap_or_default());
                let answer =
                    tokio::time::timeout(Duration::from_secs(120), peer.call_tool(request)).await;
                let text = match answer {
                    Ok(Ok(result)) => result
                        .content
                        .iter()
                        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
                        .collect::<String>(),
                    Ok(Err(error)) => format!("error: {error}"),
                    Err(_) => "lost".to_owned(),
                };
                outcomes.push((id, text));
            }
        })
    });
    let calls = tokio::spawn(futures::future::join_all(workers));

    for _ in 0..KILLS {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        server.start_kill().expect("kill -9");
        let _ = server.wait().await;
        server = spawn_server(ls, &requests, &effects).await;
    }
    let outcomes: Vec<(String, String)> = calls
        .await
        .expect("calls")
        .into_iter()
        .flat_map(|worker| worker.expect("worker"))
        .collect();
    let _ = server.start_kill();
    session.cancel().await.expect("close");

    let wrong: Vec<_> = outcomes.iter().filter(|(id, text)| id != text).collect();
    let lost = wrong.len();
    let mut effect_counts: HashMap<String, usize> = HashMap::new();
    for line in std::fs::read_to_string(&effects)
        .unwrap_or_default()
        .lines()
    {
        *effect_counts.entry(line.to_owned()).or_default() += 1;
    }
    let duplicated: usize = effect_counts.values().map(|n| n.saturating_sub(1)).sum();
    let _ = std::fs::remove_file(&effects);
    let _ = sqs::delete_queue(&client, &requests).await;
    eprintln!("crash: {CALLS} calls, {KILLS} kills, {lost} lost, {duplicated} duplicated effects");
    assert_eq!(outcomes.len(), CALLS);
    assert!(wrong.is_empty(), "calls without their answer: {wrong:?}");
    assert_eq!(
        effect_counts.len(),
        CALLS,
        "every call's effect happened at least once"
    );
}
