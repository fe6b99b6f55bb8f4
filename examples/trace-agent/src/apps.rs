//! Apps traced by Datadog's own tracers, which no one here wrote:
//! `python/app.py` on `ddtrace` (PyPI) and `node/app.js` on `dd-trace`
//! (npm), beside this crate. They reach the agent as Datadog documents,
//! `DD_TRACE_AGENT_URL=unix://PATH`, PATH being the socket a pipe name
//! stands for on Unix (`$TMPDIR/CoreFxPipe_NAME`).
//!
//! Each app makes a given number of spans, writes every span id it made to
//! a file and prints `app pid=… lang=… tracer=… made=N`; the ids against
//! the agent's journal say exactly what arrived.
//! `scripts/install-test-deps.sh` installs both tracers: ddtrace into
//! `python/.venv`, dd-trace into `node/node_modules`.

use std::collections::HashSet;
use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// The directory of this crate, where the apps are.
pub fn example_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Which tracer an app runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    /// `python/app.py` on ddtrace.
    Python,
    /// `node/app.js` on dd-trace.
    Node,
}

impl Lang {
    /// `python` or `nodejs`, as the tracer names its language in
    /// `Datadog-Meta-Lang`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Python => "python",
            Self::Node => "nodejs",
        }
    }

    /// The tracer's package: `ddtrace` or `dd-trace`.
    pub fn package(self) -> &'static str {
        match self {
            Self::Python => "ddtrace",
            Self::Node => "dd-trace",
        }
    }

    /// The app's script.
    pub fn script(self) -> PathBuf {
        match self {
            Self::Python => example_dir().join("python").join("app.py"),
            Self::Node => example_dir().join("node").join("app.js"),
        }
    }
}

impl fmt::Display for Lang {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An interpreter that can load its tracer.
#[derive(Debug, Clone)]
pub struct Runtime {
    /// Which tracer.
    pub lang: Lang,
    /// The interpreter: a Python with ddtrace, or node.
    pub program: PathBuf,
    /// The tracer's version, as it reports it (`4.16.0`).
    pub version: String,
}

impl Runtime {
    /// Finds the interpreter for `lang`, `explicit` if given, and checks
    /// that it loads the tracer. The error says what is missing and how to
    /// install it.
    ///
    /// Python: the virtual environment `python/.venv` beside the app, else
    /// `python3`. Node: `node`, with dd-trace in `node/node_modules`.
    pub fn find(lang: Lang, explicit: Option<&Path>) -> Result<Self, String> {
        let program = match (explicit, lang) {
            (Some(program), _) => program.to_owned(),
            (None, Lang::Python) => {
                let venv = example_dir().join("python").join(".venv");
                let python = if cfg!(windows) {
                    venv.join("Scripts").join("python.exe")
                } else {
                    venv.join("bin").join("python")
                };
                if python.exists() {
                    python
                } else {
                    PathBuf::from("python3")
                }
            }
            (None, Lang::Node) => PathBuf::from("node"),
        };
        let (flag, probe) = match lang {
            Lang::Python => ("-c", "import ddtrace; print(ddtrace.__version__)"),
            Lang::Node => (
                "-e",
                "console.log(require('dd-trace/package.json').version)",
            ),
        };
        let install = match lang {
            Lang::Python => {
                "scripts/install-test-deps.sh, or: python3 -m venv examples/trace-agent/python/.venv && examples/trace-agent/python/.venv/bin/pip install -r examples/trace-agent/python/requirements.txt"
            }
            Lang::Node => {
                "scripts/install-test-deps.sh, or: npm ci --prefix examples/trace-agent/node"
            }
        };
        let output = Command::new(&program)
            .args([flag, probe])
            .current_dir(lang.script().parent().expect("the app is in a directory"))
            .stdin(Stdio::null())
            .output()
            .map_err(|e| {
                format!(
                    "cannot run {} ({e}): install it, or name it with --{}; then install {}: {install}",
                    program.display(),
                    lang.cli_flag(),
                    lang.package(),
                )
            })?;
        if !output.status.success() {
            return Err(format!(
                "{} cannot load {} ({}): install it with {install}",
                program.display(),
                lang.package(),
                String::from_utf8_lossy(&output.stderr)
                    .lines()
                    .last()
                    .unwrap_or("no message"),
            ));
        }
        let version = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        Ok(Self {
            lang,
            program,
            version,
        })
    }

    /// The command that runs the app: `spans` spans at `rate` a second (0:
    /// at once), ids to `ids`, the agent at `socket`. A Node app then
    /// stays up `linger` (see `node/app.js`: dd-trace's one retry of a
    /// failed payload comes 5 to 7.5 s later); a Python app needs none,
    /// ddtrace retries within its flush at exit.
    pub fn app(
        &self,
        socket: &Path,
        spans: u32,
        rate: f64,
        ids: &Path,
        linger: Duration,
    ) -> Command {
        let mut cmd = Command::new(&self.program);
        cmd.arg(self.lang.script())
            .arg(spans.to_string())
            .arg(rate.to_string())
            .arg(ids);
        if self.lang == Lang::Node {
            cmd.arg(linger.as_secs_f64().to_string());
        }
        let mut url = OsString::from("unix://");
        url.push(socket);
        // What Datadog documents for an agent on a socket. A host or port
        // left in the environment would win over it in some tracers.
        cmd.env("DD_TRACE_AGENT_URL", url)
            .env_remove("DD_AGENT_HOST")
            .env_remove("DD_TRACE_AGENT_PORT");
        // Flush twice a second (the defaults are 1 s and 2 s), so that an
        // app's last spans leave soon after it made them; unless the
        // environment says otherwise.
        let (interval, value) = match self.lang {
            Lang::Python => ("DD_TRACE_WRITER_INTERVAL_SECONDS", "0.5"),
            Lang::Node => ("DD_TRACE_FLUSH_INTERVAL", "500"),
        };
        if std::env::var_os(interval).is_none() {
            cmd.env(interval, value);
        }
        cmd
    }
}

impl Lang {
    fn cli_flag(self) -> &'static str {
        match self {
            Self::Python => "python",
            Self::Node => "node",
        }
    }
}

/// What an app's ids file holds: the span ids it made.
pub fn read_ids(path: &Path) -> Result<Vec<u64>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    text.lines()
        .enumerate()
        .map(|(i, line)| {
            line.trim().parse().map_err(|e| {
                format!(
                    "{} line {}: {line:?} is not a span id: {e}",
                    path.display(),
                    i + 1
                )
            })
        })
        .collect()
}

/// Spans made against span ids journaled.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Arrival {
    /// Span ids the apps made.
    pub made: u64,
    /// Of those, in the journal.
    pub arrived: u64,
}

impl Arrival {
    /// Counts which of `made` are in `journaled`.
    pub fn of(made: &[u64], journaled: &HashSet<u64>) -> Self {
        Self {
            made: made.len() as u64,
            arrived: made.iter().filter(|id| journaled.contains(id)).count() as u64,
        }
    }

    /// Made, never arrived.
    pub fn missing(&self) -> u64 {
        self.made - self.arrived
    }

    /// Arrived, in percent of made (100 when nothing was made).
    pub fn percent(&self) -> f64 {
        if self.made == 0 {
            100.0
        } else {
            self.arrived as f64 * 100.0 / self.made as f64
        }
    }
}

/// Whether an app's output line is its tracer reporting a problem
/// (`ddtrace WARNING`/`ERROR`, `dd-trace WARN`/`ERROR`): the apps print
/// their tracer's log that way.
pub fn is_tracer_problem(line: &str) -> bool {
    ["ddtrace ", "dd-trace "].iter().any(|prefix| {
        line.strip_prefix(prefix).is_some_and(|rest| {
            ["ERROR", "WARN", "CRITICAL"]
                .iter()
                .any(|level| rest.starts_with(level))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracer_problems_are_told_apart_from_the_rest() {
        assert!(is_tracer_problem(
            "ddtrace ERROR ddtrace.internal.writer.writer: failed to send"
        ));
        assert!(is_tracer_problem("ddtrace WARNING ddtrace: x"));
        assert!(is_tracer_problem("dd-trace WARN x"));
        assert!(is_tracer_problem("dd-trace ERROR Error: x"));
        assert!(!is_tracer_problem("dd-trace INFO x"));
        assert!(!is_tracer_problem("app pid=1 lang=python made=5"));
    }

    #[test]
    fn arrival_counts_only_ids_that_were_made() {
        let journaled = HashSet::from([1, 2, 3, 99]);
        let arrival = Arrival::of(&[1, 2, 4, 5], &journaled);
        assert_eq!(
            arrival,
            Arrival {
                made: 4,
                arrived: 2
            }
        );
        assert_eq!(arrival.missing(), 2);
        assert!((arrival.percent() - 50.0).abs() < 1e-9);
    }
}
