"""Reload without restart, on both hosts, under load.

Each host (2 workers) serves the minimal test config while wrk (16 connections, 20 s, a mix of
no-uid and unit requests) runs; the config changes five times: a route moved, a host added, a
host removed, a cluster added, a bad file. After each change the next requests must see it
(the bad file: refused with its JSON path, the old config still serving); wrk must see no
non-2xx answer. Envoy reloads in place (the module watches mosn.json; the last change goes
through the admin API's POST /api/v1/reload); nginx reloads with SIGHUP (`nginx -s reload`).

Socket errors: Envoy keeps its connections over a module reload, so none is allowed. An nginx
reload replaces the worker processes; each old worker closes its idle keep-alive connections
at once, and a request wrk has just sent on one of them (not yet read by the busy worker) ends
in a read error. That is nginx's own behaviour (plain proxy_pass shows it too: 0-14 errors per
run here, 5 reloads) and how often it hits depends on how busy the worker is, so a comparison
with one plain-nginx run was flaky (the ASan build, several times slower, drew 26 against
plain's 0 once). What the module could add is bounded instead: each replaced worker closes each
of wrk's connections at most once, so more than connections x worker-replacing reloads errors
means requests lost otherwise; and no worker may crash.
"""
from __future__ import annotations

import copy
import json
import re
import subprocess
import time

import pytest

from harness import hosts
from harness.client import request
from harness.config import build_mosn_config

WRK_SECONDS = 20
WRK_CONNECTIONS = 16

# Cycles through no-uid requests and the three units' uids.
WRK_SCRIPT = """
local n = 0
local uids = {"", "2", "200", "201"}
request = function()
  n = n + 1
  local u = uids[math.fmod(n, 4) + 1]
  if u == "" then return wrk.format("GET", "/load") end
  return wrk.format("GET", "/load", {["uid"] = u})
end
"""
# uid -> unit (the UNIT driver's ranges): 2 -> s1, 200 -> s2, 201 -> s3.
S1, S2 = ("uid", "2"), ("uid", "200")


def _site(port, path, headers=()):
    r = request(port, path, headers, timeout=5)
    assert r.status == 200, f"{path} {headers}: {r.describe()}"
    return r.site()


def _sites(port, headers=(), n=8):
    return {_site(port, f"/probe/{i}", headers)[0] for i in range(n)}


def _wait_for(what, f, limit=10.0):
    """Polls ``f`` until it returns truthy (a reload is seen by the next requests)."""
    deadline = time.monotonic() + limit
    last = None
    while time.monotonic() < deadline:
        try:
            last = f()
            if last:
                return last
        except AssertionError as e:
            last = e
        time.sleep(0.1)
    raise AssertionError(f"{what}: not seen within {limit}s (last: {last})")


def _wrk(port, script_path, seconds):
    return subprocess.Popen(["wrk", "-t", "2", "-c", str(WRK_CONNECTIONS), "-d", f"{seconds}s", "--timeout", "5s",
                             "-s", str(script_path), f"http://127.0.0.1:{port}/"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wrk_result(p) -> dict:
    out, _ = p.communicate(timeout=WRK_SECONDS + 60)
    m = re.search(r"(\d+) requests in", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {"requests": int(m.group(1)) if m else 0, "non2xx": int(non2xx.group(1)) if non2xx else 0,
            "socket_errors": sum(int(x) for x in sock.groups()) if sock else 0, "raw": out}


def _changes(base: dict, ports: dict):
    """The five configs, in order, each with the check that the next requests see it."""
    moved = copy.deepcopy(base)
    routes = moved["servers"][0]["routers"][0]["virtual_hosts"][0]["routers"]
    routes[-1]["route"]["cluster_name"] = "s3"  # the no-uid route: all_sites -> s3

    added = copy.deepcopy(moved)
    clusters = added["cluster_manager"]["clusters"]
    s2 = next(c for c in clusters if c["name"] == "s2")
    s2["hosts"].append({"address": f"127.0.0.1:{ports['s3']}"})  # s2 -> s2 + s3's backend

    removed = copy.deepcopy(added)
    s1 = next(c for c in removed["cluster_manager"]["clusters"] if c["name"] == "s1")
    s1["hosts"] = [h for h in s1["hosts"] if not h["address"].endswith(f":{ports['s1b']}")]

    new_cluster = copy.deepcopy(removed)
    new_cluster["cluster_manager"]["clusters"].append(
        {"name": "s4", "type": "SIMPLE", "lb_type": "LB_ROUNDROBIN", "hosts": [{"address": f"127.0.0.1:{ports['s1b']}"}]})
    new_routes = new_cluster["servers"][0]["routers"][0]["virtual_hosts"][0]["routers"]
    new_routes.insert(0, {"match": {"prefix": "/", "headers": [{"name": "x-case", "value": "new"}]},
                          "route": {"cluster_name": "s4"}})

    bad = copy.deepcopy(new_cluster)
    bad["cluster_manager"]["clusters"][0]["hosts"][0]["address"] = "127.0.0.1"  # no port
    return [
        ("route moved", moved, lambda p: _sites(p) == {"s3"}),
        ("host added", added, lambda p: _sites(p, [S2]) == {"s2", "s3"}),
        ("host removed", removed, lambda p: {r.site()[1] for r in
                                             (request(p, f"/rm/{i}", [S1], timeout=5) for i in range(8))}
         == {ports["s1a"]}),
        ("cluster added", new_cluster, lambda p: {r.site()[1] for r in (request(p, f"/new/{i}", [("x-case", "new")], timeout=5) for i in range(4))} == {ports["s1b"]}),
        ("bad file", bad, None),
    ]


def _trigger(h: hosts.Host, admin_port: int, last: bool):
    """Envoy: the module's file watcher sees the new file (the last change: the admin API);
    nginx: SIGHUP."""
    if h.host == "nginx":
        h.reload()
    elif last:
        r = request(admin_port, "/api/v1/reload", method="POST", timeout=10)
        return r


@pytest.mark.needs_binary
@pytest.mark.parametrize("name", ["envoy", "nginx"])
def test_reload_under_load(name, mosn_ext, backends, run_dir):
    listen, admin = hosts.free_ports(2)
    ports = dict(backends.ports, admin=admin)
    base = build_mosn_config(listen, ports, minimal=True, for_host=name)
    h = hosts.Host(name, base, run_dir / name, concurrency=2)
    h.start()
    script = run_dir / "mix.lua"
    script.write_text(WRK_SCRIPT)
    try:
        assert _sites(listen) == {"s1", "s2", "s3"}, "no-uid requests go to all_sites before any change"
        wrk = _wrk(listen, script, WRK_SECONDS)
        time.sleep(2)
        changes = _changes(base, ports)
        for i, (what, cfg, seen) in enumerate(changes):
            last = i == len(changes) - 1
            offsets = h.log_offsets()
            h.write_config(cfg)
            r = _trigger(h, admin, last)
            if seen is not None:
                _wait_for(what, lambda: seen(listen))
            else:
                # Refused with its JSON path; the config before it keeps serving.
                path = "cluster_manager.clusters[0].hosts[0].address"
                if r is not None:
                    assert r.status == 400 and path in r.text, f"admin reload of a bad file: {r.describe()}"
                _wait_for("the bad file's error in the log", lambda: path in h.new_log_text(offsets), limit=10)
                assert {r.site()[1] for r in (request(listen, f"/bad/{i}", [("x-case", "new")], timeout=5)
                                              for i in range(4))} == {ports["s1b"]}
                assert _sites(listen) == {"s3"}
            time.sleep(2.5)
        result = _wrk_result(wrk)
        (run_dir / f"wrk-{name}.txt").write_text(result["raw"])
        assert result["requests"] > 0, result["raw"]
        assert result["non2xx"] == 0, f"non-2xx answers during reloads:\n{result['raw']}\n{h.logs_tail()}"
        if name == "envoy":
            assert result["socket_errors"] == 0, f"socket errors during Envoy reloads:\n{result['raw']}"
        else:
            replacing = sum(1 for _, _, seen in changes if seen is not None)  # a bad file keeps the workers
            assert result["socket_errors"] <= WRK_CONNECTIONS * replacing, \
                f"socket errors beyond nginx's idle-close on {replacing} reloads:\n{result['raw']}"
            assert not h.crash_lines(), "crash in logs:\n" + "\n".join(h.crash_lines())
        assert h.alive(), h.logs_tail()
    finally:
        h.stop()


@pytest.mark.needs_binary
@pytest.mark.parametrize("name", ["envoy", "nginx"])
def test_reload_keeps_the_state_of_unchanged_clusters(name, mosn_ext, backends, run_dir):
    """A reload that leaves cluster s1 as it was: s1's counters carry over (the admin API's
    stats show the requests sent before the reload), and so does its round-robin position
    (the first request after the reload goes to the host after the last one before)."""
    listen, admin = hosts.free_ports(2)
    ports = dict(backends.ports, admin=admin)
    base = build_mosn_config(listen, ports, minimal=True, for_host=name)
    h = hosts.Host(name, base, run_dir / name, concurrency=2)
    h.start()
    try:
        before = [_site(listen, f"/before/{i}", [S1])[1] for i in range(3)]
        assert set(before) == {ports["s1a"], ports["s1b"]}, before
        stats = lambda: json.loads(request(admin, "/api/v1/stats", timeout=5).text)["upstream"]["s1"]  # noqa: E731
        assert stats()["request_total"] == 3, stats()
        moved = copy.deepcopy(base)
        moved["servers"][0]["routers"][0]["virtual_hosts"][0]["routers"][-1]["route"]["cluster_name"] = "s3"
        h.write_config(moved)
        r = _trigger(h, admin, last=True)
        if r is not None:
            assert r.status == 200, r.describe()
        _wait_for("route moved", lambda: _sites(listen) == {"s3"})
        assert stats()["request_total"] == 3, f"s1's counters after the reload: {stats()}"
        after = _site(listen, "/after", [S1])[1]
        assert after != before[-1], f"round robin restarted: before {before}, after {after}"
        assert stats()["request_total"] == 4
    finally:
        h.stop()
