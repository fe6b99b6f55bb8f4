//! An HTTP server on named pipes, Unix sockets and TCP, Kestrel-style.
//!
//! Any tower service whose requests carry a [`RequestBody`] can be served;
//! an axum `Router` works as is.
//!
//! ```no_run
//! use http::{Request, Response};
//! use pipehttp::{RequestBody, Server};
//! use std::convert::Infallible;
//!
//! # async fn run() -> pipehttp::Result<()> {
//! let hello = tower::service_fn(|_req: Request<RequestBody>| async {
//!     Ok::<_, Infallible>(Response::new("Hello world!".to_owned()))
//! });
//! Server::builder()
//!     .listen("http://pipe:/my-test-pipe")
//!     .max_request_body_size(Some(1_000_000))
//!     .bind()
//!     .await?
//!     .serve(hello)
//!     .await
//! # }
//! ```

mod connection;
mod service;
mod sniff;
mod watchdog;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::sync::{Notify, Semaphore, mpsc, watch};

pub use self::service::{BodyError, RequestBody, ResponseBody};
use crate::address::{ListenAddress, Scheme};
#[cfg(feature = "config")]
use crate::config::Config;
use crate::error::{Error, Result};
use crate::options::{
    ClientCertificateMode, Limits, PipeOptions, Protocols, ServerOptions, SslProtocols,
};
use crate::tls::{self, Certificate};
use crate::transport::Listener;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What a server can serve: a cloneable tower service from requests with a
/// [`RequestBody`] to responses with any [`HttpBody`]. Every such service
/// has it, an axum `Router` and tonic's `Routes` among them.
pub trait HttpService<B>:
    tower_service::Service<
        Request<RequestBody>,
        Response = Response<B>,
        Future: Send + 'static,
        Error: Into<BoxError>,
    > + Clone
    + Send
    + 'static
{
}

impl<S, B> HttpService<B> for S
where
    S: tower_service::Service<Request<RequestBody>, Response = Response<B>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
{
}

/// What a served response can carry: a body of `Bytes` that can cross
/// threads. Every such body has it.
pub trait HttpBody: Body<Data = Bytes, Error: Into<BoxError>> + Send + 'static {}

impl<B> HttpBody for B
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
}

/// hyper's HTTP/1 read buffer, unless the head limit is larger: big enough
/// for bodies to stream in few reads, small enough that junk sent before a
/// request line is cut off early.
const BODY_READ_BUFFER: usize = 128 * 1024;

/// How long requests in flight may take to finish after a stop is asked,
/// unless set with [`ServerBuilder::shutdown_timeout`].
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);

/// The entry point: `Server::builder()`.
#[derive(Debug)]
pub struct Server {
    listeners: Vec<Bound>,
    options: ServerOptions,
}

/// Collects addresses and options; [`bind`](Self::bind) opens every endpoint.
///
/// Every option of the schema ([`crate::options`]) has a setter here of
/// the same name, such as [`max_request_body_size`](Self::max_request_body_size);
/// a value out of its bounds is reported by [`bind`](Self::bind).
#[derive(Debug, Default)]
#[must_use = "a builder does nothing until bind() is awaited"]
pub struct ServerBuilder {
    endpoints: Vec<(ListenAddress, EndpointOptions)>,
    listeners: Vec<Listener>,
    default_certificate: Option<Certificate>,
    error: Option<Error>,
    pub(crate) options: ServerOptions,
    takeover: bool,
    not_applied: Vec<String>,
}

/// What one endpoint may set for itself over the builder's endpoint
/// defaults ([`ServerBuilder::protocols`] and the like), as a Kestrel
/// endpoint's configuration does.
///
/// ```
/// use pipehttp::server::EndpointOptions;
/// use pipehttp::options::Protocols;
/// let builder = pipehttp::Server::builder()
///     .listen_with("http://pipe:/h1-only", EndpointOptions::new().protocols(Protocols::Http1));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct EndpointOptions {
    /// Its certificate, for https.
    pub(crate) certificate: Option<Certificate>,
    /// Its HTTP versions.
    pub protocols: Option<Protocols>,
    /// Its TLS versions.
    pub ssl_protocols: Option<SslProtocols>,
    /// Whether it asks for client certificates.
    pub client_certificate_mode: Option<ClientCertificateMode>,
}

/// `EndpointOptions`' setters: each sets its field of the same name.
macro_rules! endpoint_setters {
    ($($(#[$attr:meta])* $field:ident: $ty:ty,)*) => {$(
        $(#[$attr])*
        #[must_use]
        pub fn $field(mut self, $field: $ty) -> Self {
            self.$field = Some($field);
            self
        }
    )*};
}

impl EndpointOptions {
    /// Everything from the builder's defaults.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    endpoint_setters! {
        /// Its own certificate.
        #[cfg(feature = "tls")]
        certificate: Certificate,
        /// Its HTTP versions.
        protocols: Protocols,
        /// Its TLS versions.
        ssl_protocols: SslProtocols,
        /// Whether it asks for client certificates.
        client_certificate_mode: ClientCertificateMode,
    }
}

impl Server {
    /// A builder with Kestrel's defaults and no address yet.
    ///
    /// ```
    /// let builder = pipehttp::Server::builder().listen("http://pipe:/my-test-pipe");
    /// ```
    pub fn builder() -> ServerBuilder {
        ServerBuilder::default()
    }
}

impl ServerBuilder {
    /// Adds one listen address: `http://pipe:/NAME`, `http://unix:/PATH`,
    /// `http://HOST:PORT`, or a parsed [`ListenAddress`]. A malformed
    /// address is reported by [`bind`](Self::bind).
    pub fn listen<A>(self, address: A) -> Self
    where
        A: TryInto<ListenAddress>,
        A::Error: Into<Error>,
    {
        self.listen_with(address, EndpointOptions::new())
    }

    /// Adds an `https://` address with its own certificate.
    #[cfg(feature = "tls")]
    pub fn listen_with_certificate<A>(self, address: A, certificate: Certificate) -> Self
    where
        A: TryInto<ListenAddress>,
        A::Error: Into<Error>,
    {
        self.listen_with(address, EndpointOptions::new().certificate(certificate))
    }

    /// Adds one listen address with settings of its own. A malformed
    /// address is reported by [`bind`](Self::bind).
    pub fn listen_with<A>(mut self, address: A, options: EndpointOptions) -> Self
    where
        A: TryInto<ListenAddress>,
        A::Error: Into<Error>,
    {
        match address.try_into() {
            Ok(address) => self.endpoints.push((address, options)),
            Err(e) => {
                self.error.get_or_insert(e.into());
            }
        }
        self
    }

    /// Adds a listener bound already, such as one from
    /// [`Listener::from_systemd`]; it is served over cleartext HTTP.
    ///
    /// ```no_run
    /// # use pipehttp::server::{HttpBody, HttpService};
    /// # async fn run<B: HttpBody>(app: impl HttpService<B>) -> pipehttp::Result<()> {
    /// use pipehttp::{Server, transport::Listener};
    /// let mut builder = Server::builder();
    /// for listener in Listener::from_systemd()? {
    ///     builder = builder.listener(listener);
    /// }
    /// builder.bind().await?.serve(app).await
    /// # }
    /// ```
    pub fn listener(mut self, listener: Listener) -> Self {
        self.listeners.push(listener);
        self
    }

    /// Take over pipe and Unix socket names from a live server of the same
    /// user instead of failing with "already in use": the new server takes
    /// the name without a moment where it is unserved, and the old one,
    /// which watches its names, stops accepting and finishes its requests.
    /// Only `http://` endpoints can be taken over.
    ///
    /// A server that loses a name this way hands over all of its
    /// endpoints. No request can make a server hand over: only a process
    /// that can bind the name can. HTTP/1 responses of a server that hands
    /// over carry `Connection: close`; its idle connections take one more
    /// request (for up to a second) before they close, and HTTP/2 clients
    /// get a GOAWAY that names the last request served. A client loses no
    /// request if it opens a new connection when told to close, and sends
    /// again a request that HTTP/2 refused or that met a connection closed
    /// while idle (for a non-idempotent request, only when no byte of it was
    /// written): `pipehttp::Client` and most HTTP clients do.
    pub fn takeover(mut self, enabled: bool) -> Self {
        self.takeover = enabled;
        self
    }

    /// The certificate for every `https://` address that has none of its own.
    #[cfg(feature = "tls")]
    pub fn default_certificate(mut self, certificate: Certificate) -> Self {
        self.default_certificate = Some(certificate);
        self
    }

    /// Adds every address of a `;`-separated list, as `PIPEHTTP_URLS` holds it.
    pub fn urls(mut self, list: &str) -> Self {
        match ListenAddress::parse_list(list) {
            Ok(addresses) => self
                .endpoints
                .extend(addresses.into_iter().map(|a| (a, EndpointOptions::new()))),
            Err(e) => {
                self.error.get_or_insert(e.into());
            }
        }
        self
    }

    /// Everything a [`Config`] holds: its endpoints with their own
    /// settings, the default certificate and every option. The keys it
    /// accepted but cannot apply are logged once at bind.
    ///
    /// ```no_run
    /// # async fn run() -> pipehttp::Result<()> {
    /// let config = pipehttp::Config::load(Some("appsettings.json".as_ref()))?;
    /// let server = pipehttp::Server::builder().config(&config).bind().await?;
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "config")]
    pub fn config(mut self, config: &Config) -> Self {
        for endpoint in &config.endpoints {
            let options = EndpointOptions {
                certificate: endpoint.certificate.as_ref().map(Certificate::from),
                protocols: endpoint.protocols,
                ssl_protocols: endpoint.ssl_protocols,
                client_certificate_mode: endpoint.client_certificate_mode,
            };
            self.endpoints.push((endpoint.url.clone(), options));
        }
        if let Some(default) = &config.default_certificate {
            self.default_certificate = Some(default.into());
        }
        self.options = config.options.clone();
        self.not_applied.clone_from(&config.not_applied);
        self
    }

    /// Replaces every option at once.
    pub fn options(mut self, options: ServerOptions) -> Self {
        self.options = options;
        self
    }

    /// Also admits `user` (a name or numeric uid on Unix, an account name
    /// or SID on Windows) beside the server's own; each call adds one to
    /// [`PipeOptions::allow_users`].
    pub fn allow_user(mut self, user: impl Into<String>) -> Self {
        self.options.pipes.allow_users.push(user.into());
        self
    }

    /// Also admits the members of `group` (a name or numeric gid on Unix,
    /// an account name or SID on Windows); each call adds one to
    /// [`PipeOptions::allow_groups`]. One group on Unix makes the socket
    /// file that group's, mode 0660, as dockerd's `--group`.
    ///
    /// ```no_run
    /// # async fn run() -> pipehttp::Result<()> {
    /// let server = pipehttp::Server::builder()
    ///     .listen("http://pipe:/agent")
    ///     .allow_group("docker")
    ///     .bind()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn allow_group(mut self, group: impl Into<String>) -> Self {
        self.options.pipes.allow_groups.push(group.into());
        self
    }

    /// Replaces all HTTP limits at once.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.options.limits = limits;
        self
    }

    /// Replaces all transport options at once.
    pub fn pipe_options(mut self, pipes: PipeOptions) -> Self {
        self.options.pipes = pipes;
        self
    }

    /// Opens every endpoint. Clients may connect from the moment this
    /// returns: their connections wait until the server is served.
    pub async fn bind(self) -> Result<Server> {
        if let Some(e) = self.error {
            return Err(e);
        }
        if self.endpoints.is_empty() && self.listeners.is_empty() {
            return Err(Error::options(
                "no address to listen on: add one with ServerBuilder::listen or ServerBuilder::urls",
            ));
        }
        self.options
            .validate()
            .map_err(|e| Error::options(format!("ServerBuilder::{e}")))?;
        if !self.not_applied.is_empty() {
            tracing::info!(
                "accepted but not applicable here: {}",
                self.not_applied.join("; ")
            );
        }
        // The transport buffers are the smaller of the transport's own
        // sizes and the HTTP limits, as both of Kestrel's layers apply.
        let mut transport = self.options.pipes.clone();
        transport.max_read_buffer_size = self.options.read_buffer_size();
        transport.max_write_buffer_size = self.options.write_buffer_size();
        let defaults = &self.options.endpoint_defaults;
        let mut listeners = Vec::with_capacity(self.endpoints.len() + self.listeners.len());
        for (address, own) in &self.endpoints {
            let protocols = own.protocols.unwrap_or(defaults.protocols);
            let settings = tls::Settings {
                protocols,
                versions: own.ssl_protocols.unwrap_or(defaults.ssl_protocols),
                client_certificates: own
                    .client_certificate_mode
                    .unwrap_or(defaults.client_certificate_mode),
            };
            // An endpoint's own certificate, else the default one; `http`
            // with a certificate of its own is a mistake worth stopping for.
            let tls = match address.scheme() {
                Scheme::Http if own.certificate.is_some() => {
                    return Err(Error::options(format!(
                        "{address} has a certificate but is not https: write https://"
                    )));
                }
                Scheme::Http => None,
                Scheme::Https => Some(tls::acceptor_for(
                    address,
                    own.certificate
                        .as_ref()
                        .or(self.default_certificate.as_ref()),
                    &settings,
                )?),
            };
            let listener = if self.takeover {
                if tls.is_some() {
                    return Err(Error::options(format!(
                        "{address}: only http:// endpoints can be taken over"
                    )));
                }
                let (listener, old) = Listener::bind_takeover(address, &transport).await?;
                for pid in old {
                    tracing::info!(
                        "{}: took the name over from pid {pid}, which now drains",
                        address.endpoint()
                    );
                }
                listener
            } else {
                Listener::bind(address, &transport).await?
            };
            listeners.push(Bound {
                listener,
                tls,
                protocols,
            });
        }
        listeners.extend(self.listeners.into_iter().map(|listener| Bound {
            listener,
            tls: None,
            protocols: defaults.protocols,
        }));
        Ok(Server {
            listeners,
            options: self.options,
        })
    }
}

/// A listener, for https its TLS acceptor, and the HTTP versions it serves.
pub(crate) struct Bound {
    pub(crate) listener: Listener,
    pub(crate) tls: Option<tls::Acceptor>,
    pub(crate) protocols: Protocols,
}

impl std::fmt::Debug for Bound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bound")
            .field("listener", &self.listener)
            .field("tls", &self.tls.is_some())
            .field("protocols", &self.protocols)
            .finish()
    }
}

/// Where the server is: the [`Server::local_addresses`] entry for one endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoundAddress {
    /// The address, with the real port for TCP port 0.
    pub address: ListenAddress,
    /// The socket file or pipe path; `None` for TCP.
    pub path: Option<std::path::PathBuf>,
}

impl std::fmt::Display for BoundAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.path {
            Some(path) => write!(f, "{} ({})", self.address, path.display()),
            None => write!(f, "{}", self.address),
        }
    }
}

/// Where a stop is in its course, as connections see it; in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Phase {
    Serving,
    Draining,
    Closing,
}

impl Server {
    /// Every endpoint the server listens on.
    #[must_use]
    pub fn local_addresses(&self) -> Vec<BoundAddress> {
        self.listeners
            .iter()
            .map(|b| BoundAddress {
                address: b.listener.local_address().clone(),
                path: b.listener.path().map(ToOwned::to_owned),
            })
            .collect()
    }

    /// Serves `service` until SIGINT or SIGTERM (Ctrl-C on Windows), then
    /// stops gracefully.
    pub async fn serve<S, B>(self, service: S) -> Result<()>
    where
        S: HttpService<B>,
        B: HttpBody,
    {
        self.serve_with_shutdown(service, crate::transport::stop_signal())
            .await
    }

    /// Serves `service` until `signal` resolves, then stops accepting,
    /// removes the socket files, lets requests in flight finish within the
    /// shutdown timeout and closes what is left.
    pub async fn serve_with_shutdown<S, B, F>(self, service: S, signal: F) -> Result<()>
    where
        S: HttpService<B>,
        B: HttpBody,
        F: Future<Output = ()> + Send,
    {
        for bound in self.local_addresses() {
            tracing::info!("Now listening on: {bound}");
        }
        let limits = &self.options.limits;
        let shared = Arc::new(Shared {
            http1: http1_builder(limits),
            http2: http2_builder(&self.options),
            slots: limits
                .max_concurrent_connections
                .map(|n| Arc::new(Semaphore::new(n))),
            upgrades: limits
                .max_concurrent_upgraded_connections
                .map(|n| Arc::new(Semaphore::new(n))),
            limits: limits.clone(),
            add_server_header: self.options.add_server_header,
            handover: Arc::new(Notify::new()),
        });
        let shutdown_timeout = self.options.shutdown_timeout;
        let (phase_tx, phase_rx) = watch::channel(Phase::Serving);
        // Every connection holds a sender; recv() returns None once all are gone.
        let (open_tx, mut open_rx) = mpsc::channel::<()>(1);
        let mut accept_loops = tokio::task::JoinSet::new();
        for bound in self.listeners {
            accept_loops.spawn(connection::accept_loop(
                bound,
                shared.clone(),
                service.clone(),
                phase_rx.clone(),
                open_tx.clone(),
            ));
        }
        drop(open_tx);

        tokio::select! {
            () = signal => {
                tracing::info!("stopping: no new connections; finishing requests in flight");
            }
            () = shared.handover.notified() => {
                tracing::info!("another server serves the name now; finishing requests in flight");
            }
        }
        let _ = phase_tx.send(Phase::Draining);
        // Each loop releases its name (a new server can take it at once),
        // accepts the clients already queued, and ends.
        while accept_loops.join_next().await.is_some() {}
        let drained = tokio::time::timeout(shutdown_timeout, async { open_rx.recv().await }).await;
        if drained.is_err() {
            tracing::warn!(
                "requests still running after {shutdown_timeout:?}; closing their connections"
            );
            let _ = phase_tx.send(Phase::Closing);
            open_rx.recv().await;
        }
        Ok(())
    }
}

/// What every connection of a server shares.
pub(crate) struct Shared {
    /// HTTP/1.1 connections (an endpoint that allows both versions tells
    /// them apart by the first bytes: see `sniff`).
    pub(crate) http1: hyper::server::conn::http1::Builder,
    pub(crate) http2: hyper::server::conn::http2::Builder<TokioExecutor>,
    pub(crate) limits: Limits,
    pub(crate) add_server_header: bool,
    pub(crate) slots: Option<Arc<Semaphore>>,
    /// Slots for upgraded connections, when they are limited.
    pub(crate) upgrades: Option<Arc<Semaphore>>,
    /// Notified when another server has taken one of this one's names.
    pub(crate) handover: Arc<Notify>,
}

fn http1_builder(limits: &Limits) -> hyper::server::conn::http1::Builder {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        // The watchdog runs the headers timeout from the first byte of
        // a head; hyper's would also cut idle keep-alive connections.
        .header_read_timeout(None)
        // hyper's buffer holds what was read and not yet consumed:
        // bodies stream through it in reads of up to its size, and a
        // head that does not fit is answered with 431. A complete head
        // over the limit but within the buffer is caught by the service.
        .max_buf_size(limits.max_request_headers_total_size.max(BODY_READ_BUFFER))
        .max_headers(limits.max_request_header_count);
    builder
}

fn http2_builder(options: &ServerOptions) -> hyper::server::conn::http2::Builder<TokioExecutor> {
    let limits = &options.limits;
    let http2 = &limits.http2;
    // The flow-control windows are what the server buffers of request
    // bodies: never more than the read buffer.
    let read_buffer = u32::try_from(options.read_buffer_size()).unwrap_or(u32::MAX);
    let mut h2 = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    h2.timer(TokioTimer::new())
        .max_header_list_size(
            u32::try_from(limits.max_request_headers_total_size).unwrap_or(u32::MAX),
        )
        .initial_connection_window_size(http2.initial_connection_window_size.min(read_buffer))
        .initial_stream_window_size(http2.initial_stream_window_size.min(read_buffer))
        .max_concurrent_streams(http2.max_streams_per_connection)
        .max_frame_size(http2.max_frame_size)
        .header_table_size(http2.header_table_size)
        .max_send_buf_size(options.write_buffer_size());
    if let Some(delay) = http2.keep_alive_ping_delay {
        h2.keep_alive_interval(delay)
            .keep_alive_timeout(http2.keep_alive_ping_timeout);
    }
    h2
}
