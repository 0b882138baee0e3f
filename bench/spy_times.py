#!/usr/bin/env python3
"""Where the time goes, call by call, in one OpenSC pkcs11-spy log.

  spy_times.py LOG [LOG...]

pkcs11-spy stamps the start of each call (milliseconds).  The time of call
i is taken as the stamp of call i+1 minus its own: the module's time plus
our code between the two calls (small next to a module that scans its
store).  Prints, per log, a markdown table by function: calls, total ms,
the slowest call.  The last call (C_Finalize) has no successor and shows 0.
"""
import re
import sys
from collections import OrderedDict
from datetime import datetime

CALL = re.compile(r"^(\d+): (C_\w+)$")
STAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3})$")


def calls(path):
    out = []                 # (name, datetime)
    name = None
    for line in open(path, errors="replace"):
        line = line.rstrip("\n")
        m = CALL.match(line)
        if m:
            name = m.group(2)
            continue
        m = STAMP.match(line)
        if m and name is not None:
            out.append((name, datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S.%f")))
            name = None
    return out


def main(argv):
    if len(argv) < 2:
        sys.stderr.write(__doc__)
        return 64
    for path in argv[1:]:
        seq = calls(path)
        agg = OrderedDict()
        for i, (name, t) in enumerate(seq):
            ms = (seq[i + 1][1] - t).total_seconds() * 1000 if i + 1 < len(seq) else 0
            n, tot, mx = agg.get(name, (0, 0.0, 0.0))
            agg[name] = (n + 1, tot + ms, max(mx, ms))
        total = sum(v[1] for v in agg.values())
        print(f"{path}: {len(seq)} calls, {total:.0f} ms from the first call to the last")
        print()
        print("| function | calls | total ms | slowest ms |")
        print("|---|--:|--:|--:|")
        for name, (n, tot, mx) in sorted(agg.items(), key=lambda kv: -kv[1][1]):
            print(f"| {name} | {n} | {tot:.0f} | {mx:.0f} |")
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
