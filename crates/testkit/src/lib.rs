//! Support for pipehttp's own tests: names no other test uses, child
//! processes whose output is watched for readiness instead of slept on, and
//! `pipehttp serve` (or any pipehttp server process) started the one way
//! every suite starts it.

use std::io::{BufRead, BufReader, Read};
use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
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

/// Whether this Windows program runs under Wine, which leaves some pipe
/// security unenforced; tests of that skip there and say so.
#[cfg(windows)]
pub fn running_under_wine() -> bool {
    use windows_sys::Win32::System::LibraryLoader::{GetModuleHandleW, GetProcAddress};
    let ntdll: Vec<u16> = "ntdll.dll\0".encode_utf16().collect();
    // SAFETY: both strings are NUL-terminated; a missing export yields None.
    unsafe {
        let module = GetModuleHandleW(ntdll.as_ptr());
        !module.is_null() && GetProcAddress(module, c"wine_get_version".as_ptr().cast()).is_some()
    }
}

/// Variables that would configure a pipehttp process behind a test's back.
const CONFIG_VARS: [&str; 6] = [
    "RUST_LOG",
    "PIPEHTTP_URLS",
    "ASPNETCORE_URLS",
    "DOTNET_URLS",
    "ASPNETCORE_ENVIRONMENT",
    "DOTNET_ENVIRONMENT",
];

/// `program` (a pipehttp binary) with an environment that configures
/// nothing by itself: none of the caller's URL lists, environment names,
/// `Kestrel__*` variables or `RUST_LOG`, and no colour. With `tmp`, TMPDIR
/// is set to it, so pipe names map to socket files in the test's own
/// directory.
pub fn command(program: &str, tmp: Option<&Path>) -> Command {
    let mut cmd = Command::new(program);
    for var in CONFIG_VARS {
        cmd.env_remove(var);
    }
    for (var, _) in std::env::vars_os() {
        let kestrel = var
            .to_str()
            .is_some_and(|v| v.len() > 9 && v[..9].eq_ignore_ascii_case("kestrel__"));
        if kestrel {
            cmd.env_remove(var);
        }
    }
    cmd.env("NO_COLOR", "1");
    if let Some(tmp) = tmp {
        cmd.env("TMPDIR", tmp);
    }
    cmd
}

/// `program` run as user and group `uid` with no supplementary groups
/// (through `setpriv`), or as ourselves.
#[cfg(unix)]
pub fn as_user(uid: Option<u32>, program: &str) -> Command {
    match uid {
        None => Command::new(program),
        Some(id) => {
            let mut cmd = Command::new("setpriv");
            cmd.arg(format!("--reuid={id}"))
                .arg(format!("--regid={id}"))
                .arg("--clear-groups")
                .arg(program);
            cmd
        }
    }
}

/// Waits until something accepts on the Unix socket at `path`, the only
/// readiness a bare socket file offers; panics with `owner`'s output if
/// nothing does in time.
#[cfg(unix)]
pub fn wait_accepting(path: &Path, owner: &Spawned) {
    let deadline = Instant::now() + READY_TIMEOUT;
    while std::os::unix::net::UnixStream::connect(path).is_err() {
        assert!(
            Instant::now() < deadline,
            "nothing accepted on {} in time; the output of {}:\n{}",
            path.display(),
            owner.what,
            owner.output()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Debian's nginx in the foreground, as root with no master process, with
/// every file it writes in `dir` and `http` (log formats, `server` blocks)
/// inside its `http { }` section. It logs errors to `dir/error.log`. Wait
/// for the socket of one of the servers with [`wait_accepting`].
#[cfg(unix)]
pub fn nginx(dir: &Path, http: &str) -> Spawned {
    let d = dir.display();
    let conf = format!(
        "user root;\nmaster_process off;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
         events {{ worker_connections 64; }}\n\
         http {{\n\
         client_body_temp_path {d}/body;\n\
         proxy_temp_path {d}/proxy;\n\
         fastcgi_temp_path {d}/fastcgi;\n\
         uwsgi_temp_path {d}/uwsgi;\n\
         scgi_temp_path {d}/scgi;\n\
         {http}\n}}\n"
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, conf).expect("write nginx.conf");
    let mut cmd = Command::new("/usr/sbin/nginx");
    cmd.arg("-p")
        .arg(dir)
        .arg("-e")
        .arg(dir.join("error.log"))
        .arg("-c")
        .arg(&path)
        .args(["-g", "daemon off;"]);
    Spawned::start(cmd)
}

/// One endpoint a server announced with `Now listening on: URL (PATH)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announced {
    /// The address, as the server wrote it.
    pub url: String,
    /// The socket file or pipe path; `None` for TCP.
    pub path: Option<PathBuf>,
}

/// `… Now listening on: http://pipe:/x (/tmp/CoreFxPipe_x)` → its URL and path.
pub fn parse_listening(line: &str) -> Announced {
    let (_, rest) = line
        .split_once("Now listening on: ")
        .unwrap_or_else(|| panic!("not a 'Now listening on:' line: {line:?}"));
    match rest
        .trim_end()
        .strip_suffix(')')
        .and_then(|r| r.split_once(" ("))
    {
        Some((url, path)) => Announced {
            url: url.to_owned(),
            path: Some(PathBuf::from(path)),
        },
        None => Announced {
            url: rest.trim().to_owned(),
            path: None,
        },
    }
}

/// A server process (`pipehttp serve`, `pipehttp proxy`, an example's
/// agent) that has announced its endpoints. It derefs to its [`Spawned`]
/// process; dropping it kills the process.
pub struct Serve {
    process: Spawned,
    endpoints: Vec<Announced>,
}

impl Serve {
    /// Starts `cmd` and waits until it has announced `count` endpoints.
    pub fn start(cmd: Command, count: usize) -> Self {
        let process = Spawned::start(cmd);
        let endpoints = process
            .wait_for_lines("Now listening on:", count)
            .iter()
            .map(|line| parse_listening(line))
            .collect();
        Self { process, endpoints }
    }

    /// Every endpoint announced, in order.
    pub fn endpoints(&self) -> &[Announced] {
        &self.endpoints
    }

    /// The `i`-th endpoint's address.
    pub fn url(&self, i: usize) -> &str {
        &self.endpoints[i].url
    }

    /// The `i`-th endpoint's socket file or pipe path.
    pub fn path(&self, i: usize) -> &Path {
        self.endpoints[i]
            .path
            .as_deref()
            .unwrap_or_else(|| panic!("{} has no socket path", self.endpoints[i].url))
    }

    /// The process, for a test that goes on without the endpoints.
    pub fn into_process(self) -> Spawned {
        self.process
    }

    /// SIGTERM, then waits for the exit, which must be a success.
    #[cfg(unix)]
    pub fn stop(mut self) {
        self.process.terminate();
        let status = self.process.wait_exit();
        assert!(
            status.success(),
            "the server exited with {status} after SIGTERM; its output:\n{}",
            self.process.output()
        );
    }
}

impl Deref for Serve {
    type Target = Spawned;
    fn deref(&self) -> &Spawned {
        &self.process
    }
}

impl DerefMut for Serve {
    fn deref_mut(&mut self) -> &mut Spawned {
        &mut self.process
    }
}
