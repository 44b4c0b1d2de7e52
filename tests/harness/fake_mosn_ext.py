#!/usr/bin/env python3
"""A pure-Python stand-in for ``mosn-ext`` — for checking the HARNESS, never the product.

It implements just enough of the contract the tests build against (unit routing via the
metadata/UNIT filter, header-match routes, round robin per cluster, retry to another host,
502 on connect failure, the 400 ms fault delay, SIGHUP reload keeping the old config when the new
one is bad, the access-log format, ``check``) as a threaded Python proxy, so that
tests/test_hosts.py and parts of tests/test_nginx_only.py can be run end to end before the real
binary exists:

    MOSN_EXT_BIN=tests/harness/fake_mosn_ext.py python3 -m pytest tests/test_hosts.py

``--host`` is accepted and ignored (the same proxy plays both hosts). ``--print-config`` prints a
placeholder. Nothing here is used by the real test runs.
"""
from __future__ import annotations

import argparse
import http.client
import json
import re
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

UNIT = "x-mosn-on-envoy-unit"
HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade", "host",
       "content-length"}


class ConfigError(Exception):
    pass


def validate(cfg) -> list[str]:
    errs = []
    for ci, c in enumerate(cfg.get("cluster_manager", {}).get("clusters", [])):
        for hi, h in enumerate(c.get("hosts", [])):
            a = h.get("address", "")
            host, _, port = a.rpartition(":")
            if not host or not port.isdigit():
                errs.append(f"cluster_manager.clusters[{ci}].hosts[{hi}].address: invalid socket address {a!r} (want ip:port)")
    return errs


class Snapshot:
    def __init__(self, cfg):
        errs = validate(cfg)
        if errs:
            raise ConfigError("\n".join(errs))
        srv = cfg["servers"][0]
        self.routes = srv["routers"][0]["virtual_hosts"][0]["routers"]
        self.filters = srv["listeners"][0].get("stream_filters", [])
        self.clusters = {c["name"]: [h["address"] for h in c["hosts"]] for c in cfg["cluster_manager"]["clusters"]}
        self.cursor = {name: 0 for name in self.clusters}
        self.lock = threading.Lock()

    def pick(self, cluster, exclude):
        hosts = self.clusters[cluster]
        with self.lock:
            for _ in range(len(hosts)):
                h = hosts[self.cursor[cluster] % len(hosts)]
                self.cursor[cluster] += 1
                if h not in exclude:
                    return h
        return None


def unit_of(uid):
    if uid is None or len(uid) > 40 or not re.fullmatch(r"[+-]?[0-9]+", uid.strip()):
        return None
    n = int(uid.strip())
    if not (-(2 ** 63) <= n < 2 ** 63):
        return None
    return "s1" if 1 <= n <= 100 else "s2" if 101 <= n <= 200 else "s3"


class State:
    snap: Snapshot
    log = None
    log_lock = threading.Lock()


def make_handler(state: State):
    class H(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def __getattr__(self, name):
            if name.startswith("do_"):
                return self.handle_req
            raise AttributeError(name)

        def handle_req(self):
            snap = state.snap
            n = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(n) if n else b""
            hdrs = [(k, v) for k, v in self.headers.items() if k.lower() not in HOP and k.lower() != UNIT]
            get = lambda name: next((v for k, v in hdrs if k.lower() == name), None)  # noqa: E731
            unit = None
            for f in snap.filters:
                if f["type"] == "fault":
                    hs = f["config"].get("headers", [])
                    if all(get(h["name"]) == h["value"] for h in hs):
                        time.sleep(int(f["config"]["delay"]["fixed_delay"].rstrip("ms")) / 1000)
                elif f["type"] == "metadata":
                    key = f["config"]["metadataers"][0]["config"].get("unit_key", "userid")
                    unit = unit_of(get(key))
                    if unit:
                        hdrs.append((UNIT, unit))
            route = None
            for r in snap.routes:
                m = r["match"]
                # The fake knows prefix routes to a cluster_name only.
                if "prefix" not in m or "cluster_name" not in r.get("route", {}):
                    continue
                if self.path.startswith(m["prefix"]) and all(
                        (unit if h["name"] == UNIT else get(h["name"])) == h["value"] for h in m.get("headers", [])):
                    route = r["route"]
                    break
            cluster = route["cluster_name"]
            rp = route.get("retry_policy") or {}
            tries = 1 + (rp.get("num_retries", 0) if rp.get("retry_on") else 0)
            tried, status, resp, details = [], 502, None, "no_healthy_upstream"
            for _ in range(tries):
                h = snap.pick(cluster, tried)
                if h is None:
                    break
                tried.append(h)
                host, port = h.rsplit(":", 1)
                try:
                    c = http.client.HTTPConnection(host, int(port), timeout=5)
                    c.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
                    c.putheader("Host", h)
                    for k, v in hdrs:
                        c.putheader(k, v)
                    c.putheader("Content-Length", str(len(body)))
                    c.endheaders(body)
                    up = c.getresponse()
                    resp = (up.status, up.getheaders(), up.read())
                    c.close()
                    status, details = up.status, "via_upstream"
                    break
                except OSError as e:
                    details = f"connect_failed({e.__class__.__name__})"
            if resp is None:
                out = b"upstream connect error\n"
                self.send_response(502)
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)
            else:
                self.send_response(resp[0])
                for k, v in resp[1]:
                    if k.lower() not in HOP:
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(resp[2])))
                self.end_headers()
                self.wfile.write(resp[2])
            line = (f"mosn_access method={self.command} path={self.path} status={status} cluster={cluster} "
                    f"upstream_host={', '.join(tried) or '-'} unit={unit or '-'} flags={'-' if resp else 'UF'} "
                    f"details={details}\n")
            with state.log_lock:
                state.log.write(line)  # flushed by the 100 ms flusher, like Envoy

    return H


def load(path) -> Snapshot:
    try:
        cfg = json.loads(Path(path).read_text())
    except ValueError as e:
        raise ConfigError(f"$: invalid JSON: {e}")
    return Snapshot(cfg)


def main(argv=None):
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("start")
    s.add_argument("--host", required=True, choices=["envoy", "nginx"])
    s.add_argument("-c", required=True)
    s.add_argument("--work-dir", required=True)
    s.add_argument("--concurrency", type=int, default=1)
    s.add_argument("--print-config", action="store_true")
    c = sub.add_parser("check")
    c.add_argument("-c", required=True)
    a = ap.parse_args(argv)
    if a.cmd == "check":
        try:
            load(a.c)
        except ConfigError as e:
            print(e)
            return 1
        return 0
    try:
        state = State()
        state.snap = load(a.c)
    except ConfigError as e:
        print(e, file=sys.stderr)
        return 1
    if a.print_config:
        print(f"# fake {a.host} config for {a.c}")
        return 0
    cfg = json.loads(Path(a.c).read_text())
    addr = cfg["servers"][0]["listeners"][0]["address"]
    host, port = addr.rsplit(":", 1)
    state.log = open(Path(a.work_dir) / "access.log", "a", buffering=1 << 16)
    srv = ThreadingHTTPServer((host, int(port)), make_handler(state))
    srv.daemon_threads = True
    stop = threading.Event()

    def on_hup(*_):
        try:
            state.snap = load(a.c)
            print("fake: reloaded", file=sys.stderr, flush=True)
        except ConfigError as e:
            print(f"fake: reload rejected, keeping the old config: {e}", file=sys.stderr, flush=True)

    signal.signal(signal.SIGHUP, on_hup)
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    threading.Thread(target=srv.serve_forever, daemon=True).start()

    while not stop.wait(0.1):
        with state.log_lock:
            state.log.flush()
    srv.shutdown()
    with state.log_lock:
        state.log.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
