//! Datadog's trace intake payloads, as its tracers send them and its agent
//! reads them (`pkg/trace/api` and `pkg/proto/pbgo/trace` of datadog-agent).
//!
//! Both are MessagePack, read here with `rmpv` (and written with
//! `rmp-serde`):
//!
//! - **v0.4** (`/v0.4/traces`): an array of traces, each an array of spans,
//!   each span a map keyed by field name (`service`, `name`, `resource`,
//!   `trace_id`, `span_id`, `parent_id`, `start`, `duration`, `error`,
//!   `meta`, `metrics`, `type`; keys the agent does not know are skipped).
//! - **v0.5** (`/v0.5/traces`): `[strings, traces]`: a string table, then
//!   the traces, each span an array of exactly 12 elements in the order
//!   service, name, resource, trace_id, span_id, parent_id, start,
//!   duration, error, meta, metrics, type, where every string (and every
//!   meta key and value, every metrics key) is an index into the table.
//!
//! Numbers are read as leniently as Datadog's agent reads them: an id may
//! come signed (tracers of languages without unsigned types), a time
//! unsigned, a metric as an integer, and nil stands for zero or empty.
//! Strings that are not UTF-8 are repaired with U+FFFD, as the agent does.

use std::borrow::Cow;
use std::fmt;

use rmpv::ValueRef;

use crate::Span;

/// The intake versions the agent takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// `/v0.4/traces`: spans as maps.
    V04,
    /// `/v0.5/traces`: a string table and spans as arrays.
    V05,
}

impl Version {
    /// The request path of this version.
    pub fn path(self) -> &'static str {
        match self {
            Self::V04 => "/v0.4/traces",
            Self::V05 => "/v0.5/traces",
        }
    }

    /// `v0.4` or `v0.5`, as the journal and `/stats` name it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::V04 => "v0.4",
            Self::V05 => "v0.5",
        }
    }

    /// The version served at `path`, if any.
    pub fn from_path(path: &str) -> Option<Self> {
        match path {
            "/v0.4/traces" => Some(Self::V04),
            "/v0.5/traces" => Some(Self::V05),
            _ => None,
        }
    }
}

/// A payload that is not what its endpoint takes: where and why, e.g.
/// `trace 2, span 0: span_id: expected an integer, found a string`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError(String);

impl DecodeError {
    fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }

    fn at(self, place: impl fmt::Display) -> Self {
        Self(format!("{place}: {}", self.0))
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DecodeError {}

/// Reads one payload of `version` into its traces.
pub fn decode(version: Version, body: &[u8]) -> Result<Vec<Vec<Span>>, DecodeError> {
    let value = read(body)?;
    match version {
        Version::V04 => decode_v04(&value),
        Version::V05 => decode_v05(&value),
    }
}

/// Checks that `body` is one well-formed MessagePack value (what the
/// agent takes at `/v0.6/stats`, whose contents it does not keep).
pub fn check(body: &[u8]) -> Result<(), DecodeError> {
    read(body).map(drop)
}

fn read(body: &[u8]) -> Result<ValueRef<'_>, DecodeError> {
    if body.is_empty() {
        return Err(DecodeError::new("the body is empty"));
    }
    let mut rest = body;
    rmpv::decode::read_value_ref(&mut rest)
        .map_err(|e| DecodeError::new(format!("not MessagePack: {e}")))
}

/// A v0.4 payload, as Datadog's tracers write it: the spans of each trace
/// as maps, keyed by field name.
pub fn encode_v04(traces: &[Vec<Span>]) -> Vec<u8> {
    rmp_serde::to_vec_named(traces).expect("spans encode as MessagePack")
}

fn decode_v04(value: &ValueRef<'_>) -> Result<Vec<Vec<Span>>, DecodeError> {
    let traces = array(value).map_err(|e| e.at("the payload"))?;
    each_span(traces, span_v04)
}

/// The traces of a payload, each an array of spans read by `span`.
fn each_span(
    traces: &[ValueRef<'_>],
    span: impl Fn(&ValueRef<'_>) -> Result<Span, DecodeError>,
) -> Result<Vec<Vec<Span>>, DecodeError> {
    traces
        .iter()
        .enumerate()
        .map(|(t, trace)| {
            let spans = array(trace).map_err(|e| e.at(format_args!("trace {t}")))?;
            spans
                .iter()
                .enumerate()
                .map(|(s, value)| {
                    span(value).map_err(|e| e.at(format_args!("trace {t}, span {s}")))
                })
                .collect()
        })
        .collect()
}

fn span_v04(value: &ValueRef<'_>) -> Result<Span, DecodeError> {
    let ValueRef::Map(fields) = value else {
        return Err(DecodeError::new(format!(
            "expected a map, found {}",
            kind(value)
        )));
    };
    let mut span = Span::default();
    for (key, value) in fields {
        let key = string(key).map_err(|e| e.at("a key"))?;
        let field = |e: DecodeError| e.at(&key);
        match key.as_ref() {
            "service" => span.service = string(value).map_err(field)?.into_owned(),
            "name" => span.name = string(value).map_err(field)?.into_owned(),
            "resource" => span.resource = string(value).map_err(field)?.into_owned(),
            "type" => span.kind = string(value).map_err(field)?.into_owned(),
            "trace_id" => span.trace_id = uint(value).map_err(field)?,
            "span_id" => span.span_id = uint(value).map_err(field)?,
            "parent_id" => span.parent_id = uint(value).map_err(field)?,
            "start" => span.start = int(value).map_err(field)?,
            "duration" => span.duration = int(value).map_err(field)?,
            "error" => span.error = int32(value).map_err(field)?,
            "meta" => {
                for (k, v) in map(value).map_err(field)? {
                    let k = string(k).map_err(field)?;
                    let v = string(v).map_err(|e| field(e.at(&k)))?;
                    span.meta.insert(k.into_owned(), v.into_owned());
                }
            }
            "metrics" => {
                for (k, v) in map(value).map_err(field)? {
                    let k = string(k).map_err(field)?;
                    let v = float(v).map_err(|e| field(e.at(&k)))?;
                    span.metrics.insert(k.into_owned(), v);
                }
            }
            // meta_struct, span_links, span_events and whatever comes next:
            // the agent forwards them; this one has nothing to forward to.
            _ => {}
        }
    }
    Ok(span)
}

fn decode_v05(value: &ValueRef<'_>) -> Result<Vec<Vec<Span>>, DecodeError> {
    let parts = array(value).map_err(|e| e.at("the payload"))?;
    let [table, traces] = parts else {
        return Err(DecodeError::new(format!(
            "the payload: expected [strings, traces], found an array of {}",
            parts.len()
        )));
    };
    let table = array(table)
        .map_err(|e| e.at("the string table"))?
        .iter()
        .enumerate()
        .map(|(i, s)| string(s).map_err(|e| e.at(format_args!("string {i}"))))
        .collect::<Result<Vec<_>, _>>()?;
    let traces = array(traces).map_err(|e| e.at("the traces"))?;
    each_span(traces, |span| span_v05(span, &table))
}

/// The fields of a v0.5 span, in their order.
const V05_FIELDS: [&str; 12] = [
    "service",
    "name",
    "resource",
    "trace_id",
    "span_id",
    "parent_id",
    "start",
    "duration",
    "error",
    "meta",
    "metrics",
    "type",
];

fn span_v05(value: &ValueRef<'_>, table: &[Cow<'_, str>]) -> Result<Span, DecodeError> {
    let fields = array(value)?;
    let Ok(fields): Result<&[ValueRef<'_>; 12], _> = fields.try_into() else {
        return Err(DecodeError::new(format!(
            "expected an array of 12 fields, found {}",
            fields.len()
        )));
    };
    let at = |i: usize| move |e: DecodeError| e.at(V05_FIELDS[i]);
    let lookup = |v: &ValueRef<'_>| -> Result<String, DecodeError> {
        let index = uint(v)?;
        usize::try_from(index)
            .ok()
            .and_then(|i| table.get(i))
            .map(|s| s.clone().into_owned())
            .ok_or_else(|| {
                DecodeError::new(format!(
                    "string index {index} is past the table of {}",
                    table.len()
                ))
            })
    };
    let mut span = Span {
        service: lookup(&fields[0]).map_err(at(0))?,
        name: lookup(&fields[1]).map_err(at(1))?,
        resource: lookup(&fields[2]).map_err(at(2))?,
        trace_id: uint(&fields[3]).map_err(at(3))?,
        span_id: uint(&fields[4]).map_err(at(4))?,
        parent_id: uint(&fields[5]).map_err(at(5))?,
        start: int(&fields[6]).map_err(at(6))?,
        duration: int(&fields[7]).map_err(at(7))?,
        error: int32(&fields[8]).map_err(at(8))?,
        kind: lookup(&fields[11]).map_err(at(11))?,
        ..Span::default()
    };
    for (k, v) in map(&fields[9]).map_err(at(9))? {
        span.meta
            .insert(lookup(k).map_err(at(9))?, lookup(v).map_err(at(9))?);
    }
    for (k, v) in map(&fields[10]).map_err(at(10))? {
        span.metrics
            .insert(lookup(k).map_err(at(10))?, float(v).map_err(at(10))?);
    }
    Ok(span)
}

fn kind(value: &ValueRef<'_>) -> &'static str {
    match value {
        ValueRef::Nil => "nil",
        ValueRef::Boolean(_) => "a boolean",
        ValueRef::Integer(_) => "an integer",
        ValueRef::F32(_) | ValueRef::F64(_) => "a float",
        ValueRef::String(_) => "a string",
        ValueRef::Binary(_) => "binary data",
        ValueRef::Array(_) => "an array",
        ValueRef::Map(_) => "a map",
        ValueRef::Ext(..) => "an extension value",
    }
}

fn expected(what: &str, value: &ValueRef<'_>) -> DecodeError {
    DecodeError::new(format!("expected {what}, found {}", kind(value)))
}

fn array<'v, 'a>(value: &'v ValueRef<'a>) -> Result<&'v [ValueRef<'a>], DecodeError> {
    match value {
        ValueRef::Array(items) => Ok(items),
        _ => Err(expected("an array", value)),
    }
}

/// A map; nil is an empty one.
fn map<'v, 'a>(value: &'v ValueRef<'a>) -> Result<&'v [(ValueRef<'a>, ValueRef<'a>)], DecodeError> {
    match value {
        ValueRef::Map(entries) => Ok(entries),
        ValueRef::Nil => Ok(&[]),
        _ => Err(expected("a map", value)),
    }
}

/// A string or binary data; nil is empty.
fn string<'a>(value: &ValueRef<'a>) -> Result<Cow<'a, str>, DecodeError> {
    match value {
        ValueRef::String(s) => Ok(match s.into_str() {
            Some(s) => Cow::Borrowed(s),
            None => Cow::Owned(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        }),
        ValueRef::Binary(b) => Ok(String::from_utf8_lossy(b)),
        ValueRef::Nil => Ok(Cow::Borrowed("")),
        _ => Err(expected("a string", value)),
    }
}

/// An unsigned integer; a negative one is taken bit for bit, as the agent
/// takes ids from tracers whose language has no unsigned integers.
fn uint(value: &ValueRef<'_>) -> Result<u64, DecodeError> {
    match value {
        ValueRef::Integer(n) => Ok(n
            .as_u64()
            .or_else(|| n.as_i64().map(|signed| signed as u64))
            .expect("a MessagePack integer fits u64 or i64")),
        ValueRef::Nil => Ok(0),
        _ => Err(expected("an integer", value)),
    }
}

fn int(value: &ValueRef<'_>) -> Result<i64, DecodeError> {
    match value {
        ValueRef::Integer(n) => n
            .as_i64()
            .ok_or_else(|| DecodeError::new(format!("{n} overflows a signed 64-bit integer"))),
        ValueRef::Nil => Ok(0),
        _ => Err(expected("an integer", value)),
    }
}

fn int32(value: &ValueRef<'_>) -> Result<i32, DecodeError> {
    let n = int(value)?;
    i32::try_from(n).map_err(|_| DecodeError::new(format!("{n} overflows a signed 32-bit integer")))
}

/// A float; an integer is taken as one (encoders shorten whole numbers).
fn float(value: &ValueRef<'_>) -> Result<f64, DecodeError> {
    match value {
        ValueRef::F64(f) => Ok(*f),
        ValueRef::F32(f) => Ok(f64::from(*f)),
        ValueRef::Integer(n) => Ok(n.as_f64().expect("an integer converts to f64")),
        ValueRef::Nil => Ok(0.0),
        _ => Err(expected("a number", value)),
    }
}

/// A v0.5 payload, as Datadog's Python tracer writes it: every string of
/// the spans once, in one table. (Only the tests write v0.5; the tracer
/// of this example speaks v0.4.)
#[cfg(test)]
fn encode_v05(traces: &[Vec<Span>]) -> Vec<u8> {
    use std::collections::BTreeMap;

    use rmpv::Value;

    #[derive(Default)]
    struct Table {
        strings: Vec<String>,
        index: BTreeMap<String, u64>,
    }
    impl Table {
        fn add(&mut self, s: &str) -> Value {
            let next = self.strings.len() as u64;
            let i = *self.index.entry(s.to_owned()).or_insert_with(|| {
                self.strings.push(s.to_owned());
                next
            });
            Value::from(i)
        }
    }
    let mut table = Table::default();
    let traces: Vec<Value> = traces
        .iter()
        .map(|trace| {
            Value::Array(
                trace
                    .iter()
                    .map(|s| {
                        let meta = s
                            .meta
                            .iter()
                            .map(|(k, v)| (table.add(k), table.add(v)))
                            .collect();
                        let metrics = s
                            .metrics
                            .iter()
                            .map(|(k, v)| (table.add(k), Value::from(*v)))
                            .collect();
                        Value::Array(vec![
                            table.add(&s.service),
                            table.add(&s.name),
                            table.add(&s.resource),
                            Value::from(s.trace_id),
                            Value::from(s.span_id),
                            Value::from(s.parent_id),
                            Value::from(s.start),
                            Value::from(s.duration),
                            Value::from(s.error),
                            Value::Map(meta),
                            Value::Map(metrics),
                            table.add(&s.kind),
                        ])
                    })
                    .collect(),
            )
        })
        .collect();
    let strings = table.strings.into_iter().map(Value::from).collect();
    let mut out = Vec::new();
    rmpv::encode::write_value(
        &mut out,
        &Value::Array(vec![Value::Array(strings), Value::Array(traces)]),
    )
    .expect("writing to a Vec");
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use rmpv::Value;

    use super::*;

    fn span(span_id: u64) -> Span {
        Span {
            service: "svc".into(),
            name: "http.request".into(),
            resource: "GET /users/:id".into(),
            trace_id: 7,
            span_id,
            parent_id: 0,
            start: 1_700_000_000_000_000_000,
            duration: 1500,
            error: 1,
            meta: BTreeMap::from([("http.method".into(), "GET".into())]),
            metrics: BTreeMap::from([("_sampling_priority_v1".into(), 1.0)]),
            kind: "web".into(),
        }
    }

    fn encode(value: &Value) -> Vec<u8> {
        let mut out = Vec::new();
        rmpv::encode::write_value(&mut out, value).unwrap();
        out
    }

    #[test]
    fn v04_round_trips() {
        let traces = vec![vec![span(1), span(2)], vec![span(u64::MAX)]];
        let body = encode_v04(&traces);
        assert_eq!(decode(Version::V04, &body).unwrap(), traces);
    }

    #[test]
    fn v05_round_trips_through_the_string_table() {
        let traces = vec![vec![span(1)], vec![span(2), span(3)]];
        let body = encode_v05(&traces);
        assert_eq!(decode(Version::V05, &body).unwrap(), traces);
    }

    #[test]
    fn v04_takes_numbers_as_leniently_as_the_agent() {
        // A signed id, an unsigned start, an integer metric, nil meta, a
        // key it does not know and a binary string.
        let body = encode(&Value::Array(vec![Value::Array(vec![Value::Map(vec![
            ("span_id".into(), Value::from(-2i64)),
            ("start".into(), Value::from(5u64)),
            (
                "metrics".into(),
                Value::Map(vec![("n".into(), Value::from(3))]),
            ),
            ("meta".into(), Value::Nil),
            ("span_links".into(), Value::Array(vec![])),
            ("service".into(), Value::Binary(b"bin\xff".to_vec())),
        ])])]));
        let traces = decode(Version::V04, &body).unwrap();
        let got = &traces[0][0];
        assert_eq!(got.span_id, u64::MAX - 1);
        assert_eq!(got.start, 5);
        assert_eq!(got.metrics["n"], 3.0);
        assert!(got.meta.is_empty());
        assert_eq!(got.service, "bin\u{fffd}");
    }

    #[test]
    fn bad_payloads_say_where() {
        let not_a_trace = encode(&Value::Array(vec![Value::from(1)]));
        assert_eq!(
            decode(Version::V04, &not_a_trace).unwrap_err().to_string(),
            "trace 0: expected an array, found an integer"
        );
        let bad_id = encode(&Value::Array(vec![Value::Array(vec![Value::Map(vec![(
            "span_id".into(),
            "x".into(),
        )])])]));
        assert_eq!(
            decode(Version::V04, &bad_id).unwrap_err().to_string(),
            "trace 0, span 0: span_id: expected an integer, found a string"
        );
        let short = encode(&Value::Array(vec![
            Value::Array(vec![]),
            Value::Array(vec![Value::Array(vec![Value::Array(vec![Value::from(0)])])]),
        ]));
        assert_eq!(
            decode(Version::V05, &short).unwrap_err().to_string(),
            "trace 0, span 0: expected an array of 12 fields, found 1"
        );
        let mut fields = vec![Value::from(0u8); 12];
        fields[0] = Value::from(5u8);
        fields[9] = Value::Map(vec![]);
        fields[10] = Value::Nil;
        let past_table = encode(&Value::Array(vec![
            Value::Array(vec!["only".into()]),
            Value::Array(vec![Value::Array(vec![Value::Array(fields)])]),
        ]));
        assert_eq!(
            decode(Version::V05, &past_table).unwrap_err().to_string(),
            "trace 0, span 0: service: string index 5 is past the table of 1"
        );
        assert!(decode(Version::V04, b"").is_err());
        assert!(decode(Version::V04, &[0xc1]).is_err());
        assert!(decode(Version::V04, &[0x91]).is_err(), "truncated");
    }
}
