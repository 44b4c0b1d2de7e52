#!/usr/bin/env python3
"""Rewrites README.md's configuration reference from `mosn-ext fields --markdown`.

    python3 scripts/readme-fields.py build/output/mosn-ext README.md

The block between the begin/end markers is replaced; `cargo test` (tests/config_errors.rs)
fails when the README and the field table (src/config/fields.rs) disagree.
"""
import subprocess
import sys

BEGIN = "<!-- config-fields:begin (generated: mosn-ext fields --markdown) -->\n"
END = "<!-- config-fields:end -->"


def main(mosn_ext: str, readme: str) -> int:
    table = subprocess.run([mosn_ext, "fields", "--markdown"], check=True, capture_output=True, text=True).stdout
    text = open(readme, encoding="utf-8").read()
    b, e = text.find(BEGIN), text.find(END)
    if b < 0 or e < 0:
        print(f"{readme}: markers not found ({BEGIN.strip()} ... {END})", file=sys.stderr)
        return 1
    new = text[:b + len(BEGIN)] + table + text[e:]
    if new != text:
        open(readme, "w", encoding="utf-8").write(new)
        print(f"{readme}: configuration reference updated")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
