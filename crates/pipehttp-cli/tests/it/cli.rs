//! The client side of the `pipehttp` binary end to end: `get`, `request`
//! and `demo` against real `pipehttp serve` processes, with curl's exit
//! codes and output forms; and the library client riding out a server
//! process that is killed and started again. Every test has its own pipe
//! names and TMPDIR.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use pipehttp::transport::Listener;
use pipehttp::{Client, PipeOptions};
use testkit::{Serve, TempDir, assert_same_bytes, pseudo_random, tempdir, unique_name};

const BIN: &str = env!("CARGO_BIN_EXE_pipehttp");

/// `pipehttp` without the caller's PIPEHTTP_URLS or RUST_LOG. It keeps
/// this process's TMPDIR, so it meets pipes bound in this process.
fn pipehttp_here() -> Command {
    testkit::command(BIN, None)
}

/// `pipehttp` with TMPDIR set to `dir`, so pipe names map to socket files
/// there.
fn pipehttp(dir: &TempDir) -> Command {
    testkit::command(BIN, Some(dir.path()))
}

/// `pipehttp serve` on pipe `name` with `extra` flags, once it listens.
fn serve(dir: &TempDir, name: &str, extra: &[&str]) -> Serve {
    let mut cmd = pipehttp(dir);
    cmd.args(["serve", "--urls", &format!("http://pipe:/{name}")])
        .args(extra);
    Serve::start(cmd, 1)
}

/// A temp dir of its own and `pipehttp serve` in it on a new pipe named
/// from `prefix`: the dir, the pipe's name and the server.
fn served(prefix: &str, extra: &[&str]) -> (TempDir, String, Serve) {
    let dir = tempdir().unwrap();
    let name = unique_name(prefix);
    let server = serve(&dir, &name, extra);
    (dir, name, server)
}

/// What a finished client run left behind.
struct Run {
    code: Option<i32>,
    stdout: Vec<u8>,
    stderr: String,
}

impl Run {
    fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
}

/// Runs `pipehttp ARGS` to its end.
fn run(dir: &TempDir, args: &[&str]) -> Run {
    let out = pipehttp(dir).args(args).output().expect("run pipehttp");
    Run {
        code: out.status.code(),
        stdout: out.stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs `pipehttp ARGS` to its end and asserts it exits with `code`.
fn run_exits(dir: &TempDir, args: &[&str], code: i32) -> Run {
    let run = run(dir, args);
    assert_eq!(
        run.code,
        Some(code),
        "pipehttp {args:?}; stderr: {}",
        run.stderr
    );
    run
}

/// Asserts exit code 0 and returns stdout as text.
fn ok_stdout(dir: &TempDir, args: &[&str]) -> String {
    run_exits(dir, args, 0).stdout_text()
}

fn assert_same_file(got: &Path, want: &Path) {
    let (got, want) = (std::fs::read(got).unwrap(), std::fs::read(want).unwrap());
    assert_same_bytes(&got, &want);
}

// --- exit codes ---------------------------------------------------------

#[test]
fn get_prints_the_body_and_exits_0() {
    let (dir, name, _server) = served("ok", &[]);
    let run = run_exits(&dir, &["get", &format!("http://pipe:/{name}:/test")], 0);
    assert_eq!(run.stdout_text(), "Hello world!");
    assert_eq!(run.stderr, "", "nothing but the body is printed");
}

#[test]
fn no_server_exits_7_naming_the_pipe() {
    let dir = tempdir().unwrap();
    let name = unique_name("absent");
    let run = run_exits(
        &dir,
        &[
            "get",
            "--connect-timeout",
            "0.5",
            &format!("http://pipe:/{name}:/test"),
        ],
        7,
    );
    assert!(run.stdout.is_empty());
    assert!(
        run.stderr
            .contains(&format!("no server is listening on pipe '{name}'")),
        "{}",
        run.stderr
    );
}

#[test]
fn fail_flag_turns_a_404_into_exit_22_without_the_body() {
    let (dir, name, _server) = served("fail", &[]);
    let target = format!("http://pipe:/{name}:/nowhere");

    // Without --fail a 404 is a successful transfer, as in curl.
    assert_eq!(ok_stdout(&dir, &["get", &target]), "not found");

    let run = run_exits(&dir, &["get", "--fail", &target], 22);
    assert!(run.stdout.is_empty(), "{}", run.stdout_text());
    assert!(run.stderr.contains("404"), "{}", run.stderr);
}

#[test]
fn max_time_on_a_server_that_never_answers_exits_28() {
    let name = unique_name("mute");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let address = format!("http://pipe:/{name}").parse().unwrap();
    let listener = rt
        .block_on(Listener::bind(&address, &PipeOptions::default()))
        .unwrap();
    // Accept and hold connections without ever answering.
    rt.spawn(async move {
        let mut held = Vec::new();
        loop {
            held.push(listener.accept().await.expect("accept"));
        }
    });
    let out = pipehttp_here()
        .args(["get", "-m", "0.5", &format!("http://pipe:/{name}:/test")])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(28), "{stderr}");
    assert!(
        stderr.contains("(28) Operation timed out after 500 milliseconds"),
        "{stderr}"
    );
}

#[test]
fn retry_flag_reaches_a_server_that_starts_after_the_first_attempt_failed() {
    let dir = tempdir().unwrap();
    let name = unique_name("retry");
    let child = pipehttp(&dir)
        .args(["get", "--connect-timeout", "0.2", "--retry", "3"])
        .arg(format!("http://pipe:/{name}:/test"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Well past its connect timeout: without --retry it would have exited 7.
    std::thread::sleep(Duration::from_millis(600));
    let _server = serve(&dir, &name, &[]);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(out.stdout, b"Hello world!");
}

#[test]
fn file_errors_exit_26_for_the_body_and_23_for_the_output() {
    let (dir, name, _server) = served("files", &[]);
    let missing = dir.path().join("missing");
    run_exits(
        &dir,
        &[
            "request",
            "-T",
            &missing.display().to_string(),
            &format!("http://pipe:/{name}:/echo"),
        ],
        26,
    );
    run_exits(
        &dir,
        &[
            "get",
            "-o",
            missing.join("out").to_str().unwrap(),
            &format!("http://pipe:/{name}:/test"),
        ],
        23,
    );
}

// --- output forms -------------------------------------------------------

#[test]
fn include_prints_status_line_and_headers_before_the_body() {
    let (dir, name, _server) = served("include", &[]);
    let out = ok_stdout(&dir, &["get", "-i", &format!("http://pipe:/{name}:/test")]);
    assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out:?}");
    let (head, body) = out
        .split_once("\r\n\r\n")
        .expect("a blank line ends the head");
    assert_eq!(body, "Hello world!");
    let headers: Vec<&str> = head.lines().skip(1).collect();
    assert!(
        headers.contains(&"content-type: text/plain; charset=utf-8"),
        "{head}"
    );
    assert!(headers.contains(&"content-length: 12"), "{head}");
}

#[test]
fn verbose_writes_both_heads_to_stderr_and_only_the_body_to_stdout() {
    let (dir, name, _server) = served("verbose", &[]);
    let run = run_exits(
        &dir,
        &["get", "-v", &format!("http://pipe:/{name}:/test")],
        0,
    );
    assert_eq!(run.stdout_text(), "Hello world!");
    let lines: Vec<&str> = run.stderr.lines().collect();
    for expected in [
        "> GET /test HTTP/1.1",
        "> Host: localhost",
        "< HTTP/1.1 200 OK",
    ] {
        assert!(
            lines.contains(&expected),
            "no {expected:?} in:\n{}",
            run.stderr
        );
    }
}

#[test]
fn http2_prior_knowledge_is_answered_in_http2_and_shown_as_curl_shows_it() {
    let (dir, name, _server) = served("h2", &[]);
    let out = ok_stdout(
        &dir,
        &[
            "get",
            "--http2-prior-knowledge",
            "-i",
            &format!("http://pipe:/{name}:/test"),
        ],
    );
    assert!(out.starts_with("HTTP/2 200 \r\n"), "{out:?}");
    assert!(out.ends_with("\r\n\r\nHello world!"), "{out:?}");
}

// --- bodies, headers, methods ---------------------------------------------

#[test]
fn upload_of_50_mib_from_a_file_echoes_back_byte_for_byte() {
    let (dir, name, _server) = served("upload", &["--max-request-body-size", "100000000"]);
    let input = dir.path().join("in.bin");
    let output = dir.path().join("out.bin");
    std::fs::write(&input, pseudo_random(50 * 1024 * 1024, 7)).unwrap();

    let data = format!("@{}", input.display());
    let run = run_exits(
        &dir,
        &[
            "request",
            "--data-binary",
            &data,
            "-o",
            output.to_str().unwrap(),
            &format!("http://pipe:/{name}:/echo"),
        ],
        0,
    );
    assert!(run.stdout.is_empty(), "the body went to the file");
    assert_same_file(&output, &input);
}

#[test]
fn header_and_method_flags_reach_the_server() {
    let (dir, name, _server) = served("headers", &[]);
    let echo = format!("http://pipe:/{name}:/echo");

    // /echo answers with the request's own content type.
    let out = ok_stdout(
        &dir,
        &[
            "request",
            "-X",
            "PUT",
            "-d",
            "x",
            "-H",
            "Content-Type: text/x-test",
            "-i",
            &echo,
        ],
    );
    assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out:?}");
    assert!(out.contains("\r\ncontent-type: text/x-test\r\n"), "{out:?}");
    assert!(out.ends_with("\r\n\r\nx"), "{out:?}");

    // Without -H, -d sends curl's form content type.
    let out = ok_stdout(&dir, &["request", "-d", "y", "-i", &echo]);
    assert!(
        out.contains("\r\ncontent-type: application/x-www-form-urlencoded\r\n"),
        "{out:?}"
    );

    // /echo takes POST and PUT only: the method really is sent.
    let out = ok_stdout(&dir, &["request", "-X", "DELETE", "-i", &echo]);
    assert!(
        out.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"),
        "{out:?}"
    );
}

#[test]
fn data_from_stdin_is_sent_as_the_body() {
    let (dir, name, _server) = served("stdin", &[]);
    let mut child = pipehttp(&dir)
        .args([
            "request",
            "--data-binary",
            "@-",
            &format!("http://pipe:/{name}:/echo"),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let data = pseudo_random(300_000, 3);
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn({
        let data = data.clone();
        move || stdin.write_all(&data).unwrap()
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout == data, "the echo differs from what stdin held");
}

#[test]
fn pipe_flag_routes_an_ordinary_url_to_the_pipe() {
    let (dir, name, _server) = served("pipe-flag", &[]);
    let out = ok_stdout(&dir, &["get", "--pipe", &name, "http://localhost/test"]);
    assert_eq!(out, "Hello world!");
}

// --- demo ---------------------------------------------------------------

#[test]
fn demo_exits_0_and_prints_hello_world() {
    let dir = tempdir().unwrap();
    let name = unique_name("demo");
    let out = ok_stdout(&dir, &["demo", "--pipe", &name]);
    assert!(out.contains("Hello world!"), "{out}");
    assert!(out.contains("The waiting request succeeded"), "{out}");
}

// --- a killed server process comes back ---------------------------------

#[test]
fn client_carries_on_when_its_cli_server_is_killed_and_started_again() {
    // This test's client sees the servers' pipe path through the same
    // TMPDIR, so the servers inherit it.
    let name = unique_name("killed");
    let url = format!("http://pipe:/{name}");
    let start = || {
        let mut cmd = pipehttp_here();
        cmd.args(["serve", "--urls", &url]);
        Serve::start(cmd, 1)
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = Client::new();
    let call = |method: http::Method, path: &str, body: &'static str| {
        rt.block_on(async {
            let res = client
                .request(method, format!("{url}:{path}"))
                .body(body)
                .send()
                .await
                .unwrap();
            let pid = res.peer().and_then(|p| p.pid);
            (pid, res.text().await.unwrap())
        })
    };

    let mut first = start();
    let (pid, body) = call(http::Method::GET, "/test", "");
    assert_eq!((pid, body.as_str()), (Some(first.id()), "Hello world!"));

    first.kill();
    let mut second = start();

    // No error handling in the caller: the same client just works, even
    // when the first request after the restart is a POST.
    let (pid, body) = call(http::Method::POST, "/echo", "still here");
    assert_eq!((pid, body.as_str()), (Some(second.id()), "still here"));
    let (pid, body) = call(http::Method::GET, "/test", "");
    assert_eq!((pid, body.as_str()), (Some(second.id()), "Hello world!"));

    // A graceful stop removes the socket file from the shared TMPDIR.
    #[cfg(unix)]
    second.terminate();
    #[cfg(not(unix))]
    second.kill();
    second.wait_exit();
}

// --- Unix only ----------------------------------------------------------

#[cfg(unix)]
mod unix {
    use std::io::Read;
    use std::os::unix::fs::PermissionsExt;
    use std::process::Stdio;
    use std::time::{Duration, Instant};

    use super::*;

    fn euid() -> u32 {
        // SAFETY: geteuid has no preconditions.
        unsafe { libc::geteuid() }
    }

    #[test]
    fn unix_socket_flag_and_unix_target_reach_a_unix_socket_server() {
        let dir = tempdir().unwrap();
        let socket = dir.path().join("s.sock");
        let url = format!("http://unix:{}", socket.display());
        let mut cmd = pipehttp(&dir);
        cmd.args(["serve", "--urls", &url]);
        let server = Serve::start(cmd, 1);
        assert_eq!(server.url(0), url);

        let path = socket.to_str().unwrap();
        let out = ok_stdout(
            &dir,
            &["get", "--unix-socket", path, "http://localhost/test"],
        );
        assert_eq!(out, "Hello world!");
        let out = ok_stdout(&dir, &["get", &format!("{url}:/test")]);
        assert_eq!(out, "Hello world!");
    }

    #[test]
    fn client_waiting_for_an_absent_server_uses_little_cpu_then_exits_7() {
        let dir = tempdir().unwrap();
        let name = unique_name("cpu");
        let started = Instant::now();
        #[allow(clippy::zombie_processes, reason = "reaped below with wait4")]
        let mut child = pipehttp(&dir)
            .args([
                "get",
                "--connect-timeout",
                "3",
                &format!("http://pipe:/{name}:/x"),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let pid = libc::pid_t::try_from(child.id()).unwrap();
        let mut status: libc::c_int = 0;
        // SAFETY: an all-zero rusage is a valid value to be overwritten.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // wait4, unlike std's wait, reports the child's CPU time.
        let reaped = loop {
            // SAFETY: pid is our own child; status and usage are valid pointers.
            let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
            if r != -1 || std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted
            {
                break r;
            }
        };
        let waited = started.elapsed();
        assert_eq!(reaped, pid, "wait4: {}", std::io::Error::last_os_error());
        let mut stderr = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();

        assert!(libc::WIFEXITED(status), "status {status:#x}; {stderr}");
        assert_eq!(libc::WEXITSTATUS(status), 7, "{stderr}");
        assert!(stderr.contains("no server is listening"), "{stderr}");
        assert!(
            waited >= Duration::from_secs(3),
            "it gave up after {waited:?}, before its connect timeout"
        );
        let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        let cpu = secs(usage.ru_utime) + secs(usage.ru_stime);
        assert!(
            cpu < 0.5,
            "waiting 3 s for a server cost {cpu:.3} s of CPU: the client spins"
        );
    }

    #[test]
    fn current_user_only_client_refuses_a_server_run_by_another_user() {
        assert_eq!(
            euid(),
            0,
            "this test starts a server as uid 65534 with setpriv and needs root (CI runs as root)"
        );
        let dir = tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        // A copy of the binary that uid 65534 can surely run.
        let bin = dir.path().join("pipehttp");
        std::fs::copy(BIN, &bin).unwrap();
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        let socket = dir.path().join("other.sock");
        let url = format!("http://pipe:/{}", socket.display());
        let mut cmd = Command::new("setpriv");
        cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(&bin)
            .args(["serve", "--urls", &url])
            .args(["--current-user-only", "false", "--mode", "0666"])
            .env_remove("PIPEHTTP_URLS")
            .env_remove("RUST_LOG");
        let _server = Serve::start(cmd, 1);
        let target = format!("{url}:/test");
        let rt = tokio::runtime::Runtime::new().unwrap();

        let strict = Client::builder().current_user_only(true).build();
        let err = rt
            .block_on(strict.get(&target).send())
            .expect_err("the server runs as uid 65534, not as us");
        assert!(err.is_refused_peer() && err.is_connect(), "{err:?}");
        assert!(format!("{err:#}").contains("uid 65534"), "{err:#}");

        // Without the check the same server answers, and says who it is.
        let (uid, body) = rt.block_on(async {
            let any = Client::builder().any_server_user().build();
            let res = any.get(&target).send().await.unwrap();
            let uid = res.peer().and_then(|p| p.uid);
            (uid, res.text().await.unwrap())
        });
        assert_eq!((uid, body.as_str()), (Some(65534), "Hello world!"));

        let run = run_exits(&dir, &["get", "--current-user-only", &target], 7);
        assert!(run.stderr.contains("another user"), "{}", run.stderr);
    }
}
