"""Envoy-only checks: `envoy --mode validate` on the generated config (bad MOSN config is reported
with its JSON path; the module's ABI version matches), the CI symbol gate, and how Envoy shows
the core's upstream decisions (active health results in admin /clusters, a circuit breaker
overflow in the access log, MOSN's idle_timeout in Envoy's cluster, the core's host as the
override host when the filter config leaves out `router_follows`).

These depend on Envoy-specific behaviour (validate mode loads the dynamic module and runs its
config hooks; the ABI is a set of exported `envoy_dynamic_module_callback_*` symbols), hence
envoy_only.

Assumption (contract): the generated envoy.yaml refers to mosn.json by PATH (the module reads and
validates it when Envoy creates the filter/cluster config), so overwriting mosn.json after
generating envoy.yaml makes `envoy --mode validate` see the bad config.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import threading
import time

import pytest

from harness import hosts
from harness.client import request
from harness.config import build_mosn_config, with_bad_host_address

RUN_DIR_HOST = "envoy"  # run dirs: build/test-runs/<test-name>-envoy/
pytestmark = [pytest.mark.envoy_only]

ABI_MATCHED = "ABI version v0.2.0 matched"
ENVOY_MODULE = "libmosn_envoy.so"


def _config(run_dir):
    listen, *rest = hosts.free_ports(7)
    ports = dict(zip(("s1a", "s1b", "s2", "s3", "dead1", "dead2"), rest))
    return build_mosn_config(listen, ports)


def _generate_envoy_yaml(mosn_ext, run_dir, cfg):
    mosn_json = run_dir / "mosn.json"
    mosn_json.write_text(json.dumps(cfg, indent=2))
    r = subprocess.run([str(mosn_ext), "start", "--host", "envoy", "-c", str(mosn_json), "--work-dir", str(run_dir),
                        "--concurrency", "2", "--print-config"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, f"mosn-ext --print-config failed (rc={r.returncode}):\n{r.stdout}\n{r.stderr}"
    envoy_yaml = run_dir / "envoy.yaml"
    envoy_yaml.write_text(r.stdout)
    return mosn_json, envoy_yaml


def _validate(envoy_yaml, run_dir):
    r = hosts.run_envoy(["--mode", "validate", "-c", str(envoy_yaml), "--log-level", "info"],
                        env_extra={"ENVOY_DYNAMIC_MODULES_SEARCH_PATH": str(hosts.module_dir())},
                        timeout=120, cwd=run_dir)
    out = r.stdout + r.stderr
    (run_dir / f"validate-{envoy_yaml.stem}-rc{r.returncode}.log").write_text(out)
    return r.returncode, out


def _start_envoy(config_yaml, run_dir, listen: int, *, concurrency: int, extra=()):
    """Envoy on ``config_yaml`` with the module from build/output, in its own session (stop
    it with ``hosts.stop_process``), logging to run_dir/envoy.log; returns ``(process, log)``
    once ``listen`` accepts, or fails with the log's tail (and stops it)."""
    log = run_dir / "envoy.log"
    with open(log, "ab") as out:
        p = subprocess.Popen([str(hosts.envoy_binary()), "-c", str(config_yaml), "--concurrency", str(concurrency),
                              "--disable-hot-restart", *extra],
                             stdout=out, stderr=subprocess.STDOUT, start_new_session=True, cwd=run_dir,
                             env=dict(os.environ, ENVOY_DYNAMIC_MODULES_SEARCH_PATH=str(hosts.module_dir())))
    deadline = time.monotonic() + 20
    while not hosts.tcp_open(listen):
        if p.poll() is not None or time.monotonic() >= deadline:
            hosts.stop_process(p)
            pytest.fail(f"envoy did not listen on {listen} within 20 s (rc={p.returncode}):\n{log.read_text()[-4000:]}",
                        pytrace=False)
        time.sleep(0.1)
    return p, log


def test_envoy_binary_resolves():
    """envoy_binary() finds the real ELF behind the `envoy` on PATH (a pyenv shim / Python wrapper)."""
    p = hosts.envoy_binary()
    assert hosts._is_elf(p), p
    r = subprocess.run([str(p), "--version"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and "/1.40." in r.stdout, f"{p} --version: {r.stdout}{r.stderr}"


@pytest.mark.needs_binary
def test_validate_good_config_and_abi_matched(mosn_ext, run_dir):
    """The generated envoy.yaml validates, and Envoy logs that the module's ABI version matches."""
    _, envoy_yaml = _generate_envoy_yaml(mosn_ext, run_dir, _config(run_dir))
    rc, out = _validate(envoy_yaml, run_dir)
    assert rc == 0, f"envoy --mode validate rejected the generated config (rc={rc}):\n{out[-6000:]}"
    assert ABI_MATCHED in out, f"Envoy did not log `{ABI_MATCHED}` (module not loaded, or ABI mismatch):\n{out[-6000:]}"


@pytest.mark.needs_binary
def test_validate_bad_config_names_json_path(mosn_ext, run_dir):
    """Good mosn.json -> envoy.yaml; then mosn.json (same path) gets a host address without a port:
    `envoy --mode validate` fails and the output names the JSON path of the bad field."""
    good = _config(run_dir)
    mosn_json, envoy_yaml = _generate_envoy_yaml(mosn_ext, run_dir, good)
    bad, json_path = with_bad_host_address(good)
    mosn_json.write_text(json.dumps(bad, indent=2))
    rc, out = _validate(envoy_yaml, run_dir)
    assert rc != 0, f"envoy --mode validate accepted a config with a port-less host address:\n{out[-6000:]}"
    assert json_path in out, (f"Envoy's output does not name `{json_path}` (is mosn.json read by path at "
                              f"config time?):\n{out[-6000:]}")


@pytest.mark.needs_binary
def test_log_filter_state_is_checked_by_envoy(mosn_ext, run_dir):
    """The HTTP filter's `log_filter_state` (the access-log filter state it writes; absent:
    both keys): a list of known keys validates, an unknown key fails validation by name; so
    does a `router_follows` that is not a boolean."""
    _, envoy_yaml = _generate_envoy_yaml(mosn_ext, run_dir, _config(run_dir))
    text = envoy_yaml.read_text()
    for name, keys, ok in (("known", '[\\"mosn.unit\\"]', True), ("unknown", '[\\"mosn.stream_id\\"]', False)):
        edited, n = re.subn(r'(\\"listener\\":\\"[^\\"]*\\")',
                            lambda m: m.group(1) + ',\\"log_filter_state\\":' + keys, text)
        assert n == 1, f"the module's HTTP filter config not found in {envoy_yaml}"
        y = run_dir / f"envoy-logfs-{name}.yaml"
        y.write_text(edited)
        rc, out = _validate(y, run_dir)
        if ok:
            assert rc == 0, f"envoy --mode validate rejected log_filter_state {keys}:\n{out[-6000:]}"
        else:
            assert rc != 0 and '"mosn.stream_id" is not one of' in out, f"unknown key accepted or not named:\n{out[-6000:]}"
    # `router_follows` (the generated config's true) is a yes or no, nothing else.
    assert '\\"router_follows\\":true' in text, f"the generated filter config lacks router_follows: {envoy_yaml}"
    y = run_dir / "envoy-router-follows-bad.yaml"
    y.write_text(text.replace('\\"router_follows\\":true', '\\"router_follows\\":\\"yes\\"', 1))
    rc, out = _validate(y, run_dir)
    assert rc != 0 and '"router_follows" must be true or false' in out, f"a bad router_follows accepted or not named:\n{out[-6000:]}"


def _nm(args, path) -> set[str]:
    r = subprocess.run(["nm", "-D", *args, str(path)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"nm -D {' '.join(args)} {path} failed: {r.stderr}"
    names = set()
    for line in r.stdout.splitlines():
        parts = line.split()
        if parts:
            names.add(parts[-1].split("@", 1)[0])
    return names


@pytest.mark.needs_binary
def test_abi_symbols_exported_by_envoy():
    """CI gate: every undefined envoy_dynamic_module_callback_* of libmosn_envoy.so is defined
    (exported) by the Envoy binary we run against."""
    so = hosts.module_dir() / ENVOY_MODULE
    assert so.is_file(), f"{so} not built"
    needed = {s for s in _nm(["--undefined-only"], so) if s.startswith("envoy_dynamic_module_callback_")}
    exported = _nm(["--defined-only"], hosts.envoy_binary())
    assert any(s.startswith("envoy_dynamic_module_callback_") for s in exported), \
        f"{hosts.envoy_binary()} exports no envoy_dynamic_module_callback_* (wrong binary?)"
    missing = sorted(needed - exported)
    assert not missing, (f"{len(missing)} callback(s) used by {so.name} are not exported by Envoy "
                         f"{hosts.envoy_binary()}:\n" + "\n".join(missing))
    own = _nm(["--defined-only"], so)
    assert "envoy_dynamic_module_on_program_init" in own, f"{so.name} does not export envoy_dynamic_module_on_program_init"


@pytest.mark.needs_binary
def test_envoy_module_exports_no_c_abi():
    """The C ABI (mosn_ext_*) is a layer only Nginx and C hosts load: the Envoy module links the
    core directly and exports none of it; the C library exports it."""
    so = hosts.module_dir() / ENVOY_MODULE
    leaked = sorted(s for s in _nm(["--defined-only"], so) if s.startswith("mosn_ext_"))
    assert not leaked, f"{so.name} exports {len(leaked)} mosn_ext_* symbols: {leaked[:5]}"
    c_lib = _nm(["--defined-only"], hosts.module_dir() / "mosn_extension.so")
    assert "mosn_ext_stream_new" in c_lib and "mosn_ext_abi_version" in c_lib


# --- the core's upstream features as Envoy shows them -------------------------------------------

def _small_config(listen: int, clusters: list, cluster: str) -> dict:
    """One listener whose only route goes to ``cluster``."""
    return {
        "servers": [{
            "routers": [{"router_config_name": "r", "virtual_hosts": [{"name": "v", "domains": ["*"], "routers": [
                {"match": {"prefix": "/"}, "route": {"cluster_name": cluster}}]}]}],
            "listeners": [{"name": "serverListener", "address": f"127.0.0.1:{listen}", "bind_port": True,
                           "filter_chains": [{"filters": [{"type": "proxy", "config": {
                               "downstream_protocol": "Http1", "router_config_name": "r"}}]}]}],
        }],
        "cluster_manager": {"clusters": clusters},
    }


def _admin(port: int, path: str) -> str:
    r = request(port, path, timeout=5)
    assert r.status == 200, f"admin {path}: {r.describe()}"
    return r.text


def _health_flags(admin: int, cluster: str, host_port: int) -> str | None:
    """The host's ``health_flags`` in Envoy's admin /clusters (``healthy``, ``/failed_eds_health``, ...)."""
    prefix = f"{cluster}::127.0.0.1:{host_port}::health_flags::"
    for line in _admin(admin, "/clusters").splitlines():
        if line.startswith(prefix):
            return line[len(prefix):].strip()
    return None


def _wait(what: str, timeout: float, probe, ok, host) -> object:
    """Polls ``probe()`` until ``ok(value)``; fails with the last value and the host's logs."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if ok(value):
            return value
        if time.monotonic() >= deadline:
            pytest.fail(f"{what}: not within {timeout}s (last: {value!r})\n{host.logs_tail(30)}", pytrace=False)
        time.sleep(0.05)


@pytest.mark.needs_binary
def test_active_health_results_show_in_envoys_clusters(mosn_ext, run_dir):
    """MOSN's health_check runs in the core; its verdict reaches Envoy's view of the host
    (admin /clusters health flags) within a few intervals, and the host comes back when a
    backend starts on its port. While it is out, the core answers MOSN's 502."""
    listen, admin, port = hosts.free_ports(3)
    cluster = {"name": "hc", "type": "SIMPLE", "lb_type": "LB_ROUNDROBIN", "hosts": [{"address": f"127.0.0.1:{port}"}],
               "health_check": {"protocol": "Http1", "service_name": "hc", "interval": "200ms", "interval_jitter": "10ms",
                                "timeout": "500ms", "initial_delay_seconds": "100ms",
                                "healthy_threshold": 1, "unhealthy_threshold": 2,
                                "check_config": {"http_check_config": {"path": "/health"}}}}
    h = hosts.Host("envoy", _small_config(listen, [cluster], "hc"), run_dir, extra_args=["--admin-port", str(admin)])
    h.start()
    backend = None
    try:
        flags = _wait("Envoy lists the dead host as unhealthy", 5, lambda: _health_flags(admin, "hc", port),
                      lambda f: f not in (None, "healthy"), h)
        # What `cluster_update_host_health(host, Unhealthy)` sets in 1.40: the EDS health flag.
        assert flags == "/failed_eds_health", f"health flags {flags!r}\n{h.logs_tail(30)}"
        r = request(listen, "/while-down")
        assert r.status == 502, f"no healthy host: expected MOSN's 502, got {r.describe()}"
        backend = hosts.Backends([("hc", "hc")]).start(ports={"hc": port})
        _wait("Envoy lists the host as healthy again", 5, lambda: _health_flags(admin, "hc", port),
              lambda f: f == "healthy", h)
        r = request(listen, "/after")
        assert r.status == 200 and r.text == f"site hc from {port}\n", r.describe()
        assert h.alive() and not h.crash_lines(), h.logs_tail(30)
    finally:
        if backend is not None:
            backend.stop()
        h.stop()


@pytest.mark.needs_binary
def test_without_router_follows_the_core_host_is_envoys_override_host(mosn_ext, run_dir, backends):
    """A hand-written chain may put a filter between the module and the router, so it leaves
    out `router_follows`: the core's host for a request it can not retry then reaches Envoy
    as the override host (the adapter's unit tests check which call carries it), not through
    the LB's slot. On the real Envoy that path still serves, and the core's round robin
    still decides: the answers alternate over the cluster's two hosts, nothing logged as a
    misuse. (The generated config, with `router_follows`, runs in every host case.)"""
    listen = hosts.free_ports(1)[0]
    s1a, s1b = backends.ports["s1a"], backends.ports["s1b"]
    cluster = {"name": "rr", "type": "SIMPLE", "lb_type": "LB_ROUNDROBIN",
               "hosts": [{"address": f"127.0.0.1:{s1a}"}, {"address": f"127.0.0.1:{s1b}"}]}
    _, envoy_yaml = _generate_envoy_yaml(mosn_ext, run_dir, _small_config(listen, [cluster], "rr"))
    text = envoy_yaml.read_text()
    assert text.count('\\"router_follows\\":true') == 1, f"the generated filter config lacks router_follows: {envoy_yaml}"
    envoy_yaml.write_text(text.replace('\\"router_follows\\":true', '\\"router_follows\\":false'))
    proc, log = _start_envoy(envoy_yaml, run_dir, listen, concurrency=1)
    try:
        answers = [request(listen, "/") for _ in range(6)]
        assert all(r.status == 200 for r in answers), [r.describe() for r in answers]
        ports = [int(r.text.split()[-1]) for r in answers]
        assert set(ports) == {s1a, s1b} and all(a != b for a, b in zip(ports, ports[1:])), \
            f"the core's round robin must alternate over {s1a} and {s1b}: {ports}"
        crashes = [line for line in log.read_text().splitlines() if hosts.CRASH_PATTERNS.search(line)]
        assert not crashes, "\n".join(crashes[:20])
    finally:
        hosts.stop_process(proc)


@pytest.mark.needs_binary
def test_circuit_breaker_overflow_is_503_named_in_the_access_log(mosn_ext, run_dir, backends):
    """max_requests 1: a second request while the first is in flight is refused by the core
    (MOSN's overflow): 503, and the access log's details name it. MOSN's idle_timeout is
    Envoy's upstream idle_timeout."""
    listen, admin = hosts.free_ports(2)
    slow = backends.ports["slow1"]  # answers after 1 s
    cluster = {"name": "cb", "type": "SIMPLE", "lb_type": "LB_ROUNDROBIN", "hosts": [{"address": f"127.0.0.1:{slow}"}],
               "circuit_breakers": [{"max_requests": 1}], "idle_timeout": "90s"}
    h = hosts.Host("envoy", _small_config(listen, [cluster], "cb"), run_dir, extra_args=["--admin-port", str(admin)])
    h.start()
    try:
        first = []
        t = threading.Thread(target=lambda: first.append(request(listen, "/first", timeout=10)))
        t.start()
        try:
            _wait("the first request is in flight", 3,
                  lambda: _admin(admin, "/stats?filter=^cluster\\.cb\\.upstream_rq_active$").strip(),
                  lambda s: s.endswith(": 1"), h)
            r = request(listen, "/second")
        finally:
            t.join(15)
        assert r.status == 503, f"overflow: expected 503, got {r.describe()}"
        line = h.find_access("/second")[-1]
        assert line.get("status") == "503" and line.get("cluster") == "cb", line["_raw"]
        assert line.get("details") == "mosn_upstream_overflow", f"details must name the overflow: {line['_raw']}"
        assert first and first[0].status == 200, f"the first request: {first[0].describe() if first else 'no response'}"
        r = request(listen, "/third")
        assert r.status == 200, f"after the first request ended: {r.describe()}"
        assert '"idle_timeout": "90s"' in _admin(admin, "/config_dump"), "MOSN's idle_timeout is not in Envoy's cluster"
        assert h.alive() and not h.crash_lines(), h.logs_tail(30)
    finally:
        h.stop()


@pytest.mark.needs_binary
def test_a_mosn_config_change_through_file_based_xds_reaches_a_running_envoy(mosn_ext, run_dir, backends):
    """`mosn-ext xds` writes LDS/CDS resources whose module configs carry the MOSN config
    inline, and a bootstrap reading them from files (file-based xDS: real xDS without a
    server). A changed mosn.json, written again by `mosn-ext xds` (CDS, then LDS, each renamed
    into place), reaches the running Envoy: the next requests route by it, and a client
    sending requests all along gets no failure."""
    listen, admin = hosts.free_ports(2)
    cfg = build_mosn_config(listen, dict(backends.ports), minimal=True)
    mosn_json, xds_dir = run_dir / "mosn.json", run_dir / "xds"
    mosn_json.write_text(json.dumps(cfg))

    def publish():
        r = subprocess.run([str(mosn_ext), "xds", "-c", str(mosn_json), "--out", str(xds_dir), "--admin-port", str(admin)],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stdout + r.stderr

    publish()
    assert "config_path" not in (xds_dir / "lds.yaml").read_text()
    p, log = _start_envoy(xds_dir / "bootstrap.yaml", run_dir, listen, concurrency=2,
                          extra=["--file-flush-interval-msec", "100"])
    try:
        sites = lambda: {request(listen, f"/x/{i}", timeout=5).site()[0] for i in range(8)}  # noqa: E731
        assert sites() == {"s1", "s2", "s3"}, "no-uid requests go to all_sites"

        # A client all along: every answer must be a 200 (bounded: 30 s at most).
        failures, answered, stop = [], [0], threading.Event()

        def client():
            end = time.monotonic() + 30
            while not stop.is_set() and time.monotonic() < end:
                try:
                    r = request(listen, "/during", timeout=5)
                    answered[0] += 1
                    if r.status != 200:
                        failures.append(r.describe())
                except Exception as e:  # noqa: BLE001 (a socket error is a failure too)
                    failures.append(repr(e))

        t = threading.Thread(target=client)
        t.start()
        time.sleep(0.5)
        cfg["servers"][0]["routers"][0]["virtual_hosts"][0]["routers"][-1]["route"]["cluster_name"] = "s3"
        mosn_json.write_text(json.dumps(cfg))
        publish()
        deadline = time.monotonic() + 15
        while sites() != {"s3"}:
            assert time.monotonic() < deadline, f"the new MOSN config did not reach Envoy:\n{log.read_text()[-3000:]}"
            time.sleep(0.2)
        time.sleep(0.5)
        stop.set()
        t.join()
        assert answered[0] > 0 and not failures, f"{len(failures)} failed of {answered[0]}: {failures[:5]}"
        stats = request(admin, "/stats?filter=listener_manager.lds.update_success", timeout=5).text
        assert "update_success: 2" in stats, stats
    finally:
        hosts.stop_process(p)
