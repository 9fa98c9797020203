#!/usr/bin/env bash
# Proxy benchmark: the gateway against nginx, same two backends, same worker count, in one run.
#
# Layout on a 2-core machine: wrk pinned to core 0, the proxy under test on core 1, backends where BACKEND_CPU says.
# nginx and the gateway are measured alternately, ROUNDS times each, DURATION per run; the script prints
# each run, then for each the medians of requests/s, p50 and p99 latency, the proxy's own CPU per request
# (user and system, from /proc/<pid>/stat), its RSS after the runs, and the gateway/nginx ratios. Then a
# short separate run of each under `strace -c -f` counts system calls per request (SYSCALLS=0 skips it).
#
# Usage: bench/proxy.sh   (env: WORKERS=1 CONNS=32 DURATION=10s ROUNDS=3 WRK_CPU=0 SUT_CPU=1 BACKEND_CPU=$WRK_CPU
#                          SYSCALLS=1 PIPELINE=16 PIPELINE_BUDGET=2ms GATEWAY_BIN=target/release/registry-gateway)
# Besides nginx and the gateway as it ships, a third proxy is measured when PIPELINE > 1: the gateway with
# `upstream.pipeline: $PIPELINE` and `upstream.pipeline_budget: $PIPELINE_BUDGET` (PIPELINE=1 leaves it
# out). Under strace the gateway runs several times slower, its replicas' answers look slower, and the
# budget may stop batching there: the system-call count of that run can be raised by a larger budget.
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
SYSCALLS=${SYSCALLS:-1}
PIPELINE=${PIPELINE:-16}
PIPELINE_BUDGET=${PIPELINE_BUDGET:-2ms}

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
GATEWAY_BIN=${GATEWAY_BIN:-$BIN/registry-gateway}
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
BACKEND_PIDS=("${pids[@]}")
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

# The gateway as it ships (no pipelining) and, with PIPELINE > 1, a second one with `upstream.pipeline`.
start_gateway() { # port pipeline -> pid in GATEWAY_STARTED
  cat > "$WORK/gateway-$1.yaml" <<YAML
listen: 127.0.0.1:$1
grpc_listen: 127.0.0.1:0
workers: $WORKERS
upstream: { pipeline: $2, pipeline_budget: $PIPELINE_BUDGET }
services:
  svc: [http://127.0.0.1:$B1, http://127.0.0.1:$B2]
YAML
  GATEWAY_LOG=warn taskset -c "$SUT_CPU" "$GATEWAY_BIN" --config "$WORK/gateway-$1.yaml" > "$WORK/gateway-$1.log" 2>&1 &
  pids+=($!)
  GATEWAY_STARTED=$!
  wait_http "http://127.0.0.1:$1/svc/ping"
}
start_gateway "$GW" 1
GW_PID=$GATEWAY_STARTED
NGINX_MASTER=$(cat "$WORK/nginx.pid"); NGINX_PIDS="$NGINX_MASTER $(pgrep -P "$NGINX_MASTER" | tr "\n" " ")"
# name, URL and pids of each proxy under test
names=(nginx gateway); urls=("http://127.0.0.1:$NG/svc/ping" "http://127.0.0.1:$GW/svc/ping"); spids=("$NGINX_PIDS" "$GW_PID")
if [ "$PIPELINE" -gt 1 ]; then
  GWP=$(free_port)
  start_gateway "$GWP" "$PIPELINE"
  names+=("gw+pipe$PIPELINE"); urls+=("http://127.0.0.1:$GWP/svc/ping"); spids+=("$GATEWAY_STARTED")
fi

ctx_switches() { # context switches of every thread of the given pids: "voluntary involuntary"
  cat $(for p in "$@"; do echo /proc/"$p"/task/*/status; done) 2>/dev/null \
    | awk '/^voluntary_ctxt_switches/ {v += $2} /^nonvoluntary_ctxt_switches/ {n += $2} END {print v + 0, n + 0}'
}
cpu_ticks() { # utime and stime of the given pids, in clock ticks: "user sys"
  local u=0 s=0 p
  for p in "$@"; do
    read -r a b < <(awk '{print $14, $15}' "/proc/$p/stat")
    u=$((u + a)); s=$((s + b))
  done
  echo "$u $s"
}
HZ=$(getconf CLK_TCK)
rss_mib() { # resident memory of the given pids, MiB
  local k=0 p
  for p in "$@"; do k=$((k + $(awk '/^VmRSS:/ {print $2}' "/proc/$p/status"))); done
  awk -v k="$k" 'BEGIN { printf "%.1f", k / 1024 }'
}
ms() { # a wrk latency ("812.00us", "1.73ms", "1.2s") in ms
  awk -v v="$1" 'BEGIN { if (v ~ /us$/) {sub(/us/,"",v); v=v/1000} else if (v ~ /ms$/) {sub(/ms/,"",v)} else if (v ~ /s$/) {sub(/s/,"",v); v=v*1000}; print v }'
}

out_segs() { awk '$1 == "Tcp:" && $2 ~ /^[0-9]/ {print $12}' /proc/net/snmp; } # TCP segments sent, machine-wide

run() { # name url pids... -> "rps p50_ms p99_ms user_us sys_us segments backend_us", all per request
  local out rps p50 p99 name=$1 url=$2; shift 2
  local u0 s0 u1 s1 g0 g1 bu0 bs0 bu1 bs1 v0 n0 v1 n1
  read -r v0 n0 < <(ctx_switches "$@" "${BACKEND_PIDS[@]}")
  read -r u0 s0 < <(cpu_ticks "$@"); read -r bu0 bs0 < <(cpu_ticks "${BACKEND_PIDS[@]}"); g0=$(out_segs)
  out=$(taskset -c "$WRK_CPU" wrk -t1 -c"$CONNS" -d"$DURATION" --latency "$url")
  g1=$(out_segs); read -r bu1 bs1 < <(cpu_ticks "${BACKEND_PIDS[@]}"); read -r u1 s1 < <(cpu_ticks "$@")
  read -r v1 n1 < <(ctx_switches "$@" "${BACKEND_PIDS[@]}")
  local total; total=$(awk '/requests in/ {print $1}' <<<"$out")
  rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
  p50=$(ms "$(awk '$1=="50%" {print $2}' <<<"$out")")
  p99=$(ms "$(awk '$1=="99%" {print $2}' <<<"$out")")
  local errs; errs=$(awk '/Non-2xx|Socket errors/ {print}' <<<"$out")
  [ -n "$errs" ] && echo "  $name: $errs" >&2
  local us; us=$(awk -v du=$((u1 - u0)) -v ds=$((s1 - s0)) -v hz="$HZ" -v n="$total" -v dg=$((g1 - g0)) \
    -v db=$((bu1 - bu0 + bs1 - bs0)) -v dc=$((v1 - v0 + n1 - n0)) \
    'BEGIN { printf "%.2f %.2f %.2f %.2f %.3f", du * 1e6 / hz / n, ds * 1e6 / hz / n, dg / n, db * 1e6 / hz / n, dc / n }')
  echo "$rps $p50 $p99 $us"
}

syscalls() { # name url pids... -> "syscalls_per_request top-5 breakdown"; a 3 s run under strace -c -f
  local name=$1 url=$2 out total p t; shift 2
  local args=()
  for p in "$@"; do for t in /proc/"$p"/task/*; do args+=(-p "${t##*/}"); done; done
  strace -c -f -o "$WORK/strace-$name" "${args[@]}" 2>/dev/null &
  local sp=$!
  sleep 1
  out=$(taskset -c "$WRK_CPU" wrk -t1 -c"$CONNS" -d3s "$url")
  kill -INT "$sp"; wait "$sp" 2>/dev/null || true
  total=$(awk '/requests in/ {print $1}' <<<"$out")
  local all; all=$(awk '$NF == "total" {print $4}' "$WORK/strace-$name")
  local top; top=$(awk -v n="$total" '$1 ~ /^[0-9.]+$/ && $NF != "total" && NF >= 5 {printf "%.2f %s\n", $4 / n, $NF}' "$WORK/strace-$name" \
    | sort -rg | head -5 | awk '{printf "%s%s %s", (NR > 1 ? ", " : ""), $2, $1}')
  awk -v a="$all" -v n="$total" -v t="$top" 'BEGIN { printf "%.2f  (%s)", a / n, t }'
}

echo "proxy benchmark: wrk -t1 -c$CONNS -d$DURATION on cpu $WRK_CPU; proxy on cpu $SUT_CPU; 2 backends on cpu $BACKEND_CPU; $WORKERS worker(s)"
echo "per request: the proxy's CPU (user+sys), TCP segments sent (all processes), the backends' CPU, context switches (proxy and backends)"
# Warm every proxy up (connection pools, page cache).
for i in "${!names[@]}"; do taskset -c "$WRK_CPU" wrk -t1 -c"$CONNS" -d2s "${urls[$i]}" >/dev/null; done
declare -A results
for r in $(seq "$ROUNDS"); do
  for i in "${!names[@]}"; do
    # shellcheck disable=SC2086
    out=$(run "${names[$i]}" "${urls[$i]}" ${spids[$i]})
    results[$i]+="$out"$'\n'
    read -r a1 _ a3 a4 a5 a6 a7 a8 <<<"$out"
    printf "  round %d %-12s %7.0f req/s  p99 %5.2f ms  cpu %5.2f+%5.2f us  segs %4.2f  backends %5.2f us  cs %5.3f\n" \
      "$r" "${names[$i]}" "$a1" "$a3" "$a4" "$a5" "$a6" "$a7" "$a8"
  done
done
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END {print (NR%2 ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2)}'; }
# shellcheck disable=SC2046
med() { median $(printf '%s' "${results[$2]}" | awk -v i="$1" 'NF {print $i}'); }
echo
printf "%-12s %9s %7s %7s %8s %8s %8s %6s %9s %8s\n" "(median)" "req/s" "p50 ms" "p99 ms" "user us" "sys us" "cpu us" "segs" "backends" "RSS MiB"
declare -A M
for i in "${!names[@]}"; do
  for c in 1 2 3 4 5 6 7; do M[$i,$c]=$(med "$c" "$i"); done
  # shellcheck disable=SC2086
  printf "%-12s %9.0f %7.2f %7.2f %8.2f %8.2f %8.2f %6.2f %9.2f %8s\n" "${names[$i]}" "${M[$i,1]}" "${M[$i,2]}" "${M[$i,3]}" \
    "${M[$i,4]}" "${M[$i,5]}" "$(awk -v a="${M[$i,4]}" -v b="${M[$i,5]}" 'BEGIN{print a+b}')" "${M[$i,6]}" "${M[$i,7]}" "$(rss_mib ${spids[$i]})"
done
for i in "${!names[@]}"; do
  [ "$i" = 0 ] && continue
  awk -v who="${names[$i]}" -v g="${M[$i,1]}" -v n="${M[0,1]}" -v gu="${M[$i,4]}" -v gs="${M[$i,5]}" -v nu="${M[0,4]}" -v ns="${M[0,5]}" \
    -v gp="${M[$i,3]}" -v np="${M[0,3]}" \
    'BEGIN { printf "%s/nginx: throughput %.2f   proxy CPU per request %.2f   p99 %.2f\n", who, g/n, (gu+gs)/(nu+ns), gp/np }'
done
if [ "$SYSCALLS" = 1 ]; then
  echo "system calls per request (3 s under strace -c -f; top 5):"
  for i in "${!names[@]}"; do
    # shellcheck disable=SC2086
    printf "  %-12s %s\n" "${names[$i]}" "$(syscalls "${names[$i]}" "${urls[$i]}" ${spids[$i]})"
  done
fi
