//! Per-connection timeouts in Kestrel's sense: `keep_alive_timeout` while a
//! connection is idle, `request_headers_timeout` from the first byte of a
//! request head. hyper's own header timer starts as soon as a connection is
//! idle, which would cut idle keep-alive connections at the headers timeout,
//! so both timers live here instead.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::options::Limits;

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0";

/// What the connection's reader, its service and its watchdog share.
#[derive(Debug, Default)]
pub(crate) struct ConnState {
    in_flight: AtomicUsize,
    head_started: AtomicBool,
    http2: AtomicBool,
    changed: Notify,
}

impl ConnState {
    /// Marks a request as begun; the returned guard ends it when dropped
    /// (with the response body, once it is sent).
    pub(crate) fn request_started(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.head_started.store(false, Ordering::Relaxed);
        InFlight(self.clone())
    }
}

/// A request in flight on a connection.
#[derive(Debug)]
pub(crate) struct InFlight(Arc<ConnState>);

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::Relaxed) == 1 {
            self.0.changed.notify_one();
        }
    }
}

/// Why the watchdog gave up on a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expired {
    HeadersTimeout,
    Idle,
}

/// Resolves when the connection has been idle for `keep_alive_timeout`, or
/// has taken `request_headers_timeout` to send a request head.
pub(crate) async fn watch(state: &ConnState, limits: &Limits) {
    let mut idle_since = Instant::now();
    let mut head_since: Option<Instant> = None;
    loop {
        let notified = state.changed.notified();
        let now = Instant::now();
        let deadline = if state.in_flight.load(Ordering::Relaxed) > 0 {
            head_since = None;
            None
        } else if state.head_started.load(Ordering::Relaxed) && !state.http2.load(Ordering::Relaxed)
        {
            let since = *head_since.get_or_insert(now);
            Some((
                since + limits.request_headers_timeout,
                Expired::HeadersTimeout,
            ))
        } else {
            head_since = None;
            Some((idle_since + limits.keep_alive_timeout, Expired::Idle))
        };
        match deadline {
            None => {
                notified.await;
                idle_since = Instant::now();
            }
            Some((at, why)) if at <= now => {
                tracing::debug!(?why, "closing connection");
                return;
            }
            Some((at, _)) => {
                tokio::select! {
                    () = tokio::time::sleep_until(at) => {}
                    () = notified => {}
                }
            }
        }
    }
}

pin_project_lite::pin_project! {
    /// Reports the first byte of each request head to the watchdog.
    pub(crate) struct Monitored<T> {
        #[pin]
        io: T,
        state: Arc<ConnState>,
        first_read: bool,
    }
}

impl<T> Monitored<T> {
    pub(crate) fn new(io: T, state: Arc<ConnState>) -> Self {
        Self {
            io,
            state,
            first_read: true,
        }
    }
}

impl<T: AsyncRead> AsyncRead for Monitored<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        let res = this.io.poll_read(cx, buf);
        let read = &buf.filled()[before..];
        if matches!(res, Poll::Ready(Ok(()))) && !read.is_empty() {
            if std::mem::take(this.first_read) {
                let n = read.len().min(H2_PREFACE.len());
                if read[..n] == H2_PREFACE[..n] {
                    this.state.http2.store(true, Ordering::Relaxed);
                }
            }
            if this.state.in_flight.load(Ordering::Relaxed) == 0
                && !this.state.head_started.swap(true, Ordering::Relaxed)
            {
                this.state.changed.notify_one();
            }
        }
        res
    }
}

impl<T: AsyncWrite> AsyncWrite for Monitored<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.project().io.poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.project().io.poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().io.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().io.poll_shutdown(cx)
    }
}
