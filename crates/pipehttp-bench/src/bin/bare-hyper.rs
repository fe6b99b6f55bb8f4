//! The baseline a Rust user would write by hand: tokio and hyper-util,
//! answering `Hello world!` to every request, on a Unix socket or TCP.
//!
//! ```text
//! bare-hyper --listen unix:/PATH | tcp:127.0.0.1:PORT [--current-thread] [--http1-only]
//! ```
//! Prints `listening on ...` once it accepts, then serves until killed.
//! By default it runs what `#[tokio::main]` gives (a multi-threaded runtime
//! with one worker per core) and hyper-util's auto (HTTP/1.1 + HTTP/2)
//! connection builder, the same runtime and builder `pipehttp serve` uses,
//! so the difference between the two is the library's own cost.

use std::convert::Infallible;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use pipehttp_bench::{Flags, HELLO};
use tokio::io::{AsyncRead, AsyncWrite};

async fn hello(_req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let mut res = Response::new(Full::new(Bytes::from_static(HELLO)));
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    Ok(res)
}

fn serve<I>(io: I, http1_only: bool)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        let io = TokioIo::new(io);
        if http1_only {
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, service_fn(hello))
                .await;
        } else {
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(io, service_fn(hello))
                .await;
        }
    });
}

fn main() {
    let flags = Flags::from_env();
    let listen = flags
        .value("--listen")
        .unwrap_or_else(|| {
            eprintln!("usage: bare-hyper --listen unix:/PATH|tcp:HOST:PORT [--current-thread] [--http1-only]");
            std::process::exit(2)
        })
        .to_owned();
    let http1_only = flags.has("--http1-only");
    let mut builder = if flags.has("--current-thread") {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    let runtime = builder.enable_all().build().expect("a tokio runtime");
    runtime.block_on(async move {
        if let Some(addr) = listen.strip_prefix("tcp:") {
            let listener = tokio::net::TcpListener::bind(addr).await.expect("bind TCP");
            println!("listening on tcp:{}", listener.local_addr().unwrap());
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                serve(stream, http1_only);
            }
        }
        #[cfg(unix)]
        if let Some(path) = listen.strip_prefix("unix:") {
            let _ = std::fs::remove_file(path);
            let listener = tokio::net::UnixListener::bind(path).expect("bind the Unix socket");
            println!("listening on unix:{path}");
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                serve(stream, http1_only);
            }
        }
        eprintln!("bare-hyper: --listen takes unix:/PATH or tcp:HOST:PORT, not '{listen}'");
        std::process::exit(2)
    });
}
