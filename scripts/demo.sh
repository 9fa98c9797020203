#!/usr/bin/env bash
# The run command: the gateway on its embedded in-process registry, three demo-http replicas of service
# `demo` (one flaky), a `users` service and an `orders` service that calls users through the gateway, and
# two demo-grpc replicas of `echo` (gRPC demo.v1.Echo).
# Every replica registers itself through the client SDK. Ctrl-C stops everything cleanly: each replica
# deregisters, then the gateway stops. No Docker, no external services.
#
# Children run in their own sessions (setsid) so that Ctrl-C reaches this script only: it then stops
# them in order (replicas first, so they can still deregister; the gateway last).
set -euo pipefail
cd "$(dirname "$0")/.."

GW_PORT=${GW_PORT:-8080}
GW="http://127.0.0.1:${GW_PORT}"
GRPC="http://127.0.0.1:${GRPC_PORT:-50050}"
LOGDIR=${LOGDIR:-$(mktemp -d)}

if ! command -v curl >/dev/null 2>&1; then
  echo "installing curl..." >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq curl >/dev/null
fi

echo "building (release)..."
cargo build --release --bins --locked -q
BIN=target/release

gateway_pid=""
replica_pids=()
cleanup() {
  # A second Ctrl-C must not cut the clean stop short: ignore it until everything is down.
  trap "" INT TERM
  trap - EXIT
  echo
  echo "stopping replicas (each deregisters)..."
  # Replicas started by hand from the lines printed below (the restart example) stop too: every demo
  # process pointed at this gateway.
  mapfile -t by_hand < <(pgrep -f -- "demo-(http|grpc) .*--gateway ($GW|$GRPC)( |\$)" || true)
  replica_pids+=("${by_hand[@]}")
  for p in "${replica_pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${replica_pids[@]}"; do
    for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  done
  grep -h "deregistered" "$LOGDIR"/*.log 2>/dev/null | sed 's/^/  /' || true
  echo "registry now: $(curl -s "$GW/registry" || echo unreachable)"
  [ -n "$gateway_pid" ] && kill -TERM "$gateway_pid" 2>/dev/null || true
  wait 2>/dev/null || true
  echo "stopped. logs are in $LOGDIR"
}
trap cleanup INT TERM EXIT

GATEWAY_LISTEN="127.0.0.1:${GW_PORT}" GATEWAY_GRPC_LISTEN="127.0.0.1:${GRPC_PORT:-50050}" setsid "$BIN/registry-gateway" --config config/demo.yaml > "$LOGDIR/gateway.log" 2>&1 &
gateway_pid=$!
for _ in $(seq 100); do curl -sf "$GW/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
curl -sf "$GW/healthz" >/dev/null || { echo "gateway did not start:"; cat "$LOGDIR/gateway.log"; exit 1; }
echo "gateway on $GW (log: $LOGDIR/gateway.log)"

replica() { # name port service [flags...]
  local name=$1 port=$2 service=$3; shift 3
  setsid "$BIN/demo-http" --name "$name" --port "$port" --service "$service" --gateway "$GW" "$@" \
    > "$LOGDIR/$name.log" 2>&1 &
  replica_pids+=($!)
  echo "  $service: demo-http $name on :$port $*"
}
replica a 9001 demo
replica b 9002 demo
replica c 9003 demo --fail-rate 0.3
replica users-1 9011 users
replica orders-1 9012 orders --users-url "$GW/users"
grpc_replica() { # name port [flags...]
  local name=$1 port=$2; shift 2
  setsid "$BIN/demo-grpc" --name "$name" --port "$port" "$@" > "$LOGDIR/$name.log" 2>&1 &
  replica_pids+=($!)
  echo "  echo (gRPC demo.v1.Echo): demo-grpc $name on :$port $*"
}
grpc_replica echo-1 9101 --gateway "$GW"
grpc_replica echo-2 9102 --gateway "$GRPC" --via-grpc

registered() { curl -s "$GW/registry" | grep -o '"address"' | wc -l; }
for _ in $(seq 300); do
  [ "$(registered)" -ge 7 ] && break
  sleep 0.1
done
if [ "$(registered)" -lt 7 ]; then
  echo "demo.sh: after 30 s only $(registered) of the 7 replicas are registered (logs in $LOGDIR)" >&2
  exit 1
fi

cat <<TXT

All 7 replicas registered themselves (echo-2 over the gRPC registration API). Try:
  curl -s $GW/demo/hello                          # round-robin over a, b, c ("replica" field)
  for i in \$(seq 9); do curl -s $GW/demo/hello; echo; done
  curl -s $GW/orders/orders                       # orders looks users up through the gateway
  curl -s $GW/registry | python3 -m json.tool     # every replica: state, counters, last heartbeat

gRPC through the gateway's gRPC listener ($GRPC), round-robin over echo-1 and echo-2 (a raw
unary call with curl; the answer is protobuf, "strings" shows the message and the replica):
  printf '\x00\x00\x00\x00\x04\x0a\x02hi' | curl -s --http2-prior-knowledge -H 'content-type: application/grpc' \\
    -H 'te: trailers' --data-binary @- $GRPC/demo.v1.Echo/Say | strings

Failure handling (log: $LOGDIR/gateway.log):
  c is flaky (30% of its answers are 500): GETs move to the next replica, clients see 200. It rarely
  fails 3 times in a row, but its breaker opens once a quarter of its requests in a 10 s window failed
  (at least 10 requests: config/demo.yaml), and it is probed again after 5 s:
    for i in \$(seq 60); do curl -s -o /dev/null $GW/demo/hello; done
    grep -E 'CIRCUIT|EVICT|probation' $LOGDIR/gateway.log
  Kill a replica hard while sending traffic: no request fails, its breaker opens, its lease expires:
    kill -9 \$(pgrep -f 'demo-http --name b ')
    for i in \$(seq 20); do curl -s -o /dev/null -w '%{http_code} ' $GW/demo/hello; done; echo
    sleep 16; curl -s $GW/registry/demo | python3 -m json.tool
  Start it again: it registers itself and takes traffic at once:
    $BIN/demo-http --name b --port 9002 --service demo --gateway $GW &
  Stop one gracefully (SIGTERM): it deregisters before it stops serving:
    kill \$(pgrep -f 'demo-http --name a ')

Ctrl-C stops everything; every replica deregisters.
TXT
wait "$gateway_pid"
