//! What a run counts: errors by kind, bytes, and latencies.

use super::*;

/// Why a request failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum ErrorKind {
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
    pub(super) fn as_str(self) -> &'static str {
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

    pub(super) fn of_hyper(e: &hyper::Error) -> Self {
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

    pub(super) fn of_pipehttp(e: &Error) -> Self {
        if e.is_connect() {
            ErrorKind::Connect
        } else if e.is_timeout() {
            ErrorKind::Timeout
        } else {
            ErrorKind::Other
        }
    }
}

/// One failed request: its kind and what it said.
pub(super) struct Fail {
    pub(super) kind: ErrorKind,
    pub(super) message: String,
}

impl Fail {
    pub(super) fn hyper(e: &hyper::Error) -> Self {
        Self {
            kind: ErrorKind::of_hyper(e),
            message: error_chain(e),
        }
    }

    pub(super) fn handshake(e: &hyper::Error) -> Self {
        Self {
            kind: ErrorKind::Handshake,
            message: error_chain(e),
        }
    }

    pub(super) fn pipehttp(e: &Error) -> Self {
        Self {
            kind: ErrorKind::of_pipehttp(e),
            message: crate::errors::describe(e),
        }
    }
}

pub(super) fn error_chain(e: &dyn std::error::Error) -> String {
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
pub(super) struct Stats {
    pub(super) latency: Histogram<u64>,
    /// (status, count), few enough that a linear search beats a map.
    pub(super) statuses: Vec<(u16, u64)>,
    pub(super) errors: Vec<(ErrorKind, u64)>,
    pub(super) first_error: Option<String>,
    pub(super) received: u64,
    pub(super) sent: u64,
    pub(super) connections: u64,
    /// Connections opened to replace one the server closed or said it
    /// closes (`Connection: close`, GOAWAY): HTTP at work, not failures.
    pub(super) reconnects: u64,
    /// Requests the server left unanswered while closing in order, sent
    /// once more on a new connection; each counts once, as its last try.
    pub(super) retries: u64,
}

impl Stats {
    pub(super) fn new() -> Self {
        Self {
            latency: Histogram::new_with_max(MAX_LATENCY_NS, 3)
                .expect("constant histogram bounds are valid"),
            statuses: Vec::new(),
            errors: Vec::new(),
            first_error: None,
            received: 0,
            sent: 0,
            connections: 0,
            reconnects: 0,
            retries: 0,
        }
    }

    pub(super) fn record(
        &mut self,
        elapsed: Duration,
        outcome: Result<(StatusCode, u64), Fail>,
        sent: u64,
    ) {
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

    pub(super) fn merge(&mut self, other: Stats) {
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
        self.reconnects += other.reconnects;
        self.retries += other.retries;
    }

    /// Requests that got a whole response, whatever its status.
    pub(super) fn responses(&self) -> u64 {
        self.statuses.iter().map(|(_, n)| n).sum()
    }

    pub(super) fn successes(&self) -> u64 {
        self.statuses
            .iter()
            .filter(|(s, _)| (200..300).contains(s))
            .map(|(_, n)| n)
            .sum()
    }
}

pub(super) fn bump<K: PartialEq>(counts: &mut Vec<(K, u64)>, key: K, n: u64) {
    match counts.iter_mut().find(|(k, _)| *k == key) {
        Some((_, count)) => *count += n,
        None => counts.push((key, n)),
    }
}

pub(super) type Shared = Rc<RefCell<Stats>>;

#[cfg(test)]
mod tests {
    use super::*;

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
