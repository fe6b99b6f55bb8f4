#!/usr/bin/env bash
# Cross-compile the workspace for x86_64-pc-windows-gnu, run clippy for that
# target with -D warnings, and run every test binary under Wine.
#
# Usage: scripts/test-windows.sh [--install] [--no-clippy] [-- TEST_ARGS...]
#
#   --install    apt-get install the Debian packages this needs (as root).
#                Without it the script installs nothing.
#   --no-clippy  skip the clippy step (quicker local loops; CI keeps it).
#   -- ARGS      passed to every test binary, e.g. `-- pipe_busy` (a filter)
#                or `-- --test-threads=1 --nocapture`.
#
# Environment knobs:
#   WINEPREFIX             Wine prefix to use (default ~/.wine-pipehttp).
#   WINE_TEST_TIMEOUT      seconds one test binary may run (default 600).
#   WINDOWS_TARGET_DIR     cargo target dir (default <repo>/target-windows).
# Two runs at once need different WINEPREFIXes: each kills its prefix's
# wineserver (and every Wine process in it) when it exits.
#
# Once tests have run, the last line printed is `N passed, N failed`. Exit
# status is non-zero if the build, clippy or any test failed, or if no test
# ran at all.
# docs/windows-testing.md explains the recipe and what Wine does not emulate.
set -euo pipefail

TARGET=x86_64-pc-windows-gnu
# Debian packages: its rustc can build std from source (rust-web-src) for a
# target rustup has no prebuilt std for here; clippy must come from the same
# toolchain; mingw links; wine64 runs the .exe; `wine` has the launcher.
PACKAGES=(rustc-web cargo-web rust-web-src rust-web-clippy gcc-mingw-w64-x86-64 wine wine64)

die() { echo "test-windows: error: $*" >&2; exit 1; }
step() { echo "==> $*" >&2; }

install=0
clippy=1
test_args=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --install) install=1 ;;
        --no-clippy) clippy=0 ;;
        --) shift; test_args=("$@"); break ;;
        -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
        *) die "unknown argument '$1' (see --help)" ;;
    esac
    shift
done

# Work from the repository root whatever the caller's cwd.
repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo_root"

if [[ $install == 1 ]]; then
    step "installing ${PACKAGES[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${PACKAGES[@]}" >/dev/null
fi

# --- Tools --------------------------------------------------------------
# Absolute paths on purpose: PATH has rustup's ~/.cargo/bin first, and
# rustup's toolchain has no Windows std and cannot fetch one here. Mixing
# rustup's cargo or cargo-clippy with Debian's rustc works by accident at
# best, so every tool below is Debian's.
CARGO_BIN=/usr/bin/cargo
RUSTC_BIN=/usr/bin/rustc
CARGO_CLIPPY_BIN=/usr/bin/cargo-clippy
CLIPPY_DRIVER_BIN=/usr/bin/clippy-driver
MINGW_GCC=x86_64-w64-mingw32-gcc
STD_SRC=/usr/lib/rustlib/src/rust/library/std

need() { # need PATH-or-command PACKAGE
    if [[ $1 == /* ]]; then [[ -x $1 || -d $1 ]] && return 0
    else command -v "$1" >/dev/null 2>&1 && return 0; fi
    die "missing $1 (Debian package $2); rerun with: scripts/test-windows.sh --install"
}
need "$CARGO_BIN" cargo-web
need "$RUSTC_BIN" rustc-web
need "$STD_SRC" rust-web-src
need "$MINGW_GCC" gcc-mingw-w64-x86-64
need wine wine
need wineboot wine
need wineserver wine
need timeout coreutils
if [[ $clippy == 1 ]]; then
    need "$CARGO_CLIPPY_BIN" rust-web-clippy
    need "$CLIPPY_DRIVER_BIN" rust-web-clippy
fi

# --- Build environment --------------------------------------------------
export RUSTC=$RUSTC_BIN
export RUSTDOC=/usr/bin/rustdoc
export CARGO=$CARGO_BIN             # cargo-clippy runs $CARGO
export RUSTC_BOOTSTRAP=1            # -Zbuild-std on a stable compiler
# Keep the native build untouched: own target dir, linker only via env.
export CARGO_TARGET_DIR=${WINDOWS_TARGET_DIR:-$repo_root/target-windows}
export CARGO_TARGET_X86_64_PC_WINDOWS_GNU_LINKER=$MINGW_GCC
# Wrappers or a toolchain pin from the caller would bypass Debian's rustc.
unset RUSTC_WRAPPER RUSTC_WORKSPACE_WRAPPER RUSTUP_TOOLCHAIN CARGO_BUILD_TARGET

# std is compiled from source for the target (once; cached in target-windows).
# --locked: this script must never rewrite Cargo.lock (a native `cargo build`
# refreshes it after a dependency change; then rerun this).
# shellcheck disable=SC2054 # the comma belongs to the flag's value
cargo_target_args=(-Zbuild-std=std,panic_abort --target "$TARGET" --workspace --all-features --locked)
out_dir=$CARGO_TARGET_DIR/$TARGET/debug
mkdir -p "$CARGO_TARGET_DIR"

# --- Wine prefix ----------------------------------------------------------
export WINEPREFIX=${WINEPREFIX:-$HOME/.wine-pipehttp}
export WINEARCH=win64
export WINEDEBUG=${WINEDEBUG:--all}   # Wine's fixme spam would drown test output
# No mono/gecko: Debian ships neither and wineboot would try to fetch them.
export WINEDLLOVERRIDES="mscoree=;mshtml="
# Console programs only: make sure Wine never looks for an X server.
unset DISPLAY WAYLAND_DISPLAY

# Creating a prefix takes ~10 s, so do it in the background during the build.
# wineserver -p keeps one server (and Wine's services) up for all test
# binaries instead of restarting it for each; killed on exit. Both only touch
# $WINEPREFIX.
step "preparing Wine prefix $WINEPREFIX (in background)"
wineboot_log=$CARGO_TARGET_DIR/wineboot.log
mkdir -p "$WINEPREFIX"   # wineserver refuses to start without it
# (wineserver -p fails if a server for this prefix already runs: that's fine.)
( wineserver -p || true; wineboot -i ) >"$wineboot_log" 2>&1 &
wineboot_pid=$!
# shellcheck disable=SC2317 # called through the trap
cleanup() { wineserver -k >/dev/null 2>&1 || true; }
trap cleanup EXIT
trap 'exit 130' INT    # so that Ctrl-C or a CI timeout also runs cleanup
trap 'exit 143' TERM

# --- Stand-in bcryptprimitives.dll -------------------------------------------
# Rust's std imports ProcessPrng from bcryptprimitives.dll; Wine 8 has none.
step "building bcryptprimitives.dll"
dll=$CARGO_TARGET_DIR/bcryptprimitives.dll
"$MINGW_GCC" -shared -O2 -s -Wall -Wextra -Werror \
    -o "$dll" scripts/windows/bcryptprimitives.c -ladvapi32

# --- Build ------------------------------------------------------------------
step "building workspace and test binaries for $TARGET"
build_start=$SECONDS
json=$CARGO_TARGET_DIR/test-build.json
# One cargo invocation builds the binaries (tests spawn the CLI through
# CARGO_BIN_EXE_pipehttp), examples and every test harness with the same
# feature set. (`cargo test --no-run` plus `cargo build --bins` would build
# the dependencies twice: without the tests selected, dev-dependency features
# are not unified in, so the second build differs.)
# json-render-diagnostics: JSON artifacts on stdout, human errors on stderr.
"$CARGO_BIN" build "${cargo_target_args[@]}" --bins --examples --tests \
    --message-format=json-render-diagnostics >"$json"
echo "build took $((SECONDS - build_start)) s" >&2

# Test executables: `executable` of compiler-artifact messages built with the
# test profile flag. (The *target* object also has a "test" key, so match it
# inside "profile":{...} only, which has no nested objects.)
mapfile -t test_exes < <(grep '"reason":"compiler-artifact"' "$json" \
    | grep -E '"profile":\{[^}]*"test":true' \
    | sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | sort -u)
[[ ${#test_exes[@]} -gt 0 ]] || die "cargo built no test executables"

# Windows looks for DLLs beside the .exe first: put the stand-in in every
# directory that holds an executable a test may start.
for dir in "$out_dir" "$out_dir/deps" "$out_dir/examples"; do
    if [[ -d $dir ]]; then cp "$dll" "$dir/"; fi
done
for exe in "${test_exes[@]}"; do cp -u "$dll" "$(dirname "$exe")/"; done

# --- Clippy -------------------------------------------------------------------
clippy_failed=0
if [[ $clippy == 1 ]]; then
    step "clippy for $TARGET (-D warnings)"
    # cargo-clippy runs "$CARGO check" with clippy-driver as the workspace
    # wrapper; calling it directly avoids `cargo clippy` finding rustup's
    # cargo-clippy proxy in ~/.cargo/bin.
    if ! "$CARGO_CLIPPY_BIN" clippy "${cargo_target_args[@]}" --all-targets -- -D warnings; then
        clippy_failed=1
        echo "test-windows: clippy failed (running the tests anyway)" >&2
    fi
fi

# --- Run tests under Wine -------------------------------------------------------
step "waiting for Wine prefix"
if ! wait "$wineboot_pid"; then
    cat "$wineboot_log" >&2
    die "wineboot failed in $WINEPREFIX"
fi

timeout_s=${WINE_TEST_TIMEOUT:-600}
passed=0
failed=0
bad_binaries=()
log_dir=$CARGO_TARGET_DIR/wine-logs
rm -rf "$log_dir" && mkdir -p "$log_dir"
# Runs one test executable under Wine, its output streamed and kept in $log;
# sets rc.
run_under_wine() {
    : >"$log"   # create it before tail opens it (the redirect below is async)
    rc=0
    # Output goes to a file that `tail` streams, not through a pipe: a child
    # process a test leaves running would hold a pipe open and hang us.
    timeout --kill-after=10 "$timeout_s" wine "$exe" "${test_args[@]}" \
        </dev/null >>"$log" 2>&1 &
    test_pid=$!
    tail -n +1 -f --pid="$test_pid" "$log" &
    tail_pid=$!
    wait "$test_pid" || rc=$?
    wait "$tail_pid" || true
}

for exe in "${test_exes[@]}"; do
    step "wine ${exe#"$repo_root"/} ${test_args[*]}"
    log=$log_dir/$(basename "$exe" .exe).log
    run_under_wine
    # A test binary prints "running N tests" before anything else; one that
    # failed with no output at all never started (Wine could not load it,
    # which happens now and then): it gets one more start. A binary that
    # ran tests is never run again, so no failing test is retried.
    if [[ $rc -ne 0 && ! -s $log ]]; then
        echo "test-windows: $(basename "$exe") exited $rc without any output; starting it once more" >&2
        run_under_wine
    fi
    # Sum every `test result: ok. 3 passed; 1 failed; ...` (also FAILED.).
    read -r p f < <(tr -d '\r' <"$log" | awk '
        /^test result: / { for (i = 1; i <= NF; i++) {
            if ($(i+1) ~ /^passed;?$/) p += $i
            if ($(i+1) ~ /^failed;?$/) f += $i } }
        END { print p + 0, f + 0 }')
    passed=$((passed + p))
    failed=$((failed + f))
    if [[ $rc -ne 0 ]]; then
        bad_binaries+=("$(basename "$exe") (exit $rc)")
        # A crash, a timeout (124/137) or a failed start leaves no failed count.
        if [[ $f -eq 0 ]]; then failed=$((failed + 1)); fi
    fi
done

status=0
if [[ ${#bad_binaries[@]} -gt 0 ]]; then
    echo "test-windows: failing test binaries: ${bad_binaries[*]}" >&2
    status=1
fi
if [[ $clippy_failed == 1 ]]; then
    echo "test-windows: clippy reported errors (see above)" >&2
    status=1
fi
if [[ $((passed + failed)) -eq 0 ]]; then
    echo "test-windows: no test ran" >&2
    status=1
fi
echo "$passed passed, $failed failed"
exit "$status"
