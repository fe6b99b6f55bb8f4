//! Who may connect, with real processes under real other users and groups:
//! `pipehttp serve --allow-group/--allow-user` against curl run through
//! `setpriv`, and the client's refusal of a pipe server of another user
//! (a squatter on the name) before it sends a byte. The accounts are made
//! with `groupadd`/`useradd` for each test and deleted after; only root can
//! do that, so as anyone else these tests say so and skip (CI runs as root).

#![cfg(target_os = "linux")]

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Output, Stdio};

use pipehttp::{Client, Remedy};
use testkit::{Accounts, Serve, Spawned, as_ids, as_user, clean_env};

const BIN: &str = env!("CARGO_BIN_EXE_pipehttp");
const CURL: &str = "/usr/bin/curl";
const PYTHON: &str = "/usr/bin/python3";
/// `nobody`: the squatter, and the client of a root server.
const NOBODY: u32 = 65534;

/// `pipehttp serve ARGS` run by `cmd` (setpriv as some user), with the
/// clean environment and TMPDIR=`tmp`, once it listens.
fn serve(mut cmd: Command, tmp: &Path, args: &[&str]) -> Serve {
    clean_env(&mut cmd, Some(tmp)).arg("serve").args(args);
    Serve::start(cmd, 1)
}

/// curl run by `cmd` on the socket at `path`, GET `route`.
fn curl(mut cmd: Command, path: &Path, route: &str) -> Output {
    cmd.args(["-sS", "--noproxy", "*", "--max-time", "20", "--unix-socket"])
        .arg(path)
        .arg(format!("http://localhost{route}"))
        .stdin(Stdio::null())
        .output()
        .expect("curl runs")
}

/// The uid `/whoami` reports, checking that curl succeeded.
fn whoami(cmd: Command, path: &Path) -> u64 {
    let out = curl(cmd, path, "/whoami");
    assert!(out.status.success(), "{out:?}");
    let me: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    me["uid"].as_u64().expect("a uid")
}

/// The socket file's owner, group and mode.
fn ownership(path: &Path) -> (u32, u32, u32) {
    let meta = fs::symlink_metadata(path).unwrap();
    (meta.uid(), meta.gid(), meta.permissions().mode() & 0o7777)
}

fn pipe_url(prefix: &str) -> String {
    format!("http://pipe:/{}", testkit::unique_name(prefix))
}

#[test]
fn one_allowed_group_gets_the_socket_0660_and_only_its_members_are_served() {
    // dockerd's setup: the socket is SERVER:GROUP 0660; a member is served,
    // by supplementary group from the database, by primary group, or by a
    // group the process holds without the database saying so; others are
    // stopped by the mode, and root, who gets past the mode, by the peer
    // check, which the server logs with the peer's uid and gid.
    let Some(mut accounts) = Accounts::new() else {
        return;
    };
    let group = accounts.group();
    let server_user = accounts.user(&[&group]);
    let member = accounts.user(&[&group]);
    let outsider = accounts.user(&[]);
    let dir = testkit::shared_tempdir();
    let url = pipe_url("group1");
    let server = serve(
        server_user.command(BIN),
        dir.path(),
        &["--urls", &url, "--allow-group", &group.name],
    );
    let path = server.path(0).to_owned();
    assert_eq!(ownership(&path), (server_user.uid, group.gid, 0o660));

    assert_eq!(whoami(member.command(CURL), &path), u64::from(member.uid));
    let by_primary = as_ids(outsider.uid, group.gid, &[], CURL);
    assert_eq!(whoami(by_primary, &path), u64::from(outsider.uid));
    let by_process_groups = as_ids(outsider.uid, outsider.gid, &[group.gid], CURL);
    assert_eq!(whoami(by_process_groups, &path), u64::from(outsider.uid));

    let refused = curl(outsider.command(CURL), &path, "/test");
    assert_eq!(refused.status.code(), Some(7), "{refused:?}");
    assert!(refused.stdout.is_empty(), "{refused:?}");

    let root = curl(as_user(None, CURL), &path, "/test");
    assert_eq!(root.status.code(), Some(52), "{root:?}");
    assert!(root.stdout.is_empty(), "{root:?}");
    let warning = server.wait_for_line("refused a connection");
    for part in [
        "uid 0 gid 0".to_owned(),
        format!("uid {} ({})", server_user.uid, server_user.name),
        format!("members of gid {} ({})", group.gid, group.name),
    ] {
        assert!(warning.contains(&part), "no {part:?} in: {warning}");
    }
    server.stop();
    assert!(!path.exists());
}

#[test]
fn several_groups_and_users_open_the_socket_and_the_peer_check_sorts_the_callers() {
    // Two groups from the JSON config and two users from flags (one by
    // name, one by uid): the socket is 0666 and keeps the server's group;
    // members and allowed users are served, anyone else is turned away by
    // the peer check, which names them and what it admits.
    let Some(mut accounts) = Accounts::new() else {
        return;
    };
    let (first, second) = (accounts.group(), accounts.group());
    let in_second = accounts.user(&[&second]);
    let by_name = accounts.user(&[]);
    let by_uid = accounts.user(&[]);
    let outsider = accounts.user(&[]);
    let dir = testkit::shared_tempdir();
    let config = dir.path().join("appsettings.json");
    fs::write(
        &config,
        format!(
            r#"{{ "Kestrel": {{ "NamedPipes": {{ "AllowGroups": ["{}", {}] }} }} }}"#,
            first.name, second.gid
        ),
    )
    .unwrap();
    let url = pipe_url("groups2");
    let uid = by_uid.uid.to_string();
    let args = [
        "--urls",
        &url,
        "--config",
        config.to_str().unwrap(),
        "--allow-user",
        &by_name.name,
        "--allow-user",
        &uid,
    ];
    let server = serve(as_user(None, BIN), dir.path(), &args);
    let path = server.path(0).to_owned();
    assert_eq!(ownership(&path), (0, 0, 0o666));

    for user in [&in_second, &by_name, &by_uid] {
        assert_eq!(whoami(user.command(CURL), &path), u64::from(user.uid));
    }
    let refused = curl(outsider.command(CURL), &path, "/test");
    assert_eq!(refused.status.code(), Some(52), "{refused:?}");
    assert!(refused.stdout.is_empty(), "{refused:?}");
    let warning = server.wait_for_line("refused a connection");
    for part in [
        format!("uid {} gid {}", outsider.uid, outsider.gid),
        format!("uid {} ({})", by_name.uid, by_name.name),
        format!("uid {} ({})", by_uid.uid, by_uid.name),
        format!("members of gid {} ({})", first.gid, first.name),
        format!("gid {} ({})", second.gid, second.name),
    ] {
        assert!(warning.contains(&part), "no {part:?} in: {warning}");
    }
    server.stop();
}

#[test]
fn a_server_outside_the_group_cannot_give_it_the_socket_and_says_so() {
    // chown to a group needs root or membership: the bind fails with one
    // line naming the pipe and the group, and leaves no socket behind.
    let Some(mut accounts) = Accounts::new() else {
        return;
    };
    let group = accounts.group();
    let outsider = accounts.user(&[]);
    let dir = testkit::shared_tempdir();
    let name = testkit::unique_name("nogroup");
    let url = format!("http://pipe:/{name}");
    let mut cmd = outsider.command(BIN);
    clean_env(&mut cmd, Some(dir.path())).arg("serve").args([
        "--urls",
        &url,
        "--allow-group",
        &group.name,
    ]);
    let mut process = Spawned::start(cmd);
    assert_eq!(process.wait_exit().code(), Some(1));
    let output = process.output();
    let line = output.lines().last().unwrap_or_default();
    for part in [
        format!("cannot listen on pipe '{name}'"),
        format!("gid {} ({})", group.gid, group.name),
        "only root or a member of that group".to_owned(),
    ] {
        assert!(line.contains(&part), "no {part:?} in: {output}");
    }
    assert!(!dir.path().join(format!("CoreFxPipe_{name}")).exists());
}

/// Binds the pipe's socket path as `nobody` and reports, one line per
/// connection, how many bytes the client sent before it closed (or until
/// the secret arrived).
const SQUATTER: &str = r#"
import os, socket, sys
path = sys.argv[1]
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(path)
os.chmod(path, 0o666)
s.listen(8)
print("squatting", flush=True)
while True:
    c, _ = s.accept()
    data = b""
    while b"SECRET" not in data:
        chunk = c.recv(65536)
        if not chunk:
            break
        data += chunk
    print(f"received {len(data)} bytes", flush=True)
    c.close()
"#;

fn squat(path: &Path) -> Spawned {
    let mut cmd = as_user(Some(NOBODY), PYTHON);
    cmd.args(["-c", SQUATTER]).arg(path);
    let squatter = Spawned::start(cmd);
    squatter.wait_for_line("squatting");
    squatter
}

/// `pipehttp request ARGS` as ourselves with TMPDIR=`tmp`.
fn request(tmp: &Path, args: &[&str]) -> Output {
    testkit::command(BIN, Some(tmp))
        .arg("request")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("pipehttp runs")
}

#[test]
fn a_client_refuses_a_squatter_of_another_user_before_sending_a_byte() {
    // The attack: another user binds the pipe name's socket before the
    // server does. `pipehttp request -d token=SECRET` must refuse it with
    // one line naming the pipe, the squatter's uid and the way to allow
    // it, and the squatter must receive nothing. Allowed by name, or over
    // an explicit unix: path, the same squatter does receive the secret.
    if Accounts::new().is_none() {
        return;
    }
    let dir = testkit::shared_tempdir();
    let name = testkit::unique_name("squat");
    let path = dir.path().join(format!("CoreFxPipe_{name}"));
    let squatter = squat(&path);
    let target = format!("http://pipe:/{name}:/echo");

    let out = request(dir.path(), &["-d", "token=SECRET", &target]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(7), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    for part in [
        format!("pipe '{name}'"),
        format!("uid {NOBODY}"),
        "--allow-server-user".to_owned(),
    ] {
        assert!(stderr.contains(&part), "no {part:?} in: {stderr}");
    }
    assert_eq!(squatter.wait_for_line("received"), "received 0 bytes");

    let allowed = [
        "--allow-server-user",
        "nobody",
        "-d",
        "token=SECRET",
        &target,
    ];
    request(dir.path(), &allowed);
    let unix_target = format!("http://unix:{}:/echo", path.display());
    request(dir.path(), &["-d", "token=SECRET", &unix_target]);
    let strict = ["--current-user-only", "-d", "token=SECRET", &unix_target];
    let out = request(dir.path(), &strict);
    assert_eq!(out.status.code(), Some(7), "{out:?}");
    let received = squatter.wait_for_lines("received", 4);
    assert!(received[1] != "received 0 bytes", "{received:?}");
    assert!(received[2] != "received 0 bytes", "{received:?}");
    assert_eq!(received[3], "received 0 bytes", "{received:?}");

    // The library's error says the same, with a remedy a tool can word.
    let absolute = format!("http://pipe:/{}:/echo", path.display());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let err = rt
        .block_on(Client::new().post(&absolute).body("token=SECRET").send())
        .expect_err("a squatter of another user");
    assert!(err.is_refused_peer() && err.is_connect(), "{err:?}");
    assert_eq!(err.remedy(), Some(Remedy::AllowServerUser));
    assert!(
        err.to_string().contains("ClientBuilder::allow_server_user"),
        "{err}"
    );
    let by_uid = Client::builder()
        .allow_server_user(NOBODY.to_string())
        .build();
    let sent = rt.block_on(by_uid.post(&absolute).body("token=SECRET").send());
    assert!(sent.is_err(), "the squatter answers no HTTP");
    let received = squatter.wait_for_lines("received", 6);
    assert_eq!(received[4], "received 0 bytes", "{received:?}");
    assert!(received[5] != "received 0 bytes", "{received:?}");
}

#[test]
fn the_proxy_refuses_a_squatter_target_of_another_user() {
    // The same attack through `pipehttp proxy --to http://pipe:/NAME`: the
    // proxy's client keeps the client's default, so curl's secret never
    // reaches the squatter, and the 502 names the flag that would allow
    // it. With that flag the squatter is trusted and gets the bytes.
    if Accounts::new().is_none() {
        return;
    }
    let dir = testkit::shared_tempdir();
    let name = testkit::unique_name("pxsquat");
    let squatter = squat(&dir.path().join(format!("CoreFxPipe_{name}")));
    let to = format!("http://pipe:/{name}");
    for (i, (extra, trusted)) in [
        (&[][..], false),
        (&["--allow-server-user", "nobody"][..], true),
    ]
    .into_iter()
    .enumerate()
    {
        let front = crate::proxy::proxy(&dir, "http://127.0.0.1:0", &to, extra);
        let out = Command::new(CURL)
            .args(["-sS", "--noproxy", "*", "-m", "20", "-d", "token=SECRET"])
            .args(["-w", "\n%{http_code}"])
            .arg(format!("{}/echo", front.url(0)))
            .output()
            .expect("curl runs");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.ends_with("\n502"), "{extra:?}: {stdout}");
        let received = squatter.wait_for_lines("received", i + 1).remove(i);
        if trusted {
            assert_ne!(received, "received 0 bytes", "{extra:?}");
        } else {
            assert_eq!(received, "received 0 bytes", "{extra:?}");
            for part in [format!("uid {NOBODY}"), "--allow-server-user".to_owned()] {
                assert!(stdout.contains(&part), "no {part:?} in: {stdout}");
            }
        }
        front.stop();
    }
}

#[test]
fn a_client_of_another_user_accepts_a_root_server() {
    // Root can act as any user anyway: a pipe server run by root (a system
    // agent) is accepted by a client that runs as nobody, once the server
    // lets others open its socket. Before that, the socket's mode refuses
    // the client, and its error says whose socket it is and what to do.
    if Accounts::new().is_none() {
        return;
    }
    let dir = testkit::shared_tempdir();
    let url = pipe_url("rootsrv");
    for open in [&[][..], &["--current-user-only", "false"][..]] {
        let args = [&["--urls", url.as_str()][..], open].concat();
        let server = serve(as_user(None, BIN), dir.path(), &args);
        let mut client = as_user(Some(NOBODY), BIN);
        clean_env(&mut client, Some(dir.path()))
            .args(["get", &format!("{url}:/test")])
            .stdin(Stdio::null());
        let out = client.output().expect("pipehttp runs");
        if open.is_empty() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(7), "{stderr}");
            assert_eq!(stderr.lines().count(), 1, "{stderr}");
            for part in ["uid 0 (root)", "mode 600", "run as that user"] {
                assert!(stderr.contains(part), "no {part:?} in: {stderr}");
            }
        } else {
            assert!(out.status.success(), "{out:?}");
            assert_eq!(String::from_utf8_lossy(&out.stdout), "Hello world!");
        }
        server.stop();
    }
}

#[test]
fn access_options_that_cannot_work_are_refused_with_one_line() {
    // No root needed: an unknown group, allow lists with
    // current_user_only off, and a Windows descriptor on Unix.
    let dir = testkit::tempdir().unwrap();
    let url = pipe_url("badaccess");
    for (args, expected) in [
        (
            vec!["--allow-group", "no-such-group-here"],
            "there is no group 'no-such-group-here'",
        ),
        (
            vec!["--allow-user", "root", "--current-user-only", "false"],
            "need --current-user-only true",
        ),
        (
            vec!["--pipe-sddl", "D:P(A;;GA;;;SY)"],
            "pipe_sddl is a Windows security descriptor",
        ),
    ] {
        let mut cmd = testkit::command(BIN, Some(dir.path()));
        cmd.args(["serve", "--urls", &url]).args(&args);
        let mut process = Spawned::start(cmd);
        assert_eq!(process.wait_exit().code(), Some(1), "{args:?}");
        let output = process.output();
        assert_eq!(output.lines().count(), 1, "{args:?}: {output}");
        assert!(output.contains(expected), "{args:?}: {output}");
    }
}
