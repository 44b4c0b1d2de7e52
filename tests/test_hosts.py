"""The host-independent cases (tests/cases.py) against a real Envoy and a real Nginx, each started
once per host through ``mosn-ext start`` with the config of tests/harness/config.py.

    python3 -m pytest tests/test_hosts.py -v            # test_case[envoy-seed_curls], ...

Envoy runs with --concurrency 2 (round-robin cursors are shared by its worker threads); nginx
runs 1 worker here (its cursors are per worker process, so round-robin cases need one worker;
tests/test_nginx_only.py covers 2 workers). Work dir: build/test-runs/test_hosts-<host>/, kept
if any test against that host failed.
"""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from cases import CASES, CaseContext
from harness import hosts
from harness.config import build_mosn_config, with_bad_host_address

HOSTS = ["envoy", "nginx"]


def test_mosn_ext_binary_built():
    """Fails (not skips) when build/output/mosn-ext is missing: every other test here needs it."""
    try:
        hosts.require_mosn_ext()
    except hosts.MissingBinary as e:
        pytest.fail(str(e), pytrace=False)


@pytest.fixture(scope="module", params=HOSTS)
def host_ctx(request, mosn_ext, backends):
    name = request.param
    work = hosts.make_run_dir(f"test_hosts-{name}")
    listen, dead1, dead2, listen2, metrics, admin = hosts.free_ports(6)
    blackhole = hosts.Blackhole()
    request.addfinalizer(blackhole.close)
    # The failover cluster's hosts, each its own process so a case can kill and restart one.
    failover = {}
    for key in ("f1", "f2", "f3"):
        b = hosts.Backends([(key, "fo")])
        b.start()
        request.addfinalizer(lambda b=b: b.stop())
        failover[key] = b
    # The upstream cases' hosts (health checks, passive ejection, idle connections).
    killable = {}
    for key, site in [("h1", "hc"), ("h2", "hc"), ("p1", "pv"), ("p2", "pv"), ("p3", "pv"), ("i1", "idle"), ("u1", "upload"), ("mr1", "mirror"), ("mr2", "mirror")]:
        b = hosts.Backends([(key, site)])
        b.start()
        request.addfinalizer(lambda b=b: b.stop())
        killable[key] = b
    ports = dict(backends.ports, dead1=dead1, dead2=dead2, blackhole=blackhole.port, listen2=listen2, metrics=metrics, admin=admin,
                 **{k: b.ports[k] for k, b in failover.items()}, **{k: b.ports[k] for k, b in killable.items()})
    cfg = build_mosn_config(listen, ports, for_host=name)
    h = hosts.Host(name, cfg, work, concurrency=hosts.DEFAULT_CONCURRENCY[name])
    err = None
    try:
        h.start()
    except hosts.HarnessError as e:
        h.failed = True
        err = str(e)
    if err is not None:
        pytest.fail(f"{name} did not start (work dir kept: {work}):\n{err}", pytrace=False)
    ctx = CaseContext(h, ports, {**backends.site_of, **{b.ports[k]: "fo" for k, b in failover.items()},
                                 **{b.ports[k]: b.specs[0][1] for k, b in killable.items()}})
    ctx.failover = failover
    ctx.killable = killable
    ctx.port2 = listen2
    try:
        yield ctx
    finally:
        h.stop()
        if h.failed:
            sys.stderr.write(f"\n[harness] {name}: kept work dir {work}\n")
        else:
            hosts.remove_run_dir(work)


@pytest.mark.needs_binary
@pytest.mark.parametrize("case", CASES, ids=[c.__name__ for c in CASES])
def test_case(host_ctx, case, backends):
    h = host_ctx.host
    assert h.alive(), f"{h.host} is not running\n{h.logs_tail()}"
    assert backends.alive(), "the backend helper process died"
    host_ctx.case_name = case.__name__
    offsets = h.log_offsets()
    case(host_ctx)
    assert h.alive(), f"{h.host} died during {case.__name__}\n{h.logs_tail()}"
    crashes = h.crash_lines(offsets)
    assert not crashes, f"{h.host} logged a crash during {case.__name__}:\n" + "\n".join(crashes[:20])


# --- the CLI contract around the hosts (no host process is started) ---------------------------

def _good_and_bad(run_dir):
    listen, *rest = hosts.free_ports(7)
    ports = dict(zip(("s1a", "s1b", "s2", "s3", "dead1", "dead2"), rest))
    good = build_mosn_config(listen, ports)
    bad, json_path = with_bad_host_address(good)
    return good, bad, json_path


@pytest.mark.needs_binary
def test_check_cli(mosn_ext, run_dir):
    """`mosn-ext check -c mosn.json`: exit 0 when fine; exit 1 and `<json.path>: <reason>` lines
    otherwise."""
    good, bad, json_path = _good_and_bad(run_dir)
    cfg = run_dir / "mosn.json"
    cfg.write_text(json.dumps(good, indent=2))
    r = subprocess.run([str(mosn_ext), "check", "-c", str(cfg)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, f"check rejected the good config (rc={r.returncode}):\n{r.stdout}\n{r.stderr}"
    cfg.write_text(json.dumps(bad, indent=2))
    r = subprocess.run([str(mosn_ext), "check", "-c", str(cfg)], capture_output=True, text=True, timeout=30)
    out = r.stdout + r.stderr
    assert r.returncode == 1, f"check must exit 1 on a bad config, got rc={r.returncode}:\n{out}"
    assert any(line.strip().startswith(json_path + ":") or f" {json_path}:" in line for line in out.splitlines()), \
        f"check output must name `{json_path}: <reason>`:\n{out}"


@pytest.mark.needs_binary
@pytest.mark.parametrize("host", HOSTS)
def test_print_config(mosn_ext, run_dir, host):
    """`mosn-ext start --host H ... --print-config` prints the generated host config, exits 0 and
    does not start a server."""
    good, _, _ = _good_and_bad(run_dir)
    cfg = run_dir / "mosn.json"
    cfg.write_text(json.dumps(good, indent=2))
    r = subprocess.run([str(mosn_ext), "start", "--host", host, "-c", str(cfg), "--work-dir", str(run_dir),
                        "--print-config"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, f"--print-config failed (rc={r.returncode}):\n{r.stdout}\n{r.stderr}"
    assert r.stdout.strip(), "--print-config printed nothing"
    if host == "envoy":
        assert "static_resources" in r.stdout or "listeners" in r.stdout, f"not an envoy config:\n{r.stdout[:2000]}"
    else:
        assert "http" in r.stdout and "server" in r.stdout, f"not an nginx.conf:\n{r.stdout[:2000]}"
    listen = str(hosts.listener_port(good))
    assert listen in r.stdout, f"the listener port {listen} does not appear in the generated config"


@pytest.mark.needs_binary
@pytest.mark.parametrize("host", HOSTS)
def test_stops_cleanly_on_sigterm(mosn_ext, backends, run_dir, host):
    """`mosn-ext start` runs the host in the foreground under its own PID: SIGTERM (what
    Ctrl-C / a supervisor sends) stops it with status 0 and leaves no worker behind."""
    import os
    import signal
    import time
    listen, dead1, dead2, listen2 = hosts.free_ports(4)
    cfg = build_mosn_config(listen, dict(backends.ports, dead1=dead1, dead2=dead2))
    h = hosts.Host(host, cfg, run_dir, concurrency=2).start()
    try:
        ctx = CaseContext(h, dict(backends.ports, dead1=dead1, dead2=dead2), backends.site_of)
        ctx.expect_site(ctx.get([("uid", "2")]), "s1", "before SIGTERM")
        pid = h.pid
        os.kill(pid, signal.SIGTERM)
        rc = h.proc.wait(15)
        assert rc == 0, f"{host} exited with {rc} on SIGTERM\n{h.logs_tail()}"
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and hosts._group_alive(pid):
            time.sleep(0.05)
        assert not hosts._group_alive(pid), f"{host}: processes of group {pid} still alive after SIGTERM"
        assert not hosts.tcp_open(listen, timeout=0.5), f"{host}: port {listen} still open after SIGTERM"
    finally:
        h.stop()


@pytest.mark.needs_binary
def test_start_finds_the_modules_or_says_where_it_looked(mosn_ext, run_dir):
    """`mosn-ext start` looks for the host modules where `make` puts them (next to the binary,
    else <repo>/build/output, so target/release/mosn-ext works too); when one is missing it
    names the file, where it looked and the make target that builds it."""
    import shutil
    good, _, _ = _good_and_bad(run_dir)
    cfg = run_dir / "mosn.json"
    cfg.write_text(json.dumps(good, indent=2))
    release = hosts.REPO_ROOT / "target" / "release" / "mosn-ext"
    if release.is_file():
        r = subprocess.run([str(release), "start", "--host", "nginx", "-c", str(cfg), "--work-dir", str(run_dir),
                            "--print-config"], capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, f"target/release/mosn-ext start: {r.stderr}"
        assert str(hosts.module_dir() / "ngx_http_mosn_module.so") in r.stdout, r.stdout[:400]
    lonely = run_dir / "bin"
    lonely.mkdir()
    shutil.copy(mosn_ext, lonely / "mosn-ext")
    for host, missing, target in [("nginx", "ngx_http_mosn_module.so", "make build-nginx-module"),
                                  ("envoy", "libmosn_envoy.so", "make build-l7")]:
        r = subprocess.run([str(lonely / "mosn-ext"), "start", "--host", host, "-c", str(cfg), "--module-dir",
                            str(lonely), "--work-dir", str(run_dir)], capture_output=True, text=True, timeout=30)
        assert r.returncode == 1, f"{host}: rc={r.returncode} {r.stderr}"
        assert missing in r.stderr and str(lonely) in r.stderr and target in r.stderr, r.stderr


@pytest.mark.needs_binary
def test_route_check_cli(mosn_ext, run_dir):
    """`mosn-ext route-check -c mosn.json cases.json`: exit 0 when every case holds, exit 1 with
    one line per mismatch otherwise (the README's example cases for the demo config)."""
    demo = hosts.REPO_ROOT / "examples" / "unit-routing"
    r = subprocess.run([str(mosn_ext), "route-check", "-c", str(demo / "mosn.json"), str(demo / "route-cases.json")],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, f"rc={r.returncode}\n{r.stdout}\n{r.stderr}"
    assert "5 of 5 cases as expected" in r.stdout, r.stdout
    bad = run_dir / "cases.json"
    bad.write_text(json.dumps([{"name": "uid 2", "request": {"headers": {"uid": "2"}}, "expect": {"cluster": "s3"}}]))
    r = subprocess.run([str(mosn_ext), "route-check", "-c", str(demo / "mosn.json"), str(bad)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 1, f"rc={r.returncode}\n{r.stdout}\n{r.stderr}"
    assert 'case "uid 2": cluster: want "s3", got "s1"' in r.stdout, r.stdout
