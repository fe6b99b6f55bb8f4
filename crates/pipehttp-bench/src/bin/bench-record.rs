//! Records one measurement of a bench run as a JSON line (see
//! `pipehttp_bench::record`), so the shell script that starts servers and
//! load generators never parses a tool's output itself.
//!
//! ```text
//! bench-record run --results FILE --key ka.pipehttp.pb --round 1 [--server PID] [--work DIR] -- CMD ARGS...
//! bench-record meta --results FILE -- NAME VALUE
//! bench-record skip --results FILE -- WHAT REASON
//! bench-record machine --results FILE --phase before|after
//! ```
//! `run` reads the CPU time of the server (PID and the processes below it)
//! before and after CMD, parses CMD's output by the ruler the key ends in,
//! and prints a one-line summary on stderr. A command that fails or prints
//! nothing usable is recorded as failed; `run` itself still succeeds, so one
//! bad measurement does not end the run.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Duration;

use clap::{Parser, Subcommand};
use pipehttp_bench::procfs;
use pipehttp_bench::record::{Line, metric, parse_output, ruler_of};

/// Records one measurement of scripts/bench.sh
#[derive(Debug, Parser)]
#[command(name = "bench-record")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Runs a load generator and records its figures.
    Run {
        /// The results file to append to.
        #[arg(long)]
        results: PathBuf,
        /// SCENARIO.SERVER.RULER; RULER (pb, oha, h2load, idle, floor) says
        /// how to read the output.
        #[arg(long)]
        key: String,
        #[arg(long)]
        round: u32,
        /// The server whose CPU time is measured, with its children.
        #[arg(long)]
        server: Option<u32>,
        /// Shown as $WORK in the recorded command line.
        #[arg(long)]
        work: Option<PathBuf>,
        /// The command and its arguments.
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Records a fact about the run.
    Meta {
        #[arg(long)]
        results: PathBuf,
        name: String,
        value: String,
    },
    /// Records that a key, a key prefix or a ruler was not measured, and why.
    Skip {
        #[arg(long)]
        results: PathBuf,
        what: String,
        reason: String,
    },
    /// Records the machine and how busy it is.
    Machine {
        #[arg(long)]
        results: PathBuf,
        /// before or after the run.
        #[arg(long)]
        phase: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (results, lines) = match cli.command {
        Cmd::Run {
            results,
            key,
            round,
            server,
            work,
            command,
        } => {
            let lines = run(&key, round, server, work.as_deref(), &command);
            (results, lines)
        }
        Cmd::Meta {
            results,
            name,
            value,
        } => (results, vec![Line::Meta { name, value }]),
        Cmd::Skip {
            results,
            what,
            reason,
        } => {
            eprintln!("bench: skipping {what}: {reason}");
            (results, vec![Line::Skip { what, reason }])
        }
        Cmd::Machine { results, phase } => (results, machine(&phase)),
    };
    match append(&results, &lines) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench-record: cannot write {}: {e}", results.display());
            ExitCode::FAILURE
        }
    }
}

fn append(path: &Path, lines: &[Line]) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    let text: String = lines.iter().map(|l| l.to_json() + "\n").collect();
    file.write_all(text.as_bytes())
}

/// The command as the report shows it: the program by its name, the
/// scratch directory as `$WORK`.
fn shown(command: &[String], work: Option<&Path>) -> String {
    // The program follows `taskset -c CPUS` when the run is pinned.
    let program = if command.first().is_some_and(|c| c.ends_with("taskset")) {
        3
    } else {
        0
    };
    command
        .iter()
        .enumerate()
        .map(|(i, arg)| {
            let arg = match Path::new(arg).file_name() {
                Some(name) if i == program => name.to_string_lossy().into_owned(),
                _ => arg.clone(),
            };
            let arg = match work.and_then(Path::to_str) {
                Some(work) => arg.replace(work, "$WORK"),
                None => arg,
            };
            if arg.contains(' ') || arg.is_empty() {
                format!("'{arg}'")
            } else {
                arg
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn run(
    key: &str,
    round: u32,
    server: Option<u32>,
    work: Option<&Path>,
    command: &[String],
) -> Vec<Line> {
    let failed = |message: String| {
        eprintln!("bench: {key} (round {round}) failed: {message}");
        Line::Failed {
            key: key.to_owned(),
            round,
            message,
        }
    };
    let meta = Line::Meta {
        name: format!("command.{key}"),
        value: shown(command, work),
    };
    let tree = server.map(procfs::process_tree);
    let cpu_before = tree.as_deref().and_then(procfs::cpu_micros);
    let output = Command::new(&command[0])
        .args(&command[1..])
        .stdin(Stdio::null())
        .output();
    let cpu_after = tree.as_deref().and_then(procfs::cpu_micros);
    let output = match output {
        Ok(output) => output,
        Err(e) => return vec![meta, failed(format!("cannot run {}: {e}", command[0]))],
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    // h2load writes its summary on stdout; some tools write errors to
    // stderr: both are read.
    let text = if ruler_of(key) == "h2load" {
        format!("{stdout}\n{stderr}")
    } else {
        stdout.into_owned()
    };
    let mut values = match parse_output(ruler_of(key), &text) {
        Ok(values) => values,
        Err(e) => {
            let last = stderr.lines().rev().find(|l| !l.trim().is_empty());
            return vec![
                meta,
                failed(format!(
                    "{} ({e}){}",
                    output.status,
                    last.map(|l| format!("; it said: {}", l.trim()))
                        .unwrap_or_default()
                )),
            ];
        }
    };
    if let (Some(before), Some(after), Some(&n)) =
        (cpu_before, cpu_after, values.get(metric::REQUESTS))
        && n > 0.0
    {
        values.insert(metric::CPU.to_owned(), (after - before) / n);
    }
    let show = |m: &str| values.get(m).copied();
    let mut summary = Vec::new();
    if let Some(rps) = show(metric::RPS) {
        summary.push(format!("{:.1} k req/s", rps / 1000.0));
    }
    if let Some(p50) = show(metric::P50) {
        summary.push(format!("p50 {p50:.1} µs"));
    }
    if let Some(cpu) = show(metric::CPU) {
        summary.push(format!("server CPU {cpu:.2} µs/req"));
    }
    if let Some(bps) = show(metric::BPS).filter(|b| *b > 1e8) {
        summary.push(format!("{:.2} GiB/s", bps / f64::from(1u32 << 30)));
    }
    if let Some(growth) = show(metric::RSS_GROWTH) {
        summary.push(format!("RSS +{:.1} MiB", growth / 1024.0));
    }
    if let Some(errors) = show(metric::ERRORS).filter(|e| *e > 0.0) {
        summary.push(format!("{errors:.0} ERRORS"));
    }
    if summary.is_empty() {
        summary.extend(values.iter().take(3).map(|(k, v)| format!("{k} {v:.1}")));
    }
    eprintln!("bench: {key} (round {round}): {}", summary.join(", "));
    vec![
        meta,
        Line::Figures {
            key: key.to_owned(),
            round,
            values,
        },
    ]
}

fn machine(phase: &str) -> Vec<Line> {
    let meta = |name: &str, value: String| Line::Meta {
        name: name.to_owned(),
        value,
    };
    let mut lines = Vec::new();
    if phase == "before" {
        let cores = std::thread::available_parallelism().map_or(0, usize::from);
        let memory = procfs::proc_field("/proc/meminfo", "MemTotal")
            .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
            .map_or_else(
                || "?".to_owned(),
                |kib| format!("{:.1} GiB", kib / 1048576.0),
            );
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map_or_else(|_| "?".to_owned(), |r| format!("Linux {}", r.trim()));
        lines.push(meta(
            "cpu_model",
            procfs::proc_field("/proc/cpuinfo", "model name").unwrap_or_else(|| "?".into()),
        ));
        lines.push(meta("cores", cores.to_string()));
        lines.push(meta("memory", memory));
        lines.push(meta("kernel", kernel));
    }
    let load = std::fs::read_to_string("/proc/loadavg").map_or_else(
        |_| "?".to_owned(),
        |l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "),
    );
    lines.push(meta(&format!("load_{phase}"), load));
    if let Some((idle, busy)) = procfs::busyness(Duration::from_secs(1)) {
        lines.push(meta(&format!("idle_{phase}"), format!("{idle:.0}")));
        // The five busiest say enough about who else was running.
        let busy: Vec<String> = busy.into_iter().take(5).collect();
        lines.push(meta(&format!("busy_{phase}"), busy.join(", ")));
    }
    lines
}
