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
mod takeover;
mod watchdog;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::sync::{Notify, Semaphore, mpsc, watch};

pub use self::service::{BodyError, RequestBody, ResponseBody};
use crate::address::ListenAddress;
#[cfg(feature = "config")]
use crate::config::Config;
use crate::error::{Error, Result};
use crate::options::{Limits, PipeOptions};
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
    limits: Limits,
    pipes: PipeOptions,
    shutdown_timeout: Duration,
}

/// Collects addresses and options; [`bind`](Self::bind) opens every endpoint.
#[derive(Debug, Default)]
#[must_use = "a builder does nothing until bind() is awaited"]
pub struct ServerBuilder {
    endpoints: Vec<(ListenAddress, Option<Certificate>)>,
    listeners: Vec<Listener>,
    default_certificate: Option<Certificate>,
    error: Option<Error>,
    limits: Limits,
    pipes: PipeOptions,
    shutdown_timeout: Option<Duration>,
    takeover: bool,
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

macro_rules! setter {
    ($(#[$doc:meta])* $name:ident: $ty:ty => $($field:ident).+) => {
        $(#[$doc])*
        pub fn $name(mut self, value: $ty) -> Self {
            self.$($field).+ = value;
            self
        }
    };
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
        self.endpoint(address, None)
    }

    /// Adds an `https://` address with its own certificate.
    #[cfg(feature = "tls")]
    pub fn listen_with_certificate<A>(self, address: A, certificate: Certificate) -> Self
    where
        A: TryInto<ListenAddress>,
        A::Error: Into<Error>,
    {
        self.endpoint(address, Some(certificate))
    }

    /// Keeps the address, or the first parse error for `bind` to report.
    fn endpoint<A>(mut self, address: A, certificate: Option<Certificate>) -> Self
    where
        A: TryInto<ListenAddress>,
        A::Error: Into<Error>,
    {
        match address.try_into() {
            Ok(address) => self.endpoints.push((address, certificate)),
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
    /// the name without a moment where it is unserved, then asks the old
    /// one to stop accepting and finish its requests. Only `http://`
    /// endpoints can be taken over.
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
                .extend(addresses.into_iter().map(|a| (a, None))),
            Err(e) => {
                self.error.get_or_insert(e.into());
            }
        }
        self
    }

    /// Everything a [`Config`] holds: its endpoints with their
    /// certificates, the default certificate, the limits and the transport
    /// options.
    ///
    /// ```no_run
    /// # async fn run() -> pipehttp::Result<()> {
    /// let config = pipehttp::Config::load(Some("pipehttp.toml".as_ref()))?;
    /// let server = pipehttp::Server::builder().config(&config).bind().await?;
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "config")]
    pub fn config(mut self, config: &Config) -> Self {
        for endpoint in &config.endpoints {
            let certificate = endpoint.certificate.as_ref().map(Certificate::from);
            self.endpoints.push((endpoint.url.clone(), certificate));
        }
        if let Some(default) = &config.default_certificate {
            self.default_certificate = Some(default.into());
        }
        self.limits = config.limits.clone();
        self.pipes = config.pipes.clone();
        self
    }

    /// Replaces all HTTP limits at once.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Replaces all transport options at once.
    pub fn pipe_options(mut self, pipes: PipeOptions) -> Self {
        self.pipes = pipes;
        self
    }

    setter!(
        /// Largest request body in bytes (`None`: no limit); 413 past it.
        max_request_body_size: Option<u64> => limits.max_request_body_size);
    setter!(
        /// Largest request head in bytes; 431 past it.
        max_request_headers_total_size: usize => limits.max_request_headers_total_size);
    setter!(
        /// How long a client may take to send a request head.
        request_headers_timeout: Duration => limits.request_headers_timeout);
    setter!(
        /// How long an idle connection is kept open.
        keep_alive_timeout: Duration => limits.keep_alive_timeout);
    setter!(
        /// Most connections served at once (`None`: no limit).
        max_concurrent_connections: Option<usize> => limits.max_concurrent_connections);
    setter!(
        /// Bytes read from a connection and not yet consumed before reading pauses.
        max_read_buffer_size: usize => pipes.max_read_buffer_size);
    setter!(
        /// Bytes queued for a connection before the handler is held back.
        max_write_buffer_size: usize => pipes.max_write_buffer_size);
    setter!(
        /// Windows: pipe instances waiting for clients at once.
        listener_queue_count: usize => pipes.listener_queue_count);
    setter!(
        /// Only the server's own user may connect.
        current_user_only: bool => pipes.current_user_only);
    setter!(
        /// Unix: the socket file mode when `current_user_only` is off.
        mode: Option<u32> => pipes.mode);

    /// Also admit `user` (a name or numeric uid on Unix, an account name or
    /// SID on Windows) beside the server's own; each call adds one. See
    /// [`PipeOptions::allow_users`].
    pub fn allow_user(mut self, user: impl Into<String>) -> Self {
        self.pipes.allow_users.push(user.into());
        self
    }

    /// Also admit the members of `group` (a name or numeric gid on Unix, an
    /// account name or SID on Windows); each call adds one. One group on
    /// Unix makes the socket file that group's, mode 0660, as dockerd's
    /// `--group`. See [`PipeOptions::allow_groups`].
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
        self.pipes.allow_groups.push(group.into());
        self
    }

    /// Windows: every pipe instance gets exactly this security descriptor,
    /// in SDDL, as Kestrel's `PipeSecurity`. See [`PipeOptions::pipe_sddl`].
    pub fn pipe_sddl(mut self, sddl: impl Into<String>) -> Self {
        self.pipes.pipe_sddl = Some(sddl.into());
        self
    }

    /// How long requests in flight may take to finish once a stop is asked
    /// (default 30 s); connections still open then are closed.
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = Some(timeout);
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
        if self.limits.max_request_headers_total_size == 0 {
            return Err(Error::options(
                "max_request_headers_total_size must be at least 1 byte",
            ));
        }
        let mut listeners = Vec::with_capacity(self.endpoints.len() + self.listeners.len());
        let mut predecessors = Vec::new();
        for (address, certificate) in &self.endpoints {
            let tls = tls::acceptor_for(
                address,
                certificate.as_ref(),
                self.default_certificate.as_ref(),
            )?;
            let listener = if self.takeover {
                if tls.is_some() {
                    return Err(Error::options(format!(
                        "{address}: only http:// endpoints can be taken over"
                    )));
                }
                let (listener, old) = Listener::bind_takeover(address, &self.pipes).await?;
                predecessors.extend(old.map(|old| (address.endpoint().to_string(), old)));
                listener
            } else {
                Listener::bind(address, &self.pipes).await?
            };
            listeners.push(Bound { listener, tls });
        }
        listeners.extend(self.listeners.into_iter().map(|listener| Bound {
            listener,
            tls: None,
        }));
        // The old servers are told to stop accepting only now that the new
        // listeners hold the names, so no client ever finds no one.
        for (describe, old) in predecessors {
            takeover::ask_to_hand_over(old, &describe).await;
        }
        Ok(Server {
            listeners,
            limits: self.limits,
            pipes: self.pipes,
            shutdown_timeout: self.shutdown_timeout.unwrap_or(DEFAULT_SHUTDOWN_TIMEOUT),
        })
    }
}

/// A listener and, for https, its TLS acceptor.
pub(crate) struct Bound {
    pub(crate) listener: Listener,
    pub(crate) tls: Option<tls::Acceptor>,
}

impl std::fmt::Debug for Bound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bound")
            .field("listener", &self.listener)
            .field("tls", &self.tls.is_some())
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
        let shared = Arc::new(Shared {
            http: http_builder(&self.limits, &self.pipes),
            slots: self
                .limits
                .max_concurrent_connections
                .map(|n| Arc::new(Semaphore::new(n))),
            limits: self.limits,
            waiting_room: Arc::new(Semaphore::new(1)),
            handover: Arc::new(Notify::new()),
        });
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
                tracing::info!("handing over to a new server; finishing requests in flight");
            }
        }
        let _ = phase_tx.send(Phase::Draining);
        // Each loop releases its name (a new server can take it at once),
        // accepts the clients already queued, and ends.
        while accept_loops.join_next().await.is_some() {}
        let drained =
            tokio::time::timeout(self.shutdown_timeout, async { open_rx.recv().await }).await;
        if drained.is_err() {
            tracing::warn!(
                "requests still running after {:?}; closing their connections",
                self.shutdown_timeout
            );
            let _ = phase_tx.send(Phase::Closing);
            open_rx.recv().await;
        }
        Ok(())
    }
}

/// What every connection of a server shares.
pub(crate) struct Shared {
    pub(crate) http: auto::Builder<TokioExecutor>,
    pub(crate) limits: Limits,
    pub(crate) slots: Option<Arc<Semaphore>>,
    /// One place for a connection past the limit: see `Admission`.
    pub(crate) waiting_room: Arc<Semaphore>,
    /// Notified when a new server asks this one to hand over.
    pub(crate) handover: Arc<Notify>,
}

fn http_builder(limits: &Limits, pipes: &PipeOptions) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    let head = limits.max_request_headers_total_size;
    builder
        .http1()
        .timer(TokioTimer::new())
        // The watchdog runs the headers timeout from the first byte of a
        // head; hyper's would also cut idle keep-alive connections.
        .header_read_timeout(None)
        // hyper's buffer holds what was read and not yet consumed: bodies
        // stream through it in reads of up to its size, and a head that
        // does not fit is answered with 431. A complete head over the limit
        // but within the buffer is caught by the service.
        .max_buf_size(head.max(BODY_READ_BUFFER));
    let window = u32::try_from(pipes.max_read_buffer_size).unwrap_or(u32::MAX);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(head).unwrap_or(u32::MAX))
        .initial_connection_window_size(window)
        .initial_stream_window_size(window)
        .max_send_buf_size(pipes.max_write_buffer_size);
    builder
}
