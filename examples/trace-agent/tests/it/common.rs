//! What the trace-agent tests share: the scenario run as a process, and
//! the `key=value` lines it prints.

use std::path::Path;
use std::process::{Command, ExitStatus};

use testkit::Spawned;

const DEMO: &str = env!("CARGO_BIN_EXE_trace-demo");

/// `program` with the pipe's socket file and the scenario's files in `tmp`.
pub fn command(program: &str, tmp: &Path) -> Command {
    testkit::command(program, Some(tmp))
}

/// Runs `trace-demo ARGS --pipe PIPE` to its end, with its files in a temp
/// dir of its own; checks that it killed the agent `kills` times and
/// restarted it on the same name as often.
pub fn run_demo(pipe: &str, args: &[&str], kills: usize) -> (ExitStatus, String) {
    let tmp = testkit::tempdir().unwrap();
    let mut cmd = command(DEMO, tmp.path());
    cmd.args(args).args(["--pipe", pipe]);
    let mut demo = Spawned::start(cmd);
    let status = demo.wait_exit();
    let output = demo.output();
    assert_eq!(
        output.matches("SIGKILL to the agent").count(),
        kills,
        "{kills} kills:\n{output}"
    );
    assert_eq!(
        output.matches("agent restarted on the same name").count(),
        kills,
        "{kills} restarts:\n{output}"
    );
    (status, output)
}

/// The value of `key=` in a `key=value …` line.
pub fn field<'a>(line: &'a str, key: &str) -> &'a str {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("no {key}= in {line:?}"))
}

/// The number after `key=`, a `%` after it ignored.
pub fn number<T: std::str::FromStr>(line: &str, key: &str) -> T
where
    T::Err: std::fmt::Display,
{
    let value = field(line, key);
    value
        .trim_end_matches('%')
        .parse()
        .unwrap_or_else(|e| panic!("{key}={value} in {line:?}: {e}"))
}
