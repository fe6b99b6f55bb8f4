//! `-F`/`--form-string`: curl's field syntax, turned into a
//! multipart/form-data body by common-multipart-rfc7578.

use std::io::Cursor;
use std::path::Path;

use bytes::Bytes;
use common_multipart_rfc7578::client::multipart::{Body, BoundaryGenerator, Form};
use futures_util::TryStreamExt;

use super::read_source;
use crate::exit::{self, Failure};

/// One form field as given on the command line.
#[derive(Debug, Clone)]
pub struct Field {
    pub(super) seq: usize,
    name: String,
    content: Content,
    mime: Option<String>,
    filename: Option<String>,
}

#[derive(Debug, Clone)]
enum Content {
    Text(String),
    /// `@FILE`: the file as an upload, with its name.
    File(String),
    /// `<FILE`: the file's content as the field's value.
    FileText(String),
}

impl Field {
    /// `name=value`, `name=@file`, `name=<file`, each optionally followed by
    /// `;type=MIME` and `;filename=NAME` (curl's -F, read as
    /// src/tool_formparse.c reads it); with `literal` the value is taken as
    /// it is (curl's --form-string).
    pub fn parse(arg: &str, literal: bool, seq: usize) -> Result<Self, String> {
        let (name, rest) = arg
            .split_once('=')
            .ok_or_else(|| format!("'{arg}' is not a form field: write name=content"))?;
        let mut field = Self {
            seq,
            name: name.to_owned(),
            content: Content::Text(rest.to_owned()),
            mime: None,
            filename: None,
        };
        if literal {
            return Ok(field);
        }
        let (kind, rest) = match rest.as_bytes().first() {
            Some(b'@') => (Some('@'), &rest[1..]),
            Some(b'<') => (Some('<'), &rest[1..]),
            _ => (None, rest),
        };
        // Several files in one field (`@a,b`) make a nested multipart.
        let end = if kind == Some('@') { Some(',') } else { None };
        let params = Params::parse(rest, end).map_err(|e| format!("'{arg}': {e}"))?;
        if params.stopped_at == Some(',') {
            return Err(format!(
                "'{arg}': several files in one field (@a,b) are not supported: give each its own -F"
            ));
        }
        field.mime = params.mime;
        field.filename = params.filename;
        if kind == Some('<') && field.filename.take().is_some() {
            eprintln!("Warning: Field file name not allowed here: {arg}");
        }
        field.content = match kind {
            Some('@') => Content::File(params.value),
            Some('<') => Content::FileText(params.value),
            _ => Content::Text(params.value),
        };
        Ok(field)
    }
}

/// A field's content and its `;type=` and `;filename=`.
struct Params {
    value: String,
    mime: Option<String>,
    filename: Option<String>,
    /// The separator that ended the field, if not its end.
    stopped_at: Option<char>,
}

impl Params {
    /// curl's get_param_part(): the value (quoted or not), then `;`
    /// parameters. After `type=`, unknown parameters belong to the type
    /// (`type=text/plain; charset=utf-8`); elsewhere they are skipped.
    fn parse(text: &str, end: Option<char>) -> Result<Self, String> {
        let stop = |c: char| c == ';' || Some(c) == end;
        let mut rest = text.trim_start();
        let value = word(&mut rest, stop);
        let mut params = Self {
            value,
            mime: None,
            filename: None,
            stopped_at: None,
        };
        let mut in_type = false;
        while let Some(after) = rest.strip_prefix(';') {
            rest = after.trim_start();
            let lower = rest.get(..9).unwrap_or(rest).to_ascii_lowercase();
            if !in_type && lower.starts_with("type=") {
                rest = rest[5..].trim_start();
                let len = rest.find(stop).unwrap_or(rest.len());
                let mime = rest[..len].trim_end();
                let valid = mime.split_once('/').is_some_and(|(major, minor)| {
                    !major.is_empty()
                        && !major.contains(' ')
                        && !minor.is_empty()
                        && !minor.starts_with([' ', ',', '\n'])
                });
                if !valid {
                    return Err("Illegally formatted content-type field".into());
                }
                params.mime = Some(mime.to_owned());
                rest = &rest[len..];
                in_type = true;
            } else if lower.starts_with("filename=") {
                in_type = false;
                rest = rest[9..].trim_start();
                params.filename = Some(word(&mut rest, stop));
            } else if lower.starts_with("headers=") || lower.starts_with("encoder=") {
                return Err(
                    ";headers= and ;encoder= are not supported (the multipart builder has no place for them)"
                        .into(),
                );
            } else if in_type {
                let len = rest.find(stop).unwrap_or(rest.len());
                let mime = params.mime.get_or_insert_with(String::new);
                mime.push(';');
                mime.push_str(rest[..len].trim_end());
                rest = &rest[len..];
            } else {
                let unknown = word(&mut rest, stop);
                if !unknown.is_empty() {
                    eprintln!("Warning: skip unknown form field: {unknown}");
                }
            }
        }
        params.stopped_at = rest.chars().next();
        Ok(params)
    }
}

/// One value at the start of `rest`, which moves past it: a double-quoted
/// one with `\\` and `\"` escapes (anything after its closing quote is
/// dropped), or the text up to `stop` without its trailing spaces.
fn word(rest: &mut &str, stop: impl Fn(char) -> bool) -> String {
    if let Some(quoted) = rest.strip_prefix('"') {
        let mut out = String::new();
        let mut chars = quoted.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' if quoted[i + 1..].starts_with(['\\', '"']) => {
                    if let Some((_, next)) = chars.next() {
                        out.push(next);
                    }
                }
                '"' => {
                    let after = &quoted[i + 1..];
                    *rest = &after[after.find(&stop).unwrap_or(after.len())..];
                    return out;
                }
                c => out.push(c),
            }
        }
        // No closing quote: the quote is part of an unquoted value.
    }
    let len = rest.find(&stop).unwrap_or(rest.len());
    let value = rest[..len].trim_end().to_owned();
    *rest = &rest[len..];
    value
}

/// A data part: text, or typed or named as a file when -F says so.
fn add_data(
    form: &mut Form<'_>,
    name: String,
    field: &Field,
    bytes: Vec<u8>,
) -> Result<(), Failure> {
    if field.mime.is_some() || field.filename.is_some() {
        let filename = escape(field.filename.as_deref().unwrap_or_default());
        let mime = parse_mime(field.mime.as_deref().unwrap_or("text/plain"))?;
        form.add_reader_file_with_mime(name, Cursor::new(bytes), filename, mime);
    } else {
        match String::from_utf8(bytes) {
            Ok(text) => form.add_text(name, text),
            Err(e) => form.add_reader(name, Cursor::new(e.into_bytes())),
        }
    }
    Ok(())
}

/// A name or file name as curl quotes it in Content-Disposition
/// (lib/mime.c, the form strategy): `"`, CR and LF percent-encoded.
fn escape(text: &str) -> String {
    text.replace('"', "%22")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// curl's content types for uploaded files, by extension.
fn guess_type(filename: &str) -> Option<&'static str> {
    let ext = Path::new(filename)
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    Some(match ext.as_str() {
        "gif" => "image/gif",
        "jpg" | "jpeg" => "image/jpeg",
        "png" => "image/png",
        "svg" => "image/svg+xml",
        "txt" => "text/plain",
        "htm" | "html" => "text/html",
        "pdf" => "application/pdf",
        "xml" => "application/xml",
        _ => return None,
    })
}

/// Boundaries as curl makes them (lib/mime.c): 24 dashes and 16 random hex
/// digits, so that a form's length, which servers and `%{size_upload}`
/// show, is curl's.
struct CurlBoundary;

impl BoundaryGenerator for CurlBoundary {
    fn generate_boundary() -> String {
        use std::hash::{BuildHasher, Hasher};
        // std's hasher keys are random for each RandomState: enough for a
        // boundary, which must only be unlikely to appear in the parts.
        let random = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        format!("{}{random:016x}", "-".repeat(24))
    }
}

/// The body and its Content-Type (with the boundary).
pub async fn build(fields: &[&Field]) -> Result<(String, Bytes), Failure> {
    let mut form = Form::new::<CurlBoundary>();
    for field in fields {
        let name = escape(&field.name);
        match &field.content {
            Content::Text(text) => {
                add_data(&mut form, name, field, text.clone().into_bytes())?;
            }
            Content::FileText(file) => {
                add_data(&mut form, name, field, read_source(file).await?)?;
            }
            Content::File(file) => {
                let bytes = read_source(file).await?;
                let filename = field.filename.clone().unwrap_or_else(|| {
                    Path::new(file)
                        .file_name()
                        .map_or_else(|| file.clone(), |n| n.to_string_lossy().into_owned())
                });
                // curl types a file by its name, or as octet-stream; stdin
                // gets no type, which RFC 7578 (4.4) reads as text/plain.
                let fallback = if file == "-" {
                    "text/plain"
                } else {
                    "application/octet-stream"
                };
                let mime = match &field.mime {
                    Some(m) => m.as_str(),
                    None => guess_type(&filename).unwrap_or(fallback),
                };
                form.add_reader_file_with_mime(
                    name,
                    Cursor::new(bytes),
                    escape(&filename),
                    parse_mime(mime)?,
                );
            }
        }
    }
    let content_type = form.content_type();
    let body: bytes::BytesMut = Body::from(form)
        .try_concat()
        .await
        .map_err(|e| Failure::new(exit::READ_ERROR, format!("cannot build the form: {e}")))?;
    Ok((content_type, body.freeze()))
}

fn parse_mime(text: &str) -> Result<mime::Mime, Failure> {
    text.parse()
        .map_err(|_| Failure::usage(format!("'{text}' is not a content type such as text/plain")))
}
