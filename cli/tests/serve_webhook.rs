//! `asyncmcp serve --webhook-listen`, the built binary, in front of the
//! stock server-everything, called by an rmcp client over the library's
//! webhook client transport: requests POSTed to serve's HTTP inbox, replies
//! POSTed back to the client's own receiver. Loopback only.
//!
//! Needs LocalStack (the shared test helper runs every `serve` with its AWS
//! settings) and server-everything: `scripts/test.sh` starts and installs
//! them (see `asyncmcp_testkit::real_clients`).

mod common;

use std::time::Duration;

use asyncmcp::WebhookClientTransport;
use asyncmcp_testkit::aws;
use asyncmcp_testkit::support::{call, text_of};
use common::serve::{Serve, server_everything};
use rmcp::ServiceExt;
use serde_json::json;

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
