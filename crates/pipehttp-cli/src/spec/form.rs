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
    /// `;type=MIME` and `;filename=NAME` (curl's -F); with `literal` the
    /// value is taken as it is (curl's --form-string).
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
        let mut params = split_params(rest).into_iter();
        let value = params.next().unwrap_or_default();
        let mut extra = Vec::new();
        for param in params {
            let lower = param.to_ascii_lowercase();
            if lower.starts_with("type=") {
                field.mime = Some(param[5..].to_owned());
            } else if lower.starts_with("filename=") {
                field.filename = Some(param[9..].to_owned());
            } else if lower.starts_with("headers=") || lower.starts_with("encoder=") {
                return Err(format!(
                    "'{arg}': ;headers= and ;encoder= are not supported"
                ));
            } else {
                // Not a parameter curl knows: part of the value.
                extra.push(param);
            }
        }
        let value = std::iter::once(value)
            .chain(extra)
            .collect::<Vec<_>>()
            .join(";");
        field.content = match kind {
            Some('@') => Content::File(value),
            Some('<') => Content::FileText(value),
            _ => Content::Text(value),
        };
        Ok(field)
    }
}

/// Splits at ';' outside double quotes, and unquotes.
fn split_params(text: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => quoted = !quoted,
            '\\' if quoted => {
                if let Some(next) = chars.next() {
                    out.last_mut().expect("never empty").push(next);
                }
            }
            ';' if !quoted => out.push(String::new()),
            c => out.last_mut().expect("never empty").push(c),
        }
    }
    out
}

/// curl's content types for uploaded files, by extension.
fn guess_type(filename: &str) -> &'static str {
    let ext = Path::new(filename)
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "gif" => "image/gif",
        "jpg" | "jpeg" => "image/jpeg",
        "png" => "image/png",
        "svg" => "image/svg+xml",
        "txt" => "text/plain",
        "htm" | "html" => "text/html",
        "pdf" => "application/pdf",
        "xml" => "application/xml",
        _ => "application/octet-stream",
    }
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
        let name = field.name.as_str();
        match &field.content {
            Content::Text(text) => {
                if field.mime.is_some() || field.filename.is_some() {
                    let filename = field.filename.clone().unwrap_or_default();
                    let mime = parse_mime(field.mime.as_deref().unwrap_or("text/plain"))?;
                    form.add_reader_file_with_mime(
                        name,
                        Cursor::new(text.clone().into_bytes()),
                        filename,
                        mime,
                    );
                } else {
                    form.add_text(name, text.clone());
                }
            }
            Content::FileText(file) => {
                let bytes = read_source(file).await?;
                match String::from_utf8(bytes) {
                    Ok(text) => form.add_text(name, text),
                    Err(e) => form.add_reader(name, Cursor::new(e.into_bytes())),
                }
            }
            Content::File(file) => {
                let bytes = read_source(file).await?;
                let filename = field.filename.clone().unwrap_or_else(|| {
                    Path::new(file)
                        .file_name()
                        .map_or_else(|| file.clone(), |n| n.to_string_lossy().into_owned())
                });
                let mime = parse_mime(field.mime.as_deref().unwrap_or(guess_type(&filename)))?;
                form.add_reader_file_with_mime(name, Cursor::new(bytes), filename, mime);
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
