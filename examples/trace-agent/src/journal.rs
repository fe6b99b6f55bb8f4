//! The agent's journal: one JSON line per acknowledged batch,
//! `{"pid":1234,"spans":[{...},...]}`, appended and fsync'd before the
//! batch is acknowledged.
//!
//! A line without its newline is a write that a kill cut short; it was
//! never acknowledged, so reading skips it and reopening cuts it off.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

/// One batch as the journal holds it, reduced to what the checks need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The process that sent it, where the OS told the agent.
    pub pid: Option<u32>,
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
    pid: Option<u32>,
    spans: &'a [serde_json::Value],
}

#[derive(Deserialize)]
struct LineIn {
    pid: Option<u32>,
    spans: Vec<IdOnly>,
}

#[derive(Deserialize)]
struct IdOnly {
    span_id: u64,
}

/// The journal line for one batch, newline included.
pub fn encode(pid: Option<u32>, spans: &[serde_json::Value]) -> Vec<u8> {
    let mut line = serde_json::to_vec(&LineOut { pid, spans }).expect("JSON values encode");
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
            pid: parsed.pid,
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

    #[test]
    fn a_torn_last_line_is_skipped_and_cut_off() {
        let dir = std::env::temp_dir().join(format!("journal-test-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("j.jsonl");
        let span = serde_json::json!({"span_id": 7, "name": "x"});
        let mut data = encode(Some(1), std::slice::from_ref(&span));
        data.extend_from_slice(b"{\"pid\":1,\"spans\":[{\"span_");
        fs::write(&path, &data).unwrap();

        let contents = read(&path).unwrap();
        assert_eq!(contents.entries.len(), 1);
        assert_eq!(contents.entries[0].span_ids, [7]);
        assert!(contents.torn_bytes > 0);

        let (mut writer, _) = Writer::open(&path).unwrap();
        writer.append(&encode(None, &[span])).unwrap();
        // Windows refuses to remove a directory holding an open file.
        drop(writer);
        let contents = read(&path).unwrap();
        assert_eq!(contents.entries.len(), 2);
        assert_eq!(contents.torn_bytes, 0);
        fs::remove_dir_all(&dir).unwrap();
    }
}
