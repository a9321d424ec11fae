#!/usr/bin/env bash
# Benchmarks (not tests), all against loopback fakes:
#   1. cold start and peak RSS of each function (release binaries for this machine),
#   2. release arm64 zip size of each function (what Lambda loads),
#   3. the EKS fan-out: a MaxConcurrency sweep, then throttling against a run without faults
#      (flags after -- go to bench-fanout).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh --packaging
export PATH="$PWD/.venv/bin:$PATH"
functions=(-p org-info -p network-info -p apono-integration -p eks-access-entries)

echo "== cold start and memory (release, $(uname -m))"
# With the test kit's hooks (loopback response URLs): the bench answers on 127.0.0.1.
cargo build --quiet --release --locked "${functions[@]}" --features custom-resource/test-util
cargo build --quiet --locked -p testkit --bins
# As on a system that names no CA file or directory (no SSL_CERT_FILE or SSL_CERT_DIR): the functions
# then read the distribution's CA bundle alone. BENCH_BEFORE_DIR: binaries built before a
# change, run alternately with these and shown beside them.
env -u SSL_CERT_FILE -u SSL_CERT_DIR target/debug/bench-lambda --bin-dir target/release --runs 20 \
  ${BENCH_BEFORE_DIR:+--before-dir "$BENCH_BEFORE_DIR"}

echo "== release arm64 zips"
cargo lambda build --quiet --release --arm64 --output-format zip --lambda-dir target/lambda-zips "${functions[@]}" >/dev/null
for f in org-info network-info apono-integration eks-access-entries; do
  printf '| %s | %s bytes |\n' "$f" "$(stat -c %s "target/lambda-zips/$f/bootstrap.zip")"
done

echo "== EKS fan-out"
# The dev profile: the fan-out waits on (injected) latency, not on CPU.
target/debug/bench-fanout "$@"
