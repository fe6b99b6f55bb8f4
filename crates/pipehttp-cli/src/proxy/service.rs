//! The proxy as a tower service for `pipehttp::Server`: every request is
//! passed to the target on a pooled connection, its body streamed as it
//! arrives, and the answer streamed back the same way; upgrades become
//! tunnels.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Either, Full};
use pipehttp::client::{Pool, PooledBody};
use pipehttp::{PeerInfo, RequestBody};
use tokio::sync::mpsc;

use super::headers;
use super::tunnel;

/// What the proxy sends the target: the client's body as it streams, or
/// one held whole so that it can be sent again.
pub(crate) type UpstreamBody = Either<RequestBody, Full<Bytes>>;

/// The largest body of a repeatable request that is held whole, so the
/// request can be sent again when its pooled connection turns out closed.
const REPLAYABLE_BODY: u64 = 64 * 1024;
type Answer = Either<PooledBody<UpstreamBody>, Full<Bytes>>;

/// Where requests go, and how.
pub(crate) struct Upstream {
    pub(crate) route: Route,
    /// The target as the user wrote it, for messages.
    pub(crate) name: String,
    /// The Host the target gets unless the client's is preserved, as an
    /// authority and as a header value (made once, cloned cheaply).
    pub(crate) authority: Authority,
    pub(crate) host: HeaderValue,
    pub(crate) preserve_host: bool,
    /// How long the target may take to send a response head.
    pub(crate) timeout: Option<Duration>,
}

/// How requests reach the target: kept connections (HTTP/1.1, or HTTP/2
/// with `--to-http2` or where TLS chooses it), and the scheme of the URIs
/// they are sent with.
pub(crate) struct Route {
    pub(crate) pool: Pool<UpstreamBody>,
    pub(crate) scheme: Scheme,
}

/// The service: cheap to clone, one per connection.
#[derive(Clone)]
pub struct Proxy {
    shared: Arc<Shared>,
}

struct Shared {
    upstream: Upstream,
    /// `X-Forwarded-Proto` when every listen address has the same scheme.
    proto: Option<&'static str>,
    access_log: bool,
    tunnels: mpsc::Sender<()>,
}

impl Proxy {
    pub(crate) fn new(
        upstream: Upstream,
        proto: Option<&'static str>,
        access_log: bool,
        tunnels: mpsc::Sender<()>,
    ) -> Self {
        Self {
            shared: Arc::new(Shared {
                upstream,
                proto,
                access_log,
                tunnels,
            }),
        }
    }
}

impl tower_service::Service<Request<RequestBody>> for Proxy {
    type Response = Response<Logged<Answer>>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<RequestBody>) -> Self::Future {
        let shared = self.shared.clone();
        Box::pin(async move {
            let log = shared.access_log.then(|| AccessLog::new(&req));
            let res = shared.answer(req).await;
            Ok(Logged::new(res, log))
        })
    }
}

impl Shared {
    async fn answer(&self, mut req: Request<RequestBody>) -> Response<Answer> {
        if req.method() == Method::CONNECT {
            return reply(
                StatusCode::METHOD_NOT_ALLOWED,
                format!(
                    "pipehttp proxy: CONNECT is not served: this proxy passes requests to {}",
                    self.upstream.name
                ),
            );
        }
        let upgrade = headers::wants_upgrade(&req);
        let downstream = upgrade.then(|| hyper::upgrade::on(&mut req));
        let (mut parts, body) = req.into_parts();
        let client = headers::forwarded_client(parts.extensions.get::<PeerInfo>());
        // HTTP/2 carries the host in the URI (:authority), HTTP/1 in Host.
        let host = match parts.uri.authority() {
            Some(authority) if parts.version >= Version::HTTP_2 => {
                HeaderValue::from_str(authority.as_str()).ok()
            }
            _ => parts.headers.get(header::HOST).cloned(),
        };
        let proto = self.proto.or_else(|| match parts.uri.scheme_str() {
            Some("https") => Some("https"),
            Some("http") => Some("http"),
            _ => None,
        });
        headers::remove_hop_by_hop(&mut parts.headers, upgrade);
        // `Expect` is answered here, by reading the body only once the
        // target is reached.
        parts.headers.remove(header::EXPECT);
        if let Err(message) = self.upstream.address(&mut parts, host.as_ref()) {
            return reply(StatusCode::BAD_REQUEST, message);
        }
        headers::add_forwarded(&mut parts.headers, client, proto, host);
        parts.version = Version::HTTP_11;
        parts.extensions = http::Extensions::new();
        // A request that may be repeated, and whose body is small enough to
        // hold, is kept, to send again on a new connection if the pooled one
        // turns out closed (the target restarted). Other bodies stream.
        let replayable = is_idempotent(&parts.method)
            && body
                .size_hint()
                .exact()
                .is_some_and(|len| len <= REPLAYABLE_BODY);
        let (body, again) = if replayable {
            let bytes = match body.collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(e) => {
                    return reply(
                        StatusCode::BAD_REQUEST,
                        format!("pipehttp proxy: the request body could not be read: {e}"),
                    );
                }
            };
            let again = (
                parts.method.clone(),
                parts.uri.clone(),
                parts.headers.clone(),
                bytes.clone(),
            );
            (Either::Right(Full::new(bytes)), Some(again))
        } else {
            (Either::Left(body), None)
        };
        let send = self.send(Request::from_parts(parts, body), again);
        let sent = match self.upstream.timeout {
            Some(limit) => match tokio::time::timeout(limit, send).await {
                Ok(sent) => sent,
                Err(_) => {
                    return reply(
                        StatusCode::GATEWAY_TIMEOUT,
                        format!(
                            "pipehttp proxy: {} sent no response within {limit:?}",
                            self.upstream.name
                        ),
                    );
                }
            },
            None => send.await,
        };
        let mut res = match sent {
            Ok(res) => res,
            Err(e) => return self.bad_gateway(&e),
        };
        let switched = res.status() == StatusCode::SWITCHING_PROTOCOLS;
        match downstream {
            Some(downstream) if switched => {
                let upstream = hyper::upgrade::on(&mut res);
                tunnel::spawn(downstream, upstream, self.tunnels.clone());
            }
            _ if switched => {
                return reply(
                    StatusCode::BAD_GATEWAY,
                    format!(
                        "pipehttp proxy: {} switched protocols unasked",
                        self.upstream.name
                    ),
                );
            }
            _ => {}
        }
        headers::remove_hop_by_hop(res.headers_mut(), switched);
        res.map(Either::Left)
    }

    /// Sends the request; one kept for it is sent once more, on a new
    /// connection, when the first try broke before any answer (a pooled
    /// connection the target closed meanwhile, as a restarting target does).
    async fn send(
        &self,
        req: Request<UpstreamBody>,
        again: Option<(Method, Uri, HeaderMap, Bytes)>,
    ) -> pipehttp::Result<Response<PooledBody<UpstreamBody>>> {
        let pool = &self.upstream.route.pool;
        match pool.send(req).await {
            Err(e) if e.is_request() && again.is_some() => {
                tracing::debug!("{}: sending again: {}", self.upstream.name, text(&e));
                let (method, uri, headers, body) = again.expect("checked above");
                let mut req = Request::new(Either::Right(Full::new(body)));
                *req.method_mut() = method;
                *req.uri_mut() = uri;
                *req.headers_mut() = headers;
                pool.send_fresh(req).await
            }
            sent => sent,
        }
    }

    /// 502 with one line that names the target and what went wrong.
    fn bad_gateway(&self, e: &pipehttp::Error) -> Response<Answer> {
        let name = &self.upstream.name;
        let message = if e.is_request() {
            format!(
                "pipehttp proxy: {name} failed before a response: {}",
                text(e)
            )
        } else {
            format!("pipehttp proxy: cannot reach {name}: {}", text(e))
        };
        tracing::warn!("{message}");
        reply(StatusCode::BAD_GATEWAY, message)
    }
}

impl Upstream {
    /// Points a request at the target: the client's path, and the target's
    /// host (or the client's, with `--preserve-host`), in the URI and in
    /// `Host`; the pool sends HTTP/1 the path and `Host`, HTTP/2 the URI.
    fn address(
        &self,
        parts: &mut http::request::Parts,
        host: Option<&HeaderValue>,
    ) -> Result<(), String> {
        let path = match parts.uri.path_and_query() {
            Some(path) if path.as_str().starts_with('/') => path.clone(),
            None => PathAndQuery::from_static("/"),
            Some(other) => {
                return Err(format!(
                    "pipehttp proxy: the request target '{other}' cannot be passed on; only paths starting with '/' can"
                ));
            }
        };
        let (authority, host) = match host.filter(|_| self.preserve_host) {
            Some(host) => (
                Authority::try_from(host.as_bytes()).map_err(|_| {
                    "pipehttp proxy: the Host header is not a valid host".to_owned()
                })?,
                host.clone(),
            ),
            None => (self.authority.clone(), self.host.clone()),
        };
        parts.headers.insert(header::HOST, host);
        let mut uri = http::uri::Parts::default();
        uri.scheme = Some(self.route.scheme.clone());
        uri.authority = Some(authority);
        uri.path_and_query = Some(path);
        parts.uri =
            Uri::from_parts(uri).map_err(|e| format!("pipehttp proxy: bad request target: {e}"))?;
        Ok(())
    }
}

/// What went wrong, on one line: the connector's own words where it
/// failed to connect, which say best why the target could not be reached;
/// hyper's where the connection broke.
fn text(e: &pipehttp::Error) -> String {
    match std::error::Error::source(e) {
        Some(source) if e.is_request() => chain(source),
        _ => crate::errors::describe(e),
    }
}

fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

/// An error and its causes on one line, each text once.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        let more = inner.to_string();
        if !more.is_empty() && !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = inner.source();
    }
    text.replace(['\r', '\n'], " ")
}

/// A plain-text answer of the proxy's own.
fn reply(status: StatusCode, message: String) -> Response<Answer> {
    let mut res = Response::new(Either::Right(Full::new(Bytes::from(message + "\n"))));
    *res.status_mut() = status;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    res
}

/// One line per request for `-v`: method, path, status, body bytes sent
/// and time from the request to the end of the answer; written when the
/// answer's body is done (or dropped, for a client that went away).
pub struct AccessLog {
    method: Method,
    path: String,
    status: u16,
    bytes: u64,
    started: std::time::Instant,
}

impl AccessLog {
    fn new<B>(req: &Request<B>) -> Box<Self> {
        Box::new(Self {
            method: req.method().clone(),
            path: req
                .uri()
                .path_and_query()
                .map_or_else(|| req.uri().to_string(), |p| p.as_str().to_owned()),
            status: 0,
            bytes: 0,
            started: std::time::Instant::now(),
        })
    }
}

impl Drop for AccessLog {
    fn drop(&mut self) {
        let ms = self.started.elapsed().as_secs_f64() * 1000.0;
        tracing::info!(
            "{} {} {} {} bytes {ms:.1} ms",
            self.method,
            self.path,
            self.status,
            self.bytes
        );
    }
}

/// A response body that counts what it sends, for the access log.
pub struct Logged<B> {
    inner: B,
    log: Option<Box<AccessLog>>,
}

impl<B> Logged<B> {
    fn new(res: Response<B>, log: Option<Box<AccessLog>>) -> Response<Self> {
        let status = res.status().as_u16();
        res.map(|inner| Logged {
            inner,
            log: log.map(|mut log| {
                log.status = status;
                log
            }),
        })
    }
}

impl<B: Body<Data = Bytes> + Unpin> Body for Logged<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.get_mut();
        let frame = Pin::new(&mut this.inner).poll_frame(cx);
        if let (Some(log), Poll::Ready(Some(Ok(frame)))) = (this.log.as_mut(), &frame)
            && let Some(data) = frame.data_ref()
        {
            log.bytes += data.len() as u64;
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
