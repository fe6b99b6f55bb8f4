//! The trace-agent story of the seed article, on pipehttp.
//!
//! Datadog runs one `trace-agent` per machine and every instrumented app
//! sends its spans to it over one well-known named pipe. The agent may be
//! killed at any moment and restarted on the same name; the apps' tracers
//! carry on without renegotiating anything.
//!
//! - [`agent`]: the agent. `PUT /v0.4/traces` takes a JSON array of spans
//!   and answers 200 only once the batch is appended to its journal and
//!   fsync'd; `GET /stats` tells what it holds.
//! - [`tracer`]: what an app links in. Spans are batched and queued in a
//!   bounded queue; a sender retries unacknowledged batches with backoff;
//!   a full queue drops its oldest batch and counts it; the app never waits
//!   on the agent beyond a bound.
//! - [`demo`]: the scenario: tracer processes send while the agent is
//!   SIGKILLed and restarted, then the journal is checked against what was
//!   acknowledged.

pub mod agent;
pub mod demo;
pub mod journal;
pub mod tracer;

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// One span, in the fields Datadog's v0.4 API uses. `span_id` is unique.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Span {
    /// The trace the span belongs to.
    pub trace_id: u64,
    /// Unique among all spans.
    pub span_id: u64,
    /// The enclosing span; 0 for a trace's root.
    pub parent_id: u64,
    /// The service that made the span.
    pub service: String,
    /// What was done, e.g. `http.request`.
    pub name: String,
    /// On what, e.g. `GET /users/:id`.
    pub resource: String,
    /// Start, in nanoseconds since the Unix epoch.
    pub start: u64,
    /// Duration in nanoseconds.
    pub duration: u64,
}

/// The request path spans are sent to.
pub const TRACES_PATH: &str = "/v0.4/traces";

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
