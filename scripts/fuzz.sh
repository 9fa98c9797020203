#!/usr/bin/env bash
# The long fuzz run: every property test of registry-gateway's `fuzz_tests` module (route and address
# parsers, JSON and protobuf registration decoding, Redis message and hash decoding), a million cases
# each, in release. `cargo test` runs the same properties with 256 cases from the same fixed seed.
#
# Usage: scripts/fuzz.sh [test name filter, default fuzz_tests]
#   env: FUZZ_CASES (default 1000000) cases per property;
#        FUZZ_SEED  (default: the fixed seed in fuzz_tests/mod.rs) a u64; a new seed explores new inputs.
# A run depends only on FUZZ_SEED and FUZZ_CASES, so a failure reproduces by rerunning the one
# property with the same two values (a failing test prints them), e.g.:
#   FUZZ_SEED=42 FUZZ_CASES=1000000 scripts/fuzz.sh fuzz_tests::route::route_parser_on_any_string
# proptest then shrinks the failing case and prints the minimal input.
set -euo pipefail
cd "$(dirname "$0")/.."

export FUZZ_CASES=${FUZZ_CASES:-1000000}
echo "fuzz: FUZZ_CASES=$FUZZ_CASES FUZZ_SEED=${FUZZ_SEED:-(fixed default)}" >&2
start=$(date +%s)
cargo test --release --locked -p registry-gateway --lib "${1:-fuzz_tests}"
echo "fuzz: done in $(( $(date +%s) - start )) s" >&2
