//! The scenario: tracer processes send spans to the agent while the agent
//! is SIGKILLed and restarted on the same pipe name, then the journal is
//! held against what the tracers were told was acknowledged.
//!
//! The program runs itself in three roles, so that one binary is all that
//! `cargo run --example trace-demo` has to build: with no role it is the
//! scenario; `trace-demo agent …` is the agent, `trace-demo tracer …` a
//! tracer. It ends with one line,
//! `sent=N acknowledged=N received=N lost=0 duplicates=D`, and fails when
//! `lost` (acknowledged spans missing from the journal) is not 0.

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand};
use pipehttp::Client;

use crate::agent::{self, AgentArgs};
use crate::journal;
use crate::parse_secs;
use crate::tracer::{self, Summary, TracerArgs};

type BoxError = Box<dyn std::error::Error>;

/// How big the scenario is.
#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// Tracer processes.
    #[arg(long, value_name = "N", default_value_t = 4)]
    pub tracers: usize,
    /// Spans each tracer creates.
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    pub spans: u32,
    /// Times the agent is killed with SIGKILL and restarted.
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub kills: usize,
    /// Spans per batch.
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub batch_size: usize,
    /// Batches each tracer queues at most.
    #[arg(long, value_name = "BATCHES", default_value_t = 256)]
    pub queue: usize,
    /// Spans per second each tracer's app makes.
    #[arg(long, value_name = "N", default_value_t = 5000.0)]
    pub rate: f64,
    /// How long the "operator" takes to restart a killed agent.
    #[arg(long, value_name = "SECS", default_value = "0.3", value_parser = parse_secs)]
    pub restart_delay: Duration,
    /// Pipe name [default: trace-agent-PID].
    #[arg(long, value_name = "NAME")]
    pub pipe: Option<String>,
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
    let dir = std::env::temp_dir().join(format!("trace-demo-{}", std::process::id()));
    let result = scenario(args, &dir);
    match result {
        Ok(outcome) => {
            if outcome.lost == 0 {
                let _ = std::fs::remove_dir_all(&dir);
            } else {
                println!("trace-demo: journal and reports kept in {}", dir.display());
            }
            println!("{outcome}");
            if outcome.lost == 0 {
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
    let exe = std::env::current_exe()?;
    let pipe = args
        .pipe
        .clone()
        .unwrap_or_else(|| format!("trace-agent-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir)?;
    let journal_path = dir.join("journal.jsonl");
    let total = args.tracers as u64 * u64::from(args.spans);
    println!(
        "trace-demo: {} tracers x {} spans, batches of {}, queues of {} batches; the agent is SIGKILLed {} times",
        args.tracers, args.spans, args.batch_size, args.queue, args.kills
    );

    let mut agent = Agent::start(&exe, &pipe, &journal_path)?;
    let mut tracers = Vec::with_capacity(args.tracers);
    for i in 0..args.tracers {
        tracers.push(Tracer::start(
            &exe,
            &pipe,
            args,
            &dir.join(format!("tracer-{i}.json")),
        )?);
    }

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let client = Client::builder()
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(5))
        .build();
    let stats_url = format!("http://pipe:/{pipe}:/stats");
    let stats = |what: &str| -> Result<serde_json::Value, BoxError> {
        runtime
            .block_on(async {
                let res = client.get(stats_url.as_str()).send().await?;
                res.json().await
            })
            .map_err(|e: pipehttp::Error| format!("GET /stats {what}: {e}").into())
    };
    let unique = |v: &serde_json::Value| v["unique_ids"].as_u64().unwrap_or(0);

    let mut kills = 0;
    for k in 1..=args.kills {
        // Kill while the spans stream in: at 1/3 and 2/3 of them for two kills.
        // (Should the tracers be done sooner, the kill still tests a
        // restart on the journal, only no longer mid-stream.)
        let threshold = total * k as u64 / (args.kills as u64 + 1);
        while unique(&stats("before a kill")?) < threshold
            && !tracers.iter_mut().all(Tracer::exited)
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        let journaled = unique(&stats("before a kill")?);
        let old = agent.pid();
        agent.kill();
        kills += 1;
        println!("trace-demo: SIGKILL to the agent (pid {old}) with {journaled} spans journaled");
        // The operator (a supervisor, AAS) takes a moment to notice.
        std::thread::sleep(args.restart_delay);
        agent = Agent::start(&exe, &pipe, &journal_path)?;
        println!(
            "trace-demo: agent restarted on the same name as pid {}",
            agent.pid()
        );
    }

    let mut summaries = Vec::with_capacity(tracers.len());
    for tracer in tracers {
        summaries.push(tracer.finish()?);
    }
    let final_stats = stats("at the end")?;
    agent.stop();
    println!(
        "trace-demo: agent /stats: spans_received={} unique_ids={} batches={} clients={}; killed {kills} times",
        final_stats["spans_received"],
        final_stats["unique_ids"],
        final_stats["batches"],
        final_stats["clients"].as_object().map_or(0, |c| c.len()),
    );

    let contents = journal::read(&journal_path)?;
    let mut journaled = HashSet::new();
    let mut records = 0u64;
    for entry in &contents.entries {
        records += entry.span_ids.len() as u64;
        journaled.extend(entry.span_ids.iter().copied());
    }
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

/// A process whose stdout lines are printed with a prefix as they come.
fn forward(
    child: &mut Child,
    prefix: String,
    ready: Option<mpsc::Sender<String>>,
) -> JoinHandle<()> {
    let stdout = child.stdout.take().expect("stdout is piped");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            println!("{prefix}{line}");
            if let Some(ready) = &ready {
                let _ = ready.send(line);
            }
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
            .arg(args.rate.to_string())
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
