//! The per-connection adapter between hyper and the user's tower service:
//! puts the peer in every request, enforces the request limits hyper does
//! not (413, 414, 431), counts upgraded connections, adds the `Server`
//! header, and tells the connection's watchdog when requests start and
//! finish.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, Version};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{Either, Full};
use hyper::body::Incoming;

use tokio::sync::{AcquireError, Notify, OwnedSemaphorePermit, Semaphore};

use super::takeover;
use super::watchdog::{ConnState, InFlight};
use crate::transport::PeerInfo;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body of a request as a pipehttp server hands it to the service:
/// hyper's body, cut off with an error past `max_request_body_size`.
///
/// ```
/// use http_body_util::BodyExt;
/// async fn handler(req: http::Request<pipehttp::RequestBody>) -> Result<bytes::Bytes, pipehttp::BodyError> {
///     Ok(req.into_body().collect().await?.to_bytes())
/// }
/// ```
#[derive(Debug)]
pub struct RequestBody {
    inner: Incoming,
    limit: Option<Limit>,
}

#[derive(Debug)]
struct Limit {
    remaining: u64,
    max: u64,
    tripped: Arc<AtomicBool>,
}

/// A request body could not be read: the client broke off, sent malformed
/// framing, or sent more than `max_request_body_size`. When the body was
/// too large the server answers 413 whatever the handler returns.
#[derive(Debug)]
pub struct BodyError {
    kind: BodyErrorKind,
}

#[derive(Debug)]
enum BodyErrorKind {
    TooLarge(u64),
    Read(hyper::Error),
}

impl BodyError {
    /// The body grew past the server's `max_request_body_size`.
    #[must_use]
    pub fn is_too_large(&self) -> bool {
        matches!(self.kind, BodyErrorKind::TooLarge(_))
    }

    /// The limit the body grew past, for [`is_too_large`](Self::is_too_large) errors.
    #[must_use]
    pub fn limit(&self) -> Option<u64> {
        match self.kind {
            BodyErrorKind::TooLarge(limit) => Some(limit),
            BodyErrorKind::Read(_) => None,
        }
    }
}

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.kind {
            BodyErrorKind::TooLarge(limit) => write!(
                f,
                "the request body is larger than max_request_body_size ({limit} bytes)"
            ),
            BodyErrorKind::Read(_) => f.write_str("the request body could not be read"),
        }
    }
}

impl std::error::Error for BodyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            BodyErrorKind::TooLarge(_) => None,
            BodyErrorKind::Read(e) => Some(e),
        }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        let frame = ready!(Pin::new(&mut this.inner).poll_frame(cx))
            .transpose()
            .map_err(|e| BodyError {
                kind: BodyErrorKind::Read(e),
            })?;
        if let (Some(limit), Some(frame)) = (&mut this.limit, &frame) {
            if let Some(data) = frame.data_ref() {
                let len = data.len() as u64;
                if len > limit.remaining {
                    limit.tripped.store(true, Ordering::Relaxed);
                    return Poll::Ready(Some(Err(BodyError {
                        kind: BodyErrorKind::TooLarge(limit.max),
                    })));
                }
                limit.remaining -= len;
            }
        }
        Poll::Ready(frame.map(Ok))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

pin_project_lite::pin_project! {
    /// The response body: the service's, or pipehttp's own 413; dropping
    /// it marks the request finished for the idle timer.
    pub struct ResponseBody<B> {
        #[pin]
        inner: Either<B, Full<Bytes>>,
        in_flight: InFlight,
    }
}

impl<B> Body for ResponseBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.project().inner.poll_frame(cx).map_err(Into::into)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The limits a request is checked against here.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RequestLimits {
    max_body: Option<u64>,
    /// The request head limit. hyper's read buffer is larger (it also
    /// carries bodies), so complete heads are measured here.
    max_head: usize,
    max_line: usize,
    max_header_count: usize,
    /// HTTP/2: the largest single header field.
    max_field: usize,
}

impl RequestLimits {
    pub(crate) fn new(limits: &crate::options::Limits) -> Self {
        Self {
            max_body: limits.max_request_body_size,
            max_head: limits.max_request_headers_total_size,
            max_line: limits.max_request_line_size,
            max_header_count: limits.max_request_header_count,
            max_field: limits.http2.max_request_header_field_size,
        }
    }

    /// The answer to a request over a limit, if it is.
    fn refuse<B>(&self, req: &Request<B>) -> Option<Response<Full<Bytes>>> {
        if req.version() < Version::HTTP_2 && request_line_size(req) > self.max_line {
            return Some(refusal(
                StatusCode::URI_TOO_LONG,
                format!("request line longer than {} bytes\n", self.max_line),
            ));
        }
        if req.headers().len() > self.max_header_count {
            return Some(refusal(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                format!("more than {} request headers\n", self.max_header_count),
            ));
        }
        if head_size(req) > self.max_head {
            return Some(refusal(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                format!("request headers larger than {} bytes\n", self.max_head),
            ));
        }
        let field = |(name, value): (&http::HeaderName, &HeaderValue)| {
            name.as_str().len() + value.len() > self.max_field
        };
        if req.version() >= Version::HTTP_2 && req.headers().iter().any(field) {
            return Some(refusal(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                format!(
                    "a request header field larger than {} bytes\n",
                    self.max_field
                ),
            ));
        }
        None
    }
}

/// What a connection hands hyper.
pub(crate) struct ConnService<S> {
    pub(crate) service: S,
    pub(crate) peer: PeerInfo,
    pub(crate) limits: RequestLimits,
    /// Whether responses get `Server: pipehttp`.
    pub(crate) server_header: bool,
    /// Slots for upgraded connections, when they are limited.
    pub(crate) upgrades: Option<Arc<Semaphore>>,
    pub(crate) state: Arc<ConnState>,
    /// Set on local connections: how a successor asks this server to
    /// hand over its names.
    pub(crate) handover: Option<Arc<Notify>>,
    /// Set on a connection accepted while every connection slot was taken.
    pub(crate) admission: Option<Arc<Admission>>,
}

/// A connection accepted past `max_concurrent_connections`, into the
/// one-place waiting room: its requests wait for a connection slot, and
/// the first slot it gets is kept for the connection's life. A takeover
/// request does not wait, so a successor can reach a server whose slots
/// are all taken.
pub(crate) struct Admission {
    slots: Arc<Semaphore>,
    slot: OnceLock<OwnedSemaphorePermit>,
    /// The waiting-room place, given up once a slot is held.
    room: Mutex<Option<OwnedSemaphorePermit>>,
}

impl Admission {
    pub(crate) fn new(slots: Arc<Semaphore>, room: OwnedSemaphorePermit) -> Self {
        Self {
            slots,
            slot: OnceLock::new(),
            room: Mutex::new(Some(room)),
        }
    }

    fn admitted(&self) -> bool {
        self.slot.get().is_some()
    }

    fn admit(&self, permit: OwnedSemaphorePermit) {
        // A second stream of the same HTTP/2 connection may win a slot too;
        // the connection needs one, so that one goes back at once.
        let _ = self.slot.set(permit);
        self.room.lock().expect("room lock poisoned").take();
    }
}

impl<S, B> hyper::service::Service<Request<Incoming>> for ConnService<S>
where
    S: tower_service::Service<Request<RequestBody>, Response = Response<B>> + Clone,
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Response = Response<ResponseBody<B>>;
    type Error = S::Error;
    type Future = ResponseFuture<S>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        let in_flight = self.state.request_started();
        if let Some(handover) = &self.handover {
            if req.method() == Method::POST && req.uri().path() == takeover::TAKEOVER_PATH {
                return ResponseFuture::immediate(
                    takeover::answer(&self.peer, handover),
                    in_flight,
                    self.server_header,
                );
            }
        }
        let server_header = self.server_header;
        if let Some(problem) = host_problem(&req) {
            return ResponseFuture::immediate(bad_request(problem), in_flight, server_header);
        }
        if let Some(refusal) = self.limits.refuse(&req) {
            return ResponseFuture::immediate(refusal, in_flight, server_header);
        }
        // An upgrade takes a slot for the upgraded connection's life, or
        // is refused before the handler could switch protocols.
        let upgrade = match &self.upgrades {
            Some(slots) if wants_upgrade(&req) => match slots.clone().try_acquire_owned() {
                Ok(slot) => Some(slot),
                Err(_) => {
                    let refusal = refusal(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "too many upgraded connections\n".into(),
                    );
                    return ResponseFuture::immediate(refusal, in_flight, server_header);
                }
            },
            _ => None,
        };
        let (mut parts, inner) = req.into_parts();
        parts.extensions.insert(self.peer.clone());
        // axum's ConnectInfo extractor, as axum::serve would provide it.
        #[cfg(feature = "axum")]
        parts
            .extensions
            .insert(axum::extract::ConnectInfo(self.peer.clone()));
        let declared = inner.size_hint().exact();
        let (limit, tripped) = match (self.limits.max_body, declared) {
            (None, _) => (None, None),
            (Some(max), Some(len)) if len > max => {
                return ResponseFuture::immediate(
                    too_large(parts.version, max),
                    in_flight,
                    server_header,
                );
            }
            // hyper holds a body to its declared length, so only bodies of
            // unknown length need counting.
            (Some(_), Some(_)) => (None, None),
            (Some(max), None) => {
                let tripped = Arc::new(AtomicBool::new(false));
                let limit = Limit {
                    remaining: max,
                    max,
                    tripped: tripped.clone(),
                };
                (Some(limit), Some((tripped, max)))
            }
        };
        let version = parts.version;
        let req = Request::from_parts(parts, RequestBody { inner, limit });
        let state = match &self.admission {
            Some(admission) if !admission.admitted() => State::Waiting {
                acquire: Box::pin(admission.slots.clone().acquire_owned()),
                admission: admission.clone(),
                service: Some(self.service.clone()),
                req: Some(req),
            },
            _ => State::NotReady {
                service: self.service.clone(),
                req: Some(req),
            },
        };
        ResponseFuture {
            state,
            tripped,
            version,
            in_flight: Some(in_flight),
            server_header,
            upgrade,
            conn: self.state.clone(),
        }
    }
}

/// Whether an HTTP/1.1 request asks to switch protocols.
fn wants_upgrade<B>(req: &Request<B>) -> bool {
    req.version() == Version::HTTP_11
        && req.headers().contains_key(http::header::UPGRADE)
        && req
            .headers()
            .get_all(http::header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|token| token.trim().eq_ignore_ascii_case("upgrade"))
}

/// What is wrong with an HTTP/1 request's `Host`, if anything. HTTP/1.1
/// requires exactly one Host header (RFC 9112, section 3.2), and, as
/// Kestrel does, an absolute-form target must name the same host, so a
/// handler never sees two different hosts for one request.
fn host_problem<B>(req: &Request<B>) -> Option<&'static str> {
    if req.version() >= Version::HTTP_2 {
        return None;
    }
    let mut hosts = req.headers().get_all(http::header::HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return Some("more than one Host header");
    }
    match (host, req.uri().authority()) {
        (None, _) if req.version() == Version::HTTP_11 => Some("no Host header"),
        (Some(host), Some(authority))
            if !host
                .as_bytes()
                .eq_ignore_ascii_case(authority.as_str().as_bytes()) =>
        {
            Some("the Host header names another host than the request target")
        }
        _ => None,
    }
}

fn bad_request(problem: &'static str) -> Response<Full<Bytes>> {
    let mut res = Response::new(Full::new(Bytes::from(format!("bad request: {problem}\n"))));
    *res.status_mut() = StatusCode::BAD_REQUEST;
    res.headers_mut()
        .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
    res
}

/// The size of a request head as it was sent: the request line and each
/// `name: value` line with its line end.
fn head_size<B>(req: &Request<B>) -> usize {
    let request_line = req.method().as_str().len()
        + req.uri().path_and_query().map_or(1, |p| p.as_str().len())
        + " HTTP/1.1\r\n".len()
        + 1;
    let headers: usize = req
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    request_line + headers + 2
}

/// The request line as sent: method, target and version.
fn request_line_size<B>(req: &Request<B>) -> usize {
    let target = match (req.uri().scheme(), req.uri().path_and_query()) {
        // An absolute-form target is measured whole.
        (Some(_), _) => req.uri().to_string().len(),
        (None, Some(p)) => p.as_str().len(),
        (None, None) => 1,
    };
    req.method().as_str().len() + 1 + target + " HTTP/1.1".len()
}

/// A refusal made here: the connection is closed after it (HTTP/1), as
/// what follows on the wire may not be understood.
fn refusal(status: StatusCode, text: String) -> Response<Full<Bytes>> {
    let mut res = Response::new(Full::new(Bytes::from(text)));
    *res.status_mut() = status;
    res.headers_mut()
        .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
    res
}

fn too_large(version: Version, max: u64) -> Response<Full<Bytes>> {
    let mut res = Response::new(Full::new(Bytes::from(format!(
        "request body larger than {max} bytes\n"
    ))));
    *res.status_mut() = StatusCode::PAYLOAD_TOO_LARGE;
    if version < Version::HTTP_2 {
        // The unread body is still on the wire; the connection cannot be reused.
        res.headers_mut()
            .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
    }
    res.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    res
}

pin_project_lite::pin_project! {
    pub(crate) struct ResponseFuture<S: tower_service::Service<Request<RequestBody>>> {
        #[pin]
        state: State<S>,
        tripped: Option<(Arc<AtomicBool>, u64)>,
        version: Version,
        in_flight: Option<InFlight>,
        server_header: bool,
        // An upgraded-connection slot, kept with the connection on 101.
        upgrade: Option<OwnedSemaphorePermit>,
        conn: Arc<ConnState>,
    }
}

pin_project_lite::pin_project! {
    #[project = StateProj]
    enum State<S: tower_service::Service<Request<RequestBody>>> {
        Waiting {
            acquire: Pin<Box<dyn Future<Output = Result<OwnedSemaphorePermit, AcquireError>> + Send>>,
            admission: Arc<Admission>,
            service: Option<S>,
            req: Option<Request<RequestBody>>,
        },
        NotReady { service: S, req: Option<Request<RequestBody>> },
        Called { #[pin] fut: S::Future },
        Immediate { res: Option<Response<Full<Bytes>>> },
    }
}

impl<S: tower_service::Service<Request<RequestBody>>> ResponseFuture<S> {
    /// A response made here, without the service.
    fn immediate(res: Response<Full<Bytes>>, in_flight: InFlight, server_header: bool) -> Self {
        let conn = in_flight.conn();
        Self {
            state: State::Immediate { res: Some(res) },
            tripped: None,
            version: Version::HTTP_11,
            in_flight: Some(in_flight),
            server_header,
            upgrade: None,
            conn,
        }
    }
}

impl<S, B> Future for ResponseFuture<S>
where
    S: tower_service::Service<Request<RequestBody>, Response = Response<B>>,
{
    type Output = Result<Response<ResponseBody<B>>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let res = loop {
            match this.state.as_mut().project() {
                StateProj::Waiting {
                    acquire,
                    admission,
                    service,
                    req,
                } => {
                    let permit = ready!(acquire.as_mut().poll(cx))
                        .expect("the slots semaphore is never closed");
                    admission.admit(permit);
                    let next = State::NotReady {
                        service: service.take().expect("polled after admission"),
                        req: req.take(),
                    };
                    this.state.set(next);
                }
                StateProj::NotReady { service, req } => {
                    ready!(service.poll_ready(cx))?;
                    let req = req.take().expect("polled after the request was sent");
                    let fut = service.call(req);
                    this.state.set(State::Called { fut });
                }
                StateProj::Called { fut } => {
                    let res = ready!(fut.poll(cx))?;
                    match this.tripped {
                        Some((tripped, max)) if tripped.load(Ordering::Relaxed) => {
                            break too_large(*this.version, *max).map(Either::Right);
                        }
                        _ => break res.map(Either::Left),
                    }
                }
                StateProj::Immediate { res } => {
                    break res
                        .take()
                        .expect("polled after completion")
                        .map(Either::Right);
                }
            }
        };
        let in_flight = this.in_flight.take().expect("polled after completion");
        let mut res = res;
        if *this.server_header && !res.headers().contains_key(http::header::SERVER) {
            res.headers_mut()
                .insert(http::header::SERVER, HeaderValue::from_static("pipehttp"));
        }
        if let Some(slot) = this.upgrade.take() {
            if res.status() == StatusCode::SWITCHING_PROTOCOLS {
                this.conn.keep_upgrade_slot(slot);
            }
        }
        Poll::Ready(Ok(res.map(|inner| ResponseBody { inner, in_flight })))
    }
}
