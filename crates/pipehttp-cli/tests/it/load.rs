//! Load on a real `pipehttp serve` process: slow clients, thousands of
//! keep-alive clients, the connection limit, and memory over 100,000
//! requests. The server is a child process so that its open descriptors
//! (`/proc/PID/fd`) and resident memory (`/proc/PID/status`) can be read
//! honestly, apart from the clients'.
//!
//! The tests take a lock so that they run one at a time: each loads both
//! cores, and the timing bounds of one must not suffer from another.
//! Clients are tokio tasks, never a thread each.

#![cfg(target_os = "linux")]

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use testkit::Serve;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::task::JoinHandle;

const BIN: &str = env!("CARGO_BIN_EXE_pipehttp");
/// The longest any single wait may take before it counts as a hang.
pub(crate) const PATIENCE: Duration = Duration::from_secs(30);

/// One load test at a time, in this binary.
pub(crate) fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Raises this process's open-file limit to its hard limit (the server
/// child inherits it) and returns the new limit.
pub(crate) fn raise_fd_limit() -> u64 {
    // SAFETY: getrlimit and setrlimit get a valid, initialised struct.
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        if lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lim), 0);
        }
        lim.rlim_cur
    }
}

pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime")
}

// ---------------------------------------------------------------------------
// The server process

/// A running `pipehttp serve` on its own pipe name and TMPDIR.
pub(crate) struct Served {
    pub(crate) process: Serve,
    pub(crate) path: PathBuf,
    _tmp: testkit::TempDir,
}

impl Served {
    /// The server's TMPDIR, where its pipe names live.
    pub(crate) fn tmp(&self) -> &Path {
        self._tmp.path()
    }

    pub(crate) fn start(prefix: &str, args: &[&str]) -> Self {
        Self::start_wrapped(prefix, &[], args)
    }

    /// The same, run by `wrapper` (a command and its arguments, such as
    /// `prlimit --nofile=64`) when it is not empty.
    pub(crate) fn start_wrapped(prefix: &str, wrapper: &[&str], args: &[&str]) -> Self {
        let tmp = testkit::tempdir().expect("a temp dir");
        let name = testkit::unique_name(prefix);
        let mut cmd = match wrapper {
            [] => testkit::command(BIN, Some(tmp.path())),
            [program, wrapper_args @ ..] => {
                let mut cmd = testkit::command(program, Some(tmp.path()));
                cmd.args(wrapper_args).arg(BIN);
                cmd
            }
        };
        cmd.arg("serve")
            .arg("--urls")
            .arg(format!("http://pipe:/{name}"))
            .args(args);
        let process = Serve::start(cmd, 1);
        let path = process.path(0).to_owned();
        Self {
            process,
            path,
            _tmp: tmp,
        }
    }

    fn proc_path(&self, what: &str) -> PathBuf {
        PathBuf::from(format!("/proc/{}/{what}", self.process.id()))
    }

    /// The server's open file descriptors.
    pub(crate) fn fds(&self) -> usize {
        std::fs::read_dir(self.proc_path("fd"))
            .unwrap_or_else(|e| panic!("the server is gone ({e}); output:\n{}", self.output()))
            .count()
    }

    /// The server's resident memory, in KiB.
    pub(crate) fn rss_kib(&self) -> u64 {
        self.status_field("VmRSS:")
            .split_whitespace()
            .next()
            .and_then(|kib| kib.parse().ok())
            .expect("VmRSS in kB")
    }

    fn status_field(&self, field: &str) -> String {
        let status = std::fs::read_to_string(self.proc_path("status"))
            .unwrap_or_else(|e| panic!("the server is gone ({e}); output:\n{}", self.output()));
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .unwrap_or_else(|| panic!("no {field} in /proc/PID/status"))
            .trim()
            .to_owned()
    }

    /// Panics unless the server process is still running (not exited, not
    /// a zombie waiting to be reaped).
    pub(crate) fn assert_alive(&self) {
        let state = self.status_field("State:");
        assert!(
            !state.starts_with('Z') && !state.starts_with('X'),
            "the server died ({state}); output:\n{}",
            self.output()
        );
    }

    pub(crate) fn output(&self) -> String {
        self.process.output()
    }

    /// Waits until the server's descriptor count is `want`: the kernel has
    /// no event for it, so it is polled, within PATIENCE.
    pub(crate) fn wait_for_fds(&self, want: usize, what: &str) -> Duration {
        let started = Instant::now();
        loop {
            let now = self.fds();
            if now == want {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < PATIENCE,
                "{what}: the server holds {now} descriptors, expected {want}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The descriptor count once it has been the same for a moment: the
    /// baseline before a load.
    pub(crate) fn settled_fds(&self) -> usize {
        let started = Instant::now();
        let mut last = self.fds();
        loop {
            std::thread::sleep(Duration::from_millis(100));
            let now = self.fds();
            if now == last {
                return now;
            }
            assert!(started.elapsed() < PATIENCE, "descriptors never settled");
            last = now;
        }
    }
}

// ---------------------------------------------------------------------------
// Clients

/// Connects to the socket; a full listen queue (EAGAIN) is retried.
pub(crate) async fn connect_unix(path: &Path) -> io::Result<UnixStream> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        match UnixStream::connect(path).await {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            other => return other,
        }
    }
}

/// One keep-alive HTTP/1.1 connection.
pub(crate) struct Conn {
    sender: SendRequest<Full<Bytes>>,
    task: JoinHandle<()>,
}

impl Conn {
    pub(crate) async fn open(path: &Path) -> Result<Self, String> {
        let stream = connect_unix(path)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        let task = tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Self { sender, task })
    }

    pub(crate) async fn request(
        &mut self,
        method: Method,
        path: &str,
        body: Bytes,
    ) -> Result<(StatusCode, Bytes), String> {
        self.sender
            .ready()
            .await
            .map_err(|e| format!("{method} {path}: connection lost: {e}"))?;
        let req = Request::builder()
            .method(method.clone())
            .uri(path)
            .header(http::header::HOST, "localhost")
            .body(Full::new(body))
            .expect("a request");
        let res = self
            .sender
            .send_request(req)
            .await
            .map_err(|e| format!("{method} {path}: {e}"))?;
        let status = res.status();
        let body = res
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("{method} {path} body: {e}"))?
            .to_bytes();
        Ok((status, body))
    }

    /// GET /test, which must answer 200 `Hello world!`.
    pub(crate) async fn hello(&mut self) -> Result<(), String> {
        match self.request(Method::GET, "/test", Bytes::new()).await? {
            (StatusCode::OK, body) if body == "Hello world!" => Ok(()),
            (status, body) => Err(format!("GET /test: {status} {body:?}")),
        }
    }

    /// Closes the connection and waits until it is closed on this side.
    pub(crate) async fn close(self) {
        drop(self.sender);
        let _ = self.task.await;
    }
}

// ---------------------------------------------------------------------------
// Slow clients

/// One client that sends a request head one byte a second. Returns when
/// its first byte went out, when the server cut it, and what it sent back.
async fn slow_client(path: PathBuf) -> Result<(Instant, Instant, Vec<u8>), String> {
    let mut stream = connect_unix(&path)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let head = b"GET /test HTTP/1.1\r\nHost: localhost\r\nX-Slow: zzzzzzzzzzzzzzzzzzzzzzzzzzzzzz";
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    let mut first_byte = None;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let give_up = tokio::time::Instant::now() + PATIENCE;
    for byte in head.iter().cycle() {
        tokio::select! {
            read = stream.read(&mut buf) => match read {
                Ok(0) | Err(_) => {
                    let first = first_byte.ok_or("cut before the first byte")?;
                    return Ok((first, Instant::now(), got));
                }
                Ok(n) => got.extend_from_slice(&buf[..n]),
            },
            _ = tick.tick() => {
                if stream.write_all(std::slice::from_ref(byte)).await.is_err() {
                    let first = first_byte.ok_or("cut before the first byte")?;
                    return Ok((first, Instant::now(), got));
                }
                first_byte.get_or_insert_with(Instant::now);
            }
            () = tokio::time::sleep_until(give_up) => {
                return Err(format!("never cut: still open after {PATIENCE:?}"));
            }
        }
    }
    unreachable!("the head cycles forever")
}

#[test]
fn slow_clients_are_cut_at_the_headers_timeout_while_normal_clients_are_served() {
    const SLOW: usize = 500;
    const NORMAL: usize = 8;
    let timeout = Duration::from_secs(3);
    let slack = Duration::from_secs(2);
    let _serial = serial();
    raise_fd_limit();
    let server = Served::start(
        "slowloris",
        &["--request-headers-timeout", &timeout.as_secs().to_string()],
    );
    let rt = runtime();
    let baseline = server.settled_fds();
    let started = Instant::now();

    let (slow_results, normal_results) = rt.block_on(async {
        let slow: Vec<_> = (0..SLOW)
            .map(|_| tokio::spawn(slow_client(server.path.clone())))
            .collect();
        let done = Arc::new(AtomicBool::new(false));
        let normal: Vec<_> = (0..NORMAL)
            .map(|_| {
                let path = server.path.clone();
                let done = done.clone();
                tokio::spawn(async move {
                    // (completed at, latency) of every request; a new
                    // connection every 10 requests, so accepting is tested too.
                    let mut answers = Vec::new();
                    while !done.load(Ordering::SeqCst) {
                        let mut conn = Conn::open(&path).await?;
                        for _ in 0..10 {
                            let sent = Instant::now();
                            conn.hello().await?;
                            answers.push((Instant::now(), sent.elapsed()));
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                        conn.close().await;
                    }
                    Ok::<_, String>(answers)
                })
            })
            .collect();
        let mut slow_results = Vec::new();
        for task in slow {
            slow_results.push(task.await.expect("a slow client panicked"));
        }
        done.store(true, Ordering::SeqCst);
        let mut normal_results = Vec::new();
        for task in normal {
            normal_results.push(task.await.expect("a normal client panicked"));
        }
        (slow_results, normal_results)
    });

    let mut cuts = Vec::new();
    for result in slow_results {
        let (first, cut, got) = result.unwrap_or_else(|e| panic!("a slow client: {e}"));
        let held = cut - first;
        assert!(
            held + Duration::from_millis(20) >= timeout,
            "a slow client was cut after {held:?}, before the {timeout:?} headers timeout"
        );
        assert!(
            held <= timeout + slack,
            "a slow client was cut only after {held:?} (headers timeout {timeout:?})"
        );
        assert!(
            got.is_empty() || got.starts_with(b"HTTP/1.1 408"),
            "a slow client got an answer: {:?}",
            String::from_utf8_lossy(&got)
        );
        cuts.push((cut, held));
    }
    let first_cut = cuts.iter().map(|c| c.0).min().unwrap();
    let longest = cuts.iter().map(|c| c.1).max().unwrap();
    let mut total = 0;
    let mut worst = Duration::ZERO;
    for (i, result) in normal_results.into_iter().enumerate() {
        let answers = result.unwrap_or_else(|e| panic!("normal client {i}: {e}"));
        let during = answers.iter().filter(|(at, _)| *at < first_cut).count();
        assert!(
            during > 0,
            "normal client {i} got no answer while the slow clients were connected"
        );
        total += answers.len();
        worst = worst.max(answers.iter().map(|a| a.1).max().unwrap_or_default());
    }
    assert!(
        worst < timeout,
        "a normal request waited {worst:?}: as long as the slow clients' timeout"
    );
    println!(
        "{SLOW} slow clients cut after {:.2?} to {longest:.2?} (headers timeout {timeout:?}); \
         {NORMAL} normal clients got {total} answers meanwhile, slowest {worst:.1?}; {:.1?} in all",
        cuts.iter().map(|c| c.1).min().unwrap(),
        started.elapsed()
    );
    server.wait_for_fds(baseline, "after the slow clients");
    server.assert_alive();
}

// ---------------------------------------------------------------------------
// Many clients

#[test]
fn two_thousand_keep_alive_clients_all_succeed_and_descriptors_return() {
    const CLIENTS: usize = 2_000;
    const REQUESTS: usize = 5;
    let _serial = serial();
    let limit = raise_fd_limit();
    assert!(
        limit >= 2 * CLIENTS as u64 + 200,
        "RLIMIT_NOFILE is {limit}: too low for {CLIENTS} connections"
    );
    let server = Served::start("many", &[]);
    let rt = runtime();
    // One connection first, so whatever the server sets up lazily is there
    // before the baseline.
    let before_warm_up = server.settled_fds();
    rt.block_on(async {
        let mut conn = Conn::open(&server.path).await.unwrap();
        conn.hello().await.unwrap();
        conn.close().await;
    });
    server.wait_for_fds(before_warm_up, "after the warm-up");
    let baseline = server.settled_fds();
    let started = Instant::now();

    let conns = rt.block_on(async {
        let tasks: Vec<_> = (0..CLIENTS)
            .map(|_| {
                let path = server.path.clone();
                tokio::spawn(async move { Conn::open(&path).await })
            })
            .collect();
        let mut conns = Vec::with_capacity(CLIENTS);
        for task in tasks {
            conns.push(task.await.unwrap().unwrap_or_else(|e| panic!("{e}")));
        }
        conns
    });
    // All of them at once: the server holds a descriptor for each.
    server.wait_for_fds(baseline + CLIENTS, "with every client connected");
    let connected = started.elapsed();

    let conns = rt.block_on(async {
        let tasks: Vec<_> = conns
            .into_iter()
            .map(|mut conn| {
                tokio::spawn(async move {
                    for _ in 0..REQUESTS {
                        conn.hello().await?;
                    }
                    Ok::<_, String>(conn)
                })
            })
            .collect();
        let mut conns = Vec::with_capacity(CLIENTS);
        let mut failures = Vec::new();
        for task in tasks {
            match task.await.unwrap() {
                Ok(conn) => conns.push(conn),
                Err(e) => failures.push(e),
            }
        }
        assert!(
            failures.is_empty(),
            "{} of {CLIENTS} clients failed, first: {}",
            failures.len(),
            failures[0]
        );
        conns
    });
    let requested = started.elapsed();
    server.assert_alive();
    assert_eq!(server.fds(), baseline + CLIENTS, "a connection was dropped");

    rt.block_on(async {
        for conn in conns {
            conn.close().await;
        }
    });
    let drained = server.wait_for_fds(baseline, "after every client closed");
    rt.block_on(async {
        let mut conn = Conn::open(&server.path).await.unwrap();
        conn.hello().await.unwrap();
        conn.close().await;
    });
    println!(
        "{CLIENTS} keep-alive clients connected in {connected:.1?}, made {} requests by \
         {requested:.1?}; descriptors {} -> {} -> {baseline} within {drained:.1?} of the close",
        CLIENTS * REQUESTS,
        baseline,
        baseline + CLIENTS
    );
}

#[test]
fn past_max_concurrent_connections_clients_wait_in_the_listen_queue() {
    const LIMIT: usize = 100;
    const BURST: usize = 300;
    let _serial = serial();
    raise_fd_limit();
    let server = Served::start("maxconn", &["--max-concurrent-connections", "100"]);
    let rt = runtime();
    let baseline = server.settled_fds();

    rt.block_on(async {
        // LIMIT clients, each served once: every one is accepted.
        let mut held = Vec::with_capacity(LIMIT);
        for _ in 0..LIMIT {
            let mut conn = Conn::open(&server.path).await.unwrap();
            conn.hello().await.unwrap();
            held.push(conn);
        }
        assert_eq!(server.fds(), baseline + LIMIT);

        // The 101st connects (the kernel queues it) and asks.
        let path = server.path.clone();
        let mut extra = tokio::spawn(async move {
            let mut conn = Conn::open(&path).await?;
            conn.hello().await?;
            Ok::<_, String>(conn)
        });
        // The held clients are all served again meanwhile...
        for conn in &mut held {
            conn.hello().await.unwrap();
        }
        // ...while the 101st waits, unanswered for a bounded look: taken
        // into the one-place waiting room (one descriptor past the limit)
        // at most.
        let early = tokio::time::timeout(Duration::from_millis(500), &mut extra).await;
        assert!(early.is_err(), "the 101st was served past the limit");
        assert!(
            server.fds() <= baseline + LIMIT + 1,
            "the server accepted more than one connection past max_concurrent_connections"
        );

        // One closes: the 101st is accepted and answered.
        held.pop().unwrap().close().await;
        let extra = tokio::time::timeout(PATIENCE, extra)
            .await
            .expect("the 101st was never served after a slot freed")
            .unwrap()
            .unwrap();
        held.push(extra);
        for conn in held {
            conn.close().await;
        }
    });
    server.wait_for_fds(baseline, "after the held clients closed");

    // A burst three times the limit: everyone is served in turn, and the
    // server never holds more than LIMIT connections.
    let peak = Arc::new(AtomicUsize::new(0));
    let watching = Arc::new(AtomicBool::new(true));
    let watcher = {
        let (peak, watching) = (peak.clone(), watching.clone());
        let fd_dir = server.proc_path("fd");
        std::thread::spawn(move || {
            while watching.load(Ordering::SeqCst) {
                if let Ok(dir) = std::fs::read_dir(&fd_dir) {
                    peak.fetch_max(dir.count(), Ordering::SeqCst);
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    let started = Instant::now();
    rt.block_on(async {
        let tasks: Vec<_> = (0..BURST)
            .map(|_| {
                let path = server.path.clone();
                tokio::spawn(async move {
                    let mut conn = Conn::open(&path).await?;
                    for _ in 0..3 {
                        conn.hello().await?;
                    }
                    conn.close().await;
                    Ok::<_, String>(())
                })
            })
            .collect();
        for task in tasks {
            task.await
                .unwrap()
                .unwrap_or_else(|e| panic!("a burst client: {e}"));
        }
    });
    watching.store(false, Ordering::SeqCst);
    watcher.join().unwrap();
    let peak = peak.load(Ordering::SeqCst);
    assert!(
        peak <= baseline + LIMIT + 1,
        "the server held {} connections at once, past the limit of {LIMIT} and its waiting room",
        peak - baseline
    );
    server.wait_for_fds(baseline, "after the burst");
    server.assert_alive();
    println!(
        "limit {LIMIT}: the 101st waited until a slot freed; a burst of {BURST} clients \
         was served in {:.1?} with at most {} connections open",
        started.elapsed(),
        peak - baseline
    );
}

// ---------------------------------------------------------------------------
// Memory

/// The routes the memory test mixes: (request bytes, status, body length).
fn request_mix() -> [(Vec<u8>, u16, usize); 3] {
    let mut echo =
        b"POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1024\r\n\r\n".to_vec();
    echo.extend_from_slice(&[b'e'; 1024]);
    [
        (
            b"GET /test HTTP/1.1\r\nHost: localhost\r\n\r\n".to_vec(),
            200,
            12,
        ),
        (echo, 200, 1024),
        (
            b"GET /bytes/4096 HTTP/1.1\r\nHost: localhost\r\n\r\n".to_vec(),
            200,
            4096,
        ),
    ]
}

/// Reads `expected` responses (status, body length) off `stream`, in order.
async fn read_responses(
    reader: &mut (impl AsyncReadExt + Unpin),
    buf: &mut Vec<u8>,
    expected: impl Iterator<Item = (u16, usize)>,
) -> Result<(), String> {
    let mut chunk = vec![0u8; 64 * 1024];
    for (want_status, want_len) in expected {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 16];
            let mut res = httparse::Response::new(&mut headers);
            if let httparse::Status::Complete(head) =
                res.parse(buf).map_err(|e| format!("a bad response: {e}"))?
            {
                let len = res
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                    .and_then(|h| std::str::from_utf8(h.value).ok()?.parse::<usize>().ok())
                    .ok_or("a response without Content-Length")?;
                if buf.len() >= head + len {
                    let status = res.code.unwrap_or(0);
                    if status != want_status || len != want_len {
                        return Err(format!(
                            "got {status} with {len} bytes, expected {want_status} with {want_len}"
                        ));
                    }
                    buf.drain(..head + len);
                    break;
                }
            }
            let n = reader
                .read(&mut chunk)
                .await
                .map_err(|e| format!("read: {e}"))?;
            if n == 0 {
                return Err("the server closed the connection".into());
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    }
    Ok(())
}

/// Makes `count` requests over `clients` connections at once, pipelined
/// in batches of 50 (so that the debug-built client costs little next to
/// the server), opening a new connection every 500 requests, with a mix
/// of routes and bodies.
async fn requests(path: &Path, count: usize, clients: usize) {
    const BATCH: usize = 50;
    const PER_CONNECTION: usize = 500;
    let left = Arc::new(AtomicUsize::new(count));
    let mix = Arc::new(request_mix());
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let path = path.to_owned();
            let (left, mix) = (left.clone(), mix.clone());
            tokio::spawn(async move {
                let mut on_this_connection = PER_CONNECTION;
                let mut stream: Option<UnixStream> = None;
                let mut buf = Vec::new();
                let mut n: usize = 0;
                while let Ok(before) = left.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |l| {
                    l.checked_sub(l.min(BATCH)).filter(|_| l > 0)
                }) {
                    let batch = before.min(BATCH);
                    if on_this_connection >= PER_CONNECTION {
                        stream = Some(connect_unix(&path).await.map_err(|e| e.to_string())?);
                        on_this_connection = 0;
                    }
                    let conn = stream.as_mut().expect("connected");
                    let kinds: Vec<usize> = (n..n + batch).map(|i| i % mix.len()).collect();
                    n += batch;
                    on_this_connection += batch;
                    let bytes: Vec<u8> = kinds.iter().flat_map(|&k| mix[k].0.clone()).collect();
                    let (mut reader, mut writer) = conn.split();
                    let expected = kinds.iter().map(|&k| (mix[k].1, mix[k].2));
                    let (written, read) = tokio::join!(
                        writer.write_all(&bytes),
                        read_responses(&mut reader, &mut buf, expected)
                    );
                    written.map_err(|e| format!("write: {e}"))?;
                    read?;
                }
                Ok::<_, String>(())
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap_or_else(|e| panic!("{e}"));
    }
}

/// The server's CPU time so far (user + system), from /proc/PID/stat.
fn cpu_time(server: &Served) -> Duration {
    let stat = std::fs::read_to_string(server.proc_path("stat")).expect("/proc/PID/stat");
    // Fields after the command name, which is in parentheses.
    let fields: Vec<&str> = stat
        .rsplit_once(") ")
        .expect("a stat line")
        .1
        .split(' ')
        .collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // SAFETY: sysconf has no preconditions.
    let per_sec = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).unwrap_or(100);
    Duration::from_millis(ticks * 1000 / per_sec)
}

#[test]
fn memory_stays_flat_over_100_000_requests() {
    const WARM_UP: usize = 10_000;
    const TOTAL: usize = 100_000;
    const ROUND: usize = 10_000;
    const CLIENTS: usize = 16;
    let _serial = serial();
    let server = Served::start("memory", &[]);
    let rt = runtime();
    let started = Instant::now();
    rt.block_on(requests(&server.path, WARM_UP, CLIENTS));
    let warm = server.rss_kib();
    let mut samples = vec![warm];
    for _ in 0..TOTAL / ROUND {
        rt.block_on(requests(&server.path, ROUND, CLIENTS));
        samples.push(server.rss_kib());
    }
    let elapsed = started.elapsed();
    server.assert_alive();
    let last = *samples.last().unwrap();
    let peak = *samples.iter().max().unwrap();
    println!(
        "RSS after a {WARM_UP}-request warm-up: {warm} KiB; after each further {ROUND}: {:?} KiB; \
         last/warm-up = {:.2}; {} requests in {elapsed:.1?}, server CPU {:.1?}",
        &samples[1..],
        last as f64 / warm as f64,
        WARM_UP + TOTAL,
        cpu_time(&server)
    );
    assert!(
        peak < 2 * warm,
        "RSS grew from {warm} KiB after the warm-up to {peak} KiB over {TOTAL} requests"
    );
}
