//! The flags every server command shares: a config file, a default
//! certificate, and one flag per option of the library's options schema
//! (`pipehttp::options::OPTIONS`), named in kebab-case with its default in
//! its help. A command flattens [`ServerFlags`] into its arguments, then
//! [`ServerFlags::load_config`] gives the layered configuration with the
//! flags on top.

use std::path::PathBuf;

use clap::builder::ValueParser;
use clap::{Arg, ArgAction, ArgMatches, Args, Command, FromArgMatches};
use pipehttp::config::CertificateConfig;
use pipehttp::options::{Kind, OPTIONS, OptionInfo, Raw, Syntax, Value};
use pipehttp::{Config, Server, ServerBuilder};

const HEADING: &str = "Server options";

/// The server flags a command was given.
#[derive(Debug, Clone, Default)]
pub struct ServerFlags {
    /// `--config FILE`.
    pub config: Option<PathBuf>,
    /// `--cert FILE`: PEM chain, or PKCS#12 file.
    pub cert: Option<PathBuf>,
    /// `--key FILE`: the PEM chain's key.
    pub key: Option<PathBuf>,
    /// `--cert-password`: the PKCS#12 file's or the encrypted key's.
    pub cert_password: Option<String>,
    /// Every schema option given, with its value.
    pub options: Vec<(&'static OptionInfo, Value)>,
    /// `--takeover`: take the names over from a running server.
    pub takeover: bool,
}

impl ServerFlags {
    /// The configuration as `Config::load` layers it (the file, its
    /// environment file, `Kestrel__*` and `*_URLS` variables), with these
    /// flags on top.
    pub fn load_config(&self) -> pipehttp::Result<Config> {
        let mut config = Config::load(self.config.as_deref())?;
        self.apply(&mut config);
        Ok(config)
    }

    /// Puts the flags over `config`: the options given, and `--cert` as
    /// the default certificate.
    pub fn apply(&self, config: &mut Config) {
        for (info, value) in &self.options {
            info.set(&mut config.options, value.clone());
        }
        if let Some(cert) = &self.cert {
            let mut certificate = CertificateConfig::new(cert);
            if let Some(key) = &self.key {
                certificate = certificate.key_path(key);
            }
            if let Some(password) = &self.cert_password {
                certificate = certificate.password(password);
            }
            config.default_certificate = Some(certificate);
        }
    }

    /// A server builder for `config`, taking the names over if
    /// `--takeover` was given.
    pub fn builder(&self, config: &Config) -> ServerBuilder {
        Server::builder().config(config).takeover(self.takeover)
    }
}

fn option_arg(info: &'static OptionInfo) -> Arg {
    let parse = move |text: &str| -> Result<Value, String> {
        info.parse(&Raw::Text(text.to_owned()), Syntax::Flag)
            .map(|parsed| parsed.value)
            .map_err(|e| match e.split_once(": expected ") {
                Some((_, expected)) => format!("expected {expected}"),
                None => e,
            })
    };
    Arg::new(info.name)
        .long(info.flag())
        .value_name(info.kind.value_name())
        .help(format!(
            "{} [default: {}]",
            // The library's words for "no limit" are Rust's.
            info.summary().replace("`None`", "unlimited"),
            info.default_text()
        ))
        .value_parser(ValueParser::new(parse))
        // A list option takes one item per flag (`--allow-user a
        // --allow-user b`), and the flags replace the config file's list.
        .action(if info.kind == Kind::Names {
            ArgAction::Append
        } else {
            ArgAction::Set
        })
        .help_heading(HEADING)
}

impl Args for ServerFlags {
    fn augment_args(cmd: Command) -> Command {
        let cmd = cmd
            // Under the command's own options, not the heading below:
            // it is how the server starts, not how it serves.
            .arg(
                Arg::new("takeover")
                    .long("takeover")
                    .action(ArgAction::SetTrue)
                    .help(
                        "Take the names over from a running server of this user instead of \
                         failing with \"already in use\"; it stops accepting, finishes its \
                         requests and exits",
                    ),
            )
            .arg(
                Arg::new("config")
                    .long("config")
                    .value_name("FILE")
                    .value_parser(clap::value_parser!(PathBuf))
                    .help(
                        "Config file: *.toml, or *.json in ASP.NET Core's appsettings shape \
                         (with appsettings.{Environment}.json beside it)",
                    )
                    .help_heading(HEADING),
            )
            .arg(
                Arg::new("cert")
                    .long("cert")
                    .value_name("FILE")
                    .value_parser(clap::value_parser!(PathBuf))
                    .help(
                        "Certificate for https endpoints that have none of their own: \
                         a PEM chain (with --key), or a .pfx/.p12 file",
                    )
                    .help_heading(HEADING),
            )
            .arg(
                Arg::new("key")
                    .long("key")
                    .value_name("FILE")
                    .value_parser(clap::value_parser!(PathBuf))
                    .requires("cert")
                    .help("Private key (PEM) of --cert")
                    .help_heading(HEADING),
            )
            .arg(
                Arg::new("cert_password")
                    .long("cert-password")
                    .value_name("PASSWORD")
                    .requires("cert")
                    .help("Password of a .pfx/.p12 --cert, or of an encrypted --key")
                    .help_heading(HEADING),
            );
        OPTIONS
            .iter()
            .fold(cmd, |cmd, info| cmd.arg(option_arg(info)))
    }

    fn augment_args_for_update(cmd: Command) -> Command {
        Self::augment_args(cmd)
    }
}

impl FromArgMatches for ServerFlags {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        let mut flags = Self::default();
        flags.update_from_arg_matches(matches)?;
        Ok(flags)
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        let path = |id: &str| matches.get_one::<PathBuf>(id).cloned();
        self.config = path("config").or(self.config.take());
        self.cert = path("cert").or(self.cert.take());
        self.key = path("key").or(self.key.take());
        self.takeover |= matches.get_flag("takeover");
        if let Some(password) = matches.get_one::<String>("cert_password") {
            self.cert_password = Some(password.clone());
        }
        for info in OPTIONS {
            let value = if info.kind == Kind::Names {
                matches.get_many::<Value>(info.name).map(|items| {
                    let names = items
                        .flat_map(|item| match item {
                            Value::Names(names) => names.clone(),
                            _ => Vec::new(),
                        })
                        .collect();
                    Value::Names(names)
                })
            } else {
                matches.get_one::<Value>(info.name).cloned()
            };
            if let Some(value) = value {
                self.options.retain(|(i, _)| i.name != info.name);
                self.options.push((info, value));
            }
        }
        Ok(())
    }
}
