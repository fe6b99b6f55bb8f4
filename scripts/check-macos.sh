#!/usr/bin/env bash
# Type-checks the library for macOS (Intel and Apple silicon) with clippy
# and -D warnings, on this Linux machine: Debian's rustc builds std for the
# target from source (rust-web-src), as scripts/test-windows.sh does for
# Windows. Nothing is linked or run, so no Apple SDK is needed.
#
# The `tls` feature is left out: ring compiles C and assembly for its
# target, which needs Apple's toolchain. Every cfg(unix) path of the
# library (pipes, sockets, peer credentials, takeover) is checked.
#
# Usage: scripts/check-macos.sh [--all]
#   (default: Intel only; --all adds Apple silicon, whose cfgs are the same)
set -euo pipefail
targets=(x86_64-apple-darwin)
[[ ${1:-} == --all ]] && targets+=(aarch64-apple-darwin)
cd "$(dirname "${BASH_SOURCE[0]}")/.."

for tool in /usr/bin/cargo /usr/bin/rustc /usr/bin/cargo-clippy /usr/lib/rustlib/src/rust/library/std; do
    [[ -e $tool ]] || { echo "check-macos: missing $tool (Debian packages cargo-web rustc-web rust-web-src rust-web-clippy)" >&2; exit 1; }
done
export RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc CARGO=/usr/bin/cargo
export RUSTC_BOOTSTRAP=1            # -Zbuild-std on a stable compiler
export CARGO_TARGET_DIR=${MACOS_TARGET_DIR:-$PWD/target-macos}
unset RUSTC_WRAPPER RUSTC_WORKSPACE_WRAPPER RUSTUP_TOOLCHAIN CARGO_BUILD_TARGET

for target in "${targets[@]}"; do
    echo "==> clippy for $target (library, features config json axum)" >&2
    # shellcheck disable=SC2054 # the comma belongs to the flag's value
    /usr/bin/cargo-clippy clippy -Zbuild-std=std,panic_abort --target "$target" \
        -p pipehttp --no-default-features --features config,json,axum --locked \
        -- -D warnings
done
