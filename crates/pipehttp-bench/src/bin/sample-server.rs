//! pipehttp's sample app (the same one `pipehttp serve` runs) on a tokio
//! runtime flavour of choice, to measure what the flavour costs.
//!
//! ```text
//! sample-server --listen URL [--runtime multi|current] [--workers N]
//! ```
//! Prints `Now listening on: ...` per endpoint and serves until killed.

use pipehttp::Server;
use pipehttp_bench::Flags;
use pipehttp_cli::sample::SampleApp;

fn main() {
    let flags = Flags::from_env();
    let Some(listen) = flags.value("--listen") else {
        eprintln!("usage: sample-server --listen URL [--runtime multi|current] [--workers N]");
        std::process::exit(2)
    };
    let mut builder = match flags.value("--runtime").unwrap_or("multi") {
        "current" => tokio::runtime::Builder::new_current_thread(),
        "multi" => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            if let Some(n) = flags.value("--workers") {
                b.worker_threads(n.parse().expect("--workers takes a number"));
            }
            b
        }
        other => {
            eprintln!("--runtime takes multi or current, not '{other}'");
            std::process::exit(2)
        }
    };
    let runtime = builder.enable_all().build().expect("a tokio runtime");
    let result = runtime.block_on(async {
        let server = Server::builder().urls(listen).bind().await?;
        for bound in server.local_addresses() {
            println!("Now listening on: {bound}");
        }
        server.serve(SampleApp::new()).await
    });
    if let Err(e) = result {
        eprintln!("sample-server: {e}");
        std::process::exit(1);
    }
}
