#!/usr/bin/env python3
"""Runs the real nginx with ngx_http_mosn_module.so linked against a scripted fake
mosn_extension.so (fake_mosn_extension.c) to cover the adapter paths the real core does
not reach today: request body buffering (memory and temp file), WAIT after a body,
local replies with headers, request/response header mutations, :status, the log callback
off the main thread, ABI and config errors.

    python3 nginx-module/test/run-fake.py      (after nginx-module/build.sh)
    VALGRIND=1 python3 nginx-module/test/run-fake.py   (nginx under memcheck)

Everything runs in a temp dir on 127.0.0.1; exit status 0 = all checks passed.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import re
import time
import urllib.request
import http.client
import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
MODULE = ROOT / "build" / "output" / "ngx_http_mosn_module.so"
BACKEND = ROOT / "tests" / "harness" / "backend.py"

failures: list[str] = []



def header_abi_version() -> int:
    """MOSN_EXT_ABI_VERSION of include/mosn_extension.h (what the module is built for)."""
    header = Path(__file__).resolve().parents[2] / "include" / "mosn_extension.h"
    return int(re.search(r"#define MOSN_EXT_ABI_VERSION (\d+)", header.read_text()).group(1))

def check(cond: bool, what: str) -> None:
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        failures.append(what)


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_port(port: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"port {port} not open")


def req(port, path, headers=(), method="GET", body=None, timeout=5.0):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    c.putrequest(method, path, skip_accept_encoding=True)
    for k, v in headers:
        c.putheader(k, v)
    if body is not None and not any(k.lower() == "transfer-encoding" for k, _ in headers):
        c.putheader("Content-Length", str(len(body)))
    c.endheaders()
    if body is not None:
        if any(k.lower() == "transfer-encoding" for k, _ in headers):
            for i in range(0, len(body), 7000):
                chunk = body[i:i + 7000]
                c.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            c.send(b"0\r\n\r\n")
        else:
            c.send(body)
    t0 = time.monotonic()
    r = c.getresponse()
    data = r.read()
    el = time.monotonic() - t0
    hdrs = r.getheaders()
    c.close()
    return r.status, hdrs, data, el


def hget(hdrs, name):
    vals = [v for k, v in hdrs if k.lower() == name.lower()]
    return ",".join(vals) if vals else None


def jsum(data: bytes) -> int:
    s = 0
    for x in data:
        s = (s * 31 + x) & 0xFFFFFFFF
    return s


def main() -> int:
    if not MODULE.is_file():
        print(f"{MODULE} missing: run nginx-module/build.sh", file=sys.stderr)
        return 2
    d = Path(tempfile.mkdtemp(prefix="mosn-ngx-fake-"))
    lib = d / "lib"
    lib.mkdir()
    subprocess.run(["gcc", "-O1", "-g", "-Wall", "-Werror", "-shared", "-fPIC", "-Wl,-soname,mosn_extension.so",
                    "-I", str(ROOT / "include"), "-o", str(lib / "mosn_extension.so"),
                    str(HERE / "fake_mosn_extension.c"), "-lpthread"], check=True)
    shutil.copy(MODULE, lib / "ngx_http_mosn_module.so")

    be = subprocess.Popen([sys.executable, str(BACKEND), "--backend", "s1:0"], stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL, start_new_session=True)
    nginx = None
    try:
        bport = json.loads(be.stdout.readline())["ready"][0]["port"]
        port = free_port()
        (d / "mosn.json").write_text('{"fake": true}\n')
        (d / "bad.json").write_text('{"fake": "bad"}\n')
        user = "user root;\n" if os.geteuid() == 0 else ""
        conf = f"""load_module {lib}/ngx_http_mosn_module.so;
{user}worker_processes 1;
env FAKE_UPSTREAM;
pid {d}/nginx.pid;
error_log {d}/error.log info;
events {{ worker_connections 256; }}
http {{
    client_body_temp_path {d}/client_body_temp;
    proxy_temp_path {d}/proxy_temp;
    fastcgi_temp_path {d}/fastcgi_temp;
    uwsgi_temp_path {d}/uwsgi_temp;
    scgi_temp_path {d}/scgi_temp;
    client_body_buffer_size 1k;
    client_max_body_size 10m;
    mosn_config MOSN_JSON;
    log_format mosn 'mosn_access path=$request_uri status=$status cluster=$mosn_cluster upstream_host=$mosn_upstream_host unit=$mosn_unit flags=$mosn_flags details=$mosn_details mode=$mosn_meta_mode';
    access_log {d}/access.log mosn;
    upstream mosn_backend {{ mosn_upstream; keepalive 4; }}
    server {{
        listen 127.0.0.1:{port};
        mosn_listener LISTENER;
        location / {{
            proxy_pass http://mosn_backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""

        def write_conf(mosn_json="mosn.json", listener="fakeListener"):
            (d / "nginx.conf").write_text(conf.replace("MOSN_JSON", str(d / mosn_json)).replace("LISTENER", listener))

        env = dict(os.environ, FAKE_UPSTREAM=f"127.0.0.1:{bport}")

        def nginx_t(extra_env=None):
            e = dict(env, **(extra_env or {}))
            r = subprocess.run(["nginx", "-t", "-p", f"{d}/", "-c", str(d / "nginx.conf")], capture_output=True,
                               text=True, env=e)
            return r.returncode, r.stdout + r.stderr

        # --- config-time errors
        write_conf("bad.json")
        rc, out = nginx_t()
        check(rc != 0 and 'mosn_config "' in out and "fake.clusters[0].hosts[0].address" in out,
              "nginx -t: bad mosn.json fails naming the JSON field")
        write_conf()
        abi = header_abi_version()
        rc, out = nginx_t({"FAKE_ABI": str(abi + 1)})
        check(rc != 0 and f"mosn_extension.so ABI version {abi + 1} does not match module (built for {abi})" in out,
              "nginx -t: ABI mismatch refused")
        write_conf(listener="nope")
        rc, out = nginx_t()
        check(rc != 0 and 'mosn_listener "nope": no such listener' in out, "nginx -t: unknown listener refused")
        write_conf()
        rc, out = nginx_t()
        check(rc == 0, "nginx -t: good config accepted")
        check("fake: config loaded" in out, "library log line at config time reaches nginx's log (main thread)")

        stderr = open(d / "nginx.stderr", "wb")
        vg = ["valgrind", "--trace-children=yes", f"--log-file={d}/vg.%p.log"] if os.environ.get("VALGRIND") else []
        nginx = subprocess.Popen(vg + ["nginx", "-p", f"{d}/", "-c", str(d / "nginx.conf"), "-g", "daemon off;"],
                                 env=env, stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True)
        wait_port(port, 60 if vg else 10)
        if vg:
            time.sleep(3)  # workers start slowly under memcheck

        # --- local reply with headers
        st, h, body, _ = req(port, "/reply", [("x-fake", "reply")])
        check(st == 418 and body == b"fake reply\n", f"local reply 418 + body ({st} {body!r})")
        check(hget(h, "x-fake-reply") == "yes" and hget(h, "content-type") == "application/x-fake",
              f"local reply headers ({h})")

        # --- request + response mutations
        st, h, body, _ = req(port, "/mutate", [("x-fake", "mutate"), ("x-mosn-on-envoy-unit", "a"),
                                                ("x-mosn-on-envoy-unit", "b"), ("x-remove-me", "1"), ("uid", "1")])
        check(st == 201, f":status mutation -> 201 (got {st})")
        check(hget(h, "x-seen-unit") == "s9,s10",
              f"SET replaced both request values, then ADD appended one (backend saw {hget(h, 'x-seen-unit')})")
        check(hget(h, "x-seen-uid") == "1", f"untouched header kept (backend saw uid {hget(h, 'x-seen-uid')})")
        check(hget(h, "x-backend-site") == "changed", "response SET replaced x-backend-site")
        check(hget(h, "x-added") == "one", "response ADD added x-added")
        check(hget(h, "x-seen-path") is None, "response REMOVE hid x-seen-path")
        check((hget(h, "x-fake-saw-ct") or "").startswith("text/plain"),
              f"response headers given to the library include content-type ({hget(h, 'x-fake-saw-ct')})")
        check(body.startswith(b"site s1 from"), "proxied body intact")

        # --- WAIT from a library thread, resume
        st, h, body, el = req(port, "/wait", [("x-fake", "wait"), ("uid", "3")])
        check(st == 200 and hget(h, "x-seen-uid") == "5" and el >= 0.045,
              f"WAIT parks ~50 ms then resumes with mutations (status {st}, uid {hget(h, 'x-seen-uid')}, {el * 1000:.0f} ms)")

        # --- body buffering: memory, temp file, chunked
        small = b"0123456789"
        big = os.urandom(100_000)
        for name, payload, hdrs in [("small", small, []), ("big-tempfile", big, []),
                                    ("chunked", big, [("Transfer-Encoding", "chunked")])]:
            st, h, body, _ = req(port, f"/body-{name}", [("x-fake", "body")] + hdrs, method="POST", body=payload)
            want = f"len={len(payload)} sum={jsum(payload)} direct\n".encode()
            check(st == 200 and body == want, f"BUFFER_BODY {name}: library saw the whole body ({st} {body!r})")

        st, h, body, el = req(port, "/bodywait", [("x-fake", "bodywait")], method="POST", body=big)
        want = f"len={len(big)} sum={jsum(big)} resumed\n".encode()
        check(st == 200 and body == want and el >= 0.045, f"BUFFER_BODY then WAIT: body passed again on resume ({body!r})")

        # --- client abort while parked, then a normal request
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(b"GET /abort HTTP/1.1\r\nHost: x\r\nx-fake: wait\r\n\r\n")
        time.sleep(0.01)
        s.close()
        time.sleep(0.15)
        st, h, body, _ = req(port, "/after-abort")
        check(st == 200, "request after a client abort while parked")

        # --- access log fields
        time.sleep(0.2)
        log = (d / "access.log").read_text()
        lines = {l.split()[1][5:]: l for l in log.splitlines() if l.startswith("mosn_access")}
        l = lines.get("/reply", "")
        check("status=418" in l and "details=fake_reply" in l and "cluster=fake" in l and "unit=u-fake" in l
              and "upstream_host=-" in l and "mode=reply" in l, f"access log for a local reply: {l}")
        l = lines.get("/wait", "")
        check("flags=0x200" in l and f"upstream_host=127.0.0.1:{bport}" in l and "details=-" in l,
              f"access log for a waited request: {l}")
        check("status=499" in lines.get("/abort", ""), f"aborted request logged 499: {lines.get('/abort')}")

        err = (d / "error.log").read_text()
        check("fake: upstream result outcome=0 status=200" in err, "upstream_result RESPONSE(200) reported once per attempt")
        check(err.count("fake: upstream result") == len([1 for p in ("/mutate", "/wait", "/after-abort") if p in lines]),
              "no double reporting of attempts")
        check("alert" not in err and "crit" not in err, "no alert/crit in error.log")
        nginx.send_signal(signal.SIGQUIT)
        nginx.wait(10)
        stderr.close()
        # nginx dup2()s the error_log file onto fd 2, so raw stderr lines land there too
        se = (d / "nginx.stderr").read_text() + (d / "error.log").read_text()
        check(any(l.startswith("fake: waking a stream from a library thread") for l in se.splitlines()),
              "library log line from a library thread written raw to fd 2 (not through ngx_log_error)")
        check("exited on signal" not in err, "no worker crash")
        if vg:
            bad = []
            for f in d.glob("vg.*.log"):
                t = f.read_text()
                # ld.so's strncmp over-reads while dlopen()ing (RUNPATH $ORIGIN) are glibc false positives
                blocks = [b for b in t.split("\n==") if ("Invalid" in b or "uninitialised" in b)]
                bad += [b for b in blocks if "dl-load.c" not in t[t.find(b):t.find(b) + 3000]]
            check(not bad, f"valgrind: no memory errors outside ld.so ({len(bad)} found)")
    finally:
        if nginx and nginx.poll() is None:
            nginx.kill()
        os.killpg(be.pid, signal.SIGTERM)
        be.wait(5)
    if failures or os.environ.get("KEEP"):
        print(f"\n{len(failures)} check(s) failed; work dir kept: {d}")
        return 1
    shutil.rmtree(d, ignore_errors=True)
    print("\nall checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
