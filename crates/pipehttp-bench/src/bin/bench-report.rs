//! Writes `BENCHMARKS.md` from the results file of a bench run.
//!
//! ```text
//! bench-report --results FILE [--output BENCHMARKS.md]
//! ```
//! Hand-written notes below the report's notes marker in an existing
//! output file are kept. Prints the goals table on stderr.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use pipehttp_bench::report::{Results, markdown, notes_of};

/// Writes BENCHMARKS.md from a bench run's results
#[derive(Debug, Parser)]
#[command(name = "bench-report")]
struct Cli {
    /// The results file `bench-record` wrote.
    #[arg(long)]
    results: PathBuf,
    /// The report to write.
    #[arg(long, default_value = "BENCHMARKS.md")]
    output: PathBuf,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let text = match std::fs::read_to_string(&cli.results) {
        Ok(text) => text,
        Err(e) => {
            eprintln!("bench-report: cannot read {}: {e}", cli.results.display());
            return ExitCode::FAILURE;
        }
    };
    let results = match Results::parse(&text) {
        Ok(results) => results,
        Err(e) => {
            eprintln!("bench-report: {}: {e}", cli.results.display());
            return ExitCode::FAILURE;
        }
    };
    let existing = std::fs::read_to_string(&cli.output).unwrap_or_default();
    let report = markdown(&results, notes_of(&existing));
    // Written beside the target, then renamed: a failed write never
    // leaves half a report.
    let partial = cli.output.with_extension("md.partial");
    if let Err(e) =
        std::fs::write(&partial, &report).and_then(|()| std::fs::rename(&partial, &cli.output))
    {
        eprintln!("bench-report: cannot write {}: {e}", cli.output.display());
        return ExitCode::FAILURE;
    }
    let goals = report
        .split("\n## ")
        .find(|s| s.starts_with("Goals"))
        .unwrap_or_default();
    eprintln!("## {goals}");
    eprintln!("bench-report: wrote {}", cli.output.display());
    ExitCode::SUCCESS
}
