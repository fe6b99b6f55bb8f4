//! The server's promises under attack, in process: the waiting room at
//! `max_concurrent_connections`, the minimum data rates (a trickled body, a
//! response read slowly, HTTP/2 streams at zero window, an HTTP/2 header
//! block that never ends), the 413 a client still sending must read, the
//! bounds of the lingering close, concurrent takeovers, and the socket's
//! own address. TESTING.md's table "Attacks and limits" lists them.
//!
//! Every attack is made as an attacker makes it: raw sockets for HTTP/1,
//! Python's `h2` (`edges/h2client.py`) for HTTP/2, curl as a real client.
//! Where the attack holds connections, it runs at a connection limit, and a
//! normal client that came after the attackers must be served once they
//! are cut. Timings are correctness limits ("cut no later than the grace
//! period plus slack"), never speed claims.

#![cfg(unix)]

use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use pipehttp::transport::Connection;
use pipehttp::{Client, Limits, MinDataRate, RequestBody, Server};
use testkit::Spawned;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::client_robustness::{Misbehaving, read_head};
use crate::server::{
    PATIENCE, Running, connect_raw, on_new_pipe, read_response, start, start_with, within,
};

/// Slack on top of a limit before a cut counts as missed: CI machines are
/// busy, and the watchdog looks once a second while requests are in flight.
const SLACK: Duration = Duration::from_secs(3);
/// The grace period of the data rates in these tests.
const GRACE: Duration = Duration::from_secs(1);
/// How long a client that must not be answered yet is watched for an
/// answer that would come at once if the server were wrong.
const QUIET: Duration = Duration::from_millis(300);

const KEEP_ALIVE_GET: &[u8] = b"GET /test HTTP/1.1\r\nHost: localhost\r\n\r\n";

/// The sample app on a new pipe with `slots` connection slots (`None`:
/// no limit), whose request bodies must come at 240 B/s after [`GRACE`].
async fn start_body_rated(prefix: &str, slots: Option<usize>) -> Running {
    let (builder, _) = on_new_pipe(prefix);
    let mut limits = Limits::default();
    limits.max_concurrent_connections = slots;
    limits.min_request_body_data_rate = Some(MinDataRate::new(240, GRACE));
    start(builder.limits(limits)).await
}

/// The sample app on a new pipe with `slots` connection slots, whose
/// responses must be taken at 1 MiB/s after [`GRACE`]. The watchdog looks
/// at an idle connection every `headers_timeout` (`None`: the default).
async fn start_response_rated(
    prefix: &str,
    slots: usize,
    headers_timeout: Option<Duration>,
) -> Running {
    let (builder, _) = on_new_pipe(prefix);
    let mut limits = Limits::default();
    if let Some(timeout) = headers_timeout {
        limits.request_headers_timeout = timeout;
    }
    limits.max_concurrent_connections = Some(slots);
    limits.min_response_data_rate = Some(MinDataRate::new(1 << 20, GRACE));
    start(builder.limits(limits)).await
}

fn socket_path(server: &Running) -> PathBuf {
    server.addresses[0].path.clone().expect("a socket path")
}

/// Panics if `conn` gets any byte within [`QUIET`].
async fn assert_not_answered(conn: &mut Connection, who: &str) {
    let mut byte = [0u8; 1];
    if let Ok(read) = tokio::time::timeout(QUIET, conn.read(&mut byte)).await {
        panic!("{who} got {read:?} while every connection slot was taken");
    }
}

/// A normal `GET /test` through the pipehttp client, which must succeed.
async fn normal_get(address: &str) {
    let client = Client::builder().timeout(PATIENCE).build();
    let res = client
        .get(format!("{address}:/test"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("a normal client was not served: {e}"));
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.text().await.unwrap(), "Hello world!");
}

/// `python3 edges/h2client.py SOCKET ARGS…`: an HTTP/2 client that
/// misbehaves as told and reports each event on a line.
fn h2client(socket: &Path, args: &[&str]) -> Spawned {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/edges/h2client.py");
    let mut cmd = Command::new("python3");
    cmd.arg(script).arg(socket).args(args);
    Spawned::start(cmd)
}

/// Starts an h2client for each of `attacks` (its arguments) and waits
/// until each has reported `event`; returns each with that event's time.
async fn h2_attack(socket: &Path, attacks: &[&[&str]], event: &str) -> Vec<(Spawned, f64)> {
    let clients: Vec<Spawned> = attacks.iter().map(|args| h2client(socket, args)).collect();
    let mut reached = Vec::new();
    for client in clients {
        let at = h2_event(&client, event).await;
        reached.push((client, at));
    }
    reached
}

/// A normal client that connects now, behind whoever holds the slots, and
/// must be served: the handle gives when it was.
fn normal_client_behind(server: &Running) -> tokio::task::JoinHandle<Instant> {
    let address = server.address(0);
    tokio::spawn(async move {
        normal_get(&address).await;
        Instant::now()
    })
}

/// Waits (off the runtime's threads) for the h2client line with `event`
/// and returns its time in seconds since the client connected.
async fn h2_event(client: &Spawned, event: &str) -> f64 {
    let line = tokio::task::block_in_place(|| client.wait_for_line(&format!(" {event}")));
    line.split_whitespace()
        .next()
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("no time in {line:?}"))
}

// ---------------------------------------------------------------------------
// The waiting room (issue item 4)

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_connection_limit_clients_are_served_in_the_order_they_came() {
    // A holds the only slot; B, C and D connect in that order and send a
    // request each. Every time the holder leaves, the next one in order is
    // answered, and none behind it.
    let (builder, _) = on_new_pipe("edge-order");
    let server = start(builder.max_concurrent_connections(Some(1))).await;
    let address = server.address(0);
    let mut holder = connect_raw(&address).await;
    within(holder.write_all(KEEP_ALIVE_GET)).await.unwrap();
    let (head, _) = within(read_response(&mut holder)).await.unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");

    let mut waiting = std::collections::VecDeque::new();
    for who in ["B", "C", "D"] {
        let mut conn = connect_raw(&address).await;
        within(conn.write_all(KEEP_ALIVE_GET)).await.unwrap();
        waiting.push_back((who, conn));
    }
    let mut order = Vec::new();
    while let Some((who, mut next)) = waiting.pop_front() {
        assert_not_answered(&mut next, who).await;
        for (behind, conn) in &mut waiting {
            assert_not_answered(conn, behind).await;
        }
        // The holder leaves: its slot goes to the first in line.
        drop(holder);
        let (head, body) = within(read_response(&mut next))
            .await
            .unwrap_or_else(|e| panic!("{who} was never answered: {e}"));
        assert!(head.starts_with("HTTP/1.1 200"), "{who}: {head}");
        assert_eq!(body, b"Hello world!");
        order.push(who);
        holder = next;
    }
    assert_eq!(order, ["B", "C", "D"]);
    drop(holder);
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_a_limit_sequential_curls_are_each_served_on_every_endpoint() {
    // The accept loop used to hold the slot while idle, so every second
    // client hung until a third one came. And the loops of a server's
    // endpoints shared one waiting room, which the loop waiting in accept()
    // held: a client of another endpoint hung until that one's next client
    // came.
    for (endpoints, limit, each) in [(1, 1, 10), (2, 100, 4), (3, 1, 4)] {
        let (mut builder, _) = on_new_pipe("edge-curls");
        for _ in 1..endpoints {
            let name = testkit::unique_name("edge-curls");
            builder = builder.listen(format!("http://pipe:/{name}").as_str());
        }
        let server = start(builder.max_concurrent_connections(Some(limit))).await;
        for (e, address) in server.addresses.iter().enumerate() {
            let path = address.path.clone().expect("a socket path");
            for i in 0..each {
                let out = tokio::process::Command::new("curl")
                    .args(["-sS", "--noproxy", "*", "--max-time", "10", "--unix-socket"])
                    .arg(&path)
                    .arg("http://localhost/test")
                    .kill_on_drop(true)
                    .output()
                    .await
                    .expect("curl runs");
                assert!(
                    out.status.success() && out.stdout == b"Hello world!",
                    "curl {} of {each} to endpoint {} of {endpoints} at a limit of {limit}: {out:?}",
                    i + 1,
                    e + 1
                );
            }
        }
        server.stop().await.unwrap();
    }
}

// ---------------------------------------------------------------------------
// Minimum data rates (issue item 5)

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_trickled_below_the_minimum_rate_get_408_and_free_their_slots() {
    // Three clients take all three slots with bodies sent at 2 bytes/s;
    // a fourth, normal client waits. Each trickler is answered 408 with
    // Connection: close once the grace period is over, and the normal
    // client is served after that.
    let server = start_body_rated("edge-trickle", Some(3)).await;
    let socket = socket_path(&server);
    // Before any trickler has sent its head: no 408 can come, and no slot
    // free up, within the grace period from now.
    let started = Instant::now();
    let attackers: Vec<_> = (0..3)
        .map(|_| {
            let conn = std::os::unix::net::UnixStream::connect(&socket).unwrap();
            tokio::task::spawn_blocking(move || {
                testkit::trickle_body(conn, "/echo", 1000, Duration::from_millis(500), PATIENCE)
            })
        })
        .collect();
    // Connected after the tricklers (the listen queue is in order), so it
    // finds every slot taken.
    let normal = normal_client_behind(&server);
    for attacker in attackers {
        let t = attacker.await.unwrap();
        let head = t.head.to_ascii_lowercase();
        assert!(head.starts_with("http/1.1 408"), "{}", t.head);
        assert!(head.contains("connection: close"), "{}", t.head);
        assert!(
            t.after >= GRACE && t.after <= GRACE + SLACK,
            "a body at 2 bytes/s was answered {:?} after it began; the grace period is {GRACE:?}",
            t.after
        );
    }
    let served_after = within(normal).await.unwrap() - started;
    assert!(
        served_after >= GRACE,
        "the normal client was served after {served_after:?}, while the tricklers held every slot"
    );
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_read_at_one_byte_a_second_is_cut_and_frees_its_slot() {
    slow_reader_attack(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_read_at_one_byte_a_second_is_cut_when_the_watchdog_looks_every_second() {
    // The same with a headers timeout of 1 s, so that the watchdog looks
    // every second whatever it saw last: the rate itself is enforced.
    slow_reader_attack(Some(Duration::from_secs(1))).await;
}

/// The only slot goes to a client that asks for a gigabyte and reads it
/// a byte a second. Once the socket's buffers are full, the piece the
/// server handed over is not taken within the grace period, and the
/// connection is closed: a normal client waiting behind it is served.
async fn slow_reader_attack(headers_timeout: Option<Duration>) {
    let server = start_response_rated("edge-slowread", 1, headers_timeout).await;
    let address = server.address(0);
    let total: u64 = 1 << 30;
    let mut slow = connect_raw(&address).await;
    slow.write_all(format!("GET /bytes/{total} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut first = vec![0u8; 4096];
    let mut received = within(slow.read(&mut first)).await.unwrap() as u64;
    assert!(
        first.starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&first)
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let reader = tokio::spawn(async move {
        let mut stopped = std::pin::pin!(stopped);
        let mut byte = [0u8; 1];
        loop {
            tokio::select! {
                _ = &mut stopped => return (slow, received),
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            match slow.read(&mut byte).await {
                Ok(0) | Err(_) => return (slow, received),
                Ok(k) => received += k as u64,
            }
        }
    });
    // With one slot, this client is served only once the slow one is cut.
    let waiting = Instant::now();
    normal_get(&address).await;
    let waited = waiting.elapsed();
    assert!(
        waited <= GRACE + Duration::from_secs(1) + SLACK,
        "a normal client waited {waited:?} behind a reader taking a byte a second"
    );
    // What is still in the socket's buffers reads at full speed, then the
    // stream ends, far short of the gigabyte.
    let _ = stop.send(());
    let (mut slow, mut received) = within(reader).await.unwrap();
    let mut chunk = vec![0u8; 1 << 16];
    loop {
        match within(slow.read(&mut chunk)).await {
            Ok(0) | Err(_) => break,
            Ok(k) => received += k as u64,
        }
    }
    assert!(received < total / 4, "the slow reader got {received} bytes");
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_streams_at_zero_window_are_cut_and_free_their_slots() {
    zero_window_attack(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_streams_at_zero_window_are_cut_when_the_watchdog_looks_every_second() {
    // The same with a headers timeout of 1 s (see the slow reader's).
    zero_window_attack(Some(Duration::from_secs(1))).await;
}

/// Python's h2 opens its streams with a window of 0, so the server can
/// send no DATA: a small answer (/test) and a large one (/bytes) both wait
/// for the client. Both connections are closed once the grace period is
/// over, and a normal client waiting behind them is served.
async fn zero_window_attack(headers_timeout: Option<Duration>) {
    let server = start_response_rated("edge-zerowin", 2, headers_timeout).await;
    let path = socket_path(&server);
    let attackers = h2_attack(
        &path,
        &[
            &["zero-window", "/test", "--max", "30"],
            &["zero-window", "/bytes/10000000", "--max", "30"],
        ],
        "response 1 200",
    )
    .await;
    let normal = normal_client_behind(&server);
    for (client, answered) in &attackers {
        let closed = h2_event(client, "closed").await;
        assert!(
            closed - answered <= (GRACE + Duration::from_secs(1) + SLACK).as_secs_f64(),
            "a stream at zero window held its connection {:.1} s; the grace period is {GRACE:?}:\n{}",
            closed - answered,
            client.output()
        );
        assert!(
            !client.output().contains(" data 1 "),
            "the server sent DATA past a zero window:\n{}",
            client.output()
        );
    }
    within(normal).await.unwrap();
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_header_block_that_never_ends_is_cut_at_the_headers_timeout() {
    // A HEADERS frame without END_HEADERS and then silence, or a one-byte
    // CONTINUATION every half second that never ends the block: both are
    // cut at the headers timeout (2 s), not the keep-alive timeout (60 s),
    // and the normal client waiting behind them is served.
    let headers_timeout = Duration::from_secs(2);
    let (builder, _) = on_new_pipe("edge-h2head");
    let server = start(
        builder
            .max_concurrent_connections(Some(2))
            .request_headers_timeout(headers_timeout)
            .keep_alive_timeout(Duration::from_secs(60)),
    )
    .await;
    let path = socket_path(&server);
    let attackers = h2_attack(
        &path,
        &[
            &["open-headers", "--max", "30"],
            &["open-headers", "--trickle", "--max", "30"],
        ],
        "headers-sent",
    )
    .await;
    let normal = normal_client_behind(&server);
    for (client, began) in &attackers {
        let held = h2_event(client, "closed").await - began;
        assert!(
            held >= headers_timeout.as_secs_f64() - 0.1
                && held <= (headers_timeout + SLACK).as_secs_f64(),
            "an unfinished header block was cut after {held:.1} s; the headers timeout is {headers_timeout:?}:\n{}",
            client.output()
        );
    }
    within(normal).await.unwrap();
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_request_body_trickled_below_the_rate_gets_408_and_ends_its_connection() {
    // One byte of body every half second on a stream of an HTTP/2
    // connection that holds the only slot, and a new such stream each time
    // one ends: the stream is answered 408 once the grace period is over,
    // and the connection ends after it (GOAWAY, then the close), as
    // Kestrel ends it; so the client behind it is served, where a stream
    // at a time used to hold the slot for good.
    let server = start_body_rated("edge-h2trickle", Some(1)).await;
    let path = socket_path(&server);
    let client = h2client(
        &path,
        &[
            "trickle-body",
            "/echo",
            "1000",
            "0.5",
            "--again",
            "--max",
            "30",
        ],
    );
    let connected = h2_event(&client, "connected").await;
    let answered = h2_event(&client, "response 1 408").await;
    assert!(
        answered - connected <= (GRACE + SLACK).as_secs_f64(),
        "the trickled stream was answered after {:.1} s:\n{}",
        answered - connected,
        client.output()
    );
    let closed = h2_event(&client, "closed").await;
    assert!(
        closed - answered <= (GRACE + SLACK).as_secs_f64(),
        "the connection ended {:.1} s after the 408:\n{}",
        closed - answered,
        client.output()
    );
    normal_get(&server.address(0)).await;
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_limits_are_the_settings_the_server_announces() {
    // Kestrel's Http2 limits, as Python's h2 reads them from the server's
    // SETTINGS frame.
    let (builder, _) = on_new_pipe("edge-h2settings");
    let mut limits = Limits::default();
    limits.http2.header_table_size = 8192;
    limits.http2.max_frame_size = 32_768;
    limits.http2.max_streams_per_connection = 50;
    limits.http2.initial_stream_window_size = 131_072;
    let server = start(builder.limits(limits)).await;
    let client = h2client(&socket_path(&server), &["get", "/test"]);
    h2_event(&client, "response 1 200").await;
    let output = client.output();
    for setting in [
        "setting HEADER_TABLE_SIZE 8192",
        "setting MAX_FRAME_SIZE 32768",
        "setting MAX_CONCURRENT_STREAMS 50",
        "setting INITIAL_WINDOW_SIZE 131072",
    ] {
        assert!(output.contains(setting), "no {setting:?} in:\n{output}");
    }
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_body_held_back_by_the_servers_own_window_is_not_cut() {
    // Uploads on one HTTP/2 connection whose answers are never read: the
    // handlers stop reading, their unread DATA fills the connection's
    // window, and a later upload on that connection cannot send a byte.
    // That wait is the server's doing, not the client's: no 408 for it
    // (Kestrel hands the window back as it buffers, so it never times
    // such a stream either).
    let server = start_body_rated("edge-h2held", None).await;
    let path = socket_path(&server);
    let client = h2client(&path, &["held-window", "8", "4000000", "--max", "60"]);
    let stalled = h2_event(&client, "late-stream").await;
    let late: u32 = client
        .output()
        .lines()
        .find_map(|l| {
            l.split_once(" late-stream ")
                .map(|(_, id)| id.trim().parse().ok())
        })
        .flatten()
        .expect("the late stream's id");
    // Well past the grace period and the watchdog's second.
    tokio::time::sleep(GRACE + SLACK).await;
    let output = client.output();
    assert!(
        output.contains(" stalled ") && !output.contains(&format!("response {late} 408")),
        "the upload behind the held window (stream {late}, from {stalled:.1} s) got a 408:\n{output}"
    );
    normal_get(&server.address(0)).await;
    server.stop().await.unwrap();
}

// ---------------------------------------------------------------------------
// Bodies over the limit (issue item 6)

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipehttp_client_reads_the_413_for_bodies_well_over_the_limit() {
    // 20 MB against a 1 MB limit, with a length and streamed (chunked),
    // and 96 MiB, past the 64 MiB the server reads after its 413: the
    // server answers before the body is sent, and the client, still
    // sending, must return that answer instead of a write error.
    let (builder, _) = on_new_pipe("edge-413");
    let server = start(builder.max_request_body_size(Some(1_000_000))).await;
    let target = format!("{}:/echo", server.address(0));
    let client = Client::builder().timeout(PATIENCE).build();
    let streamed =
        |len: u64| pipehttp::client::Body::from_reader(tokio::io::repeat(b'x').take(len));
    let mut uploads = Vec::new();
    for round in 0..3 {
        let whole = pipehttp::client::Body::from(Bytes::from(vec![b'x'; 20_000_000]));
        uploads.push((format!("round {round}, 20 MB with a length"), whole, None));
        uploads.push((
            format!("round {round}, 20 MB streamed"),
            streamed(20_000_000),
            None,
        ));
    }
    uploads.push((
        "96 MiB with a length".to_owned(),
        streamed(96 << 20),
        Some(96u64 << 20),
    ));
    for (what, body, length) in uploads {
        let mut req = client.post(&target).body(body);
        if let Some(length) = length {
            req = req.header("content-length", length.to_string());
        }
        let res = req.send().await.unwrap_or_else(|e| panic!("{what}: {e:#}"));
        assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE, "{what}");
    }
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipehttp_client_reads_a_413_from_a_server_that_closes_without_lingering() {
    // A server that answers 413 to the head and closes at once, with the
    // body unread (as many servers do): the client's upload fails, yet the
    // answer is in its socket, and it must return that answer rather than
    // the write error.
    let server = Misbehaving::start("edge-413abrupt", |mut conn| async move {
        if read_head(&mut conn).await {
            let _ = conn
                .write_all(
                    b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 9\r\nconnection: close\r\n\r\ntoo large",
                )
                .await;
        }
        // Dropped with the body unread: the client's writes now fail.
    })
    .await;
    let client = Client::builder().timeout(PATIENCE).build();
    for round in 0..10 {
        let res = client
            .post(server.target("/upload"))
            .body(Bytes::from(vec![b'x'; 20_000_000]))
            .send()
            .await
            .unwrap_or_else(|e| panic!("round {round}: the 413 was lost: {e:#}"));
        assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE, "round {round}");
        assert_eq!(res.text().await.unwrap(), "too large");
    }
}

/// Writes `chunk` every `every` after a 413 until a write fails (the
/// server closed): how long that took and how much was written.
async fn write_until_refused(
    conn: &mut Connection,
    chunk: &[u8],
    every: Duration,
) -> (Duration, u64) {
    let started = Instant::now();
    let mut written = 0u64;
    loop {
        match within(conn.write_all(chunk)).await {
            Ok(()) => written += chunk.len() as u64,
            Err(e) => {
                assert!(
                    matches!(
                        e.kind(),
                        io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
                    ),
                    "{e}"
                );
                return (started.elapsed(), written);
            }
        }
        if !every.is_zero() {
            tokio::time::sleep(every).await;
        }
    }
}

/// Opens a connection, sends a head announcing a body over the limit, and
/// reads the 413 the server answers before any body.
async fn refused_upload(address: &str) -> Connection {
    let mut conn = connect_raw(address).await;
    conn.write_all(
        b"POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: 10000000000\r\n\r\n",
    )
    .await
    .unwrap();
    let (head, _) = within(read_response(&mut conn)).await.unwrap();
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");
    conn
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lingering_close_after_a_413_is_bounded_in_time_and_bytes() {
    // After a 413 the server reads and drops what the client still sends,
    // so the client can read the answer; but not for ever: a client that
    // trickles is closed after 5 s, and one that floods after 64 MiB.
    let (builder, _) = on_new_pipe("edge-linger");
    let server = start(builder.max_request_body_size(Some(1_000_000))).await;
    let address = server.address(0);

    let mut trickling = refused_upload(&address).await;
    let (held, _) =
        write_until_refused(&mut trickling, &[b'x'; 1024], Duration::from_millis(100)).await;
    assert!(
        held >= Duration::from_secs(4) && held <= Duration::from_secs(5) + SLACK,
        "a client trickling after its 413 was read from for {held:?}; the promise is 5 s"
    );

    let mut flooding = refused_upload(&address).await;
    let (_, written) = write_until_refused(&mut flooding, &[b'x'; 1 << 16], Duration::ZERO).await;
    assert!(
        written <= (64 << 20) + (4 << 20),
        "a client flooding after its 413 got {written} bytes read; the promise is 64 MiB"
    );
    normal_get(&address).await;
    server.stop().await.unwrap();
}

// ---------------------------------------------------------------------------
// Concurrent takeovers (issue item 2), in one process

/// An app that answers every request with `who`, to tell servers apart.
fn named_app(
    who: usize,
) -> impl tower_service::Service<
    Request<RequestBody>,
    Response = Response<Full<Bytes>>,
    Error = std::convert::Infallible,
    Future: Send + 'static,
> + Clone
+ Send
+ 'static {
    tower::service_fn(move |_req: Request<RequestBody>| async move {
        Ok(Response::new(Full::new(Bytes::from(who.to_string()))))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_takeovers_leave_exactly_one_server() {
    // Eight servers take one name over from a running one at the same
    // moment, twenty times. Each that loses the name must notice and stop;
    // exactly one must remain, and it must be the one that answers.
    const SUCCESSORS: usize = 8;
    for trial in 0..20 {
        let url = format!("http://pipe:/{}", testkit::unique_name("edge-race"));
        let first = start_with(Server::builder().listen(url.as_str()), named_app(0)).await;
        let mut tasks = Vec::new();
        let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(SUCCESSORS));
        let binds: Vec<_> = (1..=SUCCESSORS)
            .map(|who| {
                let (url, barrier) = (url.clone(), barrier.clone());
                tokio::spawn(async move {
                    barrier.wait().await;
                    let server = Server::builder()
                        .listen(url.as_str())
                        .takeover(true)
                        .bind()
                        .await?;
                    Ok::<_, pipehttp::Error>(tokio::spawn(
                        server.serve_with_shutdown(named_app(who), std::future::pending()),
                    ))
                })
            })
            .collect();
        for (who, bind) in binds.into_iter().enumerate() {
            match bind.await.unwrap() {
                Ok(task) => tasks.push((who + 1, task)),
                // Losing the race to bind is fine; only a clear error is.
                Err(e) => assert!(e.is_bind(), "trial {trial}: successor {}: {e:#}", who + 1),
            }
        }
        assert!(!tasks.is_empty(), "trial {trial}: no successor bound");
        first
            .finished()
            .await
            .unwrap_or_else(|e| panic!("trial {trial}: the first server failed: {e}"));
        // Every server that lost the name stops by itself; wait until one
        // is left (or time runs out, which is the bug).
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            tasks.retain(|(_, task)| !task.is_finished());
            if tasks.len() <= 1 || Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let alive: Vec<usize> = tasks.iter().map(|(who, _)| *who).collect();
        assert_eq!(
            alive.len(),
            1,
            "trial {trial}: servers {alive:?} still serve 10 s after {SUCCESSORS} concurrent takeovers"
        );
        let res = Client::new().get(format!("{url}:/")).send().await.unwrap();
        assert_eq!(
            res.text().await.unwrap(),
            alive[0].to_string(),
            "trial {trial}"
        );
        for (_, task) in tasks {
            task.abort();
        }
    }
}

// ---------------------------------------------------------------------------
// Host values (issue item 9; the values that pass are hostile case files)

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_values_with_a_bad_port_or_user_get_400_on_http1_and_http2() {
    // As Kestrel checks a Host: after the host, only `:` and digits. The
    // http crate parses a port lazily, so these pass as an authority.
    let (builder, _) = on_new_pipe("edge-host");
    let server = start(builder).await;
    let address = server.address(0);
    let mut accepted = Vec::new();
    for host in ["localhost:abc", "localhost:8o", "[::1]x", "[::1]:x"] {
        let mut conn = connect_raw(&address).await;
        conn.write_all(
            format!("GET /test HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
        let (head, _) = within(read_response(&mut conn)).await.unwrap();
        if !head.starts_with("HTTP/1.1 400") {
            accepted.push(format!("{host:?}: {}", head.lines().next().unwrap_or("")));
        }
    }
    assert!(accepted.is_empty(), "accepted as a Host: {accepted:?}");

    // HTTP/2's :authority is held to the same rule (Python's h2).
    let path = socket_path(&server);
    for authority in ["a@b", "user@localhost", "localhost:abc"] {
        let client = h2client(
            &path,
            &["get", "/test", "--authority", authority, "--max", "20"],
        );
        h2_event(&client, "response 1 400").await;
    }
    let client = h2client(&path, &["get", "/test", "--authority", "localhost:5000"]);
    h2_event(&client, "response 1 200").await;
    server.stop().await.unwrap();
}

// ---------------------------------------------------------------------------
// The socket's own address (issue item 9)

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_socket_is_bound_at_its_public_path() {
    // What `ss -xl` shows and a client's getpeername returns is the path
    // clients connect to, not a staging path that no longer exists.
    let dir = testkit::tempdir().unwrap();
    let unix = dir.path().join("own.sock");
    let (builder, _) = on_new_pipe("edge-addr");
    let server = start(builder.listen(format!("http://unix:{}", unix.display()).as_str())).await;
    for bound in &server.addresses {
        assert_bound_at(bound.path.as_deref().expect("a socket path")).await;
    }
    server.stop().await.unwrap();
}

/// Panics unless the socket at `path` calls itself `path`.
async fn assert_bound_at(path: &Path) {
    let peer = tokio::net::UnixStream::connect(path)
        .await
        .unwrap()
        .peer_addr()
        .unwrap();
    assert_eq!(
        peer.as_pathname(),
        Some(path),
        "the socket at {} calls itself {peer:?}",
        path.display()
    );
}
