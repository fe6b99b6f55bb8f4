//! A tonic service on pipehttp's server and a tonic client through
//! pipehttp's connector: unary, server-streaming and 10 MiB calls.

use pipehttp::Server;
use pipehttp_grpc_example::proto::{Blob, CountRequest, HelloRequest};
use pipehttp_grpc_example::{connect, routes};
use tokio::sync::oneshot;

/// Serves the greeter on `address`, runs every kind of call against it,
/// then stops the server.
async fn exercise(address: &str) {
    let server = Server::builder().listen(address).bind().await.unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let serving = tokio::spawn(server.serve_with_shutdown(routes(), async {
        let _ = stopped.await;
    }));
    let mut client = connect(address).await.unwrap();

    let reply = client
        .say_hello(HelloRequest {
            name: "grpc".into(),
        })
        .await
        .unwrap();
    assert_eq!(reply.into_inner().message, "Hello grpc!");

    let mut numbers = client
        .count(CountRequest { count: 100 })
        .await
        .unwrap()
        .into_inner();
    let mut received = Vec::new();
    while let Some(n) = numbers.message().await.unwrap() {
        received.push(n.value);
    }
    assert_eq!(received, (1..=100).collect::<Vec<_>>());

    let payload: Vec<u8> = (0..10 * 1024 * 1024)
        .map(|i: u32| (i % 251) as u8)
        .collect();
    let echoed = client
        .echo(Blob {
            data: payload.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        echoed.data == payload,
        "the 10 MiB message came back changed"
    );

    stop.send(()).unwrap();
    serving.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_over_a_pipe() {
    exercise(&format!("http://pipe:/{}", testkit::unique_name("grpc"))).await;
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_over_a_unix_socket() {
    let dir = testkit::tempdir().unwrap();
    let path = dir.path().join("grpc.sock");
    exercise(&format!("http://unix:{}", path.display())).await;
}
