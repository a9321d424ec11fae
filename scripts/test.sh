#!/usr/bin/env bash
# Every check the project has, in the order that fails fastest. CI runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh --packaging
export PATH="$PWD/.venv/bin:$PATH" AWS_DEFAULT_REGION=us-east-1 AWS_REGION=us-east-1 SAM_CLI_TELEMETRY=0
export CARGO_TERM_COLOR=never CARGO_PROFILE_DEV_DEBUG=0

step() { printf "\n== %s (%d s into the run)\n" "$*" "$SECONDS" >&2; }

step "cargo fmt --check"
cargo fmt --all -- --check
step "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings
step "unused dependencies (what cargo machete checks)"
python3 scripts/unused_deps.py
if [ -f template.yaml ]; then
  step "cfn-lint"
  cfn-lint template.yaml $(find templates -name "*.yaml" 2>/dev/null)
  step "sam validate --lint"
  sam validate --lint --template-file template.yaml --region us-east-1
  step "checkov (every skipped check is justified in the template)"
  # --skip-download: no call to Prisma Cloud (tests are hermetic).
  .venv-checkov/bin/checkov --quiet --compact --skip-download --framework cloudformation \
    -f template.yaml $(find templates -name "*.yaml" -printf '-f %p ')
  step "iam-lint: cfripper and parliament on every rendering (every finding justified on its resource)"
  .venv-iam/bin/python scripts/iam_lint.py
fi
step "cargo test"
results=$(mktemp)
trap 'rm -f "$results"' EXIT
cargo test --workspace --locked 2>&1 | tee "$results"
if [ -f template.yaml ]; then
  # Last: the release arm64 build of every function, exactly as a user's deploy builds it.
  step "sam build"
  sam build --parameter-overrides AponoConnectorId=ci-check
fi

# One closing line for the whole run (the builds above print after cargo's own summaries).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "tests: %d passed, %d failed; %d s in all\n", p, f, secs }' secs="$SECONDS" "$results"
