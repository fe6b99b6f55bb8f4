//! The library's error type, in the shape of hyper's and reqwest's: opaque,
//! with predicates that say what happened, the endpoint where there is one,
//! and the underlying error as its [`source`](std::error::Error::source).

use std::borrow::Cow;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::address::{AddressError, Endpoint};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Everything that can go wrong in pipehttp.
///
/// Its `Display` is one line that names the pipe, socket or file and, where
/// there is one, what to do; the alternate form (`{:#}`) adds the
/// underlying errors, each once, so that `eprintln!("{e:#}")` tells the
/// whole story on one line. The underlying error is also its
/// [`source`](std::error::Error::source), for callers that walk the chain
/// or downcast (to `std::io::Error`, `hyper::Error`, `rustls::Error`, …).
///
/// ```
/// # async fn run() {
/// let err = pipehttp::Client::builder()
///     .connect_timeout(std::time::Duration::ZERO)
///     .build()
///     .get("http://pipe:/nobody-serves-this:/test")
///     .send()
///     .await
///     .unwrap_err();
/// assert!(err.is_connect() && err.is_no_server());
/// assert!(err.to_string().starts_with("no server is listening on pipe 'nobody-serves-this'"));
/// # }
/// ```
///
/// It is cheap to clone: clones share the underlying error.
#[derive(Clone)]
pub struct Error {
    inner: Arc<Inner>,
}

struct Inner {
    kind: Kind,
    /// The endpoint, with the socket or pipe path it resolved to when the
    /// error was made (so a message never reads `TMPDIR` again).
    endpoint: Option<(Endpoint, Option<PathBuf>)>,
    source: Option<BoxError>,
    remedy: Option<Remedy>,
}

/// What went wrong. Private, so that kinds can be added and split without
/// breaking callers, who ask through the `is_*` predicates.
#[derive(Debug)]
pub(crate) enum Kind {
    /// A text that is not an address; the source's message is the message.
    Address(AddressError),
    /// Options that contradict each other or are out of range.
    Options(Cow<'static, str>),
    /// A request that could not be built (a bad header, say).
    Request(Cow<'static, str>),
    /// A configuration file or variable that cannot be used.
    Config {
        /// The file path or variable name.
        origin: String,
        /// What is wrong, naming the key.
        message: String,
    },
    /// A live server already holds the name.
    AddrInUse,
    /// Something other than a socket sits where the socket file goes.
    #[cfg_attr(windows, allow(dead_code))]
    NotASocket(PathBuf),
    /// Another user's socket file sits at the path.
    #[cfg_attr(windows, allow(dead_code))]
    NotOurs {
        /// The path.
        path: PathBuf,
        /// Its owner's uid.
        owner: u32,
    },
    /// The OS refused to create the listener.
    Bind,
    /// Nothing listens, and waiting did not change that.
    NoServer,
    /// The server never accepted within the connect timeout.
    ConnectTimeout(Duration),
    /// Connecting failed for another reason.
    Connect,
    /// The peer runs as a user this side does not admit.
    RefusedPeer,
    /// TLS could not be set up or failed; the text says which step.
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    Tls(Cow<'static, str>),
    /// The connection broke or the peer spoke no HTTP before a response.
    Send,
    /// The response body broke off or was malformed.
    Body,
    /// No complete response within the timeout.
    Timeout(Duration),
    /// The response body is not the JSON expected.
    #[cfg_attr(not(feature = "json"), allow(dead_code))]
    Decode,
}

impl Error {
    pub(crate) fn new(kind: Kind) -> Self {
        // The remedy that always goes with a kind; others are added where
        // the error is made.
        let remedy = match kind {
            Kind::AddrInUse => Some(Remedy::TakeOver),
            Kind::ConnectTimeout(_) => Some(Remedy::RaiseConnectTimeout),
            Kind::Timeout(_) => Some(Remedy::RaiseTimeout),
            _ => None,
        };
        Self {
            inner: Arc::new(Inner {
                kind,
                endpoint: None,
                source: None,
                remedy,
            }),
        }
    }

    /// `kind` at `endpoint`, whose path is resolved now.
    pub(crate) fn at(kind: Kind, endpoint: &Endpoint) -> Self {
        Self::new(kind).with_endpoint(endpoint)
    }

    pub(crate) fn with_endpoint(self, endpoint: &Endpoint) -> Self {
        let path = endpoint.path();
        self.map_inner(|inner| inner.endpoint = Some((endpoint.clone(), path)))
    }

    pub(crate) fn with_source(self, source: impl Into<BoxError>) -> Self {
        let source = source.into();
        self.map_inner(|inner| inner.source = Some(source))
    }

    fn map_inner(mut self, f: impl FnOnce(&mut Inner)) -> Self {
        // Errors are completed where they are made, before any clone.
        f(Arc::get_mut(&mut self.inner).expect("a fresh error is not shared"));
        self
    }

    pub(crate) fn options(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(Kind::Options(message.into()))
    }

    pub(crate) fn request(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(Kind::Request(message.into()))
    }

    pub(crate) fn config(origin: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(Kind::Config {
            origin: origin.into(),
            message: message.into(),
        })
    }

    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    pub(crate) fn tls(what: impl Into<Cow<'static, str>>) -> Self {
        Self::new(Kind::Tls(what.into()))
    }

    /// The endpoint the error concerns, where there is one.
    #[must_use]
    pub fn endpoint(&self) -> Option<&Endpoint> {
        self.inner.endpoint.as_ref().map(|(endpoint, _)| endpoint)
    }

    /// The socket file or pipe path the error concerns, where there is one.
    #[must_use]
    pub fn path(&self) -> Option<&Path> {
        match &self.inner.kind {
            Kind::NotASocket(path) | Kind::NotOurs { path, .. } => Some(path),
            _ => self.inner.endpoint.as_ref()?.1.as_deref(),
        }
    }

    /// The timeout that ran out, for [`is_timeout`](Self::is_timeout) errors.
    #[must_use]
    pub fn timeout(&self) -> Option<Duration> {
        match self.inner.kind {
            Kind::Timeout(t) | Kind::ConnectTimeout(t) => Some(t),
            _ => None,
        }
    }

    /// A text did not parse as an address.
    #[must_use]
    pub fn is_address(&self) -> bool {
        matches!(self.inner.kind, Kind::Address(_))
    }

    /// Options or a request that could not be used as given: contradicting
    /// or out-of-range options, an invalid header, an address that did not
    /// parse. Nothing was sent.
    #[must_use]
    pub fn is_builder(&self) -> bool {
        matches!(
            self.inner.kind,
            Kind::Address(_) | Kind::Options(_) | Kind::Request(_)
        )
    }

    /// A configuration file or variable could not be used.
    #[must_use]
    pub fn is_config(&self) -> bool {
        matches!(self.inner.kind, Kind::Config { .. })
    }

    /// A server could not listen: the name is in use, something else sits
    /// at the path, or the OS refused.
    #[must_use]
    pub fn is_bind(&self) -> bool {
        matches!(
            self.inner.kind,
            Kind::AddrInUse | Kind::NotASocket(_) | Kind::NotOurs { .. } | Kind::Bind
        )
    }

    /// A live server already holds the name or port.
    #[must_use]
    pub fn is_addr_in_use(&self) -> bool {
        matches!(self.inner.kind, Kind::AddrInUse)
    }

    /// The request never reached a server: nothing listening, no free
    /// instance in time, a server this client refuses, or another connect
    /// failure. Command-line tools map these to curl's exit code 7.
    #[must_use]
    pub fn is_connect(&self) -> bool {
        matches!(
            self.inner.kind,
            Kind::NoServer | Kind::ConnectTimeout(_) | Kind::Connect | Kind::RefusedPeer
        )
    }

    /// Nothing was listening on the endpoint for the whole connect timeout.
    #[must_use]
    pub fn is_no_server(&self) -> bool {
        matches!(self.inner.kind, Kind::NoServer)
    }

    /// The peer runs as a user this side does not admit: a client refusing
    /// a server of another user, or a takeover refused by the old server.
    #[must_use]
    pub fn is_refused_peer(&self) -> bool {
        matches!(self.inner.kind, Kind::RefusedPeer)
    }

    /// TLS could not be set up (certificates, keys, names) or its handshake
    /// failed; the source is the `rustls::Error` or `std::io::Error`.
    #[must_use]
    pub fn is_tls(&self) -> bool {
        matches!(self.inner.kind, Kind::Tls(_))
    }

    /// A timeout ran out: the request's, or the connect timeout while a
    /// server existed but did not accept.
    #[must_use]
    pub fn is_timeout(&self) -> bool {
        matches!(self.inner.kind, Kind::Timeout(_) | Kind::ConnectTimeout(_))
    }

    /// The request was sent, or began to be, and no response head came
    /// back: the connection broke or the server spoke no HTTP. The source
    /// is hyper's error.
    #[must_use]
    pub fn is_request(&self) -> bool {
        matches!(self.inner.kind, Kind::Send)
    }

    /// The response body broke off or was malformed; the source is hyper's
    /// error.
    #[must_use]
    pub fn is_body(&self) -> bool {
        matches!(self.inner.kind, Kind::Body)
    }

    /// The response body is not the JSON expected.
    #[must_use]
    pub fn is_decode(&self) -> bool {
        matches!(self.inner.kind, Kind::Decode)
    }

    fn fmt_endpoint(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.inner.endpoint {
            Some((endpoint, path)) => write!(f, "{}", Named(endpoint, path.as_deref())),
            None => f.write_str("the endpoint"),
        }
    }
}

/// An endpoint as messages and logs name it: `pipe 'x' (/tmp/CoreFxPipe_x)`,
/// `unix socket /run/a.sock`, `tcp 127.0.0.1:80`.
pub(crate) struct Named<'a>(pub(crate) &'a Endpoint, pub(crate) Option<&'a Path>);

impl fmt::Display for Named<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.0, self.1) {
            (Endpoint::Pipe(_), Some(path)) => write!(f, "{} ({})", self.0, path.display()),
            (endpoint, _) => write!(f, "{endpoint}"),
        }
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("pipehttp::Error");
        d.field("kind", &self.inner.kind);
        if let Some((endpoint, _)) = &self.inner.endpoint {
            d.field("endpoint", endpoint);
        }
        if let Some(source) = &self.inner.source {
            d.field("source", source);
        }
        d.finish()
    }
}

impl Error {
    /// The message alone: what happened and where, without its sources or
    /// the remedy.
    fn write_message(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = |f: &mut fmt::Formatter<'_>| self.fmt_endpoint(f);
        match &self.inner.kind {
            Kind::Address(err) => write!(f, "{err}"),
            Kind::Options(message) | Kind::Request(message) => f.write_str(message),
            Kind::Config { origin, message } => write!(f, "{origin}: {message}"),
            Kind::AddrInUse => {
                e(f)?;
                f.write_str(" is already in use by a running server")
            }
            Kind::NotASocket(path) => {
                e(f)?;
                write!(
                    f,
                    ": {} exists and is not a socket, so it was left alone: remove it yourself, or choose another name",
                    path.display()
                )
            }
            Kind::NotOurs { path, owner } => {
                e(f)?;
                write!(
                    f,
                    ": {} is a socket of uid {owner}, which this process may not replace: ask that user (or root) to remove it, or choose another name",
                    path.display()
                )
            }
            Kind::Bind => {
                f.write_str("cannot listen on ")?;
                e(f)
            }
            Kind::NoServer => {
                f.write_str("no server is listening on ")?;
                e(f)?;
                f.write_str(": start it, or check the name")
            }
            Kind::ConnectTimeout(timeout) => {
                e(f)?;
                write!(
                    f,
                    " did not accept a connection within {timeout:?}: the server is overloaded or stuck"
                )
            }
            Kind::Connect => {
                f.write_str("cannot connect to ")?;
                e(f)
            }
            Kind::RefusedPeer => {
                e(f)?;
                f.write_str(": refused a peer that runs as another user")
            }
            Kind::Tls(what) => {
                if self.inner.endpoint.is_some() {
                    e(f)?;
                    f.write_str(": ")?;
                }
                f.write_str(what)
            }
            Kind::Send => {
                f.write_str("the request to ")?;
                e(f)?;
                f.write_str(" failed before a response arrived")
            }
            Kind::Body => {
                f.write_str("the response body from ")?;
                e(f)?;
                f.write_str(" broke off")
            }
            Kind::Timeout(timeout) => {
                e(f)?;
                write!(
                    f,
                    ": no complete response within {timeout:?}: the server is slow or stuck"
                )
            }
            Kind::Decode => {
                f.write_str("the response body from ")?;
                e(f)?;
                f.write_str(" is not the JSON expected")
            }
        }
    }

    /// The message and, with `{:#}`, its sources, without the remedy: for
    /// a tool that words the remedy in its own terms (see [`Remedy`]).
    ///
    /// ```
    /// fn report(err: &pipehttp::Error) -> String {
    ///     match err.remedy() {
    ///         Some(pipehttp::Remedy::TakeOver) => {
    ///             format!("{:#}: stop it, or take it over with --takeover", err.without_remedy())
    ///         }
    ///         _ => format!("{err:#}"),
    ///     }
    /// }
    /// ```
    #[must_use]
    pub fn without_remedy(&self) -> impl fmt::Display + '_ {
        WithoutRemedy(self)
    }

    /// What the caller can change to get past this error, where the
    /// library knows; `Display` words it in terms of this API.
    #[must_use]
    pub fn remedy(&self) -> Option<Remedy> {
        self.inner.remedy
    }

    pub(crate) fn with_remedy(self, remedy: Remedy) -> Self {
        self.map_inner(|inner| inner.remedy = Some(remedy))
    }
}

struct WithoutRemedy<'a>(&'a Error);

impl fmt::Display for WithoutRemedy<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.write_message(f)?;
        if f.alternate()
            && let Some(source) = std::error::Error::source(self.0)
        {
            let mut message = String::new();
            fmt::write(&mut message, format_args!("{}", Message(self.0)))?;
            write_sources(f, message, source)?;
        }
        Ok(())
    }
}

struct Message<'a>(&'a Error);

impl fmt::Display for Message<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.write_message(f)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if f.alternate() {
            write!(f, "{:#}", WithoutRemedy(self))?;
        } else {
            self.write_message(f)?;
        }
        match self.inner.remedy {
            Some(remedy) => write!(f, ": {}", remedy.in_api_terms()),
            None => Ok(()),
        }
    }
}

/// What a caller can change to get past an error: [`Error::remedy`].
/// `Display` words it in terms of this library's API; a command-line tool
/// words it in terms of its flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Remedy {
    /// A live server holds the name: stop it, take it over, or pick another.
    TakeOver,
    /// An `https` endpoint needs a certificate.
    GiveCertificate,
    /// The server's certificate is not trusted: trust its CA.
    TrustServerCa,
    /// The server did not accept in time: retry, or wait longer.
    RaiseConnectTimeout,
    /// The response did not complete in time: retry, or wait longer.
    RaiseTimeout,
    /// A pipe server runs as another user: if that user is trusted, allow it.
    AllowServerUser,
}

/// The remedy in terms of this library's API.
impl fmt::Display for Remedy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.in_api_terms())
    }
}

impl Remedy {
    fn in_api_terms(self) -> &'static str {
        match self {
            Remedy::TakeOver => {
                "stop it, take it over with ServerBuilder::takeover, or choose another name"
            }
            Remedy::GiveCertificate => {
                "give it one with ServerBuilder::listen_with_certificate or ServerBuilder::default_certificate"
            }
            Remedy::TrustServerCa => "trust its CA with ClientBuilder::add_root_certificate_pem",
            Remedy::RaiseConnectTimeout => "retry later, or raise ClientBuilder::connect_timeout",
            Remedy::RaiseTimeout => "retry, or raise the request's timeout",
            Remedy::AllowServerUser => {
                "if that user is trusted, allow it with ClientBuilder::allow_server_user"
            }
        }
    }
}

/// An error and its sources on one line, each text once: `a: b: c`.
pub(crate) struct Chain<'a>(pub(crate) &'a dyn std::error::Error);

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let first = self.0.to_string();
        f.write_str(&first)?;
        match self.0.source() {
            Some(source) => write_sources(f, first, source),
            None => Ok(()),
        }
    }
}

fn write_sources(
    f: &mut fmt::Formatter<'_>,
    mut shown: String,
    mut source: &dyn std::error::Error,
) -> fmt::Result {
    loop {
        let text = source.to_string();
        // Libraries often repeat their source's text in their own.
        if !text.is_empty() && !shown.contains(&text) {
            write!(f, ": {text}")?;
            shown.push_str(&text);
        }
        match source.source() {
            Some(next) => source = next,
            None => return Ok(()),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.inner
            .source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl From<AddressError> for Error {
    fn from(err: AddressError) -> Self {
        Self::new(Kind::Address(err))
    }
}

impl From<std::convert::Infallible> for Error {
    fn from(never: std::convert::Infallible) -> Self {
        match never {}
    }
}

/// `Result` with pipehttp's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a peer was refused, as the source of an
/// [`is_refused_peer`](Error::is_refused_peer) error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PeerMismatch(pub(crate) String);

impl fmt::Display for PeerMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PeerMismatch {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::address::PipeName;

    fn pipe() -> Endpoint {
        Endpoint::Pipe(PipeName::new("x").unwrap())
    }

    #[test]
    fn display_is_one_line_and_alternate_adds_the_sources_once() {
        let io = std::io::Error::new(std::io::ErrorKind::PermissionDenied, "denied");
        let err = Error::at(Kind::Connect, &pipe()).with_source(io);
        let plain = err.to_string();
        assert!(plain.starts_with("cannot connect to pipe 'x' ("), "{plain}");
        assert!(!plain.contains("denied"), "{plain}");
        assert_eq!(format!("{err:#}"), format!("{plain}: denied"));
        assert!(err.is_connect() && !err.is_timeout());
        assert!(err.path().is_some());
        let io = std::error::Error::source(&err)
            .and_then(|e| e.downcast_ref::<std::io::Error>())
            .expect("the io error is the source");
        assert_eq!(io.kind(), std::io::ErrorKind::PermissionDenied);
    }

    #[test]
    fn clones_share_the_error() {
        let err = Error::at(Kind::Timeout(Duration::from_secs(2)), &pipe());
        let copy = err.clone();
        assert!(copy.is_timeout());
        assert_eq!(copy.timeout(), Some(Duration::from_secs(2)));
        assert_eq!(copy.to_string(), err.to_string());
    }
}
