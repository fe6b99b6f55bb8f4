//! End-to-end tests of the library's server: a `Server` runs in this
//! process and real clients call it through real pipes, sockets and TCP.
//!
//! The tests outside `mod unix` use only pipe names, TCP and pipehttp's own
//! client and connector, so they run on Windows too.

use std::convert::Infallible;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::sample::SampleApp;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use pipehttp::client::Connector;
use pipehttp::server::{BoundAddress, HttpBody, HttpService};
use pipehttp::transport::Connection;
use pipehttp::{Client, Error, RequestBody, Server, ServerBuilder};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::{Notify, oneshot};
use tokio::task::JoinHandle;

/// The longest any single wait in these tests may take before it counts as
/// a failure (a hang), never as a measure of speed.
pub(crate) const PATIENCE: Duration = Duration::from_secs(20);

/// A server running in this test's runtime until [`Running::stop`].
pub(crate) struct Running {
    pub(crate) addresses: Vec<BoundAddress>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<pipehttp::Result<()>>,
}

impl Running {
    /// The bound address of the `i`-th `listen()` call, e.g. the real TCP port.
    pub(crate) fn address(&self, i: usize) -> String {
        self.addresses[i].address.to_string()
    }

    /// Waits until the server stops by itself (it handed its names over),
    /// without asking it to.
    // The takeover edge tests that use it are Unix only.
    #[cfg_attr(not(unix), allow(dead_code))]
    pub(crate) async fn finished(self) -> pipehttp::Result<()> {
        within(self.task).await.expect("the server task panicked")
    }

    /// Asks the server to stop and waits until `serve_with_shutdown` returns.
    pub(crate) async fn stop(mut self) -> pipehttp::Result<()> {
        let _ = self.stop.take().expect("stopped once").send(());
        within(self.task).await.expect("the server task panicked")
    }
}

/// Binds `builder` (the server is ready once this returns) and serves `app`.
pub(crate) async fn start_with<B: HttpBody>(
    builder: ServerBuilder,
    app: impl HttpService<B>,
) -> Running {
    let server = builder.bind().await.expect("the server binds");
    let addresses = server.local_addresses();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(server.serve_with_shutdown(app, async {
        let _ = stopped.await;
    }));
    Running {
        addresses,
        stop: Some(stop),
        task,
    }
}

/// Binds `builder` and serves the sample app (`/test`, `/echo`, `/whoami`…).
pub(crate) async fn start(builder: ServerBuilder) -> Running {
    start_with(builder, SampleApp::new()).await
}

/// A builder listening on a new pipe; returns the builder and the name.
pub(crate) fn on_new_pipe(prefix: &str) -> (ServerBuilder, String) {
    let name = testkit::unique_name(prefix);
    let builder = Server::builder().listen(format!("http://pipe:/{name}").as_str());
    (builder, name)
}

/// Awaits `fut`, failing the test if it hangs.
pub(crate) async fn within<F: std::future::Future>(fut: F) -> F::Output {
    tokio::time::timeout(PATIENCE, fut)
        .await
        .expect("the operation hung")
}

/// GET over the pipehttp client; returns status and body text.
async fn get(target: &str) -> (StatusCode, String) {
    let res = within(Client::new().get(target).send())
        .await
        .unwrap_or_else(|e| panic!("GET {target}: {e}"));
    let status = res.status();
    (status, within(res.text()).await.expect("the body"))
}

/// Checks that `target` is the sample app's `/test`: a 200 with "Hello world!".
async fn assert_serves_test(target: &str) {
    assert_eq!(
        get(target).await,
        (StatusCode::OK, "Hello world!".to_owned()),
        "GET {target}"
    );
}

/// A raw connection to a listen address, for tests about the wire itself.
pub(crate) async fn connect_raw(address: &str) -> Connection {
    within(Connector::new(address).expect("an address").connect())
        .await
        .expect("connect")
}

/// Reads one HTTP/1.1 response whose body has a Content-Length; returns
/// the head (status line and headers) and the body.
pub(crate) async fn read_response(
    conn: &mut (impl AsyncRead + Unpin),
) -> io::Result<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(response) = testkit::complete_response(&buf) {
            return Ok(response);
        }
        match conn.read(&mut chunk).await? {
            0 => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "closed after {:?}",
                        String::from_utf8_lossy(&buf)
                            .chars()
                            .take(200)
                            .collect::<String>()
                    ),
                ));
            }
            n => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// A read error that is how a peer's close may show on a pipe or socket: a
/// reset, an abort or a broken pipe.
pub(crate) fn is_a_close(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionAborted
    )
}

/// Reads until the peer closes (EOF, or a reset / broken pipe, which is how
/// a pipe's close may show) and returns every byte that came before.
pub(crate) async fn read_until_closed(conn: &mut (impl AsyncRead + Unpin)) -> Vec<u8> {
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match within(conn.read(&mut chunk)).await {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&chunk[..n]),
            Err(e) if is_a_close(&e) => return got,
            Err(e) => panic!("reading failed with {e} instead of a clean close"),
        }
    }
}

const GET_TEST: &[u8] = b"GET /test HTTP/1.1\r\nHost: localhost\r\n\r\n";

/// One GET /test on an open raw connection, which stays open afterwards.
async fn get_test_raw(conn: &mut Connection) -> (String, Vec<u8>) {
    within(conn.write_all(GET_TEST)).await.expect("write");
    within(read_response(conn)).await.expect("a response")
}

#[tokio::test]
async fn pipe_and_tcp_both_answer_hello_world() {
    // One server, two kinds of endpoint: each one serves the app.
    let (builder, name) = on_new_pipe("hello");
    let server = start(builder.listen("http://127.0.0.1:0")).await;
    let port = server.addresses[1].address.to_string();
    assert!(!port.ends_with(":0"), "the real port is reported: {port}");

    assert_serves_test(&format!("http://pipe:/{name}:/test")).await;
    assert_serves_test(&format!("{port}/test")).await;
    server.stop().await.expect("a clean stop");
}

#[tokio::test]
async fn pipe_serves_http2_with_prior_knowledge() {
    // A cleartext HTTP/2 client is served on the same pipe as HTTP/1.1 clients.
    let (builder, name) = on_new_pipe("h2");
    let server = start(builder).await;
    let client = Client::builder().http2_prior_knowledge().build();
    let res = within(
        client
            .get(format!("http://pipe:/{name}:/test").as_str())
            .send(),
    )
    .await
    .expect("an HTTP/2 response");
    assert_eq!(res.version(), http::Version::HTTP_2);
    assert_eq!(res.text().await.unwrap(), "Hello world!");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn second_server_on_a_live_pipe_fails_and_first_keeps_serving() {
    // A name held by a live server is never shared or stolen.
    let (builder, name) = on_new_pipe("taken");
    let first = start(builder).await;

    let second = Server::builder()
        .listen(format!("http://pipe:/{name}").as_str())
        .bind()
        .await;
    let err = second.expect_err("a second server on a live name must fail");
    assert!(err.is_addr_in_use(), "{err:?}");
    let message = err.to_string();
    assert!(message.contains("already in use"), "{message}");
    assert!(
        message.contains(&name),
        "the message names the pipe: {message}"
    );

    assert_serves_test(&format!("http://pipe:/{name}:/test")).await;
    first.stop().await.unwrap();
}

#[tokio::test]
async fn whoami_reports_pipe_peer_with_our_pid() {
    // A handler learns the caller's transport, pid (and on Unix uid/gid).
    let (builder, name) = on_new_pipe("whoami");
    let server = start(builder.listen("http://127.0.0.1:0")).await;

    let (status, body) = get(&format!("http://pipe:/{name}:/whoami")).await;
    assert_eq!(status, StatusCode::OK);
    let me: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(me["transport"], "pipe", "{me}");
    assert_eq!(me["pid"], std::process::id(), "{me}");
    #[cfg(unix)]
    {
        // SAFETY: geteuid/getegid cannot fail.
        let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
        assert_eq!(me["uid"], uid, "{me}");
        assert_eq!(me["gid"], gid, "{me}");
    }

    let (status, body) = get(&format!("{}/whoami", server.address(1))).await;
    assert_eq!(status, StatusCode::OK);
    let me: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(me["transport"], "tcp", "{me}");
    assert!(
        me["addr"]
            .as_str()
            .is_some_and(|a| a.starts_with("127.0.0.1:")),
        "{me}"
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn body_over_limit_with_content_length_gets_413() {
    // A declared length past max_request_body_size is refused; at the limit it passes.
    let (builder, name) = on_new_pipe("413cl");
    let server = start(builder.max_request_body_size(Some(1000))).await;
    let echo = format!("http://pipe:/{name}:/echo");
    let client = Client::new();

    let res = within(client.post(echo.as_str()).body(vec![b'a'; 1001]).send())
        .await
        .expect("a response");
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);

    let res = within(client.post(echo.as_str()).body(vec![b'b'; 1000]).send())
        .await
        .expect("a response");
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.bytes().await.unwrap(), vec![b'b'; 1000]);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn chunked_body_over_limit_gets_413() {
    // A chunked body (no declared length) that grows past the limit gets 413.
    let (builder, _) = on_new_pipe("413chunk");
    let server = start(builder.max_request_body_size(Some(1000))).await;
    let address = server.address(0);

    let chunked = |len: usize| {
        let mut req =
            b"POST /echo HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
                .to_vec();
        // Two chunks, so the limit is crossed by a later chunk, not the first.
        let half = len / 2;
        for part in [half, len - half] {
            req.extend_from_slice(format!("{part:x}\r\n").as_bytes());
            req.extend(std::iter::repeat_n(b'c', part));
            req.extend_from_slice(b"\r\n");
        }
        req.extend_from_slice(b"0\r\n\r\n");
        req
    };

    let mut conn = connect_raw(&address).await;
    within(conn.write_all(&chunked(1001))).await.unwrap();
    let (head, _) = within(read_response(&mut conn)).await.expect("a response");
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");

    let mut conn = connect_raw(&address).await;
    within(conn.write_all(&chunked(1000))).await.unwrap();
    let (head, body) = within(read_response(&mut conn)).await.expect("a response");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(body, vec![b'c'; 1000]);
    server.stop().await.unwrap();
}

/// A request head against a `max_request_headers_total_size`.
struct HeadCase {
    /// What the case proves; its failure message says it.
    proves: &'static str,
    limit: usize,
    /// The length of one header's value, which makes up most of the head.
    header_len: usize,
    status: StatusCode,
}

const HEAD_CASES: &[HeadCase] = &[
    HeadCase {
        proves: "a head past the limit gets 431",
        limit: 16 * 1024,
        header_len: 20 * 1024,
        status: StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
    },
    HeadCase {
        proves: "a head under the limit passes",
        limit: 16 * 1024,
        header_len: 12 * 1024,
        status: StatusCode::OK,
    },
    HeadCase {
        proves: "the limit holds below 8 KiB too (hyper's smallest buffer)",
        limit: 2048,
        header_len: 6 * 1024,
        status: StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
    },
];

#[tokio::test]
async fn headers_over_limit_get_431_and_under_it_pass() {
    for case in HEAD_CASES {
        let (builder, name) = on_new_pipe("431");
        let server = start(builder.max_request_headers_total_size(case.limit)).await;
        let value = "x".repeat(case.header_len);
        let res = within(
            Client::new()
                .get(format!("http://pipe:/{name}:/test").as_str())
                .header("x-big", value.as_str())
                .send(),
        )
        .await
        .unwrap_or_else(|e| panic!("{}: no response: {e}", case.proves));
        assert_eq!(res.status(), case.status, "{}", case.proves);
        server.stop().await.unwrap();
    }
}

/// Serves the sample app on a new pipe with `request_headers_timeout`
/// `timeout` and a keep-alive timeout far longer.
async fn start_with_headers_timeout(prefix: &str, timeout: Duration) -> Running {
    let (builder, _) = on_new_pipe(prefix);
    start(
        builder
            .request_headers_timeout(timeout)
            .keep_alive_timeout(Duration::from_secs(60)),
    )
    .await
}

#[tokio::test]
async fn slow_request_head_is_cut_at_headers_timeout() {
    // A client that trickles its request head is disconnected, without a response.
    let timeout = Duration::from_secs(1);
    let server = start_with_headers_timeout("slowhead", timeout).await;

    let conn = connect_raw(&server.address(0)).await;
    let (mut reader, mut writer) = tokio::io::split(conn);
    let started = Instant::now();
    let trickle: JoinHandle<io::Result<()>> = tokio::spawn(async move {
        writer.write_all(b"GET /test HTTP/1.1\r\nX-Slow: ").await?;
        loop {
            tokio::time::sleep(Duration::from_millis(50)).await;
            writer.write_all(b"z").await?;
        }
    });

    let got = read_until_closed(&mut reader).await;
    let elapsed = started.elapsed();
    trickle.abort();
    assert!(
        got.is_empty(),
        "the server answered instead of closing: {:?}",
        String::from_utf8_lossy(&got)
    );
    assert!(
        elapsed >= timeout,
        "cut after {elapsed:?}, before the {timeout:?} headers timeout"
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn idle_keep_alive_connection_outlives_headers_timeout() {
    // Idle time is governed by keep_alive_timeout, not request_headers_timeout.
    let headers_timeout = Duration::from_millis(500);
    let server = start_with_headers_timeout("idlekeep", headers_timeout).await;
    let mut conn = connect_raw(&server.address(0)).await;

    // Idle before the first request, then between requests, each time for
    // well past the headers timeout.
    for _ in 0..2 {
        tokio::time::sleep(headers_timeout * 3).await;
        let (head, body) = get_test_raw(&mut conn).await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert_eq!(body, b"Hello world!");
    }
    server.stop().await.unwrap();
}

#[tokio::test]
async fn idle_connection_is_closed_at_keep_alive_timeout() {
    // A connection with no request in flight is closed after
    // keep_alive_timeout: one second, before it rests; three, after.
    for keep_alive in [Duration::from_secs(1), Duration::from_secs(3)] {
        let (builder, _) = on_new_pipe("keepalive");
        let server = start(builder.keep_alive_timeout(keep_alive)).await;
        let mut conn = connect_raw(&server.address(0)).await;

        let (head, _) = get_test_raw(&mut conn).await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        let idle_from = Instant::now();
        let got = read_until_closed(&mut conn).await;
        assert!(got.is_empty(), "{:?}", String::from_utf8_lossy(&got));
        // A lower bound only: it must not be cut well before the timeout.
        assert!(
            idle_from.elapsed() >= keep_alive / 2,
            "closed after {:?} with a {keep_alive:?} timeout",
            idle_from.elapsed()
        );
        server.stop().await.unwrap();
    }
}

/// Long past the quarter second after which an idle HTTP/1 connection
/// rests (gives hyper's buffers back), and the watchdog's one-second look.
const RESTED: Duration = Duration::from_secs(2);

#[tokio::test]
async fn a_connection_that_rested_while_idle_keeps_every_promise() {
    // An idle HTTP/1 connection is taken from hyper and given back with its
    // next bytes: what it then sends is served, timed and limited as ever.
    let (builder, _) = on_new_pipe("rested");
    let headers_timeout = Duration::from_millis(500);
    let server = start(
        builder
            .request_headers_timeout(headers_timeout)
            .keep_alive_timeout(Duration::from_secs(60))
            .max_concurrent_connections(Some(1)),
    )
    .await;
    let address = server.address(0);

    let mut conn = connect_raw(&address).await;
    assert!(get_test_raw(&mut conn).await.0.starts_with("HTTP/1.1 200"));
    tokio::time::sleep(RESTED).await;
    // Its next request, and one after it.
    for _ in 0..2 {
        let (head, body) = get_test_raw(&mut conn).await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert_eq!(body, b"Hello world!");
    }
    tokio::time::sleep(RESTED).await;
    // Two requests in one write: both are answered.
    let pipelined = [
        GET_TEST,
        b"GET /test HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    ]
    .concat();
    within(conn.write_all(&pipelined)).await.expect("write");
    let got = String::from_utf8_lossy(&read_until_closed(&mut conn).await).into_owned();
    assert_eq!(got.matches("HTTP/1.1 200").count(), 2, "{got}");

    // A head begun after a rest is cut at the headers timeout.
    let mut conn = connect_raw(&address).await;
    assert!(get_test_raw(&mut conn).await.0.starts_with("HTTP/1.1 200"));
    tokio::time::sleep(RESTED).await;
    within(conn.write_all(b"GET /test HTTP/1.1\r\nX-Slow: "))
        .await
        .expect("write");
    let started = Instant::now();
    let got = read_until_closed(&mut conn).await;
    assert!(got.is_empty(), "{:?}", String::from_utf8_lossy(&got));
    assert!(
        started.elapsed() >= headers_timeout / 2,
        "{:?}",
        started.elapsed()
    );

    // A request and the start of a next one in one write, then silence:
    // the half head hyper holds when the connection would rest is timed
    // from then, and cut at the headers timeout.
    let mut conn = connect_raw(&address).await;
    let half = [GET_TEST, b"GET /test HTTP/1.1\r\nX-Slow: "].concat();
    within(conn.write_all(&half)).await.expect("write");
    let started = Instant::now();
    let got = String::from_utf8_lossy(&read_until_closed(&mut conn).await).into_owned();
    assert_eq!(got.matches("HTTP/1.1 200").count(), 1, "{got}");
    // Well short of the keep-alive timeout (60 s), which is what cut it
    // when the half head went untimed.
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );

    // A resting connection its client closes gives its slot back: the only
    // slot, so the next client is served.
    let mut conn = connect_raw(&address).await;
    assert!(get_test_raw(&mut conn).await.0.starts_with("HTTP/1.1 200"));
    tokio::time::sleep(RESTED).await;
    drop(conn);
    let mut next = connect_raw(&address).await;
    assert!(get_test_raw(&mut next).await.0.starts_with("HTTP/1.1 200"));
    drop(next);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn max_concurrent_connections_holds_a_third_until_one_closes() {
    // With a limit of 2, a third client is served only once a slot frees.
    let (builder, _) = on_new_pipe("maxconn");
    let server = start(builder.max_concurrent_connections(Some(2))).await;
    let address = server.address(0);

    let mut first = connect_raw(&address).await;
    let mut second = connect_raw(&address).await;
    assert!(get_test_raw(&mut first).await.0.starts_with("HTTP/1.1 200"));
    assert!(
        get_test_raw(&mut second)
            .await
            .0
            .starts_with("HTTP/1.1 200")
    );

    let third_address = address.clone();
    let mut third = tokio::spawn(async move {
        let mut conn = Connector::new(third_address.as_str())
            .unwrap()
            .connect_timeout(PATIENCE)
            .connect()
            .await
            .unwrap();
        conn.write_all(GET_TEST).await?;
        read_response(&mut conn).await
    });
    // A bounded negative check: while both slots are held, no answer comes.
    let early = tokio::time::timeout(Duration::from_millis(500), &mut third).await;
    assert!(
        early.is_err(),
        "the third connection was answered past the limit: {early:?}"
    );

    drop(first);
    let (head, body) = within(third)
        .await
        .unwrap()
        .expect("served after a slot freed");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(body, b"Hello world!");
    drop(second);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn graceful_stop_finishes_request_in_flight() {
    // After the stop signal the server accepts nobody new, lets the running
    // request finish, then removes its socket and returns Ok.
    let name = testkit::unique_name("graceful");
    let (entered, release) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let server = Server::builder()
        .listen(format!("http://pipe:/{name}").as_str())
        .shutdown_timeout(PATIENCE)
        .bind()
        .await
        .unwrap();
    let path = server.local_addresses()[0].path.clone().expect("a path");
    let (stop, stop_rx) = oneshot::channel::<()>();
    let (seen_tx, seen) = oneshot::channel::<()>();
    // `/slow` says when it starts and finishes only when released, so the
    // test knows exactly when a request is in flight.
    let (e, r) = (entered.clone(), release.clone());
    let app = tower::service_fn(move |_req: Request<RequestBody>| {
        let (entered, release) = (e.clone(), r.clone());
        async move {
            entered.notify_one();
            release.notified().await;
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"finished"))))
        }
    });
    let task = tokio::spawn(server.serve_with_shutdown(app, async move {
        let _ = stop_rx.await;
        let _ = seen_tx.send(());
    }));

    let target = format!("http://pipe:/{name}:/slow");
    let in_flight = tokio::spawn(async move {
        let res = Client::new().get(target.as_str()).send().await?;
        let status = res.status();
        Ok::<_, Error>((status, res.text().await?))
    });
    within(entered.notified()).await;

    stop.send(()).unwrap();
    within(seen).await.unwrap();
    #[cfg(unix)]
    {
        eventually("the socket file is removed on stop", || !path.exists()).await;
        let refused = Client::builder()
            .connect_timeout(Duration::from_millis(200))
            .build()
            .get(format!("http://pipe:/{name}:/slow").as_str())
            .send()
            .await;
        assert!(
            matches!(refused, Err(ref e) if e.is_connect()),
            "a new client was let in while draining: {refused:?}"
        );
    }
    #[cfg(not(unix))]
    let _ = &path;
    assert!(
        !task.is_finished(),
        "the server returned with a request in flight"
    );

    release.notify_one();
    let (status, body) = within(in_flight)
        .await
        .unwrap()
        .expect("the in-flight response");
    assert_eq!((status, body.as_str()), (StatusCode::OK, "finished"));
    within(task).await.unwrap().expect("serve returns Ok");
    #[cfg(unix)]
    assert!(!path.exists(), "the socket file is gone after the stop");
}

/// Polls `done` until it holds, for a state change no event announces;
/// fails the test if it never does.
#[cfg(unix)]
async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !done() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[cfg(unix)]
mod unix {
    //! Unix only: curl as a real peer, socket files, modes and other users.

    use std::fs;
    use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
    use std::path::{Path, PathBuf};
    use std::process::Output;

    use super::*;

    const CURL: &str = "/usr/bin/curl";

    /// Runs curl (optionally through `setpriv` as another user) with `args`.
    async fn curl_as(user: Option<u32>, args: &[&str]) -> Output {
        let mut cmd = match user {
            Some(id) => {
                let mut cmd = tokio::process::Command::new("setpriv");
                cmd.arg(format!("--reuid={id}"))
                    .arg(format!("--regid={id}"))
                    .arg("--clear-groups")
                    .arg(CURL);
                cmd
            }
            None => tokio::process::Command::new(CURL),
        };
        cmd.args(["-sS", "--noproxy", "*", "--max-time", "20"])
            .args(args)
            .kill_on_drop(true);
        within(cmd.output()).await.expect("curl runs")
    }

    async fn curl(args: &[&str]) -> Output {
        curl_as(None, args).await
    }

    fn stdout(out: &Output) -> String {
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn path_str(path: &Path) -> &str {
        path.to_str().expect("a UTF-8 path")
    }

    fn mode(path: &Path) -> u32 {
        fs::symlink_metadata(path).unwrap().permissions().mode() & 0o7777
    }

    fn is_root() -> bool {
        // SAFETY: geteuid cannot fail.
        unsafe { libc::geteuid() == 0 }
    }

    /// A temp dir any user may create sockets in.
    fn shared_dir() -> testkit::TempDir {
        let dir = testkit::tempdir().unwrap();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o777)).unwrap();
        dir
    }

    fn socket_path(running: &Running, i: usize) -> PathBuf {
        running.addresses[i].path.clone().expect("a socket path")
    }

    #[tokio::test]
    async fn curl_gets_hello_world_over_pipe_unix_socket_and_tcp_at_once() {
        // Debian's curl meets one server on a pipe, a Unix socket path and TCP.
        let dir = testkit::tempdir().unwrap();
        let unix_path = dir.path().join("app.sock");
        let (builder, name) = on_new_pipe("curl3");
        let server = start(
            builder
                .listen(format!("http://unix:{}", unix_path.display()).as_str())
                .listen("http://127.0.0.1:0"),
        )
        .await;

        let pipe_path =
            pipehttp::transport::pipe_endpoint(&pipehttp::address::PipeName::new(&name).unwrap());
        assert_eq!(socket_path(&server, 0), pipe_path);
        assert!(
            pipe_path.ends_with(format!("CoreFxPipe_{name}")),
            "{}",
            pipe_path.display()
        );
        assert_eq!(socket_path(&server, 1), unix_path);

        for socket in [&pipe_path, &unix_path] {
            let out = curl(&["--unix-socket", path_str(socket), "http://localhost/test"]).await;
            assert!(
                out.status.success(),
                "curl via {}: {out:?}",
                socket.display()
            );
            assert_eq!(stdout(&out), "Hello world!");
        }
        let tcp = format!("{}/test", server.address(2));
        let out = curl(&[&tcp]).await;
        assert!(out.status.success(), "curl {tcp}: {out:?}");
        assert_eq!(stdout(&out), "Hello world!");
        server.stop().await.unwrap();
    }

    #[tokio::test]
    async fn curl_speaks_http2_prior_knowledge_over_a_pipe() {
        // curl --http2-prior-knowledge is answered over HTTP/2 on the pipe's socket.
        let (builder, _) = on_new_pipe("curlh2");
        let server = start(builder).await;
        let path = socket_path(&server, 0);
        let out = curl(&[
            "--http2-prior-knowledge",
            "--unix-socket",
            path_str(&path),
            "-w",
            "\n%{http_version}",
            "http://localhost/test",
        ])
        .await;
        assert!(out.status.success(), "{out:?}");
        assert_eq!(stdout(&out), "Hello world!\n2");
        server.stop().await.unwrap();
    }

    #[tokio::test]
    async fn curl_gets_413_for_a_chunked_upload_over_the_limit() {
        // curl's chunked upload past max_request_body_size gets 413; under it, the echo.
        let (builder, _) = on_new_pipe("curl413");
        let server = start(builder.max_request_body_size(Some(100))).await;
        let path = socket_path(&server, 0);
        for (body, expected) in [("o".repeat(101), "413"), ("small".to_owned(), "small200")] {
            let out = curl(&[
                "--unix-socket",
                path_str(&path),
                "-H",
                "Transfer-Encoding: chunked",
                "--data-binary",
                &body,
                "-w",
                "%{http_code}",
                "http://localhost/echo",
            ])
            .await;
            assert!(out.status.success(), "{out:?}");
            assert!(stdout(&out).ends_with(expected), "{}: {out:?}", body.len());
        }
        server.stop().await.unwrap();
    }

    #[tokio::test]
    async fn unix_socket_peer_reports_unix_transport() {
        // /whoami over an http://unix: address says "unix", with our pid.
        let dir = testkit::tempdir().unwrap();
        let path = dir.path().join("who.sock");
        let address = format!("http://unix:{}", path.display());
        let server = start(Server::builder().listen(address.as_str())).await;
        let (_, body) = get(&format!("{address}:/whoami")).await;
        let me: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(me["transport"], "unix", "{me}");
        assert_eq!(me["pid"], std::process::id(), "{me}");
        server.stop().await.unwrap();
    }

    #[tokio::test]
    async fn socket_file_mode_is_0600_by_default() {
        // current_user_only (the default) makes the socket 0600.
        let (builder, _) = on_new_pipe("mode");
        let server = start(builder).await;
        let path = socket_path(&server, 0);
        assert!(fs::symlink_metadata(&path).unwrap().file_type().is_socket());
        assert_eq!(mode(&path), 0o600, "{}", path.display());
        server.stop().await.unwrap();
    }

    #[tokio::test]
    async fn mode_option_sets_the_socket_file_mode() {
        // With current_user_only off, the socket takes `mode` (0666 by default).
        let (builder, _) = on_new_pipe("mode660");
        let server = start(builder.current_user_only(false).mode(Some(0o660))).await;
        assert_eq!(mode(&socket_path(&server, 0)), 0o660);
        server.stop().await.unwrap();

        let (builder, _) = on_new_pipe("mode666");
        let server = start(builder.current_user_only(false)).await;
        assert_eq!(mode(&socket_path(&server, 0)), 0o666);
        server.stop().await.unwrap();
    }

    #[tokio::test]
    async fn allow_group_gives_the_socket_to_that_group_with_mode_0660() {
        // One allowed group: the socket is ours, that group's, 0660 (our
        // own primary group, which any user may give a file to), and the
        // peer check still serves our own user.
        // SAFETY: getegid cannot fail.
        let gid = unsafe { libc::getegid() };
        let (builder, name) = on_new_pipe("group");
        let server = start(builder.allow_group(gid.to_string())).await;
        let meta = fs::symlink_metadata(socket_path(&server, 0)).unwrap();
        assert_eq!((meta.gid(), mode(&socket_path(&server, 0))), (gid, 0o660));
        assert_serves_test(&format!("http://pipe:/{name}:/test")).await;
        server.stop().await.unwrap();
    }

    #[tokio::test]
    async fn mode_with_current_user_only_is_refused() {
        // A looser mode contradicts current_user_only and is refused, not ignored.
        let (builder, _) = on_new_pipe("modebad");
        let err = builder.mode(Some(0o666)).bind().await.unwrap_err();
        assert!(err.is_builder(), "{err:?}");
        assert!(err.to_string().contains("current_user_only"), "{err}");
    }

    #[tokio::test]
    async fn stale_socket_file_is_replaced() {
        // A socket file nobody listens on (a crashed server's) is taken over.
        let (builder, name) = on_new_pipe("stale");
        let path =
            pipehttp::transport::pipe_endpoint(&pipehttp::address::PipeName::new(&name).unwrap());
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        assert!(fs::symlink_metadata(&path).unwrap().file_type().is_socket());

        let server = start(builder).await;
        assert_serves_test(&format!("http://pipe:/{name}:/test")).await;
        server.stop().await.unwrap();
        assert!(!path.exists());
    }

    #[tokio::test]
    async fn regular_file_at_the_socket_path_is_left_alone() {
        // A file where the socket would go is never removed; bind says why.
        let dir = testkit::tempdir().unwrap();
        let path = dir.path().join("precious");
        fs::write(&path, "keep me").unwrap();
        let err = Server::builder()
            .listen(format!("http://pipe:/{}", path.display()).as_str())
            .bind()
            .await
            .expect_err("binding over a regular file must fail");
        assert!(err.is_bind() && !err.is_addr_in_use(), "{err:?}");
        let message = err.to_string();
        assert!(message.contains("is not a socket"), "{message}");
        assert!(message.contains(path_str(&path)), "{message}");
        assert_eq!(fs::read_to_string(&path).unwrap(), "keep me");
    }

    #[tokio::test]
    async fn symlink_at_the_socket_path_is_left_alone() {
        // A symlink where the socket would go is kept, and so is its target.
        let dir = testkit::tempdir().unwrap();
        let target = dir.path().join("target.txt");
        fs::write(&target, "target data").unwrap();
        let link = dir.path().join("link.sock");
        std::os::unix::fs::symlink(&target, &link).unwrap();

        let err = Server::builder()
            .listen(format!("http://unix:{}", link.display()).as_str())
            .bind()
            .await
            .expect_err("binding over a symlink must fail");
        assert!(err.is_bind() && !err.is_addr_in_use(), "{err:?}");
        assert!(err.to_string().contains("is not a socket"), "{err}");
        assert!(
            fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(fs::read_link(&link).unwrap(), target);
        assert_eq!(fs::read_to_string(&target).unwrap(), "target data");
    }

    #[tokio::test]
    async fn another_user_is_refused_by_the_0600_socket() {
        // By default a client running as another (non-root) user cannot connect.
        if !is_root() {
            eprintln!("skipped: needs root to run curl as another user");
            return;
        }
        let dir = shared_dir();
        let path = dir.path().join("private");
        let server =
            start(Server::builder().listen(format!("http://pipe:/{}", path.display()).as_str()))
                .await;
        let out = curl_as(
            Some(65534),
            &["--unix-socket", path_str(&path), "http://localhost/test"],
        )
        .await;
        assert_eq!(
            out.status.code(),
            Some(7),
            "curl should fail to connect: {out:?}"
        );
        assert!(out.stdout.is_empty(), "{out:?}");
        server.stop().await.unwrap();
    }

    #[tokio::test]
    async fn another_user_is_served_when_current_user_only_is_off() {
        // current_user_only(false) + mode 0666 lets any user in, and whoami names them.
        if !is_root() {
            eprintln!("skipped: needs root to run curl as another user");
            return;
        }
        let dir = shared_dir();
        let path = dir.path().join("open");
        let server = start(
            Server::builder()
                .listen(format!("http://pipe:/{}", path.display()).as_str())
                .current_user_only(false)
                .mode(Some(0o666)),
        )
        .await;
        let out = curl_as(
            Some(65534),
            &["--unix-socket", path_str(&path), "http://localhost/whoami"],
        )
        .await;
        assert!(out.status.success(), "{out:?}");
        let peer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(peer["uid"], 65534, "{peer}");
        assert_eq!(peer["transport"], "pipe", "{peer}");
        server.stop().await.unwrap();
    }
}
