//! The sample app that `pipehttp serve`, `pipehttp demo`, the examples and
//! the benchmarks run: the article's `/test` route and a few more for
//! tests.
//!
//! | route | answer |
//! | --- | --- |
//! | `GET /test` | `Hello world!` |
//! | `GET /health` | `ok` |
//! | `POST /echo` | the request body, same content type |
//! | `GET /whoami` | JSON: transport, pid, uid, gid of the caller |
//! | `GET /bytes/N` | N bytes |
//!
//! ```no_run
//! # async fn run() -> pipehttp::Result<()> {
//! pipehttp::Server::builder()
//!     .listen("http://pipe:/my-test-pipe")
//!     .bind()
//!     .await?
//!     .serve(pipehttp_cli::sample::SampleApp::new())
//!     .await
//! # }
//! ```

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body::{Frame, SizeHint};
use http_body_util::{BodyExt, Either, Full};

use pipehttp::{PeerInfo, RequestBody};

/// The body the sample app answers with: text, `/bytes/N`'s pattern, or
/// the body `/echo` receives, sent back as it comes.
pub type SampleBody = Either<Full<Bytes>, Either<RepeatBody, Echo>>;

/// The sample app as a tower service.
#[derive(Debug, Clone, Copy, Default)]
pub struct SampleApp {
    _private: (),
}

impl SampleApp {
    /// The app.
    ///
    /// ```
    /// let app = pipehttp_cli::sample::SampleApp::new();
    /// ```
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }
}

impl tower_service::Service<Request<RequestBody>> for SampleApp {
    type Response = Response<SampleBody>;
    type Error = Infallible;
    type Future = SampleFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<RequestBody>) -> SampleFuture {
        SampleFuture(route(req))
    }
}

/// The answer to one request: ready at once, or, for `/echo`, once the
/// body has been read.
pub struct SampleFuture(Answer);

// The ready answer is the common case: boxing it would cost an
// allocation per request to save a few hundred bytes in a future.
#[allow(clippy::large_enum_variant)]
enum Answer {
    Ready(Option<Response<SampleBody>>),
    Echo(Pin<Box<dyn Future<Output = Response<SampleBody>> + Send>>),
}

impl Future for SampleFuture {
    type Output = Result<Response<SampleBody>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.get_mut().0 {
            Answer::Ready(res) => Poll::Ready(Ok(res.take().expect("polled after completion"))),
            Answer::Echo(fut) => fut.as_mut().poll(cx).map(Ok),
        }
    }
}

fn route(req: Request<RequestBody>) -> Answer {
    if matches!(*req.method(), Method::POST | Method::PUT) && req.uri().path() == "/echo" {
        return Answer::Echo(Box::pin(echo(req)));
    }
    Answer::Ready(Some(answer(&req)))
}

fn answer(req: &Request<RequestBody>) -> Response<SampleBody> {
    let path = req.uri().path();
    match (req.method(), path) {
        (&Method::GET | &Method::HEAD, "/test") => text(StatusCode::OK, "Hello world!"),
        (&Method::GET | &Method::HEAD, "/health") => text(StatusCode::OK, "ok"),
        (&Method::GET | &Method::HEAD, "/whoami") => whoami(req.extensions().get::<PeerInfo>()),
        (&Method::GET | &Method::HEAD, p) if p.starts_with("/bytes/") => {
            match p["/bytes/".len()..].parse::<u64>() {
                Ok(n) => {
                    let mut res =
                        Response::new(Either::Right(Either::Left(RepeatBody { remaining: n })));
                    res.headers_mut().insert(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("application/octet-stream"),
                    );
                    res
                }
                Err(_) => text(
                    StatusCode::BAD_REQUEST,
                    "usage: /bytes/N with N a byte count",
                ),
            }
        }
        (_, "/test" | "/health" | "/whoami" | "/echo") => {
            text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
        }
        _ => text(StatusCode::NOT_FOUND, "not found"),
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<SampleBody> {
    let mut res = Response::new(Either::Left(Full::new(Bytes::from_static(body.as_bytes()))));
    *res.status_mut() = status;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    res
}

fn whoami(peer: Option<&PeerInfo>) -> Response<SampleBody> {
    let json = match peer {
        Some(p) => serde_json::json!({
            "transport": p.transport.as_str(),
            "pid": p.pid,
            "uid": p.uid,
            "gid": p.gid,
            "addr": p.addr.map(|a| a.to_string()),
        }),
        None => serde_json::json!({}),
    };
    let mut res = Response::new(Either::Left(Full::new(Bytes::from(json.to_string()))));
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    res
}

/// How much of a body `/echo` takes before it starts answering: a client
/// that sends a body this large before it reads (Python's http.client
/// does) is still served, and a server holds no more than this per request.
const ECHO_AHEAD: u64 = 1024 * 1024;

async fn echo(req: Request<RequestBody>) -> Response<SampleBody> {
    let content_type = req.headers().get(header::CONTENT_TYPE).cloned();
    let mut body = req.into_body();
    let length = http_body::Body::size_hint(&body).exact();
    // The first chunks are read before answering (see ECHO_AHEAD); the
    // rest streams through as it comes, as fast as the client reads the
    // answer, so a large body never sits in memory.
    let mut echo = Echo {
        ahead: std::collections::VecDeque::new(),
        rest: None,
        remaining: length,
    };
    let mut taken = 0u64;
    while taken < ECHO_AHEAD {
        match body.frame().await {
            None => break,
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    taken += data.len() as u64;
                    echo.ahead.push_back(data);
                }
            }
            Some(Err(e)) => {
                let mut res = Response::new(Either::Left(Full::new(Bytes::from(e.to_string()))));
                *res.status_mut() = StatusCode::BAD_REQUEST;
                return res;
            }
        }
    }
    if taken >= ECHO_AHEAD {
        echo.rest = Some(body);
    } else {
        // All of it is here: the answer has a length even when the request
        // was chunked.
        echo.remaining = Some(taken);
    }
    let mut res = Response::new(Either::Right(Either::Right(echo)));
    if let Some(ct) = content_type {
        res.headers_mut().insert(header::CONTENT_TYPE, ct);
    }
    res
}

/// `/echo`'s answer: the chunks read ahead, then the rest of the request
/// body as it arrives.
#[derive(Debug)]
pub struct Echo {
    ahead: std::collections::VecDeque<Bytes>,
    rest: Option<RequestBody>,
    /// The request's declared length, which the answer keeps.
    remaining: Option<u64>,
}

impl http_body::Body for Echo {
    type Data = Bytes;
    type Error = pipehttp::BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, pipehttp::BodyError>>> {
        let this = &mut *self;
        if let Some(chunk) = this.ahead.pop_front() {
            this.remaining = this.remaining.map(|r| r - chunk.len() as u64);
            return Poll::Ready(Some(Ok(Frame::data(chunk))));
        }
        let Some(rest) = &mut this.rest else {
            return Poll::Ready(None);
        };
        loop {
            match std::task::ready!(Pin::new(&mut *rest).poll_frame(cx)) {
                None => {
                    this.rest = None;
                    return Poll::Ready(None);
                }
                Some(Err(e)) => return Poll::Ready(Some(Err(e))),
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        this.remaining =
                            this.remaining.map(|r| r.saturating_sub(data.len() as u64));
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ahead.is_empty() && self.rest.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        match self.remaining {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}

/// A 64-byte pattern repeated 1024 times: one chunk of `/bytes/N`.
static PATTERN: [u8; 64 * 1024] = {
    let alphabet = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+/";
    let mut out = [0u8; 64 * 1024];
    let mut i = 0;
    while i < out.len() {
        out[i] = alphabet[i % 64];
        i += 1;
    }
    out
};

/// `N` bytes of a repeating 64-byte pattern, streamed in 64 KiB chunks
/// without allocating.
#[derive(Debug, Clone)]
pub struct RepeatBody {
    remaining: u64,
}

impl RepeatBody {
    /// The byte at `offset` of any `/bytes/N` answer, for checking one.
    ///
    /// ```
    /// assert_eq!(pipehttp_cli::sample::RepeatBody::byte_at(65), b'b');
    /// ```
    #[must_use]
    pub fn byte_at(offset: u64) -> u8 {
        PATTERN[(offset % 64) as usize]
    }
}

impl http_body::Body for RepeatBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        let n = self.remaining.min(PATTERN.len() as u64);
        self.remaining -= n;
        let chunk = Bytes::from_static(&PATTERN[..usize::try_from(n).unwrap_or(PATTERN.len())]);
        Poll::Ready(Some(Ok(Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}
