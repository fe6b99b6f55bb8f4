//! `bench-record` runs real commands and reads a real process's CPU time;
//! `bench-report` turns what it wrote into the report.

use std::path::Path;
#[cfg(target_os = "linux")]
use std::process::Child;
use std::process::{Command, Output};

fn bin(name: &str) -> Command {
    Command::new(match name {
        "bench-record" => env!("CARGO_BIN_EXE_bench-record"),
        _ => env!("CARGO_BIN_EXE_bench-report"),
    })
}

/// Runs `bench-report` as `scripts/bench.sh` does.
fn report(results: &Path, output: &Path) -> Output {
    bin("bench-report")
        .arg("--results")
        .arg(results)
        .arg("--output")
        .arg(output)
        .output()
        .expect("run bench-report")
}

#[cfg(target_os = "linux")]
fn record(results: &Path, args: &[&str]) {
    let (command, rest) = args.split_first().expect("a subcommand");
    let status = bin("bench-record")
        .arg(command)
        .arg("--results")
        .arg(results)
        .args(rest)
        .status()
        .expect("run bench-record");
    assert!(status.success(), "bench-record {args:?}: {status}");
}

/// A process that keeps one CPU busy until killed: the "server" whose CPU
/// time a measurement reads.
#[cfg(target_os = "linux")]
struct Busy(Child);

#[cfg(target_os = "linux")]
impl Drop for Busy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[cfg(target_os = "linux")]
fn fixture(name: &str) -> String {
    format!("{}/testdata/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[cfg(target_os = "linux")]
#[test]
fn a_run_is_recorded_and_reported() {
    let dir = testkit::tempdir().unwrap();
    let results = dir.path().join("results.jsonl");
    let busy = Busy(
        Command::new("sh")
            .args(["-c", "while :; do :; done"])
            .spawn()
            .unwrap(),
    );
    let server = busy.0.id().to_string();
    let pb = fixture("pb.json");
    // The load takes 0.3 s, and the busy "server" uses CPU meanwhile.
    let load = format!("sleep 0.3; cat {pb}");
    let started = std::time::Instant::now();
    record(
        &results,
        &[
            "run",
            "--key",
            "ka.pipehttp.pb",
            "--round",
            "1",
            "--server",
            &server,
            "--work",
            dir.path().to_str().unwrap(),
            "--",
            "sh",
            "-c",
            &load,
        ],
    );
    let took = started.elapsed();
    record(
        &results,
        &[
            "run",
            "--key",
            "ka.bare.pb",
            "--round",
            "1",
            "--",
            "cat",
            &fixture("pb.json"),
        ],
    );
    record(
        &results,
        &["run", "--key", "ka.nginx.pb", "--round", "1", "--", "false"],
    );
    record(&results, &["skip", "--", "oha", "oha is not installed"]);
    record(&results, &["meta", "--", "rounds", "1"]);

    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&results)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let figures = lines
        .iter()
        .find(|l| l["type"] == "figures" && l["key"] == "ka.pipehttp.pb")
        .expect("the run's figures");
    assert_eq!(figures["values"]["requests"], 2000.0);
    // The busy process ran while the load did: some CPU time, and at most
    // the run's wall time (one CPU) and a 10 ms clock tick, over 2,000
    // responses.
    let cpu = figures["values"]["cpu_us_per_request"].as_f64().unwrap();
    let most = (took.as_secs_f64() + 0.01) * 1e6 / 2000.0;
    assert!(
        cpu > 0.0 && cpu <= most,
        "{cpu} µs per request, at most {most}"
    );
    let command = lines
        .iter()
        .find(|l| l["name"] == "command.ka.pipehttp.pb")
        .expect("the command is recorded");
    assert_eq!(command["value"], format!("sh -c 'sleep 0.3; cat {pb}'"));
    let failed = lines
        .iter()
        .find(|l| l["type"] == "failed")
        .expect("a failed run is recorded");
    assert_eq!(failed["key"], "ka.nginx.pb");
    assert!(
        failed["message"]
            .as_str()
            .unwrap()
            .contains("exit status: 1"),
        "{failed}"
    );
    let without_server = lines
        .iter()
        .find(|l| l["type"] == "figures" && l["key"] == "ka.bare.pb")
        .unwrap();
    assert!(without_server["values"].get("cpu_us_per_request").is_none());

    let output = dir.path().join("BENCHMARKS.md");
    let out = report(&results, &output);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let md = std::fs::read_to_string(&output).unwrap();
    for (row, expected) in [
        (
            "| keep-alive, 64 connections: pipehttp / bare",
            "| 1.00 (pipehttp bench) | oha: n/a |",
        ),
        (
            "| keep-alive, 64 connections: pipehttp / nginx",
            "n/a: failed in round 1: exit status: 1",
        ),
    ] {
        let line = testkit::lines::starting_with(&md, row);
        assert!(
            line.contains(expected),
            "{line}\nshould contain: {expected}"
        );
    }
    assert!(md.contains("- `oha`: oha is not installed"), "{md}");
}

#[test]
fn a_bad_results_file_is_named() {
    let dir = testkit::tempdir().unwrap();
    let results = dir.path().join("results.jsonl");
    std::fs::write(
        &results,
        "{\"type\":\"meta\",\"name\":\"a\",\"value\":\"b\"}\nnot json\n",
    )
    .unwrap();
    let out = report(&results, &dir.path().join("out.md"));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("results.jsonl: line 2:"), "{err}");
    assert!(!dir.path().join("out.md").exists());
}
