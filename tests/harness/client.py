"""A small raw-socket HTTP/1.1 client.

The cases need byte-exact control over request headers (``uid:2`` exactly as curl sends it,
empty values, obs-text bytes, 10 KB values), which http.client/requests normalise or reject, so
requests are written by hand: one TCP connection per request, ``Connection: close``.
Only 127.0.0.0/8 destinations are allowed.
"""
from __future__ import annotations

import ipaddress
import re
import socket
import time
from dataclasses import dataclass, field

_SITE_RE = re.compile(r"^site (\S+) from (\d+)\s*$")


class NoResponse(Exception):
    """The connection closed (or timed out) before a complete HTTP response arrived."""


@dataclass
class Response:
    status: int
    reason: str
    header_list: list = field(default_factory=list)  # [(name_lower, value_str)]
    body: bytes = b""
    elapsed: float = 0.0
    started: float = 0.0  # time.monotonic() when the request was sent
    finished: float = 0.0  # time.monotonic() when the response was complete

    def header(self, name: str, default=None):
        name = name.lower()
        vals = [v for k, v in self.header_list if k == name]
        return vals[-1] if vals else default

    @property
    def headers(self) -> dict:
        return {k: v for k, v in self.header_list}

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def site(self):
        """(site, port) parsed from a backend body ``site sN from PORT``, or (None, None)."""
        m = _SITE_RE.match(self.text)
        return (m.group(1), int(m.group(2))) if m else (None, None)

    def describe(self) -> str:
        hdrs = " ".join(f"{k}={v}" for k, v in self.header_list if k.startswith("x-"))
        return f"{self.status} {self.text.strip()[:200]!r} [{hdrs}] in {self.elapsed * 1000:.0f} ms"


def _check_loopback(host: str) -> None:
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        ip = ipaddress.ip_address(socket.gethostbyname(host))
    if not ip.is_loopback:
        raise ValueError(f"refusing to send test traffic to non-loopback address {host}")


def _b(x) -> bytes:
    if isinstance(x, bytes):
        return x
    return str(x).encode("latin-1")


def build_request(method: str, path: str, host_header: str, headers, body: bytes | None,
                  connection_close: bool = True, raw_header_lines=()) -> bytes:
    lines = [_b(method) + b" " + _b(path) + b" HTTP/1.1", b"Host: " + _b(host_header)]
    for k, v in headers:
        # Sent as "Name: value"; use raw_header_lines for byte-exact lines such as b"uid:2".
        lines.append(_b(k) + b": " + _b(v))
    lines.extend(_b(x) for x in raw_header_lines)
    if body:
        lines.append(b"Content-Length: " + str(len(body)).encode())
    if connection_close:
        lines.append(b"Connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n" + (body or b"")


class _Reader:
    def __init__(self, sock: socket.socket, deadline: float):
        self.sock = sock
        self.buf = b""
        self.deadline = deadline
        self.eof = False

    def _fill(self) -> bool:
        if self.eof:
            return False
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise NoResponse("timed out waiting for the response")
        self.sock.settimeout(left)
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            raise NoResponse("timed out waiting for the response") from None
        except ConnectionResetError:
            data = b""
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def read_until(self, sep: bytes) -> bytes:
        while sep not in self.buf:
            if not self._fill():
                raise NoResponse(f"connection closed before {sep!r} (got {self.buf[:200]!r})")
        i = self.buf.index(sep) + len(sep)
        out, self.buf = self.buf[:i], self.buf[i:]
        return out

    def read_exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            if not self._fill():
                raise NoResponse(f"connection closed after {len(self.buf)} of {n} body bytes")
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_all(self) -> bytes:
        while self._fill():
            pass
        out, self.buf = self.buf, b""
        return out


def _parse_head(head: bytes):
    lines = head.decode("latin-1").split("\r\n")
    status_line = lines[0]
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/"):
        raise NoResponse(f"bad status line {status_line!r}")
    status = int(parts[1])
    reason = parts[2] if len(parts) > 2 else ""
    hl = []
    for line in lines[1:]:
        if not line:
            continue
        k, _, v = line.partition(":")
        hl.append((k.strip().lower(), v.strip()))
    return status, reason, hl


def request(port: int, path: str = "/", headers=(), *, method: str = "GET", body: bytes | None = None,
            host: str = "127.0.0.1", host_header: str | None = None, timeout: float = 10.0,
            raw_header_lines=(), source: str | None = None) -> Response:
    """Send one request on a fresh connection and return the complete response.

    headers: iterable of (name, value) (str or bytes, sent as ``name: value``);
    raw_header_lines: extra header lines sent verbatim, e.g. [b"uid:2"];
    source: the client's own loopback address (e.g. "127.0.0.66"), default the system's.
    Raises NoResponse if no complete response arrives within ``timeout``.
    """
    _check_loopback(host)
    if source is not None:
        _check_loopback(source)
    data = build_request(method, path, host_header or f"{host}:{port}", list(headers), body,
                         raw_header_lines=raw_header_lines)
    start = time.monotonic()
    deadline = start + timeout
    with socket.create_connection((host, port), timeout=timeout,
                                  source_address=(source, 0) if source else None) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.sendall(data)
        r = _Reader(s, deadline)
        while True:
            status, reason, hl = _parse_head(r.read_until(b"\r\n\r\n"))
            if 100 <= status < 200 and status != 101:
                continue  # interim response
            break
        hdrs = dict(hl)
        if method == "HEAD" or status in (204, 304):
            resp_body = b""
        elif "chunked" in hdrs.get("transfer-encoding", "").lower():
            chunks = []
            while True:
                size_line = r.read_until(b"\r\n")
                size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while r.read_until(b"\r\n") != b"\r\n":
                        pass
                    break
                chunks.append(r.read_exact(size))
                r.read_exact(2)
            resp_body = b"".join(chunks)
        elif "content-length" in hdrs:
            resp_body = r.read_exact(int(hdrs["content-length"]))
        else:
            resp_body = r.read_all()
    end = time.monotonic()
    return Response(status, reason, hl, resp_body, end - start, start, end)


def send_raw(port: int, data: bytes, *, host: str = "127.0.0.1", timeout: float = 10.0) -> Response:
    """Send arbitrary bytes (a possibly malformed request) and parse whatever response comes back.
    Raises NoResponse if the peer closes without a status line."""
    _check_loopback(host)
    start = time.monotonic()
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(data)
        r = _Reader(s, start + timeout)
        status, reason, hl = _parse_head(r.read_until(b"\r\n\r\n"))
        hdrs = dict(hl)
        if "content-length" in hdrs:
            try:
                resp_body = r.read_exact(int(hdrs["content-length"]))
            except NoResponse:
                resp_body = r.buf
        else:
            try:
                resp_body = r.read_all()
            except NoResponse:
                resp_body = r.buf
    end = time.monotonic()
    return Response(status, reason, hl, resp_body, end - start, start, end)


def tcp_open(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    _check_loopback(host)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False
