//! Criterion benchmarks of pipehttp's hot paths, so regressions show up in
//! review: `cargo bench -p pipehttp-bench`.
//!
//! - address parsing: listen addresses and request targets of every form,
//!   and the pipe-name-to-path mapping;
//! - the client's per-request path without I/O: `Client::request` with a
//!   target string (parse, builder);
//! - the connector's per-request path with I/O: `Connector::connect` to a
//!   live pipe (what a new-connection-per-request client pays), and a whole
//!   `GET /test` through `Client` on a pooled connection, against the
//!   sample server in this process.

use std::fmt::Debug;
use std::hint::black_box;
use std::str::FromStr;
use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, criterion_group, criterion_main};
use pipehttp::address::{ListenAddress, PipeName, RequestTarget};
use pipehttp::client::Connector;
use pipehttp::transport::pipe_endpoint;
use pipehttp::{Client, Server};
use pipehttp_cli::sample::SampleApp;

/// One benchmark per case: parsing `text` as a `T`.
fn parse_each<T: FromStr>(g: &mut BenchmarkGroup<'_, WallTime>, cases: &[(&str, &str)])
where
    T::Err: Debug,
{
    for &(name, text) in cases {
        g.bench_function(name, |b| {
            b.iter(|| black_box(text).parse::<T>().unwrap());
        });
    }
}

fn address_parsing(c: &mut Criterion) {
    let mut g = c.benchmark_group("address");
    parse_each::<ListenAddress>(
        &mut g,
        &[
            ("listen_pipe", "http://pipe:/my-test-pipe"),
            ("listen_unix", "http://unix:/run/app.sock"),
            ("listen_tcp", "http://127.0.0.1:8080"),
        ],
    );
    parse_each::<RequestTarget>(
        &mut g,
        &[
            ("target_pipe", "http://pipe:/my-test-pipe:/test?x=1"),
            ("target_unix", "http://unix:/run/app.sock:/v1/items"),
            ("target_tcp", "http://localhost:8080/a/b?c=d"),
        ],
    );
    let target: RequestTarget = "http://pipe:/my-test-pipe:/test".parse().unwrap();
    g.bench_function("target_display", |b| {
        b.iter(|| black_box(&target).to_string())
    });
    g.bench_function("target_host_header", |b| {
        b.iter(|| black_box(&target).host_header());
    });
    let name = PipeName::new("my-test-pipe").unwrap();
    g.bench_function("pipe_endpoint", |b| {
        b.iter(|| pipe_endpoint(black_box(&name)))
    });
    g.finish();
}

fn client_without_io(c: &mut Criterion) {
    let client = Client::new();
    c.bench_function("client/request_builder", |b| {
        b.iter(|| {
            client
                .get(black_box("http://pipe:/my-test-pipe:/test"))
                .header("accept", "text/plain")
        });
    });
}

/// The sample server on a pipe of its own, on a thread of its own.
fn start_server() -> String {
    let name = format!("pipehttp-criterion-{}", std::process::id());
    let listen = format!("http://pipe:/{name}");
    let (tx, rx) = std::sync::mpsc::channel();
    let url = listen.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let server = Server::builder().listen(url).bind().await.unwrap();
            tx.send(()).unwrap();
            server
                .serve_with_shutdown(SampleApp::new(), std::future::pending())
                .await
                .unwrap();
        });
    });
    rx.recv_timeout(Duration::from_secs(30))
        .expect("the server starts");
    listen
}

fn client_with_io(c: &mut Criterion) {
    let listen = start_server();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let connector = Connector::new(listen.as_str()).unwrap();
    c.bench_function("connector/connect", |b| {
        b.iter(|| rt.block_on(connector.connect()).unwrap());
    });
    let client = Client::new();
    let target = format!("{listen}:/test");
    c.bench_function("client/get_test_pooled", |b| {
        b.iter(|| {
            rt.block_on(async { client.get(target.as_str()).send().await?.bytes().await })
                .unwrap()
        });
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = address_parsing, client_without_io, client_with_io
}
criterion_main!(benches);
