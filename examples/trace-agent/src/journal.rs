//! The agent's journal: one JSON line per acknowledged batch, appended
//! and fsync'd before the batch is acknowledged:
//! `{"pid":1234,"lang":"python","tracer_version":"4.16.0","endpoint":"v0.5","spans":[{...},...]}`.
//!
//! A line without its newline is a write that a kill cut short; it was
//! never acknowledged, so reading skips it and reopening cuts it off.
//! Lines of the journal's first form (`pid` and `spans` only) still read.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::Span;

/// Who sent a batch: the process, where the OS tells the agent, and the
/// tracer, as its `Datadog-Meta-Lang` and `Datadog-Meta-Tracer-Version`
/// headers name it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    /// The process that sent it.
    pub pid: Option<u32>,
    /// `python`, `nodejs`, `rust`, …
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lang: Option<String>,
    /// The tracer's version, e.g. `4.16.0`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracer_version: Option<String>,
}

/// One batch as the journal holds it, reduced to what the checks need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Who sent it.
    pub origin: Origin,
    /// Where it came in: `v0.4` or `v0.5` (`None` in lines of the first
    /// form).
    pub endpoint: Option<String>,
    /// The `span_id` of every span of the batch.
    pub span_ids: Vec<u64>,
}

/// What a journal file holds.
#[derive(Debug, Default)]
pub struct Contents {
    /// Every complete line, in order.
    pub entries: Vec<Entry>,
    /// The length of the complete lines, in bytes.
    pub complete_len: u64,
    /// Bytes of a last line cut short, if any.
    pub torn_bytes: u64,
}

#[derive(Serialize)]
struct LineOut<'a> {
    #[serde(flatten)]
    origin: &'a Origin,
    endpoint: &'a str,
    spans: &'a [Span],
}

#[derive(Deserialize)]
struct LineIn {
    #[serde(flatten)]
    origin: Origin,
    endpoint: Option<String>,
    spans: Vec<IdOnly>,
}

#[derive(Deserialize)]
struct IdOnly {
    span_id: u64,
}

/// The journal line for one batch that came in at `endpoint` (`v0.4`,
/// `v0.5`), newline included.
pub fn encode(origin: &Origin, endpoint: &str, spans: &[Span]) -> Vec<u8> {
    let mut line = serde_json::to_vec(&LineOut {
        origin,
        endpoint,
        spans,
    })
    .expect("spans encode as JSON");
    line.push(b'\n');
    line
}

/// Reads a journal; a missing file is an empty journal. A complete line
/// that does not parse is corruption and an error.
pub fn read(path: &Path) -> io::Result<Contents> {
    let data = match fs::read(path) {
        Ok(data) => data,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Contents::default()),
        Err(e) => return Err(e),
    };
    let mut contents = Contents::default();
    let mut start = 0;
    while let Some(end) = data[start..].iter().position(|&b| b == b'\n') {
        let line = &data[start..start + end];
        let parsed: LineIn = serde_json::from_slice(line).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: bad line at byte {start}: {e}", path.display()),
            )
        })?;
        contents.entries.push(Entry {
            origin: parsed.origin,
            endpoint: parsed.endpoint,
            span_ids: parsed.spans.into_iter().map(|s| s.span_id).collect(),
        });
        start += end + 1;
    }
    contents.complete_len = start as u64;
    contents.torn_bytes = (data.len() - start) as u64;
    Ok(contents)
}

/// The journal open for appending.
#[derive(Debug)]
pub struct Writer {
    file: File,
    len: u64,
}

impl Writer {
    /// Opens (or creates) the journal, cuts off a torn last line and
    /// returns what it held.
    pub fn open(path: &Path) -> io::Result<(Self, Contents)> {
        let contents = read(path)?;
        let existed = path.exists();
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        if contents.torn_bytes > 0 {
            file.set_len(contents.complete_len)?;
        }
        file.sync_all()?;
        if !existed {
            sync_parent(path)?;
        }
        let len = contents.complete_len;
        Ok((Self { file, len }, contents))
    }

    /// Appends one line and waits until it is on disk. On failure the file
    /// is cut back to where it was, so no half line stays behind.
    pub fn append(&mut self, line: &[u8]) -> io::Result<()> {
        let written = self
            .file
            .write_all(line)
            .and_then(|()| self.file.sync_data());
        match written {
            Ok(()) => {
                self.len += line.len() as u64;
                Ok(())
            }
            Err(e) => {
                let _ = self.file.set_len(self.len);
                Err(e)
            }
        }
    }
}

/// A new file's directory entry is durable once its directory is synced.
#[cfg(unix)]
fn sync_parent(path: &Path) -> io::Result<()> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => File::open(dir)?.sync_all(),
        _ => File::open(".")?.sync_all(),
    }
}

#[cfg(not(unix))]
fn sync_parent(_path: &Path) -> io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(span_id: u64) -> Span {
        Span {
            span_id,
            name: "x".into(),
            ..Span::default()
        }
    }

    #[test]
    fn a_torn_last_line_is_skipped_and_cut_off() {
        let dir = std::env::temp_dir().join(format!("journal-test-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("j.jsonl");
        let origin = Origin {
            pid: Some(1),
            lang: Some("python".into()),
            tracer_version: Some("4.16.0".into()),
        };
        let mut data = encode(&origin, "v0.5", &[span(7)]);
        // The journal's first form, then a line a kill cut short.
        data.extend_from_slice(b"{\"pid\":2,\"spans\":[{\"span_id\":8}]}\n");
        data.extend_from_slice(b"{\"pid\":1,\"spans\":[{\"span_");
        fs::write(&path, &data).unwrap();

        let contents = read(&path).unwrap();
        assert_eq!(contents.entries.len(), 2);
        assert_eq!(contents.entries[0].span_ids, [7]);
        assert_eq!(contents.entries[0].origin, origin);
        assert_eq!(contents.entries[0].endpoint.as_deref(), Some("v0.5"));
        assert_eq!(contents.entries[1].span_ids, [8]);
        assert_eq!(contents.entries[1].origin.lang, None);
        assert!(contents.torn_bytes > 0);

        let (mut writer, _) = Writer::open(&path).unwrap();
        writer
            .append(&encode(&Origin::default(), "v0.4", &[span(9)]))
            .unwrap();
        // Windows refuses to remove a directory holding an open file.
        drop(writer);
        let contents = read(&path).unwrap();
        assert_eq!(contents.entries.len(), 3);
        assert_eq!(contents.entries[2].span_ids, [9]);
        assert_eq!(contents.torn_bytes, 0);
        fs::remove_dir_all(&dir).unwrap();
    }
}
