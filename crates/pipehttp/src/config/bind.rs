//! Binding the store's `Kestrel` section to a [`Config`], as Kestrel's
//! configuration loader and .NET's binder do: endpoints and certificates by
//! name, options through the schema, keys that cannot apply here noted,
//! and any other key under `Kestrel` an error naming the closest real one.

use std::collections::BTreeMap;

use super::store::{Entry, Store, Style, closest};
use super::{CertificateConfig, Config, EndpointConfig};
use crate::address::ListenAddress;
use crate::error::{Error, Result};
use crate::options::{Kind, MinDataRate, OPTIONS, OptionInfo, Raw, Syntax, Value};

/// Keys of Kestrel's configuration that are accepted but cannot apply
/// here, relative to `Kestrel`, with why. `*` is any name; a trailing `**`
/// any rest of the key.
const NOT_APPLICABLE: &[(&str, &str)] = &[
    (
        "AllowSynchronousIO",
        "handlers here are async Rust; there is no synchronous stream API to allow",
    ),
    (
        "AllowResponseHeaderCompression",
        "HPACK compression of response headers is left to hyper",
    ),
    (
        "AllowAlternateSchemes",
        "the :scheme of HTTP/2 requests is passed to handlers as sent",
    ),
    (
        "AllowHostHeaderOverride",
        "an absolute-form target must name the Host it is sent with",
    ),
    ("DisableStringReuse", "a .NET string-pooling switch"),
    ("Limits:Http3:**", "HTTP/3 is not served here"),
    (
        "Endpoints:*:Sni:**",
        "per-host (SNI) settings are not supported; the endpoint's own settings apply",
    ),
    (
        "Endpoints:*:Certificate:Subject",
        "certificate stores are not read here: give Path (with KeyPath or Password)",
    ),
    (
        "Endpoints:*:Certificate:Store",
        "certificate stores are not read here: give Path (with KeyPath or Password)",
    ),
    (
        "Endpoints:*:Certificate:Location",
        "certificate stores are not read here: give Path (with KeyPath or Password)",
    ),
    (
        "Endpoints:*:Certificate:AllowInvalid",
        "certificate stores are not read here: give Path (with KeyPath or Password)",
    ),
    (
        "Certificates:*:Subject",
        "certificate stores are not read here: give Path (with KeyPath or Password)",
    ),
    (
        "Certificates:*:Store",
        "certificate stores are not read here: give Path (with KeyPath or Password)",
    ),
    (
        "Certificates:*:Location",
        "certificate stores are not read here: give Path (with KeyPath or Password)",
    ),
    (
        "Certificates:*:AllowInvalid",
        "certificate stores are not read here: give Path (with KeyPath or Password)",
    ),
];

/// An endpoint's own keys, relative to `Kestrel:Endpoints:NAME`.
const ENDPOINT_KEYS: &[&str] = &[
    "Url",
    "Protocols",
    "SslProtocols",
    "ClientCertificateMode",
    "Certificate:Path",
    "Certificate:KeyPath",
    "Certificate:Password",
];

/// A certificate's keys.
const CERTIFICATE_KEYS: &[&str] = &["Path", "KeyPath", "Password"];

/// Sections that may be empty (a null value in the store).
const SECTIONS: &[&str] = &[
    "Endpoints",
    "Certificates",
    "Endpoints:*",
    "Endpoints:*:Certificate",
    "Certificates:*",
    "Endpoints:*:Sni",
];

fn eq(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// Whether `parts` fit `pattern` (`*`: one part; a trailing `**`: one or
/// more parts).
fn fits(pattern: &str, parts: &[&str]) -> bool {
    let pattern: Vec<&str> = pattern.split(':').collect();
    if let Some((&"**", fixed)) = pattern.split_last() {
        return parts.len() > fixed.len()
            && fixed.iter().zip(parts).all(|(p, k)| *p == "*" || eq(p, k));
    }
    pattern.len() == parts.len()
        && pattern
            .iter()
            .zip(parts)
            .all(|(p, k)| *p == "*" || eq(p, k))
}

/// An option's key relative to `Kestrel`, split.
fn option_parts(info: &OptionInfo) -> Vec<&'static str> {
    info.kestrel_section
        .split(':')
        .chain(std::iter::once(info.kestrel_key))
        .filter(|p| !p.is_empty())
        .collect()
}

#[derive(Default)]
struct CertDraft<'a> {
    path: Option<&'a Entry>,
    key_path: Option<&'a Entry>,
    password: Option<&'a Entry>,
    any: Option<&'a Entry>,
}

#[derive(Default)]
struct EndpointDraft<'a> {
    name: String,
    url: Option<&'a Entry>,
    protocols: Option<&'a Entry>,
    ssl_protocols: Vec<&'a Entry>,
    client_certificate_mode: Option<&'a Entry>,
    certificate: CertDraft<'a>,
    any: Option<&'a Entry>,
}

/// The parts of a rate: the key itself (no minimum) and its two fields.
#[derive(Default)]
struct RateDraft<'a> {
    itself: Option<&'a Entry>,
    bytes_per_second: Option<&'a Entry>,
    grace_period: Option<&'a Entry>,
}

fn fail(entry: &Entry, message: impl Into<String>) -> Error {
    Error::config(&*entry.origin, message)
}

fn bad_value(entry: &Entry, problem: &str) -> Error {
    fail(entry, format!("`{}` is {problem}", entry.shown))
}

pub(crate) fn bind(store: &Store) -> Result<Config> {
    let mut config = Config::default();
    let mut endpoints: BTreeMap<String, EndpointDraft<'_>> = BTreeMap::new();
    let mut default_certificate = CertDraft::default();
    let mut rates: BTreeMap<&'static str, RateDraft<'_>> = BTreeMap::new();
    let mut lists: BTreeMap<&'static str, Vec<&Entry>> = BTreeMap::new();
    let mut singles: Vec<(&'static OptionInfo, &Entry)> = Vec::new();
    let mut other_sections: Vec<String> = Vec::new();
    let mut urls: Option<&Entry> = None;

    for entry in store.entries() {
        // Options with no .NET key live under `pipehttp:`, a namespace only
        // the TOML reader writes; a JSON file may hold a section of that
        // name, and it is the application's, as every other section is.
        let ours = match entry.style {
            Style::Toml => entry.key.strip_prefix("pipehttp:"),
            Style::Dotnet => None,
        };
        if let Some(name) = ours {
            // An array's items come as `path:0`, `path:1`, ….
            let (name, item) = match name.rsplit_once(':') {
                Some((name, i)) if i.parse::<usize>().is_ok() => (name, true),
                _ => (name, false),
            };
            let info = OPTIONS
                .iter()
                .find(|o| o.toml_path() == name)
                .expect("the TOML reader names only options");
            if item {
                lists.entry(info.name).or_default().push(entry);
            } else {
                singles.push((info, entry));
            }
            continue;
        }
        // The host's `urls` setting, which .NET reads from appsettings.json
        // too: the endpoints when Kestrel has none of its own.
        if entry.style == Style::Dotnet && eq(&entry.key, "Urls") {
            urls = Some(entry);
            continue;
        }
        let Some(parts) = entry.kestrel_parts() else {
            let section = entry.key.split(':').next().unwrap_or_default().to_owned();
            if !other_sections.iter().any(|s| eq(s, &section)) {
                other_sections.push(section);
            }
            continue;
        };
        if parts.is_empty() || is_section(&parts) {
            if entry.value != Raw::Null {
                return Err(bad_value(
                    entry,
                    &format!("{}: expected an object", entry.value.show()),
                ));
            }
            continue;
        }
        if let Some((_, why)) = NOT_APPLICABLE.iter().find(|(p, _)| fits(p, &parts)) {
            config.not_applied.push(format!("{} ({why})", entry.shown));
            continue;
        }
        if eq(parts[0], "Endpoints") && parts.len() >= 3 {
            let draft = endpoints.entry(parts[1].to_ascii_lowercase()).or_default();
            if draft.name.is_empty() {
                draft.name = parts[1].to_owned();
            }
            draft.any.get_or_insert(entry);
            let rest = &parts[2..];
            match rest {
                [k] if eq(k, "Url") => draft.url = Some(entry),
                [k] if eq(k, "Protocols") => draft.protocols = Some(entry),
                [k] if eq(k, "ClientCertificateMode") => {
                    draft.client_certificate_mode = Some(entry)
                }
                [k] | [k, _] if eq(k, "SslProtocols") && is_list_item(rest) => {
                    draft.ssl_protocols.push(entry);
                }
                [c, k] if eq(c, "Certificate") && cert_field(&mut draft.certificate, k, entry) => {}
                _ => return Err(unknown(entry, &parts, &endpoints_candidates(parts[1]))),
            }
            continue;
        }
        if eq(parts[0], "Certificates") && parts.len() == 3 {
            if !eq(parts[1], "Default") {
                config.not_applied.push(format!(
                    "{} (only Certificates:Default is used, as in Kestrel)",
                    entry.shown
                ));
                continue;
            }
            if cert_field(&mut default_certificate, parts[2], entry) {
                continue;
            }
        }
        if let Some(info) = OPTIONS.iter().find(|o| {
            let own = option_parts(o);
            !o.kestrel_key.is_empty()
                && own.len() <= parts.len()
                && own.iter().zip(&parts).all(|(a, b)| eq(a, b))
        }) {
            let own = option_parts(info).len();
            let extra = &parts[own..];
            match (info.kind, extra) {
                (_, []) if info.kind == Kind::Rate => {
                    rates.entry(info.name).or_default().itself = Some(entry);
                }
                (_, []) => singles.push((info, entry)),
                (Kind::Rate, [k]) if eq(k, "BytesPerSecond") => {
                    rates.entry(info.name).or_default().bytes_per_second = Some(entry);
                }
                (Kind::Rate, [k]) if eq(k, "GracePeriod") => {
                    rates.entry(info.name).or_default().grace_period = Some(entry);
                }
                (Kind::SslProtocols | Kind::Names, [i]) if i.parse::<usize>().is_ok() => {
                    lists.entry(info.name).or_default().push(entry);
                }
                _ => return Err(unknown(entry, &parts, &[])),
            }
            continue;
        }
        return Err(unknown(entry, &parts, &[]));
    }

    if !other_sections.is_empty() {
        tracing::debug!(
            "configuration sections other than Kestrel are not pipehttp's and are left alone: {}",
            other_sections.join(", ")
        );
    }

    for (info, entry) in singles {
        let parsed = info
            .parse(&entry.value, entry.syntax)
            .map_err(|e| bad_value(entry, &e))?;
        note(&mut config, entry, parsed.note);
        info.set(&mut config.options, parsed.value);
    }
    for (name, entries) in lists {
        let info = crate::options::find(name).expect("a listed option");
        let value = list(info.kind, &entries)?;
        note(&mut config, entries[0], value.note);
        info.set(&mut config.options, value.value);
    }
    for (name, draft) in rates {
        let info = crate::options::find(name).expect("a rate option");
        let current = match info.get(&config.options) {
            Value::Rate(rate) => rate,
            _ => MinDataRate::KESTREL_DEFAULT,
        };
        info.set(&mut config.options, rate(&draft, current)?);
    }
    for draft in endpoints.into_values() {
        config
            .endpoints
            .push(endpoint(draft, &mut config.not_applied)?);
    }
    // As .NET, Kestrel's own endpoints win over `Urls`, which is then
    // ignored (.NET warns that it overrides the addresses).
    match urls {
        Some(entry) if config.endpoints.is_empty() => {
            let Raw::Text(list) = &entry.value else {
                return Err(bad_value(
                    entry,
                    &format!(
                        "{}: expected a string of ';'-separated URLs",
                        entry.value.show()
                    ),
                ));
            };
            let origin = format!("{}: `{}`", entry.origin, entry.shown);
            config.endpoints = super::parse_urls(&origin, list)?;
        }
        Some(entry) => tracing::info!(
            "{}: `{}` is not used: Kestrel:Endpoints names the endpoints",
            entry.origin,
            entry.shown
        ),
        None => {}
    }
    config.default_certificate = certificate(&default_certificate, "Default")?;
    config.options.validate().map_err(|message| {
        // The message starts with the option at fault; name its source.
        let first = message.split([' ', '(']).next().unwrap_or_default();
        let source = crate::options::find(first).and_then(|info| {
            store.entries().find(|e| {
                e.kestrel_parts().is_some_and(|parts| {
                    option_parts(info).len() <= parts.len()
                        && option_parts(info).iter().zip(&parts).all(|(a, b)| eq(a, b))
                })
            })
        });
        match source {
            Some(entry) => fail(entry, format!("`{}`: {message}", entry.shown)),
            None => Error::options(message),
        }
    })?;
    Ok(config)
}

fn is_section(parts: &[&str]) -> bool {
    SECTIONS.iter().any(|s| fits(s, parts))
        || OPTIONS.iter().any(|o| {
            // A section of options (Limits, Limits:Http2), or a rate.
            let own = option_parts(o);
            own.len() > parts.len() && own.iter().zip(parts).all(|(a, b)| eq(a, b))
        })
}

fn is_list_item(rest: &[&str]) -> bool {
    rest.len() == 1 || rest[1].parse::<usize>().is_ok()
}

fn note(config: &mut Config, entry: &Entry, note: Option<&'static str>) {
    note_into(&mut config.not_applied, entry, note);
}

fn note_into(notes: &mut Vec<String>, entry: &Entry, note: Option<&'static str>) {
    if let Some(note) = note {
        notes.push(format!("{} ({note})", entry.shown));
    }
}

fn cert_field<'a>(draft: &mut CertDraft<'a>, key: &str, entry: &'a Entry) -> bool {
    let slot = if eq(key, "Path") {
        &mut draft.path
    } else if eq(key, "KeyPath") {
        &mut draft.key_path
    } else if eq(key, "Password") {
        &mut draft.password
    } else {
        return false;
    };
    *slot = Some(entry);
    draft.any.get_or_insert(entry);
    true
}

/// Every real key of one endpoint, for the closest-key search.
fn endpoints_candidates(name: &str) -> Vec<String> {
    ENDPOINT_KEYS
        .iter()
        .map(|k| format!("Kestrel:Endpoints:{name}:{k}"))
        .collect()
}

/// The one-line error for a key under `Kestrel` that is not Kestrel's.
fn unknown(entry: &Entry, parts: &[&str], extra: &[String]) -> Error {
    let mut candidates: Vec<String> = OPTIONS
        .iter()
        .filter(|o| !o.kestrel_key.is_empty())
        .map(OptionInfo::kestrel_path)
        .collect();
    for info in OPTIONS.iter().filter(|o| o.kind == Kind::Rate) {
        candidates.push(format!("{}:BytesPerSecond", info.kestrel_path()));
        candidates.push(format!("{}:GracePeriod", info.kestrel_path()));
    }
    candidates.extend(
        CERTIFICATE_KEYS
            .iter()
            .map(|k| format!("Kestrel:Certificates:Default:{k}")),
    );
    candidates.extend(
        NOT_APPLICABLE
            .iter()
            .filter(|(p, _)| !p.contains('*'))
            .map(|(p, _)| format!("Kestrel:{p}")),
    );
    candidates.extend(extra.iter().cloned());
    // A key shaped like an endpoint's (`Endpoint:NAME:Url`, `Endpoints:NAME:Ur`)
    // is compared with that endpoint's keys, under its own name.
    if extra.is_empty() && parts.len() >= 2 {
        candidates.extend(endpoints_candidates(parts[1]));
    }
    let key = format!("Kestrel:{}", parts.join(":"));
    let near = closest(&key, candidates.iter().map(String::as_str), 0.0);
    let shown = match entry.style {
        Style::Dotnet => key.clone(),
        Style::Toml => entry.shown.clone(),
    };
    match near {
        Some(near) => fail(
            entry,
            format!("unknown key `{shown}`: not one of Kestrel's; did you mean `{near}`?"),
        ),
        None => fail(
            entry,
            format!("unknown key `{shown}`: not one of Kestrel's"),
        ),
    }
}

/// A list option (`SslProtocols`, names) from its items, in index order.
fn list(kind: Kind, entries: &[&Entry]) -> Result<crate::options::Parsed> {
    let mut items: Vec<(usize, &Entry)> = entries
        .iter()
        .map(|e| {
            let index = e.key.rsplit(':').next().and_then(|i| i.parse().ok());
            (index.unwrap_or(0), *e)
        })
        .collect();
    items.sort_by_key(|(i, _)| *i);
    let mut names = Vec::new();
    for (_, entry) in &items {
        match &entry.value {
            Raw::Text(t) => names.push(t.as_str()),
            // A uid or gid written as a number.
            Raw::Number(n) if kind == Kind::Names => names.push(n.as_str()),
            other => {
                return Err(bad_value(
                    entry,
                    &format!("{}: expected {}", other.show(), kind.expected(entry.syntax)),
                ));
            }
        }
    }
    let joined = names.join(",");
    let first = items[0].1;
    kind.parse(&Raw::Text(joined), Syntax::Flag)
        .map_err(|e| bad_value(first, &e))
}

/// A rate from its parts: no minimum if only the key itself is given, as
/// null; otherwise the parts given over `current`.
fn rate(draft: &RateDraft<'_>, current: MinDataRate) -> Result<Value> {
    if draft.bytes_per_second.is_none() && draft.grace_period.is_none() {
        // Null for no minimum; TOML may also write "unlimited".
        let entry = draft.itself.expect("a rate draft has an entry");
        return Kind::Rate
            .parse(&entry.value, entry.syntax)
            .map(|p| p.value)
            .map_err(|e| bad_value(entry, &e));
    }
    let part = |entry: &Entry, kind: Kind| {
        kind.parse(&entry.value, entry.syntax)
            .map(|p| p.value)
            .map_err(|e| bad_value(entry, &e))
    };
    let mut rate = current;
    if let Some(entry) = draft.bytes_per_second {
        let kind = Kind::Count {
            min: 1,
            max: u64::MAX,
            bytes: true,
            unlimited: false,
        };
        if let Value::Count(n) = part(entry, kind)? {
            rate.bytes_per_second = n;
        }
    }
    if let Some(entry) = draft.grace_period {
        let kind = Kind::Seconds {
            min: std::time::Duration::from_secs(1),
            unlimited: false,
        };
        if let Value::Duration(d) = part(entry, kind)? {
            rate.grace_period = d;
        }
    }
    Ok(Value::Rate(rate))
}

/// The section of `entry` as messages name it, for "has no …" errors:
/// its first `depth` parts after `Kestrel` (the TOML root is `Kestrel`).
fn section_name(entry: &Entry, depth: usize) -> String {
    match entry.style {
        Style::Dotnet => entry
            .key
            .split(':')
            .take(depth + 1)
            .collect::<Vec<_>>()
            .join(":"),
        Style::Toml => entry
            .shown
            .split('.')
            .take(depth)
            .collect::<Vec<_>>()
            .join("."),
    }
}

fn missing(entry: &Entry, depth: usize, dotnet: &str, toml: &str) -> Error {
    let key = match entry.style {
        Style::Dotnet => dotnet,
        Style::Toml => toml,
    };
    fail(
        entry,
        format!("`{}` has no `{key}`: add it", section_name(entry, depth)),
    )
}

fn text(entry: &Entry) -> Result<&str> {
    match &entry.value {
        Raw::Text(t) if !t.trim().is_empty() => Ok(t.trim()),
        other => Err(bad_value(
            entry,
            &format!("{}: expected a non-empty string", other.show()),
        )),
    }
}

fn certificate(draft: &CertDraft<'_>, _name: &str) -> Result<Option<CertificateConfig>> {
    let Some(any) = draft.any else {
        return Ok(None);
    };
    // Kestrel:Endpoints:NAME:Certificate, or Kestrel:Certificates:Default.
    let depth = if eq(any.key.split(':').nth(1).unwrap_or_default(), "Endpoints") {
        3
    } else {
        2
    };
    let Some(path) = draft.path else {
        return Err(missing(any, depth, "Path", "path"));
    };
    let mut cert = CertificateConfig::new(path.resolve(text(path)?));
    if let Some(key) = draft.key_path {
        cert.key_path = Some(key.resolve(text(key)?));
    }
    if let Some(password) = draft.password {
        cert.password = match &password.value {
            Raw::Text(t) => Some(t.clone()),
            Raw::Null => None,
            other => {
                return Err(bad_value(
                    password,
                    &format!("{}: expected a string", other.show()),
                ));
            }
        };
    }
    Ok(Some(cert))
}

fn endpoint(draft: EndpointDraft<'_>, notes: &mut Vec<String>) -> Result<EndpointConfig> {
    let any = draft.any.expect("an endpoint draft has an entry");
    let Some(url) = draft.url else {
        return Err(missing(any, 2, "Url", "url"));
    };
    let address = text(url)?
        .parse::<ListenAddress>()
        .map_err(|e| fail(url, format!("`{}`: {e}", url.shown)))?;
    let mut endpoint = EndpointConfig::new(draft.name, address);
    // An endpoint's own value, read as its EndpointDefaults option's.
    let mut own = |name: &str, entry: &Entry| -> Result<Value> {
        let info = crate::options::find(name).expect("an endpoint default");
        let parsed = info
            .parse(&entry.value, entry.syntax)
            .map_err(|e| bad_value(entry, &e))?;
        note_into(notes, entry, parsed.note);
        Ok(parsed.value)
    };
    if let Some(entry) = draft.protocols
        && let Value::Protocols(p) = own("protocols", entry)?
    {
        endpoint.protocols = Some(p);
    }
    if let Some(entry) = draft.client_certificate_mode
        && let Value::ClientCertificateMode(m) = own("client_certificate_mode", entry)?
    {
        endpoint.client_certificate_mode = Some(m);
    }
    if !draft.ssl_protocols.is_empty() {
        let parsed = list(Kind::SslProtocols, &draft.ssl_protocols)?;
        note_into(notes, draft.ssl_protocols[0], parsed.note);
        if let Value::SslProtocols(p) = parsed.value {
            endpoint.ssl_protocols = Some(p);
        }
    }
    endpoint.certificate = certificate(&draft.certificate, &endpoint.name)?;
    Ok(endpoint)
}
