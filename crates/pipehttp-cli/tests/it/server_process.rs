//! `pipehttp serve` as a real process: started, signalled and killed like a
//! service manager would, called by Debian's curl and by raw sockets, and
//! run as other users through `setpriv`.

#![cfg(unix)]

use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use testkit::{Serve, Spawned, TempDir, as_user};

const BIN: &str = env!("CARGO_BIN_EXE_pipehttp");
const CURL: &str = "/usr/bin/curl";
/// `nobody`, the user the server runs as in the other-user tests.
pub(crate) const SERVER_UID: u32 = 65534;
/// Another unprivileged user, for a client that is neither root nor the server.
pub(crate) const OTHER_UID: u32 = 65533;
/// Any single wait longer than this is a hang, not slowness.
const PATIENCE: Duration = Duration::from_secs(20);

/// Starts `pipehttp serve ARGS` with TMPDIR=`tmp` (optionally as user
/// `uid`) and waits until it has announced `count` endpoints.
fn start(tmp: &Path, uid: Option<u32>, args: &[&str], count: usize) -> Serve {
    Serve::start(serve_command(tmp, uid, args), count)
}

/// `pipehttp serve` as ourselves on a new pipe named from `prefix`, with
/// `flags`, in a temp dir of its own: the dir, the pipe's URL and the
/// server, once it listens.
fn serve_new_pipe(prefix: &str, flags: &[&str]) -> (TempDir, String, Serve) {
    let dir = testkit::tempdir().unwrap();
    let url = format!("http://pipe:/{}", testkit::unique_name(prefix));
    let server = start(dir.path(), None, &[&["--urls", &url], flags].concat(), 1);
    (dir, url, server)
}

/// `pipehttp serve` as user nobody on a new pipe named from `prefix` with
/// `flags`, in a temp dir every user may use: the dir, the server once it
/// listens, and its socket. `None` (the test skips) unless we are root.
fn serve_as_nobody(prefix: &str, flags: &[&str]) -> Option<(TempDir, Serve, PathBuf)> {
    if needs_root() {
        return None;
    }
    let dir = testkit::shared_tempdir();
    let url = format!("http://pipe:/{}", testkit::unique_name(prefix));
    let args = [&["--urls", url.as_str()], flags].concat();
    let server = start(dir.path(), Some(SERVER_UID), &args, 1);
    let path = server.path(0).to_owned();
    Some((dir, server, path))
}

pub(crate) fn serve_command(tmp: &Path, uid: Option<u32>, args: &[&str]) -> Command {
    let mut cmd = as_user(uid, BIN);
    // setpriv passes the environment on to the server.
    let clean = testkit::command(BIN, Some(tmp));
    for (var, value) in clean.get_envs() {
        match value {
            Some(value) => cmd.env(var, value),
            None => cmd.env_remove(var),
        };
    }
    cmd.arg("serve").args(args);
    cmd
}

/// A `pipehttp serve` that must fail: its exit status and output.
fn serve_fails(tmp: &Path, args: &[&str]) -> (i32, String) {
    let mut process = Spawned::start(serve_command(tmp, None, args));
    let status = process.wait_exit();
    (status.code().unwrap_or(-1), process.output())
}

/// curl (as `uid`, or as ourselves) with `args`; never uses a proxy.
fn curl_as(uid: Option<u32>, args: &[&str]) -> Output {
    let mut cmd = as_user(uid, CURL);
    cmd.args(["-sS", "--noproxy", "*", "--max-time", "20"])
        .args(args)
        .stdin(Stdio::null());
    cmd.output().expect("curl runs")
}

pub(crate) fn curl(args: &[&str]) -> Output {
    curl_as(None, args)
}

/// `curl --unix-socket PATH http://localhost/test`'s body, checking success.
fn curl_test(socket: &Path) -> String {
    let out = curl(&["--unix-socket", path_str(socket), "http://localhost/test"]);
    assert!(
        out.status.success(),
        "curl via {}: {out:?}",
        socket.display()
    );
    stdout(&out)
}

pub(crate) fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 path")
}

fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Skips (returning true) unless we are root, who alone can switch users.
pub(crate) fn needs_root() -> bool {
    if is_root() {
        // The server binary must be executable by the user it runs as.
        let check = as_user(Some(SERVER_UID), BIN).arg("--version").output();
        assert!(
            check.as_ref().is_ok_and(|o| o.status.success()),
            "uid {SERVER_UID} cannot run {BIN}: {check:?}; make the target dir world-readable"
        );
        return false;
    }
    eprintln!("skipped: needs root to run processes as other users");
    true
}

/// Polls `done` until it holds, for a state change no event announces.
fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !done() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A raw connection with a read timeout that turns a hang into a failure.
fn connect(path: &Path) -> UnixStream {
    let conn = UnixStream::connect(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    conn.set_read_timeout(Some(PATIENCE)).unwrap();
    conn
}

/// Reads one HTTP/1.1 response with a Content-Length body: (head, body).
fn read_response(conn: &mut UnixStream) -> io::Result<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(response) = testkit::complete_response(&buf) {
            return Ok(response);
        }
        match conn.read(&mut chunk)? {
            0 => return Err(io::ErrorKind::UnexpectedEof.into()),
            n => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Reads until the server closes; returns what came before. A read that
/// times out fails the test: the server never closed.
fn read_until_closed(conn: &mut UnixStream) -> Vec<u8> {
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match conn.read(&mut chunk) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return got,
            Err(e) => panic!("the server did not close the connection: {e}"),
        }
    }
}

const GET_TEST: &[u8] = b"GET /test HTTP/1.1\r\nHost: localhost\r\n\r\n";

fn get_test_raw(conn: &mut UnixStream) -> (String, Vec<u8>) {
    conn.write_all(GET_TEST).unwrap();
    read_response(conn).expect("a response")
}

#[test]
fn serves_pipe_unix_socket_and_tcp_at_once() {
    // One process, three endpoints, each answering curl; the pipe lives in $TMPDIR.
    let dir = testkit::tempdir().unwrap();
    let name = testkit::unique_name("cli-three");
    let unix = dir.path().join("app.sock");
    let urls = format!(
        "http://pipe:/{name};http://unix:{};http://127.0.0.1:0",
        unix.display()
    );
    let server = start(dir.path(), None, &["--urls", &urls], 3);

    let pipe_path = dir.path().join(format!("CoreFxPipe_{name}"));
    assert_eq!(server.url(0), format!("http://pipe:/{name}"));
    assert_eq!(server.path(0), pipe_path, "the pipe's socket is in TMPDIR");
    assert_eq!(server.path(1), unix);
    let tcp = &server.url(2);
    assert!(
        tcp.starts_with("http://127.0.0.1:") && !tcp.ends_with(":0"),
        "{tcp}"
    );

    assert_eq!(curl_test(&pipe_path), "Hello world!");
    assert_eq!(curl_test(&unix), "Hello world!");
    let out = curl(&[&format!("{tcp}/test")]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(stdout(&out), "Hello world!");

    // HTTP/2 with prior knowledge, as curl speaks it, over the pipe.
    let out = curl(&[
        "--http2-prior-knowledge",
        "--unix-socket",
        path_str(&pipe_path),
        "-w",
        "\n%{http_version}",
        "http://localhost/test",
    ]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(stdout(&out), "Hello world!\n2");

    // Only our user may connect by default: the socket is 0600.
    let mode = fs::metadata(&pipe_path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);

    server.stop();
    assert!(!pipe_path.exists(), "the pipe's socket is removed on stop");
    assert!(!unix.exists(), "the unix socket is removed on stop");
}

#[test]
fn second_server_on_a_live_name_fails_and_the_first_keeps_serving() {
    // A live name is never taken over: exit 1 with "already in use".
    let (dir, url, first) = serve_new_pipe("cli-taken", &[]);

    let (code, output) = serve_fails(dir.path(), &["--urls", &url]);
    assert_eq!(code, 1, "{output}");
    assert!(
        output
            .lines()
            .any(|l| l.starts_with("pipehttp: ") && l.contains("already in use")),
        "{output}"
    );
    assert!(
        output.contains(path_str(first.path(0))),
        "names the path: {output}"
    );

    assert_eq!(curl_test(first.path(0)), "Hello world!");
    first.stop();
}

#[test]
fn a_server_killed_with_sigkill_is_replaced_on_the_same_name() {
    // kill -9 leaves a stale socket file; the next server removes it and serves.
    let (dir, url, mut first) = serve_new_pipe("cli-stale", &[]);
    let path = first.path(0).to_owned();
    first.kill();
    assert!(
        fs::symlink_metadata(&path).unwrap().file_type().is_socket(),
        "SIGKILL leaves the socket file behind"
    );

    let second = start(dir.path(), None, &["--urls", &url], 1);
    assert_eq!(second.path(0), path);
    assert_eq!(curl_test(&path), "Hello world!");
    second.stop();
}

#[test]
fn a_regular_file_at_the_socket_path_is_never_removed() {
    // serve refuses to start over a file that is not a socket, and says so.
    let dir = testkit::tempdir().unwrap();
    let name = testkit::unique_name("cli-file");
    let path = dir.path().join(format!("CoreFxPipe_{name}"));
    fs::write(&path, "precious").unwrap();

    let (code, output) = serve_fails(dir.path(), &["--urls", &format!("http://pipe:/{name}")]);
    assert_eq!(code, 1, "{output}");
    assert!(output.contains("is not a socket"), "{output}");
    assert!(output.contains(path_str(&path)), "{output}");
    assert_eq!(fs::read_to_string(&path).unwrap(), "precious");
}

#[test]
fn a_symlink_at_the_socket_path_is_never_removed() {
    // Nor over a symlink: the link and its target are left as they were.
    let dir = testkit::tempdir().unwrap();
    let target = dir.path().join("target.txt");
    fs::write(&target, "target data").unwrap();
    let link = dir.path().join("link.sock");
    std::os::unix::fs::symlink(&target, &link).unwrap();

    let url = format!("http://unix:{}", link.display());
    let (code, output) = serve_fails(dir.path(), &["--urls", &url]);
    assert_eq!(code, 1, "{output}");
    assert!(output.contains("is not a socket"), "{output}");
    assert_eq!(fs::read_link(&link).unwrap(), target);
    assert_eq!(fs::read_to_string(&target).unwrap(), "target data");
}

#[test]
fn a_server_refuses_clients_running_as_other_users() {
    // Server as nobody: another non-root user is stopped by mode 0600 (curl
    // exit 7); root gets past the mode but the peer check closes the
    // connection before any HTTP byte (curl exit 52), and the server says who.
    let Some((_dir, server, path)) = serve_as_nobody("cli-private", &[]) else {
        return;
    };
    let meta = fs::metadata(&path).unwrap();
    assert_eq!(meta.uid(), SERVER_UID, "the server runs as nobody");
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);

    let args = ["--unix-socket", path_str(&path), "http://localhost/test"];
    let other = curl_as(Some(OTHER_UID), &args);
    assert_eq!(other.status.code(), Some(7), "{other:?}");
    assert!(other.stdout.is_empty());

    let root_curl = as_user(None, CURL)
        .args(["-sS", "--noproxy", "*", "--max-time", "20"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let root_pid = root_curl.id();
    let root = root_curl.wait_with_output().unwrap();
    assert!(root.stdout.is_empty(), "root got an answer: {root:?}");
    let warning = server.wait_for_line("refused a connection");
    assert!(
        warning.contains(&format!("pid {root_pid}")) && warning.contains("uid 0"),
        "the warning names the peer's pid {root_pid} and uid 0: {warning}"
    );

    // The server itself still serves its own user.
    let own = curl_as(Some(SERVER_UID), &args);
    assert!(own.status.success(), "{own:?}");
    assert_eq!(stdout(&own), "Hello world!");

    // Last, as it is the one check that fails today: the refusal must be a
    // clean close that curl reports as an empty reply (52), not a reset
    // (56) or "Couldn't connect" (7), which would hide that a server is there.
    server.stop();
    assert!(!path.exists());
    assert_eq!(
        root.status.code(),
        Some(52),
        "root's curl should see an empty reply: {root:?}"
    );
}

#[test]
fn current_user_only_false_with_mode_0666_serves_other_users() {
    // Opened up with flags, the nobody server answers root and another user alike.
    let flags = ["--current-user-only", "false", "--mode", "0666"];
    let Some((_dir, server, path)) = serve_as_nobody("cli-open", &flags) else {
        return;
    };
    assert_eq!(
        fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o666
    );

    assert_eq!(curl_test(&path), "Hello world!");
    let out = curl_as(
        Some(OTHER_UID),
        &["--unix-socket", path_str(&path), "http://localhost/whoami"],
    );
    assert!(out.status.success(), "{out:?}");
    let body = stdout(&out);
    assert!(body.contains(&format!("\"uid\":{OTHER_UID}")), "{body}");
    assert!(body.contains("\"transport\":\"pipe\""), "{body}");
    server.stop();
}

#[test]
fn body_and_header_limit_flags_give_413_and_431() {
    // --max-request-body-size and --max-request-headers-total-size are enforced.
    let (_dir, _, server) = serve_new_pipe(
        "cli-limits",
        &[
            "--max-request-body-size",
            "100",
            "--max-request-headers-total-size",
            "16384",
        ],
    );
    let socket = path_str(server.path(0)).to_owned();
    let status = |extra: &[&str]| {
        let mut args = vec![
            "--unix-socket",
            &socket,
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
        ];
        args.extend_from_slice(extra);
        let out = curl(&args);
        assert!(out.status.success(), "{out:?}");
        stdout(&out)
    };
    let big_body = "b".repeat(101);
    let echo = "http://localhost/echo";
    assert_eq!(status(&["--data-binary", &big_body, echo]), "413");
    assert_eq!(
        status(&[
            "-H",
            "Transfer-Encoding: chunked",
            "--data-binary",
            &big_body,
            echo
        ]),
        "413"
    );
    assert_eq!(status(&["--data-binary", &big_body[..100], echo]), "200");

    let big_header = format!("X-Big: {}", "h".repeat(20 * 1024));
    assert_eq!(status(&["-H", &big_header, "http://localhost/test"]), "431");
    let fits = format!("X-Fits: {}", "h".repeat(12 * 1024));
    assert_eq!(status(&["-H", &fits, "http://localhost/test"]), "200");
    // HTTP/2 holds the same header limit.
    let h2 = "--http2-prior-knowledge";
    assert_eq!(
        status(&[h2, "-H", &big_header, "http://localhost/test"]),
        "431"
    );
    assert_eq!(status(&[h2, "-H", &fits, "http://localhost/test"]), "200");
    server.stop();
}

#[test]
fn request_headers_timeout_cuts_a_slow_head_but_not_an_idle_connection() {
    // --request-headers-timeout 1: a trickled head is cut without a response,
    // while an idle keep-alive connection (--keep-alive-timeout 60) lives on.
    let (_dir, _, server) = serve_new_pipe(
        "cli-slowhead",
        &[
            "--request-headers-timeout",
            "1",
            "--keep-alive-timeout",
            "60",
        ],
    );

    let mut idle = connect(server.path(0));
    let mut slow = connect(server.path(0));
    let mut writer = slow.try_clone().unwrap();
    let started = Instant::now();
    let trickle = std::thread::spawn(move || -> io::Result<()> {
        writer.write_all(b"GET /test HTTP/1.1\r\nX-Slow: ")?;
        loop {
            std::thread::sleep(Duration::from_millis(50));
            writer.write_all(b"z")?;
        }
    });
    let got = read_until_closed(&mut slow);
    let elapsed = started.elapsed();
    assert!(
        got.is_empty(),
        "answered instead of closing: {:?}",
        String::from_utf8_lossy(&got)
    );
    assert!(elapsed >= Duration::from_secs(1), "cut after {elapsed:?}");
    // The writer notices the close on its next write.
    assert!(trickle.join().unwrap().is_err());

    // `idle` has been open, without a byte, for longer than the headers timeout.
    let (head, body) = get_test_raw(&mut idle);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(body, b"Hello world!");
    server.stop();
}

#[test]
fn keep_alive_timeout_closes_an_idle_connection() {
    // --keep-alive-timeout 1: after a response, an idle connection is closed.
    let (_dir, _, server) = serve_new_pipe("cli-keepalive", &["--keep-alive-timeout", "1"]);
    let mut conn = connect(server.path(0));
    assert!(get_test_raw(&mut conn).0.starts_with("HTTP/1.1 200"));
    let idle_from = Instant::now();
    assert!(read_until_closed(&mut conn).is_empty());
    assert!(
        idle_from.elapsed() >= Duration::from_millis(500),
        "closed after {:?}",
        idle_from.elapsed()
    );
    server.stop();
}

#[test]
fn max_concurrent_connections_holds_a_third_client_until_one_leaves() {
    // --max-concurrent-connections 2: a third request waits for a free slot.
    let (_dir, _, server) = serve_new_pipe("cli-maxconn", &["--max-concurrent-connections", "2"]);
    let mut first = connect(server.path(0));
    let mut second = connect(server.path(0));
    assert!(get_test_raw(&mut first).0.starts_with("HTTP/1.1 200"));
    assert!(get_test_raw(&mut second).0.starts_with("HTTP/1.1 200"));

    let mut third = connect(server.path(0));
    third.write_all(GET_TEST).unwrap();
    // A bounded negative check: no answer while both slots are held.
    third
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut byte = [0u8; 1];
    let early = third.read(&mut byte);
    assert!(
        early.as_ref().is_err_and(|e| matches!(
            e.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        )),
        "the third connection was answered past the limit: {early:?}"
    );

    drop(first);
    third.set_read_timeout(Some(PATIENCE)).unwrap();
    let (head, body) = read_response(&mut third).expect("served once a slot frees");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(body, b"Hello world!");
    drop(second);
    server.stop();
}

#[test]
fn sigterm_lets_the_request_in_flight_finish_then_exits_0() {
    // A POST whose body is still arriving when SIGTERM comes is answered in
    // full; meanwhile nobody new gets in; then the socket is gone and the exit is 0.
    let (_dir, _, mut server) = serve_new_pipe("cli-graceful", &[]);
    let path = server.path(0).to_owned();

    let mut conn = connect(&path);
    conn.write_all(
        b"POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/plain\r\n\
          Content-Length: 10\r\nExpect: 100-continue\r\n\r\n",
    )
    .unwrap();
    // hyper sends 100 Continue once the handler reads the body: it is in flight.
    let mut interim = [0u8; 25];
    conn.read_exact(&mut interim).unwrap();
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    conn.write_all(b"01234").unwrap();

    server.terminate();
    server.wait_for_line("stopping");
    eventually("the socket file is removed on SIGTERM", || !path.exists());
    let refused = curl(&["--unix-socket", path_str(&path), "http://localhost/test"]);
    assert_eq!(refused.status.code(), Some(7), "{refused:?}");

    conn.write_all(b"56789").unwrap();
    let (head, body) = read_response(&mut conn).expect("the in-flight response");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(body, b"0123456789");
    drop(conn);

    let status = server.wait_exit();
    assert!(
        status.success(),
        "exit {status}; output:\n{}",
        server.output()
    );
    assert!(!path.exists());
}
