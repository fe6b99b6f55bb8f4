//! Handing a name over from a running server to its successor.
//!
//! The successor binds first (see `Listener::bind_takeover`), then sends
//! `POST /.well-known/pipehttp/takeover` over a connection it opened to the
//! old server before taking the name. The old server answers 202 to a peer
//! of its own user, releases the name, serves the clients already queued,
//! finishes its requests and stops.

use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::{Empty, Full};
use hyper_util::rt::TokioIo;

use crate::transport::{self, Connection, PeerInfo};

/// The control path; a request for it never reaches the served app.
pub(crate) const TAKEOVER_PATH: &str = "/.well-known/pipehttp/takeover";

/// How long the successor waits for the old server to agree.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// The old server's side: agree when the caller runs as our user.
pub(crate) fn answer(peer: &PeerInfo, handover: &tokio::sync::Notify) -> Response<Full<Bytes>> {
    let (status, text) = if transport::is_same_user(peer) {
        handover.notify_one();
        (StatusCode::ACCEPTED, "handing over\n")
    } else {
        (
            StatusCode::FORBIDDEN,
            "only a process of the server's own user may take it over\n",
        )
    };
    let mut res = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *res.status_mut() = status;
    res
}

/// The successor's side: asks the server on `old` to hand over. Failure is
/// logged, not returned: the successor holds the name either way, and an
/// old server that declines only keeps its own connections.
pub(crate) async fn ask_to_hand_over(old: Connection, describe: &str) {
    let pid = old
        .peer()
        .pid
        .map_or_else(|| "?".to_owned(), |p| p.to_string());
    match tokio::time::timeout(ANSWER_TIMEOUT, request(old)).await {
        Ok(Ok(StatusCode::ACCEPTED)) => {
            tracing::info!("{describe}: took over from pid {pid}, which now drains");
        }
        Ok(Ok(status)) => tracing::warn!(
            "{describe}: the old server (pid {pid}) answered {status} to the takeover; it keeps the connections it has: stop it yourself"
        ),
        Ok(Err(e)) => tracing::warn!(
            "{describe}: cannot ask the old server (pid {pid}) to hand over: {e}; stop it yourself"
        ),
        Err(_) => tracing::warn!(
            "{describe}: the old server (pid {pid}) did not answer the takeover within {ANSWER_TIMEOUT:?}; stop it yourself"
        ),
    }
}

async fn request(old: Connection) -> Result<StatusCode, hyper::Error> {
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(old)).await?;
    tokio::spawn(connection);
    let req = Request::post(TAKEOVER_PATH)
        .header(header::HOST, "localhost")
        .body(Empty::<Bytes>::new())
        .expect("a static request is valid");
    Ok(sender.send_request(req).await?.status())
}
