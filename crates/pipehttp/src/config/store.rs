//! .NET's configuration model: a flat store of `:`-separated keys, compared
//! without case, each holding a scalar. Providers add their keys in order
//! and a later one replaces an earlier one key by key, never a whole
//! section. The JSON provider flattens objects with `:` and arrays with
//! `:0`, `:1`, …; the environment provider maps `__` to `:`; the TOML
//! provider maps this crate's TOML names to the same keys through the
//! options schema, so every source is bound by the same code.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::options::{OPTIONS, Raw, Syntax};

/// How an entry's key is written in messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Style {
    /// `Kestrel:Limits:MaxRequestBodySize`, as .NET writes keys (JSON
    /// files, environment variables).
    Dotnet,
    /// `limits.max_request_body_size`.
    Toml,
}

/// One key of the store.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    /// The key in .NET form, as its source wrote it.
    pub(crate) key: String,
    /// The key as messages name it: the .NET form, or the TOML path.
    pub(crate) shown: String,
    pub(crate) value: Raw,
    /// The file or variable it came from.
    pub(crate) origin: Arc<str>,
    pub(crate) syntax: Syntax,
    pub(crate) style: Style,
    /// The directory of the file it came from, for relative paths.
    pub(crate) dir: Option<Arc<Path>>,
}

impl Entry {
    /// The key's segments after `Kestrel`.
    pub(crate) fn kestrel_parts(&self) -> Option<Vec<&str>> {
        let mut parts = self.key.split(':');
        parts
            .next()
            .filter(|first| first.eq_ignore_ascii_case("Kestrel"))?;
        Some(parts.collect())
    }

    /// `path` as given, or against the entry's file's directory.
    pub(crate) fn resolve(&self, path: &str) -> PathBuf {
        let path = PathBuf::from(path);
        match &self.dir {
            Some(dir) if path.is_relative() => dir.join(path),
            _ => path,
        }
    }
}

/// The layered store.
#[derive(Debug, Default)]
pub(crate) struct Store {
    entries: BTreeMap<String, Entry>,
}

impl Store {
    /// Adds an entry over any with the same key, whatever its case. The
    /// key keeps the spelling it had first, so a section is named as the
    /// base file names it.
    pub(crate) fn set(&mut self, mut entry: Entry) {
        let folded = entry.key.to_ascii_lowercase();
        if let Some(old) = self.entries.get(&folded) {
            entry.key.clone_from(&old.key);
        }
        self.entries.insert(folded, entry);
    }

    pub(crate) fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.entries.values()
    }

    /// Everything one provider read goes over what is there.
    pub(crate) fn layer(&mut self, entries: Vec<Entry>) {
        for entry in entries {
            self.set(entry);
        }
    }
}

/// Where entries come from, for the entries they make.
#[derive(Debug, Clone)]
pub(crate) struct Source {
    pub(crate) origin: Arc<str>,
    pub(crate) dir: Option<Arc<Path>>,
}

impl Source {
    pub(crate) fn file(name: &str, path: Option<&Path>) -> Self {
        Self {
            origin: name.into(),
            dir: path.map(|p| Arc::from(p.parent().unwrap_or(Path::new("")))),
        }
    }

    fn entry(&self, key: String, shown: String, value: Raw, syntax: Syntax, style: Style) -> Entry {
        Entry {
            key,
            shown,
            value,
            origin: self.origin.clone(),
            syntax,
            style,
            dir: self.dir.clone(),
        }
    }
}

/// JSON as .NET's JSON configuration provider reads it: comments and
/// trailing commas allowed, nothing else beyond JSON; the root must be an
/// object; a key twice in one object (in any case) is an error; an empty
/// object or array is a key with a null value.
pub(crate) fn read_json(text: &str, source: &Source) -> Result<Vec<Entry>, String> {
    let options = jsonc_parser::ParseOptions {
        allow_comments: true,
        allow_trailing_commas: true,
        allow_loose_object_property_names: false,
        allow_missing_commas: false,
        allow_single_quoted_strings: false,
        allow_hexadecimal_numbers: false,
        allow_unary_plus_numbers: false,
        allow_bare_decimal_point_numbers: false,
        allow_non_finite_numbers: false,
        allow_extended_string_escapes: false,
    };
    let root = jsonc_parser::parse_to_value(text, &options).map_err(|e| {
        format!(
            "line {}, column {}: {}",
            e.line_display(),
            e.column_display(),
            e.kind()
        )
    })?;
    let Some(jsonc_parser::JsonValue::Object(root)) = root else {
        return Err("the file holds no JSON object: write { \"Kestrel\": { ... } }".into());
    };
    let mut flat = Flattened {
        source,
        entries: Vec::new(),
    };
    flat.object(root, "")?;
    Ok(flat.entries)
}

/// JSON flattened into .NET's keys, as the JSON provider does.
struct Flattened<'a> {
    source: &'a Source,
    entries: Vec<Entry>,
}

impl Flattened<'_> {
    fn object(&mut self, object: jsonc_parser::JsonObject<'_>, prefix: &str) -> Result<(), String> {
        if object.is_empty() && !prefix.is_empty() {
            self.push(prefix, Raw::Null);
        }
        let mut seen: Vec<String> = Vec::new();
        for (key, value) in object {
            let path = if prefix.is_empty() {
                key.to_string()
            } else {
                format!("{prefix}:{key}")
            };
            let folded = key.to_ascii_lowercase();
            if seen.contains(&folded) {
                return Err(format!(
                    "`{path}` is written twice (keys are compared without case)"
                ));
            }
            seen.push(folded);
            self.value(value, &path)?;
        }
        Ok(())
    }

    fn value(&mut self, value: jsonc_parser::JsonValue<'_>, path: &str) -> Result<(), String> {
        use jsonc_parser::JsonValue as J;
        let raw = match value {
            J::Object(object) => return self.object(object, path),
            J::Array(array) => {
                if array.is_empty() {
                    self.push(path, Raw::Null);
                }
                for (i, item) in array.take_inner().into_iter().enumerate() {
                    self.value(item, &format!("{path}:{i}"))?;
                }
                return Ok(());
            }
            J::String(text) => Raw::Text(text.into_owned()),
            J::Number(number) => Raw::Number(number.to_owned()),
            J::Boolean(b) => Raw::Bool(b),
            J::Null => Raw::Null,
        };
        self.push(path, raw);
        Ok(())
    }

    fn push(&mut self, path: &str, value: Raw) {
        let entry = self.source.entry(
            path.to_owned(),
            path.to_owned(),
            value,
            Syntax::Dotnet,
            Style::Dotnet,
        );
        self.entries.push(entry);
    }
}

/// The environment as .NET's environment-variable provider reads it, for
/// the `Kestrel` section: `Kestrel__Limits__MaxRequestBodySize` is the key
/// `Kestrel:Limits:MaxRequestBodySize` (in any case). Values are text.
pub(crate) fn read_env(vars: &[(String, String)]) -> Vec<Entry> {
    vars.iter()
        .filter_map(|(name, value)| {
            let key = name.replace("__", ":");
            let (first, _) = key.split_once(':')?;
            first.eq_ignore_ascii_case("Kestrel").then(|| {
                let source = Source {
                    origin: name.as_str().into(),
                    dir: None,
                };
                source.entry(
                    key.clone(),
                    key,
                    Raw::Text(value.clone()),
                    Syntax::Dotnet,
                    Style::Dotnet,
                )
            })
        })
        .collect()
}

/// The TOML shape, mapped onto .NET's keys: the TOML root is the `Kestrel`
/// section. Keys are matched exactly (TOML is this crate's own format);
/// one that is not known is an error naming the closest known one.
pub(crate) fn read_toml(text: &str, source: &Source) -> Result<Vec<Entry>, String> {
    let root: toml::Table = toml::from_str(text).map_err(|e| {
        let at = e.span().map_or(0, |span| span.start);
        syntax_error(text, at, e.message())
    })?;
    let mut out = Vec::new();
    toml_table(root, &[], source, &mut out)?;
    Ok(out)
}

/// The TOML tables and how their keys map to .NET's. `*` is any name
/// (an endpoint's or a certificate's), kept as written.
const TOML_TABLES: &[(&str, &str)] = &[
    ("endpoints", "Endpoints"),
    ("endpoints.*", "Endpoints:*"),
    ("endpoints.*.certificate", "Endpoints:*:Certificate"),
    ("certificates", "Certificates"),
    ("certificates.*", "Certificates:*"),
    (
        "limits.min_request_body_data_rate",
        "Limits:MinRequestBodyDataRate",
    ),
    (
        "limits.min_response_data_rate",
        "Limits:MinResponseDataRate",
    ),
];

/// Keys that are not options of the schema: endpoint and certificate keys,
/// and the parts of a rate.
const TOML_KEYS: &[(&str, &str)] = &[
    ("endpoints.*.url", "Url"),
    ("endpoints.*.protocols", "Protocols"),
    ("endpoints.*.ssl_protocols", "SslProtocols"),
    (
        "endpoints.*.client_certificate_mode",
        "ClientCertificateMode",
    ),
    ("endpoints.*.certificate.path", "Path"),
    ("endpoints.*.certificate.key_path", "KeyPath"),
    ("endpoints.*.certificate.password", "Password"),
    ("certificates.*.path", "Path"),
    ("certificates.*.key_path", "KeyPath"),
    ("certificates.*.password", "Password"),
    (
        "limits.min_request_body_data_rate.bytes_per_second",
        "BytesPerSecond",
    ),
    (
        "limits.min_request_body_data_rate.grace_period",
        "GracePeriod",
    ),
    (
        "limits.min_response_data_rate.bytes_per_second",
        "BytesPerSecond",
    ),
    ("limits.min_response_data_rate.grace_period", "GracePeriod"),
];

/// Every TOML table path with its .NET section, wildcards included.
fn toml_tables() -> Vec<(String, String)> {
    let mut tables: Vec<(String, String)> = TOML_TABLES
        .iter()
        .map(|(t, k)| ((*t).to_owned(), (*k).to_owned()))
        .collect();
    for info in OPTIONS {
        if !info.toml_section.is_empty() {
            let section = (
                info.toml_section.to_owned(),
                info.kestrel_section.to_owned(),
            );
            if !tables.contains(&section) {
                tables.push(section);
            }
        }
    }
    tables
}

/// Every TOML key path (wildcards included) and its .NET key relative to
/// `Kestrel`; `None` where a key has no .NET form.
fn toml_keys() -> Vec<(String, Option<String>)> {
    let tables = toml_tables();
    let section_of = |table: &str| {
        tables
            .iter()
            .find(|(t, _)| t == table)
            .map(|(_, k)| k.clone())
    };
    let mut keys: Vec<(String, Option<String>)> = TOML_KEYS
        .iter()
        .map(|(path, key)| {
            let (table, _) = path.rsplit_once('.').expect("a table");
            let section = section_of(table).expect("a known table");
            ((*path).to_owned(), Some(format!("{section}:{key}")))
        })
        .collect();
    for info in OPTIONS {
        let kestrel = info.kestrel_path();
        let relative = kestrel.strip_prefix("Kestrel:").map(str::to_owned);
        keys.push((info.toml_path(), relative));
    }
    keys
}

/// Whether a TOML path (with real names) fits a pattern (with `*`).
fn fits(pattern: &str, path: &[&str]) -> bool {
    let pattern: Vec<&str> = pattern.split('.').collect();
    pattern.len() == path.len() && pattern.iter().zip(path).all(|(p, k)| *p == "*" || p == k)
}

/// The .NET form of a TOML path matching `pattern`: the `*` segments are
/// put in the places of `*` in `kestrel`.
fn fill(pattern: &str, path: &[&str], kestrel: &str) -> String {
    let mut names = pattern
        .split('.')
        .zip(path)
        .filter(|(p, _)| *p == "*")
        .map(|(_, name)| *name);
    let parts: Vec<String> = kestrel
        .split(':')
        .map(|part| {
            if part == "*" {
                names.next().unwrap_or("*").to_owned()
            } else {
                part.to_owned()
            }
        })
        .collect();
    format!("Kestrel:{}", parts.join(":"))
}

fn toml_table(
    table: toml::Table,
    at: &[&str],
    source: &Source,
    out: &mut Vec<Entry>,
) -> Result<(), String> {
    let tables = toml_tables();
    let keys = toml_keys();
    for (key, value) in table {
        let mut path: Vec<&str> = at.to_vec();
        path.push(&key);
        let shown = path.join(".");
        let is_table = tables.iter().any(|(t, _)| fits(t, &path));
        match value {
            toml::Value::Table(inner) if is_table => toml_table(inner, &path, source, out)?,
            value if is_table && !(is_rate(&path) && value.is_str()) => {
                return Err(format!(
                    "`{shown}` is {}: expected a table",
                    show_toml(&value)
                ));
            }
            value => {
                let Some((pattern, kestrel)) = keys.iter().find(|(k, _)| fits(k, &path)) else {
                    return Err(unknown_toml_key(&shown, &path, &keys, &tables));
                };
                let Some(kestrel) = kestrel else {
                    // An option with no .NET key: kept under a key of its own.
                    let key = format!("pipehttp:{}", pattern);
                    push_toml(out, source, key, shown, value, &path)?;
                    continue;
                };
                let key = fill(pattern, &path, kestrel);
                push_toml(out, source, key, shown, value, &path)?;
            }
        }
    }
    Ok(())
}

/// A rate table may also be the string "unlimited".
fn is_rate(path: &[&str]) -> bool {
    path.last().is_some_and(|k| k.ends_with("_data_rate"))
}

fn push_toml(
    out: &mut Vec<Entry>,
    source: &Source,
    key: String,
    shown: String,
    value: toml::Value,
    path: &[&str],
) -> Result<(), String> {
    let raw = match value {
        toml::Value::String(s) => Raw::Text(s),
        toml::Value::Integer(i) => Raw::Number(i.to_string()),
        toml::Value::Float(f) => Raw::Number(f.to_string()),
        toml::Value::Boolean(b) => Raw::Bool(b),
        toml::Value::Array(items) if takes_a_list(path) => {
            for (i, item) in items.into_iter().enumerate() {
                push_toml(
                    out,
                    source,
                    format!("{key}:{i}"),
                    format!("{shown}[{i}]"),
                    item,
                    &[],
                )?;
            }
            return Ok(());
        }
        other => {
            return Err(format!(
                "`{shown}` is {}: not a value this key takes",
                show_toml(&other)
            ));
        }
    };
    out.push(source.entry(key, shown, raw, Syntax::Toml, Style::Toml));
    Ok(())
}

/// Whether the TOML key at `path` takes an array: SSL protocols, and the
/// options whose values are names.
fn takes_a_list(path: &[&str]) -> bool {
    let Some(last) = path.last() else {
        return false;
    };
    *last == "ssl_protocols"
        || crate::options::OPTIONS
            .iter()
            .any(|o| o.kind == crate::options::Kind::Names && o.toml_key == *last)
}

fn show_toml(value: &toml::Value) -> String {
    match value {
        toml::Value::Table(_) => "a table".into(),
        toml::Value::Array(_) => "an array".into(),
        scalar => scalar.to_string(),
    }
}

fn unknown_toml_key(
    shown: &str,
    path: &[&str],
    keys: &[(String, Option<String>)],
    tables: &[(String, String)],
) -> String {
    // The known keys at this place, with the real names for `*`.
    let parent = &path[..path.len() - 1];
    let siblings: Vec<String> =
        keys.iter()
            .map(|(k, _)| k.as_str())
            .chain(tables.iter().map(|(t, _)| t.as_str()))
            .filter_map(|pattern| {
                let parts: Vec<&str> = pattern.split('.').collect();
                (parts.len() == path.len() && fits(&parts[..parts.len() - 1].join("."), parent))
                    .then(|| {
                        let mut real: Vec<&str> = parent.to_vec();
                        real.push(parts[parts.len() - 1]);
                        real.join(".")
                    })
            })
            .filter(|k| !k.ends_with('*'))
            .collect();
    match closest(shown, siblings.iter().map(String::as_str), 0.6) {
        Some(near) => format!("unknown key `{shown}`: did you mean `{near}`?"),
        None if siblings.is_empty() => format!("unknown key `{shown}`"),
        None => format!(
            "unknown key `{shown}`: expected one of {}",
            siblings
                .iter()
                .map(|s| format!("`{s}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// The candidate nearest to `key`, compared without case, `-` and `_`,
/// if it scores at least `min` (0 to 1).
pub(crate) fn closest<'a>(
    key: &str,
    candidates: impl Iterator<Item = &'a str>,
    min: f64,
) -> Option<&'a str> {
    let loose = |k: &str| -> String {
        k.chars()
            .filter(|c| c.is_ascii_alphanumeric() || matches!(c, ':' | '.'))
            .map(|c| c.to_ascii_lowercase())
            .collect()
    };
    let key = loose(key);
    candidates
        .map(|c| (strsim::normalized_damerau_levenshtein(&key, &loose(c)), c))
        .filter(|(score, _)| *score >= min)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
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
