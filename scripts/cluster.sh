#!/usr/bin/env bash
# The seeds' topology without Docker (the same as docker-compose.yml): redis-server, two gateways sharing
# state through it, nginx in front of them on :8080, and every demo service registered through nginx:
# demo-http x3 (one flaky), users, orders, demo-grpc x2. Ctrl-C stops everything; replicas deregister.
#
#   nginx :8080 ─▶ gateway A :8081 (gRPC :50051) ─┐
#              └▶ gateway B :8082 (gRPC :50052) ─┴─ redis :16379 ─ replicas register through nginx
set -euo pipefail
cd "$(dirname "$0")/.."

REDIS_PORT=${REDIS_PORT:-16379}
LB="http://127.0.0.1:8080"
LOGDIR=${LOGDIR:-$(mktemp -d)}

missing=()
command -v curl >/dev/null 2>&1 || missing+=(curl)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]}..." >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

echo "building (release)..."
cargo build --release --bins --locked -q
BIN=target/release

infra=(); replicas=()
cleanup() {
  local rc=$?
  # A second Ctrl-C must not cut the clean stop short: ignore it until everything is down.
  trap "" INT TERM
  trap - EXIT
  echo; echo "stopping replicas (each deregisters), then gateways, nginx and redis..."
  for p in "${replicas[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${replicas[@]}"; do for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done; done
  for p in "${infra[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  echo "stopped. logs are in $LOGDIR"
  exit "${status:-$rc}"
}
trap 'status=0; cleanup' INT TERM
trap cleanup EXIT

# Waits until `probe` succeeds; when it does not within 30 s, or the process died, says which component
# failed, shows the end of its log and exits (the EXIT trap stops everything started so far).
wait_up() { # name pid log probe...
  local name=$1 pid=$2 log=$3; shift 3
  for _ in $(seq 300); do
    "$@" >/dev/null 2>&1 && return 0
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  echo "cluster.sh: $name did not come up (log: $log):" >&2
  tail -n 20 "$log" | sed 's/^/  /' >&2
  exit 1
}

setsid redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no > "$LOGDIR/redis.log" 2>&1 &
infra+=($!)
wait_up "redis-server on :$REDIS_PORT" "$!" "$LOGDIR/redis.log" redis-cli -p "$REDIS_PORT" ping

gateway() { # name http grpc
  # nginx in front (127.0.0.1) is the one peer whose X-Forwarded-* headers the gateways keep.
  GATEWAY_LISTEN="127.0.0.1:$2" GATEWAY_GRPC_LISTEN="127.0.0.1:$3" GATEWAY_STORE="redis://127.0.0.1:$REDIS_PORT/0" \
    GATEWAY_FORWARDED_TRUSTED_PROXIES='[127.0.0.1/32]' \
    setsid "$BIN/registry-gateway" --config config/demo.yaml > "$LOGDIR/gateway-$1.log" 2>&1 &
  infra+=($!)
  wait_up "gateway $1 on :$2" "$!" "$LOGDIR/gateway-$1.log" curl -sf "http://127.0.0.1:$2/healthz"
  echo "  gateway $1: http://127.0.0.1:$2, gRPC http://127.0.0.1:$3"
}
gateway a 8081 50051
gateway b 8082 50052

mkdir -p "$LOGDIR/nginx"
sed -e "s|__PREFIX__|$LOGDIR/nginx|g" -e "s|__LISTEN__|127.0.0.1:8080|" \
    -e "s|__GATEWAYS__|server 127.0.0.1:8081;\n    server 127.0.0.1:8082;|" config/nginx.conf > "$LOGDIR/nginx/nginx.conf"
setsid "$NGINX" -c "$LOGDIR/nginx/nginx.conf" -p "$LOGDIR/nginx" -g 'daemon off;' > "$LOGDIR/nginx.log" 2>&1 &
infra+=($!)
wait_up "nginx on :8080" "$!" "$LOGDIR/nginx.log" curl -sf "$LB/healthz"
echo "  nginx: $LB -> gateways a, b"

replica() { # binary name port [flags...]
  local bin=$1 name=$2 port=$3; shift 3
  setsid "$BIN/$bin" --name "$name" --port "$port" "$@" > "$LOGDIR/$name.log" 2>&1 &
  replicas+=($!)
  echo "  $bin $name on :$port $*"
}
replica demo-http a 9001 --service demo --gateway "$LB"
replica demo-http b 9002 --service demo --gateway "$LB"
replica demo-http c 9003 --service demo --gateway "$LB" --fail-rate 0.3
replica demo-http users-1 9011 --service users --gateway "$LB"
replica demo-http orders-1 9012 --service orders --gateway "$LB" --users-url "$LB/users"
replica demo-grpc echo-1 9101 --gateway "$LB"
replica demo-grpc echo-2 9102 --gateway "$LB"
registered() { curl -s "http://127.0.0.1:$1/registry" | grep -o '"address"' | wc -l; }
for _ in $(seq 300); do
  [ "$(registered 8081)" -ge 7 ] && [ "$(registered 8082)" -ge 7 ] && break; sleep 0.1
done
if [ "$(registered 8081)" -lt 7 ] || [ "$(registered 8082)" -lt 7 ]; then
  echo "cluster.sh: after 30 s gateway a knows $(registered 8081) and gateway b $(registered 8082) of the 7 replicas" >&2
  echo "  (replica logs in $LOGDIR)" >&2
  exit 1
fi

cat <<TXT

Up: every replica registered through nginx, and both gateways know all 7. Try:
  for i in \$(seq 6); do curl -s $LB/demo/hello; echo; done      # nginx -> either gateway -> a, b, c
  curl -s http://127.0.0.1:8081/registry | python3 -m json.tool  # gateway A's view (store: redis)
  curl -s http://127.0.0.1:8082/readyz                           # ready, or degraded without Redis
  redis-cli -p $REDIS_PORT --scan --pattern 'rgw:*'               # the shared state, as keys
  kill \$(pgrep -f 'demo-http --name b ')                         # opened on A and B alike
  redis-cli -p $REDIS_PORT shutdown nosave                        # gateways keep routing, degraded

Ctrl-C stops everything.
TXT
# Runs until Ctrl-C, or until one of redis, the gateways or nginx exits on its own (then says which and
# stops the rest).
names=(redis-server "gateway a" "gateway b" nginx)
gone=""
wait -n -p gone "${infra[@]}" || true
for i in "${!infra[@]}"; do
  if [ "${infra[$i]}" = "$gone" ]; then
    echo "cluster.sh: ${names[$i]} exited on its own (logs in $LOGDIR)" >&2
    status=1
  fi
done
