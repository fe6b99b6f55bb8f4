//! An axum `Router` on a pipe: served by pipehttp's `Server` (with its
//! limits), and by `axum::serve` on a pipehttp `Listener` (with
//! `ConnectInfo<PeerInfo>`).

#![cfg(feature = "axum")]

use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::routing::{get, post};
use axum::{Extension, Router};
use bytes::Bytes;
use http::StatusCode;
use pipehttp::client::Body;
use pipehttp::transport::Listener;
use pipehttp::{Client, PeerInfo, PipeOptions, Server};
use tokio::sync::oneshot;

/// Any single wait longer than this is a hang, not slowness.
const PATIENCE: Duration = Duration::from_secs(20);

async fn within<F: std::future::Future>(fut: F) -> F::Output {
    tokio::time::timeout(PATIENCE, fut)
        .await
        .expect("the operation hung")
}

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

#[tokio::test]
async fn router_served_by_the_builder_on_a_pipe() {
    // Server::builder().serve(router): routes answer, PeerInfo is an Extension.
    let name = testkit::unique_name("axum-builder");
    let app = routes().route(
        "/whoami",
        get(|Extension(peer): Extension<PeerInfo>| async move { describe(&peer) }),
    );
    let server = Server::builder()
        .listen(format!("http://pipe:/{name}").as_str())
        .bind()
        .await
        .expect("bind");
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(server.serve_with_shutdown(app, async {
        let _ = stopped.await;
    }));

    let client = Client::new();
    assert_eq!(
        get_text(&client, &format!("http://pipe:/{name}:/test")).await,
        (StatusCode::OK, "Hello world!".to_owned())
    );
    assert_eq!(
        get_text(&client, &format!("http://pipe:/{name}:/whoami")).await,
        (StatusCode::OK, format!("pipe {}", std::process::id()))
    );
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
    stop.send(()).unwrap();
    within(task).await.unwrap().expect("serve returns Ok");
}

#[tokio::test]
async fn builder_limits_apply_to_a_router() {
    // max_request_body_size gives 413 for a Router too, declared or chunked.
    let name = testkit::unique_name("axum-limit");
    let server = Server::builder()
        .listen(format!("http://pipe:/{name}").as_str())
        .max_request_body_size(Some(100))
        .bind()
        .await
        .expect("bind");
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(server.serve_with_shutdown(routes(), async {
        let _ = stopped.await;
    }));
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
    stop.send(()).unwrap();
    within(task).await.unwrap().expect("serve returns Ok");
}

#[tokio::test]
async fn router_served_by_axum_serve_on_a_pipe_listener() {
    // axum::serve(listener, …) on a pipehttp Listener; ConnectInfo<PeerInfo> gives our pid.
    let name = testkit::unique_name("axum-serve");
    let address = format!("http://pipe:/{name}").parse().unwrap();
    let listener = Listener::bind(&address, &PipeOptions::default())
        .await
        .expect("bind");
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
    assert_eq!(
        get_text(&client, &format!("http://pipe:/{name}:/test")).await,
        (StatusCode::OK, "Hello world!".to_owned())
    );
    assert_eq!(
        get_text(&client, &format!("http://pipe:/{name}:/whoami")).await,
        (StatusCode::OK, format!("pipe {}", std::process::id()))
    );

    drop(client);
    stop.send(()).unwrap();
    within(task).await.unwrap().expect("axum::serve returns Ok");
    if cfg!(unix) {
        let path = path.expect("a socket path");
        assert!(!path.exists(), "{} is removed", path.display());
    }
}
