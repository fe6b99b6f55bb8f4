//! `pipehttp proxy` between peers no one here wrote: Debian's curl over TCP
//! (HTTP/1.1 and h2c) to an app that listens only on a pipe; Python's
//! http.server as a target that streams events, stalls, counts uploads
//! and switches protocols; nginx as an HTTP/2 target; and the proxy's
//! memory while a large body passes both ways.

#![cfg(unix)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use testkit::cli_tools::{curl_ok, curl_over_http1_and_http2, nginx_answering};
use testkit::{Serve, Spawned, TempDir, tempdir, unique_name};

use crate::proxy::{app_behind_tcp_proxy, pipehttp, proxy, serve};
use crate::tls::{HttpsPipe, dev_cert};

/// Debian's python3: the one python3-websockets is installed for.
pub(crate) const PYTHON: &str = "/usr/bin/python3";

/// A script of tests/it/peers.
pub(crate) fn peer_script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/it/peers")
        .join(name)
}

/// Python's http.server on a Unix socket in `dir` (peers/upstream.py);
/// returns it and its socket.
fn python_target(dir: &TempDir) -> (Spawned, PathBuf) {
    let socket = dir.path().join("target.sock");
    let mut cmd = Command::new(PYTHON);
    cmd.arg(peer_script("upstream.py")).arg(&socket);
    let target = Spawned::start(cmd);
    target.wait_for_line("listening");
    (target, socket)
}

/// The Python target and a proxy from TCP to it with `extra` flags.
fn python_behind_proxy(dir: &TempDir, extra: &[&str]) -> (Spawned, Serve, PathBuf) {
    let (target, socket) = python_target(dir);
    let to = format!("http://unix:{}", socket.display());
    (target, proxy(dir, "http://127.0.0.1:0", &to, extra), socket)
}

#[test]
fn curl_over_tcp_reaches_an_app_only_on_a_pipe_in_http1_and_h2c() {
    let dir = tempdir().unwrap();
    let (_app, front) = app_behind_tcp_proxy(&dir, "peers-app", &["-v"]);
    let url = front.url(0);
    let body = dir.path().join("body");
    let data: Vec<u8> = (0..2_000_000u32).map(|i| (i % 253) as u8).collect();
    std::fs::write(&body, &data).unwrap();
    let upload = format!("@{}", body.display());
    for (flag, version) in [("--http1.1", "1.1"), ("--http2-prior-knowledge", "2")] {
        let got = curl_ok(&[flag, "-w", " %{http_version}", &format!("{url}/test")]);
        assert_eq!(got, format!("Hello world! {version}"));
        let echoed = dir.path().join("echoed");
        let echo = format!("{url}/echo");
        let out = curl_ok(&[
            flag,
            "--data-binary",
            &upload,
            "-o",
            echoed.to_str().unwrap(),
            "-w",
            "%{http_code}",
            &echo,
        ]);
        assert_eq!(out, "200");
        assert!(
            std::fs::read(&echoed).unwrap() == data,
            "{flag}: the echo differs"
        );
    }
    // -v: one line per request, with method, path, status, bytes and time.
    let line = front.wait_for_line("GET /test 200 12 bytes ");
    assert!(line.trim_end().ends_with(" ms"), "{line}");
    front.wait_for_line("POST /echo 200 2000000 bytes ");
}

#[test]
fn hop_by_hop_fields_stay_behind_and_forwarded_fields_are_added() {
    let dir = tempdir().unwrap();
    let (_target, socket) = python_target(&dir);
    let to = format!("http://unix:{}", socket.display());
    let pipe = unique_name("peers-fwd");
    let front = proxy(
        &dir,
        &format!("http://127.0.0.1:0;http://pipe:/{pipe}"),
        &to,
        &[],
    );
    let url = format!("{}/headers", front.url(0));
    let host = front.url(0).trim_start_matches("http://").to_owned();
    let out = curl_ok(&[
        "-i",
        "-H",
        "Connection: keep-alive, X-Secret",
        "-H",
        "X-Secret: for the proxy only",
        "-H",
        "Keep-Alive: timeout=5",
        "-H",
        "Proxy-Authorization: Basic eDp5",
        "-H",
        "TE: trailers",
        "-H",
        "X-Forwarded-For: 10.1.2.3",
        "-H",
        "X-End-To-End: kept",
        &url,
    ]);
    let (head, body) = out.split_once("\r\n\r\n").unwrap();
    assert!(
        !head.to_ascii_lowercase().contains("x-hop"),
        "a field the target's Connection named came through: {head}"
    );
    let seen = fields(body);
    let get = |name: &str| {
        seen.iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    for gone in [
        "x-secret",
        "keep-alive",
        "proxy-authorization",
        "connection",
    ] {
        assert_eq!(get(gone), None, "{gone} reached the target: {seen:?}");
    }
    assert_eq!(get("te"), Some("trailers"));
    assert_eq!(get("x-end-to-end"), Some("kept"));
    assert_eq!(get("x-forwarded-for"), Some("10.1.2.3, 127.0.0.1"));
    assert_eq!(get("x-forwarded-proto"), Some("http"));
    assert_eq!(get("x-forwarded-host"), Some(host.as_str()));
    assert_eq!(get("host"), Some("localhost"));

    // A client on the pipe has no address: it is named "pipe:". Only this
    // user may connect, as with serve.
    // The endpoints are announced in the order --listen gives them.
    let sock = front.path(1);
    let mode = std::fs::metadata(sock).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let body = curl_ok(&[
        "--unix-socket",
        sock.to_str().unwrap(),
        "http://app.example/headers",
    ]);
    let seen = fields(&body);
    let get = |name: &str| {
        seen.iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(get("x-forwarded-for"), Some("pipe:"));
    assert_eq!(get("x-forwarded-host"), Some("app.example"));
    assert_eq!(get("host"), Some("localhost"));

    // --preserve-host passes the client's Host on.
    let kept = proxy(&dir, "http://127.0.0.1:0", &to, &["--preserve-host"]);
    let body = curl_ok(&[
        "-H",
        "Host: app.example:8080",
        &format!("{}/headers", kept.url(0)),
    ]);
    let seen = fields(&body);
    assert!(
        seen.contains(&("host".to_owned(), "app.example:8080".to_owned())),
        "{seen:?}"
    );
}

/// The header lines the Python target saw, from its /headers answer.
fn fields(body: &str) -> Vec<(String, String)> {
    let json: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    json["headers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|pair| {
            (
                pair[0].as_str().unwrap().to_owned(),
                pair[1].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[test]
fn server_sent_events_arrive_as_the_target_sends_them() {
    let dir = tempdir().unwrap();
    let (_target, front, socket) = python_behind_proxy(&dir, &[]);
    for flag in ["--http1.1", "--http2-prior-knowledge"] {
        let mut cmd = Command::new("curl");
        cmd.args([
            "--silent",
            "--show-error",
            "--no-buffer",
            "--max-time",
            "60",
            flag,
        ])
        .arg(format!("{}/sse", front.url(0)));
        let mut events = Spawned::start(cmd);
        // The target sends the second event only once it is released, so a
        // proxy that held the stream back would never show the first.
        events.wait_for_line("data: 1");
        assert!(!events.output().contains("data: 2"));
        curl_ok(&[
            "--unix-socket",
            socket.to_str().unwrap(),
            "http://localhost/release",
        ]);
        events.wait_for_line("data: 2");
        assert!(events.wait_exit().success(), "{}", events.output());
    }
}

#[test]
fn a_target_slower_than_the_upstream_timeout_is_a_504() {
    let dir = tempdir().unwrap();
    let (_target, front, socket) = python_behind_proxy(&dir, &["--upstream-timeout", "0.5"]);
    let out = curl_ok(&["-w", "\n%{http_code}", &format!("{}/slow", front.url(0))]);
    let (text, status) = out.rsplit_once('\n').unwrap();
    assert_eq!(status, "504");
    assert_eq!(
        text.trim_end(),
        format!(
            "pipehttp proxy: http://unix:{} sent no response within 500ms",
            socket.display()
        )
    );
}

#[test]
fn a_target_that_restarts_is_waited_for() {
    let dir = tempdir().unwrap();
    let app = unique_name("peers-restart");
    let url = format!("http://pipe:/{app}");
    let first = serve(&dir, &url);
    let front = proxy(
        &dir,
        "http://127.0.0.1:0",
        &url,
        &["--connect-timeout", "30"],
    );
    let test = format!("{}/test", front.url(0));
    assert_eq!(curl_ok(&[&test]), "Hello world!");
    first.stop();
    let mut cmd = Command::new("curl");
    cmd.args([
        "--silent",
        "--show-error",
        "--verbose",
        "--max-time",
        "60",
        &test,
    ]);
    let mut waiting = Spawned::start(cmd);
    // curl has sent its request: the proxy now waits for the pipe.
    waiting.wait_for_line("> GET /test");
    let _second = serve(&dir, &url);
    assert!(waiting.wait_exit().success(), "{}", waiting.output());
    waiting.wait_for_line("Hello world!");
}

#[test]
fn takeovers_of_the_target_lose_no_request() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    let dir = tempdir().unwrap();
    let app = unique_name("peers-takeover");
    let url = format!("http://pipe:/{app}");
    let mut current = serve(&dir, &url);
    let front = proxy(&dir, "http://127.0.0.1:0", &url, &[]);
    let base = front.url(0).to_owned();
    let stop = Arc::new(AtomicBool::new(false));
    // GETs, and PUTs with a body, as tracers send their traces to an agent.
    let clients: Vec<_> = (0..4)
        .map(|i| {
            let (base, stop) = (base.clone(), stop.clone());
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    let client = pipehttp::Client::new();
                    let (mut ok, mut failed) = (0, Vec::new());
                    let mut n = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        n += 1;
                        let (res, want) = if i % 2 == 0 {
                            let res = client.get(format!("{base}/test")).send().await;
                            (res.unwrap(), "Hello world!".to_owned())
                        } else {
                            let body = format!("trace {i}-{n}");
                            let res = client.put(format!("{base}/echo")).body(body.clone());
                            (res.send().await.unwrap(), body)
                        };
                        let status = res.status().as_u16();
                        let text = res.text().await.unwrap_or_default();
                        if status == 200 && text == want {
                            ok += 1;
                        } else {
                            failed.push((status, text));
                        }
                    }
                    (ok, failed)
                })
            })
        })
        .collect();
    for _ in 0..5 {
        let mut cmd = pipehttp(&dir);
        cmd.args(["serve", "--takeover", "--urls", &url]);
        let next = Serve::start(cmd, 1);
        let mut old = std::mem::replace(&mut current, next);
        assert!(old.wait_exit().success(), "{}", old.output());
    }
    stop.store(true, Ordering::Relaxed);
    let mut total = 0;
    for client in clients {
        let (ok, failed) = client.join().unwrap();
        assert!(failed.is_empty(), "requests failed: {failed:?}");
        total += ok;
    }
    assert!(total > 0);
}

#[test]
fn an_upgraded_connection_is_half_closed_each_way() {
    let dir = tempdir().unwrap();
    // On one thread, where the tunnel shares the thread with the server.
    let (_target, front, _) = python_behind_proxy(&dir, &["--threads", "1"]);
    let addr = front.url(0).trim_start_matches("http://").to_owned();
    for method in ["GET", "POST"] {
        let mut conn = TcpStream::connect(&addr).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        write!(
            conn,
            "{method} /upgrade HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\nContent-Length: 0\r\n\r\n"
        )
        .unwrap();
        let head = read_head(&mut conn);
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        let lower = head.to_ascii_lowercase();
        assert!(lower.contains("upgrade: echo"), "{head}");
        assert!(lower.contains("connection: upgrade"), "{head}");
        let data = vec![7u8; 300_000];
        conn.write_all(&data).unwrap();
        // The target answers only after the end of what we send, so the
        // answer proves the half-close went through and the way back
        // stayed open.
        conn.shutdown(std::net::Shutdown::Write).unwrap();
        let mut rest = String::new();
        conn.read_to_string(&mut rest).unwrap();
        assert_eq!(rest, "got 300000 bytes\n");
    }
}

/// Opens an upgraded connection to the Python target's echo through the
/// proxy at `addr` and sends `data` on it.
fn open_tunnel(addr: &str, data: &[u8]) -> TcpStream {
    let mut conn = TcpStream::connect(addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    conn.write_all(
        b"GET /upgrade HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n",
    )
    .unwrap();
    let head = read_head(&mut conn);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    conn.write_all(data).unwrap();
    conn
}

/// A proxy to `to` with `--shutdown-timeout SECS`, an upgraded connection
/// through it that has sent `data`, and a SIGTERM to the proxy, seen.
fn stopped_with_a_tunnel(dir: &TempDir, to: &str, secs: &str, data: &[u8]) -> (Serve, TcpStream) {
    let front = proxy(dir, "http://127.0.0.1:0", to, &["--shutdown-timeout", secs]);
    let addr = front.url(0).trim_start_matches("http://").to_owned();
    let conn = open_tunnel(&addr, data);
    front.terminate();
    front.wait_for_line("stopping");
    (front, conn)
}

#[test]
fn a_stop_lets_an_upgraded_connection_finish_within_the_shutdown_timeout() {
    let dir = tempdir().unwrap();
    let (_target, socket) = python_target(&dir);
    let to = format!("http://unix:{}", socket.display());
    let (mut front, mut conn) = stopped_with_a_tunnel(&dir, &to, "30", b"before the stop ");
    conn.write_all(b"and after").unwrap();
    conn.shutdown(std::net::Shutdown::Write).unwrap();
    let mut rest = String::new();
    conn.read_to_string(&mut rest).unwrap();
    assert_eq!(rest, "got 25 bytes\n");
    assert!(front.wait_exit().success(), "{}", front.output());

    // A tunnel still open when the shutdown timeout ends is closed.
    let (mut front, mut conn) = stopped_with_a_tunnel(&dir, &to, "0.3", b"left open");
    front.wait_for_line("1 upgraded connection(s) still open after 300ms");
    assert!(front.wait_exit().success(), "{}", front.output());
    let mut rest = Vec::new();
    assert!(
        matches!(conn.read_to_end(&mut rest), Ok(0) | Err(_)),
        "{rest:?}"
    );
}

#[test]
fn a_proxy_takes_its_pipe_over_from_a_running_one() {
    let dir = tempdir().unwrap();
    let app = unique_name("peers-app");
    let _app = serve(&dir, &format!("http://pipe:/{app}"));
    let to = format!("http://pipe:/{app}");
    let name = unique_name("peers-front");
    let listen = format!("http://pipe:/{name}");
    let mut old = proxy(&dir, &listen, &to, &[]);
    let new = proxy(&dir, &listen, &to, &["--takeover"]);
    assert!(old.wait_exit().success(), "{}", old.output());
    let sock = new.path(0);
    let body = curl_ok(&[
        "--unix-socket",
        sock.to_str().unwrap(),
        "http://localhost/whoami",
    ]);
    let who: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(who["pid"], new.id(), "{who}");
}

/// Reads a response head byte by byte, so nothing after it is consumed.
fn read_head(conn: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(
            conn.read(&mut byte).unwrap(),
            1,
            "the head broke off: {head:?}"
        );
        head.push(byte[0]);
    }
    String::from_utf8(head).unwrap()
}

#[test]
fn each_side_chooses_http1_or_http2_on_its_own() {
    let dir = tempdir().unwrap();
    let nginx = nginx_answering("", &[("nginx.sock", "http2")], "$server_protocol");
    let sock = nginx.dir().join("nginx.sock");
    let to = format!("http://unix:{}", sock.display());
    let h2 = proxy(&dir, "http://127.0.0.1:0", &to, &["--to-http2"]);
    let h1 = proxy(&dir, "http://127.0.0.1:0", &to, &[]);
    // Status and version of curl's answer, and the version nginx says it
    // was asked in. nginx's cleartext HTTP/2 port speaks only HTTP/2, so a
    // proxy speaking HTTP/1.1 to it gets no answer to pass on: 502.
    for (proxy, flag, want, nginx_saw) in [
        (&h2, "--http1.1", "200 1.1", Some("HTTP/2.0")),
        (&h2, "--http2-prior-knowledge", "200 2", Some("HTTP/2.0")),
        (&h1, "--http2-prior-knowledge", "502 2", None),
    ] {
        let url = format!("{}/", proxy.url(0));
        let out = curl_ok(&[flag, "-w", "\n%{http_code} %{http_version}", &url]);
        let (body, got) = out.rsplit_once('\n').unwrap();
        assert_eq!(got, want, "{flag} through {url}: {out}");
        if let Some(saw) = nginx_saw {
            assert_eq!(body, saw, "{flag} through {url}");
        }
    }
}

#[test]
fn https_on_both_sides_with_alpn() {
    let app = HttpsPipe::start("peers-tls", dev_cert);
    let dir = &app.dir;
    let to = app.server.url(0);
    let (cert, key) = (app.cert.to_str().unwrap(), app.key.to_str().unwrap());
    let front = proxy(
        dir,
        "https://127.0.0.1:0",
        to,
        &["--cert", cert, "--key", key, "--to-cacert", cert],
    );
    let port = front.url(0).rsplit(':').next().unwrap().to_owned();
    let resolve = format!("localhost:{port}:127.0.0.1");
    let url = format!("https://localhost:{port}/whoami");
    for json in curl_over_http1_and_http2(&["--cacert", cert, "--resolve", &resolve, &url]) {
        let who: Value = serde_json::from_str(&json).unwrap();
        assert_eq!(who["pid"], front.id(), "{who}");
    }
    // Without trusting the app's certificate the proxy cannot reach it.
    let strict = proxy(dir, "http://127.0.0.1:0", to, &[]);
    let out = curl_ok(&["-w", "\n%{http_code}", &format!("{}/test", strict.url(0))]);
    let (text, status) = out.rsplit_once('\n').unwrap();
    assert_eq!(status, "502", "{text}");
    assert!(text.contains("certificate"), "{text}");
}

#[cfg(target_os = "linux")]
#[test]
fn a_large_body_passes_both_ways_in_bounded_memory() {
    const SIZE: u64 = 512 << 20;
    const MAX_PEAK_KIB: u64 = 96 << 10;
    let dir = tempdir().unwrap();
    let (_target, socket) = python_target(&dir);
    let up = proxy(
        &dir,
        "http://127.0.0.1:0",
        &format!("http://unix:{}", socket.display()),
        &[],
    );
    let (_app, down) = app_behind_tcp_proxy(&dir, "peers-big", &[]);

    // Upload: curl sends stdin chunked, as fast as the proxy takes it.
    let mut curl = Command::new("curl")
        .args(["--silent", "--show-error", "--max-time", "120", "-T", "-"])
        .arg(format!("{}/sink", up.url(0)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = curl.stdin.take().unwrap();
    let feeder = std::thread::spawn(move || {
        let block = vec![b'x'; 1 << 20];
        for _ in 0..(SIZE >> 20) {
            stdin.write_all(&block).unwrap();
        }
    });
    let out = curl.wait_with_output().unwrap();
    feeder.join().unwrap();
    assert!(out.status.success());
    let counted: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(counted["bytes"], SIZE);

    // Download from the app's /bytes/N.
    let got = curl_ok(&[
        "-o",
        "/dev/null",
        "-w",
        "%{size_download}",
        &format!("{}/bytes/{SIZE}", down.url(0)),
    ]);
    assert_eq!(got, SIZE.to_string());

    for proxy in [&up, &down] {
        let peak = peak_rss_kib(proxy.id());
        assert!(
            peak < MAX_PEAK_KIB,
            "the proxy's peak resident memory was {peak} KiB for a {SIZE}-byte body"
        );
    }
}

/// The peak resident set of process `pid` (VmHWM), in KiB.
#[cfg(target_os = "linux")]
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}
