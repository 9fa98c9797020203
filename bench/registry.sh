#!/usr/bin/env bash
# Registry benchmark at fleet scale: registrations, heartbeats, memory per replica, the whole-registry read,
# and one very large service, against the release gateway, in one run. Rates are given as ratios to the same
# gateway's own `/healthz` rate, measured in the same run with the same wrk settings.
#
# Every replica address is on 127.0.0.0/8 (127.a.b.c:20000, one address per replica number): nothing is ever
# proxied to them, the gateway only holds them. Leases last 60 minutes, so nothing expires during the run.
#
# Two gateways are started one after the other (2 workers each, GATEWAY_LOG=warn):
#   A: /healthz rate, then one service "big" registering BIG replicas; the rate of the last fifth against
#      the rate of the first fifth (copying the replica list on every registration makes that ratio fall).
#   B: /healthz rate, then REPLICAS replicas over SERVICES services (the registration rate is the fill rate),
#      RSS per replica, heartbeats of HB_REPLICAS distinct replicas for DURATION seconds, /healthz again (B's
#      rates are ratios to the mean of its two /healthz rates), and one `GET /registry` of the whole fleet:
#      time to first byte, total time, size, RSS growth while serving it.
#
# Usage: bench/registry.sh
#   env: REPLICAS=1000000 SERVICES=1000 HB_REPLICAS=400000 BIG=100000 DURATION=10 THREADS=2 CONNS=32
#   BENCH_GATEWAY=path: measure that binary instead of building target/release/registry-gateway
#   quick run (< 2 minutes): QUICK=1 bench/registry.sh  (REPLICAS=100000 HB_REPLICAS=40000 BIG=100000 DURATION=5)
#   RATES_ONLY=1: only gateway B's /healthz, registration and heartbeat rates (no big service, no RSS, no
#   whole-registry read), for quick iterations on the two rate rows; combine with REPLICAS=... for scale
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -n "${QUICK:-}" ]; then
  : "${REPLICAS:=100000}" "${HB_REPLICAS:=40000}" "${BIG:=100000}" "${DURATION:=5}"
fi
REPLICAS=${REPLICAS:-1000000}
SERVICES=${SERVICES:-1000}
HB_REPLICAS=${HB_REPLICAS:-400000}
BIG=${BIG:-100000}
DURATION=${DURATION:-10}
THREADS=${THREADS:-2}
CONNS=${CONNS:-32}
[ "$HB_REPLICAS" -le "$REPLICAS" ] || HB_REPLICAS=$REPLICAS

missing=()
for tool in wrk curl python3; do command -v "$tool" >/dev/null 2>&1 || missing+=("$tool"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]}..." >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if [ -n "${BENCH_GATEWAY:-}" ]; then
  GW_BIN=$BENCH_GATEWAY
else
  CARGO_INCREMENTAL=0 cargo build --release -p registry-gateway --bins --locked -q
  GW_BIN=target/release/registry-gateway
fi
WORK=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
now() { date +%s.%N; }

# --- Lua scripts -------------------------------------------------------------------------------------------
# Registers replica numbers [REG_FIRST, REG_FIRST + REG_COUNT), thread t taking every THREADS-th number;
# replica n serves "<REG_PREFIX><n % REG_SERVICES>". With REG_OUT each thread writes "service id" lines
# to REG_OUT/ids.<t>; every thread writes REG_OUT/done.<t> when its share is registered, then stops.
cat > "$WORK/register.lua" <<'LUA'
local first = tonumber(os.getenv("REG_FIRST"))
local count = tonumber(os.getenv("REG_COUNT"))
local services = tonumber(os.getenv("REG_SERVICES"))
local prefix = os.getenv("REG_PREFIX")
local out = os.getenv("REG_OUT")
local keep = os.getenv("REG_KEEP") == "1"
local threads = tonumber(os.getenv("THREADS"))
local counter = 0
function setup(thread) thread:set("tid", counter); counter = counter + 1 end
local n, mine, got, bad, ids
function init(args)
  n = first + tid
  mine = 0
  for i = first + tid, first + count - 1, threads do mine = mine + 1 end
  got, bad = 0, 0
  if keep then ids = io.open(out .. "/ids." .. tid, "w") end
  if mine == 0 then io.open(out .. "/done." .. tid, "w"):close() end
end
-- The request head is formatted once; each request only adds its length and body (wrk.format, called per
-- request, cost the client as much CPU as the gateway spent on a registration, on the same two cores).
local head
local verified = false
function request()
  -- wrk calls thread 0's request() once to verify the script, and never sends that one.
  if tid == 0 and not verified then verified = true; return wrk.format("GET", "/healthz") end
  if n >= first + count then return wrk.format("GET", "/healthz") end
  if not head then
    head = wrk.format("POST", "/register", { ["Content-Type"] = "application/json" })
    head = head:sub(1, -3) .. "Content-Length: "
  end
  local k = n + 1
  n = n + threads
  local body = string.format('{"service":"%s%d","address":"http://127.%d.%d.%d:20000"}',
    prefix, (k - 1) % services, math.floor(k / 65536) % 256, math.floor(k / 256) % 256, k % 256)
  return head .. #body .. "\r\n\r\n" .. body
end
function response(status, hdrs, body)
  local id = body:match('"id":"([^"]+)"')
  if not id then return end
  got = got + 1
  if status ~= 201 then bad = bad + 1 end
  if ids then ids:write(body:match('"service":"([^"]+)"'), " ", id, "\n") end
  if got == mine then
    if ids then ids:close() end
    local f = io.open(out .. "/done." .. tid, "w"); f:write(bad, "\n"); f:close()
    wrk.thread:stop()
  end
end
LUA

# Heartbeats: thread t renews the first HB_PER_THREAD replicas of REG_OUT/ids.<t>, round and round. Every
# request is formatted once, up front, and there is no response() (wrk then hands no response to Lua), so
# that the client costs what it costs for /healthz; wrk's own count of non-2xx answers is checked instead.
cat > "$WORK/heartbeat.lua" <<'LUA'
local out = os.getenv("REG_OUT")
local per = tonumber(os.getenv("HB_PER_THREAD"))
local counter = 0
function setup(thread) thread:set("tid", counter); counter = counter + 1 end
local reqs, i = {}, 0
function init(args)
  for line in io.lines(out .. "/ids." .. tid) do
    if #reqs >= per then break end
    local svc, id = line:match("^(%S+) (%S+)$")
    reqs[#reqs + 1] = wrk.format("PUT", "/registry/" .. svc .. "/" .. id .. "/heartbeat")
  end
end
function request()
  i = i % #reqs + 1
  return reqs[i]
end
LUA

# --- helpers -----------------------------------------------------------------------------------------------
GW_PID=
start_gateway() {
  GW=$(free_port)
  [ "$GW" != 20000 ] || GW=$(free_port)
  # The gRPC listener on a free port too: the default 50050 may be taken on a shared machine.
  GRPC=$(free_port)
  [ "$GRPC" != 20000 ] || GRPC=$(free_port)
  cat > "$WORK/gw.yaml" <<YAML
listen: 127.0.0.1:$GW
grpc_listen: 127.0.0.1:$GRPC
workers: 2
lease:
  ttl: 60m
  heartbeat_interval: 20m
YAML
  GATEWAY_LOG=warn "$GW_BIN" --config "$WORK/gw.yaml" > "$WORK/gw.log" 2>&1 &
  GW_PID=$!; pids+=("$GW_PID")
  for _ in $(seq 200); do curl -sf -o /dev/null "http://127.0.0.1:$GW/healthz" && return 0; sleep 0.05; done
  echo "gateway not up" >&2; cat "$WORK/gw.log" >&2; exit 1
}
stop_gateway() { kill "$GW_PID"; wait "$GW_PID" 2>/dev/null || true; }
wrk_rate() { # wrk args... -> requests/s (a warning on stderr for any answer that was not 2xx or 3xx)
  wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" "$@" | awk '
    /^Requests\/sec:/ {print $2}
    /Non-2xx or 3xx responses:/ {print "  warning: " $NF " answers were not 2xx or 3xx" > "/dev/stderr"}'
}
# Whether every wrk thread wrote its done.<t> file.
all_done() { local t; for ((t = 0; t < THREADS; t++)); do [ -e "$WORK/done.$t" ] || return 1; done; }
# A fifo nobody writes to: `read -t` on it is a sleep without a process.
mkfifo "$WORK/tick"
exec 9<>"$WORK/tick"
# register FIRST COUNT SERVICES PREFIX KEEP -> registrations/s (wall clock from start to the last thread done)
register() {
  rm -f "$WORK"/done.*
  local t0 t1 w
  t0=$(now)
  REG_FIRST=$1 REG_COUNT=$2 REG_SERVICES=$3 REG_PREFIX=$4 REG_KEEP=$5 REG_OUT=$WORK THREADS=$THREADS \
    wrk -t"$THREADS" -c"$CONNS" -d3600s -s "$WORK/register.lua" "http://127.0.0.1:$GW" > "$WORK/wrk.out" 2>&1 &
  w=$!
  # Polled with shell builtins only: forking ls, grep and sleep 50 times a second took a fifth of a core
  # from the two the gateway and wrk share.
  until all_done; do
    kill -0 "$w" 2>/dev/null || { echo "wrk ended early:" >&2; cat "$WORK/wrk.out" >&2; exit 1; }
    read -rt 0.02 -u 9 || true
  done
  t1=$(now)
  kill "$w" 2>/dev/null || true; wait "$w" 2>/dev/null || true
  local bad; bad=$(cat "$WORK"/done.* | awk '{s += $1} END {print s + 0}')
  [ "$bad" = 0 ] || echo "  warning: $bad registrations did not answer 201" >&2
  awk -v n="$2" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", n / (b - a) }'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

echo "registry benchmark: $REPLICAS replicas over $SERVICES services, heartbeats over $HB_REPLICAS, one service of $BIG;"
echo "wrk -t$THREADS -c$CONNS, ${DURATION}s per timed run; gateway: release, 2 workers, lease 60m; $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"

# --- A: one big service ------------------------------------------------------------------------------------
if [ -z "${RATES_ONLY:-}" ]; then
start_gateway
HZ_A=$(wrk_rate "http://127.0.0.1:$GW/healthz")
FIFTH=$((BIG / 5))
BIG_FIRST=$(register 0 "$FIFTH" 1 big 0)
register "$FIFTH" $((BIG - 2 * FIFTH)) 1 big 0 > /dev/null
BIG_LAST=$(register $((BIG - FIFTH)) "$FIFTH" 1 big 0)
stop_gateway
fi

# --- B: the fleet ------------------------------------------------------------------------------------------
start_gateway
HZ=$(wrk_rate "http://127.0.0.1:$GW/healthz")
RSS0=$(rss_kb "$GW_PID")
REG=$(register 0 "$REPLICAS" "$SERVICES" svc- 1)
[ -n "${RATES_ONLY:-}" ] || sleep 2 # let the allocator settle before reading RSS
RSS1=$(rss_kb "$GW_PID")
HB=$(REG_OUT=$WORK HB_PER_THREAD=$((HB_REPLICAS / THREADS)) wrk_rate -s "$WORK/heartbeat.lua" "http://127.0.0.1:$GW")
# /healthz once more, after the fill and the heartbeats: the rates are given against the mean of the two
# (on a shared machine one reading alone can be a third off).
HZ_AFTER=$(wrk_rate "http://127.0.0.1:$GW/healthz")
HZ_FIRST=$HZ
HZ=$(awk -v a="$HZ_FIRST" -v b="$HZ_AFTER" 'BEGIN { printf "%.0f", (a + b) / 2 }')
if [ -n "${RATES_ONLY:-}" ]; then
  stop_gateway
  echo
  printf "%-58s %s\n" "figure" "measured"
  printf "%-58s %s\n" "/healthz (gateway B: before the fill | after the heartbeats)" "$HZ_FIRST/s | $HZ_AFTER/s"
  printf "%-58s %s\n" "registrations/s vs /healthz/s" "$(ratio "$REG" "$HZ") ($REG/s)"
  printf "%-58s %s\n" "heartbeats/s vs /healthz/s ($HB_REPLICAS distinct replicas)" "$(ratio "$HB" "$HZ") ($HB/s)"
  exit 0
fi

# One whole-registry read, RSS sampled every 10 ms meanwhile.
RSS2=$(rss_kb "$GW_PID")
( peak=$RSS2; while [ ! -f "$WORK/read.done" ]; do r=$(rss_kb "$GW_PID"); [ "$r" -gt "$peak" ] && peak=$r; echo "$peak" > "$WORK/peak"; sleep 0.01; done ) &
SAMPLER=$!
read -r TTFB TOTAL SIZE < <(curl -s -o /dev/null -w '%{time_starttransfer} %{time_total} %{size_download}\n' "http://127.0.0.1:$GW/registry")
touch "$WORK/read.done"; wait "$SAMPLER"
PEAK=$(cat "$WORK/peak")
sleep 1
RSS3=$(rss_kb "$GW_PID")
stop_gateway

echo
printf "%-58s %s\n" "figure" "measured"
printf "%-58s %s\n" "/healthz (gateway A | B before the fill, after the heartbeats)" "$HZ_A/s | $HZ_FIRST/s, $HZ_AFTER/s"
printf "%-58s %s\n" "$REPLICAS replicas over $SERVICES services: RSS per replica" \
  "$(awk -v a="$RSS0" -v b="$RSS1" -v n="$REPLICAS" 'BEGIN { printf "%.0f bytes (RSS %.0f MiB, %.0f MiB before)", (b - a) * 1024 / n, b / 1024, a / 1024 }')"
printf "%-58s %s\n" "registrations/s vs /healthz/s" "$(ratio "$REG" "$HZ") ($REG/s)"
printf "%-58s %s\n" "heartbeats/s vs /healthz/s ($HB_REPLICAS distinct replicas)" "$(ratio "$HB" "$HZ") ($HB/s)"
printf "%-58s %s\n" "GET /registry of the whole fleet" \
  "$(awk -v s="$SIZE" -v f="$TTFB" -v t="$TOTAL" -v a="$RSS2" -v p="$PEAK" -v c="$RSS3" 'BEGIN { printf "%.0f MB, first byte %.0f ms, total %.2f s, RSS +%.0f MiB at peak (+%.0f MiB after)", s / 1e6, f * 1000, t, (p - a) / 1024, (c - a) / 1024 }')"
printf "%-58s %s\n" "one service: registering replicas $((BIG - FIFTH))-$BIG vs 0-$FIFTH" "$(ratio "$BIG_LAST" "$BIG_FIRST") ($BIG_LAST/s vs $BIG_FIRST/s)"
