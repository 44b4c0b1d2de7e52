"""scripts/soak.py's pieces that need no host: the docs section it writes (replaces only its
own `## Soak` section, so another section of docs/reliability.md survives) and the process
helpers it counts workers and RSS with."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

SOAK_PY = Path(__file__).resolve().parents[2] / "scripts" / "soak.py"


def _soak():
    spec = importlib.util.spec_from_file_location("soak", SOAK_PY)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_write_docs_adds_then_replaces_only_the_soak_section(tmp_path):
    soak = _soak()
    doc = tmp_path / "reliability.md"
    soak.write_docs(doc, "## Soak\n\nfirst\n")
    assert doc.read_text() == "# Reliability\n\n## Soak\n\nfirst\n"
    doc.write_text("# Reliability\n\n## Fuzzing\n\nfuzz text\n\n## Soak\n\nold\n\n## Later\n\nkept\n")
    soak.write_docs(doc, "## Soak\n\nnew\n")
    assert doc.read_text() == "# Reliability\n\n## Fuzzing\n\nfuzz text\n\n## Soak\n\nnew\n\n## Later\n\nkept\n"
    doc.write_text("# Reliability\n\n## Fuzzing\n\nfuzz text\n")
    soak.write_docs(doc, "## Soak\n\nx\n")
    assert doc.read_text() == "# Reliability\n\n## Fuzzing\n\nfuzz text\n\n## Soak\n\nx\n"


def test_children_and_rss_of_a_process():
    soak = _soak()
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert child.pid in soak.children_of(os.getpid())
        assert soak.rss_kib(child.pid) > 0
        assert soak.alive(child.pid)
    finally:
        child.kill()
        child.wait()
    assert soak.rss_kib(child.pid) == 0
