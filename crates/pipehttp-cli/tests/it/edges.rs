//! The server's promises under attack, as `pipehttp serve` processes: a
//! takeover request forwarded by nginx (the same user), concurrent
//! takeovers, takeovers under load, trickling clients at the connection
//! limit, real clients (Python, Node) uploading past the body limit and
//! the connections that linger after their 413, `/echo`'s memory under
//! uploads nobody reads and after a load, another user's stale socket, and
//! accept failures at the descriptor limit. TESTING.md's table
//! "Attacks and limits" lists them; the in-process attacks are in the
//! library's `tests/it/edges.rs`.
//!
//! Heavy tests (load, memory) take load.rs's lock; the others run beside
//! them. Timings are correctness limits, never speed claims.

#![cfg(target_os = "linux")]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, StatusCode};
use pipehttp::Client;
use testkit::{Nginx, Serve, Spawned};
use tokio::io::AsyncWriteExt;

use crate::load::{Conn, PATIENCE, Served, connect_unix, raise_fd_limit, runtime, serial};
use crate::server_process::{OTHER_UID, SERVER_UID, curl, needs_root, serve_command, stdout};

const BIN: &str = env!("CARGO_BIN_EXE_pipehttp");
/// Slack on top of a limit before it counts as missed: CI machines are busy.
const SLACK: Duration = Duration::from_secs(3);

/// A helper script of the edge tests (they live with the library's).
fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../pipehttp/tests/it/edges")
        .join(name)
}

/// The pid of the server that answers on `socket` now.
fn server_pid(socket: &Path) -> Option<u32> {
    runtime().block_on(async {
        let res = Client::builder()
            .timeout(PATIENCE)
            .build()
            .get(format!("http://unix:{}:/whoami", socket.display()))
            .send()
            .await
            .unwrap_or_else(|e| panic!("nobody answers on {}: {e}", socket.display()));
        res.peer().and_then(|p| p.pid)
    })
}

// ---------------------------------------------------------------------------
// Takeover (issue items 1 to 3)

#[test]
fn a_takeover_request_forwarded_by_nginx_stops_nothing() {
    // nginx, running as the server's user, proxies TCP to the server's
    // socket, as in the issue. The old takeover path, with every method,
    // is just a path of the app (404): the server stays, and serves.
    let server = Served::start("edge-nginx", &[]);
    let socket = server.path.clone();
    let nginx = Nginx::start(|_, port| {
        format!(
            r#"
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://unix:{}:;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
"#,
            socket.display()
        )
    });
    let base = format!("http://127.0.0.1:{}", nginx.port());
    for (method, path) in [
        ("POST", "/.well-known/pipehttp/takeover"),
        ("GET", "/.well-known/pipehttp/takeover"),
        ("PUT", "/.well-known/pipehttp/takeover"),
        ("POST", "/.well-known/pipehttp/takeover?pid=1"),
        ("POST", "/.well-known/pipehttp/handover"),
    ] {
        let out = curl(&[
            "-X",
            method,
            "--data-binary",
            "x",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &format!("{base}{path}"),
        ]);
        assert_eq!(
            stdout(&out),
            "404",
            "{method} {path} through nginx: {out:?}\nnginx: {}",
            nginx.error_log()
        );
        let out = curl(&[&format!("{base}/test")]);
        assert_eq!(
            stdout(&out),
            "Hello world!",
            "after {method} {path}, GET /test through nginx: {out:?}\nserver:\n{}",
            server.output()
        );
    }
    // The same over HTTP/2, straight to the socket.
    let h2 = Spawned::start({
        let mut cmd = Command::new("python3");
        cmd.arg(script("h2client.py")).arg(&socket).args([
            "get",
            "/.well-known/pipehttp/takeover",
            "--max",
            "20",
        ]);
        cmd
    });
    h2.wait_for_line(" response 1 404");
    assert_eq!(server_pid(&socket), Some(server.process.id()));
    server.assert_alive();
    let said = server.output();
    assert!(
        !said.contains("handing over") && !said.contains("finishing requests"),
        "the server started to stop:\n{said}"
    );
}

/// `pipehttp serve --urls URL --takeover` with the server's TMPDIR.
fn successor(server: &Served, url: &str) -> Spawned {
    let mut cmd = testkit::command(BIN, Some(server.tmp()));
    cmd.args(["serve", "--urls", url, "--takeover"]);
    Spawned::start(cmd)
}

#[test]
fn five_concurrent_takeovers_leave_exactly_one_server() {
    // Five `serve --takeover` started at once against a running server:
    // every server that loses the name exits by itself, and exactly one
    // remains: the one that answers on the name.
    for trial in 0..3 {
        let first = Served::start("edge-takeovers", &[]);
        let url = first.process.url(0).to_owned();
        let socket = first.path.clone();
        let mut servers: Vec<(String, Spawned)> = (1..=5)
            .map(|i| (format!("successor {i}"), successor(&first, &url)))
            .collect();
        let first_pid = first.process.id();
        servers.push(("the first server".to_owned(), first.process.into_process()));
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut exited = Vec::new();
        loop {
            let mut i = 0;
            while i < servers.len() {
                if let Some(status) = servers[i].1.try_exit() {
                    let (who, process) = servers.remove(i);
                    exited.push((who, status, process.output()));
                } else {
                    i += 1;
                }
            }
            if servers.len() <= 1 || Instant::now() > deadline {
                break;
            }
            // Exits come with no event a test can wait on together.
            std::thread::sleep(Duration::from_millis(20));
        }
        let alive: Vec<String> = servers
            .iter()
            .map(|(who, p)| format!("{who} (pid {}):\n{}", p.id(), p.output()))
            .collect();
        assert_eq!(
            servers.len(),
            1,
            "trial {trial}: {} servers still run 20 s after five concurrent takeovers:\n{}",
            servers.len(),
            alive.join("\n")
        );
        let survivor = &servers[0].1;
        assert_ne!(
            survivor.id(),
            first_pid,
            "trial {trial}: the first server kept the name"
        );
        assert_eq!(
            server_pid(&socket),
            Some(survivor.id()),
            "trial {trial}: the survivor does not hold the name"
        );
        for (who, status, output) in &exited {
            // A successor that lost the race to bind says so in one line;
            // every server that had the name hands over and exits 0.
            assert!(
                status.success() || output.contains("pipehttp: "),
                "trial {trial}: {who} exited with {status} and no error line:\n{output}"
            );
        }
    }
}

/// Runs `pipehttp bench` against `target` with the server's TMPDIR.
fn bench(server: &Served, target: &str, args: &[&str]) -> Spawned {
    let mut cmd = testkit::command(BIN, Some(server.tmp()));
    cmd.args(["bench", target, "--output-format", "json", "--no-progress"])
        .args(args);
    Spawned::start(cmd)
}

/// The JSON report of a finished bench run, which must show no failure.
fn bench_report(mut run: Spawned, what: &str) -> serde_json::Value {
    let status = run.wait_exit();
    let output = run.output();
    let report: serde_json::Value = output
        .lines()
        .find(|l| l.starts_with('{'))
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("{what}: no JSON report ({status}):\n{output}"));
    let requests = report["requests"].as_u64().unwrap_or(0);
    assert!(
        status.success()
            && requests > 0
            && report["ok"] == requests
            && report["errors"] == serde_json::json!({}),
        "{what}: requests failed across the takeovers ({status}): {report}"
    );
    report
}

#[test]
fn three_takeovers_under_load_fail_no_request() {
    // pipehttp::Client on kept-alive connections (`bench --client`, over
    // HTTP/1 and HTTP/2), `bench` with a new connection per request, and pipehttp::Client
    // POSTs to /echo, while the server is taken over three times, 1.5 s
    // apart: not one request may fail.
    const TAKEOVERS: usize = 3;
    let _serial = serial();
    let mut first = Served::start("edge-busy", &[]);
    let url = first.process.url(0).to_owned();
    let target = format!("{url}:/test");
    let kept_alive = bench(&first, &target, &["-c", "16", "-z", "6s", "--client"]);
    let http2 = bench(
        &first,
        &target,
        &["-c", "4", "-z", "6s", "--client", "--http2"],
    );
    let fresh = bench(
        &first,
        &target,
        &["-c", "4", "-z", "6s", "--new-connection-per-request"],
    );

    let rt = runtime();
    let stop = Arc::new(AtomicBool::new(false));
    let posted = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let client = Client::builder().timeout(PATIENCE).build();
    let echo = format!("http://unix:{}:/echo", first.path.display());
    let posters: Vec<_> = (0..4)
        .map(|i| {
            let (client, echo, stop) = (client.clone(), echo.clone(), stop.clone());
            let (posted, failures) = (posted.clone(), failures.clone());
            rt.spawn(async move {
                let body = Bytes::from(vec![b'a' + i as u8; 64 * 1024]);
                while !stop.load(Ordering::SeqCst) {
                    let outcome = async {
                        let res = client.post(&echo).body(body.clone()).send().await?;
                        Ok::<_, pipehttp::Error>((res.status(), res.bytes().await?))
                    }
                    .await;
                    match outcome {
                        Ok((StatusCode::OK, echoed)) if echoed == body => {}
                        Ok((status, echoed)) => failures
                            .lock()
                            .unwrap()
                            .push(format!("{status} with {} bytes", echoed.len())),
                        Err(e) => failures.lock().unwrap().push(format!("{e:#}")),
                    }
                    posted.fetch_add(1, Ordering::SeqCst);
                }
            })
        })
        .collect();

    let mut current: Option<Spawned> = None;
    for k in 1..=TAKEOVERS {
        // Load pacing, not readiness: the takeovers are spread over the run.
        std::thread::sleep(Duration::from_millis(1500));
        let next = successor(&first, &url);
        next.wait_for_line("Now listening on:");
        let (status, output) = match current.as_mut() {
            None => (first.process.wait_exit(), first.output()),
            Some(old) => (old.wait_exit(), old.output()),
        };
        assert!(
            status.success(),
            "takeover {k}: the old server exited with {status}:\n{output}"
        );
        current = Some(next);
    }
    let kept_alive = bench_report(kept_alive, "bench --client on kept-alive connections");
    let http2 = bench_report(http2, "bench --client --http2");
    let fresh = bench_report(fresh, "bench with a new connection per request");
    stop.store(true, Ordering::SeqCst);
    for poster in posters {
        rt.block_on(poster).expect("a poster panicked");
    }
    let failures = failures.lock().unwrap().clone();
    println!(
        "across {TAKEOVERS} takeovers: bench --client {} requests, --http2 {}, new connection per \
         request {}, Client POST /echo {} ({} failed)",
        kept_alive["requests"],
        http2["requests"],
        fresh["requests"],
        posted.load(Ordering::SeqCst),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {} pipehttp::Client POSTs to /echo failed across the takeovers:\n{}",
        failures.len(),
        posted.load(Ordering::SeqCst),
        failures.join("\n")
    );
    let mut last = current.expect("three takeovers");
    last.terminate();
    assert!(last.wait_exit().success(), "{}", last.output());
}

#[test]
fn bench_on_kept_alive_connections_fails_no_request_across_a_takeover() {
    // The issue's own measure: `pipehttp bench -c 16` on bare kept-alive
    // connections (and `--http2`) while the server is taken over. A
    // draining server says `Connection: close` (HTTP/2: GOAWAY); a client
    // that opens a new connection then, as HTTP asks, loses nothing.
    let _serial = serial();
    let mut first = Served::start("edge-bench-takeover", &[]);
    let url = first.process.url(0).to_owned();
    let run = bench(&first, &format!("{url}:/test"), &["-c", "16", "-z", "3s"]);
    let http2 = bench(
        &first,
        &format!("{url}:/test"),
        &["-c", "4", "-z", "3s", "--http2"],
    );
    std::thread::sleep(Duration::from_millis(1000));
    let mut next = successor(&first, &url);
    next.wait_for_line("Now listening on:");
    assert!(first.process.wait_exit().success(), "{}", first.output());
    bench_report(run, "bench on kept-alive connections");
    bench_report(http2, "bench --http2 on kept-alive connections");
    next.terminate();
    assert!(next.wait_exit().success(), "{}", next.output());
}

// ---------------------------------------------------------------------------
// Trickling clients at the connection limit (issue item 5)

#[test]
fn trickling_clients_at_the_connection_limit_get_408_and_the_next_client_is_served() {
    // Four clients take all four slots of `serve --max-concurrent-connections
    // 4` with bodies sent at 2 bytes/s. The default minimum rate (240 B/s
    // after 5 s) cuts each with 408, and curl, which came after them, is
    // served once they are cut.
    const GRACE: Duration = Duration::from_secs(5);
    let server = Served::start("edge-trickle", &["--max-concurrent-connections", "4"]);
    // Before any trickler has sent its head: no 408 can come, and no slot
    // free up, within the grace period from now.
    let started = Instant::now();
    let tricklers: Vec<_> = (0..4)
        .map(|_| {
            let conn = std::os::unix::net::UnixStream::connect(&server.path).unwrap();
            std::thread::spawn(move || {
                testkit::trickle_body(conn, "/echo", 1000, Duration::from_millis(500), PATIENCE)
            })
        })
        .collect();
    let out = curl(&[
        "--max-time",
        "30",
        "--unix-socket",
        server.path.to_str().unwrap(),
        "http://localhost/test",
    ]);
    let served_after = started.elapsed();
    assert_eq!(stdout(&out), "Hello world!", "{out:?}");
    for trickler in tricklers {
        let t = trickler.join().expect("a trickler panicked");
        let head = t.head.to_ascii_lowercase();
        assert!(
            head.starts_with("http/1.1 408") && head.contains("connection: close"),
            "{}",
            t.head
        );
        assert!(
            t.after >= GRACE && t.after <= GRACE + SLACK,
            "a body at 2 bytes/s was answered after {:?}; the grace period is {GRACE:?}",
            t.after
        );
    }
    assert!(
        served_after >= GRACE,
        "curl was served after {served_after:?}, while the tricklers held every slot"
    );
    server.assert_alive();
}

// ---------------------------------------------------------------------------
// Bodies over the limit (issue item 6)

/// Python's http.client and Node's http, each with its upload helper.
const UPLOADERS: [(&str, &str); 2] = [
    ("python3", "post_over_limit.py"),
    ("node", "post_over_limit.js"),
];

/// Uploads of `bytes` to `target` on `socket`, with a length and, when
/// `chunked` holds `true`, chunked, `rounds` times over, that must all
/// read the answer `status`.
struct Uploads<'a> {
    socket: &'a Path,
    target: &'a str,
    bytes: usize,
    chunked: &'a [bool],
    rounds: usize,
    status: u16,
}

/// Runs every uploader on every batch and asserts each read its answer;
/// `answer` names that answer in the failure.
fn assert_uploads_read(answer: &str, batches: &[Uploads<'_>]) {
    let failures: Vec<String> = batches.iter().flat_map(uploads_read).collect();
    assert!(
        failures.is_empty(),
        "{answer} was lost:\n{}",
        failures.join("\n")
    );
}

/// Runs every uploader once per round of `batch` and returns what went
/// wrong: any answer other than its status.
fn uploads_read(batch: &Uploads<'_>) -> Vec<String> {
    let &Uploads {
        socket,
        target,
        bytes,
        chunked,
        rounds,
        status,
    } = batch;
    let mut failures = Vec::new();
    for round in 0..rounds {
        for (program, helper) in UPLOADERS {
            for &chunked in chunked {
                let mut cmd = Command::new(program);
                cmd.arg(script(helper))
                    .arg(socket)
                    .arg(target)
                    .arg(bytes.to_string());
                if chunked {
                    cmd.arg("chunked");
                }
                let out = cmd
                    .stdin(Stdio::null())
                    .output()
                    .expect("the uploader runs");
                let answer = format!(
                    "{}{}",
                    stdout(&out).trim(),
                    String::from_utf8_lossy(&out.stderr).trim()
                );
                if !answer.starts_with(&format!("status {status}")) {
                    let how = if chunked { "chunked" } else { "with a length" };
                    failures.push(format!(
                        "round {round}: {program}, {bytes} bytes {how} to {target}: {answer}"
                    ));
                }
            }
        }
    }
    failures
}

#[test]
fn python_and_node_read_the_413_for_bodies_well_over_the_limit() {
    // Python's http.client and Node's http send their whole body before
    // they read: the server's 413 comes first, and they must read it, not
    // a broken pipe. 20 MB against a 1 MB limit (with a length and
    // chunked), and 60 MB against the default 30 MB.
    let small = Served::start("edge-413", &["--max-request-body-size", "1000000"]);
    let default = Served::start("edge-413-default", &[]);
    assert_uploads_read(
        "the 413",
        &[
            Uploads {
                socket: &small.path,
                target: "/echo",
                bytes: 20_000_000,
                chunked: &[false, true],
                rounds: 3,
                status: 413,
            },
            Uploads {
                socket: &default.path,
                target: "/echo",
                bytes: 60_000_000,
                chunked: &[false],
                rounds: 1,
                status: 413,
            },
        ],
    );
    small.assert_alive();
    default.assert_alive();
}

#[test]
fn python_and_node_read_an_early_answer_to_an_upload_the_app_does_not_read() {
    // The same clients upload 20 MB to paths the app answers without
    // reading the body: 404 (no such route) and 405 (POST /test). The
    // answer comes first, as the 413 does, and must be read the same way.
    let server = Served::start("edge-early", &[]);
    let upload = |target, chunked, status| Uploads {
        socket: &server.path,
        target,
        bytes: 20_000_000,
        chunked,
        rounds: 2,
        status,
    };
    assert_uploads_read(
        "the early answer",
        &[
            upload("/nothing", &[false, true], 404),
            upload("/test", &[false], 405),
        ],
    );
    server.assert_alive();
}

#[test]
fn connections_lingering_after_a_413_count_against_the_connection_limit() {
    // 50 clients announce bodies over the limit and keep their connections
    // open: each is answered 413 at once and then lingers, for up to 5 s.
    // `max_concurrent_connections` is what keeps a server's descriptors
    // bounded (past it, clients wait in the kernel's listen queue), so a
    // lingering connection must count against it, as nginx counts them
    // against worker_connections: the server may hold the limit and the
    // one waiting connection, no more.
    let server = Served::start(
        "edge-linger-limit",
        &[
            "--max-concurrent-connections",
            "2",
            "--max-request-body-size",
            "10",
        ],
    );
    let baseline = server.settled_fds();
    let rt = runtime();
    let _clients = rt.block_on(async {
        let mut clients = Vec::new();
        for _ in 0..50 {
            let mut conn = connect_unix(&server.path).await.expect("connect");
            conn.write_all(
                b"POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1000000\r\n\r\n",
            )
            .await
            .unwrap();
            clients.push(conn);
        }
        clients
    });
    // The descriptor count has no event: it is sampled for a second.
    let started = Instant::now();
    let mut most = 0;
    while started.elapsed() < Duration::from_secs(1) {
        most = most.max(server.fds());
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(
        most <= baseline + 3,
        "at max_concurrent_connections 2 the server held {} connections",
        most - baseline
    );
}

// ---------------------------------------------------------------------------
// /echo's memory (issue item 8)

/// The server's RSS in MiB.
fn rss_mib(server: &Served) -> f64 {
    server.rss_kib() as f64 / 1024.0
}

/// Uploads to /echo on `connections` connections at once, 30 MB each,
/// never reading an answer, until every upload stalls (a write has waited
/// a second); returns the bytes each got out. The streams stay open
/// until the returned handles are dropped.
async fn uploads_nobody_reads(
    path: &Path,
    connections: usize,
) -> Vec<(tokio::net::UnixStream, u64)> {
    let uploads: Vec<_> = (0..connections)
        .map(|_| {
            let path = path.to_owned();
            tokio::spawn(async move {
                let mut conn = connect_unix(&path).await.expect("connect");
                conn.write_all(
                    b"POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: 30000000\r\n\r\n",
                )
                .await
                .unwrap();
                let piece = vec![b'x'; 64 * 1024];
                let mut sent = 0u64;
                while sent < 30_000_000 {
                    match tokio::time::timeout(Duration::from_secs(1), conn.write_all(&piece)).await
                    {
                        Ok(Ok(())) => sent += piece.len() as u64,
                        Ok(Err(e)) => panic!("an upload failed after {sent} bytes: {e}"),
                        Err(_) => break,
                    }
                }
                (conn, sent)
            })
        })
        .collect();
    let mut stalled = Vec::new();
    for upload in uploads {
        stalled.push(upload.await.expect("an uploader panicked"));
    }
    stalled
}

#[test]
fn echo_memory_stays_bounded_when_uploads_are_never_read() {
    // 10 HTTP/1 connections each upload 30 MB to /echo without reading the
    // echo, then one HTTP/2 connection does the same on 20 streams. /echo
    // reads 1 MiB ahead and then streams, so the server holds a few MiB per
    // upload, not 30 MB (the issue saw 295 MB and 578 MB), and gives it
    // back when the clients leave.
    const BOUND_MIB: f64 = 100.0;
    const LEFT_MIB: f64 = 50.0;
    let _serial = serial();
    let server = Served::start("edge-echo-mem", &[]);
    let rt = runtime();
    rt.block_on(async {
        let mut conn = Conn::open(&server.path).await.unwrap();
        let body = Bytes::from(vec![b'w'; 2 << 20]);
        let (status, echoed) = conn
            .request(Method::POST, "/echo", body.clone())
            .await
            .unwrap();
        assert_eq!((status, echoed.len()), (StatusCode::OK, body.len()));
        conn.close().await;
    });
    let fds = server.settled_fds();
    let baseline = rss_mib(&server);

    let stalled = rt.block_on(uploads_nobody_reads(&server.path, 10));
    let h1_peak = rss_mib(&server);
    let sent: u64 = stalled.iter().map(|(_, sent)| sent).sum();
    drop(stalled);
    server.wait_for_fds(fds, "after the HTTP/1 uploads");
    let h1_after = rss_mib(&server);

    let mut h2 = Spawned::start({
        let mut cmd = Command::new("python3");
        cmd.arg(script("h2client.py")).arg(&server.path).args([
            "echo-flood",
            "20",
            "30000000",
            "--max",
            "60",
        ]);
        cmd
    });
    h2.wait_for_line(" stalled ");
    let h2_peak = rss_mib(&server);
    h2.kill();
    server.wait_for_fds(fds, "after the HTTP/2 uploads");
    let h2_after = rss_mib(&server);

    println!(
        "RSS: {baseline:.1} MiB before; 10 HTTP/1 uploads ({:.1} MiB sent before they stalled): \
         {h1_peak:.1} MiB, then {h1_after:.1}; 20 HTTP/2 streams: {h2_peak:.1} MiB, then {h2_after:.1}",
        sent as f64 / 1048576.0
    );
    for (what, peak) in [
        ("10 HTTP/1 uploads", h1_peak),
        ("20 HTTP/2 uploads", h2_peak),
    ] {
        assert!(
            peak - baseline <= BOUND_MIB,
            "{what} nobody reads took the server from {baseline:.1} MiB to {peak:.1} MiB"
        );
    }
    for (what, after) in [("HTTP/1", h1_after), ("HTTP/2", h2_after)] {
        assert!(
            after - baseline <= LEFT_MIB,
            "after the {what} uploaders left the server kept {after:.1} MiB ({baseline:.1} before)"
        );
    }
    server.assert_alive();
}

/// The server's RSS once it has stopped falling (it may give memory back
/// gradually, as jemalloc's decay does): polled, since no event says so.
fn settled_rss_mib(server: &Served) -> f64 {
    let started = Instant::now();
    let mut lowest = rss_mib(server);
    let mut lowest_at = Instant::now();
    while lowest_at.elapsed() < Duration::from_secs(2)
        && started.elapsed() < Duration::from_secs(20)
    {
        std::thread::sleep(Duration::from_millis(200));
        let now = rss_mib(server);
        if now < lowest - 0.5 {
            lowest = now;
            lowest_at = Instant::now();
        }
    }
    lowest
}

#[test]
fn memory_goes_back_down_after_a_load_that_needed_it() {
    // 300 uploads to /echo at once, never read, three times: each holds
    // its 1 MiB read ahead, so the server needs some 300 MiB while they
    // last. Once they are gone, at least three quarters of what the load
    // took must be given back.
    let _serial = serial();
    raise_fd_limit();
    let server = Served::start("edge-highwater", &[]);
    let rt = runtime();
    let fds = server.settled_fds();
    let baseline = settled_rss_mib(&server);
    let mut rounds = Vec::new();
    for _ in 0..3 {
        let stalled = rt.block_on(uploads_nobody_reads(&server.path, 300));
        let peak = rss_mib(&server);
        drop(stalled);
        server.wait_for_fds(fds, "after the uploads");
        rounds.push((peak, settled_rss_mib(&server)));
    }
    println!("RSS {baseline:.1} MiB before; peak and after, each round: {rounds:.1?}");
    for (round, (peak, after)) in rounds.iter().enumerate() {
        assert!(
            after - baseline <= (0.25 * (peak - baseline)).max(32.0),
            "round {round}: the load took the server from {baseline:.1} to {peak:.1} MiB, \
             and it kept {after:.1} MiB after: {rounds:.1?}"
        );
    }
}

// ---------------------------------------------------------------------------
// Smaller promises (issue item 9)

#[test]
fn another_users_stale_socket_is_named_in_the_bind_error() {
    // A server of uid 65534 died (SIGKILL) and left its socket in a sticky
    // directory, where no other user may remove it. A server of another
    // user at that path must say whose socket it is and what to do, with
    // the socket at mode 0600 (which it cannot even probe) and 0666 (which
    // it can, and finds stale).
    if needs_root() {
        return;
    }
    let dir = testkit::shared_tempdir();
    for (mode, extra) in [
        ("0600", &[][..]),
        (
            "0666",
            &["--current-user-only", "false", "--mode", "666"][..],
        ),
    ] {
        let path = dir.path().join(format!("stale-{mode}.sock"));
        let url = format!("http://unix:{}", path.display());
        let mut args = vec!["--urls", url.as_str()];
        args.extend_from_slice(extra);
        let mut owner = Serve::start(serve_command(dir.path(), Some(SERVER_UID), &args), 1);
        owner.kill();
        assert!(path.exists(), "the killed server left no socket");

        let mut other = Spawned::start(serve_command(
            dir.path(),
            Some(OTHER_UID),
            &["--urls", &url],
        ));
        let status = other.wait_exit();
        let output = other.output();
        assert_eq!(status.code(), Some(1), "mode {mode}: {output}");
        let error = output
            .lines()
            .find(|l| l.starts_with("pipehttp: "))
            .unwrap_or_else(|| panic!("mode {mode}: no error line:\n{output}"));
        for needed in [path.to_str().unwrap(), "uid 65534", "remove"] {
            assert!(
                error.contains(needed),
                "mode {mode}: the error does not say {needed:?}: {error}"
            );
        }
        assert!(
            path.exists(),
            "mode {mode}: the other user's socket is gone"
        );
    }
}

#[test]
fn accept_failures_at_the_descriptor_limit_are_logged_at_most_once_a_second() {
    // `serve` limited to 48 descriptors, and 120 clients connected at once:
    // accept fails with EMFILE over and over, and says so at most once a
    // second; once the clients leave, the server serves again.
    const WINDOW: Duration = Duration::from_secs(3);
    raise_fd_limit();
    let server = Served::start_wrapped("edge-emfile", &["prlimit", "--nofile=48"], &[]);
    let rt = runtime();
    let clients = rt.block_on(async {
        let mut clients = Vec::new();
        for _ in 0..120 {
            clients.push(connect_unix(&server.path).await.expect("connect"));
        }
        clients
    });
    server.process.wait_for_line("accept failed");
    let first = Instant::now();
    // The observation window: warnings are counted over it.
    std::thread::sleep(WINDOW);
    let window = first.elapsed();
    let output = server.output();
    let warnings = output
        .lines()
        .filter(|l| l.contains("accept failed"))
        .count();
    drop(clients);
    println!("{warnings} accept warnings in {window:.1?}");
    assert!(
        warnings as f64 <= window.as_secs_f64() + 2.0,
        "{warnings} accept warnings in {window:?}:\n{output}"
    );
    assert!(
        output.contains("more since the last report"),
        "the repeated failures were not counted:\n{output}"
    );
    rt.block_on(async {
        let mut conn = Conn::open(&server.path).await.unwrap();
        conn.hello().await.unwrap();
        conn.close().await;
    });
    server.assert_alive();
}
