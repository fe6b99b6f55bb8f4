//! An HTTP server on named pipes, Unix sockets and TCP, Kestrel-style.
//!
//! Any tower service whose requests carry a [`RequestBody`] can be served;
//! an axum `Router` works as is.
//!
//! ```no_run
//! use http::{Request, Response};
//! use pipehttp::{RequestBody, Server};
//! //!
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

mod service;
mod watchdog;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio_rustls::TlsAcceptor;

use self::service::ConnService;
pub use self::service::{BodyError, RequestBody, ResponseBody};
use self::watchdog::{ConnState, Monitored};
use crate::address::{ListenAddress, Scheme};
use crate::error::{Error, Result};
use crate::options::{Limits, PipeOptions};
use crate::tls::Certificate;
use crate::transport::{Listener, PeerInfo};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

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
    default_certificate: Option<Certificate>,
    error: Option<Error>,
    limits: Limits,
    pipes: PipeOptions,
    shutdown_timeout: Option<Duration>,
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
    pub fn listen<A>(mut self, address: A) -> Self
    where
        A: TryInto<ListenAddress>,
        A::Error: Into<Error>,
    {
        match address.try_into() {
            Ok(address) => self.endpoints.push((address, None)),
            Err(e) => {
                self.error.get_or_insert(e.into());
            }
        }
        self
    }

    /// Adds an `https://` address with its own certificate.
    pub fn listen_with_certificate<A>(mut self, address: A, certificate: Certificate) -> Self
    where
        A: TryInto<ListenAddress>,
        A::Error: Into<Error>,
    {
        match address.try_into() {
            Ok(address) => self.endpoints.push((address, Some(certificate))),
            Err(e) => {
                self.error.get_or_insert(e.into());
            }
        }
        self
    }

    /// The certificate for every `https://` address that has none of its own.
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
        if self.endpoints.is_empty() {
            return Err(Error::InvalidOptions(
                "no address to listen on: add one with listen() or urls()".into(),
            ));
        }
        if self.limits.max_request_headers_total_size == 0 {
            return Err(Error::InvalidOptions(
                "max_request_headers_total_size must be at least 1 byte".into(),
            ));
        }
        let mut listeners = Vec::with_capacity(self.endpoints.len());
        for (address, certificate) in &self.endpoints {
            let tls = tls_for(
                address,
                certificate.as_ref(),
                self.default_certificate.as_ref(),
            )?;
            listeners.push(Bound {
                listener: Listener::bind(address, &self.pipes).await?,
                tls,
            });
        }
        Ok(Server {
            listeners,
            limits: self.limits,
            pipes: self.pipes,
            shutdown_timeout: self.shutdown_timeout.unwrap_or(DEFAULT_SHUTDOWN_TIMEOUT),
        })
    }
}

/// The TLS configuration of one endpoint: its own certificate, else the
/// default one; `https` without either, or `http` with a certificate of its
/// own, is a mistake worth stopping for.
fn tls_for(
    address: &ListenAddress,
    own: Option<&Certificate>,
    default: Option<&Certificate>,
) -> Result<Option<TlsAcceptor>> {
    match (address.scheme(), own.or(default)) {
        (Scheme::Http, _) if own.is_some() => Err(Error::Tls(format!(
            "{address} has a certificate but is not https: write https://"
        ))),
        (Scheme::Http, _) => Ok(None),
        (Scheme::Https, Some(certificate)) => Ok(Some(TlsAcceptor::from(
            certificate.server_config(&address.to_string())?,
        ))),
        (Scheme::Https, None) => Err(Error::Tls(format!(
            "{address} needs a certificate: give one with --cert and --key, \
             certificates.default in the config file, or ServerBuilder::default_certificate"
        ))),
    }
}

/// A listener and, for https, its TLS acceptor.
struct Bound {
    listener: Listener,
    tls: Option<TlsAcceptor>,
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

/// Where a stop is in its course, as connections see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
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
        S: tower_service::Service<Request<RequestBody>, Response = Response<B>>
            + Clone
            + Send
            + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        self.serve_with_shutdown(service, crate::transport::stop_signal())
            .await
    }

    /// Serves `service` until `signal` resolves, then stops accepting,
    /// removes the socket files, lets requests in flight finish within the
    /// shutdown timeout and closes what is left.
    pub async fn serve_with_shutdown<S, B, F>(self, service: S, signal: F) -> Result<()>
    where
        S: tower_service::Service<Request<RequestBody>, Response = Response<B>>
            + Clone
            + Send
            + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
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
        });
        let (phase_tx, phase_rx) = watch::channel(Phase::Serving);
        // Every connection holds a sender; recv() returns None once all are gone.
        let (open_tx, mut open_rx) = mpsc::channel::<()>(1);
        let mut accept_loops = tokio::task::JoinSet::new();
        for bound in self.listeners {
            accept_loops.spawn(accept_loop(
                bound,
                shared.clone(),
                service.clone(),
                phase_rx.clone(),
                open_tx.clone(),
            ));
        }
        drop(open_tx);

        signal.await;
        tracing::info!("stopping: no new connections; finishing requests in flight");
        let _ = phase_tx.send(Phase::Draining);
        // Dropping the listeners removes the socket files now, so a new
        // server can take the name while this one drains.
        accept_loops.shutdown().await;
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

struct Shared {
    http: auto::Builder<TokioExecutor>,
    limits: Limits,
    slots: Option<Arc<Semaphore>>,
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
        // A head that does not fit the buffer is answered with 431.
        .max_buf_size(head.max(8192));
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

async fn accept_loop<S, B>(
    Bound { listener, tls }: Bound,
    shared: Arc<Shared>,
    service: S,
    phase: watch::Receiver<Phase>,
    open: mpsc::Sender<()>,
) where
    S: tower_service::Service<Request<RequestBody>, Response = Response<B>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let describe = listener.local_address().endpoint().describe();
    loop {
        // Past max_concurrent_connections the loop stops accepting, so new
        // clients queue in the OS until a connection closes.
        let permit = match &shared.slots {
            Some(slots) => Some(
                slots
                    .clone()
                    .acquire_owned()
                    .await
                    .expect("the semaphore is never closed"),
            ),
            None => None,
        };
        let conn = match listener.accept().await {
            Ok(conn) => conn,
            Err(e) if is_connection_error(&e) => continue,
            Err(e) => {
                // Out of descriptors or memory: give the system a moment
                // rather than spin; the listener itself stays open.
                tracing::warn!("{describe}: accept failed: {e}; retrying");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let shared = shared.clone();
        let service = service.clone();
        let phase = phase.clone();
        let open = open.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let peer = conn.peer().clone();
            match tls {
                None => serve_connection(conn, peer, &shared, service, phase).await,
                Some(tls) => {
                    // A client gets the headers timeout to finish its
                    // handshake too, so a silent one cannot hold a slot.
                    let handshake = tokio::time::timeout(
                        shared.limits.request_headers_timeout,
                        tls.accept(conn),
                    );
                    match handshake.await {
                        Ok(Ok(stream)) => {
                            serve_connection(stream, peer, &shared, service, phase).await;
                        }
                        Ok(Err(e)) => tracing::debug!("TLS handshake failed: {e}"),
                        Err(_) => tracing::debug!("TLS handshake timed out"),
                    }
                }
            }
            drop(permit);
            drop(open);
        });
    }
}

/// Errors that concern one would-be connection, not the listener.
fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset, Interrupted};
    matches!(
        e.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset | Interrupted
    )
}

async fn serve_connection<I, S, B>(
    conn: I,
    peer: PeerInfo,
    shared: &Shared,
    service: S,
    mut phase: watch::Receiver<Phase>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: tower_service::Service<Request<RequestBody>, Response = Response<B>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let state = Arc::new(ConnState::default());
    let service = ConnService {
        service,
        peer,
        max_body: shared.limits.max_request_body_size,
        state: state.clone(),
    };
    let io = TokioIo::new(Monitored::new(conn, state.clone()));
    let conn = shared.http.serve_connection_with_upgrades(io, service);
    tokio::pin!(conn);
    let watchdog = watchdog::watch(&state, &shared.limits);
    tokio::pin!(watchdog);
    if *phase.borrow() != Phase::Serving {
        conn.as_mut().graceful_shutdown();
    }
    loop {
        tokio::select! {
            res = conn.as_mut() => {
                if let Err(e) = res {
                    tracing::debug!("connection ended: {e}");
                }
                return;
            }
            () = &mut watchdog => return,
            changed = phase.changed() => match (changed, *phase.borrow()) {
                (Err(_), _) | (_, Phase::Closing) => return,
                (_, Phase::Draining) => conn.as_mut().graceful_shutdown(),
                (_, Phase::Serving) => {}
            },
        }
    }
}
