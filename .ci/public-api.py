#!/usr/bin/env python3
"""The README's "Public API" against what `cargo doc` documents.

Run after `cargo doc --no-deps`: every item rustdoc lists in
target/doc/latchkey/all.html must be named (in backticks) in the section,
and every name in the first column of its table must be an item rustdoc
lists. A public item added without a word in the README, or a README entry
for an item that has gone, fails CI.
"""

import re
import sys
from pathlib import Path

root = Path(__file__).resolve().parent.parent
listing = (root / "target/doc/latchkey/all.html").read_text()
documented = {
    path.rsplit("::", 1)[-1]
    for path in re.findall(r'<li><a href="[^"]+">([^<]+)</a></li>', listing)
}
if not documented:
    sys.exit("no items in target/doc/latchkey/all.html: run cargo doc first")

readme = (root / "README.md").read_text()
section = readme.split("\n### Public API\n", 1)[1].split("\n### ", 1)[0]
named = set(re.findall(r"`([A-Za-z_][A-Za-z0-9_]*)", section))
first_column = set()
for row in section.splitlines():
    if row.startswith("| `"):
        cell = row.split(" | ", 1)[0]
        # Names before any "(in ...)" note; `router(auth)` names `router`.
        cell = cell.split("(in ", 1)[0]
        first_column |= set(re.findall(r"`([A-Za-z_][A-Za-z0-9_]*)", cell))

failures = []
for item in sorted(documented - named):
    failures.append(f"documented by cargo doc, not in the README's Public API: {item}")
# `Option<Authenticated>` names the standard library's `Option`.
for item in sorted(first_column - documented - {"Option"}):
    failures.append(f"in the README's Public API, not documented by cargo doc: {item}")
for failure in failures:
    print(failure, file=sys.stderr)
if failures:
    sys.exit(1)
print(f"Public API: the README names all {len(documented)} items cargo doc documents")
