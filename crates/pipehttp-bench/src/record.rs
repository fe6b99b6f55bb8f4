//! The raw results of a bench run: one JSON line per measurement, written
//! by `bench-record` as `scripts/bench.sh` goes, read by `bench-report`.
//!
//! A measurement is named by a key `SCENARIO.SERVER.RULER`, such as
//! `ka.pipehttp.pb` (keep-alive, pipehttp serve, measured by `pipehttp
//! bench`), and holds a few named figures (see [`metric`]). The last part
//! of the key says which tool's output it was read from.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The names of the figures a measurement can hold.
pub mod metric {
    /// Responses per second.
    pub const RPS: &str = "rps";
    /// Median latency, µs.
    pub const P50: &str = "p50_us";
    /// 99th percentile latency, µs.
    pub const P99: &str = "p99_us";
    /// Body bytes per second, both directions.
    pub const BPS: &str = "bps";
    /// Responses received.
    pub const REQUESTS: &str = "requests";
    /// Requests that failed.
    pub const ERRORS: &str = "errors";
    /// The server's CPU time (user + system) over the run, µs per response.
    pub const CPU: &str = "cpu_us_per_request";
    /// Server RSS before any idle connection, after one request, KiB.
    pub const RSS_BEFORE: &str = "rss_before_kib";
    /// Server RSS with every idle connection open, KiB.
    pub const RSS_WITH: &str = "rss_with_kib";
    /// Server RSS once they have all closed, KiB.
    pub const RSS_AFTER: &str = "rss_after_kib";
    /// `RSS_WITH - RSS_BEFORE`, KiB.
    pub const RSS_GROWTH: &str = "rss_growth_kib";
    /// The growth per connection, bytes.
    pub const PER_CONNECTION: &str = "per_connection_bytes";
    /// Idle connections held open.
    pub const CONNECTIONS: &str = "connections";
}

/// One line of the results file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Line {
    /// A measurement's figures, from round `round`.
    Figures {
        key: String,
        round: u32,
        values: BTreeMap<String, f64>,
    },
    /// A measurement that did not produce figures, and why.
    Failed {
        key: String,
        round: u32,
        message: String,
    },
    /// A fact about the run: the machine, a tool's version, the settings.
    Meta { name: String, value: String },
    /// Measurements that were not taken: `what` is a key, a key's prefix
    /// (`proxy.pipehttp`) or one part of keys (a server, `nginx`, or a
    /// ruler, `oha`).
    Skip { what: String, reason: String },
}

impl Line {
    /// The line as written to the results file.
    #[must_use]
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a results line is always valid JSON")
    }
}

/// The ruler a key names: its last part.
#[must_use]
pub fn ruler_of(key: &str) -> &str {
    key.rsplit('.').next().unwrap_or(key)
}

/// Reads a tool's output into figures, by the ruler that produced it:
/// `pb` (`pipehttp bench --output-format json`), `oha` (`--output-format json`), `h2load`
/// (its text summary), `idle` (the suite's `idle-conns`) or `floor`.
pub fn parse_output(ruler: &str, output: &str) -> Result<BTreeMap<String, f64>, String> {
    match ruler {
        "pb" => parse_pb(&json(output)?),
        "oha" => parse_oha(&json(output)?),
        "h2load" => parse_h2load(output),
        "idle" => parse_idle(&json(output)?),
        "floor" => parse_floor(&json(output)?),
        other => Err(format!(
            "no parser for the ruler '{other}' (pb, oha, h2load, idle, floor)"
        )),
    }
}

fn json(output: &str) -> Result<Value, String> {
    if let Ok(v) = serde_json::from_str(output) {
        return Ok(v);
    }
    // Else the object is the last non-empty line: tools may print notes
    // before it.
    let line = output
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .ok_or("the tool printed nothing")?;
    serde_json::from_str(line).map_err(|e| format!("the tool's output is not JSON ({e}): {line}"))
}

/// Follows a `/`-separated path of object keys to a number.
fn num(v: &Value, path: &str) -> Option<f64> {
    path.split('/').try_fold(v, |v, k| v.get(k))?.as_f64()
}

fn need(v: &Value, path: &str) -> Result<f64, String> {
    num(v, path).ok_or_else(|| format!("the output has no number at {path}"))
}

/// The sum of an object's numeric values (`{"200": 10, "503": 1}`).
fn sum_of(v: &Value, key: &str) -> f64 {
    v.get(key)
        .and_then(Value::as_object)
        .map_or(0.0, |o| o.values().filter_map(Value::as_f64).sum())
}

/// The responses of a status-code count (`{"200": 10, "502": 1}`) that are
/// not 2xx: a server that answers every request with 502 is fast, and its
/// figures measure nothing, so they count as failed requests.
fn not_2xx(v: &Value, key: &str) -> f64 {
    v.get(key).and_then(Value::as_object).map_or(0.0, |o| {
        o.iter()
            .filter(|(status, _)| !status.starts_with('2'))
            .filter_map(|(_, n)| n.as_f64())
            .sum()
    })
}

fn figures<const N: usize>(pairs: [(&str, Option<f64>); N]) -> BTreeMap<String, f64> {
    pairs
        .into_iter()
        .filter_map(|(k, v)| Some((k.to_owned(), v?)))
        .collect()
}

fn parse_pb(v: &Value) -> Result<BTreeMap<String, f64>, String> {
    use metric::*;
    Ok(figures([
        (RPS, Some(need(v, "requests_per_s")?)),
        (REQUESTS, Some(need(v, "responses")?)),
        (ERRORS, Some(sum_of(v, "errors") + not_2xx(v, "statuses"))),
        (P50, num(v, "latency_us/p50")),
        (P99, num(v, "latency_us/p99")),
        (BPS, num(v, "bytes_per_s")),
    ]))
}

fn parse_oha(v: &Value) -> Result<BTreeMap<String, f64>, String> {
    use metric::*;
    let responses = sum_of(v, "statusCodeDistribution");
    // Latencies are in seconds.
    let us = |path| num(v, path).map(|s| s * 1e6);
    Ok(figures([
        (RPS, Some(need(v, "summary/requestsPerSec")?)),
        (REQUESTS, Some(responses)),
        (
            ERRORS,
            Some(sum_of(v, "errorDistribution") + not_2xx(v, "statusCodeDistribution")),
        ),
        (P50, us("latencyPercentiles/p50")),
        (P99, us("latencyPercentiles/p99")),
        (BPS, num(v, "summary/sizePerSec")),
    ]))
}

/// h2load prints a text summary:
/// ```text
/// finished in 4.00s, 76543.21 req/s, 2.34MB/s
/// requests: 306173 total, 306237 started, 306173 done, 306173 succeeded, 0 failed, 0 errored, 0 timeout
/// ```
fn parse_h2load(text: &str) -> Result<BTreeMap<String, f64>, String> {
    use metric::*;
    let line = |prefix: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(prefix))
            .ok_or_else(|| format!("h2load printed no '{prefix}' line"))
    };
    let finished = line("finished in ")?;
    let rps = finished
        .split(", ")
        .find_map(|part| part.strip_suffix(" req/s")?.parse::<f64>().ok())
        .ok_or_else(|| format!("no req/s in h2load's 'finished in {finished}'"))?;
    let requests = line("requests: ")?;
    let count = |what: &str| {
        requests.split(", ").find_map(|part| {
            let (n, name) = part.split_once(' ')?;
            (name == what).then(|| n.parse::<f64>().ok())?
        })
    };
    let succeeded = count("succeeded").ok_or("no 'succeeded' count in h2load's requests line")?;
    // `status codes: 306173 2xx, 0 3xx, 0 4xx, 0 5xx`: all but 2xx failed.
    let not_2xx: f64 = line("status codes: ")
        .map(|codes| {
            codes
                .split(", ")
                .filter_map(|part| part.split_once(' '))
                .filter(|(_, class)| *class != "2xx")
                .filter_map(|(n, _)| n.parse::<f64>().ok())
                .sum()
        })
        .unwrap_or(0.0);
    let failed = count("failed").unwrap_or(0.0) + count("timeout").unwrap_or(0.0) + not_2xx;
    Ok(figures([
        (RPS, Some(rps)),
        (REQUESTS, Some(succeeded)),
        (ERRORS, Some(failed)),
    ]))
}

fn parse_idle(v: &Value) -> Result<BTreeMap<String, f64>, String> {
    use metric::*;
    let before = need(v, "server_rss_kib_before")?;
    let with = need(v, "server_rss_kib_with")?;
    Ok(figures([
        (CONNECTIONS, Some(need(v, "connections")?)),
        (RSS_BEFORE, Some(before)),
        (RSS_WITH, Some(with)),
        (RSS_GROWTH, Some(with - before)),
        (RSS_AFTER, num(v, "server_rss_kib_after_close")),
        (PER_CONNECTION, num(v, "per_connection_bytes")),
    ]))
}

fn parse_floor(v: &Value) -> Result<BTreeMap<String, f64>, String> {
    Ok(figures([
        (
            "unix_rtt_us",
            Some(need(v, "unix/pingpong_blocking/p50_us")?),
        ),
        ("unix_rtt_tokio_us", num(v, "unix/pingpong_tokio/p50_us")),
        ("tcp_rtt_us", num(v, "tcp/pingpong_blocking/p50_us")),
        (
            "unix_stream_bps",
            num(v, "unix/stream_blocking_bytes_per_s"),
        ),
        (
            "unix_stream_tokio_bps",
            num(v, "unix/stream_tokio_bytes_per_s"),
        ),
        ("tcp_stream_bps", num(v, "tcp/stream_blocking_bytes_per_s")),
    ]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> String {
        let path = format!("{}/testdata/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    #[test]
    fn lines_round_trip() {
        let line = Line::Figures {
            key: "ka.pipehttp.pb".into(),
            round: 2,
            values: [("rps".to_owned(), 1.5)].into(),
        };
        let text = line.to_json();
        assert!(
            text.starts_with(r#"{"type":"figures","key":"ka.pipehttp.pb""#),
            "{text}"
        );
        assert_eq!(serde_json::from_str::<Line>(&text).unwrap(), line);
        let skip: Line =
            serde_json::from_str(r#"{"type":"skip","what":"oha","reason":"not installed"}"#)
                .unwrap();
        assert_eq!(
            skip,
            Line::Skip {
                what: "oha".into(),
                reason: "not installed".into()
            }
        );
        assert_eq!(ruler_of("ka.pipehttp.pb"), "pb");
    }

    #[test]
    fn pipehttp_bench_json() {
        let f = parse_output("pb", &fixture("pb.json")).unwrap();
        assert_eq!(f["requests"], 2000.0);
        assert_eq!(f["errors"], 0.0);
        assert!((f["rps"] - 34630.19).abs() < 0.01);
        assert!((f["p50_us"] - 56.031).abs() < 1e-9);
        assert!((f["p99_us"] - 1969.151).abs() < 1e-9);
    }

    #[test]
    fn pipehttp_bench_errors_are_counted() {
        let out = r#"{"requests_per_s": 10.0, "responses": 5, "errors": {"connect": 2, "timeout": 1}, "latency_us": {"p50": null}}"#;
        let f = parse_output("pb", out).unwrap();
        assert_eq!(f["errors"], 3.0);
        assert!(!f.contains_key("p50_us"), "a null percentile is no figure");
        assert!(
            parse_output("pb", "{}")
                .unwrap_err()
                .contains("requests_per_s")
        );
        assert!(parse_output("pb", "").unwrap_err().contains("nothing"));
    }

    /// A server that answers 502 to everything (a proxy that cannot reach
    /// its target) is fast; its answers are failures, by every ruler.
    #[test]
    fn answers_other_than_2xx_are_failed_requests() {
        let pb = r#"{"requests_per_s": 10.0, "responses": 5, "errors": {},
                     "statuses": {"200": 2, "204": 1, "502": 2}}"#;
        let oha = r#"{"summary": {"requestsPerSec": 10.0}, "errorDistribution": {},
                      "statusCodeDistribution": {"200": 3, "404": 1, "502": 1}}"#;
        let h2load = fixture("h2load.txt").replace(
            "status codes: 2000 2xx, 0 3xx, 0 4xx, 0 5xx",
            "status codes: 1990 2xx, 0 3xx, 4 4xx, 6 5xx",
        );
        for (ruler, output, failed) in [
            ("pb", pb, 2.0),
            ("oha", oha, 2.0),
            ("h2load", &h2load, 10.0),
        ] {
            let f = parse_output(ruler, output).unwrap();
            assert_eq!(f["errors"], failed, "{ruler}: {f:?}");
        }
    }

    #[test]
    fn oha_json() {
        let f = parse_output("oha", &fixture("oha.json")).unwrap();
        assert!(f["rps"] > 0.0);
        assert!(f["requests"] > 0.0);
        assert_eq!(f["errors"], 0.0);
        // Seconds became microseconds.
        assert!(f["p50_us"] > 1.0 && f["p50_us"] < f["p99_us"], "{f:?}");
    }

    #[test]
    fn h2load_text() {
        let f = parse_output("h2load", &fixture("h2load.txt")).unwrap();
        assert!((f["rps"] - 22113.86).abs() < 1e-9);
        assert_eq!(f["requests"], 2000.0);
        assert_eq!(f["errors"], 0.0);
        let err = parse_output("h2load", "connect to unix:/x failed").unwrap_err();
        assert!(err.contains("finished in"), "{err}");
    }

    #[test]
    fn idle_and_floor_json() {
        let idle = r#"{"connections": 100, "server_rss_kib_before": 4000, "server_rss_kib_with": 6000,
                       "server_rss_kib_after_close": 4500, "per_connection_bytes": 20480.0}"#;
        let f = parse_output("idle", idle).unwrap();
        assert_eq!(f["rss_growth_kib"], 2000.0);
        assert_eq!(f["rss_after_kib"], 4500.0);
        let floor = r#"{"unix": {"pingpong_blocking": {"p50_us": 8.5}, "stream_blocking_bytes_per_s": 3e9}, "tcp": {}}"#;
        let f = parse_output("floor", floor).unwrap();
        assert_eq!(f["unix_rtt_us"], 8.5);
        assert_eq!(f["unix_stream_bps"], 3e9);
        assert!(!f.contains_key("tcp_rtt_us"));
        assert!(parse_output("wrk", "").unwrap_err().contains("wrk"));
    }
}
