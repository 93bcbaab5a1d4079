#!/usr/bin/env python3
"""Counts test results from a Meson build directory's testlog.json.

Catch2 executables count one per test case (from Catch2's closing summary);
every other Meson test counts one. Prints "PASSED FAILED".
"""
import json
import re
import sys

passed = failed = 0
path = sys.argv[1]
with open(path) as f:
    for line in f:
        line = line.strip()
        if not line:
            continue
        t = json.loads(line)
        out = t.get("stdout") or ""
        ok = t.get("result") == "OK"
        m_all = re.search(r"All tests passed \(\d+ assertions? in (\d+) test cases?\)", out)
        m_some = re.search(r"test cases:\s*(\d+)\s*\|\s*(\d+) passed\s*\|\s*(\d+) failed", out)
        if m_all and ok:
            passed += int(m_all.group(1))
        elif m_some:
            passed += int(m_some.group(2))
            failed += max(int(m_some.group(3)), 0 if ok else 1)
        else:
            # Not Catch2, or a crash before Catch2's summary.
            if ok:
                passed += 1
            else:
                failed += 1
print(passed, failed)
