//! The scenario: tracer processes send spans to the agent while the agent
//! is SIGKILLed and restarted on the same pipe name, then the journal is
//! held against what the tracers made and were told.
//!
//! The program runs itself in three roles, so that one binary is all that
//! `cargo run --example trace-demo` has to build: with no role it is the
//! scenario; `trace-demo agent …` is the agent, `trace-demo tracer …` a
//! tracer of ours. With our tracers it ends with one line,
//! `sent=N acknowledged=N received=N lost=0 duplicates=D`, and fails when
//! `lost` (acknowledged spans missing from the journal) is not 0.
//!
//! With `--real` the senders are apps traced by Datadog's own tracers
//! ([`apps`]): ddtrace apps, and dd-trace apps where Node and
//! dd-trace are installed. Those tracers tell their app nothing about
//! acknowledgements, so the scenario holds the span ids each app made
//! against the journal and ends with
//! `made=N received=N missing=M duplicates=D arrived=P%`; it fails when
//! fewer than `--min-arrival` percent arrived.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand};
use pipehttp::Client;

use crate::agent::{self, AgentArgs};
use crate::apps::{self, Arrival, Lang, Runtime};
use crate::journal;
use crate::parse_secs;
use crate::tracer::{self, Summary, TracerArgs};

type BoxError = Box<dyn std::error::Error>;

/// How big the scenario is.
#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// Tracer processes of ours.
    #[arg(long, value_name = "N", default_value_t = 4, conflicts_with = "real")]
    pub tracers: usize,
    /// Spans each tracer (or app) creates.
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    pub spans: u32,
    /// Times the agent is killed with SIGKILL and restarted.
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub kills: usize,
    /// Spans per batch (our tracers).
    #[arg(long, value_name = "N", default_value_t = 100, conflicts_with = "real")]
    pub batch_size: usize,
    /// Batches each of our tracers queues at most.
    #[arg(
        long,
        value_name = "BATCHES",
        default_value_t = 256,
        conflicts_with = "real"
    )]
    pub queue: usize,
    /// Spans per second each tracer's app (or each app) makes; 0: as fast
    /// as it can [default: 5000; with --real 2000, so that the kills fall
    /// in a stream of 5 s].
    #[arg(long, value_name = "N")]
    pub rate: Option<f64>,
    /// How long the "operator" takes to restart a killed agent.
    #[arg(long, value_name = "SECS", default_value = "0.3", value_parser = parse_secs)]
    pub restart_delay: Duration,
    /// Pipe name [default: trace-agent-PID].
    #[arg(long, value_name = "NAME")]
    pub pipe: Option<String>,
    /// Send with Datadog's own tracers instead of ours: ddtrace (Python)
    /// apps and, where Node and dd-trace are installed, dd-trace apps.
    #[arg(long)]
    pub real: bool,
    /// With --real: apps traced by ddtrace.
    #[arg(long, value_name = "N", default_value_t = 2, requires = "real")]
    pub python_apps: usize,
    /// With --real: apps traced by dd-trace (none where Node or dd-trace
    /// is missing).
    #[arg(long, value_name = "N", default_value_t = 2, requires = "real")]
    pub node_apps: usize,
    /// With --real: the Python that has ddtrace [default: python/.venv
    /// beside the app, else python3].
    #[arg(long, value_name = "PATH", requires = "real")]
    pub python: Option<PathBuf>,
    /// With --real: the node to run dd-trace apps with [default: node].
    #[arg(long, value_name = "PATH", requires = "real")]
    pub node: Option<PathBuf>,
    /// With --real: how long a dd-trace app stays up after its last span,
    /// so that dd-trace's retry of a payload sent into a kill (5 to 7.5 s
    /// later) still goes out: its last flush (0.5 s), the retry, a margin.
    #[arg(long, value_name = "SECS", default_value = "9", value_parser = parse_secs, requires = "real")]
    pub node_linger: Duration,
    /// With --real: the least share of span ids that must reach the
    /// journal, in percent; below it the command fails.
    #[arg(
        long,
        value_name = "PERCENT",
        default_value_t = 99.0,
        requires = "real"
    )]
    pub min_arrival: f64,
}

#[derive(Debug, Parser)]
#[command(
    name = "trace-demo",
    about = "Tracers send spans over a named pipe while the agent is SIGKILLed and restarted",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    role: Option<Role>,
    #[command(flatten)]
    demo: DemoArgs,
}

#[derive(Debug, Subcommand)]
enum Role {
    /// Run as the agent.
    #[command(hide = true)]
    Agent(AgentArgs),
    /// Run as a tracer.
    #[command(hide = true)]
    Tracer(TracerArgs),
}

/// `trace-demo`'s main.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.role {
        Some(Role::Agent(args)) => agent::run_blocking(args),
        Some(Role::Tracer(args)) => tracer::run(args),
        None if cli.demo.real => run_real(&cli.demo),
        None => run(&cli.demo),
    }
}

/// What the scenario found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Spans the tracers sent at least once.
    pub sent: u64,
    /// Spans the agent acknowledged.
    pub acknowledged: u64,
    /// Distinct span ids in the journal.
    pub received: u64,
    /// Acknowledged spans missing from the journal.
    pub lost: u64,
    /// Journal entries beyond the first for a span id (retried batches).
    pub duplicates: u64,
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "sent={} acknowledged={} received={} lost={} duplicates={}",
            self.sent, self.acknowledged, self.received, self.lost, self.duplicates
        )
    }
}

/// Runs the scenario and prints its last line; fails unless `lost=0`.
pub fn run(args: &DemoArgs) -> ExitCode {
    let dir = scenario_dir();
    conclude(&dir, scenario(args, &dir), |outcome| {
        (outcome.lost == 0)
            .then_some(())
            .ok_or_else(|| format!("journal and reports kept in {}", dir.display()))
    })
}

/// Where a scenario keeps its journal and reports.
fn scenario_dir() -> PathBuf {
    std::env::temp_dir().join(format!("trace-demo-{}", std::process::id()))
}

/// Prints the outcome as the last line, or the error; removes `dir` when
/// `judge` passes the outcome and says why it is kept otherwise.
fn conclude<T: std::fmt::Display>(
    dir: &Path,
    result: Result<T, BoxError>,
    judge: impl FnOnce(&T) -> Result<(), String>,
) -> ExitCode {
    match result {
        Ok(outcome) => {
            let verdict = judge(&outcome);
            match &verdict {
                Ok(()) => {
                    let _ = std::fs::remove_dir_all(dir);
                }
                Err(kept) => println!("trace-demo: {kept}"),
            }
            println!("{outcome}");
            if verdict.is_ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("trace-demo: {e} (files in {})", dir.display());
            ExitCode::FAILURE
        }
    }
}

fn scenario(args: &DemoArgs, dir: &Path) -> Result<Outcome, BoxError> {
    let stage = Stage::new(args, dir)?;
    let total = args.tracers as u64 * u64::from(args.spans);
    println!(
        "trace-demo: {} tracers x {} spans, batches of {}, queues of {} batches; the agent is SIGKILLed {} times",
        args.tracers, args.spans, args.batch_size, args.queue, args.kills
    );

    let mut agent = Agent::start(&stage.exe, &stage.pipe, &stage.journal)?;
    let mut tracers = Vec::with_capacity(args.tracers);
    for i in 0..args.tracers {
        tracers.push(Tracer::start(
            &stage.exe,
            &stage.pipe,
            args,
            &dir.join(format!("tracer-{i}.json")),
        )?);
    }
    let kills = stage.kill_and_restart(&mut agent, KillPlan::Journaled { total }, || {
        tracers.iter_mut().all(Tracer::exited)
    })?;

    let mut summaries = Vec::with_capacity(tracers.len());
    for tracer in tracers {
        summaries.push(tracer.finish()?);
    }
    stage.finish(agent, kills)?;

    let (journaled, records) = stage.journaled()?;
    let mut outcome = Outcome {
        sent: 0,
        acknowledged: 0,
        received: journaled.len() as u64,
        lost: 0,
        duplicates: records - journaled.len() as u64,
    };
    let mut dropped = 0;
    let mut retries = 0;
    for summary in &summaries {
        outcome.sent += summary.sent;
        outcome.acknowledged += summary.acknowledged;
        dropped += summary.dropped;
        retries += summary.retries;
        outcome.lost += summary
            .acknowledged_ids
            .iter()
            .filter(|id| !journaled.contains(id))
            .count() as u64;
    }
    println!("trace-demo: tracers dropped={dropped} retries={retries}");
    Ok(outcome)
}

/// What the scenario with Datadog's tracers found.
#[derive(Debug, Clone, PartialEq)]
pub struct RealOutcome {
    /// Span ids the apps made, and of those, how many are in the journal.
    pub arrival: Arrival,
    /// Distinct span ids in the journal.
    pub received: u64,
    /// Journal entries beyond the first for a span id (retried payloads).
    pub duplicates: u64,
}

impl std::fmt::Display for RealOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Rounded down: 99.996 % with a span missing is not 100.00 %.
        let percent = (self.arrival.percent() * 100.0).floor() / 100.0;
        write!(
            f,
            "made={} received={} missing={} duplicates={} arrived={percent:.2}%",
            self.arrival.made,
            self.received,
            self.arrival.missing(),
            self.duplicates,
        )
    }
}

/// Runs the scenario with Datadog's tracers and prints its last line;
/// fails below `--min-arrival`.
pub fn run_real(args: &DemoArgs) -> ExitCode {
    let dir = scenario_dir();
    conclude(&dir, real_scenario(args, &dir), |outcome| {
        if outcome.arrival.percent() >= args.min_arrival {
            Ok(())
        } else {
            Err(format!(
                "fewer than {}% arrived; journal and span ids kept in {}",
                args.min_arrival,
                dir.display()
            ))
        }
    })
}

fn real_scenario(args: &DemoArgs, dir: &Path) -> Result<RealOutcome, BoxError> {
    if !cfg!(unix) {
        return Err(
            "--real runs on Unix: Datadog's tracers reach an agent there through \
                    its socket path (DD_TRACE_AGENT_URL=unix://…)"
                .into(),
        );
    }
    let python = Runtime::find(Lang::Python, args.python.as_deref())?;
    let node = match Runtime::find(Lang::Node, args.node.as_deref()) {
        Ok(node) => Some(node),
        Err(e) if args.node.is_none() => {
            println!("trace-demo: no dd-trace apps: {e}");
            None
        }
        // Asked for by name: its absence is an error.
        Err(e) => return Err(e.into()),
    };
    let mut runtimes = vec![(python, args.python_apps)];
    runtimes.extend(node.map(|node| (node, args.node_apps)));
    let apps_total: usize = runtimes.iter().map(|(_, n)| n).sum();
    if apps_total == 0 {
        return Err("no apps to run: give --python-apps or --node-apps".into());
    }

    let rate = args.rate.unwrap_or(REAL_RATE);
    let stage = Stage::new(args, dir)?;
    let socket =
        pipehttp::transport::pipe_endpoint(&pipehttp::address::PipeName::new(&stage.pipe)?);
    println!(
        "trace-demo: {} apps x {} spans on Datadog's tracers ({}), DD_TRACE_AGENT_URL=unix://{}; the agent is SIGKILLed {} times",
        apps_total,
        args.spans,
        runtimes
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(rt, n)| format!("{n} x {}", rt.lang.package()))
            .collect::<Vec<_>>()
            .join(", "),
        socket.display(),
        args.kills
    );

    let mut agent = Agent::start(&stage.exe, &stage.pipe, &stage.journal)?;
    let mut apps = Vec::with_capacity(apps_total);
    for (runtime, count) in &runtimes {
        for i in 0..*count {
            let ids = dir.join(format!("{}-{i}.ids", runtime.lang));
            let cmd = runtime.app(&socket, args.spans, rate, &ids, args.node_linger);
            apps.push(App::start(cmd, runtime.lang, ids)?);
        }
    }
    // How long the apps take to make their spans, at least a second.
    let stream = Duration::from_secs_f64(if rate > 0.0 {
        (f64::from(args.spans) / rate).max(1.0)
    } else {
        1.0
    });
    let kills = stage.kill_and_restart(&mut agent, KillPlan::Timed { stream }, || {
        apps.iter_mut().all(App::exited)
    })?;

    let wait = Duration::from_secs(60) + args.node_linger;
    let mut made = Vec::with_capacity(apps.len());
    for app in apps {
        made.push(app.finish(wait)?);
    }
    stage.finish(agent, kills)?;

    let (journaled, records) = stage.journaled()?;
    let mut all = Vec::new();
    let mut problems = 0;
    for app in &made {
        let arrival = Arrival::of(&app.ids, &journaled);
        println!(
            "trace-demo: {} app pid {}: made={} arrived={} missing={}; its tracer logged {} warnings or errors",
            app.lang,
            app.pid,
            arrival.made,
            arrival.arrived,
            arrival.missing(),
            app.problems
        );
        problems += app.problems;
        all.extend_from_slice(&app.ids);
    }
    println!("trace-demo: tracers logged {problems} warnings or errors in all");
    Ok(RealOutcome {
        arrival: Arrival::of(&all, &journaled),
        received: journaled.len() as u64,
        duplicates: records - journaled.len() as u64,
    })
}

/// Spans per second an app of ours makes unless told.
const OUR_RATE: f64 = 5000.0;

/// Spans per second an app on Datadog's tracers makes unless told.
const REAL_RATE: f64 = 2000.0;

/// When the kills come.
#[derive(Debug, Clone, Copy)]
enum KillPlan {
    /// When the journal holds 1/3 and 2/3 of `total` spans (for two
    /// kills): right after a batch was journaled, often before it was
    /// answered, which is the hardest moment for a tracer that must not
    /// lose what was acknowledged.
    Journaled { total: u64 },
    /// At 1/3 and 2/3 of `stream` after the first batch arrived: at
    /// moments that have nothing to do with the tracers' flushes and
    /// retries, as a crash in production. A kill timed by the journal
    /// would fall, again and again, on the payloads a tracer retries
    /// after the previous kill, and dd-trace retries a payload once only.
    Timed { stream: Duration },
}

/// What both scenarios share: the program, the pipe, the journal, and a
/// client for the agent's `/stats`.
struct Stage {
    exe: PathBuf,
    pipe: String,
    journal: PathBuf,
    restart_delay: Duration,
    kills: usize,
    runtime: tokio::runtime::Runtime,
    client: Client,
    stats_url: String,
}

impl Stage {
    fn new(args: &DemoArgs, dir: &Path) -> Result<Self, BoxError> {
        let pipe = args
            .pipe
            .clone()
            .unwrap_or_else(|| format!("trace-agent-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let client = Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(5))
            .build();
        Ok(Self {
            exe: std::env::current_exe()?,
            stats_url: format!("http://pipe:/{pipe}:/stats"),
            pipe,
            journal: dir.join("journal.jsonl"),
            restart_delay: args.restart_delay,
            kills: args.kills,
            runtime,
            client,
        })
    }

    fn stats(&self, what: &str) -> Result<serde_json::Value, BoxError> {
        self.runtime
            .block_on(async {
                let res = self.client.get(self.stats_url.as_str()).send().await?;
                res.json().await
            })
            .map_err(|e: pipehttp::Error| format!("GET /stats {what}: {e}").into())
    }

    /// Kills the agent `--kills` times while the spans stream in, as
    /// `plan` says, restarting it each time on the same name.
    fn kill_and_restart(
        &self,
        agent: &mut Agent,
        plan: KillPlan,
        mut all_exited: impl FnMut() -> bool,
    ) -> Result<usize, BoxError> {
        let unique = |v: &serde_json::Value| v["unique_ids"].as_u64().unwrap_or(0);
        let steps = self.kills as u64 + 1;
        // Should the senders be done sooner, a kill still tests a restart
        // on the journal, only no longer mid-stream.
        let mut wait_for = |journaled: u64| -> Result<(), BoxError> {
            while unique(&self.stats("before a kill")?) < journaled && !all_exited() {
                std::thread::sleep(Duration::from_millis(20));
            }
            Ok(())
        };
        let first_batch = match plan {
            KillPlan::Journaled { .. } => None,
            KillPlan::Timed { .. } => {
                wait_for(1)?;
                Some(Instant::now())
            }
        };
        let mut kills = 0;
        for k in 1..=self.kills as u64 {
            match (plan, first_batch) {
                (KillPlan::Journaled { total }, _) => wait_for(total * k / steps)?,
                (KillPlan::Timed { stream }, Some(start)) => {
                    let due = start + stream.mul_f64(k as f64 / steps as f64);
                    std::thread::sleep(due.saturating_duration_since(Instant::now()));
                }
                (KillPlan::Timed { .. }, None) => {
                    unreachable!("timed kills wait for a first batch")
                }
            }
            let journaled = unique(&self.stats("before a kill")?);
            let old = agent.pid();
            agent.kill();
            kills += 1;
            println!(
                "trace-demo: SIGKILL to the agent (pid {old}) with {journaled} spans journaled"
            );
            // The operator (a supervisor, AAS) takes a moment to notice.
            std::thread::sleep(self.restart_delay);
            *agent = Agent::start(&self.exe, &self.pipe, &self.journal)?;
            println!(
                "trace-demo: agent restarted on the same name as pid {}",
                agent.pid()
            );
        }
        Ok(kills)
    }

    /// Prints the agent's final `/stats` and stops it.
    fn finish(&self, mut agent: Agent, kills: usize) -> Result<(), BoxError> {
        let stats = self.stats("at the end")?;
        agent.stop();
        println!(
            "trace-demo: agent /stats: spans_received={} unique_ids={} batches={} clients={}; killed {kills} times",
            stats["spans_received"],
            stats["unique_ids"],
            stats["batches"],
            stats["clients"].as_object().map_or(0, |c| c.len()),
        );
        for (lang, versions) in stats["tracers"].as_object().into_iter().flatten() {
            for (version, counts) in versions.as_object().into_iter().flatten() {
                println!(
                    "trace-demo: agent /stats: {lang} tracer {version}: {} spans in {} batches",
                    counts["spans"], counts["batches"]
                );
            }
        }
        Ok(())
    }

    /// The distinct span ids in the journal, and how many records it has.
    fn journaled(&self) -> Result<(HashSet<u64>, u64), BoxError> {
        let contents = journal::read(&self.journal)?;
        let mut journaled = HashSet::new();
        let mut records = 0u64;
        for entry in &contents.entries {
            records += entry.span_ids.len() as u64;
            journaled.extend(entry.span_ids.iter().copied());
        }
        Ok((journaled, records))
    }
}

/// A process's stdout lines, printed with a prefix as they come.
fn forward(
    child: &mut Child,
    prefix: String,
    ready: Option<mpsc::Sender<String>>,
) -> JoinHandle<()> {
    let stdout = child.stdout.take().expect("stdout is piped");
    forward_lines(stdout, prefix, move |line| {
        if let Some(ready) = &ready {
            let _ = ready.send(line.to_owned());
        }
    })
}

/// Lines of `pipe`, printed with a prefix and handed to `seen`.
fn forward_lines(
    pipe: impl Read + Send + 'static,
    prefix: String,
    seen: impl Fn(&str) + Send + 'static,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            println!("{prefix}{line}");
            seen(&line);
        }
    })
}

struct Agent {
    child: Child,
    output: Option<JoinHandle<()>>,
}

impl Agent {
    /// Starts `trace-demo agent` and waits until it listens and has read
    /// its journal.
    fn start(exe: &Path, pipe: &str, journal: &Path) -> Result<Self, BoxError> {
        let mut child = Command::new(exe)
            .arg("agent")
            .arg("--pipe")
            .arg(pipe)
            .arg("--journal")
            .arg(journal)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()?;
        let (tx, rx) = mpsc::channel();
        let output = forward(&mut child, "  agent | ".into(), Some(tx));
        let mut agent = Self {
            child,
            output: Some(output),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                // It says where it listens, then what its journal held.
                Ok(line) if line.starts_with("trace-agent pid") => return Ok(agent),
                Ok(_) => {}
                Err(_) => {
                    let status = agent.child.try_wait()?;
                    agent.kill();
                    return Err(format!(
                        "the agent never said it was listening (exit: {status:?})"
                    )
                    .into());
                }
            }
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL (TerminateProcess on Windows): no chance to clean up.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(output) = self.output.take() {
            let _ = output.join();
        }
    }
}

impl Agent {
    /// SIGTERM, as a service manager stops it: it removes its socket file.
    #[cfg(unix)]
    fn stop(&mut self) {
        let Ok(pid) = libc::pid_t::try_from(self.pid()) else {
            return self.kill();
        };
        // SAFETY: kill(2) on our own child, which is not reaped yet.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        self.kill();
    }

    #[cfg(not(unix))]
    fn stop(&mut self) {
        self.kill();
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill();
    }
}

struct Tracer {
    child: Child,
    output: Option<JoinHandle<()>>,
    report: PathBuf,
}

impl Tracer {
    fn start(exe: &Path, pipe: &str, args: &DemoArgs, report: &Path) -> Result<Self, BoxError> {
        let mut child = Command::new(exe)
            .arg("tracer")
            .arg("--pipe")
            .arg(pipe)
            .arg("--spans")
            .arg(args.spans.to_string())
            .arg("--batch-size")
            .arg(args.batch_size.to_string())
            .arg("--queue")
            .arg(args.queue.to_string())
            .arg("--rate")
            .arg(args.rate.unwrap_or(OUR_RATE).to_string())
            .arg("--report")
            .arg(report)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()?;
        let output = forward(&mut child, "  ".into(), None);
        Ok(Self {
            child,
            output: Some(output),
            report: report.to_owned(),
        })
    }

    fn exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits for the tracer to exit (its flush timeout bounds that) and
    /// reads its report.
    fn finish(mut self) -> Result<Summary, BoxError> {
        let status = self.child.wait()?;
        if let Some(output) = self.output.take() {
            let _ = output.join();
        }
        if !status.success() {
            return Err(format!("tracer pid {} exited with {status}", self.child.id()).into());
        }
        let report = std::fs::read(&self.report)?;
        Ok(serde_json::from_slice(&report)?)
    }
}

impl Drop for Tracer {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// An app on one of Datadog's tracers.
struct App {
    child: Child,
    lang: Lang,
    output: Vec<JoinHandle<()>>,
    problems: Arc<AtomicU64>,
    ids: PathBuf,
}

/// What an app made, once it is done.
struct Made {
    lang: Lang,
    pid: u32,
    ids: Vec<u64>,
    /// Warnings and errors its tracer logged.
    problems: u64,
}

impl App {
    fn start(mut cmd: Command, lang: Lang, ids: PathBuf) -> Result<Self, BoxError> {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start the {lang} app {cmd:?}: {e}"))?;
        let problems = Arc::new(AtomicU64::new(0));
        let prefix = format!("  {lang} {} | ", child.id());
        let count = |problems: &Arc<AtomicU64>| {
            let problems = problems.clone();
            move |line: &str| {
                if apps::is_tracer_problem(line) {
                    problems.fetch_add(1, Ordering::Relaxed);
                }
            }
        };
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        let output = vec![
            forward_lines(stdout, prefix.clone(), count(&problems)),
            forward_lines(stderr, prefix, count(&problems)),
        ];
        Ok(Self {
            child,
            lang,
            output,
            problems,
            ids,
        })
    }

    fn exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits at most `wait` for the app to exit and reads the ids it made.
    fn finish(mut self, wait: Duration) -> Result<Made, BoxError> {
        let deadline = Instant::now() + wait;
        let status = loop {
            if let Some(status) = self.child.try_wait()? {
                break status;
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "the {} app pid {} did not exit within {wait:?}",
                    self.lang,
                    self.child.id()
                )
                .into());
            }
            // std offers no wait with a timeout; the deadline bounds this.
            std::thread::sleep(Duration::from_millis(20));
        };
        for output in self.output.drain(..) {
            let _ = output.join();
        }
        if !status.success() {
            return Err(format!(
                "the {} app pid {} exited with {status}",
                self.lang,
                self.child.id()
            )
            .into());
        }
        Ok(Made {
            lang: self.lang,
            pid: self.child.id(),
            ids: apps::read_ids(&self.ids)?,
            problems: self.problems.load(Ordering::Relaxed),
        })
    }
}

impl Drop for App {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
