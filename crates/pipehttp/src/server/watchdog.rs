//! Per-connection timeouts in Kestrel's sense: `keep_alive_timeout` while a
//! connection is idle, `request_headers_timeout` from the first byte of a
//! request head, and `min_response_data_rate` while responses wait for the
//! client to take them. hyper's own header timer starts as soon as a
//! connection is idle, which would cut idle keep-alive connections at the
//! headers timeout, so these timers live here instead.
//!
//! The request body rate is timed by the body itself (see `service.rs`):
//! only the handler's reads know when it waits for the client.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::Notify;
use tokio::time::Instant;

use super::sniff::H2_PREFACE;
use crate::options::{Limits, MinDataRate};
use crate::transport::Transport;

/// The start of HTTP/2's connection preface, enough to tell it from HTTP/1.
const H2_PREFACE_START: &[u8] = H2_PREFACE.split_at(14).0;

/// How often the watchdog looks at a connection with requests in flight,
/// for the response data rate: Kestrel's heartbeat.
const HEARTBEAT: Duration = Duration::from_secs(1);

/// What the connection's reader, its service and its watchdog share.
///
/// Times are nanoseconds since `base`, kept in atomics, so a request costs
/// a few relaxed stores and never wakes the watchdog: the watchdog looks
/// at the times when its own timer fires.
#[derive(Debug)]
pub(crate) struct ConnState {
    base: Instant,
    in_flight: AtomicUsize,
    /// When the first byte of the pending request head (on HTTP/2, the
    /// first HEADERS frame of a request not yet begun) arrived, plus one;
    /// zero while none is pending.
    head_since: AtomicU64,
    /// When the last request in flight finished (or the connection opened).
    idle_since: AtomicU64,
    /// Response bodies that have handed hyper data and wait for it to ask
    /// for more: hyper asks once the client has taken enough.
    waiting_for_client: AtomicUsize,
    /// When the data handed to hyper must have been taken by: Kestrel's
    /// per-write deadline for `min_response_data_rate`.
    write_deadline: AtomicU64,
    http2: AtomicBool,
    /// Whether the connection is HTTP/1 with hyper holding it, so that it
    /// may rest once idle (see `REST_AFTER`): false before the protocol is
    /// known, on HTTP/2, and while it rests.
    restable: AtomicBool,
    /// Whether hyper has written since it last flushed: a connection whose
    /// response has not all reached the socket does not rest, or what
    /// hyper still holds would be lost.
    writes_unflushed: AtomicBool,
    /// Set when a request of this HTTP/2 connection sent its body too
    /// slowly: the connection ends after its streams, as Kestrel ends it,
    /// so a client cannot hold its slot by opening one slow stream after
    /// another.
    end_asked: AtomicBool,
    /// Set once the server stops: responses say `Connection: close`, and a
    /// request that begins is news for the connection task, which is then
    /// waiting to close the connection after it.
    draining: AtomicBool,
    began: Notify,
    /// Set while a request's body has not been read to its end: a
    /// connection that closes then (an answer given before the body was
    /// read: 413, 408, or the app's own) reads and drops what the client
    /// still sends before closing, so the client reads the answer.
    body_unread: AtomicBool,
    /// HTTP/2 request bodies whose handler holds data or has not asked for
    /// any yet: their DATA may fill the connection's flow-control window,
    /// so other streams' clients cannot send (see `RequestBody`).
    bodies_held: AtomicUsize,
    /// Whether the transport can half-close, so a close lingers (see
    /// `linger`).
    lingers: bool,
    /// The connection's `max_concurrent_connections` slot, given back when
    /// the last holder of this state goes: a lingering close keeps it.
    slot: std::sync::Mutex<Option<tokio::sync::OwnedSemaphorePermit>>,
    /// An upgraded-connection slot: the connection's I/O holds this state,
    /// so the slot is given back when the upgraded connection is dropped.
    upgrade_slot: std::sync::Mutex<Option<tokio::sync::OwnedSemaphorePermit>>,
}

impl ConnState {
    pub(crate) fn new(transport: Transport) -> Self {
        Self {
            lingers: transport.half_closes(),
            bodies_held: AtomicUsize::new(0),
            base: Instant::now(),
            in_flight: AtomicUsize::new(0),
            head_since: AtomicU64::new(0),
            idle_since: AtomicU64::new(0),
            waiting_for_client: AtomicUsize::new(0),
            write_deadline: AtomicU64::new(0),
            http2: AtomicBool::new(false),
            restable: AtomicBool::new(false),
            end_asked: AtomicBool::new(false),
            writes_unflushed: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            began: Notify::new(),
            body_unread: AtomicBool::new(false),
            slot: std::sync::Mutex::new(None),
            upgrade_slot: std::sync::Mutex::new(None),
        }
    }

    /// A request body's handler holds its data (`true`) or waits for more
    /// (`false`); see `bodies_held`.
    pub(crate) fn body_held(&self, held: bool) {
        if held {
            self.bodies_held.fetch_add(1, Ordering::Relaxed);
        } else {
            self.bodies_held.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Whether a body's wait for its client may be the server's doing: on
    /// HTTP/2, another stream's handler holds unread data, which may keep
    /// the connection's window closed to every stream.
    pub(crate) fn window_may_be_held(&self) -> bool {
        self.bodies_held.load(Ordering::Relaxed) > 0
    }

    /// Keeps `slot` for as long as the connection's I/O lives.
    pub(crate) fn keep_upgrade_slot(&self, slot: tokio::sync::OwnedSemaphorePermit) {
        *self.upgrade_slot.lock().expect("slot lock poisoned") = Some(slot);
    }

    fn now(&self) -> u64 {
        self.nanos(Instant::now())
    }

    fn nanos(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.base).as_nanos()).unwrap_or(u64::MAX)
    }

    fn at(&self, nanos: u64) -> Instant {
        self.base + Duration::from_nanos(nanos)
    }

    /// Marks a request as begun; the returned guard ends it when dropped
    /// (with the response body, once it is sent).
    pub(crate) fn request_started(self: &Arc<Self>) -> InFlight {
        // No wake-up for the watchdog: requests begin while the connection
        // task polls hyper's connection, and the watchdog is polled right
        // after it (see `watch`).
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.head_since.store(0, Ordering::Relaxed);
        if self.draining.load(Ordering::Relaxed) {
            self.began.notify_waiters();
        }
        InFlight(self.clone())
    }

    /// Whether a request is in flight.
    pub(crate) fn busy(&self) -> bool {
        self.in_flight.load(Ordering::Relaxed) > 0
    }

    /// Whether the connection speaks HTTP/2.
    pub(crate) fn is_http2(&self) -> bool {
        self.http2.load(Ordering::Relaxed)
    }

    /// Bytes of a request head have come while no request is in flight:
    /// the headers timeout runs from now, unless a head is already timed.
    /// Says whether this began one.
    pub(crate) fn head_begun(&self) -> bool {
        let begins = self.in_flight.load(Ordering::Relaxed) == 0
            && self.head_since.load(Ordering::Relaxed) == 0;
        if begins {
            self.head_since.store(self.now() + 1, Ordering::Relaxed);
        }
        begins
    }

    /// Asks the connection to end after its requests in flight (see
    /// `end_asked`). The answer that says why wakes the connection's task,
    /// which looks at this then.
    pub(crate) fn ask_to_end(&self) {
        self.end_asked.store(true, Ordering::Relaxed);
    }

    /// Whether [`ask_to_end`](Self::ask_to_end) was called.
    pub(crate) fn end_asked(&self) -> bool {
        self.end_asked.load(Ordering::Relaxed)
    }

    /// hyper holds the connection as HTTP/1 (`true`), or it rests (`false`).
    pub(crate) fn set_restable(&self, restable: bool) {
        self.restable.store(restable, Ordering::Relaxed);
    }

    /// Whether an idle connection may rest now: HTTP/1 with hyper holding
    /// it, no request in flight or begun, no request body left unread
    /// (hyper may still be reading past it), everything written flushed,
    /// and the server not stopping (a stopping server closes idle
    /// connections itself).
    fn may_rest(&self) -> bool {
        self.restable.load(Ordering::Relaxed)
            && !self.busy()
            && self.head_since.load(Ordering::Relaxed) == 0
            && !self.body_unread.load(Ordering::Relaxed)
            && !self.writes_unflushed.load(Ordering::Relaxed)
            && !self.draining.load(Ordering::Relaxed)
    }

    /// The server is stopping: from now on responses close the connection.
    pub(crate) fn start_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    /// Resolves once a request is in flight (at once if one is), after
    /// [`start_draining`](Self::start_draining).
    pub(crate) async fn request_in_flight(&self) {
        let began = self.began.notified();
        tokio::pin!(began);
        // Registered before the check, so a request that begins in between
        // is not missed.
        began.as_mut().enable();
        if self.busy() {
            return;
        }
        began.await;
    }

    /// A request with a body began (`true`), or its body was read to the
    /// end (`false`): see `body_unread`.
    pub(crate) fn body_unread(&self, unread: bool) {
        self.body_unread.store(unread, Ordering::Relaxed);
    }

    /// Keeps the connection's slot for as long as this state lives.
    pub(crate) fn hold_slot(&self, slot: Option<tokio::sync::OwnedSemaphorePermit>) {
        *self.slot.lock().expect("slot lock poisoned") = slot;
    }

    /// A response body handed hyper `bytes` and now waits for the client to
    /// take them: they must be taken by the grace period from now, or by
    /// their size at the minimum rate past the data before them, whichever
    /// is later (Kestrel's rule).
    pub(crate) fn handed_to_client(&self, bytes: u64, rate: &MinDataRate) {
        let now = Instant::now();
        let at_rate = rate.time_for(bytes);
        let single = self.nanos(after(now, rate.grace_period.max(at_rate)));
        let accumulated = self
            .write_deadline
            .load(Ordering::Relaxed)
            .saturating_add(u64::try_from(at_rate.as_nanos()).unwrap_or(u64::MAX));
        self.write_deadline
            .store(single.max(accumulated), Ordering::Relaxed);
        self.waiting_for_client.fetch_add(1, Ordering::Relaxed);
    }

    /// The client took what a response body handed hyper (hyper asks for
    /// more, or the body ends).
    pub(crate) fn taken_by_client(&self) {
        self.waiting_for_client.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A request in flight on a connection.
#[derive(Debug)]
pub(crate) struct InFlight(Arc<ConnState>);

impl InFlight {
    /// Whether the server is stopping, so the response closes the connection.
    pub(crate) fn draining(&self) -> bool {
        self.0.draining.load(Ordering::Relaxed)
    }

    /// The connection the request came on.
    pub(crate) fn connection(&self) -> &Arc<ConnState> {
        &self.0
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::Relaxed) == 1 {
            self.0.idle_since.store(self.0.now(), Ordering::Relaxed);
        }
    }
}

/// How long an idle HTTP/1 connection keeps hyper's state before it rests:
/// hyper holds a read and a write buffer of 8 KiB each for as long as it
/// has the connection, so an idle connection gives them back, as nginx
/// frees an idle connection's buffers, and gets new ones with its next
/// request. Long enough that a connection busy with requests never rests.
pub(crate) const REST_AFTER: Duration = Duration::from_millis(250);

/// Why the watchdog woke the connection task.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Wake {
    /// Close the connection: see [`watch`].
    Close,
    /// The connection has been idle for [`REST_AFTER`] and may rest.
    Rest,
}

/// Resolves with [`Wake::Close`] when the connection has been idle for
/// `keep_alive_timeout`, has taken `request_headers_timeout` to send a
/// request head, or has let a response wait past `min_response_data_rate`;
/// with [`Wake::Rest`] when it may rest (`ConnState::may_rest`) after
/// [`REST_AFTER`] idle.
///
/// It wakes at least every `min(request_headers_timeout,
/// keep_alive_timeout)`, and every second while requests are in flight: a
/// head that starts between two looks has a deadline past the next look,
/// so every cut still comes on time.
///
/// The connection task must poll it after hyper's connection, every time
/// it polls that: requests begin there (hyper calls the service from it,
/// for HTTP/2 too), so a request still in flight at the end of a wake-up
/// is seen in the same wake-up, and one that began and ended within it
/// costs the watchdog nothing.
pub(crate) async fn watch(state: &ConnState, limits: &Limits) -> Wake {
    let period = limits
        .request_headers_timeout
        .min(limits.keep_alive_timeout);
    loop {
        let now = Instant::now();
        let idle_since = || state.at(state.idle_since.load(Ordering::Relaxed));
        let (deadline, next_look) = if state.busy() {
            let writes = (limits.min_response_data_rate.is_some()
                && state.waiting_for_client.load(Ordering::Relaxed) > 0)
                .then(|| state.at(state.write_deadline.load(Ordering::Relaxed)));
            (writes, after(now, HEARTBEAT))
        } else {
            let deadline = match state.head_since.load(Ordering::Relaxed) {
                0 => after(idle_since(), limits.keep_alive_timeout),
                since => after(state.at(since - 1), limits.request_headers_timeout),
            };
            (Some(deadline), after(now, period))
        };
        let until = match deadline {
            Some(at) if at <= now => {
                tracing::debug!(
                    "closing a connection: idle, too slow sending a request head, or too slow taking a response"
                );
                return Wake::Close;
            }
            Some(at) => at.min(next_look),
            None => next_look,
        };
        let until = if state.may_rest() {
            let rest_at = after(idle_since(), REST_AFTER);
            if rest_at <= now {
                return Wake::Rest;
            }
            until.min(rest_at)
        } else {
            until
        };
        if state.busy() {
            tokio::time::sleep_until(until).await;
            continue;
        }
        // A long sleep while idle, cut short by a request in flight, so
        // its response is timed from the start.
        let sleep = tokio::time::sleep_until(until);
        tokio::pin!(sleep);
        std::future::poll_fn(|cx| {
            if state.busy() {
                return Poll::Ready(());
            }
            sleep.as_mut().poll(cx)
        })
        .await;
    }
}

/// `at + timeout`, or a time decades away when a configured timeout is too
/// large for the clock: such a timeout means "never".
fn after(at: Instant, timeout: Duration) -> Instant {
    const NEVER: Duration = Duration::from_secs(60 * 60 * 24 * 365 * 30);
    at.checked_add(timeout).unwrap_or_else(|| at + NEVER)
}

/// The connection's I/O as hyper sees it: reports the first byte of each
/// request head to the watchdog, and lingers on close when asked.
pub(crate) struct Monitored<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> {
    /// Taken by a lingering close when the connection is dropped.
    io: Option<T>,
    state: Arc<ConnState>,
    first_read: bool,
    /// Where HTTP/2's frames start, once the preface was seen.
    frames: Option<FrameBounds>,
    /// HTTP/1: the empty lines read before the pending request line, while
    /// no other byte of it has come (`None` once one has).
    blank: Option<usize>,
    /// How many such bytes a request head may start with: the head limit.
    /// hyper skips them before parsing and holds them to its buffer's size
    /// only by the size of its reads.
    max_blank: usize,
    /// Bytes read before hyper had the connection, handed to it first.
    replay: Option<Replay>,
}

/// Bytes read before hyper had the connection, as hyper is given them:
/// the first bytes, read to tell HTTP/1 from HTTP/2 or to wake a rested
/// connection (see `sniff`), or what hyper had read of a next request when
/// the connection was taken from it.
struct Replay {
    bytes: Vec<u8>,
    given: usize,
    /// A read error met in the read that returned the last of `bytes`,
    /// for the next read.
    error: Option<io::Error>,
}

impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Monitored<T> {
    pub(crate) fn new(io: T, state: Arc<ConnState>, max_blank: usize) -> Self {
        Self {
            io: Some(io),
            state,
            first_read: true,
            frames: None,
            blank: None,
            max_blank,
            replay: None,
        }
    }

    /// Makes the next reads return `bytes`, already read (and looked at).
    pub(crate) fn replay(&mut self, bytes: Vec<u8>) {
        if !bytes.is_empty() {
            self.replay = Some(Replay {
                bytes,
                given: 0,
                error: None,
            });
        }
    }

    fn poll_monitored(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let res = self.io().poll_read(cx, buf);
        if matches!(res, Poll::Ready(Ok(())))
            && buf.filled().len() > before
            && self.read(&buf.filled()[before..])
        {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "empty lines before a request line past max_request_headers_total_size",
            )));
        }
        res
    }

    fn io(&mut self) -> Pin<&mut T> {
        Pin::new(self.io.as_mut().expect("taken only on drop"))
    }

    /// Bytes arrived: on HTTP/1 any byte while no request is in flight
    /// starts a request head; on HTTP/2 a HEADERS frame does (PINGs,
    /// SETTINGS and WINDOW_UPDATEs of an idle connection do not). Says
    /// whether the head is refused: empty lines past the head limit.
    fn read(&mut self, read: &[u8]) -> bool {
        if std::mem::take(&mut self.first_read) {
            let n = read.len().min(H2_PREFACE_START.len());
            if read[..n] == H2_PREFACE_START[..n] {
                self.state.http2.store(true, Ordering::Relaxed);
                self.frames = Some(FrameBounds::new());
            }
        }
        let starts_head = match &mut self.frames {
            None => true,
            Some(frames) => frames.scan(read),
        };
        if starts_head && self.state.head_begun() && self.frames.is_none() {
            self.blank = Some(0);
        }
        if let Some(blank) = &mut self.blank {
            let lines = read.iter().take_while(|b| matches!(b, b'\r' | b'\n'));
            let n = lines.count();
            *blank += n;
            if *blank > self.max_blank {
                return true;
            }
            if n < read.len() {
                self.blank = None;
            }
        }
        false
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> AsyncRead for Monitored<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let Some(replay) = &mut this.replay else {
            return this.poll_monitored(cx, buf);
        };
        if let Some(e) = replay.error.take() {
            this.replay = None;
            return Poll::Ready(Err(e));
        }
        let n = (replay.bytes.len() - replay.given).min(buf.remaining());
        buf.put_slice(&replay.bytes[replay.given..][..n]);
        replay.given += n;
        if replay.given < replay.bytes.len() {
            return Poll::Ready(Ok(()));
        }
        // All given: the same read takes what the connection has besides,
        // so hyper's buffer need not grow for the rest of a request. After
        // a first read that emptied the socket, tokio knows it is not
        // ready and makes no system call.
        this.replay = None;
        if buf.remaining() > 0
            && let Poll::Ready(Err(e)) = this.poll_monitored(cx, buf)
        {
            this.replay = Some(Replay {
                bytes: Vec::new(),
                given: 0,
                error: Some(e),
            });
        }
        Poll::Ready(Ok(()))
    }
}

/// Follows HTTP/2's frame boundaries through the bytes a connection reads,
/// to see HEADERS frames go by: the 9-byte frame header says the payload's
/// length and the frame's type, and nothing else is looked at (hyper and h2
/// parse the frames; this only counts bytes, so the watchdog can time a
/// header block that never completes).
#[derive(Debug)]
struct FrameBounds {
    /// Preface bytes still to skip.
    preface: usize,
    /// The frame header being gathered, and how much of it is in.
    header: [u8; 9],
    have: usize,
    /// Payload bytes of the current frame still to skip.
    payload: u64,
}

impl FrameBounds {
    const HEADERS: u8 = 0x1;

    fn new() -> Self {
        Self {
            preface: H2_PREFACE.len(),
            header: [0; 9],
            have: 0,
            payload: 0,
        }
    }

    /// Whether a HEADERS frame began in `bytes`.
    fn scan(&mut self, mut bytes: &[u8]) -> bool {
        let mut headers = false;
        while !bytes.is_empty() {
            if self.preface > 0 {
                let n = self.preface.min(bytes.len());
                self.preface -= n;
                bytes = &bytes[n..];
            } else if self.payload > 0 {
                let n = usize::try_from(self.payload)
                    .unwrap_or(usize::MAX)
                    .min(bytes.len());
                self.payload -= n as u64;
                bytes = &bytes[n..];
            } else {
                let n = (9 - self.have).min(bytes.len());
                self.header[self.have..self.have + n].copy_from_slice(&bytes[..n]);
                self.have += n;
                bytes = &bytes[n..];
                if self.have == 9 {
                    self.have = 0;
                    let [a, b, c, kind, ..] = self.header;
                    self.payload = u64::from(u32::from_be_bytes([0, a, b, c]));
                    headers |= kind == Self::HEADERS;
                }
            }
        }
        headers
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> AsyncWrite for Monitored<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.state.writes_unflushed.store(true, Ordering::Relaxed);
        this.io().poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.state.writes_unflushed.store(true, Ordering::Relaxed);
        this.io().poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.as_ref().is_some_and(|io| io.is_write_vectored())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let flushed = this.io().poll_flush(cx);
        // hyper flushes the socket only once its own buffer is written out.
        if matches!(flushed, Poll::Ready(Ok(()))) {
            this.state.writes_unflushed.store(false, Ordering::Relaxed);
        }
        flushed
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().io().poll_shutdown(cx)
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Drop for Monitored<T> {
    fn drop(&mut self) {
        // HTTP/2 ends a stream, not the connection, for an unread body.
        if !self.state.lingers
            || !self.state.body_unread.load(Ordering::Relaxed)
            || self.state.is_http2()
        {
            return;
        }
        let (Some(io), Ok(runtime)) = (self.io.take(), tokio::runtime::Handle::try_current())
        else {
            return;
        };
        // The state goes along: it holds the connection's slot, so a
        // lingering connection still counts against the limit.
        runtime.spawn(linger(io, self.state.clone()));
    }
}

/// A lingering close, as nginx makes one: the answer is out, and the client
/// may still be sending a body nobody will read. Closing now would make
/// the kernel reset the connection, and most clients, still writing, would
/// report the reset instead of the answer. So the write side is shut, and
/// what the client sends is read and dropped, for a bounded time and
/// number of bytes, before the close.
async fn linger<T: AsyncRead + AsyncWrite + Unpin>(mut io: T, _state: Arc<ConnState>) {
    const PATIENCE: Duration = Duration::from_secs(5);
    const BUDGET: u64 = 64 * 1024 * 1024;
    let _ = io.shutdown().await;
    let mut unread = (&mut io).take(BUDGET);
    let _ = tokio::time::timeout(
        PATIENCE,
        tokio::io::copy(&mut unread, &mut tokio::io::sink()),
    )
    .await;
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tokio::io::AsyncWriteExt;

    use super::*;
    use crate::transport::Transport;

    /// What the watchdog does within `window` of (paused) time.
    async fn wake_within(state: &ConnState, window: Duration) -> Option<Wake> {
        tokio::time::timeout(window, watch(state, &Limits::default()))
            .await
            .ok()
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_http1_connection_rests_and_no_other_does() {
        let state = Arc::new(ConnState::new(Transport::Unix));
        // Not known to be HTTP/1 yet (sniffing), or HTTP/2: never.
        assert_eq!(wake_within(&state, REST_AFTER * 4).await, None);

        state.set_restable(true);
        assert_eq!(wake_within(&state, REST_AFTER * 2).await, Some(Wake::Rest));

        // A request in flight keeps it, and the wait is timed from its end.
        let request = state.request_started();
        assert_eq!(wake_within(&state, REST_AFTER * 4).await, None);
        drop(request);
        let started = Instant::now();
        assert_eq!(wake_within(&state, HEARTBEAT * 2).await, Some(Wake::Rest));
        assert!(started.elapsed() >= REST_AFTER, "{:?}", started.elapsed());

        // A response hyper has not all flushed keeps it, until it has.
        let (mut client, server) = tokio::io::duplex(64);
        let mut io = Monitored::new(server, state.clone(), 1024);
        io.write_all(b"HTTP/1.1 200 OK\r\n").await.unwrap();
        assert_eq!(wake_within(&state, REST_AFTER * 4).await, None);
        io.flush().await.unwrap();
        assert_eq!(wake_within(&state, REST_AFTER * 2).await, Some(Wake::Rest));

        // The first bytes of a next head keep it: hyper is reading a request.
        client.write_all(b"GET / HT").await.unwrap();
        let mut buf = [0u8; 16];
        tokio::io::AsyncReadExt::read(&mut io, &mut buf)
            .await
            .unwrap();
        assert_eq!(wake_within(&state, REST_AFTER * 4).await, None);

        // A request body left unread: hyper may still be reading it.
        let state = Arc::new(ConnState::new(Transport::Unix));
        state.set_restable(true);
        state.body_unread(true);
        assert_eq!(wake_within(&state, REST_AFTER * 4).await, None);
        state.body_unread(false);
        assert_eq!(wake_within(&state, REST_AFTER * 2).await, Some(Wake::Rest));

        // A stopping server closes idle connections itself.
        let state = Arc::new(ConnState::new(Transport::Unix));
        state.set_restable(true);
        state.start_draining();
        assert_eq!(wake_within(&state, REST_AFTER * 4).await, None);
    }
}
