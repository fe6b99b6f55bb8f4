#!/usr/bin/env bash
# Runs pipehttp's cargo-fuzz targets (fuzz/), each for a fixed time, one
# after the other, and exits non-zero if any of them crashed.
#
#   scripts/fuzz.sh                      # every target, 30 s each
#   scripts/fuzz.sh 300                  # every target, 5 minutes each
#   scripts/fuzz.sh 60 request_target    # one target
#   FUZZ_SECONDS=10 scripts/fuzz.sh      # the time from the environment
#
# A crash leaves its input in fuzz/artifacts/TARGET/. To keep it as a
# regression test, copy it into fuzz/regressions/TARGET/: the ordinary test
# suite (crates/pipehttp/tests/it/fuzz_regressions.rs) replays every file
# there, and the committed seeds in fuzz/corpus/TARGET/, through the same
# checks. New inputs the fuzzer finds go to fuzz/scratch/TARGET/ (not
# committed), so the seeds stay as they are.
#
# cargo-fuzz is installed from crates.io when missing. It passes nightly
# (-Z) flags to rustc; on a stable toolchain this script sets
# RUSTC_BOOTSTRAP=1, which lets stable rustc accept them.
set -euo pipefail

seconds="${1:-${FUZZ_SECONDS:-30}}"
shift || true
all_targets=(listen_address request_target config_toml config_json)
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=("${all_targets[@]}")
fi
case "$seconds" in
'' | *[!0-9]*)
    echo "fuzz.sh: the time must be a whole number of seconds, not '$seconds'" >&2
    exit 2
    ;;
esac

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root/fuzz"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz.sh: installing cargo-fuzz from crates.io"
    cargo install cargo-fuzz --locked
fi
if ! rustc --version | grep -q nightly; then
    export RUSTC_BOOTSTRAP=1
fi

dict_for() {
    case "$1" in
    listen_address | request_target) echo dict/address.dict ;;
    config_toml) echo dict/toml.dict ;;
    config_json) echo dict/json.dict ;;
    esac
}

# One build for every target (the profile is cargo-fuzz's default: release
# with debug assertions and overflow checks, AddressSanitizer on).
build_start=$SECONDS
cargo fuzz build
echo "fuzz.sh: built the fuzz targets in $((SECONDS - build_start)) s"

failed=()
for target in "${targets[@]}"; do
    if [ ! -f "fuzz_targets/$target.rs" ]; then
        echo "fuzz.sh: no fuzz target '$target' (have: ${all_targets[*]})" >&2
        exit 2
    fi
    mkdir -p "scratch/$target" "corpus/$target"
    dict="$(dict_for "$target")"
    echo "fuzz.sh: running $target for $seconds s"
    run_start=$SECONDS
    # The scratch corpus comes first: libFuzzer writes new inputs to the
    # first directory only. -timeout: one input taking 10 s is a hang.
    if cargo fuzz run "$target" "scratch/$target" "corpus/$target" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
        ${dict:+-dict="$dict"} -print_final_stats=1; then
        echo "fuzz.sh: $target: no crash in $((SECONDS - run_start)) s"
    else
        echo "fuzz.sh: $target CRASHED; the input is in fuzz/artifacts/$target/" >&2
        failed+=("$target")
    fi
done

if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz.sh: crashed: ${failed[*]}" >&2
    exit 1
fi
echo "fuzz.sh: ${#targets[@]} target(s), no crash"
