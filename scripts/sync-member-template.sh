#!/usr/bin/env bash
# Re-inlines each StackSet's template as its TemplateBody in template.yaml: MemberRolesStackSet
# carries templates/member-account.yaml, EksClusterEventsStackSet templates/member-eks-events.yaml
# (the files are the source: cfn-lint lints them on their own; a test checks each pair is identical).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 - <<'PY'
import re
text = open("template.yaml").read()
for resource, path in [
    ("MemberRolesStackSet", "templates/member-account.yaml"),
    ("EksClusterEventsStackSet", "templates/member-eks-events.yaml"),
]:
    member = open(path).read().rstrip("\n")
    body = "\n".join(("        " + l) if l.strip() else "" for l in member.split("\n"))
    # From the resource's TemplateBody to the next line indented by two spaces or less.
    pattern = re.compile(
        r"(\n  " + resource + r":\n(?:    [^\n]*\n|\n)*?      TemplateBody: \|\n)(.*?)(\n\n(?=  \S|\S))", re.S
    )
    text, count = pattern.subn(lambda m: m.group(1) + body + m.group(3), text)
    if count != 1:
        raise SystemExit(f"the TemplateBody of {resource} was not found in template.yaml")
open("template.yaml", "w").write(text)
PY
