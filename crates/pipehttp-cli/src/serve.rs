//! `pipehttp serve`: the sample app on the configured endpoints.
//!
//! Where the endpoints come from, highest first: `--urls`, `PIPEHTTP_URLS`,
//! the config file, `http://pipe:/my-test-pipe`. Options: flags, then the
//! config file, then Kestrel's defaults.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use pipehttp::address::ListenAddress;
use pipehttp::config::{CertificateConfig, EndpointConfig};
use pipehttp::transport::Listener;
use pipehttp::{Config, Server};
use pipehttp_cli::sample::SampleApp;

use crate::logging::{Sink, Verbosity};

/// Where the demo app listens when nothing says otherwise.
const DEFAULT_URL: &str = "http://pipe:/my-test-pipe";

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Addresses to listen on, separated by ';' (beats PIPEHTTP_URLS and the config file).
    #[arg(long, value_name = "LIST", value_parser = parse_urls)]
    urls: Option<Urls>,

    /// Config file: *.toml, or *.json in ASP.NET Core's appsettings shape.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,

    /// Largest request body; 413 past it [default: 30000000].
    #[arg(long, value_name = "BYTES|unlimited", value_parser = parse_or_unlimited::<u64>)]
    max_request_body_size: Option<OrUnlimited<u64>>,

    /// Largest request head; 431 past it [default: 32768].
    #[arg(long, value_name = "BYTES")]
    max_request_headers_total_size: Option<usize>,

    /// How long a client may take to send a request head [default: 30].
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    request_headers_timeout: Option<Duration>,

    /// How long an idle connection stays open [default: 130].
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    keep_alive_timeout: Option<Duration>,

    /// Most connections served at once [default: unlimited].
    #[arg(long, value_name = "N|unlimited", value_parser = parse_or_unlimited::<usize>)]
    max_concurrent_connections: Option<OrUnlimited<usize>>,

    /// Bytes read from a connection and not yet consumed before reading pauses [default: 1048576].
    #[arg(long, value_name = "BYTES")]
    max_read_buffer_size: Option<usize>,

    /// Bytes queued for a connection before the handler is held back [default: 65536].
    #[arg(long, value_name = "BYTES")]
    max_write_buffer_size: Option<usize>,

    /// Windows: pipe instances waiting for clients at once [default: min(cores, 16)].
    #[arg(long, value_name = "N")]
    listener_queue_count: Option<usize>,

    /// Only this user may connect [default: true].
    #[arg(long, value_name = "true|false", action = clap::ArgAction::Set)]
    current_user_only: Option<bool>,

    /// Unix: the socket file's mode, in octal; needs --current-user-only false.
    #[arg(long, value_name = "OCTAL", value_parser = parse_mode)]
    mode: Option<u32>,

    /// Also admit this user: a name or uid (Windows: an account or SID); repeatable, replaces the config file's list.
    #[arg(long = "allow-user", value_name = "USER")]
    allow_users: Vec<String>,

    /// Also admit this group's members: a name or gid (Windows: an account or SID); repeatable, replaces the config file's list. Unix: one group makes the socket that group's, mode 0660.
    #[arg(long = "allow-group", value_name = "GROUP")]
    allow_groups: Vec<String>,

    /// Windows: every pipe instance's exact security descriptor, in SDDL (Kestrel's PipeSecurity).
    #[arg(long, value_name = "SDDL")]
    pipe_sddl: Option<String>,

    /// Certificate chain (PEM) for https endpoints that have none of their own.
    #[arg(long, value_name = "FILE", requires = "key")]
    cert: Option<PathBuf>,

    /// Private key (PEM) of --cert.
    #[arg(long, value_name = "FILE", requires = "cert")]
    key: Option<PathBuf>,

    /// Take the names over from a running server of this user instead of
    /// failing with "already in use"; it stops accepting, finishes its
    /// requests and exits.
    #[arg(long)]
    takeover: bool,

    /// How long requests in flight may run on after Ctrl-C or SIGTERM [default: 30].
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    shutdown_timeout: Option<Duration>,

    #[command(flatten)]
    verbosity: Verbosity,
}

#[derive(Debug, Clone)]
struct Urls(Vec<ListenAddress>);

/// A limit that may be switched off; a newtype because clap reads
/// `Option<Option<T>>` as a flag whose value is optional.
#[derive(Debug, Clone, Copy)]
struct OrUnlimited<T>(Option<T>);

pub async fn run(args: ServeArgs) -> ExitCode {
    args.verbosity.init(Sink::Stdout);
    match serve(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pipehttp: {}", crate::errors::describe(&e));
            ExitCode::FAILURE
        }
    }
}

async fn serve(args: ServeArgs) -> pipehttp::Result<()> {
    let mut config = Config::load(args.config.as_deref())?;
    if let Some(Urls(urls)) = args.urls {
        config.endpoints = urls
            .into_iter()
            .enumerate()
            .map(|(i, url)| EndpointConfig::new(format!("urls-{}", i + 1), url))
            .collect();
    }
    // A service manager's sockets stand in for the default address.
    let activated = Listener::from_systemd()?;
    if config.endpoints.is_empty() && activated.is_empty() {
        config
            .endpoints
            .push(EndpointConfig::new("default", DEFAULT_URL.parse()?));
    }
    if let (Some(cert), Some(key)) = (args.cert, args.key) {
        config.default_certificate = Some(CertificateConfig::new(cert, key));
    }

    let limits = &mut config.limits;
    set(
        &mut limits.max_request_body_size,
        args.max_request_body_size.map(|v| v.0),
    );
    set(
        &mut limits.max_request_headers_total_size,
        args.max_request_headers_total_size,
    );
    set(
        &mut limits.request_headers_timeout,
        args.request_headers_timeout,
    );
    set(&mut limits.keep_alive_timeout, args.keep_alive_timeout);
    set(
        &mut limits.max_concurrent_connections,
        args.max_concurrent_connections.map(|v| v.0),
    );
    let pipes = &mut config.pipes;
    set(&mut pipes.max_read_buffer_size, args.max_read_buffer_size);
    set(&mut pipes.max_write_buffer_size, args.max_write_buffer_size);
    set(&mut pipes.listener_queue_count, args.listener_queue_count);
    set(&mut pipes.current_user_only, args.current_user_only);
    set(&mut pipes.mode, args.mode.map(Some));
    if !args.allow_users.is_empty() {
        pipes.allow_users = args.allow_users;
    }
    if !args.allow_groups.is_empty() {
        pipes.allow_groups = args.allow_groups;
    }
    set(&mut pipes.pipe_sddl, args.pipe_sddl.map(Some));

    let mut builder = Server::builder().config(&config).takeover(args.takeover);
    for listener in activated {
        builder = builder.listener(listener);
    }
    if let Some(timeout) = args.shutdown_timeout {
        builder = builder.shutdown_timeout(timeout);
    }
    builder.bind().await?.serve(SampleApp::new()).await
}

fn set<T>(slot: &mut T, flag: Option<T>) {
    if let Some(value) = flag {
        *slot = value;
    }
}

fn parse_urls(text: &str) -> Result<Urls, String> {
    ListenAddress::parse_list(text)
        .map(Urls)
        .map_err(|e| e.to_string())
}

fn parse_or_unlimited<T: std::str::FromStr>(text: &str) -> Result<OrUnlimited<T>, String> {
    if text.eq_ignore_ascii_case("unlimited") {
        return Ok(OrUnlimited(None));
    }
    text.parse()
        .map(|n| OrUnlimited(Some(n)))
        .map_err(|_| format!("'{text}' is neither a whole number nor 'unlimited'"))
}

fn parse_secs(text: &str) -> Result<Duration, String> {
    text.parse::<f64>()
        .ok()
        .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("'{text}' is not a number of seconds greater than 0"))
}

fn parse_mode(text: &str) -> Result<u32, String> {
    let digits = text.strip_prefix("0o").unwrap_or(text);
    let octal = !digits.is_empty() && digits.bytes().all(|b| matches!(b, b'0'..=b'7'));
    octal
        .then(|| u32::from_str_radix(digits, 8).ok())
        .flatten()
        .filter(|mode| *mode <= 0o777)
        .ok_or_else(|| format!("'{text}' is not an octal permission mode such as 0660"))
}
