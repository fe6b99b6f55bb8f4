//! One request, as curl's flags describe it, for every command that sends
//! requests (`request`, `get` and `bench`): the method, the headers and the
//! body, parsed once with curl's meanings.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use clap::Args;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC};

use crate::exit::{self, Failure};

mod form;

/// curl's `Accept-Encoding` for `--compressed`, in its order.
pub const ACCEPT_ENCODING: &str = "deflate, gzip, br, zstd";

/// The flags that shape the request itself, shared by `request`, `get` and
/// `bench`.
#[derive(Debug, Args, Default)]
pub struct MessageArgs {
    /// The method, sent on every request of the transfer (curl's -X).
    #[arg(
        short = 'X',
        long = "request",
        visible_alias = "method",
        value_name = "METHOD"
    )]
    pub method: Option<String>,
    /// A request header 'Name: value'; 'Name:' removes one we would send,
    /// 'Name;' sends it empty; @FILE reads them from a file. Repeatable.
    #[arg(short = 'H', long = "header", value_name = "HEADER")]
    pub headers: Vec<String>,
    /// POST DATA (@FILE or @- reads it, dropping newlines); several join with '&'.
    #[arg(short = 'd', long = "data", visible_alias = "data-ascii", value_name = "DATA", value_parser = data(DataKind::Ascii))]
    pub data: Vec<DataPart>,
    /// POST DATA byte for byte (@FILE or @- reads it as it is).
    #[arg(long = "data-binary", value_name = "DATA", value_parser = data(DataKind::Binary))]
    pub data_binary: Vec<DataPart>,
    /// POST DATA as given: an '@' is just an '@'.
    #[arg(long = "data-raw", value_name = "DATA", value_parser = data(DataKind::Raw))]
    pub data_raw: Vec<DataPart>,
    /// POST DATA percent-encoded: 'content', '=content', 'name=content', '@file' or 'name@file'.
    #[arg(long = "data-urlencode", value_name = "DATA", value_parser = data(DataKind::UrlEncode))]
    pub data_urlencode: Vec<DataPart>,
    /// POST JSON (@FILE or @- reads it), with JSON's Content-Type and Accept.
    #[arg(long = "json", value_name = "DATA", value_parser = data(DataKind::Json))]
    pub json: Vec<DataPart>,
    /// A multipart/form-data field: 'name=value', 'name=@file', 'name=<file', with ';type=' and ';filename='.
    #[arg(short = 'F', long = "form", value_name = "NAME=CONTENT", value_parser = field(false))]
    pub form: Vec<form::Field>,
    /// A multipart/form-data field whose value is taken as it is.
    #[arg(long = "form-string", value_name = "NAME=STRING", value_parser = field(true))]
    pub form_string: Vec<form::Field>,
    /// Send the -d data in the URL's query with a GET (or HEAD with -I).
    #[arg(short = 'G', long = "get")]
    pub get: bool,
    /// Add to the URL's query, encoded as --data-urlencode does ('+DATA': as it is).
    #[arg(long = "url-query", value_name = "DATA")]
    pub url_query: Vec<String>,
    /// HEAD: fetch the headers only.
    #[arg(short = 'I', long = "head")]
    pub head: bool,
    /// PUT this file (- for stdin) as the body.
    #[arg(short = 'T', long = "upload-file", value_name = "FILE")]
    pub upload_file: Option<String>,
    /// The User-Agent header.
    #[arg(short = 'A', long = "user-agent", value_name = "NAME")]
    pub user_agent: Option<String>,
    /// The Referer header (';auto' adds the previous URL on redirects).
    #[arg(short = 'e', long = "referer", value_name = "URL")]
    pub referer: Option<String>,
    /// Basic credentials 'user:password'.
    #[arg(short = 'u', long = "user", value_name = "USER:PASSWORD")]
    pub user: Option<String>,
    /// A Bearer token for the Authorization header.
    #[arg(long = "oauth2-bearer", value_name = "TOKEN")]
    pub oauth2_bearer: Option<String>,
    /// Ask for a compressed response (deflate, gzip, br, zstd) and decode it.
    #[arg(long)]
    pub compressed: bool,
    /// Ask for a byte range: 'N-M', 'N-', '-N'.
    #[arg(
        short = 'r',
        long = "range",
        value_name = "RANGE",
        allow_hyphen_values = true
    )]
    pub range: Option<String>,
}

/// Which data flag a piece of data came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataKind {
    Ascii,
    Binary,
    Raw,
    UrlEncode,
    Json,
}

/// One -d/--data-*/--json value, numbered in command-line order so that
/// pieces from different flags join in the order they were given.
#[derive(Debug, Clone)]
pub struct DataPart {
    seq: usize,
    kind: DataKind,
    value: String,
}

/// Numbers values as clap parses them, which is command-line order.
static SEQ: AtomicUsize = AtomicUsize::new(0);

fn data(kind: DataKind) -> impl Fn(&str) -> Result<DataPart, String> + Clone {
    move |value: &str| {
        Ok(DataPart {
            seq: SEQ.fetch_add(1, Ordering::Relaxed),
            kind,
            value: value.to_owned(),
        })
    }
}

fn field(literal: bool) -> impl Fn(&str) -> Result<form::Field, String> + Clone {
    move |value: &str| form::Field::parse(value, literal, SEQ.fetch_add(1, Ordering::Relaxed))
}

/// What curl calls the request's kind: it decides the method when -X does
/// not, and what a redirect does to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Get,
    Head,
    Post,
    PostForm,
    Put,
}

/// The request body.
#[derive(Debug, Clone)]
pub enum Body {
    Empty,
    Bytes(Bytes),
    /// `-T FILE`: streamed from the file, with its length.
    File(PathBuf, u64),
    /// `-T -`: streamed from stdin, chunked.
    Stdin,
}

/// One -H edit, applied over the headers we would send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderEdit {
    /// `Name: value`: replaces ours of that name, or is added.
    Set(String, String),
    /// `Name:`: ours of that name is not sent.
    Remove(String),
}

/// A request as the flags describe it, before it meets a URL.
#[derive(Debug, Clone)]
pub struct RequestSpec {
    pub kind: Kind,
    /// -X: the method on the wire, whatever the kind.
    pub custom_method: Option<String>,
    pub body: Body,
    /// The Content-Type that goes with the body unless -H sets one.
    pub content_type: Option<String>,
    /// -G: data that goes in the URL's query instead.
    pub query: Option<String>,
    pub edits: Vec<HeaderEdit>,
    pub user_agent: String,
    pub referer: Option<String>,
    pub auto_referer: bool,
    pub authorization: Option<String>,
    pub accept: &'static str,
    pub compressed: bool,
    pub range: Option<String>,
}

impl RequestSpec {
    /// Parses the flags, reading any files they name.
    pub async fn new(args: &MessageArgs) -> Result<Self, Failure> {
        let mut parts: Vec<&DataPart> = args
            .data
            .iter()
            .chain(&args.data_binary)
            .chain(&args.data_raw)
            .chain(&args.data_urlencode)
            .chain(&args.json)
            .collect();
        parts.sort_by_key(|p| p.seq);
        let json = parts.iter().any(|p| p.kind == DataKind::Json);
        let mut fields: Vec<&form::Field> = args.form.iter().chain(&args.form_string).collect();
        fields.sort_by_key(|f| f.seq);

        let sources = usize::from(!parts.is_empty())
            + usize::from(!fields.is_empty())
            + usize::from(args.upload_file.is_some());
        if sources > 1 {
            return Err(Failure::usage(
                "-d/--data, -F/--form and -T/--upload-file each make the body: give one of them",
            ));
        }

        let mut spec = Self {
            kind: Kind::Get,
            custom_method: args.method.clone(),
            body: Body::Empty,
            content_type: None,
            query: None,
            edits: Vec::new(),
            user_agent: format!("pipehttp/{}", env!("CARGO_PKG_VERSION")),
            referer: None,
            auto_referer: false,
            authorization: None,
            accept: if json { "application/json" } else { "*/*" },
            compressed: args.compressed,
            range: args.range.as_ref().map(|r| format!("bytes={r}")),
        };

        if !parts.is_empty() {
            let mut joined = Vec::new();
            for (i, part) in parts.iter().enumerate() {
                // A --json piece joins as it is, any other with '&'
                // (src/tool_getparam.c).
                if i > 0 && part.kind != DataKind::Json {
                    joined.push(b'&');
                }
                joined.extend_from_slice(&read_part(part).await?);
            }
            if args.get {
                spec.query = Some(String::from_utf8_lossy(&joined).into_owned());
            } else {
                spec.kind = Kind::Post;
                spec.body = Body::Bytes(Bytes::from(joined));
                spec.content_type = Some(if json {
                    "application/json".to_owned()
                } else {
                    "application/x-www-form-urlencoded".to_owned()
                });
            }
        } else if !fields.is_empty() {
            let (content_type, bytes) = form::build(&fields).await?;
            spec.kind = Kind::PostForm;
            spec.body = Body::Bytes(bytes);
            spec.content_type = Some(content_type);
        } else if let Some(file) = &args.upload_file {
            spec.kind = Kind::Put;
            spec.body = if file == "-" {
                Body::Stdin
            } else {
                let len = tokio::fs::metadata(file)
                    .await
                    .map_err(|e| {
                        Failure::new(exit::READ_ERROR, format!("cannot open {file}: {e}"))
                    })?
                    .len();
                Body::File(PathBuf::from(file), len)
            };
        }
        if spec.query.is_none() && !args.url_query.is_empty() {
            // curl appends --url-query only when -G has no data.
            let mut pieces = Vec::new();
            for value in &args.url_query {
                pieces.push(match value.strip_prefix('+') {
                    Some(raw) => raw.to_owned(),
                    None => {
                        let part = DataPart {
                            seq: 0,
                            kind: DataKind::UrlEncode,
                            value: value.clone(),
                        };
                        String::from_utf8_lossy(&read_part(&part).await?).into_owned()
                    }
                });
            }
            spec.query = Some(pieces.join("&"));
        }
        if args.head {
            if !matches!(spec.kind, Kind::Get) {
                return Err(Failure::usage(
                    "-I/--head asks for no body to be sent: it cannot go with -d, -F or -T",
                ));
            }
            spec.kind = Kind::Head;
        }

        for header in &args.headers {
            spec.add_header_arg(header).await?;
        }
        if let Some(agent) = &args.user_agent {
            spec.user_agent.clone_from(agent);
        }
        if let Some(referer) = &args.referer {
            match referer.strip_suffix(";auto") {
                Some(r) => {
                    spec.auto_referer = true;
                    spec.referer = (!r.is_empty()).then(|| r.to_owned());
                }
                None => spec.referer = Some(referer.clone()),
            }
        }
        if let Some(user) = &args.user {
            spec.authorization = Some(basic(user));
        }
        if let Some(token) = &args.oauth2_bearer {
            spec.authorization = Some(format!("Bearer {token}"));
        }
        Ok(spec)
    }

    async fn add_header_arg(&mut self, header: &str) -> Result<(), Failure> {
        if let Some(file) = header.strip_prefix('@') {
            // curl goes on without the headers of a file it cannot read.
            let Ok(text) = read_source(file).await else {
                eprintln!("Warning: Failed to open {file}");
                return Ok(());
            };
            for line in String::from_utf8_lossy(&text).lines() {
                self.add_header_line(line);
            }
        } else {
            self.add_header_line(header);
        }
        Ok(())
    }

    /// One -H value, with curl's forms: `Name: value`, `Name:` (remove),
    /// `Name;` (send empty). Anything else is ignored, as curl does.
    fn add_header_line(&mut self, line: &str) {
        let line = line.trim_end_matches(['\r', '\n']);
        let colon = line.find(':');
        let semi = line.find(';');
        match (colon, semi) {
            (Some(c), s) if s.is_none_or(|s| c < s) => {
                // curl sends the value as typed: only the space after the
                // colon goes, which every parser drops anyway.
                let (name, value) = (line[..c].trim(), line[c + 1..].trim_start());
                if name.is_empty() {
                    return;
                }
                if value.trim().is_empty() {
                    self.edits.push(HeaderEdit::Remove(name.to_owned()));
                } else {
                    self.edits
                        .push(HeaderEdit::Set(name.to_owned(), value.to_owned()));
                }
            }
            (_, Some(s)) if line[s + 1..].trim().is_empty() => {
                let name = line[..s].trim();
                if !name.is_empty() {
                    self.edits
                        .push(HeaderEdit::Set(name.to_owned(), String::new()));
                }
            }
            _ => {}
        }
    }

    /// The method on the wire.
    pub fn method(&self) -> String {
        if let Some(m) = &self.custom_method {
            return m.clone();
        }
        match self.kind {
            Kind::Get => "GET",
            Kind::Head => "HEAD",
            Kind::Post | Kind::PostForm => "POST",
            Kind::Put => "PUT",
        }
        .to_owned()
    }

    /// Whether curl asks for `Expect: 100-continue` (lib/http.c): for a
    /// -T upload that is not empty, and for other bodies over 1 MiB or of
    /// unknown length (on HTTP/1.1 only: the caller checks).
    pub fn expects_continue(&self) -> bool {
        const THRESHOLD: u64 = 1024 * 1024;
        match (self.kind, self.body_len()) {
            (Kind::Put, len) => len != Some(0),
            (Kind::Post | Kind::PostForm, len) => len.is_none_or(|l| l > THRESHOLD),
            _ => false,
        }
    }

    /// The body's length, when it is known before sending.
    pub fn body_len(&self) -> Option<u64> {
        match &self.body {
            Body::Empty => {
                matches!(self.kind, Kind::Post | Kind::PostForm | Kind::Put).then_some(0)
            }
            Body::Bytes(b) => Some(b.len() as u64),
            Body::File(_, len) => Some(*len),
            Body::Stdin => None,
        }
    }

    /// The body whole, for callers that send it many times (`bench`).
    pub async fn body_bytes(&self) -> Result<Bytes, Failure> {
        Ok(match &self.body {
            Body::Empty => Bytes::new(),
            Body::Bytes(b) => b.clone(),
            Body::File(path, _) => Bytes::from(read_source(&path.to_string_lossy()).await?),
            Body::Stdin => Bytes::from(read_source("-").await?),
        })
    }

    /// The request headers in curl's order, for a request to `host` (the
    /// Host header's value), with `cookie` from the cookie engine and the
    /// -H edits applied: `(name, value)` pairs, names as curl writes them.
    /// `url_user` is the URL's own `user:password`, used when -u and
    /// --oauth2-bearer give none.
    pub fn headers(
        &self,
        host: &str,
        referer: Option<&str>,
        cookie: Option<&str>,
        url_user: Option<&str>,
    ) -> Vec<(String, String)> {
        let mut ours: Vec<(String, String)> = Vec::new();
        ours.push(("Host".into(), host.to_owned()));
        if let Some(auth) = &self.authorization {
            ours.push(("Authorization".into(), auth.clone()));
        } else if let Some(user) = url_user {
            ours.push(("Authorization".into(), basic(user)));
        }
        // `-A ''` sends no User-Agent at all, as curl does.
        if !self.user_agent.is_empty() {
            ours.push(("User-Agent".into(), self.user_agent.clone()));
        }
        ours.push(("Accept".into(), self.accept.to_owned()));
        if let Some(range) = &self.range {
            ours.push(("Range".into(), range.clone()));
        }
        if self.compressed {
            ours.push(("Accept-Encoding".into(), ACCEPT_ENCODING.to_owned()));
        }
        if let Some(referer) = referer.or(self.referer.as_deref()) {
            ours.push(("Referer".into(), referer.to_owned()));
        }
        if let Some(cookie) = cookie {
            ours.push(("Cookie".into(), cookie.to_owned()));
        }
        let mut tail: Vec<(String, String)> = Vec::new();
        if matches!(self.kind, Kind::Post | Kind::PostForm | Kind::Put) {
            match self.body_len() {
                Some(len) => tail.push(("Content-Length".into(), len.to_string())),
                None => tail.push(("Transfer-Encoding".into(), "chunked".into())),
            }
        }
        if let Some(ct) = &self.content_type {
            tail.push(("Content-Type".into(), ct.clone()));
        }

        // -H drops ours of that name and sends every custom one after ours,
        // repeats included; `Name:` only drops ours (lib/http.c). The first
        // custom Host replaces ours in front and any later one is dropped:
        // a request has one Host.
        let mut custom: Vec<(String, String)> = Vec::new();
        for edit in &self.edits {
            let name = match edit {
                HeaderEdit::Set(name, _) | HeaderEdit::Remove(name) => name,
            };
            let same = |(n, _): &(String, String)| n.eq_ignore_ascii_case(name);
            ours.retain(|h| !same(h));
            tail.retain(|h| !same(h));
            if let HeaderEdit::Set(name, value) = edit {
                custom.push((name.clone(), value.clone()));
            }
        }
        let is_host = |(n, _): &(String, String)| n.eq_ignore_ascii_case("host");
        if let Some(i) = custom.iter().position(is_host) {
            ours.insert(0, custom.remove(i));
            custom.retain(|h| !is_host(h));
        }
        ours.extend(custom);
        ours.extend(tail);
        ours
    }

    /// Whether -H removed or replaced the header `name` that we would send.
    pub fn user_sets(&self, name: &str) -> bool {
        self.edits.iter().any(|e| match e {
            HeaderEdit::Set(n, _) | HeaderEdit::Remove(n) => n.eq_ignore_ascii_case(name),
        })
    }
}

/// Basic credentials for `user:password` (a missing password is empty).
fn basic(user: &str) -> String {
    let (name, password) = user.split_once(':').unwrap_or((user, ""));
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{name}:{password}"));
    format!("Basic {token}")
}

/// curl's --data-urlencode keeps only these unencoded, and writes a
/// space as '+'.
const URLENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

fn urlencode(bytes: &[u8]) -> String {
    percent_encoding::percent_encode(bytes, URLENCODE)
        .to_string()
        .replace("%20", "+")
}

/// A data file's bytes; one that cannot be read makes no data, with a
/// warning, as in curl.
async fn read_or_warn(source: &str) -> Vec<u8> {
    match read_source(source).await {
        Ok(bytes) => bytes,
        Err(f) => {
            eprintln!("Warning: {}; this makes an empty POST.", f.message);
            Vec::new()
        }
    }
}

/// The bytes one data flag contributes.
async fn read_part(part: &DataPart) -> Result<Vec<u8>, Failure> {
    let value = part.value.as_str();
    Ok(match part.kind {
        DataKind::Raw => value.as_bytes().to_vec(),
        DataKind::Ascii => match value.strip_prefix('@') {
            // curl drops CR and LF from a -d file; a missing one makes an
            // empty body, with a warning.
            Some(source) => match read_source(source).await {
                Ok(bytes) => bytes
                    .into_iter()
                    .filter(|b| !matches!(b, b'\r' | b'\n'))
                    .collect(),
                Err(f) => {
                    eprintln!("Warning: {}; this makes an empty POST.", f.message);
                    Vec::new()
                }
            },
            None => value.as_bytes().to_vec(),
        },
        DataKind::Binary | DataKind::Json => match value.strip_prefix('@') {
            Some(source) => read_or_warn(source).await,
            None => value.as_bytes().to_vec(),
        },
        DataKind::UrlEncode => {
            // 'name@file', '@file', 'name=content', '=content', 'content'.
            let at = value.find('@');
            let eq = value.find('=');
            match (eq, at) {
                (Some(e), a) if a.is_none_or(|a| e < a) => {
                    let (name, content) = (&value[..e], &value[e + 1..]);
                    let encoded = urlencode(content.as_bytes());
                    if name.is_empty() {
                        encoded
                    } else {
                        format!("{name}={encoded}")
                    }
                    .into_bytes()
                }
                (_, Some(a)) => {
                    let (name, file) = (&value[..a], &value[a + 1..]);
                    let Ok(bytes) = read_source(file).await else {
                        // curl sends nothing for it, not even the name.
                        eprintln!(
                            "Warning: Couldn't read data from file \"{file}\", this makes an empty POST."
                        );
                        return Ok(Vec::new());
                    };
                    let encoded = urlencode(&bytes);
                    if name.is_empty() {
                        encoded
                    } else {
                        format!("{name}={encoded}")
                    }
                    .into_bytes()
                }
                _ => urlencode(value.as_bytes()).into_bytes(),
            }
        }
    })
}

/// The bytes of FILE, or of stdin for `-`: read whole, as curl does, so a
/// request carries a Content-Length.
pub async fn read_source(source: &str) -> Result<Vec<u8>, Failure> {
    if source == "-" {
        let mut buf = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut tokio::io::stdin(), &mut buf)
            .await
            .map_err(|e| Failure::new(exit::READ_ERROR, format!("cannot read stdin: {e}")))?;
        return Ok(buf);
    }
    tokio::fs::read(source)
        .await
        .map_err(|e| Failure::new(exit::READ_ERROR, format!("cannot read {source}: {e}")))
}

/// A number of seconds from a flag, as a duration.
pub fn seconds(flag: &str, secs: f64) -> Result<Duration, Failure> {
    Duration::try_from_secs_f64(secs)
        .map_err(|_| Failure::usage(format!("{flag} takes a number of seconds, not {secs}")))
}
