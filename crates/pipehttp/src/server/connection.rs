//! Accepting connections and serving each one: TLS, the watchdog, and the
//! server's stop phases.

use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{OwnedSemaphorePermit, mpsc, watch};
use tokio_rustls::TlsAcceptor;

use super::service::ConnService;
use super::watchdog::{self, ConnState, Monitored};
use super::{Bound, HttpBody, HttpService, Phase, Shared};
use crate::transport::{Connection, Listener, PeerInfo, Transport};

/// Everything a connection task needs besides its connection.
struct Ctx<S> {
    shared: Arc<Shared>,
    service: S,
    phase: watch::Receiver<Phase>,
    open: mpsc::Sender<()>,
    tls: Option<TlsAcceptor>,
}

impl<S: Clone> Clone for Ctx<S> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
            service: self.service.clone(),
            phase: self.phase.clone(),
            open: self.open.clone(),
            tls: self.tls.clone(),
        }
    }
}

pub(crate) async fn accept_loop<S, B>(
    Bound { listener, tls }: Bound,
    shared: Arc<Shared>,
    service: S,
    mut phase: watch::Receiver<Phase>,
    open: mpsc::Sender<()>,
) where
    S: HttpService<B>,
    B: HttpBody,
{
    let describe = listener.local_address().endpoint().describe();
    let ctx = Ctx {
        shared,
        service,
        phase: phase.clone(),
        open,
        tls,
    };
    loop {
        // Past max_concurrent_connections the loop stops accepting, so new
        // clients queue in the OS until a connection closes.
        let permit = match &ctx.shared.slots {
            Some(slots) => tokio::select! {
                permit = slots.clone().acquire_owned() => {
                    Some(permit.expect("the semaphore is never closed"))
                }
                _ = phase.wait_for(|p| *p != Phase::Serving) => break,
            },
            None => None,
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = phase.wait_for(|p| *p != Phase::Serving) => break,
        };
        match accepted {
            Ok(conn) => spawn(conn, permit, ctx.clone()),
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
        spawn(conn, None, ctx.clone());
    }
}

fn spawn<S, B>(conn: Connection, permit: Option<OwnedSemaphorePermit>, ctx: Ctx<S>)
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
    } = ctx;
    tokio::spawn(async move {
        let peer = conn.peer().clone();
        match tls {
            None => serve_connection(conn, peer, &shared, service, phase).await,
            Some(tls) => {
                // A client gets the headers timeout to finish its handshake
                // too, so a silent one cannot hold a slot.
                let handshake =
                    tokio::time::timeout(shared.limits.request_headers_timeout, tls.accept(conn));
                match handshake.await {
                    Ok(Ok(stream)) => serve_connection(stream, peer, &shared, service, phase).await,
                    Ok(Err(e)) => tracing::debug!("TLS handshake failed: {e}"),
                    Err(_) => tracing::debug!("TLS handshake timed out"),
                }
            }
        }
        drop(permit);
        drop(open);
    });
}

/// Errors that concern one would-be connection, not the listener.
fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset, Interrupted};
    matches!(
        e.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset | Interrupted
    )
}

async fn serve_connection<I, S, B>(
    conn: I,
    peer: PeerInfo,
    shared: &Shared,
    service: S,
    mut phase: watch::Receiver<Phase>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: HttpService<B>,
    B: HttpBody,
{
    let state = Arc::new(ConnState::new());
    // Only local peers can ask for a handover; TCP peers are never trusted.
    let handover = (peer.transport != Transport::Tcp).then(|| shared.handover.clone());
    let service = ConnService {
        service,
        peer,
        max_body: shared.limits.max_request_body_size,
        max_head: Some(shared.limits.max_request_headers_total_size)
            .filter(|&max| max < super::MIN_HEAD_BUFFER),
        state: state.clone(),
        handover,
    };
    let io = TokioIo::new(Monitored::new(conn, state.clone()));
    let conn = shared.http.serve_connection_with_upgrades(io, service);
    tokio::pin!(conn);
    let watchdog = watchdog::watch(&state, &shared.limits);
    tokio::pin!(watchdog);
    if *phase.borrow_and_update() != Phase::Serving {
        conn.as_mut().graceful_shutdown();
    }
    loop {
        tokio::select! {
            res = conn.as_mut() => {
                if let Err(e) = res {
                    tracing::debug!("connection ended: {e}");
                }
                return;
            }
            () = &mut watchdog => return,
            changed = phase.changed() => match (changed, *phase.borrow()) {
                (Err(_), _) | (_, Phase::Closing) => return,
                (_, Phase::Draining) => conn.as_mut().graceful_shutdown(),
                (_, Phase::Serving) => {}
            },
        }
    }
}
