//! What each fuzz target checks, one function per target. The functions
//! live in `checks.rs`, which `crates/pipehttp/tests/it/fuzz_regressions.rs`
//! also includes, so the committed corpora and every crash kept under
//! `regressions/` are replayed by the ordinary test suite.

mod checks;

pub use checks::{config_json, config_toml, listen_address, request_target};
