#!/usr/bin/env bash
# The run command: the gateway on its embedded in-process registry, plus three demo-http replicas of
# service `demo` (one flaky), each kept registered by a heartbeat loop. Ctrl-C stops everything and
# deregisters every replica. No Docker, no external services. Children run in their own sessions
# (setsid) so that Ctrl-C reaches this script first: it deregisters, then stops them in order.
set -euo pipefail
cd "$(dirname "$0")/.."

GW_PORT=${GW_PORT:-8080}
GW="http://127.0.0.1:${GW_PORT}"
LOGDIR=${LOGDIR:-$(mktemp -d)}

need() { command -v "$1" >/dev/null 2>&1; }
if ! need curl; then
  echo "installing curl..." >&2
  if [ "$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq curl >/dev/null; else sudo apt-get update -qq && sudo apt-get install -y -qq curl >/dev/null; fi
fi

echo "building (release)..."
cargo build --release --bins --locked -q
BIN=target/release

pids=()
cleanup() {
  trap - INT TERM EXIT
  echo
  echo "stopping: deregistering replicas..."
  for f in "$LOGDIR"/*.id; do
    [ -e "$f" ] || continue
    read -r svc id < "$f"
    curl -s -o /dev/null -w "  DELETE /registry/$svc/$id -> %{http_code}\n" -X DELETE "$GW/registry/$svc/$id" || true
  done
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  echo "stopped. logs were in $LOGDIR"
}
trap cleanup INT TERM EXIT

GATEWAY_LISTEN="127.0.0.1:${GW_PORT}" setsid "$BIN/registry-gateway" --config config/demo.yaml > "$LOGDIR/gateway.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do curl -sf "$GW/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
curl -sf "$GW/healthz" >/dev/null || { echo "gateway did not start:"; cat "$LOGDIR/gateway.log"; exit 1; }

# Registers <service> <address> and keeps it alive: heartbeat every 5 s, register again on 404.
# Stops when the replica's process is gone, so its lease then expires on the gateway.
keep_registered() {
  local svc=$1 addr=$2 pid=$3 name=$4 id=""
  while kill -0 "$pid" 2>/dev/null; do
    if [ -z "$id" ] || [ "$(curl -s -o /dev/null -w '%{http_code}' -X PUT "$GW/registry/$svc/$id/heartbeat")" = 404 ]; then
      id=$(curl -s -X POST "$GW/register" -H 'content-type: application/json' \
        -d "{\"service\":\"$svc\",\"address\":\"$addr\",\"metadata\":{\"name\":\"$name\"}}" | sed -n 's/.*"id":"\([^"]*\)".*/\1/p')
      [ -n "$id" ] && echo "$svc $id" > "$LOGDIR/$name.id"
    fi
    sleep 5
  done
  rm -f "$LOGDIR/$name.id"
}

start_replica() {
  local name=$1 port=$2; shift 2
  setsid "$BIN/demo-http" --name "$name" --port "$port" "$@" > "$LOGDIR/$name.log" 2>&1 &
  local pid=$!
  pids+=("$pid")
  for _ in $(seq 50); do curl -sf "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break; sleep 0.1; done
  keep_registered demo "http://127.0.0.1:$port" "$pid" "$name" &
  pids+=($!)
  echo "  demo-http $name on :$port (pid $pid) $*"
}

echo "gateway on $GW (log: $LOGDIR/gateway.log)"
start_replica a 9001
start_replica b 9002
start_replica c 9003 --fail-rate 0.3
sleep 0.5

cat <<TXT

Everything is up. Try:
  curl -s $GW/demo/hello                         # round-robin over a, b, c (watch the "replica" field)
  for i in \$(seq 9); do curl -s $GW/demo/hello; echo; done
  curl -s $GW/registry | python3 -m json.tool    # every replica: state, counters, last heartbeat
  curl -s $GW/demo/echo/anything?x=1             # what the replica received (headers, path, body)

Failure handling:
  c is flaky (30% of answers are 500): GETs are retried on the next replica, so clients see 200;
  its breaker opens after 3 failures in a row, and it is evicted after 5:
    grep -E 'CIRCUIT|EVICT' $LOGDIR/gateway.log
  Kill a replica and keep sending traffic: no client request fails, its breaker opens, and its lease
  expires 15 s later:
    kill \$(pgrep -f 'demo-http --name b')
    for i in \$(seq 20); do curl -s -o /dev/null -w '%{http_code} ' $GW/demo/hello; done; echo
  Bring it back (it registers again; a replica evicted for failures returns on probation):
    $BIN/demo-http --name b --port 9002 &   then register it:
    curl -s -X POST $GW/register -d '{"service":"demo","address":"http://127.0.0.1:9002"}'

Ctrl-C stops everything; every replica deregisters.
TXT
wait "${pids[0]}"
