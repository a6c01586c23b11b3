//! The webhook outbox against receivers of its own on loopback (never a
//! non-loopback address): retries, refusals, the SSRF guard, signatures,
//! and a server whose caller's webhook is down for good.

use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use asyncmcp::queue::memory::MemoryQueueOptions;
use asyncmcp::queue::webhook::{
    Lookup, WebhookOutbox, WebhookPolicy, WebhookSigner, WebhookVerifier,
};
use asyncmcp::queue::{Inbox, Outbox, QueueError, QueueMessage, RoutingOutbox};
use asyncmcp::{MemoryBroker, QueueServer};
use asyncmcp_testkit::demo_tools::{DemoServer, DemoStats};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// One request a receiver saw.
#[derive(Debug, Clone)]
struct Seen {
    headers: HeaderMap,
    body: String,
}

/// An HTTP/1.1 receiver on 127.0.0.1 that answers each request with the
/// next scripted reply (then 200), one request per connection.
struct Receiver {
    url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    connections: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Receiver {
    async fn start(script: Vec<&'static str>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!(
            "http://{}/hooks/reply",
            listener.local_addr().expect("addr")
        );
        let seen = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let script = Arc::new(Mutex::new(script.into_iter()));
        let task = tokio::spawn({
            let (seen, connections) = (seen.clone(), connections.clone());
            async move {
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        return;
                    };
                    connections.fetch_add(1, Ordering::SeqCst);
                    let answer = script
                        .lock()
                        .expect("script")
                        .next()
                        .unwrap_or("200 OK\r\n");
                    let seen = seen.clone();
                    tokio::spawn(async move {
                        if let Some(request) = read_request(stream, answer).await {
                            seen.lock().expect("seen").push(request);
                        }
                    });
                }
            }
        });
        Self {
            url,
            seen,
            connections,
            task,
        }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("seen").clone()
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

/// Reads one request from `stream`, answers `HTTP/1.1 <answer>` and closes.
async fn read_request(mut stream: TcpStream, answer: &str) -> Option<Seen> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    let header_end = loop {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
        if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
    };
    let head = String::from_utf8_lossy(&buffer[..header_end]).to_string();
    let mut headers = HeaderMap::new();
    for line in head.lines().skip(1).filter(|line| !line.is_empty()) {
        let (name, value) = line.split_once(':')?;
        headers.append(
            HeaderName::from_bytes(name.trim().as_bytes()).ok()?,
            HeaderValue::from_str(value.trim()).ok()?,
        );
    }
    let length: usize = headers
        .get("content-length")
        .and_then(|v| v.to_str().ok()?.parse().ok())
        .unwrap_or(0);
    while buffer.len() < header_end + length {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            break;
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
    let body = String::from_utf8_lossy(&buffer[header_end..]).to_string();
    let response = format!("HTTP/1.1 {answer}content-length: 0\r\nconnection: close\r\n\r\n");
    stream.write_all(response.as_bytes()).await.ok()?;
    stream.shutdown().await.ok()?;
    Some(Seen { headers, body })
}

/// A port nothing listens on (bound, then closed).
async fn closed_port_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    format!("http://{addr}/hooks/reply")
}

/// The policy for receivers on this host: `http://127.0.0.1:` allowed.
fn loopback_policy() -> WebhookPolicy {
    WebhookPolicy::prefixes(["http://127.0.0.1:"])
        .allow_http(true)
        .allow_loopback(true)
}

fn fast(policy: WebhookPolicy) -> asyncmcp::queue::webhook::WebhookOutboxBuilder {
    WebhookOutbox::builder(policy)
        .backoff(Duration::from_millis(20), Duration::from_millis(100))
        .attempt_timeout(Duration::from_secs(5))
}

fn reply() -> QueueMessage {
    QueueMessage::new(r#"{"jsonrpc":"2.0","id":7,"result":{}}"#)
        .with_string("SessionId", "session-1")
        .with_string("RequestId", "7")
        .with_string("Method", "tools/call")
        .with_string("ClientId", "client-1")
}

fn header<'a>(seen: &'a Seen, name: &str) -> Option<&'a str> {
    seen.headers.get(name).and_then(|v| v.to_str().ok())
}

#[tokio::test]
async fn a_receiver_failing_twice_with_503_gets_the_reply_on_the_third_attempt() {
    let receiver = Receiver::start(vec![
        "503 Service Unavailable\r\n",
        "503 Service Unavailable\r\n",
    ])
    .await;
    let outbox = fast(loopback_policy())
        .signer(WebhookSigner::new(SECRET).expect("a secret"))
        .build()
        .expect("an outbox");
    assert!(outbox.accepts(&receiver.url));
    outbox
        .send(&receiver.url, reply())
        .await
        .expect("delivered");

    let seen = receiver.seen();
    assert_eq!(seen.len(), 3, "three attempts: {seen:?}");
    let expected = reply();
    for attempt in &seen {
        assert_eq!(attempt.body, expected.body);
        assert_eq!(header(attempt, "content-type"), Some("application/json"));
        assert_eq!(header(attempt, "x-session-id"), Some("session-1"));
        assert_eq!(header(attempt, "x-request-id"), Some("7"));
        assert_eq!(header(attempt, "x-method"), Some("tools/call"));
        assert_eq!(header(attempt, "x-client-id"), Some("client-1"));
        // One message, one id, on every attempt.
        assert_eq!(
            header(attempt, "webhook-id"),
            header(&seen[0], "webhook-id")
        );
    }
    // The delivery that was accepted checks, once.
    let verifier = WebhookVerifier::new(SECRET).expect("a secret");
    let last = &seen[2];
    assert!(verifier.verify(&last.headers, last.body.as_bytes()).is_ok());
    assert!(
        verifier
            .verify(&last.headers, last.body.as_bytes())
            .is_err(),
        "a duplicate"
    );
    let mut tampered = last.body.clone();
    tampered.push(' ');
    let fresh = WebhookVerifier::new(SECRET).expect("a secret");
    assert!(fresh.verify(&last.headers, tampered.as_bytes()).is_err());
}

#[tokio::test]
async fn a_receiver_answering_400_is_tried_once_and_the_failure_is_permanent() {
    let receiver = Receiver::start(vec!["400 Bad Request\r\n"]).await;
    let outbox = fast(loopback_policy()).build().expect("an outbox");
    let error = outbox.send(&receiver.url, reply()).await.unwrap_err();
    assert!(error.is_permanent(), "{error:?}");
    assert!(error.to_string().contains("400"), "{error}");
    assert_eq!(receiver.seen().len(), 1);
}

#[tokio::test]
async fn a_429_with_retry_after_is_retried() {
    let receiver = Receiver::start(vec!["429 Too Many Requests\r\nretry-after: 1\r\n"]).await;
    let outbox = fast(loopback_policy()).build().expect("an outbox");
    outbox
        .send(&receiver.url, reply())
        .await
        .expect("delivered");
    assert_eq!(receiver.seen().len(), 2);
}

#[tokio::test]
async fn a_receiver_down_for_good_gets_bounded_attempts_then_a_permanent_failure() {
    let url = closed_port_url().await;
    let outbox = fast(loopback_policy())
        .max_attempts(3)
        .build()
        .expect("an outbox");
    let error = outbox.send(&url, reply()).await.unwrap_err();
    // The outbox's retries were the budget: a server dead-letters at once.
    assert!(error.is_permanent(), "{error:?}");
    assert!(
        matches!(&error, QueueError::EntryFailed { code, .. } if code == "WebhookUnreachable"),
        "{error:?}"
    );
    assert!(error.to_string().contains("after 3 attempt(s)"), "{error}");
}

/// Answers every name with one address.
#[derive(Debug)]
struct Resolves(IpAddr);

impl Lookup for Resolves {
    fn lookup(
        &self,
        _: &str,
    ) -> Pin<Box<dyn std::future::Future<Output = io::Result<Vec<IpAddr>>> + Send>> {
        let ip = self.0;
        Box::pin(async move { Ok(vec![ip]) })
    }
}

#[tokio::test]
async fn loopback_is_refused_by_literal_by_name_and_by_redirect() {
    let target = Receiver::start(vec![]).await;
    let port = target
        .url
        .split(':')
        .nth(2)
        .and_then(|p| p.split('/').next())
        .expect("a port");
    // Loopback not allowed; names resolve (through the test's resolver) to
    // 127.0.0.1, as a rebinding DNS server would answer.
    let strict = WebhookOutbox::builder(WebhookPolicy::prefixes(["http://"]).allow_http(true))
        .lookup(Arc::new(Resolves(IpAddr::V4(Ipv4Addr::LOCALHOST))))
        .max_attempts(3)
        .build()
        .expect("an outbox");
    for url in [
        target.url.clone(),
        format!("http://hooks.rebind.test:{port}/hooks/reply"),
        format!("http://[::ffff:127.0.0.1]:{port}/hooks/reply"),
    ] {
        let error = strict.send(&url, reply()).await.unwrap_err();
        assert!(error.is_permanent(), "{url}: {error:?}");
        assert!(error.to_string().contains("loopback"), "{url}: {error}");
    }
    assert_eq!(
        target.connections(),
        0,
        "the refused listener saw no connection"
    );

    // A redirect is never followed, wherever it points: an allowed receiver
    // (loopback allowed, to reach it at all) redirecting to the target.
    let location: &'static str =
        Box::leak(format!("302 Found\r\nlocation: {}\r\n", target.url).into_boxed_str());
    let redirecting = Receiver::start(vec![location]).await;
    let outbox = fast(loopback_policy()).build().expect("an outbox");
    let error = outbox.send(&redirecting.url, reply()).await.unwrap_err();
    assert!(error.is_permanent(), "{error:?}");
    assert!(
        error.to_string().contains("redirects are not followed"),
        "{error}"
    );
    assert_eq!(redirecting.seen().len(), 1);
    assert_eq!(
        target.connections(),
        0,
        "the redirect target saw no connection"
    );
}

/// A server taking requests from a memory queue, answering at a webhook
/// that is down for good: the request ends in the dead-letter queue with a
/// reason naming the webhook failure, and nothing is lost.
#[tokio::test]
async fn a_request_whose_webhook_is_down_for_good_is_dead_lettered_with_the_reason() {
    let webhook = closed_port_url().await;
    let broker = MemoryBroker::new();
    let options = MemoryQueueOptions::default().with_visibility_timeout(Duration::from_secs(2));
    let requests = broker.create_queue("requests", options);
    let dead_letters = broker.create_queue("dead-letters", MemoryQueueOptions::default());
    let outbox = RoutingOutbox::new()
        .with(Arc::new(broker.outbox()))
        .with(Arc::new(
            fast(loopback_policy())
                .max_attempts(2)
                .build()
                .expect("an outbox"),
        ));
    let shutdown = CancellationToken::new();
    let server = QueueServer::builder(broker.inbox(&requests).expect("inbox"), outbox)
        .wait(Duration::from_millis(200))
        .allow_reply_prefix("http://127.0.0.1:")
        .dead_letter(dead_letters.clone(), 3)
        .build(DemoServer::factory(Arc::new(DemoStats::default())))
        .spawn(shutdown.clone());
    let call = json!({"jsonrpc":"2.0","id":7,"method":"tools/call",
        "params":{"name":"echo","arguments":{"text":"hi"}}});
    broker
        .outbox()
        .send(
            &requests,
            QueueMessage::new(call.to_string())
                .with_string("ReplyTo", webhook.clone())
                .with_string("ClientId", "webhook-test"),
        )
        .await
        .expect("request sent");

    let dead = broker.inbox(&dead_letters).expect("inbox");
    let mut letters = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    while letters.is_empty() && tokio::time::Instant::now() < deadline {
        letters = dead
            .receive(10, Duration::from_millis(500))
            .await
            .expect("receive");
    }
    assert_eq!(letters.len(), 1, "dead-lettered");
    let letter = &letters[0].message;
    assert_eq!(
        letter.body,
        call.to_string(),
        "the request itself, nothing lost"
    );
    let reason = letter.attribute("DeadLetterReason").unwrap_or_default();
    assert!(
        reason.contains("can never be sent") && reason.contains(&webhook),
        "{reason}"
    );
    assert!(
        reason.contains("not delivered after 2 attempt(s)"),
        "{reason}"
    );
    // Settled: nothing left in the request queue, and no second copy.
    let settle_by = tokio::time::Instant::now() + Duration::from_secs(10);
    while broker.depth(&requests) != (0, 0) && tokio::time::Instant::now() < settle_by {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(broker.depth(&requests), (0, 0), "request removed");
    let again = dead
        .receive(10, Duration::from_secs(3))
        .await
        .expect("receive");
    assert!(again.is_empty(), "moved once: {again:?}");
    shutdown.cancel();
    server.await.expect("server stopped");
}
