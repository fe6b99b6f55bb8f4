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

# --- trace-agent example: Datadog's own tracers ------------------------------
# examples/trace-agent/tests/real_tracers.rs runs apps on ddtrace (PyPI) and
# dd-trace (npm), pinned beside the apps: ddtrace goes into a virtual
# environment, examples/trace-agent/python/.venv, and dd-trace into
# examples/trace-agent/node/node_modules (npm ci, from package-lock.json).
# Debian's Node.js and npm (dd-trace 5 needs Node 18 or later) and Python's
# venv are installed only where they are missing. With --if-missing nothing is
# touched while the pinned tracers load.
trace_agent_apt() {
    if [[ $(id -u) != 0 ]]; then
        echo "install-test-deps: $* missing; run as root (apt-get install needs it): sudo $0" >&2
        exit 1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}
trace_agent_tracers() {
    local example venv pinned installed
    example=$(cd "$(dirname "${BASH_SOURCE[0]}")/../examples/trace-agent" && pwd)
    venv=$example/python/.venv
    if [[ ${1:-} != --if-missing ]] || ! "$venv/bin/python" -c 'import ddtrace' 2>/dev/null; then
        if [[ ! -x $venv/bin/pip ]]; then
            rm -rf "$venv"
            if ! python3 -m venv "$venv" 2>/dev/null; then
                # Debian's python3 keeps venv (and ensurepip) in a package of its own.
                rm -rf "$venv"
                trace_agent_apt python3 python3-venv
                /usr/bin/python3 -m venv "$venv"
            fi
        fi
        "$venv/bin/pip" install -q --disable-pip-version-check -r "$example/python/requirements.txt"
    fi
    if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
        trace_agent_apt nodejs npm
    fi
    pinned=$(node -p "require('$example/node/package.json').dependencies['dd-trace']")
    installed=$(node -p "require('$example/node/node_modules/dd-trace/package.json').version" 2>/dev/null || true)
    if [[ ${1:-} != --if-missing || $installed != "$pinned" ]]; then
        npm ci --prefix "$example/node" --no-audit --no-fund --loglevel=error >/dev/null
    fi
}
trace_agent_tracers "${1:-}"
# --- end of the trace-agent block ---------------------------------------------

# Peers and tools of the Linux suite, then the Windows cross-build and Wine
# (see docs/windows-testing.md).
PACKAGES=(
    curl nginx nghttp2-client util-linux protobuf-compiler python3
    rustc-web cargo-web rust-web-src rust-web-clippy gcc-mingw-w64-x86-64 wine wine64
    # The curl differential suite (crates/pipehttp-cli/tests/it/curl/): its
    # server's br and zstd bodies, and certificates made as users make them.
    python3-brotli python3-zstandard openssl
)
# Configuration tests: `openssl` writes the .pfx files and encrypted PEM
# keys that appsettings certificates point at.
PACKAGES+=(openssl)
# Access tests (crates/pipehttp-cli/tests/it/access.rs): groupadd, useradd,
# userdel and groupdel make the test's users and groups; setpriv
# (util-linux, above) runs clients as them; python3 (above) is the squatter.
PACKAGES+=(passwd)
# One file or command per package above, to tell whether it is there.
PROBES=(
    /usr/bin/curl /usr/sbin/nginx /usr/bin/h2load /usr/bin/setpriv /usr/bin/protoc python3
    /usr/bin/rustc /usr/bin/cargo /usr/lib/rustlib/src/rust/library /usr/bin/clippy-driver
    /usr/bin/x86_64-w64-mingw32-gcc /usr/bin/wine /usr/lib/wine/wine64
    # The curl differential suite.
    /usr/lib/python3/dist-packages/brotli.py /usr/lib/python3/dist-packages/zstandard /usr/bin/openssl
)
# Configuration tests (see PACKAGES above).
PROBES+=(/usr/bin/openssl)

# --- Edge tests (TESTING.md, "Attacks and limits") ---------------------------
# Node's http client uploads past the body limit; Python's h2 (with its
# hyperframe and hpack) makes the HTTP/2 attacks. Debian's python3-h2 serves
# Debian's python3. When the python3 on PATH is another one (pyenv, a venv)
# that has pip, h2 comes from PyPI for it, here, before anything else: the
# probes below only look at Debian's files.
PACKAGES+=(nodejs python3-h2)
PROBES+=(/usr/bin/node /usr/lib/python3/dist-packages/h2)
if command -v python3 >/dev/null && ! python3 -c 'import h2, hyperframe, hpack' 2>/dev/null \
    && python3 -m pip --version >/dev/null 2>&1; then
    echo "install-test-deps: installing Python's h2 for $(command -v python3)" >&2
    python3 -m pip install --quiet h2 2>/dev/null \
        || python3 -m pip install --quiet --break-system-packages h2 \
        || echo "install-test-deps: pip could not install h2; Debian's python3-h2 is next" >&2
fi
# --- End of the edge tests' block --------------------------------------------
PROBES+=(/usr/sbin/useradd)

# --- pipehttp proxy and ls ---------------------------------------------------
# Peers of the proxy suites: Docker (the CLI drives a dockerd that the tests
# start themselves, as root, in a temp dir), a busybox image made offline
# from busybox-static, and WebSocket client and server from Python's
# websockets library.
PACKAGES+=(docker.io busybox-static python3-websockets)
PROBES+=(/usr/sbin/dockerd /bin/busybox /usr/lib/python3/dist-packages/websockets)
# --- end of pipehttp proxy and ls ---------------------------------------------

# --- The allocator -----------------------------------------------------------
# The pipehttp binary links jemalloc on Linux (glibc); tikv-jemalloc-sys
# builds it from source with its configure script, which needs make and a C
# compiler.
PACKAGES+=(make gcc)
PROBES+=(/usr/bin/make /usr/bin/gcc)
# --- end of the allocator -----------------------------------------------------

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
