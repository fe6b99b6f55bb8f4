//! The `pipehttp` command's integration tests, in one binary so that the
//! crates they link are built and linked once. Each module is one suite;
//! each starts the binary cargo built for the tests
//! (`CARGO_BIN_EXE_pipehttp`) through testkit's harness.

mod access;
mod activation;
mod bench;
mod cli;
mod curl_diff;
mod curl_habits;
mod docker;
mod edges;
mod load;
mod ls;
mod proxy;
mod proxy_peers;
mod serve;
mod server_process;
mod takeover;
mod tls;
mod websocket;
