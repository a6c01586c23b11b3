//! The webhook listeners' serve loop (`asyncmcp::queue::webhook::serve`)
//! keeps its limits against clients that open connections and stall: a head
//! that never completes is cut off, connections past the cap wait, an
//! exchange that takes too long is answered 408, and a stop ends it.
//! Loopback only.

use std::net::SocketAddr;
use std::time::Duration;

use asyncmcp::queue::webhook::{HttpLimits, serve};
use axum::Router;
use axum::routing::get;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Bounds each wait of the tests (not a measurement: a hang fails).
const PATIENCE: Duration = Duration::from_secs(15);

/// Serves a `/` answering "ok" and a `/slow` answering after 30 s within
/// `limits` on a loopback port.
async fn start(limits: HttpLimits) -> (SocketAddr, CancellationToken, tokio::task::JoinHandle<()>) {
    let router = Router::new().route("/", get(|| async { "ok" })).route(
        "/slow",
        get(|| async {
            tokio::time::sleep(Duration::from_secs(30)).await;
            "late"
        }),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    let stop = CancellationToken::new();
    let served = tokio::spawn(serve(listener, router, limits, stop.clone()));
    (address, stop, served)
}

/// Reads until the server closes the connection; what it sent.
async fn read_to_close(stream: &mut TcpStream) -> String {
    let mut seen = Vec::new();
    let mut buffer = [0u8; 1024];
    loop {
        match tokio::time::timeout(PATIENCE, stream.read(&mut buffer)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => seen.extend_from_slice(&buffer[..n]),
            Err(_) => panic!("the server never closed the connection"),
        }
    }
    String::from_utf8_lossy(&seen).into_owned()
}

/// One GET of `path` on a fresh connection; the whole answer.
async fn get_once(address: SocketAddr, path: &str) -> String {
    let mut stream = TcpStream::connect(address).await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    read_to_close(&mut stream).await
}

#[tokio::test]
async fn a_head_that_never_completes_is_cut_off() {
    let limits = HttpLimits {
        header_read_timeout: Duration::from_millis(500),
        ..HttpLimits::default()
    };
    let (address, stop, _served) = start(limits).await;
    let mut stalled = TcpStream::connect(address).await.expect("connect");
    stalled
        .write_all(b"POST /mcp/request HTTP/1.1\r\nHost: test\r\n")
        .await
        .expect("write");
    let answer = read_to_close(&mut stalled).await;
    assert!(!answer.contains("200 OK"), "{answer}");
    // The listener still serves others.
    assert!(get_once(address, "/").await.contains("200 OK"));
    stop.cancel();
}

#[tokio::test]
async fn connections_past_the_cap_wait_for_a_slot() {
    let limits = HttpLimits {
        max_connections: 1,
        header_read_timeout: Duration::from_secs(1),
        ..HttpLimits::default()
    };
    let (address, stop, _served) = start(limits).await;
    let (events, mut order) = mpsc::unbounded_channel();
    // Takes the one slot and sends nothing.
    let mut idle = TcpStream::connect(address).await.expect("connect");
    // Let the server accept it before the second comes.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let closed = events.clone();
    tokio::spawn(async move {
        read_to_close(&mut idle).await;
        let _ = closed.send("idle connection closed");
    });
    let answered = events.clone();
    tokio::spawn(async move {
        let answer = get_once(address, "/").await;
        assert!(answer.contains("200 OK"), "{answer}");
        let _ = answered.send("second connection answered");
    });
    let first = tokio::time::timeout(PATIENCE, order.recv())
        .await
        .expect("an event");
    let second = tokio::time::timeout(PATIENCE, order.recv())
        .await
        .expect("an event");
    assert_eq!(
        [first, second],
        [
            Some("idle connection closed"),
            Some("second connection answered")
        ],
        "the second connection waits until the idle one gives its slot back"
    );
    stop.cancel();
}

#[tokio::test]
async fn an_exchange_past_the_request_timeout_is_answered_408() {
    let limits = HttpLimits {
        request_timeout: Duration::from_millis(300),
        ..HttpLimits::default()
    };
    let (address, stop, _served) = start(limits).await;
    let answer = get_once(address, "/slow").await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(!answer.contains("late"), "{answer}");
    stop.cancel();
}

#[tokio::test]
async fn a_stop_ends_the_loop_and_takes_no_more_connections() {
    let (address, stop, served) = start(HttpLimits::default()).await;
    assert!(get_once(address, "/").await.contains("200 OK"));
    stop.cancel();
    tokio::time::timeout(PATIENCE, served)
        .await
        .expect("serve returns after a stop")
        .expect("serve did not panic");
    // The listener is dropped with the loop: nothing accepts any more.
    assert!(TcpStream::connect(address).await.is_err());
}
