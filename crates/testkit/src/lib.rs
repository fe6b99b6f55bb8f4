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

pub mod cli_tools;
pub mod fixture_files;
pub mod lines;

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

    /// The child's exit status if it has exited, without waiting.
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        let status = self.child.try_wait().expect("try_wait")?;
        self.wait_output_closed();
        Some(status)
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
    clean_env(&mut cmd, tmp);
    cmd
}

/// Gives `cmd` the environment [`command`] gives, for a command that runs
/// a pipehttp binary through another (`setpriv`), which passes it on.
pub fn clean_env<'a>(cmd: &'a mut Command, tmp: Option<&Path>) -> &'a mut Command {
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

/// A temp dir under /tmp that every user may create sockets in, for tests
/// that run processes as other users; sticky as /tmp is, so only a file's
/// owner (or root) may remove it.
#[cfg(unix)]
pub fn shared_tempdir() -> TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::Builder::new()
        .prefix("pipehttp-shared-")
        .tempdir_in("/tmp")
        .expect("a temp dir in /tmp");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o1777))
        .expect("chmod 1777 the shared temp dir");
    dir
}

/// `program` run as user `uid` with primary group `gid` and exactly the
/// supplementary `groups` (through `setpriv`), whatever the user database
/// says of that user.
#[cfg(unix)]
pub fn as_ids(uid: u32, gid: u32, groups: &[u32], program: &str) -> Command {
    let mut cmd = Command::new("setpriv");
    cmd.arg(format!("--reuid={uid}"))
        .arg(format!("--regid={gid}"));
    if groups.is_empty() {
        cmd.arg("--clear-groups");
    } else {
        let list: Vec<String> = groups.iter().map(u32::to_string).collect();
        cmd.arg(format!("--groups={}", list.join(",")));
    }
    cmd.arg(program);
    cmd
}

/// A group made for one test by [`Accounts`].
#[cfg(unix)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestGroup {
    /// Its name.
    pub name: String,
    /// Its gid.
    pub gid: u32,
}

/// A user made for one test by [`Accounts`], with a primary group of its own.
#[cfg(unix)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestUser {
    /// Its name.
    pub name: String,
    /// Its uid.
    pub uid: u32,
    /// Its primary group's gid.
    pub gid: u32,
}

#[cfg(unix)]
impl TestUser {
    /// `program` run as this user with the groups the user database gives
    /// it, as a login would (`setpriv --init-groups`).
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("setpriv");
        cmd.arg(format!("--reuid={}", self.uid))
            .arg(format!("--regid={}", self.gid))
            .arg("--init-groups")
            .arg(program);
        cmd
    }
}

/// Users and groups made for one test with `groupadd` and `useradd`, under
/// names no other test or run uses, and deleted when this drops. Only root
/// can make them: [`Accounts::new`] says so and returns `None` otherwise.
#[cfg(unix)]
#[derive(Debug, Default)]
pub struct Accounts {
    users: Vec<String>,
    groups: Vec<String>,
}

#[cfg(unix)]
impl Accounts {
    /// An empty set, or `None` (with a note on stderr) when this process
    /// is not root.
    pub fn new() -> Option<Self> {
        let root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout.trim_ascii() == b"0");
        if !root {
            eprintln!("skipped: only root can add the users and groups this test needs");
            return None;
        }
        Some(Self::default())
    }

    /// A new group.
    pub fn group(&mut self) -> TestGroup {
        let name = account_name();
        account_tool("groupadd", &["--system", &name]);
        self.groups.push(name.clone());
        let gid = id_of("group", &name);
        TestGroup { name, gid }
    }

    /// A new user with a new primary group, and member of `groups` in the
    /// group database.
    pub fn user(&mut self, groups: &[&TestGroup]) -> TestUser {
        let primary = self.group();
        let name = account_name();
        let mut args = vec![
            "--system",
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
            "--gid",
            &primary.name,
        ];
        let list: Vec<&str> = groups.iter().map(|g| g.name.as_str()).collect();
        let list = list.join(",");
        if !groups.is_empty() {
            args.extend(["--groups", &list]);
        }
        args.push(&name);
        account_tool("useradd", &args);
        self.users.push(name.clone());
        let uid = id_of("passwd", &name);
        TestUser {
            name,
            uid,
            gid: primary.gid,
        }
    }
}

#[cfg(unix)]
impl Drop for Accounts {
    fn drop(&mut self) {
        for user in self.users.drain(..).rev() {
            account_tool_quiet("userdel", &[&user]);
        }
        for group in self.groups.drain(..).rev() {
            account_tool_quiet("groupdel", &[&group]);
        }
    }
}

/// A user or group name no other test or run uses, within the 32
/// characters and the `[a-z_][a-z0-9_-]*` shape that `useradd` accepts.
#[cfg(unix)]
fn account_name() -> String {
    unique_name("pht")
}

/// Runs `useradd`, `groupadd`, … and panics with its output if it fails.
#[cfg(unix)]
fn account_tool(tool: &str, args: &[&str]) {
    if let Err(e) = try_account_tool(tool, args) {
        panic!("{e}");
    }
}

/// Cleanup: a failure is reported, never a panic inside a drop.
#[cfg(unix)]
fn account_tool_quiet(tool: &str, args: &[&str]) {
    if let Err(e) = try_account_tool(tool, args) {
        eprintln!("could not clean up: {e}");
    }
}

/// One account tool at a time in this process. While another process
/// holds the account files' lock the tool fails at once, so then it is run
/// again, a bounded number of times.
#[cfg(unix)]
fn try_account_tool(tool: &str, args: &[&str]) -> Result<(), String> {
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut attempt = 0;
    loop {
        let out = Command::new(tool)
            .args(args)
            .output()
            .map_err(|e| format!("cannot run {tool}: {e}"))?;
        if out.status.success() {
            return Ok(());
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        attempt += 1;
        if !stderr.contains("lock") || attempt >= 20 {
            return Err(format!("{tool} {args:?} failed: {}: {stderr}", out.status));
        }
        std::thread::sleep(Duration::from_millis(50 * attempt));
    }
}

/// The id `getent DATABASE NAME` gives: the third `:` field.
#[cfg(unix)]
fn id_of(database: &str, name: &str) -> u32 {
    let out = Command::new("getent")
        .args([database, name])
        .output()
        .expect("run getent");
    let line = String::from_utf8_lossy(&out.stdout);
    line.split(':')
        .nth(2)
        .and_then(|id| id.trim().parse().ok())
        .unwrap_or_else(|| panic!("getent {database} {name} said {line:?}"))
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

/// Polls the Unix socket at `path` until a server accepts there: an
/// external server (Python's, nginx's) prints no readiness line to wait
/// for. Panics with `server`'s output if nothing accepts in time.
#[cfg(unix)]
pub fn wait_accepting(path: &Path, server: &Spawned) {
    let deadline = Instant::now() + READY_TIMEOUT;
    while std::os::unix::net::UnixStream::connect(path).is_err() {
        assert!(
            Instant::now() < deadline,
            "nothing accepted on {} in time; the server's output:\n{}",
            path.display(),
            server.output()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Removes a file (a socket a killed server left behind) when dropped.
pub struct RemoveOnDrop(pub PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// nginx (Debian's `/usr/sbin/nginx`) in the foreground, as one process
/// (`master_process off`) running as the test's user (`user root` when
/// that is root, as in CI), with every file it writes in a temp dir of its
/// own. Dropping it kills nginx.
#[cfg(unix)]
pub struct Nginx {
    process: Spawned,
    dir: TempDir,
    port: u16,
}

#[cfg(unix)]
impl Nginx {
    /// Starts nginx with `http(dir, port)` as the body of its `http { }`
    /// block: `server { }` blocks, log formats, upstreams. `dir` is nginx's
    /// own temp dir (for sockets and logs), and `port` a TCP port on
    /// 127.0.0.1 that was free a moment ago, for a `listen` that needs
    /// one. Returns once nginx has opened every listening socket (it
    /// writes its pid file right after); a port someone took meanwhile
    /// is retried with another.
    pub fn start(http: impl Fn(&Path, u16) -> String) -> Self {
        for _ in 0..5 {
            let dir = tempdir().expect("a temp dir");
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port")
                .port();
            let d = dir.path().display();
            let conf = format!(
                "user root;\n\
                 master_process off;\n\
                 pid {d}/nginx.pid;\n\
                 error_log {d}/error.log;\n\
                 events {{ worker_connections 1024; }}\n\
                 http {{\n\
                 client_body_temp_path {d}/body;\n\
                 proxy_temp_path {d}/proxy;\n\
                 fastcgi_temp_path {d}/fastcgi;\n\
                 uwsgi_temp_path {d}/uwsgi;\n\
                 scgi_temp_path {d}/scgi;\n\
                 {}\n\
                 }}\n",
                http(dir.path(), port)
            );
            let conf_path = dir.path().join("nginx.conf");
            std::fs::write(&conf_path, conf).expect("write nginx.conf");
            let mut cmd = Command::new("/usr/sbin/nginx");
            cmd.arg("-p")
                .arg(dir.path())
                .arg("-e")
                .arg(dir.path().join("error.log"))
                .arg("-c")
                .arg(&conf_path)
                .args(["-g", "daemon off;"]);
            let mut process = Spawned::start(cmd);
            let pid_file = dir.path().join("nginx.pid");
            let deadline = Instant::now() + READY_TIMEOUT;
            loop {
                if pid_file.exists() {
                    return Self { process, dir, port };
                }
                if let Ok(Some(status)) = process.child.try_wait() {
                    process.wait_output_closed();
                    let log =
                        std::fs::read_to_string(dir.path().join("error.log")).unwrap_or_default();
                    if log.contains("Address already in use") {
                        break;
                    }
                    panic!(
                        "nginx exited with {status}; its output:\n{}\nerror.log:\n{log}",
                        process.output()
                    );
                }
                assert!(
                    Instant::now() < deadline,
                    "nginx never wrote its pid file; its output:\n{}",
                    process.output()
                );
                // nginx announces nothing on its output: its pid file is
                // the one sign, and no event tells of a file's creation.
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        panic!("nginx found its port taken five times in a row");
    }

    /// nginx's temp dir, where its sockets and logs are.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The port given to the `http` block.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// nginx's access log (`{dir}/access.log`, if the config writes one
    /// there) once it has `lines` lines: nginx logs a request after its
    /// response is out, so a client can finish before the line is written.
    /// Panics with what the log holds if it does not get there in time.
    pub fn access_log(&self, lines: usize) -> String {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let log =
                std::fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default();
            if log.lines().count() >= lines {
                return log;
            }
            assert!(
                Instant::now() < deadline,
                "nginx's access log never reached {lines} lines:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// nginx's error log so far.
    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }
}

#[cfg(unix)]
impl Deref for Nginx {
    type Target = Spawned;
    fn deref(&self) -> &Spawned {
        &self.process
    }
}

/// What a client that trickled a request body saw.
#[cfg(unix)]
#[derive(Debug)]
pub struct Trickled {
    /// The answer's status line and headers.
    pub head: String,
    /// How long after the first body byte the answer came.
    pub after: Duration,
}

/// Sends `POST target` on `conn`, announcing `length` body bytes, then
/// sends them one at a time, `every` apart (a slowloris on the body),
/// until the server answers. Panics if no answer comes within `patience`.
/// The caller connects, so that clients queue in the order it chooses.
#[cfg(unix)]
pub fn trickle_body(
    mut conn: std::os::unix::net::UnixStream,
    target: &str,
    length: usize,
    every: Duration,
    patience: Duration,
) -> Trickled {
    use std::io::Write;
    use std::sync::atomic::AtomicBool;

    write!(
        conn,
        "POST {target} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {length}\r\n\r\n"
    )
    .expect("send the head");
    let started = Instant::now();
    let answered = Arc::new(AtomicBool::new(false));
    let mut writer = conn.try_clone().expect("a second handle");
    let stop = answered.clone();
    std::thread::spawn(move || {
        for _ in 0..length {
            if stop.load(Ordering::SeqCst) || writer.write_all(b"x").is_err() {
                return;
            }
            std::thread::sleep(every);
        }
    });
    conn.set_read_timeout(Some(patience))
        .expect("a read timeout");
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    let end = loop {
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            break end;
        }
        match conn.read(&mut buf) {
            Ok(0) => panic!(
                "the server closed a trickled body's connection without an answer after {:?}: {:?}",
                started.elapsed(),
                String::from_utf8_lossy(&got)
            ),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => panic!(
                "no answer to a trickled body after {:?}: {e}",
                started.elapsed()
            ),
        }
    };
    let after = started.elapsed();
    answered.store(true, Ordering::SeqCst);
    Trickled {
        head: String::from_utf8_lossy(&got[..end]).into_owned(),
        after,
    }
}

/// Content no pattern-based shortcut (compression, a repeated block)
/// reproduces by accident; the same `seed` gives the same bytes.
pub fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Like `assert_eq!` on large buffers, without printing them.
pub fn assert_same_bytes(got: &[u8], want: &[u8]) {
    assert_eq!(got.len(), want.len(), "length differs");
    if let Some(i) = got.iter().zip(want).position(|(a, b)| a != b) {
        panic!("bytes differ first at offset {i}");
    }
}

/// The HTTP/1.1 response at the start of `buf`, once all of it has come:
/// its head (status line and headers) and its body, whose length is the
/// Content-Length (0 without one). `None` while more is to be read.
pub fn complete_response(buf: &[u8]) -> Option<(String, Vec<u8>)> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let len = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    let body = buf.get(end + 4..end + 4 + len)?.to_vec();
    Some((head, body))
}
