//! What a person or a script reads at the end, and the progress bar meanwhile.

use super::*;

/// A progress bar on stderr while a person watches.
pub(super) struct Progress {
    pub(super) bar: Option<indicatif::ProgressBar>,
}

impl Progress {
    pub(super) fn new(limit: &Limit, enabled: bool) -> Self {
        if !enabled {
            return Self { bar: None };
        }
        let (bar, template) = match limit {
            Limit::Count(n) => (
                indicatif::ProgressBar::new(*n),
                "{elapsed_precise} {wide_bar} {pos}/{len} requests, {per_sec}",
            ),
            Limit::Until(d) => (
                indicatif::ProgressBar::new(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
                "{elapsed_precise} {wide_bar} {msg}",
            ),
        };
        bar.set_style(
            indicatif::ProgressStyle::with_template(template)
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        Self { bar: Some(bar) }
    }

    pub(super) fn update(&self, run: &Run, start: Instant) {
        let Some(bar) = &self.bar else { return };
        let done = run.done.load(Ordering::Relaxed);
        if run.deadline.is_some() {
            let elapsed = start.elapsed();
            bar.set_position(u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX));
            let rate = done as f64 / elapsed.as_secs_f64().max(1e-9);
            bar.set_message(format!("{done} requests, {rate:.0}/s"));
        } else {
            bar.set_position(done);
        }
    }

    pub(super) fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// The results of a run, printed for people or as JSON.
pub(super) struct Report<'a> {
    pub(super) plan: &'a Plan,
    pub(super) connections: usize,
    pub(super) threads: usize,
    pub(super) elapsed: Duration,
    pub(super) stats: &'a Stats,
}

impl Report<'_> {
    pub(super) fn rate(&self, n: u64) -> f64 {
        n as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub(super) fn percentiles(&self) -> [(&'static str, Option<Duration>); 8] {
        let h = &self.stats.latency;
        let empty = h.is_empty();
        let at = |q: f64| (!empty).then(|| Duration::from_nanos(h.value_at_quantile(q)));
        [
            ("min", (!empty).then(|| Duration::from_nanos(h.min()))),
            ("p50", at(0.5)),
            ("p90", at(0.9)),
            ("p99", at(0.99)),
            ("p99.9", at(0.999)),
            ("max", (!empty).then(|| Duration::from_nanos(h.max()))),
            (
                "mean",
                (!empty).then(|| Duration::from_secs_f64(h.mean() / 1e9)),
            ),
            (
                "stdev",
                (!empty).then(|| Duration::from_secs_f64(h.stdev() / 1e9)),
            ),
        ]
    }

    pub(super) fn json(&self) -> String {
        let s = self.stats;
        let latency: serde_json::Map<String, serde_json::Value> = self
            .percentiles()
            .iter()
            .map(|(name, d)| {
                let value = d.map_or(serde_json::Value::Null, |d| {
                    serde_json::json!(d.as_secs_f64() * 1e6)
                });
                (name.replace('.', "_"), value)
            })
            .collect();
        let statuses: serde_json::Map<String, serde_json::Value> = s
            .statuses
            .iter()
            .map(|(status, n)| (status.to_string(), serde_json::json!(n)))
            .collect();
        let errors: serde_json::Map<String, serde_json::Value> = s
            .errors
            .iter()
            .map(|(kind, n)| (kind.as_str().to_owned(), serde_json::json!(n)))
            .collect();
        let requests = s.responses() + s.errors.iter().map(|(_, n)| n).sum::<u64>();
        serde_json::json!({
            "target": self.plan.target.to_string(),
            "endpoint": self.plan.target.endpoint().to_string(),
            "transport": transport(self.plan.target.endpoint()),
            "protocol": self.plan.protocol(),
            "method": self.plan.method.as_str(),
            "connections": self.connections,
            "threads": self.threads,
            "new_connection_per_request": self.plan.fresh,
            "via_client": self.plan.client.is_some(),
            "duration_s": self.elapsed.as_secs_f64(),
            "requests": requests,
            "responses": s.responses(),
            "ok": s.successes(),
            "requests_per_s": self.rate(s.responses()),
            "bytes_received": s.received,
            "bytes_sent": s.sent,
            "bytes_per_s": self.rate(s.received + s.sent),
            "connections_opened": s.connections,
            "reconnects": s.reconnects,
            "retries": s.retries,
            "statuses": statuses,
            "errors": errors,
            "first_error": s.first_error,
            "latency_us": latency,
        })
        .to_string()
    }

    pub(super) fn print(&self) {
        let s = self.stats;
        let plan = self.plan;
        let mode = if plan.fresh {
            "a new connection per request"
        } else {
            "keep-alive"
        };
        println!("Target:       {}", plan.target);
        println!("Endpoint:     {}", plan.target.endpoint());
        println!(
            "Load:         {} {}, {} connection(s), {mode}, {} thread(s){}",
            plan.method,
            plan.protocol(),
            self.connections,
            self.threads,
            if plan.client.is_some() {
                ", through pipehttp::Client"
            } else {
                ""
            }
        );
        println!(
            "Requests:     {} in {:.3} s: {:.1} requests/s",
            s.responses(),
            self.elapsed.as_secs_f64(),
            self.rate(s.responses())
        );
        println!(
            "Bytes:        {} received, {} sent (bodies): {}/s",
            human_bytes(s.received as f64),
            human_bytes(s.sent as f64),
            human_bytes(self.rate(s.received + s.sent))
        );
        let statuses: Vec<String> = s
            .statuses
            .iter()
            .map(|(status, n)| format!("{status}: {n}"))
            .collect();
        println!(
            "Statuses:     {}",
            if statuses.is_empty() {
                "none".to_owned()
            } else {
                statuses.join(", ")
            }
        );
        let errors: Vec<String> = s
            .errors
            .iter()
            .map(|(kind, n)| format!("{}: {n}", kind.as_str()))
            .collect();
        if errors.is_empty() {
            println!("Errors:       none");
        } else {
            println!("Errors:       {}", errors.join(", "));
            if let Some(first) = &s.first_error {
                println!("First error:  {first}");
            }
        }
        let latency: Vec<String> = self
            .percentiles()
            .iter()
            .map(|(name, d)| format!("{name} {}", d.map_or("-".into(), human_duration)))
            .collect();
        println!("Latency:      {}", latency.join("  "));
        if plan.client.is_some() {
            println!("Connections:  pooled by pipehttp::Client");
        } else {
            let mut line = format!("Connections:  {} opened", s.connections);
            if s.reconnects > 0 {
                line += &format!(
                    ", {} of them to replace one the server closed in order",
                    s.reconnects
                );
            }
            if s.retries > 0 {
                line += &format!("; {} request(s) it left unanswered sent again", s.retries);
            }
            println!("{line}");
        }
    }
}

pub(super) fn transport(endpoint: &Endpoint) -> &'static str {
    match endpoint {
        Endpoint::Pipe(_) => "pipe",
        Endpoint::Unix(_) => "unix",
        Endpoint::Tcp { .. } => "tcp",
    }
}

pub(super) fn human_duration(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us < 1000.0 {
        format!("{us:.1} µs")
    } else if us < 1_000_000.0 {
        format!("{:.2} ms", us / 1000.0)
    } else {
        format!("{:.3} s", us / 1e6)
    }
}

pub(super) fn human_bytes(n: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut n = n;
    let mut unit = 0;
    while n >= 1024.0 && unit + 1 < UNITS.len() {
        n /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n:.0} {}", UNITS[unit])
    } else {
        format!("{n:.2} {}", UNITS[unit])
    }
}
