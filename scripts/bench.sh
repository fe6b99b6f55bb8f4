#!/usr/bin/env bash
# Measures pipehttp on this machine, in one run, and writes BENCHMARKS.md:
# the machine's floor (raw Unix-socket ping-pong and stream), a bare
# tokio + hyper baseline, pipehttp's sample server over a pipe and over TCP,
# Debian's nginx, HTTP/2, big transfers and memory. Every figure is the
# median of several rounds; every throughput figure is taken with two load
# generators (pipehttp bench and oha) so each ruler checks the other.
#
# Usage: scripts/bench.sh [--quick] [--rounds N] [--seconds S] [--pin]
#                         [--no-install] [--output FILE]
#
#   --quick       1 round of short runs (a smoke test of the whole script)
#   --rounds N    rounds per figure (default 3); the median is reported
#   --seconds S   length of one throughput run (default 4)
#   --pin         pin servers to core 0 and load generators to core 1
#                 (default: no pinning; see BENCHMARKS.md for why)
#   --no-install  do not apt-get/cargo install anything
#   --output FILE where to write the report (default BENCHMARKS.md)
#
# Needs: a Rust toolchain. Installs (as root, Debian): nginx, nghttp2-client
# (h2load), jq, and oha from crates.io (cargo install oha --locked).
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo_root"

rounds=3
seconds=4
quick=0
pin=0
install=1
output=BENCHMARKS.md
while [[ $# -gt 0 ]]; do
    case "$1" in
        --quick) quick=1; rounds=1; seconds=1 ;;
        --rounds) rounds=$2; shift ;;
        --seconds) seconds=$2; shift ;;
        --pin) pin=1 ;;
        --no-install) install=0 ;;
        --output) output=$2; shift ;;
        -h|--help) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "bench.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
    shift
done

step() { echo "==> $*" >&2; }
die() { echo "bench.sh: error: $*" >&2; exit 1; }

# --- Tools ------------------------------------------------------------------
if [[ $install == 1 ]]; then
    missing=()
    command -v nginx >/dev/null 2>&1 || [[ -x /usr/sbin/nginx ]] || missing+=(nginx)
    command -v h2load >/dev/null 2>&1 || missing+=(nghttp2-client)
    command -v jq >/dev/null 2>&1 || missing+=(jq)
    if [[ ${#missing[@]} -gt 0 ]]; then
        step "apt-get install ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
    if ! command -v oha >/dev/null 2>&1 && [[ ! -x $HOME/.cargo/bin/oha ]]; then
        step "cargo install oha --locked (the independent load generator; a few minutes, once)"
        cargo install oha --locked >&2 || echo "bench.sh: oha did not install; its column stays empty" >&2
    fi
fi
export PATH=$PATH:$HOME/.cargo/bin:/usr/sbin
command -v jq >/dev/null 2>&1 || die "needs jq (apt-get install jq), or run without --no-install"
NGINX=$(command -v nginx || true)
H2LOAD=$(command -v h2load || true)
OHA=$(command -v oha || true)

step "cargo build --release (pipehttp, the bench suite)"
cargo build --release --locked -p pipehttp-cli -p pipehttp-bench >&2
bin=${CARGO_TARGET_DIR:-$repo_root/target}/release
PIPEHTTP=$bin/pipehttp

# --- Scratch space, servers and cleanup ---------------------------------------
work=$(mktemp -d /tmp/pipehttp-bench.XXXXXX)
export TMPDIR=$work    # pipe NAME lives at $work/CoreFxPipe_NAME
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
# 10,000 idle connections need 10,000 descriptors in the server.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

server_cpu=()
load_cpu=()
if [[ $pin == 1 ]]; then
    server_cpu=(taskset -c 0)
    load_cpu=(taskset -c 1)
fi

# start NAME READY_REGEX CMD...: starts a server in the background, waits
# for READY_REGEX in its output, sets $server_pid.
start() {
    local name=$1 ready=$2
    shift 2
    local log=$work/$name.log
    "${server_cpu[@]}" "$@" >"$log" 2>&1 &
    server_pid=$!
    pids+=("$server_pid")
    for _ in $(seq 1 300); do
        grep -qE "$ready" "$log" 2>/dev/null && return 0
        kill -0 "$server_pid" 2>/dev/null || { cat "$log" >&2; die "$name exited"; }
        sleep 0.05
    done
    cat "$log" >&2
    die "$name never printed /$ready/"
}
stop() {
    kill "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

# --- Recording and medians -------------------------------------------------------
results=$work/results.tsv
: >"$results"
record() { printf '%s\t%s\n' "$1" "$2" >>"$results"; }    # record KEY VALUE
median() {    # median KEY -> the median of every value recorded for KEY, or empty
    awk -F'\t' -v k="$1" '$1 == k { print $2 }' "$results" | sort -g | awk '
        { v[NR] = $1 }
        END { if (NR == 0) exit; if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
fmt() {    # fmt VALUE DECIMALS -> VALUE rounded, or "n/a"
    [[ -n $1 ]] && LC_ALL=C printf "%.${2}f" "$1" || echo "n/a"
}
ratio() {    # ratio A B -> A/B to 2 decimals, or "n/a"
    [[ -n $1 && -n $2 ]] && awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0) print "n/a"; else printf "%.2f", a / b }' || echo "n/a"
}
verdict() {    # verdict VALUE OP TARGET -> met / NOT met
    [[ -n $1 && $1 != n/a ]] || { echo "n/a"; return; }
    awk -v v="$1" -v t="$3" -v op="$2" 'BEGIN { ok = (op == ">=") ? (v >= t) : (v <= t); print ok ? "met" : "**not met**" }'
}

# --- The two rulers ------------------------------------------------------------------
# CPU time (user + system) a process has used so far, in µs.
cpu_us() {
    awk -v hz="$(getconf CLK_TCK)" '{ print ($14 + $15) * 1e6 / hz }' "/proc/$1/stat" 2>/dev/null || echo 0
}

# pb KEY TARGET ARGS...: pipehttp bench; records KEY.rps, KEY.p50 (µs), KEY.bps,
# and with CPU_OF=PID, KEY.cpu: that process's CPU µs per request.
pb() {
    local key=$1 target=$2
    shift 2
    local out cpu0=0
    [[ -z ${CPU_OF:-} ]] || cpu0=$(cpu_us "$CPU_OF")
    out=$("${load_cpu[@]}" "$PIPEHTTP" bench "$target" --output-format json --no-progress "$@") || {
        echo "bench.sh: pipehttp bench $target $* failed: $out" >&2
        return 0
    }
    local errors
    errors=$(jq '[.errors[]] | add // 0' <<<"$out")
    [[ $errors == 0 ]] || echo "bench.sh: $key: $errors errors: $(jq -c '.errors, .first_error' <<<"$out")" >&2
    record "$key.rps" "$(jq '.requests_per_s' <<<"$out")"
    record "$key.p50" "$(jq '.latency_us.p50' <<<"$out")"
    record "$key.p99" "$(jq '.latency_us.p99' <<<"$out")"
    record "$key.bps" "$(jq '.bytes_per_s' <<<"$out")"
    if [[ -n ${CPU_OF:-} ]]; then
        local cpu1 n
        cpu1=$(cpu_us "$CPU_OF")
        n=$(jq '.responses' <<<"$out")
        record "$key.cpu" "$(awk -v a="$cpu0" -v b="$cpu1" -v n="$n" 'BEGIN { if (n > 0) print (b - a) / n }')"
    fi
}

# oh KEY SOCKET|- URL ARGS...: oha (over SOCKET unless "-"); records KEY.rps and KEY.p50.
oh() {
    [[ -n $OHA ]] || return 0
    local key=$1 socket=$2 url=$3
    shift 3
    local sock=()
    [[ $socket == - ]] || sock=(--unix-socket "$socket")
    local out
    out=$("${load_cpu[@]}" "$OHA" --no-tui --output-format json "${sock[@]}" "$@" "$url" 2>/dev/null) || {
        echo "bench.sh: oha $* $url failed" >&2
        return 0
    }
    record "$key.rps" "$(jq '.summary.requestsPerSec' <<<"$out")"
    record "$key.p50" "$(jq '.latencyPercentiles.p50 * 1e6' <<<"$out")"
    record "$key.bps" "$(jq '.summary.sizePerSec // 0' <<<"$out")"
}

# h2 KEY SOCKET ARGS...: h2load over a Unix socket; records KEY.rps.
h2() {
    [[ -n $H2LOAD ]] || return 0
    local key=$1 socket=$2
    shift 2
    local out
    out=$("${load_cpu[@]}" "$H2LOAD" -B "unix:$socket" "$@" http://localhost/test 2>&1) || {
        echo "bench.sh: h2load $* failed" >&2
        return 0
    }
    record "$key.rps" "$(awk '/^finished in/ { gsub(",", "", $4); print $4 }' <<<"$out")"
}

# --- The machine ---------------------------------------------------------------------
step "machine"
cores=$(nproc)
cpu_model=$(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null || echo unknown)
kernel=$(uname -sr)
mem_total=$(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
rustc_version=$(rustc --version)
started_at=$(date -u '+%Y-%m-%d %H:%M UTC')
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
# How idle the CPUs were over one second, and who was busy (from /proc/stat and ps).
cpu_idle() {
    local a b
    a=($(head -1 /proc/stat)); sleep 1; b=($(head -1 /proc/stat))
    awk -v u1="${a[1]}" -v n1="${a[2]}" -v s1="${a[3]}" -v i1="${a[4]}" -v w1="${a[5]}" -v q1="${a[6]}" -v o1="${a[7]}" \
        -v u2="${b[1]}" -v n2="${b[2]}" -v s2="${b[3]}" -v i2="${b[4]}" -v w2="${b[5]}" -v q2="${b[6]}" -v o2="${b[7]}" \
        'BEGIN { t = (u2 + n2 + s2 + i2 + w2 + q2 + o2) - (u1 + n1 + s1 + i1 + w1 + q1 + o1); printf "%.0f", (t > 0 ? 100 * (i2 - i1) / t : 0) }'
}
busiest() { ps -eo pcpu=,comm= --sort=-pcpu | awk '$1 >= 5 { printf "%s%s %s%%", (n++ ? ", " : ""), $2, $1 }'; }
cpu_idle_before=$(cpu_idle)
busy_before=$(busiest)
oha_version=$([[ -n $OHA ]] && "$OHA" --version 2>/dev/null | head -1 || echo "not installed")
nginx_version=$([[ -n $NGINX ]] && "$NGINX" -v 2>&1 | sed 's/.*: //' || echo "not installed")
h2load_version=$([[ -n $H2LOAD ]] && "$H2LOAD" --version 2>/dev/null | head -1 || echo "not installed")

dur=${seconds}s
rt_secs=$(awk -v s="$seconds" 'BEGIN { printf "%.1f", s * 0.75 }')
[[ $quick == 1 ]] && floor_args=(--seconds 0.5 --stream-mib 512) || floor_args=(--seconds 2 --stream-mib 2048)
big=$((64 * 1024 * 1024))
big_file=$work/body-64m.bin
head -c "$big" /dev/urandom >"$big_file"
[[ $quick == 1 ]] && big_n=2 || big_n=8

# --- The servers -------------------------------------------------------------------------
pipe_name=bench-$$
pipe_sock=$work/CoreFxPipe_$pipe_name
bare_sock=$work/bare.sock
nginx_sock=$work/nginx.sock

start_pipehttp_pipe() {
    # No body limit: the 64 MiB POST is over the 30 MB default.
    start pipehttp-pipe "Now listening on: http://pipe:" "$PIPEHTTP" serve --urls "http://pipe:/$pipe_name" \
        --max-request-body-size unlimited
    pipehttp_pipe_pid=$server_pid
}
start_pipehttp_tcp() {
    start pipehttp-tcp "Now listening on: http://127.0.0.1:" "$PIPEHTTP" serve --urls "http://127.0.0.1:0"
    pipehttp_tcp_pid=$server_pid
    pipehttp_tcp_url=$(sed -n 's/.*Now listening on: \(http:\/\/127\.0\.0\.1:[0-9]*\).*/\1/p' "$work/pipehttp-tcp.log" | head -1)
}
start_bare() {
    start bare-unix "listening on" "$bin/bare-hyper" --listen "unix:$bare_sock"
    bare_unix_pid=$server_pid
    start bare-tcp "listening on" "$bin/bare-hyper" --listen tcp:127.0.0.1:0
    bare_tcp_pid=$server_pid
    bare_tcp_url=http://$(sed -n 's/listening on tcp:\(.*\)/\1/p' "$work/bare-tcp.log" | head -1)
}
start_nginx() {
    [[ -n $NGINX ]] || return 0
    mkdir -p "$work/nginx/logs"
    cat >"$work/nginx/nginx.conf" <<EOF
worker_processes 2;
user root;
daemon off;
pid $work/nginx/nginx.pid;
error_log $work/nginx/logs/error.log warn;
events { worker_connections 20000; }
http {
    access_log off;
    client_body_temp_path $work/nginx/body;
    proxy_temp_path $work/nginx/proxy;
    fastcgi_temp_path $work/nginx/fastcgi;
    uwsgi_temp_path $work/nginx/uwsgi;
    scgi_temp_path $work/nginx/scgi;
    keepalive_requests 100000000;
    server {
        listen unix:$nginx_sock;
        default_type text/plain;
        location / { return 200 "Hello world!"; }
    }
}
EOF
    "${server_cpu[@]}" "$NGINX" -p "$work/nginx" -c "$work/nginx/nginx.conf" >"$work/nginx.log" 2>&1 &
    nginx_pid=$!
    pids+=("$nginx_pid")
    for _ in $(seq 1 100); do [[ -S $nginx_sock ]] && return 0; sleep 0.05; done
    cat "$work/nginx.log" "$work/nginx/logs/error.log" >&2 || true
    die "nginx did not start"
}

start_pipehttp_pipe
start_pipehttp_tcp
start_bare
start_nginx
pipe_url="http://pipe:/$pipe_name"
# The sample server on a single-threaded runtime: what the runtime flavour costs.
start sample-current "Now listening on:" "$bin/sample-server" --listen "http://unix:$work/sample-current.sock" --runtime current
sample_current_pid=$server_pid

# --- Memory first, while the servers are fresh ------------------------------------------------
step "memory: idle RSS, and with 10,000 idle keep-alive connections"
"$PIPEHTTP" get "$pipe_url:/test" >/dev/null
rss_kib() { awk '/VmRSS/ { print $2 }' "/proc/$1/status"; }
record mem.idle.pipehttp "$(rss_kib "$pipehttp_pipe_pid")"
curl -s --unix-socket "$bare_sock" http://localhost/ >/dev/null || true
record mem.idle.bare "$(rss_kib "$bare_unix_pid")"
idle_count=10000
[[ $quick == 1 ]] && idle_count=2000
idle=$("$bin/idle-conns" --unix "$pipe_sock" --count "$idle_count" --server-pid "$pipehttp_pipe_pid") ||
    die "idle-conns failed"
record mem.conns.pipehttp "$(jq '.server_rss_kib_with' <<<"$idle")"
record mem.perconn.pipehttp "$(jq '.per_connection_bytes' <<<"$idle")"
idle=$("$bin/idle-conns" --unix "$bare_sock" --count "$idle_count" --server-pid "$bare_unix_pid") ||
    die "idle-conns failed"
record mem.conns.bare "$(jq '.server_rss_kib_with' <<<"$idle")"
record mem.perconn.bare "$(jq '.per_connection_bytes' <<<"$idle")"
# Give the servers a moment to close 10,000 connections before timing anything.
sleep 1

# --- The rounds ----------------------------------------------------------------------------------
# Rounds are interleaved (all figures once, then all again), so a slow
# minute on a shared machine spreads over every figure instead of one.
for round in $(seq 1 "$rounds"); do
    step "round $round/$rounds: floor"
    floor=$("${load_cpu[@]}" "$bin/floor" "${floor_args[@]}")
    record floor.unix.rtt "$(jq '.unix.pingpong_blocking.p50_us' <<<"$floor")"
    record floor.unix.rtt_tokio "$(jq '.unix.pingpong_tokio.p50_us' <<<"$floor")"
    record floor.tcp.rtt "$(jq '.tcp.pingpong_blocking.p50_us' <<<"$floor")"
    record floor.unix.stream "$(jq '.unix.stream_blocking_bytes_per_s' <<<"$floor")"
    record floor.unix.stream_tokio "$(jq '.unix.stream_tokio_bytes_per_s' <<<"$floor")"
    record floor.tcp.stream "$(jq '.tcp.stream_blocking_bytes_per_s' <<<"$floor")"

    step "round $round/$rounds: 64 keep-alive connections, GET /test"
    CPU_OF=$pipehttp_pipe_pid pb ka.pipe.pb "$pipe_url:/test" -c 64 -z "$dur"
    oh ka.pipe.oha "$pipe_sock" http://localhost/test -c 64 -z "$dur"
    CPU_OF=$pipehttp_tcp_pid pb ka.tcp.pb "$pipehttp_tcp_url/test" -c 64 -z "$dur"
    oh ka.tcp.oha - "$pipehttp_tcp_url/test" -c 64 -z "$dur"
    CPU_OF=$bare_unix_pid pb ka.bare_unix.pb "http://unix:$bare_sock:/test" -c 64 -z "$dur"
    oh ka.bare_unix.oha "$bare_sock" http://localhost/test -c 64 -z "$dur"
    CPU_OF=$bare_tcp_pid pb ka.bare_tcp.pb "$bare_tcp_url/test" -c 64 -z "$dur"
    oh ka.bare_tcp.oha - "$bare_tcp_url/test" -c 64 -z "$dur"
    if [[ -n $NGINX ]]; then
        pb ka.nginx.pb "http://unix:$nginx_sock:/test" -c 64 -z "$dur"
        oh ka.nginx.oha "$nginx_sock" http://localhost/test -c 64 -z "$dur"
    fi
    CPU_OF=$sample_current_pid pb ka.current.pb "http://unix:$work/sample-current.sock:/test" -c 64 -z "$dur"
    pb ka.pipe_client.pb "$pipe_url:/test" -c 64 -z "$dur" --client

    step "round $round/$rounds: one connection, sequential requests"
    pb one.pipe.pb "$pipe_url:/test" -c 1 -z "${rt_secs}s"
    oh one.pipe.oha "$pipe_sock" http://localhost/test -c 1 -z "${rt_secs}s"
    pb one.tcp.pb "$pipehttp_tcp_url/test" -c 1 -z "${rt_secs}s"
    pb one.bare_unix.pb "http://unix:$bare_sock:/test" -c 1 -z "${rt_secs}s"
    pb one.current.pb "http://unix:$work/sample-current.sock:/test" -c 1 -z "${rt_secs}s"

    step "round $round/$rounds: a new connection per request, 8 at a time"
    CPU_OF=$pipehttp_pipe_pid pb fresh.pipe.pb "$pipe_url:/test" -c 8 -z "$dur" --new-connection-per-request
    oh fresh.pipe.oha "$pipe_sock" http://localhost/test -c 8 -z "$dur" --disable-keepalive
    CPU_OF=$pipehttp_tcp_pid pb fresh.tcp.pb "$pipehttp_tcp_url/test" -c 8 -z "$dur" --new-connection-per-request
    oh fresh.tcp.oha - "$pipehttp_tcp_url/test" -c 8 -z "$dur" --disable-keepalive
    CPU_OF=$bare_unix_pid pb fresh.bare_unix.pb "http://unix:$bare_sock:/test" -c 8 -z "$dur" --new-connection-per-request
    oh fresh.bare_unix.oha "$bare_sock" http://localhost/test -c 8 -z "$dur" --disable-keepalive
    CPU_OF=$bare_tcp_pid pb fresh.bare_tcp.pb "$bare_tcp_url/test" -c 8 -z "$dur" --new-connection-per-request

    step "round $round/$rounds: 64 MiB GET and POST over a pipe"
    # One request first, so page faults of fresh buffers are not timed.
    pb warm.get "$pipe_url:/bytes/$big" -c 1 -n 1
    pb big.get.pb "$pipe_url:/bytes/$big" -c 1 -n "$big_n"
    oh big.get.oha "$pipe_sock" "http://localhost/bytes/$big" -c 1 -n "$big_n"
    pb warm.post "$pipe_url:/echo" -c 1 -n 1 -d "@$big_file" -H "content-type: application/octet-stream"
    pb big.post.pb "$pipe_url:/echo" -c 1 -n "$big_n" -d "@$big_file" -H "content-type: application/octet-stream"

    step "round $round/$rounds: HTTP/2 over a pipe, 64 connections"
    pb h2.pipe.pb "$pipe_url:/test" -c 64 -z "$dur" --http2
    h2 h2.pipe.h2load "$pipe_sock" -c 64 -m 1 -D "$seconds"
    h2 h1.pipe.h2load "$pipe_sock" --h1 -c 64 -m 1 -D "$seconds"
done

load_after=$(cut -d' ' -f1-3 /proc/loadavg)
cpu_idle_after=$(cpu_idle)
finished_at=$(date -u '+%Y-%m-%d %H:%M UTC')

notes_marker="<!-- notes: everything below is kept by scripts/bench.sh -->"

# --- The report --------------------------------------------------------------------------------
step "writing $output"
m() { median "$1"; }
k() { fmt "$(awk -v v="$(m "$1")" 'BEGIN { if (v != "") print v / 1000 }')" 1; }  # thousands
us() { fmt "$(m "$1")" 1; }
gib() { fmt "$(awk -v v="$(m "$1")" 'BEGIN { if (v != "") print v / 1073741824 }')" 2; }
mib_of_kib() { fmt "$(awk -v v="$(m "$1")" 'BEGIN { if (v != "") print v / 1024 }')" 1; }

# Bandwidth of a 64 MiB POST /echo: the body goes up, then comes back.
post_bps=$(m big.post.pb.bps)
get_bps=$(m big.get.pb.bps)
stream_bps=$(m floor.unix.stream)

r_lib=$(ratio "$(m ka.pipe.pb.rps)" "$(m ka.bare_unix.pb.rps)")
r_lib_oha=$(ratio "$(m ka.pipe.oha.rps)" "$(m ka.bare_unix.oha.rps)")
# CPU ratios are inverted (bare's cost / pipehttp's cost), so ≥ 1 is "as cheap".
r_lib_cpu=$(ratio "$(m ka.bare_unix.pb.cpu)" "$(m ka.pipe.pb.cpu)")
r_fresh_lib_cpu=$(ratio "$(m fresh.bare_unix.pb.cpu)" "$(m fresh.pipe.pb.cpu)")
r_pipe_tcp=$(ratio "$(m ka.pipe.pb.rps)" "$(m ka.tcp.pb.rps)")
r_pipe_tcp_oha=$(ratio "$(m ka.pipe.oha.rps)" "$(m ka.tcp.oha.rps)")
r_nginx=$(ratio "$(m ka.pipe.pb.rps)" "$(m ka.nginx.pb.rps)")
r_nginx_oha=$(ratio "$(m ka.pipe.oha.rps)" "$(m ka.nginx.oha.rps)")
r_latency=$(ratio "$(m one.pipe.pb.p50)" "$(m floor.unix.rtt)")
r_latency_tokio=$(ratio "$(m one.pipe.pb.p50)" "$(m floor.unix.rtt_tokio)")
r_fresh=$(ratio "$(m fresh.pipe.pb.rps)" "$(m fresh.tcp.pb.rps)")
r_fresh_oha=$(ratio "$(m fresh.pipe.oha.rps)" "$(m fresh.tcp.oha.rps)")
r_fresh_lib=$(ratio "$(m fresh.pipe.pb.rps)" "$(m fresh.bare_unix.pb.rps)")
r_fresh_lib_oha=$(ratio "$(m fresh.pipe.oha.rps)" "$(m fresh.bare_unix.oha.rps)")
r_get=$(ratio "$get_bps" "$stream_bps")
r_post=$(ratio "$post_bps" "$stream_bps")
idle_mib=$(mib_of_kib mem.idle.pipehttp)
conns_mib=$(mib_of_kib mem.conns.pipehttp)
r_ruler_pipe=$(ratio "$(m ka.pipe.pb.rps)" "$(m ka.pipe.oha.rps)")
r_ruler_bare=$(ratio "$(m ka.bare_unix.pb.rps)" "$(m ka.bare_unix.oha.rps)")
r_ruler_nginx=$(ratio "$(m ka.nginx.pb.rps)" "$(m ka.nginx.oha.rps)")
r_ruler_tcp=$(ratio "$(m ka.tcp.pb.rps)" "$(m ka.tcp.oha.rps)")
r_h2=$(ratio "$(m h2.pipe.pb.rps)" "$(m ka.pipe.pb.rps)")
r_current=$(ratio "$(m ka.current.pb.rps)" "$(m ka.pipe.pb.rps)")

pin_text="not pinned: servers and load generators share both cores, as the reference figures in the issue were taken"
[[ $pin == 1 ]] && pin_text="pinned with taskset: servers on core 0, load generators on core 1"

{
cat <<EOF
# Benchmarks

Measured by \`scripts/bench.sh\` on $started_at (finished $finished_at).
Every figure is the median of $rounds round(s); throughput runs last ${seconds} s each.
Re-run it with \`scripts/bench.sh\` (about 8 minutes; \`--quick\` for a 2-minute smoke run).

## The machine

| | |
| --- | --- |
| CPU | $cpu_model, $cores cores |
| memory | $mem_total |
| kernel | $kernel |
| toolchain | $rustc_version, \`--release\` |
| load generators | pipehttp bench (this repo); $oha_version; $h2load_version |
| peers | $nginx_version (Debian), 2 workers |
| quiet? | before the run: load average $load_before, CPUs ${cpu_idle_before:-?} % idle over 1 s${busy_before:+ (busy: $busy_before)}; after: load average $load_after, ${cpu_idle_after:-?} % idle |
| pinning | $pin_text |

On $cores cores the load generator and the server share the CPUs, so
every throughput figure is a figure for the pair: a cheaper load generator
leaves more CPU to the server.

## Targets

| what | figure | target | |
| --- | --- | --- | --- |
| pipehttp / bare hyper, same socket, 64 connections | $r_lib (oha: $r_lib_oha; by server CPU per request: $r_lib_cpu) | ≥ 0.95 | $(verdict "$r_lib" ">=" 0.95) |
| pipe / TCP throughput, 64 connections | $r_pipe_tcp (oha: $r_pipe_tcp_oha) | ≥ 1.8 | $(verdict "$r_pipe_tcp" ">=" 1.8) |
| pipehttp / nginx, Unix socket | $r_nginx (oha: $r_nginx_oha) | ≥ 1.4 | $(verdict "$r_nginx" ">=" 1.4) |
| one-connection p50 / raw ping-pong round trip | $r_latency (vs tokio ping-pong: $r_latency_tokio) | ≤ 1.2 | $(verdict "$r_latency" "<=" 1.2) |
| new connection per request: pipe / TCP | $r_fresh (oha: $r_fresh_oha) | ≥ 1.8 | $(verdict "$r_fresh" ">=" 1.8) |
| new connection per request: pipehttp / bare hyper | $r_fresh_lib (oha: $r_fresh_lib_oha; by server CPU per request: $r_fresh_lib_cpu) | ≥ 0.9 | $(verdict "$r_fresh_lib" ">=" 0.9) |
| 64 MiB GET / raw stream bandwidth | $r_get | ≥ 0.60 | $(verdict "$r_get" ">=" 0.6) |
| 64 MiB POST (up and back) / raw stream bandwidth | $r_post | ≥ 0.60 | $(verdict "$r_post" ">=" 0.6) |
| idle server RSS | $idle_mib MiB | ≤ 8 MiB | $(verdict "$idle_mib" "<=" 8) |
| $idle_count idle connections, server RSS | $conns_mib MiB | ≤ 150 MiB | $(verdict "$conns_mib" "<=" 150) |
| pipehttp bench / oha, pipehttp over a pipe | $r_ruler_pipe | ≥ 1.0 | $(verdict "$r_ruler_pipe" ">=" 1.0) |
| pipehttp bench / oha, bare hyper over a Unix socket | $r_ruler_bare | ≥ 1.0 | $(verdict "$r_ruler_bare" ">=" 1.0) |
| pipehttp bench / oha, nginx over a Unix socket | $r_ruler_nginx | ≥ 1.0 | $(verdict "$r_ruler_nginx" ">=" 1.0) |
| pipehttp bench / oha, pipehttp over TCP | $r_ruler_tcp | ≥ 1.0 | $(verdict "$r_ruler_tcp" ">=" 1.0) |

## The floor: raw sockets, no HTTP

| | Unix socket | TCP loopback |
| --- | --- | --- |
| ping-pong round trip, 64-byte messages, blocking threads, p50 | $(us floor.unix.rtt) µs | $(us floor.tcp.rtt) µs |
| the same on tokio (a current-thread runtime per side), p50 | $(us floor.unix.rtt_tokio) µs | |
| one-way stream, 256 KiB writes, blocking | $(gib floor.unix.stream) GiB/s | $(gib floor.tcp.stream) GiB/s |
| the same on tokio | $(gib floor.unix.stream_tokio) GiB/s | |

## Throughput: 64 keep-alive connections, GET /test (12-byte answer)

Requests per second, in thousands.

| server | transport | pipehttp bench | oha | server CPU per request |
| --- | --- | --- | --- | --- |
| pipehttp serve | pipe ($pipe_sock) | $(k ka.pipe.pb.rps) | $(k ka.pipe.oha.rps) | $(us ka.pipe.pb.cpu) µs |
| pipehttp serve | TCP loopback | $(k ka.tcp.pb.rps) | $(k ka.tcp.oha.rps) | $(us ka.tcp.pb.cpu) µs |
| bare tokio + hyper-util | Unix socket | $(k ka.bare_unix.pb.rps) | $(k ka.bare_unix.oha.rps) | $(us ka.bare_unix.pb.cpu) µs |
| bare tokio + hyper-util | TCP loopback | $(k ka.bare_tcp.pb.rps) | $(k ka.bare_tcp.oha.rps) | $(us ka.bare_tcp.pb.cpu) µs |
| nginx, 2 workers, \`return 200\` | Unix socket | $(k ka.nginx.pb.rps) | $(k ka.nginx.oha.rps) | |
| pipehttp's sample app on a current-thread runtime (bench suite's sample-server) | Unix socket | $(k ka.current.pb.rps) | | $(us ka.current.pb.cpu) µs |
| pipehttp serve, load through \`pipehttp::Client\` (\`bench --client\`) | pipe | $(k ka.pipe_client.pb.rps) | | |

Server CPU per request (user + system time of the server process over the
run, from /proc, divided by the requests answered) does not depend on how
busy the machine is the way requests/s do: on a shared machine it is the
steadier figure for comparing servers.

pipehttp's sample app on one thread / on \`pipehttp serve\`'s default runtime: $r_current.

## Latency: one connection, sequential requests

| server | transport | p50 | p99 | requests/s |
| --- | --- | --- | --- | --- |
| pipehttp serve | pipe | $(us one.pipe.pb.p50) µs (oha: $(us one.pipe.oha.p50) µs) | $(us one.pipe.pb.p99) µs | $(k one.pipe.pb.rps) k |
| pipehttp serve | TCP loopback | $(us one.tcp.pb.p50) µs | $(us one.tcp.pb.p99) µs | $(k one.tcp.pb.rps) k |
| bare tokio + hyper-util | Unix socket | $(us one.bare_unix.pb.p50) µs | $(us one.bare_unix.pb.p99) µs | $(k one.bare_unix.pb.rps) k |
| pipehttp's sample app, current-thread runtime | Unix socket | $(us one.current.pb.p50) µs | $(us one.current.pb.p99) µs | $(k one.current.pb.rps) k |
| raw ping-pong (floor), blocking / tokio | Unix socket | $(us floor.unix.rtt) / $(us floor.unix.rtt_tokio) µs | | |

## A new connection per request, 8 at a time

What .NET's tracer in the article does. Requests per second, in thousands;
the latency includes the connect.

| server | transport | pipehttp bench | oha | p50 (pipehttp bench) | server CPU per request |
| --- | --- | --- | --- | --- | --- |
| pipehttp serve | pipe | $(k fresh.pipe.pb.rps) | $(k fresh.pipe.oha.rps) | $(us fresh.pipe.pb.p50) µs | $(us fresh.pipe.pb.cpu) µs |
| pipehttp serve | TCP loopback | $(k fresh.tcp.pb.rps) | $(k fresh.tcp.oha.rps) | $(us fresh.tcp.pb.p50) µs | $(us fresh.tcp.pb.cpu) µs |
| bare tokio + hyper-util | Unix socket | $(k fresh.bare_unix.pb.rps) | $(k fresh.bare_unix.oha.rps) | $(us fresh.bare_unix.pb.p50) µs | $(us fresh.bare_unix.pb.cpu) µs |
| bare tokio + hyper-util | TCP loopback | $(k fresh.bare_tcp.pb.rps) | | $(us fresh.bare_tcp.pb.p50) µs | $(us fresh.bare_tcp.pb.cpu) µs |

## Big transfers over a pipe, one connection

| | bandwidth | / raw stream |
| --- | --- | --- |
| raw Unix-socket stream (floor) | $(gib floor.unix.stream) GiB/s | 1.00 |
| GET /bytes/$big (64 MiB), pipehttp bench | $(gib big.get.pb.bps) GiB/s | $r_get |
| the same, oha | $(gib big.get.oha.bps) GiB/s | |
| POST /echo, 64 MiB up and 64 MiB back (bytes both ways / time) | $(gib big.post.pb.bps) GiB/s | $r_post |

## HTTP/2 over a pipe, 64 connections, one stream each

| | requests/s (thousands) |
| --- | --- |
| HTTP/1.1, pipehttp bench | $(k ka.pipe.pb.rps) |
| HTTP/2, pipehttp bench --http2 | $(k h2.pipe.pb.rps) |
| HTTP/2, h2load | $(k h2.pipe.h2load.rps) |
| HTTP/1.1, h2load --h1 | $(k h1.pipe.h2load.rps) |

HTTP/2 / HTTP/1.1 (pipehttp bench): $r_h2.

## Memory

| server | idle RSS | with $idle_count idle keep-alive connections | per connection |
| --- | --- | --- | --- |
| pipehttp serve (pipe) | $idle_mib MiB | $conns_mib MiB | $(fmt "$(m mem.perconn.pipehttp)" 0) bytes |
| bare tokio + hyper-util (Unix socket) | $(mib_of_kib mem.idle.bare) MiB | $(mib_of_kib mem.conns.bare) MiB | $(fmt "$(m mem.perconn.bare)" 0) bytes |

## The commands

Servers: \`pipehttp serve --urls http://pipe:/NAME\` and \`--urls http://127.0.0.1:0\`;
\`bare-hyper --listen unix:PATH\` and \`--listen tcp:127.0.0.1:0\` (crates/pipehttp-bench);
nginx with \`worker_processes 2\`, \`listen unix:PATH\`, \`return 200 "Hello world!"\`, \`access_log off\`.

Load, per figure (\`-z\` ${seconds} s):
\`\`\`sh
pipehttp bench http://pipe:/NAME:/test -c 64 -z ${seconds}s --output-format json       # and unix:, TCP targets
oha --no-tui --output-format json --unix-socket \$TMPDIR/CoreFxPipe_NAME -c 64 -z ${seconds}s http://localhost/test
pipehttp bench http://pipe:/NAME:/test -c 1 -z ${rt_secs}s                 # latency
pipehttp bench http://pipe:/NAME:/test -c 8 -z ${seconds}s --new-connection-per-request
oha ... -c 8 --disable-keepalive
pipehttp bench http://pipe:/NAME:/bytes/67108864 -c 1 -n $big_n
pipehttp bench http://pipe:/NAME:/echo -c 1 -n $big_n -d @body-64m.bin
pipehttp bench http://pipe:/NAME:/test -c 64 -z ${seconds}s --http2
h2load -B unix:\$TMPDIR/CoreFxPipe_NAME -c 64 -m 1 -D ${seconds} http://localhost/test   # and --h1
floor --seconds 2 --stream-mib 2048                                      # crates/pipehttp-bench
idle-conns --unix \$TMPDIR/CoreFxPipe_NAME --count $idle_count --server-pid PID
\`\`\`
EOF
# Hand-written analysis (profiles, proposed changes, before/after rows)
# lives below the marker in the existing report and is carried over.
if [[ -f $output ]] && grep -qF "$notes_marker" "$output"; then
    echo
    awk -v m="$notes_marker" 'found || index($0, m) { found = 1; print }' "$output"
fi
} >"$output.new"
mv "$output.new" "$output"
step "wrote $output"
cat "$output" | sed -n '/## Targets/,/## The floor/p' >&2
