#!/usr/bin/env python3
"""Fills a peer template: `python3 render.py TEMPLATE KEY=VALUE...` prints it with each
`@KEY@` replaced and each `#include FILE` line replaced by that file (from this directory,
filled the same way). A placeholder left unfilled is an error."""
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def fill(path: str, values: dict) -> str:
    out = []
    with open(path) as f:
        for line in f:
            m = re.match(r"^#include (\S+)\s*$", line)
            if m:
                out.append(fill(os.path.join(HERE, m.group(1)), values))
                continue
            out.append(re.sub(r"@([A-Z][A-Z0-9_]*)@", lambda k: values[k.group(1)] if k.group(1) in values
                              else sys.exit(f"render.py: {path}: no value for @{k.group(1)}@"), line))
    return "".join(out)


if __name__ == "__main__":
    vals = dict(a.split("=", 1) for a in sys.argv[2:])
    vals.setdefault("PEERS", HERE)
    sys.stdout.write(fill(sys.argv[1], vals))
