//! `pipehttp ls`: the pipes on this machine, live and stale, with their
//! servers; `--probe` asks each live one `GET /`, `--clean` removes the
//! stale socket files (and nothing else).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use pipehttp::Client;
use pipehttp::address::ListenAddress;
use pipehttp::transport::{PipeEntry, PipeState, list_pipes};
use serde_json::{Value, json};

use crate::logging::{Sink, Verbosity};

/// How long a probe waits for a server to accept and answer.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, Args)]
pub struct LsArgs {
    /// Only pipes whose name contains this text.
    filter: Option<String>,

    /// Unix: list this folder instead of $TMPDIR (or /tmp).
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,

    /// Unix: every socket in the folder, not only CoreFxPipe_* pipes.
    #[arg(long)]
    all: bool,

    /// Send GET / to each live pipe and show the status and Server header
    /// (on Windows this also learns the server's pid). It is a real
    /// request: filter first on a machine with pipes of other programs.
    #[arg(long)]
    probe: bool,

    /// Remove stale socket files (never a live socket, never anything that
    /// is not a socket).
    #[arg(long)]
    clean: bool,

    /// Print a JSON array instead of a table.
    #[arg(long)]
    json: bool,

    #[command(flatten)]
    verbosity: Verbosity,
}

/// What a `GET /` got.
enum Probe {
    Answered { status: u16, server: Option<String> },
    Failed(String),
}

pub async fn run(args: LsArgs) -> ExitCode {
    args.verbosity.init(Sink::Stderr);
    let mut pipes = match list(&args).await {
        Ok(pipes) => pipes,
        Err(e) => {
            eprintln!("pipehttp: cannot list the pipes: {e}");
            return ExitCode::FAILURE;
        }
    };
    if args.clean {
        match clean(&args, &pipes).await {
            Ok(removed) => pipes.retain(|p| !removed.contains(&p.path)),
            Err(e) => {
                eprintln!("pipehttp: cannot clean the stale sockets: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let mut probes = Vec::new();
    if args.probe {
        probes = probe_all(&pipes).await;
        for (pipe, probe) in pipes.iter_mut().zip(&probes) {
            if let Some((_, Some(pid))) = probe {
                pipe.server_pid.get_or_insert(*pid);
            }
        }
    }
    let probes: Vec<Option<Probe>> = probes.into_iter().map(|p| p.map(|(p, _)| p)).collect();
    if args.json {
        let rows: Vec<Value> = pipes
            .iter()
            .enumerate()
            .map(|(i, p)| to_json(p, probes.get(i).and_then(Option::as_ref)))
            .collect();
        println!("{}", Value::Array(rows));
    } else if pipes.is_empty() {
        eprintln!("no pipes found");
    } else {
        print!("{}", table(&pipes, &probes, args.probe));
    }
    ExitCode::SUCCESS
}

async fn list(args: &LsArgs) -> std::io::Result<Vec<PipeEntry>> {
    let mut pipes = list_pipes(args.dir.as_deref(), args.all).await?;
    if let Some(filter) = &args.filter {
        pipes.retain(|p| p.name.contains(filter.as_str()));
    }
    Ok(pipes)
}

/// Removes the stale sockets among `pipes`, each checked again just
/// before, so a server that came back meanwhile keeps its socket.
async fn clean(args: &LsArgs, pipes: &[PipeEntry]) -> std::io::Result<Vec<PathBuf>> {
    if !pipes.iter().any(|p| p.state == PipeState::Stale) {
        return Ok(Vec::new());
    }
    let now = list(args).await?;
    let mut removed = Vec::new();
    for pipe in now.iter().filter(|p| p.state == PipeState::Stale) {
        match std::fs::remove_file(&pipe.path) {
            Ok(()) => {
                eprintln!("removed the stale socket {}", pipe.path.display());
                removed.push(pipe.path.clone());
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => eprintln!("pipehttp: cannot remove {}: {e}", pipe.path.display()),
        }
    }
    Ok(removed)
}

/// `GET /` on every live pipe at once; with the answer, the server's pid
/// as the connection saw it.
async fn probe_all(pipes: &[PipeEntry]) -> Vec<Option<(Probe, Option<u32>)>> {
    let client = Client::builder()
        .connect_timeout(PROBE_TIMEOUT)
        .timeout(PROBE_TIMEOUT)
        .build();
    let mut tasks = tokio::task::JoinSet::new();
    for (i, pipe) in pipes.iter().enumerate() {
        if let (PipeState::Live, Some(address)) = (&pipe.state, &pipe.address) {
            let client = client.clone();
            let address = address.clone();
            tasks.spawn(async move { (i, probe(&client, address).await) });
        }
    }
    let mut probes: Vec<Option<(Probe, Option<u32>)>> = pipes.iter().map(|_| None).collect();
    while let Some(done) = tasks.join_next().await {
        if let Ok((i, probe)) = done {
            probes[i] = Some(probe);
        }
    }
    probes
}

async fn probe(client: &Client, address: ListenAddress) -> (Probe, Option<u32>) {
    let target = format!("{address}:/");
    match client.get(target).send().await {
        Ok(res) => {
            let pid = res.peer().and_then(|p| p.pid);
            let server = res
                .headers()
                .get(http::header::SERVER)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
            let status = res.status().as_u16();
            (Probe::Answered { status, server }, pid)
        }
        Err(e) => (Probe::Failed(e.to_string()), None),
    }
}

fn to_json(pipe: &PipeEntry, probe: Option<&Probe>) -> Value {
    let mut row = json!({
        "name": pipe.name,
        "path": pipe.path.display().to_string(),
        "address": pipe.address.as_ref().map(ToString::to_string),
        "state": pipe.state.as_str(),
        "owner_uid": pipe.owner_uid,
        "server_pid": pipe.server_pid,
    });
    if let Some(probe) = probe {
        row["probe"] = match probe {
            Probe::Answered { status, server } => json!({"status": status, "server": server}),
            Probe::Failed(error) => json!({"error": error}),
        };
    }
    row
}

/// Aligned columns: NAME STATE PID UID PATH, and with `--probe` what
/// `GET /` answered.
fn table(pipes: &[PipeEntry], probes: &[Option<Probe>], probed: bool) -> String {
    let dash = || "-".to_owned();
    let mut rows = vec![vec![
        "NAME".to_owned(),
        "STATE".to_owned(),
        "PID".to_owned(),
        "UID".to_owned(),
        "PATH".to_owned(),
    ]];
    if probed {
        rows[0].push("GET /".to_owned());
    }
    for (i, pipe) in pipes.iter().enumerate() {
        let mut row = vec![
            pipe.name.clone(),
            pipe.state.to_string(),
            pipe.server_pid.map_or_else(dash, |p| p.to_string()),
            pipe.owner_uid.map_or_else(dash, |u| u.to_string()),
            pipe.path.display().to_string(),
        ];
        if probed {
            row.push(match probes.get(i).and_then(Option::as_ref) {
                Some(Probe::Answered { status, server }) => match server {
                    Some(server) => format!("{status} ({server})"),
                    None => status.to_string(),
                },
                Some(Probe::Failed(error)) => format!("error: {error}"),
                None => dash(),
            });
        }
        rows.push(row);
    }
    let columns = rows[0].len();
    let widths: Vec<usize> = (0..columns)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c + 1 == columns {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}  ", width = widths[c]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}
