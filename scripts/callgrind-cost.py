#!/usr/bin/env python3
"""Per-request costs from callgrind dumps (bench-instructions.sh).

    callgrind-cost.py total DUMP                       the dump's total Ir
    callgrind-cost.py report A B REQUESTS [--match RE] [--top N]

`report`: B − A (two dumps of one process covering windows of different request counts;
what the windows share — the dump itself, timers — cancels), divided by REQUESTS (the
difference in requests): self cost per ELF object, then the functions with the largest
inclusive cost (self + the calls they make), those matching RE first when given (with
how often each is called per request).
Inclusive costs of recursive functions count a call into themselves twice.
"""
from __future__ import annotations

import re
import sys
from collections import defaultdict


def parse(path: str):
    """(total Ir, self cost by (object, function), inclusive by (object, function), self by object,
    calls by (object, function))."""
    names = {"ob": {}, "fn": {}, "fl": {}}
    selfc: dict = defaultdict(int)
    incl: dict = defaultdict(int)
    by_obj: dict = defaultdict(int)
    ncalls: dict = defaultdict(int)
    total = None
    ob = fn = None
    cob = cfn = None
    pending_call = False
    # Position columns before the cost: "line" (the default), or "instr line" (--dump-instr=yes).
    npos = 1

    def name(kind: str, rest: str) -> str:
        m = re.match(r"\((\d+)\)(?: (.*))?$", rest)
        if not m:
            return rest
        table = names["fl" if kind in ("fl", "fi", "fe", "cfi", "cfl") else kind]
        if m.group(2) is not None:
            table[m.group(1)] = m.group(2)
        return table.get(m.group(1), "?")

    with open(path, errors="replace") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            c = line[0]
            if c.isdigit() or c in "+-*":
                parts = line.split()
                ir = int(parts[npos]) if len(parts) > npos else 0
                if pending_call:
                    incl[(ob, fn)] += ir
                    pending_call = False
                else:
                    selfc[(ob, fn)] += ir
                    incl[(ob, fn)] += ir
                    by_obj[ob] += ir
                continue
            if line.startswith("positions:"):
                npos = len(line.split()) - 1
                continue
            key, _, rest = line.partition("=")
            if key == "ob":
                ob = name("ob", rest)
            elif key == "fn":
                fn = name("fn", rest)
                cob = None
            elif key == "cob":
                cob = name("ob", rest)
            elif key == "cfn":
                cfn = name("fn", rest)
            elif key in ("fl", "fi", "fe", "cfi", "cfl"):
                name(key, rest)
            elif key == "calls":
                pending_call = True
                ncalls[(cob or ob, cfn)] += int(rest.split()[0])
            elif line.startswith("summary:") or line.startswith("totals:"):
                total = int(line.split()[1])
    if total is None:
        total = sum(by_obj.values())
    return total, selfc, incl, by_obj, ncalls


def short(obj: str | None) -> str:
    return (obj or "?").rsplit("/", 1)[-1]


def main() -> int:
    if len(sys.argv) >= 3 and sys.argv[1] == "total":
        print(parse(sys.argv[2])[0])
        return 0
    if len(sys.argv) < 5 or sys.argv[1] != "report":
        print(__doc__, file=sys.stderr)
        return 2
    a, b, n = sys.argv[2], sys.argv[3], int(sys.argv[4])
    args = sys.argv[5:]
    match = re.compile(args[args.index("--match") + 1]) if "--match" in args else None
    top = int(args[args.index("--top") + 1]) if "--top" in args else 25
    ta, sa, ia, oa, ca = parse(a)
    tb, sb, ib, ob_, cb = parse(b)
    print(f"total: {(tb - ta) / n:,.0f} instructions per request")
    print("\nself cost per ELF object (per request):")
    objs = {k: (ob_.get(k, 0) - oa.get(k, 0)) / n for k in set(oa) | set(ob_)}
    for k, v in sorted(objs.items(), key=lambda kv: -kv[1]):
        if abs(v) >= 1:
            print(f"  {v:>10,.0f}  {short(k)}")
    keys = set(ia) | set(ib)
    rows = [(k, (ib.get(k, 0) - ia.get(k, 0)) / n, (sb.get(k, 0) - sa.get(k, 0)) / n) for k in keys]
    if match:
        print(f"\nfunctions matching {match.pattern!r} (inclusive, self, calls per request):")
        for k, inc, s in sorted((r for r in rows if match.search(r[0][1] or "")), key=lambda r: -r[1]):
            if abs(inc) >= 1:
                calls = (cb.get(k, 0) - ca.get(k, 0)) / n
                print(f"  {inc:>10,.0f} {s:>10,.0f} {calls:>6.2f}  {k[1]}  [{short(k[0])}]")
    print(f"\ntop {top} functions by inclusive cost (inclusive, self per request):")
    for k, inc, s in sorted(rows, key=lambda r: -r[1])[:top]:
        print(f"  {inc:>10,.0f} {s:>10,.0f}  {k[1]}  [{short(k[0])}]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
