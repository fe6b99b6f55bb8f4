//! Per-connection timeouts in Kestrel's sense: `keep_alive_timeout` while a
//! connection is idle, `request_headers_timeout` from the first byte of a
//! request head. hyper's own header timer starts as soon as a connection is
//! idle, which would cut idle keep-alive connections at the headers timeout,
//! so both timers live here instead.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::options::Limits;

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0";

/// What the connection's reader, its service and its watchdog share.
///
/// Times are nanoseconds since `base`, kept in atomics, so a request costs
/// two clock reads and a few relaxed stores, and never wakes the watchdog:
/// the watchdog looks at the times when its own timer fires.
#[derive(Debug)]
pub(crate) struct ConnState {
    base: Instant,
    in_flight: AtomicUsize,
    /// When the first byte of the pending request head arrived, plus one;
    /// zero while no head is pending.
    head_since: AtomicU64,
    /// When the last request in flight finished (or the connection opened).
    idle_since: AtomicU64,
    http2: AtomicBool,
    /// Whether a request has begun on the connection, and the news of the
    /// first one, for a stop that waits for it.
    begun: AtomicBool,
    first_request: Notify,
    /// An upgraded-connection slot: the connection's I/O holds this state,
    /// so the slot is given back when the upgraded connection is dropped.
    upgrade_slot: std::sync::Mutex<Option<tokio::sync::OwnedSemaphorePermit>>,
}

impl ConnState {
    pub(crate) fn new() -> Self {
        Self {
            base: Instant::now(),
            in_flight: AtomicUsize::new(0),
            head_since: AtomicU64::new(0),
            idle_since: AtomicU64::new(0),
            http2: AtomicBool::new(false),
            begun: AtomicBool::new(false),
            first_request: Notify::new(),
            upgrade_slot: std::sync::Mutex::new(None),
        }
    }

    /// Keeps `slot` for as long as the connection's I/O lives.
    pub(crate) fn keep_upgrade_slot(&self, slot: tokio::sync::OwnedSemaphorePermit) {
        *self.upgrade_slot.lock().expect("slot lock poisoned") = Some(slot);
    }

    fn now(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn at(&self, nanos: u64) -> Instant {
        self.base + Duration::from_nanos(nanos)
    }

    /// Marks a request as begun; the returned guard ends it when dropped
    /// (with the response body, once it is sent).
    pub(crate) fn request_started(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.head_since.store(0, Ordering::Relaxed);
        if !self.begun.load(Ordering::Relaxed) {
            self.begun.store(true, Ordering::Relaxed);
            self.first_request.notify_one();
        }
        InFlight(self.clone())
    }

    /// Whether a request has begun on this connection.
    pub(crate) fn begun(&self) -> bool {
        self.begun.load(Ordering::Relaxed)
    }

    /// Whether part of a request head has arrived and its request has not
    /// begun yet.
    pub(crate) fn receiving_head(&self) -> bool {
        self.head_since.load(Ordering::Relaxed) != 0
    }

    /// Resolves once the connection's first request has begun.
    pub(crate) async fn first_request(&self) {
        if !self.begun() {
            self.first_request.notified().await;
        }
    }
}

/// A request in flight on a connection.
#[derive(Debug)]
pub(crate) struct InFlight(Arc<ConnState>);

impl InFlight {
    /// The connection's state.
    pub(crate) fn conn(&self) -> Arc<ConnState> {
        self.0.clone()
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::Relaxed) == 1 {
            self.0.idle_since.store(self.0.now(), Ordering::Relaxed);
        }
    }
}

/// Resolves when the connection has been idle for `keep_alive_timeout`, or
/// has taken `request_headers_timeout` to send a request head.
///
/// It wakes at least every `min(request_headers_timeout,
/// keep_alive_timeout)`: a head that starts between two looks has a
/// deadline past the next look, so every cut still comes exactly on time.
pub(crate) async fn watch(state: &ConnState, limits: &Limits) {
    let period = limits
        .request_headers_timeout
        .min(limits.keep_alive_timeout);
    loop {
        let now = Instant::now();
        let idle_since = || state.at(state.idle_since.load(Ordering::Relaxed));
        let deadline = if state.in_flight.load(Ordering::Relaxed) > 0 {
            None
        } else {
            match state.head_since.load(Ordering::Relaxed) {
                0 => Some(after(idle_since(), limits.keep_alive_timeout)),
                _ if state.http2.load(Ordering::Relaxed) => {
                    Some(after(idle_since(), limits.keep_alive_timeout))
                }
                since => Some(after(state.at(since - 1), limits.request_headers_timeout)),
            }
        };
        let next_look = after(now, period);
        match deadline {
            Some(at) if at <= now => {
                tracing::debug!("closing a connection: idle or too slow sending a request head");
                return;
            }
            Some(at) => tokio::time::sleep_until(at.min(next_look)).await,
            None => tokio::time::sleep_until(next_look).await,
        }
    }
}

/// `at + timeout`, or a time decades away when a configured timeout is too
/// large for the clock: such a timeout means "never".
fn after(at: Instant, timeout: Duration) -> Instant {
    const NEVER: Duration = Duration::from_secs(60 * 60 * 24 * 365 * 30);
    at.checked_add(timeout).unwrap_or_else(|| at + NEVER)
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
            let state = &**this.state;
            if state.in_flight.load(Ordering::Relaxed) == 0
                && state.head_since.load(Ordering::Relaxed) == 0
            {
                state.head_since.store(state.now() + 1, Ordering::Relaxed);
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
