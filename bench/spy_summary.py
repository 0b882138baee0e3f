#!/usr/bin/env python3
"""Summarise OpenSC pkcs11-spy logs (bench/enroll_compare).

  spy_summary.py NAME=LOG [NAME=LOG...]

Prints a markdown table of PKCS#11 calls by function (one column per log),
then, per log, the C_FindObjectsInit templates that were searched more than
once within one process (same attributes and values; pointer addresses
ignored).  A log may hold several processes (the spy appends): each
C_Initialize that follows a C_Finalize, or the first, starts a process.
"""
import re
import sys
from collections import Counter, OrderedDict

CALL = re.compile(r"^(\d+): (C_\w+)")
ADDR = re.compile(r"\b[0-9a-f]{16} / ")
sessions = {}           # (process number, template) -> session handles, for the last log parsed


def parse(path):
    calls = Counter()
    procs = []          # list of Counter of templates, one per process
    cur = None          # current call name
    block = []
    finalized = True
    sessions.clear()
    for line in open(path, errors="replace"):
        line = line.rstrip("\n")
        m = CALL.match(line)
        if m:
            cur, block = m.group(2), []
            calls[cur] += 1
            if cur == "C_Initialize" and finalized:
                procs.append(Counter())
                finalized = False
            if cur == "C_Finalize":
                finalized = True
            continue
        if cur == "C_FindObjectsInit":
            if line.startswith("Returned"):
                key = "\n".join(l for l in block if "hSession" not in l)
                sess = "".join(l.split("=")[-1].strip() for l in block if "hSession" in l)
                if procs:
                    procs[-1][key] += 1
                    sessions.setdefault((len(procs), key), []).append(sess)
                cur = None
            elif not re.match(r"^\d{4}-\d\d-\d\d ", line):
                block.append(ADDR.sub("/ ", line).strip())
    return calls, procs


def describe(tmpl):
    """CKA_CLASS CKO_x, CKA_LABEL 'l', CKA_ID (n bytes)"""
    out = []
    lines = tmpl.split("\n")
    for i, l in enumerate(lines):
        m = re.match(r"(CKA_\w+)\s+(.*)", l)
        if not m:
            continue
        name, val = m.groups()
        if name == "CKA_CLASS":
            out.append(val.split()[0])
        else:
            n = re.search(r"/ (\d+)", val)
            out.append("%s (%s bytes)" % (name, n.group(1) if n else "?"))
    return ", ".join(out) or "(empty template: every object)"


def main():
    logs = OrderedDict()
    for a in sys.argv[1:]:
        name, path = a.split("=", 1)
        calls, procs = parse(path)
        logs[name] = (calls, procs, dict(sessions))
    fns = sorted({f for c, _, _ in logs.values() for f in c},
                 key=lambda f: (-max(c[f] for c, _, _ in logs.values()), f))
    print("| function | " + " | ".join(logs) + " |")
    print("|---|" + "--:|" * len(logs))
    for f in fns:
        print("| %s | %s |" % (f, " | ".join(str(c[f]) for c, _, _ in logs.values())))
    print("| **all calls** | %s |" % " | ".join("**%d**" % sum(c.values()) for c, _, _ in logs.values()))
    print("| processes | %s |" % " | ".join(str(len(p)) for _, p, _ in logs.values()))
    print()
    for name, (calls, procs, sess) in logs.items():
        rep = [(t, n, sess.get((i + 1, t), [])) for i, p in enumerate(procs) for t, n in p.items() if n > 1]
        logins = calls["C_Login"]
        print("- %s: %d C_Login%s; %s" % (
            name, logins, "" if logins == 1 else "s",
            "no C_FindObjectsInit template searched twice in one process" if not rep else
            "searched more than once in one process: " +
            "; ".join("%s (%d times, sessions %s)" % (describe(t), n, ", ".join(ss)) for t, n, ss in rep)))


main()
