//! An HTTP client that takes pipe URLs: where .NET needs a hand-written
//! `ConnectCallback`, pipehttp needs `http://pipe:/NAME:/path`.
//!
//! ```no_run
//! # async fn run() -> pipehttp::Result<()> {
//! let client = pipehttp::Client::new();
//! let text = client
//!     .get("http://pipe:/my-test-pipe:/test")
//!     .send()
//!     .await?
//!     .text()
//!     .await?;
//! assert_eq!(text, "Hello world!");
//! # Ok(()) }
//! ```
//!
//! One connection pool per endpoint keeps connections alive between
//! requests. A request whose pooled connection turns out dead (the server
//! restarted) is sent again on a fresh connection when that is safe: its
//! method is idempotent, or it provably was not written.

mod body;
mod connector;
mod pool;
mod response;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[cfg(feature = "json")]
use http::header::CONTENT_TYPE;
use http::header::{HOST, HeaderName, HeaderValue};
use http::{HeaderMap, Method};
use tokio::time::Instant;

pub use self::body::Body;
#[cfg(feature = "tls")]
use self::connector::CLIENT_ALPN;
#[cfg(feature = "tls")]
pub use self::connector::TlsInfo;
pub use self::connector::{Connector, DEFAULT_CONNECT_TIMEOUT, Stream};
pub use self::pool::{Pool, PooledBody};
pub use self::response::Response;
use crate::address::{Endpoint, ListenAddress, RequestTarget, Scheme};
use crate::error::{Chain, Error, Kind, Result};
#[cfg(feature = "tls")]
use crate::tls::Trust;
use crate::transport::{CheckScope, ServerUsers};

/// How often a request that could not connect is tried again, beyond the
/// wait for the server that [`ClientBuilder::connect_timeout`] already gives.
///
/// ```
/// use std::time::Duration;
/// let policy = pipehttp::client::RetryPolicy::new(3, Duration::from_millis(200));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    attempts: u32,
    backoff: Duration,
}

impl RetryPolicy {
    /// Up to `attempts` more tries, waiting `backoff`, then twice that, and
    /// so on, between them.
    #[must_use]
    pub fn new(attempts: u32, backoff: Duration) -> Self {
        Self { attempts, backoff }
    }

    /// No retries (the default).
    #[must_use]
    pub fn none() -> Self {
        Self::new(0, Duration::ZERO)
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self::none()
    }
}

#[derive(Debug, Clone)]
struct Config {
    #[cfg(feature = "tls")]
    trust: Trust,
    #[cfg(feature = "tls")]
    tls_server_name: Option<String>,
    connect_timeout: Duration,
    timeout: Option<Duration>,
    retry: RetryPolicy,
    server_users: ServerUsers,
    wait_for_server: bool,
    http2_prior_knowledge: bool,
    http1_only: bool,
    pool_idle_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            #[cfg(feature = "tls")]
            trust: Trust::default(),
            #[cfg(feature = "tls")]
            tls_server_name: None,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            timeout: None,
            retry: RetryPolicy::none(),
            server_users: ServerUsers::default(),
            wait_for_server: true,
            http2_prior_knowledge: false,
            http1_only: false,
            pool_idle_timeout: Duration::from_secs(90),
        }
    }
}

/// An HTTP client for pipes, Unix sockets and TCP. Cheap to clone; clones
/// share their connection pools.
#[derive(Debug, Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: Config,
    pools: Mutex<Pools>,
}

#[derive(Debug, Default)]
struct Pools {
    /// Each pool with its endpoint (shared with responses, for messages)
    /// and the `Host` its requests get unless they name one.
    by_address: HashMap<ListenAddress, Route>,
    /// Made on the first https request: loading the platform's roots is
    /// work a cleartext-only client never needs.
    #[cfg(feature = "tls")]
    tls: Option<Arc<rustls::ClientConfig>>,
}

/// Settings for a [`Client`].
#[derive(Debug, Default)]
#[must_use = "a builder does nothing until build() is called"]
pub struct ClientBuilder {
    config: Config,
}

impl ClientBuilder {
    /// How long to wait for a server to exist and accept (default 5 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.config.connect_timeout = timeout;
        self
    }

    /// A default timeout for whole requests, body included (default none).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.config.timeout = Some(timeout);
        self
    }

    /// Retries for requests that could not connect.
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.config.retry = policy;
        self
    }

    /// Which server users to accept. By default a pipe name's server must
    /// run as this process's user or as root (Windows: SYSTEM), so that a
    /// process of another user that took the name first receives nothing;
    /// Unix socket paths, which the caller chose, are not checked. `true`
    /// checks them too; `false` accepts a server of any user everywhere, as
    /// [`any_server_user`](Self::any_server_user).
    ///
    /// A refused server fails the request before any byte of it is sent,
    /// with an error whose [`is_refused_peer`](crate::Error::is_refused_peer)
    /// is true.
    pub fn current_user_only(mut self, enabled: bool) -> Self {
        self.config.server_users.scope = if enabled {
            CheckScope::Local
        } else {
            CheckScope::Off
        };
        self
    }

    /// Whether to wait, up to the connect timeout, for a server that is not
    /// there yet (default true); see [`Connector::wait_for_server`].
    pub fn wait_for_server(mut self, wait: bool) -> Self {
        self.config.wait_for_server = wait;
        self
    }

    /// Also accept a server that runs as `user`: a name or numeric uid on
    /// Unix, an account name or SID on Windows. Each call adds one; an
    /// unknown name fails the request that would need it.
    ///
    /// ```
    /// let client = pipehttp::Client::builder().allow_server_user("www-data").build();
    /// ```
    pub fn allow_server_user(mut self, user: impl Into<String>) -> Self {
        self.config.server_users.allowed.push(user.into());
        self
    }

    /// Accept a server of any user: no check at all.
    pub fn any_server_user(self) -> Self {
        self.current_user_only(false)
    }

    /// Speak HTTP/2 from the first byte on cleartext connections.
    pub fn http2_prior_knowledge(mut self) -> Self {
        self.config.http2_prior_knowledge = true;
        self
    }

    /// Speak HTTP/1.1 only: over TLS, offer only `http/1.1` in ALPN (by
    /// default `h2` is offered first).
    pub fn http1_only(mut self) -> Self {
        self.config.http1_only = true;
        self
    }

    /// Trust this CA certificate (PEM; a file may hold several) beside the
    /// platform's roots. A server whose own certificate is exactly this one
    /// is trusted too, even when it is marked as a CA, as `openssl req
    /// -x509` makes them (curl, Python and .NET accept those; web PKI alone
    /// does not); its name and dates are still checked.
    #[cfg(feature = "tls")]
    ///
    /// ```
    /// # fn run(ca_pem: Vec<u8>) {
    /// let client = pipehttp::Client::builder().add_root_certificate_pem(ca_pem).build();
    /// # }
    /// ```
    pub fn add_root_certificate_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.config.trust.extra_roots.push(pem.into());
        self
    }

    /// Show this client certificate (a PEM chain, leaf first) and prove it
    /// with this private key (PEM) to servers that ask for one. A bad
    /// certificate or key fails the first https request.
    ///
    /// ```
    /// # fn run(cert: Vec<u8>, key: Vec<u8>) {
    /// let client = pipehttp::Client::builder().identity_pem(cert, key).build();
    /// # }
    /// ```
    #[cfg(feature = "tls")]
    pub fn identity_pem(mut self, cert: impl Into<Vec<u8>>, key: impl Into<Vec<u8>>) -> Self {
        self.config.trust.identity = Some((cert.into(), key.into()));
        self
    }

    /// Accept any server certificate. For development only: anyone who
    /// holds the name can read and change the traffic.
    #[cfg(feature = "tls")]
    pub fn danger_accept_invalid_certs(mut self, accept: bool) -> Self {
        self.config.trust.insecure = accept;
        self
    }

    /// Check server certificates for `name` (default: `localhost` over
    /// pipes and Unix sockets, the host over TCP).
    #[cfg(feature = "tls")]
    pub fn tls_server_name(mut self, name: impl Into<String>) -> Self {
        self.config.tls_server_name = Some(name.into());
        self
    }

    /// How long an unused pooled connection is kept (default 90 s).
    pub fn pool_idle_timeout(mut self, timeout: Duration) -> Self {
        self.config.pool_idle_timeout = timeout;
        self
    }

    /// The client.
    ///
    /// ```
    /// let client = pipehttp::Client::builder()
    ///     .connect_timeout(std::time::Duration::from_secs(1))
    ///     .build();
    /// ```
    #[must_use]
    pub fn build(self) -> Client {
        Client {
            inner: Arc::new(Inner {
                config: self.config,
                pools: Mutex::new(Pools::default()),
            }),
        }
    }
}

impl Default for Client {
    fn default() -> Self {
        Self::new()
    }
}

impl Client {
    /// A client with the default settings.
    ///
    /// ```
    /// let client = pipehttp::Client::new();
    /// ```
    #[must_use]
    pub fn new() -> Self {
        Self::builder().build()
    }

    /// A builder for a client with other settings.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// A request with any method to a target such as
    /// `http://pipe:/NAME:/path`, `http://unix:/PATH:/path` or an ordinary URL.
    ///
    /// ```no_run
    /// # async fn run() -> pipehttp::Result<()> {
    /// let res = pipehttp::Client::new()
    ///     .request(http::Method::DELETE, "http://pipe:/agent:/items/7")
    ///     .send()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn request<T>(&self, method: Method, target: T) -> RequestBuilder
    where
        T: TryInto<RequestTarget>,
        T::Error: Into<Error>,
    {
        RequestBuilder {
            draft: Box::new(Draft {
                client: self.clone(),
                method,
                target: target.try_into().map_err(Into::into),
                headers: HeaderMap::new(),
                body: Body::empty(),
                timeout: self.inner.config.timeout,
            }),
        }
    }

    /// A GET request.
    pub fn get<T>(&self, target: T) -> RequestBuilder
    where
        T: TryInto<RequestTarget>,
        T::Error: Into<Error>,
    {
        self.request(Method::GET, target)
    }

    /// A POST request.
    pub fn post<T>(&self, target: T) -> RequestBuilder
    where
        T: TryInto<RequestTarget>,
        T::Error: Into<Error>,
    {
        self.request(Method::POST, target)
    }

    /// A PUT request.
    pub fn put<T>(&self, target: T) -> RequestBuilder
    where
        T: TryInto<RequestTarget>,
        T::Error: Into<Error>,
    {
        self.request(Method::PUT, target)
    }

    /// A DELETE request.
    pub fn delete<T>(&self, target: T) -> RequestBuilder
    where
        T: TryInto<RequestTarget>,
        T::Error: Into<Error>,
    {
        self.request(Method::DELETE, target)
    }

    /// The connector this client's pool for `address` uses: its TLS
    /// settings, connect timeout and waiting, for callers that drive
    /// hyper's connection API themselves (one connection at a time, their
    /// own I/O).
    ///
    /// ```
    /// let client = pipehttp::Client::builder().wait_for_server(false).build();
    /// let address = "http://pipe:/my-test-pipe".parse()?;
    /// let connector = client.connector(&address)?;
    /// # Ok::<(), pipehttp::Error>(())
    /// ```
    pub fn connector(&self, address: &ListenAddress) -> Result<Connector> {
        let mut pools = self.inner.pools.lock().expect("pool map poisoned");
        self.make_connector(&mut pools, address)
    }

    fn make_connector(&self, pools: &mut Pools, address: &ListenAddress) -> Result<Connector> {
        let config = &self.inner.config;
        #[cfg_attr(not(feature = "tls"), allow(unused_mut))]
        let mut connector = Connector::for_endpoint(address.endpoint().clone())
            .connect_timeout(config.connect_timeout)
            .server_users(config.server_users.clone())
            .wait_for_server(config.wait_for_server);
        #[cfg(not(feature = "tls"))]
        if address.scheme() == Scheme::Https {
            return Err(tls_disabled(address));
        }
        #[cfg(not(feature = "tls"))]
        let _ = pools;
        #[cfg(feature = "tls")]
        if address.scheme() == Scheme::Https {
            let tls = match &pools.tls {
                Some(tls) => tls.clone(),
                None => {
                    let alpn: &[&[u8]] = if config.http2_prior_knowledge {
                        &CLIENT_ALPN[..1]
                    } else if config.http1_only {
                        &CLIENT_ALPN[1..]
                    } else {
                        &CLIENT_ALPN
                    };
                    pools.tls.insert(config.trust.client_config(alpn)?).clone()
                }
            };
            connector = connector.tls_config(tls)?;
            if let Some(name) = &config.tls_server_name {
                connector = connector.tls_server_name(name)?;
            }
        }
        Ok(connector)
    }

    fn route(&self, target: &RequestTarget) -> Result<Route> {
        let address = target.listen_address();
        let mut pools = self.inner.pools.lock().expect("pool map poisoned");
        if let Some(route) = pools.by_address.get(address) {
            return Ok(route.clone());
        }
        let config = &self.inner.config;
        let connector = self.make_connector(&mut pools, address)?;
        let pool = Pool::new(connector)
            .idle_timeout(config.pool_idle_timeout)
            .http2_only(config.http2_prior_knowledge);
        let route = Route {
            pool,
            endpoint: Arc::new(address.endpoint().clone()),
            host: HeaderValue::from_str(&target.host_header()).ok(),
        };
        pools.by_address.insert(address.clone(), route.clone());
        Ok(route)
    }
}

/// Where a client's requests to one listen address go.
#[derive(Debug, Clone)]
struct Route {
    pool: Pool<Body>,
    endpoint: Arc<Endpoint>,
    /// Made once: checking a header value costs on every request.
    host: Option<HeaderValue>,
}

/// A request being put together; [`send`](Self::send) sends it.
#[derive(Debug)]
#[must_use = "a request does nothing until send() is awaited"]
pub struct RequestBuilder {
    /// Boxed: a builder is moved by every call on it, and then into the
    /// request's future.
    draft: Box<Draft>,
}

#[derive(Debug)]
struct Draft {
    client: Client,
    method: Method,
    target: Result<RequestTarget>,
    headers: HeaderMap,
    body: Body,
    timeout: Option<Duration>,
}

impl RequestBuilder {
    /// Adds a header. An invalid name or value fails the request at `send`.
    ///
    /// ```
    /// let req = pipehttp::Client::new()
    ///     .get("http://pipe:/agent:/stats")
    ///     .header("accept", "application/json");
    /// ```
    pub fn header<K, V>(mut self, name: K, value: V) -> Self
    where
        K: TryInto<HeaderName>,
        K::Error: Into<http::Error>,
        V: TryInto<HeaderValue>,
        V::Error: Into<http::Error>,
    {
        if self.draft.target.is_err() {
            return self;
        }
        match (name.try_into(), value.try_into()) {
            (Ok(name), Ok(value)) => {
                self.draft.headers.append(name, value);
            }
            (Err(e), _) => {
                self.draft.target =
                    Err(Error::request("invalid header name").with_source(e.into()));
            }
            (Ok(name), Err(e)) => {
                let what = format!("invalid value for the header {name}");
                self.draft.target = Err(Error::request(what).with_source(e.into()));
            }
        }
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Body>) -> Self {
        self.draft.body = body.into();
        self
    }

    /// Sets a JSON body and `Content-Type: application/json`.
    ///
    /// ```
    /// let req = pipehttp::Client::new()
    ///     .put("http://pipe:/trace-agent:/v0.4/traces")
    ///     .json(&serde_json::json!([{"id": 1}]));
    /// ```
    #[cfg(feature = "json")]
    pub fn json<T: serde::Serialize + ?Sized>(mut self, value: &T) -> Self {
        match serde_json::to_vec(value) {
            Ok(bytes) => {
                self.draft
                    .headers
                    .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
                self.draft.body = bytes.into();
            }
            Err(e) => {
                self.draft.target =
                    Err(Error::request("cannot encode the JSON body").with_source(e));
            }
        }
        self
    }

    /// A timeout for this request, body included.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.draft.timeout = Some(timeout);
        self
    }

    /// Sends the request and waits for the response head.
    pub async fn send(self) -> Result<Response> {
        let Draft {
            client,
            method,
            target,
            headers,
            body,
            timeout,
        } = *self.draft;
        let target = target?;
        let Route {
            pool,
            endpoint,
            host,
        } = client.route(&target)?;
        let mut headers = headers;
        if let Some(host) = host {
            headers.entry(HOST).or_insert(host);
        }
        let deadline = timeout.map(|t| (Instant::now() + t, t));
        let attempt = Attempt {
            pool,
            method: &method,
            target: &target,
            headers: &headers,
        };
        // Pinned here once: the deadline's branch and the other then share
        // one copy of this large future instead of holding one each.
        let send = std::pin::pin!(attempt.send_with_retries(body, client.inner.config.retry));
        let res = match deadline {
            Some((at, timeout)) => tokio::time::timeout_at(at, send)
                .await
                .map_err(|_| Error::at(Kind::Timeout(timeout), &endpoint))??,
            None => send.await?,
        };
        Ok(Response::new(res, endpoint, deadline))
    }
}

struct Attempt<'a> {
    pool: Pool<Body>,
    method: &'a Method,
    target: &'a RequestTarget,
    headers: &'a HeaderMap,
}

impl Attempt<'_> {
    async fn send_with_retries(
        self,
        body: Body,
        policy: RetryPolicy,
    ) -> Result<http::Response<PooledBody<Body>>> {
        let mut body = Some(body);
        let mut connect_retries = 0;
        let mut stale_retried = false;
        loop {
            let this_body = body.take().expect("a body for every attempt");
            body = this_body.try_clone();
            let req = self.build(this_body);
            let err = match self.pool.send_on(req, stale_retried).await {
                Ok(res) => return Ok(res),
                Err(e) => e,
            };
            // Anything but a broken request is the connector's own error:
            // no server, a refused peer, TLS.
            if !err.is_request() {
                if connect_retries < policy.attempts && body.is_some() {
                    let pause = policy.backoff * 2u32.saturating_pow(connect_retries);
                    connect_retries += 1;
                    tracing::debug!("connect failed, retrying in {pause:?}: {}", Chain(&err));
                    // Boxed, so that the rare wait does not make every
                    // request's future larger.
                    Box::pin(tokio::time::sleep(pause)).await;
                    continue;
                }
                return Err(err);
            }
            // No response head came back. A request that is safe to repeat
            // gets one more try on a fresh connection: the usual cause is a
            // pooled connection to a server that has since restarted (the
            // pool's other kept connections most likely went to the same
            // server, so the fresh try closes them too).
            if !stale_retried && is_idempotent(self.method) && body.is_some() {
                stale_retried = true;
                tracing::debug!(
                    "request failed before any response, retrying: {}",
                    Chain(&err)
                );
                continue;
            }
            return Err(err);
        }
    }

    fn build(&self, body: Body) -> http::Request<Body> {
        let mut req = http::Request::new(body);
        *req.method_mut() = self.method.clone();
        *req.uri_mut() = self.target.uri().clone();
        *req.headers_mut() = self.headers.clone();
        req
    }
}

fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

/// The error for an https target in a build without TLS.
#[cfg(not(feature = "tls"))]
pub(crate) fn tls_disabled(address: &ListenAddress) -> Error {
    Error::options(format!(
        "{address}: https needs pipehttp built with its `tls` feature"
    ))
}
