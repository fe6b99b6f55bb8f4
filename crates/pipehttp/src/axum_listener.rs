//! `axum::serve` on a pipehttp [`Listener`], behind the `axum` feature.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use axum::{Router, extract::ConnectInfo, routing::get};
//! use pipehttp::{PeerInfo, transport::Listener};
//!
//! let app = Router::new().route(
//!     "/whoami",
//!     get(|ConnectInfo(peer): ConnectInfo<PeerInfo>| async move { format!("{:?}", peer.pid) }),
//! );
//! let address = "http://pipe:/my-test-pipe".parse()?;
//! let listener = Listener::bind(&address, &Default::default()).await?;
//! axum::serve(listener, app.into_make_service_with_connect_info::<PeerInfo>()).await?;
//! # Ok(()) }
//! ```
//!
//! `axum::serve` applies none of pipehttp's HTTP limits; serve with
//! [`Server`](crate::Server) to have them.

use std::io;
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::IncomingStream;

use crate::transport::{Connection, Listener, PeerInfo};

impl axum::serve::Listener for Listener {
    type Io = Connection;
    type Addr = PeerInfo;

    async fn accept(&mut self) -> (Connection, PeerInfo) {
        loop {
            match Listener::accept(self).await {
                Ok(conn) => {
                    let peer = conn.peer().clone();
                    return (conn, peer);
                }
                Err(e) => {
                    // axum's accept cannot fail; out of descriptors is the
                    // usual cause, so give the system a moment.
                    tracing::warn!("accept failed: {e}; retrying");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    /// This process, as a peer would see it on this listener.
    fn local_addr(&self) -> io::Result<PeerInfo> {
        Ok(crate::transport::own_identity(self.transport()))
    }
}

impl Connected<IncomingStream<'_, Listener>> for PeerInfo {
    fn connect_info(stream: IncomingStream<'_, Listener>) -> Self {
        stream.remote_addr().clone()
    }
}
