//! `pipehttp get` and `pipehttp request`: curl's habits over pipes.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use pipehttp::address::{Endpoint, PipeName, RequestTarget};
use pipehttp::client::{Body, Response, RetryPolicy};
use pipehttp::{Client, Error};
use tokio::io::AsyncWriteExt;

/// curl's exit codes, so scripts written for curl keep working.
mod exit {
    pub const FAILURE: u8 = 1;
    pub const CONNECT: u8 = 7;
    pub const TLS: u8 = 35;
    pub const HTTP_ERROR: u8 = 22;
    pub const WRITE: u8 = 23;
    pub const READ: u8 = 26;
    pub const TIMEOUT: u8 = 28;
}

/// Bodies larger than this get a progress bar when stderr is a terminal.
const PROGRESS_THRESHOLD: u64 = 1024 * 1024;

#[derive(Debug, Args)]
pub struct RequestArgs {
    /// http://pipe:/NAME:/PATH, http://unix:/SOCKET:/PATH, or a URL (with --pipe or --unix-socket, the URL's path is used).
    target: String,
    /// The method (default GET, or POST with -d).
    #[arg(short = 'X', long = "request", value_name = "METHOD")]
    method: Option<String>,
    /// A request header, 'Name: value'; repeatable.
    #[arg(short = 'H', long = "header", value_name = "HEADER")]
    headers: Vec<String>,
    /// The body: DATA, @FILE, or @- for stdin. Sent byte for byte, as curl's --data-binary.
    #[arg(
        short = 'd',
        long = "data",
        visible_alias = "data-binary",
        value_name = "DATA"
    )]
    data: Option<String>,
    /// Write the body to FILE instead of stdout.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    output: Option<PathBuf>,
    /// Print the status line and headers before the body.
    #[arg(short = 'i', long = "include")]
    include: bool,
    /// Print the request and response heads to stderr.
    #[arg(short = 'v', long = "verbose")]
    verbose: bool,
    /// Speak HTTP/2 from the first byte.
    #[arg(long = "http2")]
    http2: bool,
    /// Send to pipe NAME, taking the path from an ordinary URL (curl's --unix-socket for pipes).
    #[arg(long, value_name = "NAME", conflicts_with = "unix_socket")]
    pipe: Option<String>,
    /// Send to the Unix socket at PATH, taking the path from an ordinary URL.
    #[arg(long, value_name = "PATH")]
    unix_socket: Option<PathBuf>,
    /// Seconds to wait for the server to exist and accept.
    #[arg(long, value_name = "SECS", default_value = "5")]
    connect_timeout: f64,
    /// Seconds the whole request may take.
    #[arg(short = 'm', long, value_name = "SECS")]
    max_time: Option<f64>,
    /// Retries when the server cannot be reached (1 s, then doubling, between them).
    #[arg(long, value_name = "N", default_value = "0")]
    retry: u32,
    /// Exit 22 without printing the body when the status is 400 or more.
    #[arg(short = 'f', long)]
    fail: bool,
    /// Refuse a server that runs as another user on Unix socket paths too (pipe names always are checked).
    #[arg(long)]
    current_user_only: bool,
    /// Accept a pipe server that runs as USER (a name or uid; Windows: an account or SID) beside this user and root; repeatable.
    #[arg(long = "allow-server-user", value_name = "USER")]
    allow_server_users: Vec<String>,
    /// Trust the CA certificate(s) in this PEM file for https.
    #[arg(long, value_name = "FILE")]
    cacert: Option<PathBuf>,
    /// Accept any server certificate (development only).
    #[arg(short = 'k', long)]
    insecure: bool,
}

/// A failure with the exit code it maps to.
struct Failure {
    code: u8,
    message: String,
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        let code = if e.is_timeout() {
            exit::TIMEOUT
        } else if e.is_connect() {
            exit::CONNECT
        } else if e.is_tls() {
            exit::TLS
        } else {
            exit::FAILURE
        };
        Self {
            code,
            message: crate::errors::describe(&e),
        }
    }
}

fn failure(code: u8, message: impl Into<String>) -> Failure {
    Failure {
        code,
        message: message.into(),
    }
}

/// Which command runs: `get` always defaults to GET; `request` to POST when
/// a body is given, as curl does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Get,
    Request,
}

pub async fn run(args: RequestArgs, verb: Verb) -> ExitCode {
    crate::logging::init("warn", crate::logging::Sink::Stderr);
    match send(args, verb).await {
        Ok(code) => code,
        Err(f) => {
            if !f.message.is_empty() {
                eprintln!("pipehttp: {}", f.message);
            }
            ExitCode::from(f.code)
        }
    }
}

async fn send(args: RequestArgs, verb: Verb) -> Result<ExitCode, Failure> {
    let (target, url_host) = resolve_target(&args)?;
    let method = match (&args.method, verb, &args.data) {
        (Some(method), _, _) => method.as_str(),
        (None, Verb::Request, Some(_)) => "POST",
        (None, _, _) => "GET",
    };
    let method = http::Method::from_bytes(method.to_ascii_uppercase().as_bytes())
        .map_err(|_| failure(exit::FAILURE, format!("'{method}' is not an HTTP method")))?;

    let mut builder = Client::builder()
        .connect_timeout(seconds("--connect-timeout", args.connect_timeout)?)
        .retry(RetryPolicy::new(args.retry, Duration::from_secs(1)));
    if args.current_user_only {
        builder = builder.current_user_only(true);
    }
    for user in &args.allow_server_users {
        builder = builder.allow_server_user(user);
    }
    if args.http2 {
        builder = builder.http2_prior_knowledge();
    }
    if let Some(path) = &args.cacert {
        let pem = tokio::fs::read(path).await.map_err(|e| {
            failure(
                exit::FAILURE,
                format!("cannot read the CA file {}: {e}", path.display()),
            )
        })?;
        builder = builder.add_root_certificate_pem(pem);
    }
    if args.insecure {
        eprintln!(
            "pipehttp: WARNING: --insecure accepts any certificate; whoever holds the name can read and change this traffic"
        );
        builder = builder.danger_accept_invalid_certs(true);
    }
    let client = builder.build();

    let mut request = client.request(method.clone(), target.clone());
    let mut sent_headers = Vec::new();
    let mut has_content_type = false;
    if let Some(host) = &url_host {
        request = request.header(http::header::HOST, host.as_str());
    }
    for header in &args.headers {
        let (name, value) = header.split_once(':').ok_or_else(|| {
            failure(
                exit::FAILURE,
                format!("the header '{header}' has no ':'; write it as 'Name: value'"),
            )
        })?;
        let (name, value) = (name.trim(), value.trim());
        has_content_type |= name.eq_ignore_ascii_case("content-type");
        sent_headers.push(format!("{name}: {value}"));
        request = request.header(name, value);
    }
    if let Some(data) = &args.data {
        if !has_content_type {
            // curl's default for -d, so servers see what they would from curl.
            let ct = "application/x-www-form-urlencoded";
            sent_headers.push(format!("Content-Type: {ct}"));
            request = request.header(http::header::CONTENT_TYPE, ct);
        }
        request = request.body(read_data(data).await?);
    }
    if let Some(max) = args.max_time {
        request = request.timeout(seconds("--max-time", max)?);
    }

    if args.verbose {
        eprintln!("* Connecting to {}", target.endpoint());
        let version = if args.http2 { "HTTP/2" } else { "HTTP/1.1" };
        eprintln!("> {method} {} {version}", target.path_and_query());
        let host = url_host.unwrap_or_else(|| target.host_header());
        eprintln!("> Host: {host}");
        for line in &sent_headers {
            eprintln!("> {line}");
        }
        eprintln!(">");
    }

    let mut res = request.send().await?;
    let head = format_head(&res);
    if args.verbose {
        for line in head.lines() {
            eprintln!("< {line}");
        }
    }
    if args.fail && res.status().as_u16() >= 400 {
        return Err(failure(
            exit::HTTP_ERROR,
            format!("the server answered {}", res.status()),
        ));
    }

    let mut out = Output::open(args.output.as_ref()).await?;
    if args.include {
        out.write(head.as_bytes()).await?;
    }
    let mut progress = Progress::new(&res);
    while let Some(chunk) = res.chunk().await? {
        progress.advance(chunk.len());
        out.write(&chunk).await?;
    }
    progress.finish();
    out.finish().await?;
    Ok(ExitCode::SUCCESS)
}

/// The target, and the Host header an ordinary URL names when it is sent
/// over --pipe or --unix-socket (curl sends the URL's host).
fn resolve_target(args: &RequestArgs) -> Result<(RequestTarget, Option<String>), Failure> {
    let bad = |e: pipehttp::address::AddressError| failure(exit::FAILURE, e.to_string());
    let target: RequestTarget = args.target.parse().map_err(bad)?;
    let endpoint = match (&args.pipe, &args.unix_socket) {
        (None, None) => return Ok((target, None)),
        (Some(name), _) => Endpoint::Pipe(PipeName::new(name).map_err(bad)?),
        (_, Some(path)) => Endpoint::Unix(path.clone()),
    };
    let Endpoint::Tcp { .. } = target.endpoint() else {
        return Err(failure(
            exit::FAILURE,
            "--pipe and --unix-socket take an ordinary URL such as http://localhost/test",
        ));
    };
    let host = target.host_header();
    let routed =
        RequestTarget::new(target.scheme(), endpoint, target.path_and_query()).map_err(bad)?;
    Ok((routed, Some(host)))
}

fn seconds(flag: &str, secs: f64) -> Result<Duration, Failure> {
    Duration::try_from_secs_f64(secs).map_err(|_| {
        failure(
            exit::FAILURE,
            format!("{flag} takes a number of seconds, not {secs}"),
        )
    })
}

async fn read_data(data: &str) -> Result<Body, Failure> {
    let Some(source) = data.strip_prefix('@') else {
        return Ok(Body::from(data.to_owned()));
    };
    // Read whole, as curl does, so the request carries a Content-Length
    // and can be retried.
    let bytes = if source == "-" {
        let mut buf = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut tokio::io::stdin(), &mut buf)
            .await
            .map_err(|e| failure(exit::READ, format!("cannot read the body from stdin: {e}")))?;
        buf
    } else {
        tokio::fs::read(source).await.map_err(|e| {
            failure(
                exit::READ,
                format!("cannot read the body from {source}: {e}"),
            )
        })?
    };
    Ok(Body::from(bytes))
}

fn format_head(res: &Response) -> String {
    let mut head = format!("{:?} {}\r\n", res.version(), res.status());
    for (name, value) in res.headers() {
        head.push_str(name.as_str());
        head.push_str(": ");
        head.push_str(&String::from_utf8_lossy(value.as_bytes()));
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    head
}

/// Where the body goes: stdout or a file, written as it arrives.
struct Output {
    sink: Box<dyn tokio::io::AsyncWrite + Unpin + Send>,
    name: String,
}

impl Output {
    async fn open(path: Option<&PathBuf>) -> Result<Self, Failure> {
        Ok(match path {
            None => Self {
                sink: Box::new(tokio::io::stdout()),
                name: "stdout".into(),
            },
            Some(path) => Self {
                sink: Box::new(tokio::fs::File::create(path).await.map_err(|e| {
                    failure(
                        exit::WRITE,
                        format!("cannot create {}: {e}", path.display()),
                    )
                })?),
                name: path.display().to_string(),
            },
        })
    }

    async fn write(&mut self, bytes: &[u8]) -> Result<(), Failure> {
        self.sink
            .write_all(bytes)
            .await
            .map_err(|e| failure(exit::WRITE, format!("cannot write to {}: {e}", self.name)))
    }

    async fn finish(mut self) -> Result<(), Failure> {
        self.sink
            .flush()
            .await
            .map_err(|e| failure(exit::WRITE, format!("cannot write to {}: {e}", self.name)))
    }
}

/// A progress bar on stderr for bodies over 1 MiB, only when a person
/// watches: shown from the start when the length says so, or once 1 MiB
/// has arrived when it is unknown.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    enabled: bool,
    length: Option<u64>,
    received: u64,
}

impl Progress {
    fn new(res: &Response) -> Self {
        let length = res
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        let mut progress = Self {
            bar: None,
            enabled: std::io::stderr().is_terminal(),
            length,
            received: 0,
        };
        progress.advance(0);
        progress
    }

    fn advance(&mut self, n: usize) {
        self.received += n as u64;
        if self.bar.is_none()
            && self.enabled
            && self.length.unwrap_or(self.received) > PROGRESS_THRESHOLD
        {
            let bar = match self.length {
                Some(n) => indicatif::ProgressBar::new(n),
                None => indicatif::ProgressBar::no_length(),
            };
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{bytes}/{total_bytes} {wide_bar} {bytes_per_sec} {eta}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            bar.set_position(self.received);
            self.bar = Some(bar);
        } else if let Some(bar) = &self.bar {
            bar.inc(n as u64);
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
