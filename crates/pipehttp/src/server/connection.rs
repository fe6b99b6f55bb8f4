//! Accepting connections and serving each one: the connection limit, TLS,
//! the watchdog, and the server's stop phases.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio::time::Instant;

use super::service::{ConnService, RequestLimits};
use super::sniff::{Sniff, Sniffed};
use super::watchdog::{self, ConnState, Monitored};
use super::{Bound, HttpBody, HttpService, Phase, Shared};
use crate::error::Named;
use crate::options::Protocols;
use crate::tls::Acceptor;
use crate::transport::{Connection, Listener, PeerInfo};

/// How long a stopping server waits for the next request on an idle
/// HTTP/1 connection (or the first on a new one) before closing it. A
/// request that comes is answered with `Connection: close`, so a client
/// that was about to reuse the connection is served instead of finding it
/// closed under its request; one that stays idle is closed after this.
const DRAIN_IDLE: Duration = Duration::from_secs(1);

/// Everything a connection task needs besides its connection.
struct Ctx<S> {
    shared: Arc<Shared>,
    service: S,
    phase: watch::Receiver<Phase>,
    open: mpsc::Sender<()>,
    tls: Option<Acceptor>,
    protocols: Protocols,
}

impl<S: Clone> Clone for Ctx<S> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
            service: self.service.clone(),
            phase: self.phase.clone(),
            open: self.open.clone(),
            tls: self.tls.clone(),
            protocols: self.protocols,
        }
    }
}

pub(crate) async fn accept_loop<S, B>(
    Bound {
        listener,
        tls,
        protocols,
    }: Bound,
    shared: Arc<Shared>,
    service: S,
    mut phase: watch::Receiver<Phase>,
    open: mpsc::Sender<()>,
) where
    S: HttpService<B>,
    B: HttpBody,
{
    let describe = Named(listener.local_address().endpoint(), listener.path()).to_string();
    let ctx = Ctx {
        shared,
        service,
        phase: phase.clone(),
        open,
        tls,
        protocols,
    };
    let name_lost = listener.name_lost();
    tokio::pin!(name_lost);
    let mut failures = AcceptFailures::default();
    // At max_concurrent_connections one more connection per listener waits
    // inside the server for a slot, in order; the loop accepts the next
    // only once that one has its slot, so the rest wait in the OS's queue,
    // in order too. The loop itself never holds a slot. The room is the
    // listener's own: a loop waiting in accept() holds it, and a room
    // shared by several listeners would leave the others unserved until
    // that one's next client came.
    let waiting_room = Arc::new(Semaphore::new(1));
    loop {
        let room = match &ctx.shared.slots {
            None => None,
            Some(_) => tokio::select! {
                room = waiting_room.clone().acquire_owned() => {
                    Some(room.expect("the semaphore is never closed"))
                }
                _ = phase.wait_for(|p| *p != Phase::Serving) => break,
                pid = &mut name_lost => {
                    lost(&describe, pid, &ctx.shared);
                    break;
                }
            },
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = phase.wait_for(|p| *p != Phase::Serving) => break,
            pid = &mut name_lost => {
                lost(&describe, pid, &ctx.shared);
                break;
            }
        };
        match accepted {
            Ok(conn) => spawn(conn, admit(&ctx.shared.slots, room), ctx.clone()),
            Err(e) if is_connection_error(&e) => {}
            Err(e) => {
                // Out of descriptors or memory: give the system a moment
                // rather than spin; the listener itself stays open.
                failures.note(&describe, &e);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    drain(&listener, ctx).await;
}

/// Another server took this listener's name: the whole server hands over.
fn lost(describe: &str, pid: Option<u32>, shared: &Shared) {
    let who = pid.map_or_else(|| "another server".to_owned(), |p| format!("pid {p}"));
    tracing::info!("{describe}: {who} took the name over; handing over");
    shared.handover.notify_one();
}

/// A slot for a new connection, or its place in the waiting room.
fn admit(slots: &Option<Arc<Semaphore>>, room: Option<OwnedSemaphorePermit>) -> Admit {
    match (slots, room) {
        (Some(slots), Some(room)) => match slots.clone().try_acquire_owned() {
            Ok(slot) => Admit::Slot(slot),
            Err(_) => Admit::Waiting(slots.clone(), room),
        },
        _ => Admit::Free,
    }
}

/// Accept failures that are not one connection's (out of descriptors or
/// memory), logged at most once a second with how many there were.
#[derive(Default)]
struct AcceptFailures {
    last_logged: Option<Instant>,
    unlogged: u64,
}

impl AcceptFailures {
    const EVERY: Duration = Duration::from_secs(1);

    fn note(&mut self, describe: &str, e: &std::io::Error) {
        let now = Instant::now();
        if self
            .last_logged
            .is_some_and(|at| now.duration_since(at) < Self::EVERY)
        {
            self.unlogged += 1;
            return;
        }
        let more = match std::mem::take(&mut self.unlogged) {
            0 => String::new(),
            n => format!(" ({n} more since the last report)"),
        };
        tracing::warn!("{describe}: accept failed: {e}; retrying{more}");
        self.last_logged = Some(now);
    }
}

/// Stops new clients from reaching `listener`, then serves those already
/// queued on it: they connected before the stop and are owed an answer.
async fn drain<S, B>(listener: &Listener, ctx: Ctx<S>)
where
    S: HttpService<B>,
    B: HttpBody,
{
    listener.release();
    // A zero timeout polls accept once: it yields a queued client, or
    // nothing when the queue is empty.
    while let Ok(Ok(conn)) = tokio::time::timeout(Duration::ZERO, listener.accept()).await {
        spawn(conn, Admit::Free, ctx.clone());
    }
}

/// How a connection counts against `max_concurrent_connections`.
enum Admit {
    /// Not at all: no limit, or a client queued before a stop.
    Free,
    /// It holds a slot.
    Slot(OwnedSemaphorePermit),
    /// It waits for a slot, holding the waiting room's place meanwhile.
    Waiting(Arc<Semaphore>, OwnedSemaphorePermit),
}

impl Admit {
    /// The slot this connection is served with, once it has one.
    async fn slot(self) -> Option<OwnedSemaphorePermit> {
        match self {
            Admit::Free => None,
            Admit::Slot(slot) => Some(slot),
            // The semaphore is fair: waiting connections get slots in the
            // order they came. The room's place is given up with the wait.
            Admit::Waiting(slots, _room) => Some(
                slots
                    .acquire_owned()
                    .await
                    .expect("the semaphore is never closed"),
            ),
        }
    }
}

fn spawn<S, B>(conn: Connection, admit: Admit, mut ctx: Ctx<S>)
where
    S: HttpService<B>,
    B: HttpBody,
{
    // Two kinds of task, so a cleartext connection's task does not carry
    // the TLS handshake's state in its future.
    match ctx.tls.take() {
        None => {
            tokio::spawn(connection_task(conn, admit, ctx, |conn| async {
                Some(conn)
            }));
        }
        Some(tls) => {
            // A client gets the headers timeout to finish its handshake
            // too, so a silent one cannot hold a slot.
            let timeout = ctx.shared.limits.request_headers_timeout;
            let handshake = move |conn| async move {
                match tokio::time::timeout(timeout, tls.accept(conn)).await {
                    Ok(Ok(stream)) => Some(stream),
                    Ok(Err(e)) => {
                        tracing::debug!("TLS handshake failed: {e}");
                        None
                    }
                    Err(_) => {
                        tracing::debug!("TLS handshake timed out");
                        None
                    }
                }
            };
            tokio::spawn(connection_task(conn, admit, ctx, handshake));
        }
    }
}

/// One connection's life: its slot, then `start` (the TLS handshake, if
/// any), then HTTP.
async fn connection_task<S, B, I, F>(
    conn: Connection,
    admit: Admit,
    ctx: Ctx<S>,
    start: impl FnOnce(Connection) -> F,
) where
    S: HttpService<B>,
    B: HttpBody,
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    F: Future<Output = Option<I>>,
{
    let Ctx {
        shared,
        service,
        phase,
        open,
        protocols,
        ..
    } = ctx;
    let slot = admit.slot().await;
    let peer = conn.peer().clone();
    if let Some(io) = start(conn).await {
        let ctx = ConnCtx {
            peer,
            shared: &shared,
            service,
            phase,
            protocols,
            slot,
        };
        serve_connection(io, ctx).await;
    }
    drop(open);
}

/// Errors that concern one would-be connection, not the listener.
fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset, Interrupted};
    matches!(
        e.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset | Interrupted
    )
}

/// What one connection task serves with.
struct ConnCtx<'a, S> {
    peer: PeerInfo,
    shared: &'a Shared,
    service: S,
    phase: watch::Receiver<Phase>,
    protocols: Protocols,
    /// Its `max_concurrent_connections` slot, if it counts.
    slot: Option<OwnedSemaphorePermit>,
}

type Io<I> = TokioIo<Monitored<I>>;
type Http1<I, S> = hyper::server::conn::http1::UpgradeableConnection<Io<I>, ConnService<S>>;
type Http2<I, S> = hyper::server::conn::http2::Connection<Io<I>, ConnService<S>, TokioExecutor>;

/// A connection served with the HTTP versions its endpoint allows.
// The large variant is the connection before hyper has it, in the task's
// future once; boxing it would cost an allocation per connection to save
// nothing, as the other variants are boxes of hyper's (larger) connections.
#[allow(clippy::large_enum_variant)]
enum Served<'a, I, S, B>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: HttpService<B>,
    B: HttpBody,
{
    /// The connection's first bytes are read before hyper has it: to tell
    /// HTTP/1 from HTTP/2 where both are allowed, or, on an HTTP/1
    /// connection that rests while idle (`rested`; see
    /// `watchdog::REST_AFTER`), to wake it with its next request.
    Sniffing {
        sniff: Sniff,
        io: Monitored<I>,
        service: ConnService<S>,
        shared: &'a Shared,
        rested: bool,
    },
    /// HTTP/1, which may upgrade; on an HTTP/1-only endpoint an HTTP/2
    /// preface is refused by hyper.
    Http1(Pin<Box<Http1<I, S>>>),
    Http2(Pin<Box<Http2<I, S>>>),
    /// Closed before hyper had it: by the client, or by a stop.
    Done,
    /// Never made: it only ties the response body type to the enum.
    #[allow(dead_code)]
    Never(
        std::convert::Infallible,
        std::marker::PhantomData<fn() -> B>,
    ),
}

// Nothing in it is pinned in place: hyper's connections are boxed, and the
// rest is moved into them once the version is known.
impl<I, S, B> Unpin for Served<'_, I, S, B>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: HttpService<B>,
    B: HttpBody,
{
}

impl<'a, I, S, B> Served<'a, I, S, B>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: HttpService<B>,
    B: HttpBody,
{
    fn new(
        io: Monitored<I>,
        service: ConnService<S>,
        shared: &'a Shared,
        protocols: Protocols,
    ) -> Self {
        // Boxed: hyper's connection is large, and the task future would
        // otherwise be moved around with it inside.
        match protocols {
            Protocols::Http1AndHttp2 => Served::Sniffing {
                sniff: Sniff::new(),
                io,
                service,
                shared,
                rested: false,
            },
            Protocols::Http1 => Self::http1(shared, io, service),
            Protocols::Http2 => Self::http2(shared, io, service),
        }
    }

    fn http1(shared: &Shared, io: Monitored<I>, service: ConnService<S>) -> Self {
        service.state.set_restable(true);
        let conn = shared.http1.serve_connection(TokioIo::new(io), service);
        Served::Http1(Box::pin(conn.with_upgrades()))
    }

    /// Takes an idle HTTP/1 connection from hyper, so that hyper's buffers
    /// and state are freed while it waits for its next request. The
    /// watchdog asks only when nothing is in flight, begun or unflushed
    /// (`ConnState::may_rest`), so hyper holds nothing it still owes.
    fn rest(&mut self, shared: &'a Shared) {
        if !matches!(self, Served::Http1(_)) {
            return;
        }
        let Served::Http1(conn) = std::mem::replace(self, Served::Done) else {
            unreachable!("matched above")
        };
        // `None` only for an upgraded connection, which hyper has let go of
        // and whose future has ended.
        let Some(parts) = Pin::into_inner(conn).into_parts() else {
            return;
        };
        let mut io = parts.io.into_inner();
        let service = parts.service;
        if parts.read_buf.is_empty() {
            service.state.set_restable(false);
            *self = Served::Sniffing {
                sniff: Sniff::new(),
                io,
                service,
                shared,
                rested: true,
            };
        } else {
            // Bytes of a next request hyper has read but not parsed (they
            // came behind the last one, so no head was timed for them):
            // hyper takes them back at once, and the head is timed from
            // now, which also keeps the watchdog from asking again.
            service.state.head_begun();
            io.replay(parts.read_buf.to_vec());
            *self = Self::http1(shared, io, service);
        }
    }

    fn http2(shared: &Shared, io: Monitored<I>, service: ConnService<S>) -> Self {
        let conn = shared.http2.serve_connection(TokioIo::new(io), service);
        Served::Http2(Box::pin(conn))
    }

    fn graceful_shutdown(&mut self) {
        match self {
            // Nothing asked yet: the connection closes at once.
            Served::Sniffing { .. } => *self = Served::Done,
            Served::Http1(conn) => conn.as_mut().graceful_shutdown(),
            Served::Http2(conn) => conn.as_mut().graceful_shutdown(),
            Served::Done => {}
            Served::Never(never, _) => match *never {},
        }
    }
}

impl<I, S, B> Future for Served<'_, I, S, B>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: HttpService<B>,
    B: HttpBody,
{
    type Output = Result<(), hyper::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        loop {
            return match this {
                Served::Sniffing { sniff, io, .. } => {
                    let sniffed = match ready!(sniff.poll(io, cx)) {
                        Ok(sniffed) => sniffed,
                        Err(e) => {
                            tracing::debug!("connection ended: {e}");
                            Sniffed::Closed
                        }
                    };
                    let Served::Sniffing {
                        sniff,
                        mut io,
                        service,
                        shared,
                        rested,
                    } = std::mem::replace(this, Served::Done)
                    else {
                        unreachable!("matched above")
                    };
                    io.replay(sniff.into_bytes());
                    *this = match sniffed {
                        Sniffed::Closed => Served::Done,
                        // A connection that rested is HTTP/1 for good: a
                        // preface now is a bad request, hyper's to answer.
                        Sniffed::Http2 if !rested => Self::http2(shared, io, service),
                        Sniffed::Http1 | Sniffed::Http2 => Self::http1(shared, io, service),
                    };
                    continue;
                }
                Served::Http1(conn) => conn.as_mut().poll(cx),
                Served::Http2(conn) => conn.as_mut().poll(cx),
                Served::Done => Poll::Ready(Ok(())),
                Served::Never(never, _) => match *never {},
            };
        }
    }
}

/// Resolves with the server's next stop phase after `after` (and the
/// receiver, for the next wait): made once per phase, not on every wake-up
/// of the connection.
async fn next_phase(
    mut phase: watch::Receiver<Phase>,
    after: Phase,
) -> (Phase, watch::Receiver<Phase>) {
    let next = match phase.wait_for(|p| *p > after).await {
        Ok(next) => *next,
        Err(_) => Phase::Closing,
    };
    (next, phase)
}

/// Where a connection is in the server's stop.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// The server serves.
    No,
    /// The server drains and this idle HTTP/1 connection waits, until the
    /// instant given, for a request to answer with `Connection: close`.
    WaitingForRequest(Instant),
    /// Shut down as hyper does it: after the request in flight, if any.
    Asked,
}

async fn serve_connection<I, S, B>(conn: I, ctx: ConnCtx<'_, S>)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: HttpService<B>,
    B: HttpBody,
{
    let ConnCtx {
        peer,
        shared,
        service,
        mut phase,
        protocols,
        slot,
    } = ctx;
    let current = *phase.borrow_and_update();
    let state = Arc::new(ConnState::new(peer.transport));
    // Held by the state, so a connection that lingers on close still
    // counts against the limit until it is gone.
    state.hold_slot(slot);
    let service = ConnService {
        service,
        peer,
        limits: RequestLimits::new(&shared.limits),
        server_header: shared.add_server_header,
        upgrades: shared.upgrades.clone(),
        state: state.clone(),
    };
    let io = Monitored::new(
        conn,
        state.clone(),
        shared.limits.max_request_headers_total_size,
    );
    let mut conn = Served::new(io, service, shared, protocols);
    let watchdog = watchdog::watch(&state, &shared.limits);
    tokio::pin!(watchdog);
    // A stop lets every connection finish what it started, and closes
    // each so that no client meets a close under a request it sent: see
    // `Stop` and `DRAIN_IDLE`.
    let mut stop = Stop::No;
    if current != Phase::Serving {
        // Queued before the stop: it connected to be served.
        state.start_draining();
        stop = Stop::WaitingForRequest(Instant::now() + DRAIN_IDLE);
    }
    let phase_change = next_phase(phase, current);
    tokio::pin!(phase_change);
    loop {
        let waiting = match stop {
            Stop::WaitingForRequest(until) => Some(until),
            _ => None,
        };
        tokio::select! {
            // The connection first, then the watchdog: see `watchdog::watch`.
            biased;
            res = &mut conn => {
                if let Err(e) = res {
                    tracing::debug!("connection ended: {e}");
                }
                return;
            }
            wake = &mut watchdog => match wake {
                watchdog::Wake::Close => return,
                watchdog::Wake::Rest => {
                    conn.rest(shared);
                    watchdog.set(watchdog::watch(&state, &shared.limits));
                }
            },
            // No waker: the answer that asked for it wakes this task to
            // be sent, and the flag is read then.
            () = std::future::poll_fn(|_| if state.end_asked() { Poll::Ready(()) } else { Poll::Pending }),
                if stop != Stop::Asked =>
            {
                conn.graceful_shutdown();
                stop = Stop::Asked;
            }
            () = state.request_in_flight(), if waiting.is_some() => {
                conn.graceful_shutdown();
                stop = Stop::Asked;
            }
            () = tokio::time::sleep_until(waiting.unwrap_or_else(Instant::now)), if waiting.is_some() => {
                conn.graceful_shutdown();
                stop = Stop::Asked;
            }
            (next, phase) = &mut phase_change => match next {
                Phase::Closing | Phase::Serving => return,
                Phase::Draining => {
                    state.start_draining();
                    // HTTP/2 says GOAWAY with the last stream it will
                    // serve, so its clients know what to send again; an
                    // HTTP/1 connection with a request in flight closes
                    // after it. An idle HTTP/1 one waits for a request.
                    stop = if state.is_http2() || state.busy() {
                        conn.graceful_shutdown();
                        Stop::Asked
                    } else {
                        Stop::WaitingForRequest(Instant::now() + DRAIN_IDLE)
                    };
                    phase_change.set(next_phase(phase, Phase::Draining));
                }
            },
        }
    }
}
