//! TLS and HTTP/2 through the real binary, with peers no one here wrote:
//! Debian's curl over `--unix-socket` with `--cacert`, and h2load from
//! nghttp2-client driving HTTP/2 on a cleartext pipe.
#![cfg(unix)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use testkit::cli_tools::curl_over_http1_and_http2;
use testkit::lines::starting_with;
use testkit::{Serve, TempDir, tempdir, unique_name};

const PIPEHTTP: &str = env!("CARGO_BIN_EXE_pipehttp");

fn pipehttp(dir: &TempDir) -> Command {
    // Socket files of pipe names go to this test's own directory.
    testkit::command(PIPEHTTP, Some(dir.path()))
}

fn run(mut cmd: Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Writes a development certificate into `dir` with `pipehttp dev-cert`.
pub(crate) fn dev_cert(dir: &TempDir) -> (PathBuf, PathBuf) {
    let mut cmd = pipehttp(dir);
    cmd.args(["dev-cert", "--out"]).arg(dir.path());
    run(cmd);
    (
        dir.path().join("localhost.pem"),
        dir.path().join("localhost-key.pem"),
    )
}

/// `pipehttp serve --urls URL` plus `args`, once it says it listens.
fn serve(dir: &TempDir, url: &str, args: &[&Path]) -> Serve {
    let mut cmd = pipehttp(dir);
    cmd.args(["serve", "--urls", url]).args(args);
    Serve::start(cmd, 1)
}

/// `pipehttp serve` on a new HTTPS pipe named from `prefix`, with a
/// certificate and key that `cert` writes into a temp dir of its own.
pub(crate) struct HttpsPipe {
    pub(crate) dir: TempDir,
    pub(crate) cert: PathBuf,
    pub(crate) key: PathBuf,
    pub(crate) server: Serve,
}

impl HttpsPipe {
    /// The pipe's name.
    pub(crate) fn name(&self) -> &str {
        let url = self.server.url(0);
        url.strip_prefix("https://pipe:/")
            .unwrap_or_else(|| panic!("not an HTTPS pipe: {url}"))
    }

    pub(crate) fn start(prefix: &str, cert: fn(&TempDir) -> (PathBuf, PathBuf)) -> Self {
        let dir = tempdir().unwrap();
        let (cert, key) = cert(&dir);
        let name = unique_name(prefix);
        let url = format!("https://pipe:/{name}");
        let server = serve(
            &dir,
            &url,
            &["--cert".as_ref(), &cert, "--key".as_ref(), &key],
        );
        Self {
            dir,
            cert,
            key,
            server,
        }
    }
}

#[test]
fn curl_gets_hello_world_over_https_on_a_pipe_with_http1_and_http2() {
    let https = HttpsPipe::start("tls-curl", dev_cert);
    let sock = https.server.path(0).to_str().unwrap();
    let cert = https.cert.to_str().unwrap();
    let url = "https://localhost/test";
    for body in curl_over_http1_and_http2(&["--cacert", cert, "--unix-socket", sock, url]) {
        assert_eq!(body, "Hello world!");
    }
}

#[test]
fn pipehttp_get_trusts_the_dev_cert_with_cacert_and_refuses_without() {
    let https = HttpsPipe::start("tls-get", dev_cert);
    let name = https.name();
    let target = format!("https://pipe:/{name}:/test");

    let mut get = pipehttp(&https.dir);
    get.args(["get", "--cacert"]).arg(&https.cert).arg(&target);
    assert_eq!(run(get).stdout, b"Hello world!");

    let mut untrusted = pipehttp(&https.dir);
    untrusted.args(["get", &target]);
    let out = untrusted.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // curl's code for a certificate that is not trusted.
    assert_eq!(out.status.code(), Some(60), "{stderr}");
    assert!(
        stderr.contains(&format!("pipe '{name}'")) && stderr.contains("certificate"),
        "{stderr}"
    );
}

#[test]
fn dev_cert_refuses_to_overwrite_without_force() {
    let dir = tempdir().unwrap();
    dev_cert(&dir);
    let mut again = pipehttp(&dir);
    again.args(["dev-cert", "--out"]).arg(dir.path());
    let out = again.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("--force"), "{stderr}");
    let mut forced = pipehttp(&dir);
    forced
        .args(["dev-cert", "--force", "--out"])
        .arg(dir.path());
    run(forced);
}

#[test]
fn a_key_that_does_not_fit_stops_serve_naming_endpoint_and_files() {
    let dir = tempdir().unwrap();
    let (cert, _) = dev_cert(&dir);
    let other = tempdir().unwrap();
    let (_, other_key) = dev_cert(&other);
    let url = format!("https://pipe:/{}", unique_name("tls-mismatch"));
    let mut cmd = pipehttp(&dir);
    cmd.args(["serve", "--urls", &url, "--cert"])
        .arg(&cert)
        .arg("--key")
        .arg(&other_key);
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let line = starting_with(&stderr, "pipehttp: ");
    assert!(line.contains(&url), "{stderr}");
    assert!(line.contains(other_key.to_str().unwrap()), "{stderr}");
}

/// h2load (nghttp2-client) with `flags` sending GET /test to the socket
/// at `socket` in HTTP/2 with prior knowledge; it must exit 0. Its report.
pub(crate) fn h2load(socket: &Path, flags: &[&str]) -> String {
    let out = Command::new("h2load")
        .args(flags)
        .arg("-B")
        .arg(format!("unix:{}", socket.display()))
        .arg("http://localhost/test")
        .output()
        .expect("this test needs h2load on PATH (Debian package nghttp2-client)");
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "h2load {flags:?}: {report}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    report
}

/// h2load sends 10,000 HTTP/2 requests over 10 connections to a cleartext
/// pipe endpoint, which takes HTTP/2 with prior knowledge beside HTTP/1.1.
#[test]
fn h2load_sends_ten_thousand_http2_requests_without_an_error() {
    let dir = tempdir().unwrap();
    let name = unique_name("h2load");
    let server = serve(&dir, &format!("http://pipe:/{name}"), &[]);
    let report = h2load(server.path(0), &["-n", "10000", "-c", "10", "-m", "10"]);
    for (line, counts) in [
        ("requests:", "10000 succeeded, 0 failed, 0 errored"),
        ("status codes:", "10000 2xx"),
    ] {
        let line = starting_with(&report, line);
        assert!(line.contains(counts), "{line}");
    }
}
