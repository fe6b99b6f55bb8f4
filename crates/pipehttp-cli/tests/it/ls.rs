//! `pipehttp ls`: the pipe a running server holds, on every OS (Windows
//! under Wine too); on Unix also stale sockets, files that are not
//! sockets, other sockets with `--all`, another folder with `--dir`, and
//! `--clean` removing only what is stale.

use serde_json::Value;
use testkit::{TempDir, tempdir, unique_name};

use crate::proxy::{pipehttp, serve};

/// `pipehttp ls ARGS` with TMPDIR set to `dir`; asserts exit 0 and returns
/// stdout and stderr.
fn ls(dir: &TempDir, args: &[&str]) -> (String, String) {
    let out = pipehttp(dir).arg("ls").args(args).output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    );
    assert!(out.status.success(), "ls {args:?} failed: {stdout}{stderr}");
    (stdout, stderr)
}

fn ls_json(dir: &TempDir, args: &[&str]) -> Vec<Value> {
    let mut args = args.to_vec();
    args.push("--json");
    let (stdout, _) = ls(dir, &args);
    let rows: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    rows.as_array().unwrap().clone()
}

fn row<'a>(rows: &'a [Value], name: &str) -> &'a Value {
    rows.iter()
        .find(|r| r["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {rows:?}"))
}

#[test]
fn ls_lists_the_pipe_a_server_holds_and_probe_asks_it() {
    let dir = tempdir().unwrap();
    let name = unique_name("ls-live");
    let server = serve(&dir, &format!("http://pipe:/{name}"));
    #[cfg(windows)]
    if testkit::running_under_wine() {
        // Wine has no directory of pipes (FindFirstFileW on \\.\pipe\ fails
        // with ERROR_BAD_DEV_TYPE): ls must say so on one line.
        let out = pipehttp(&dir).args(["ls", &name]).output().unwrap();
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{said}");
        assert!(
            said.starts_with(r"pipehttp: cannot list the pipes: this system cannot list \\.\pipe\"),
            "{said}"
        );
        assert_eq!(said.trim_end().lines().count(), 1, "{said}");
        crate::proxy::skipped(
            "listing pipes: Wine cannot list \\\\.\\pipe\\; real Windows runs this test",
        );
        drop(server);
        return;
    }
    let rows = ls_json(&dir, &[&name]);
    assert_eq!(rows.len(), 1, "{rows:?}");
    let live = row(&rows, &name);
    assert_eq!(live["state"], "live");
    assert_eq!(live["address"], format!("http://pipe:/{name}"));
    assert_eq!(
        std::path::Path::new(live["path"].as_str().unwrap()),
        server.path(0)
    );
    // The sample app has no route at /; its answer proves a real request
    // went through, and the connection tells the server's pid.
    let rows = ls_json(&dir, &[&name, "--probe"]);
    let probed = row(&rows, &name);
    assert_eq!(probed["probe"]["status"], 404, "{probed}");
    assert_eq!(probed["server_pid"], server.id(), "{probed}");
}

#[cfg(unix)]
mod unix {
    use std::os::unix::fs::MetadataExt;
    use std::os::unix::net::UnixListener;

    use super::*;

    #[test]
    fn ls_tells_live_from_stale_and_clean_removes_only_stale_sockets() {
        let dir = tempdir().unwrap();
        let live = unique_name("ls-live");
        let server = serve(&dir, &format!("http://pipe:/{live}"));
        let path = |file: &str| dir.path().join(file);
        // A socket whose server is gone: bound, never accepted, closed.
        drop(UnixListener::bind(path("CoreFxPipe_stale")).unwrap());
        std::fs::write(path("CoreFxPipe_notes"), "not a socket").unwrap();
        let _other = UnixListener::bind(path("other.sock")).unwrap();
        let uid = std::fs::metadata(dir.path()).unwrap().uid();

        let rows = ls_json(&dir, &[]);
        assert_eq!(rows.len(), 3, "{rows:?}");
        let live_row = row(&rows, &live);
        assert_eq!(live_row["state"], "live");
        assert_eq!(live_row["server_pid"], server.id());
        assert_eq!(live_row["owner_uid"], uid);
        assert_eq!(row(&rows, "stale")["state"], "stale");
        assert_eq!(row(&rows, "stale")["server_pid"], Value::Null);
        let notes = row(&rows, "notes");
        assert_eq!(notes["state"], "not a socket");
        assert_eq!(notes["address"], Value::Null);

        // --all adds the other sockets, reached as unix: addresses.
        let rows = ls_json(&dir, &["--all"]);
        let other = row(&rows, "other.sock");
        assert_eq!(other["state"], "live");
        assert_eq!(other["server_pid"], std::process::id());
        assert_eq!(
            other["address"],
            format!("http://unix:{}", path("other.sock").display())
        );

        // Another folder than TMPDIR: its pipes are reached by path.
        let elsewhere = tempdir().unwrap();
        let rows = ls_json(&elsewhere, &["--dir", dir.path().to_str().unwrap()]);
        assert_eq!(
            row(&rows, &live)["address"],
            format!("http://unix:{}", server.path(0).display())
        );

        let (table, _) = ls(&dir, &[]);
        let mut lines = table.lines();
        assert!(lines.next().unwrap().starts_with("NAME "), "{table}");
        assert!(
            table
                .lines()
                .any(|l| l.starts_with(&live) && l.contains(" live ")),
            "{table}"
        );

        let (table, said) = ls(&dir, &["--clean"]);
        assert!(said.contains("removed the stale socket"), "{said}");
        assert!(!path("CoreFxPipe_stale").exists());
        assert!(path("CoreFxPipe_notes").exists(), "a file was removed");
        assert!(server.path(0).exists(), "the live socket was removed");
        assert!(!table.contains("stale"), "{table}");
    }
}
