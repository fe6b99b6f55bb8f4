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
use http::header::{CONNECTION, HOST};
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

use crate::exit::{self, Failure};
use crate::logging::Sink;
use crate::spec::{MessageArgs, RequestSpec, seconds};

mod load;
mod report;
mod stats;

use self::load::*;
use self::report::*;
use self::stats::*;

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
    /// The request, with curl's flags: -X, -H, -d, --json, -F, -T, -A, -u, ...
    #[command(flatten)]
    message: MessageArgs,
    /// Speak HTTP/2 from the first byte (prior knowledge).
    #[arg(long)]
    http2: bool,
    /// Open a fresh connection for every request, as .NET's tracer does;
    /// its latency includes the connect.
    #[arg(long)]
    new_connection_per_request: bool,
    /// How to print the results: text, or one JSON object on stdout
    /// (--json is curl's JSON request body here, as in `request`).
    #[arg(long = "output-format", value_name = "FORMAT", value_enum, default_value_t = OutputFormat::Text)]
    output_format: OutputFormat,
    /// OS threads that generate load [default: the number of cores].
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
    /// Seconds one request may take before it counts as a timeout (curl's
    /// -m; -t and --timeout as in oha).
    #[arg(
        short = 'm',
        long = "max-time",
        visible_short_alias = 't',
        visible_alias = "timeout",
        value_name = "SECS"
    )]
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

fn usage(message: impl Into<String>) -> Failure {
    Failure::usage(message)
}

pub async fn run(args: BenchArgs) -> ExitCode {
    crate::logging::init("error", Sink::Stderr);
    match bench(args).await {
        Ok(code) => code,
        Err(f) => f.report(),
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
            .map_err(|e| Failure::new(exit::FAILURE, format!("cannot start a load thread: {e}")))?;
        workers.push(rx);
    }

    let progress = Progress::new(&limit, !args.no_progress && std::io::stderr().is_terminal());
    let all_done = async {
        let mut stats = Stats::new();
        for rx in workers {
            match rx.await {
                Ok(Ok(s)) => stats.merge(s),
                Ok(Err(e)) => {
                    return Err(Failure::new(
                        exit::FAILURE,
                        format!("a load thread failed: {e}"),
                    ));
                }
                Err(_) => return Err(Failure::new(exit::FAILURE, "a load thread panicked")),
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
    if args.output_format == OutputFormat::Json {
        println!("{}", report.json());
    } else {
        report.print();
    }
    let errors: u64 = stats.errors.iter().map(|(_, n)| n).sum();
    Ok(if errors == 0 {
        ExitCode::SUCCESS
    } else if stats.responses() == 0 && stats.errors.iter().all(|(k, _)| *k == ErrorKind::Connect) {
        ExitCode::from(exit::COULDNT_CONNECT)
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
        let timeout = args.timeout.map(|t| seconds("--max-time", t)).transpose()?;
        let spec = RequestSpec::new(&args.message).await?;
        let method = Method::from_bytes(spec.method().as_bytes())
            .map_err(|_| usage(format!("'{}' is not an HTTP method", spec.method())))?;
        let mut headers = HeaderMap::new();
        for (name, value) in spec.headers(&target.host_header(), None, None, None) {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| usage(format!("bad header name '{name}': {e}")))?;
            let value = HeaderValue::from_str(&value)
                .map_err(|e| usage(format!("bad value for the header {name}: {e}")))?;
            headers.append(name, value);
        }
        let body = spec.body_bytes().await?;
        if spec.body_len().is_none() {
            // Read whole from stdin: the length is known now.
            headers.remove(http::header::TRANSFER_ENCODING);
            headers.insert(http::header::CONTENT_LENGTH, HeaderValue::from(body.len()));
        }
        if let Some(query) = &spec.query {
            return Err(usage(format!(
                "-G puts the data in the URL; write it there: {}?{query}",
                args.target
            )));
        }
        let uri = if args.http2 {
            headers.remove(HOST);
            target.uri().clone()
        } else {
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

/// `--output-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum OutputFormat {
    Text,
    Json,
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
}
