//! Accepting connections and serving each one: TLS, the watchdog, and the
//! server's stop phases.

use std::sync::Arc;
use std::time::Duration;

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::options::Protocols;
use crate::tls::Acceptor;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{OwnedSemaphorePermit, mpsc, watch};

use super::service::{Admission, ConnService};
use super::watchdog::{self, ConnState, Monitored};
use super::{Bound, HttpBody, HttpService, Phase, Shared};
use crate::transport::{Connection, Listener, PeerInfo, Transport};

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
    let describe =
        crate::error::Named(listener.local_address().endpoint(), listener.path()).to_string();
    let ctx = Ctx {
        shared,
        service,
        phase: phase.clone(),
        open,
        tls,
        protocols,
    };
    loop {
        // Past max_concurrent_connections one more connection is taken into
        // a waiting room, where its requests wait for a slot; then the loop
        // stops accepting, so further clients queue in the OS until a
        // connection closes.
        let admit = match &ctx.shared.slots {
            None => Admit::Free,
            Some(slots) => match slots.clone().try_acquire_owned() {
                Ok(slot) => Admit::Slot(slot),
                Err(_) => tokio::select! {
                    room = ctx.shared.waiting_room.clone().acquire_owned() => {
                        let room = room.expect("the semaphore is never closed");
                        Admit::Waiting(Arc::new(Admission::new(slots.clone(), room)))
                    }
                    _ = phase.wait_for(|p| *p != Phase::Serving) => break,
                },
            },
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = phase.wait_for(|p| *p != Phase::Serving) => break,
        };
        match accepted {
            Ok(conn) => spawn(conn, admit, ctx.clone()),
            Err(e) if is_connection_error(&e) => {}
            Err(e) => {
                // Out of descriptors or memory: give the system a moment
                // rather than spin; the listener itself stays open.
                tracing::warn!("{describe}: accept failed: {e}; retrying");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    drain(&listener, ctx).await;
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
    /// It waits for one.
    Waiting(Arc<Admission>),
}

fn spawn<S, B>(conn: Connection, admit: Admit, ctx: Ctx<S>)
where
    S: HttpService<B>,
    B: HttpBody,
{
    let Ctx {
        shared,
        service,
        phase,
        open,
        tls,
        protocols,
    } = ctx;
    let (slot, admission) = match admit {
        Admit::Free => (None, None),
        Admit::Slot(slot) => (Some(slot), None),
        Admit::Waiting(admission) => (None, Some(admission)),
    };
    // Two tasks of their own, so a cleartext connection's task does not
    // carry the TLS handshake's state in its future.
    match tls {
        None => {
            tokio::spawn(async move {
                let peer = conn.peer().clone();
                let ctx = ConnCtx::new(peer, &shared, service, phase, admission, protocols);
                serve_connection(conn, ctx).await;
                drop((slot, open));
            });
        }
        Some(tls) => {
            tokio::spawn(async move {
                let peer = conn.peer().clone();
                // A client gets the headers timeout to finish its handshake
                // too, so a silent one cannot hold a slot.
                let handshake =
                    tokio::time::timeout(shared.limits.request_headers_timeout, tls.accept(conn));
                match handshake.await {
                    Ok(Ok(stream)) => {
                        let ctx = ConnCtx::new(peer, &shared, service, phase, admission, protocols);
                        serve_connection(stream, ctx).await;
                    }
                    Ok(Err(e)) => tracing::debug!("TLS handshake failed: {e}"),
                    Err(_) => tracing::debug!("TLS handshake timed out"),
                }
                drop((slot, open));
            });
        }
    }
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
    admission: Option<Arc<Admission>>,
    protocols: Protocols,
}

impl<'a, S> ConnCtx<'a, S> {
    fn new(
        peer: PeerInfo,
        shared: &'a Shared,
        service: S,
        phase: watch::Receiver<Phase>,
        admission: Option<Arc<Admission>>,
        protocols: Protocols,
    ) -> Self {
        Self {
            peer,
            shared,
            service,
            phase,
            admission,
            protocols,
        }
    }
}

type Io<I> = TokioIo<Monitored<I>>;
type Both<'a, I, S> = auto::UpgradeableConnection<'a, Io<I>, ConnService<S>, TokioExecutor>;
type Http1<I, S> = hyper::server::conn::http1::UpgradeableConnection<Io<I>, ConnService<S>>;
type Http2<'a, I, S> = auto::Connection<'a, Io<I>, ConnService<S>, TokioExecutor>;

/// A connection served with the HTTP versions its endpoint allows.
enum Served<'a, I, S, B>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: HttpService<B>,
    B: HttpBody,
{
    /// Both, told apart by the first bytes; HTTP/1 may upgrade.
    Both(Pin<Box<Both<'a, I, S>>>),
    /// HTTP/1 alone, which may upgrade; an HTTP/2 preface is refused.
    Http1(Pin<Box<Http1<I, S>>>),
    /// HTTP/2 alone.
    Http2(Pin<Box<Http2<'a, I, S>>>),
    /// Never made: it only ties the response body type to the enum.
    #[allow(dead_code)]
    Never(
        std::convert::Infallible,
        std::marker::PhantomData<fn() -> B>,
    ),
}

impl<I, S, B> Served<'_, I, S, B>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: HttpService<B>,
    B: HttpBody,
{
    fn graceful_shutdown(&mut self) {
        match self {
            Served::Both(conn) => conn.as_mut().graceful_shutdown(),
            Served::Http1(conn) => conn.as_mut().graceful_shutdown(),
            Served::Http2(conn) => conn.as_mut().graceful_shutdown(),
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
    type Output = Result<(), Box<dyn std::error::Error + Send + Sync>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            Served::Both(conn) => conn.as_mut().poll(cx),
            Served::Http1(conn) => conn.as_mut().poll(cx).map_err(Into::into),
            Served::Http2(conn) => conn.as_mut().poll(cx),
            Served::Never(never, _) => match *never {},
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
        admission,
        protocols,
    } = ctx;
    let current = *phase.borrow_and_update();
    let state = Arc::new(ConnState::new());
    // Only local peers can ask for a handover; TCP peers are never trusted.
    let handover = (peer.transport != Transport::Tcp).then(|| shared.handover.clone());
    let service = ConnService {
        service,
        peer,
        limits: super::service::RequestLimits::new(&shared.limits),
        server_header: shared.add_server_header,
        upgrades: shared.upgrades.clone(),
        state: state.clone(),
        handover,
        admission,
    };
    let io = TokioIo::new(Monitored::new(conn, state.clone()));
    // Boxed: hyper's connection is large, and the task future would
    // otherwise be moved around with it inside.
    let mut conn = match protocols {
        Protocols::Http1AndHttp2 => Served::Both(Box::pin(
            shared.http.serve_connection_with_upgrades(io, service),
        )),
        Protocols::Http1 => Served::Http1(Box::pin(
            shared.http1.serve_connection(io, service).with_upgrades(),
        )),
        Protocols::Http2 => {
            Served::Http2(Box::pin(shared.http2_only.serve_connection(io, service)))
        }
    };
    let watchdog = watchdog::watch(&state, &shared.limits);
    tokio::pin!(watchdog);
    // A stop shuts a connection down at once if it has sent nothing, or
    // after its current request. One whose first request is still arriving
    // gets to finish it: it connected before the stop and is owed an
    // answer, and hyper would drop it unread while sniffing the protocol.
    // The connection is polled once before deciding, so a client queued
    // with its request already sent is seen as one.
    let mut stop_pending = current != Phase::Serving;
    let phase_change = next_phase(phase, current);
    tokio::pin!(phase_change);
    let mut polled = false;
    loop {
        if stop_pending && polled && (state.begun() || !state.receiving_head()) {
            conn.graceful_shutdown();
            stop_pending = false;
        }
        polled = true;
        tokio::select! {
            res = &mut conn => {
                if let Err(e) = res {
                    tracing::debug!("connection ended: {e}");
                }
                return;
            }
            () = &mut watchdog => return,
            () = state.first_request(), if stop_pending => {}
            (next, phase) = &mut phase_change => match next {
                Phase::Closing | Phase::Serving => return,
                Phase::Draining => {
                    stop_pending = true;
                    phase_change.set(next_phase(phase, Phase::Draining));
                }
            },
        }
    }
}
