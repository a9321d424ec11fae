#!/usr/bin/env bash
# Installs what the scripts need, idempotently: the pinned Python tools in .venv (checkov in
# .venv-checkov, cfripper and parliament in .venv-iam), and (with
# --packaging) the arm64 rustup target that cargo-lambda/sam build for.
set -euo pipefail
cd "$(dirname "$0")/.."

stamp=.venv/.requirements.sha256
want=$(sha256sum requirements-dev.txt | cut -d' ' -f1)
if [ ! -x .venv/bin/python ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "bootstrap: installing pinned Python tools into .venv" >&2
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check --upgrade pip
  .venv/bin/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
  echo "$want" > "$stamp"
fi

# checkov pins dependencies of its own that clash with moto's and SAM's: a venv of its own.
stamp=.venv-checkov/.requirements.sha256
want=$(sha256sum requirements-checkov.txt | cut -d' ' -f1)
if [ ! -x .venv-checkov/bin/python ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "bootstrap: installing checkov into .venv-checkov" >&2
  python3 -m venv .venv-checkov
  .venv-checkov/bin/pip install --quiet --disable-pip-version-check -r requirements-checkov.txt
  echo "$want" > "$stamp"
fi

# cfripper and parliament (scripts/iam_lint.py): a venv of their own too.
stamp=.venv-iam/.requirements.sha256
want=$(sha256sum requirements-iam.txt | cut -d' ' -f1)
if [ ! -x .venv-iam/bin/python ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "bootstrap: installing cfripper and parliament into .venv-iam" >&2
  python3 -m venv .venv-iam
  .venv-iam/bin/pip install --quiet --disable-pip-version-check -r requirements-iam.txt
  echo "$want" > "$stamp"
fi

if [ "${1:-}" = "--packaging" ]; then
  rustup target list --installed | grep -qx aarch64-unknown-linux-gnu \
    || rustup target add aarch64-unknown-linux-gnu
fi
