#!/usr/bin/env bash
# gRPC benchmark: unary demo.v1.Echo/Say calls per second through the gateway, through nginx's
# grpc_pass and straight at the same replica, in one run, with h2load (Debian's nghttp2-client and
# nginx-light, installed when missing).
#
# Layout on a 2-core machine: h2load and the replica on core 0, the gateway and nginx (one worker each)
# on core 1. The three targets are measured alternately, ROUNDS times, DURATION seconds each; the script
# prints every run, the medians, each proxy's CPU time per call, and the ratios.
#
# Usage: bench/grpc.sh   (env: CLIENTS=8 STREAMS=16 DURATION=6 ROUNDS=3)
set -euo pipefail
cd "$(dirname "$0")/.."

CLIENTS=${CLIENTS:-8}
STREAMS=${STREAMS:-16}
DURATION=${DURATION:-6}
ROUNDS=${ROUNDS:-3}

for tool in h2load:nghttp2-client curl:curl nginx:nginx-light; do
  command -v "${tool%%:*}" >/dev/null 2>&1 || {
    echo "installing ${tool#*:}..." >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${tool#*:}" >/dev/null
  }
done

cargo build --release --bins --locked -q
BIN=target/release
WORK=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -f "$WORK/nginx.pid" ] && kill "$(cat "$WORK/nginx.pid")" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

HTTP=$(free_port); GRPC=$(free_port); REP=$(free_port)
cat > "$WORK/gw.yaml" <<YAML
listen: 127.0.0.1:$HTTP
grpc_listen: 127.0.0.1:$GRPC
workers: 1
YAML
GATEWAY_LOG=warn taskset -c 1 "$BIN/registry-gateway" --config "$WORK/gw.yaml" > "$WORK/gw.log" 2>&1 &
GW_PID=$!; pids+=("$GW_PID")
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$HTTP/healthz" >/dev/null 2>&1 && break; sleep 0.05; done
DEMO_LOG=warn taskset -c 0 "$BIN/demo-grpc" --name r1 --port "$REP" --gateway "http://127.0.0.1:$HTTP" > "$WORK/r1.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do curl -s "http://127.0.0.1:$HTTP/registry" | grep -q "\"127.0.0.1:$REP\"\|:$REP\"" && break; sleep 0.05; done

# nginx as a gRPC proxy over the same replica: HTTP/2 on both sides, keep-alive upstream. Its HTTP/2
# server closes a client connection after keepalive_requests (1,000 by default): raised, so that h2load's
# connections live through the run as they do against the gateway.
NGX=$(free_port)
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
cat > "$WORK/nginx.conf" <<NGINX
worker_processes 1;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 100000000;
  upstream replica { server 127.0.0.1:$REP; keepalive 64; }
  server {
    listen 127.0.0.1:$NGX http2;
    location / { grpc_pass grpc://replica; }
  }
}
NGINX
taskset -c 1 "$NGINX" -c "$WORK/nginx.conf" -p "$WORK" -g 'daemon on;'
for _ in $(seq 100); do [ -s "$WORK/nginx.pid" ] && break; sleep 0.05; done
NGX_PIDS="$(cat "$WORK/nginx.pid") $(pgrep -P "$(cat "$WORK/nginx.pid")" | tr '\n' ' ')"

# One gRPC message: 5-byte prefix (uncompressed, length 4) + SayRequest{message: "hi"}.
printf '\x00\x00\x00\x00\x04\x0a\x02hi' > "$WORK/say.bin"

ticks() { local t=0 p; for p in "$@"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done; echo "$t"; }
run() { # url [pids...] -> "calls/s mean_ms cpu_us_per_call"
  local url=$1 t0=0 t1=0 out; shift
  local pid=${1:-}
  [ -n "$pid" ] && t0=$(ticks "$@")
  out=$(taskset -c 0 h2load -t 1 -c "$CLIENTS" -m "$STREAMS" -D "$DURATION" --warm-up-time=1 \
    -H 'content-type: application/grpc' -H 'te: trailers' -d "$WORK/say.bin" "$url" 2>&1)
  [ -n "$pid" ] && t1=$(ticks "$@")
  local rps done_ failed mean
  rps=$(awk '/^finished in/ {gsub(",", "", $4); print $4}' <<<"$out")
  done_=$(awk '/^requests:/ {print $8}' <<<"$out")
  failed=$(awk '/^requests:/ {print $10}' <<<"$out")
  [ "${failed:-0}" != 0 ] && echo "  $url: $failed failed" >&2
  mean=$(awk '/^time for request:/ {v=$6; if (v ~ /us$/) {sub(/us/,"",v); v=v/1000} else if (v ~ /ms$/) {sub(/ms/,"",v)} else if (v ~ /s$/) {sub(/s/,"",v); v=v*1000}; print v}' <<<"$out")
  local cpu="-"
  [ -n "$pid" ] && cpu=$(awk -v d=$((t1 - t0)) -v hz="$(getconf CLK_TCK)" -v n="$done_" 'BEGIN { printf "%.2f", d * 1e6 / hz / n }')
  echo "$rps $mean $cpu"
}

echo "gRPC benchmark: h2load -c$CLIENTS -m$STREAMS, ${DURATION}s per run, unary Say; gateway and nginx: 1 worker each on core 1"
d_rps=(); g_rps=(); n_rps=(); d_lat=(); g_lat=(); n_lat=(); g_cpu=(); n_cpu=()
for r in $(seq "$ROUNDS"); do
  read -r a b _ < <(run "http://127.0.0.1:$REP/demo.v1.Echo/Say"); d_rps+=("$a"); d_lat+=("$b")
  read -r c d e < <(run "http://127.0.0.1:$GRPC/demo.v1.Echo/Say" "$GW_PID"); g_rps+=("$c"); g_lat+=("$d"); g_cpu+=("$e")
  # shellcheck disable=SC2086
  read -r f g h < <(run "http://127.0.0.1:$NGX/demo.v1.Echo/Say" $NGX_PIDS); n_rps+=("$f"); n_lat+=("$g"); n_cpu+=("$h")
  printf "  round %d: direct %8.0f calls/s %5.2f ms | gateway %8.0f calls/s %5.2f ms %6.2f us cpu/call | nginx %8.0f calls/s %5.2f ms %6.2f us cpu/call\n" \
    "$r" "$a" "$b" "$c" "$d" "$e" "$f" "$g" "$h"
done
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END {print (NR%2 ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2)}'; }
DR=$(median "${d_rps[@]}"); DL=$(median "${d_lat[@]}"); GR=$(median "${g_rps[@]}"); GL=$(median "${g_lat[@]}"); GC=$(median "${g_cpu[@]}")
NR_=$(median "${n_rps[@]}"); NL=$(median "${n_lat[@]}"); NC=$(median "${n_cpu[@]}")
echo
printf "%-10s %12s %10s %18s\n" "(median)" "calls/s" "mean ms" "proxy cpu/call us"
printf "%-10s %12.0f %10.2f %18s\n" direct "$DR" "$DL" "-"
printf "%-10s %12.0f %10.2f %18.2f\n" gateway "$GR" "$GL" "$GC"
printf "%-10s %12.0f %10.2f %18.2f\n" nginx "$NR_" "$NL" "$NC"
awk -v g="$GR" -v d="$DR" -v n="$NR_" -v gc="$GC" -v nc="$NC" \
  'BEGIN { printf "gateway/direct throughput %.2f   gateway/nginx throughput %.2f   CPU per call %.2f\n", g/d, g/n, gc/nc }'
