#!/usr/bin/env python3
"""Fails when a workspace crate declares a dependency its code never names.

What `cargo machete` does, without a tool to install: for every member's `[dependencies]`
and `[dev-dependencies]`, the crate's Rust name (`-` becomes `_`) must appear as a path
(`name::`, `use name`, `name!`) in a `.rs` file of that member. A dependency needed for
another reason (a feature it switches on, a build-time effect) is listed in
`package.metadata.unused-deps.ignore` of its member with the reason beside it.
"""
import pathlib
import re
import sys
import tomllib

root = pathlib.Path(__file__).resolve().parent.parent
workspace = tomllib.loads((root / "Cargo.toml").read_text())
failures = []
checked = 0
for member in workspace["workspace"]["members"]:
    for crate in sorted(root.glob(member)):
        manifest = tomllib.loads((crate / "Cargo.toml").read_text())
        ignore = set(
            manifest.get("package", {})
            .get("metadata", {})
            .get("unused-deps", {})
            .get("ignore", [])
        )
        code = "\n".join(p.read_text() for p in crate.rglob("*.rs") if "target" not in p.parts)
        for section in ("dependencies", "dev-dependencies"):
            for name in manifest.get(section, {}):
                checked += 1
                # The key is the name the code uses, even for a renamed package.
                rust_name = name.replace("-", "_")
                if name in ignore:
                    continue
                if not re.search(rf"\b{re.escape(rust_name)}\s*(::|!)|\buse\s+{re.escape(rust_name)}\b", code):
                    failures.append(f"{crate.relative_to(root)}: {section} `{name}` is never used")
print(f"unused dependencies: {checked} declared, {len(failures)} unused")
for failure in failures:
    print("  " + failure)
sys.exit(1 if failures else 0)
