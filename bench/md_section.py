"""Replaces one '## ' section of a Markdown file with the text on stdin (appends it when absent).

    md_section.py FILE "## Title" < section.md

The section runs from its heading to the next '## ' heading. Each benchmark script owns one section of
docs/benchmarks.md, so rerunning one never deletes another's figures.
"""
import os
import sys

path, heading = sys.argv[1], sys.argv[2]
body = sys.stdin.read().strip("\n")
if not body.startswith(heading):
    body = heading + "\n\n" + body
text = open(path).read() if os.path.exists(path) else "# Benchmarks\n"
lines = text.split("\n")
start = next((i for i, l in enumerate(lines) if l.strip() == heading), None)
if start is None:
    while lines and lines[-1] == "":
        lines.pop()
    lines = lines + [""] + body.split("\n")
else:
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    lines = lines[:start] + body.split("\n") + [""] + lines[end:]
out = "\n".join(lines).rstrip("\n") + "\n"
open(path, "w").write(out)
