//! pipehttp's integration tests, in one binary so that the crates they
//! link are built and linked once. Each module is one suite; TESTING.md
//! describes the hostile-input, robustness and fuzz-replay suites.

// The app `pipehttp serve` runs (it lives in the CLI crate); the suites
// serve it here through the library's public API.
#[allow(dead_code)]
#[path = "../../../pipehttp-cli/src/sample.rs"]
mod sample;

mod access;
mod axum_router;
mod client;
mod client_pool;
mod client_robustness;
mod config;
mod edges;
mod fuzz_regressions;
mod hostile;
mod server;
mod takeover;
mod tls;
mod windows;
