//! The agent against Datadog's own tracers, which no one here wrote:
//! apps on ddtrace (Python, from PyPI) and dd-trace (Node, from npm) reach
//! it through the pipe's socket path, `DD_TRACE_AGENT_URL=unix://…`, as
//! Datadog documents for an agent on a socket.
//!
//! `scripts/install-test-deps.sh` installs both tracers. Where one is
//! missing on a developer's machine the test says so on the terminal and
//! does without it; under CI (`CI=true`) a missing tracer fails the test.

#![cfg(unix)]

use std::collections::HashSet;
use std::io::Write;
use std::path::Path;

use crate::common::{command, field, number, run_demo};
use pipehttp_trace_example::apps::{self, Lang, Runtime};
use pipehttp_trace_example::journal;
use testkit::Spawned;

const AGENT: &str = env!("CARGO_BIN_EXE_trace-agent");

/// Says `message` on the terminal even while libtest captures the test's
/// output (it captures the print macros only).
fn loud(message: &str) {
    let _ = writeln!(std::io::stderr(), "\n*** {message}\n");
}

/// The interpreter for `lang`'s tracer, or why there is none: then under
/// CI the test fails, elsewhere it goes on without.
fn runtime(lang: Lang, test: &str) -> Option<Runtime> {
    match Runtime::find(lang, None) {
        Ok(runtime) => Some(runtime),
        Err(e) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("CI=true and {} is missing: {e}", lang.package())
        }
        Err(e) => {
            loud(&format!(
                "{test}: WITHOUT {} apps, the tracer is missing: {e}",
                lang.package()
            ));
            None
        }
    }
}

/// Datadog's tracers for `test`: Python's ddtrace, which it needs, and
/// Node's dd-trace where there is one; `None`, having said so, where
/// ddtrace is missing.
fn tracers(test: &str) -> Option<(Runtime, Option<Runtime>)> {
    let Some(python) = runtime(Lang::Python, test) else {
        loud(&format!("{test}: SKIPPED, ddtrace is missing"));
        return None;
    };
    Some((python, runtime(Lang::Node, test)))
}

/// Runs an app to its end and returns its output, which must hold its
/// `app pid=… made=N` line and no warning or error from its tracer.
fn run_app(runtime: &Runtime, socket: &Path, spans: u32, ids: &Path) -> String {
    let mut app = Spawned::start(runtime.app(socket, spans, 0.0, ids, std::time::Duration::ZERO));
    let status = app.wait_exit();
    let output = app.output();
    assert!(
        status.success(),
        "{} app failed: {status}\n{output}",
        runtime.lang
    );
    let problems: Vec<_> = output
        .lines()
        .filter(|l| apps::is_tracer_problem(l))
        .collect();
    assert!(
        problems.is_empty(),
        "{} logged warnings or errors talking to the agent:\n{output}",
        runtime.lang.package()
    );
    output
}

#[test]
fn datadog_tracers_are_journaled_whole_and_log_no_error() {
    let test = "datadog_tracers_are_journaled_whole_and_log_no_error";
    let Some((python, node)) = tracers(test) else {
        return;
    };
    let tmp = testkit::tempdir().unwrap();
    let pipe = testkit::unique_name("dd-tracers");
    let journal_path = tmp.path().join("journal.jsonl");
    let mut cmd = command(AGENT, tmp.path());
    cmd.args(["--pipe", &pipe, "--journal"]).arg(&journal_path);
    let mut agent = Spawned::start(cmd);
    let listening = agent.wait_for_line("Now listening on:");
    agent.wait_for_line("trace-agent pid");
    // `… (PATH)`: the socket the pipe name stands for.
    let socket = listening
        .rsplit_once(" (")
        .and_then(|(_, path)| path.strip_suffix(')'))
        .unwrap_or_else(|| panic!("no socket path in {listening:?}"))
        .to_owned();

    // Not a multiple of five: a trace cut short at the end, too.
    let spans = 1003;
    let mut made = Vec::new();
    for runtime in std::iter::once(&python).chain(node.as_ref()) {
        let ids = tmp.path().join(format!("{}.ids", runtime.lang));
        let output = run_app(runtime, Path::new(&socket), spans, &ids);
        let line = output
            .lines()
            .find(|l| l.starts_with("app pid="))
            .unwrap_or_else(|| panic!("no summary line:\n{output}"));
        assert_eq!(number::<u32>(line, "made"), spans, "{output}");
        let version = field(line, "tracer")
            .split_once('/')
            .map(|(_, v)| v.to_owned())
            .unwrap_or_default();
        let ids = apps::read_ids(&ids).unwrap();
        assert_eq!(ids.len(), spans as usize);
        made.push((runtime.lang, version, ids));
    }
    // A SIGTERM lets the agent finish what it holds; every batch it took
    // is in the journal already.
    agent.terminate();
    agent.wait_exit();

    let contents = journal::read(&journal_path).unwrap();
    assert_eq!(contents.torn_bytes, 0);
    for (lang, version, ids) in &made {
        let entries: Vec<_> = contents
            .entries
            .iter()
            .filter(|e| e.origin.lang.as_deref() == Some(lang.as_str()))
            .collect();
        assert!(!entries.is_empty(), "nothing from {lang} in the journal");
        let journaled: HashSet<u64> = entries.iter().flat_map(|e| e.span_ids.clone()).collect();
        let made: HashSet<u64> = ids.iter().copied().collect();
        assert_eq!(
            journaled, made,
            "{lang}: the journal holds exactly the spans its app made"
        );
        for entry in &entries {
            assert_eq!(entry.origin.tracer_version.as_ref(), Some(version));
            assert!(entry.origin.pid.is_some(), "peer credentials name the app");
            // ddtrace speaks v0.5 by default, dd-trace v0.4.
            let endpoint = match lang {
                Lang::Python => "v0.5",
                Lang::Node => "v0.4",
            };
            assert_eq!(entry.endpoint.as_deref(), Some(endpoint), "{lang}");
        }
    }
}

#[test]
fn datadog_tracers_through_two_kills_deliver_99_percent() {
    let test = "datadog_tracers_through_two_kills_deliver_99_percent";
    let Some((python, node)) = tracers(test) else {
        return;
    };
    let node_apps = if node.is_some() { "2" } else { "0" };
    let (status, output) = run_demo(
        &testkit::unique_name("dd-kills"),
        &[
            "--real",
            "--python-apps",
            "2",
            "--node-apps",
            node_apps,
            // Streams of 3 s, with a kill at 1 s and 2 s.
            "--spans",
            "3000",
            "--rate",
            "1000",
            "--kills",
            "2",
        ],
        2,
    );
    let last = output.lines().last().unwrap_or_default();
    // The figure, in the test log for every run.
    loud(&format!("{test}: {last}"));
    assert!(
        status.success(),
        "fewer than 99 % arrived, or the demo failed: {status}\n{output}"
    );
    let apps = 2 + node_apps.parse::<u64>().unwrap();
    assert_eq!(number::<u64>(last, "made"), apps * 3000, "{output}");
    assert!(number::<f64>(last, "arrived") >= 99.0, "{output}");
    // Every app made its spans, and each tracer's spans are in /stats.
    assert_eq!(output.matches("app pid=").count() as u64, apps, "{output}");
    for runtime in std::iter::once(&python).chain(node.as_ref()) {
        let tracer = format!("{} tracer {}", runtime.lang, runtime.version);
        assert!(output.contains(&tracer), "{tracer} in /stats:\n{output}");
    }
}
