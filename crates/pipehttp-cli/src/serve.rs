//! `pipehttp serve`: the sample app on the configured endpoints.
//!
//! Where the endpoints come from, highest first: `--urls`, `PIPEHTTP_URLS`,
//! `ASPNETCORE_URLS`, `DOTNET_URLS`, the config file (and its
//! `appsettings.{Environment}.json`, and `Kestrel__Endpoints__*`
//! variables), `http://pipe:/my-test-pipe`. Options: flags, then
//! `Kestrel__*` variables, then the config files, then Kestrel's defaults.

use std::process::ExitCode;

use clap::Args;
use pipehttp::address::ListenAddress;
use pipehttp::config::EndpointConfig;
use pipehttp::transport::Listener;
use pipehttp_cli::sample::SampleApp;

use crate::logging::{Sink, Verbosity};
use crate::server_flags::ServerFlags;

/// Where the demo app listens when nothing says otherwise.
const DEFAULT_URL: &str = "http://pipe:/my-test-pipe";

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Addresses to listen on, separated by ';' (beats PIPEHTTP_URLS, ASPNETCORE_URLS,
    /// DOTNET_URLS and the config file).
    #[arg(long, value_name = "LIST", value_parser = parse_urls)]
    urls: Option<Urls>,

    #[command(flatten)]
    server: ServerFlags,

    #[command(flatten)]
    verbosity: Verbosity,
}

#[derive(Debug, Clone)]
struct Urls(Vec<ListenAddress>);

pub async fn run(args: ServeArgs) -> ExitCode {
    args.verbosity.init(Sink::Stdout);
    match serve(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pipehttp: {}", crate::errors::describe(&e));
            ExitCode::FAILURE
        }
    }
}

async fn serve(args: ServeArgs) -> pipehttp::Result<()> {
    let mut config = args.server.load_config()?;
    if let Some(Urls(urls)) = args.urls {
        config.endpoints = urls
            .into_iter()
            .enumerate()
            .map(|(i, url)| EndpointConfig::new(format!("urls-{}", i + 1), url))
            .collect();
    }
    // A service manager's sockets stand in for the default address.
    let activated = Listener::from_systemd()?;
    if config.endpoints.is_empty() && activated.is_empty() {
        config
            .endpoints
            .push(EndpointConfig::new("default", DEFAULT_URL.parse()?));
    }
    let mut builder = args.server.builder(&config);
    for listener in activated {
        builder = builder.listener(listener);
    }
    builder.bind().await?.serve(SampleApp::new()).await
}

fn parse_urls(text: &str) -> Result<Urls, String> {
    ListenAddress::parse_list(text)
        .map(Urls)
        .map_err(|e| e.to_string())
}
