//! Kept-alive connections to one endpoint, on hyper's client connections.
//!
//! [`Client`](super::Client) keeps one pool per endpoint, and callers that
//! bring their own body types (a reverse proxy) can keep one themselves.
//! An HTTP/1 connection goes back to the pool when its response body has
//! been read to its end, by the body itself: a request costs no task of its
//! own, as one does in hyper-util's pooled client (which spawns one per
//! request to wait for the connection to be ready again). An HTTP/2
//! connection (prior knowledge, or `h2` chosen by ALPN) is shared by every
//! request at once. Connections are reused newest first; one found closed
//! is dropped, and a request that was never written on it is sent on
//! another.

use std::fmt;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{HOST, HeaderValue};
use http::uri::{Authority, PathAndQuery};
use http::{Method, Request, Response, Uri, Version};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::{TrySendError, http1, http2};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::time::Instant;

use super::connector::Connector;
use crate::error::{Error, Kind, Result};
use crate::transport::PeerInfo;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The most idle HTTP/1 connections kept; more are closed once their
/// response is read.
const MAX_IDLE: usize = 1024;

/// Kept-alive connections to one endpoint, for any request body type.
///
/// Requests carry an absolute URI (`http://localhost/path`): HTTP/1 gets
/// the path and a `Host` header made from it (unless the request has
/// one), HTTP/2 gets `:authority` and `:scheme`. HTTP/1 upgrades work:
/// after a `101 Switching Protocols` answer, `hyper::upgrade::on(response)`
/// gives the connection, which never returns to the pool.
///
/// ```no_run
/// # async fn run() -> pipehttp::Result<()> {
/// use http_body_util::{BodyExt, Empty};
/// let connector = pipehttp::client::Connector::new("http://pipe:/agent")?;
/// let pool = pipehttp::client::Pool::new(connector);
/// let req = http::Request::get("http://localhost/info")
///     .body(Empty::<bytes::Bytes>::new())
///     .expect("a valid request");
/// let res = pool.send(req).await?;
/// let body = res.into_body().collect().await.expect("the whole body").to_bytes();
/// # Ok(()) }
/// ```
pub struct Pool<B> {
    shared: Arc<Shared<B>>,
}

impl<B> Clone for Pool<B> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl<B> fmt::Debug for Pool<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("endpoint", self.shared.connector.endpoint())
            .field("http2_only", &self.shared.http2_only)
            .finish_non_exhaustive()
    }
}

struct Shared<B> {
    connector: Connector,
    http2_only: bool,
    idle_timeout: Duration,
    idle: Mutex<Idle<B>>,
    /// Whether a task is closing the connections kept past the idle
    /// timeout; there is one while any is kept.
    reaping: AtomicBool,
    /// Starts that task: made where `B` is known to be `Send`, which a
    /// body returning its connection does not know.
    start_reaper: fn(&Arc<Shared<B>>),
}

struct Idle<B> {
    /// HTTP/1 connections waiting for a request, the newest last.
    http1: Vec<Kept<http1::SendRequest<B>>>,
    /// The HTTP/2 connection every request shares, and its server. It
    /// has no idle time to keep: it is never handed out alone.
    http2: Option<(http2::SendRequest<B>, Arc<PeerInfo>)>,
}

struct Kept<S> {
    sender: S,
    peer: Arc<PeerInfo>,
    since: Instant,
}

enum Sender<B> {
    Http1(http1::SendRequest<B>),
    Http2(http2::SendRequest<B>),
}

impl<B> Pool<B>
where
    B: Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    /// A pool of connections the connector opens, HTTP/1.1 unless TLS
    /// chooses `h2` by ALPN.
    #[must_use]
    pub fn new(connector: Connector) -> Self {
        Self {
            shared: Arc::new(Shared {
                connector,
                http2_only: false,
                idle_timeout: Duration::from_secs(90),
                idle: Mutex::new(Idle {
                    http1: Vec::new(),
                    http2: None,
                }),
                reaping: AtomicBool::new(false),
                start_reaper: start_reaper::<B>,
            }),
        }
    }

    /// Speak HTTP/2 from the first byte (prior knowledge) on every
    /// connection. Set it before the pool is shared.
    #[must_use]
    pub fn http2_only(mut self, enabled: bool) -> Self {
        self.shared_mut().http2_only = enabled;
        self
    }

    /// How long an unused connection is kept (default 90 s).
    #[must_use]
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.shared_mut().idle_timeout = timeout;
        self
    }

    fn shared_mut(&mut self) -> &mut Shared<B> {
        Arc::get_mut(&mut self.shared).expect("a pool is configured before it is cloned")
    }

    /// The connector new connections come from.
    #[must_use]
    pub fn connector(&self) -> &Connector {
        &self.shared.connector
    }

    /// Sends `req` on a kept connection, or a new one. The response's body
    /// returns an HTTP/1 connection when it has been read to its end.
    ///
    /// A failure to connect is the connector's own error
    /// ([`Error::is_connect`]); a connection that broke before the
    /// response head came gives [`Error::is_request`], with hyper's error as
    /// the source.
    pub async fn send(&self, req: Request<B>) -> Result<Response<PooledBody<B>>> {
        self.send_on(req, false).await
    }

    /// Sends `req` on a new connection, and closes the kept HTTP/1 ones:
    /// for a request sent again after a kept connection broke, when the
    /// others most likely went to the same server that went away.
    pub async fn send_fresh(&self, req: Request<B>) -> Result<Response<PooledBody<B>>> {
        self.send_on(req, true).await
    }

    /// Closes every kept connection (requests in flight keep theirs).
    pub fn clear(&self) {
        let mut idle = self.shared.idle.lock().expect("pool lock poisoned");
        idle.http1.clear();
        idle.http2 = None;
    }

    /// [`send`](Self::send), or with `fresh` [`send_fresh`](Self::send_fresh).
    pub(crate) async fn send_on(
        &self,
        req: Request<B>,
        fresh: bool,
    ) -> Result<Response<PooledBody<B>>> {
        if fresh {
            self.clear();
        }
        let endpoint = self.shared.connector.endpoint();
        let mut req = req;
        loop {
            let kept = if fresh { None } else { self.checkout() };
            let reused = kept.is_some();
            let (sender, peer) = match kept {
                Some(kept) => kept,
                // Boxed: connecting (TLS included) takes a large future,
                // which would otherwise make every request's future that
                // large, to be moved and copied on every request.
                None => Box::pin(self.connect()).await?,
            };
            let mut failed: TrySendError<Request<B>> = match sender {
                Sender::Http1(mut sender) => {
                    // A kept connection is ready once its last response is
                    // done; an error means it closed while idle.
                    if let Err(e) = sender.ready().await {
                        if reused {
                            continue;
                        }
                        return Err(Error::at(Kind::Send, endpoint).with_source(e));
                    }
                    match sender.try_send_request(http1_form(req)).await {
                        Ok(res) => {
                            // An upgraded connection belongs to whoever
                            // took the upgrade now.
                            let upgraded = res.status() == http::StatusCode::SWITCHING_PROTOCOLS;
                            let home = (!upgraded).then(|| (sender, self.shared.clone()));
                            return Ok(res.map(|inner| PooledBody { inner, home, peer }));
                        }
                        Err(e) => e,
                    }
                }
                Sender::Http2(mut sender) => match sender.try_send_request(http2_form(req)).await {
                    Ok(res) => {
                        return Ok(res.map(|inner| PooledBody {
                            inner,
                            home: None,
                            peer,
                        }));
                    }
                    Err(e) => e,
                },
            };
            match failed.take_message() {
                // Never written: safe to send on another connection.
                Some(unsent) if reused => req = unsent,
                _ => {
                    let e = failed.into_error();
                    return Err(Error::at(Kind::Send, endpoint).with_source(e));
                }
            }
        }
    }

    fn checkout(&self) -> Option<(Sender<B>, Arc<PeerInfo>)> {
        let now = Instant::now();
        let timeout = self.shared.idle_timeout;
        let mut idle = self.shared.idle.lock().expect("pool lock poisoned");
        if let Some((sender, peer)) = &idle.http2 {
            if !sender.is_closed() {
                return Some((Sender::Http2(sender.clone()), peer.clone()));
            }
            idle.http2 = None;
        }
        // Kept in the order they came back, so the ones that waited too long
        // are at the front: drop those, looking no further than the first
        // that did not (this runs for every request; a scan of every kept
        // connection would cost as many clock reads).
        let expired = idle
            .http1
            .iter()
            .take_while(|kept| now.duration_since(kept.since) >= timeout)
            .count();
        idle.http1.drain(..expired);
        // The newest is the likeliest to be alive; one closed meanwhile is
        // dropped.
        while let Some(kept) = idle.http1.pop() {
            if !kept.sender.is_closed() {
                return Some((Sender::Http1(kept.sender), kept.peer));
            }
        }
        None
    }

    async fn connect(&self) -> Result<(Sender<B>, Arc<PeerInfo>)> {
        let shared = &self.shared;
        let stream = shared.connector.connect_stream().await?;
        let peer = Arc::new(stream.peer().clone());
        let endpoint = shared.connector.endpoint();
        if shared.http2_only || stream.negotiated_h2() {
            let (sender, conn) = http2::Builder::new(TokioExecutor::new())
                .timer(TokioTimer::new())
                .handshake(stream)
                .await
                .map_err(|e| Error::at(Kind::Connect, endpoint).with_source(e))?;
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::debug!("an HTTP/2 client connection ended: {e}");
                }
            });
            let mut idle = shared.idle.lock().expect("pool lock poisoned");
            idle.http2 = Some((sender.clone(), peer.clone()));
            return Ok((Sender::Http2(sender), peer));
        }
        let (sender, conn) = http1::Builder::new()
            .handshake(stream)
            .await
            .map_err(|e| Error::at(Kind::Connect, endpoint).with_source(e))?;
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!("a client connection ended: {e}");
            }
        });
        Ok((Sender::Http1(sender), peer))
    }
}

impl<B> Shared<B> {
    fn checkin(self: &Arc<Self>, sender: http1::SendRequest<B>, peer: Arc<PeerInfo>) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().expect("pool lock poisoned");
        if idle.http1.len() < MAX_IDLE {
            idle.http1.push(Kept {
                sender,
                peer,
                since: Instant::now(),
            });
        }
        drop(idle);
        if !self.reaping.swap(true, Ordering::AcqRel) {
            (self.start_reaper)(self);
        }
    }

    /// Closes the HTTP/1 connections kept past the idle timeout, and those
    /// their servers closed. Whether any is left.
    fn reap(&self) -> bool {
        let now = Instant::now();
        let mut idle = self.idle.lock().expect("pool lock poisoned");
        idle.http1.retain(|kept| {
            now.duration_since(kept.since) < self.idle_timeout && !kept.sender.is_closed()
        });
        !idle.http1.is_empty()
    }
}

/// A task that closes a pool's connections once they have been idle for
/// the pool's idle timeout, as long as any is kept: without it, a client
/// that stops sending would hold its connections (and the servers' slots)
/// until the servers close them. It ends when the pool is dropped or has
/// nothing kept, and the next connection kept starts another.
fn start_reaper<B: Send + 'static>(shared: &Arc<Shared<B>>) {
    // A body dropped outside a runtime keeps its connection until the next
    // request's checkout looks at it.
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        shared.reaping.store(false, Ordering::Release);
        return;
    };
    let pool = Arc::downgrade(shared);
    let period = shared.idle_timeout.max(Duration::from_millis(100));
    runtime.spawn(async move {
        loop {
            tokio::time::sleep(period).await;
            let Some(shared) = pool.upgrade() else {
                return;
            };
            if !shared.reap() {
                shared.reaping.store(false, Ordering::Release);
                // One kept meanwhile found `reaping` still set: look again.
                if shared.reap() && !shared.reaping.swap(true, Ordering::AcqRel) {
                    continue;
                }
                return;
            }
        }
    });
}

/// HTTP/1 wants the path alone and the host in `Host` (with the port
/// unless it is the scheme's own, as hyper-util's client writes it).
fn http1_form<B>(mut req: Request<B>) -> Request<B> {
    if !req.headers().contains_key(HOST)
        && let Some(host) = host_header(req.uri())
    {
        req.headers_mut().insert(HOST, host);
    }
    if req.method() != Method::CONNECT && req.uri().scheme().is_some() {
        let path = req
            .uri()
            .path_and_query()
            .filter(|p| !p.as_str().is_empty())
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        *req.uri_mut() = Uri::from(path);
    }
    *req.version_mut() = Version::HTTP_11;
    req
}

fn host_header(uri: &Uri) -> Option<HeaderValue> {
    let authority = uri.authority()?;
    let default_port = match uri.scheme_str() {
        Some("https") => Some(443),
        Some("http") => Some(80),
        _ => None,
    };
    let host = match authority.port_u16() {
        Some(port) if Some(port) != default_port => authority.as_str(),
        _ => authority.host(),
    };
    HeaderValue::from_str(host).ok()
}

/// HTTP/2 takes the whole URI (`:scheme`, `:authority`, `:path`) and no
/// `Host` header: a `Host` the request names becomes its `:authority`, as
/// HTTP/2 says the two must agree (RFC 9113, section 8.3.1).
fn http2_form<B>(mut req: Request<B>) -> Request<B> {
    if let Some(host) = req.headers_mut().remove(HOST)
        && let Ok(authority) = Authority::try_from(host.as_bytes())
        && req.uri().authority() != Some(&authority)
    {
        let mut parts = req.uri().clone().into_parts();
        parts.authority = Some(authority);
        if parts.scheme.is_none() {
            parts.scheme = Some(http::uri::Scheme::HTTP);
        }
        if parts.path_and_query.is_none() {
            parts.path_and_query = Some(PathAndQuery::from_static("/"));
        }
        if let Ok(uri) = Uri::from_parts(parts) {
            *req.uri_mut() = uri;
        }
    }
    *req.version_mut() = Version::HTTP_2;
    req
}

/// A response body from a [`Pool`]: hyper's body, which puts its HTTP/1
/// connection back in the pool once it has been read to its end. Dropped
/// before its end, it takes the connection with it (hyper closes a
/// connection whose response was not read whole).
pub struct PooledBody<B> {
    inner: Incoming,
    home: Option<(http1::SendRequest<B>, Arc<Shared<B>>)>,
    peer: Arc<PeerInfo>,
}

impl<B> PooledBody<B> {
    /// The server's process and user, where the OS tells.
    #[must_use]
    pub fn peer(&self) -> &PeerInfo {
        &self.peer
    }

    fn return_home(&mut self) {
        if let Some((sender, pool)) = self.home.take() {
            pool.checkin(sender, self.peer.clone());
        }
    }
}

impl<B> fmt::Debug for PooledBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PooledBody")
            .field("inner", &self.inner)
            .field("kept", &self.home.is_some())
            .finish_non_exhaustive()
    }
}

impl<B> Body for PooledBody<B> {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let frame = Pin::new(&mut this.inner).poll_frame(cx);
        match &frame {
            Poll::Ready(None) => this.return_home(),
            Poll::Ready(Some(Err(_))) => this.home = None,
            _ => {}
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B> Drop for PooledBody<B> {
    fn drop(&mut self) {
        // A body hyper knows is empty (no content, a HEAD answer) is read
        // whole all the same.
        if self.inner.is_end_stream() {
            self.return_home();
        }
    }
}
