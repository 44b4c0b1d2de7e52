#!/usr/bin/env python3
"""The MOSN JSON config the host tests run with (field names are MOSN's).

    build_mosn_config(listen_port, ports)  -> dict
    ports = {"s1a": P, "s1b": P, "s2": P, "s3": P, "dead1": P, "dead2": P}

CLI (used by scripts/bench-hosts.sh):
    python3 config.py --listen 8080 --s1a 1 --s1b 2 --s2 3 --s3 4 [--dead1 5 --dead2 6] [--minimal]
prints the JSON. --minimal drops the fault filter and the retry/dead routes and clusters (only the
metadata/UNIT filter and unit routing remain), for benchmarks.
"""
from __future__ import annotations

import argparse
import copy
import json
import sys

UNIT_HEADER = "x-mosn-on-envoy-unit"
BACKEND_KEYS = ("s1a", "s1b", "s2", "s3")
PORT_KEYS = BACKEND_KEYS + ("dead1", "dead2")


def _addr(port: int) -> dict:
    return {"address": f"127.0.0.1:{int(port)}"}


def _cluster(name: str, ports) -> dict:
    return {"name": name, "type": "SIMPLE", "lb_type": "LB_ROUNDROBIN", "hosts": [_addr(p) for p in ports]}


def _hdr_route(header: str, value: str, route: dict) -> dict:
    return {"match": {"prefix": "/", "headers": [{"name": header, "value": value}]}, "route": route}


def build_mosn_config(listen_port: int, ports: dict, *, minimal: bool = False,
                      catch_all_cluster: str = "all_sites", listen_host: str = "127.0.0.1",
                      for_host: str = "envoy") -> dict:
    """The test config (see the module doc). ``catch_all_cluster`` replaces the cluster of the
    last (no-uid) route — the nginx reload test switches it to "s3". ``for_host`` "nginx" leaves
    out what nginx refuses (the UNIT driver's request-trailer source)."""
    missing = [k for k in (BACKEND_KEYS if minimal else PORT_KEYS) if k not in ports]
    if missing:
        raise ValueError(f"build_mosn_config: missing ports {missing}")
    routers = []
    if not minimal:
        routers += [
            _hdr_route("x-case", "retry", {"cluster_name": "pair",
                                           "retry_policy": {"retry_on": True, "num_retries": 2}}),
            _hdr_route("x-case", "dead", {"cluster_name": "dead"}),
            _hdr_route("x-case", "blackhole", {"cluster_name": "blackhole"}),
            _hdr_route("x-case", "retry5xx", {"cluster_name": "flaky",
                                              "retry_policy": {"retry_on": True, "num_retries": 1}}),
            # No retry policy at all: the upstream's status is all the core sees of it.
            _hdr_route("x-case", "plain5xx", {"cluster_name": "flaky"}),
            _hdr_route("x-case", "noretry5xx", {"cluster_name": "flaky",
                                                "retry_policy": {"retry_on": False, "num_retries": 1}}),
            # Any 5xx is retried when status_codes is empty (MOSN), 501 included, which
            # nginx's proxy_next_upstream cannot name; with status_codes [503] a 501 is not.
            _hdr_route("x-case", "retry501", {"cluster_name": "flaky501",
                                              "retry_policy": {"retry_on": True, "num_retries": 1}}),
            _hdr_route("x-case", "retry503only", {"cluster_name": "flaky501",
                                                  "retry_policy": {"retry_on": True, "num_retries": 1,
                                                                   "status_codes": [503]}}),
            # Three hosts, one of which a test kills and restarts under load.
            _hdr_route("x-case", "failover", {"cluster_name": "failover",
                                              "retry_policy": {"retry_on": True, "num_retries": 2}}),
            # A deny route: no spelling of /admin may get past it (path normalization).
            {"match": {"prefix": "/admin"}, "direct_response": {"status": 403, "body": "denied"}},
            # Router actions (tests/cases.py: the router cases).
            {"match": {"path": "/exact/Path"}, "direct_response": {"status": 200, "body": "exact"}},
            {"match": {"regex": "^/re[0-9]+$"}, "direct_response": {"status": 200, "body": "regex"}},
            {"match": {"prefix": "/redir"}, "redirect": {"response_code": 302, "scheme_redirect": "https",
                                                         "host_redirect": "elsewhere.test", "path_redirect": "/landing"}},
            {"match": {"prefix": "/rw/old/"}, "route": {"cluster_name": "s2", "prefix_rewrite": "/rw/new/",
                                                        "host_rewrite": "rewritten.test"}},
            {"match": {"prefix": "/rx/"}, "route": {"cluster_name": "s2", "regex_rewrite": {
                "pattern": {"regex": "^/rx/(\\w+)/(\\w+)"}, "substitution": "/rx-done/$2/$1"}}},
            {"match": {"prefix": "/hdr/"}, "route": {
                "cluster_name": "s2",
                "request_headers_to_add": [{"header": {"key": "x-added", "value": "route"}},
                                           {"header": {"key": "x-app", "value": "more"}},
                                           {"header": {"key": "x-seen-by", "value": "%x-mosn-host%"}}],
                "request_headers_to_remove": ["x-drop"],
                "response_headers_to_add": [{"header": {"key": "x-resp", "value": "r1"}, "append": False}],
                "response_headers_to_remove": ["x-backend-site"]}},
            _hdr_route("x-case", "byheader", {"cluster_header": "x-cluster"}),
            # per_filter_config: this route's fault filter aborts with 418 (the listener's only delays).
            {"match": {"prefix": "/pfc50"}, "route": {"cluster_name": "s2"},
             "per_filter_config": {"fault": {"abort": {"status": 503, "percentage": 50}}}},
            {"match": {"prefix": "/pfc"}, "route": {"cluster_name": "s2"},
             "per_filter_config": {"fault": {"abort": {"status": 418, "percentage": 100}}}},
            # MOSN variables: PUT, or the header x-var: yes.
            {"match": {"variables": [{"name": "x-mosn-method", "value": "PUT", "model": "or"},
                                     {"name": "Http1_request_header_x-var", "value": "yes"}]},
             "direct_response": {"status": 200, "body": "variables"}},
            _hdr_route("x-case", "weighted", {"weighted_clusters": [{"cluster": {"name": "s2", "weight": 1}},
                                                                    {"cluster": {"name": "s3", "weight": 3}}]}),
            _hdr_route("x-case", "slow", {"cluster_name": "slow", "timeout": "3s",
                                          "retry_policy": {"retry_on": True, "num_retries": 1,
                                                           "retry_timeout": "300ms"}}),
        ]
    routers += [_hdr_route(UNIT_HEADER, s, {"cluster_name": s}) for s in ("s1", "s2", "s3")]
    routers.append({"match": {"prefix": "/"}, "route": {"cluster_name": catch_all_cluster}})

    virtual_hosts = [{"name": "sites", "domains": ["*"], "routers": routers}]
    if not minimal:
        # A second virtual host (MOSN: a request without Host then finds none: 404).
        virtual_hosts.append({"name": "vhost", "domains": ["vhost.test", "vhost.test:*"], "routers": [
            {"match": {"prefix": "/v"}, "direct_response": {"status": 200, "body": "vhost"}}]})

    stream_filters = []
    if not minimal:
        stream_filters.append({"type": "fault", "config": {
            "delay": {"fixed_delay": "400ms", "percentage": 100},
            "headers": [{"name": "x-case", "value": "delay"}]}})
    stream_filters.append({"type": "metadata", "config": {
        "metadataers": [{"meta_data_key": "UNIT", "config": {"unit_key": "uid"}}]}})

    clusters = [
        _cluster("s1", [ports["s1a"], ports["s1b"]]),
        _cluster("s2", [ports["s2"]]),
        _cluster("s3", [ports["s3"]]),
        _cluster("all_sites", [ports["s1a"], ports["s1b"], ports["s2"], ports["s3"]]),
    ]
    if not minimal:
        clusters += [
            _cluster("pair", [ports["dead1"], ports["s2"]]),
            _cluster("dead", [ports["dead2"]]),
        ]
        # [503-answering host, s2] (without a fail503 backend: s2 alone).
        clusters.append(_cluster("flaky", ([ports["fail503"]] if "fail503" in ports else []) + [ports["s2"]]))
        clusters.append(_cluster("flaky501", ([ports["fail501"]] if "fail501" in ports else []) + [ports["s2"]]))
        clusters.append(_cluster("slow", [ports[k] for k in ("slow1", "slow2") if k in ports] or [ports["s2"]]))
        clusters.append(_cluster("failover", [ports[k] for k in ("f1", "f2", "f3") if k in ports] or [ports["s2"]]))
        if "blackhole" in ports:  # a listener that never accepts: connects time out
            clusters.append(dict(_cluster("blackhole", [ports["blackhole"]]), connect_timeout="300ms"))
        else:
            clusters.append(_cluster("blackhole", [ports["dead2"]]))

    routers_cfg = [{"router_config_name": "unit_router", "virtual_hosts": virtual_hosts}]
    listeners = [_listener("serverListener", listen_host, listen_port, "unit_router", stream_filters)]
    if not minimal and "listen2" in ports:
        r, l, c = _upstream_listener(ports, listen_host, trailers=for_host != "nginx")
        routers_cfg.append(r)
        listeners.append(l)
        clusters += c
    cfg = {
        "servers": [{"default_log_path": "stdout", "routers": routers_cfg, "listeners": listeners}],
        "cluster_manager": {"clusters": clusters},
    }
    if "admin" in ports:
        cfg["admin"] = {"address": {"socket_address": {"address": "127.0.0.1", "port_value": int(ports["admin"])}}}
    if "metrics" in ports:
        # MOSN's prometheus sink, served by the host on the loopback.
        cfg["metrics"] = {"sinks": [{"type": "prometheus", "config": {"port": int(ports["metrics"])}}],
                          "stats_matcher": {"exclusion_keys": ["host_health_changes"]}}
    return cfg


def _listener(name: str, host: str, port: int, router: str, stream_filters: list) -> dict:
    return {
        "name": name,
        "address": f"{host}:{int(port)}",
        "bind_port": True,
        "filter_chains": [{"filters": [{"type": "proxy", "config": {
            "downstream_protocol": "Http1", "upstream_protocol": "Http1", "router_config_name": router}}]}],
        "stream_filters": stream_filters,
    }




def _unit_host(port: int, unit: str) -> dict:
    return {"address": f"127.0.0.1:{int(port)}", "metadata": {"filter_metadata": {"mosn.lb": {"unit": unit}}}}


def _upstream_listener(ports: dict, host: str, trailers: bool = True):
    """A second listener (ports["listen2"]) for the upstream cases: subsets by host metadata,
    balancers, health checks, circuit breakers, passive health (its fault_tolerance filter
    ejects hosts after 3 exceptions in a row; no other listener has it), STRICT_DNS."""
    routes = [
        # Seed 000's subset routing: the UNIT driver's unit (x-mosn-on-envoy-unit) becomes
        # the subset criterion; no uid: any host (ANY_ENDPOINT fallback... not even needed:
        # no criteria means every host).
        _hdr_route("x-case", "subset", {"cluster_name": "units"}),
        _hdr_route("x-case", "subset-weighted", {"weighted_clusters": [
            {"cluster": {"name": "units", "weight": 1, "metadata_match": {"filter_metadata": {"mosn.lb": {"unit": "s1"}}}}},
            {"cluster": {"name": "s3", "weight": 1}}]}),
        _hdr_route("x-case", "wrr", {"cluster_name": "wrr"}),
        {"match": {"prefix": "/", "headers": [{"name": "x-case", "value": "hash"}]},
         "route": {"cluster_name": "hashed", "hash_policy": [{"header": {"key": "x-user"}}]}},
        _hdr_route("x-case", "source-ip", {"cluster_name": "hashed"}),
        _hdr_route("x-case", "hc", {"cluster_name": "hc"}),
        _hdr_route("x-case", "limited", {"cluster_name": "limited"}),
        _hdr_route("x-case", "passive", {"cluster_name": "passive",
                                         "retry_policy": {"retry_on": True, "num_retries": 2}}),
        _hdr_route("x-case", "retry3", {"cluster_name": "retry3",
                                        "retry_policy": {"retry_on": True, "num_retries": 2}}),
        _hdr_route("x-case", "idle", {"cluster_name": "idle"}),
        _hdr_route("x-case", "upload", {"cluster_name": "upload"}),
        # Copies of each request to both hosts of cluster `mirror` (the mirror filter broadcasts).
        dict(_hdr_route("x-case", "mirror", {"cluster_name": "s2"}),
             request_mirror_policies={"cluster": "mirror", "percent": 100}),
        # The flow-control rule's resource (limit_key_type PATH).
        {"match": {"prefix": "/limited"}, "route": {"cluster_name": "s2"}},
        _hdr_route("x-case", "dns", {"cluster_name": "dns"}),
        # The uid in the body picks the subset; payload_limit (1024) is off on this route only.
        dict(_hdr_route("x-case", "bodyuid", {"cluster_name": "units"}),
             per_filter_config={"payload_limit": {"disable": True}}),
        dict(_hdr_route("x-case", "rewrite", {"cluster_name": "s2"}),
             per_filter_config={"body_rewrite": {"request_rules": [{"from": "secret", "to": "[redacted]"}],
                                                 "response_rules": [{"from": "site", "to": "SITE:"}]}}),
        {"match": {"prefix": "/"}, "direct_response": {"status": 404, "body": "no upstream case"}},
    ]
    router = {"router_config_name": "upstream_router",
              "virtual_hosts": [{"name": "upstream", "domains": ["*"], "routers": routes}]}
    filters = [
        # The uid also from a JSON/form body or a trailer when the header is absent.
        {"type": "metadata", "config": {"metadataers": [{"meta_data_key": "UNIT", "config": dict(
            {"unit_key": "uid", "body_key": "uid"}, **({"trailers": True} if trailers else {}))}]}},
        {"type": "header_to_metadata", "config": {"request_rules": [
            {"header": UNIT_HEADER, "on_header_present": {"key": "unit"}}]}},
        {"type": "fault_tolerance", "config": {"enabled": True, "leastWindowCount": 3, "recoverTime": 60000,
                                                "exceptionTypes": [502, 503, 504]}},
        # The connection's address (a test connects from 127.0.0.66), then a trusted header.
        {"type": "ip_access", "config": {"default_action": "allow",
                                         "ips": [{"action": "deny", "addrs": ["127.0.0.66"]}]}},
        {"type": "ip_access", "config": {"header": "x-client-ip", "ips": [
            {"action": "allow", "addrs": ["10.66.6.6"]}, {"action": "deny", "addrs": ["10.66.0.0/16", "2001:db8::/32"]}]}},
        {"type": "mirror", "config": {"broadcast": True}},
        # Done by the host's compression (nginx gzip, Envoy's compressor).
        {"type": "gzip", "config": {"gzip_level": 5, "content_length": 1, "content_types": ["text/plain"]}},
        # MOSN's key, with its trailing space.
        {"type": "payload_limit", "config": {"max_entity_size ": 1024, "http_status": 413}},
        {"type": "flowControlFilter", "config": {"global_switch": True, "limit_key_type": "PATH",
                                                  "rules": [{"resource": "/limited", "threshold": 3,
                                                             "statIntervalInMs": 60000}]}},
        # No rules here: only the /rewrite route's per_filter_config rewrites bodies.
        {"type": "body_rewrite"},
    ]
    listener = _listener("upstreamListener", host, ports["listen2"], "upstream_router", filters)
    clusters = [
        {"name": "units", "type": "SIMPLE", "lb_type": "LB_ROUNDROBIN",
         "lb_subset_config": {"fall_back_policy": 1, "subset_selectors": [["unit"]]},
         "hosts": [_unit_host(ports["s1a"], "s1"), _unit_host(ports["s1b"], "s1"),
                   _unit_host(ports["s2"], "s2"), _unit_host(ports["s3"], "s3")]},
        {"name": "wrr", "type": "SIMPLE", "lb_type": "LB_WEIGHTED_ROUNDROBIN",
         "hosts": [dict(_addr(ports["s2"]), weight=3), dict(_addr(ports["s3"]), weight=1)]},
        dict(_cluster("hashed", [ports[k] for k in ("s1a", "s1b", "s2", "s3")]), lb_type="LB_MAGLEV"),
        dict(_cluster("hc", [ports["h1"], ports["h2"]]), health_check={
            "protocol": "Http1", "service_name": "hc", "timeout": "200ms", "interval": "200ms",
            "interval_jitter": "20ms", "initial_delay_seconds": "100ms",
            "healthy_threshold": 1, "unhealthy_threshold": 2,
            "check_config": {"http_check_config": {"path": "/health", "codes": [{"start": 200, "end": 299}]}}}),
        dict(_cluster("limited", [ports["slow2"]]), circuit_breakers=[{"max_requests": 2}]),
        _cluster("passive", [ports["p1"], ports["p2"], ports["p3"]]),
        _cluster("retry3", [ports["fail503"], ports["fail501"], ports["s2"]]),
        dict(_cluster("idle", [ports["i1"]]), idle_timeout="1s"),
        _cluster("upload", [ports["u1"]]),
        _cluster("mirror", [ports["mr1"], ports["mr2"]]),
        # STRICT_DNS: localhost resolves to 127.0.0.1 (V4_ONLY), again every second.
        {"name": "dns", "type": "STRICT_DNS", "lb_type": "LB_ROUNDROBIN", "dns_lookup_family": "V4_ONLY",
         "dns_refresh_rate": "1s", "hosts": [{"address": f"localhost:{int(ports['s2'])}"}]},
    ]
    return router, listener, clusters


def listener_port(cfg: dict) -> int:
    addr = cfg["servers"][0]["listeners"][0]["address"]
    return int(addr.rsplit(":", 1)[1])


def with_bad_host_address(cfg: dict) -> tuple[dict, str]:
    """A copy of cfg whose first cluster's first host has no port ("127.0.0.1"), and the JSON path
    of that field as the library must name it."""
    bad = copy.deepcopy(cfg)
    bad["cluster_manager"]["clusters"][0]["hosts"][0]["address"] = "127.0.0.1"
    return bad, "cluster_manager.clusters[0].hosts[0].address"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen", type=int, required=True)
    for k in PORT_KEYS:
        ap.add_argument(f"--{k}", type=int)
    ap.add_argument("--minimal", action="store_true")
    ap.add_argument("--catch-all", default="all_sites")
    a = ap.parse_args(argv)
    ports = {k: getattr(a, k) for k in PORT_KEYS if getattr(a, k) is not None}
    json.dump(build_mosn_config(a.listen, ports, minimal=a.minimal, catch_all_cluster=a.catch_all),
              sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
