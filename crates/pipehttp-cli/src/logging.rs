//! Log output through tracing, with `-v`/`-q` to turn it up or down.

use std::io::IsTerminal;

use clap::Args;
use tracing_subscriber::EnvFilter;

/// Verbosity flags shared by every subcommand.
#[derive(Debug, Clone, Copy, Args)]
pub struct Verbosity {
    /// More log output (-v debug, -vv trace).
    #[arg(short = 'v', long = "verbose", action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    /// Less log output (-q warnings only, -qq errors only).
    #[arg(short = 'q', long = "quiet", action = clap::ArgAction::Count, global = true, conflicts_with = "verbose")]
    quiet: u8,
}

/// Where log lines go. A server's stdout carries only logs, as Kestrel's
/// does, from info up. Clients and the demo print their own output on
/// stdout, so their logs go to stderr, from warnings up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sink {
    Stdout,
    Stderr,
}

impl Verbosity {
    /// Installs the global subscriber. `RUST_LOG` wins over the flags.
    pub fn init(self, sink: Sink) {
        let levels = ["error", "warn", "info", "debug", "trace"];
        let default = match sink {
            Sink::Stdout => 2,
            Sink::Stderr => 1,
        };
        let level = (default + usize::from(self.verbose))
            .saturating_sub(usize::from(self.quiet))
            .min(levels.len() - 1);
        init(levels[level], sink);
    }
}

impl Verbosity {
    /// Installs the subscriber as [`init`](Self::init) does, except that a
    /// first `-v` does not raise the level: the caller gives it a meaning
    /// of its own (the proxy's access log), and `-vv` does what `-v` does
    /// elsewhere. Returns whether that first `-v` was given.
    pub fn init_with_own_v(self, sink: Sink) -> bool {
        let given = self.verbose > 0;
        Self {
            verbose: self.verbose.saturating_sub(1),
            ..self
        }
        .init(sink);
        given
    }
}

/// Installs the global subscriber at `level` unless `RUST_LOG` says otherwise.
pub fn init(level: &str, sink: Sink) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .without_time();
    let _ = match sink {
        Sink::Stdout => builder
            .with_ansi(std::io::stdout().is_terminal())
            .with_writer(std::io::stdout)
            .try_init(),
        Sink::Stderr => builder
            .with_ansi(std::io::stderr().is_terminal())
            .with_writer(std::io::stderr)
            .try_init(),
    };
}
