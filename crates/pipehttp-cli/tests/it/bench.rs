//! `pipehttp bench` end to end against `pipehttp serve`, on a pipe, a Unix
//! socket and TCP: every request succeeds and the JSON report counts
//! exactly what was asked. Counts only: speed is shown by benchmarks
//! (scripts/bench.sh), never asserted in tests.

use std::process::Command;

use serde_json::{Value, json};
use testkit::{Serve, TempDir, tempdir, unique_name};

const BIN: &str = env!("CARGO_BIN_EXE_pipehttp");

fn pipehttp(dir: &TempDir) -> Command {
    testkit::command(BIN, Some(dir.path()))
}

/// `pipehttp serve --urls URL`, once it listens; returns the server and
/// the URL it announced (with the real port for TCP port 0).
fn serve(dir: &TempDir, url: &str) -> (Serve, String) {
    let mut cmd = pipehttp(dir);
    cmd.args(["serve", "--urls", url]);
    let server = Serve::start(cmd, 1);
    let announced = server.url(0).to_owned();
    (server, announced)
}

/// Runs `pipehttp bench ARGS --output-format json`; asserts it exits with
/// `code` and returns the report, which it prints on failure too.
fn bench_exits(dir: &TempDir, args: &[&str], code: i32) -> Value {
    let out = pipehttp(dir)
        .arg("bench")
        .args(args)
        .args(["--output-format", "json"])
        .output()
        .expect("run pipehttp bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(code),
        "pipehttp bench {args:?}\nstdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("bench --output-format json printed no JSON ({e}): {stdout}"))
}

/// [`bench_exits`] for a run that succeeds.
fn bench(dir: &TempDir, args: &[&str]) -> Value {
    bench_exits(dir, args, 0)
}

/// `pipehttp bench` on `path` of `pipehttp serve` on a new pipe, with the
/// options `flags` (a command line's words); returns the report.
fn bench_on_a_pipe(path: &str, flags: &str) -> Value {
    let dir = tempdir().unwrap();
    let name = unique_name("bench");
    let (_server, _) = serve(&dir, &format!("http://pipe:/{name}"));
    let target = format!("http://pipe:/{name}:{path}");
    let args: Vec<&str> = [target.as_str()]
        .into_iter()
        .chain(flags.split_whitespace())
        .collect();
    bench(&dir, &args)
}

/// The counts every successful run must show: `n` requests, all 200,
/// no error, and latency figures in order.
fn assert_all_ok(report: &Value, n: u64) {
    assert_eq!(report["requests"], n, "{report}");
    assert_eq!(report["responses"], n, "{report}");
    assert_eq!(report["ok"], n, "{report}");
    assert_eq!(report["statuses"]["200"], n, "{report}");
    assert_eq!(report["errors"], serde_json::json!({}), "{report}");
    let latency = &report["latency_us"];
    let at = |k: &str| {
        latency[k]
            .as_f64()
            .unwrap_or_else(|| panic!("{k}: {report}"))
    };
    assert!(at("min") > 0.0, "{report}");
    assert!(at("min") <= at("p50"), "{report}");
    assert!(at("p50") <= at("p99"), "{report}");
    assert!(at("p99") <= at("max"), "{report}");
    assert!(report["requests_per_s"].as_f64().unwrap() > 0.0, "{report}");
}

#[test]
fn pipe_keep_alive() {
    let report = bench_on_a_pipe("/test", "-c 4 -n 300");
    assert_all_ok(&report, 300);
    assert_eq!(report["transport"], "pipe");
    assert_eq!(report["protocol"], "HTTP/1.1");
    assert_eq!(report["bytes_received"], 300 * 12, "{report}");
    assert!(
        report["connections_opened"].as_u64().unwrap() <= 4,
        "{report}"
    );
}

/// Runs on a pipe whose reports must show what their options asked for:
/// (what the options do, the path, the options, fields of the report).
/// Each run sends as many requests as its `-n` says, all answered 200.
#[test]
fn options_show_in_the_report() {
    let cases = [
        (
            "a new connection per request",
            "/test",
            "-c 2 -n 50 --new-connection-per-request",
            json!({ "requests": 50, "connections_opened": 50 }),
        ),
        (
            // The same flags `pipehttp request` and curl take.
            "-X is the method, --json a JSON body, -m the per-request timeout",
            "/echo",
            r#"-c 2 -n 20 -X PUT --json {"n":1} -m 10"#,
            json!({
                "requests": 20, "method": "PUT", "bytes_sent": 20 * 7, "bytes_received": 20 * 7
            }),
        ),
        (
            "HTTP/2, and -d a POST body",
            "/echo",
            "-c 2 -n 40 --http2 -d 0123456789",
            json!({
                "requests": 40, "protocol": "HTTP/2", "method": "POST",
                "bytes_sent": 400, "bytes_received": 400
            }),
        ),
        (
            "--client: through the library's client",
            "/bytes/1000",
            "-c 3 -n 30 --client",
            json!({ "requests": 30, "via_client": true, "bytes_received": 30_000 }),
        ),
    ];
    for (what, path, flags, fields) in cases {
        let report = bench_on_a_pipe(path, flags);
        for (field, want) in fields.as_object().unwrap() {
            assert_eq!(&report[field], want, "{what}: {field} in {report}");
        }
        assert_all_ok(&report, fields["requests"].as_u64().unwrap());
    }
}

#[cfg(unix)]
#[test]
fn unix_socket() {
    let dir = tempdir().unwrap();
    let path = dir.path().join("bench.sock");
    let (_server, _) = serve(&dir, &format!("http://unix:{}", path.display()));
    let target = format!("http://unix:{}:/test", path.display());
    let report = bench(&dir, &[&target, "-c", "3", "-n", "200"]);
    assert_all_ok(&report, 200);
    assert_eq!(report["transport"], "unix");
}

#[test]
fn tcp_loopback() {
    let dir = tempdir().unwrap();
    let (_server, url) = serve(&dir, "http://127.0.0.1:0");
    let target = format!("{url}/test");
    let report = bench(&dir, &[&target, "-c", "3", "-n", "200"]);
    assert_all_ok(&report, 200);
    assert_eq!(report["transport"], "tcp");
}

#[test]
fn duration_mode_counts_what_it_sent() {
    let report = bench_on_a_pipe("/health", "-c 2 -z 300ms");
    let n = report["requests"].as_u64().unwrap();
    assert!(n > 0, "{report}");
    assert_all_ok(&report, n);
    assert!(report["duration_s"].as_f64().unwrap() >= 0.3, "{report}");
}

#[test]
fn no_server_is_a_connect_error() {
    let dir = tempdir().unwrap();
    let name = unique_name("bench-absent");
    let target = format!("http://pipe:/{name}:/test");
    // 7: curl's 'could not connect'; the report comes even so.
    let args = [&target, "-n", "2", "-c", "1", "--connect-timeout", "0.2"];
    let report = bench_exits(&dir, &args, 7);
    assert_eq!(report["errors"]["connect"], 2, "{report}");
    assert_eq!(report["responses"], 0, "{report}");
}

/// nginx closing every connection after `keepalive_requests` requests:
/// HTTP/1.1 with `Connection: close` on the last response, HTTP/2 with a
/// GOAWAY. The bench opens a new connection then and fails nothing.
#[cfg(unix)]
#[test]
fn a_server_that_closes_in_order_costs_reconnects_not_failures() {
    const PER_CONNECTION: u64 = 5;
    const REQUESTS: u64 = 200;
    const CONNECTIONS: u64 = 4;
    let dir = tempdir().unwrap();
    let nginx = testkit::cli_tools::nginx_answering(
        &format!("keepalive_requests {PER_CONNECTION};"),
        &[("h1.sock", ""), ("h2.sock", "http2")],
        "ok",
    );
    for (socket, flags) in [("h1.sock", &[][..]), ("h2.sock", &["--http2"][..])] {
        let target = format!("http://unix:{}:/", nginx.dir().join(socket).display());
        let (n, c) = (REQUESTS.to_string(), CONNECTIONS.to_string());
        let mut args = vec![target.as_str(), "-n", &n, "-c", &c];
        args.extend_from_slice(flags);
        let report = bench(&dir, &args);
        assert_all_ok(&report, REQUESTS);
        let opened = report["connections_opened"].as_u64().unwrap();
        let reconnects = report["reconnects"].as_u64().unwrap();
        // Every connection but the first of each task replaced one that
        // nginx closed after its last request.
        assert!(
            reconnects >= REQUESTS / PER_CONNECTION - CONNECTIONS,
            "{socket}: {report}"
        );
        assert!(opened - reconnects <= CONNECTIONS, "{socket}: {report}");
    }
}

/// A server that closes a kept-alive connection under a request it read,
/// with no `Connection: close` before: a genuine failure, not a reconnect.
#[cfg(unix)]
#[test]
fn a_close_that_was_not_announced_is_still_a_failure() {
    const SERVER: &str = r#"
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.bind(sys.argv[1])
s.listen(4)
print("ready", flush=True)
conn, _ = s.accept()
f = conn.makefile("rb")
for answer in (True, False):
    while f.readline() not in (b"\r\n", b""):
        pass
    if answer:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
conn.close()
"#;
    let dir = tempdir().unwrap();
    let socket = dir.path().join("closer.sock");
    let mut cmd = Command::new("python3");
    cmd.arg("-c").arg(SERVER).arg(&socket);
    let server = testkit::Spawned::start(cmd);
    server.wait_for_line("ready");
    let target = format!("http://unix:{}:/", socket.display());
    let report = bench_exits(&dir, &[&target, "-n", "2", "-c", "1"], 1);
    assert_eq!(report["ok"], 1, "{report}");
    assert_eq!(report["errors"]["closed"], 1, "{report}");
    assert_eq!(report["retries"], 0, "{report}");
    assert_eq!(report["reconnects"], 0, "{report}");
}

/// Python's http.server answers in HTTP/1.0 without keep-alive, so every
/// connection ends after one response: the bench opens the next one.
#[cfg(unix)]
#[test]
fn http_1_0_responses_without_keep_alive_cost_reconnects_not_failures() {
    let dir = tempdir().unwrap();
    std::fs::write(dir.path().join("index.txt"), "ok").unwrap();
    let mut cmd = Command::new("python3");
    cmd.args([
        "-u",
        "-m",
        "http.server",
        "--bind",
        "127.0.0.1",
        "--directory",
    ])
    .arg(dir.path())
    .arg("0");
    let server = testkit::Spawned::start(cmd);
    let line = server.wait_for_line("Serving HTTP on");
    let port = line
        .split(" port ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no port in {line:?}"));
    let target = format!("http://127.0.0.1:{port}/index.txt");
    let report = bench(&dir, &[&target, "-n", "40", "-c", "2"]);
    assert_all_ok(&report, 40);
    assert_eq!(report["connections_opened"], 40, "{report}");
    assert_eq!(report["reconnects"], 38, "{report}");
}
