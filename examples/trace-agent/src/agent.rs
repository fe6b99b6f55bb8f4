//! The trace agent: `http://pipe:/trace-agent` (the name is a flag).
//!
//! | route | answer |
//! | --- | --- |
//! | `PUT /v0.4/traces` (or POST) | a JSON array of spans, each with a `span_id`; 200 once the batch is in the journal and fsync'd |
//! | `GET /stats` | JSON: spans received, unique ids, batches, clients by pid |
//!
//! On start the agent reads its journal back, so its statistics survive a
//! SIGKILL, and a batch cut short by the kill (never acknowledged) is cut
//! off. A stale socket file left by a killed agent is replaced by
//! pipehttp's bind.

use std::collections::{BTreeMap, HashSet};
use std::convert::Infallible;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use clap::{Args, Parser};
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use pipehttp::{PeerInfo, RequestBody, Server};
use serde::Serialize;

use crate::journal::{self, Entry, Writer};
use crate::{DEFAULT_PIPE, TRACES_PATH};

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

/// Binds the pipe, says `Now listening on: …` on stdout, and serves.
pub async fn run(args: AgentArgs) -> Result<(), Box<dyn std::error::Error>> {
    let path = args
        .journal
        .unwrap_or_else(|| std::env::temp_dir().join("trace-agent.journal"));
    let (writer, recovered) =
        Writer::open(&path).map_err(|e| format!("journal {}: {e}", path.display()))?;
    let mut stats = Stats::default();
    for entry in &recovered.entries {
        stats.record(entry);
    }
    stats.recovered_batches = stats.batches;
    stats.recovered_spans = stats.spans_received;
    let state = Arc::new(State {
        inner: Mutex::new(Inner { writer, stats }),
    });

    let server = Server::builder()
        .listen(format!("http://pipe:/{}", args.pipe))
        .bind()
        .await?;
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
    inner: Mutex<Inner>,
}

struct Inner {
    writer: Writer,
    stats: Stats,
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
    #[serde(skip)]
    ids: HashSet<u64>,
}

/// One client's share.
#[derive(Debug, Default, Clone, Serialize)]
pub struct ClientStats {
    /// Spans it sent that were journaled.
    pub spans: u64,
    /// Its batches in the journal.
    pub batches: u64,
}

impl Stats {
    fn record(&mut self, entry: &Entry) {
        self.batches += 1;
        self.spans_received += entry.span_ids.len() as u64;
        self.ids.extend(&entry.span_ids);
        self.unique_ids = self.ids.len();
        let key = entry
            .pid
            .map_or_else(|| "unknown".to_owned(), |p| p.to_string());
        let client = self.clients.entry(key).or_default();
        client.spans += entry.span_ids.len() as u64;
        client.batches += 1;
    }
}

async fn handle(state: &Arc<State>, req: Request<RequestBody>) -> Response<Full<Bytes>> {
    match (req.method(), req.uri().path()) {
        (&Method::PUT | &Method::POST, TRACES_PATH) => traces(state, req).await,
        (&Method::GET, "/stats") => {
            let inner = state.inner.lock().expect("lock");
            json(
                StatusCode::OK,
                serde_json::to_vec(&inner.stats).expect("stats encode"),
            )
        }
        (_, TRACES_PATH | "/stats") => text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed"),
        _ => text(StatusCode::NOT_FOUND, "not found"),
    }
}

async fn traces(state: &Arc<State>, req: Request<RequestBody>) -> Response<Full<Bytes>> {
    let pid = req.extensions().get::<PeerInfo>().and_then(|p| p.pid);
    let body = match req.into_body().collect().await {
        Ok(body) => body.to_bytes(),
        Err(e) => {
            return text(
                StatusCode::BAD_REQUEST,
                &format!("cannot read the body: {e}"),
            );
        }
    };
    let spans: Vec<serde_json::Value> = match serde_json::from_slice(&body) {
        Ok(spans) => spans,
        Err(e) => {
            return text(
                StatusCode::BAD_REQUEST,
                &format!("expected a JSON array of spans: {e}"),
            );
        }
    };
    let mut span_ids = Vec::with_capacity(spans.len());
    for (i, span) in spans.iter().enumerate() {
        match span.get("span_id").and_then(serde_json::Value::as_u64) {
            Some(id) => span_ids.push(id),
            None => {
                return text(
                    StatusCode::BAD_REQUEST,
                    &format!("span {i} has no span_id (an unsigned integer)"),
                );
            }
        }
    }
    let line = journal::encode(pid, &spans);
    let entry = Entry { pid, span_ids };
    let state = state.clone();
    // The write and its fsync block; the answer waits for both.
    let written = tokio::task::spawn_blocking(move || {
        let mut inner = state.inner.lock().expect("lock");
        inner.writer.append(&line)?;
        inner.stats.record(&entry);
        Ok::<_, std::io::Error>(entry.span_ids.len())
    })
    .await;
    match written {
        Ok(Ok(n)) => json(StatusCode::OK, format!("{{\"accepted\":{n}}}").into_bytes()),
        Ok(Err(e)) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("journal write failed: {e}"),
        ),
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

fn json(status: StatusCode, body: Vec<u8>) -> Response<Full<Bytes>> {
    respond(status, "application/json", Bytes::from(body))
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
