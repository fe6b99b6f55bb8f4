//! `pipehttp request` against curl itself: every command line of
//! `curl/cases.txt` runs through Debian's curl and through pipehttp, each
//! with `--unix-socket` to one test server (`curl/server.py`), and their
//! stdout, exit code and written files must agree byte for byte. A second
//! suite does the same against `pipehttp serve` on a pipe (curl at the
//! pipe's socket path, pipehttp with `--pipe` or a `http://pipe:` target),
//! for HTTP/2 and TLS over pipes.
//!
//! What is normalised, because it must differ: the third line of a cookie
//! jar names the program that wrote it; `date:` headers of `pipehttp
//! serve`; digits where a case's comment asks (times and speeds). The
//! server itself hides the default User-Agent and a multipart boundary.

#![cfg(unix)]

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use testkit::{Serve, Spawned, TempDir, tempdir, unique_name};

const BIN: &str = env!("CARGO_BIN_EXE_pipehttp");
/// No single run of either tool may take longer than this.
const RUN_LIMIT: Duration = Duration::from_secs(30);

fn here() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/curl")
}

/// Debian's Python, which has the brotli and zstandard packages that
/// scripts/install-test-deps.sh installs.
fn python() -> &'static str {
    if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    }
}

/// One command line of a cases file.
#[derive(Debug)]
struct Case {
    line: usize,
    comment: String,
    args: Vec<String>,
    stdin: Option<String>,
    /// `@tls` (cases.txt) or the endpoint word (serve-cases.txt).
    mode: Option<String>,
    exception: bool,
    digits: bool,
}

fn parse_cases(text: &str, modes: bool) -> Vec<Case> {
    let mut cases = Vec::new();
    let mut comment = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() {
            comment.clear();
            continue;
        }
        if let Some(c) = line.strip_prefix('#') {
            comment.push(c.trim().to_owned());
            continue;
        }
        let mut args = shlex::split(line).unwrap_or_else(|| panic!("line {}: bad quoting", i + 1));
        let mut stdin = None;
        if args.len() >= 2 && args[args.len() - 2] == "<" {
            stdin = args.pop();
            args.pop();
        }
        let mode = (modes || args[0].starts_with('@')).then(|| args.remove(0));
        let text = comment.join(" ");
        cases.push(Case {
            line: i + 1,
            exception: text.contains("EXCEPTION:"),
            digits: text.contains("normalise: digits"),
            comment: text,
            args,
            stdin,
            mode,
        });
        comment.clear();
    }
    cases
}

/// What one tool left behind.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    code: Option<i32>,
    stdout: Vec<u8>,
    /// Every file in the run's directory, by relative path.
    files: Vec<(String, Vec<u8>)>,
}

/// Runs `cmd` in a fresh copy of files/, feeding `stdin`, within RUN_LIMIT.
fn run_in_copy(mut cmd: Command, stdin: Option<&str>, case: &Case) -> (Outcome, String) {
    let dir = tempdir().unwrap();
    for entry in std::fs::read_dir(here().join("files")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    cmd.current_dir(dir.path())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    if let Some(file) = stdin {
        let data = std::fs::read(dir.path().join(file)).unwrap();
        let mut pipe = child.stdin.take().unwrap();
        std::thread::spawn(move || {
            let _ = pipe.write_all(&data);
        });
    }
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = out.read_to_end(&mut buf);
        buf
    });
    let err_reader = std::thread::spawn(move || {
        let mut buf = String::new();
        let _ = err.read_to_string(&mut buf);
        buf
    });
    let deadline = Instant::now() + RUN_LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("line {}: {cmd:?} ran past {RUN_LIMIT:?}", case.line);
        }
        // The children have no readiness signal but their exit.
        std::thread::sleep(Duration::from_millis(5));
    };
    let stdout = reader.join().unwrap();
    let stderr = err_reader.join().unwrap();
    let mut files = Vec::new();
    collect_files(dir.path(), dir.path(), &mut files);
    files.sort();
    (
        Outcome {
            code: status.code(),
            stdout,
            files,
        },
        stderr,
    )
}

fn collect_files(root: &Path, dir: &Path, into: &mut Vec<(String, Vec<u8>)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect_files(root, &path, into);
        } else {
            let name = path.strip_prefix(root).unwrap().display().to_string();
            into.push((name, std::fs::read(&path).unwrap()));
        }
    }
}

/// The normalisations the module doc lists.
fn normalise(bytes: &[u8], digits: bool) -> Vec<u8> {
    let text = String::from_utf8_lossy(bytes);
    let mut out = String::new();
    for line in text.split_inclusive('\n') {
        if line.starts_with("# This file was generated by ") {
            out.push_str("# This file was generated by <program>! Edit at your own risk.\n");
        } else if line.to_ascii_lowercase().starts_with("date: ") {
            out.push_str("date: <date>\r\n");
        } else {
            out.push_str(line);
        }
    }
    if digits {
        let mut squashed = String::new();
        let mut in_digits = false;
        for c in out.chars() {
            if c.is_ascii_digit() {
                if !in_digits {
                    squashed.push('N');
                }
                in_digits = true;
            } else {
                in_digits = false;
                squashed.push(c);
            }
        }
        out = squashed;
    }
    if std::str::from_utf8(bytes).is_ok() {
        out.into_bytes()
    } else {
        bytes.to_vec() // binary bodies are compared as they are
    }
}

fn normalised(o: Outcome, digits: bool) -> Outcome {
    Outcome {
        code: o.code,
        stdout: normalise(&o.stdout, digits),
        files: o
            .files
            .into_iter()
            .map(|(n, b)| (n, normalise(&b, digits)))
            .collect(),
    }
}

/// One side of a disagreement: the exit code, stdout, and the files that
/// differ from the other side's.
fn show(o: &Outcome, other: &Outcome) -> String {
    let text = |b: &[u8]| match std::str::from_utf8(b) {
        Ok(t) => t.to_owned(),
        Err(_) => format!("<{} bytes of binary>", b.len()),
    };
    let mut s = format!("exit {:?}\nstdout: {}\n", o.code, text(&o.stdout));
    for file in &o.files {
        if !other.files.contains(file) {
            s.push_str(&format!("file {}: {}\n", file.0, text(&file.1)));
        }
    }
    s
}

/// Runs every case through both tools, curl and pipehttp at once and a
/// few cases at a time (each case uses its own server state); returns
/// (agreed, total, report).
fn differ(
    cases: &[Case],
    run: impl Fn(&Case, bool) -> (Outcome, String) + Sync,
) -> (usize, usize, Vec<String>) {
    const WORKERS: usize = 4;
    let results: Vec<(usize, bool, Option<String>)> = std::thread::scope(|scope| {
        let run = &run;
        let workers: Vec<_> = (0..WORKERS)
            .map(|w| {
                scope.spawn(move || {
                    cases
                        .iter()
                        .skip(w)
                        .step_by(WORKERS)
                        .map(|case| compare(case, run))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    });
    let mut ordered = results;
    ordered.sort_by_key(|(line, _, _)| *line);
    let agreed = ordered.iter().filter(|(_, same, _)| *same).count();
    let failures = ordered.into_iter().filter_map(|(_, _, f)| f).collect();
    (agreed, cases.len(), failures)
}

/// One case: curl and pipehttp side by side, normalised and compared.
fn compare(
    case: &Case,
    run: &(impl Fn(&Case, bool) -> (Outcome, String) + Sync),
) -> (usize, bool, Option<String>) {
    let ((curl, curl_err), (ours, our_err)) = std::thread::scope(|s| {
        let curl = s.spawn(|| run(case, false));
        let ours = run(case, true);
        (curl.join().unwrap(), ours)
    });
    let (curl, ours) = (normalised(curl, case.digits), normalised(ours, case.digits));
    let failure = if curl == ours {
        case.exception.then(|| {
            format!(
                "line {}: listed as an exception but now agrees; remove the EXCEPTION mark",
                case.line
            )
        })
    } else if case.exception {
        None
    } else {
        Some(format!(
            "line {} ({}): {:?}\n--- curl\n{}stderr: {curl_err}\n--- pipehttp\n{}stderr: {our_err}",
            case.line,
            case.comment,
            case.args,
            show(&curl, &ours),
            show(&ours, &curl)
        ))
    };
    (case.line, curl == ours, failure)
}

/// A certificate for `cn` as `openssl req -x509` makes it: marked as a CA,
/// which web PKI alone refuses as a server's own certificate.
pub(crate) fn self_signed(dir: &Path, name: &str, cn: &str) -> (PathBuf, PathBuf) {
    let cert = dir.join(format!("{name}.pem"));
    let key = dir.join(format!("{name}-key.pem"));
    let status = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .args([
            "-subj",
            &format!("/CN={cn}"),
            "-addext",
            &format!("subjectAltName=DNS:{cn}"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run openssl");
    assert!(status.success(), "openssl req -x509 failed");
    (cert, key)
}

fn start_python(dir: &TempDir, socket: &Path, extra: &[&Path]) -> Spawned {
    let mut cmd = Command::new(python());
    cmd.arg(here().join("server.py")).arg(socket);
    for (i, arg) in extra.iter().enumerate() {
        if i == 0 {
            cmd.arg("--tls");
        }
        if i == 2 {
            cmd.arg("--client-ca");
        }
        cmd.arg(arg);
    }
    cmd.current_dir(dir.path());
    let server = Spawned::start(cmd);
    server.wait_for_line("ready");
    server
}

#[test]
fn request_agrees_with_curl_on_every_command_line() {
    let dir = tempdir().unwrap();
    let plain = dir.path().join("plain.sock");
    let tls = dir.path().join("tls.sock");
    let (ca, ca_key) = self_signed(dir.path(), "server", "localhost");
    let (other, _) = self_signed(dir.path(), "other", "localhost");
    let (client, client_key) = self_signed(dir.path(), "client", "client.test");
    let _plain_server = start_python(&dir, &plain, &[]);
    let _tls_server = start_python(&dir, &tls, &[&ca, &ca_key, &client]);

    let cases = parse_cases(
        &std::fs::read_to_string(here().join("cases.txt")).unwrap(),
        false,
    );
    let fill = |arg: &str| {
        arg.replace("{CA}", &ca.display().to_string())
            .replace("{OTHER_CA}", &other.display().to_string())
            .replace("{CLIENT_CERT}", &client.display().to_string())
            .replace("{CLIENT_KEY}", &client_key.display().to_string())
    };
    let run = |case: &Case, ours: bool| {
        let socket = if case.mode.as_deref() == Some("@tls") {
            &tls
        } else {
            &plain
        };
        let mut cmd = if ours {
            let mut cmd = testkit::command(BIN, None);
            cmd.arg("request");
            cmd
        } else {
            Command::new("curl")
        };
        cmd.arg("--unix-socket").arg(socket);
        cmd.args(case.args.iter().map(|a| fill(a)));
        run_in_copy(cmd, case.stdin.as_deref(), case)
    };
    let (agreed, total, failures) = differ(&cases, run);
    let exceptions = cases.iter().filter(|c| c.exception).count();
    eprintln!(
        "curl differential: {agreed} of {total} command lines agree ({exceptions} listed exceptions)"
    );
    assert!(
        total >= 60,
        "the suite has {total} command lines; it promises at least 60"
    );
    assert!(
        failures.is_empty(),
        "{} disagreement(s):\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

#[test]
fn request_over_a_pipe_agrees_with_curl_at_the_pipes_socket() {
    let dir = tempdir().unwrap();
    let name = unique_name("curl-diff");
    let (cert, key) = self_signed(dir.path(), "pipe", "localhost");
    let mut cmd = testkit::command(BIN, Some(dir.path()));
    cmd.args([
        "serve",
        "--urls",
        &format!("http://pipe:/{name};https://pipe:/{name}-tls"),
    ])
    .arg("--cert")
    .arg(&cert)
    .arg("--key")
    .arg(&key);
    let server = Serve::start(cmd, 2);
    let cases = parse_cases(
        &std::fs::read_to_string(here().join("serve-cases.txt")).unwrap(),
        true,
    );
    let run = |case: &Case, ours: bool| {
        let mode = case.mode.as_deref().unwrap_or("pipe");
        let (tls, form) = match mode.split_once('-') {
            Some((f, "tls")) => (true, f),
            _ => (false, mode),
        };
        let endpoint = if tls { 1 } else { 0 };
        let pipe = if tls {
            format!("{name}-tls")
        } else {
            name.clone()
        };
        let args = case
            .args
            .iter()
            .map(|a| a.replace("{CA}", &cert.display().to_string()));
        let cmd = if ours {
            let mut cmd = testkit::command(BIN, Some(dir.path()));
            cmd.arg("request");
            if form == "pipe" {
                cmd.args(["--pipe", &pipe]);
                cmd.args(args);
            } else {
                // The target form: http(s)://pipe:/NAME:/path.
                cmd.args(args.map(|a| match a.strip_prefix("http://localhost") {
                    Some(path) => format!("http://pipe:/{pipe}:{path}"),
                    None => match a.strip_prefix("https://localhost") {
                        Some(path) => format!("https://pipe:/{pipe}:{path}"),
                        None => a,
                    },
                }));
            }
            cmd
        } else {
            let mut cmd = Command::new("curl");
            cmd.arg("--unix-socket").arg(server.path(endpoint));
            cmd.args(args);
            cmd
        };
        run_in_copy(cmd, case.stdin.as_deref(), case)
    };
    let (agreed, total, failures) = differ(&cases, run);
    eprintln!("curl differential over pipes: {agreed} of {total} command lines agree");
    assert!(
        failures.is_empty(),
        "{} disagreement(s):\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}
