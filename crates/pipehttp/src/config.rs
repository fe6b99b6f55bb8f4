//! Server configuration as ASP.NET Core reads Kestrel's: `appsettings.json`
//! files, `appsettings.{Environment}.json` beside them, `Kestrel__*`
//! environment variables and the `*_URLS` variables, layered in that
//! order; or a TOML file in this crate's own names.
//!
//! The model is .NET's: every source is flattened to `:`-separated keys
//! compared without case (`Kestrel:Limits:MaxRequestBodySize`), a later
//! source replaces an earlier one key by key, and the result is bound to
//! the options schema ([`crate::options`]). JSON is read as .NET reads it:
//! `//` and `/* */` comments and trailing commas are allowed. Only the
//! `Kestrel` section is pipehttp's: `Logging`, `ConnectionStrings` and any
//! application section are left alone. Every key of Kestrel's documented
//! configuration is accepted; those that cannot apply here are listed in
//! [`Config::not_applied`], and the server logs them once as it starts. A
//! key under `Kestrel` that is not Kestrel's is an error naming the file or
//! variable, the key as .NET writes it, and the closest real key.
//!
//! ```json
//! { // comments and trailing commas, as .NET allows them
//!   "Kestrel": {
//!     "Endpoints": {
//!       "NamedPipeEndpoint": { "Url": "http://pipe:/my-pipe-name", "Protocols": "Http1" },
//!       "Secure": { "Url": "https://pipe:/secure",
//!                   "Certificate": { "Path": "cert.pfx", "Password": "secret" } },
//!     },
//!     "Limits": { "MaxRequestBodySize": null, "RequestHeadersTimeout": "00:00:30" },
//!     "NamedPipes": { "CurrentUserOnly": true },
//!   },
//!   "Logging": { "LogLevel": { "Default": "Information" } },
//!   "AllowedHosts": "*",
//! }
//! ```
//!
//! The TOML shape names the same tree in snake_case, with `[pipes]` for
//! `NamedPipes`; durations are numbers of seconds and `"unlimited"` means
//! no limit:
//!
//! ```toml
//! add_server_header = true
//! [endpoints.pipe]                 # any number of named endpoints
//! url = "http://pipe:/my-pipe-name"
//! protocols = "Http1AndHttp2"
//! certificate = { path = "cert.pem", key_path = "key.pem" }   # or path + password for .pfx
//!
//! [endpoint_defaults]
//! ssl_protocols = ["Tls12", "Tls13"]
//!
//! [certificates.default]           # for https endpoints without their own
//! path = "cert.pem"
//! key_path = "key.pem"
//!
//! [limits]
//! max_request_body_size = 30000000     # bytes, or "unlimited"
//! request_headers_timeout = 30         # seconds, integer or float
//! min_request_body_data_rate = { bytes_per_second = 240, grace_period = 5 }
//! [limits.http2]
//! max_streams_per_connection = 100
//!
//! [pipes]
//! current_user_only = false
//! mode = "0660"                        # or 0o660
//! allow_users = ["alice", 1001]        # names or ids, beside our own user
//! allow_groups = ["docker"]            # one group: the socket is root:docker 0660
//! pipe_sddl = "D:P(A;;GA;;;OW)"         # Windows: the exact descriptor
//! ```
//!
//! Endpoints are listed sorted by name, without case, as .NET's
//! configuration lists sections.

mod bind;
mod store;

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use self::store::{Source, Store};
use crate::address::ListenAddress;
use crate::error::{Error, Result};
use crate::options::{ClientCertificateMode, Protocols, ServerOptions, SslProtocols};

/// The variables that replace the configured endpoints, highest first: a
/// `;` list of listen addresses each. The first one set and not empty wins.
pub const URLS_VARS: [&str; 3] = ["PIPEHTTP_URLS", "ASPNETCORE_URLS", "DOTNET_URLS"];

/// The variables that name the environment, first one set wins; the
/// default is `Production`.
pub const ENVIRONMENT_VARS: [&str; 2] = ["ASPNETCORE_ENVIRONMENT", "DOTNET_ENVIRONMENT"];

/// A server's configuration: where it listens and with which options.
///
/// ```
/// let config = pipehttp::Config::from_toml_str(
///     "[endpoints.pipe]\nurl = \"http://pipe:/my-pipe-name\"\n[limits]\nmax_request_body_size = 1000\n",
///     "example.toml",
/// )?;
/// assert_eq!(config.urls()[0].to_string(), "http://pipe:/my-pipe-name");
/// assert_eq!(config.options.limits.max_request_body_size, Some(1000));
/// # Ok::<(), pipehttp::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// Where to listen, sorted by name. Empty when nothing was configured:
    /// the caller picks its own default.
    pub endpoints: Vec<EndpointConfig>,
    /// Every option of the schema.
    pub options: ServerOptions,
    /// The certificate for https endpoints that name none
    /// (`Kestrel:Certificates:Default`).
    pub default_certificate: Option<CertificateConfig>,
    /// Keys accepted but not applicable here, each with why, as the server
    /// logs them when it starts.
    pub not_applied: Vec<String>,
}

/// One named endpoint, `Kestrel:Endpoints:NAME`.
///
/// ```
/// let endpoint = pipehttp::config::EndpointConfig::new("pipe", "http://pipe:/agent".parse()?);
/// assert_eq!(endpoint.name, "pipe");
/// # Ok::<(), pipehttp::address::AddressError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct EndpointConfig {
    /// The endpoint's name in the file (`pipe` in `[endpoints.pipe]`), or
    /// `env-1`, `env-2`, … for addresses from a `*_URLS` variable.
    pub name: String,
    /// Where it listens.
    pub url: ListenAddress,
    /// Its own certificate, for https.
    pub certificate: Option<CertificateConfig>,
    /// Its HTTP versions, over `EndpointDefaults`.
    pub protocols: Option<Protocols>,
    /// Its TLS versions, over `EndpointDefaults`.
    pub ssl_protocols: Option<SslProtocols>,
    /// Whether it asks for client certificates, over `EndpointDefaults`.
    pub client_certificate_mode: Option<ClientCertificateMode>,
}

impl EndpointConfig {
    /// An endpoint with the defaults for everything but its address.
    #[must_use]
    pub fn new(name: impl Into<String>, url: ListenAddress) -> Self {
        Self {
            name: name.into(),
            url,
            certificate: None,
            protocols: None,
            ssl_protocols: None,
            client_certificate_mode: None,
        }
    }
}

/// A certificate as Kestrel's configuration gives one: `Path` to a PEM
/// certificate chain with `KeyPath` to its key (encrypted if `Password` is
/// given), or `Path` to a `.pfx`/`.p12` file with its `Password`. Relative
/// paths in a file are resolved against the file's directory.
///
/// ```
/// let cert = pipehttp::config::CertificateConfig::new("cert.pem").key_path("key.pem");
/// assert_eq!(cert.key_path.as_deref(), Some(std::path::Path::new("key.pem")));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CertificateConfig {
    /// The certificate chain (PEM), or a PKCS#12 file.
    pub path: PathBuf,
    /// The private key (PEM) of a PEM chain.
    pub key_path: Option<PathBuf>,
    /// The PKCS#12 file's password, or the encrypted PEM key's.
    pub password: Option<String>,
}

impl CertificateConfig {
    /// A certificate file, with no key file or password yet.
    #[must_use]
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            key_path: None,
            password: None,
        }
    }

    /// With the key of a PEM chain.
    #[must_use]
    pub fn key_path(mut self, key_path: impl Into<PathBuf>) -> Self {
        self.key_path = Some(key_path.into());
        self
    }

    /// With a password.
    #[must_use]
    pub fn password(mut self, password: impl Into<String>) -> Self {
        self.password = Some(password.into());
        self
    }
}

/// What a file is, by its extension.
enum Format {
    Toml,
    Json,
}

fn format_of(path: &Path) -> Result<Format> {
    let extension = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match extension.as_deref() {
        Some("toml") => Ok(Format::Toml),
        Some("json") => Ok(Format::Json),
        _ => Err(Error::config(
            path.display().to_string(),
            "unknown config file type: name it *.toml, or *.json for the appsettings shape",
        )),
    }
}

fn read_file(path: &Path, store: &mut Store) -> Result<()> {
    let name = path.display().to_string();
    let format = format_of(path)?;
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::config(&name, format!("cannot read the config file: {e}")))?;
    read_text(format, &text, &name, Some(path), store)
}

/// Adds what `text` says, in `format`, over what `store` holds. `name`
/// names it in messages; `path`, where it is a file, is what relative
/// certificate paths are resolved against.
fn read_text(
    format: Format,
    text: &str,
    name: &str,
    path: Option<&Path>,
    store: &mut Store,
) -> Result<()> {
    let source = Source::file(name, path);
    // Editors on Windows (Visual Studio among them) save appsettings files
    // with a UTF-8 byte order mark, which .NET's reader skips.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let entries = match format {
        Format::Toml => store::read_toml(text, &source),
        Format::Json => store::read_json(text, &source),
    }
    .map_err(|message| Error::config(name, message))?;
    store.layer(entries);
    Ok(())
}

impl Config {
    /// Reads one `.toml` file, or one `.json` file in the appsettings
    /// shape, and nothing else: no environment file, no variables.
    /// Relative certificate paths are resolved against the file's directory.
    ///
    /// ```no_run
    /// let config = pipehttp::Config::from_file("appsettings.json".as_ref())?;
    /// # Ok::<(), pipehttp::Error>(())
    /// ```
    pub fn from_file(path: &Path) -> Result<Config> {
        let mut store = Store::default();
        read_file(path, &mut store)?;
        bind::bind(&store)
    }

    /// Parses the TOML shape. `source_name` names the text in messages.
    ///
    /// ```
    /// let err = pipehttp::Config::from_toml_str("[limits]\nmax_request_body_sise = 1\n", "app.toml").unwrap_err();
    /// assert_eq!(
    ///     err.to_string(),
    ///     "app.toml: unknown key `limits.max_request_body_sise`: did you mean `limits.max_request_body_size`?",
    /// );
    /// ```
    pub fn from_toml_str(text: &str, source_name: &str) -> Result<Config> {
        Self::from_str_in(Format::Toml, text, source_name)
    }

    /// Parses the JSON shape: an ASP.NET Core appsettings file whose
    /// `Kestrel` section configures the server.
    ///
    /// ```
    /// let json = r#"{
    ///   // .NET allows comments and trailing commas
    ///   "Kestrel": { "limits": { "KeepAliveTimeout": "00:02:10", } },
    ///   "ConnectionStrings": { "Default": "Server=db" },
    /// }"#;
    /// let config = pipehttp::Config::from_json_str(json, "appsettings.json")?;
    /// assert_eq!(config.options.limits.keep_alive_timeout, std::time::Duration::from_secs(130));
    /// # Ok::<(), pipehttp::Error>(())
    /// ```
    pub fn from_json_str(text: &str, source_name: &str) -> Result<Config> {
        Self::from_str_in(Format::Json, text, source_name)
    }

    fn from_str_in(format: Format, text: &str, source_name: &str) -> Result<Config> {
        let mut store = Store::default();
        read_text(format, text, source_name, None, &mut store)?;
        bind::bind(&store)
    }

    /// Everything, layered as `WebApplication.CreateBuilder` does, with the
    /// process's environment: see [`load_with_env`](Self::load_with_env).
    ///
    /// ```no_run
    /// let config = pipehttp::Config::load(Some("appsettings.json".as_ref()))?;
    /// # Ok::<(), pipehttp::Error>(())
    /// ```
    pub fn load(file: Option<&Path>) -> Result<Config> {
        Self::load_with_env(file, std::env::vars_os())
    }

    /// Everything, layered as `WebApplication.CreateBuilder` does, lowest
    /// first:
    /// 1. `file`, if given (`.json` or `.toml`);
    /// 2. for a `.json` file, `NAME.{Environment}.json` beside it
    ///    (`appsettings.Development.json`) if it exists, the environment
    ///    named by `ASPNETCORE_ENVIRONMENT`, else `DOTNET_ENVIRONMENT`,
    ///    else `Production`;
    /// 3. the variables `Kestrel__SECTION__KEY` (`__` for `:`);
    /// 4. the endpoints of the first of `PIPEHTTP_URLS`, `ASPNETCORE_URLS`
    ///    and `DOTNET_URLS` that is set, over the file's endpoints.
    ///
    /// ```
    /// let vars = [("Kestrel__Limits__MaxRequestBodySize", ""), ("ASPNETCORE_URLS", "http://pipe:/app")];
    /// let config = pipehttp::Config::load_with_env(None, vars)?;
    /// assert_eq!(config.options.limits.max_request_body_size, None);
    /// assert_eq!(config.urls()[0].to_string(), "http://pipe:/app");
    /// # Ok::<(), pipehttp::Error>(())
    /// ```
    pub fn load_with_env<I, K, V>(file: Option<&Path>, vars: I) -> Result<Config>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<OsString>,
        V: Into<OsString>,
    {
        // Variables whose name or value is not UTF-8 cannot be .NET keys;
        // one of ours that is not is reported when it is looked up.
        let mut vars_utf8 = Vec::new();
        let mut broken = Vec::new();
        for (name, value) in vars {
            match (name.into().into_string(), value.into().into_string()) {
                (Ok(name), Ok(value)) => vars_utf8.push((name, value)),
                (Ok(name), Err(_)) => broken.push(name),
                _ => {}
            }
        }
        let var = |name: &str| -> Result<Option<&str>> {
            if broken.iter().any(|b| b == name) {
                return Err(Error::config(name, "the value is not valid UTF-8"));
            }
            Ok(vars_utf8
                .iter()
                .rev()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str()))
        };

        let mut store = Store::default();
        if let Some(file) = file {
            read_file(file, &mut store)?;
            if let Format::Json = format_of(file)? {
                let mut environment = "Production";
                for name in ENVIRONMENT_VARS {
                    if let Some(value) = var(name)?.filter(|v| !v.trim().is_empty()) {
                        environment = value.trim();
                        break;
                    }
                }
                let beside = environment_file(file, environment);
                if beside.is_file() {
                    read_file(&beside, &mut store)?;
                }
            }
        }
        store.layer(store::read_env(&vars_utf8));
        let mut config = bind::bind(&store)?;
        for name in URLS_VARS {
            if let Some(list) = var(name)?.filter(|v| !v.trim().is_empty()) {
                config.endpoints = parse_urls(name, list)?;
                break;
            }
        }
        Ok(config)
    }

    /// Every endpoint's address, in order.
    ///
    /// ```
    /// assert!(pipehttp::Config::default().urls().is_empty());
    /// ```
    #[must_use]
    pub fn urls(&self) -> Vec<ListenAddress> {
        self.endpoints.iter().map(|e| e.url.clone()).collect()
    }
}

/// `dir/appsettings.json` → `dir/appsettings.{environment}.json`.
fn environment_file(file: &Path, environment: &str) -> PathBuf {
    let stem = file
        .file_stem()
        .map_or_else(String::new, |s| s.to_string_lossy().into_owned());
    file.with_file_name(format!("{stem}.{environment}.json"))
}

/// A `;` list from variable `name`, as endpoints `env-1`, `env-2`, ….
fn parse_urls(name: &str, list: &str) -> Result<Vec<EndpointConfig>> {
    let urls = ListenAddress::parse_list(list).map_err(|e| Error::config(name, e.to_string()))?;
    Ok(urls
        .into_iter()
        .enumerate()
        .map(|(i, url)| EndpointConfig::new(format!("env-{}", i + 1), url))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_vars_in_order() {
        let load = |vars: &[(&str, &str)]| {
            Config::load_with_env(None, vars.iter().copied()).map(|c| {
                c.endpoints
                    .iter()
                    .map(|e| format!("{}={}", e.name, e.url))
                    .collect::<Vec<_>>()
            })
        };
        assert_eq!(load(&[]).unwrap(), Vec::<String>::new());
        assert_eq!(
            load(&[("PIPEHTTP_URLS", " ")]).unwrap(),
            Vec::<String>::new()
        );
        assert_eq!(
            load(&[
                ("DOTNET_URLS", "http://pipe:/d"),
                ("ASPNETCORE_URLS", "http://pipe:/a; http://127.0.0.1:0"),
            ])
            .unwrap(),
            ["env-1=http://pipe:/a", "env-2=http://127.0.0.1:0"]
        );
        assert_eq!(
            load(&[
                ("DOTNET_URLS", "http://pipe:/d"),
                ("PIPEHTTP_URLS", "http://pipe:/p")
            ])
            .unwrap(),
            ["env-1=http://pipe:/p"]
        );
        let err = load(&[("ASPNETCORE_URLS", "http://pipe:/a:b")])
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("ASPNETCORE_URLS: invalid address 'http://pipe:/a:b'"),
            "{err}"
        );
    }

    #[test]
    fn environment_file_name() {
        assert_eq!(
            environment_file(Path::new("/etc/app/appsettings.json"), "Development"),
            Path::new("/etc/app/appsettings.Development.json")
        );
    }
}
