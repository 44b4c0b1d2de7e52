"""Shared pytest plumbing for the host tests.

- tests/ is put on sys.path so tests import ``harness.*`` and ``cases``.
- ``backends``: ONE helper process serving s1a, s1b (site s1), s2, s3 for the whole session.
- ``run_dir``: build/test-runs/<test-name>/ for function-scoped tests; deleted when the test
  passed, kept (path printed) when it failed. MOSN_KEEP_RUNS=1 keeps every run dir.
- The makereport hook records each phase's report on the item and, for a failed test, calls
  ``mark_failed()`` on every fixture value that has it (Host / CaseContext), so module-scoped
  hosts keep their work dir, and attaches ``logs_tail()`` of those values to the report.
- Every process the harness started is stopped at session end (and by atexit as a backstop).

Environment: MOSN_EXT_BIN (default build/output/mosn-ext), MOSN_OUTPUT_DIR (default
build/output), ENVOY_BIN (default: found from the `envoy` on PATH), MOSN_TEST_RUNS_DIR (default
build/test-runs), MOSN_KEEP_RUNS.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).resolve().parent
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))

from harness import hosts  # noqa: E402

BACKEND_SPECS = [("s1a", "s1"), ("s1b", "s1"), ("s2", "s2"), ("s3", "s3"), ("fail503", "fail503"), ("fail501", "fail501"),
                 ("slow1", "slow1000"), ("slow2", "slow1000")]


def pytest_configure(config):
    config.addinivalue_line("markers", "envoy_only: depends on Envoy-only behaviour (envoy --mode validate, ABI symbols)")
    config.addinivalue_line("markers", "nginx_only: depends on nginx-only features (nginx -t, SIGHUP reload, worker processes)")
    config.addinivalue_line("markers", "needs_binary: needs build/output/mosn-ext")


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)
    if rep.failed:
        seen = set()
        for value in list(getattr(item, "funcargs", {}).values()):
            if id(value) in seen:
                continue
            seen.add(id(value))
            mark = getattr(value, "mark_failed", None)
            if callable(mark):
                mark()
            tail = getattr(value, "logs_tail", None)
            if callable(tail):
                try:
                    rep.sections.append((f"host logs ({type(value).__name__})", tail(25)))
                except Exception as e:  # never break reporting
                    rep.sections.append(("host logs", f"<unavailable: {e!r}>"))


def _node_passed(node) -> bool:
    """True when setup and call of ``node`` both passed (teardown not yet known)."""
    setup = getattr(node, "rep_setup", None)
    call = getattr(node, "rep_call", None)
    return bool(setup and setup.passed and call and call.passed)


@pytest.fixture(scope="session")
def mosn_ext():
    """Path of build/output/mosn-ext; FAILS (not skips) when it is missing."""
    try:
        return hosts.require_mosn_ext()
    except hosts.MissingBinary as e:
        pytest.fail(str(e), pytrace=False)


@pytest.fixture(scope="session")
def backends(tmp_path_factory):
    b = hosts.Backends(BACKEND_SPECS, log_dir=tmp_path_factory.mktemp("backends"))
    b.start()
    yield b
    b.stop()


@pytest.fixture
def run_dir(request):
    """build/test-runs/<test-name>[-<host>]/ — removed if the test passed, kept if it failed.
    The -<host> suffix comes from a module-level RUN_DIR_HOST (test_envoy_only / test_nginx_only)."""
    suffix = getattr(request.module, "RUN_DIR_HOST", None)
    d = hosts.make_run_dir(request.node.name + (f"-{suffix}" if suffix else ""))
    yield d
    if _node_passed(request.node):
        hosts.remove_run_dir(d)
    else:
        sys.stderr.write(f"\n[harness] kept run dir: {d}\n")


def pytest_sessionfinish(session, exitstatus):
    hosts.stop_all()
