#!/usr/bin/env bash
# The test command: builds every binary the end-to-end tests start, then runs all tests of the workspace.
# Usage: scripts/test.sh [extra cargo test args]
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1; then
  echo "scripts/test.sh: cargo is required (https://rustup.rs)" >&2
  exit 1
fi

# Real peers the tests start: redis-server (shared state), nginx (load balancer in front of gateways) and
# chromium (headless, renders the dashboard in tests/tests/dashboard.rs).
missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
command -v "${CHROMIUM:-chromium}" >/dev/null 2>&1 || missing+=(chromium)
# python3: the Python client's own tests (client-sdk/python/tests, run by tests/tests/python_sdk.rs).
command -v python3 >/dev/null 2>&1 || missing+=(python3)
if [ ${#missing[@]} -gt 0 ]; then
  echo "scripts/test.sh: installing ${missing[*]}" >&2
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# The e2e tests run the real binaries (gateway, demo services) from target/debug.
cargo build --workspace --bins --locked
cargo test --workspace --locked --no-fail-fast "$@"
