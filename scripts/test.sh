#!/usr/bin/env bash
# The test command: builds every binary the end-to-end tests start, then runs all tests of the workspace.
# Usage: scripts/test.sh [extra cargo test args]
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1; then
  echo "scripts/test.sh: cargo is required (https://rustup.rs)" >&2
  exit 1
fi

# The e2e tests run the real binaries (gateway, demo services) from target/debug.
cargo build --workspace --bins --locked
cargo test --workspace --locked --no-fail-fast "$@"
