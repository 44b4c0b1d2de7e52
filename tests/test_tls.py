"""TLS and HTTP/2 from MOSN's fields, done by each host (certificates generated at test time).

Per host (Envoy, nginx), one mosn.json with:
  tlsListener   tls_context on (cert_chain as PEM text, private_key as a file path),
                downstream_protocol Auto: HTTPS, and HTTP/2 by ALPN;
  mtlsListener  tls_context with verify_client and ca_cert: a client without a certificate
                is refused, one with a certificate the CA signed is served;
  cluster tlsback: tls_context with server_name and ca_cert: the host speaks TLS to an HTTPS
                backend, sends that SNI and verifies the backend's certificate (cluster
                tlswrong: the same backend under another name: refused, a 5xx).
The routing answers (a uid to its unit, x-case: tls to the HTTPS backend) are the same over
HTTP/1.1 and HTTP/2, and the same on both hosts. Clients: curl (HTTP/2 via nghttp2).
"""
from __future__ import annotations

import http.server
import ssl
import subprocess
import threading

import pytest

from harness import hosts

CURL_TIMEOUT = 10


def _openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _certs(d):
    """A CA; a server certificate for 127.0.0.1/localhost; one for backend.test; a client's."""
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
             "-subj", "/CN=mosn-test-ca", cwd=d)
    for name, san in [("server", "IP:127.0.0.1,DNS:localhost"), ("backend", "DNS:backend.test"), ("client", "DNS:client.test")]:
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
                 "-subj", f"/CN={name}", cwd=d)
        (d / f"{name}.ext").write_text(f"subjectAltName={san}\n")
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                 "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext", cwd=d)
    return d


class _TlsBackend:
    """An HTTPS backend answering ``site tls from <port>``, recording the SNI it was sent."""

    def __init__(self, certs):
        self.sni: list[str | None] = []
        backend = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):  # noqa: N802 (http.server's name)
                body = f"site tls from {self.server.server_address[1]}\n".encode()
                self.send_response(200)
                self.send_header("content-length", str(len(body)))
                self.send_header("x-seen-sni", str(backend.sni[-1] if backend.sni else "-"))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(certs / "backend.pem", certs / "backend.key")
        ctx.sni_callback = lambda sock, name, c: self.sni.append(name)
        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.srv.socket = ctx.wrap_socket(self.srv.socket, server_side=True)
        self.port = self.srv.server_address[1]
        threading.Thread(target=self.srv.serve_forever, args=(0.1,), daemon=True).start()

    def stop(self):
        self.srv.shutdown()
        self.srv.server_close()


def _config(ports, certs, backends, tls_port, wrong_port):
    def listener(name, port, tls):
        return {"name": name, "address": f"127.0.0.1:{port}", "bind_port": True,
                "filter_chains": [{"tls_context": tls, "filters": [{"type": "proxy", "config": {
                    "downstream_protocol": "Auto", "router_config_name": "r"}}]}],
                "stream_filters": [{"type": "metadata", "config": {
                    "metadataers": [{"meta_data_key": "UNIT", "config": {"unit_key": "uid"}}]}}]}

    route = lambda unit: {"match": {"prefix": "/", "headers": [{"name": "x-mosn-on-envoy-unit", "value": unit}]},  # noqa: E731
                          "route": {"cluster_name": unit}}
    server_tls = {"status": True, "cert_chain": (certs / "server.pem").read_text(),
                  "private_key": str(certs / "server.key")}
    mtls = dict(server_tls, ca_cert=str(certs / "ca.pem"), verify_client=True)
    cluster = lambda name, port: {"name": name, "type": "SIMPLE", "lb_type": "LB_ROUNDROBIN",  # noqa: E731
                                  "hosts": [{"address": f"127.0.0.1:{port}"}]}
    tls_cluster = dict(cluster("tlsback", tls_port), tls_context={
        "status": True, "server_name": "backend.test", "ca_cert": str(certs / "ca.pem")})
    # A backend (its own, so no pooled connection is shared) under a name its certificate
    # does not carry: verification fails.
    wrong_name = dict(cluster("tlswrong", wrong_port), tls_context=dict(tls_cluster["tls_context"], server_name="other.test"))
    return {
        "servers": [{"routers": [{"router_config_name": "r", "virtual_hosts": [{"name": "v", "domains": ["*"], "routers": [
            {"match": {"prefix": "/", "headers": [{"name": "x-case", "value": "tls"}]}, "route": {"cluster_name": "tlsback"}},
            {"match": {"prefix": "/", "headers": [{"name": "x-case", "value": "tlswrong"}]}, "route": {"cluster_name": "tlswrong"}},
            route("s1"), route("s2"),
            {"match": {"prefix": "/"}, "route": {"cluster_name": "s3"}}]}]}],
            "listeners": [listener("tlsListener", ports[0], server_tls), listener("mtlsListener", ports[1], mtls)]}],
        "cluster_manager": {"clusters": [cluster("s1", backends.ports["s1a"]), cluster("s2", backends.ports["s2"]),
                                         cluster("s3", backends.ports["s3"]), tls_cluster, wrong_name]},
    }


def _curl(url, certs, *extra, headers=()):
    """(status or None when the request failed, http version, body, stderr)."""
    cmd = ["curl", "-sS", "--max-time", str(CURL_TIMEOUT), "--cacert", str(certs / "ca.pem"),
           "-o", "-", "-w", "\n%{http_code} %{http_version}", *extra, url]
    for h in headers:
        cmd += ["-H", h]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=CURL_TIMEOUT + 5)
    body, _, tail = r.stdout.rpartition("\n")
    code, _, version = tail.partition(" ")
    status = int(code) if r.returncode == 0 and code.isdigit() and code != "000" else None
    return status, version, body, r.stderr


@pytest.mark.needs_binary
@pytest.mark.parametrize("name", ["envoy", "nginx"])
def test_tls_and_http2_from_mosn_fields(name, mosn_ext, backends, run_dir):
    (run_dir / "certs").mkdir()
    certs = _certs(run_dir / "certs")
    tls_backend, other_backend = _TlsBackend(certs), _TlsBackend(certs)
    ports = hosts.free_ports(2)
    cfg = _config(ports, certs, backends, tls_backend.port, other_backend.port)
    h = hosts.Host(name, cfg, run_dir / name, concurrency=2)
    h.http_ready_probe = False  # the first listener speaks TLS
    try:
        h.start()
        base = f"https://127.0.0.1:{ports[0]}"

        # HTTPS, then HTTP/2 over TLS (ALPN): the same routing answers.
        for version_flag, want_version in (("--http1.1", "1.1"), ("--http2", "2")):
            for uid, site in (("2", "s1"), ("150", "s2"), (None, "s3")):
                status, version, body, err = _curl(base + f"/t/{uid}", certs, version_flag,
                                                   headers=[f"uid: {uid}"] if uid else [])
                assert (status, version) == (200, want_version), f"[{name}] {version_flag} uid {uid}: {status} {version} {err}\n{h.logs_tail()}"
                assert body.startswith(f"site {site} from "), f"[{name}] {version_flag} uid {uid}: {body!r}"
            # TLS to the HTTPS backend, with its SNI and its certificate verified.
            status, _, body, err = _curl(base + "/tls", certs, version_flag, "-D", "/dev/stderr", headers=["x-case: tls"])
            assert status == 200 and body.strip() == f"site tls from {tls_backend.port}", f"[{name}] to the TLS backend: {status} {body!r} {err}\n{h.logs_tail()}"
            assert "x-seen-sni: backend.test" in err.lower(), f"[{name}] SNI: {err}"

        # A backend whose certificate does not carry the cluster's server_name: no answer from it.
        status, _, body, err = _curl(base + "/wrong", certs, headers=["x-case: tlswrong"])
        assert status is not None and status >= 500 and "site tls" not in body, f"[{name}] unverified backend: {status} {body!r}"

        # mTLS: no client certificate, refused (a failed handshake, or nginx's 400); with one, served.
        mbase = f"https://127.0.0.1:{ports[1]}"
        status, _, body, err = _curl(mbase + "/m", certs)
        assert status in (None, 400), f"[{name}] a client without a certificate got {status} {body!r}"
        status, _, body, err = _curl(mbase + "/m", certs, "--cert", str(certs / "client.pem"), "--key", str(certs / "client.key"))
        assert status == 200 and body.startswith("site s3 from "), f"[{name}] a client with a certificate: {status} {body!r} {err}"
        assert h.alive()
    finally:
        h.stop()
        tls_backend.stop()
        other_backend.stop()
