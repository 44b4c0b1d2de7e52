#!/usr/bin/env python3
"""Tiny threaded HTTP/1.1 "site" backend for the tests and the demo.

    python3 backend.py --site s1 --port 3450
    python3 backend.py --backend s1:0 --backend s1:0 --backend s2:0 --backend s3:0

Every request (any method, any path) is answered 200 with body ``site <site> from <port>\\n``
(Content-Length, keep-alive) and the headers
    x-backend-port: <port>
    x-backend-site: <site>
    x-seen-unit:    <request header x-mosn-on-envoy-unit, or ->   (all values joined by ",")
    x-seen-uid:     <request header uid, or ->                    (sanitised, see below)
    x-seen-path:    <request path>
    x-seen-host:    <request header Host, or ->
    x-echo-<name>:  for each name in request header x-echo (comma-separated): that request
                    header as received (all values joined by ","), or -
    x-seen-body:    the request body (sanitised, cut like the echoes); x-seen-body-len its length
    x-seen-content-length: request header Content-Length, or -
    x-seen-trailers: the chunked request's trailers as "name=value;..." (or -)
A request body (Content-Length or chunked) is read and then discarded.

Echoed values are sanitised so that a hostile request cannot make the *response* invalid:
bytes outside printable ASCII are written as %XX and values are cut to 64 characters
(with a trailing "..."); otherwise a 10 KB uid would be echoed in a 10 KB response header,
which proxies legitimately reject (nginx: "upstream sent too big header").

Several backends can run in one process (``--backend site:port`` repeated; port 0 = pick one).
Once every socket is listening the process prints ONE line to stdout and flushes it:
    {"ready": [{"site": "s1", "port": 3450}, ...]}
The harness waits for that line. SIGTERM / SIGINT stop the process cleanly.

Importable too: ``start_backend(site, port) -> (server, thread)``.
"""
from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

UNIT_HEADER = "x-mosn-on-envoy-unit"
MAX_ECHO = 64


def sanitize(value: str | None) -> str:
    if value is None:
        return "-"
    raw = value.encode("latin-1", "replace")
    out = []
    for b in raw:
        if 0x20 <= b <= 0x7E and b != 0x25:  # printable ASCII except '%'
            out.append(chr(b))
        else:
            out.append("%%%02X" % b)
    s = "".join(out)
    if len(s) > MAX_ECHO:
        s = s[:MAX_ECHO] + "..."
    return s


class SiteHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # One write per response (headers + body), no Nagle: keep-alive requests do not stall
    # on delayed ACKs, so the backend is not the bottleneck in host tests.
    wbufsize = 65536
    disable_nagle_algorithm = True
    server_version = "site-backend"
    sys_version = ""

    # Set per server class (see make_server).
    site = "s?"

    def log_message(self, format, *args):  # noqa: A002 - quiet
        pass

    def _drain_body(self) -> int:
        """Reads the request body (kept in self.body, trailers in self.trailers); its length."""
        te = (self.headers.get("Transfer-Encoding") or "").lower()
        parts = []
        self.trailers = []
        if "chunked" in te:
            while True:
                line = self.rfile.readline(65537)
                if not line:
                    break
                size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    # trailers until blank line
                    while True:
                        t = self.rfile.readline(65537)
                        if t in (b"\r\n", b"\n", b""):
                            break
                        name, _, value = t.decode("latin-1").partition(":")
                        self.trailers.append(f"{name.strip().lower()}={value.strip()}")
                    break
                parts.append(self.rfile.read(size))
                self.rfile.readline(65537)  # CRLF after the chunk
        else:
            n = int(self.headers.get("Content-Length") or 0)
            while n > 0:
                chunk = self.rfile.read(min(n, 65536))
                if not chunk:
                    break
                n -= len(chunk)
                parts.append(chunk)
        self.body = b"".join(parts)
        return len(self.body)

    # Open client connections per server: `GET /_open_connections` answers how many others
    # are open (a test asks directly, to see whether a proxy closed its idle connections).
    def setup(self):
        super().setup()
        with self.server.conns_lock:
            self.server.open_conns += 1

    def finish(self):
        try:
            super().finish()
        finally:
            with self.server.conns_lock:
                self.server.open_conns -= 1

    def _handle(self) -> None:
        body_len = self._drain_body()
        port = self.server.server_address[1]
        if not self.path.startswith("/_"):
            with self.server.conns_lock:
                self.server.requests += 1
                self.server.last = f"{self.command} {self.path} {body_len}"
        if self.path in ("/_open_connections", "/_requests", "/_last"):
            with self.server.conns_lock:
                n = {"/_open_connections": self.server.open_conns - 1, "/_requests": self.server.requests,
                     "/_last": self.server.last}[self.path]
                body = f"{n}\n".encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        body = f"site {self.site} from {port}\n".encode()
        units = self.headers.get_all(UNIT_HEADER)
        unit = ",".join(units) if units else None
        # A site named `failNNN` answers NNN (a broken backend for retry tests); `slowNNN`
        # answers after NNN ms (timeout tests).
        status = int(self.site[4:]) if self.site.startswith("fail") and self.site[4:].isdigit() else 200
        if self.site.startswith("slow") and self.site[4:].isdigit():
            time.sleep(int(self.site[4:]) / 1000)
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("x-backend-port", str(port))
        self.send_header("x-backend-site", self.site)
        self.send_header("x-seen-unit", sanitize(unit))
        self.send_header("x-seen-uid", sanitize(self.headers.get("uid")))
        self.send_header("x-seen-path", sanitize(self.path))
        self.send_header("x-seen-host", sanitize(self.headers.get("Host")))
        if body_len:
            self.send_header("x-seen-body", sanitize(self.body.decode("latin-1")))
        self.send_header("x-seen-body-len", str(body_len))
        self.send_header("x-seen-content-length", sanitize(self.headers.get("Content-Length")))
        self.send_header("x-seen-trailers", sanitize(";".join(self.trailers) or None))
        # `x-echo: a,b` asks for `x-echo-a`, `x-echo-b`: those request headers as received.
        for name in filter(None, (n.strip() for n in (self.headers.get("x-echo") or "").split(","))):
            self.send_header(f"x-echo-{name}", sanitize(",".join(self.headers.get_all(name) or []) or None))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    # Any method.
    def __getattr__(self, name: str):
        if name.startswith("do_"):
            return self._handle
        raise AttributeError(name)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

    def __init__(self, *a, **kw):
        self.conns_lock = threading.Lock()
        self.open_conns = 0
        self.requests = 0  # answered, except the /_ ones
        self.last = "-"  # "METHOD path body-length" of the last of those
        super().__init__(*a, **kw)


def make_server(site: str, port: int, host: str = "127.0.0.1") -> ThreadingHTTPServer:
    handler = type(f"SiteHandler_{site}", (SiteHandler,), {"site": site})
    return _Server((host, port), handler)


def start_backend(site: str, port: int = 0, host: str = "127.0.0.1"):
    """Start one backend in a daemon thread of the current process. Returns (server, thread);
    stop with server.shutdown(); server.server_close()."""
    srv = make_server(site, port, host)
    t = threading.Thread(target=srv.serve_forever, args=(0.1,), name=f"backend-{site}-{srv.server_address[1]}", daemon=True)
    t.start()
    return srv, t


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--site", help="site name (single-backend form)")
    ap.add_argument("--port", type=int, help="port (single-backend form; 0 = pick)")
    ap.add_argument("--backend", action="append", default=[], metavar="SITE:PORT",
                    help="one backend; repeatable; PORT 0 = pick a free port")
    ap.add_argument("--host", default="127.0.0.1")
    args = ap.parse_args(argv)

    specs = []
    if args.site is not None or args.port is not None:
        if args.site is None or args.port is None:
            ap.error("--site and --port go together")
        specs.append((args.site, args.port))
    for b in args.backend:
        site, _, port = b.rpartition(":")
        if not site:
            ap.error(f"bad --backend {b!r}, want SITE:PORT")
        specs.append((site, int(port)))
    if not specs:
        ap.error("give --site/--port or at least one --backend")

    servers = [start_backend(site, port, args.host)[0] for site, port in specs]
    stop = threading.Event()

    def _stop(*_):
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    print(json.dumps({"ready": [{"site": s.RequestHandlerClass.site, "port": s.server_address[1]}
                                for s in servers]}), flush=True)
    while not stop.wait(0.5):
        pass
    for s in servers:
        s.shutdown()
        s.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
