//! `pipehttp bench`: a load generator for every target form, pipes first.
//!
//! Nobody ships one for Windows named pipes, so this one speaks to
//! `http://pipe:/NAME:/PATH` on every OS, and to `http://unix:/PATH:/PATH`
//! and TCP URLs alike, so the same ruler measures all three.
//!
//! Design, so that the load generator is not what is measured:
//! - one OS thread per core (`--threads`), each with its own single-threaded
//!   tokio runtime: no work stealing, no wake-ups across threads;
//! - one task per connection, which drives hyper's connection future itself
//!   (no spawned connection task, so a response wakes one task, not two);
//! - connections come from [`pipehttp::client::Connector`], the library's
//!   own connect path, and speak hyper's `client::conn` HTTP/1.1 or HTTP/2;
//! - a shared atomic request budget (`-n`) or deadline (`-z`), and one HDR
//!   histogram per thread, merged at the end.
//!
//! `--client` sends every request through [`pipehttp::Client`] (its pool,
//! retries and response type) instead, to measure what an application
//! that uses the library's client gets.

use std::cell::RefCell;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::pin::Pin;
use std::process::ExitCode;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Args;
use hdrhistogram::Histogram;
use http::header::{CONNECTION, CONTENT_TYPE, HOST};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use pipehttp::address::{Endpoint, RequestTarget, Scheme};
use pipehttp::client::Connector;
use pipehttp::transport::Connection;
use pipehttp::{Client, Error};
use tokio::sync::watch;

use crate::logging::Sink;

/// curl's exit codes where they fit.
mod exit {
    /// Bad arguments, or some requests failed.
    pub const FAILURE: u8 = 1;
    /// No request could even connect.
    pub const CONNECT: u8 = 7;
}

/// Completed requests a task counts before it tells the progress bar.
const PROGRESS_BATCH: u64 = 64;
/// Latencies up to an hour are recorded exactly (to 3 significant figures).
const MAX_LATENCY_NS: u64 = 3_600 * 1_000_000_000;
/// How long requests still in flight at the end of a `-z` run may take.
const GRACE: Duration = Duration::from_secs(5);

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// http://pipe:/NAME:/PATH, http://unix:/SOCKET:/PATH or http://HOST:PORT/PATH.
    target: String,
    /// Connections open at once, each sending one request at a time.
    #[arg(short = 'c', long, value_name = "N", default_value_t = 50)]
    connections: usize,
    /// Total requests to send [default: 200 unless -z is given].
    #[arg(short = 'n', long, value_name = "N", conflicts_with = "duration")]
    requests: Option<u64>,
    /// Send for this long instead: 10s, 500ms, 2m, or a number of seconds.
    #[arg(short = 'z', long, value_name = "DURATION", value_parser = parse_duration)]
    duration: Option<Duration>,
    /// The method (default GET, or POST with -d).
    #[arg(short = 'm', long, value_name = "METHOD")]
    method: Option<String>,
    /// The request body: DATA, @FILE, or @- for stdin.
    #[arg(short = 'd', long, value_name = "DATA")]
    data: Option<String>,
    /// A request header, 'Name: value'; repeatable.
    #[arg(short = 'H', long = "header", value_name = "HEADER")]
    headers: Vec<String>,
    /// Speak HTTP/2 from the first byte (prior knowledge).
    #[arg(long)]
    http2: bool,
    /// Open a fresh connection for every request, as .NET's tracer does;
    /// its latency includes the connect.
    #[arg(long)]
    new_connection_per_request: bool,
    /// Print the results as one JSON object on stdout.
    #[arg(long)]
    json: bool,
    /// OS threads that generate load [default: the number of cores].
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
    /// Seconds one request may take before it counts as a timeout.
    #[arg(short = 't', long, value_name = "SECS")]
    timeout: Option<f64>,
    /// Seconds to wait for the server to exist and accept.
    #[arg(long, value_name = "SECS", default_value = "5")]
    connect_timeout: f64,
    /// Send through pipehttp::Client (pool, retries) instead of bare
    /// connections; https targets always do.
    #[arg(long)]
    client: bool,
    /// Trust the CA certificate(s) in this PEM file for https.
    #[arg(long, value_name = "FILE")]
    cacert: Option<PathBuf>,
    /// Accept any server certificate (development only).
    #[arg(short = 'k', long)]
    insecure: bool,
    /// No progress bar, even on a terminal.
    #[arg(long)]
    no_progress: bool,
}

/// A failure before the run: its exit code and message.
struct Failure {
    code: u8,
    message: String,
}

fn usage(message: impl Into<String>) -> Failure {
    Failure {
        code: exit::FAILURE,
        message: message.into(),
    }
}

pub async fn run(args: BenchArgs) -> ExitCode {
    crate::logging::init("error", Sink::Stderr);
    match bench(args).await {
        Ok(code) => code,
        Err(f) => {
            eprintln!("pipehttp: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}

async fn bench(args: BenchArgs) -> Result<ExitCode, Failure> {
    let plan = Arc::new(Plan::new(&args).await?);
    let limit = match (args.requests, args.duration) {
        (_, Some(d)) => Limit::Until(d),
        (Some(n), None) => Limit::Count(n),
        (None, None) => Limit::Count(200),
    };
    if args.connections == 0 {
        return Err(usage("-c takes at least 1 connection"));
    }
    let connections = match limit {
        // More connections than requests would only open idle ones.
        Limit::Count(n) => args
            .connections
            .min(usize::try_from(n).unwrap_or(usize::MAX))
            .max(1),
        Limit::Until(_) => args.connections,
    };
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from))
        .clamp(1, connections);

    let start = Instant::now();
    let run = Arc::new(Run {
        deadline: match limit {
            Limit::Until(d) => Some(start + d),
            Limit::Count(_) => None,
        },
        budget: match limit {
            Limit::Count(n) => n,
            Limit::Until(_) => u64::MAX,
        },
        issued: AtomicU64::new(0),
        done: AtomicU64::new(0),
        stop: AtomicBool::new(false),
    });
    let (abort_tx, abort_rx) = watch::channel(false);
    let mut workers = Vec::with_capacity(threads);
    for i in 0..threads {
        // Connections dealt out evenly: the first threads take one more.
        let share = connections / threads + usize::from(i < connections % threads);
        let (plan, run, abort) = (plan.clone(), run.clone(), abort_rx.clone());
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name(format!("bench-{i}"))
            .spawn(move || {
                let _ = tx.send(worker(&plan, &run, share, abort));
            })
            .map_err(|e| usage(format!("cannot start a load thread: {e}")))?;
        workers.push(rx);
    }

    let progress = Progress::new(&limit, !args.no_progress && std::io::stderr().is_terminal());
    let all_done = async {
        let mut stats = Stats::new();
        for rx in workers {
            match rx.await {
                Ok(Ok(s)) => stats.merge(s),
                Ok(Err(e)) => return Err(usage(format!("a load thread failed: {e}"))),
                Err(_) => return Err(usage("a load thread panicked")),
            }
        }
        Ok(stats)
    };
    tokio::pin!(all_done);
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut stopping = false;
    let stats = loop {
        tokio::select! {
            stats = &mut all_done => break stats?,
            _ = tick.tick() => {
                progress.update(&run, start);
                if let Some(deadline) = run.deadline {
                    let now = Instant::now();
                    if !stopping && now >= deadline {
                        stopping = true;
                        run.stop.store(true, Ordering::Relaxed);
                    }
                    if now >= deadline + GRACE {
                        let _ = abort_tx.send(true);
                    }
                }
            }
        }
    };
    let elapsed = start.elapsed();
    progress.finish();

    let report = Report {
        plan: &plan,
        connections,
        threads,
        elapsed,
        stats: &stats,
    };
    if args.json {
        println!("{}", report.json());
    } else {
        report.print();
    }
    let errors: u64 = stats.errors.iter().map(|(_, n)| n).sum();
    Ok(if errors == 0 {
        ExitCode::SUCCESS
    } else if stats.responses() == 0 && stats.errors.iter().all(|(k, _)| *k == ErrorKind::Connect) {
        ExitCode::from(exit::CONNECT)
    } else {
        ExitCode::from(exit::FAILURE)
    })
}

/// What to send, made once and shared by every thread.
struct Plan {
    target: RequestTarget,
    connector: Connector,
    method: Method,
    /// Origin form for HTTP/1.1, absolute form for HTTP/2.
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
    http2: bool,
    fresh: bool,
    timeout: Option<Duration>,
    /// Set when requests go through [`pipehttp::Client`].
    client: Option<ClientSettings>,
}

#[derive(Clone)]
struct ClientSettings {
    connect_timeout: Duration,
    cacert: Option<Vec<u8>>,
    insecure: bool,
}

impl Plan {
    async fn new(args: &BenchArgs) -> Result<Self, Failure> {
        let target: RequestTarget = args.target.parse().map_err(|e| usage(format!("{e}")))?;
        let connect_timeout = seconds("--connect-timeout", args.connect_timeout)?;
        let timeout = args.timeout.map(|t| seconds("--timeout", t)).transpose()?;
        let method = match (&args.method, &args.data) {
            (Some(m), _) => m.to_ascii_uppercase(),
            (None, Some(_)) => "POST".to_owned(),
            (None, None) => "GET".to_owned(),
        };
        let method = Method::from_bytes(method.as_bytes())
            .map_err(|_| usage(format!("'{method}' is not an HTTP method")))?;
        let mut headers = HeaderMap::new();
        for header in &args.headers {
            let (name, value) = header.split_once(':').ok_or_else(|| {
                usage(format!(
                    "the header '{header}' has no ':'; write it as 'Name: value'"
                ))
            })?;
            let name = HeaderName::from_bytes(name.trim().as_bytes())
                .map_err(|e| usage(format!("bad header name in '{header}': {e}")))?;
            let value = HeaderValue::from_str(value.trim())
                .map_err(|e| usage(format!("bad header value in '{header}': {e}")))?;
            headers.append(name, value);
        }
        let body = match &args.data {
            Some(data) => {
                if !headers.contains_key(CONTENT_TYPE) {
                    // curl's default for -d.
                    headers.insert(
                        CONTENT_TYPE,
                        HeaderValue::from_static("application/x-www-form-urlencoded"),
                    );
                }
                read_data(data).await?
            }
            None => Bytes::new(),
        };
        let uri = if args.http2 {
            headers.remove(HOST);
            target.uri().clone()
        } else {
            if !headers.contains_key(HOST) {
                let host = HeaderValue::from_str(&target.host_header())
                    .map_err(|e| usage(format!("bad Host header: {e}")))?;
                headers.insert(HOST, host);
            }
            target
                .path_and_query()
                .parse()
                .map_err(|e| usage(format!("bad request path: {e}")))?
        };
        let via_client = args.client || target.scheme() == Scheme::Https;
        let client = if via_client {
            let cacert = match &args.cacert {
                Some(path) => Some(tokio::fs::read(path).await.map_err(|e| {
                    usage(format!("cannot read the CA file {}: {e}", path.display()))
                })?),
                None => None,
            };
            if args.new_connection_per_request && !args.http2 {
                headers.insert(CONNECTION, HeaderValue::from_static("close"));
            }
            Some(ClientSettings {
                connect_timeout,
                cacert,
                insecure: args.insecure,
            })
        } else {
            None
        };
        let connector = Connector::new(target.listen_address().clone())
            .map_err(|e| usage(e.to_string()))?
            .connect_timeout(connect_timeout);
        Ok(Self {
            target,
            connector,
            method,
            uri,
            headers,
            body,
            http2: args.http2,
            fresh: args.new_connection_per_request,
            timeout,
            client,
        })
    }

    fn request(&self) -> Request<Full<Bytes>> {
        let mut req = Request::new(Full::new(self.body.clone()));
        *req.method_mut() = self.method.clone();
        *req.uri_mut() = self.uri.clone();
        *req.headers_mut() = self.headers.clone();
        if self.http2 {
            *req.version_mut() = http::Version::HTTP_2;
        }
        req
    }

    fn protocol(&self) -> &'static str {
        if self.http2 { "HTTP/2" } else { "HTTP/1.1" }
    }
}

enum Limit {
    Count(u64),
    Until(Duration),
}

/// What every thread shares while the run lasts.
struct Run {
    deadline: Option<Instant>,
    budget: u64,
    issued: AtomicU64,
    /// Completed requests, for the progress bar; counted in batches.
    done: AtomicU64,
    stop: AtomicBool,
}

impl Run {
    /// Takes the right to send one more request.
    fn ticket(&self) -> bool {
        if self.stop.load(Ordering::Relaxed) {
            return false;
        }
        match self.deadline {
            Some(deadline) => Instant::now() < deadline,
            None => self.issued.fetch_add(1, Ordering::Relaxed) < self.budget,
        }
    }
}

/// Why a request failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum ErrorKind {
    /// No connection: no server, refused, or every instance busy too long.
    Connect,
    /// The HTTP/1.1 or HTTP/2 handshake on a new connection failed.
    Handshake,
    /// The connection closed before the response was complete.
    Closed,
    /// The response could not be parsed.
    Parse,
    /// The request took longer than --timeout.
    Timeout,
    /// The response body broke off.
    Body,
    /// Anything else.
    Other,
}

impl ErrorKind {
    fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Connect => "connect",
            ErrorKind::Handshake => "handshake",
            ErrorKind::Closed => "closed",
            ErrorKind::Parse => "parse",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Body => "body",
            ErrorKind::Other => "other",
        }
    }

    fn of_hyper(e: &hyper::Error) -> Self {
        if e.is_timeout() {
            ErrorKind::Timeout
        } else if e.is_parse() || e.is_parse_status() || e.is_parse_too_large() {
            ErrorKind::Parse
        } else if e.is_incomplete_message() || e.is_closed() || e.is_canceled() {
            ErrorKind::Closed
        } else if e.is_body_write_aborted() || e.is_user() {
            ErrorKind::Body
        } else {
            ErrorKind::Other
        }
    }

    fn of_pipehttp(e: &Error) -> Self {
        match e {
            e if e.is_connect() => ErrorKind::Connect,
            Error::Timeout { .. } => ErrorKind::Timeout,
            _ => ErrorKind::Other,
        }
    }
}

/// One failed request: its kind and what it said.
struct Fail {
    kind: ErrorKind,
    message: String,
}

impl Fail {
    fn hyper(e: &hyper::Error) -> Self {
        Self {
            kind: ErrorKind::of_hyper(e),
            message: error_chain(e),
        }
    }

    fn handshake(e: &hyper::Error) -> Self {
        Self {
            kind: ErrorKind::Handshake,
            message: error_chain(e),
        }
    }

    fn pipehttp(e: &Error) -> Self {
        Self {
            kind: ErrorKind::of_pipehttp(e),
            message: e.to_string(),
        }
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// What one thread (or the whole run, merged) saw.
struct Stats {
    latency: Histogram<u64>,
    /// (status, count), few enough that a linear search beats a map.
    statuses: Vec<(u16, u64)>,
    errors: Vec<(ErrorKind, u64)>,
    first_error: Option<String>,
    received: u64,
    sent: u64,
    connections: u64,
}

impl Stats {
    fn new() -> Self {
        Self {
            latency: Histogram::new_with_max(MAX_LATENCY_NS, 3)
                .expect("constant histogram bounds are valid"),
            statuses: Vec::new(),
            errors: Vec::new(),
            first_error: None,
            received: 0,
            sent: 0,
            connections: 0,
        }
    }

    fn record(&mut self, elapsed: Duration, outcome: Result<(StatusCode, u64), Fail>, sent: u64) {
        match outcome {
            Ok((status, received)) => {
                let ns = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
                self.latency.saturating_record(ns.max(1));
                bump(&mut self.statuses, status.as_u16(), 1);
                self.received += received;
                self.sent += sent;
            }
            Err(fail) => {
                bump(&mut self.errors, fail.kind, 1);
                self.first_error.get_or_insert(fail.message);
            }
        }
    }

    fn merge(&mut self, other: Stats) {
        let _ = self.latency.add(&other.latency);
        for (status, n) in other.statuses {
            bump(&mut self.statuses, status, n);
        }
        for (kind, n) in other.errors {
            bump(&mut self.errors, kind, n);
        }
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        self.received += other.received;
        self.sent += other.sent;
        self.connections += other.connections;
    }

    /// Requests that got a whole response, whatever its status.
    fn responses(&self) -> u64 {
        self.statuses.iter().map(|(_, n)| n).sum()
    }

    fn successes(&self) -> u64 {
        self.statuses
            .iter()
            .filter(|(s, _)| (200..300).contains(s))
            .map(|(_, n)| n)
            .sum()
    }
}

fn bump<K: PartialEq>(counts: &mut Vec<(K, u64)>, key: K, n: u64) {
    match counts.iter_mut().find(|(k, _)| *k == key) {
        Some((_, count)) => *count += n,
        None => counts.push((key, n)),
    }
}

type Shared = Rc<RefCell<Stats>>;

/// One load thread: a single-threaded runtime running `tasks` connections.
fn worker(
    plan: &Arc<Plan>,
    run: &Arc<Run>,
    tasks: usize,
    mut abort: watch::Receiver<bool>,
) -> std::io::Result<Stats> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    let stats: Shared = Rc::new(RefCell::new(Stats::new()));
    let client = plan.client.as_ref().map(|settings| {
        let mut builder = Client::builder().connect_timeout(settings.connect_timeout);
        if plan.http2 {
            builder = builder.http2_prior_knowledge();
        }
        if let Some(pem) = &settings.cacert {
            builder = builder.add_root_certificate_pem(pem.clone());
        }
        Rc::new(
            builder
                .danger_accept_invalid_certs(settings.insecure)
                .build(),
        )
    });
    local.block_on(&rt, async {
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..tasks {
            let (plan, run, stats) = (plan.clone(), run.clone(), stats.clone());
            match &client {
                Some(client) => set.spawn_local(client_loop(plan, run, stats, client.clone())),
                None => set.spawn_local(connection_loop(plan, run, stats)),
            };
        }
        tokio::select! {
            () = async { while set.join_next().await.is_some() {} } => {}
            _ = abort.wait_for(|a| *a) => set.abort_all(),
        }
    });
    drop(local);
    drop(rt);
    Ok(std::mem::replace(&mut *stats.borrow_mut(), Stats::new()))
}

type Io = TokioIo<Connection>;
type H1Driver = Pin<Box<http1::Connection<Io, Full<Bytes>>>>;
type H2Driver = Pin<Box<http2::Connection<Io, Full<Bytes>, TokioExecutor>>>;

/// A connection and the future that drives it.
enum Conn {
    H1 {
        sender: http1::SendRequest<Full<Bytes>>,
        driver: H1Driver,
    },
    H2 {
        sender: http2::SendRequest<Full<Bytes>>,
        driver: H2Driver,
    },
}

impl Conn {
    async fn open(plan: &Plan) -> Result<Self, Fail> {
        let io = plan
            .connector
            .connect()
            .await
            .map_err(|e| Fail::pipehttp(&e))?;
        let io = TokioIo::new(io);
        if plan.http2 {
            let (sender, driver) = http2::handshake(TokioExecutor::new(), io)
                .await
                .map_err(|e| Fail::handshake(&e))?;
            Ok(Conn::H2 {
                sender,
                driver: Box::pin(driver),
            })
        } else {
            let (sender, driver) = http1::handshake(io)
                .await
                .map_err(|e| Fail::handshake(&e))?;
            Ok(Conn::H1 {
                sender,
                driver: Box::pin(driver),
            })
        }
    }

    /// Sends one request and reads the whole response, driving the
    /// connection meanwhile. Any error leaves the connection unusable.
    async fn exchange(&mut self, req: Request<Full<Bytes>>) -> Result<(StatusCode, u64), Fail> {
        match self {
            Conn::H1 { sender, driver } => {
                let exchange = async {
                    sender.ready().await.map_err(|e| Fail::hyper(&e))?;
                    let res = sender
                        .send_request(req)
                        .await
                        .map_err(|e| Fail::hyper(&e))?;
                    read_body(res).await
                };
                tokio::select! {
                    biased;
                    res = exchange => res,
                    res = driver.as_mut() => Err(closed_early(res.err())),
                }
            }
            Conn::H2 { sender, driver } => {
                let exchange = async {
                    sender.ready().await.map_err(|e| Fail::hyper(&e))?;
                    let res = sender
                        .send_request(req)
                        .await
                        .map_err(|e| Fail::hyper(&e))?;
                    read_body(res).await
                };
                tokio::select! {
                    biased;
                    res = exchange => res,
                    res = driver.as_mut() => Err(closed_early(res.err())),
                }
            }
        }
    }
}

fn closed_early(e: Option<hyper::Error>) -> Fail {
    match e {
        Some(e) => Fail::hyper(&e),
        None => Fail {
            kind: ErrorKind::Closed,
            message: "the server closed the connection before answering".into(),
        },
    }
}

async fn read_body(res: http::Response<Incoming>) -> Result<(StatusCode, u64), Fail> {
    let status = res.status();
    let mut body = res.into_body();
    let mut received = 0u64;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| Fail {
            kind: ErrorKind::Body,
            message: error_chain(&e),
        })?;
        if let Some(data) = frame.data_ref() {
            received += data.len() as u64;
        }
    }
    Ok((status, received))
}

/// Runs `fut` within the plan's per-request timeout, if it has one.
async fn timed<T>(
    timeout: Option<Duration>,
    fut: impl std::future::Future<Output = Result<T, Fail>>,
) -> Result<T, Fail> {
    match timeout {
        None => fut.await,
        Some(t) => tokio::time::timeout(t, fut).await.unwrap_or_else(|_| {
            Err(Fail {
                kind: ErrorKind::Timeout,
                message: format!("no whole response within {t:?}"),
            })
        }),
    }
}

/// Counts completions and hands them to the shared progress counter in
/// batches, so threads do not fight over one cache line per request.
struct Tally<'a> {
    run: &'a Run,
    pending: u64,
}

impl Tally<'_> {
    fn one(&mut self) {
        self.pending += 1;
        if self.pending == PROGRESS_BATCH {
            self.flush();
        }
    }

    fn flush(&mut self) {
        self.run.done.fetch_add(self.pending, Ordering::Relaxed);
        self.pending = 0;
    }
}

impl Drop for Tally<'_> {
    fn drop(&mut self) {
        self.flush();
    }
}

/// One connection's requests, one after another, over bare connections.
async fn connection_loop(plan: Arc<Plan>, run: Arc<Run>, stats: Shared) {
    let mut conn: Option<Conn> = None;
    let mut tally = Tally {
        run: &run,
        pending: 0,
    };
    let sent = plan.body.len() as u64;
    while run.ticket() {
        let started = Instant::now();
        let outcome = timed(plan.timeout, async {
            if conn.is_none() {
                conn = Some(Conn::open(&plan).await?);
                stats.borrow_mut().connections += 1;
            }
            let c = conn.as_mut().expect("opened above");
            c.exchange(plan.request()).await
        })
        .await;
        let elapsed = started.elapsed();
        if outcome.is_err() || plan.fresh {
            conn = None;
        }
        stats.borrow_mut().record(elapsed, outcome, sent);
        tally.one();
    }
}

/// One connection's worth of requests through [`pipehttp::Client`].
async fn client_loop(plan: Arc<Plan>, run: Arc<Run>, stats: Shared, client: Rc<Client>) {
    let mut tally = Tally {
        run: &run,
        pending: 0,
    };
    let sent = plan.body.len() as u64;
    while run.ticket() {
        let started = Instant::now();
        let outcome = timed(plan.timeout, async {
            let mut req = client
                .request(plan.method.clone(), plan.target.clone())
                .body(plan.body.clone());
            for (name, value) in &plan.headers {
                if name != HOST {
                    req = req.header(name, value);
                }
            }
            let mut res = req.send().await.map_err(|e| Fail::pipehttp(&e))?;
            let status = res.status();
            let mut received = 0u64;
            while let Some(chunk) = res.chunk().await.map_err(|e| Fail {
                kind: ErrorKind::Body,
                message: e.to_string(),
            })? {
                received += chunk.len() as u64;
            }
            Ok((status, received))
        })
        .await;
        stats.borrow_mut().record(started.elapsed(), outcome, sent);
        tally.one();
    }
}

/// A progress bar on stderr while a person watches.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
}

impl Progress {
    fn new(limit: &Limit, enabled: bool) -> Self {
        if !enabled {
            return Self { bar: None };
        }
        let (bar, template) = match limit {
            Limit::Count(n) => (
                indicatif::ProgressBar::new(*n),
                "{elapsed_precise} {wide_bar} {pos}/{len} requests, {per_sec}",
            ),
            Limit::Until(d) => (
                indicatif::ProgressBar::new(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
                "{elapsed_precise} {wide_bar} {msg}",
            ),
        };
        bar.set_style(
            indicatif::ProgressStyle::with_template(template)
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        Self { bar: Some(bar) }
    }

    fn update(&self, run: &Run, start: Instant) {
        let Some(bar) = &self.bar else { return };
        let done = run.done.load(Ordering::Relaxed);
        if run.deadline.is_some() {
            let elapsed = start.elapsed();
            bar.set_position(u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX));
            let rate = done as f64 / elapsed.as_secs_f64().max(1e-9);
            bar.set_message(format!("{done} requests, {rate:.0}/s"));
        } else {
            bar.set_position(done);
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// The results of a run, printed for people or as JSON.
struct Report<'a> {
    plan: &'a Plan,
    connections: usize,
    threads: usize,
    elapsed: Duration,
    stats: &'a Stats,
}

impl Report<'_> {
    fn rate(&self, n: u64) -> f64 {
        n as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    fn percentiles(&self) -> [(&'static str, Option<Duration>); 8] {
        let h = &self.stats.latency;
        let empty = h.is_empty();
        let at = |q: f64| (!empty).then(|| Duration::from_nanos(h.value_at_quantile(q)));
        [
            ("min", (!empty).then(|| Duration::from_nanos(h.min()))),
            ("p50", at(0.5)),
            ("p90", at(0.9)),
            ("p99", at(0.99)),
            ("p99.9", at(0.999)),
            ("max", (!empty).then(|| Duration::from_nanos(h.max()))),
            (
                "mean",
                (!empty).then(|| Duration::from_secs_f64(h.mean() / 1e9)),
            ),
            (
                "stdev",
                (!empty).then(|| Duration::from_secs_f64(h.stdev() / 1e9)),
            ),
        ]
    }

    fn json(&self) -> String {
        let s = self.stats;
        let latency: serde_json::Map<String, serde_json::Value> = self
            .percentiles()
            .iter()
            .map(|(name, d)| {
                let value = d.map_or(serde_json::Value::Null, |d| {
                    serde_json::json!(d.as_secs_f64() * 1e6)
                });
                (name.replace('.', "_"), value)
            })
            .collect();
        let statuses: serde_json::Map<String, serde_json::Value> = s
            .statuses
            .iter()
            .map(|(status, n)| (status.to_string(), serde_json::json!(n)))
            .collect();
        let errors: serde_json::Map<String, serde_json::Value> = s
            .errors
            .iter()
            .map(|(kind, n)| (kind.as_str().to_owned(), serde_json::json!(n)))
            .collect();
        let requests = s.responses() + s.errors.iter().map(|(_, n)| n).sum::<u64>();
        serde_json::json!({
            "target": self.plan.target.to_string(),
            "endpoint": self.plan.target.endpoint().describe(),
            "transport": transport(self.plan.target.endpoint()),
            "protocol": self.plan.protocol(),
            "method": self.plan.method.as_str(),
            "connections": self.connections,
            "threads": self.threads,
            "new_connection_per_request": self.plan.fresh,
            "via_client": self.plan.client.is_some(),
            "duration_s": self.elapsed.as_secs_f64(),
            "requests": requests,
            "responses": s.responses(),
            "ok": s.successes(),
            "requests_per_s": self.rate(s.responses()),
            "bytes_received": s.received,
            "bytes_sent": s.sent,
            "bytes_per_s": self.rate(s.received + s.sent),
            "connections_opened": s.connections,
            "statuses": statuses,
            "errors": errors,
            "first_error": s.first_error,
            "latency_us": latency,
        })
        .to_string()
    }

    fn print(&self) {
        let s = self.stats;
        let plan = self.plan;
        let mode = if plan.fresh {
            "a new connection per request"
        } else {
            "keep-alive"
        };
        println!("Target:       {}", plan.target);
        println!("Endpoint:     {}", plan.target.endpoint().describe());
        println!(
            "Load:         {} {}, {} connection(s), {mode}, {} thread(s){}",
            plan.method,
            plan.protocol(),
            self.connections,
            self.threads,
            if plan.client.is_some() {
                ", through pipehttp::Client"
            } else {
                ""
            }
        );
        println!(
            "Requests:     {} in {:.3} s: {:.1} requests/s",
            s.responses(),
            self.elapsed.as_secs_f64(),
            self.rate(s.responses())
        );
        println!(
            "Bytes:        {} received, {} sent (bodies): {}/s",
            human_bytes(s.received as f64),
            human_bytes(s.sent as f64),
            human_bytes(self.rate(s.received + s.sent))
        );
        let statuses: Vec<String> = s
            .statuses
            .iter()
            .map(|(status, n)| format!("{status}: {n}"))
            .collect();
        println!(
            "Statuses:     {}",
            if statuses.is_empty() {
                "none".to_owned()
            } else {
                statuses.join(", ")
            }
        );
        let errors: Vec<String> = s
            .errors
            .iter()
            .map(|(kind, n)| format!("{}: {n}", kind.as_str()))
            .collect();
        if errors.is_empty() {
            println!("Errors:       none");
        } else {
            println!("Errors:       {}", errors.join(", "));
            if let Some(first) = &s.first_error {
                println!("First error:  {first}");
            }
        }
        let latency: Vec<String> = self
            .percentiles()
            .iter()
            .map(|(name, d)| format!("{name} {}", d.map_or("-".into(), human_duration)))
            .collect();
        println!("Latency:      {}", latency.join("  "));
        if plan.client.is_some() {
            println!("Connections:  pooled by pipehttp::Client");
        } else {
            println!("Connections:  {} opened", s.connections);
        }
    }
}

fn transport(endpoint: &Endpoint) -> &'static str {
    match endpoint {
        Endpoint::Pipe(_) => "pipe",
        Endpoint::Unix(_) => "unix",
        Endpoint::Tcp { .. } => "tcp",
    }
}

fn human_duration(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us < 1000.0 {
        format!("{us:.1} µs")
    } else if us < 1_000_000.0 {
        format!("{:.2} ms", us / 1000.0)
    } else {
        format!("{:.3} s", us / 1e6)
    }
}

fn human_bytes(n: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut n = n;
    let mut unit = 0;
    while n >= 1024.0 && unit + 1 < UNITS.len() {
        n /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n:.0} {}", UNITS[unit])
    } else {
        format!("{n:.2} {}", UNITS[unit])
    }
}

fn seconds(flag: &str, secs: f64) -> Result<Duration, Failure> {
    Duration::try_from_secs_f64(secs)
        .map_err(|_| usage(format!("{flag} takes a number of seconds, not {secs}")))
}

/// `10s`, `500ms`, `2m`, `1h`, `1.5` (seconds).
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let scale = match unit {
        "" | "s" => 1.0,
        "ms" => 1e-3,
        "m" => 60.0,
        "h" => 3600.0,
        _ => {
            return Err(format!(
                "'{text}' is not a duration such as 10s, 500ms or 2m"
            ));
        }
    };
    number
        .parse::<f64>()
        .ok()
        .and_then(|n| Duration::try_from_secs_f64(n * scale).ok())
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("'{text}' is not a duration such as 10s, 500ms or 2m"))
}

async fn read_data(data: &str) -> Result<Bytes, Failure> {
    let Some(source) = data.strip_prefix('@') else {
        return Ok(Bytes::from(data.to_owned()));
    };
    let bytes = if source == "-" {
        let mut buf = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut tokio::io::stdin(), &mut buf)
            .await
            .map_err(|e| usage(format!("cannot read the body from stdin: {e}")))?;
        buf
    } else {
        tokio::fs::read(source)
            .await
            .map_err(|e| usage(format!("cannot read the body from {source}: {e}")))?
    };
    Ok(Bytes::from(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("5 parsecs").is_err());
    }

    #[test]
    fn tickets_stop_at_the_budget() {
        let run = Run {
            deadline: None,
            budget: 3,
            issued: AtomicU64::new(0),
            done: AtomicU64::new(0),
            stop: AtomicBool::new(false),
        };
        assert_eq!((0..10).filter(|_| run.ticket()).count(), 3);
    }

    #[test]
    fn stats_merge() {
        let mut a = Stats::new();
        a.record(Duration::from_micros(10), Ok((StatusCode::OK, 12)), 0);
        let mut b = Stats::new();
        b.record(Duration::from_micros(30), Ok((StatusCode::OK, 12)), 5);
        b.record(
            Duration::from_micros(1),
            Err(Fail {
                kind: ErrorKind::Closed,
                message: "x".into(),
            }),
            5,
        );
        a.merge(b);
        assert_eq!(a.responses(), 2);
        assert_eq!(a.successes(), 2);
        assert_eq!(a.received, 24);
        assert_eq!(a.sent, 5);
        assert_eq!(a.errors, vec![(ErrorKind::Closed, 1)]);
        assert_eq!(a.latency.len(), 2);
    }
}
