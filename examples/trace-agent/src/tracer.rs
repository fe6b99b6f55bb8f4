//! The tracer an app links in: spans go into batches, batches into a
//! bounded in-memory queue, and a sender on its own thread delivers them
//! to the agent through [`pipehttp::Client`], as Datadog's tracers do:
//! `PUT /v0.4/traces` with a MessagePack payload of traces
//! ([`payload::encode_v04`]), `X-Datadog-Trace-Count` and the
//! `Datadog-Meta-*` headers naming the tracer.
//!
//! - A batch the agent did not acknowledge (no answer, an error, a 5xx) is
//!   sent again, with backoff doubling from `backoff_min` to `backoff_max`.
//!   The client's connect timeout already waits out a short agent restart.
//! - The queue holds at most `queue_capacity` batches waiting to be sent,
//!   beside the one being sent. When it is full the oldest waiting batch is
//!   dropped and counted, as Datadog's tracers count dropped payloads.
//! - [`Tracer::record`] never waits on the agent: it takes a lock around an
//!   in-memory queue and returns. [`Tracer::finish`] waits at most
//!   `flush_timeout` for the queue to drain; what is left then is dropped
//!   and counted.

use std::collections::VecDeque;
use std::fmt;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use clap::{Args, Parser};
use http::StatusCode;
use pipehttp::Client;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::payload::{self, Version};
use crate::{DEFAULT_PIPE, Span, parse_secs};

/// How a tracer batches, queues and retries.
#[derive(Debug, Clone)]
pub struct TracerConfig {
    /// The agent's pipe name.
    pub pipe: String,
    /// Spans per batch.
    pub batch_size: usize,
    /// Batches waiting to be sent, at most (at least 1).
    pub queue_capacity: usize,
    /// The longest [`Tracer::finish`] waits for the queue to drain.
    pub flush_timeout: Duration,
    /// How long one attempt waits for the agent to exist and accept.
    pub connect_timeout: Duration,
    /// How long one attempt may take in all.
    pub request_timeout: Duration,
    /// The first pause after a failed attempt.
    pub backoff_min: Duration,
    /// The longest pause between attempts.
    pub backoff_max: Duration,
}

impl Default for TracerConfig {
    fn default() -> Self {
        Self {
            pipe: DEFAULT_PIPE.to_owned(),
            batch_size: 100,
            queue_capacity: 256,
            flush_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(5),
            backoff_min: Duration::from_millis(20),
            backoff_max: Duration::from_secs(1),
        }
    }
}

/// What a tracer did, counted in spans. Every span created ends up either
/// acknowledged or dropped: `created = acknowledged + dropped`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Summary {
    /// This process.
    pub pid: u32,
    /// Spans the app recorded.
    pub created: u64,
    /// Spans sent to the agent at least once.
    pub sent: u64,
    /// Spans in batches the agent answered 200 to.
    pub acknowledged: u64,
    /// Spans dropped, for any of the three reasons below.
    pub dropped: u64,
    /// Dropped because the queue was full (the oldest batch went).
    pub dropped_queue_full: u64,
    /// Dropped because the agent refused the batch (4xx): sending it again
    /// would not help.
    pub dropped_rejected: u64,
    /// Still queued or in flight when the flush timeout ran out.
    pub dropped_at_exit: u64,
    /// Batches dropped.
    pub dropped_batches: u64,
    /// Attempts that failed and were tried again.
    pub retries: u64,
    /// The last failure, if any.
    pub last_error: Option<String>,
    /// The longest single [`Tracer::record`] call, in microseconds.
    pub longest_record_us: u64,
    /// How long [`Tracer::finish`] held the app, in milliseconds.
    pub exit_wait_ms: u64,
    /// The ids of every acknowledged span.
    pub acknowledged_ids: Vec<u64>,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "tracer pid={}: created={} sent={} acknowledged={} dropped={} \
             (queue full: {}, rejected: {}, unsent at exit: {}) retries={} \
             longest-record={}us exit-wait={}ms",
            self.pid,
            self.created,
            self.sent,
            self.acknowledged,
            self.dropped,
            self.dropped_queue_full,
            self.dropped_rejected,
            self.dropped_at_exit,
            self.retries,
            self.longest_record_us,
            self.exit_wait_ms,
        )
    }
}

struct Shared {
    capacity: usize,
    state: Mutex<State>,
    wake: Notify,
}

#[derive(Default)]
struct State {
    pending: VecDeque<Vec<Span>>,
    /// Spans of the batch being sent.
    in_flight: usize,
    closed: bool,
    summary: Summary,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("tracer state lock")
    }
}

/// A running tracer. Dropping it without [`finish`](Self::finish) loses
/// what is queued.
pub struct Tracer {
    shared: Arc<Shared>,
    runtime: tokio::runtime::Runtime,
    sender: tokio::task::JoinHandle<()>,
    buffer: Vec<Span>,
    batch_size: usize,
    flush_timeout: Duration,
    longest_record: Duration,
}

impl Tracer {
    /// Starts the sender thread.
    pub fn start(config: TracerConfig) -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("tracer-sender")
            .enable_all()
            .build()?;
        let shared = Arc::new(Shared {
            capacity: config.queue_capacity.max(1),
            state: Mutex::new(State {
                summary: Summary {
                    pid: std::process::id(),
                    ..Summary::default()
                },
                ..State::default()
            }),
            wake: Notify::new(),
        });
        let client = Client::builder()
            .connect_timeout(config.connect_timeout)
            .timeout(config.request_timeout)
            .build();
        let sender = runtime.spawn(send_loop(shared.clone(), client, config.clone()));
        Ok(Self {
            shared,
            runtime,
            sender,
            buffer: Vec::with_capacity(config.batch_size),
            batch_size: config.batch_size.max(1),
            flush_timeout: config.flush_timeout,
            longest_record: Duration::ZERO,
        })
    }

    /// Records one span. Never waits on the agent.
    pub fn record(&mut self, span: Span) {
        let started = Instant::now();
        self.buffer.push(span);
        if self.buffer.len() >= self.batch_size {
            let batch = std::mem::replace(&mut self.buffer, Vec::with_capacity(self.batch_size));
            self.enqueue(batch);
        }
        self.longest_record = self.longest_record.max(started.elapsed());
    }

    fn enqueue(&self, batch: Vec<Span>) {
        let mut state = self.shared.lock();
        state.summary.created += batch.len() as u64;
        if state.pending.len() >= self.shared.capacity
            && let Some(oldest) = state.pending.pop_front()
        {
            let n = oldest.len() as u64;
            state.summary.dropped += n;
            state.summary.dropped_queue_full += n;
            state.summary.dropped_batches += 1;
        }
        state.pending.push_back(batch);
        drop(state);
        self.shared.wake.notify_one();
    }

    /// Sends what is left, waiting at most the flush timeout, and tells
    /// what happened.
    pub fn finish(mut self) -> Summary {
        let started = Instant::now();
        if !self.buffer.is_empty() {
            let batch = std::mem::take(&mut self.buffer);
            self.enqueue(batch);
        }
        self.shared.lock().closed = true;
        self.shared.wake.notify_one();
        let mut sender = self.sender;
        let flush_timeout = self.flush_timeout;
        let drained = self.runtime.block_on(async {
            tokio::time::timeout(flush_timeout, &mut sender)
                .await
                .is_ok()
        });
        if !drained {
            sender.abort();
            self.runtime.block_on(async {
                let _ = sender.await;
            });
        }
        self.runtime.shutdown_background();
        let mut state = self.shared.lock();
        let left = state.pending.drain(..).collect::<Vec<_>>();
        let in_flight = std::mem::take(&mut state.in_flight);
        let summary = &mut state.summary;
        let mut unsent = in_flight as u64;
        summary.dropped_batches += left.len() as u64 + u64::from(in_flight > 0);
        unsent += left.iter().map(|b| b.len() as u64).sum::<u64>();
        summary.dropped += unsent;
        summary.dropped_at_exit += unsent;
        summary.longest_record_us =
            u64::try_from(self.longest_record.as_micros()).unwrap_or(u64::MAX);
        summary.exit_wait_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        summary.clone()
    }
}

/// What this tracer calls its language in `Datadog-Meta-Lang`.
pub const LANG: &str = "rust";

/// Its version, in `Datadog-Meta-Tracer-Version`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// A batch as the intake wants it: the spans of each trace together, in
/// the order the traces first appear.
fn by_trace(batch: &[Span]) -> Vec<Vec<Span>> {
    let mut traces: Vec<Vec<Span>> = Vec::new();
    let mut index = std::collections::HashMap::new();
    for span in batch {
        let i = *index.entry(span.trace_id).or_insert_with(|| {
            traces.push(Vec::new());
            traces.len() - 1
        });
        traces[i].push(span.clone());
    }
    traces
}

async fn send_loop(shared: Arc<Shared>, client: Client, config: TracerConfig) {
    let url = format!("http://pipe:/{}:{}", config.pipe, Version::V04.path());
    loop {
        let batch = loop {
            let woken = shared.wake.notified();
            {
                let mut state = shared.lock();
                if let Some(batch) = state.pending.pop_front() {
                    state.in_flight = batch.len();
                    state.summary.sent += batch.len() as u64;
                    break batch;
                }
                if state.closed {
                    return;
                }
            }
            woken.await;
        };
        let traces = by_trace(&batch);
        let trace_count = traces.len().to_string();
        let body = Bytes::from(payload::encode_v04(&traces));
        let mut pause = config.backoff_min;
        loop {
            let outcome = client
                .put(url.as_str())
                .header("content-type", "application/msgpack")
                .header("x-datadog-trace-count", trace_count.as_str())
                .header("datadog-meta-lang", LANG)
                .header("datadog-meta-tracer-version", VERSION)
                .body(body.clone())
                .send()
                .await;
            let failure = match outcome {
                Ok(res) if res.status() == StatusCode::OK => {
                    // 200 means journaled; the body only has sampling rates.
                    let _ = res.bytes().await;
                    let mut state = shared.lock();
                    state.in_flight = 0;
                    state.summary.acknowledged += batch.len() as u64;
                    state
                        .summary
                        .acknowledged_ids
                        .extend(batch.iter().map(|s| s.span_id));
                    break;
                }
                Ok(res) if res.status().is_client_error() => {
                    let status = res.status();
                    let text = res.text().await.unwrap_or_default();
                    let mut state = shared.lock();
                    let n = std::mem::take(&mut state.in_flight) as u64;
                    state.summary.dropped += n;
                    state.summary.dropped_rejected += n;
                    state.summary.dropped_batches += 1;
                    state.summary.last_error = Some(format!("{status}: {}", text.trim()));
                    break;
                }
                Ok(res) => format!("the agent answered {}", res.status()),
                Err(e) => e.to_string(),
            };
            {
                let mut state = shared.lock();
                state.summary.retries += 1;
                state.summary.last_error = Some(failure);
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(config.backoff_max);
        }
    }
}

/// The tracer process: an "app" that makes spans at a steady rate.
#[derive(Debug, Clone, Args)]
pub struct TracerArgs {
    /// The agent's pipe name.
    #[arg(long, value_name = "NAME", default_value = DEFAULT_PIPE)]
    pub pipe: String,
    /// Spans to create.
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    pub spans: u32,
    /// Spans per batch.
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub batch_size: usize,
    /// Batches waiting to be sent, at most; past it the oldest is dropped.
    #[arg(long, value_name = "BATCHES", default_value_t = 256)]
    pub queue: usize,
    /// Spans per second the app makes; 0: as fast as it can.
    #[arg(long, value_name = "N", default_value_t = 5000.0)]
    pub rate: f64,
    /// The longest the app waits at exit for the queue to drain.
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = parse_secs)]
    pub flush_timeout: Duration,
    /// How long one attempt waits for the agent to exist and accept.
    #[arg(long, value_name = "SECS", default_value = "2", value_parser = parse_secs)]
    pub connect_timeout: Duration,
    /// How long one attempt may take in all.
    #[arg(long, value_name = "SECS", default_value = "5", value_parser = parse_secs)]
    pub request_timeout: Duration,
    /// Also write the summary, with every acknowledged id, as JSON here.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
}

/// An app that sends spans to the trace agent through a bounded retry queue
#[derive(Debug, Parser)]
#[command(name = "tracer")]
struct Cli {
    #[command(flatten)]
    args: TracerArgs,
}

/// `tracer`'s main.
pub fn main() -> ExitCode {
    run(Cli::parse().args)
}

/// Makes the spans, sends them, prints the summary line.
pub fn run(args: TracerArgs) -> ExitCode {
    let config = TracerConfig {
        pipe: args.pipe.clone(),
        batch_size: args.batch_size,
        queue_capacity: args.queue,
        flush_timeout: args.flush_timeout,
        connect_timeout: args.connect_timeout,
        request_timeout: args.request_timeout,
        ..TracerConfig::default()
    };
    let mut tracer = match Tracer::start(config) {
        Ok(tracer) => tracer,
        Err(e) => {
            eprintln!("tracer: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    let pid = u64::from(std::process::id());
    let started = Instant::now();
    for i in 0..args.spans {
        tracer.record(make_span(pid, i));
        if args.rate > 0.0 && i % 50 == 49 {
            let due = started + Duration::from_secs_f64(f64::from(i + 1) / args.rate);
            if let Some(ahead) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(ahead);
            }
        }
    }
    let summary = tracer.finish();
    println!("{summary}");
    if let Some(error) = &summary.last_error {
        println!("tracer pid={}: last failed attempt: {error}", summary.pid);
    }
    if let Some(path) = &args.report {
        let json = serde_json::to_vec(&summary).expect("summary encodes");
        if let Err(e) = std::fs::write(path, json) {
            eprintln!("tracer: cannot write {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}

/// Span `i` of this process: ids are `pid << 32 | i`, unique among
/// processes that run at the same time; traces of five spans.
fn make_span(pid: u64, i: u32) -> Span {
    let span_id = (pid << 32) | u64::from(i);
    let root = (pid << 32) | u64::from(i - i % 5);
    let start = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
    let is_root = span_id == root;
    Span {
        service: "tracer-demo".to_owned(),
        name: if is_root { "http.request" } else { "db.query" }.to_owned(),
        resource: format!("GET /items/{}", i % 97),
        trace_id: root,
        span_id,
        parent_id: if is_root { 0 } else { root },
        start,
        duration: 1_000 + i64::from(i % 1000),
        kind: if is_root { "web" } else { "sql" }.to_owned(),
        ..Span::default()
    }
}
