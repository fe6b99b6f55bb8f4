//! `pipehttp serve` end to end: where its endpoints and options come from,
//! and how it fails. Unix only: requests go through curl's --unix-socket.
#![cfg(unix)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use testkit::{Spawned, TempDir, tempdir, unique_name};

/// `pipehttp serve` with its own TMPDIR, so pipe names map to socket files
/// in `dir`, and without the caller's PIPEHTTP_URLS or RUST_LOG.
fn serve(dir: &TempDir) -> Command {
    let mut cmd = testkit::command(env!("CARGO_BIN_EXE_pipehttp"), Some(dir.path()));
    cmd.arg("serve");
    cmd
}

fn socket(dir: &TempDir, name: &str) -> PathBuf {
    dir.path().join(format!("CoreFxPipe_{name}"))
}

/// Waits until the server listens on pipe `name` and returns its socket.
fn wait_listening(server: &Spawned, dir: &TempDir, name: &str) -> PathBuf {
    let path = socket(dir, name);
    let line = server.wait_for_line(&format!("Now listening on: http://pipe:/{name} ("));
    assert!(
        line.contains(&format!("({})", path.display())),
        "the line names the socket {}: {line}",
        path.display()
    );
    path
}

/// Waits for the command to exit by itself; returns its code and output.
fn exit_of(cmd: Command) -> (Option<i32>, String) {
    let mut child = Spawned::start(cmd);
    let status = child.wait_exit();
    (status.code(), child.output())
}

fn write(dir: &TempDir, file: &str, text: &str) -> PathBuf {
    let path = dir.path().join(file);
    std::fs::write(&path, text).unwrap();
    path
}

fn curl(socket: &Path, args: &[&str]) -> Output {
    let out = Command::new("curl")
        .args(["-sS", "--unix-socket"])
        .arg(socket)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("this test needs curl on PATH (CI installs it): {e}"));
    assert!(
        out.status.success(),
        "curl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// POSTs a body of `len` bytes to /echo and returns the status code.
fn post_echo(socket: &Path, len: usize) -> String {
    let body = "x".repeat(len);
    let out = curl(
        socket,
        &[
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--data-binary",
            &body,
            "http://localhost/echo",
        ],
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn default_address_when_nothing_is_given() {
    let dir = tempdir().unwrap();
    let server = Spawned::start(serve(&dir));
    let socket = wait_listening(&server, &dir, "my-test-pipe");
    let out = curl(&socket, &["http://localhost/test"]);
    assert_eq!(out.stdout, b"Hello world!");
}

#[test]
fn env_urls_used_without_flag() {
    let dir = tempdir().unwrap();
    let name = unique_name("env");
    let mut cmd = serve(&dir);
    cmd.env("PIPEHTTP_URLS", format!("http://pipe:/{name}"));
    let server = Spawned::start(cmd);
    wait_listening(&server, &dir, &name);
    assert!(!socket(&dir, "my-test-pipe").exists());
}

#[test]
fn urls_flag_beats_env() {
    let dir = tempdir().unwrap();
    let (flag, env) = (unique_name("flag"), unique_name("env"));
    let mut cmd = serve(&dir);
    cmd.args(["--urls", &format!("http://pipe:/{flag}")])
        .env("PIPEHTTP_URLS", format!("http://pipe:/{env}"));
    let server = Spawned::start(cmd);
    // Every endpoint is bound before the first line is printed.
    wait_listening(&server, &dir, &flag);
    assert!(!socket(&dir, &env).exists(), "{}", server.output());
}

#[test]
fn config_endpoints_used_without_flag_or_env() {
    let dir = tempdir().unwrap();
    let (a, b) = (unique_name("a"), unique_name("b"));
    let config = write(
        &dir,
        "pipehttp.toml",
        &format!(
            "[endpoints.a]\nurl = \"http://pipe:/{a}\"\n[endpoints.b]\nurl = \"http://pipe:/{b}\"\n"
        ),
    );
    let mut cmd = serve(&dir);
    cmd.arg("--config").arg(&config);
    let server = Spawned::start(cmd);
    wait_listening(&server, &dir, &a);
    wait_listening(&server, &dir, &b);
}

#[test]
fn env_beats_config_file() {
    let dir = tempdir().unwrap();
    let (file, env) = (unique_name("file"), unique_name("env"));
    let config = write(
        &dir,
        "pipehttp.toml",
        &format!("[endpoints.a]\nurl = \"http://pipe:/{file}\"\n"),
    );
    let mut cmd = serve(&dir);
    cmd.arg("--config")
        .arg(&config)
        .env("PIPEHTTP_URLS", format!("http://pipe:/{env}"));
    let server = Spawned::start(cmd);
    wait_listening(&server, &dir, &env);
    assert!(!socket(&dir, &file).exists(), "{}", server.output());
}

#[test]
fn toml_limits_apply() {
    let dir = tempdir().unwrap();
    let name = unique_name("toml");
    let config = write(
        &dir,
        "pipehttp.toml",
        &format!(
            "[endpoints.pipe]\nurl = \"http://pipe:/{name}\"\n[limits]\nmax_request_body_size = 10\n"
        ),
    );
    let mut cmd = serve(&dir);
    cmd.arg("--config").arg(&config);
    let server = Spawned::start(cmd);
    let socket = wait_listening(&server, &dir, &name);
    assert_eq!(post_echo(&socket, 100), "413");
    assert_eq!(post_echo(&socket, 10), "200");
}

#[test]
fn json_limits_apply() {
    let dir = tempdir().unwrap();
    let name = unique_name("json");
    let config = write(
        &dir,
        "appsettings.json",
        &format!(
            r#"{{ "Kestrel": {{
                "Endpoints": {{ "NamedPipeEndpoint": {{ "Url": "http://pipe:/{name}" }} }},
                "Limits": {{ "MaxRequestBodySize": 10 }} }},
              "Logging": {{ "LogLevel": {{ "Default": "Information" }} }},
              "AllowedHosts": "*" }}"#
        ),
    );
    let mut cmd = serve(&dir);
    cmd.arg("--config").arg(&config);
    let server = Spawned::start(cmd);
    let socket = wait_listening(&server, &dir, &name);
    assert_eq!(post_echo(&socket, 100), "413");
}

#[test]
fn flag_overrides_file_value() {
    let dir = tempdir().unwrap();
    let name = unique_name("flag");
    let config = write(
        &dir,
        "pipehttp.toml",
        &format!(
            "[endpoints.pipe]\nurl = \"http://pipe:/{name}\"\n[limits]\nmax_request_body_size = 10\n"
        ),
    );
    let mut cmd = serve(&dir);
    cmd.arg("--config")
        .arg(&config)
        .args(["--max-request-body-size", "1000"]);
    let server = Spawned::start(cmd);
    let socket = wait_listening(&server, &dir, &name);
    assert_eq!(post_echo(&socket, 100), "200");
}

#[test]
fn unknown_config_key_exits_1_naming_key_and_file() {
    let dir = tempdir().unwrap();
    let config = write(&dir, "pipehttp.toml", "[limits]\nmax_body = 10\n");
    let mut cmd = serve(&dir);
    cmd.arg("--config").arg(&config);
    let (code, output) = exit_of(cmd);
    assert_eq!(code, Some(1), "{output}");
    let expected = format!(
        "pipehttp: {}: unknown key `limits.max_body`: expected one of ",
        config.display()
    );
    assert!(output.lines().any(|l| l.starts_with(&expected)), "{output}");
}

#[test]
fn malformed_url_in_config_exits_1_naming_key_and_url() {
    let dir = tempdir().unwrap();
    let config = write(
        &dir,
        "appsettings.json",
        r#"{ "Kestrel": { "Endpoints": { "E": { "Url": "http://pipe:/a:b" } } } }"#,
    );
    let mut cmd = serve(&dir);
    cmd.arg("--config").arg(&config);
    let (code, output) = exit_of(cmd);
    assert_eq!(code, Some(1), "{output}");
    let expected = format!(
        "pipehttp: {}: `Kestrel:Endpoints:E:Url`: invalid address 'http://pipe:/a:b': ",
        config.display()
    );
    assert!(output.lines().any(|l| l.starts_with(&expected)), "{output}");
}

#[test]
fn malformed_env_url_exits_1_naming_the_variable() {
    let dir = tempdir().unwrap();
    let mut cmd = serve(&dir);
    cmd.env("PIPEHTTP_URLS", "http://pipe:/ok;tcp://nope");
    let (code, output) = exit_of(cmd);
    assert_eq!(code, Some(1), "{output}");
    assert!(
        output
            .lines()
            .any(|l| l.starts_with("pipehttp: PIPEHTTP_URLS: invalid address 'tcp://nope': ")),
        "{output}"
    );
}

#[test]
fn malformed_urls_flag_is_a_usage_error() {
    let dir = tempdir().unwrap();
    let mut cmd = serve(&dir);
    cmd.args(["--urls", "http://pipe:/a:b"]);
    let (code, output) = exit_of(cmd);
    assert_eq!(code, Some(2), "{output}");
    assert!(
        output.contains("invalid address 'http://pipe:/a:b'"),
        "{output}"
    );
}

#[test]
fn unknown_config_extension_exits_1() {
    let dir = tempdir().unwrap();
    let config = write(&dir, "pipehttp.yaml", "");
    let mut cmd = serve(&dir);
    cmd.arg("--config").arg(&config);
    let (code, output) = exit_of(cmd);
    assert_eq!(code, Some(1), "{output}");
    let expected = format!("pipehttp: {}: unknown config file type: ", config.display());
    assert!(output.lines().any(|l| l.starts_with(&expected)), "{output}");
}

#[test]
fn https_endpoint_without_a_certificate_is_refused() {
    let dir = tempdir().unwrap();
    let name = unique_name("tls");
    let mut cmd = serve(&dir);
    cmd.args(["--urls", &format!("https://pipe:/{name}")]);
    let (code, output) = exit_of(cmd);
    assert_eq!(code, Some(1), "{output}");
    assert!(
        output.lines().any(|l| l.starts_with(&format!(
            "pipehttp: https://pipe:/{name} needs a certificate"
        )) && l.contains("--cert")),
        "{output}"
    );
    assert!(!socket(&dir, &name).exists());
}

#[test]
fn sigterm_stops_and_removes_the_socket() {
    let dir = tempdir().unwrap();
    let name = unique_name("term");
    let mut cmd = serve(&dir);
    cmd.args(["--urls", &format!("http://pipe:/{name}")]);
    let mut server = Spawned::start(cmd);
    let socket = wait_listening(&server, &dir, &name);
    // A stop while serving is the case that matters, and an answered
    // request shows the server got past its start-up.
    assert_eq!(curl(&socket, &["http://localhost/health"]).stdout, b"ok");
    server.terminate();
    let status = server.wait_exit();
    assert!(status.success(), "{status}: {}", server.output());
    assert!(!socket.exists());
}
