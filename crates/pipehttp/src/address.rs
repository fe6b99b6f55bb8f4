//! The one address grammar shared by the server, the client, the CLI and the
//! configuration.
//!
//! Listen addresses follow Kestrel:
//!
//! | form | meaning |
//! | --- | --- |
//! | `http://pipe:/NAME`, `https://pipe:/NAME` | named pipe NAME |
//! | `http://unix:/ABS/PATH` | Unix domain socket at that path |
//! | `http://HOST:PORT`, `http://[::1]:PORT`, `http://*:PORT` | TCP; port 0 picks a free port |
//!
//! Request targets are a listen address, then `:`, then the request path:
//! `http://pipe:/my-test-pipe:/test?x=1`. Ordinary `http(s)://host:port/path`
//! URLs are TCP targets.
//!
//! ```
//! use pipehttp::address::{ListenAddress, RequestTarget, Endpoint};
//!
//! let listen: ListenAddress = "http://pipe:/my-test-pipe".parse()?;
//! assert_eq!(listen.to_string(), "http://pipe:/my-test-pipe");
//!
//! let target: RequestTarget = "http://pipe:/my-test-pipe:/test?x=1".parse()?;
//! assert_eq!(target.path_and_query(), "/test?x=1");
//! assert!(matches!(target.endpoint(), Endpoint::Pipe(name) if name.as_str() == "my-test-pipe"));
//! # Ok::<(), pipehttp::address::AddressError>(())
//! ```

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::transport::pipe_endpoint;

/// The forms an address may take, quoted in every parse error so the reader
/// sees what would have been accepted.
const LISTEN_FORMS: &str =
    "expected http(s)://pipe:/NAME, http(s)://unix:/ABS/PATH or http(s)://HOST:PORT";
const TARGET_FORMS: &str = "expected http(s)://pipe:/NAME[:/PATH], \
     http(s)://unix:/ABS/PATH[:/PATH] or http(s)://HOST[:PORT]/PATH";

/// Longest pipe name Windows accepts after `\\.\pipe\`.
pub const MAX_PIPE_NAME_LEN: usize = 256;

/// An address that could not be parsed. Its message quotes the input, says
/// what is wrong and lists the accepted forms.
///
/// ```
/// let err = "http://pipe:/".parse::<pipehttp::address::ListenAddress>().unwrap_err();
/// assert!(err.to_string().contains("pipe name is empty"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid address '{input}': {reason}; {forms}")]
pub struct AddressError {
    input: String,
    reason: String,
    forms: &'static str,
}

impl AddressError {
    fn listen(input: &str, reason: impl Into<String>) -> Self {
        Self {
            input: input.to_owned(),
            reason: reason.into(),
            forms: LISTEN_FORMS,
        }
    }

    fn target(input: &str, reason: impl Into<String>) -> Self {
        Self {
            input: input.to_owned(),
            reason: reason.into(),
            forms: TARGET_FORMS,
        }
    }

    /// The text that failed to parse.
    #[must_use]
    pub fn input(&self) -> &str {
        &self.input
    }

    /// What is wrong with it, without the list of accepted forms.
    #[must_use]
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

/// `http` or `https`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// Cleartext HTTP/1.1 and HTTP/2.
    Http,
    /// HTTP over TLS.
    Https,
}

impl Scheme {
    /// `"http"` or `"https"`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }

    fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A validated pipe name: 1 to 256 characters, no `\`, no `:`, no NUL.
///
/// ```
/// use pipehttp::address::PipeName;
/// assert!(PipeName::new("my-test-pipe").is_ok());
/// assert!(PipeName::new("bad:name").is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PipeName(String);

impl PipeName {
    /// Checks `name` against the SPEC's rules for every OS, and the Unix rule
    /// that a relative name holds no `/` (it names a file in the temp dir).
    pub fn new(name: &str) -> Result<Self, AddressError> {
        let input = format!("http://pipe:/{name}");
        Self::validate(name).map_err(|reason| AddressError::listen(&input, reason))?;
        Ok(Self(name.to_owned()))
    }

    fn validate(name: &str) -> Result<(), String> {
        if name.is_empty() {
            return Err("the pipe name is empty".into());
        }
        let len = name.chars().count();
        if len > MAX_PIPE_NAME_LEN {
            return Err(format!(
                "the pipe name is {len} characters long, the limit is {MAX_PIPE_NAME_LEN}"
            ));
        }
        if let Some(c) = name.chars().find(|c| matches!(c, '\\' | ':' | '\0')) {
            return Err(format!(
                "the pipe name contains {:?}, which no pipe name may hold",
                c
            ));
        }
        if let Some(c) = name.chars().find(|c| c.is_control()) {
            return Err(format!(
                "the pipe name contains the control character {c:?}"
            ));
        }
        if !name.starts_with('/') && name.contains('/') {
            return Err(
                "a pipe name holds no '/' unless it is an absolute socket path starting with '/'"
                    .into(),
            );
        }
        Ok(())
    }

    /// The name as given.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PipeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The host part of a TCP address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    /// `*` (or `+`): every interface.
    Any,
    /// `localhost`: the IPv4 and IPv6 loopback addresses.
    Localhost,
    /// A literal IP address.
    Ip(IpAddr),
    /// A DNS name (request targets only; a server does not bind names).
    Name(String),
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Any => f.write_str("*"),
            Host::Localhost => f.write_str("localhost"),
            Host::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]"),
            Host::Ip(IpAddr::V4(ip)) => write!(f, "{ip}"),
            Host::Name(name) => f.write_str(name),
        }
    }
}

/// Where a connection goes: a named pipe, a Unix socket path or a TCP port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// A named pipe; see [`pipe_endpoint`] for where it lives on this OS.
    Pipe(PipeName),
    /// A Unix domain socket at an absolute path.
    Unix(PathBuf),
    /// A TCP host and port.
    Tcp {
        /// The host.
        host: Host,
        /// The port; 0 asks the OS for a free one when listening.
        port: u16,
    },
}

impl Endpoint {
    /// The socket file or pipe path this endpoint opens, for messages; `None`
    /// for TCP.
    #[must_use]
    pub fn path(&self) -> Option<PathBuf> {
        match self {
            Endpoint::Pipe(name) => Some(pipe_endpoint(name)),
            Endpoint::Unix(path) => Some(path.clone()),
            Endpoint::Tcp { .. } => None,
        }
    }

    fn fmt_with_scheme(&self, scheme: Scheme, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Pipe(name) => write!(f, "{scheme}://pipe:/{name}"),
            Endpoint::Unix(path) => write!(f, "{scheme}://unix:{}", path.display()),
            Endpoint::Tcp { host, port } => write!(f, "{scheme}://{host}:{port}"),
        }
    }
}

/// `pipe 'NAME'`, `unix socket /run/a.sock` or `tcp 127.0.0.1:80`: how
/// messages name an endpoint. (Errors add a pipe's path, which
/// [`pipe_endpoint`] gives.)
impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Pipe(name) => write!(f, "pipe '{name}'"),
            Endpoint::Unix(path) => write!(f, "unix socket {}", path.display()),
            Endpoint::Tcp { host, port } => write!(f, "tcp {host}:{port}"),
        }
    }
}

/// An address a server listens on, in Kestrel's form.
///
/// ```
/// use pipehttp::address::ListenAddress;
/// for canonical in ["http://pipe:/agent", "https://unix:/run/app.sock", "http://[::1]:8080", "http://*:0"] {
///     assert_eq!(canonical.parse::<ListenAddress>()?.to_string(), canonical);
/// }
/// # Ok::<(), pipehttp::address::AddressError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ListenAddress {
    scheme: Scheme,
    endpoint: Endpoint,
}

impl ListenAddress {
    /// An address from its parts.
    #[must_use]
    pub fn new(scheme: Scheme, endpoint: Endpoint) -> Self {
        Self { scheme, endpoint }
    }

    /// Parses a `;`-separated list, as `ASPNETCORE_URLS` and `PIPEHTTP_URLS`
    /// hold it. Empty entries are skipped; an empty list is an error.
    ///
    /// ```
    /// let list = pipehttp::address::ListenAddress::parse_list("http://pipe:/a; http://127.0.0.1:0")?;
    /// assert_eq!(list.len(), 2);
    /// # Ok::<(), pipehttp::address::AddressError>(())
    /// ```
    pub fn parse_list(list: &str) -> Result<Vec<Self>, AddressError> {
        let addresses = list
            .split(';')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::parse)
            .collect::<Result<Vec<_>, _>>()?;
        if addresses.is_empty() {
            return Err(AddressError::listen(list, "the list holds no address"));
        }
        Ok(addresses)
    }

    /// `http` or `https`.
    #[must_use]
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// Where it listens.
    #[must_use]
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// The same address with another scheme.
    #[must_use]
    pub fn with_scheme(mut self, scheme: Scheme) -> Self {
        self.scheme = scheme;
        self
    }
}

impl fmt::Display for ListenAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.endpoint.fmt_with_scheme(self.scheme, f)
    }
}

/// `rest` after `keyword` (`pipe:`, `unix:`) in any case: it stands where a
/// URL's host does, and hosts are compared without case, so `Pipe:` is
/// `pipe:` (and is written back as `pipe:`).
fn strip_keyword<'a>(rest: &'a str, keyword: &str) -> Option<&'a str> {
    rest.get(..keyword.len())
        .filter(|head| head.eq_ignore_ascii_case(keyword))
        .map(|_| &rest[keyword.len()..])
}

impl FromStr for ListenAddress {
    type Err = AddressError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let err = |reason: &str| AddressError::listen(input, reason);
        let (scheme, rest) = split_scheme(input).map_err(|r| err(&r))?;
        if let Some(name) = strip_keyword(rest, "pipe:") {
            let name = name
                .strip_prefix('/')
                .ok_or_else(|| err("a pipe address is written pipe:/NAME"))?;
            let name = PipeName::validate(name)
                .map(|()| PipeName(name.to_owned()))
                .map_err(|r| err(&r))?;
            return Ok(Self::new(scheme, Endpoint::Pipe(name)));
        }
        if let Some(path) = strip_keyword(rest, "unix:") {
            return Ok(Self::new(
                scheme,
                Endpoint::Unix(unix_path(path).map_err(|r| err(&r))?),
            ));
        }
        let authority = match rest.find('/') {
            Some(i) if rest[i..] != *"/" => {
                return Err(err(
                    "a listen address has no path; give only the scheme, host and port",
                ));
            }
            Some(i) => &rest[..i],
            None => rest,
        };
        let (host, port) = split_authority(authority, scheme).map_err(|r| err(&r))?;
        let host = match host {
            Host::Name(name) => {
                return Err(err(&format!(
                    "a server listens on an IP address, localhost or *, not on the name '{name}'"
                )));
            }
            host => host,
        };
        Ok(Self::new(scheme, Endpoint::Tcp { host, port }))
    }
}

/// What a client calls: an endpoint and the request's path and query.
///
/// ```
/// use pipehttp::address::RequestTarget;
/// let t: RequestTarget = "http://unix:/run/app.sock:/v1/items".parse()?;
/// assert_eq!(t.path_and_query(), "/v1/items");
/// assert_eq!(t.to_string(), "http://unix:/run/app.sock:/v1/items");
/// let t: RequestTarget = "http://pipe:/agent".parse()?;
/// assert_eq!(t.path_and_query(), "/");
/// # Ok::<(), pipehttp::address::AddressError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RequestTarget {
    address: ListenAddress,
    path_and_query: String,
    /// The wire URI, made once: a client sends it with every request.
    uri: http::Uri,
}

impl RequestTarget {
    /// A target from its parts. `path_and_query` gets a leading `/` if it
    /// has none; it must be a valid URI path and query.
    ///
    /// ```
    /// use pipehttp::address::{Endpoint, PipeName, RequestTarget, Scheme};
    /// let pipe = Endpoint::Pipe(PipeName::new("agent")?);
    /// let t = RequestTarget::new(Scheme::Http, pipe, "stats")?;
    /// assert_eq!(t.to_string(), "http://pipe:/agent:/stats");
    /// # Ok::<(), pipehttp::address::AddressError>(())
    /// ```
    pub fn new(
        scheme: Scheme,
        endpoint: Endpoint,
        path_and_query: &str,
    ) -> Result<Self, AddressError> {
        let path_and_query = if path_and_query.starts_with('/') {
            path_and_query.to_owned()
        } else {
            format!("/{path_and_query}")
        };
        let address = ListenAddress::new(scheme, endpoint);
        let uri_text = format!("{scheme}://{}{path_and_query}", host_header(&address));
        let err = |reason: String| {
            let shown = match address.endpoint() {
                Endpoint::Tcp { .. } => uri_text.clone(),
                _ => format!("{address}:{path_and_query}"),
            };
            AddressError::target(&shown, reason)
        };
        if let Some(c) = path_and_query
            .chars()
            .find(|c| c.is_whitespace() || c.is_control())
        {
            return Err(err(format!(
                "the request path contains {c:?}; percent-encode it"
            )));
        }
        let uri = uri_text
            .parse::<http::Uri>()
            .map_err(|e| err(format!("the request path is not a valid URI path: {e}")))?;
        Ok(Self {
            address,
            path_and_query,
            uri,
        })
    }

    /// `http` or `https`.
    #[must_use]
    pub fn scheme(&self) -> Scheme {
        self.address.scheme
    }

    /// Where the connection goes.
    #[must_use]
    pub fn endpoint(&self) -> &Endpoint {
        &self.address.endpoint
    }

    /// The request's path and query, starting with `/`.
    #[must_use]
    pub fn path_and_query(&self) -> &str {
        &self.path_and_query
    }

    /// The `Host` header value: `localhost` over pipes and Unix sockets, the
    /// URL's authority over TCP (the port only when it is not the default).
    #[must_use]
    pub fn host_header(&self) -> String {
        host_header(&self.address)
    }

    /// The URI sent on the wire: `scheme://host/path`, with `localhost` as
    /// the host over pipes.
    #[must_use]
    pub fn uri(&self) -> &http::Uri {
        &self.uri
    }

    /// Where this target's server listens.
    #[must_use]
    pub fn listen_address(&self) -> &ListenAddress {
        &self.address
    }
}

impl fmt::Display for RequestTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.endpoint() {
            Endpoint::Tcp { .. } => write!(f, "{}", self.uri),
            endpoint => {
                endpoint.fmt_with_scheme(self.scheme(), f)?;
                write!(f, ":{}", self.path_and_query)
            }
        }
    }
}

impl FromStr for RequestTarget {
    type Err = AddressError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let err = |reason: &str| AddressError::target(input, reason);
        let (scheme, rest) = split_scheme(input).map_err(|r| err(&r))?;
        // A pipe name holds no ':', and socket paths are taken to hold none
        // either, so the first ':' after the prefix ends the endpoint.
        let socket = |prefix: &str| {
            strip_keyword(rest, prefix).map(|tail| match tail.find(':') {
                Some(i) => (&tail[..i], Some(&tail[i + 1..])),
                None => (tail, None),
            })
        };
        let (endpoint, path) = if let Some((name, path)) = socket("pipe:") {
            let name = name
                .strip_prefix('/')
                .ok_or_else(|| err("a pipe target is written pipe:/NAME:/PATH"))?;
            PipeName::validate(name).map_err(|r| err(&r))?;
            (Endpoint::Pipe(PipeName(name.to_owned())), path)
        } else if let Some((path, request_path)) = socket("unix:") {
            (
                Endpoint::Unix(unix_path(path).map_err(|r| err(&r))?),
                request_path,
            )
        } else {
            let (authority, path) = match rest.find(['/', '?']) {
                Some(i) => (&rest[..i], Some(&rest[i..])),
                None => (rest, None),
            };
            let (host, port) = split_authority(authority, scheme).map_err(|r| err(&r))?;
            if host == Host::Any {
                return Err(err("'*' is a listen host; a request needs a real host"));
            }
            (Endpoint::Tcp { host, port }, path)
        };
        let path = match path.map(|p| p.split('#').next().unwrap_or_default()) {
            None | Some("") => "/",
            Some(p) if p.starts_with('/') => p,
            Some(p) if p.starts_with('?') && matches!(endpoint, Endpoint::Tcp { .. }) => p,
            Some(p) => {
                return Err(err(&format!("the request path '{p}' must start with '/'")));
            }
        };
        Self::new(scheme, endpoint, path).map_err(|e| err(e.reason()))
    }
}

fn host_header(address: &ListenAddress) -> String {
    match address.endpoint() {
        Endpoint::Pipe(_) | Endpoint::Unix(_) => "localhost".to_owned(),
        Endpoint::Tcp { host, port } if *port == address.scheme().default_port() => {
            host.to_string()
        }
        Endpoint::Tcp { host, port } => format!("{host}:{port}"),
    }
}

macro_rules! try_from_text {
    ($ty:ty) => {
        impl TryFrom<&str> for $ty {
            type Error = AddressError;
            fn try_from(text: &str) -> Result<Self, AddressError> {
                text.parse()
            }
        }

        impl TryFrom<&String> for $ty {
            type Error = AddressError;
            fn try_from(text: &String) -> Result<Self, AddressError> {
                text.parse()
            }
        }

        impl TryFrom<String> for $ty {
            type Error = AddressError;
            fn try_from(text: String) -> Result<Self, AddressError> {
                text.parse()
            }
        }
    };
}

try_from_text!(ListenAddress);
try_from_text!(RequestTarget);

fn split_scheme(input: &str) -> Result<(Scheme, &str), String> {
    if input.is_empty() {
        return Err("the address is empty".into());
    }
    if let Some(c) = input.chars().find(|c| c.is_whitespace()) {
        return Err(format!("the address contains the blank {c:?}"));
    }
    let Some((scheme, rest)) = input.split_once("://") else {
        return Err("the address has no scheme; start it with http:// or https://".into());
    };
    let scheme = match scheme.to_ascii_lowercase().as_str() {
        "http" => Scheme::Http,
        "https" => Scheme::Https,
        other => return Err(format!("the scheme '{other}' is not http or https")),
    };
    Ok((scheme, rest))
}

fn unix_path(path: &str) -> Result<PathBuf, String> {
    if path.is_empty() || path == "/" {
        return Err("the socket path is empty".into());
    }
    if !path.starts_with('/') {
        return Err(format!(
            "the socket path '{path}' is not absolute; write unix:/ABS/PATH"
        ));
    }
    if path.contains('\0') {
        return Err("the socket path contains NUL".into());
    }
    if path.ends_with('/') {
        return Err(format!("the socket path '{path}' names a directory"));
    }
    Ok(Path::new(path).to_path_buf())
}

fn split_authority(authority: &str, scheme: Scheme) -> Result<(Host, u16), String> {
    if authority.is_empty() {
        return Err("the host is empty".into());
    }
    if authority.contains('@') {
        return Err("user information (user@host) is not supported".into());
    }
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (ip, after) = rest
            .split_once(']')
            .ok_or("an IPv6 address opened with '[' is never closed with ']'")?;
        let ip: Ipv6Addr = ip
            .parse()
            .map_err(|_| format!("'{ip}' is not an IPv6 address"))?;
        let port = match after {
            "" => None,
            p => Some(
                p.strip_prefix(':')
                    .ok_or_else(|| format!("unexpected '{p}' after the IPv6 address"))?,
            ),
        };
        (Host::Ip(IpAddr::V6(ip)), port)
    } else {
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        };
        if host.contains(':') {
            return Err("an IPv6 address is written in brackets: [::1]".into());
        }
        let host = match host {
            "" => return Err("the host is empty".into()),
            "*" | "+" => Host::Any,
            h if h.eq_ignore_ascii_case("localhost") => Host::Localhost,
            h => match h.parse::<Ipv4Addr>() {
                Ok(ip) => Host::Ip(IpAddr::V4(ip)),
                Err(_) if valid_dns_name(h) => Host::Name(h.to_ascii_lowercase()),
                Err(_) => return Err(format!("'{h}' is not a valid host name")),
            },
        };
        (host, port)
    };
    let port = match port {
        None => scheme.default_port(),
        Some("") => return Err("the port is empty".into()),
        Some(p) => p
            .parse::<u16>()
            .map_err(|_| format!("the port '{p}' is not a number from 0 to 65535"))?,
    };
    Ok((host, port))
}

fn valid_dns_name(name: &str) -> bool {
    name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_listen_forms_round_trip() {
        for s in [
            "http://pipe:/my-test-pipe",
            "https://pipe:/secure",
            "http://pipe://tmp/abs.sock",
            "http://unix:/run/app.sock",
            "http://127.0.0.1:8080",
            "http://[::1]:0",
            "http://*:80",
            "http://localhost:5000",
        ] {
            assert_eq!(s.parse::<ListenAddress>().unwrap().to_string(), s);
        }
    }

    #[test]
    fn canonical_targets_round_trip() {
        for s in [
            "http://pipe:/my-test-pipe:/test?x=1",
            "https://pipe:/secure:/",
            "http://unix:/run/app.sock:/v1/items",
            "http://localhost:8080/a/b?c=d",
            "https://example.com/",
        ] {
            assert_eq!(s.parse::<RequestTarget>().unwrap().to_string(), s);
        }
    }

    /// `pipe:` and `unix:` stand where a host does and are read in any case,
    /// as hosts are; what is written back is the lowercase form, which
    /// reads the same. (`http://Pipe:1` was once a TCP host whose written
    /// form, `http://pipe:1/`, did not parse.)
    #[test]
    fn the_pipe_and_unix_keywords_are_read_in_any_case() {
        for (input, written) in [
            ("HTTP://PIPE:/agent:/x", "http://pipe:/agent:/x"),
            (
                "http://Unix:/run/app.sock:/v1",
                "http://unix:/run/app.sock:/v1",
            ),
        ] {
            let target = input.parse::<RequestTarget>().unwrap();
            assert_eq!(target.to_string(), written, "{input}");
            assert_eq!(written.parse::<RequestTarget>().unwrap(), target);
        }
        assert_eq!(
            "http://Pipe:/agent"
                .parse::<ListenAddress>()
                .unwrap()
                .to_string(),
            "http://pipe:/agent"
        );
        for input in ["http://Pipe:1", "http://pipe:1"] {
            let err = input.parse::<RequestTarget>().unwrap_err().to_string();
            assert!(
                err.contains("a pipe target is written pipe:/NAME:/PATH"),
                "{err}"
            );
        }
    }
}
