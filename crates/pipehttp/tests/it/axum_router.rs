//! An axum `Router` on a pipe: served by pipehttp's `Server` (with its
//! limits), and by `axum::serve` on a pipehttp `Listener` (with
//! `ConnectInfo<PeerInfo>`).

#![cfg(feature = "axum")]

use axum::extract::ConnectInfo;
use axum::routing::{get, post};
use axum::{Extension, Router};
use bytes::Bytes;
use http::StatusCode;
use pipehttp::client::Body;
use pipehttp::{Client, PeerInfo};
use tokio::sync::oneshot;

use crate::client_robustness::bind_new_pipe;
use crate::server::{on_new_pipe, start_with, within};

/// `transport pid` of a peer, as the `/whoami` routes answer.
fn describe(peer: &PeerInfo) -> String {
    format!(
        "{} {}",
        peer.transport.as_str(),
        peer.pid.map_or_else(|| "?".to_owned(), |p| p.to_string())
    )
}

/// The app both ways of serving share.
fn routes() -> Router {
    Router::new()
        .route("/test", get(|| async { "Hello world!" }))
        .route("/echo", post(|body: Bytes| async move { body }))
}

async fn get_text(client: &Client, target: &str) -> (StatusCode, String) {
    let res = within(client.get(target).send())
        .await
        .unwrap_or_else(|e| panic!("GET {target}: {e}"));
    let status = res.status();
    (status, within(res.text()).await.unwrap())
}

/// Checks the routes both ways of serving answer on pipe `name`: `/test`,
/// and `/whoami` with this process as the peer.
async fn answers_test_and_whoami(client: &Client, name: &str) {
    assert_eq!(
        get_text(client, &format!("http://pipe:/{name}:/test")).await,
        (StatusCode::OK, "Hello world!".to_owned())
    );
    assert_eq!(
        get_text(client, &format!("http://pipe:/{name}:/whoami")).await,
        (StatusCode::OK, format!("pipe {}", std::process::id()))
    );
}

#[tokio::test]
async fn router_served_by_the_builder_on_a_pipe() {
    // Server::builder().serve(router): routes answer, PeerInfo is an Extension.
    let (builder, name) = on_new_pipe("axum-builder");
    let app = routes().route(
        "/whoami",
        get(|Extension(peer): Extension<PeerInfo>| async move { describe(&peer) }),
    );
    let server = start_with(builder, app).await;

    let client = Client::new();
    answers_test_and_whoami(&client, &name).await;
    let res = within(
        client
            .post(format!("http://pipe:/{name}:/echo").as_str())
            .body("round trip")
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.text().await.unwrap(), "round trip");

    drop(client);
    server.stop().await.expect("serve returns Ok");
}

#[tokio::test]
async fn builder_limits_apply_to_a_router() {
    // max_request_body_size gives 413 for a Router too, declared or chunked.
    let (builder, name) = on_new_pipe("axum-limit");
    let server = start_with(builder.max_request_body_size(Some(100)), routes()).await;
    let echo = format!("http://pipe:/{name}:/echo");
    let client = Client::new();

    let declared = within(client.post(echo.as_str()).body(vec![b'd'; 101]).send())
        .await
        .unwrap();
    assert_eq!(declared.status(), StatusCode::PAYLOAD_TOO_LARGE);

    let chunked = Body::from_reader(std::io::Cursor::new(vec![b'c'; 101]));
    let streamed = within(client.post(echo.as_str()).body(chunked).send())
        .await
        .unwrap();
    assert_eq!(streamed.status(), StatusCode::PAYLOAD_TOO_LARGE);

    let fits = Body::from_reader(std::io::Cursor::new(vec![b'f'; 100]));
    let ok = within(client.post(echo.as_str()).body(fits).send())
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    assert_eq!(ok.bytes().await.unwrap(), vec![b'f'; 100]);

    drop(client);
    server.stop().await.expect("serve returns Ok");
}

#[tokio::test]
async fn router_served_by_axum_serve_on_a_pipe_listener() {
    // axum::serve(listener, …) on a pipehttp Listener; ConnectInfo<PeerInfo> gives our pid.
    let (name, listener) = bind_new_pipe("axum-serve").await;
    let path = listener.path().map(ToOwned::to_owned);
    let app = routes().route(
        "/whoami",
        get(|ConnectInfo(peer): ConnectInfo<PeerInfo>| async move { describe(&peer) }),
    );
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<PeerInfo>(),
        )
        .with_graceful_shutdown(async {
            let _ = stopped.await;
        })
        .await
    });

    let client = Client::new();
    answers_test_and_whoami(&client, &name).await;

    drop(client);
    stop.send(()).unwrap();
    within(task).await.unwrap().expect("axum::serve returns Ok");
    if cfg!(unix) {
        let path = path.expect("a socket path");
        assert!(!path.exists(), "{} is removed", path.display());
    }
}
