#!/usr/bin/env bash
# Benchmarks (not tests): the EKS fan-out at several concurrencies. Flags go to bench-fanout.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
export PATH="$PWD/.venv/bin:$PATH"
# The dev profile: the fan-out waits on (injected) latency, not on CPU.
cargo run --quiet --locked -p bench --bin bench-fanout -- "$@"
