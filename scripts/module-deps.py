#!/usr/bin/env python3
"""The dependency graph between the core's top-level modules (src/<module>), from
`crate::<module>` references, and a check that it has no cycle.

    python3 scripts/module-deps.py           print the graph, lowest layer first
    python3 scripts/module-deps.py --check   exit 1 (and name the cycle) if there is one

`make lint` runs the check; the README's code layout section shows the intended layers.
"""
import re
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
REF = re.compile(r"\bcrate::([a-z_]+)")
# Comments and doc comments may name any module; only code counts.
COMMENT = re.compile(r"//.*$", re.M)


def modules() -> dict[str, list[Path]]:
    mods = {}
    for p in SRC.iterdir():
        if p.name in ("lib.rs", "bin"):
            continue
        if p.is_dir():
            mods[p.name] = sorted(p.rglob("*.rs"))
        elif p.suffix == ".rs":
            mods[p.stem] = [p]
    return mods


def graph() -> dict[str, set[str]]:
    mods = modules()
    g = {m: set() for m in mods}
    for m, files in mods.items():
        for f in files:
            text = COMMENT.sub("", f.read_text(encoding="utf-8"))
            # `#[cfg(test)] mod tests` blocks may use anything; they are at the file's end.
            text = text.split("#[cfg(test)]")[0]
            for dep in REF.findall(text):
                if dep in g and dep != m:
                    g[m].add(dep)
    return g


def find_cycle(g):
    state = {}
    stack = []

    def visit(n):
        state[n] = 1
        stack.append(n)
        for d in sorted(g[n]):
            if state.get(d) == 1:
                return stack[stack.index(d):] + [d]
            if d not in state:
                c = visit(d)
                if c:
                    return c
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(g):
        if n not in state:
            c = visit(n)
            if c:
                return c
    return None


def layers(g):
    depth = {}

    def d(n):
        if n not in depth:
            depth[n] = 0
            depth[n] = 1 + max((d(x) for x in g[n]), default=-1)
        return depth[n]

    for n in g:
        d(n)
    return depth


def main(argv):
    g = graph()
    cycle = find_cycle(g)
    if cycle:
        print("module-deps: import cycle: " + " -> ".join(cycle), file=sys.stderr)
        return 1
    if "--check" in argv:
        print(f"module-deps: {len(g)} top-level modules, no import cycle")
        return 0
    depth = layers(g)
    for n in sorted(g, key=lambda n: (depth[n], n)):
        deps = ", ".join(sorted(g[n])) or "-"
        print(f"{depth[n]}  {n:10} uses {deps}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
