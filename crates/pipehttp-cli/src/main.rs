//! `pipehttp`: serve, call and test HTTP over named pipes.

mod bench;
mod demo;
mod devcert;
mod errors;
mod exit;
mod logging;
mod ls;
mod proxy;
mod request;
mod serve;
mod server_flags;
mod spec;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// HTTP over named pipes: http://pipe:/NAME on Windows, Linux and macOS.
#[derive(Debug, Parser)]
#[command(name = "pipehttp", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the sample app on one or more addresses.
    Serve(serve::ServeArgs),
    /// GET a target: pipehttp get http://pipe:/NAME:/test
    Get(request::RequestArgs),
    /// Send any request, with curl's flags.
    Request(request::RequestArgs),
    /// Start a server on a pipe, call it, restart it while a request waits.
    Demo(demo::DemoArgs),
    /// Write a self-signed certificate for localhost, for development.
    DevCert(devcert::DevCertArgs),
    /// Load-test a target: requests/s, bytes/s, errors and latency percentiles.
    Bench(bench::BenchArgs),
    /// Pass HTTP between any two addresses: pipes, Unix sockets or TCP (-v: a line per request).
    Proxy(proxy::ProxyArgs),
    /// List the live pipes (and stale ones) with their servers.
    Ls(ls::LsArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // One thread per core, unless the proxy is told otherwise.
    let mut runtime = match &cli.command {
        Command::Proxy(args) if args.threads() == Some(1) => {
            tokio::runtime::Builder::new_current_thread()
        }
        Command::Proxy(args) => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            if let Some(threads) = args.threads() {
                builder.worker_threads(threads);
            }
            builder
        }
        _ => tokio::runtime::Builder::new_multi_thread(),
    };
    let runtime = match runtime.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("pipehttp: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => serve::run(args).await,
            Command::Get(args) => request::run(args, request::Verb::Get).await,
            Command::Request(args) => request::run(args, request::Verb::Request).await,
            Command::Demo(args) => demo::run(args).await,
            Command::DevCert(args) => devcert::run(&args),
            Command::Bench(args) => bench::run(args).await,
            Command::Proxy(args) => proxy::run(args).await,
            Command::Ls(args) => ls::run(args).await,
        }
    })
}
