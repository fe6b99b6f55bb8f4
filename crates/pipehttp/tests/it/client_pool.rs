//! The client's pool of kept connections against nginx, a server no one
//! here wrote: what `Host` and `:authority` it receives, how HTTP/1
//! connections are reused and replaced when nginx closes them, and that
//! HTTP/2 requests share one connection.

#![cfg(unix)]

use http::StatusCode;
use pipehttp::Client;
use testkit::Nginx;

/// nginx with an HTTP/1.1 socket (`h1.sock`) and an HTTP/2 one
/// (`h2.sock`), each answering `$host $server_protocol` and logging
/// `$connection $connection_requests $host $server_protocol`; HTTP/1
/// connections are closed after `keepalive_requests` requests.
fn nginx(keepalive_requests: u32) -> Nginx {
    Nginx::start(move |dir, _| {
        let d = dir.display();
        format!(
            r#"
    log_format conn '$connection $connection_requests $host $server_protocol';
    access_log {d}/access.log conn;
    keepalive_requests {keepalive_requests};
    server {{
        listen unix:{d}/h1.sock;
        listen unix:{d}/h2.sock http2;
        location / {{ return 200 "$host $server_protocol"; }}
    }}
"#
        )
    })
}

async fn answer(client: &Client, target: &str, host: Option<&str>) -> String {
    let mut req = client.get(target);
    if let Some(host) = host {
        req = req.header("host", host);
    }
    let res = req.send().await.expect("nginx answers");
    assert_eq!(res.status(), StatusCode::OK, "{target} with Host {host:?}");
    res.text().await.expect("the body")
}

/// The connection numbers of the logged requests, in order.
fn connections(log: &str) -> Vec<&str> {
    log.lines()
        .map(|line| line.split(' ').next().expect("a connection number"))
        .collect()
}

#[tokio::test]
async fn nginx_gets_the_host_over_http1_and_the_authority_over_http2() {
    let nginx = nginx(100);
    let h1 = format!("http://unix:{}:/", nginx.dir().join("h1.sock").display());
    let h2 = format!("http://unix:{}:/", nginx.dir().join("h2.sock").display());
    let http1 = Client::new();
    let http2 = Client::builder().http2_prior_knowledge().build();
    // (client, target, the Host the caller names, what nginx saw)
    let cases = [
        (&http1, &h1, None, "localhost HTTP/1.1"),
        // One Host, the caller's: nginx refuses a request with two.
        (&http1, &h1, Some("example.test"), "example.test HTTP/1.1"),
        (&http2, &h2, None, "localhost HTTP/2.0"),
        // Over HTTP/2 the caller's Host becomes :authority.
        (
            &http2,
            &h2,
            Some("example.test:8080"),
            "example.test HTTP/2.0",
        ),
    ];
    for (client, target, host, want) in cases {
        assert_eq!(answer(client, target, host).await, want, "Host {host:?}");
    }
}

#[tokio::test]
async fn connections_nginx_closes_are_replaced_without_a_failed_request() {
    let nginx = nginx(2);
    let h1 = format!("http://unix:{}:/", nginx.dir().join("h1.sock").display());
    let client = Client::new();
    for _ in 0..5 {
        assert_eq!(answer(&client, &h1, None).await, "localhost HTTP/1.1");
    }
    // Two requests a connection, as nginx was told: three connections, each
    // used to its end.
    let log = nginx.access_log(5);
    let seen = connections(&log);
    assert_eq!(seen.len(), 5, "{log}");
    assert!(
        seen[0] == seen[1] && seen[2] == seen[3] && seen[1] != seen[2] && seen[3] != seen[4],
        "{log}"
    );
}

#[tokio::test]
async fn http2_requests_at_once_share_one_connection() {
    let nginx = nginx(100);
    let h2 = format!("http://unix:{}:/", nginx.dir().join("h2.sock").display());
    let client = Client::builder().http2_prior_knowledge().build();
    // The first request opens the connection; the next 20 go at once.
    assert_eq!(answer(&client, &h2, None).await, "localhost HTTP/2.0");
    let mut at_once = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let (client, h2) = (client.clone(), h2.clone());
        at_once.spawn(async move { answer(&client, &h2, None).await });
    }
    for answered in at_once.join_all().await {
        assert_eq!(answered, "localhost HTTP/2.0");
    }
    let log = nginx.access_log(21);
    let seen = connections(&log);
    assert!(seen.iter().all(|c| *c == seen[0]), "{log}");
}

#[tokio::test]
async fn a_connection_idle_past_the_pool_timeout_is_not_reused() {
    let nginx = nginx(100);
    let h1 = format!("http://unix:{}:/", nginx.dir().join("h1.sock").display());
    let client = Client::builder()
        .pool_idle_timeout(std::time::Duration::ZERO)
        .build();
    for _ in 0..3 {
        assert_eq!(answer(&client, &h1, None).await, "localhost HTTP/1.1");
    }
    let log = nginx.access_log(3);
    let seen = connections(&log);
    assert!(seen[0] != seen[1] && seen[1] != seen[2], "{log}");
}

/// A server that never closes a connection itself: it answers one request
/// and then tells when the client closed the connection.
#[tokio::test]
async fn a_client_that_stops_sending_closes_its_idle_connections() {
    use std::io::{Read, Write};
    let dir = testkit::tempdir().expect("a temp dir");
    let socket = dir.path().join("server.sock");
    let listener = std::os::unix::net::UnixListener::bind(&socket).expect("bind");
    let (closed_tx, closed_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().expect("a connection");
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = conn.read(&mut buf).expect("the request");
            assert!(n > 0, "the client closed before its request ended");
            head.extend_from_slice(&buf[..n]);
        }
        conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            .expect("the answer");
        // Blocks until the client closes its end.
        let rest = conn.read(&mut buf).expect("the end of the connection");
        closed_tx.send(rest).expect("the test waits");
    });
    let client = Client::builder()
        .pool_idle_timeout(std::time::Duration::from_millis(200))
        .build();
    let target = format!("http://unix:{}:/", socket.display());
    let res = client.get(&target).send().await.expect("an answer");
    assert_eq!(res.text().await.expect("the body"), "ok");
    // The client is kept alive and sends nothing more: its pool closes the
    // idle connection once the timeout has passed.
    let closed = tokio::task::spawn_blocking(move || {
        closed_rx.recv_timeout(std::time::Duration::from_secs(20))
    })
    .await
    .expect("the waiting task");
    assert_eq!(closed, Ok(0), "the idle connection was not closed");
    drop(client);
}
