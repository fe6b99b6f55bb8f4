//! Upgraded connections (WebSocket, Docker's `Upgrade: tcp` hijack): once
//! both sides have switched protocols, bytes are copied both ways until
//! both are done, each direction on its own, so a side that finishes
//! sending (half-close) still gets everything the other sends back.

use std::time::Duration;

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// How much each direction reads at a time.
const BUFFER: usize = 64 * 1024;

/// The upgraded connections still open. Each holds a sender; once the
/// proxy's own is dropped, the receiver ends when the last one closes.
pub(crate) struct Tunnels {
    open: mpsc::Sender<()>,
    closed: mpsc::Receiver<()>,
}

impl Tunnels {
    pub(crate) fn new() -> Self {
        let (open, closed) = mpsc::channel(1);
        Self { open, closed }
    }

    /// What a tunnel holds while it runs.
    pub(crate) fn guard(&self) -> mpsc::Sender<()> {
        self.open.clone()
    }

    /// Waits until every tunnel has closed, or `deadline`; returns how many
    /// were still open then (they close when the runtime stops).
    pub(crate) async fn drain(self, deadline: Instant) -> usize {
        let Self { open, mut closed } = self;
        drop(open);
        match tokio::time::timeout_at(deadline, closed.recv()).await {
            Ok(_) => 0,
            // The receiver's own count: every sender left is a tunnel.
            Err(_) => closed.sender_strong_count(),
        }
    }
}

/// Waits for both switches, then copies until both directions are done.
/// When one side ends its sending, the other side's write half is shut
/// down and the other direction carries on; an error on either side ends
/// both.
pub(crate) fn spawn(downstream: OnUpgrade, upstream: OnUpgrade, guard: mpsc::Sender<()>) {
    tokio::spawn(async move {
        let _guard = guard;
        let started = std::time::Instant::now();
        let (downstream, upstream) = match tokio::try_join!(downstream, upstream) {
            Ok(both) => both,
            Err(e) => {
                tracing::debug!("an upgrade did not complete: {e}");
                return;
            }
        };
        let mut downstream = TokioIo::new(downstream);
        let mut upstream = TokioIo::new(upstream);
        let copied = tokio::io::copy_bidirectional_with_sizes(
            &mut downstream,
            &mut upstream,
            BUFFER,
            BUFFER,
        )
        .await;
        let took =
            Duration::from_millis(u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX));
        match copied {
            Ok((up, down)) => tracing::debug!(
                "upgraded connection closed after {took:?}: {up} bytes to the target, {down} bytes back"
            ),
            Err(e) => tracing::debug!("upgraded connection broke off after {took:?}: {e}"),
        }
    });
}
