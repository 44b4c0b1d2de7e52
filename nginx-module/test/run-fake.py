#!/usr/bin/env python3
"""Runs the real nginx with ngx_http_mosn_module.so linked against a scripted fake
mosn_extension.so (fake_mosn_extension.c) to cover the adapter paths the real core does
not reach today: request body buffering (memory and temp file), WAIT after a body,
local replies with headers, request/response header mutations, :status, the log callback
off the main thread, ABI and config errors, mirror copies (to recording backends: slow,
failing, dead, a client gone while copies are in flight).

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
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
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


class Recorder:
    """A backend in this process that records every request it gets (method, target,
    headers, body) and answers `status` after `delay` seconds: a mirror host."""

    def __init__(self, delay: float = 0.0, status: int = 200):
        self.delay, self.status = delay, status
        self.got: list[dict] = []
        self.lock = threading.Lock()
        rec = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _any(self):
                body = b""
                if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass
                            break
                        body += self.rfile.read(size)
                        self.rfile.readline()
                else:
                    body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with rec.lock:
                    rec.got.append({"method": self.command, "path": self.path,
                                    "headers": [(k.lower(), v) for k, v in self.headers.items()], "body": body})
                if rec.delay:
                    time.sleep(rec.delay)
                out = b"mirror answer\n"
                try:
                    self.send_response(rec.status)
                    self.send_header("Content-Length", str(len(out)))
                    self.end_headers()
                    self.wfile.write(out)
                except OSError:
                    self.close_connection = True   # nginx dropped the copy (client gone)

            def __getattr__(self, name):
                if name.startswith("do_"):
                    return self._any
                raise AttributeError(name)

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address):
                if not isinstance(sys.exc_info()[1], ConnectionError):
                    super().handle_error(request, client_address)
                # else: nginx closed a copy's connection without reading the answer

        self.srv = Server(("127.0.0.1", 0), Handler)
        self.port = self.srv.server_address[1]
        threading.Thread(target=self.srv.serve_forever, args=(0.05,), daemon=True).start()

    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    def count(self) -> int:
        with self.lock:
            return len(self.got)

    def wait(self, n: int, timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.count() >= n:
                return True
            time.sleep(0.02)
        return self.count() >= n

    def last(self) -> dict:
        with self.lock:
            return self.got[-1] if self.got else {"method": None, "path": None, "headers": [], "body": None}

    def stop(self) -> None:
        self.srv.shutdown()
        self.srv.server_close()


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
        port2 = free_port()
        port3 = free_port()
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
        listen 127.0.0.1:{port3} http2;
        mosn_listener LISTENER;
        mosn_mirror_location MIRROR;
        location / {{
            proxy_pass http://mosn_backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
        }}
        location @mosn_mirror {{
            proxy_pass http://mosn_backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_connect_timeout 1s;
            proxy_read_timeout 3s;
            proxy_send_timeout 3s;
        }}
    }}
    server {{
        listen 127.0.0.1:{port2};
        mosn_listener LISTENER;
        mosn_mirror_location @nope;
        location / {{
            proxy_pass http://mosn_backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
        location /off/ {{
            mosn_mirror_location off;
            proxy_pass http://mosn_backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""

        def write_conf(mosn_json="mosn.json", listener="fakeListener", mirror="@mosn_mirror"):
            (d / "nginx.conf").write_text(conf.replace("MOSN_JSON", str(d / mosn_json)).replace("LISTENER", listener)
                                          .replace("MIRROR", mirror))

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
        write_conf(mirror="/_mirror")
        rc, out = nginx_t()
        check(rc != 0 and 'mosn_mirror_location "/_mirror": must name a named location' in out,
              "nginx -t: mosn_mirror_location must be a named location")
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

        # --- mirror copies: background subrequests through @mosn_mirror
        def hdr(rec, name):
            vals = [v for k, v in rec["headers"] if k == name]
            return ",".join(vals) if vals else None

        r1, r2 = Recorder(), Recorder()
        recorders = [r1, r2]
        payload = b"mirror me " * 20
        st, h, body, _ = req(port, "/orig?a=1", [("x-fake", "mirror"), ("x-fake-mirror", f"{r1.addr()},{r2.addr()}"),
                                                 ("x-fake-path", "/routed/caf%C3%A9?q=1"), ("x-remove-me", "1"),
                                                 ("x-keep", "k")],
                             method="POST", body=payload)
        check(st == 200 and body.startswith(b"site s1 from"), f"mirrored request answered by the upstream ({st} {body!r})")
        check(hget(h, "x-seen-path") == "/routed/caf%25C3%25A9?q=1", f"the upstream got the routed path ({hget(h, 'x-seen-path')})")
        check(r1.wait(1) and r2.wait(1), f"one copy on each mirror host ({r1.count()}, {r2.count()})")
        for i, rc in enumerate(recorders):
            c = rc.last()
            check(c["method"] == "POST" and c["path"] == "/routed/caf%C3%A9?q=1" and c["body"] == payload,
                  f"copy {i + 1}: method, the main request's upstream path, body ({c['method']} {c['path']} {len(c['body'] or b'')})")
            check(hdr(c, "x-mirror-set") == "yes" and hdr(c, "x-remove-me") is None and hdr(c, "x-keep") == "k"
                  and hdr(c, "host") == f"127.0.0.1:{port}",
                  f"copy {i + 1}: headers after the library's mutations ({c['headers']})")
            check(hdr(c, "content-length") == str(len(payload)), f"copy {i + 1}: Content-Length of the body")

        # the client's target as sent when the library leaves the path alone; GET, no body
        st, h, body, _ = req(port, "/plain/%41b?x=%2F&y", [("x-fake", "mirror"), ("x-fake-mirror", r1.addr())])
        c = r1.last()
        check(st == 200 and r1.wait(2) and r1.last()["path"] == "/plain/%41b?x=%2F&y" and r1.last()["method"] == "GET"
              and r1.last()["body"] == b"" and hdr(r1.last(), "content-length") is None,
              f"unmutated target sent as the client sent it, GET without body ({r1.last()['path']})")

        # bodies nginx spooled to a temp file, and chunked ones (sent with Content-Length)
        for name, hdrs in [("tempfile", []), ("chunked", [("Transfer-Encoding", "chunked")])]:
            n = r1.count()
            st, h, body, _ = req(port, f"/m-{name}", [("x-fake", "mirror"), ("x-fake-mirror", r1.addr())] + hdrs,
                                 method="PUT", body=big)
            ok = r1.wait(n + 1)
            c = r1.last()
            check(st == 200 and ok and c["method"] == "PUT" and c["body"] == big
                  and hdr(c, "content-length") == str(len(big)),
                  f"copy of a {name} body: whole body ({len(c['body'] or b'')} of {len(big)} bytes)")

        # a slow mirror host and a failing one: the client's answer neither waits nor changes
        slow, failing = Recorder(delay=1.5), Recorder(status=500)
        recorders += [slow, failing]
        st, h, body, el = req(port, "/m-slow", [("x-fake", "mirror"), ("x-fake-mirror", f"{slow.addr()},{failing.addr()}")])
        check(st == 200 and body.startswith(b"site s1 from") and el < 1.0,
              f"slow and failing copies: the response is the upstream's, not delayed ({st}, {el * 1000:.0f} ms)")
        check(slow.wait(1) and failing.wait(1), "the slow and the failing host got their copies")

        # a dead host and an address that does not parse: logged, the other copy still goes
        dead = f"127.0.0.1:{free_port()}"
        n = r2.count()
        st, h, body, el = req(port, "/m-dead", [("x-fake", "mirror"), ("x-fake-mirror", f"{dead},nonsense,{r2.addr()}")])
        check(st == 200 and body.startswith(b"site s1 from"), f"copies to a dead host and a bad address: response unchanged ({st})")
        check(r2.wait(n + 1), "the good copy next to them was sent")

        # HTTP/2 (h2c): the copy of a stream's request, body included
        if shutil.which("curl"):
            n = r1.count()
            out = subprocess.run(["curl", "-s", "--http2-prior-knowledge", "-o", "/dev/null", "-w", "%{http_version} %{http_code}",
                                  "-H", "x-fake: mirror", "-H", f"x-fake-mirror: {r1.addr()}", "--data-binary", "h2 body",
                                  f"http://127.0.0.1:{port3}/m-h2?z=1"], capture_output=True, text=True, timeout=10).stdout
            ok = r1.wait(n + 1)
            c = r1.last()
            check(out == "2 200" and ok and c["method"] == "POST" and c["path"] == "/m-h2?z=1" and c["body"] == b"h2 body",
                  f"h2c: response {out!r}, copy {c['method']} {c['path']} {c['body']!r}")

        # no copies; no mosn_mirror_location here; a missing named location
        before = [rc.count() for rc in recorders]
        st, _, _, _ = req(port, "/m-none", [("x-fake", "mirror")])
        check(st == 200, f"no copies: request unaffected ({st})")
        st, _, _, _ = req(port2, "/off/x", [("x-fake", "mirror"), ("x-fake-mirror", r1.addr())])
        check(st == 200, f"mosn_mirror_location off: request unaffected ({st})")
        st, _, _, _ = req(port2, "/nope", [("x-fake", "mirror"), ("x-fake-mirror", r1.addr())])
        check(st == 200, f"mosn_mirror_location naming no location: request unaffected ({st})")
        time.sleep(0.3)
        check([rc.count() for rc in recorders] == before, "none of those sent a copy")

        # the client goes away while copies are in flight: after its answer, and at once
        n = slow.count()
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(f"POST /m-abort-after HTTP/1.1\r\nHost: x\r\nx-fake: mirror\r\nx-fake-mirror: {slow.addr()},{slow.addr()}\r\n"
                  f"Content-Length: 5\r\n\r\nhello".encode())
        got = s.recv(65536)
        s.close()
        check(got.startswith(b"HTTP/1.1 200"), f"answered before the slow copies are done ({got[:20]!r})")
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(f"POST /m-abort-early HTTP/1.1\r\nHost: x\r\nx-fake: mirror\r\nx-fake-mirror: {slow.addr()}\r\n"
                  f"Content-Length: 5\r\n\r\nhello".encode())
        s.close()
        time.sleep(0.2)
        # ... and while the request itself is still upstream (to a slow host too)
        slow.wait(n + 3, 1.0)
        m = slow.count()
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(f"POST /m-abort-upstream HTTP/1.1\r\nHost: x\r\nx-fake: mirror\r\nx-fake-mirror: {slow.addr()}\r\n"
                  f"x-fake-upstream: {slow.addr()}\r\nContent-Length: 5\r\n\r\nhello".encode())
        check(slow.wait(m + 2, 1.0), "the request and its copy reached the slow hosts")
        s.close()
        time.sleep(0.2)
        st, _, _, _ = req(port, "/after-mirror-abort")
        check(st == 200, "request after clients left with copies in flight")
        slow.wait(m + 2, 5.0)
        time.sleep(1.8)   # the slow host answers the last copies: nginx drops them

        # keep-alive: the client's next request on the connection waits for the copies
        # (nginx's subrequests share the connection), bounded by the copies' timeouts
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        c.request("GET", "/m-ka1", headers={"x-fake": "mirror", "x-fake-mirror": slow.addr()})
        r = c.getresponse()
        r.read()
        t0 = time.monotonic()
        c.request("GET", "/m-ka2")
        r = c.getresponse()
        r.read()
        c.close()
        check(r.status == 200, f"next keep-alive request served after the copy ({(time.monotonic() - t0) * 1000:.0f} ms)")

        for rc in recorders:
            rc.stop()

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
        check("status=499" in lines.get("/m-abort-upstream", ""),
              f"client gone while it and its copy were upstream: 499 ({lines.get('/m-abort-upstream')})")

        err = (d / "error.log").read_text()
        check("fake: upstream result outcome=0 status=200" in err, "upstream_result RESPONSE(200) reported once per attempt")
        # a request whose client left before the answer reports nothing about its host
        proxied = [p for p, l in lines.items() if "upstream_host=-" not in l and p not in ("/m-abort-early", "/m-abort-upstream")]
        reported = err.count("fake: upstream result")
        check(reported - len(proxied) in ((0, 1) if "/m-abort-early" in lines else (0,)),
              f"no double reporting of attempts ({reported} results, {len(proxied)} proxied requests)")
        check("mosn: mirror copy to \"" + dead + "\" (cluster \"fake-mirror\") failed" in err,
              "a copy to a dead host is logged as dropped")
        check('mosn: invalid mirror host address "nonsense"' in err, "a bad copy address is logged")
        check('no "mosn_mirror_location" here' in err and 'no location "@nope" in this server' in err,
              "copies without a mirror location are logged as not sent")
        check(lines.get("/orig?a=1", "").find("status=200") > 0 and "/routed" not in log,
              "the access log shows the client's request only (copies are not logged)")
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
