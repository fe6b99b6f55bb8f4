//! `pipehttp proxy --listen LIST --to TARGET`: an HTTP reverse proxy from
//! any listen addresses to one target, built from the library's server and
//! client. The server side is a `pipehttp::Server`, so the proxy has its
//! limits, peer checks, takeover and graceful stop; the target is reached
//! through `pipehttp::client::Connector` with hyper-util's pooled client.

pub(crate) mod headers;
mod service;
mod tunnel;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use clap::Args;
use pipehttp::address::{ListenAddress, RequestTarget, Scheme};
use pipehttp::client::Connector;
use pipehttp::config::EndpointConfig;
use pipehttp::options::Limits;
use pipehttp::{Config, ServerBuilder};
use tokio::time::Instant;

use self::service::{Proxy, Route, Upstream};
use self::tunnel::Tunnels;
use crate::logging::{Sink, Verbosity};
use crate::server_flags::ServerFlags;

/// How long the target may take to send a response head unless
/// `--upstream-timeout` says otherwise: nginx's `proxy_read_timeout`.
const DEFAULT_UPSTREAM_TIMEOUT: Duration = Duration::from_secs(60);

/// How long an unused pooled connection to the target is kept.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

#[derive(Debug, Args)]
pub struct ProxyArgs {
    /// Addresses to listen on, separated by ';': http(s)://pipe:/NAME, http(s)://unix:/PATH, http(s)://HOST:PORT.
    #[arg(long, value_name = "LIST", value_parser = parse_listen)]
    listen: ListenList,

    /// Where requests go: http(s)://pipe:/NAME, http(s)://unix:/PATH or http(s)://HOST:PORT.
    #[arg(long, value_name = "TARGET", value_parser = parse_target)]
    to: RequestTarget,

    /// Speak HTTP/2 to a cleartext target from the first byte (prior
    /// knowledge); https targets choose by ALPN. Default: HTTP/1.1.
    #[arg(long)]
    to_http2: bool,

    /// Pass the client's Host on (default: the target's own, localhost for
    /// pipes and sockets, HOST:PORT for TCP).
    #[arg(long)]
    preserve_host: bool,

    /// Seconds to wait for the target to exist and accept, so a restarting
    /// target loses no request.
    #[arg(long, value_name = "SECS", default_value = "5", value_parser = parse_duration)]
    connect_timeout: Duration,

    /// Seconds the target may take to send a response head before the
    /// client gets 504; 'none' waits for ever. Bodies may stream for as
    /// long as they last. [default: 60]
    #[arg(long, value_name = "SECS|none", value_parser = parse_timeout)]
    upstream_timeout: Option<Timeout>,

    /// Trust the CA certificate(s) in this PEM file for an https target.
    #[arg(long, value_name = "FILE")]
    to_cacert: Option<PathBuf>,

    /// Accept any certificate from an https target (development only).
    #[arg(long)]
    to_insecure: bool,

    /// Refuse a Unix socket target that runs as another user, as a pipe
    /// name's is refused by default (unless --allow-server-user names it).
    #[arg(long)]
    to_current_user_only: bool,

    /// Accept a pipe target whose server runs as this user (a name or a
    /// uid; Windows: an account): by default only this user's and root's
    /// are, so a process of another user that took the name first gets
    /// nothing. Repeatable.
    #[arg(long = "allow-server-user", value_name = "USER")]
    allow_server_users: Vec<String>,

    /// Threads that serve requests [default: one per core]. With 1 the
    /// proxy runs on one thread, as an nginx worker does: less CPU per
    /// request, at most one core's worth of requests.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    threads: Option<u16>,

    #[command(flatten)]
    server: ServerFlags,

    #[command(flatten)]
    verbosity: Verbosity,
}

impl ProxyArgs {
    /// `--threads`, for the runtime the proxy runs on.
    pub fn threads(&self) -> Option<usize> {
        self.threads.map(usize::from)
    }
}

#[derive(Debug, Clone)]
struct ListenList(Vec<ListenAddress>);

/// A timeout that may be switched off; a newtype because clap reads
/// `Option<Option<T>>` as a flag whose value is optional.
#[derive(Debug, Clone, Copy)]
struct Timeout(Option<Duration>);

pub async fn run(args: ProxyArgs) -> ExitCode {
    // -v is the access log, one line per request; -vv adds debug output.
    let access_log = args.verbosity.init_with_own_v(Sink::Stdout);
    match proxy(args, access_log).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("pipehttp: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn proxy(args: ProxyArgs, access_log: bool) -> Result<(), String> {
    let describe = |e: pipehttp::Error| crate::errors::describe(&e);
    let upstream = upstream(&args)?;
    let mut config = Config::load(args.server.config.as_deref()).map_err(describe)?;
    // A proxy passes bodies on as they stream, in constant memory, so
    // unlike an app it has no body size limit unless one is asked for.
    // The configuration does not say whether a value was set, so a file
    // that sets exactly Kestrel's default is read as not setting it.
    let limits = &mut config.options.limits;
    if limits.max_request_body_size == Limits::default().max_request_body_size {
        limits.max_request_body_size = None;
    }
    args.server.apply(&mut config);
    config.endpoints = args
        .listen
        .0
        .into_iter()
        .enumerate()
        .map(|(i, address)| EndpointConfig::new(format!("listen-{}", i + 1), address))
        .collect();
    let grace = config.options.shutdown_timeout;
    let builder = args.server.builder(&config);
    serve(builder, upstream, grace, access_log)
        .await
        .map_err(describe)
}

/// The pooled client and everything else needed to reach the target.
fn upstream(args: &ProxyArgs) -> Result<Upstream, String> {
    let describe = |e: pipehttp::Error| crate::errors::describe(&e);
    let target = args.to.listen_address().clone();
    let https = target.scheme() == Scheme::Https;
    let mut connector = Connector::new(target.clone())
        .map_err(describe)?
        .connect_timeout(args.connect_timeout);
    // Only the flag changes the check: without it a pipe name's server must
    // be this user's (the client's default), a socket path's may be anyone's.
    if args.to_current_user_only {
        connector = connector.current_user_only(true);
    }
    for user in &args.allow_server_users {
        connector = connector.allow_server_user(user);
    }
    if args.to_cacert.is_some() || args.to_insecure {
        if !https {
            return Err(format!(
                "{target} is not https: --to-cacert and --to-insecure apply to https targets only"
            ));
        }
        let mut roots = Vec::new();
        if let Some(path) = &args.to_cacert {
            let pem = std::fs::read(path)
                .map_err(|e| format!("cannot read the CA file {}: {e}", path.display()))?;
            roots.push(pem);
        }
        if args.to_insecure {
            eprintln!(
                "pipehttp: WARNING: --to-insecure accepts any certificate from {target}; whoever holds the name can read and change this traffic"
            );
        }
        connector = connector
            .tls_trust(roots, args.to_insecure)
            .map_err(describe)?;
    }
    let route = Route {
        pool: pipehttp::client::Pool::new(connector)
            .idle_timeout(POOL_IDLE_TIMEOUT)
            .http2_only(args.to_http2),
        scheme: if https {
            http::uri::Scheme::HTTPS
        } else {
            http::uri::Scheme::HTTP
        },
    };
    let host = args.to.host_header();
    let invalid = || format!("{target}: the host is not a valid authority");
    let authority = host.parse().map_err(|_| invalid())?;
    let host = http::HeaderValue::from_str(&host).map_err(|_| invalid())?;
    Ok(Upstream {
        route,
        name: target.to_string(),
        authority,
        host,
        preserve_host: args.preserve_host,
        timeout: args
            .upstream_timeout
            .map_or(Some(DEFAULT_UPSTREAM_TIMEOUT), |t| t.0),
    })
}

/// Binds `builder`'s addresses and proxies to `upstream` (with one log
/// line per request if `access_log`) until Ctrl-C,
/// SIGTERM or a successor's takeover; then, like any pipehttp server, it
/// stops accepting and lets requests finish, and gives upgraded
/// connections what is left of `grace` from the stop.
pub(crate) async fn serve(
    builder: ServerBuilder,
    upstream: Upstream,
    grace: Duration,
    access_log: bool,
) -> pipehttp::Result<()> {
    let server = builder.bind().await?;
    let schemes: Vec<Scheme> = server
        .local_addresses()
        .iter()
        .map(|bound| bound.address.scheme())
        .collect();
    // With HTTP/1 a request does not say whether it came over TLS; the
    // listen addresses do when they all agree.
    let proto = match schemes.split_first() {
        Some((first, rest)) if rest.iter().all(|s| s == first) => Some(first.as_str()),
        _ => None,
    };
    let tunnels = Tunnels::new();
    let proxy = Proxy::new(upstream, proto, access_log, tunnels.guard());
    let stop = pipehttp::transport::stop_signal();
    let stopped_at = Arc::new(OnceLock::new());
    let stopped = stopped_at.clone();
    server
        .serve_with_shutdown(proxy, async move {
            stop.await;
            let _ = stopped.set(Instant::now());
        })
        .await?;
    let from = stopped_at.get().copied().unwrap_or_else(Instant::now);
    let left = tunnels.drain(from + grace).await;
    if left > 0 {
        tracing::warn!("{left} upgraded connection(s) still open after {grace:?}; closing them");
    }
    Ok(())
}

fn parse_listen(text: &str) -> Result<ListenList, String> {
    ListenAddress::parse_list(text)
        .map(ListenList)
        .map_err(|e| e.to_string())
}

fn parse_target(text: &str) -> Result<RequestTarget, String> {
    let target: RequestTarget = text
        .parse()
        .map_err(|e: pipehttp::address::AddressError| e.to_string())?;
    if target.path_and_query() != "/" {
        return Err(format!(
            "'{text}' has a path ('{}'); the proxy passes each request's own path on, so give the target without one",
            target.path_and_query()
        ));
    }
    Ok(target)
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    text.parse::<f64>()
        .ok()
        .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
        .ok_or_else(|| format!("'{text}' is not a number of seconds"))
}

fn parse_timeout(text: &str) -> Result<Timeout, String> {
    if text.eq_ignore_ascii_case("none") {
        return Ok(Timeout(None));
    }
    match parse_duration(text)? {
        d if d.is_zero() => {
            Err("a timeout of 0 would fail every request; use 'none' for no timeout".into())
        }
        d => Ok(Timeout(Some(d))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_target_takes_no_path() {
        assert!(parse_target("http://pipe:/agent").is_ok());
        assert!(parse_target("http://unix:/run/docker.sock").is_ok());
        assert!(parse_target("https://backend.example:8443").is_ok());
        let err = parse_target("http://127.0.0.1:8080/api").unwrap_err();
        assert!(err.contains("has a path ('/api')"), "{err}");
    }

    #[test]
    fn timeouts_are_seconds_or_none() {
        assert_eq!(
            parse_timeout("1.5").unwrap().0,
            Some(Duration::from_millis(1500))
        );
        assert_eq!(parse_timeout("none").unwrap().0, None);
        assert!(parse_timeout("0").is_err());
        assert!(parse_duration("soon").is_err());
    }
}
