//! Server configuration: a TOML file, or a JSON file in the shape of ASP.NET
//! Core's `appsettings.json`, with the `PIPEHTTP_URLS` variable on top.
//!
//! The TOML shape:
//!
//! ```toml
//! [endpoints.pipe]                 # any number of named endpoints
//! url = "http://pipe:/my-pipe-name"
//! certificate = { path = "cert.pem", key_path = "key.pem" }   # optional
//!
//! [certificates.default]           # for https endpoints without their own
//! path = "cert.pem"
//! key_path = "key.pem"
//!
//! [limits]
//! max_request_body_size = 30000000     # bytes, or "unlimited"
//! max_request_headers_total_size = 32768
//! request_headers_timeout = 30         # seconds, integer or float
//! keep_alive_timeout = 130
//! max_concurrent_connections = "unlimited"
//!
//! [pipes]
//! max_read_buffer_size = 1048576
//! max_write_buffer_size = 65536
//! listener_queue_count = 4
//! current_user_only = false
//! mode = "0660"                        # or 0o660
//! allow_users = ["alice", 1001]        # names or ids, beside our own user
//! allow_groups = ["docker"]            # one group: the socket is root:docker 0660
//! pipe_sddl = "D:P(A;;GA;;;OW)"         # Windows: the exact descriptor
//! ```
//!
//! The JSON shape is the same tree with .NET's names, under `Kestrel`:
//! PascalCase keys (`MaxRequestBodySize`, `KeyPath`), `NamedPipes` for
//! `pipes`, `null` for no limit, and durations as a number of seconds or
//! a .NET `TimeSpan` string (`"00:00:30"`, `"00:00:30.500"`,
//! `"1.00:00:00"`). Key paths in messages are joined with `:`, as .NET
//! writes them (`Kestrel:Limits:MaxRequestBodySize`). The `Logging` and
//! `AllowedHosts` sections that every appsettings file carries are
//! accepted and ignored.
//!
//! ```json
//! { "Kestrel": {
//!     "Endpoints": { "NamedPipeEndpoint": { "Url": "http://pipe:/my-pipe-name" } },
//!     "Limits": { "MaxRequestBodySize": null, "RequestHeadersTimeout": "00:00:30" },
//!     "NamedPipes": { "CurrentUserOnly": true } },
//!   "Logging": { "LogLevel": { "Default": "Information" } },
//!   "AllowedHosts": "*" }
//! ```
//!
//! Two differences from .NET, both to catch mistakes rather than hide them:
//! keys are matched exactly (.NET ignores case; here a key in the wrong
//! case is an error that names the expected spelling), and any key this
//! crate does not know is an error naming it, where .NET ignores it.
//!
//! Endpoints are listed sorted by name, whatever their order in the file:
//! .NET's configuration lists sections sorted by key too, and neither the
//! `toml` nor the `serde_json` crate keeps a table's order without its
//! `preserve_order` feature.

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::address::ListenAddress;
use crate::error::{Error, Result};
use crate::options::{Limits, PipeOptions};

/// The environment variable that replaces the configured endpoints: a `;`
/// list of listen addresses, as `ASPNETCORE_URLS` holds it.
pub const URLS_VAR: &str = "PIPEHTTP_URLS";

/// A server's configuration: where it listens and with which options.
///
/// ```
/// let config = pipehttp::Config::from_toml_str(
///     "[endpoints.pipe]\nurl = \"http://pipe:/my-pipe-name\"\n[limits]\nmax_request_body_size = 1000\n",
///     "example.toml",
/// )?;
/// assert_eq!(config.urls()[0].to_string(), "http://pipe:/my-pipe-name");
/// assert_eq!(config.limits.max_request_body_size, Some(1000));
/// # Ok::<(), pipehttp::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// Where to listen, sorted by name. Empty when nothing was configured:
    /// the caller picks its own default.
    pub endpoints: Vec<EndpointConfig>,
    /// HTTP limits.
    pub limits: Limits,
    /// Transport options.
    pub pipes: PipeOptions,
    /// The certificate for https endpoints that name none.
    pub default_certificate: Option<CertificateConfig>,
}

/// One named endpoint.
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
    /// `env-1`, `env-2`, … for addresses from `PIPEHTTP_URLS`.
    pub name: String,
    /// Where it listens.
    pub url: ListenAddress,
    /// Its own certificate, for https.
    pub certificate: Option<CertificateConfig>,
}

impl EndpointConfig {
    /// An endpoint without a certificate of its own.
    #[must_use]
    pub fn new(name: impl Into<String>, url: ListenAddress) -> Self {
        Self {
            name: name.into(),
            url,
            certificate: None,
        }
    }
}

/// A PEM certificate chain and its private key. Relative paths in a file
/// are resolved against the file's directory.
///
/// ```
/// let cert = pipehttp::config::CertificateConfig::new("cert.pem", "key.pem");
/// assert_eq!(cert.key_path, std::path::Path::new("key.pem"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CertificateConfig {
    /// The certificate chain, PEM.
    pub path: PathBuf,
    /// The private key, PEM.
    pub key_path: PathBuf,
}

impl CertificateConfig {
    /// A certificate from its two files.
    #[must_use]
    pub fn new(path: impl Into<PathBuf>, key_path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            key_path: key_path.into(),
        }
    }

    fn resolve_against(&mut self, dir: &Path) {
        for path in [&mut self.path, &mut self.key_path] {
            if path.is_relative() {
                *path = dir.join(&*path);
            }
        }
    }
}

impl Config {
    /// Reads a `.toml` file, or a `.json` file in the appsettings shape.
    /// Relative certificate paths are resolved against the file's directory.
    ///
    /// ```no_run
    /// let config = pipehttp::Config::from_file("appsettings.json".as_ref())?;
    /// # Ok::<(), pipehttp::Error>(())
    /// ```
    pub fn from_file(path: &Path) -> Result<Config> {
        let source_name = path.display().to_string();
        let err = |message: String| Error::config(&source_name, message);
        let extension = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        let parse = match extension.as_deref() {
            Some("toml") => Self::from_toml_str,
            Some("json") => Self::from_json_str,
            _ => {
                return Err(err(
                    "unknown config file type: name it *.toml, or *.json for the appsettings shape"
                        .into(),
                ));
            }
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| err(format!("cannot read the config file: {e}")))?;
        let mut config = parse(&text, &source_name)?;
        let dir = path.parent().unwrap_or(Path::new(""));
        for endpoint in &mut config.endpoints {
            if let Some(cert) = &mut endpoint.certificate {
                cert.resolve_against(dir);
            }
        }
        if let Some(cert) = &mut config.default_certificate {
            cert.resolve_against(dir);
        }
        Ok(config)
    }

    /// Parses the TOML shape. `source_name` names the text in messages.
    ///
    /// ```
    /// let err = pipehttp::Config::from_toml_str("[limits]\nmax_body = 1\n", "app.toml").unwrap_err();
    /// assert_eq!(
    ///     err.to_string(),
    ///     "app.toml: unknown key `limits.max_body`: expected one of `max_request_body_size`, \
    ///      `max_request_headers_total_size`, `request_headers_timeout`, `keep_alive_timeout`, \
    ///      `max_concurrent_connections`",
    /// );
    /// ```
    pub fn from_toml_str(text: &str, source_name: &str) -> Result<Config> {
        let err = |message: String| Error::config(source_name, message);
        let root: toml::Table = toml::from_str(text).map_err(|e| {
            let at = e.span().map_or(0, |span| span.start);
            err(syntax_error(text, at, e.message()))
        })?;
        read_config(Table::new(String::new(), root.into_iter().collect())).map_err(err)
    }

    /// Parses the JSON shape: an ASP.NET Core appsettings file whose
    /// `Kestrel` section configures the server.
    ///
    /// ```
    /// let json = r#"{ "Kestrel": { "Limits": { "KeepAliveTimeout": "00:02:10" } }, "AllowedHosts": "*" }"#;
    /// let config = pipehttp::Config::from_json_str(json, "appsettings.json")?;
    /// assert_eq!(config.limits.keep_alive_timeout, std::time::Duration::from_secs(130));
    /// # Ok::<(), pipehttp::Error>(())
    /// ```
    pub fn from_json_str(text: &str, source_name: &str) -> Result<Config> {
        let err = |message: String| Error::config(source_name, message);
        let root: serde_json::Value = serde_json::from_str(text).map_err(|e| {
            let full = e.to_string();
            let suffix = format!(" at line {} column {}", e.line(), e.column());
            let message = full.strip_suffix(&suffix).unwrap_or(&full);
            err(format!(
                "line {}, column {}: {message}",
                e.line(),
                e.column()
            ))
        })?;
        let serde_json::Value::Object(root) = root else {
            return Err(err(
                "the file holds no JSON object: write { \"Kestrel\": { ... } }".into(),
            ));
        };
        let mut root = Table::new(String::new(), root.into_iter().collect());
        let kestrel = root.table("Kestrel").map_err(&err)?;
        // Every appsettings file has these; they configure ASP.NET Core, not Kestrel.
        root.take("Logging");
        root.take("AllowedHosts");
        root.finish().map_err(&err)?;
        match kestrel {
            Some(kestrel) => read_config(kestrel).map_err(err),
            None => Ok(Config::default()),
        }
    }

    /// Replaces the endpoints with the addresses in `PIPEHTTP_URLS`, named
    /// `env-1`, `env-2`, …, when the variable is set and not empty.
    ///
    /// ```no_run
    /// let mut config = pipehttp::Config::default();
    /// config.apply_env()?;
    /// # Ok::<(), pipehttp::Error>(())
    /// ```
    pub fn apply_env(&mut self) -> Result<()> {
        self.apply_urls_var(std::env::var_os(URLS_VAR))
    }

    fn apply_urls_var(&mut self, value: Option<OsString>) -> Result<()> {
        let err = |message: String| Error::config(URLS_VAR, message);
        let Some(value) = value else { return Ok(()) };
        let text = value
            .to_str()
            .ok_or_else(|| err("the value is not valid UTF-8".into()))?;
        if text.trim().is_empty() {
            return Ok(());
        }
        let urls = ListenAddress::parse_list(text).map_err(|e| err(e.to_string()))?;
        self.endpoints = urls
            .into_iter()
            .enumerate()
            .map(|(i, url)| EndpointConfig::new(format!("env-{}", i + 1), url))
            .collect();
        Ok(())
    }

    /// The file if one is given (defaults otherwise), then `PIPEHTTP_URLS`
    /// on top.
    ///
    /// ```no_run
    /// let config = pipehttp::Config::load(Some("pipehttp.toml".as_ref()))?;
    /// # Ok::<(), pipehttp::Error>(())
    /// ```
    pub fn load(file: Option<&Path>) -> Result<Config> {
        let mut config = match file {
            Some(path) => Self::from_file(path)?,
            None => Self::default(),
        };
        config.apply_env()?;
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

/// "line 3, column 5: what", from a byte offset into `text`.
fn syntax_error(text: &str, at: usize, message: &str) -> String {
    // Spans fall on character boundaries; the fallback only avoids a panic.
    let before = text.get(..at).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    // toml's messages may span lines; the error must stay on one.
    let message: Vec<&str> = message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    format!("line {line}, column {column}: {}", message.join("; "))
}

/// Reads the server tree, the TOML root or the JSON `Kestrel` section.
fn read_config<V: Node>(mut root: Table<V>) -> Result<Config, String> {
    let mut config = Config::default();
    if let Some(mut endpoints) = root.table("endpoints")? {
        let mut entries = std::mem::take(&mut endpoints.entries);
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        for (name, value) in entries {
            let table = Table::open(endpoints.path(&name), value)?;
            config.endpoints.push(read_endpoint(name, table)?);
        }
    }
    if let Some(mut certificates) = root.table("certificates")? {
        config.default_certificate = certificates.certificate("default")?;
        certificates.finish()?;
    }
    if let Some(mut t) = root.table("limits")? {
        let l = &mut config.limits;
        set(
            &mut l.max_request_body_size,
            t.count_or_unlimited("max_request_body_size", 0)?,
        );
        set(
            &mut l.max_request_headers_total_size,
            t.count("max_request_headers_total_size", 1)?,
        );
        set(
            &mut l.request_headers_timeout,
            t.duration("request_headers_timeout")?,
        );
        set(&mut l.keep_alive_timeout, t.duration("keep_alive_timeout")?);
        set(
            &mut l.max_concurrent_connections,
            t.count_or_unlimited("max_concurrent_connections", 1)?,
        );
        t.finish()?;
    }
    if let Some(mut t) = root.table("pipes")? {
        let p = &mut config.pipes;
        set(
            &mut p.max_read_buffer_size,
            t.count("max_read_buffer_size", 1)?,
        );
        set(
            &mut p.max_write_buffer_size,
            t.count("max_write_buffer_size", 1)?,
        );
        set(
            &mut p.listener_queue_count,
            t.count("listener_queue_count", 1)?,
        );
        set(
            &mut p.current_user_only,
            t.value("current_user_only", V::as_bool, "true or false")?,
        );
        set(
            &mut p.mode,
            t.value("mode", V::as_mode, V::MODE_FORMS)?.map(Some),
        );
        set(&mut p.allow_users, t.names("allow_users")?);
        set(&mut p.allow_groups, t.names("allow_groups")?);
        set(
            &mut p.pipe_sddl,
            t.value("pipe_sddl", |v| v.as_str().map(str::to_owned), "a string")?
                .map(Some),
        );
        // A misspelt key is the likelier cause of a conflict: name it first.
        let path = t.path.clone();
        t.finish()?;
        p.validate().map_err(|e| format!("`{path}`: {e}"))?;
    }
    root.finish()?;
    Ok(config)
}

fn read_endpoint<V: Node>(name: String, mut table: Table<V>) -> Result<EndpointConfig, String> {
    let (key, text) = table.required_string("url")?;
    let url = text
        .parse::<ListenAddress>()
        .map_err(|e| format!("`{key}`: {e}"))?;
    let certificate = table.certificate("certificate")?;
    table.finish()?;
    Ok(EndpointConfig {
        name,
        url,
        certificate,
    })
}

fn set<T>(slot: &mut T, value: Option<T>) {
    if let Some(value) = value {
        *slot = value;
    }
}

/// A value of either file shape. The tree is the same; only the key names
/// and the spelling of some values differ.
trait Node: Sized {
    /// Joins key paths in messages.
    const SEP: char;
    /// How a value says "no limit".
    const UNLIMITED: &'static str;
    const DURATION_FORMS: &'static str;
    const MODE_FORMS: &'static str;
    const TABLE: &'static str;

    /// This shape's name for a key, given its TOML name.
    fn key(snake: &str) -> String;
    fn into_entries(self) -> Option<Vec<(String, Self)>>;
    /// The value as quoted in messages: short and on one line.
    fn show(&self) -> String;
    fn as_str(&self) -> Option<&str>;
    fn as_bool(&self) -> Option<bool>;
    fn as_u64(&self) -> Option<u64>;
    fn is_unlimited(&self) -> bool;
    fn as_duration(&self) -> Option<Duration>;
    fn as_mode(&self) -> Option<u32>;
    fn items(&self) -> Option<Vec<&Self>>;
}

impl Node for toml::Value {
    const SEP: char = '.';
    const UNLIMITED: &'static str = "\"unlimited\"";
    const DURATION_FORMS: &'static str = "a number of seconds greater than 0";
    const MODE_FORMS: &'static str = "an octal permission mode such as \"0660\" or 0o660";
    const TABLE: &'static str = "a table";

    fn key(snake: &str) -> String {
        snake.to_owned()
    }

    fn into_entries(self) -> Option<Vec<(String, Self)>> {
        match self {
            toml::Value::Table(table) => Some(table.into_iter().collect()),
            _ => None,
        }
    }

    fn show(&self) -> String {
        match self {
            toml::Value::Table(_) => "a table".into(),
            toml::Value::Array(_) => "an array".into(),
            scalar => scalar.to_string(),
        }
    }

    fn as_str(&self) -> Option<&str> {
        self.as_str()
    }

    fn as_bool(&self) -> Option<bool> {
        self.as_bool()
    }

    fn as_u64(&self) -> Option<u64> {
        self.as_integer().and_then(|i| u64::try_from(i).ok())
    }

    fn is_unlimited(&self) -> bool {
        self.as_str() == Some("unlimited")
    }

    fn as_duration(&self) -> Option<Duration> {
        match self {
            toml::Value::Integer(secs) => u64::try_from(*secs).ok().map(Duration::from_secs),
            toml::Value::Float(secs) => Duration::try_from_secs_f64(*secs).ok(),
            _ => None,
        }
    }

    fn as_mode(&self) -> Option<u32> {
        match self {
            toml::Value::Integer(mode) => u32::try_from(*mode).ok().filter(|m| *m <= 0o777),
            toml::Value::String(mode) => parse_octal(mode),
            _ => None,
        }
    }

    fn items(&self) -> Option<Vec<&Self>> {
        self.as_array().map(|items| items.iter().collect())
    }
}

impl Node for serde_json::Value {
    const SEP: char = ':';
    const UNLIMITED: &'static str = "null";
    const DURATION_FORMS: &'static str =
        "a number of seconds or a TimeSpan such as \"00:00:30\", greater than 0";
    // JSON has no octal numbers, and a decimal 660 would be read wrongly.
    const MODE_FORMS: &'static str = "an octal permission mode in a string, such as \"0660\"";
    const TABLE: &'static str = "an object";

    fn key(snake: &str) -> String {
        if snake == "pipes" {
            return "NamedPipes".into();
        }
        snake
            .split('_')
            .map(|word| {
                let mut chars = word.chars();
                chars.next().map_or_else(String::new, |first| {
                    first.to_ascii_uppercase().to_string() + chars.as_str()
                })
            })
            .collect()
    }

    fn into_entries(self) -> Option<Vec<(String, Self)>> {
        match self {
            serde_json::Value::Object(map) => Some(map.into_iter().collect()),
            _ => None,
        }
    }

    fn show(&self) -> String {
        match self {
            serde_json::Value::Object(_) => "an object".into(),
            serde_json::Value::Array(_) => "an array".into(),
            scalar => scalar.to_string(),
        }
    }

    fn as_str(&self) -> Option<&str> {
        self.as_str()
    }

    fn as_bool(&self) -> Option<bool> {
        self.as_bool()
    }

    fn as_u64(&self) -> Option<u64> {
        self.as_u64()
    }

    fn is_unlimited(&self) -> bool {
        self.is_null()
    }

    fn as_duration(&self) -> Option<Duration> {
        match self {
            serde_json::Value::Number(secs) => Duration::try_from_secs_f64(secs.as_f64()?).ok(),
            serde_json::Value::String(text) => parse_timespan(text),
            _ => None,
        }
    }

    fn as_mode(&self) -> Option<u32> {
        self.as_str().and_then(parse_octal)
    }

    fn items(&self) -> Option<Vec<&Self>> {
        self.as_array().map(|items| items.iter().collect())
    }
}

fn parse_octal(text: &str) -> Option<u32> {
    let digits = text.strip_prefix("0o").unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| matches!(b, b'0'..=b'7')) {
        return None;
    }
    u32::from_str_radix(digits, 8).ok().filter(|m| *m <= 0o777)
}

/// .NET's `TimeSpan` text: `[d.]hh:mm[:ss[.fffffff]]`. A bare number,
/// which .NET reads as days, is refused: it is too easily meant as seconds.
fn parse_timespan(text: &str) -> Option<Duration> {
    fn number(digits: &str, max: u64) -> Option<u64> {
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        digits.parse().ok().filter(|n| *n <= max)
    }
    let (head, rest) = text.split_once(':')?;
    let (days, hours) = head.split_once('.').unwrap_or(("0", head));
    let (minutes, seconds) = rest.split_once(':').unwrap_or((rest, "0"));
    let (seconds, nanos) = match seconds.split_once('.') {
        Some((seconds, fraction)) if (1..=7).contains(&fraction.len()) => {
            // Padded on the right to nanoseconds: ".5" is 500_000_000.
            let nanos = number(&format!("{fraction:0<9}"), 999_999_999)?;
            (seconds, u32::try_from(nanos).ok()?)
        }
        Some(_) => return None,
        None => (seconds, 0),
    };
    // TimeSpan.MaxValue is about 10.7 million days.
    let secs = number(days, 10_675_199)? * 86_400
        + number(hours, 23)? * 3_600
        + number(minutes, 59)? * 60
        + number(seconds, 59)?;
    Some(Duration::new(secs, nanos))
}

/// One table of a file being read. Values are taken out by key; whatever is
/// left at the end is a key this crate does not know.
struct Table<V> {
    /// Where the table sits, for messages: `limits`, `Kestrel:Limits`.
    path: String,
    entries: Vec<(String, V)>,
    known: Vec<String>,
}

impl<V: Node> Table<V> {
    fn new(path: String, entries: Vec<(String, V)>) -> Self {
        Self {
            path,
            entries,
            known: Vec::new(),
        }
    }

    fn open(path: String, value: V) -> Result<Self, String> {
        let shown = value.show();
        match value.into_entries() {
            Some(entries) => Ok(Self::new(path, entries)),
            None => Err(format!("`{path}` is {shown}: expected {}", V::TABLE)),
        }
    }

    /// The full path of a key in this table.
    fn path(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}{}{key}", self.path, V::SEP)
        }
    }

    /// Removes a key given by its TOML name; returns its full path and value.
    fn take(&mut self, snake: &str) -> Option<(String, V)> {
        let key = V::key(snake);
        let found = self.entries.iter().position(|(k, _)| *k == key);
        let path = self.path(&key);
        self.known.push(key);
        found.map(|i| (path, self.entries.remove(i).1))
    }

    fn table(&mut self, snake: &str) -> Result<Option<Table<V>>, String> {
        self.take(snake)
            .map(|(path, value)| Table::open(path, value))
            .transpose()
    }

    fn value<T>(
        &mut self,
        snake: &str,
        parse: impl FnOnce(&V) -> Option<T>,
        expected: &str,
    ) -> Result<Option<T>, String> {
        let Some((path, value)) = self.take(snake) else {
            return Ok(None);
        };
        match parse(&value) {
            Some(parsed) => Ok(Some(parsed)),
            None => Err(format!("`{path}` is {}: expected {expected}", value.show())),
        }
    }

    fn count<T: TryFrom<u64>>(&mut self, snake: &str, min: u64) -> Result<Option<T>, String> {
        let parse = |v: &V| count_at_least(v, min);
        self.value(snake, parse, &format!("a whole number of at least {min}"))
    }

    fn count_or_unlimited<T: TryFrom<u64>>(
        &mut self,
        snake: &str,
        min: u64,
    ) -> Result<Option<Option<T>>, String> {
        let parse = |v: &V| {
            if v.is_unlimited() {
                Some(None)
            } else {
                count_at_least(v, min).map(Some)
            }
        };
        let expected = format!("a whole number of at least {min}, or {}", V::UNLIMITED);
        self.value(snake, parse, &expected)
    }

    fn duration(&mut self, snake: &str) -> Result<Option<Duration>, String> {
        let parse = |v: &V| v.as_duration().filter(|d| !d.is_zero());
        self.value(snake, parse, V::DURATION_FORMS)
    }

    /// A list of user or group names and numeric ids.
    fn names(&mut self, snake: &str) -> Result<Option<Vec<String>>, String> {
        let parse = |v: &V| {
            v.items()?
                .into_iter()
                .map(|item| match item.as_str() {
                    Some(name) if !name.trim().is_empty() => Some(name.to_owned()),
                    Some(_) => None,
                    None => item.as_u64().map(|id| id.to_string()),
                })
                .collect()
        };
        self.value(
            snake,
            parse,
            "a list of non-empty names or numeric ids, such as [\"docker\"]",
        )
    }

    fn required_string(&mut self, snake: &str) -> Result<(String, String), String> {
        let parse = |v: &V| v.as_str().filter(|s| !s.is_empty()).map(str::to_owned);
        match self.value(snake, parse, "a non-empty string")? {
            Some(text) => Ok((self.path(&V::key(snake)), text)),
            None => Err(format!(
                "`{}` has no `{}`: add it",
                self.path,
                V::key(snake)
            )),
        }
    }

    fn certificate(&mut self, snake: &str) -> Result<Option<CertificateConfig>, String> {
        let Some(mut table) = self.table(snake)? else {
            return Ok(None);
        };
        let (_, path) = table.required_string("path")?;
        let (_, key_path) = table.required_string("key_path")?;
        table.finish()?;
        Ok(Some(CertificateConfig::new(path, key_path)))
    }

    /// Fails on the first key nobody took, naming the keys that would do.
    fn finish(self) -> Result<(), String> {
        let Some((key, _)) = self.entries.first() else {
            return Ok(());
        };
        let path = self.path(key);
        let loose = |k: &str| -> String {
            k.chars()
                .filter(char::is_ascii_alphanumeric)
                .map(|c| c.to_ascii_lowercase())
                .collect()
        };
        if let Some(near) = self.known.iter().find(|k| loose(k) == loose(key)) {
            return Err(format!(
                "unknown key `{path}`: did you mean `{near}`? keys are matched exactly"
            ));
        }
        Err(format!(
            "unknown key `{path}`: expected one of {}",
            ListOf(&self.known)
        ))
    }
}

fn count_at_least<V: Node, T: TryFrom<u64>>(value: &V, min: u64) -> Option<T> {
    value
        .as_u64()
        .filter(|n| *n >= min)
        .and_then(|n| T::try_from(n).ok())
}

/// "`a`, `b`, `c`".
struct ListOf<'a>(&'a [String]);

impl fmt::Display for ListOf<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, key) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "`{key}`")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timespans() {
        let secs = |s| parse_timespan(s).map(|d| d.as_secs_f64());
        assert_eq!(secs("00:00:30"), Some(30.0));
        assert_eq!(secs("00:02:10"), Some(130.0));
        assert_eq!(secs("00:30"), Some(1800.0));
        assert_eq!(secs("00:00:01.5"), Some(1.5));
        assert_eq!(secs("00:00:00.0000001"), Some(1e-7));
        assert_eq!(secs("1.02:03:04"), Some(93_784.0));
        for bad in [
            "30",
            "",
            ":",
            "00:00:60",
            "24:00:00",
            "-00:00:30",
            "00:00:30.",
            "0:0:1.12345678",
            "a:b:c",
            "00:00:30:00",
        ] {
            assert_eq!(parse_timespan(bad), None, "{bad}");
        }
    }

    #[test]
    fn json_names() {
        assert_eq!(
            serde_json::Value::key("max_request_body_size"),
            "MaxRequestBodySize"
        );
        assert_eq!(serde_json::Value::key("key_path"), "KeyPath");
        assert_eq!(serde_json::Value::key("pipes"), "NamedPipes");
    }

    #[test]
    fn urls_var() {
        let mut config = Config::default();
        config.apply_urls_var(None).unwrap();
        config.apply_urls_var(Some(" ".into())).unwrap();
        assert!(config.endpoints.is_empty());
        config
            .apply_urls_var(Some("http://pipe:/a; http://127.0.0.1:0".into()))
            .unwrap();
        let names: Vec<_> = config.endpoints.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["env-1", "env-2"]);
        let err = config
            .apply_urls_var(Some("http://pipe:/a:b".into()))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("PIPEHTTP_URLS: invalid address 'http://pipe:/a:b'"),
            "{err}"
        );
    }
}
