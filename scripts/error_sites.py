#!/usr/bin/env python3
"""The error sites of rotq reached by whatever ran the gcov-instrumented binary of BUILD
(scripts/fault_sweep.sh). An error site is a call of rotq_fail or rotq_fail_context in the
library or the CLI (one source line each; reached when gcov counts the line executed with none
of its blocks unexecuted, so a one-line `if (bad) return rotq_fail(...)` counts only when the
call ran); an out-of-memory site is one whose message (within 3 lines) says "out of memory". Prints reached/total per directory and in all.
usage: scripts/error_sites.py BUILD [--list-unreached]"""
import glob
import os
import re
import subprocess
import sys

build = sys.argv[1]
dirs = ["common", "io", "config", "adapter", "linalg", "rotate", "model", "cli"]
call = re.compile(r"\brotq_fail(_context)?\s*\(")


def line_counts(source):
    """{line number: executed count} from gcov for source, {} if it has no coverage data."""
    rel = os.path.relpath(source)
    target = "rotq" if rel.startswith("cli/") else "rotqlib"
    obj_dir = os.path.join(build, "CMakeFiles", target + ".dir", os.path.dirname(rel))
    gcda = os.path.join(obj_dir, os.path.basename(rel) + ".gcda")
    if not os.path.exists(gcda):
        return {}
    obj = os.path.join(obj_dir, os.path.basename(rel) + ".o")
    out = subprocess.run(["gcov", "-t", "-o", obj, source], capture_output=True, text=True).stdout
    counts = {}
    for row in out.splitlines():
        parts = row.split(":", 2)
        if len(parts) < 3:
            continue
        count, number = parts[0].strip(), parts[1].strip()
        if not number.isdigit():
            continue
        # "N*": the line ran but one of its blocks did not; on an error site's line that block is
        # the call (`if (bad) return rotq_fail(...)` on one line), so it counts as not reached.
        if count.isdigit():
            counts[int(number)] = int(count)
        elif count.endswith("*"):
            counts[int(number)] = 0
        elif count in ("#####", "====="):
            counts[int(number)] = 0
    return counts


totals = {}
unreached = []
for d in dirs:
    for source in sorted(glob.glob(d + "/*.c")):
        if source == "common/error.c":
            continue
        lines = open(source).read().split("\n")
        counts = line_counts(source)
        for i, text in enumerate(lines):
            if not call.search(text) or text.lstrip().startswith(("//", "/*", "*")):
                continue
            statement = " ".join(lines[i:i + 3])
            oom = "out of memory" in statement
            reached = counts.get(i + 1, 0) > 0
            for key in (d, "all"):
                t = totals.setdefault(key, [0, 0, 0, 0])
                t[0] += 1
                t[1] += reached
                t[2] += oom
                t[3] += reached and oom
            if not reached:
                unreached.append(f"{source}:{i + 1}")

print("error sites reached (rotq_fail/rotq_fail_context calls; gcov line coverage):")
print(f"  {'':8} {'reached':>16} {'out-of-memory reached':>22}")
for key in dirs + ["all"]:
    if key in totals:
        t = totals[key]
        print(f"  {key:8} {t[1]:>5} of {t[0]:>4} {100 * t[1] / t[0]:>3.0f}%"
              f" {t[3]:>9} of {t[2]:>4} {100 * t[3] / max(t[2], 1):>3.0f}%")
if "--list-unreached" in sys.argv:
    print("\n".join(unreached))
