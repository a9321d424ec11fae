#!/usr/bin/env bash
# Re-inlines templates/member-account.yaml as the StackSet's TemplateBody in template.yaml
# (the file is the source: cfn-lint lints it on its own; a test checks both are identical).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 - <<'PY'
import re
member = open("templates/member-account.yaml").read().rstrip("\n")
body = "\n".join(("        " + l) if l.strip() else "" for l in member.split("\n"))
text = open("template.yaml").read()
pattern = re.compile(r"(      TemplateBody: \|\n)(.*?)(\n\n  # -{10})", re.S)
new, count = pattern.subn(lambda m: m.group(1) + body + m.group(3), text)
if count != 1:
    raise SystemExit("TemplateBody block not found in template.yaml")
open("template.yaml", "w").write(new)
PY
