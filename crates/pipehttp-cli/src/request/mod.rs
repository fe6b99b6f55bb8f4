//! `pipehttp request` and `pipehttp get`: curl for pipes. The same flags,
//! output and exit codes as curl, so that `curl --unix-socket S ARGS URL`
//! becomes `pipehttp request --unix-socket S ARGS URL` (or `--pipe NAME`,
//! or an `http://pipe:/NAME:/path` target) and a script keeps working.

mod cookies;
mod decode;
mod glob;
mod output;
mod transfer;
mod wire;
mod writeout;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use pipehttp::Client;
use pipehttp::address::{Endpoint, PipeName, RequestTarget, Scheme};
use url::Url;

use crate::exit::{self, Failure};
use crate::spec::{self, MessageArgs, RequestSpec};

/// How long a pipe client waits for a server to appear by default.
const DEFAULT_CONNECT_TIMEOUT: f64 = 5.0;

#[derive(Debug, Args)]
pub struct RequestArgs {
    /// The URL(s): http://pipe:/NAME:/PATH, http://unix:/SOCKET:/PATH, or an
    /// ordinary URL (over --pipe or --unix-socket when given).
    #[arg(value_name = "URL")]
    urls: Vec<String>,
    /// Another URL, as curl's --url.
    #[arg(long = "url", value_name = "URL")]
    url_flags: Vec<String>,
    #[command(flatten)]
    message: MessageArgs,

    /// Write the body to FILE instead of stdout (one -o per URL).
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    output: Vec<PathBuf>,
    /// Write the body to a file named as the URL's last path segment.
    #[arg(short = 'O', long = "remote-name", action = clap::ArgAction::Count)]
    remote_name: u8,
    /// -O for every URL.
    #[arg(long = "remote-name-all")]
    remote_name_all: bool,
    /// The directory -o and -O write into.
    #[arg(long = "output-dir", value_name = "DIR")]
    output_dir: Option<PathBuf>,
    /// Create the directories -o names.
    #[arg(long = "create-dirs")]
    create_dirs: bool,
    /// Delete the output file when the transfer fails.
    #[arg(long = "remove-on-error")]
    remove_on_error: bool,
    /// Send the URL's path as given, without squashing /./ and /../.
    #[arg(long = "path-as-is")]
    path_as_is: bool,
    /// Write the response heads to FILE (- for stdout).
    #[arg(short = 'D', long = "dump-header", value_name = "FILE")]
    dump_header: Option<PathBuf>,
    /// Print the response heads before the body.
    #[arg(short = 'i', long = "include")]
    include: bool,
    /// Print the connection, the request and the response heads to stderr.
    #[arg(short = 'v', long = "verbose")]
    verbose: bool,
    /// No progress bar and no error messages.
    #[arg(short = 's', long = "silent")]
    silent: bool,
    /// With -s, still print error messages.
    #[arg(short = 'S', long = "show-error")]
    show_error: bool,
    /// After the transfer print FORMAT, with curl's %{variables} (@FILE reads it).
    #[arg(short = 'w', long = "write-out", value_name = "FORMAT")]
    write_out: Option<String>,

    /// Follow redirects.
    #[arg(short = 'L', long = "location")]
    location: bool,
    /// Send -u credentials to other hosts on redirects too.
    #[arg(long = "location-trusted")]
    location_trusted: bool,
    /// How many redirects -L follows (-1: no limit).
    #[arg(
        long = "max-redirs",
        value_name = "N",
        default_value_t = 50,
        allow_negative_numbers = true
    )]
    max_redirs: i64,
    /// Keep a POST a POST after a 301.
    #[arg(long = "post301")]
    post301: bool,
    /// Keep a POST a POST after a 302.
    #[arg(long = "post302")]
    post302: bool,
    /// Keep a POST a POST after a 303.
    #[arg(long = "post303")]
    post303: bool,

    /// Exit 22 without printing the body when the status is 400 or more.
    #[arg(short = 'f', long = "fail")]
    fail: bool,
    /// With several URLs, stop at the first that fails.
    #[arg(long = "fail-early")]
    fail_early: bool,
    /// With -O, name the file as the Content-Disposition header says.
    #[arg(short = 'J', long = "remote-header-name")]
    remote_header_name: bool,
    /// Give the output file the Last-Modified time of the response.
    #[arg(short = 'R', long = "remote-time")]
    remote_time: bool,
    /// Continue a download at byte OFFSET, or '-' at the output file's end.
    #[arg(short = 'C', long = "continue-at", value_name = "OFFSET|-")]
    continue_at: Option<String>,
    /// Write the response's ETag to FILE (- for stdout).
    #[arg(long = "etag-save", value_name = "FILE")]
    etag_save: Option<String>,
    /// Send If-None-Match with the ETag that FILE holds.
    #[arg(long = "etag-compare", value_name = "FILE")]
    etag_compare: Option<String>,
    /// Never overwrite an output file: write NAME.1, NAME.2, ... instead.
    #[arg(long = "no-clobber")]
    no_clobber: bool,
    /// Fail with 63 when the response announces more bytes than this.
    #[arg(long = "max-filesize", value_name = "BYTES")]
    max_filesize: Option<u64>,
    /// Read the response no faster than this (bytes/s; suffixes k, m, g).
    #[arg(long = "limit-rate", value_name = "SPEED")]
    limit_rate: Option<String>,
    /// Only if modified since DATE (an HTTP date) or FILE's time; -DATE: if not.
    #[arg(
        short = 'z',
        long = "time-cond",
        value_name = "DATE|FILE",
        allow_hyphen_values = true
    )]
    time_cond: Option<String>,
    /// Send this request-target instead of the URL's path and query (say, '*').
    #[arg(long = "request-target", value_name = "TARGET")]
    request_target: Option<String>,
    /// Exit 22 when the status is 400 or more, still printing the body.
    #[arg(long = "fail-with-body")]
    fail_with_body: bool,

    /// Seconds the whole transfer may take.
    #[arg(short = 'm', long = "max-time", value_name = "SECS")]
    max_time: Option<f64>,
    /// Seconds to wait for a connection (over a pipe: for the server to appear) [default: 5].
    #[arg(long = "connect-timeout", value_name = "SECS")]
    connect_timeout: Option<f64>,
    /// Retries after a transient error: a timeout, or HTTP 408, 429, 500, 502, 503, 504.
    #[arg(long = "retry", value_name = "N", default_value_t = 0)]
    retry: u32,
    /// Seconds between retries (default: 1, doubling).
    #[arg(long = "retry-delay", value_name = "SECS")]
    retry_delay: Option<f64>,
    /// Stop retrying after this many seconds.
    #[arg(long = "retry-max-time", value_name = "SECS")]
    retry_max_time: Option<f64>,
    /// With --retry, retry a refused connection too (a server that is not there yet).
    #[arg(long = "retry-connrefused")]
    retry_connrefused: bool,
    /// With --retry, retry after any error.
    #[arg(long = "retry-all-errors")]
    retry_all_errors: bool,

    /// Speak HTTP/1.0.
    #[arg(short = '0', long = "http1.0")]
    http1_0: bool,
    /// Speak HTTP/1.1 only (over TLS, offer only http/1.1).
    #[arg(long = "http1.1")]
    http1_1: bool,
    /// Over TLS, offer HTTP/2 first (the default); cleartext stays HTTP/1.1.
    #[arg(long = "http2")]
    http2: bool,
    /// Speak HTTP/2 from the first byte, with no negotiation.
    #[arg(long = "http2-prior-knowledge")]
    http2_prior_knowledge: bool,

    /// Accept any server certificate (development only).
    #[arg(short = 'k', long = "insecure")]
    insecure: bool,
    /// Trust the CA certificate(s) in this PEM file, or exactly the server
    /// certificate it holds.
    #[arg(long, value_name = "FILE")]
    cacert: Option<PathBuf>,
    /// A client certificate (PEM) for servers that ask for one.
    #[arg(short = 'E', long = "cert", value_name = "FILE")]
    cert: Option<PathBuf>,
    /// The private key (PEM) of --cert (default: --cert's file).
    #[arg(long = "key", value_name = "FILE")]
    key: Option<PathBuf>,

    /// Send to pipe NAME, taking the path from an ordinary URL.
    #[arg(long, value_name = "NAME", conflicts_with_all = ["unix_socket", "abstract_unix_socket"])]
    pipe: Option<String>,
    /// Send to the Unix socket at PATH, taking the path from an ordinary URL.
    #[arg(long, value_name = "PATH", conflicts_with = "abstract_unix_socket")]
    unix_socket: Option<PathBuf>,
    /// Send to the Unix socket NAME in Linux's abstract namespace.
    #[arg(long, value_name = "NAME")]
    abstract_unix_socket: Option<String>,
    /// Refuse a server that runs as another user on Unix socket paths too (pipe names always are checked).
    #[arg(long)]
    current_user_only: bool,
    /// Accept a pipe server that runs as USER (a name or uid; Windows: an account or SID) beside this user and root; repeatable.
    #[arg(long = "allow-server-user", value_name = "USER")]
    allow_server_users: Vec<String>,

    /// Send cookies: 'NAME=VALUE; ...', or read a cookie file (and keep the
    /// cookies the server sets during the transfer).
    #[arg(short = 'b', long = "cookie", value_name = "DATA|FILE")]
    cookie: Vec<String>,
    /// Leave out the session cookies (those without an expiry) of -b files.
    #[arg(short = 'j', long = "junk-session-cookies")]
    junk_session_cookies: bool,
    /// Write the cookies to FILE (Netscape format; - for stdout) at the end.
    #[arg(short = 'c', long = "cookie-jar", value_name = "FILE")]
    cookie_jar: Option<String>,

    /// Send {} and [] in URLs as they are, instead of expanding them to several URLs.
    #[arg(short = 'g', long = "globoff")]
    globoff: bool,
    /// Accepted for curl's command lines; output is never buffered.
    #[arg(short = 'N', long = "no-buffer", hide = true)]
    no_buffer: bool,
    /// Accepted for curl's command lines: no config file is read.
    #[arg(short = 'q', long = "disable", hide = true)]
    disable: bool,
    /// No progress bar.
    #[arg(long = "no-progress-meter")]
    no_progress_meter: bool,
    /// Accepted for curl's command lines: the progress bar is the one kind.
    #[arg(short = '#', long = "progress-bar", hide = true)]
    progress_bar: bool,
    /// Accepted for curl's command lines: connections are not reused.
    #[arg(long = "no-keepalive", hide = true)]
    no_keepalive: bool,
    /// Accepted for curl's command lines: sockets and pipes have no address
    /// family, and TCP connects as the system resolves the name.
    #[arg(short = '4', long = "ipv4", hide = true)]
    ipv4: bool,
    /// Accepted for curl's command lines (see --ipv4).
    #[arg(short = '6', long = "ipv6", hide = true)]
    ipv6: bool,
    /// Accepted for curl's command lines: Basic is the only scheme -u sends.
    #[arg(long = "basic", hide = true)]
    basic: bool,
    /// Accepted for curl's command lines: TCP_NODELAY is always on.
    #[arg(long = "tcp-nodelay", hide = true)]
    tcp_nodelay: bool,
    /// Accepted for curl's command lines.
    #[arg(long = "keepalive-time", value_name = "SECS", hide = true)]
    keepalive_time: Option<u64>,
    /// Accepted for curl's command lines: the transfers run one after another.
    #[arg(short = 'Z', long = "parallel", hide = true)]
    parallel: bool,
    /// Accepted for curl's command lines (see --parallel).
    #[arg(long = "parallel-max", value_name = "N", hide = true)]
    parallel_max: Option<u32>,
    /// Accepted for curl's command lines (see --parallel).
    #[arg(long = "parallel-immediate", hide = true)]
    parallel_immediate: bool,
}

/// Which command runs: `get` always sends GET unless -X says otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Get,
    Request,
}

/// Where requests go.
#[derive(Debug, Clone)]
enum Route {
    /// Every request goes to this pipe or socket, whatever the URL's host
    /// (curl's --unix-socket; our --pipe and pipe/unix targets).
    Fixed(Endpoint),
    /// TCP to the URL's host and port.
    Tcp,
}

/// The parsed command line, shared by every transfer of the run.
pub(crate) struct Options {
    args: RequestArgs,
    spec: RequestSpec,
    client: Client,
    jar: Option<cookies::Jar>,
    /// -b NAME=VALUE strings, sent as they are.
    cookie_strings: Vec<String>,
    write_out: Option<String>,
    /// --limit-rate, in bytes per second.
    limit_rate: Option<u64>,
    /// -z: the If-Modified-Since (or If-Unmodified-Since) header.
    time_cond: Option<(String, String)>,
    /// -z's time, and whether it asks for an older document.
    time_cond_at: Option<(std::time::SystemTime, bool)>,
    show_errors: bool,
    show_progress: bool,
    max_time: Option<Duration>,
    /// -C: where the current transfer starts (0: at the beginning).
    resume_from: u64,
    /// The current attempt's connections and their request heads' sizes:
    /// what they wrote past the head is %{size_upload}.
    uploads: std::sync::Mutex<Vec<transfer::Upload>>,
}

pub async fn run(args: RequestArgs, verb: Verb) -> ExitCode {
    crate::logging::init("warn", crate::logging::Sink::Stderr);
    let show_errors = !args.silent || args.show_error;
    match prepare(args, verb).await {
        Ok((options, urls)) => transfer::run_all(options, urls).await,
        Err(f) if show_errors => f.report(),
        Err(f) => ExitCode::from(f.code),
    }
}

async fn prepare(args: RequestArgs, verb: Verb) -> Result<(Options, Vec<String>), Failure> {
    let mut spec = RequestSpec::new(&args.message).await?;
    if verb == Verb::Get && spec.custom_method.is_none() && spec.kind != spec::Kind::Head {
        // `get` keeps its promise even with a body.
        spec.custom_method = Some("GET".into());
    }
    if args.continue_at.is_some() && args.message.upload_file.is_some() {
        return Err(Failure::usage(
            "-C continues downloads only: an upload (-T) cannot be resumed here",
        ));
    }
    if let Some(file) = &args.etag_compare {
        // As curl (src/tool_operate.c): the file's lines joined, `""` when
        // there is no file but --etag-save will make one.
        let etag = match std::fs::read(file) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).replace(['\r', '\n'], ""),
            Err(_) if args.etag_save.is_some() => "\"\"".to_owned(),
            Err(e) => {
                return Err(Failure::new(
                    exit::READ_ERROR,
                    format!("Failed to open {file}: {e}"),
                ));
            }
        };
        let etag = if etag.is_empty() {
            "\"\"".to_owned()
        } else {
            etag
        };
        spec.edits
            .push(spec::HeaderEdit::Set("If-None-Match".into(), etag));
    }
    let urls: Vec<String> = args.urls.iter().chain(&args.url_flags).cloned().collect();
    if urls.is_empty() {
        return Err(Failure::usage(
            "no URL given: pipehttp request [OPTIONS] URL",
        ));
    }

    let connect_timeout = spec::seconds(
        "--connect-timeout",
        args.connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT),
    )?;
    let max_time = args
        .max_time
        .map(|t| spec::seconds("--max-time", t))
        .transpose()?;
    let mut builder = Client::builder().connect_timeout(connect_timeout);
    if args.current_user_only {
        builder = builder.current_user_only(true);
    }
    for user in &args.allow_server_users {
        builder = builder.allow_server_user(user);
    }
    if args.http2_prior_knowledge {
        builder = builder.http2_prior_knowledge();
    } else if args.http1_1 || args.http1_0 {
        builder = builder.http1_only();
    }
    if let Some(path) = &args.cacert {
        let pem = std::fs::read(path).map_err(|e| {
            Failure::new(
                exit::SSL_CACERT_BADFILE,
                format!("cannot read the CA file {}: {e}", path.display()),
            )
        })?;
        builder = builder.add_root_certificate_pem(pem);
    }
    if let Some(cert) = &args.cert {
        let read = |path: &PathBuf| {
            std::fs::read(path).map_err(|e| {
                Failure::new(
                    exit::SSL_CERTPROBLEM,
                    format!("cannot read the client certificate {}: {e}", path.display()),
                )
            })
        };
        let cert_pem = read(cert)?;
        let key_pem = match &args.key {
            Some(key) => read(key)?,
            None => cert_pem.clone(),
        };
        builder = builder.identity_pem(cert_pem, key_pem);
    }
    if args.insecure {
        builder = builder.danger_accept_invalid_certs(true);
    }

    let mut jar = None;
    let mut cookie_strings = Vec::new();
    for cookie in &args.cookie {
        if cookie.contains('=') {
            cookie_strings.push(cookie.clone());
        } else {
            let jar = jar.get_or_insert_with(cookies::Jar::default);
            if !cookie.is_empty() {
                jar.load(cookie, args.junk_session_cookies);
            }
        }
    }
    if args.cookie_jar.is_some() && jar.is_none() {
        jar = Some(cookies::Jar::default());
    }

    let write_out = match &args.write_out {
        Some(format) => match format.strip_prefix('@') {
            // curl warns about a -w file it cannot read and writes nothing.
            Some(source) => match spec::read_source(source).await {
                Ok(bytes) => Some(String::from_utf8_lossy(&bytes).into_owned()),
                Err(f) => {
                    eprintln!("Warning: {}", f.message);
                    None
                }
            },
            None => Some(format.clone()),
        },
        None => None,
    };
    let limit_rate = args.limit_rate.as_deref().map(parse_rate).transpose()?;
    let time_cond = args.time_cond.as_deref().and_then(time_condition);
    let time_cond_at = time_cond.as_ref().and_then(|(name, value)| {
        let at = httpdate::parse_http_date(value).ok()?;
        Some((at, name == "If-Unmodified-Since"))
    });
    let options = Options {
        limit_rate,
        time_cond,
        time_cond_at,
        show_errors: !args.silent || args.show_error,
        show_progress: !args.silent && !args.no_progress_meter,
        client: builder.build(),
        spec,
        jar,
        cookie_strings,
        write_out,
        max_time,
        resume_from: 0,
        uploads: std::sync::Mutex::default(),
        args,
    };
    Ok((options, urls))
}

/// --limit-rate's speed: bytes per second, with curl's k, m and g suffixes.
fn parse_rate(text: &str) -> Result<u64, Failure> {
    let bad = || {
        Failure::usage(format!(
            "--limit-rate takes bytes per second such as 200k or 1m, not '{text}'"
        ))
    };
    let (digits, unit) = match text.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&text[..i], c.to_ascii_lowercase()),
        _ => (text, 'b'),
    };
    let factor: f64 = match unit {
        'b' => 1.0,
        'k' => 1024.0,
        'm' => 1024.0 * 1024.0,
        'g' => 1024.0 * 1024.0 * 1024.0,
        _ => return Err(bad()),
    };
    let value: f64 = digits.parse().map_err(|_| bad())?;
    let rate = (value * factor) as u64;
    if rate == 0 { Err(bad()) } else { Ok(rate) }
}

/// -z's header: `DATE` (an HTTP date) or a file whose time is used, with
/// a leading '-' for If-Unmodified-Since. Anything else is warned about and
/// dropped, as curl does.
fn time_condition(arg: &str) -> Option<(String, String)> {
    let (name, text) = match arg.strip_prefix('-') {
        Some(rest) => ("If-Unmodified-Since", rest),
        None => ("If-Modified-Since", arg.strip_prefix('+').unwrap_or(arg)),
    };
    let time = match httpdate::parse_http_date(text) {
        Ok(time) => time,
        Err(_) => match std::fs::metadata(text).and_then(|m| m.modified()) {
            Ok(time) => time,
            Err(_) => {
                eprintln!(
                    "Warning: Illegal date format for -z, --time-cond (and not a file name). \
                     Disabling time condition. See curl_getdate(3) for valid date syntax."
                );
                return None;
            }
        },
    };
    Some((name.to_owned(), httpdate::fmt_http_date(time)))
}

/// A URL the way the transfer sees it: where it connects, and the URL
/// itself (pipe and unix targets become `http://localhost/PATH`).
#[derive(Debug, Clone)]
pub(crate) struct Target {
    route: Route,
    /// Set when the URL was given as a pipe or unix target: `-w`'s
    /// %{url_effective} shows it in that form.
    target_form: bool,
    /// With --path-as-is, the path as typed.
    raw_path: Option<String>,
}

impl Options {
    /// The route and the URL for a URL as given on the command line.
    fn target(&self, input: &str) -> Result<(Target, Url), Failure> {
        let malformed = |why: String| Failure::new(exit::URL_MALFORMAT, why);
        if let Some(c) = input.chars().find(|c| c.is_whitespace() || c.is_control()) {
            return Err(malformed(format!(
                "the URL '{input}' contains {c:?}: percent-encode it"
            )));
        }
        let text = if input.contains("://") {
            input.to_owned()
        } else {
            format!("http://{input}")
        };
        let scheme_end = text.find("://").unwrap_or(0);
        let scheme = text[..scheme_end].to_ascii_lowercase();
        if scheme != "http" && scheme != "https" {
            return Err(Failure::new(
                exit::UNSUPPORTED_PROTOCOL,
                format!("'{scheme}' is not a protocol pipehttp speaks: use http:// or https://"),
            ));
        }
        let rest = &text[scheme_end + 3..];
        if rest.starts_with("pipe:") || rest.starts_with("unix:") {
            if self.args.pipe.is_some() || self.args.unix_socket.is_some() {
                return Err(Failure::usage(
                    "--pipe and --unix-socket take an ordinary URL such as http://localhost/test",
                ));
            }
            let target: RequestTarget = text.parse().map_err(|e| malformed(format!("{e}")))?;
            let url = Url::parse(&format!("{scheme}://localhost{}", target.path_and_query()))
                .map_err(|e| malformed(format!("the URL '{input}' is malformed: {e}")))?;
            return Ok((
                Target {
                    route: Route::Fixed(target.endpoint().clone()),
                    target_form: true,
                    raw_path: None,
                },
                url,
            ));
        }
        let url = Url::parse(&text)
            .map_err(|e| malformed(format!("the URL '{input}' is malformed: {e}")))?;
        if url.host_str().is_none_or(str::is_empty) {
            return Err(malformed(format!("the URL '{input}' has no host")));
        }
        let route = if let Some(name) = &self.args.pipe {
            Route::Fixed(Endpoint::Pipe(
                PipeName::new(name).map_err(|e| Failure::usage(e.to_string()))?,
            ))
        } else if let Some(path) = &self.args.unix_socket {
            Route::Fixed(Endpoint::Unix(path.clone()))
        } else if let Some(name) = &self.args.abstract_unix_socket {
            if !cfg!(any(target_os = "linux", target_os = "android")) {
                return Err(Failure::usage("--abstract-unix-socket is Linux only"));
            }
            // A path that starts with NUL is the abstract namespace.
            Route::Fixed(Endpoint::Unix(PathBuf::from(format!("\0{name}"))))
        } else {
            Route::Tcp
        };
        let raw_path = self.args.path_as_is.then(|| raw_path(&text)).flatten();
        Ok((
            Target {
                route,
                target_form: false,
                raw_path,
            },
            url,
        ))
    }
}

/// The path of `scheme://authority/path?query` as typed, if it has one.
fn raw_path(url: &str) -> Option<String> {
    let rest = &url[url.find("://")? + 3..];
    let rest = &rest[rest.find(['/', '?', '#'])?..];
    if !rest.starts_with('/') {
        return None;
    }
    let end = rest.find(['?', '#']).unwrap_or(rest.len());
    Some(rest[..end].to_owned())
}

impl Target {
    /// The URL as -w's %{url_effective} shows it.
    fn display(&self, url: &Url) -> String {
        match (&self.route, self.target_form) {
            (Route::Fixed(endpoint), true) => {
                let scheme = if url.scheme() == "https" {
                    Scheme::Https
                } else {
                    Scheme::Http
                };
                let mut path = url.path().to_owned();
                if let Some(q) = url.query() {
                    path.push('?');
                    path.push_str(q);
                }
                RequestTarget::new(scheme, endpoint.clone(), &path)
                    .map_or_else(|_| url.to_string(), |t| t.to_string())
            }
            _ => url.to_string(),
        }
    }

    /// The endpoint a request to `url` connects to.
    fn endpoint(&self, url: &Url) -> Result<Endpoint, Failure> {
        match &self.route {
            Route::Fixed(endpoint) => Ok(endpoint.clone()),
            Route::Tcp => {
                let port = url.port_or_known_default().unwrap_or(80);
                let host = match url.host() {
                    Some(url::Host::Ipv4(ip)) => pipehttp::address::Host::Ip(ip.into()),
                    Some(url::Host::Ipv6(ip)) => pipehttp::address::Host::Ip(ip.into()),
                    Some(url::Host::Domain(d)) if d.eq_ignore_ascii_case("localhost") => {
                        pipehttp::address::Host::Localhost
                    }
                    Some(url::Host::Domain(d)) => pipehttp::address::Host::Name(d.to_owned()),
                    None => {
                        return Err(Failure::new(
                            exit::URL_MALFORMAT,
                            format!("{url} has no host"),
                        ));
                    }
                };
                Ok(Endpoint::Tcp { host, port })
            }
        }
    }

    /// Whether a missing server is waited for: only for pipe names, whose
    /// servers restart in place; curl's own habit, failing at once, for the rest.
    fn waits_for_server(&self) -> bool {
        matches!(self.route, Route::Fixed(Endpoint::Pipe(_)))
    }
}
