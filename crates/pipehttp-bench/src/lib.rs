//! pipehttp's benchmark suite. The binaries are driven by
//! `scripts/bench.sh`, which writes `BENCHMARKS.md`:
//!
//! - `floor`: the machine's floor, a raw Unix-socket (and TCP) ping-pong
//!   round trip and a raw stream's bandwidth, blocking and with tokio;
//! - `bare-hyper`: the server a Rust user would write by hand with tokio and
//!   hyper-util, answering `Hello world!` on a Unix socket or TCP;
//! - `sample-server`: pipehttp's sample app on a runtime flavour of choice,
//!   to show what the flavour costs;
//! - `idle-conns`: opens thousands of idle keep-alive connections to a
//!   server and reports its resident memory with them and after they close;
//! - `bench-record`: runs one load generator against a server, reads the
//!   server's CPU time around it, and appends the figures as one JSON line
//!   to the run's results file (see [`record`]);
//! - `bench-report`: turns a results file into `BENCHMARKS.md`: medians of
//!   the rounds, ratios against their anchors, each against its goal (see
//!   [`report`]).
//!
//! The criterion benchmarks in `benches/` time the library's hot pure
//! functions (address parsing, the client's per-request path) so that
//! regressions show up in review.

use std::time::Duration;

pub mod procfs;
pub mod record;
pub mod report;

/// The answer of every baseline server, the same bytes pipehttp's sample
/// app gives on `GET /test`.
pub const HELLO: &[u8] = b"Hello world!";

/// A tiny flag parser: `--name value` pairs and bare `--flag`s, so the
/// bench binaries need no argument crate.
#[derive(Debug)]
pub struct Flags {
    args: Vec<String>,
}

impl Flags {
    /// The process's own arguments.
    #[must_use]
    pub fn from_env() -> Self {
        Self {
            args: std::env::args().skip(1).collect(),
        }
    }

    /// Whether `--name` was given.
    #[must_use]
    pub fn has(&self, name: &str) -> bool {
        self.args.iter().any(|a| a == name)
    }

    /// The value after `--name`, if any.
    #[must_use]
    pub fn value(&self, name: &str) -> Option<&str> {
        let i = self.args.iter().position(|a| a == name)?;
        self.args.get(i + 1).map(String::as_str)
    }

    /// The value after `--name`, parsed, or `default`. Exits with a message
    /// when it does not parse.
    pub fn parse_or<T: std::str::FromStr>(&self, name: &str, default: T) -> T {
        match self.value(name) {
            None => default,
            Some(text) => text.parse().unwrap_or_else(|_| {
                eprintln!("{name}: cannot parse '{text}'");
                std::process::exit(2)
            }),
        }
    }

    /// A duration in (fractional) seconds after `--name`, or `default`.
    pub fn seconds_or(&self, name: &str, default: f64) -> Duration {
        Duration::from_secs_f64(self.parse_or(name, default))
    }
}

/// Microseconds, for reports.
#[must_use]
pub fn micros(nanos: u64) -> f64 {
    nanos as f64 / 1000.0
}
