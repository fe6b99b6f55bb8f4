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
    // A flag given twice takes its last value, as curl does: scripts add
    // `--unix-socket S` or `-m 5` in front of a command line that may have its own.
    #[command(args_override_self = true)]
    Get(request::RequestArgs),
    /// Send any request, with curl's flags.
    #[command(args_override_self = true)]
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

/// jemalloc in place of glibc's malloc, which keeps memory freed after a
/// load in its per-thread arenas instead of giving it back (see Cargo.toml).
/// Only the binary chooses it: the library leaves the allocator to its users.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, which it reads from this symbol as it starts
/// (`MALLOC_CONF`, prefixed as the crate builds it). Freed pages go back to
/// the system within about a second (`dirty_decay_ms`, `muzzy_decay_ms`: 0
/// skips the lazily freed stage), and a background thread does it, so a
/// server that goes idle after a load still returns what it held: without
/// it, jemalloc only purges while the program allocates.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
// SAFETY: jemalloc reads this as a `const char *` to a NUL-terminated
// string; a thin reference to the first byte of a static one is that, and
// nothing else defines the symbol.
#[unsafe(export_name = "_rjem_malloc_conf")]
static MALLOC_CONF: &u8 = &b"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0\0"[0];

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
