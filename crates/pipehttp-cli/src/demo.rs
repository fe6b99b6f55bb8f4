//! `pipehttp demo`: the whole story in one process, with no setup. A server
//! on a fresh pipe, a call through the client, then the server stops and
//! comes back on the same name while a request waits for it.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;
use pipehttp::{Client, Server};
use pipehttp_cli::sample::SampleApp;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How long the server stays down while a request waits, so the wait shows.
const DOWNTIME: Duration = Duration::from_millis(500);

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// The pipe name to use (default: a fresh name for this run).
    #[arg(long, value_name = "NAME")]
    pipe: Option<String>,
    #[command(flatten)]
    verbosity: crate::logging::Verbosity,
}

pub async fn run(args: DemoArgs) -> ExitCode {
    args.verbosity.init(crate::logging::Sink::Stderr);
    let name = args
        .pipe
        .unwrap_or_else(|| format!("pipehttp-demo-{}", std::process::id()));
    match demo(&name).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pipehttp: {}", crate::errors::describe(&e));
            ExitCode::FAILURE
        }
    }
}

/// A server running in this process, and the switch that stops it.
struct Running {
    stop: oneshot::Sender<()>,
    task: JoinHandle<pipehttp::Result<()>>,
}

async fn start(url: &str) -> pipehttp::Result<Running> {
    let server = Server::builder().listen(url).bind().await?;
    for bound in server.local_addresses() {
        println!("   listening on {bound}");
    }
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(server.serve_with_shutdown(SampleApp::new(), async {
        let _ = stopped.await;
    }));
    Ok(Running { stop, task })
}

impl Running {
    async fn stop(self) -> pipehttp::Result<()> {
        let _ = self.stop.send(());
        joined(self.task.await)
    }
}

/// A task's result; the tasks are never cancelled, so a join error is a
/// panic, which goes on where it belongs.
fn joined<T>(result: Result<T, tokio::task::JoinError>) -> T {
    result.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
}

async fn demo(name: &str) -> pipehttp::Result<()> {
    let url = format!("http://pipe:/{name}");
    let client = Client::new();

    println!("1. Starting the sample server on {url}");
    let server = start(&url).await?;

    let target = format!("{url}:/test");
    println!("2. GET {target}");
    let res = client.get(&target).send().await?;
    let status = res.status();
    let peer = res.peer().and_then(|p| p.pid);
    let body = res.text().await?;
    println!("   {status}: {body}");
    if let Some(pid) = peer {
        println!("   (answered by pid {pid}, as the OS reports the pipe's peer)");
    }

    println!("3. Stopping the server: the name is free again");
    server.stop().await?;

    let target = format!("{url}:/health");
    println!("4. GET {target} while no server runs: the client waits for one");
    let waiting = {
        let client = client.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let res = client.get(&target).send().await?;
            let status = res.status();
            let body = res.text().await?;
            Ok::<_, pipehttp::Error>((status, body, started.elapsed()))
        })
    };
    tokio::time::sleep(DOWNTIME).await;

    println!("5. Starting the server again on the same name");
    let server = start(&url).await?;

    let (status, body, waited) = joined(waiting.await)?;
    println!(
        "6. The waiting request succeeded after {:.1} s: {status}: {body}",
        waited.as_secs_f64()
    );

    server.stop().await?;
    println!("Done: no port was negotiated, no request failed.");
    Ok(())
}
