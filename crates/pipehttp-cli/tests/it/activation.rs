//! Socket activation as systemd does it: the test binds the sockets, the
//! server gets them as descriptors 3 and 4 with `LISTEN_PID`, `LISTEN_FDS`
//! and `LISTEN_FDNAMES`, and serves on them without binding anything of
//! its own.

#![cfg(unix)]

use std::fs;
use std::net::TcpListener;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

use pipehttp::Client;
use testkit::{Spawned, TempDir};

const BIN: &str = env!("CARGO_BIN_EXE_pipehttp");

/// `pipehttp serve ARGS` with `fds` as descriptors 3, 4, … and the
/// `LISTEN_*` variables for it, through `sh` so that `LISTEN_PID` can be
/// the server's own pid (`exec` keeps the shell's), as systemd sets it.
/// `listen_pid_for_us` false sets it to another pid instead.
fn activated_serve(fds: &[RawFd], names: &str, tmp: &Path, listen_pid_for_us: bool) -> Spawned {
    let script = if listen_pid_for_us {
        r#"LISTEN_PID=$$; export LISTEN_PID; exec "$0" serve"#
    } else {
        r#"LISTEN_PID=1; export LISTEN_PID; exec "$0" serve"#
    };
    let mut cmd = testkit::command("sh", Some(tmp));
    cmd.arg("-c")
        .arg(script)
        .arg(BIN)
        .env("LISTEN_FDS", fds.len().to_string())
        .env("LISTEN_FDNAMES", names)
        .env_remove("LISTEN_PID");
    let fds = fds.to_vec();
    // SAFETY: between fork and exec only async-signal-safe calls are made
    // (fcntl, dup2), on descriptors this process owns.
    unsafe {
        cmd.pre_exec(move || {
            // First out of the way (a source may already sit at 3 or 4),
            // then into place; dup2 clears close-on-exec on the target.
            let mut high = Vec::with_capacity(fds.len());
            for &fd in &fds {
                let copy = libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 64);
                if copy < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                high.push(copy);
            }
            for (i, &fd) in high.iter().enumerate() {
                let target = 3 + i32::try_from(i).expect("a few descriptors");
                if libc::dup2(fd, target) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    Spawned::start(cmd)
}

/// What a service manager prepares before it starts the server: a temp
/// dir, a TMPDIR of the server's own in it (where a pipe's socket file
/// would go), and a Unix socket `name` in it, bound and listening.
fn service_manager(name: &str) -> (TempDir, PathBuf, PathBuf, UnixListener) {
    let dir = testkit::tempdir().unwrap();
    let tmp = dir.path().join("tmp");
    fs::create_dir(&tmp).unwrap();
    let socket_path = dir.path().join(name);
    let unix = UnixListener::bind(&socket_path).unwrap();
    (dir, tmp, socket_path, unix)
}

/// SIGTERM, after which the server must exit 0.
fn stop(mut server: Spawned) {
    server.terminate();
    let status = server.wait_exit();
    assert!(status.success(), "{status}\n{}", server.output());
}

fn corefx_files(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("CoreFxPipe_"))
        .collect()
}

#[tokio::test]
async fn serve_answers_on_a_unix_and_a_tcp_socket_passed_as_fds_3_and_4() {
    let (_dir, tmp, socket_path, unix) = service_manager("activated.sock");
    let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = tcp.local_addr().unwrap().port();

    let server = activated_serve(&[unix.as_raw_fd(), tcp.as_raw_fd()], "web:api", &tmp, true);
    // The service manager keeps its copies; the test does not need them.
    drop((unix, tcp));
    let lines = server.wait_for_lines("Now listening on:", 2);
    let all = lines.join("\n");
    assert!(
        all.contains(&format!("http://unix:{}", socket_path.display())),
        "{all}"
    );
    assert!(all.contains(&format!(":{port}")), "{all}");

    let client = Client::new();
    for target in [
        format!("http://unix:{}:/test", socket_path.display()),
        format!("http://127.0.0.1:{port}/test"),
    ] {
        let res = client.get(target.as_str()).send().await.unwrap();
        assert_eq!(res.status(), 200, "{target}");
        assert_eq!(res.text().await.unwrap(), "Hello world!", "{target}");
    }
    // Only the server accepts on these sockets. (The client cannot tell it
    // by SO_PEERCRED: that names the process that called listen(), here
    // the test, under systemd systemd itself.)
    let res = client
        .get(format!("http://unix:{}:/whoami", socket_path.display()).as_str())
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.peer().and_then(|p| p.pid),
        Some(std::process::id()),
        "the socket's creator"
    );
    let whoami: serde_json::Value = res.json().await.unwrap();
    assert_eq!(whoami["transport"], "unix");
    assert_eq!(whoami["pid"], u64::from(std::process::id()));

    // Activated sockets stand in for the default pipe: none was created.
    assert_eq!(corefx_files(&tmp), Vec::<String>::new());
    assert!(
        !server.output().contains("my-test-pipe"),
        "{}",
        server.output()
    );

    stop(server);
    // The socket file belongs to the service manager, which made it.
    assert!(socket_path.exists());
    assert_eq!(corefx_files(&tmp), Vec::<String>::new());
}

#[tokio::test]
async fn sockets_meant_for_another_pid_are_left_alone() {
    let (_dir, tmp, _socket_path, unix) = service_manager("not-ours.sock");

    let server = activated_serve(&[unix.as_raw_fd()], "web", &tmp, false);
    let line = server.wait_for_line("Now listening on:");
    // LISTEN_PID names another process: the default pipe is served instead.
    assert!(line.contains("http://pipe:/my-test-pipe"), "{line}");
    assert_eq!(corefx_files(&tmp), ["CoreFxPipe_my-test-pipe"]);
    let res = Client::new()
        .get(
            format!(
                "http://unix:{}:/test",
                tmp.join("CoreFxPipe_my-test-pipe").display()
            )
            .as_str(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.text().await.unwrap(), "Hello world!");

    stop(server);
    drop(unix);
}
