//! The trace-agent story as real processes: the scenario with smaller
//! counts (the agent SIGKILLed twice while tracers send), and a tracer with
//! no agent at all, which must drop what it cannot deliver and still exit.
//!
//! Both run on every OS: on Windows (and under Wine) the agent listens on a
//! real named pipe, `\\.\pipe\NAME`, and is killed with TerminateProcess.

use std::time::{Duration, Instant};

use crate::common::{command, number, run_demo};
use pipehttp_trace_example::tracer::Summary;
use testkit::Spawned;

const TRACER: &str = env!("CARGO_BIN_EXE_tracer");

/// A count in a `key=N …` line.
fn count(line: &str, key: &str) -> u64 {
    number(line, key)
}

#[test]
fn scenario_with_two_kills_loses_no_acknowledged_span() {
    let pipe = testkit::unique_name("trace-story");
    let (status, output) = run_demo(
        &pipe,
        &[
            "--tracers",
            "2",
            "--spans",
            "2000",
            "--kills",
            "2",
            // Slower apps, so the kills fall while spans are still coming.
            "--rate",
            "2000",
            "--restart-delay",
            "0.2",
        ],
        2,
    );
    assert!(status.success(), "trace-demo failed: {status}\n{output}");
    // Where the pipe name lives: a real named pipe on Windows, .NET's
    // socket path elsewhere.
    let endpoint = if cfg!(windows) {
        format!("(\\\\.\\pipe\\{pipe})")
    } else {
        format!("CoreFxPipe_{pipe})")
    };
    assert!(
        output.contains(&format!("Now listening on: http://pipe:/{pipe} "))
            && output.contains(&endpoint),
        "the agent listens on {endpoint}:\n{output}"
    );
    // Our tracer names itself in Datadog's headers, and the agent counts
    // its spans by language and version.
    let tracer = format!("rust tracer {}: ", env!("CARGO_PKG_VERSION"));
    assert!(output.contains(&tracer), "{tracer}in /stats:\n{output}");

    let last = output.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("sent="),
        "the last line is {last:?}:\n{output}"
    );
    assert_eq!(count(last, "lost"), 0, "{output}");
    let acknowledged = count(last, "acknowledged");
    let received = count(last, "received");
    assert!(acknowledged > 0, "{output}");
    assert!(received >= acknowledged, "{output}");
    assert!(count(last, "sent") >= acknowledged, "{output}");
    // Every span is accounted for: acknowledged or dropped, by each tracer.
    for line in output.lines().filter(|l| l.contains("tracer pid=")) {
        if let Some(counts) = line.split_once(": created=") {
            let line = format!("created={}", counts.1);
            assert_eq!(
                count(&line, "created"),
                count(&line, "acknowledged") + count(&line, "dropped"),
                "{line}"
            );
        }
    }
}

#[test]
fn tracer_without_agent_drops_and_exits_in_bounded_time() {
    let tmp = testkit::tempdir().unwrap();
    let report = tmp.path().join("report.json");
    let mut cmd = command(TRACER, tmp.path());
    cmd.args(["--pipe", &testkit::unique_name("no-agent")])
        .args(["--spans", "2000", "--batch-size", "100", "--queue", "2"])
        .args(["--rate", "0", "--flush-timeout", "1"])
        .args(["--connect-timeout", "0.2", "--request-timeout", "1"])
        .arg("--report")
        .arg(&report);
    let started = Instant::now();
    let mut tracer = Spawned::start(cmd);
    let status = tracer.wait_exit();
    let elapsed = started.elapsed();
    let output = tracer.output();
    assert!(status.success(), "tracer failed: {status}\n{output}");
    // Generous: the bound is the flush timeout (1 s) plus start and exit.
    assert!(
        elapsed < Duration::from_secs(30),
        "the tracer took {elapsed:?} with no agent:\n{output}"
    );

    let summary: Summary = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(summary.created, 2000, "{output}");
    assert_eq!(summary.acknowledged, 0, "{output}");
    assert_eq!(summary.dropped, 2000, "every span is dropped:\n{output}");
    assert!(
        summary.dropped_queue_full > 0,
        "a queue of 2 batches overflows:\n{output}"
    );
    assert!(summary.dropped_at_exit > 0, "{output}");
    assert!(summary.last_error.is_some(), "{output}");
    assert!(
        output.contains("dropped=2000"),
        "the summary line reports the drops:\n{output}"
    );
}
