//! HTTP over named pipes, on every OS, with the same names.
//!
//! A server listens on `http://pipe:/NAME`; a client calls
//! `http://pipe:/NAME:/path`. On Windows NAME is a real named pipe,
//! `\\.\pipe\NAME`; on Linux and macOS it is a Unix domain socket at the
//! path .NET uses for the same name, so ASP.NET Core's Kestrel and
//! `HttpClient` meet pipehttp on either side.
//!
//! ```no_run
//! # async fn run() -> pipehttp::Result<()> {
//! use pipehttp::Server;
//! use std::convert::Infallible;
//!
//! let hello = tower::service_fn(|_req: http::Request<pipehttp::RequestBody>| async {
//!     Ok::<_, Infallible>(http::Response::new("Hello world!".to_owned()))
//! });
//! Server::builder()
//!     .listen("http://pipe:/my-test-pipe")
//!     .bind()
//!     .await?
//!     .serve(hello)
//!     .await
//! # }
//! ```

#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod address;
#[cfg(feature = "axum")]
mod axum_listener;
pub mod client;
#[cfg(feature = "config")]
pub mod config;
mod error;
pub mod options;
pub mod server;
#[cfg(feature = "tls")]
pub mod tls;
#[cfg(not(feature = "tls"))]
#[path = "tls_disabled.rs"]
mod tls;
pub mod transport;

pub use crate::address::{ListenAddress, RequestTarget};
pub use crate::client::Client;
#[cfg(feature = "config")]
pub use crate::config::Config;
pub use crate::error::{Error, Remedy, Result};
pub use crate::options::{Limits, MinDataRate, PipeOptions, ServerOptions};
pub use crate::server::{BodyError, RequestBody, Server, ServerBuilder};
pub use crate::transport::{PeerInfo, Transport};

/// The README's Rust examples, compiled with the doc tests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeExamples;
