#!/usr/bin/env bash
# Proxy benchmark: the gateway against nginx, same two backends, same worker count, in one run.
#
# Layout on a 2-core machine: wrk pinned to core 0, the proxy under test on core 1, backends where BACKEND_CPU says.
# nginx and the gateway are measured alternately, ROUNDS times each, DURATION per run; the script prints
# each run, then the median requests/s and p99 latency of each and the gateway/nginx throughput ratio.
#
# Usage: bench/proxy.sh   (env: WORKERS=1 CONNS=32 DURATION=10s ROUNDS=3 WRK_CPU=0 SUT_CPU=1 BACKEND_CPU=$WRK_CPU)
# By default the proxy has core 1 to itself (backends beside wrk on core 0): the proxy is the bottleneck
# and its wake-ups of the backends do not preempt it. BACKEND_CPU=1 puts proxy and backends on one core.
set -euo pipefail
cd "$(dirname "$0")/.."

WORKERS=${WORKERS:-1}
CONNS=${CONNS:-32}
DURATION=${DURATION:-10s}
ROUNDS=${ROUNDS:-3}
WRK_CPU=${WRK_CPU:-0}
SUT_CPU=${SUT_CPU:-1}
BACKEND_CPU=${BACKEND_CPU:-$WRK_CPU}

need() { command -v "$1" >/dev/null 2>&1; }
missing=()
need nginx || missing+=(nginx-light)
need wrk || missing+=(wrk)
need curl || missing+=(curl)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]}..." >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

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
wait_http() { for _ in $(seq 100); do curl -sf -o /dev/null "$1" && return 0; sleep 0.05; done; echo "not up: $1" >&2; exit 1; }

B1=$(free_port); B2=$(free_port); NG=$(free_port); GW=$(free_port)
for p in $B1 $B2; do
  taskset -c "$BACKEND_CPU" "$BIN/demo-http" --name "b$p" --port "$p" --workers 1 > "$WORK/b$p.log" 2>&1 &
  pids+=($!)
done
wait_http "http://127.0.0.1:$B1/ping"; wait_http "http://127.0.0.1:$B2/ping"

cat > "$WORK/nginx.conf" <<NGINX
worker_processes $WORKERS;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  upstream svc { server 127.0.0.1:$B1; server 127.0.0.1:$B2; keepalive 64; }
  server {
    listen 127.0.0.1:$NG;
    location /svc/ {
      proxy_pass http://svc/;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host \$proxy_host;
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto \$scheme;
      proxy_set_header X-Forwarded-Host \$host;
    }
  }
}
NGINX
taskset -c "$SUT_CPU" "$NGINX" -c "$WORK/nginx.conf" -p "$WORK" -g 'daemon on;'
wait_http "http://127.0.0.1:$NG/svc/ping"

cat > "$WORK/gateway.yaml" <<YAML
listen: 127.0.0.1:$GW
grpc_listen: 127.0.0.1:0
workers: $WORKERS
services:
  svc: [http://127.0.0.1:$B1, http://127.0.0.1:$B2]
YAML
GATEWAY_LOG=warn taskset -c "$SUT_CPU" "$BIN/registry-gateway" --config "$WORK/gateway.yaml" > "$WORK/gateway.log" 2>&1 &
pids+=($!)
wait_http "http://127.0.0.1:$GW/svc/ping"

cpu_ticks() { # total utime+stime of the given pids, in clock ticks
  local t=0 p
  for p in "$@"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done
  echo "$t"
}
HZ=$(getconf CLK_TCK)

run() { # name url pids... -> "rps p99_ms cpu_us_per_request"
  local out rps p99 name=$1 url=$2; shift 2
  local t0; t0=$(cpu_ticks "$@")
  out=$(taskset -c "$WRK_CPU" wrk -t1 -c"$CONNS" -d"$DURATION" --latency "$url")
  local t1; t1=$(cpu_ticks "$@")
  local total; total=$(awk '/requests in/ {print $1}' <<<"$out")
  rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {v=$2; if (v ~ /us$/) {sub(/us/,"",v); v=v/1000} else if (v ~ /ms$/) {sub(/ms/,"",v)} else if (v ~ /s$/) {sub(/s/,"",v); v=v*1000}; print v}' <<<"$out")
  local errs; errs=$(awk '/Non-2xx|Socket errors/ {print}' <<<"$out")
  [ -n "$errs" ] && echo "  $name: $errs" >&2
  local us; us=$(awk -v d=$((t1 - t0)) -v hz="$HZ" -v n="$total" 'BEGIN { printf "%.2f", d * 1e6 / hz / n }')
  echo "$rps $p99 $us"
}

echo "proxy benchmark: wrk -t1 -c$CONNS -d$DURATION on cpu $WRK_CPU; proxy on cpu $SUT_CPU; 2 backends on cpu $BACKEND_CPU; $WORKERS worker(s)"
# Warm both up (connection pools, page cache).
taskset -c "$WRK_CPU" wrk -t1 -c"$CONNS" -d2s "http://127.0.0.1:$NG/svc/ping" >/dev/null
taskset -c "$WRK_CPU" wrk -t1 -c"$CONNS" -d2s "http://127.0.0.1:$GW/svc/ping" >/dev/null
NGINX_MASTER=$(cat "$WORK/nginx.pid"); NGINX_PIDS="$NGINX_MASTER $(pgrep -P "$NGINX_MASTER" | tr "\n" " ")"
GW_PID=${pids[-1]}
ng_rps=(); ng_p99=(); ng_cpu=(); gw_rps=(); gw_p99=(); gw_cpu=()
for r in $(seq "$ROUNDS"); do
  # shellcheck disable=SC2086
  read -r a b e < <(run nginx "http://127.0.0.1:$NG/svc/ping" $NGINX_PIDS); ng_rps+=("$a"); ng_p99+=("$b"); ng_cpu+=("$e")
  read -r c d f < <(run gateway "http://127.0.0.1:$GW/svc/ping" "$GW_PID"); gw_rps+=("$c"); gw_p99+=("$d"); gw_cpu+=("$f")
  printf "  round %d: nginx %8.0f req/s p99 %5.2f ms %5.2f us cpu/req | gateway %8.0f req/s p99 %5.2f ms %5.2f us cpu/req\n" \
    "$r" "$a" "$b" "$e" "$c" "$d" "$f"
done
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END {print (NR%2 ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2)}'; }
NR_=$(median "${ng_rps[@]}"); NP=$(median "${ng_p99[@]}"); NC=$(median "${ng_cpu[@]}")
GR=$(median "${gw_rps[@]}"); GP=$(median "${gw_p99[@]}"); GC=$(median "${gw_cpu[@]}")
echo
printf "%-10s %12s %10s %16s\n" "(median)" "req/s" "p99 ms" "proxy cpu/req us"
printf "%-10s %12.0f %10.2f %16.2f\n" nginx "$NR_" "$NP" "$NC" gateway "$GR" "$GP" "$GC"
awk -v g="$GR" -v n="$NR_" -v gc="$GC" -v nc="$NC" \
  'BEGIN { printf "gateway/nginx throughput ratio: %.2f   proxy CPU per request, gateway/nginx: %.2f\n", g/n, gc/nc }'
