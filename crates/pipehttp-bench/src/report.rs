//! The bench report: medians of interleaved rounds, ratios against their
//! anchors, each compared with its goal (declared once, in [`GOALS`]), and
//! the Markdown of `BENCHMARKS.md`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::record::{Line, metric};

/// Everything one run recorded, read from its results file.
#[derive(Debug, Default)]
pub struct Results {
    /// key → metric → (round, value), in file order.
    figures: BTreeMap<String, BTreeMap<String, Vec<(u32, f64)>>>,
    /// (key, round, message), in file order.
    failures: Vec<(String, u32, String)>,
    meta: BTreeMap<String, String>,
    /// (what, reason), in file order.
    skips: Vec<(String, String)>,
}

impl Results {
    /// Reads a results file: one [`Line`] of JSON per line.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut results = Self::default();
        for (n, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let line: Line =
                serde_json::from_str(line).map_err(|e| format!("line {}: {e}", n + 1))?;
            results.add(line);
        }
        Ok(results)
    }

    /// Takes one more line into account.
    pub fn add(&mut self, line: Line) {
        match line {
            Line::Figures { key, round, values } => {
                let entry = self.figures.entry(key).or_default();
                for (metric, value) in values {
                    if value.is_finite() {
                        entry.entry(metric).or_default().push((round, value));
                    }
                }
            }
            Line::Failed {
                key,
                round,
                message,
            } => self.failures.push((key, round, message)),
            Line::Meta { name, value } => {
                self.meta.insert(name, value);
            }
            Line::Skip { what, reason } => self.skips.push((what, reason)),
        }
    }

    /// Every value recorded for `metric` of `key`, any round.
    #[must_use]
    pub fn values(&self, key: &str, metric: &str) -> Vec<f64> {
        self.rounds(key, metric)
            .into_iter()
            .map(|(_, v)| v)
            .collect()
    }

    fn rounds(&self, key: &str, metric: &str) -> Vec<(u32, f64)> {
        self.figures
            .get(key)
            .and_then(|m| m.get(metric))
            .cloned()
            .unwrap_or_default()
    }

    /// The median over rounds of `metric` of `key`.
    #[must_use]
    pub fn median(&self, key: &str, metric: &str) -> Option<f64> {
        median(&self.values(key, metric))
    }

    /// The value of each round (the median, should a round hold several).
    #[must_use]
    pub fn by_round(&self, key: &str, metric: &str) -> BTreeMap<u32, f64> {
        let mut rounds: BTreeMap<u32, Vec<f64>> = BTreeMap::new();
        for (round, value) in self.rounds(key, metric) {
            rounds.entry(round).or_default().push(value);
        }
        rounds
            .into_iter()
            .filter_map(|(r, v)| Some((r, median(&v)?)))
            .collect()
    }

    /// A fact recorded about the run.
    #[must_use]
    pub fn meta(&self, name: &str) -> Option<&str> {
        self.meta.get(name).map(String::as_str)
    }

    /// Why `key` has no figures: a skip that covers it (the key itself, a
    /// prefix of it, or one of its parts: a scenario, server or ruler), or
    /// the first failure of it.
    #[must_use]
    pub fn missing_reason(&self, key: &str) -> Option<String> {
        let covers = |what: &str| {
            key.split('.').any(|part| part == what)
                || key
                    .strip_prefix(what)
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
        };
        if let Some((_, reason)) = self.skips.iter().find(|(what, _)| covers(what)) {
            return Some(reason.clone());
        }
        self.failures
            .iter()
            .find(|(k, _, _)| k == key)
            .map(|(_, round, message)| format!("failed in round {round}: {message}"))
    }
}

/// The median of `values`: the middle one, or the mean of the middle two.
#[must_use]
pub fn median(values: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    })
}

/// `a / b`, unless either is missing or `b` is zero.
#[must_use]
pub fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b != 0.0 => Some(a / b),
        _ => None,
    }
}

/// Which side of its target a figure must be on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    AtLeast,
    AtMost,
}

impl Direction {
    fn symbol(self) -> &'static str {
        match self {
            Self::AtLeast => "≥",
            Self::AtMost => "≤",
        }
    }

    fn holds(self, value: f64, target: f64) -> bool {
        match self {
            Self::AtLeast => value >= target,
            Self::AtMost => value <= target,
        }
    }
}

/// One figure of a measurement: `SCENARIO.SERVER` and a metric; the ruler
/// is added from [`Goal::rulers`].
#[derive(Debug, Clone, Copy)]
pub struct Figure {
    pub key: &'static str,
    pub metric: &'static str,
}

const fn fig(key: &'static str, metric: &'static str) -> Figure {
    Figure { key, metric }
}

/// How a goal's value reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// A ratio, two decimals.
    Ratio,
    /// KiB shown as MiB.
    MiB,
}

/// A goal: `num / den` (or `num` alone) against `target`.
#[derive(Debug, Clone, Copy)]
pub struct Goal {
    /// What is compared, as the report's table shows it.
    pub what: &'static str,
    pub num: Figure,
    /// The anchor; `None` for an absolute figure.
    pub den: Option<Figure>,
    /// The rulers that measure it; the first decides, the others check.
    pub rulers: &'static [&'static str],
    pub target: f64,
    pub direction: Direction,
    pub unit: Unit,
    /// The issue that set it.
    pub issue: u32,
}

const RATIO: Unit = Unit::Ratio;
const KA: &[&str] = &["pb", "oha"];

/// Every goal the run is held to, in the order the report lists them.
pub const GOALS: &[Goal] = &[
    Goal {
        what: "keep-alive, 64 connections: pipehttp / bare tokio + hyper, requests/s",
        num: fig("ka.pipehttp", metric::RPS),
        den: Some(fig("ka.bare", metric::RPS)),
        rulers: KA,
        target: 0.95,
        direction: Direction::AtLeast,
        unit: RATIO,
        issue: 16,
    },
    Goal {
        what: "keep-alive, 64 connections: pipehttp / nginx, requests/s",
        num: fig("ka.pipehttp", metric::RPS),
        den: Some(fig("ka.nginx", metric::RPS)),
        rulers: KA,
        target: 1.0,
        direction: Direction::AtLeast,
        unit: RATIO,
        issue: 16,
    },
    Goal {
        what: "keep-alive: server CPU per request, pipehttp / nginx",
        num: fig("ka.pipehttp", metric::CPU),
        den: Some(fig("ka.nginx", metric::CPU)),
        rulers: KA,
        target: 1.0,
        direction: Direction::AtMost,
        unit: RATIO,
        issue: 16,
    },
    Goal {
        what: "new connection per request: pipehttp / bare tokio + hyper, requests/s",
        num: fig("fresh.pipehttp", metric::RPS),
        den: Some(fig("fresh.bare", metric::RPS)),
        rulers: KA,
        target: 0.95,
        direction: Direction::AtLeast,
        unit: RATIO,
        issue: 16,
    },
    Goal {
        what: "new connection per request: pipehttp / nginx, requests/s",
        num: fig("fresh.pipehttp", metric::RPS),
        den: Some(fig("fresh.nginx", metric::RPS)),
        rulers: KA,
        target: 1.0,
        direction: Direction::AtLeast,
        unit: RATIO,
        issue: 16,
    },
    Goal {
        what: "new connection per request: server CPU per request, pipehttp / nginx",
        num: fig("fresh.pipehttp", metric::CPU),
        den: Some(fig("fresh.nginx", metric::CPU)),
        rulers: KA,
        target: 1.0,
        direction: Direction::AtMost,
        unit: RATIO,
        issue: 16,
    },
    Goal {
        what: "HTTP/2 cleartext, 64 connections: pipehttp / nginx `http2`, requests/s",
        num: fig("h2.pipehttp", metric::RPS),
        den: Some(fig("h2.nginx", metric::RPS)),
        rulers: &["h2load", "pb"],
        target: 1.0,
        direction: Direction::AtLeast,
        unit: RATIO,
        issue: 16,
    },
    Goal {
        what: "`pipehttp::Client` (`bench --client`) / the same connections driven directly, requests/s",
        num: fig("ka.client", metric::RPS),
        den: Some(fig("ka.pipehttp", metric::RPS)),
        rulers: &["pb"],
        target: 0.9,
        direction: Direction::AtLeast,
        unit: RATIO,
        issue: 16,
    },
    Goal {
        what: "one connection, sequential requests: p50 latency, pipehttp / bare tokio + hyper",
        num: fig("one.pipehttp", metric::P50),
        den: Some(fig("one.bare", metric::P50)),
        rulers: KA,
        target: 1.1,
        direction: Direction::AtMost,
        unit: RATIO,
        issue: 16,
    },
    Goal {
        what: "idle keep-alive connections: server RSS growth",
        num: fig("idle.pipehttp", metric::RSS_GROWTH),
        den: None,
        rulers: &["idle"],
        target: 60.0,
        direction: Direction::AtMost,
        unit: Unit::MiB,
        issue: 16,
    },
    Goal {
        what: "after they close: server RSS / idle baseline",
        num: fig("idle.pipehttp", metric::RSS_AFTER),
        den: Some(fig("idle.pipehttp", metric::RSS_BEFORE)),
        rulers: &["idle"],
        target: 1.25,
        direction: Direction::AtMost,
        unit: RATIO,
        issue: 16,
    },
    Goal {
        what: "reverse proxy: `pipehttp proxy` / nginx `proxy_pass`, same upstream, requests/s",
        num: fig("proxy.pipehttp", metric::RPS),
        den: Some(fig("proxy.nginx", metric::RPS)),
        rulers: KA,
        target: 1.0,
        direction: Direction::AtLeast,
        unit: RATIO,
        issue: 13,
    },
    Goal {
        what: "reverse proxy: proxy CPU per request, `pipehttp proxy` / nginx",
        num: fig("proxy.pipehttp", metric::CPU),
        den: Some(fig("proxy.nginx", metric::CPU)),
        rulers: KA,
        target: 1.0,
        direction: Direction::AtMost,
        unit: RATIO,
        issue: 13,
    },
];

/// Whether a goal is met.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Met,
    NotMet,
    /// Not measured, and why.
    Missing(String),
}

/// A goal as this run measured it.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The value by each ruler of the goal, in its order.
    pub by_ruler: Vec<(&'static str, Option<f64>)>,
    /// The deciding ruler's value in each round that measured both sides.
    pub per_round: Vec<f64>,
    pub verdict: Verdict,
}

impl Goal {
    fn key(figure: Figure, ruler: &str) -> String {
        format!("{}.{ruler}", figure.key)
    }

    fn scale(&self) -> f64 {
        match self.unit {
            Unit::Ratio => 1.0,
            Unit::MiB => 1.0 / 1024.0,
        }
    }

    /// The goal's value by one ruler: the ratio of the medians, or the
    /// median alone.
    #[must_use]
    pub fn value(&self, results: &Results, ruler: &str) -> Option<f64> {
        let num = results.median(&Self::key(self.num, ruler), self.num.metric)?;
        let value = match self.den {
            None => Some(num),
            Some(den) => ratio(
                Some(num),
                results.median(&Self::key(den, ruler), den.metric),
            ),
        };
        value.map(|v| v * self.scale())
    }

    /// Measures the goal in `results`.
    #[must_use]
    pub fn evaluate(&self, results: &Results) -> Outcome {
        let by_ruler: Vec<_> = self
            .rulers
            .iter()
            .map(|&r| (r, self.value(results, r)))
            .collect();
        let ruler = self.rulers[0];
        let num = results.by_round(&Self::key(self.num, ruler), self.num.metric);
        let per_round = match self.den {
            None => num.values().map(|v| v * self.scale()).collect(),
            Some(den) => {
                let den = results.by_round(&Self::key(den, ruler), den.metric);
                num.iter()
                    .filter_map(|(round, n)| ratio(Some(*n), den.get(round).copied()))
                    .collect()
            }
        };
        let verdict = match by_ruler[0].1 {
            Some(v) if self.direction.holds(v, self.target) => Verdict::Met,
            Some(_) => Verdict::NotMet,
            None => {
                let reason = std::iter::once(self.num)
                    .chain(self.den)
                    .map(|f| (Self::key(f, ruler), f.metric))
                    .filter(|(key, metric)| results.median(key, metric).is_none())
                    .find_map(|(key, _)| results.missing_reason(&key))
                    .unwrap_or_else(|| "not measured".to_owned());
                Verdict::Missing(reason)
            }
        };
        Outcome {
            by_ruler,
            per_round,
            verdict,
        }
    }

    fn format(&self, value: f64) -> String {
        match self.unit {
            Unit::Ratio => format!("{value:.2}"),
            Unit::MiB => format!("{value:.1} MiB"),
        }
    }

    fn target_text(&self) -> String {
        let target = match self.unit {
            Unit::Ratio => format!("{}", self.target),
            Unit::MiB => format!("{} MiB", self.target),
        };
        format!("{} {target}", self.direction.symbol())
    }
}

/// A ruler's name as the report shows it.
fn ruler_name(ruler: &str) -> &str {
    match ruler {
        "pb" => "pipehttp bench",
        "idle" => "idle-conns",
        other => other,
    }
}

/// How a cell's number reads.
#[derive(Debug, Clone, Copy)]
enum Fmt {
    /// Thousands, one decimal.
    Thousands,
    /// Microseconds, one decimal.
    Micros,
    /// KiB as MiB, one decimal.
    MiB,
    /// Bytes per second as GiB/s, two decimals.
    GiBps,
    /// A whole number.
    Whole,
}

impl Fmt {
    fn show(self, v: f64) -> String {
        match self {
            Self::Thousands => format!("{:.1} k", v / 1000.0),
            Self::Micros => format!("{v:.1} µs"),
            Self::MiB => format!("{:.1} MiB", v / 1024.0),
            Self::GiBps => format!("{:.2} GiB/s", v / f64::from(1u32 << 30)),
            Self::Whole => format!("{v:.0}"),
        }
    }
}

const NA: &str = "n/a";

/// A Markdown table; cells are pipes-escaped as they go in.
struct Table {
    text: String,
}

impl Table {
    fn new(headers: &[&str]) -> Self {
        let mut t = Self {
            text: String::new(),
        };
        t.row(headers.iter().map(ToString::to_string));
        t.text.push('|');
        t.text.push_str(&" --- |".repeat(headers.len()));
        t.text.push('\n');
        t
    }

    fn row(&mut self, cells: impl IntoIterator<Item = String>) {
        self.text.push('|');
        for cell in cells {
            let _ = write!(self.text, " {} |", cell.replace('|', "\\|"));
        }
        self.text.push('\n');
    }
}

/// A column of a figures table: which ruler's which metric.
struct Col {
    header: &'static str,
    ruler: &'static str,
    metric: &'static str,
    fmt: Fmt,
}

const fn col(header: &'static str, ruler: &'static str, metric: &'static str, fmt: Fmt) -> Col {
    Col {
        header,
        ruler,
        metric,
        fmt,
    }
}

/// Rows are (label, `SCENARIO.SERVER`); each cell is the median of its
/// column's figure, or n/a.
fn figures_table(results: &Results, first: &str, rows: &[(&str, &str)], cols: &[Col]) -> String {
    let mut headers = vec![first];
    headers.extend(cols.iter().map(|c| c.header));
    let mut t = Table::new(&headers);
    for (label, key) in rows {
        let mut cells = vec![(*label).to_owned()];
        cells.extend(cols.iter().map(|c| {
            results
                .median(&format!("{key}.{}", c.ruler), c.metric)
                .map_or_else(|| NA.to_owned(), |v| c.fmt.show(v))
        }));
        t.row(cells);
    }
    t.text
}

/// The servers of the detail tables: their label and key part.
const PIPEHTTP: (&str, &str) = ("pipehttp serve (pipe)", "pipehttp");
const BARE: (&str, &str) = ("bare tokio + hyper-util (Unix socket)", "bare");
const NGINX: (&str, &str) = ("nginx, 2 workers, `return 200` (Unix socket)", "nginx");

/// One detail section: a heading, a paragraph, and a figures table whose
/// rows are `SCENARIO.SERVER` for each server.
struct Section {
    heading: String,
    intro: &'static str,
    first: &'static str,
    scenario: &'static str,
    servers: &'static [(&'static str, &'static str)],
    cols: Vec<Col>,
}

fn detail_sections(w: &mut String, results: &Results) {
    let m = |name: &str| results.meta(name).unwrap_or("?").to_owned();
    let rps_cols = || {
        vec![
            col("pipehttp bench", "pb", metric::RPS, Fmt::Thousands),
            col("oha", "oha", metric::RPS, Fmt::Thousands),
            col("p50 (pipehttp bench)", "pb", metric::P50, Fmt::Micros),
            col("server CPU / request", "pb", metric::CPU, Fmt::Micros),
            col("the same, oha's run", "oha", metric::CPU, Fmt::Micros),
        ]
    };
    let sections = [
        Section {
            heading: format!(
                "Keep-alive: {} connections, GET /test (12-byte answer)",
                m("connections")
            ),
            intro: "Requests per second.",
            first: "server",
            scenario: "ka",
            servers: &[PIPEHTTP, BARE, NGINX],
            cols: rps_cols(),
        },
        Section {
            heading: format!(
                "A new connection per request, {} at a time",
                m("fresh_connections")
            ),
            intro: "What .NET's tracer in the article does; the latency includes the connect.",
            first: "server",
            scenario: "fresh",
            servers: &[PIPEHTTP, BARE, NGINX],
            cols: rps_cols(),
        },
        Section {
            heading: format!(
                "HTTP/2 cleartext (prior knowledge), {} connections, one stream each",
                m("connections")
            ),
            intro: "nginx listens with `http2` on a Unix socket of its own.",
            first: "server",
            scenario: "h2",
            servers: &[PIPEHTTP, NGINX],
            cols: vec![
                col("h2load", "h2load", metric::RPS, Fmt::Thousands),
                col("pipehttp bench --http2", "pb", metric::RPS, Fmt::Thousands),
                col(
                    "server CPU / request (h2load)",
                    "h2load",
                    metric::CPU,
                    Fmt::Micros,
                ),
            ],
        },
        Section {
            heading: "`pipehttp::Client`".to_owned(),
            intro: "`pipehttp bench --client` sends every request through `pipehttp::Client`\n\
                    (its pool, retries and response type); without it, `pipehttp bench` drives\n\
                    the same connections (`pipehttp::client::Connector`) with hyper directly.\n\
                    Both load pipehttp serve over the pipe with as many connections as above.",
            first: "load",
            scenario: "ka",
            servers: &[
                ("connections driven directly", "pipehttp"),
                ("through `pipehttp::Client`", "client"),
            ],
            cols: vec![
                col("requests/s", "pb", metric::RPS, Fmt::Thousands),
                col("p50", "pb", metric::P50, Fmt::Micros),
                col("p99", "pb", metric::P99, Fmt::Micros),
                col("server CPU / request", "pb", metric::CPU, Fmt::Micros),
            ],
        },
        Section {
            heading: "One connection, sequential requests".to_owned(),
            intro: "Latency of one request at a time.",
            first: "server",
            scenario: "one",
            servers: &[PIPEHTTP, BARE],
            cols: vec![
                col("p50 (pipehttp bench)", "pb", metric::P50, Fmt::Micros),
                col("p99", "pb", metric::P99, Fmt::Micros),
                col("p50 (oha)", "oha", metric::P50, Fmt::Micros),
                col("requests/s", "pb", metric::RPS, Fmt::Thousands),
            ],
        },
        Section {
            heading: "Reverse proxy".to_owned(),
            intro: "Both proxies listen on a Unix socket and forward to the same upstream\n\
                    (bare tokio + hyper on a Unix socket); nginx keeps up to 64 idle\n\
                    upstream connections (`keepalive 64`). CPU is the proxy's alone.",
            first: "proxy",
            scenario: "proxy",
            servers: &[
                ("`pipehttp proxy`", "pipehttp"),
                ("nginx `proxy_pass`, 2 workers", "nginx"),
            ],
            cols: rps_cols(),
        },
        Section {
            heading: format!("{} idle keep-alive connections", m("idle_count")),
            intro: "Each connection sends one GET /test, reads the answer and stays open.\n\
                    The baseline is the server's RSS after one request; \"after\" is its RSS\n\
                    once every connection has closed and its descriptors are gone.",
            first: "server",
            scenario: "idle",
            servers: &[PIPEHTTP, BARE, NGINX],
            cols: vec![
                col("baseline", "idle", metric::RSS_BEFORE, Fmt::MiB),
                col("with the connections", "idle", metric::RSS_WITH, Fmt::MiB),
                col("growth", "idle", metric::RSS_GROWTH, Fmt::MiB),
                col(
                    "per connection (bytes)",
                    "idle",
                    metric::PER_CONNECTION,
                    Fmt::Whole,
                ),
                col("after they close", "idle", metric::RSS_AFTER, Fmt::MiB),
            ],
        },
    ];
    for section in sections {
        let _ = writeln!(w, "\n## {}\n\n{}\n", section.heading, section.intro);
        let keys: Vec<String> = section
            .servers
            .iter()
            .map(|(_, server)| format!("{}.{server}", section.scenario))
            .collect();
        let rows: Vec<(&str, &str)> = section
            .servers
            .iter()
            .zip(&keys)
            .map(|((label, _), key)| (*label, key.as_str()))
            .collect();
        let _ = write!(
            w,
            "{}",
            figures_table(results, section.first, &rows, &section.cols)
        );
        if section.scenario == "one" {
            floor_note(w, results);
        }
    }
}

/// The raw ping-pong under the one-connection table, when it was measured.
fn floor_note(w: &mut String, results: &Results) {
    let Some(rtt) = results.median("floor.floor", "unix_rtt_us") else {
        return;
    };
    let tokio = results
        .median("floor.floor", "unix_rtt_tokio_us")
        .map_or_else(|| NA.to_owned(), |v| Fmt::Micros.show(v));
    let _ = writeln!(
        w,
        "\nThe floor: a raw Unix-socket ping-pong of 64-byte messages takes {}\n\
         (p50) between two blocking threads, {tokio} between two tokio runtimes.",
        Fmt::Micros.show(rtt)
    );
}

/// Where hand-written notes begin; everything below it in an existing
/// report is carried over.
pub const NOTES_MARKER: &str = "<!-- notes: everything below is kept by scripts/bench.sh -->";

/// The notes of an existing report: its text from [`NOTES_MARKER`] on.
#[must_use]
pub fn notes_of(existing: &str) -> Option<&str> {
    existing.find(NOTES_MARKER).map(|i| &existing[i..])
}

/// The whole report, with `notes` (from [`notes_of`]) at its end.
#[must_use]
pub fn markdown(results: &Results, notes: Option<&str>) -> String {
    let m = |name: &str| results.meta(name).unwrap_or("?").to_owned();
    let mut out = String::new();
    let w = &mut out;
    let _ = writeln!(w, "# Benchmarks\n");
    let _ = writeln!(
        w,
        "Measured by `scripts/bench.sh{}` on {} (finished {}; the run took {}).\n\
         Every figure is the median of {} rounds, interleaved: each round measures\n\
         every figure once, the servers of a comparison one after the other, in\n\
         reverse order every other round. Throughput runs last {} s each.",
        results
            .meta("args")
            .filter(|a| !a.is_empty())
            .map(|a| format!(" {a}"))
            .unwrap_or_default(),
        m("started_at"),
        m("finished_at"),
        m("elapsed"),
        m("rounds"),
        m("seconds"),
    );
    let _ = writeln!(
        w,
        "\n**Figures move on a shared host.** This machine is a virtual machine\n\
         whose host other work shares: requests/s move from one minute to the\n\
         next, so compare figures within one run (the ratios below are), not\n\
         across runs. Server CPU per request moves least."
    );

    let _ = writeln!(w, "\n## The machine\n");
    let mut t = Table::new(&["", ""]);
    let busy = |phase: &str| {
        format!(
            "load average {}, CPUs {} % idle over 1 s{}",
            m(&format!("load_{phase}")),
            m(&format!("idle_{phase}")),
            results
                .meta(&format!("busy_{phase}"))
                .filter(|b| !b.is_empty())
                .map(|b| format!(" (busy: {b})"))
                .unwrap_or_default()
        )
    };
    for (name, value) in [
        ("CPU", format!("{}, {} cores", m("cpu_model"), m("cores"))),
        ("memory", m("memory")),
        ("kernel", m("kernel")),
        ("toolchain", format!("{}, `--release`", m("rustc"))),
        (
            "load generators",
            format!(
                "pipehttp bench (this repository); oha: {}; h2load: {}",
                m("oha"),
                m("h2load")
            ),
        ),
        ("peer", format!("nginx: {}, 2 workers", m("nginx"))),
        (
            "quiet?",
            format!("before: {}; after: {}", busy("before"), busy("after")),
        ),
        ("pinning", m("pinning")),
    ] {
        t.row([name.to_owned(), value]);
    }
    let _ = write!(w, "{}", t.text);
    let _ = writeln!(
        w,
        "\nOn {} cores the load generator and the server share the CPUs: a\n\
         throughput figure is one for the pair, and a cheaper load generator\n\
         leaves more CPU to the server. Server CPU per request is the user +\n\
         system time of the server's processes (nginx: master and workers) over\n\
         the run, from /proc, divided by the responses.",
        m("cores")
    );

    let _ = writeln!(w, "\n## Goals\n");
    let _ = writeln!(
        w,
        "Each goal is a ratio of two medians of the same run (or one median),\n\
         by the first ruler; the other ruler checks it. \"Rounds\" is the range\n\
         of the ratio round by round, for its spread.\n"
    );
    let mut t = Table::new(&["goal", "measured", "other ruler", "rounds", "target", ""]);
    for goal in GOALS {
        let o = goal.evaluate(results);
        let (first, value) = o.by_ruler[0];
        let measured = value.map_or_else(
            || NA.to_owned(),
            |v| format!("{} ({})", goal.format(v), ruler_name(first)),
        );
        let others: Vec<String> = o.by_ruler[1..]
            .iter()
            .map(|(r, v)| {
                format!(
                    "{}: {}",
                    ruler_name(r),
                    v.map_or_else(|| NA.to_owned(), |v| goal.format(v))
                )
            })
            .collect();
        let rounds = match (
            o.per_round.iter().copied().reduce(f64::min),
            o.per_round.iter().copied().reduce(f64::max),
        ) {
            (Some(lo), Some(hi)) if o.per_round.len() > 1 => {
                format!("{}–{}", goal.format(lo), goal.format(hi))
            }
            _ => String::new(),
        };
        let verdict = match &o.verdict {
            Verdict::Met => "met".to_owned(),
            Verdict::NotMet => "**not met**".to_owned(),
            Verdict::Missing(reason) => format!("n/a: {reason}"),
        };
        t.row([
            format!("{} (#{})", goal.what, goal.issue),
            measured,
            others.join("; "),
            rounds,
            goal.target_text(),
            verdict,
        ]);
    }
    let _ = write!(w, "{}", t.text);

    detail_sections(w, results);

    let _ = writeln!(w, "\n## Big transfers over the pipe, one connection\n");
    let stream = results.median("floor.floor", "unix_stream_bps");
    let mut t = Table::new(&["", "bandwidth", "/ raw Unix-socket stream"]);
    let big = [
        (
            "raw Unix-socket stream (floor)",
            "floor.floor",
            "unix_stream_bps",
        ),
        (
            "GET /bytes/64 MiB (pipehttp bench)",
            "big-get.pipehttp.pb",
            metric::BPS,
        ),
        (
            "POST /echo, 64 MiB up and back (bytes both ways / time)",
            "big-post.pipehttp.pb",
            metric::BPS,
        ),
    ];
    for (label, key, metric) in big {
        let v = results.median(key, metric);
        t.row([
            label.to_owned(),
            v.map_or_else(|| NA.to_owned(), |v| Fmt::GiBps.show(v)),
            ratio(v, stream).map_or_else(|| NA.to_owned(), |r| format!("{r:.2}")),
        ]);
    }
    let _ = write!(w, "{}", t.text);

    let _ = writeln!(w, "\n## Not measured, or not cleanly\n");
    let mut any = false;
    for (what, reason) in &results.skips {
        any = true;
        let _ = writeln!(w, "- `{what}`: {reason}");
    }
    for (key, round, message) in &results.failures {
        any = true;
        let _ = writeln!(w, "- `{key}`, round {round}: {message}");
    }
    for (key, metrics) in &results.figures {
        let errors: f64 = metrics
            .get(metric::ERRORS)
            .map_or(0.0, |v| v.iter().map(|(_, e)| e).sum());
        if errors > 0.0 {
            any = true;
            let _ = writeln!(w, "- `{key}`: {errors:.0} failed requests over all rounds");
        }
    }
    if !any {
        let _ = writeln!(w, "Everything was measured, without a failed request.");
    }

    let commands: Vec<(&str, &str)> = results
        .meta
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix("command.")?, v.as_str())))
        .collect();
    if !commands.is_empty() {
        let _ = writeln!(
            w,
            "\n## The commands\n\n\
             Servers and load generators as the last round ran them (`$WORK` is the\n\
             run's scratch directory; pipe NAME lives at `$WORK/CoreFxPipe_NAME`).\n"
        );
        let _ = writeln!(w, "```sh");
        for (name, value) in results
            .meta
            .iter()
            .filter_map(|(k, v)| Some((k.strip_prefix("server.")?, v)))
        {
            let _ = writeln!(w, "# server {name}: {value}");
        }
        for (key, command) in commands {
            let _ = writeln!(w, "{key:<22} {command}");
        }
        let _ = writeln!(w, "```");
    }

    if let Some(notes) = notes {
        let _ = writeln!(w);
        let _ = write!(w, "{}", notes.trim_end());
        let _ = writeln!(w);
    } else {
        let _ = writeln!(w, "\n{NOTES_MARKER}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figures(key: &str, round: u32, values: &[(&str, f64)]) -> Line {
        Line::Figures {
            key: key.to_owned(),
            round,
            values: values.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect(),
        }
    }

    fn results(lines: Vec<Line>) -> Results {
        let text: String = lines.iter().map(|l| l.to_json() + "\n").collect();
        Results::parse(&text).unwrap()
    }

    #[test]
    fn medians() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0]), Some(3.0));
        assert_eq!(median(&[5.0, 1.0, 3.0]), Some(3.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[f64::NAN, 2.0, 4.0]), Some(3.0));
    }

    #[test]
    fn ratios() {
        assert_eq!(ratio(Some(3.0), Some(2.0)), Some(1.5));
        assert_eq!(ratio(Some(3.0), Some(0.0)), None);
        assert_eq!(ratio(None, Some(2.0)), None);
        assert_eq!(ratio(Some(1.0), None), None);
    }

    #[test]
    fn results_file_errors_name_the_line() {
        let err =
            Results::parse("\n{\"type\":\"meta\",\"name\":\"a\",\"value\":\"b\"}\nnot json\n")
                .unwrap_err();
        assert!(err.starts_with("line 3:"), "{err}");
    }

    #[test]
    fn medians_are_per_key_and_metric_and_rounds_keep_their_number() {
        let r = results(vec![
            figures("ka.pipehttp.pb", 1, &[("rps", 100.0), ("p50_us", 9.0)]),
            figures("ka.pipehttp.pb", 2, &[("rps", 300.0)]),
            figures("ka.pipehttp.pb", 3, &[("rps", 200.0)]),
            figures("ka.bare.pb", 1, &[("rps", 1000.0)]),
        ]);
        assert_eq!(r.median("ka.pipehttp.pb", "rps"), Some(200.0));
        assert_eq!(r.median("ka.pipehttp.pb", "p50_us"), Some(9.0));
        assert_eq!(r.median("ka.pipehttp.oha", "rps"), None);
        assert_eq!(
            r.by_round("ka.pipehttp.pb", "rps"),
            [(1, 100.0), (2, 300.0), (3, 200.0)].into()
        );
    }

    fn goal(what: &str) -> &'static Goal {
        GOALS.iter().find(|g| g.what.starts_with(what)).unwrap()
    }

    #[test]
    fn every_goal_is_declared_once_and_sane() {
        for (i, g) in GOALS.iter().enumerate() {
            assert!(!g.rulers.is_empty(), "{}", g.what);
            assert!(g.target > 0.0, "{}", g.what);
            assert!(
                GOALS[..i].iter().all(|o| o.what != g.what),
                "{} twice",
                g.what
            );
        }
    }

    #[test]
    fn ratio_goals_use_the_medians_of_each_side_and_each_ruler() {
        let r = results(vec![
            figures("ka.pipehttp.pb", 1, &[("rps", 90.0)]),
            figures("ka.bare.pb", 1, &[("rps", 100.0)]),
            figures("ka.bare.pb", 2, &[("rps", 100.0)]),
            figures("ka.pipehttp.pb", 2, &[("rps", 97.0)]),
            figures("ka.pipehttp.pb", 3, &[("rps", 96.0)]),
            figures("ka.bare.pb", 3, &[("rps", 100.0)]),
            figures("ka.pipehttp.oha", 1, &[("rps", 80.0)]),
            figures("ka.bare.oha", 1, &[("rps", 100.0)]),
        ]);
        let o = goal("keep-alive, 64 connections: pipehttp / bare").evaluate(&r);
        assert_eq!(o.by_ruler, vec![("pb", Some(0.96)), ("oha", Some(0.8))]);
        assert_eq!(o.per_round, vec![0.9, 0.97, 0.96]);
        // The first ruler decides.
        assert_eq!(o.verdict, Verdict::Met);
    }

    #[test]
    fn at_most_goals_and_absolute_goals() {
        let r = results(vec![
            figures("ka.pipehttp.pb", 1, &[("cpu_us_per_request", 6.0)]),
            figures("ka.nginx.pb", 1, &[("cpu_us_per_request", 5.0)]),
            figures(
                "idle.pipehttp.idle",
                1,
                &[
                    ("rss_before_kib", 6000.0),
                    ("rss_growth_kib", 61440.0),
                    ("rss_after_kib", 7500.0),
                ],
            ),
        ]);
        let cpu = goal("keep-alive: server CPU").evaluate(&r);
        assert_eq!(cpu.by_ruler[0], ("pb", Some(1.2)));
        assert_eq!(cpu.verdict, Verdict::NotMet);
        // Exactly on target is met: 60 MiB of growth, 1.25 × the baseline.
        let growth = goal("idle keep-alive connections").evaluate(&r);
        assert_eq!(growth.by_ruler, vec![("idle", Some(60.0))]);
        assert_eq!(growth.verdict, Verdict::Met);
        let after = goal("after they close").evaluate(&r);
        assert_eq!(after.by_ruler, vec![("idle", Some(1.25))]);
        assert_eq!(after.verdict, Verdict::Met);
    }

    #[test]
    fn missing_figures_say_why() {
        let r = results(vec![
            Line::Skip {
                what: "proxy.pipehttp".into(),
                reason: "not available in this build".into(),
            },
            Line::Skip {
                what: "h2load".into(),
                reason: "h2load is not installed".into(),
            },
            figures("proxy.nginx.pb", 1, &[("rps", 10.0)]),
            Line::Failed {
                key: "ka.client.pb".into(),
                round: 2,
                message: "exit status 1".into(),
            },
        ]);
        let proxy = goal("reverse proxy: `pipehttp proxy`").evaluate(&r);
        assert_eq!(
            proxy.verdict,
            Verdict::Missing("not available in this build".into())
        );
        let h2 = goal("HTTP/2").evaluate(&r);
        assert_eq!(
            h2.verdict,
            Verdict::Missing("h2load is not installed".into())
        );
        let client = goal("`pipehttp::Client`").evaluate(&r);
        assert_eq!(
            client.verdict,
            Verdict::Missing("failed in round 2: exit status 1".into())
        );
        let one = goal("one connection").evaluate(&r);
        assert_eq!(one.verdict, Verdict::Missing("not measured".into()));
        // A prefix covers whole parts of a key only.
        assert_eq!(r.missing_reason("proxy.pipehttpx.pb"), None);
    }

    #[test]
    fn markdown_shows_goals_tables_skips_and_keeps_notes() {
        let mut lines = vec![
            Line::Meta {
                name: "rounds".into(),
                value: "3".into(),
            },
            Line::Meta {
                name: "command.ka.pipehttp.pb".into(),
                value: "pipehttp bench http://pipe:/x:/test -c 64".into(),
            },
            Line::Skip {
                what: "oha".into(),
                reason: "oha is not installed".into(),
            },
        ];
        for round in 1..=3 {
            lines.push(figures(
                "ka.pipehttp.pb",
                round,
                &[
                    ("rps", 120_000.0),
                    ("cpu_us_per_request", 6.0),
                    ("errors", 0.0),
                ],
            ));
            lines.push(figures(
                "ka.bare.pb",
                round,
                &[("rps", 100_000.0 + f64::from(round) * 10_000.0)],
            ));
            lines.push(figures(
                "ka.nginx.pb",
                round,
                &[("rps", 150_000.0), ("errors", 2.0)],
            ));
        }
        let r = results(lines);
        let old =
            format!("# Benchmarks\nold tables\n{NOTES_MARKER}\n## Where the time goes\nprofiles\n");
        let md = markdown(&r, notes_of(&old));
        let row = |start: &str| testkit::lines::starting_with(&md, start);
        let goal_row = row("| keep-alive, 64 connections: pipehttp / bare");
        // 120 k / median(110, 120, 130) k = 1.0; rounds 120/130 .. 120/110.
        assert!(
            goal_row.contains("| 1.00 (pipehttp bench) | oha: n/a | 0.92–1.09 | ≥ 0.95 | met |"),
            "{goal_row}"
        );
        let nginx_row = row("| keep-alive, 64 connections: pipehttp / nginx");
        assert!(nginx_row.ends_with("| ≥ 1 | **not met** |"), "{nginx_row}");
        let proxy_row = row("| reverse proxy: `pipehttp proxy` / nginx `proxy_pass`");
        assert!(proxy_row.ends_with("| n/a: not measured |"), "{proxy_row}");
        assert!(
            md.contains("| pipehttp serve (pipe) | 120.0 k | n/a | n/a | 6.0 µs | n/a |"),
            "{md}"
        );
        assert!(md.contains("- `oha`: oha is not installed"));
        assert!(md.contains("- `ka.nginx.pb`: 6 failed requests over all rounds"));
        assert!(md.contains("ka.pipehttp.pb         pipehttp bench http://pipe:/x:/test -c 64"));
        assert!(md.ends_with(&format!(
            "{NOTES_MARKER}\n## Where the time goes\nprofiles\n"
        )));
        assert!(!md.contains("old tables"));
        // Without earlier notes the marker still ends the report.
        assert!(markdown(&r, None).ends_with(&format!("{NOTES_MARKER}\n")));
    }
}
