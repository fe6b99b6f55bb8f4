//! `pipehttp serve` end to end: where its endpoints and options come from,
//! and how it fails. Unix only: requests go through curl's --unix-socket.
#![cfg(unix)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use testkit::lines::starting_with;
use testkit::{Serve, Spawned, TempDir, tempdir, unique_name};

use crate::tls::{dev_cert, h2load};

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

/// Runs `cmd`, checks it exits with `code`, and returns its output.
fn exit_with(cmd: Command, code: i32) -> String {
    let (got, output) = exit_of(cmd);
    assert_eq!(got, Some(code), "{output}");
    output
}

/// Checks `pipehttp serve ARGS` is a usage error (exit 2) that says `message`.
fn usage_error_says(args: &[&str], message: &str) {
    let dir = tempdir().unwrap();
    let mut cmd = serve(&dir);
    cmd.args(args);
    let output = exit_with(cmd, 2);
    assert!(output.contains(message), "{output}");
}

/// `pipehttp serve --urls URL`.
fn serve_urls(dir: &TempDir, url: &str) -> Command {
    let mut cmd = serve(dir);
    cmd.args(["--urls", url]);
    cmd
}

/// `pipehttp serve --config FILE`.
fn serve_config_file(dir: &TempDir, file: &Path) -> Command {
    let mut cmd = serve(dir);
    cmd.arg("--config").arg(file);
    cmd
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

/// One way of giving `pipehttp serve` its endpoints from several sources
/// at once. Each runs in a TMPDIR of its own, so fixed pipe names are the
/// case's own.
struct Sources {
    what: &'static str,
    /// pipehttp.toml, given with --config.
    file: Option<&'static str>,
    flag: Option<&'static str>,
    env: Option<&'static str>,
    /// The pipes it listens on, and one it must not make.
    listens: &'static [&'static str],
    not: &'static str,
}

const ENDPOINT_SOURCES: [Sources; 4] = [
    Sources {
        what: "PIPEHTTP_URLS without a flag",
        file: None,
        flag: None,
        env: Some("http://pipe:/env"),
        listens: &["env"],
        not: "my-test-pipe",
    },
    Sources {
        what: "--urls over PIPEHTTP_URLS",
        file: None,
        flag: Some("http://pipe:/flag"),
        env: Some("http://pipe:/env"),
        listens: &["flag"],
        not: "env",
    },
    Sources {
        what: "the config file's endpoints without a flag or variable",
        file: Some(
            "[endpoints.a]\nurl = \"http://pipe:/a\"\n[endpoints.b]\nurl = \"http://pipe:/b\"\n",
        ),
        flag: None,
        env: None,
        listens: &["a", "b"],
        not: "my-test-pipe",
    },
    Sources {
        what: "PIPEHTTP_URLS over the config file",
        file: Some("[endpoints.a]\nurl = \"http://pipe:/file\"\n"),
        flag: None,
        env: Some("http://pipe:/env"),
        listens: &["env"],
        not: "file",
    },
];

#[test]
fn endpoints_come_from_the_first_source_that_gives_them() {
    for case in ENDPOINT_SOURCES {
        let dir = tempdir().unwrap();
        let mut cmd = match case.file {
            Some(text) => serve_config_file(&dir, &write(&dir, "pipehttp.toml", text)),
            None => serve(&dir),
        };
        if let Some(urls) = case.flag {
            cmd.args(["--urls", urls]);
        }
        if let Some(urls) = case.env {
            cmd.env("PIPEHTTP_URLS", urls);
        }
        let server = Spawned::start(cmd);
        for name in case.listens {
            wait_listening(&server, &dir, name);
        }
        // Every endpoint is bound before the first line is printed.
        assert!(
            !socket(&dir, case.not).exists(),
            "{}: {} was made; {}",
            case.what,
            case.not,
            server.output()
        );
    }
}

/// pipehttp.toml with one endpoint, pipe `limited`, and a body limit of 10 bytes.
const TOML_LIMIT_10: &str =
    "[endpoints.pipe]\nurl = \"http://pipe:/limited\"\n[limits]\nmax_request_body_size = 10\n";

/// appsettings.json as ASP.NET Core apps have it, with the same endpoint and limit.
const JSON_LIMIT_10: &str = r#"{ "Kestrel": {
    "Endpoints": { "NamedPipeEndpoint": { "Url": "http://pipe:/limited" } },
    "Limits": { "MaxRequestBodySize": 10 } },
  "Logging": { "LogLevel": { "Default": "Information" } },
  "AllowedHosts": "*" }"#;

/// A body limit from a config file, and a flag over it: (what, the
/// file's name and text, flags, the status a body of each length gets).
type LimitCase = (
    &'static str,
    &'static str,
    &'static str,
    &'static [&'static str],
    &'static [(usize, &'static str)],
);

const BODY_LIMITS: [LimitCase; 3] = [
    (
        "TOML [limits]",
        "pipehttp.toml",
        TOML_LIMIT_10,
        &[],
        &[(100, "413"), (10, "200")],
    ),
    (
        "Kestrel:Limits",
        "appsettings.json",
        JSON_LIMIT_10,
        &[],
        &[(100, "413")],
    ),
    (
        "a flag over the file's value",
        "pipehttp.toml",
        TOML_LIMIT_10,
        &["--max-request-body-size", "1000"],
        &[(100, "200")],
    ),
];

#[test]
fn body_limits_from_config_files_and_flags_apply() {
    for (what, file, text, flags, statuses) in BODY_LIMITS {
        let dir = tempdir().unwrap();
        let mut cmd = serve_config_file(&dir, &write(&dir, file, text));
        cmd.args(flags);
        let server = Spawned::start(cmd);
        let socket = wait_listening(&server, &dir, "limited");
        for &(len, status) in statuses {
            assert_eq!(post_echo(&socket, len), status, "{what}: {len} bytes");
        }
    }
}

/// Config files `pipehttp serve` refuses: (what is wrong, the file's name
/// and text, the message after the file's path).
const BAD_CONFIG_FILES: [(&str, &str, &str, &str); 3] = [
    (
        "an unknown key, named",
        "pipehttp.toml",
        "[limits]\nmax_body = 10\n",
        "unknown key `limits.max_body`: expected one of ",
    ),
    (
        "a malformed URL, with its key",
        "appsettings.json",
        r#"{ "Kestrel": { "Endpoints": { "E": { "Url": "http://pipe:/a:b" } } } }"#,
        "`Kestrel:Endpoints:E:Url`: invalid address 'http://pipe:/a:b': ",
    ),
    (
        "an unknown file type",
        "pipehttp.yaml",
        "",
        "unknown config file type: ",
    ),
];

#[test]
fn a_bad_config_file_exits_1_naming_the_file_and_the_fault() {
    for (what, file, text, message) in BAD_CONFIG_FILES {
        let dir = tempdir().unwrap();
        let config = write(&dir, file, text);
        let output = exit_with(serve_config_file(&dir, &config), 1);
        let expected = format!("pipehttp: {}: {message}", config.display());
        assert!(
            output.lines().any(|l| l.starts_with(&expected)),
            "{what}: no line starts with {expected:?} in:\n{output}"
        );
    }
}

/// The output of `pipehttp serve` with `var=value` set, which must make it
/// exit 1.
fn refused_variable(var: &str, value: &str) -> String {
    let dir = tempdir().unwrap();
    let mut cmd = serve(&dir);
    cmd.env(var, value);
    exit_with(cmd, 1)
}

#[test]
fn malformed_env_url_exits_1_naming_the_variable() {
    let output = refused_variable("PIPEHTTP_URLS", "http://pipe:/ok;tcp://nope");
    starting_with(
        &output,
        "pipehttp: PIPEHTTP_URLS: invalid address 'tcp://nope': ",
    );
}

#[test]
fn malformed_urls_flag_is_a_usage_error() {
    usage_error_says(
        &["--urls", "http://pipe:/a:b"],
        "invalid address 'http://pipe:/a:b'",
    );
}

#[test]
fn https_endpoint_without_a_certificate_is_refused() {
    let dir = tempdir().unwrap();
    let name = unique_name("tls");
    let output = exit_with(serve_urls(&dir, &format!("https://pipe:/{name}")), 1);
    let line = starting_with(
        &output,
        &format!("pipehttp: https://pipe:/{name} needs a certificate"),
    );
    assert!(line.contains("--cert"), "{line}");
    assert!(!socket(&dir, &name).exists());
}

#[test]
fn sigterm_stops_and_removes_the_socket() {
    let dir = tempdir().unwrap();
    let name = unique_name("term");
    let mut server = Spawned::start(serve_urls(&dir, &format!("http://pipe:/{name}")));
    let socket = wait_listening(&server, &dir, &name);
    // A stop while serving is the case that matters, and an answered
    // request shows the server got past its start-up.
    assert_eq!(curl(&socket, &["http://localhost/health"]).stdout, b"ok");
    server.terminate();
    let status = server.wait_exit();
    assert!(status.success(), "{status}: {}", server.output());
    assert!(!socket.exists());
}

// ---- Coming from Kestrel: appsettings, variables, protocols, certificates.

/// `pipehttp serve --config FILE` with `vars` set, started and listening
/// on `count` endpoints.
fn serve_config(dir: &TempDir, file: &Path, vars: &[(&str, &str)], count: usize) -> Serve {
    let mut cmd = serve_config_file(dir, file);
    cmd.envs(vars.iter().copied());
    Serve::start(cmd, count)
}

/// curl's exit code and stdout, without asserting success.
fn curl_status(args: &[&str]) -> (Option<i32>, String) {
    let out = testkit::cli_tools::curl(args);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// GET /test over HTTPS on the socket at `socket`, trusting `cacert`, with
/// curl's `extra` options: curl's exit code and the body.
fn https_get(socket: &Path, cacert: &Path, extra: &[&str]) -> (Option<i32>, String) {
    let (socket, cacert) = (socket.to_str().unwrap(), cacert.to_str().unwrap());
    let start = ["--cacert", cacert, "--unix-socket", socket];
    curl_status(&[&start[..], extra, &["https://localhost/test"]].concat())
}

/// appsettings.json with these Kestrel `Endpoints` and default certificate
/// (JSON objects' insides).
fn kestrel_https(endpoints: &str, default_certificate: &str) -> String {
    format!(
        r#"{{ "Kestrel": {{
  "Endpoints": {{ {endpoints} }},
  "Certificates": {{ "Default": {{ {default_certificate} }} }} }} }}"#
    )
}

#[test]
fn each_urls_variable_in_order() {
    let dir = tempdir().unwrap();
    let [p, a, d, f] = ["p", "a", "d", "f"].map(unique_name);
    let file = write(
        &dir,
        "appsettings.json",
        &format!(
            r#"{{ "Kestrel": {{ "Endpoints": {{ "E": {{ "Url": "http://pipe:/{f}" }} }} }} }}"#
        ),
    );
    let cases: [(&[(&str, &str)], &str); 4] = [
        (&[("DOTNET_URLS", &format!("http://pipe:/{d}"))], &d),
        (
            &[
                ("DOTNET_URLS", &format!("http://pipe:/{d}")),
                ("ASPNETCORE_URLS", &format!("http://pipe:/{a}")),
            ],
            &a,
        ),
        (
            &[
                ("DOTNET_URLS", &format!("http://pipe:/{d}")),
                ("ASPNETCORE_URLS", &format!("http://pipe:/{a}")),
                ("PIPEHTTP_URLS", &format!("http://pipe:/{p}")),
            ],
            &p,
        ),
        (&[], &f),
    ];
    for (vars, expected) in cases {
        let server = serve_config(&dir, &file, vars, 1);
        assert_eq!(
            server.url(0),
            format!("http://pipe:/{expected}"),
            "{vars:?}"
        );
        assert_eq!(
            curl(server.path(0), &["http://localhost/test"]).stdout,
            b"Hello world!"
        );
        server.stop();
    }
}

#[test]
fn appsettings_layered_with_the_environment_file_and_variables() {
    let dir = tempdir().unwrap();
    let (base, dev) = (unique_name("base"), unique_name("dev"));
    let file = write(
        &dir,
        "appsettings.json",
        &format!(
            r#"// as real apps write it
{{
  "Logging": {{ "LogLevel": {{ "Default": "Information", }} }},
  "ConnectionStrings": {{ "Db": "Server=db" }},
  "AllowedHosts": "*",
  "Kestrel": {{
    "Endpoints": {{ "Pipe": {{ "Url": "http://pipe:/{base}" }} }},
    "Limits": {{ "MaxRequestBodySize": 1000, "MaxRequestHeaderCount": 50 }},
  }},
}}"#
        ),
    );
    write(
        &dir,
        "appsettings.Development.json",
        &format!(
            r#"{{ "Kestrel": {{ "Endpoints": {{ "Pipe": {{ "Url": "http://pipe:/{dev}" }} }} }} }}"#
        ),
    );
    let vars = [
        ("ASPNETCORE_ENVIRONMENT", "Development"),
        ("Kestrel__Limits__MaxRequestBodySize", "10"),
    ];
    let server = serve_config(&dir, &file, &vars, 1);
    assert_eq!(server.url(0), format!("http://pipe:/{dev}"));
    let socket = server.path(0).to_owned();
    assert_eq!(post_echo(&socket, 100), "413", "the variable's limit");
    assert_eq!(post_echo(&socket, 10), "200");
    // The base file's other limit still holds: 50 headers pass, 60 do not.
    let headers = |n: usize| -> Vec<String> {
        (0..n)
            .flat_map(|i| ["-H".to_owned(), format!("X-H{i}: v")])
            .collect()
    };
    for (n, status) in [(40, "200"), (60, "431")] {
        let mut args: Vec<String> = headers(n);
        args.extend(
            [
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "http://localhost/test",
            ]
            .map(String::from),
        );
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        assert_eq!(
            String::from_utf8(curl(&socket, &args).stdout).unwrap(),
            status,
            "{n} headers"
        );
    }
    server.stop();
}

#[test]
fn protocols_per_endpoint_as_kestrel_serves_them() {
    let dir = tempdir().unwrap();
    let (h1, h2, both) = (unique_name("h1"), unique_name("h2"), unique_name("both"));
    let file = write(
        &dir,
        "appsettings.json",
        &format!(
            r#"{{ "Kestrel": {{
  "EndpointDefaults": {{ "Protocols": "Http1" }},
  "Endpoints": {{
    "A": {{ "Url": "http://pipe:/{h1}" }},
    "B": {{ "Url": "http://pipe:/{h2}", "Protocols": "Http2" }},
    "C": {{ "Url": "http://pipe:/{both}", "Protocols": "Http1AndHttp2AndHttp3" }} }} }} }}"#
        ),
    );
    let server = serve_config(&dir, &file, &[], 3);
    let version = |i: usize, flag: &str| {
        let socket = server.path(i).to_str().unwrap();
        curl_status(&[
            flag,
            "--unix-socket",
            socket,
            "-o",
            "/dev/null",
            "-w",
            "%{http_version}",
            "http://localhost/test",
        ])
    };
    // A: HTTP/1 only (the endpoint default): HTTP/2 prior knowledge is refused.
    assert_eq!(version(0, "--http1.1"), (Some(0), "1.1".into()));
    assert_ne!(version(0, "--http2-prior-knowledge").0, Some(0));
    // B: HTTP/2 only: prior knowledge works, HTTP/1.1 does not.
    assert_eq!(version(1, "--http2-prior-knowledge"), (Some(0), "2".into()));
    assert_ne!(version(1, "--http1.1").0, Some(0));
    // C: both; HTTP/3 is accepted in the file and noted as not served.
    assert_eq!(version(2, "--http1.1"), (Some(0), "1.1".into()));
    assert_eq!(version(2, "--http2-prior-knowledge"), (Some(0), "2".into()));
    let notes = server.output();
    assert!(
        notes.contains("accepted but not applicable here: Kestrel:Endpoints:C:Protocols (HTTP/3 is not served here"),
        "{notes}"
    );
    // h2load, another HTTP/2 client, on the HTTP/2-only endpoint.
    let report = h2load(server.path(1), &["-n", "20", "-c", "2"]);
    assert!(
        report.contains("20 succeeded, 0 failed, 0 errored"),
        "{report}"
    );
    server.stop();
}

/// openssl with the words of `line` (which has no quoting) in `dir`; it
/// must succeed.
fn openssl(dir: &TempDir, line: &str) {
    let args: Vec<&str> = line.split_whitespace().collect();
    let out = Command::new("openssl")
        .current_dir(dir.path())
        .args(&args)
        .output()
        .expect("this test needs the openssl command (Debian package openssl)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn pfx_and_encrypted_pem_certificates_with_passwords() {
    let dir = tempdir().unwrap();
    let (cert, key) = dev_cert(&dir);
    let (cert_s, key_s) = (cert.to_str().unwrap(), key.to_str().unwrap());
    // .pfx as OpenSSL 3 writes it (PBES2, AES-256), and a PKCS#8 key
    // encrypted the same way.
    openssl(
        &dir,
        &format!("pkcs12 -export -in {cert_s} -inkey {key_s} -out cert.pfx -passout pass:s3cret"),
    );
    openssl(
        &dir,
        &format!("pkcs8 -topk8 -in {key_s} -out encrypted.key -passout pass:k3y"),
    );
    let (pfx, pem) = (unique_name("pfx"), unique_name("pem"));
    let endpoints = format!(
        r#""Pfx": {{ "Url": "https://pipe:/{pfx}", "Certificate": {{ "Path": "cert.pfx", "Password": "s3cret" }} }},
    "Pem": {{ "Url": "https://pipe:/{pem}", "SslProtocols": ["Tls13"] }}"#
    );
    let default = r#""Path": "localhost.pem", "KeyPath": "encrypted.key", "Password": "k3y""#;
    let file = write(
        &dir,
        "appsettings.json",
        &kestrel_https(&endpoints, default),
    );
    let server = serve_config(&dir, &file, &[], 2);
    for i in 0..2 {
        let got = https_get(server.path(i), &cert, &[]);
        assert_eq!(got, (Some(0), "Hello world!".into()), "{}", server.url(i));
    }
    // The PEM endpoint (first: endpoints are sorted by name) takes TLS 1.3 only.
    assert_eq!(server.url(0), format!("https://pipe:/{pem}"));
    let (code, _) = https_get(server.path(0), &cert, &["--tlsv1.2", "--tls-max", "1.2"]);
    assert_eq!(code, Some(35), "TLS 1.2 refused");
    server.stop();

    // A wrong password is a one-line error naming the endpoint and file.
    let bad = write(
        &dir,
        "bad.json",
        &format!(
            r#"{{ "Kestrel": {{ "Endpoints": {{ "Pfx": {{ "Url": "https://pipe:/{pfx}", "Certificate": {{ "Path": "cert.pfx", "Password": "nope" }} }} }} }} }}"#
        ),
    );
    let cmd = serve_config_file(&dir, &bad);
    let output = exit_with(cmd, 1);
    let line = starting_with(&output, &format!("pipehttp: https://pipe:/{pfx}: "));
    assert!(
        line.contains("cert.pfx cannot be read as PKCS#12"),
        "{line}"
    );
}

#[test]
fn server_header_and_request_line_limit() {
    let dir = tempdir().unwrap();
    let url = format!("http://pipe:/{}", unique_name("hdr"));
    let mut cmd = serve_urls(&dir, &url);
    cmd.args(["--max-request-line-size", "100"]);
    let server = Serve::start(cmd, 1);
    let out = curl(server.path(0), &["-i", "http://localhost/test"]);
    let head = String::from_utf8_lossy(&out.stdout).to_ascii_lowercase();
    assert!(head.contains("\r\nserver: pipehttp\r\n"), "{head}");
    let long = format!("http://localhost/test?{}", "x".repeat(200));
    let out = curl(
        server.path(0),
        &["-o", "/dev/null", "-w", "%{http_code}", &long],
    );
    assert_eq!(out.stdout, b"414");
    server.stop();

    let mut cmd = serve_urls(&dir, &url);
    cmd.env("Kestrel__AddServerHeader", "false");
    let server = Serve::start(cmd, 1);
    let out = curl(server.path(0), &["-i", "http://localhost/test"]);
    let head = String::from_utf8_lossy(&out.stdout).to_ascii_lowercase();
    assert!(!head.contains("server:"), "{head}");
    server.stop();
}

#[test]
fn a_kestrel_variable_that_is_not_kestrels_exits_1_naming_it() {
    let output = refused_variable("Kestrel__Limits__MaxRequestBodySise", "10");
    assert!(
        output.lines().any(|l| l
            == "pipehttp: Kestrel__Limits__MaxRequestBodySise: unknown key `Kestrel:Limits:MaxRequestBodySise`: \
                not one of Kestrel's; did you mean `Kestrel:Limits:MaxRequestBodySize`?"),
        "{output}"
    );
}

#[test]
fn help_shows_every_option_with_its_default_from_the_schema() {
    let dir = tempdir().unwrap();
    let mut cmd = serve(&dir);
    cmd.arg("--help");
    let help = exit_with(cmd, 0);
    let help = help.split_whitespace().collect::<Vec<_>>().join(" ");
    for info in pipehttp::options::OPTIONS {
        assert!(
            help.contains(&format!("--{} <", info.flag())),
            "--{} missing",
            info.flag()
        );
        assert!(
            help.contains(&format!("[default: {}]", info.default_text())),
            "{}: default {} missing",
            info.name,
            info.default_text()
        );
    }
}

#[test]
fn flag_values_are_checked_against_the_schema() {
    usage_error_says(
        &["--http2-max-frame-size", "100"],
        "invalid value '100' for '--http2-max-frame-size <BYTES>': expected a number of bytes from 16384 to 16777215",
    );
}

#[test]
fn client_certificate_modes_check_the_chain_against_the_platform_roots() {
    let dir = tempdir().unwrap();
    let (cert, key) = dev_cert(&dir);
    // A CA and a client certificate it signed. The server trusts the CA
    // as a platform root through SSL_CERT_FILE, as an operator would.
    let new_ec_key = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    openssl(
        &dir,
        &format!(
            "req {new_ec_key} -x509 -keyout ca.key -out ca.pem -days 1 -subj /CN=pipehttp-test-CA \
             -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign"
        ),
    );
    openssl(
        &dir,
        &format!("req {new_ec_key} -keyout client.key -out client.csr -subj /CN=client"),
    );
    write(
        &dir,
        "client.ext",
        "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n",
    );
    openssl(
        &dir,
        "x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
         -out client.pem -days 1 -extfile client.ext",
    );
    let (require, allow) = (unique_name("require"), unique_name("allow"));
    let endpoints = format!(
        r#""Allow": {{ "Url": "https://pipe:/{allow}", "ClientCertificateMode": "AllowCertificate" }},
    "Require": {{ "Url": "https://pipe:/{require}", "ClientCertificateMode": "RequireCertificate" }}"#
    );
    let default = format!(
        r#""Path": "{}", "KeyPath": "{}""#,
        cert.display(),
        key.display()
    );
    let file = write(
        &dir,
        "appsettings.json",
        &kestrel_https(&endpoints, &default),
    );
    let ca = dir.path().join("ca.pem");
    let server = serve_config(&dir, &file, &[("SSL_CERT_FILE", ca.to_str().unwrap())], 2);
    let client_cert = dir.path().join("client.pem");
    let client_key = dir.path().join("client.key");
    let client = [
        "--cert",
        client_cert.to_str().unwrap(),
        "--key",
        client_key.to_str().unwrap(),
    ];
    let get = |i: usize, with_client: bool| {
        https_get(
            server.path(i),
            &cert,
            if with_client { &client } else { &[] },
        )
    };
    let ok = (Some(0), "Hello world!".to_owned());
    assert_eq!(get(0, false), ok, "AllowCertificate without one");
    assert_eq!(get(0, true), ok, "AllowCertificate with one");
    assert_eq!(get(1, true), ok, "RequireCertificate with a trusted one");
    let (code, _) = get(1, false);
    assert_ne!(code, Some(0), "RequireCertificate without one is refused");
    // A certificate the roots do not lead to is refused: the server's own
    // self-signed one, used as a client certificate.
    let (cert_s, key_s) = (cert.to_str().unwrap(), key.to_str().unwrap());
    let (code, _) = https_get(server.path(1), &cert, &["--cert", cert_s, "--key", key_s]);
    assert_ne!(code, Some(0), "an untrusted client certificate is refused");
    server.stop();
}
