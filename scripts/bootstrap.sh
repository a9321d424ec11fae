#!/usr/bin/env bash
# Installs what the scripts need, idempotently: the pinned Python tools in .venv (checkov in
# .venv-checkov, cfripper and parliament in .venv-iam), and (with
# --packaging) the arm64 rustup target that cargo-lambda/sam build for.
set -euo pipefail
cd "$(dirname "$0")/.."

# pinned_venv DIR REQUIREMENTS WHAT [--upgrade-pip]: (re)creates DIR from REQUIREMENTS whenever
# the file changes (its hash is stamped in DIR).
pinned_venv() {
  local dir=$1 requirements=$2 what=$3 upgrade_pip=${4:-}
  local stamp=$dir/.requirements.sha256 want
  want=$(sha256sum "$requirements" | cut -d' ' -f1)
  if [ ! -x "$dir/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "bootstrap: installing $what into $dir" >&2
    python3 -m venv "$dir"
    if [ -n "$upgrade_pip" ]; then
      "$dir/bin/pip" install --quiet --disable-pip-version-check --upgrade pip
    fi
    "$dir/bin/pip" install --quiet --disable-pip-version-check -r "$requirements"
    echo "$want" > "$stamp"
  fi
}

pinned_venv .venv requirements-dev.txt "pinned Python tools" --upgrade-pip
# checkov pins dependencies of its own that clash with moto's and SAM's: a venv of its own.
pinned_venv .venv-checkov requirements-checkov.txt checkov
# cfripper and parliament (scripts/iam_lint.py) pin boto3 and pydantic of their own too.
pinned_venv .venv-iam requirements-iam.txt "cfripper and parliament"

if [ "${1:-}" = "--packaging" ]; then
  rustup target list --installed | grep -qx aarch64-unknown-linux-gnu \
    || rustup target add aarch64-unknown-linux-gnu
fi
