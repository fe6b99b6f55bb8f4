//! The trace agent: `http://pipe:/trace-agent` (the name is a flag),
//! speaking the intake of Datadog's trace-agent, so Datadog's own tracers
//! (`DD_TRACE_AGENT_URL=unix:///…/CoreFxPipe_NAME`) talk to it as to theirs.
//!
//! | route | answer |
//! | --- | --- |
//! | `GET /info` | JSON: the endpoints it serves and its configuration, as Datadog's agent describes itself |
//! | `PUT`/`POST /v0.4/traces`, `/v0.5/traces` | MessagePack traces ([`payload`]); `{"rate_by_service":{…}}` once the batch is in the journal and fsync'd |
//! | `PUT`/`POST /v0.6/stats` | 200 for well-formed client stats, which it does not keep |
//! | `POST /dogstatsd/v2/proxy` | 200; the metrics are counted, not kept (there is no DogStatsD to forward them to) |
//! | `GET /stats` | JSON: spans received, unique ids, batches, clients by pid, tracers by language and version, requests by path and answer |
//! | anything else | 404 `404 page not found`, as Datadog's agent answers for a feature it has off (remote configuration, the telemetry proxy, profiling, …) |
//!
//! `/info` lists the trace endpoints and the DogStatsD proxy: a tracer then
//! neither polls remote configuration nor computes stats, and it never
//! drops traces client-side (`client_drop_p0s` is false), so every span it
//! makes is sent.
//!
//! On start the agent reads its journal back, so its statistics survive a
//! SIGKILL, and a batch cut short by the kill (never acknowledged) is cut
//! off. A stale socket file left by a killed agent is replaced by
//! pipehttp's bind.

use std::collections::{BTreeMap, HashSet};
use std::convert::Infallible;
use std::fmt::Write as _;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use clap::{Args, Parser};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use pipehttp::{PeerInfo, RequestBody, Server};
use serde::Serialize;

use crate::DEFAULT_PIPE;
use crate::journal::{self, Entry, Origin, Writer};
use crate::payload::{self, Version};

/// What the agent calls itself in `/info` and the `Datadog-Agent-Version`
/// header: not a Datadog version, so no tracer takes it for one.
const AGENT_VERSION: &str = concat!("pipehttp-trace-agent-", env!("CARGO_PKG_VERSION"));

/// Where tracers on a socket send DogStatsD metrics.
const DOGSTATSD_PATH: &str = "/dogstatsd/v2/proxy";

/// The sampling rates every trace answer carries: keep everything. The key
/// is the one Datadog's agent uses for "any service, any env".
const RATES: &str = "{\"rate_by_service\":{\"service:,env:\":1}}";

/// Where the agent listens and journals.
#[derive(Debug, Clone, Args)]
pub struct AgentArgs {
    /// Pipe name: the agent listens on http://pipe:/NAME.
    #[arg(long, value_name = "NAME", default_value = DEFAULT_PIPE)]
    pub pipe: String,
    /// Journal file [default: trace-agent.journal in the temp directory].
    #[arg(long, value_name = "FILE")]
    pub journal: Option<PathBuf>,
}

#[derive(Debug, Parser)]
#[command(name = "trace-agent", about = "A trace agent on a named pipe")]
struct Cli {
    #[command(flatten)]
    args: AgentArgs,
}

/// `trace-agent`'s main.
pub fn main() -> ExitCode {
    run_blocking(Cli::parse().args)
}

/// Runs the agent until SIGINT or SIGTERM (or a kill).
pub fn run_blocking(args: AgentArgs) -> ExitCode {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("trace-agent: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Binds the pipe, reads the journal back, says `Now listening on: …` on
/// stdout, and serves.
pub async fn run(args: AgentArgs) -> Result<(), Box<dyn std::error::Error>> {
    let path = args
        .journal
        .unwrap_or_else(|| std::env::temp_dir().join("trace-agent.journal"));
    // The pipe first: from here on a tracer's connection waits in the
    // listen queue until the journal is read back, instead of being
    // refused and spending one of the few retries a tracer allows itself.
    let server = Server::builder()
        .listen(format!("http://pipe:/{}", args.pipe))
        .bind()
        .await?;
    let (writer, recovered) =
        Writer::open(&path).map_err(|e| format!("journal {}: {e}", path.display()))?;
    let mut stats = Stats::default();
    for entry in &recovered.entries {
        stats.record(entry);
    }
    stats.recovered_batches = stats.batches;
    stats.recovered_spans = stats.spans_received;
    let socket = server
        .local_addresses()
        .into_iter()
        .find_map(|bound| bound.path)
        .unwrap_or_default();
    let info = Info::new(&socket.display().to_string());
    let state = Arc::new(State {
        info,
        inner: Mutex::new(Inner { writer, stats }),
    });
    let mut out = std::io::stdout().lock();
    for bound in server.local_addresses() {
        writeln!(out, "Now listening on: {bound}")?;
    }
    writeln!(
        out,
        "trace-agent pid {}: journal {} ({} batches, {} spans recovered{})",
        std::process::id(),
        path.display(),
        recovered.entries.len(),
        state.inner.lock().expect("lock").stats.spans_received,
        if recovered.torn_bytes > 0 {
            format!(
                "; cut off a torn last line of {} bytes",
                recovered.torn_bytes
            )
        } else {
            String::new()
        }
    )?;
    out.flush()?;
    drop(out);

    let service = tower::service_fn(move |req: Request<RequestBody>| {
        let state = state.clone();
        async move { Ok::<_, Infallible>(handle(&state, req).await) }
    });
    server.serve(service).await?;
    Ok(())
}

struct State {
    info: Info,
    inner: Mutex<Inner>,
}

struct Inner {
    writer: Writer,
    stats: Stats,
}

/// `GET /info`'s answer and its digest, which Datadog's agent sends as
/// `Datadog-Agent-State` on every answer so tracers know when to read
/// `/info` again.
struct Info {
    body: Bytes,
    state: HeaderValue,
}

impl Info {
    fn new(socket: &str) -> Self {
        // The fields tracers read, in the shape of Datadog's agent: what it
        // serves, and features off.
        let body = serde_json::json!({
            "version": AGENT_VERSION,
            "git_commit": "",
            "endpoints": [Version::V04.path(), Version::V05.path(), DOGSTATSD_PATH],
            "feature_flags": [],
            "client_drop_p0s": false,
            "span_meta_structs": false,
            "long_running_spans": false,
            "span_events": false,
            "evp_proxy_allowed_headers": [],
            "config": {
                "default_env": "none",
                "target_tps": 10,
                "max_eps": 200,
                "receiver_port": 0,
                "receiver_socket": socket,
                "connection_limit": 0,
                "receiver_timeout": 0,
                "max_request_bytes": 30_000_000,
                "statsd_port": 0,
                "max_memory": 0,
                "max_cpu": 0,
                "analyzed_spans_by_service": {},
            },
            "peer_tags": null,
            "span_kinds_stats_computed": null,
            "obfuscation_version": 1,
        });
        let body = serde_json::to_vec_pretty(&body).expect("info encodes");
        let digest = ring::digest::digest(&ring::digest::SHA256, &body);
        let mut hex = String::with_capacity(64);
        for byte in digest.as_ref() {
            let _ = write!(hex, "{byte:02x}");
        }
        Self {
            body: Bytes::from(body),
            state: HeaderValue::from_str(&hex).expect("hex is a header value"),
        }
    }
}

/// What `GET /stats` answers.
#[derive(Debug, Default, Serialize)]
pub struct Stats {
    /// Spans in the journal, duplicates included.
    pub spans_received: u64,
    /// Distinct span ids in the journal.
    pub unique_ids: usize,
    /// Batches in the journal.
    pub batches: u64,
    /// Of those, read back from the journal at start.
    pub recovered_batches: u64,
    /// Spans read back from the journal at start.
    pub recovered_spans: u64,
    /// By client pid (`unknown` where the OS does not tell).
    pub clients: BTreeMap<String, ClientStats>,
    /// By tracer language, then version (`Datadog-Meta-Lang`,
    /// `Datadog-Meta-Tracer-Version`; `unknown` where a header is missing).
    pub tracers: BTreeMap<String, BTreeMap<String, ClientStats>>,
    /// Client stats payloads taken at `/v0.6/stats` since start (not
    /// journaled).
    pub stats_payloads: u64,
    /// DogStatsD payloads taken at `/dogstatsd/v2/proxy` since start (not
    /// kept).
    pub dogstatsd_payloads: u64,
    /// Requests since start (but those for `/stats`), by method, path and
    /// answer, e.g. `"POST /v0.7/config 404"`: what the tracers asked for
    /// and what they were told. At most [`REQUEST_KEYS`] keys; the rest
    /// are counted under `other`.
    pub requests: BTreeMap<String, u64>,
    #[serde(skip)]
    ids: HashSet<u64>,
}

/// One client's (or one tracer's) share.
#[derive(Debug, Default, Clone, Serialize)]
pub struct ClientStats {
    /// Spans it sent that were journaled.
    pub spans: u64,
    /// Its batches in the journal.
    pub batches: u64,
}

impl ClientStats {
    fn add(&mut self, spans: usize) {
        self.spans += spans as u64;
        self.batches += 1;
    }
}

/// How many keys `requests` holds at most, so that a client probing
/// random paths cannot grow it without bound.
pub const REQUEST_KEYS: usize = 64;

impl Stats {
    fn request(&mut self, method: &Method, path: &str, status: StatusCode) {
        let key = format!("{method} {path} {}", status.as_u16());
        let key = if self.requests.len() < REQUEST_KEYS || self.requests.contains_key(&key) {
            key
        } else {
            "other".to_owned()
        };
        *self.requests.entry(key).or_default() += 1;
    }

    fn record(&mut self, entry: &Entry) {
        let n = entry.span_ids.len();
        self.batches += 1;
        self.spans_received += n as u64;
        self.ids.extend(&entry.span_ids);
        self.unique_ids = self.ids.len();
        let origin = &entry.origin;
        let pid = origin
            .pid
            .map_or_else(|| "unknown".to_owned(), |p| p.to_string());
        self.clients.entry(pid).or_default().add(n);
        let known = |v: &Option<String>| v.clone().unwrap_or_else(|| "unknown".to_owned());
        self.tracers
            .entry(known(&origin.lang))
            .or_default()
            .entry(known(&origin.tracer_version))
            .or_default()
            .add(n);
    }
}

async fn handle(state: &Arc<State>, req: Request<RequestBody>) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    if method == Method::GET && path == "/stats" {
        let inner = state.inner.lock().expect("lock");
        let body = serde_json::to_vec(&inner.stats).expect("stats encode");
        return respond(StatusCode::OK, "application/json", Bytes::from(body));
    }
    let mut res = match (&method, path.as_str(), Version::from_path(&path)) {
        (&Method::PUT | &Method::POST, _, Some(version)) => traces(state, version, req).await,
        (&Method::PUT | &Method::POST, "/v0.6/stats", _) => client_stats(state, req).await,
        (&Method::POST, DOGSTATSD_PATH, _) => dogstatsd(state, req).await,
        (&Method::GET, "/info", _) => {
            respond(StatusCode::OK, "application/json", state.info.body.clone())
        }
        (_, _, Some(_)) | (_, "/v0.6/stats", _) => {
            text(StatusCode::METHOD_NOT_ALLOWED, "use PUT or POST")
        }
        (_, DOGSTATSD_PATH, _) => text(StatusCode::METHOD_NOT_ALLOWED, "use POST"),
        (_, "/info" | "/stats", _) => text(StatusCode::METHOD_NOT_ALLOWED, "use GET"),
        // Go's answer for a path no handler serves, word for word.
        _ => text(StatusCode::NOT_FOUND, "404 page not found"),
    };
    state
        .inner
        .lock()
        .expect("lock")
        .stats
        .request(&method, &path, res.status());
    if path == "/info" {
        // Datadog's agent sends /info without its version headers.
        return res;
    }
    let headers = res.headers_mut();
    headers.insert(
        "datadog-agent-version",
        HeaderValue::from_static(AGENT_VERSION),
    );
    headers.insert("datadog-agent-state", state.info.state.clone());
    res
}

/// A request header as text, if it is there and printable.
fn header_text(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

async fn traces(
    state: &Arc<State>,
    version: Version,
    req: Request<RequestBody>,
) -> Response<Full<Bytes>> {
    let headers = req.headers();
    if let Some(media) = header_text(headers, "content-type")
        && (media.starts_with("application/json") || media.starts_with("text/json"))
    {
        return text(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            &format!(
                "{}: this agent takes MessagePack (Content-Type: application/msgpack), not {media}",
                version.path()
            ),
        );
    }
    let origin = Origin {
        pid: req.extensions().get::<PeerInfo>().and_then(|p| p.pid),
        lang: header_text(headers, "datadog-meta-lang"),
        tracer_version: header_text(headers, "datadog-meta-tracer-version"),
    };
    let body = match read_body(req).await {
        Ok(body) => body,
        Err(res) => return res,
    };
    let traces = match payload::decode(version, &body) {
        Ok(traces) => traces,
        Err(e) => {
            return text(
                StatusCode::BAD_REQUEST,
                &format!("{} payload: {e}", version.path()),
            );
        }
    };
    let spans: Vec<_> = traces.into_iter().flatten().collect();
    if spans.is_empty() {
        // Nothing to keep: answer as for any batch, journal nothing.
        return json(StatusCode::OK, Bytes::from_static(RATES.as_bytes()));
    }
    let line = journal::encode(&origin, version.as_str(), &spans);
    let entry = Entry {
        origin,
        endpoint: Some(version.as_str().to_owned()),
        span_ids: spans.iter().map(|s| s.span_id).collect(),
    };
    let state = state.clone();
    // The write and its fsync block; the answer waits for both.
    let written = tokio::task::spawn_blocking(move || {
        let mut inner = state.inner.lock().expect("lock");
        inner.writer.append(&line)?;
        inner.stats.record(&entry);
        Ok::<_, std::io::Error>(())
    })
    .await;
    match written {
        Ok(Ok(())) => json(StatusCode::OK, Bytes::from_static(RATES.as_bytes())),
        Ok(Err(e)) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("journal write failed: {e}"),
        ),
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

/// Metrics in DogStatsD's text protocol, which tracers that reach the
/// agent only through a socket send here instead of over UDP. Datadog's
/// agent forwards them to DogStatsD; this one has none, so it counts and
/// drops them (answering 404 instead would send the tracer to UDP, with an
/// error in its log).
async fn dogstatsd(state: &Arc<State>, req: Request<RequestBody>) -> Response<Full<Bytes>> {
    if let Err(res) = read_body(req).await {
        return res;
    }
    state.inner.lock().expect("lock").stats.dogstatsd_payloads += 1;
    respond(StatusCode::OK, "text/plain; charset=utf-8", Bytes::new())
}

/// Client-computed stats: checked, counted, not kept (this agent has no
/// backend to forward them to, and does not ask for them in `/info`).
async fn client_stats(state: &Arc<State>, req: Request<RequestBody>) -> Response<Full<Bytes>> {
    let body = match read_body(req).await {
        Ok(body) => body,
        Err(res) => return res,
    };
    if let Err(e) = payload::check(&body) {
        return text(
            StatusCode::BAD_REQUEST,
            &format!("/v0.6/stats payload: {e}"),
        );
    }
    state.inner.lock().expect("lock").stats.stats_payloads += 1;
    respond(StatusCode::OK, "text/plain; charset=utf-8", Bytes::new())
}

/// The whole body, or the 400 that says why it could not be read.
async fn read_body(req: Request<RequestBody>) -> Result<Bytes, Response<Full<Bytes>>> {
    match req.into_body().collect().await {
        Ok(body) => Ok(body.to_bytes()),
        Err(e) => Err(text(
            StatusCode::BAD_REQUEST,
            &format!("cannot read the body: {e}"),
        )),
    }
}

fn json(status: StatusCode, body: Bytes) -> Response<Full<Bytes>> {
    respond(status, "application/json", body)
}

fn text(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    respond(
        status,
        "text/plain; charset=utf-8",
        Bytes::from(format!("{message}\n")),
    )
}

fn respond(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<Full<Bytes>> {
    let mut res = Response::new(Full::new(body));
    *res.status_mut() = status;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    res
}
