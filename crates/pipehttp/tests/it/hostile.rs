//! Hostile input: raw bytes written to a live server's socket, from the
//! case files in `tests/hostile/`, each with the answer it must get. After
//! every case a normal client must still be served, and no server thread
//! may have panicked. See TESTING.md for the table of cases.
//!
//! # The case format
//!
//! One file per case, `tests/hostile/NAME.case`. A header block of
//! `key: value` lines, a line `---`, then the bytes to send:
//!
//! ```text
//! # Comment lines start with '#' (header block only).
//! proves: what the case shows, printed when it fails
//! expect: 400 close
//! ---
//! GET /test HTTP/1.1\r\n
//! Host: localhost\r\n
//! \r\n
//! ```
//!
//! Keys:
//! - `expect` (required): what the server must send back, in order, as
//!   space-separated outcomes: a status code (`400`), a status class
//!   (`4xx`), `goaway` (HTTP/2 frames that include a GOAWAY), then how the
//!   connection ends: `close` (the server closed it) or `open` (still open
//!   when the case's time ran out). Several `expect` lines are
//!   alternatives: any one of them may match.
//! - `proves`: one sentence, printed when the case fails.
//! - `half-close: yes`: shut down the client's sending side once the bytes
//!   are sent (as a client that sends a body and then closes does).
//!   Skipped where the transport has no half-close (Windows pipes).
//! - `timeout`: seconds to wait for the whole answer (default: the headers
//!   timeout, 2 s, plus 3 s of slack). Past it the connection counts as
//!   `open`, which is how a hang shows.
//!
//! The bytes: each line is appended without its line break, so a line
//! break on the wire is written `\r\n`. Escapes: `\r`, `\n`, `\t`, `\0`,
//! `\\`, `\xHH`. Blank lines add nothing. Two directives, on lines of
//! their own:
//! - `@repeat N TEXT`: TEXT (with escapes) N times;
//! - `@hex HEX`: raw bytes written in hexadecimal.
//!
//! Set `HOSTILE_CASE=NAME` to run one case.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, Once};
use std::time::{Duration, Instant};

use crate::sample::SampleApp;
use crate::server::is_a_close;
use pipehttp::client::Connector;
use pipehttp::{Client, Server, ServerBuilder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;

/// The server's request_headers_timeout: a case that leaves a request head
/// unfinished must be cut by then.
const HEADERS_TIMEOUT: Duration = Duration::from_secs(2);
/// Time on top of the headers timeout before a silent connection counts as
/// hung: CI machines are slow, but never this slow.
const SLACK: Duration = Duration::from_secs(3);
/// The longest any other single wait may take before it counts as a hang.
const PATIENCE: Duration = Duration::from_secs(20);
/// Worker threads of a server's runtime are named this plus the server's
/// own suffix, so a panic on them is told from a failing assertion of the
/// test itself, and from another test's server.
const SERVER_THREAD: &str = "hostile-server";

/// The names of the server threads that panicked, one entry per panic.
static SERVER_PANICS: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Records panics on server threads, then reports them as usual.
fn count_server_panics() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if let Some(name) = std::thread::current().name()
                && name.starts_with(SERVER_THREAD)
            {
                SERVER_PANICS
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(name.to_owned());
            }
            previous(info);
        }));
    });
}

/// How many times the threads named `thread` have panicked so far.
fn panics_on(thread: &str) -> usize {
    SERVER_PANICS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .filter(|name| *name == thread)
        .count()
}

// ---------------------------------------------------------------------------
// Case files

#[derive(Debug)]
struct Case {
    name: String,
    proves: String,
    /// Alternatives; each a sequence of outcome patterns.
    expect: Vec<Vec<String>>,
    half_close: bool,
    timeout: Duration,
    bytes: Vec<u8>,
}

fn cases_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/hostile")
}

fn load_cases() -> Vec<Case> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(cases_dir())
        .expect("tests/hostile exists")
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "case"))
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|path| {
            let text = std::fs::read_to_string(path)
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
            let name = path
                .file_stem()
                .and_then(|s| s.to_str())
                .expect("a UTF-8 file name")
                .to_owned();
            parse_case(&name, &text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        })
        .collect()
}

fn parse_case(name: &str, text: &str) -> Result<Case, String> {
    let (head, body) = text
        .split_once("\n---\n")
        .ok_or("no line '---' between the header block and the bytes")?;
    let mut case = Case {
        name: name.to_owned(),
        proves: String::new(),
        expect: Vec::new(),
        half_close: false,
        timeout: HEADERS_TIMEOUT + SLACK,
        bytes: Vec::new(),
    };
    for (n, line) in head.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, value) = line
            .split_once(':')
            .ok_or_else(|| format!("header line {}: no ':' in {line:?}", n + 1))?;
        let value = value.trim();
        match key.trim() {
            "proves" => case.proves = value.to_owned(),
            "expect" => {
                let outcomes: Vec<String> = value.split_whitespace().map(str::to_owned).collect();
                for outcome in &outcomes {
                    check_pattern(outcome)?;
                }
                if outcomes.is_empty() {
                    return Err("an empty expect line".into());
                }
                case.expect.push(outcomes);
            }
            "half-close" => {
                case.half_close = match value {
                    "yes" => true,
                    "no" => false,
                    other => return Err(format!("half-close is yes or no, not {other:?}")),
                }
            }
            "timeout" => {
                let secs: f64 = value
                    .parse()
                    .map_err(|_| format!("timeout {value:?} is not a number of seconds"))?;
                case.timeout = Duration::from_secs_f64(secs);
            }
            other => return Err(format!("unknown key {other:?}")),
        }
    }
    if case.expect.is_empty() {
        return Err("no expect line".into());
    }
    for (n, line) in body.lines().enumerate() {
        let at = |e: String| format!("bytes line {}: {e}", n + 1);
        if let Some(rest) = line.strip_prefix("@repeat ") {
            let (count, text) = rest
                .split_once(' ')
                .ok_or_else(|| at("write @repeat N TEXT".into()))?;
            let count: usize = count
                .parse()
                .map_err(|_| at(format!("{count:?} is not a count")))?;
            let once = unescape(text).map_err(at)?;
            case.bytes.extend(once.repeat(count));
        } else if let Some(hex) = line.strip_prefix("@hex ") {
            case.bytes.extend(unhex(hex).map_err(at)?);
        } else if line.starts_with('@') {
            return Err(at(format!(
                "unknown directive {line:?}; write \\x40 for a literal '@'"
            )));
        } else {
            case.bytes.extend(unescape(line).map_err(at)?);
        }
    }
    if case.bytes.is_empty() {
        return Err("no bytes to send".into());
    }
    Ok(case)
}

fn check_pattern(pattern: &str) -> Result<(), String> {
    let ok = matches!(pattern, "close" | "open" | "goaway")
        || (pattern.len() == 3
            && pattern.as_bytes()[0].is_ascii_digit()
            && (pattern[1..].bytes().all(|b| b.is_ascii_digit()) || &pattern[1..] == "xx"));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "unknown outcome {pattern:?}: write a status (400), a class (4xx), goaway, close or open"
        ))
    }
}

fn unescape(text: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(text.len());
    let mut bytes = text.bytes();
    while let Some(b) = bytes.next() {
        if b != b'\\' {
            out.push(b);
            continue;
        }
        match bytes.next() {
            Some(b'r') => out.push(b'\r'),
            Some(b'n') => out.push(b'\n'),
            Some(b't') => out.push(b'\t'),
            Some(b'0') => out.push(0),
            Some(b'\\') => out.push(b'\\'),
            Some(b'x') => {
                let hi = bytes.next().ok_or("\\x needs two hex digits")?;
                let lo = bytes.next().ok_or("\\x needs two hex digits")?;
                out.extend(unhex(&String::from_utf8_lossy(&[hi, lo]))?);
            }
            Some(other) => return Err(format!("unknown escape \\{}", other as char)),
            None => return Err("a '\\' at the end of a line".into()),
        }
    }
    Ok(out)
}

fn unhex(hex: &str) -> Result<Vec<u8>, String> {
    let digits: Vec<u8> = hex.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    if !digits.len().is_multiple_of(2) {
        return Err(format!("odd number of hex digits in {hex:?}"));
    }
    digits
        .chunks(2)
        .map(|pair| {
            let pair = std::str::from_utf8(pair).map_err(|e| e.to_string())?;
            u8::from_str_radix(pair, 16).map_err(|_| format!("{pair:?} is not hex"))
        })
        .collect()
}

// ---------------------------------------------------------------------------
// What came back

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// End of stream, or a reset after the data: the server closed.
    Closed,
    /// Still open when the case's time ran out.
    Open,
}

/// The outcomes read off the bytes the server sent: HTTP/1 status codes,
/// `goaway`, or a description of bytes that are neither; then `close` or
/// `open`.
fn outcomes(mut bytes: &[u8], end: End) -> Vec<String> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        if bytes.starts_with(b"HTTP/") {
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut res = httparse::Response::new(&mut headers);
            match res.parse(bytes) {
                Ok(httparse::Status::Complete(head_len)) => {
                    let status = res.code.unwrap_or(0);
                    let mut length = None;
                    for h in res.headers.iter() {
                        if h.name.eq_ignore_ascii_case("content-length") {
                            length = std::str::from_utf8(h.value)
                                .ok()
                                .and_then(|v| v.trim().parse::<usize>().ok());
                        }
                        if h.name.eq_ignore_ascii_case("transfer-encoding") {
                            out.push(format!("{status}(chunked body: not read)"));
                            return finish(out, end);
                        }
                    }
                    // No length: the body runs to the end of the stream.
                    let body = length.unwrap_or(bytes.len() - head_len);
                    if bytes.len() < head_len + body {
                        out.push(format!("{status}(body cut short)"));
                        break;
                    }
                    out.push(status.to_string());
                    bytes = &bytes[head_len + body..];
                }
                Ok(httparse::Status::Partial) => {
                    out.push(format!("partial-response({})", show(bytes)));
                    break;
                }
                Err(e) => {
                    out.push(format!("bad-response({e}: {})", show(bytes)));
                    break;
                }
            }
        } else if let Some(frames) = h2_frames(bytes) {
            out.push(if frames.contains(&7) {
                "goaway".to_owned()
            } else {
                format!("h2-frames{frames:?}")
            });
            break;
        } else {
            out.push(format!("garbage({})", show(bytes)));
            break;
        }
    }
    finish(out, end)
}

fn finish(mut out: Vec<String>, end: End) -> Vec<String> {
    out.push(
        match end {
            End::Closed => "close",
            End::Open => "open",
        }
        .to_owned(),
    );
    out
}

/// The frame types of bytes that are a run of whole HTTP/2 frames
/// (9-byte header: 24-bit length, type, flags, stream id), starting with
/// the server's SETTINGS; `None` for anything else.
fn h2_frames(mut bytes: &[u8]) -> Option<Vec<u8>> {
    let mut types = Vec::new();
    while bytes.len() >= 9 {
        let len = usize::from(bytes[0]) << 16 | usize::from(bytes[1]) << 8 | usize::from(bytes[2]);
        let kind = bytes[3];
        if kind > 9 || bytes.len() < 9 + len || (types.is_empty() && kind != 4) {
            return None;
        }
        types.push(kind);
        bytes = &bytes[9 + len..];
    }
    (bytes.is_empty() && !types.is_empty()).then_some(types)
}

fn show(bytes: &[u8]) -> String {
    let shown: String = bytes
        .iter()
        .take(60)
        .flat_map(|b| std::ascii::escape_default(*b))
        .map(char::from)
        .collect();
    if bytes.len() > 60 {
        format!("{shown}... {} bytes", bytes.len())
    } else {
        shown
    }
}

fn matches(expected: &[String], got: &[String]) -> bool {
    expected.len() == got.len()
        && expected.iter().zip(got).all(|(e, g)| {
            e == g || (e.ends_with("xx") && g.len() == 3 && g.as_bytes()[0] == e.as_bytes()[0])
        })
}

// ---------------------------------------------------------------------------
// Running

/// Sends a case's bytes on a new connection and reads until the server
/// closes or the case's time runs out.
async fn exchange(address: &str, case: &Case) -> io::Result<(Vec<u8>, End, Duration)> {
    let conn = tokio::time::timeout(PATIENCE, Connector::new(address).unwrap().connect())
        .await
        .map_err(|_| io::Error::other("connect hung"))?
        .map_err(io::Error::other)?;
    let (mut reader, mut writer) = tokio::io::split(conn);
    let bytes = case.bytes.clone();
    let half_close = case.half_close;
    // The server may answer and close before it has read everything (a
    // 431 for a huge head): writing then fails, which is fine.
    let writer = tokio::spawn(async move {
        writer.write_all(&bytes).await?;
        writer.flush().await?;
        if half_close {
            writer.shutdown().await?;
        }
        // Keep the sending side open (unless half-closed) until the case ends.
        std::future::pending::<()>().await;
        Ok::<_, io::Error>(writer)
    });
    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + case.timeout;
    let mut got = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let end = loop {
        match tokio::time::timeout_at(deadline, reader.read(&mut buf)).await {
            Err(_) => break End::Open,
            Ok(Ok(0)) => break End::Closed,
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Ok(Err(e)) if is_a_close(&e) => break End::Closed,
            Ok(Err(e)) => return Err(e),
        }
    };
    writer.abort();
    Ok((got, end, started.elapsed()))
}

/// A normal request on a new connection: the server must still serve.
async fn normal_request_is_served(address: &str) -> Result<(), String> {
    let target = format!("{address}:/test");
    let client = Client::builder().timeout(PATIENCE).build();
    let res = client
        .get(target.as_str())
        .send()
        .await
        .map_err(|e| format!("a normal GET /test failed: {e}"))?;
    let status = res.status();
    let body = res
        .text()
        .await
        .map_err(|e| format!("a normal GET /test body failed: {e}"))?;
    if status == 200 && body == "Hello world!" {
        Ok(())
    } else {
        Err(format!("a normal GET /test got {status} {body:?}"))
    }
}

/// Runs one case; `Err` describes how the server failed it.
async fn run_case(server: &Running, case: &Case) -> Result<String, String> {
    let address = server.address.as_str();
    let panics_before = panics_on(&server.thread);
    let (got, end, elapsed) = exchange(address, case)
        .await
        .map_err(|e| format!("the exchange failed: {e}"))?;
    let outcome = outcomes(&got, end);
    let mut problems = Vec::new();
    if !case.expect.iter().any(|e| matches(e, &outcome)) {
        let expected: Vec<String> = case.expect.iter().map(|e| e.join(" ")).collect();
        problems.push(format!(
            "expected `{}`, got `{}` after {elapsed:.1?}; the server sent: {}",
            expected.join("` or `"),
            outcome.join(" "),
            show(&got)
        ));
    }
    if let Err(e) = normal_request_is_served(address).await {
        problems.push(format!("and then {e}"));
    }
    let panics = panics_on(&server.thread) - panics_before;
    if panics > 0 {
        problems.push(format!("{panics} server thread(s) panicked"));
    }
    if problems.is_empty() {
        Ok(format!("{} after {elapsed:.1?}", outcome.join(" ")))
    } else {
        Err(format!(
            "{}: {}\n    ({})",
            case.name,
            problems.join("; "),
            case.proves
        ))
    }
}

/// The server, in a runtime of its own whose threads are named
/// [`SERVER_THREAD`]-NAME, so its panics can be counted.
struct Running {
    address: String,
    thread: String,
    stop: Option<oneshot::Sender<()>>,
    runtime: Option<tokio::runtime::Runtime>,
    task: tokio::task::JoinHandle<pipehttp::Result<()>>,
}

impl Running {
    fn start(prefix: &str, configure: impl FnOnce(ServerBuilder) -> ServerBuilder) -> Self {
        count_server_panics();
        let thread = format!("{SERVER_THREAD}-{prefix}");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name(&thread)
            .enable_all()
            .build()
            .expect("a runtime");
        let name = testkit::unique_name(prefix);
        let address = format!("http://pipe:/{name}");
        let builder = Server::builder()
            .listen(address.as_str())
            .request_headers_timeout(HEADERS_TIMEOUT)
            .shutdown_timeout(Duration::from_secs(1));
        let server = runtime
            .block_on(configure(builder).bind())
            .expect("the server binds");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = runtime.spawn(server.serve_with_shutdown(SampleApp::new(), async {
            let _ = stopped.await;
        }));
        Self {
            address,
            thread,
            stop: Some(stop),
            runtime: Some(runtime),
            task,
        }
    }

    fn is_serving(&self) -> bool {
        !self.task.is_finished()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_timeout(Duration::from_secs(5));
        }
    }
}

fn client_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
}

#[test]
fn malformed_requests_get_4xx_or_close_and_the_server_keeps_serving() {
    let only = std::env::var("HOSTILE_CASE").ok();
    let cases: Vec<Case> = load_cases()
        .into_iter()
        .filter(|c| only.as_deref().is_none_or(|name| c.name == name))
        .collect();
    assert!(!cases.is_empty(), "no case to run (HOSTILE_CASE={only:?})");
    let server = Running::start("hostile", |b| b);
    let client = client_runtime();
    let mut failures = Vec::new();
    let started = Instant::now();
    for case in &cases {
        if case.half_close && cfg!(windows) {
            println!("{:<32} skipped: no half-close on Windows pipes", case.name);
            continue;
        }
        match client.block_on(run_case(&server, case)) {
            Ok(summary) => println!("{:<32} ok: {summary}", case.name),
            Err(failure) => {
                println!("{:<32} FAILED", case.name);
                failures.push(failure);
            }
        }
        assert!(
            server.is_serving(),
            "the server stopped after case {}",
            case.name
        );
    }
    println!("{} cases in {:.1?}", cases.len(), started.elapsed());
    assert!(
        failures.is_empty(),
        "{} of {} hostile cases failed:\n  {}",
        failures.len(),
        cases.len(),
        failures.join("\n  ")
    );
}

#[test]
fn huge_timeouts_that_the_config_accepts_still_serve() {
    // "Practically forever", as someone might write it: the loader takes
    // the largest TOML integer, so the server must serve with it rather
    // than overflow a deadline. A request head in two parts makes the
    // server compute its headers deadline; a connection computes its idle
    // deadline as it starts.
    let config = pipehttp::Config::from_toml_str(
        "[limits]\nrequest_headers_timeout = 9223372036854775807\n\
         keep_alive_timeout = 9223372036854775807\n",
        "forever.toml",
    )
    .expect("the loader accepts it");
    let limits = config.options.limits;
    let server = Running::start("forever", |b| b.limits(limits));
    let client = client_runtime();
    let panics_before = panics_on(&server.thread);
    let answer = client.block_on(async {
        let mut conn = Connector::new(server.address.as_str())
            .unwrap()
            .connect()
            .await
            .expect("connect");
        let _ = conn.write_all(b"GET /test HTTP/1.1\r\n").await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let _ = conn
            .write_all(b"Host: localhost\r\nConnection: close\r\n\r\n")
            .await;
        let mut got = Vec::new();
        let _ = tokio::time::timeout(PATIENCE, conn.read_to_end(&mut got)).await;
        got
    });
    let panics = panics_on(&server.thread) - panics_before;
    assert!(
        answer.starts_with(b"HTTP/1.1 200") && panics == 0,
        "with request_headers_timeout and keep_alive_timeout of i64::MAX seconds the server \
         answered {:?} and {panics} of its threads panicked",
        show(&answer)
    );
}

#[test]
fn every_case_file_parses_and_is_in_the_testing_table() {
    let testing =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../TESTING.md"))
            .expect("TESTING.md at the repository root");
    let cases = load_cases();
    assert!(cases.len() >= 20, "only {} cases", cases.len());
    let mut missing = Vec::new();
    for case in &cases {
        let row = testing
            .lines()
            .find(|l| l.starts_with(&format!("| `{}` |", case.name)));
        let expect = case
            .expect
            .iter()
            .map(|e| format!("`{}`", e.join(" ")))
            .collect::<Vec<_>>()
            .join(" or ");
        match row {
            Some(row) if row.contains(&expect) => {}
            Some(row) => missing.push(format!(
                "{}: the row does not say {expect}: {row}",
                case.name
            )),
            None => missing.push(format!("{}: no row in TESTING.md's table", case.name)),
        }
        assert!(!case.proves.is_empty(), "{}: no `proves` line", case.name);
    }
    assert!(
        missing.is_empty(),
        "TESTING.md is out of date:\n{}",
        missing.join("\n")
    );
}

#[test]
fn the_case_format_reads_escapes_and_directives() {
    let case = parse_case(
        "format",
        "# a comment\nproves: the format\nexpect: 4xx close\nexpect: 200 open\nhalf-close: yes\ntimeout: 1.5\n---\nA\\r\\n\\x00\\\\\n\n@repeat 3 ab\n@hex 0d0A ff\n",
    )
    .unwrap();
    assert_eq!(case.bytes, b"A\r\n\x00\\ababab\r\n\xff");
    assert_eq!(case.expect.len(), 2);
    assert!(case.half_close);
    assert_eq!(case.timeout, Duration::from_millis(1500));
    assert!(matches(&case.expect[0], &["431".into(), "close".into()]));
    assert!(!matches(&case.expect[0], &["200".into(), "close".into()]));
    for bad in [
        "expect: 400\n",
        "proves: x\n---\nA\n",
        "expect: 4x0\n---\nA\n",
        "expect: 400\n---\n@nope\n",
        "expect: 400\n---\n\\q\n",
        "expect: 400\nwhat: 1\n---\nA\n",
    ] {
        assert!(parse_case("bad", bad).is_err(), "{bad:?} parsed");
    }
    assert_eq!(
        outcomes(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nhiHTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n", End::Closed),
        ["200", "400", "close"]
    );
    // An HTTP/2 SETTINGS frame, then a GOAWAY.
    let mut h2 = vec![0, 0, 0, 4, 0, 0, 0, 0, 0];
    h2.extend([0, 0, 8, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    assert_eq!(outcomes(&h2, End::Closed), ["goaway", "close"]);
    assert_eq!(outcomes(b"", End::Open), ["open"]);
}
