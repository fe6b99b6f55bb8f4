//! gRPC over a named pipe: a tonic service served by pipehttp's server, and
//! a tonic client that reaches it through pipehttp's connector.

use std::pin::Pin;

use tokio_stream::Stream;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Response, Status};

/// The generated messages, server and client.
pub mod proto {
    tonic::include_proto!("pipehttp.example");
}

use proto::greeter_client::GreeterClient;
use proto::greeter_server::GreeterServer;
use proto::{Blob, CountRequest, HelloReply, HelloRequest, Number};

/// Largest message either side accepts: tonic's default of 4 MiB is too
/// small for the 10 MiB payloads the example sends.
pub const MAX_MESSAGE_SIZE: usize = 16 * 1024 * 1024;

/// The service's implementation.
#[derive(Debug, Default, Clone, Copy)]
pub struct Greeter;

#[tonic::async_trait]
impl proto::greeter_server::Greeter for Greeter {
    async fn say_hello(
        &self,
        request: Request<HelloRequest>,
    ) -> Result<Response<HelloReply>, Status> {
        let name = request.into_inner().name;
        Ok(Response::new(HelloReply {
            message: format!("Hello {name}!"),
        }))
    }

    type CountStream = Pin<Box<dyn Stream<Item = Result<Number, Status>> + Send>>;

    async fn count(
        &self,
        request: Request<CountRequest>,
    ) -> Result<Response<Self::CountStream>, Status> {
        let count = request.into_inner().count;
        let numbers = tokio_stream::iter((1..=count).map(|value| Ok(Number { value })));
        Ok(Response::new(Box::pin(numbers)))
    }

    async fn echo(&self, request: Request<Blob>) -> Result<Response<Blob>, Status> {
        Ok(Response::new(request.into_inner()))
    }
}

/// The service as routes that pipehttp's `Server::serve` takes.
#[must_use]
pub fn routes() -> tonic::service::Routes {
    tonic::service::Routes::new(
        GreeterServer::new(Greeter)
            .max_decoding_message_size(MAX_MESSAGE_SIZE)
            .max_encoding_message_size(MAX_MESSAGE_SIZE),
    )
}

/// A client for the service at `address` (`http://pipe:/NAME`,
/// `http://unix:/PATH`), connected through pipehttp's connector. The
/// endpoint URL only fills the `:authority` of requests.
pub async fn connect(address: &str) -> Result<GreeterClient<Channel>, Box<dyn std::error::Error>> {
    let connector = pipehttp::client::Connector::new(address)?;
    let channel = Endpoint::from_static("http://localhost")
        .connect_with_connector(connector)
        .await?;
    Ok(GreeterClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_SIZE)
        .max_encoding_message_size(MAX_MESSAGE_SIZE))
}
