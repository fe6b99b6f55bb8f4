//! The trace-agent story of the seed article, on pipehttp.
//!
//! Datadog runs one `trace-agent` per machine and every instrumented app
//! sends its spans to it over one well-known named pipe. The agent may be
//! killed at any moment and restarted on the same name; the apps' tracers
//! carry on without renegotiating anything.
//!
//! - [`agent`]: the agent. It speaks Datadog's intake: `GET /info`,
//!   `PUT`/`POST /v0.4/traces` and `/v0.5/traces` (MessagePack, see
//!   [`payload`]), answered with `{"rate_by_service":…}` only once the
//!   batch is appended to its journal and fsync'd; `GET /stats` tells what
//!   it holds.
//! - [`tracer`]: what an app of ours links in. Spans are batched and queued
//!   in a bounded queue; a sender delivers them as v0.4 payloads and
//!   retries unacknowledged batches with backoff; a full queue drops its
//!   oldest batch and counts it; the app never waits on the agent beyond a
//!   bound.
//! - [`demo`]: the scenario: tracer processes (ours, or Datadog's own
//!   `ddtrace` and `dd-trace` apps, see [`apps`]) send while the agent is
//!   SIGKILLed and restarted, then the journal is checked against what was
//!   made and acknowledged.

pub mod agent;
pub mod apps;
pub mod demo;
pub mod journal;
pub mod payload;
pub mod tracer;

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// One span, in the fields of Datadog's intake (v0.4 and v0.5 carry the
/// same twelve). `span_id` is unique.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Span {
    /// The service that made the span.
    pub service: String,
    /// What was done, e.g. `http.request`.
    pub name: String,
    /// On what, e.g. `GET /users/:id`.
    pub resource: String,
    /// The trace the span belongs to (its low 64 bits).
    pub trace_id: u64,
    /// Unique among all spans.
    pub span_id: u64,
    /// The enclosing span; 0 for a trace's root.
    pub parent_id: u64,
    /// Start, in nanoseconds since the Unix epoch.
    pub start: i64,
    /// Duration in nanoseconds.
    pub duration: i64,
    /// 1 when the operation failed.
    #[serde(default)]
    pub error: i32,
    /// String tags.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub meta: BTreeMap<String, String>,
    /// Numeric tags (the sampling priority among them).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metrics: BTreeMap<String, f64>,
    /// `web`, `db`, `cache`, … (`type` on the wire).
    #[serde(rename = "type", default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
}

/// The pipe the agent listens on unless told otherwise.
pub const DEFAULT_PIPE: &str = "trace-agent";

/// Reads a number of seconds (fractions allowed) for a command-line flag.
///
/// ```
/// use std::time::Duration;
/// assert_eq!(pipehttp_trace_example::parse_secs("0.5"), Ok(Duration::from_millis(500)));
/// ```
pub fn parse_secs(text: &str) -> Result<Duration, String> {
    text.parse::<f64>()
        .ok()
        .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
        .ok_or_else(|| format!("'{text}' is not a number of seconds"))
}
