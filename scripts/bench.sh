#!/usr/bin/env bash
# Measures pipehttp against its anchors in one run and writes BENCHMARKS.md:
# pipehttp serve, bare tokio + hyper and nginx on Unix sockets (keep-alive,
# a new connection per request, HTTP/2 cleartext, one connection), the
# library's client, idle connections' memory, and `pipehttp proxy` against
# nginx's proxy_pass.
#
# This script only starts processes. Each measurement goes through
# bench-record, which runs the load generator, reads the server's CPU time
# around it and appends one JSON line to a results file; bench-report
# (crates/pipehttp-bench) then takes medians, ratios and goals and writes
# the report. Rounds are interleaved: every figure once per round, the
# servers of a comparison one after the other, in reverse order every
# other round.
#
# Usage: scripts/bench.sh [--quick] [--rounds N] [--seconds S] [--pin]
#                         [--install] [--output FILE] [--results FILE]
#
#   --quick        one round of 1 s runs and 2,000 idle connections: a smoke
#                  run of the whole suite (under a minute once built; the
#                  full run takes about 6 minutes)
#   --rounds N     rounds per figure (default 3); the median is reported
#   --seconds S    length of one throughput run (default 4)
#   --pin          servers on core 0, load generators on core 1
#   --install      install what is missing first (as root, Debian): nginx,
#                  nghttp2-client (h2load) with apt-get, oha with cargo
#   --output FILE  the report (default BENCHMARKS.md)
#   --results FILE keep the raw results (JSON lines) there too
#
# Without --install nothing is installed: a missing tool's rows say so.
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo_root"

rounds=3
seconds=4
idle_count=10000
pin=0
install=0
output=BENCHMARKS.md
keep_results=
measuring_args=()    # the arguments that change what is measured, for the report
while [[ $# -gt 0 ]]; do
    case "$1" in
        --quick) rounds=1; seconds=1; idle_count=2000; measuring_args+=("$1") ;;
        --rounds) rounds=$2; measuring_args+=("$1" "$2"); shift ;;
        --seconds) seconds=$2; measuring_args+=("$1" "$2"); shift ;;
        --pin) pin=1; measuring_args+=("$1") ;;
        --install) install=1 ;;
        --output) output=$2; shift ;;
        --results) keep_results=$2; shift ;;
        -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
        *) echo "bench.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
    shift
done

step() { echo "==> $*" >&2; }
die() { echo "bench.sh: error: $*" >&2; exit 1; }
started=$(date +%s)

# --- Tools ------------------------------------------------------------------------
export PATH=$PATH:$HOME/.cargo/bin:/usr/sbin
have() { command -v "$1" >/dev/null 2>&1; }
if [[ $install == 1 ]]; then
    packages=()
    have nginx || packages+=(nginx)
    have h2load || packages+=(nghttp2-client)
    if [[ ${#packages[@]} -gt 0 ]]; then
        step "apt-get install ${packages[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
    fi
    if ! have oha; then
        step "cargo install oha --locked (a few minutes, once)"
        cargo install oha --locked >&2
    fi
fi
NGINX=$(command -v nginx || true)
H2LOAD=$(command -v h2load || true)
OHA=$(command -v oha || true)
missing=()
[[ -n $NGINX ]] || missing+=(nginx)
[[ -n $H2LOAD ]] || missing+=("h2load (nghttp2-client)")
[[ -n $OHA ]] || missing+=(oha)
if [[ ${#missing[@]} -gt 0 ]]; then
    echo "bench.sh: not installed: ${missing[*]}; their rows are skipped (scripts/bench.sh --install installs them)" >&2
fi

step "cargo build --release (pipehttp, the bench suite)"
cargo build --release --locked -p pipehttp-cli -p pipehttp-bench >&2
bin=${CARGO_TARGET_DIR:-$repo_root/target}/release
PIPEHTTP=$bin/pipehttp

# --- Scratch space, results, cleanup ------------------------------------------------
work=$(mktemp -d /tmp/pipehttp-bench.XXXXXX)
export TMPDIR=$work    # pipe NAME lives at $work/CoreFxPipe_NAME
results=$work/results.jsonl
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
# 10,000 idle connections need 10,000 descriptors in the server.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

meta() { "$bin/bench-record" meta --results "$results" -- "$1" "$2"; }
skip() { "$bin/bench-record" skip --results "$results" -- "$1" "$2"; }
[[ -n $NGINX ]] || skip nginx "nginx is not installed (scripts/bench.sh --install)"
[[ -n $H2LOAD ]] || skip h2load "h2load is not installed: apt-get install nghttp2-client (scripts/bench.sh --install)"
[[ -n $OHA ]] || skip oha "oha is not installed: cargo install oha --locked (scripts/bench.sh --install)"

server_cpu=()
load_cpu=()
pinning="not pinned: servers and load generators share every core"
if [[ $pin == 1 ]]; then
    server_cpu=(taskset -c 0)
    load_cpu=(taskset -c 1)
    pinning="pinned with taskset: servers on core 0, load generators on core 1"
fi

# --- Servers -------------------------------------------------------------------------------
# start NAME SOCKET CMD...: starts a server, waits until SOCKET exists, sets
# $server_pid; on failure shows the server's output and returns 1.
start() {
    local name=$1 socket=$2
    shift 2
    meta "server.$name" "$(echo "$*" | sed "s|$work|\$WORK|g; s|$bin/||g")"
    "${server_cpu[@]}" "$@" >"$work/$name.log" 2>&1 &
    server_pid=$!
    pids+=("$server_pid")
    for _ in $(seq 1 200); do
        [[ -S $socket ]] && return 0
        kill -0 "$server_pid" 2>/dev/null || break
        sleep 0.05
    done
    cat "$work/$name.log" >&2
    echo "bench.sh: $name did not create $socket" >&2
    return 1
}
# ready TARGET: one request, retried while the listener comes up.
ready() {
    for _ in $(seq 1 100); do
        "$PIPEHTTP" get "$1" >/dev/null 2>&1 && return 0
        sleep 0.05
    done
    echo "bench.sh: no answer from $1" >&2
    return 1
}

declare -A pid sock
pipe_name=bench-$$
sock[pipehttp]=$work/CoreFxPipe_$pipe_name
# No body limit: the 64 MiB POST is over the 30 MB default.
start pipehttp "${sock[pipehttp]}" "$PIPEHTTP" serve --urls "http://pipe:/$pipe_name" \
    --max-request-body-size unlimited || die "pipehttp serve did not start"
pid[pipehttp]=$server_pid
sock[bare]=$work/bare.sock
start bare "${sock[bare]}" "$bin/bare-hyper" --listen "unix:${sock[bare]}" || die "bare-hyper did not start"
pid[bare]=$server_pid
# The proxies' upstream, a server of its own so its CPU is no one's figure.
upstream=$work/upstream.sock
start upstream "$upstream" "$bin/bare-hyper" --listen "unix:$upstream" || die "bare-hyper did not start"

if [[ -n $NGINX ]]; then
    sock[nginx]=$work/nginx.sock
    sock[nginx-h2]=$work/nginx-h2.sock
    sock[nginx-proxy]=$work/nginx-proxy.sock
    mkdir -p "$work/nginx/logs"
    # nginx started as root runs its workers as nobody, who may not
    # connect to the upstream's socket: every proxied request would be a
    # fast 502. The workers run as this script's user instead (nginx
    # ignores `user` when it is not started as root).
    cat >"$work/nginx/nginx.conf" <<EOF
user $(id -un) $(id -gn);
worker_processes 2;
worker_rlimit_nofile 30000;
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
    default_type text/plain;
    server {
        listen unix:${sock[nginx]};
        location / { return 200 "Hello world!"; }
    }
    server {
        listen unix:${sock[nginx-h2]} http2;
        location / { return 200 "Hello world!"; }
    }
    upstream bench_upstream {
        server unix:$upstream;
        keepalive 64;
    }
    server {
        listen unix:${sock[nginx-proxy]};
        location / {
            proxy_pass http://bench_upstream;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF
    start nginx "${sock[nginx-proxy]}" "$NGINX" -p "$work/nginx" -c "$work/nginx/nginx.conf" ||
        die "nginx did not start (its error log: $work/nginx/logs/error.log)"
    pid[nginx]=$server_pid
    pid[nginx-proxy]=$server_pid
    ready "http://unix:${sock[nginx]}:/test" || die "nginx does not answer"
fi

if "$PIPEHTTP" proxy --help >/dev/null 2>&1; then
    # A proxy that does not come up costs its rows, not the run.
    if start pipehttp-proxy "$work/pipehttp-proxy.sock" "$PIPEHTTP" proxy \
        --listen "http://unix:$work/pipehttp-proxy.sock" --to "http://unix:$upstream" &&
        ready "http://unix:$work/pipehttp-proxy.sock:/test"; then
        sock[pipehttp-proxy]=$work/pipehttp-proxy.sock
        pid[pipehttp-proxy]=$server_pid
    else
        skip proxy.pipehttp "\`pipehttp proxy\` did not start or answer (see the run's output)"
    fi
else
    skip proxy.pipehttp "not available in this build: \`pipehttp proxy --help\` fails"
fi
ready "http://pipe:/$pipe_name:/test" || die "pipehttp serve does not answer"
ready "http://unix:${sock[bare]}:/test" || die "bare-hyper does not answer"
ready "http://unix:$upstream:/test" || die "the upstream does not answer"

# --- The run's facts ------------------------------------------------------------------------
version() { [[ -n $1 ]] && "$@" 2>&1 | head -1 | sed 's/^nginx version: //' || echo "not installed"; }
meta started_at "$(date -u '+%Y-%m-%d %H:%M UTC')"
meta args "${measuring_args[*]}"
meta rounds "$rounds"
meta seconds "$seconds"
meta connections 64
meta fresh_connections 8
meta idle_count "$idle_count"
meta pinning "$pinning"
meta rustc "$(rustc --version)"
meta oha "$(version "$OHA" --version)"
meta h2load "$(version "$H2LOAD" --version)"
meta nginx "$(version "$NGINX" -v)"
step "the machine, and how busy it is"
"$bin/bench-record" machine --results "$results" --phase before

round=0
# rec KEY SERVER CMD...: one measurement of round $round; SERVER names
# the server whose CPU is read ("" for none).
rec() {
    local key=$1 server=$2
    shift 2
    local cpu=()
    [[ -z $server ]] || cpu=(--server "${pid[$server]}")
    "$bin/bench-record" run --results "$results" --key "$key" --round "$round" --work "$work" \
        "${cpu[@]}" -- "${load_cpu[@]}" "$@"
}
# The two HTTP/1.1 rulers: load SCENARIO SERVER RULER ARGS... (oha -w
# waits for the requests in flight at the deadline instead of counting
# them as errors, as pipehttp bench does).
load() {
    local scenario=$1 server=$2 ruler=$3
    shift 3
    [[ -n ${sock[$server]:-} ]] || return 0
    case $ruler in
        pb) rec "$scenario.${server%-proxy}.pb" "$server" \
                "$PIPEHTTP" bench "http://unix:${sock[$server]}:/test" --output-format json --no-progress "$@" ;;
        oha) [[ -n $OHA ]] || return 0
             rec "$scenario.${server%-proxy}.oha" "$server" \
                "$OHA" --no-tui --output-format json -w --unix-socket "${sock[$server]}" "$@" http://localhost/test ;;
    esac
}
# in_turn A B ...: the servers in order, reversed every other round.
in_turn() {
    if ((round % 2)); then echo "$@"; else echo "$@" | tr ' ' '\n' | tac | tr '\n' ' '; fi
}
dur=${seconds}s
one_dur=$(awk -v s="$seconds" 'BEGIN { printf "%.2fs", s * 0.75 }')
h2_servers="pipehttp"
[[ -n $NGINX ]] && h2_servers="pipehttp nginx"
web="pipehttp bare"
[[ -n $NGINX ]] && web="pipehttp bare nginx"
proxies="pipehttp-proxy nginx-proxy"

# --- Memory first, while the servers are fresh --------------------------------------------------
step "memory: $idle_count idle keep-alive connections"
round=1
for server in $web; do
    rec "idle.$server.idle" "" "$bin/idle-conns" --unix "${sock[$server]}" --count "$idle_count" \
        --server-pid "${pid[$server]}"
done

# --- The rounds -----------------------------------------------------------------------------
big=$((64 * 1024 * 1024))
big_file=$work/body-64m.bin
head -c "$big" /dev/urandom >"$big_file"
for round in $(seq 1 "$rounds"); do
    step "round $round/$rounds: keep-alive, 64 connections; pipehttp::Client"
    for ruler in pb oha; do
        for server in $(in_turn $web); do load ka "$server" "$ruler" -c 64 -z "$dur"; done
    done
    rec ka.client.pb pipehttp "$PIPEHTTP" bench "http://pipe:/$pipe_name:/test" --output-format json --no-progress \
        -c 64 -z "$dur" --client

    step "round $round/$rounds: one connection, sequential requests"
    for ruler in pb oha; do
        for server in $(in_turn pipehttp bare); do load one "$server" "$ruler" -c 1 -z "$one_dur"; done
    done

    step "round $round/$rounds: a new connection per request, 8 at a time"
    for server in $(in_turn $web); do load fresh "$server" pb -c 8 -z "$dur" --new-connection-per-request; done
    for server in $(in_turn $web); do load fresh "$server" oha -c 8 -z "$dur" --disable-keepalive; done

    step "round $round/$rounds: HTTP/2 cleartext, 64 connections"
    if [[ -n $H2LOAD ]]; then
        for server in $(in_turn $h2_servers); do
            s=$server
            [[ $server == nginx ]] && s=nginx-h2
            rec "h2.$server.h2load" "$server" "$H2LOAD" -B "unix:${sock[$s]}" -c 64 -m 1 -D "$seconds" \
                http://localhost/test
        done
    fi
    for server in $(in_turn $h2_servers); do
        s=$server
        [[ $server == nginx ]] && s=nginx-h2
        rec "h2.$server.pb" "$server" "$PIPEHTTP" bench "http://unix:${sock[$s]}:/test" --output-format json --no-progress \
            -c 64 -z "$dur" --http2
    done

    step "round $round/$rounds: reverse proxies, 64 connections"
    for ruler in pb oha; do
        for server in $(in_turn $proxies); do load proxy "$server" "$ruler" -c 64 -z "$dur"; done
    done

    step "round $round/$rounds: 64 MiB GET and POST over the pipe; the floor"
    target="http://pipe:/$pipe_name"
    # One request first, so page faults of fresh buffers are not timed.
    "$PIPEHTTP" bench "$target:/bytes/$big" -c 1 -n 1 --no-progress >/dev/null
    rec big-get.pipehttp.pb "" "$PIPEHTTP" bench "$target:/bytes/$big" --output-format json --no-progress -c 1 -n 4
    "$PIPEHTTP" bench "$target:/echo" -c 1 -n 1 -d "@$big_file" --no-progress >/dev/null
    rec big-post.pipehttp.pb "" "$PIPEHTTP" bench "$target:/echo" --output-format json --no-progress -c 1 -n 4 \
        -d "@$big_file" -H "content-type: application/octet-stream"
    rec floor.floor "" "$bin/floor" --seconds 0.5 --stream-mib 1024
done

# --- The report -------------------------------------------------------------------------------
step "the machine after the run"
"$bin/bench-record" machine --results "$results" --phase after
meta finished_at "$(date -u '+%Y-%m-%d %H:%M UTC')"
elapsed=$(($(date +%s) - started))
meta elapsed "$((elapsed / 60)) min $((elapsed % 60)) s"
[[ -z $keep_results ]] || cp "$results" "$keep_results"
"$bin/bench-report" --results "$results" --output "$output"
