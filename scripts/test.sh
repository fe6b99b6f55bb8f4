#!/usr/bin/env bash
# Runs every test of pipehttp: format and lint checks, the Linux suite, the
# Windows suite cross-compiled and run under Wine, and a short smoke run of
# each fuzzer. On a fresh Debian machine it first installs the packages the
# tests need (as root).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { echo "==> $*" >&2; }

scripts/install-test-deps.sh --if-missing

step "cargo fmt --check"
cargo fmt --all -- --check
step "cargo clippy (Linux)"
cargo clippy --workspace --all-targets --all-features -- -D warnings
step "cargo test (Linux)"
cargo test --workspace --all-features
step "Windows tests under Wine"
scripts/test-windows.sh
step "fuzz smoke: 30 s per target"
scripts/fuzz.sh 30
