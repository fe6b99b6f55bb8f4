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
//!     .serve(pipehttp::sample::SampleApp::new())
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

use crate::server::RequestBody;
use crate::transport::PeerInfo;

/// The body the sample app answers with.
pub type SampleBody = Either<Full<Bytes>, RepeatBody>;

/// The sample app as a tower service.
#[derive(Debug, Clone, Copy, Default)]
pub struct SampleApp {
    _private: (),
}

impl SampleApp {
    /// The app.
    ///
    /// ```
    /// let app = pipehttp::sample::SampleApp::new();
    /// ```
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }
}

impl tower_service::Service<Request<RequestBody>> for SampleApp {
    type Response = Response<SampleBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<RequestBody>) -> Self::Future {
        Box::pin(async move { Ok(route(req).await) })
    }
}

async fn route(req: Request<RequestBody>) -> Response<SampleBody> {
    let path = req.uri().path();
    match (req.method(), path) {
        (&Method::GET | &Method::HEAD, "/test") => text(StatusCode::OK, "Hello world!"),
        (&Method::GET | &Method::HEAD, "/health") => text(StatusCode::OK, "ok"),
        (&Method::GET | &Method::HEAD, "/whoami") => whoami(req.extensions().get::<PeerInfo>()),
        (&Method::POST | &Method::PUT, "/echo") => echo(req).await,
        (&Method::GET | &Method::HEAD, p) if p.starts_with("/bytes/") => {
            match p["/bytes/".len()..].parse::<u64>() {
                Ok(n) => {
                    let mut res = Response::new(Either::Right(RepeatBody { remaining: n }));
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

async fn echo(req: Request<RequestBody>) -> Response<SampleBody> {
    let content_type = req.headers().get(header::CONTENT_TYPE).cloned();
    // The whole body is read before answering, so a client that sends all
    // of its body before reading (most do) never deadlocks on full buffers.
    match req.into_body().collect().await {
        Ok(body) => {
            let mut res = Response::new(Either::Left(Full::new(body.to_bytes())));
            if let Some(ct) = content_type {
                res.headers_mut().insert(header::CONTENT_TYPE, ct);
            }
            res
        }
        Err(e) => {
            let mut res = Response::new(Either::Left(Full::new(Bytes::from(e.to_string()))));
            *res.status_mut() = StatusCode::BAD_REQUEST;
            res
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
    /// assert_eq!(pipehttp::sample::RepeatBody::byte_at(65), b'b');
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
