//! Kept-alive HTTP/1.1 connections to a cleartext target, on hyper's
//! client connections.
//!
//! hyper-util's pooled client (used for HTTP/2 and https targets) spawns a
//! task per request to put its connection back once the response is read;
//! here the response body puts it back itself when it ends, so a request
//! costs the proxy no task of its own. Connections are reused newest
//! first; one found closed is dropped, and a request that was never
//! written on a connection that closed is sent on another.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use pipehttp::client::Connector;

use super::service::UpstreamBody;

/// The most idle connections kept; more are closed once their response is
/// read.
const MAX_IDLE: usize = 1024;

/// Why a request got no response from the target.
#[derive(Debug)]
pub(crate) enum SendError {
    /// No connection: the connector's own error says why.
    Connect(pipehttp::Error),
    /// The connection broke, or the target spoke no HTTP.
    Http(hyper::Error),
    /// hyper-util's client failed (HTTP/2 and https targets).
    Pooled(hyper_util::client::legacy::Error),
}

pub(crate) struct Http1Pool {
    connector: Connector,
    idle: Mutex<Vec<SendRequest<UpstreamBody>>>,
}

impl Http1Pool {
    pub(crate) fn new(connector: Connector) -> Arc<Self> {
        Arc::new(Self {
            connector,
            idle: Mutex::new(Vec::new()),
        })
    }

    /// Sends `req` on an idle connection (unless `fresh`) or a new one. The
    /// response's body returns the connection when it has been read whole.
    pub(crate) async fn send(
        self: &Arc<Self>,
        mut req: Request<UpstreamBody>,
        fresh: bool,
    ) -> Result<Response<ReturningBody>, SendError> {
        loop {
            let (mut sender, reused) = match (!fresh).then(|| self.checkout()).flatten() {
                Some(sender) => (sender, true),
                None => (self.connect().await?, false),
            };
            // A kept connection is ready once its last response is done;
            // an error means it closed while idle: take the next.
            if let Err(e) = sender.ready().await {
                if reused {
                    continue;
                }
                return Err(SendError::Http(e));
            }
            match sender.try_send_request(req).await {
                Ok(res) => {
                    let upgraded = res.status() == http::StatusCode::SWITCHING_PROTOCOLS;
                    // An upgraded connection belongs to its tunnel now.
                    let home = (!upgraded).then(|| (sender, self.clone()));
                    return Ok(res.map(|inner| ReturningBody { inner, home }));
                }
                Err(mut e) => match e.take_message() {
                    // Never written: safe to send on another connection.
                    Some(unsent) if reused => req = unsent,
                    _ => return Err(SendError::Http(e.into_error())),
                },
            }
        }
    }

    fn checkout(&self) -> Option<SendRequest<UpstreamBody>> {
        let mut idle = self.idle.lock().expect("pool lock poisoned");
        while let Some(sender) = idle.pop() {
            if !sender.is_closed() {
                return Some(sender);
            }
        }
        None
    }

    fn checkin(&self, sender: SendRequest<UpstreamBody>) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().expect("pool lock poisoned");
        if idle.len() < MAX_IDLE {
            idle.push(sender);
        }
    }

    async fn connect(&self) -> Result<SendRequest<UpstreamBody>, SendError> {
        let conn = self.connector.connect().await.map_err(SendError::Connect)?;
        let (sender, conn) = http1::Builder::new()
            .handshake(TokioIo::new(conn))
            .await
            .map_err(SendError::Http)?;
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!("a connection to the target ended: {e}");
            }
        });
        Ok(sender)
    }
}

/// A response body from the target that puts its connection back in the
/// pool once it has been read to its end. Dropped before its end, it takes
/// the connection with it (hyper closes a connection with unread body).
pub struct ReturningBody {
    inner: Incoming,
    home: Option<(SendRequest<UpstreamBody>, Arc<Http1Pool>)>,
}

impl ReturningBody {
    /// A body with no connection to return (hyper-util's pool has it).
    pub(crate) fn plain(inner: Incoming) -> Self {
        Self { inner, home: None }
    }

    fn return_home(&mut self) {
        if let Some((sender, pool)) = self.home.take() {
            pool.checkin(sender);
        }
    }
}

impl Body for ReturningBody {
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

impl Drop for ReturningBody {
    fn drop(&mut self) {
        // A body the server never polled (no content, a HEAD answer) is
        // read whole all the same.
        if self.inner.is_end_stream() {
            self.return_home();
        }
    }
}
