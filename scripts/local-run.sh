#!/usr/bin/env bash
# The main job on this machine: the whole stack lifecycle against a local emulated
# organization (moto + our fakes on 127.0.0.1). Flags are passed to the local-run binary.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
export PATH="$PWD/.venv/bin:$PATH" CARGO_PROFILE_DEV_DEBUG=0
cargo run --quiet --locked -p testkit --bin local-run -- "$@"
