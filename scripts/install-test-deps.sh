#!/usr/bin/env bash
# Installs the Debian packages pipehttp's tests talk to or build with.
#
# Usage: scripts/install-test-deps.sh [--if-missing]
#
#   --if-missing  install only when one of the tools is missing (so a run on
#                 a prepared machine touches nothing).
#
# The Rust toolchain itself is not installed here: the tests need cargo
# and rustc already on PATH.
set -euo pipefail

# Peers and tools of the Linux suite, then the Windows cross-build and Wine
# (see docs/windows-testing.md).
PACKAGES=(
    curl nginx nghttp2-client util-linux protobuf-compiler python3
    rustc-web cargo-web rust-web-src rust-web-clippy gcc-mingw-w64-x86-64 wine wine64
)
# One file or command per package above, to tell whether it is there.
PROBES=(
    /usr/bin/curl /usr/sbin/nginx /usr/bin/h2load /usr/bin/setpriv /usr/bin/protoc python3
    /usr/bin/rustc /usr/bin/cargo /usr/lib/rustlib/src/rust/library /usr/bin/clippy-driver
    /usr/bin/x86_64-w64-mingw32-gcc /usr/bin/wine /usr/lib/wine/wine64
)

# --- pipehttp proxy and ls ---------------------------------------------------
# Peers of the proxy suites: Docker (the CLI drives a dockerd that the tests
# start themselves, as root, in a temp dir), a busybox image made offline
# from busybox-static, and WebSocket client and server from Python's
# websockets library.
PACKAGES+=(docker.io busybox-static python3-websockets)
PROBES+=(/usr/sbin/dockerd /bin/busybox /usr/lib/python3/dist-packages/websockets)
# --- end of pipehttp proxy and ls ---------------------------------------------

present() {
    local probe=$1
    if [[ $probe == /* ]]; then [[ -e $probe ]]; else command -v "$probe" >/dev/null; fi
}

if [[ ${1:-} == --if-missing ]]; then
    missing=()
    for probe in "${PROBES[@]}"; do
        present "$probe" || missing+=("$probe")
    done
    [[ ${#missing[@]} -eq 0 ]] && exit 0
    echo "install-test-deps: missing ${missing[*]}; installing the test packages" >&2
fi

if [[ $(id -u) != 0 ]]; then
    echo "install-test-deps: run as root (apt-get install needs it): sudo $0" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}" >/dev/null
