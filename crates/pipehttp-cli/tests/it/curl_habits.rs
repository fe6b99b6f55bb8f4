//! The parts of curl compatibility the differential suite cannot compare
//! byte for byte: `-v`'s connection lines, failing at once when no server
//! listens on TCP or a Unix socket (and waiting for one on a pipe), and the
//! library's `ClientBuilder` trusting a certificate `openssl req -x509`
//! made, as `--cacert` does.

#![cfg(unix)]

use std::path::PathBuf;
use std::process::{Output, Stdio};
use std::time::Duration;

use testkit::lines::starting_with;
use testkit::{Serve, TempDir, tempdir, unique_name};

use crate::tls::HttpsPipe;

const BIN: &str = env!("CARGO_BIN_EXE_pipehttp");

fn openssl_cert(dir: &TempDir) -> (PathBuf, PathBuf) {
    crate::curl_diff::self_signed(dir.path(), "cert", "localhost")
}

/// `pipehttp ARGS` with TMPDIR at `dir` and no stdin, run to its end.
fn pipehttp(dir: &TempDir, args: &[&str]) -> Output {
    testkit::command(BIN, Some(dir.path()))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn verbose_shows_the_connection_tls_version_alpn_and_both_heads() {
    let https = HttpsPipe::start("verbose-tls", openssl_cert);
    let (dir, name) = (&https.dir, https.name());
    let cacert = https.cert.display().to_string();
    let out = pipehttp(
        dir,
        &[
            "request",
            "-v",
            "--cacert",
            &cacert,
            "--pipe",
            name,
            "https://localhost/test",
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(out.stdout, b"Hello world!");
    let socket = https.server.path(0).display().to_string();
    for line in [
        format!("*   Trying {socket}:0..."),
        format!("* Connected to localhost ({socket}) port 443 (#0)"),
        "* ALPN: server accepted h2".to_owned(),
        "> GET /test HTTP/2".to_owned(),
        "< HTTP/2 200".to_owned(),
    ] {
        assert!(
            stderr.lines().any(|l| l.trim_end() == line),
            "no {line:?} in:\n{stderr}"
        );
    }
    starting_with(&stderr, "* SSL connection using TLSv1.");
}

#[test]
fn client_builder_trusts_exactly_the_openssl_certificate_and_nothing_else() {
    let https = HttpsPipe::start("exact-trust", openssl_cert);
    let (dir, cert, name) = (&https.dir, &https.cert, https.name());
    let target = format!("https://pipe:/{name}:/test");
    // The server's pipe lives in `dir`, which is this process's TMPDIR too
    // only through the absolute path form.
    let path = dir.path().join(format!("CoreFxPipe_{name}"));
    let target_abs = format!("https://pipe:/{}:/test", path.display());
    let rt = tokio::runtime::Runtime::new().unwrap();

    let trusting = pipehttp::Client::builder()
        .add_root_certificate_pem(std::fs::read(cert).unwrap())
        .build();
    let text = rt
        .block_on(async { trusting.get(&target_abs).send().await?.text().await })
        .unwrap_or_else(|e| panic!("{target}: {e:#}"));
    assert_eq!(text, "Hello world!");

    // Another certificate for the same name is no trust.
    let other = tempdir().unwrap();
    let (other_cert, _) = openssl_cert(&other);
    let untrusting = pipehttp::Client::builder()
        .add_root_certificate_pem(std::fs::read(&other_cert).unwrap())
        .build();
    let err = rt
        .block_on(untrusting.get(&target_abs).send())
        .expect_err("a certificate the client does not trust");
    assert!(err.is_tls(), "{err:#}");

    // Trusted exactly, but checked for another name: refused.
    let wrong_name = pipehttp::Client::builder()
        .add_root_certificate_pem(std::fs::read(cert).unwrap())
        .tls_server_name("example.com")
        .build();
    let err = rt
        .block_on(wrong_name.get(&target_abs).send())
        .expect_err("the certificate is for localhost only");
    assert!(err.is_tls(), "{err:#}");
}

#[test]
fn no_server_on_a_unix_socket_or_tcp_fails_at_once_with_7_and_a_pipe_waits() {
    let dir = tempdir().unwrap();
    let missing = dir.path().join("nobody.sock");
    // A connect timeout far beyond the test's patience: only failing at
    // once, as curl does, lets these finish.
    let quick = |args: &[&str]| {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let dir_path = dir.path().to_owned();
        let args: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
        rt.block_on(async move {
            let child = tokio::process::Command::new(BIN)
                .args(&args)
                .env("TMPDIR", &dir_path)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .kill_on_drop(true)
                .output();
            tokio::time::timeout(Duration::from_secs(60), child)
                .await
                .unwrap_or_else(|_| {
                    panic!("pipehttp {args:?} waited for a server that is not there")
                })
                .unwrap()
        })
    };
    let socket = missing.display().to_string();
    let out = quick(&[
        "request",
        "--connect-timeout",
        "600",
        "--unix-socket",
        &socket,
        "http://localhost/",
    ]);
    assert_eq!(
        out.status.code(),
        Some(7),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A port nothing listens on: bind one, note it, close it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = quick(&[
        "request",
        "--connect-timeout",
        "600",
        &format!("http://127.0.0.1:{port}/"),
    ]);
    assert_eq!(
        out.status.code(),
        Some(7),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A pipe name is waited for: the request started before its server
    // succeeds once the server comes.
    let name = unique_name("late");
    let waiting = testkit::command(BIN, Some(dir.path()))
        .args([
            "request",
            "--connect-timeout",
            "60",
            "--pipe",
            &name,
            "http://localhost/test",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut cmd = testkit::command(BIN, Some(dir.path()));
    cmd.args(["serve", "--urls", &format!("http://pipe:/{name}")]);
    let _server = Serve::start(cmd, 1);
    let out = waiting.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, b"Hello world!");
}
