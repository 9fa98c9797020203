#!/usr/bin/env bash
# Redis-mode benchmark, three figures in one run:
#  1. proxy throughput of one gateway in Redis mode against memory mode (same registered backends);
#  2. time from a breaker opening on gateway A to gateway B skipping that replica (log timestamps);
#  3. registrations per second, memory and Redis mode.
# Installs redis-server, wrk and curl from Debian when missing.
# Usage: bench/redis.sh   (env: DURATION=6s ROUNDS=3 TRIALS=5)
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-6s}; ROUNDS=${ROUNDS:-3}; TRIALS=${TRIALS:-5}
missing=()
for t in redis-server:redis-server wrk:wrk curl:curl; do command -v "${t%%:*}" >/dev/null 2>&1 || missing+=("${t#*:}"); done
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
cargo build --release --bins --locked -q
BIN=target/release
WORK=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { for _ in $(seq 100); do curl -sf -o /dev/null "$1" && return 0; sleep 0.05; done; echo "not up: $1" >&2; exit 1; }
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END {print (NR%2 ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2)}'; }

RP=$(free_port)
redis-server --port "$RP" --bind 127.0.0.1 --save '' --appendonly no > "$WORK/redis.log" 2>&1 &
pids+=($!)
for _ in $(seq 50); do redis-cli -p "$RP" ping >/dev/null 2>&1 && break; sleep 0.1; done

start_gateway() { # name store -> sets GW_<name> url and PID_<name>
  local port; port=$(free_port)
  printf 'listen: 127.0.0.1:%s\ngrpc_listen: 127.0.0.1:0\nworkers: 1\nstore: %s\nlease: { ttl: 10m, heartbeat_interval: 1m }\nbreaker: { failure_threshold: 3, open_timeout: 60s }\n' \
    "$port" "$2" > "$WORK/$1.yaml"
  GATEWAY_LOG=warn taskset -c 1 "$BIN/registry-gateway" --config "$WORK/$1.yaml" > "$WORK/$1.log" 2>&1 &
  pids+=($!)
  eval "GW_$1=http://127.0.0.1:$port; PID_$1=$!"
  wait_http "http://127.0.0.1:$port/healthz"
}
start_gateway mem memory
start_gateway red "redis://127.0.0.1:$RP/0"
B1=$(free_port); B2=$(free_port)
for p in $B1 $B2; do
  taskset -c 0 "$BIN/demo-http" --name "b$p" --port "$p" > "$WORK/b$p.log" 2>&1 &
  pids+=($!)
  wait_http "http://127.0.0.1:$p/ping"
  for gw in "$GW_mem" "$GW_red"; do
    curl -s -o /dev/null -X POST -H "content-type: application/json" "$gw/register" -d "{\"service\":\"svc\",\"address\":\"http://127.0.0.1:$p\"}"
  done
done

echo "1) proxy throughput, one gateway (1 worker, core 1), memory vs Redis mode: wrk -t1 -c32 -d$DURATION"
HZ=$(getconf CLK_TCK)
run() { # url pid -> "req/s cpu_us_per_request"
  local t0 t1 out n
  t0=$(awk '{print $14 + $15}' "/proc/$2/stat")
  out=$(taskset -c 0 wrk -t1 -c32 -d"$DURATION" "$1/svc/ping")
  t1=$(awk '{print $14 + $15}' "/proc/$2/stat")
  n=$(awk '/requests in/ {print $1}' <<<"$out")
  echo "$(awk '/^Requests\/sec:/ {print $2}' <<<"$out") $(awk -v d=$((t1 - t0)) -v hz="$HZ" -v n="$n" 'BEGIN { printf "%.2f", d * 1e6 / hz / n }')"
}
taskset -c 0 wrk -t1 -c32 -d2s "$GW_mem/svc/ping" >/dev/null; taskset -c 0 wrk -t1 -c32 -d2s "$GW_red/svc/ping" >/dev/null
m=(); r=(); mc=(); rc=()
for i in $(seq "$ROUNDS"); do
  # Alternate which mode goes first, so that drift on the machine does not favour one.
  if [ $((i % 2)) = 1 ]; then read -r a ac < <(run "$GW_mem" "$PID_mem"); read -r b bc < <(run "$GW_red" "$PID_red")
  else read -r b bc < <(run "$GW_red" "$PID_red"); read -r a ac < <(run "$GW_mem" "$PID_mem"); fi
  m+=("$a"); r+=("$b"); mc+=("$ac"); rc+=("$bc")
  printf "   round %d: memory %9.0f req/s %6.2f us cpu/req | redis %9.0f req/s %6.2f us cpu/req\n" "$i" "$a" "$ac" "$b" "$bc"
done
M=$(median "${m[@]}"); R=$(median "${r[@]}"); MC=$(median "${mc[@]}"); RC=$(median "${rc[@]}")
awk -v m="$M" -v r="$R" -v mc="$MC" -v rc="$RC" 'BEGIN { printf "   median: memory %.0f req/s %.2f us/req, redis %.0f req/s %.2f us/req: throughput redis/memory = %.3f, cpu redis/memory = %.3f\n", m, mc, r, rc, r/m, rc/mc }'

echo "2) breaker opened on gateway A -> gateway B skips the replica ($TRIALS trials)"
start_gateway ga "redis://127.0.0.1:$RP/0"
start_gateway gb "redis://127.0.0.1:$RP/0"
GOOD=$(free_port)
"$BIN/demo-http" --name good --port "$GOOD" > "$WORK/good.log" 2>&1 &
pids+=($!)
wait_http "http://127.0.0.1:$GOOD/ping"
curl -s -o /dev/null -X POST -H "content-type: application/json" "$GW_ga/register" -d "{\"service\":\"prop\",\"address\":\"http://127.0.0.1:$GOOD\"}"
lags=()
stamp() { grep -m1 -F "$1" "$2" | cut -c12-26 | awk -F: '{printf "%.6f\n", $1*3600 + $2*60 + $3}'; }
for t in $(seq "$TRIALS"); do
  P=$(free_port)
  "$BIN/demo-http" --name "t$t" --port "$P" > "$WORK/t$t.log" 2>&1 &
  tp=$!
  wait_http "http://127.0.0.1:$P/ping"
  curl -s -o /dev/null -X POST -H "content-type: application/json" "$GW_ga/register" -d "{\"service\":\"prop\",\"address\":\"http://127.0.0.1:$P\"}"
  for _ in $(seq 100); do curl -s "$GW_gb/registry/prop" | grep -q ":$P\"" && break; sleep 0.02; done
  kill -9 "$tp"; wait "$tp" 2>/dev/null || true
  for _ in $(seq 20); do curl -s -o /dev/null "$GW_ga/prop/ping"; done
  for _ in $(seq 100); do grep -q "127.0.0.1:$P OPEN (reported by a peer" "$WORK/gb.log" && break; sleep 0.02; done
  a=$(stamp "127.0.0.1:$P OPEN (threshold reached)" "$WORK/ga.log"); b=$(stamp "127.0.0.1:$P OPEN (reported by a peer" "$WORK/gb.log")
  lag=$(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.2f", (b - a) * 1000 }')
  lags+=("$lag"); echo "   trial $t: B opened $lag ms after A"
done
printf "   median %s ms, max %s ms\n" "$(median "${lags[@]}")" "$(printf '%s\n' "${lags[@]}" | sort -g | tail -1)"

kill "$PID_ga" "$PID_gb" 2>/dev/null || true
echo "3) registrations per second, one gateway (unique replicas, wrk -t1 -c16 -d$DURATION)"
cat > "$WORK/register.lua" <<'LUA'
counter = 0
request = function()
  counter = counter + 1
  local body = string.format('{"service":"reg%d","address":"http://10.%d.%d.%d:%d"}',
    counter % 500, math.random(0,255), math.random(0,255), math.random(1,254), 1000 + counter % 60000)
  return wrk.format("POST", "/register", {["content-type"] = "application/json"}, body)
end
LUA
for g in mem red; do
  url=$(eval echo "\$GW_$g")
  n=$(taskset -c 0 wrk -t1 -c16 -d"$DURATION" -s "$WORK/register.lua" "$url" | awk '/^Requests\/sec:/ {print $2}')
  printf "   %-6s %9.0f registrations/s\n" "$([ $g = mem ] && echo memory || echo redis)" "$n"
done
sleep 1
echo "   replicas in Redis afterwards: $(redis-cli -p "$RP" --scan --pattern 'rgw:replica:*' | wc -l) (every registration written)"
