//! The HTTP server's limits and shutdown, over real TCP connections: slow clients, idle
//! keep-alive connections, request timeout, concurrency limit, drain and the shutdown
//! deadline.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use silo_kit::server::{Draining, ServerLimits};
use silo_kit::service::{RunningService, bind};
use silo_kit::shutdown::Shutdown;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Notify;

/// Long enough that nothing in these tests finishes by itself.
const FOREVER: Duration = Duration::from_secs(3600);
/// How long a test waits for what must happen before calling it a failure (not a timing
/// assertion: the limits under test are far shorter).
const PATIENCE: Duration = Duration::from_secs(20);

fn short_limits() -> ServerLimits {
    ServerLimits {
        header_read_timeout: Duration::from_millis(300),
        request_timeout: Duration::from_millis(300),
        max_concurrent_requests: 1,
        drain: Duration::from_millis(1500),
        shutdown_timeout: Duration::from_millis(300),
    }
}

/// `/fast` answers at once; `/hold` answers when `release` is notified; `/never` notifies
/// `entered` and never answers. `/readyz` reports draining the way the kit's router does.
async fn start(limits: ServerLimits, release: Arc<Notify>) -> RunningService {
    start_with(limits, release, Arc::new(Notify::new())).await
}

async fn start_with(
    limits: ServerLimits,
    release: Arc<Notify>,
    entered: Arc<Notify>,
) -> RunningService {
    let draining = Draining::default();
    let readiness = draining.clone();
    let router = Router::new()
        .route("/fast", get(|| async { "fast" }))
        .route(
            "/hold",
            get(move || {
                let release = release.clone();
                async move {
                    release.notified().await;
                    "held"
                }
            }),
        )
        .route(
            "/never",
            get(move || {
                entered.notify_one();
                tokio::time::sleep(FOREVER)
            }),
        )
        .route(
            "/readyz",
            get(move || {
                let draining = readiness.is_draining();
                async move { if draining { "draining" } else { "ready" } }
            }),
        );
    let bound = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    RunningService::start(bound, router, Shutdown::new(), vec![], limits, draining)
}

/// Reads until the peer closes the connection; what it sent.
async fn read_to_close(stream: &mut TcpStream) -> String {
    let mut received = Vec::new();
    tokio::time::timeout(PATIENCE, stream.read_to_end(&mut received))
        .await
        .expect("the server kept the connection open")
        .ok();
    String::from_utf8_lossy(&received).into_owned()
}

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_disconnected() {
    let service = start(short_limits(), Arc::new(Notify::new())).await;
    let mut stream = TcpStream::connect(service.address()).await.unwrap();
    stream
        .write_all(b"GET /fast HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let received = read_to_close(&mut stream).await;
    assert!(!received.contains("fast"), "{received}");
    service.stop().await;
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_header_timeout() {
    let service = start(short_limits(), Arc::new(Notify::new())).await;
    let mut stream = TcpStream::connect(service.address()).await.unwrap();
    stream
        .write_all(b"GET /fast HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let received = read_to_close(&mut stream).await;
    assert!(received.starts_with("HTTP/1.1 200"), "{received}");
    assert!(received.ends_with("fast"), "{received}");
    service.stop().await;
}

#[tokio::test]
async fn a_request_over_the_request_timeout_gets_408() {
    let service = start(short_limits(), Arc::new(Notify::new())).await;
    let response = reqwest::get(format!("http://{}/never", service.address()))
        .await
        .unwrap();
    assert_eq!(response.status(), 408);
    let body = response.text().await.unwrap();
    assert!(body.contains("too long"), "{body}");
    service.stop().await;
}

#[tokio::test]
async fn a_request_over_the_concurrency_limit_gets_503_and_retry_after() {
    let release = Arc::new(Notify::new());
    let limits = ServerLimits {
        request_timeout: FOREVER,
        ..short_limits()
    };
    let service = start(limits, release.clone()).await;
    let address = service.address();
    let held = tokio::spawn(async move { reqwest::get(format!("http://{address}/hold")).await });
    // Once `/hold` occupies the only permit, a second request is refused at once.
    let mut refused = None;
    for _ in 0..500 {
        let response = reqwest::get(format!("http://{address}/fast"))
            .await
            .unwrap();
        if response.status() == 503 {
            refused = Some(response);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let refused = refused.expect("a second request was served beside the held one");
    assert_eq!(refused.headers()["retry-after"], "1");
    release.notify_one();
    assert_eq!(held.await.unwrap().unwrap().status(), 200);
    let after = reqwest::get(format!("http://{address}/fast"))
        .await
        .unwrap();
    assert_eq!(after.status(), 200, "the permit came back");
    service.stop().await;
}

#[tokio::test]
async fn draining_fails_readiness_but_serves_requests_and_lets_the_in_flight_one_finish() {
    let release = Arc::new(Notify::new());
    let limits = ServerLimits {
        request_timeout: FOREVER,
        max_concurrent_requests: 16,
        shutdown_timeout: PATIENCE,
        drain: Duration::from_secs(3),
        ..short_limits()
    };
    let service = Arc::new(start(limits, release.clone()).await);
    let address = service.address();
    let client = reqwest::Client::new();
    let in_flight = {
        let client = client.clone();
        tokio::spawn(async move { client.get(format!("http://{address}/hold")).send().await })
    };
    let get = |path: &str| client.get(format!("http://{address}{path}")).send();
    assert_eq!(get("/readyz").await.unwrap().text().await.unwrap(), "ready");
    let stopping = tokio::spawn({
        let service = service.clone();
        async move { service.drain_and_stop().await }
    });
    // During the drain: not ready, yet requests are answered.
    let mut drained = false;
    while !drained {
        drained = get("/readyz").await.unwrap().text().await.unwrap() == "draining";
    }
    assert_eq!(get("/fast").await.unwrap().text().await.unwrap(), "fast");
    release.notify_one();
    let held = in_flight.await.unwrap().unwrap();
    assert_eq!(held.text().await.unwrap(), "held");
    tokio::time::timeout(PATIENCE, stopping)
        .await
        .expect("the service did not stop")
        .unwrap();
    assert!(
        TcpStream::connect(address).await.is_err(),
        "still listening"
    );
}

#[tokio::test]
async fn the_shutdown_deadline_cuts_off_a_request_that_outlives_it() {
    let limits = ServerLimits {
        request_timeout: FOREVER,
        ..short_limits()
    };
    let entered = Arc::new(Notify::new());
    let service = start_with(limits, Arc::new(Notify::new()), entered.clone()).await;
    let address = service.address();
    let mut stream = TcpStream::connect(address).await.unwrap();
    stream
        .write_all(b"GET /never HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    entered.notified().await;
    tokio::time::timeout(PATIENCE, service.stop())
        .await
        .expect("stop waited past the shutdown deadline");
    assert!(
        TcpStream::connect(address).await.is_err(),
        "still listening"
    );
}
