//! The fuzz targets' checks (fuzz/src/checks.rs, included here as is) run
//! on every committed input: the seed corpora in `fuzz/corpus/TARGET/` and
//! the crashes kept in `fuzz/regressions/TARGET/`. So the ordinary test
//! suite keeps the seeds meaningful and every crash the fuzzers ever found
//! fixed, without cargo-fuzz or a nightly compiler.
//!
//! To keep a crash: copy `fuzz/artifacts/TARGET/crash-…` into
//! `fuzz/regressions/TARGET/` (any file name).

use std::path::{Path, PathBuf};

#[path = "../../../../fuzz/src/checks.rs"]
mod checks;

type Check = fn(&[u8]);

const TARGETS: [(&str, Check); 4] = [
    ("listen_address", checks::listen_address),
    ("request_target", checks::request_target),
    ("config_toml", checks::config_toml),
    ("config_json", checks::config_json),
];

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

/// Every file under `fuzz/KIND/TARGET/`, sorted; none if the folder is absent.
fn inputs(kind: &str, target: &str) -> Vec<PathBuf> {
    let Ok(dir) = std::fs::read_dir(fuzz_dir().join(kind).join(target)) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = dir
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.is_file() && p.file_name().is_some_and(|n| n != ".gitkeep"))
        .collect();
    files.sort();
    files
}

/// Runs `check` on every input, collecting the ones that panic.
fn replay(kind: &str, target: &str, check: Check) -> (usize, Vec<String>) {
    let files = inputs(kind, target);
    let mut failures = Vec::new();
    for path in &files {
        let data = std::fs::read(path).expect("readable");
        if let Err(panic) = std::panic::catch_unwind(|| check(&data)) {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_default();
            failures.push(format!("{}: {message}", path.display()));
        }
    }
    (files.len(), failures)
}

#[test]
fn seed_corpora_pass_the_fuzz_checks() {
    for (target, check) in TARGETS {
        let (count, failures) = replay("corpus", target, check);
        assert!(
            count >= 4,
            "fuzz/corpus/{target} holds {count} seeds; it should hold a few"
        );
        assert!(
            failures.is_empty(),
            "{target} seeds fail:\n{}",
            failures.join("\n")
        );
        println!("{target}: {count} seeds pass");
    }
}

#[test]
fn kept_fuzz_crashes_stay_fixed() {
    for (target, check) in TARGETS {
        let (count, failures) = replay("regressions", target, check);
        assert!(
            failures.is_empty(),
            "{target} regressions fail again:\n{}",
            failures.join("\n")
        );
        println!("{target}: {count} kept crash inputs pass");
    }
}

#[test]
fn the_checks_catch_what_they_should() {
    // The checks are not vacuous: inputs that parse reach the round-trip
    // assertions. (A check that returned early for everything would pass
    // every corpus.)
    checks::listen_address(b"http://pipe:/my-test-pipe");
    checks::request_target(b"http://unix:/run/app.sock:/v1/items?x=1");
    checks::config_toml(b"[endpoints.a]\nurl = \"http://pipe:/a\"\n");
    checks::config_json(br#"{ "Kestrel": { "Endpoints": { "A": { "Url": "http://pipe:/a" } } } }"#);
    assert!(
        pipehttp::Config::from_toml_str("[endpoints.a]\nurl = \"http://pipe:/a\"\n", "t.toml")
            .is_ok()
    );
    // Not UTF-8: skipped, not a panic.
    for check in TARGETS.map(|t| t.1) {
        check(b"\xff\xfe\x00");
    }
}
