//! The webhook forms of `asyncmcp serve`, the built binary, on loopback:
//!
//! * `--webhook-listen` in front of the stock server-everything, called by
//!   an rmcp client over the library's webhook client transport: requests
//!   POSTed to serve's HTTP inbox, replies POSTed back to the client's own
//!   receiver;
//! * `--queue-url` with `--reply-webhook`: requests taken from SQS (sent
//!   raw, as docs/wire.md describes them) answered at the webhook their
//!   `ReplyTo` names, signed with `ASYNCMCP_WEBHOOK_SECRET`, and nothing
//!   sent to a webhook outside the prefixes;
//! * with the secret, `--webhook-listen` refuses unsigned and tampered
//!   requests before they reach the server process (the fault server's runs
//!   file shows which tools ran).
//!
//! Needs LocalStack (the shared test helper runs every `serve` with its AWS
//! settings), server-everything and `ASYNCMCP_MCP2_PYTHON`:
//! `scripts/test.sh` starts and installs them (see
//! `asyncmcp_testkit::real_clients`).

mod common;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use asyncmcp::WebhookClientTransport;
use asyncmcp::queue::webhook::{VerifyError, WebhookSigner, WebhookVerifier};
use asyncmcp::wire::attr;
use asyncmcp_testkit::support::{call, text_of};
use asyncmcp_testkit::{aws, eventually, real_clients};
use aws_sdk_sqs::types::MessageAttributeValue;
use axum::extract::State;
use axum::http::{HeaderMap, Uri};
use common::fault::FaultDir;
use common::serve::{Serve, server_everything};
use rmcp::ServiceExt;
use serde_json::{Value, json};

/// The deployment's Standard Webhooks secret (24 bytes).
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
/// Another secret, of someone else.
const OTHER_SECRET: &str = "whsec_b3RoZXItc2VjcmV0LW9mLTI0LWJ5dGVzISE=";
/// How long a test waits for what should come.
const WITHIN: Duration = Duration::from_secs(60);

/// A port free on 127.0.0.1 a moment ago, for serve to listen on.
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("its address").port()
}

/// `asyncmcp serve --webhook-listen 127.0.0.1:PORT --reply-webhook
/// http://127.0.0.1: EXTRA... -- server-everything`, once ready; returns it
/// and the URL requests go to.
async fn serve(extra: &[&str]) -> (Serve, String) {
    let ls = aws::localstack().await;
    let listen = format!("127.0.0.1:{}", free_port());
    let command = server_everything();
    let mut args = vec![
        "--webhook-listen",
        &listen,
        "--reply-webhook",
        "http://127.0.0.1:",
    ];
    args.extend_from_slice(extra);
    args.push("--");
    args.extend(command.iter().map(String::as_str));
    let serve = Serve::start_with(ls, &args, &[]).await;
    let url = format!("http://{listen}/mcp/request");
    assert!(
        serve.stderr().contains(&format!("ready: {url} -> ")),
        "the ready line names the URL; stderr:\n{}",
        serve.stderr()
    );
    (serve, url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_client_lists_tools_and_calls_echo_through_serve() {
    let (mut serve, url) = serve(&["--allow-loopback-webhooks"]).await;
    let transport = WebhookClientTransport::builder(url)
        .start()
        .await
        .expect("start the webhook client");
    let client = ().serve(transport).await.expect("initialize through serve");

    let tools = client.list_all_tools().await.expect("tools/list");
    let names: Vec<&str> = tools.iter().map(|tool| tool.name.as_ref()).collect();
    assert!(names.contains(&"echo"), "{names:?}");
    assert!(names.contains(&"get-sum"), "{names:?}");

    let result = client
        .call_tool(call("echo", json!({"message": "over webhooks"})))
        .await
        .expect("echo");
    assert_ne!(result.is_error, Some(true), "{result:?}");
    assert!(
        text_of(&result).contains("over webhooks"),
        "{}",
        text_of(&result)
    );

    client.cancel().await.expect("close the client");
    serve.assert_running();
}

/// Without `--allow-loopback-webhooks` the outbox refuses the client's
/// loopback receiver: nothing is POSTed to it, so the `initialize` gets no
/// reply and its POST (waiting for the session the reply would carry) runs
/// into the client's request timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loopback_webhook_refused_without_the_flag() {
    let (mut serve, url) = serve(&["--allow-http-webhooks"]).await;
    let transport = WebhookClientTransport::builder(url)
        .request_timeout(Duration::from_secs(3))
        .start()
        .await
        .expect("start the webhook client");
    let initialized = tokio::time::timeout(Duration::from_secs(30), ().serve(transport))
        .await
        .expect("the client gives up within 30 s");
    assert!(
        initialized.is_err(),
        "initialize answered at a loopback webhook without --allow-loopback-webhooks"
    );
    serve.assert_running();
}

/// One POST a [`Receiver`] took.
#[derive(Debug, Clone)]
struct Delivery {
    path: String,
    headers: HeaderMap,
    body: String,
}

impl Delivery {
    /// The header `name`, as text.
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }
}

/// A webhook receiver on loopback that records every POST and answers 200;
/// stops when dropped.
struct Receiver {
    /// `http://127.0.0.1:PORT`, no trailing slash.
    base: String,
    deliveries: Arc<Mutex<Vec<Delivery>>>,
    serving: tokio::task::JoinHandle<()>,
}

impl Receiver {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a receiver");
        let base = format!("http://{}", listener.local_addr().expect("its address"));
        let deliveries = Arc::new(Mutex::new(Vec::new()));
        let app = axum::Router::new()
            .fallback(record)
            .with_state(deliveries.clone());
        let serving = tokio::spawn(async move {
            axum::serve(listener, app)
                .await
                .expect("the receiver serves");
        });
        Self {
            base,
            deliveries,
            serving,
        }
    }

    fn deliveries(&self) -> Vec<Delivery> {
        self.deliveries.lock().expect("not poisoned").clone()
    }

    /// Waits for `count` deliveries; panics with what came if they do not.
    async fn wait_for(&self, count: usize) -> Vec<Delivery> {
        let came = eventually(WITHIN, || self.deliveries().len() >= count).await;
        assert!(
            came,
            "{count} deliveries at {} within {WITHIN:?}; got {:#?}",
            self.base,
            self.deliveries()
        );
        self.deliveries()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.serving.abort();
    }
}

async fn record(
    State(deliveries): State<Arc<Mutex<Vec<Delivery>>>>,
    uri: Uri,
    headers: HeaderMap,
    body: String,
) -> &'static str {
    deliveries.lock().expect("not poisoned").push(Delivery {
        path: uri.path().to_owned(),
        headers,
        body,
    });
    "{}"
}

/// Sends a raw `tools/call` of server-everything's `echo` to `queue`, as an
/// asyncmcp client sends it (docs/wire.md), its replies going to `reply_to`.
async fn send_echo(sqs: &aws_sdk_sqs::Client, queue: &str, id: u64, text: &str, reply_to: &str) {
    let body = json!({
        "jsonrpc": "2.0", "id": id, "method": "tools/call",
        "params": {"name": "echo", "arguments": {"message": text}}
    });
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    let string = |value: &str| {
        MessageAttributeValue::builder()
            .data_type("String")
            .string_value(value)
            .build()
            .expect("an attribute")
    };
    sqs.send_message()
        .queue_url(queue)
        .message_body(body.to_string())
        .message_attributes(attr::MESSAGE_TYPE, string(attr::JSONRPC))
        .message_attributes(attr::REQUEST_ID, string(&id.to_string()))
        .message_attributes(attr::METHOD, string("tools/call"))
        .message_attributes(attr::CLIENT_ID, string("webhook-caller"))
        .message_attributes(attr::REPLY_TO, string(reply_to))
        .message_attributes(
            attr::TIMESTAMP,
            MessageAttributeValue::builder()
                .data_type("Number")
                .string_value(now.to_string())
                .build()
                .expect("an attribute"),
        )
        .send()
        .await
        .expect("SendMessage");
}

/// A request from SQS naming a webhook inside `--reply-webhook` is
/// answered there, signed with the secret (the receiver's verifier
/// accepts it, another secret's refuses it); one naming a webhook outside
/// the prefix is dropped, and nothing reaches that webhook.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_requests_are_answered_at_an_allowed_webhook_signed() {
    let ls = aws::localstack().await;
    let queue = ls.create_queue("serve-webhook-requests").await;
    let sqs = ls.sqs_client().await;
    let allowed = Receiver::start().await;
    let outside = Receiver::start().await;
    let prefix = format!("{}/", allowed.base);
    let command = server_everything();
    let mut args = vec![
        "--queue-url",
        &queue,
        "--reply-webhook",
        &prefix,
        "--allow-loopback-webhooks",
        "--",
    ];
    args.extend(command.iter().map(String::as_str));
    let mut serve = Serve::start_with(ls, &args, &[("ASYNCMCP_WEBHOOK_SECRET", SECRET)]).await;

    // Outside the prefix (another port on the same host): dropped.
    send_echo(
        &sqs,
        &queue,
        1,
        "elsewhere",
        &format!("{}/hook", outside.base),
    )
    .await;
    serve.wait_for_stderr("no usable reply address").await;

    send_echo(
        &sqs,
        &queue,
        2,
        "to a webhook",
        &format!("{}/hook", allowed.base),
    )
    .await;
    let deliveries = allowed.wait_for(1).await;
    assert_eq!(deliveries.len(), 1, "one reply: {deliveries:#?}");
    let reply = &deliveries[0];
    assert_eq!(reply.path, "/hook");
    assert_eq!(reply.header("x-request-id"), Some("2"), "{reply:#?}");
    let body: Value = serde_json::from_str(&reply.body).expect("a JSON-RPC reply");
    assert_eq!(body["id"], 2, "{body}");
    assert_eq!(
        body["result"]["content"][0]["text"], "Echo: to a webhook",
        "{body}"
    );
    let verifier = WebhookVerifier::new(SECRET).expect("the secret");
    let id = verifier
        .verify(&reply.headers, reply.body.as_bytes())
        .expect("the reply is signed with the secret");
    assert!(id.starts_with("msg_"), "{id}");
    let foreign = WebhookVerifier::new(OTHER_SECRET).expect("a secret");
    assert_eq!(
        foreign.verify(&reply.headers, reply.body.as_bytes()),
        Err(VerifyError::BadSignature),
        "signed with that secret, not just any"
    );

    assert!(
        outside.deliveries().is_empty(),
        "nothing POSTed outside the prefix: {:#?}",
        outside.deliveries()
    );
    serve.assert_running();
}

/// POSTs `body` to `url` as client `client` of `session`, with `extra`
/// headers; returns the status.
async fn post_raw(
    url: &str,
    client: &str,
    session: &str,
    extra: &[(&'static str, String)],
    body: &str,
) -> u16 {
    let mut request = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .header("x-client-id", client)
        .header("x-session-id", session)
        .header("x-method", "tools/call")
        .body(body.to_owned());
    for (name, value) in extra {
        request = request.header(*name, value);
    }
    request
        .send()
        .await
        .expect("POST on loopback")
        .status()
        .as_u16()
}

fn unix_now() -> i64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970");
    i64::try_from(since.as_secs()).expect("fits")
}

/// With the secret, `--webhook-listen` takes only signed requests: a client
/// without it cannot even initialize; within a live session, an unsigned
/// call and a tampered one get 401 and never run, while a signed call runs
/// once and its reply comes back signed (the client checks).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_secret_unsigned_and_tampered_requests_never_run() {
    let ls = aws::localstack().await;
    let dir = FaultDir::new();
    let listen = format!("127.0.0.1:{}", free_port());
    let python = real_clients::mcp2_python().display().to_string();
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/servers/fault_server.py")
        .display()
        .to_string();
    let args = [
        "--webhook-listen",
        &listen,
        "--reply-webhook",
        "http://127.0.0.1:",
        "--allow-loopback-webhooks",
        "--",
        &python,
        &script,
    ];
    let dir_text = dir.0.to_str().expect("a UTF-8 temporary directory");
    let mut serve = Serve::start_with(
        ls,
        &args,
        &[("FAULT_DIR", dir_text), ("ASYNCMCP_WEBHOOK_SECRET", SECRET)],
    )
    .await;
    let url = format!("http://{listen}/mcp/request");

    // No signer: the initialize POST itself is refused.
    let unsigned = WebhookClientTransport::builder(url.clone())
        .start()
        .await
        .expect("start a client");
    let refused = tokio::time::timeout(WITHIN, ().serve(unsigned))
        .await
        .expect("refused at once");
    let error = refused.expect_err("an unsigned initialize is refused");
    assert!(format!("{error:?}").contains("401"), "{error:?}");

    // Signing requests, checking replies.
    let transport = WebhookClientTransport::builder(url.clone())
        .signer(WebhookSigner::new(SECRET).expect("the secret"))
        .verifier(WebhookVerifier::new(SECRET).expect("the secret"))
        .start()
        .await
        .expect("start a client");
    let handle = transport.handle();
    let client = ().serve(transport).await.expect("a signed initialize");
    let session = handle.session_id().expect("a session");
    let call_body = |id: u64, text: &str| {
        json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
               "params": {"name": "echo", "arguments": {"text": text}}})
        .to_string()
    };

    let unsigned = call_body(901, "unsigned");
    let status = post_raw(&url, handle.client_id(), &session, &[], &unsigned).await;
    assert_eq!(status, 401, "an unsigned call is refused");

    let signer = WebhookSigner::new(SECRET).expect("the secret");
    let signed_body = call_body(902, "signed");
    let headers = signer
        .headers("msg_tampered", unix_now(), &signed_body)
        .expect("signed");
    let tampered = signed_body.replace("\"signed\"", "\"tampered\"");
    assert_ne!(tampered, signed_body);
    let status = post_raw(&url, handle.client_id(), &session, &headers, &tampered).await;
    assert_eq!(status, 401, "a tampered call is refused");

    let foreign = WebhookSigner::new(OTHER_SECRET).expect("a secret");
    let foreign_body = call_body(903, "foreign");
    let headers = foreign
        .headers("msg_foreign", unix_now(), &foreign_body)
        .expect("signed");
    let status = post_raw(&url, handle.client_id(), &session, &headers, &foreign_body).await;
    assert_eq!(status, 401, "a call signed with another secret is refused");

    let result = client
        .call_tool(call("echo", json!({"text": "genuine"})))
        .await
        .expect("a signed call");
    assert_eq!(text_of(&result), "echo: genuine", "{result:?}");

    assert_eq!(dir.runs_of("echo-genuine").len(), 1, "{:?}", dir.runs());
    for refused in [
        "echo-unsigned",
        "echo-tampered",
        "echo-signed",
        "echo-foreign",
    ] {
        assert!(
            dir.runs_of(refused).is_empty(),
            "{refused} ran: {:?}",
            dir.runs()
        );
    }
    client.cancel().await.expect("close the client");
    serve.assert_running();
}

/// A secret that is not one stops `serve` at once with exit code 2, naming
/// the variable and never its value.
#[tokio::test]
async fn a_bad_secret_is_a_usage_error() {
    let ls = aws::localstack().await;
    let listen = format!("127.0.0.1:{}", free_port());
    for (secret, says) in [
        (
            "whsec_not base64 at all",
            "is not a Standard Webhooks secret",
        ),
        ("whsec_c2VjcmV0LXR3bw==", "at least 24 are needed"),
    ] {
        let run = common::serve::run_to_end(
            ls,
            &[
                "serve",
                "--webhook-listen",
                &listen,
                "--reply-webhook",
                "https://hooks.example/",
                "--",
                "true",
            ],
            &[("ASYNCMCP_WEBHOOK_SECRET", secret)],
        )
        .await;
        assert_eq!(run.status.code(), Some(2), "{run:#?}");
        assert!(
            run.stderr.contains("ASYNCMCP_WEBHOOK_SECRET") && run.stderr.contains(says),
            "{run:#?}"
        );
        assert!(
            !run.stderr.contains(secret),
            "the value is not shown: {run:#?}"
        );
    }
}
