//! Serves the greeter on a pipe and calls it through the same pipe:
//!
//! ```text
//! cargo run -p pipehttp-grpc-example -- [PIPE-NAME]
//! ```

use pipehttp::Server;
use pipehttp_grpc_example::proto::{Blob, CountRequest, HelloRequest};
use pipehttp_grpc_example::{connect, routes};
use tokio::sync::oneshot;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let name = std::env::args()
        .nth(1)
        .unwrap_or_else(|| format!("grpc-example-{}", std::process::id()));
    let address = format!("http://pipe:/{name}");

    let server = Server::builder().listen(address.as_str()).bind().await?;
    for bound in server.local_addresses() {
        println!("gRPC server on {bound}");
    }
    let (stop, stopped) = oneshot::channel::<()>();
    let serving = tokio::spawn(server.serve_with_shutdown(routes(), async {
        let _ = stopped.await;
    }));

    let mut client = connect(&address).await?;
    let reply = client
        .say_hello(HelloRequest {
            name: "pipe".into(),
        })
        .await?;
    println!("SayHello: {}", reply.into_inner().message);

    let mut numbers = client.count(CountRequest { count: 5 }).await?.into_inner();
    let mut received = Vec::new();
    while let Some(n) = numbers.message().await? {
        received.push(n.value);
    }
    println!("Count: {received:?}");

    let payload = vec![7u8; 10 * 1024 * 1024];
    let echoed = client
        .echo(Blob {
            data: payload.clone(),
        })
        .await?
        .into_inner();
    println!(
        "Echo: {} bytes sent, {} received, equal: {}",
        payload.len(),
        echoed.data.len(),
        echoed.data == payload
    );

    let _ = stop.send(());
    serving.await??;
    Ok(())
}
