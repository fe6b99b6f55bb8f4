//! Support for pipehttp's own tests: names no other test uses, and child
//! processes whose output is watched for readiness instead of slept on.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub use tempfile::{TempDir, tempdir};

/// How long a test waits for a child to get ready. Generous: CI machines
/// are slow and Wine is slower; a healthy child is ready in well under a
/// second.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// A pipe name that no other test, test binary or earlier run uses.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "{prefix}-{}-{}-{nanos:x}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

#[derive(Default)]
struct Output {
    lines: Vec<String>,
    closed: usize,
}

/// A child process whose stdout and stderr lines are collected as they come.
/// Dropping it kills the child.
pub struct Spawned {
    child: Child,
    output: Arc<(Mutex<Output>, Condvar)>,
    what: String,
}

impl Spawned {
    /// Starts `cmd` with piped stdout and stderr.
    pub fn start(mut cmd: Command) -> Self {
        let what = format!("{cmd:?}");
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
        let output = Arc::new((Mutex::new(Output::default()), Condvar::new()));
        let stdout = child.stdout.take().expect("piped");
        let stderr = child.stderr.take().expect("piped");
        collect(stdout, output.clone());
        collect(stderr, output.clone());
        Self {
            child,
            output,
            what,
        }
    }

    /// The OS process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Every line so far, stdout and stderr interleaved as they arrived.
    pub fn output(&self) -> String {
        self.output.0.lock().unwrap().lines.join("\n")
    }

    /// Waits until a line containing `needle` appears and returns it.
    /// Panics with the output so far if the child exits or time runs out.
    pub fn wait_for_line(&self, needle: &str) -> String {
        self.wait_for_lines(needle, 1).remove(0)
    }

    /// Waits until `count` lines containing `needle` have appeared.
    pub fn wait_for_lines(&self, needle: &str, count: usize) -> Vec<String> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let (lock, cvar) = &*self.output;
        let mut out = lock.lock().unwrap();
        loop {
            let found: Vec<String> = out
                .lines
                .iter()
                .filter(|l| l.contains(needle))
                .cloned()
                .collect();
            if found.len() >= count {
                return found;
            }
            let now = Instant::now();
            assert!(
                out.closed < 2 && now < deadline,
                "{} never printed {count} line(s) with {needle:?}; its output:\n{}",
                self.what,
                out.lines.join("\n")
            );
            out = cvar.wait_timeout(out, deadline - now).unwrap().0;
        }
    }

    /// Waits for the child to exit by itself and returns its status.
    pub fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                self.wait_output_closed();
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not exit; its output:\n{}",
                self.what,
                self.output()
            );
            // A child has no readiness signal for its exit that std offers
            // besides blocking; polling every few ms keeps the deadline.
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn wait_output_closed(&self) {
        let (lock, cvar) = &*self.output;
        let mut out = lock.lock().unwrap();
        let deadline = Instant::now() + READY_TIMEOUT;
        while out.closed < 2 && Instant::now() < deadline {
            out = cvar.wait_timeout(out, Duration::from_secs(1)).unwrap().0;
        }
    }

    /// Kills the child at once (SIGKILL on Unix) and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM (Unix only), as a service manager stops a server.
    #[cfg(unix)]
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed");
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        self.kill();
    }
}

fn collect(pipe: impl Read + Send + 'static, output: Arc<(Mutex<Output>, Condvar)>) {
    std::thread::spawn(move || {
        let reader = BufReader::new(pipe);
        for line in reader.split(b'\n') {
            let Ok(line) = line else { break };
            let line = String::from_utf8_lossy(&line).trim_end().to_owned();
            let (lock, cvar) = &*output;
            lock.lock().unwrap().lines.push(line);
            cvar.notify_all();
        }
        let (lock, cvar) = &*output;
        lock.lock().unwrap().closed += 1;
        cvar.notify_all();
    });
}
