"""Host-independent HTTP cases, written once, run against Envoy and Nginx by tests/test_hosts.py.

Each case is a plain function ``case(ctx)``; ``ctx`` is a CaseContext: the listener, the backend
ports by name (s1a, s1b, s2, s3 and the dead ports dead1, dead2) and the access-log reader.
Cases raise AssertionError with a readable message on failure.

Every request gets a unique path (/c/<case>/<n>) so its access-log line can be found by path,
whatever lines other requests (or a late flush) add around it.

The config is tests/harness/config.py: routes x-case: retry -> pair [dead1, s2] (2 retries),
x-case: dead -> dead [dead2], x-mosn-on-envoy-unit s1/s2/s3 -> clusters s1 [s1a, s1b] / s2 / s3,
catch-all -> all_sites [s1a, s1b, s2, s3]; fault filter delays x-case: delay by 400 ms; metadata
filter with the UNIT driver on header uid.

Host-specific expectations: none at the moment. Round-robin cases assume the host runs with
cursors shared by all workers (Envoy) or with a single worker (nginx; per-worker cursors), which
is how tests/test_hosts.py starts them.
"""
from __future__ import annotations

import itertools
import threading
import time

from harness.client import NoResponse, Response, request, send_raw
from harness.hosts import is_empty, last_upstream

UNIT_HEADER = "x-mosn-on-envoy-unit"


class CaseContext:
    def __init__(self, host, ports: dict, site_of: dict):
        self.host = host  # harness.hosts.Host
        self.host_name = host.host
        self.port = host.port
        self.base_url = host.base_url
        self.ports = dict(ports)  # s1a s1b s2 s3 dead1 dead2
        self.site_of = dict(site_of)  # backend port -> site
        self.case_name = "case"
        self._seq = itertools.count(1)

    # --- pytest hook protocol (tests/conftest.py): a failing test marks its host's run dir kept
    def mark_failed(self) -> None:
        self.host.failed = True

    def logs_tail(self, n: int = 30) -> str:
        return self.host.logs_tail(n)

    # --- requests ---------------------------------------------------------------------------
    def new_path(self, tag: str = "") -> str:
        return f"/c/{self.case_name}/{next(self._seq)}{('-' + tag) if tag else ''}"

    def get(self, headers=(), *, raw=(), path: str | None = None, method: str = "GET",
            timeout: float = 10.0, body: bytes | None = None, host: str | None = None,
            port: int | None = None, source: str | None = None) -> Response:
        """One request on a fresh connection. headers: [(name, value)] sent as ``name: value``;
        raw: header lines sent verbatim (e.g. b"uid:2", exactly what curl -H "uid:2" sends);
        host: the Host header (default 127.0.0.1:<port>); port: the listener (default the first)."""
        path = path or self.new_path()
        r = request(port or self.port, path, headers, raw_header_lines=raw, method=method, timeout=timeout, body=body,
                    host_header=host, source=source)
        r.path = path
        return r

    def site_ports(self, site: str) -> set:
        return {p for p, s in self.site_of.items() if s == site}

    # --- expectations -----------------------------------------------------------------------
    def expect_site(self, r: Response, site: str, what: str = "") -> int:
        """200 with body exactly ``site <site> from <port>\\n`` where port is one of site's
        backends. Returns the port."""
        where = f"[{self.host_name}] {what or r.path}"
        assert r.status == 200, f"{where}: expected 200 from {site}, got {r.describe()}"
        got_site, got_port = r.site()
        assert got_site == site, f"{where}: expected a response from {site}, got {r.describe()}"
        assert got_port in self.site_ports(site), \
            f"{where}: port {got_port} is not a {site} backend {sorted(self.site_ports(site))}"
        assert r.text == f"site {site} from {got_port}\n", f"{where}: unexpected body {r.text!r}"
        assert r.header("x-backend-port") == str(got_port), f"{where}: x-backend-port mismatch: {r.describe()}"
        return got_port

    def expect_seen_unit(self, r: Response, unit: str, what: str = "") -> None:
        seen = r.header("x-seen-unit")
        assert seen == unit, (f"[{self.host_name}] {what or r.path}: backend saw {UNIT_HEADER}={seen!r}, "
                              f"expected {unit!r} ({r.describe()})")

    def log_for(self, r: Response, timeout: float = 3.0) -> dict:
        """The access-log line of response r (polls: Envoy flushes every 100 ms)."""
        return self.host.find_access(r.path, timeout=timeout)[-1]

    def expect_log(self, r: Response, *, status: int, cluster: str, port: int | None = None,
                   unit: str | None = None) -> dict:
        line = self.log_for(r)
        where = f"[{self.host_name}] access log for {r.path}"
        assert line.get("method") == "GET", f"{where}: method: {line['_raw']}"
        assert line.get("status") == str(status), f"{where}: expected status={status}: {line['_raw']}"
        assert line.get("cluster") == cluster, f"{where}: expected cluster={cluster}: {line['_raw']}"
        if port is not None:
            up = last_upstream(line.get("upstream_host"))
            assert up == f"127.0.0.1:{port}", f"{where}: expected upstream_host=127.0.0.1:{port}: {line['_raw']}"
        if unit is not None:
            if unit == "-":
                assert "unit" in line and is_empty(line["unit"]), f"{where}: expected unit=- (field present): {line['_raw']}"
            else:
                assert line.get("unit") == unit, f"{where}: expected unit={unit}: {line['_raw']}"
        return line

    def expect_healthy(self, what: str = "follow-up request") -> None:
        """A normal request still works (uid 150 -> s2)."""
        r = self.get([("uid", "150")])
        self.expect_site(r, "s2", what)
        assert self.host.alive(), f"[{self.host_name}] host process died\n{self.host.logs_tail()}"


CASES = []


def case(fn):
    CASES.append(fn)
    return fn


# ----------------------------------------------------------------------------------------------

@case
def seed_curls(ctx: CaseContext):
    """Seed 004, verbatim: curl localhost:2990 -H "uid:2" (twice) / "uid:200" / "uid:201"."""
    seen = set()
    for i in range(2):
        r = ctx.get(raw=[b"uid:2"])
        seen.add(ctx.expect_site(r, "s1", f'uid:2 #{i + 1}'))
    assert seen == ctx.site_ports("s1"), \
        f"[{ctx.host_name}] two uid:2 requests should hit both s1 backends (round robin), hit {sorted(seen)}"
    r = ctx.get(raw=[b"uid:200"])
    assert ctx.expect_site(r, "s2", "uid:200") == ctx.ports["s2"]
    r = ctx.get(raw=[b"uid:201"])
    assert ctx.expect_site(r, "s3", "uid:201") == ctx.ports["s3"]


@case
def uid_boundaries(ctx: CaseContext):
    table = [("1", "s1"), ("100", "s1"), ("101", "s2"), ("200", "s2"),
             ("0", "s3"), ("-1", "s3"), ("201", "s3"), ("9223372036854775807", "s3")]
    for uid, site in table:
        r = ctx.get([("uid", uid)])
        ctx.expect_site(r, site, f"uid: {uid}")
        ctx.expect_seen_unit(r, site, f"uid: {uid}")
        assert r.header("x-seen-uid") == uid, f"[{ctx.host_name}] uid {uid}: backend saw uid {r.header('x-seen-uid')!r}"


@case
def no_uid_round_robin(ctx: CaseContext):
    """No uid -> catch-all route -> all_sites, round robin: 4 consecutive requests hit its 4 hosts
    exactly once (in some rotation)."""
    all_ports = {ctx.ports[k] for k in ("s1a", "s1b", "s2", "s3")}
    got = []
    for i in range(4):
        r = ctx.get()
        assert r.status == 200, f"[{ctx.host_name}] no uid #{i + 1}: {r.describe()}"
        site, port = r.site()
        assert port in all_ports and ctx.site_of[port] == site, f"[{ctx.host_name}] no uid: {r.describe()}"
        ctx.expect_seen_unit(r, "-", "no uid")
        ctx.expect_log(r, status=200, cluster="all_sites", port=port, unit="-")
        got.append(port)
    assert sorted(got) == sorted(all_ports), \
        f"[{ctx.host_name}] 4 no-uid requests should hit each all_sites host once, hit {got} (hosts {sorted(all_ports)})"


@case
def client_cluster_header_steers_nothing(ctx: CaseContext):
    """A client's x-mosn-cluster is an ordinary header on both hosts: the router's choice
    stands (uid 2 -> s1) and the backend receives the header as sent."""
    r = ctx.get([("uid", "2"), ("x-mosn-cluster", "s3"), ("x-echo", "x-mosn-cluster")])
    ctx.expect_site(r, "s1", "uid 2 with x-mosn-cluster: s3")
    assert r.header("x-echo-x-mosn-cluster") == "s3", f"[{ctx.host_name}] {r.describe()}"
    ctx.expect_log(r, status=200, cluster="s1", port=r.site()[1])


@case
def bad_uid_is_no_uid(ctx: CaseContext):
    """Non-integer, empty and i64-overflowing uids are 'no uid': catch-all (all_sites), backend sees
    no unit header; nothing crashes."""
    values = [(b"uid: abc", "abc"), (b"uid:", None), (b"uid: 99999999999999999999999", "99999999999999999999999"),
              (b"uid: 1.5", "1.5"), (b"uid: 12abc", "12abc"), (b"uid: 9223372036854775808", "9223372036854775808")]
    for raw, _ in values:
        r = ctx.get(raw=[raw])
        what = repr(raw.decode())
        assert r.status == 200, f"[{ctx.host_name}] {what}: {r.describe()}"
        site, port = r.site()
        assert site is not None, f"[{ctx.host_name}] {what}: {r.describe()}"
        ctx.expect_seen_unit(r, "-", what)
        ctx.expect_log(r, status=200, cluster="all_sites", port=port)
    ctx.expect_healthy("normal request after bad uids")


@case
def forged_unit_without_uid(ctx: CaseContext):
    """A client-sent x-mosn-on-envoy-unit never steers routing and never reaches the backend."""
    all_ports = {ctx.ports[k] for k in ("s1a", "s1b", "s2", "s3")}
    got = []
    for i in range(4):
        r = ctx.get([(UNIT_HEADER, "s2")])
        assert r.status == 200, f"[{ctx.host_name}] forged unit #{i + 1}: {r.describe()}"
        _, port = r.site()
        ctx.expect_seen_unit(r, "-", "forged x-mosn-on-envoy-unit: s2 without uid")
        ctx.expect_log(r, status=200, cluster="all_sites", port=port)
        got.append(port)
    assert sorted(got) == sorted(all_ports), \
        f"[{ctx.host_name}] forged unit without uid must round-robin over all_sites, hit {got}"


@case
def forged_unit_with_uid(ctx: CaseContext):
    r = ctx.get([(UNIT_HEADER, "s3"), ("uid", "5")])
    ctx.expect_site(r, "s1", "forged s3 + uid 5")
    ctx.expect_seen_unit(r, "s1", "forged s3 + uid 5")
    # The forged header sent twice (two lines) must be replaced, not appended to.
    r = ctx.get([(UNIT_HEADER, "s1"), (UNIT_HEADER, "s3"), ("uid", "150")])
    ctx.expect_site(r, "s2", "forged s1,s3 + uid 150")
    ctx.expect_seen_unit(r, "s2", "forged s1,s3 + uid 150")


@case
def retry_to_live_host(ctx: CaseContext):
    """x-case: retry -> cluster pair [dead1, s2], retry_on + 2 retries: the dead host may be tried
    first, the retry goes to s2. Each such request advances the cluster's round-robin cursor
    twice (dead, then live), so in practice every request starts at the dead host. The access log's `attempts` (Envoy: %UPSTREAM_REQUEST_ATTEMPT_COUNT%; nginx: the core's
    count of hosts chosen) proves the dead host is never tried twice in one request: with
    2 retries allowed, a second try of the dead host would show attempts=3."""
    attempts = []
    for i in range(4):
        r = ctx.get([("x-case", "retry")])
        assert r.status == 200, f"[{ctx.host_name}] retry #{i + 1}: expected 200 via the live host, got {r.describe()}"
        port = ctx.expect_site(r, "s2", f"retry #{i + 1}")
        assert port == ctx.ports["s2"]
        assert r.elapsed < 5, f"[{ctx.host_name}] retry #{i + 1} took {r.elapsed:.2f}s"
        line = ctx.expect_log(r, status=200, cluster="pair", port=ctx.ports["s2"])
        attempts.append(line.get("attempts"))
    assert all(a in ("1", "2") for a in attempts), \
        f"[{ctx.host_name}] retry: attempts per request {attempts}: a host was tried twice"
    assert "2" in attempts, f"[{ctx.host_name}] retry: the dead host was never tried first: {attempts}"


@case
def dead_cluster_502(ctx: CaseContext):
    """x-case: dead -> the only host refuses connections -> 502 (MOSN's status for connect
    failure), and the access log says why (details or flags not empty)."""
    r = ctx.get([("x-case", "dead")])
    assert r.status == 502, f"[{ctx.host_name}] dead cluster: expected 502, got {r.describe()}"
    line = ctx.log_for(r)
    assert line.get("status") == "502", f"[{ctx.host_name}] dead: access log status: {line['_raw']}"
    assert line.get("cluster") == "dead", f"[{ctx.host_name}] dead: access log cluster: {line['_raw']}"
    assert not (is_empty(line.get("details")) and is_empty(line.get("flags"))), \
        f"[{ctx.host_name}] dead: access log must carry a failure reason in details or flags: {line['_raw']}"
    ctx.expect_healthy("normal request after a 502")


@case
def retry_on_5xx(ctx: CaseContext):
    """Cluster flaky = [a backend answering 503, s2]. With `retry_on: true` a 503 is retried on
    the other host (Envoy: x-envoy-retry-on 5xx; nginx: proxy_next_upstream http_50x set per
    request from the route); with `retry_on: false` only connect failures are retried, so the
    backend's own 503 (its body, not the host's error page) reaches the client."""
    if "fail503" not in ctx.ports:
        return
    statuses = []
    for i in range(4):
        r = ctx.get([("x-case", "retry5xx")])
        line = ctx.log_for(r)
        statuses.append((r.status, line.get("attempts")))
        assert r.status == 200, f"[{ctx.host_name}] retry5xx #{i + 1}: {r.describe()} ({line['_raw']})"
        ctx.expect_site(r, "s2", f"retry5xx #{i + 1}")
    assert any(a == "2" for _, a in statuses), f"[{ctx.host_name}] the 503 host was never tried first: {statuses}"
    seen = set()
    for i in range(4):
        r = ctx.get([("x-case", "noretry5xx")])
        seen.add(r.status)
        if r.status == 503:
            assert r.text == f"site fail503 from {ctx.ports['fail503']}\n", f"[{ctx.host_name}] noretry5xx: {r.describe()}"
            assert ctx.log_for(r).get("attempts") == "1", f"[{ctx.host_name}] noretry5xx retried a 503"
        else:
            ctx.expect_site(r, "s2", f"noretry5xx #{i + 1}")
    assert 503 in seen, f"[{ctx.host_name}] noretry5xx: the 503 never reached the client ({seen})"


@case
def connect_timeout_502(ctx: CaseContext):
    """x-case: blackhole -> the only host never completes the handshake; the cluster's
    connect_timeout (300ms) fires -> 502 on both hosts (a connect failure in MOSN's terms,
    not a 504 response timeout)."""
    if "blackhole" not in ctx.ports:
        return
    r = ctx.get([("x-case", "blackhole")], timeout=10)
    assert r.status == 502, f"[{ctx.host_name}] connect timeout: expected 502, got {r.describe()}"
    assert r.elapsed < 5, f"[{ctx.host_name}] connect timeout took {r.elapsed:.1f}s (connect_timeout is 300ms)"
    line = ctx.log_for(r)
    assert line.get("status") == "502" and line.get("cluster") == "blackhole", f"[{ctx.host_name}] {line['_raw']}"


@case
def access_log_fields(ctx: CaseContext):
    """Every proxied request has an access-log line with its cluster and the upstream host that
    actually answered (== the port in the body)."""
    plan = [("2", "s1"), ("2", "s1"), ("150", "s2"), ("250", "s3"), (None, "all_sites"), (None, "all_sites")]
    for uid, cluster in plan:
        r = ctx.get([("uid", uid)] if uid else [])
        assert r.status == 200, f"[{ctx.host_name}] uid={uid}: {r.describe()}"
        site, port = r.site()
        if cluster != "all_sites":
            assert site == cluster, f"[{ctx.host_name}] uid={uid}: {r.describe()}"
        line = ctx.expect_log(r, status=200, cluster=cluster, port=port, unit=(site if uid else "-"))
        assert line.get("path") == r.path


@case
def delay_does_not_block_worker(ctx: CaseContext):
    """x-case: delay parks the request ~400 ms in the fault filter, then it proceeds normally.
    While it is parked the worker keeps serving: a fast request started later finishes first and
    quickly. (nginx runs 1 worker here, so this proves the event loop is not blocked; on Envoy
    the fast request may land on the other worker, which the contract allows.)"""
    box = {}

    def delayed():
        try:
            box["r"] = ctx.get([("x-case", "delay"), ("uid", "150")], timeout=10)
        except BaseException as e:  # reported below
            box["e"] = e

    t = threading.Thread(target=delayed, daemon=True)
    t.start()
    time.sleep(0.1)  # the delayed request is on the wire and parked
    fast = ctx.get([("uid", "2")], timeout=5)
    t.join(10)
    assert not t.is_alive(), f"[{ctx.host_name}] delayed request did not finish within 10 s"
    assert "e" not in box, f"[{ctx.host_name}] delayed request failed: {box.get('e')!r}"
    slow = box["r"]
    ctx.expect_site(fast, "s1", "fast request during a delay")
    ctx.expect_site(slow, "s2", "delayed request")
    assert fast.elapsed < 0.3, f"[{ctx.host_name}] fast request took {fast.elapsed * 1000:.0f} ms while another was parked"
    assert fast.finished < slow.finished, f"[{ctx.host_name}] fast request finished after the delayed one"
    assert slow.elapsed >= 0.38, f"[{ctx.host_name}] delayed request took only {slow.elapsed * 1000:.0f} ms (want >= 380)"
    ctx.expect_log(slow, status=200, cluster="s2", port=ctx.ports["s2"])

    # Several parked at once: they wait concurrently, not one after another.
    results, errors = [], []

    def one():
        try:
            results.append(ctx.get([("x-case", "delay"), ("uid", "250")], timeout=10))
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=one, daemon=True) for _ in range(4)]
    t0 = time.monotonic()
    for th in threads:
        th.start()
    for th in threads:
        th.join(10)
    wall = time.monotonic() - t0
    assert not errors, f"[{ctx.host_name}] parallel delayed requests failed: {errors!r}"
    assert len(results) == 4
    for r in results:
        ctx.expect_site(r, "s3", "parallel delayed")
        assert r.elapsed >= 0.38, f"[{ctx.host_name}] parallel delayed request took {r.elapsed * 1000:.0f} ms"
    assert wall < 1.4, f"[{ctx.host_name}] 4 parallel 400 ms delays took {wall:.2f}s (serialised?)"


@case
def odd_requests_then_ok(ctx: CaseContext):
    """Malformed-ish requests are answered (any status < 600, host's choice: e.g. nginx answers a
    >8 KB header line with 400, Envoy proxies it) and the next normal request works."""
    # 10 KB uid: overflows i64 -> no uid if it gets through.
    r = ctx.get(raw=[b"uid: " + b"9" * 10240])
    assert r.status < 600, f"[{ctx.host_name}] 10 KB uid: {r.describe()}"
    if r.status == 200:
        ctx.expect_seen_unit(r, "-", "10 KB uid")
    # obs-text bytes (RFC 9110 allows them in field values) -> not an integer -> no uid.
    r = ctx.get(raw=[b"uid: \x80\xff\xfe 1\t2"])
    assert r.status < 600, f"[{ctx.host_name}] obs-text uid: {r.describe()}"
    if r.status == 200:
        ctx.expect_seen_unit(r, "-", "obs-text uid")
    # A long unit header is stripped like any forged one.
    r = ctx.get([(UNIT_HEADER, "s" * 4096), ("uid", "7")])
    ctx.expect_site(r, "s1", "long forged unit + uid 7")
    ctx.expect_seen_unit(r, "s1", "long forged unit + uid 7")
    # Control byte in a value: hosts may reject (400) or close; either way the next request works.
    path = ctx.new_path("ctl")
    try:
        r = send_raw(ctx.port, f"GET {path} HTTP/1.1\r\nHost: x\r\nuid: 1\x012\r\nConnection: close\r\n\r\n".encode("latin-1"),
                     timeout=5)
        assert r.status < 600, f"[{ctx.host_name}] control byte: {r.describe()}"
    except NoResponse:
        pass
    # Garbage request line.
    try:
        r = send_raw(ctx.port, b"\x16\x03\x01 garbage\r\n\r\n", timeout=5)
        assert r.status < 600
    except (NoResponse, ConnectionError):
        pass
    ctx.expect_healthy("normal request after odd requests")
    r = ctx.get(raw=[b"uid:2"])
    ctx.expect_site(r, "s1", "uid:2 after odd requests")


def _answer(port: int, raw: bytes, *, responses: int = 1) -> str:
    """What a host answers to raw bytes: the status codes of the first ``responses``
    responses joined by "+", or "closed" when it closes without (another) one."""
    import socket
    out = []
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(raw)
        buf = b""
        deadline = time.monotonic() + 5
        while len(out) < responses and time.monotonic() < deadline:
            head_end = buf.find(b"\r\n\r\n")
            if head_end >= 0:
                head = buf[:head_end].decode("latin-1")
                status = head.split(" ", 2)[1] if head.startswith("HTTP/") else "?"
                length = 0
                for line in head.split("\r\n")[1:]:
                    k, _, v = line.partition(":")
                    if k.strip().lower() == "content-length":
                        length = int(v.strip())
                if len(buf) >= head_end + 4 + length:
                    out.append(status)
                    buf = buf[head_end + 4 + length:]
                    continue
            try:
                chunk = s.recv(65536)
            except (socket.timeout, ConnectionError):
                break
            if not chunk:
                break
            buf += chunk
    return "+".join(out) if out else "closed"


def _req(lines: list, body: bytes = b"", target: bytes = b"/bad", version: bytes = b"HTTP/1.1", method: bytes = b"GET") -> bytes:
    return method + b" " + target + b" " + version + b"\r\n" + b"".join(l + b"\r\n" for l in lines) + b"\r\n" + body


# The bad-request table: (row, raw request, {host: answer}, why the hosts differ when they do).
# An answer is the status (or "a+b" for two pipelined responses, "closed" for none). Every row
# is answered without a crash, and a normal request works after each.
BAD_REQUESTS = [
    ("NUL in a header value", _req([b"Host: x", b"uid: 1\x002"]), {"envoy": "400", "nginx": "400"}, ""),
    ("bare CR in a header value", _req([b"Host: x", b"uid: 1\r2", b"x-echo: uid"]), {"envoy": "200", "nginx": "400"},
     "Envoy's parser drops the bare CR (the module sees uid 12), nginx's refuses it"),
    ("high bytes in a header value", _req([b"Host: x", b"x-h: \xff\xfe\x80"]), {"envoy": "200", "nginx": "200"}, ""),
    ("200 identical headers", _req([b"Host: x"] + [b"x-dup: a"] * 200), {"envoy": "431", "nginx": "431"},
     "Envoy's own limit of 100 headers; nginx has none and passes them on, and the test backend "
     "(Python's http.server, 100 headers at most) answers 431"),
    ("a 64 KiB header value", _req([b"Host: x", b"x-big: " + b"v" * 65536]), {"envoy": "431", "nginx": "400"},
     "each host's own header limit: Envoy 60 KiB of headers (431), nginx large_client_header_buffers 8 KiB a line (400)"),
    ("a 16 KiB path", _req([b"Host: x"], target=b"/" + b"p" * 16384), {"envoy": "200", "nginx": "414"},
     "nginx's request line limit (large_client_header_buffers, 8 KiB: 414); Envoy's is its 60 KiB header limit"),
    ("HTTP/1.0 without Host", _req([], version=b"HTTP/1.0"), {"envoy": "404", "nginx": "404"},
     "served (not 400) by both; this router has two virtual hosts, so a request without Host finds none (MOSN: 404)"),
    ("HTTP/1.0 with Host", _req([b"Host: x"], version=b"HTTP/1.0"), {"envoy": "200", "nginx": "200"}, ""),
    ("HTTP/1.1 without Host", _req([]), {"envoy": "400", "nginx": "400"}, ""),
    ("two Host headers", _req([b"Host: x", b"Host: y"]), {"envoy": "400", "nginx": "400"},
     "nginx refuses them itself; Envoy joins them into \"x,y\", which the module refuses (invalid_host)"),
    ("a Host with a comma", _req([b"Host: x,y"]), {"envoy": "400", "nginx": "400"}, ""),
    ("two pipelined requests", _req([b"Host: x"]) + _req([b"Host: x", b"Connection: close"]), {"envoy": "200+200", "nginx": "200+200"}, ""),
    ("chunked with trailers", _req([b"Host: x", b"Transfer-Encoding: chunked"], b"3\r\nabc\r\n0\r\nx-t: 1\r\n\r\n", method=b"POST"),
     {"envoy": "200", "nginx": "200"}, ""),
    ("Content-Length and Transfer-Encoding", _req([b"Host: x", b"Content-Length: 3", b"Transfer-Encoding: chunked"],
                                                  b"3\r\nabc\r\n0\r\n\r\n", method=b"POST"), {"envoy": "400", "nginx": "400"}, ""),
    ("two different Content-Lengths", _req([b"Host: x", b"Content-Length: 3", b"Content-Length: 4"], b"abcd", method=b"POST"),
     {"envoy": "400", "nginx": "400"}, ""),
    ("a bad chunk size", _req([b"Host: x", b"Transfer-Encoding: chunked"], b"zz\r\nabc\r\n0\r\n\r\n", method=b"POST"),
     {"envoy": "400", "nginx": "400"}, ""),
    ("an odd method", _req([b"Host: x"], method=b"FOO"), {"envoy": "400", "nginx": "200"},
     "Envoy's HTTP/1 parser knows a fixed list of methods; nginx takes any token (and MOSN routes it)"),
    ("a lower-case method", _req([b"Host: x"], method=b"get"), {"envoy": "400", "nginx": "400"}, ""),
    ("a space in a header name", _req([b"Host: x", b"bad name: 1"]), {"envoy": "400", "nginx": "400"}, ""),
    ("an obs-folded header", _req([b"Host: x", b"uid: 1", b" 2"]), {"envoy": "200", "nginx": "400"},
     "Envoy's parser unfolds it (the module sees uid \"1 2\", no integer: no unit); nginx refuses it"),
    ("an absolute-form target", _req([b"Host: x"], target=b"http://other.test/abs"), {"envoy": "200", "nginx": "200"}, ""),
    ("HTTP/2.0 on an HTTP/1 connection", _req([b"Host: x"], version=b"HTTP/2.0"), {"envoy": "200", "nginx": "505"},
     "Envoy's parser serves it as HTTP/1.1; nginx answers 505 (version not supported)"),
]


@case
def bad_request_table(ctx: CaseContext):
    """Each row of BAD_REQUESTS gets the answer the table records for this host, the host
    stays up, and a normal request works after each; where Envoy and nginx differ the row says
    which host's own parser or limit makes the difference (the module never does)."""
    got = {}
    for name, raw, want, why in BAD_REQUESTS:
        responses = want[ctx.host_name].count("+") + 1
        got[name] = _answer(ctx.port, raw, responses=responses)
        assert want["envoy"] == want["nginx"] or why, f"row {name!r}: the hosts differ and the row says not why"
        ctx.expect_healthy(f"after {name}")
    wrong = {n: (g, dict(BAD_REQUESTS_BY_NAME[n])[ctx.host_name]) for n, g in got.items() if g != dict(BAD_REQUESTS_BY_NAME[n])[ctx.host_name]}
    assert not wrong, f"[{ctx.host_name}] rows answered otherwise (got, table): {wrong}"


BAD_REQUESTS_BY_NAME = {name: want.items() for name, _, want, _ in BAD_REQUESTS}


def scrape(port: int) -> dict:
    """The Prometheus text of ``port``'s /metrics, parsed strictly: every line a ``# TYPE``
    line or ``name{labels} value`` of a declared metric (a histogram's ``_bucket`` with ``le``,
    ``_sum``, ``_count``); {(name, ((label, value), ...)): value}. A histogram's buckets must
    be cumulative and end with ``+Inf`` equal to its count."""
    import re
    r = request(port, "/metrics")
    assert r.status == 200, f"/metrics: {r.describe()}"
    assert (r.header("content-type") or "").startswith("text/plain"), r.describe()
    types, out = {}, {}
    series_re = re.compile(r'^([a-z_][a-z0-9_]*)\{((?:[a-z_]+="(?:[^"\\]|\\.)*",?)*)\} ([0-9]+(?:\.[0-9]+)?(?:e-?[0-9]+)?)$')
    for line in r.text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert kind in ("counter", "gauge", "histogram") and name not in types, line
            types[name] = kind
            continue
        m = series_re.match(line)
        assert m, f"not a Prometheus series line: {line!r}"
        name = m.group(1)
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        declared = types.get(name) in ("counter", "gauge") or types.get(base) == "histogram"
        assert declared, f"series before its # TYPE: {line!r}"
        labels = tuple(re.findall(r'([a-z_]+)="((?:[^"\\]|\\.)*)"', m.group(2)))
        key = (name, labels)
        assert key not in out, f"duplicate series {line!r}"
        value = float(m.group(3)) if name.endswith("_sum") else int(m.group(3))
        out[key] = value
    for base in (n for n, k in types.items() if k == "histogram"):
        for (name, labels), count in [(k, v) for k, v in out.items() if k[0] == base + "_count"]:
            buckets = [(lv, out[(base + "_bucket", labels + (("le", lv),))]) for (n, ls), _ in out.items()
                       if n == base + "_bucket" and ls[:-1] == labels for lv in [ls[-1][1]]]
            counts = [c for _, c in buckets]
            assert counts == sorted(counts) and buckets[-1] == ("+Inf", count), f"{base}{labels}: buckets {buckets}, count {count}"
    return out


@case
def prometheus_counts_per_cluster(ctx: CaseContext):
    """MOSN's prometheus sink (metrics.sinks, served by the host on its port): after a known
    number of requests, MOSN's downstream and upstream counters moved by exactly that, per
    listener and per cluster (responses, a refused connection, the request-time histogram), in
    text a strict parser accepts; stats_matcher's exclusion_keys leave a metric out."""
    port = ctx.ports.get("metrics")
    if not port:
        return
    l = "serverListener"
    active = ("mosn_downstream_request_active", (("listener", l),))
    # Counted from a quiet listener: a stream ends (and is timed) just after its answer is
    # sent, so an earlier request may still be ending.
    wait_until("no request in flight", 3.0, lambda: scrape(port)[active] == 0)
    before = scrape(port)
    plan = [("2", "s1")] * 3 + [("150", "s2")] * 2 + [("250", "s3")]
    for uid, site in plan:
        ctx.expect_site(ctx.get([("uid", uid)]), site, f"uid {uid}")
    ctx.get(path="/admin/x")  # a direct response: 403
    after = scrape(port)

    def delta(name, **labels):
        key = (name, tuple(labels.items()))
        assert key in after, f"[{ctx.host_name}] no series {key} in the scrape"
        return after[key] - before.get(key, 0)

    assert delta("mosn_downstream_request_total", listener=l) == 7, f"[{ctx.host_name}] request_total"
    assert delta("mosn_downstream_request_200_total", listener=l) == 6, f"[{ctx.host_name}] 200s"
    assert delta("mosn_downstream_request_403_total", listener=l) == 1, f"[{ctx.host_name}] 403s: {delta('mosn_downstream_request_403_total', listener=l)} other {delta('mosn_downstream_request_other_code', listener=l)}"
    for cluster, n in (("s1", 3), ("s2", 2), ("s3", 1)):
        assert delta("mosn_upstream_request_total", cluster=cluster) == n, f"[{ctx.host_name}] {cluster}"
    hosts_s1 = [k for k in after if k[0] == "mosn_upstream_request_total" and ("cluster", "s1") in k[1] and len(k[1]) == 2]
    assert len(hosts_s1) == 2 and sum(after[k] - before.get(k, 0) for k in hosts_s1) == 3, f"[{ctx.host_name}] s1 hosts"
    assert not any(k[0] == "mosn_upstream_host_health_changes" for k in after), "exclusion_keys"
    for cluster, n in (("s1", 3), ("s2", 2), ("s3", 1)):
        assert delta("mosn_upstream_response_success", cluster=cluster) == n, f"[{ctx.host_name}] {cluster} response_success"
    # A connection refused: MOSN's connection_con_fail on the cluster and its host.
    base = scrape(port)
    r = ctx.get([("x-case", "dead")])
    assert r.status == 502, f"[{ctx.host_name}] dead cluster: {r.describe()}"
    dead = scrape(port)
    key = ("mosn_upstream_connection_con_fail", (("cluster", "dead"),))
    assert dead[key] - base.get(key, 0) == 1, f"[{ctx.host_name}] connection_con_fail {dead[key]} (before {base.get(key)})"
    # request_time: every request (the 7 and the dead one), once it ended, is in the histogram.
    wait_until("no request in flight", 3.0, lambda: scrape(port)[active] == 0)
    key = ("mosn_downstream_request_time_count", (("listener", l),))
    moved = scrape(port)[key] - before.get(key, 0)
    assert moved == 8, f"[{ctx.host_name}] request_time count moved by {moved}, not 8"
    # An upstream's own 503 on a route without a retry policy is counted as a 503 (on Envoy
    # the core then gets the status Envoy recorded, not a copy of the response's headers).
    if "fail503" in ctx.ports:
        base = scrape(port)
        seen = [ctx.get([("x-case", "plain5xx")]).status for _ in range(4)]
        assert 503 in seen and 200 in seen, f"[{ctx.host_name}] plain5xx: {seen}"
        now = scrape(port)
        for code in (503, 200):
            key = (f"mosn_downstream_request_{code}_total", (("listener", l),))
            assert now[key] - base.get(key, 0) == seen.count(code), f"[{ctx.host_name}] {code}s counted {now[key] - base.get(key, 0)}, seen {seen}"


@case
def admin_api_answers_like_mosn(ctx: CaseContext):
    """MOSN's admin API at admin.address, served by the host: config_dump (whole, and its
    allclusters / allrouters / alllisteners parts) is the loaded config; stats counts a request
    on its cluster; update_loglevel changes the level get_loglevel reports and what the
    library writes to the host's log (bad levels 400);
    version and states answer; other paths 404, wrong methods 405."""
    import json as _json
    port = ctx.ports.get("admin")
    if not port:
        return

    def get(path):
        r = request(port, path)
        return r, (_json.loads(r.text) if r.status == 200 else None)

    r, v = get("/api/v1/config_dump")
    assert r.status == 200 and "servers" in v["mosn_config"], f"[{ctx.host_name}] config_dump: {r.describe()}"
    _, v = get("/api/v1/config_dump?allclusters")
    names = {c["name"] for c in v["clusters"]}
    assert {"s1", "s2", "s3", "all_sites"} <= names, f"[{ctx.host_name}] clusters: {names}"
    _, v = get("/api/v1/config_dump?alllisteners")
    assert "serverListener" in {l["name"] for l in v["listeners"]}, f"[{ctx.host_name}] listeners: {v}"
    _, v = get("/api/v1/config_dump?allrouters")
    assert "unit_router" in {x["router_config_name"] for x in v["routers"]}, f"[{ctx.host_name}] routers: {v}"
    _, before = get("/api/v1/stats")
    ctx.expect_site(ctx.get([("uid", "150")]), "s2", "a request between two stats")
    _, after = get("/api/v1/stats")
    n = lambda s: s["upstream"]["s2"]["request_total"]
    assert n(after) == n(before) + 1, f"[{ctx.host_name}] s2 request_total {n(before)} -> {n(after)}"
    assert all(h["healthy"] for h in after["upstream"]["s2"]["hosts"]), f"[{ctx.host_name}] {after['upstream']['s2']}"
    _, v = get("/api/v1/get_loglevel")
    assert v == {"log_level": "INFO"}, f"[{ctx.host_name}] {v}"
    for level in ("DEBUG", "INFO"):
        r = request(port, "/api/v1/update_loglevel", method="POST", body=_json.dumps({"log_level": level}).encode())
        assert r.status == 200, f"[{ctx.host_name}] update_loglevel {level}: {r.describe()}"
        _, v = get("/api/v1/get_loglevel")
        assert v == {"log_level": level}, f"[{ctx.host_name}] after update to {level}: {v}"
    # What is logged changes: at ERROR the library's own INFO line about the change is not
    # written to the host's log; back at INFO it is.
    line = "log level changed through the admin API"
    for level, logged in (("ERROR", False), ("INFO", True)):
        offsets = ctx.host.log_offsets()
        r = request(port, "/api/v1/update_loglevel", method="POST", body=_json.dumps({"log_level": level}).encode())
        assert r.status == 200, f"[{ctx.host_name}] update_loglevel {level}: {r.describe()}"
        if logged:
            wait_until(f"[{ctx.host_name}] the INFO line at INFO", 3.0, lambda: line in ctx.host.new_log_text(offsets))
        else:
            time.sleep(0.5)
            assert line not in ctx.host.new_log_text(offsets), f"[{ctx.host_name}] an INFO line written at ERROR"
    r = request(port, "/api/v1/update_loglevel", method="POST", body=b'{"log_level": "LOUD"}')
    assert r.status == 400, f"[{ctx.host_name}] bad level: {r.describe()}"
    assert get("/api/v1/version")[0].status == 200 and get("/api/v1/states")[1] == {"state": "Running"}
    assert request(port, "/api/v1/nope").status == 404
    assert request(port, "/api/v1/update_loglevel").status == 405


def case_id(fn) -> str:
    return fn.__name__


@case
def client_abort_while_parked(ctx: CaseContext):
    """A client that goes away while its request is parked (fault delay) frees the request
    without waking a dead stream: no crash, and the host keeps serving."""
    import socket
    for _ in range(3):
        s = socket.create_connection(("127.0.0.1", ctx.port), timeout=5)
        s.sendall(f"GET {ctx.new_path('abort')} HTTP/1.1\r\nHost: x\r\nx-case: delay\r\nuid: 7\r\n\r\n".encode())
        time.sleep(0.1)  # parked now
        s.close()
    time.sleep(0.5)  # past the 400 ms delay: a wrong wake would hit freed state now
    ctx.expect_healthy("request after clients aborted parked requests")


@case
def path_spellings_cannot_dodge_a_route(ctx: CaseContext):
    """A `prefix: /admin` route answering 403 catches every spelling of /admin: dot segments,
    doubled slashes and escapes (an encoded slash too) are decoded and normalized before routes
    match, as MOSN matches the decoded path, so none of them reaches a backend."""
    for path in ["/admin/x", "/x/../admin/x", "//admin/x", "/%61dmin/x", "/./admin", "/%2e/admin/x", "/admin",
                 "/public%2F..%2Fadmin", "/public%2f%2e%2e%2fadmin/x"]:
        try:
            r = send_raw(ctx.port, f"GET {path} HTTP/1.1\r\nHost: x\r\nuid: 150\r\nConnection: close\r\n\r\n".encode(), timeout=5)
        except NoResponse as e:
            raise AssertionError(f"[{ctx.host_name}] {path}: no response ({e})")
        # A host may refuse a path that climbs above the root (400); it must never proxy it.
        assert r.status in (403, 400), f"[{ctx.host_name}] {path} reached a backend: {r.describe()}"
        if r.status == 403:
            assert r.text == "denied", f"[{ctx.host_name}] {path}: {r.describe()}"
    ctx.expect_site(ctx.get([("uid", "150")]), "s2", "normal request after the deny route")


@case
def forwarded_path_is_the_routed_path(ctx: CaseContext):
    """The backend gets the path the router matched (decoded, normalized, written back with
    nginx's URI escaping) and the query unchanged; a path already in that form goes as sent.
    Both hosts forward the same bytes."""
    from harness.backend import sanitize
    table = [
        ("/fwd/a/./b/../c?x=%2F&y", "/fwd/a/c?x=%2F&y"),
        ("/fwd//a%2Fb", "/fwd/a/b"),
        ("/fwd/%7Euser/%61", "/fwd/~user/a"),
        ("/fwd/a%20b%3Fc", "/fwd/a%20b%3Fc"),
        ("/fwd/plain?q=1", "/fwd/plain?q=1"),
    ]
    for sent, want in table:
        r = send_raw(ctx.port, f"GET {sent} HTTP/1.1\r\nHost: x\r\nuid: 150\r\nConnection: close\r\n\r\n".encode(),
                     timeout=5)
        assert r.status == 200, f"[{ctx.host_name}] {sent}: {r.describe()}"
        assert r.header("x-seen-path") == sanitize(want), \
            f"[{ctx.host_name}] {sent}: backend saw {r.header('x-seen-path')!r}, want {sanitize(want)!r}"


@case
def raw_non_ascii_path_is_400(ctx: CaseContext):
    """A raw byte outside visible ASCII in the request target is malformed: 400 on both hosts
    (Envoy's codec, the core on nginx), never routed."""
    for path in [b"/a\x80b", b"/\xff", b"/caf\xc3\xa9"]:
        try:
            r = send_raw(ctx.port, b"GET " + path + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", timeout=5)
        except NoResponse as e:
            raise AssertionError(f"[{ctx.host_name}] {path!r}: no response ({e})")
        assert r.status == 400, f"[{ctx.host_name}] {path!r}: expected 400, got {r.describe()}"
    ctx.expect_healthy("normal request after non-ASCII paths")


@case
def http10_is_served(ctx: CaseContext):
    """HTTP/1.0 with a Host header is served like HTTP/1.1 on both hosts."""
    r = send_raw(ctx.port, f"GET {ctx.new_path('h10')} HTTP/1.0\r\nHost: x\r\nuid: 150\r\n\r\n".encode(), timeout=5)
    ctx.expect_site(r, "s2", "HTTP/1.0 with Host")


@case
def virtual_host_by_host_and_port(ctx: CaseContext):
    """Virtual hosts are chosen by Host with MOSN's port rules (`vhost.test` serves a Host
    without port, `vhost.test:*` any port); other Hosts get the default `*` virtual host.
    Without a Host header (HTTP/1.0) and several virtual hosts there is no virtual host: 404
    (MOSN)."""
    for host in ["vhost.test", "VHOST.test:8080", "vhost.test:1"]:
        r = ctx.get(host=host, path=ctx.new_path().replace("/c/", "/v/", 1))
        assert (r.status, r.text) == (200, "vhost"), f"[{ctx.host_name}] Host {host}: {r.describe()}"
    r = ctx.get([("uid", "150")], host="other.test:8080")
    ctx.expect_site(r, "s2", "Host other.test:8080 -> default virtual host")
    r = send_raw(ctx.port, f"GET {ctx.new_path('nohost')} HTTP/1.0\r\nuid: 150\r\n\r\n".encode(), timeout=5)
    assert r.status == 404, f"[{ctx.host_name}] HTTP/1.0 without Host: expected 404, got {r.describe()}"


@case
def host_header_reaches_the_backend_with_its_port(ctx: CaseContext):
    """The backend gets the client's Host as sent, port included (as MOSN forwards it)."""
    from harness.backend import sanitize
    for host in ["svc.test:8080", "svc.test"]:
        r = ctx.get([("uid", "150")], host=host)
        ctx.expect_site(r, "s2", f"Host {host}")
        assert r.header("x-seen-host") == sanitize(host), f"[{ctx.host_name}] Host {host}: backend saw {r.header('x-seen-host')!r}"


@case
def any_5xx_is_retried_by_the_core(ctx: CaseContext):
    """The core decides every retry, the same on both hosts: with `retry_on` and no
    `status_codes`, any 5xx is retried (a 501 too, which nginx's proxy_next_upstream cannot
    name); with `status_codes: [503]` a 501 reaches the client unchanged."""
    if "fail501" not in ctx.ports:
        return
    attempts = []
    for i in range(4):
        r = ctx.get([("x-case", "retry501")])
        ctx.expect_site(r, "s2", f"retry501 #{i + 1}")
        attempts.append(ctx.log_for(r).get("attempts"))
    assert "2" in attempts, f"[{ctx.host_name}] the 501 host was never tried first: {attempts}"
    seen = set()
    for i in range(4):
        r = ctx.get([("x-case", "retry503only")])
        seen.add(r.status)
        if r.status == 501:
            assert r.text == f"site fail501 from {ctx.ports['fail501']}\n", f"[{ctx.host_name}] {r.describe()}"
            assert ctx.log_for(r).get("attempts") == "1", f"[{ctx.host_name}] retry503only retried a 501"
        else:
            ctx.expect_site(r, "s2", f"retry503only #{i + 1}")
    assert 501 in seen, f"[{ctx.host_name}] retry503only: the 501 never reached the client ({seen})"


@case
def failover_under_load(ctx: CaseContext):
    """A three-host cluster with a retry policy under 16 concurrent connections: one backend
    is killed in the middle and restarted; every request is answered 2xx (the core retries on
    another host, never the dead one twice)."""
    fo = getattr(ctx, "failover", None)
    if not fo:
        return
    stop_at = time.monotonic() + 4.0
    results, errors = [], []
    lock = threading.Lock()

    def worker():
        n = 0
        while time.monotonic() < stop_at and n < 400:
            n += 1
            try:
                r = ctx.get([("x-case", "failover")], path=ctx.new_path("fo"), timeout=10)
                with lock:
                    results.append((r.status, r.site()[0]))
            except BaseException as e:  # reported below
                with lock:
                    errors.append(repr(e))

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(16)]
    for t in threads:
        t.start()
    time.sleep(1.2)
    victim = fo["f2"]
    port = victim.ports["f2"]
    victim.stop()
    time.sleep(1.3)
    victim.start(ports={"f2": port})
    for t in threads:
        t.join(20)
    assert not any(t.is_alive() for t in threads), f"[{ctx.host_name}] load threads did not finish"
    bad = [s for s, _ in results if not 200 <= s < 300]
    assert not errors, f"[{ctx.host_name}] {len(errors)} requests failed: {errors[:3]}"
    assert len(results) >= 100, f"[{ctx.host_name}] only {len(results)} requests in 4 s"
    assert not bad, f"[{ctx.host_name}] {len(bad)} of {len(results)} requests were not 2xx: {sorted(set(bad))}"
    assert all(site == "fo" for _, site in results), f"[{ctx.host_name}] a response did not come from the failover cluster"


# --- the router (MOSN's routers[] actions), the same on both hosts ----------------------------

@case
def route_matchers(ctx: CaseContext):
    """`path` matches case-insensitively (MOSN), `regex` is an unanchored search (here written
    ^...$), a Host whose virtual host has no matching route gets 404."""
    for path, body in [("/exact/Path", "exact"), ("/EXACT/path", "exact"), ("/re42", "regex")]:
        r = ctx.get(path=path)
        assert (r.status, r.text) == (200, body), f"[{ctx.host_name}] {path}: {r.describe()}"
    r = ctx.get([("uid", "150")], path="/re42x")
    ctx.expect_site(r, "s2", "/re42x is not ^/re[0-9]+$")
    r = ctx.get(host="vhost.test", path="/nothing-here")
    assert r.status == 404, f"[{ctx.host_name}] no route in the vhost.test virtual host: {r.describe()}"


@case
def redirect_route(ctx: CaseContext):
    """`redirect` answers with its code and a Location built from the config and the request
    (query kept); the backend never sees it."""
    r = ctx.get(path="/redir/x?a=1")
    assert r.status == 302, f"[{ctx.host_name}] redirect: {r.describe()}"
    assert r.header("location") == "https://elsewhere.test/landing?a=1", f"[{ctx.host_name}] Location: {r.header('location')!r}"


@case
def path_and_host_rewrites(ctx: CaseContext):
    """prefix_rewrite / regex_rewrite / host_rewrite: the backend sees the rewritten path and
    Host; the original path travels in x-mosn-original-path."""
    from harness.backend import sanitize
    r = ctx.get([("x-echo", "x-mosn-original-path")], path="/rw/old/a%20b?q=1")
    ctx.expect_site(r, "s2", "prefix_rewrite")
    assert r.header("x-seen-path") == sanitize("/rw/new/a%20b?q=1"), f"[{ctx.host_name}] {r.describe()}"
    assert r.header("x-seen-host") == "rewritten.test", f"[{ctx.host_name}] host_rewrite: {r.header('x-seen-host')!r}"
    assert r.header("x-echo-x-mosn-original-path") == sanitize("/rw/old/a b"), f"[{ctx.host_name}] {r.describe()}"
    r = ctx.get(path="/rx/one/two/three")
    ctx.expect_site(r, "s2", "regex_rewrite")
    assert r.header("x-seen-path") == "/rx-done/two/one/three", f"[{ctx.host_name}] {r.header('x-seen-path')!r}"


@case
def header_edits(ctx: CaseContext):
    """Route header edits: added (append joins an existing value), %variables%, removed;
    response headers added and removed — seen by the backend and by the client."""
    r = ctx.get([("x-app", "orig"), ("x-drop", "gone"), ("x-echo", "x-added,x-app,x-drop,x-seen-by")],
                path="/hdr/x", host="svc.test:8080")
    ctx.expect_site(r, "s2", "header edits")
    assert r.header("x-echo-x-added") == "route", f"[{ctx.host_name}] {r.describe()}"
    assert r.header("x-echo-x-app") == "orig,more", f"[{ctx.host_name}] append: {r.describe()}"
    assert r.header("x-echo-x-drop") == "-", f"[{ctx.host_name}] removed: {r.describe()}"
    assert r.header("x-echo-x-seen-by") == "svc.test:8080", f"[{ctx.host_name}] %x-mosn-host%: {r.describe()}"
    assert r.header("x-resp") == "r1", f"[{ctx.host_name}] response header added: {r.describe()}"
    assert r.header("x-backend-site") is None, f"[{ctx.host_name}] response header removed: {r.describe()}"


@case
def cluster_from_a_header(ctx: CaseContext):
    """cluster_header: the cluster the request names; a name that is no cluster gets 404."""
    r = ctx.get([("x-case", "byheader"), ("x-cluster", "s3")])
    ctx.expect_site(r, "s3", "cluster_header s3")
    r = ctx.get([("x-case", "byheader"), ("x-cluster", "nope")])
    assert r.status == 404, f"[{ctx.host_name}] unknown cluster: {r.describe()}"


@case
def weighted_split(ctx: CaseContext):
    """weighted_clusters s2:1, s3:3 over 400 requests: s3 gets 75 % ± 10 points (a binomial
    spread is ±2.2 points; the tolerance keeps this from flaking)."""
    counts = {"s2": 0, "s3": 0}
    for _ in range(400):
        site, _ = ctx.get([("x-case", "weighted")]).site()
        counts[site] = counts.get(site, 0) + 1
    share = counts["s3"] / 400
    assert 0.65 <= share <= 0.85, f"[{ctx.host_name}] s3 got {counts['s3']}/400 ({share:.0%}), want 75 % ± 10: {counts}"


@case
def per_try_timeout_then_504(ctx: CaseContext):
    """A slow cluster (both hosts answer after 1 s), retry_timeout 300 ms, 1 retry: two
    attempts time out, the client gets 504 in well under the 1 s a backend would take."""
    if "slow1" not in ctx.ports:
        return
    r = ctx.get([("x-case", "slow")], timeout=10)
    assert r.status == 504, f"[{ctx.host_name}] per-try timeouts: expected 504, got {r.describe()}"
    assert 0.5 <= r.elapsed < 1.0, f"[{ctx.host_name}] took {r.elapsed:.2f}s (2 × 300 ms expected)"
    line = ctx.log_for(r)
    assert line.get("status") == "504" and line.get("attempts") == "2", f"[{ctx.host_name}] {line['_raw']}"


@case
def timeout_headers_override_the_route(ctx: CaseContext):
    """MOSN's request header x-mosn-global-timeout (ms) replaces the route's timeout: on the
    slow route (3 s, per try 300 ms) a 250 ms global timeout answers 504 after one attempt
    (a per-try timeout not below it is ignored; a global timeout is never retried)."""
    if "slow1" not in ctx.ports:
        return
    r = ctx.get([("x-case", "slow"), ("x-mosn-global-timeout", "250")], timeout=10)
    assert r.status == 504, f"[{ctx.host_name}] x-mosn-global-timeout: expected 504, got {r.describe()}"
    assert 0.2 <= r.elapsed < 0.5, f"[{ctx.host_name}] took {r.elapsed:.2f}s (250 ms expected)"
    line = ctx.log_for(r)
    assert line.get("attempts") == "1", f"[{ctx.host_name}] a global timeout is not retried: {line['_raw']}"


@case
def fault_abort_percentage(ctx: CaseContext):
    """A fault abort of 50 % (this route's per_filter_config): of 400 requests 50 % ± 10
    points get the abort status (binomial spread ±2.5 points), the rest reach the backend."""
    counts = {}
    for _ in range(400):
        s = ctx.get(path="/pfc50/x").status
        counts[s] = counts.get(s, 0) + 1
    assert set(counts) <= {200, 503}, f"[{ctx.host_name}] statuses {counts}"
    share = counts.get(503, 0) / 400
    assert 0.40 <= share <= 0.60, f"[{ctx.host_name}] aborted {counts.get(503, 0)}/400 ({share:.0%}), want 50 % ± 10"


@case
def per_route_filter_config_and_variables(ctx: CaseContext):
    """per_filter_config replaces a filter's config for one route (here the fault filter
    aborts with 418 on /pfc only); a `variables` route matches by MOSN variables."""
    r = ctx.get(path="/pfc/x")
    assert r.status == 418, f"[{ctx.host_name}] per_filter_config abort: {r.describe()}"
    ctx.expect_healthy("other routes keep the listener's fault config")
    r = ctx.get([("x-var", "yes")])
    assert (r.status, r.text) == (200, "variables"), f"[{ctx.host_name}] variables (header): {r.describe()}"
    r = ctx.get(method="PUT")
    assert (r.status, r.text) == (200, "variables"), f"[{ctx.host_name}] variables (PUT): {r.describe()}"


# --- the upstream (MOSN's clusters: subsets, balancers, health, breakers), on the second
# listener (tests/harness/config.py: _upstream_listener) --------------------------------------

def up(ctx: CaseContext, case_name: str, headers=(), **kw) -> Response:
    """A request on the upstream listener with ``x-case: <case_name>``."""
    return ctx.get([("x-case", case_name), *headers], port=ctx.port2, **kw)


def wait_until(what: str, limit: float, f) -> float:
    """Polls f() every 50 ms until true; the seconds it took. Fails after ``limit`` seconds."""
    t0 = time.monotonic()
    while not f():
        assert time.monotonic() - t0 < limit, f"{what}: not within {limit} s"
        time.sleep(0.05)
    return time.monotonic() - t0


@case
def subset_routing_by_host_metadata(ctx: CaseContext):
    """Seed 000 / GOHPNF's deployment in one cluster: hosts carry mosn.lb `unit: s1|s2|s3`; the
    UNIT driver's unit becomes the subset criterion (header_to_metadata), so each uid lands
    exactly where the three-cluster demo sends it; no uid: every host."""
    if not getattr(ctx, "port2", None):
        return
    for uid, site in [("2", "s1"), ("100", "s1"), ("150", "s2"), ("201", "s3"), ("-1", "s3")]:
        seen = set()
        for _ in range(4):
            r = up(ctx, "subset", [("uid", uid)])
            seen.add(ctx.expect_site(r, site, f"subset uid {uid}"))
        if site == "s1":
            assert seen == ctx.site_ports("s1"), f"[{ctx.host_name}] both s1 hosts serve the s1 subset: {seen}"
    sites = {up(ctx, "subset").site()[0] for _ in range(12)}
    assert sites == {"s1", "s2", "s3"}, f"[{ctx.host_name}] no uid: every host, got {sites}"


@case
def weighted_split_across_a_multi_host_subset(ctx: CaseContext):
    """weighted_clusters {units with metadata_match unit=s1 (2 hosts): 1, s3: 1}: half the
    requests to s3, the other half spread over both s1 hosts."""
    if not getattr(ctx, "port2", None):
        return
    ports = {}
    for _ in range(200):
        _, port = up(ctx, "subset-weighted").site()
        ports[port] = ports.get(port, 0) + 1
    s1 = sum(n for p, n in ports.items() if ctx.site_of.get(p) == "s1")
    s3 = ports.get(ctx.ports["s3"], 0)
    assert s1 + s3 == 200, f"[{ctx.host_name}] only s1 hosts and s3: {ports}"
    assert 70 <= s3 <= 130, f"[{ctx.host_name}] s3 got {s3}/200, want 100 ± 30: {ports}"
    assert all(ports.get(p, 0) >= 20 for p in ctx.site_ports("s1")), f"[{ctx.host_name}] both s1 hosts: {ports}"


@case
def weighted_round_robin_is_exact(ctx: CaseContext):
    """LB_WEIGHTED_ROUNDROBIN with host weights s2:3, s3:1: every 4 requests, exactly 3 and 1
    (one cursor shared by all workers)."""
    if not getattr(ctx, "port2", None):
        return
    counts = {"s2": 0, "s3": 0}
    for _ in range(40):
        counts[up(ctx, "wrr").site()[0]] += 1
    assert counts == {"s2": 30, "s3": 10}, f"[{ctx.host_name}] 3:1 over 40 requests: {counts}"


@case
def consistent_hash_keeps_a_key_on_one_host(ctx: CaseContext):
    """LB_MAGLEV with hash_policy header x-user: one user, one host, every time; the users
    spread over the hosts. Without hash_policy the client address is the key (MOSN's default):
    every request from this client goes to one host."""
    if not getattr(ctx, "port2", None):
        return
    hosts_used = set()
    for u in range(12):
        ports = {up(ctx, "hash", [("x-user", f"user-{u}")]).site()[1] for _ in range(3)}
        assert len(ports) == 1, f"[{ctx.host_name}] user-{u} went to {ports}"
        hosts_used |= ports
    assert len(hosts_used) >= 3, f"[{ctx.host_name}] 12 users over 4 hosts used only {hosts_used}"
    ports = {up(ctx, "source-ip").site()[1] for _ in range(8)}
    assert len(ports) == 1, f"[{ctx.host_name}] one client address, one host: {ports}"


@case
def retries_never_repeat_a_host(ctx: CaseContext):
    """A cluster [fail503, fail501, s2] with 2 retries: a retry never goes to a host already
    tried, so within 3 attempts every request reaches s2."""
    if not getattr(ctx, "port2", None):
        return
    for i in range(12):
        r = up(ctx, "retry3")
        ctx.expect_site(r, "s2", f"retry3 #{i + 1}")
        attempts = ctx.log_for(r).get("attempts")
        assert attempts in ("1", "2", "3"), f"[{ctx.host_name}] retry3 #{i + 1}: attempts {attempts}"


@case
def max_requests_overflows_with_503(ctx: CaseContext):
    """circuit_breakers max_requests 2 on a cluster whose host answers after 1 s: of 8
    concurrent requests 2 are served, 6 get 503 at once (flag UO in the access log); every
    request is answered."""
    if not getattr(ctx, "port2", None):
        return
    results = []
    lock = threading.Lock()

    def one():
        r = up(ctx, "limited", timeout=10)
        with lock:
            results.append(r)

    threads = [threading.Thread(target=one, daemon=True) for _ in range(8)]
    for t in threads:
        t.start()
        time.sleep(0.02)
    for t in threads:
        t.join(15)
    statuses = sorted(r.status for r in results)
    assert len(results) == 8, f"[{ctx.host_name}] only {len(results)} of 8 answered"
    assert statuses == [200, 200] + [503] * 6, f"[{ctx.host_name}] max_requests 2: {statuses}"
    for r in results:
        if r.status == 503:
            assert r.elapsed < 0.9, f"[{ctx.host_name}] an overflow is answered at once, took {r.elapsed:.2f}s"
            line = ctx.log_for(r)
            flags = line.get("flags") or ""
            # Both hosts log MOSN's flag bits in one notation (UpstreamOverflow = 0x80).
            overflow = flags.startswith("0x") and int(flags, 16) & 0x80
            assert overflow, f"[{ctx.host_name}] overflow not in the access log's flags: {line['_raw']}"
            assert line.get("duration_ms", "").isdigit(), f"[{ctx.host_name}] duration_ms: {line['_raw']}"
    # Slots are freed: the next request is served.
    r = up(ctx, "limited")
    assert r.status == 200, f"[{ctx.host_name}] after the burst: {r.describe()}"


@case
def active_health_check_takes_a_dead_host_out_and_back(ctx: CaseContext):
    """Cluster hc [h1, h2], HTTP checks every 200 ms, unhealthy after 2 failures: h2 is killed,
    and with no request sent to it in between (so passive health plays no part) the checks
    take it out within interval × threshold + timeout (~0.6 s; 2 s allowed for scheduling):
    then every request goes to h1. Restarted, h2 gets traffic again."""
    kill = getattr(ctx, "killable", None)
    if not kill or not getattr(ctx, "port2", None):
        return
    h1, h2 = ctx.killable["h1"].ports["h1"], ctx.killable["h2"].ports["h2"]
    seen = {up(ctx, "hc").site()[1] for _ in range(6)}
    assert seen == {h1, h2}, f"[{ctx.host_name}] both hc hosts serve before the kill: {seen}"
    ctx.killable["h2"].stop()
    time.sleep(2.0)
    ports = [up(ctx, "hc") for _ in range(10)]
    bad = [r.describe() for r in ports if r.status != 200 or r.site()[1] != h1]
    assert not bad, f"[{ctx.host_name}] h2 still gets traffic 2 s after it died: {bad[:3]}"
    ctx.killable["h2"].start(ports={"h2": h2})
    wait_until(f"[{ctx.host_name}] h2 back in rotation", 5.0, lambda: up(ctx, "hc").site()[1] == h2)


@case
def strict_dns_cluster_reaches_the_resolved_address(ctx: CaseContext):
    """Cluster dns of type STRICT_DNS with host localhost:<s2> (V4_ONLY, refreshed every
    second): every request is answered by s2, and the access log names the resolved address
    127.0.0.1:<s2> (never the name), also across refreshes."""
    if not getattr(ctx, "port2", None):
        return
    s2 = ctx.ports["s2"]
    for i in range(6):
        r = up(ctx, "dns")
        assert ctx.expect_site(r, "s2", f"dns #{i + 1}") == s2
        ctx.expect_log(r, status=200, cluster="dns", port=s2)
        if i == 2:
            time.sleep(1.5)  # a refresh in between (same address: nothing changes)


@case
def passive_ejection_bounds_failures_under_load(ctx: CaseContext):
    """The failover-under-load case with passive health on (this listener's fault_tolerance:
    3 exceptions in a row eject a host): p2 is killed under 16 concurrent clients. Failed
    attempts to it (requests with attempts > 1, as p1 and p3 answer) are bounded by
    leastWindowCount (3) + the clients in flight (16): 19, where without ejection a third of
    the traffic would hit it until it returns. Every request is answered 2xx."""
    kill = getattr(ctx, "killable", None)
    if not kill or not getattr(ctx, "port2", None):
        return
    stop_at = time.monotonic() + 3.0
    results, errors = [], []
    lock = threading.Lock()
    killed = threading.Event()

    def worker():
        n = 0
        while time.monotonic() < stop_at and n < 1500:
            n += 1
            try:
                r = up(ctx, "passive", path=ctx.new_path("pv"), timeout=10)
                with lock:
                    results.append((r, killed.is_set()))
            except BaseException as e:  # reported below
                with lock:
                    errors.append(repr(e))

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(16)]
    for t in threads:
        t.start()
    time.sleep(0.8)
    p2 = ctx.killable["p2"]
    port = p2.ports["p2"]
    killed.set()
    t_kill = time.monotonic()
    p2.stop()
    assert time.monotonic() - t_kill < 1.5, f"[{ctx.host_name}] stopping p2 took {time.monotonic() - t_kill:.1f}s"
    for t in threads:
        t.join(20)
    p2.start(ports={"p2": port})
    assert not errors, f"[{ctx.host_name}] {len(errors)} requests failed: {errors[:3]}"
    bad = [r.describe() for r, _ in results if not 200 <= r.status < 300]
    assert not bad, f"[{ctx.host_name}] {len(bad)} of {len(results)} not 2xx: {bad[:3]}"
    after = [r for r, k in results if k]
    assert len(after) >= 50, f"[{ctx.host_name}] only {len(after)} requests after the kill"
    # One read of the access log (not one per request: thousands of lines).
    want = {r.path for r in after}
    deadline = time.monotonic() + 5
    while True:
        by_path = {d.get("path"): d for d in ctx.host.access.lines() if d.get("path") in want}
        if len(by_path) == len(want) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert len(by_path) == len(want), f"[{ctx.host_name}] {len(want) - len(by_path)} requests have no access-log line"
    retried = sum(int(d.get("attempts")) - 1 for d in by_path.values() if (d.get("attempts") or "").isdigit())
    print(f"[{ctx.host_name}] passive ejection: {retried} failed attempts to the dead host, {len(after)} requests after the kill")
    assert retried <= 19, (f"[{ctx.host_name}] {retried} failed attempts reached the dead host after the kill "
                           f"({len(after)} requests); bound 19")


@case
def idle_timeout_closes_idle_upstream_connections(ctx: CaseContext):
    """Cluster idle has idle_timeout 1s: the kept-alive connection a request leaves open to
    the backend is closed by the proxy within ~1 s of idleness (the backend counts its open
    connections; asked directly)."""
    kill = getattr(ctx, "killable", None)
    if not kill or not getattr(ctx, "port2", None):
        return
    port = ctx.killable["i1"].ports["i1"]

    def open_conns() -> int:
        return int(request(port, "/_open_connections").text.strip())

    for _ in range(3):
        r = up(ctx, "idle")
        assert r.status == 200, f"[{ctx.host_name}] idle: {r.describe()}"
    assert open_conns() >= 1, f"[{ctx.host_name}] the proxy keeps no upstream connection alive to begin with"
    took = wait_until(f"[{ctx.host_name}] idle upstream connections closed", 4.0, lambda: open_conns() == 0)
    assert took <= 2.5, f"[{ctx.host_name}] idle connections closed after {took:.1f}s, idle_timeout is 1s"


# --- MOSN's common stream filters (the upstream listener's chain) -----------------------------

@case
def ip_access_by_address_and_by_header(ctx: CaseContext):
    """ip_access: a client connecting from 127.0.0.66 is denied (403) by the connection's
    address; with the trusted header x-client-ip, 10.66.0.0/16 and 2001:db8::/32 are denied
    except the allowed 10.66.6.6 (the first matching rule decides), the first item of a list
    counts, and a request without the header gets the default (allow)."""
    if not getattr(ctx, "port2", None):
        return
    r = up(ctx, "wrr", source="127.0.0.66")
    assert r.status == 403, f"[{ctx.host_name}] from 127.0.0.66: {r.describe()}"
    r = up(ctx, "wrr", source="127.0.0.67")
    assert r.status == 200, f"[{ctx.host_name}] from 127.0.0.67: {r.describe()}"
    for ip, want in [("10.66.1.2", 403), ("10.66.6.6", 200), ("2001:db8::5", 403), ("10.67.0.1", 200),
                     ("10.66.1.2, 10.1.1.1", 403), ("garbage", 200)]:
        r = up(ctx, "wrr", [("x-client-ip", ip)])
        assert r.status == want, f"[{ctx.host_name}] x-client-ip {ip!r}: want {want}, got {r.describe()}"


@case
def payload_limit_answers_413_and_the_backend_sees_nothing(ctx: CaseContext):
    """payload_limit (MOSN's "max_entity_size " key) 1024: a 1025-byte body, with a
    Content-Length or chunked, is answered 413 and never reaches the backend; 1024 bytes pass."""
    kill = getattr(ctx, "killable", None)
    if not kill or not getattr(ctx, "port2", None):
        return
    port = ctx.killable["u1"].ports["u1"]

    def seen() -> int:
        return int(request(port, "/_requests").text.strip())

    before = seen()
    r = up(ctx, "upload", method="POST", body=b"x" * 1025)
    assert r.status == 413, f"[{ctx.host_name}] 1025 bytes: {r.describe()}"
    chunked = (f"POST {ctx.new_path('chunked')} HTTP/1.1\r\nHost: 127.0.0.1\r\nx-case: upload\r\n"
               f"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n").encode()
    chunked += b"400\r\n" + b"y" * 1024 + b"\r\n1\r\nz\r\n0\r\n\r\n"
    r = send_raw(ctx.port2, chunked)
    assert r.status == 413, f"[{ctx.host_name}] 1025 bytes chunked: {r.describe()}"
    assert seen() == before, f"[{ctx.host_name}] the backend saw an over-limit body"
    r = up(ctx, "upload", method="POST", body=b"x" * 1024)
    assert r.status == 200, f"[{ctx.host_name}] 1024 bytes: {r.describe()}"
    assert seen() == before + 1, f"[{ctx.host_name}] the 1024-byte body did not reach the backend"


@case
def a_body_reading_driver_routes_by_the_uid_in_the_body(ctx: CaseContext):
    """The UNIT driver's body_key: without a uid header the uid comes from the JSON (or form)
    body, here at the end of a 1 MiB JSON body, and picks the subset; the whole body reaches
    the backend. The header wins over the body. payload_limit (1024 on this listener) is
    turned off for this route only (per_filter_config {"disable": true}): elsewhere the same
    body is a 413."""
    if not getattr(ctx, "port2", None):
        return
    tail = b'", "uid": 150}'
    big = b'{"pad": "' + b"x" * ((1 << 20) - len(b'{"pad": "') - len(tail)) + tail
    assert len(big) == 1 << 20
    r = up(ctx, "bodyuid", [("content-type", "application/json")], method="POST", body=big)
    assert r.status == 200 and r.header("x-backend-site") == "s2", f"[{ctx.host_name}] 1 MiB JSON, uid 150: {r.describe()}"
    assert r.header("x-seen-body-len") == str(1 << 20), f"[{ctx.host_name}] body the backend saw: {r.describe()}"
    r = up(ctx, "upload", method="POST", body=big)
    assert r.status == 413, f"[{ctx.host_name}] payload_limit applies off that route: {r.describe()}"
    r = up(ctx, "bodyuid", [("content-type", "application/x-www-form-urlencoded")], method="POST", body=b"a=1&uid=2")
    assert r.header("x-backend-site") == "s1" and r.header("x-seen-unit") == "s1", f"[{ctx.host_name}] form uid=2: {r.describe()}"
    r = up(ctx, "bodyuid", [("uid", "201")], method="POST", body=b'{"uid": 2}')
    assert r.header("x-backend-site") == "s3", f"[{ctx.host_name}] the header wins: {r.describe()}"
    chunked = (f"POST {ctx.new_path('chunked')} HTTP/1.1\r\nHost: 127.0.0.1\r\nx-case: bodyuid\r\n"
               f"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n").encode()
    chunked += b"6\r\n{\"uid\"\r\n6\r\n: 150}\r\n0\r\n\r\n"
    r = send_raw(ctx.port2, chunked)
    assert r.status == 200 and r.header("x-backend-site") == "s2", f"[{ctx.host_name}] chunked JSON: {r.describe()}"
    r = up(ctx, "bodyuid", method="POST", body=b'{"user": 7}')
    assert r.status == 200 and r.header("x-seen-unit") == "-", f"[{ctx.host_name}] no uid: no unit: {r.describe()}"


@case
def a_filter_reads_the_request_trailers(ctx: CaseContext):
    """The UNIT driver's `trailers`: a chunked request's trailer uid picks the subset when the
    header is absent, and the trailers reach the backend (Envoy, which the generated config
    tells to read and forward HTTP/1 trailers). nginx 1.22 drops request trailers while it
    reads the body: there no filter can see them and the backend gets none (nginx's parser,
    not the module), and a config asking for them is refused (test_nginx_only)."""
    if not getattr(ctx, "port2", None):
        return
    chunked = (f"POST {ctx.new_path('trailers')} HTTP/1.1\r\nHost: 127.0.0.1\r\nx-case: bodyuid\r\n"
               f"Transfer-Encoding: chunked\r\nTrailer: uid\r\nConnection: close\r\n\r\n").encode()
    chunked += b"b\r\n{\"user\": 1}\r\n0\r\nuid: 150\r\nx-other: o\r\n\r\n"
    r = send_raw(ctx.port2, chunked)
    assert r.status == 200 and r.header("x-seen-body") == '{"user": 1}', f"[{ctx.host_name}] {r.describe()}"
    if ctx.host_name == "nginx":
        assert r.header("x-seen-unit") == "-" and r.header("x-seen-trailers") == "-", f"[nginx] {r.describe()}"
        return
    assert r.header("x-backend-site") == "s2" and r.header("x-seen-unit") == "s2", f"[{ctx.host_name}] trailer uid 150: {r.describe()}"
    assert r.header("x-seen-trailers") == "uid=150;x-other=o", f"[{ctx.host_name}] trailers upstream: {r.describe()}"


@case
def a_filter_replaces_the_request_body(ctx: CaseContext):
    """body_rewrite (this route's per_filter_config; the listener's has no rules): the backend
    gets the new body with a Content-Length that fits it, from a Content-Length or a chunked
    request; another route's body is untouched."""
    if not getattr(ctx, "port2", None):
        return
    body = b"a secret, another secret"
    want = "a [redacted], another [redacted]"
    r = up(ctx, "rewrite", method="POST", body=body)
    assert r.status == 200 and r.header("x-seen-body") == want, f"[{ctx.host_name}] rewritten: {r.describe()}"
    assert r.header("x-seen-content-length") == str(len(want)), f"[{ctx.host_name}] Content-Length: {r.describe()}"
    chunked = (f"POST {ctx.new_path('chunked')} HTTP/1.1\r\nHost: 127.0.0.1\r\nx-case: rewrite\r\n"
               f"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n").encode()
    chunked += b"6\r\na secr\r\n12\r\net, another secret\r\n0\r\n\r\n"
    r = send_raw(ctx.port2, chunked)
    assert r.status == 200 and r.header("x-seen-body") == want, f"[{ctx.host_name}] chunked: {r.describe()}"
    assert r.header("x-seen-body-len") == str(len(want)), f"[{ctx.host_name}] chunked length: {r.describe()}"
    r = up(ctx, "wrr", method="POST", body=body)
    assert r.status == 200 and r.header("x-seen-body") == body.decode(), f"[{ctx.host_name}] other route: {r.describe()}"


@case
def a_send_filter_rewrites_the_response_body(ctx: CaseContext):
    """body_rewrite's response_rules (this route only): the response headers wait for the
    whole body, which goes out rewritten with a Content-Length that fits it; other routes'
    responses stream through untouched."""
    if not getattr(ctx, "port2", None):
        return
    r = up(ctx, "rewrite")
    assert r.status == 200 and r.text.startswith("SITE: s2 from "), f"[{ctx.host_name}] rewritten response: {r.describe()}"
    assert r.header("content-length") == str(len(r.body)), f"[{ctx.host_name}] Content-Length: {r.describe()}"
    assert r.header("x-backend-site") == "s2", f"[{ctx.host_name}] the upstream's headers stay: {r.describe()}"
    r = up(ctx, "wrr")
    assert r.status == 200 and r.text.startswith("site s"), f"[{ctx.host_name}] other route: {r.describe()}"


@case
def clients_that_leave_free_their_streams(ctx: CaseContext):
    """A client that goes away while its request waits in a fault delay, and one that goes
    away while its body is being buffered: the library's streams are freed (the access log's
    live_streams, the ABI's mosn_ext_live_streams, reads 0 for the next request), the late
    wake-up does nothing, and the host goes on serving."""
    import socket

    def leave(port: int, raw: bytes) -> None:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            s.sendall(raw)
            time.sleep(0.1)

    leave(ctx.port, f"GET {ctx.new_path('delay')} HTTP/1.1\r\nHost: a\r\nx-case: delay\r\n\r\n".encode())
    if getattr(ctx, "port2", None):
        leave(ctx.port2, (f"POST {ctx.new_path('body')} HTTP/1.1\r\nHost: a\r\nx-case: bodyuid\r\n"
                          f"Content-Length: 1000\r\n\r\n{{\"uid\": ").encode())
    seen = []

    def freed() -> bool:
        r = ctx.get([("uid", "150")])
        line = ctx.log_for(r)
        seen.append(line.get("live_streams"))
        return r.status == 200 and line.get("live_streams") == "0"

    wait_until(f"[{ctx.host_name}] live streams back to 0 (seen {seen})", 5, freed)
    time.sleep(0.5)  # past the 400 ms delay: its wake-up finds no stream
    ctx.expect_healthy("after the clients left")


@case
def flow_control_limits_a_path(ctx: CaseContext):
    """flowControlFilter, rule /limited: 3 per minute: 3 requests pass, then MOSN's 509
    "current request is limited"; other paths are not limited."""
    if not getattr(ctx, "port2", None):
        return
    got = [ctx.get(path="/limited", port=ctx.port2) for _ in range(5)]
    statuses = [r.status for r in got]
    assert statuses == [200, 200, 200, 509, 509], f"[{ctx.host_name}] /limited: {statuses}"
    assert got[-1].text == "current request is limited", f"[{ctx.host_name}] body: {got[-1].text!r}"
    r = up(ctx, "wrr")
    assert r.status == 200, f"[{ctx.host_name}] another path: {r.describe()}"


@case
def mirror_copies_reach_every_mirror_host(ctx: CaseContext):
    """request_mirror_policies (100 %) with the mirror filter broadcasting: each request is
    answered by s2, and a copy with the same method, path and body reaches both hosts of the
    mirror cluster (counted by the backends; copies are sent without waiting, so polled)."""
    kill = getattr(ctx, "killable", None)
    if not kill or not getattr(ctx, "port2", None):
        return
    mports = [ctx.killable[k].ports[k] for k in ("mr1", "mr2")]

    def backend(port, what):
        return request(port, what).text.strip()

    before = [int(backend(p, "/_requests")) for p in mports]
    sent = set()
    for i in range(3):
        path = ctx.new_path("mirror")
        r = up(ctx, "mirror", path=path, method="POST", body=b"m" * (100 + i))
        ctx.expect_site(r, "s2", f"mirrored request #{i + 1}")
        sent.add(f"POST {path} {100 + i}")
    wait_until(f"[{ctx.host_name}] 3 copies on each mirror host", 5.0,
               lambda: [int(backend(p, "/_requests")) for p in mports] == [b + 3 for b in before])
    # Copies go out concurrently (Envoy's callouts, nginx's subrequests), so the last to
    # arrive is any of the three; its path and body must be one request's.
    for p in mports:
        assert backend(p, "/_last") in sent, f"[{ctx.host_name}] the copy on {p}: {backend(p, '/_last')!r}, sent {sent}"


@case
def gzip_compresses_when_the_client_accepts_it(ctx: CaseContext):
    """MOSN's gzip filter (text/plain, from 1 byte), done by the host: with
    Accept-Encoding: gzip the answer is gzip-encoded (and decodes to the backend's body), with
    Vary: Accept-Encoding; without it, the body is sent as is."""
    import gzip as gz
    if not getattr(ctx, "port2", None):
        return
    r = up(ctx, "wrr", [("accept-encoding", "gzip")])
    assert r.status == 200 and r.header("content-encoding") == "gzip", f"[{ctx.host_name}] {r.describe()}"
    text = gz.decompress(r.body).decode()
    assert text.startswith("site s") and text.endswith("\n"), f"[{ctx.host_name}] decoded body {text!r}"
    assert "accept-encoding" in (r.header("vary") or "").lower(), f"[{ctx.host_name}] Vary: {r.header('vary')!r}"
    r = up(ctx, "wrr")
    assert r.header("content-encoding") is None and r.text.startswith("site s"), f"[{ctx.host_name}] {r.describe()}"
