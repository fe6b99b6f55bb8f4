//! The per-connection adapter between hyper and the user's tower service:
//! puts the peer in every request, enforces the request limits hyper does
//! not (413, 414, 431) and the minimum data rates (408, or a closed
//! connection), counts upgraded connections, adds the `Server` header, and
//! tells the connection's watchdog when requests start and finish.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, Version};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

use super::watchdog::{ConnState, InFlight};
use crate::options::MinDataRate;
use crate::transport::PeerInfo;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body of a request as a pipehttp server hands it to the service:
/// hyper's body, cut off with an error past `max_request_body_size`, or
/// when the client sends it slower than `min_request_body_data_rate`.
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
    rate: Option<Box<RateTimer>>,
    /// Tells the response what went wrong with the body, if anything.
    verdict: Arc<Verdict>,
    /// The connection, told when the body is read to its end (see
    /// `ConnState::body_unread`); `None` once it is, or without a body.
    conn: Option<Arc<ConnState>>,
    /// HTTP/2 only (`None` on HTTP/1, where a request has the connection
    /// to itself): whether this body is counted in
    /// `ConnState::bodies_held`, as its handler holds data or has not
    /// asked for any yet.
    held: Option<bool>,
}

impl RequestBody {
    fn hold(&mut self, held: bool) {
        if self.held.is_some_and(|was| was != held)
            && let Some(conn) = &self.conn
        {
            conn.body_held(held);
            self.held = Some(held);
        }
    }
}

impl Drop for RequestBody {
    fn drop(&mut self) {
        self.hold(false);
    }
}

#[derive(Debug)]
struct Limit {
    remaining: u64,
    max: u64,
}

/// What the server decided about a request body, for its response: the
/// handler's answer stands, or the server's 413 or 408 replaces it.
#[derive(Debug, Default)]
struct Verdict(AtomicU8);

impl Verdict {
    const FINE: u8 = 0;
    const TOO_LARGE: u8 = 1;
    const TOO_SLOW: u8 = 2;

    fn set(&self, verdict: u8) {
        self.0.store(verdict, Ordering::Relaxed);
    }

    fn get(&self) -> u8 {
        self.0.load(Ordering::Relaxed)
    }
}

/// `min_request_body_data_rate`, timed only while the handler waits for
/// data, as Kestrel times it: a handler that reads slowly is not the
/// client's fault.
#[derive(Debug)]
struct RateTimer {
    min: MinDataRate,
    /// Time spent waiting before the current wait.
    waited: Duration,
    /// When the current wait began.
    waiting_since: Option<Instant>,
    received: u64,
    deadline: Option<Pin<Box<Sleep>>>,
}

impl RateTimer {
    fn new(min: MinDataRate) -> Self {
        Self {
            min,
            waited: Duration::ZERO,
            waiting_since: None,
            received: 0,
            deadline: None,
        }
    }

    /// Data arrived: the wait, if any, is over.
    fn received(&mut self, bytes: u64) {
        if let Some(since) = self.waiting_since.take() {
            self.waited += since.elapsed();
        }
        self.received += bytes;
    }

    /// The handler waits for data: polls the time the rate allows, and
    /// says whether it ran out. While `paused` (the wait may be the
    /// server's doing) the time does not count; it is looked at again
    /// every second.
    fn too_slow(&mut self, cx: &mut Context<'_>, paused: bool) -> bool {
        const LOOK_AGAIN: Duration = Duration::from_secs(1);
        if paused {
            self.waiting_since = Some(Instant::now());
            let at = Instant::now() + LOOK_AGAIN;
            let sleep = self
                .deadline
                .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
            sleep.as_mut().reset(at);
            // Not ready: a sleep just set to a second from now.
            let _ = sleep.as_mut().poll(cx);
            return false;
        }
        let since = *self.waiting_since.get_or_insert_with(Instant::now);
        // The body is too slow once the time waited passes both the grace
        // period and the time its bytes so far take at the minimum rate.
        let allowed = self.min.grace_period.max(self.min.time_for(self.received));
        let at = since + allowed.saturating_sub(self.waited);
        let sleep = self
            .deadline
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
        if sleep.deadline() != at {
            sleep.as_mut().reset(at);
        }
        sleep.as_mut().poll(cx).is_ready()
    }
}

/// A request body could not be read: the client broke off, sent malformed
/// framing, sent more than `max_request_body_size`, or sent it slower than
/// `min_request_body_data_rate`. In the last two cases the server answers
/// 413 or 408 whatever the handler returns.
#[derive(Debug)]
pub struct BodyError {
    kind: BodyErrorKind,
}

#[derive(Debug)]
enum BodyErrorKind {
    TooLarge(u64),
    TooSlow(MinDataRate),
    Read(hyper::Error),
}

impl BodyError {
    /// The body grew past the server's `max_request_body_size`.
    #[must_use]
    pub fn is_too_large(&self) -> bool {
        matches!(self.kind, BodyErrorKind::TooLarge(_))
    }

    /// The client sent the body slower than `min_request_body_data_rate`.
    #[must_use]
    pub fn is_too_slow(&self) -> bool {
        matches!(self.kind, BodyErrorKind::TooSlow(_))
    }

    /// The limit the body grew past, for [`is_too_large`](Self::is_too_large) errors.
    #[must_use]
    pub fn limit(&self) -> Option<u64> {
        match self.kind {
            BodyErrorKind::TooLarge(limit) => Some(limit),
            _ => None,
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
            BodyErrorKind::TooSlow(rate) => write!(
                f,
                "the client sent the request body slower than min_request_body_data_rate ({} bytes/s after {:?})",
                rate.bytes_per_second, rate.grace_period
            ),
            BodyErrorKind::Read(_) => f.write_str("the request body could not be read"),
        }
    }
}

impl std::error::Error for BodyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            BodyErrorKind::Read(e) => Some(e),
            _ => None,
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
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        let frame = match polled {
            Poll::Pending => {
                this.hold(false);
                let paused = this.conn.as_ref().is_some_and(|c| c.window_may_be_held());
                if let Some(rate) = &mut this.rate
                    && rate.too_slow(cx, paused)
                {
                    this.verdict.set(Verdict::TOO_SLOW);
                    return Poll::Ready(Some(Err(BodyError {
                        kind: BodyErrorKind::TooSlow(rate.min),
                    })));
                }
                return Poll::Pending;
            }
            Poll::Ready(frame) => frame.transpose().map_err(|e| BodyError {
                kind: BodyErrorKind::Read(e),
            })?,
        };
        match &frame {
            Some(_) => this.hold(true),
            None => {
                this.hold(false);
                if let Some(conn) = this.conn.take() {
                    conn.body_unread(false);
                }
            }
        }
        if let Some(data) = frame.as_ref().and_then(Frame::data_ref) {
            let len = data.len() as u64;
            if let Some(rate) = &mut this.rate {
                rate.received(len);
            }
            if let Some(limit) = &mut this.limit {
                if len > limit.remaining {
                    this.verdict.set(Verdict::TOO_LARGE);
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
    /// The response body: the service's, or pipehttp's own 4xx; dropping
    /// it marks the request finished for the idle timer.
    pub struct ResponseBody<B> {
        #[pin]
        inner: Either<B, Full<Bytes>>,
        in_flight: InFlight,
        // `min_response_data_rate`, while data handed to hyper waits for
        // the client: see `ConnState::handed_to_client`.
        rate: Option<MinDataRate>,
        waiting_for_client: bool,
        // The answer to an HTTP/2 HEAD: the head only. hyper leaves the
        // body out of HTTP/1 HEAD answers itself, but sends it as DATA
        // frames over HTTP/2, which clients refuse (PROTOCOL_ERROR).
        head_only: bool,
    }

    impl<B> PinnedDrop for ResponseBody<B> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if *this.waiting_for_client {
                this.in_flight.connection().taken_by_client();
            }
        }
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
        let this = self.project();
        if *this.head_only {
            return Poll::Ready(None);
        }
        // hyper asks for more once what it was handed is on its way.
        if std::mem::take(this.waiting_for_client) {
            this.in_flight.connection().taken_by_client();
        }
        let frame = ready!(this.inner.poll_frame(cx));
        if let (Some(rate), Some(Ok(frame))) = (this.rate, &frame)
            && let Some(data) = frame.data_ref()
            && !data.is_empty()
        {
            this.in_flight
                .connection()
                .handed_to_client(data.len() as u64, rate);
            *this.waiting_for_client = true;
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.head_only || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        if self.head_only {
            SizeHint::with_exact(0)
        } else {
            self.inner.size_hint()
        }
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
    min_request_rate: Option<MinDataRate>,
    min_response_rate: Option<MinDataRate>,
}

impl RequestLimits {
    pub(crate) fn new(limits: &crate::options::Limits) -> Self {
        Self {
            max_body: limits.max_request_body_size,
            max_head: limits.max_request_headers_total_size,
            max_line: limits.max_request_line_size,
            max_header_count: limits.max_request_header_count,
            max_field: limits.http2.max_request_header_field_size,
            min_request_rate: limits.min_request_body_data_rate,
            min_response_rate: limits.min_response_data_rate,
        }
    }

    /// The answer to a request over a limit, if it is.
    fn refuse<B>(&self, req: &Request<B>) -> Option<Response<Full<Bytes>>> {
        if req.version() < Version::HTTP_2 && request_line_size(req) > self.max_line {
            return Some(answer(
                StatusCode::URI_TOO_LONG,
                format!("request line longer than {} bytes\n", self.max_line),
                true,
            ));
        }
        if req.headers().len() > self.max_header_count {
            return Some(answer(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                format!("more than {} request headers\n", self.max_header_count),
                true,
            ));
        }
        if head_size(req) > self.max_head {
            return Some(headers_too_large(self.max_head));
        }
        let field = |(name, value): (&http::HeaderName, &HeaderValue)| {
            name.as_str().len() + value.len() > self.max_field
        };
        if req.version() >= Version::HTTP_2 && req.headers().iter().any(field) {
            return Some(answer(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                format!(
                    "a request header field larger than {} bytes\n",
                    self.max_field
                ),
                true,
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
        let version = req.version();
        let head_only = version >= Version::HTTP_2 && req.method() == http::Method::HEAD;
        if let Some(problem) = host_problem(&req) {
            return ResponseFuture::immediate(bad_request(problem), version, in_flight, self);
        }
        if let Some(refusal) = self.limits.refuse(&req) {
            return ResponseFuture::immediate(refusal, version, in_flight, self);
        }
        // An upgrade takes a slot for the upgraded connection's life, or
        // is refused before the handler could switch protocols.
        let upgrade = match &self.upgrades {
            Some(slots) if wants_upgrade(&req) => match slots.clone().try_acquire_owned() {
                Ok(slot) => Some(slot),
                Err(_) => {
                    let refusal = answer(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "too many upgraded connections\n".into(),
                        true,
                    );
                    return ResponseFuture::immediate(refusal, version, in_flight, self);
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
        let limit = match (self.limits.max_body, declared) {
            (Some(max), Some(len)) if len > max => {
                // The body is coming anyway; the client reads the 413 only
                // if it may finish sending: see `ConnState::body_unread`.
                self.state.body_unread(true);
                return ResponseFuture::immediate(
                    too_large(version, max),
                    version,
                    in_flight,
                    self,
                );
            }
            // hyper holds a body to its declared length, so only bodies of
            // unknown length need counting.
            (Some(max), None) => Some(Limit {
                remaining: max,
                max,
            }),
            _ => None,
        };
        let has_body = declared != Some(0);
        let rate = self
            .limits
            .min_request_rate
            .filter(|_| has_body)
            .map(|min| Box::new(RateTimer::new(min)));
        let verdict = Arc::new(Verdict::default());
        let conn = has_body.then(|| {
            self.state.body_unread(true);
            self.state.clone()
        });
        let mut body = RequestBody {
            inner,
            limit,
            rate,
            verdict: verdict.clone(),
            conn,
            held: (version >= Version::HTTP_2).then_some(false),
        };
        body.hold(true);
        let req = Request::from_parts(parts, body);
        ResponseFuture {
            state: State::NotReady {
                service: self.service.clone(),
                req: Some(req),
            },
            verdict: Some(verdict),
            max_body: self.limits.max_body.unwrap_or(u64::MAX),
            version,
            in_flight: Some(in_flight),
            min_response_rate: self.limits.min_response_rate,
            server_header: self.server_header,
            upgrade,
            head_only,
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
        // HTTP/2 names the host in :authority (and may send Host too):
        // each must be a host and port, as an HTTP/1 Host must.
        let authority = req.uri().authority().map(|a| a.as_str().as_bytes());
        let host = req.headers().get(http::header::HOST).map(|h| h.as_bytes());
        return [authority, host]
            .into_iter()
            .flatten()
            .any(|value| !is_host_and_port(value))
            .then_some("the authority is not a host and port");
    }
    let mut hosts = req.headers().get_all(http::header::HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return Some("more than one Host header");
    }
    if let Some(host) = host
        && !is_host_and_port(host.as_bytes())
    {
        return Some("the Host header is not a host and port");
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

/// Whether a Host value is a host and an optional port, or empty, as
/// Kestrel checks it: no path, blanks, user information or controls, an
/// IPv6 literal in brackets, and digits alone after the `:`. (The http
/// crate's `Authority` parses the port lazily, so it is checked here.)
fn is_host_and_port(value: &[u8]) -> bool {
    value.is_empty() || is_plain_host_and_port(value) || is_parsed_host_and_port(value)
}

/// [`is_host_and_port`] for any value, by the http crate's parser.
fn is_parsed_host_and_port(value: &[u8]) -> bool {
    if value.contains(&b'@') || http::uri::Authority::try_from(value).is_err() {
        return false;
    }
    let port = match value.strip_prefix(b"[") {
        Some(rest) => {
            let Some(end) = rest.iter().position(|&b| b == b']') else {
                return false;
            };
            let literal = std::str::from_utf8(&rest[..end]).unwrap_or_default();
            if literal.parse::<std::net::Ipv6Addr>().is_err() {
                return false;
            }
            match &rest[end + 1..] {
                [] => return true,
                [b':', port @ ..] => port,
                _ => return false,
            }
        }
        None => match value.iter().rposition(|&b| b == b':') {
            Some(colon) => &value[colon + 1..],
            None => return true,
        },
    };
    port.iter().all(u8::is_ascii_digit)
}

/// The common case, without parsing: a name of letters, digits, dots and
/// dashes, and an optional port of up to five digits. Every such value
/// passes [`is_host_and_port`]'s full check; anything else is given to it.
fn is_plain_host_and_port(value: &[u8]) -> bool {
    let (host, port) = match value.iter().position(|&b| b == b':') {
        Some(colon) => (&value[..colon], Some(&value[colon + 1..])),
        None => (value, None),
    };
    !host.is_empty()
        && host
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
        && port.is_none_or(|p| (1..=5).contains(&p.len()) && p.iter().all(u8::is_ascii_digit))
}

/// A plain-text answer of the server's own.
fn answer(status: StatusCode, text: String, close: bool) -> Response<Full<Bytes>> {
    let mut res = Response::new(Full::new(Bytes::from(text)));
    *res.status_mut() = status;
    res.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if close {
        res.headers_mut()
            .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
    }
    res
}

fn bad_request(problem: &'static str) -> Response<Full<Bytes>> {
    answer(
        StatusCode::BAD_REQUEST,
        format!("bad request: {problem}\n"),
        true,
    )
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

fn headers_too_large(max: usize) -> Response<Full<Bytes>> {
    answer(
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        format!("request headers larger than {max} bytes\n"),
        true,
    )
}

/// 413; on HTTP/1 the unread body is still on the wire, so the connection
/// cannot be reused.
fn too_large(version: Version, max: u64) -> Response<Full<Bytes>> {
    answer(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("request body larger than {max} bytes\n"),
        version < Version::HTTP_2,
    )
}

/// 408 for a body sent too slowly; on HTTP/1 the rest of it may still come.
fn too_slow(version: Version) -> Response<Full<Bytes>> {
    answer(
        StatusCode::REQUEST_TIMEOUT,
        "the request body came too slowly\n".to_owned(),
        version < Version::HTTP_2,
    )
}

pin_project_lite::pin_project! {
    pub(crate) struct ResponseFuture<S: tower_service::Service<Request<RequestBody>>> {
        #[pin]
        state: State<S>,
        verdict: Option<Arc<Verdict>>,
        max_body: u64,
        version: Version,
        in_flight: Option<InFlight>,
        min_response_rate: Option<MinDataRate>,
        server_header: bool,
        // An upgraded-connection slot, kept with the connection on 101.
        upgrade: Option<OwnedSemaphorePermit>,
        // An HTTP/2 HEAD: see `ResponseBody::head_only`.
        head_only: bool,
    }
}

pin_project_lite::pin_project! {
    #[project = StateProj]
    enum State<S: tower_service::Service<Request<RequestBody>>> {
        NotReady { service: S, req: Option<Request<RequestBody>> },
        Called { #[pin] fut: S::Future },
        Immediate { res: Option<Response<Full<Bytes>>> },
    }
}

impl<S: tower_service::Service<Request<RequestBody>>> ResponseFuture<S> {
    /// A response made here, without the service.
    fn immediate<X>(
        res: Response<Full<Bytes>>,
        version: Version,
        in_flight: InFlight,
        conn: &ConnService<X>,
    ) -> Self {
        Self {
            state: State::Immediate { res: Some(res) },
            verdict: None,
            max_body: 0,
            version,
            in_flight: Some(in_flight),
            min_response_rate: conn.limits.min_response_rate,
            server_header: conn.server_header,
            upgrade: None,
            head_only: false,
        }
    }
}

impl<S, B> Future for ResponseFuture<S>
where
    S: tower_service::Service<Request<RequestBody>, Response = Response<B>>,
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Output = Result<Response<ResponseBody<B>>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let res = loop {
            // A body the server refused ends the request at once, whatever
            // the handler does with the error.
            if let Some(verdict) = this.verdict.as_deref() {
                match verdict.get() {
                    Verdict::FINE => {}
                    refused => {
                        let res = if refused == Verdict::TOO_LARGE {
                            too_large(*this.version, *this.max_body)
                        } else {
                            // HTTP/1 closes with `Connection: close`; an
                            // HTTP/2 connection is ended after its streams.
                            if *this.version >= Version::HTTP_2
                                && let Some(in_flight) = this.in_flight.as_ref()
                            {
                                in_flight.connection().ask_to_end();
                            }
                            too_slow(*this.version)
                        };
                        // Drops the handler's future: it has no body to read.
                        this.state.set(State::Immediate { res: None });
                        break res.map(Either::Right);
                    }
                }
            }
            match this.state.as_mut().project() {
                StateProj::NotReady { service, req } => {
                    ready!(service.poll_ready(cx))?;
                    let req = req.take().expect("polled after the request was sent");
                    let fut = service.call(req);
                    this.state.set(State::Called { fut });
                }
                StateProj::Called { fut } => {
                    let res = ready!(fut.poll(cx))?;
                    let refused = this
                        .verdict
                        .as_deref()
                        .is_some_and(|v| v.get() != Verdict::FINE);
                    if !refused {
                        break res.map(Either::Left);
                    }
                    // The loop answers for the refused body instead.
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
        if let Some(slot) = this.upgrade.take()
            && res.status() == StatusCode::SWITCHING_PROTOCOLS
        {
            in_flight.connection().keep_upgrade_slot(slot);
        }
        if *this.version < Version::HTTP_2 && in_flight.draining() {
            // The server is stopping: this connection takes no further
            // request, and the client must not try one on it.
            res.headers_mut()
                .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
        }
        let head_only = *this.head_only;
        if head_only
            && !res.headers().contains_key(http::header::CONTENT_LENGTH)
            && let Some(len) = res.body().size_hint().exact()
        {
            // The length the GET would have, as HTTP/1 HEAD answers say.
            res.headers_mut()
                .insert(http::header::CONTENT_LENGTH, HeaderValue::from(len));
        }
        let rate = *this.min_response_rate;
        Poll::Ready(Ok(res.map(|inner| ResponseBody {
            inner,
            in_flight,
            rate,
            waiting_for_client: false,
            head_only,
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_hosts_are_the_ones_the_parser_accepts() {
        let plain: &[&[u8]] = &[
            b"localhost",
            b"localhost:80",
            b"a.b-c.example:65535",
            b"127.0.0.1:8080",
            b"x:0",
        ];
        for value in plain {
            assert!(is_plain_host_and_port(value), "{value:?}");
            assert!(is_parsed_host_and_port(value), "{value:?}");
        }
        // Left to the parser: it accepts some and refuses others.
        let other: &[&[u8]] = &[
            b"[::1]:80",
            b"a:",
            b":80",
            b"a b",
            b"a@b",
            b"a:1x",
            b"a:123456",
            b"a:1:2",
            b"a/b",
            b"_x",
        ];
        for value in other {
            assert!(!is_plain_host_and_port(value), "{value:?}");
        }
        assert!(is_host_and_port(b"[::1]:80"));
        for value in [&b"a b"[..], b"a@b", b"a:1x", b"a/b", b"a:1:2"] {
            assert!(!is_host_and_port(value), "{value:?}");
        }
    }
}
