//! What a sender to `asyncmcp serve`'s request queue can forge, and what it
//! gets: every attribute and the body of a queue message are the sender's
//! to choose. Requests here are sent raw (SQS `SendMessage`, the wire format
//! of docs/wire.md) beside the built `asyncmcp call` and the Python
//! asyncmcp 0.2.1 client; the server is `servers/fault_server.py`, whose
//! runs file shows which tools ran, and on which process.
//!
//! * signatures: unsigned, foreign-signed and altered requests never run,
//!   and are answered with an uncorrelated error, never a result;
//! * the reply allow-list: a request naming a reply address of another
//!   account or host is dropped, nothing is sent there, the tool does not
//!   run;
//! * many replicas and clients: replicas sharing a session key serve one
//!   legacy session between them; clients sharing a `ClientId` each get
//!   their own answers.
//!
//! Needs LocalStack (`scripts/test.sh` starts it), `ASYNCMCP_MCP2_PYTHON`
//! and `ASYNCMCP_PY_PEER`.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use asyncmcp::queue::{AttributeValue, QueueMessage};
use asyncmcp::wire::attr;
use asyncmcp::wire::signing::SigningKeys;
use asyncmcp_testkit::aws::{self, LocalStack};
use asyncmcp_testkit::eventually;
use asyncmcp_testkit::py_peer::py_peer_python;
use aws_sdk_sqs::types::MessageAttributeValue;
use common::fault::{FaultDir, start_serve};
use common::serve::run_to_end;
use serde_json::{Value, json};

/// The deployment's signing key (64 hex digits: 32 bytes).
const KEY: &str = "8f1d4c2a9b7e6f5a3c1d0e9f8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b";
/// The key sealing session ids, shared by the replicas.
const SESSION_KEY: &str = "1b2c3d4e5f60718293a4b5c6d7e8f90112233445566778899aabbccddeeff00";
/// How long a test waits for replies that should come.
const REPLIES_WITHIN: Duration = Duration::from_secs(60);

/// The signing keys of [`KEY`].
fn keys() -> SigningKeys {
    SigningKeys::new(hex::decode(KEY).expect("hex"), None).expect("a 32-byte key")
}

/// A raw `tools/call` of `tool` as an asyncmcp client sends it (docs/wire.md),
/// unsigned, with its replies going to `reply_to`.
fn request(id: u64, tool: &str, arguments: Value, reply_to: &str) -> QueueMessage {
    let body = json!({
        "jsonrpc": "2.0", "id": id, "method": "tools/call",
        "params": {"name": tool, "arguments": arguments}
    });
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970");
    let mut message = QueueMessage::new(body.to_string())
        .with_string(attr::MESSAGE_TYPE, attr::JSONRPC)
        .with_string(attr::REQUEST_ID, id.to_string())
        .with_string(attr::METHOD, "tools/call")
        .with_string(attr::CLIENT_ID, "raw-sender")
        .with_string(attr::REPLY_TO, reply_to);
    message.attributes.insert(
        attr::TIMESTAMP.to_owned(),
        AttributeValue::Number(format!("{}.{:03}", now.as_secs(), now.subsec_millis())),
    );
    message
}

/// Sends `message` to `queue` as it is, attributes and all.
async fn send(sqs: &aws_sdk_sqs::Client, queue: &str, message: &QueueMessage) {
    let mut send = sqs
        .send_message()
        .queue_url(queue)
        .message_body(&message.body);
    for (name, value) in &message.attributes {
        let data_type = match value {
            AttributeValue::String(_) => "String",
            AttributeValue::Number(_) => "Number",
        };
        let value = MessageAttributeValue::builder()
            .data_type(data_type)
            .string_value(value.as_str())
            .build()
            .expect("an attribute");
        send = send.message_attributes(name, value);
    }
    send.send().await.expect("SendMessage");
}

/// One message taken from a reply queue.
#[derive(Debug)]
struct Received {
    body: Value,
    message: QueueMessage,
}

/// Takes (and deletes) what arrives on `queue` until `count` messages came
/// or `within` passed.
async fn receive(
    sqs: &aws_sdk_sqs::Client,
    queue: &str,
    count: usize,
    within: Duration,
) -> Vec<Received> {
    let deadline = tokio::time::Instant::now() + within;
    let mut got = Vec::new();
    while got.len() < count && tokio::time::Instant::now() < deadline {
        let received = sqs
            .receive_message()
            .queue_url(queue)
            .message_attribute_names("All")
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .expect("ReceiveMessage");
        for message in received.messages() {
            let mut taken = QueueMessage::new(message.body().unwrap_or_default());
            for (name, value) in message.message_attributes().into_iter().flatten() {
                let text = value.string_value().unwrap_or_default().to_owned();
                let value = match value.data_type() {
                    "Number" => AttributeValue::Number(text),
                    _ => AttributeValue::String(text),
                };
                taken.attributes.insert(name.clone(), value);
            }
            let body = serde_json::from_str(&taken.body).expect("a JSON reply");
            got.push(Received {
                body,
                message: taken,
            });
            sqs.delete_message()
                .queue_url(queue)
                .receipt_handle(message.receipt_handle().unwrap_or_default())
                .send()
                .await
                .expect("DeleteMessage");
        }
    }
    got
}

/// Whether `queue` is empty (nothing visible or in flight) within 30 s.
async fn emptied(sqs: &aws_sdk_sqs::Client, queue: &str) -> bool {
    for _ in 0..60 {
        if aws::queue_depth(sqs, queue).await == 0 {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    false
}

/// The tags of the runs so far, in order.
fn tags(dir: &FaultDir) -> Vec<String> {
    dir.runs().into_iter().map(|(tag, _)| tag).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn unsigned_foreign_and_altered_requests_never_run_and_get_no_result() {
    let ls = aws::localstack().await;
    let sqs = ls.sqs_client().await;
    let queue = ls.create_queue("sec-signed").await;
    let replies = ls.create_queue("sec-signed-replies").await;
    let refused_replies = ls.create_queue("sec-refused-replies").await;
    let dir = FaultDir::new();
    let signing = [("ASYNCMCP_SIGNING_KEY", KEY)];
    let mut serve = start_serve(ls, &queue, &dir, &["--require-signatures"], &signing).await;

    // The client holding the key is served.
    let answered = run_to_end(
        ls,
        &[
            "call",
            "--queue-url",
            &queue,
            "--timeout",
            "90s",
            "echo",
            r#"{"text":"signed"}"#,
        ],
        &signing,
    )
    .await;
    assert_eq!(answered.text(), "echo: signed");

    // So is a raw request signed with it (the format below is right), and a
    // captured copy sent again is answered from the replay cache: the tool
    // runs once. Its replies are signed with the key.
    let keys = keys();
    let mut genuine = request(1, "echo", json!({"text": "raw"}), &replies);
    keys.sign(&mut genuine);
    send(&sqs, &queue, &genuine).await;
    send(&sqs, &queue, &genuine).await;
    let results = receive(&sqs, &replies, 2, REPLIES_WITHIN).await;
    assert_eq!(results.len(), 2, "both copies answered: {results:?}");
    for result in &results {
        assert_eq!(result.body["id"], 1, "{result:?}");
        assert_eq!(result.body["result"]["content"][0]["text"], "echo: raw");
        keys.verify(&result.message)
            .expect("a reply signed with the key");
    }

    // Forgeries, each replying to a queue of its own.
    let other = SigningKeys::new(vec![0x5a; 32], None).expect("a key");
    let unsigned = request(2, "echo", json!({"text": "unsigned"}), &refused_replies);
    let mut foreign = request(3, "echo", json!({"text": "foreign"}), &refused_replies);
    other.sign(&mut foreign);
    // A valid signature copied onto another body.
    let mut altered = request(4, "echo", json!({"text": "harmless"}), &refused_replies);
    keys.sign(&mut altered);
    altered.body = altered.body.replace("harmless", "altered");
    // A valid signature on a message sent with another reply address.
    let mut redirected = request(5, "echo", json!({"text": "redirected"}), &replies);
    keys.sign(&mut redirected);
    redirected.attributes.insert(
        attr::REPLY_TO.to_owned(),
        AttributeValue::String(refused_replies.clone()),
    );
    for forged in [&unsigned, &foreign, &altered, &redirected] {
        send(&sqs, &queue, forged).await;
    }

    let errors = receive(&sqs, &refused_replies, 4, REPLIES_WITHIN).await;
    let mut by_id = BTreeMap::new();
    for error in &errors {
        let body = &error.body;
        // Uncorrelated: no call can take it as its answer.
        assert_eq!(body["id"], Value::Null, "{error:?}");
        assert!(body.get("result").is_none(), "an error, never a result");
        assert_eq!(body["error"]["code"], -32600, "{error:?}");
        for name in [
            attr::CLIENT_ID,
            attr::REQUEST_ID,
            attr::SESSION_ID,
            attr::SIGNATURE,
        ] {
            assert_eq!(error.message.attribute(name), None, "no {name}: {error:?}");
        }
        let claimed = body["error"]["data"]["requestId"]
            .as_u64()
            .unwrap_or_else(|| panic!("the claimed id in error.data: {error:?}"));
        by_id.insert(claimed, body["error"]["message"].clone());
    }
    let unsigned_text = "message signature refused: message is not signed";
    let mismatch = "message signature refused: message signature does not verify";
    assert_eq!(
        by_id,
        BTreeMap::from([
            (2, json!(unsigned_text)),
            (3, json!(mismatch)),
            (4, json!(mismatch)),
            (5, json!(mismatch)),
        ]),
        "one error per forgery: {errors:?}"
    );
    // Nothing else came, anywhere; the request queue is empty.
    let late = receive(&sqs, &refused_replies, 1, Duration::from_secs(2)).await;
    assert!(late.is_empty(), "nothing more: {late:?}");
    let late = receive(&sqs, &replies, 1, Duration::from_secs(1)).await;
    assert!(late.is_empty(), "no result to the signed address: {late:?}");
    assert!(emptied(&sqs, &queue).await, "the forgeries were deleted");
    assert_eq!(
        tags(&dir),
        ["echo-signed", "echo-raw"],
        "no forgery ran; the copy did not run again"
    );
    let stderr = serve.stderr();
    assert_eq!(
        stderr.matches("refused message").count(),
        4,
        "each forgery logged:\n{stderr}"
    );
    serve.assert_running();
}

/// An SQS client of another account: LocalStack takes a 12-digit access key
/// id as the account.
async fn other_account_sqs(ls: &LocalStack) -> aws_sdk_sqs::Client {
    let sdk = ls.sdk_config().await;
    let credentials =
        aws_sdk_sqs::config::Credentials::new("000000000099", "test", None, None, "other-account");
    let config = aws_sdk_sqs::config::Builder::from(&sdk)
        .credentials_provider(credentials)
        .build();
    aws_sdk_sqs::Client::from_conf(config)
}

#[tokio::test(flavor = "multi_thread")]
async fn replies_are_never_sent_outside_the_allowed_addresses() {
    let ls = aws::localstack().await;
    let sqs = ls.sqs_client().await;
    let queue = ls.create_queue("sec-allow").await;
    let replies = ls.create_queue("sec-allow-replies").await;
    let elsewhere_sqs = other_account_sqs(ls).await;
    let elsewhere = elsewhere_sqs
        .create_queue()
        .queue_name(asyncmcp_testkit::unique_name("sec-elsewhere"))
        .send()
        .await
        .expect("CreateQueue in another account")
        .queue_url()
        .expect("a queue URL")
        .to_owned();
    assert!(elsewhere.contains("/000000000099/"), "{elsewhere}");
    // LocalStack checks no cross-account permission: serve's credentials
    // can send there, so only serve's allow-list stands in the way.
    send(&sqs, &elsewhere, &QueueMessage::new(r#"{"probe":1}"#)).await;
    let probe = receive(&elsewhere_sqs, &elsewhere, 1, REPLIES_WITHIN).await;
    assert_eq!(probe.len(), 1, "a send across accounts arrives");

    let dir = FaultDir::new();
    let mut serve = start_serve(ls, &queue, &dir, &[], &[]).await;
    let beside = &queue[..=queue.rfind('/').expect("a queue URL")];
    let name = replies.rsplit('/').next().expect("a queue name");
    let refused = [
        elsewhere.clone(),
        // The same queue name, on another host.
        format!("https://sqs.evil.example/000000000000/{name}"),
        "arn:aws:sns:us-east-1:000000000099:replies".to_owned(),
        // Out of the allowed prefix by path traversal.
        format!("{beside}../000000000099/{name}"),
    ];
    for (id, address) in (1..).zip(&refused) {
        let text = format!("refused-{id}");
        send(
            &sqs,
            &queue,
            &request(id, "echo", json!({"text": text}), address),
        )
        .await;
    }
    send(
        &sqs,
        &queue,
        &request(9, "echo", json!({"text": "control"}), &replies),
    )
    .await;

    let answers = receive(&sqs, &replies, 1, REPLIES_WITHIN).await;
    assert_eq!(answers.len(), 1, "the control call is answered");
    assert_eq!(answers[0].body["id"], 9);
    assert_eq!(
        answers[0].body["result"]["content"][0]["text"],
        "echo: control"
    );
    let dropped = |stderr: &str| -> Vec<String> {
        stderr
            .lines()
            .filter(|line| line.contains("request dropped: no usable reply address"))
            .map(str::to_owned)
            .collect()
    };
    let all_dropped = eventually(REPLIES_WITHIN, || dropped(&serve.stderr()).len() == 4).await;
    assert!(
        all_dropped,
        "each refused request logged:\n{}",
        serve.stderr()
    );
    let lines = dropped(&serve.stderr());
    let not_allowed = lines
        .iter()
        .filter(|l| l.contains("is not allowed"))
        .count();
    let malformed = lines.iter().filter(|l| l.contains("is malformed")).count();
    assert_eq!((not_allowed, malformed), (3, 1), "{lines:#?}");
    assert!(
        lines
            .iter()
            .filter(|l| l.contains("is not allowed"))
            .all(|l| l.contains("--allow-reply-prefix")),
        "a refusal names the setting that allows the address: {lines:#?}"
    );
    assert!(
        emptied(&sqs, &queue).await,
        "the refused requests were deleted"
    );
    assert_eq!(tags(&dir), ["echo-control"], "no refused request ran");
    let stray = receive(&elsewhere_sqs, &elsewhere, 1, Duration::from_secs(2)).await;
    assert!(
        stray.is_empty(),
        "nothing sent to the other account: {stray:?}"
    );
    let stray = receive(&sqs, &replies, 1, Duration::from_secs(1)).await;
    assert!(
        stray.is_empty(),
        "nothing more to the allowed queue: {stray:?}"
    );
    serve.assert_running();
    let _ = elsewhere_sqs
        .delete_queue()
        .queue_url(&elsewhere)
        .send()
        .await;
}

/// Runs `clients/py_asyncmcp_client.py ARGS` (Python asyncmcp 0.2.1, which
/// speaks only `initialize`) to its end; its JSON lines.
async fn python_client(ls: &LocalStack, args: &[&str]) -> Vec<Value> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/py_asyncmcp_client.py");
    let run = tokio::process::Command::new(py_peer_python())
        .arg(script)
        .args(args)
        .envs(ls.aws_env())
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(150), run)
        .await
        .expect("the Python client finished within 150 s")
        .expect("run the Python client");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the Python client failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn two_replicas_sharing_a_session_key_serve_one_legacy_session() {
    let ls = aws::localstack().await;
    let queue = ls.create_queue("sec-replicas").await;
    let replies = ls.create_queue("sec-replicas-replies").await;
    let dir = FaultDir::new();
    let session_key = [("ASYNCMCP_SESSION_KEY", SESSION_KEY)];
    let mut first = start_serve(ls, &queue, &dir, &[], &session_key).await;
    let mut second = start_serve(ls, &queue, &dir, &[], &session_key).await;

    // One `initialize`, then every call carries the session id it sealed:
    // whichever replica takes a call must open it.
    const CALLS: usize = 20;
    let calls = CALLS.to_string();
    let lines = python_client(
        ls,
        &[
            "--server-queue-url",
            &queue,
            "--reply-queue-url",
            &replies,
            "--tool",
            "echo",
            "--arguments",
            r#"{"text": "py-{i}"}"#,
            "--calls",
            &calls,
            "--timeout",
            "120",
        ],
    )
    .await;
    assert_eq!(lines[0]["server"], "fault-server", "{lines:?}");
    let answers: Vec<_> = lines[2..].to_vec();
    assert_eq!(answers.len(), CALLS, "{lines:?}");
    for (i, answer) in answers.iter().enumerate() {
        assert_eq!(answer["call"], i);
        assert_eq!(answer["text"], format!("echo: py-{i}"), "{answer}");
    }

    let runs = dir.runs();
    assert_eq!(runs.len(), CALLS, "each call ran once: {runs:?}");
    let pids: BTreeSet<u32> = runs.iter().map(|(_, pid)| *pid).collect();
    let (of_first, of_second) = (first.children(), second.children());
    let ran = |children: &[u32]| pids.iter().any(|pid| children.contains(pid));
    assert!(
        ran(&of_first) && ran(&of_second),
        "both replicas ran calls of the session: {runs:?} (first {of_first:?}, second {of_second:?})"
    );
    assert!(
        pids.iter()
            .all(|pid| of_first.contains(pid) || of_second.contains(pid)),
        "{runs:?}"
    );
    for serve in [&first, &second] {
        assert!(
            !serve.stderr().contains("refused message"),
            "no session id was refused:\n{}",
            serve.stderr()
        );
    }
    first.assert_running();
    second.assert_running();
}

#[tokio::test(flavor = "multi_thread")]
async fn clients_sharing_a_client_id_each_get_their_own_answers() {
    let ls = aws::localstack().await;
    let queue = ls.create_queue("sec-same-id").await;
    let shared_replies = ls.create_queue("sec-same-id-replies").await;
    let dir = FaultDir::new();
    let mut serve = start_serve(ls, &queue, &dir, &[], &[]).await;

    // Six at once, all `--client-id same`: three with reply queues of their
    // own, three sharing one.
    let calls: Vec<_> = (0..6)
        .map(|i| {
            let (queue, shared_replies) = (queue.clone(), shared_replies.clone());
            tokio::spawn(async move {
                let text = json!({"text": format!("client-{i}")}).to_string();
                let mut args = vec![
                    "call",
                    "--queue-url",
                    &queue,
                    "--client-id",
                    "same",
                    "--timeout",
                    "90s",
                ];
                if i >= 3 {
                    args.extend(["--reply-queue-url", &shared_replies]);
                }
                args.extend(["echo", &text]);
                run_to_end(ls, &args, &[]).await
            })
        })
        .collect();
    for (i, call) in calls.into_iter().enumerate() {
        let run = call.await.expect("call task");
        assert_eq!(run.text(), format!("echo: client-{i}"), "{run:#?}");
    }
    let mut ran = tags(&dir);
    ran.sort();
    let expected: Vec<String> = (0..6).map(|i| format!("echo-client-{i}")).collect();
    assert_eq!(ran, expected, "each call ran once");
    serve.assert_running();
}
