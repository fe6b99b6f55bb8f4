//! Responses, with the body read as bytes, text, JSON or chunk by chunk.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, StatusCode, Version};
use http_body_util::BodyExt;
use tokio::time::Instant;

use super::{Body, PooledBody};
use crate::address::Endpoint;
use crate::error::{Error, Kind, Result};
use crate::transport::PeerInfo;

/// A response whose head has arrived; the body is read on demand, within
/// what is left of the request's timeout.
///
/// ```no_run
/// # async fn run() -> pipehttp::Result<()> {
/// let client = pipehttp::Client::new();
/// let res = client.get("http://pipe:/my-test-pipe:/test").send().await?;
/// assert_eq!(res.status(), 200);
/// println!("{}", res.text().await?);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Response {
    inner: http::Response<PooledBody<Body>>,
    endpoint: Arc<Endpoint>,
    deadline: Option<(Instant, std::time::Duration)>,
}

impl Response {
    pub(crate) fn new(
        inner: http::Response<PooledBody<Body>>,
        endpoint: Arc<Endpoint>,
        deadline: Option<(Instant, std::time::Duration)>,
    ) -> Self {
        Self {
            inner,
            endpoint,
            deadline,
        }
    }

    /// The status code.
    #[must_use]
    pub fn status(&self) -> StatusCode {
        self.inner.status()
    }

    /// The HTTP version the server answered with.
    #[must_use]
    pub fn version(&self) -> Version {
        self.inner.version()
    }

    /// The response headers.
    #[must_use]
    pub fn headers(&self) -> &HeaderMap {
        self.inner.headers()
    }

    /// The server's process and user, where the OS tells (pipes and Unix
    /// sockets).
    #[must_use]
    pub fn peer(&self) -> Option<&PeerInfo> {
        Some(self.inner.body().peer())
    }

    /// The next chunk of the body, or `None` at its end.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>> {
        loop {
            let frame = self.inner.body_mut().frame();
            let frame = match self.deadline {
                Some((at, timeout)) => tokio::time::timeout_at(at, frame)
                    .await
                    .map_err(|_| Error::at(Kind::Timeout(timeout), &self.endpoint))?,
                None => frame.await,
            };
            match frame {
                None => return Ok(None),
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        return Ok(Some(data));
                    }
                }
                Some(Err(e)) => return Err(body_error(&self.endpoint, e)),
            }
        }
    }

    /// The whole body.
    pub async fn bytes(self) -> Result<Bytes> {
        let Self {
            inner,
            endpoint,
            deadline,
        } = self;
        let read = inner.into_body().collect();
        let collected = match deadline {
            Some((at, timeout)) => tokio::time::timeout_at(at, read)
                .await
                .map_err(|_| Error::at(Kind::Timeout(timeout), &endpoint))?,
            None => read.await,
        };
        collected
            .map(|c| c.to_bytes())
            .map_err(|e| body_error(&endpoint, e))
    }

    /// The whole body as text (invalid UTF-8 is replaced).
    pub async fn text(self) -> Result<String> {
        let bytes = self.bytes().await?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// The whole body parsed as JSON.
    #[cfg(feature = "json")]
    pub async fn json<T: serde::de::DeserializeOwned>(self) -> Result<T> {
        let endpoint = self.endpoint.clone();
        let bytes = self.bytes().await?;
        serde_json::from_slice(&bytes)
            .map_err(|e| Error::at(Kind::Decode, &endpoint).with_source(e))
    }

    /// The underlying `http::Response`, for streaming with http-body tools.
    #[must_use]
    /// Its body returns the connection to the client's pool once read to
    /// its end, and tells the server's [`PeerInfo`] as
    /// [`PooledBody::peer`].
    pub fn into_http(self) -> http::Response<PooledBody<Body>> {
        self.inner
    }
}

fn body_error(endpoint: &Endpoint, e: hyper::Error) -> Error {
    Error::at(Kind::Body, endpoint).with_source(e)
}
