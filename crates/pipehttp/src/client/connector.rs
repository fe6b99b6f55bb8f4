//! The connector: opens a connection to one endpoint for hyper-util's pooled
//! client, for tonic, or for any other hyper-based client.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::client::legacy::connect::{Connected, Connection as HyperConnection};
use hyper_util::rt::TokioIo;
#[cfg(feature = "tls")]
use rustls::ClientConfig;
#[cfg(feature = "tls")]
use rustls_pki_types::ServerName;
use tokio::time::Instant;
#[cfg(feature = "tls")]
use tokio_rustls::TlsConnector;
#[cfg(feature = "tls")]
use tokio_rustls::client::TlsStream;

#[cfg(feature = "tls")]
use crate::address::Host;
use crate::address::{Endpoint, ListenAddress, Scheme};
#[cfg(feature = "tls")]
use crate::error::Remedy;
use crate::error::{Error, Kind, Result};
#[cfg(feature = "tls")]
use crate::tls::{self, Trust};
use crate::transport::{
    self, CheckScope, ConnectFailure, ConnectOptions, Connection, PeerInfo, ServerUsers,
};

/// Default time to wait for a server to appear and accept.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Opens connections to one endpoint, whatever URI it is asked for, so
/// hyper-util's `Client` and tonic can use pipes:
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use http_body_util::Empty;
/// use hyper_util::client::legacy::Client;
/// use hyper_util::rt::TokioExecutor;
///
/// let connector = pipehttp::client::Connector::new("http://pipe:/my-test-pipe")?;
/// let client: Client<_, Empty<bytes::Bytes>> = Client::builder(TokioExecutor::new()).build(connector);
/// let res = client.get("http://localhost/test".parse()?).await?;
/// assert!(res.status().is_success());
/// # Ok(()) }
/// ```
///
/// When no server is there yet, or every pipe instance is busy, it keeps
/// trying with a capped backoff (1 ms doubling to 100 ms) for up to the
/// connect timeout, so a client outlives a server restart without spinning.
/// [`wait_for_server(false)`](Self::wait_for_server) fails at once instead
/// when nothing listens, as curl does.
#[derive(Clone)]
pub struct Connector {
    endpoint: Arc<Endpoint>,
    connect_timeout: Duration,
    server_users: ServerUsers,
    wait_for_server: bool,
    #[cfg(feature = "tls")]
    tls: Option<(TlsConnector, ServerName<'static>)>,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("Connector");
        d.field("endpoint", &self.endpoint)
            .field("connect_timeout", &self.connect_timeout)
            .field("server_users", &self.server_users)
            .field("wait_for_server", &self.wait_for_server);
        #[cfg(feature = "tls")]
        d.field("tls_server_name", &self.tls.as_ref().map(|(_, name)| name));
        d.finish()
    }
}

/// ALPN protocols a client offers: HTTP/2 first, so servers that speak it use it.
#[cfg(feature = "tls")]
pub(crate) const CLIENT_ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

impl Connector {
    /// A connector for the endpoint of a listen address or request target,
    /// such as `http://pipe:/my-test-pipe`. An `https://` address gets TLS
    /// that trusts the platform's root certificates; with the `tls`
    /// feature, `tls_config` and `tls_trust` trust others.
    pub fn new<A>(address: A) -> Result<Self>
    where
        A: TryInto<ListenAddress>,
        A::Error: Into<Error>,
    {
        let address = address.try_into().map_err(Into::into)?;
        let connector = Self::for_endpoint(address.endpoint().clone());
        match address.scheme() {
            Scheme::Http => Ok(connector),
            #[cfg(feature = "tls")]
            Scheme::Https => connector.tls_config(Trust::default().client_config(&CLIENT_ALPN)?),
            #[cfg(not(feature = "tls"))]
            Scheme::Https => Err(super::tls_disabled(&address)),
        }
    }

    pub(crate) fn for_endpoint(endpoint: Endpoint) -> Self {
        Self {
            endpoint: Arc::new(endpoint),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            server_users: ServerUsers::default(),
            wait_for_server: true,
            #[cfg(feature = "tls")]
            tls: None,
        }
    }

    /// Speak TLS with this rustls configuration, checking the server's
    /// certificate for `localhost` over pipes and Unix sockets, or for the
    /// host over TCP.
    #[cfg(feature = "tls")]
    pub fn tls_config(mut self, config: Arc<ClientConfig>) -> Result<Self> {
        let name = match &*self.endpoint {
            Endpoint::Tcp {
                host: Host::Name(name),
                ..
            } => name.clone(),
            Endpoint::Tcp {
                host: Host::Ip(ip), ..
            } => ip.to_string(),
            _ => "localhost".to_owned(),
        };
        self.tls = Some((TlsConnector::from(config), tls::server_name(&name)?));
        Ok(self)
    }

    /// Check the server's certificate for `name` instead (after
    /// [`tls_config`](Self::tls_config) or an `https://` address).
    #[cfg(feature = "tls")]
    pub fn tls_server_name(mut self, name: &str) -> Result<Self> {
        if let Some((_, server_name)) = &mut self.tls {
            *server_name = tls::server_name(name)?;
        }
        Ok(self)
    }

    /// For an `https://` endpoint: trust the CA certificates in `ca_pems`
    /// (PEM) beside the platform's roots, or with `accept_invalid_certs`
    /// any certificate (for development only: whoever holds the name can
    /// read and change the traffic). A cleartext endpoint is left as it is.
    ///
    /// ```no_run
    /// # fn run(ca_pem: Vec<u8>) -> pipehttp::Result<()> {
    /// let connector = pipehttp::client::Connector::new("https://pipe:/agent")?
    ///     .tls_trust(vec![ca_pem], false)?;
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "tls")]
    pub fn tls_trust(mut self, ca_pems: Vec<Vec<u8>>, accept_invalid_certs: bool) -> Result<Self> {
        if let Some((_, name)) = self.tls.take() {
            let trust = Trust {
                extra_roots: ca_pems,
                insecure: accept_invalid_certs,
                identity: None,
            };
            let config = trust.client_config(&CLIENT_ALPN)?;
            self.tls = Some((TlsConnector::from(config), name));
        }
        Ok(self)
    }

    /// How long to wait for the server to exist and accept (default 5 s).
    #[must_use]
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Which server users to accept. By default a pipe name's server must
    /// run as this process's user or as root (Windows: SYSTEM): the
    /// defence against a process of another user that took the name
    /// first. `true` checks Unix socket paths too; `false` accepts a
    /// server of any user everywhere, as [`any_server_user`](Self::any_server_user).
    #[must_use]
    pub fn current_user_only(mut self, enabled: bool) -> Self {
        self.server_users.scope = if enabled {
            CheckScope::Local
        } else {
            CheckScope::Off
        };
        self
    }

    /// Also accept a server that runs as `user`: a name or numeric uid on
    /// Unix, an account name or SID on Windows. Each call adds one; an
    /// unknown name fails the connection that would need it.
    #[must_use]
    pub fn allow_server_user(mut self, user: impl Into<String>) -> Self {
        self.server_users.allowed.push(user.into());
        self
    }

    /// Accept a server of any user: no check at all.
    #[must_use]
    pub fn any_server_user(self) -> Self {
        self.current_user_only(false)
    }

    pub(crate) fn server_users(mut self, users: ServerUsers) -> Self {
        self.server_users = users;
        self
    }

    /// Whether to wait, up to the connect timeout, for a server that is
    /// not there yet (default true): what a client of a restarting local
    /// service wants. With `false` a missing socket file or pipe, or a
    /// refused connection, fails at once with an
    /// [`is_no_server`](Error::is_no_server) error; a server that is there
    /// but busy is still waited for.
    ///
    /// ```
    /// let connector = pipehttp::client::Connector::new("http://unix:/run/app.sock")?
    ///     .wait_for_server(false);
    /// # Ok::<(), pipehttp::Error>(())
    /// ```
    #[must_use]
    pub fn wait_for_server(mut self, wait: bool) -> Self {
        self.wait_for_server = wait;
        self
    }

    /// The endpoint it connects to.
    #[must_use]
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Opens one connection, waiting for the server as described above.
    pub async fn connect(&self) -> Result<Connection> {
        let deadline = Instant::now() + self.connect_timeout;
        let options = ConnectOptions {
            server_users: &self.server_users,
        };
        let mut attempt = 0;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let failure =
                match tokio::time::timeout(remaining, transport::connect(&self.endpoint, options))
                    .await
                {
                    Ok(Ok(conn)) => return Ok(conn),
                    Ok(Err(failure)) => failure,
                    Err(_) => return Err(self.timed_out()),
                };
            let now = Instant::now();
            match failure {
                ConnectFailure::Fatal(e) => return Err(e),
                ConnectFailure::Absent(e) if now >= deadline || !self.wait_for_server => {
                    return Err(Error::at(Kind::NoServer, &self.endpoint).with_source(e));
                }
                ConnectFailure::Busy(e) if now >= deadline => {
                    return Err(self.timed_out().with_source(e));
                }
                ConnectFailure::Absent(_) | ConnectFailure::Busy(_) => {
                    let pause = transport::retry_delay(attempt).min(deadline - now);
                    attempt += 1;
                    tokio::time::sleep(pause).await;
                }
            }
        }
    }

    fn timed_out(&self) -> Error {
        Error::at(Kind::ConnectTimeout(self.connect_timeout), &self.endpoint)
    }
}

impl tower_service::Service<http::Uri> for Connector {
    type Response = Stream;
    type Error = Error;
    type Future = Pin<Box<dyn Future<Output = Result<Stream>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _uri: http::Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move { this.connect_stream().await })
    }
}

impl Connector {
    /// One connection as hyper's client sees it, TLS done where the
    /// connector has a TLS configuration.
    pub(crate) async fn connect_stream(&self) -> Result<Stream> {
        let conn = self.connect().await?;
        #[cfg(feature = "tls")]
        if let Some((tls, name)) = &self.tls {
            return self.handshake(tls, name, conn).await;
        }
        let peer = conn.peer().clone();
        Ok(Stream {
            io: Io::Plain(TokioIo::new(conn)),
            peer,
            unread: false,
        })
    }

    /// TLS over a new connection, checking the server's certificate.
    #[cfg(feature = "tls")]
    async fn handshake(
        &self,
        tls: &TlsConnector,
        name: &ServerName<'static>,
        conn: Connection,
    ) -> Result<Stream> {
        let peer = conn.peer().clone();
        let stream = tls.connect(name.clone(), conn).await.map_err(|e| {
            // rustls reports a refused certificate as an io error whose
            // inner error is the rustls::Error: keep that as the source.
            let untrusted = matches!(
                e.get_ref()
                    .and_then(|inner| inner.downcast_ref::<rustls::Error>()),
                Some(rustls::Error::InvalidCertificate(_))
            );
            let source: Box<dyn std::error::Error + Send + Sync> = match e.into_inner() {
                Some(inner) => inner,
                None => Box::new(std::io::Error::other("the connection closed")),
            };
            let err = if untrusted {
                Error::tls("the server's certificate is not trusted")
                    .with_remedy(Remedy::TrustServerCa)
            } else {
                Error::tls("the TLS handshake failed")
            };
            err.with_endpoint(&self.endpoint).with_source(source)
        })?;
        Ok(Stream {
            io: Io::Tls(Box::new(TokioIo::new(stream))),
            peer,
            unread: false,
        })
    }
}

/// A connection as hyper's client sees it. The server's [`PeerInfo`] is
/// put in every response's extensions.
#[derive(Debug)]
pub struct Stream {
    io: Io,
    peer: PeerInfo,
    /// The server stopped reading (a write failed with a broken pipe or a
    /// reset) and what we write goes nowhere; see `hyper::rt::Write`.
    unread: bool,
}

#[derive(Debug)]
enum Io {
    Plain(TokioIo<Connection>),
    #[cfg(feature = "tls")]
    Tls(Box<TokioIo<TlsStream<Connection>>>),
}

impl Stream {
    /// The server's process and user, where the OS tells.
    #[must_use]
    pub fn peer(&self) -> &PeerInfo {
        &self.peer
    }

    /// What TLS negotiated, for an https connection.
    #[cfg(feature = "tls")]
    #[must_use]
    pub fn tls_info(&self) -> Option<TlsInfo> {
        let Io::Tls(tls) = &self.io else {
            return None;
        };
        let session = tls.inner().get_ref().1;
        Some(TlsInfo {
            version: session
                .protocol_version()
                .and_then(|v| v.as_str())
                .unwrap_or("TLS")
                .to_owned(),
            cipher_suite: session
                .negotiated_cipher_suite()
                .and_then(|c| c.suite().as_str())
                .unwrap_or("unknown")
                .to_owned(),
            alpn: session.alpn_protocol().map(<[u8]>::to_vec),
        })
    }
}

/// What a TLS handshake settled on: [`Stream::tls_info`].
#[cfg(feature = "tls")]
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TlsInfo {
    /// The protocol version, as `TLSv1_3`.
    pub version: String,
    /// The cipher suite, as `TLS13_AES_256_GCM_SHA384`.
    pub cipher_suite: String,
    /// The protocol ALPN chose (`h2`, `http/1.1`), if any.
    pub alpn: Option<Vec<u8>>,
}

impl Stream {
    /// Whether TLS chose HTTP/2 by ALPN.
    pub(crate) fn negotiated_h2(&self) -> bool {
        match &self.io {
            #[cfg(feature = "tls")]
            Io::Tls(tls) => tls.inner().get_ref().1.alpn_protocol() == Some(b"h2"),
            Io::Plain(_) => false,
        }
    }
}

impl HyperConnection for Stream {
    fn connected(&self) -> Connected {
        let connected = Connected::new().extra(self.peer.clone());
        if self.negotiated_h2() {
            connected.negotiated_h2()
        } else {
            connected
        }
    }
}

macro_rules! delegate {
    ($self:ident, $io:ident => $e:expr) => {
        match &mut $self.io {
            Io::Plain($io) => $e,
            #[cfg(feature = "tls")]
            Io::Tls($io) => {
                let $io = &mut **$io;
                $e
            }
        }
    };
}

impl hyper::rt::Read for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        delegate!(this, io => Pin::new(io).poll_read(cx, buf))
    }
}

impl Stream {
    /// A write's result, unless the server stopped reading: a server that
    /// refuses an upload (413) answers and stops reading, and the answer
    /// is waiting to be read. So from then on what is written is dropped
    /// and reported written, and hyper goes on to read the answer (or the
    /// end of the connection, if there is none), instead of failing with
    /// the broken pipe.
    fn written(&mut self, res: Poll<io::Result<usize>>, len: usize) -> Poll<io::Result<usize>> {
        match res {
            Poll::Ready(Err(e))
                if matches!(
                    e.kind(),
                    io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
                ) =>
            {
                tracing::debug!("the server stopped reading the request ({e}); reading its answer");
                self.unread = true;
                Poll::Ready(Ok(len))
            }
            res => res,
        }
    }
}

impl hyper::rt::Write for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.unread {
            return Poll::Ready(Ok(buf.len()));
        }
        let res = delegate!(this, io => Pin::new(io).poll_write(cx, buf));
        this.written(res, buf.len())
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let len = bufs.iter().map(|b| b.len()).sum();
        if this.unread {
            return Poll::Ready(Ok(len));
        }
        let res = delegate!(this, io => Pin::new(io).poll_write_vectored(cx, bufs));
        this.written(res, len)
    }

    fn is_write_vectored(&self) -> bool {
        match &self.io {
            Io::Plain(io) => io.is_write_vectored(),
            #[cfg(feature = "tls")]
            Io::Tls(io) => io.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.unread {
            return Poll::Ready(Ok(()));
        }
        delegate!(this, io => Pin::new(io).poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        delegate!(this, io => Pin::new(io).poll_shutdown(cx))
    }
}
