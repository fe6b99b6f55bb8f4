//! `pipehttp proxy` on every OS (Windows under Wine too): a pipe bridged to
//! TCP and back, and the answer when the target is gone. The helpers here
//! start proxies for the suites with other peers (proxy_peers, websocket,
//! docker).

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use pipehttp::Client;
use testkit::{Serve, TempDir, tempdir, unique_name};

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_pipehttp");

/// `pipehttp` with TMPDIR set to `dir`, so pipe names map to socket files
/// there (Unix).
pub(crate) fn pipehttp(dir: &TempDir) -> Command {
    testkit::command(BIN, Some(dir.path()))
}

/// `pipehttp proxy --listen LISTEN --to TO` plus `extra`, once it has
/// announced every address of LISTEN.
pub(crate) fn proxy(dir: &TempDir, listen: &str, to: &str, extra: &[&str]) -> Serve {
    let mut cmd = pipehttp(dir);
    cmd.args(["proxy", "--listen", listen, "--to", to])
        .args(extra);
    let count = listen.split(';').filter(|a| !a.trim().is_empty()).count();
    Serve::start(cmd, count)
}

/// `pipehttp serve --urls URL` (the sample app), once it listens.
pub(crate) fn serve(dir: &TempDir, url: &str) -> Serve {
    let mut cmd = pipehttp(dir);
    cmd.args(["serve", "--urls", url]);
    Serve::start(cmd, 1)
}

/// The sample app on a new pipe named from `prefix`, and `pipehttp proxy`
/// to it from a TCP port on loopback with `extra` flags, both listening:
/// the app and the proxy.
pub(crate) fn app_behind_tcp_proxy(dir: &TempDir, prefix: &str, extra: &[&str]) -> (Serve, Serve) {
    let app = serve(dir, &format!("http://pipe:/{}", unique_name(prefix)));
    let front = proxy(dir, "http://127.0.0.1:0", app.url(0), extra);
    (app, front)
}

/// Whether the peer at `path` that a test needs is installed. In CI
/// (`CI=true`) a missing one fails the test; elsewhere the test says on
/// the terminal (past cargo's capture) that it is skipped.
#[cfg_attr(not(unix), allow(dead_code))]
pub(crate) fn installed(path: &str, package: &str) -> bool {
    if Path::new(path).exists() {
        return true;
    }
    let why = format!(
        "{path} is missing: install Debian's {package} (scripts/install-test-deps.sh does)"
    );
    assert!(std::env::var("CI").as_deref() != Ok("true"), "{why}");
    skipped(&why);
    false
}

/// Says on stderr, past cargo's output capture, that a test did not run.
pub(crate) fn skipped(why: &str) {
    let _ = writeln!(std::io::stderr(), "SKIPPED: {why}");
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn a_pipe_is_bridged_to_tcp_and_back() {
    let dir = tempdir().unwrap();
    let front = unique_name("proxy-front");
    // pipe front -> TCP middle -> pipe app: both directions of the bridge.
    let (app_server, middle) = app_behind_tcp_proxy(&dir, "proxy-app", &[]);
    let _front = proxy(&dir, &format!("http://pipe:/{front}"), middle.url(0), &[]);
    runtime().block_on(async {
        let client = Client::builder().timeout(Duration::from_secs(30)).build();
        // On Unix the pipe's socket lives in the test's TMPDIR, which an
        // absolute name reaches from here.
        let base = if cfg!(unix) {
            format!(
                "http://pipe:/{}",
                dir.path().join(format!("CoreFxPipe_{front}")).display()
            )
        } else {
            format!("http://pipe:/{front}")
        };
        let res = client.get(format!("{base}:/test")).send().await.unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(res.text().await.unwrap(), "Hello world!");

        let body: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let res = client
            .post(format!("{base}:/echo"))
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        assert!(
            res.bytes().await.unwrap() == body,
            "the echo came back changed"
        );

        // The app's client is the middle proxy, on the app's pipe.
        let res = client.get(format!("{base}:/whoami")).send().await.unwrap();
        let who: serde_json::Value = res.json().await.unwrap();
        assert_eq!(who["transport"], "pipe", "{who}");
        assert_eq!(who["pid"], middle.id(), "{who}");
    });
    drop(app_server);
}

#[test]
fn an_absent_target_is_a_502_with_one_line_naming_it() {
    let dir = tempdir().unwrap();
    let nobody = unique_name("proxy-nobody");
    let front = proxy(
        &dir,
        "http://127.0.0.1:0",
        &format!("http://pipe:/{nobody}"),
        &["--connect-timeout", "0.2"],
    );
    runtime().block_on(async {
        let res = Client::new()
            .get(format!("{}/test", front.url(0)))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 502);
        let text = res.text().await.unwrap();
        let want = format!(
            "pipehttp proxy: cannot reach http://pipe:/{nobody}: no server is listening on pipe '{nobody}'"
        );
        assert!(text.starts_with(&want), "{text}");
        assert_eq!(text.lines().count(), 1, "{text}");
    });
}
