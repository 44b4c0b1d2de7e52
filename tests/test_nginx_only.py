"""Nginx-only checks (they depend on nginx features, hence nginx_only):
  (a) `nginx -t` on the generated nginx.conf fails with our message naming the bad JSON field;
  (b) SIGHUP reload picks up a changed mosn.json, and a bad one is rejected while the old config
      keeps serving (nginx re-reads nginx.conf -> mosn_config -> mosn.json in the master);
  (c) with 2 worker processes (per-worker library state) the unit routing is still right.

Assumption (contract): the generated nginx.conf refers to mosn.json by PATH (`mosn_config
/abs/mosn.json;`), so replacing that file changes what `nginx -t` / a reload sees.
"""
from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from cases import CaseContext
from harness import hosts
from harness.client import request
from harness.config import build_mosn_config, with_bad_host_address

RUN_DIR_HOST = "nginx"  # run dirs: build/test-runs/<test-name>-nginx/
pytestmark = [pytest.mark.nginx_only, pytest.mark.needs_binary]

NGINX = "nginx"


def _ports(backends=None):
    listen, dead1, dead2 = hosts.free_ports(3)
    if backends is None:
        b = dict(zip(("s1a", "s1b", "s2", "s3"), hosts.free_ports(4)))
    else:
        b = dict(backends.ports)
    return listen, dict(b, dead1=dead1, dead2=dead2)


def _nginx_t(run_dir: Path):
    env = dict(os.environ)
    if os.environ.get("MOSN_HOST_LD_PRELOAD"):  # make asan: the sanitizer runtime first
        env["LD_PRELOAD"] = os.environ["MOSN_HOST_LD_PRELOAD"]
    r = subprocess.run([NGINX, "-t", "-p", str(run_dir) + "/", "-c", str(run_dir / "nginx.conf")],
                       capture_output=True, text=True, timeout=60, cwd=run_dir, env=env)
    out = r.stdout + r.stderr
    for p in run_dir.glob("*.log"):  # an error_log inside the work dir, if the config has one
        try:
            out += "\n" + p.read_text(errors="replace")
        except OSError:
            pass
    return r.returncode, out


def test_nginx_t_bad_config_names_json_path(mosn_ext, run_dir):
    listen, ports = _ports()
    good = build_mosn_config(listen, ports, for_host="nginx")
    mosn_json = run_dir / "mosn.json"
    mosn_json.write_text(json.dumps(good, indent=2))
    r = subprocess.run([str(mosn_ext), "start", "--host", "nginx", "-c", str(mosn_json), "--work-dir", str(run_dir),
                        "--concurrency", "1", "--print-config"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, f"mosn-ext --print-config failed (rc={r.returncode}):\n{r.stdout}\n{r.stderr}"
    (run_dir / "nginx.conf").write_text(r.stdout)

    rc, out = _nginx_t(run_dir)
    assert rc == 0, f"nginx -t rejected the generated nginx.conf with a GOOD mosn.json (rc={rc}):\n{out[-6000:]}"

    bad, json_path = with_bad_host_address(good)
    mosn_json.write_text(json.dumps(bad, indent=2))
    rc, out = _nginx_t(run_dir)
    assert rc != 0, f"nginx -t accepted a port-less host address:\n{out[-6000:]}"
    assert json_path in out, f"nginx -t output does not name `{json_path}`:\n{out[-6000:]}"

    # Valid MOSN JSON nginx can not honour: the UNIT driver reading a request trailer (nginx
    # 1.22 drops request trailers) is refused by nginx -t, not ignored.
    trailers = json.loads(json.dumps(good))
    trailers["servers"][0]["listeners"][0]["stream_filters"][-1]["config"]["metadataers"][0]["config"]["trailers"] = True
    mosn_json.write_text(json.dumps(trailers, indent=2))
    rc, out = _nginx_t(run_dir)
    want = "servers[0].listeners[0].stream_filters[1].config.metadataers[0].config.trailers"
    assert rc != 0 and want in out and "drops request trailers" in out, f"nginx -t on trailers: true (rc={rc}):\n{out[-6000:]}"


def _poll(fn, timeout: float, interval: float = 0.1):
    """Call fn() until it returns a truthy value or timeout; returns the last value."""
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v or time.monotonic() >= deadline:
            return v
        time.sleep(interval)


def _workers(h) -> set[int]:
    """The nginx master's child processes (its workers, old and new)."""
    pid = h.proc.pid
    try:
        return {int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}
    except OSError:
        return set()


def _no_uid_sites(h, n=4):
    out = []
    for _ in range(n):
        r = request(h.port, "/reload-probe", timeout=5)
        out.append(r.site()[0] if r.status == 200 else f"HTTP {r.status}")
    return out


class _NginxStarter:
    """Starts nginx through mosn-ext in the test's run dir; exposes logs_tail() so a failing test's
    report carries the host logs (see the makereport hook in conftest.py)."""

    def __init__(self, backends, run_dir):
        self.backends = backends
        self.run_dir = run_dir
        self.started = []

    def __call__(self, concurrency: int, catch_all: str = "all_sites", upstream_listener: bool = False):
        listen, ports = _ports(self.backends)
        if upstream_listener:
            # The second listener's filters (flow control, ...); its own backends are not
            # started (nothing listens on those ports).
            keys = ("listen2", "h1", "h2", "p1", "p2", "p3", "i1", "u1", "mr1", "mr2", "metrics")
            ports.update(zip(keys, hosts.free_ports(len(keys))))
        cfg = build_mosn_config(listen, ports, catch_all_cluster=catch_all, for_host="nginx")
        h = hosts.Host(NGINX, cfg, self.run_dir, concurrency=concurrency)
        self.started.append(h)
        err = None
        try:
            h.start()
        except hosts.HarnessError as e:
            err = str(e)
        if err:
            pytest.fail(f"nginx did not start:\n{err}", pytrace=False)
        return h, ports

    def logs_tail(self, n: int = 30) -> str:
        return "\n".join(h.logs_tail(n) for h in self.started) or "<no host started>"

    def stop(self):
        for h in self.started:
            h.stop()


@pytest.fixture
def nginx_host(mosn_ext, backends, run_dir):
    starter = _NginxStarter(backends, run_dir)
    try:
        yield starter
    finally:
        starter.stop()


def test_reload_new_config_and_bad_config_kept_old(nginx_host, backends):
    h, ports = nginx_host(1)
    # Before: the no-uid route goes to all_sites.
    assert set(_no_uid_sites(h)) == {"s1", "s2", "s3"}, "no-uid requests should round-robin over all_sites"

    # 1) Route everything without uid to s3, HUP, wait until the new workers serve it.
    new_cfg = build_mosn_config(h.port, ports, catch_all_cluster="s3", for_host="nginx")
    h.write_config(new_cfg)
    old_workers = _workers(h)
    h.reload()
    sites = _poll(lambda: (lambda s: s if s == ["s3"] * 4 else None)(_no_uid_sites(h)), timeout=10)
    assert sites == ["s3"] * 4, f"after reload no-uid requests should all go to s3, got {_no_uid_sites(h)}\n{h.logs_tail()}"
    # An old worker may still accept a connection until it has shut down (nginx's graceful
    # reload): the checks below are for the new config alone.
    gone = _poll(lambda: not (old_workers & _workers(h)), timeout=10)
    assert gone, f"old workers {sorted(old_workers & _workers(h))} still running 10 s after the reload\n{h.logs_tail()}"
    r = request(h.port, "/reload-check", timeout=5)
    line = h.find_access("/reload-check")[-1]
    assert line.get("cluster") == "s3", f"access log after reload: {line['_raw']}"
    assert r.site()[0] == "s3"

    # 2) A bad mosn.json: the reload is rejected, the error names the field, old config keeps serving.
    offsets = h.log_offsets()
    bad, json_path = with_bad_host_address(new_cfg)
    h.write_config(bad)
    h.reload()
    found = _poll(lambda: json_path in h.new_log_text(offsets), timeout=10)
    assert found, f"after a HUP with a bad mosn.json the error log should name `{json_path}`:\n{h.logs_tail()}"
    assert h.alive(), f"nginx master died on a bad reload\n{h.logs_tail()}"
    time.sleep(0.3)  # nothing should change; give a (wrong) worker replacement time to show
    assert _no_uid_sites(h) == ["s3"] * 4, "the old (s3) config must keep serving after a rejected reload"
    r = request(h.port, "/after-bad-reload", headers=[("uid", "2")], timeout=5)
    assert r.status == 200 and r.site()[0] == "s1", f"uid 2 after rejected reload: {r.describe()}"
    assert not h.crash_lines(), "crash in logs:\n" + "\n".join(h.crash_lines())


def _children(pid: int) -> list[int]:
    kids = []
    try:
        for t in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{t}/children") as f:
                kids += [int(x) for x in f.read().split()]
        return kids
    except OSError:
        pass
    for d in os.listdir("/proc"):  # fallback: scan ppids
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        kids.append(int(d))
            except (OSError, ValueError, IndexError):
                pass
    return kids


def test_two_workers_seed_curls(nginx_host, backends):
    """--concurrency 2 -> 2 nginx worker processes (listen ... reuseport spreads connections
    over both). The upstream state lives in a shared zone, so round robin is global as on
    Envoy: consecutive uid:2 requests alternate s1's two hosts even when they land on
    different workers (with per-worker cursors two workers would each start at host 0)."""
    h, ports = nginx_host(2)
    workers = _poll(lambda: (lambda k: k if len(k) == 2 else None)(_children(h.pid)), timeout=5)
    assert workers and len(workers) == 2, f"expected 2 worker processes under master {h.pid}, got {_children(h.pid)}"
    ctx = CaseContext(h, ports, backends.site_of)
    ctx.case_name = "two_workers"
    served = []
    for i in range(16):
        r = ctx.get(raw=[b"uid:2"])
        port = ctx.expect_site(r, "s1", f"uid:2 #{i + 1}")
        served.append((port, ctx.log_for(r).get("pid")))
    pids = {pid for _, pid in served}
    assert len(pids) == 2, f"requests did not reach both workers (pids {pids}); the test proves nothing"
    s1_ports = [p for p, _ in served]
    assert all(a != b for a, b in zip(s1_ports, s1_ports[1:])), \
        f"round robin is not shared by the workers: s1 hosts in order {s1_ports} (worker pids {[w for _, w in served]})"
    for i in range(3):
        assert ctx.expect_site(ctx.get(raw=[b"uid:200"]), "s2", "uid:200") == ports["s2"]
        assert ctx.expect_site(ctx.get(raw=[b"uid:201"]), "s3", "uid:201") == ports["s3"]
    r = ctx.get([("x-mosn-on-envoy-unit", "s2")])
    assert r.status == 200
    ctx.expect_seen_unit(r, "-", "forged unit, 2 workers")
    assert not h.crash_lines(), "crash in logs:\n" + "\n".join(h.crash_lines())


def test_flow_control_is_shared_by_two_workers(nginx_host, backends):
    """flowControlFilter's bucket is in the shared zone: with 2 workers serving, the rule
    /limited (3 per minute) lets exactly 3 of 10 requests through, whichever worker serves."""
    h, ports = nginx_host(2, upstream_listener=True)
    workers = _poll(lambda: (lambda k: k if len(k) == 2 else None)(_children(h.pid)), timeout=5)
    assert workers and len(workers) == 2, f"expected 2 worker processes under master {h.pid}, got {_children(h.pid)}"
    ctx = CaseContext(h, ports, backends.site_of)
    ctx.case_name = "flow_two_workers"
    got = [ctx.get(path=f"/limited?n={i}", port=ports["listen2"]) for i in range(10)]
    statuses = [r.status for r in got]
    assert statuses.count(200) == 3 and statuses.count(509) == 7, f"3 of 10 should pass: {statuses}"
    pids = {ctx.log_for(r).get("pid") for r in got}
    assert len(pids) == 2, f"requests did not reach both workers (pids {pids}); the test proves nothing"
    # MOSN's metrics are the sum of both workers (the counters live in the shared zone): the
    # scrape, served by either worker, counts all 10 requests of this listener.
    from cases import scrape
    for _ in range(4):
        m = scrape(ports["metrics"])
        key = ("mosn_downstream_request_total", (("listener", "upstreamListener"),))
        assert m[key] == 10, f"request_total of both workers: {m.get(key)}"
        assert m[("mosn_downstream_request_200_total", (("listener", "upstreamListener"),))] == 3
        assert m[("mosn_downstream_request_other_code", (("listener", "upstreamListener"),))] == 7, "the 509s"


def test_deb_installs_into_a_scratch_root_and_nginx_t_passes(mosn_ext, run_dir):
    """`make deb`'s libnginx-mod-http-mosn: dpkg installs it into a scratch root (its postinst
    enables the module there), it depends on the ABI of the nginx it was built for, and
    `nginx -t` with the installed module (finding its library beside it) and a mosn.json passes."""
    debs = sorted((hosts.REPO_ROOT / "build" / "output").glob("libnginx-mod-http-mosn_*.deb"))
    assert debs, "no build/output/libnginx-mod-http-mosn_*.deb: run `make deb`"
    deb = debs[-1]
    provides = subprocess.run(["dpkg", "-s", "nginx"], capture_output=True, text=True).stdout
    depends = subprocess.run(["dpkg-deb", "-f", str(deb), "Depends"], capture_output=True, text=True).stdout
    abi = next(p.strip() for line in provides.splitlines() if line.startswith("Provides:")
               for p in line[len("Provides:"):].split(",") if p.strip().startswith("nginx-abi-"))
    assert abi in depends, f"{deb.name} Depends: {depends!r}, nginx provides {abi}"
    root = run_dir / "root"
    for d in ("var/lib/dpkg/info", "var/lib/dpkg/updates", "etc/nginx/modules-enabled"):
        (root / d).mkdir(parents=True, exist_ok=True)
    (root / "var/lib/dpkg/status").write_text("")
    r = subprocess.run(["dpkg", f"--root={root}", "--force-script-chrootless", "--force-depends", "--log=/dev/null",
                        "-i", str(deb)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"dpkg -i into {root}: {r.stdout}{r.stderr}"
    link = root / "etc/nginx/modules-enabled/50-mod-http-mosn.conf"
    assert link.is_symlink() and os.readlink(link).endswith("modules-available/mod-http-mosn.conf"), "postinst link"
    modules = root / "usr/lib/nginx/modules"
    assert (modules / "ngx_http_mosn_module.so").is_file() and (modules / "mosn_extension.so").is_file()
    listen, ports = _ports()
    mosn_json = run_dir / "mosn.json"
    mosn_json.write_text(json.dumps(build_mosn_config(listen, ports, for_host="nginx"), indent=2))
    r = subprocess.run([str(root / "usr/bin/mosn-ext"), "start", "--host", "nginx", "-c", str(mosn_json), "--work-dir",
                        str(run_dir), "--module-dir", str(modules), "--print-config"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, f"the packaged mosn-ext: {r.stdout}{r.stderr}"
    assert f"load_module \"{modules}/ngx_http_mosn_module.so\";" in r.stdout or f"load_module {modules}/ngx_http_mosn_module.so;" in r.stdout, r.stdout[:400]
    (run_dir / "nginx.conf").write_text(r.stdout)
    rc, out = _nginx_t(run_dir)
    assert rc == 0, f"nginx -t with the packaged module: {out[-4000:]}"
