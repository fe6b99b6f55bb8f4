//! Files a test writes for the program under test to read: a config file,
//! a certificate, a script for an interpreter.

use std::path::{Path, PathBuf};

use tempfile::{TempDir, tempdir};

/// Writes `contents` to the file `name` in `dir` and returns its path;
/// a failure to write fails the test, naming the file.
pub fn write_file(dir: &Path, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, contents)
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    path
}

/// A new temp dir holding one file, `name` with `contents`: the dir (the
/// file goes with it when it drops) and the file's path.
pub fn temp_file(name: &str, contents: impl AsRef<[u8]>) -> (TempDir, PathBuf) {
    let dir = tempdir().expect("a temp dir");
    let path = write_file(dir.path(), name, contents);
    (dir, path)
}
