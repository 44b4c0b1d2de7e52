"""Self-tests of the harness pieces that do not need the product (fast, < 3 s):
config builder, access-log parser, backend, raw client, ports, process handling (with the
pure-Python fake mosn-ext)."""
from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path

import pytest

from harness import backend, hosts
from harness.client import request
from harness.config import build_mosn_config, listener_port, with_bad_host_address
from harness.ports import _ephemeral_range, free_port

PORTS = {"s1a": 3450, "s1b": 3451, "s2": 3452, "s3": 3453, "dead1": 3460, "dead2": 3461}

# The config of the brief, verbatim, with the placeholders filled in.
EXPECTED = json.loads(r"""{
 "servers": [
  {
   "default_log_path": "stdout",
   "routers": [
    {
     "router_config_name": "unit_router",
     "virtual_hosts": [
      {
       "name": "sites",
       "domains": [
        "*"
       ],
       "routers": [
        {
         "match": {
          "prefix": "/",
          "headers": [
           {
            "name": "x-case",
            "value": "retry"
           }
          ]
         },
         "route": {
          "cluster_name": "pair",
          "retry_policy": {
           "retry_on": true,
           "num_retries": 2
          }
         }
        },
        {
         "match": {
          "prefix": "/",
          "headers": [
           {
            "name": "x-case",
            "value": "dead"
           }
          ]
         },
         "route": {
          "cluster_name": "dead"
         }
        },
        {
         "match": {
          "prefix": "/",
          "headers": [
           {
            "name": "x-case",
            "value": "blackhole"
           }
          ]
         },
         "route": {
          "cluster_name": "blackhole"
         }
        },
        {
         "match": {
          "prefix": "/",
          "headers": [
           {
            "name": "x-case",
            "value": "retry5xx"
           }
          ]
         },
         "route": {
          "cluster_name": "flaky",
          "retry_policy": {
           "retry_on": true,
           "num_retries": 1
          }
         }
        },
        {
         "match": {
          "prefix": "/",
          "headers": [
           {
            "name": "x-case",
            "value": "plain5xx"
           }
          ]
         },
         "route": {
          "cluster_name": "flaky"
         }
        },
        {
         "match": {
          "prefix": "/",
          "headers": [
           {
            "name": "x-case",
            "value": "noretry5xx"
           }
          ]
         },
         "route": {
          "cluster_name": "flaky",
          "retry_policy": {
           "retry_on": false,
           "num_retries": 1
          }
         }
        },
        {
         "match": {
          "prefix": "/",
          "headers": [
           {
            "name": "x-case",
            "value": "retry501"
           }
          ]
         },
         "route": {
          "cluster_name": "flaky501",
          "retry_policy": {
           "retry_on": true,
           "num_retries": 1
          }
         }
        },
        {
         "match": {
          "prefix": "/",
          "headers": [
           {
            "name": "x-case",
            "value": "retry503only"
           }
          ]
         },
         "route": {
          "cluster_name": "flaky501",
          "retry_policy": {
           "retry_on": true,
           "num_retries": 1,
           "status_codes": [
            503
           ]
          }
         }
        },
        {
         "match": {
          "prefix": "/",
          "headers": [
           {
            "name": "x-case",
            "value": "failover"
           }
          ]
         },
         "route": {
          "cluster_name": "failover",
          "retry_policy": {
           "retry_on": true,
           "num_retries": 2
          }
         }
        },
        {
         "match": {
          "prefix": "/admin"
         },
         "direct_response": {
          "status": 403,
          "body": "denied"
         }
        },
        {
         "match": {
          "path": "/exact/Path"
         },
         "direct_response": {
          "status": 200,
          "body": "exact"
         }
        },
        {
         "match": {
          "regex": "^/re[0-9]+$"
         },
         "direct_response": {
          "status": 200,
          "body": "regex"
         }
        },
        {
         "match": {
          "prefix": "/redir"
         },
         "redirect": {
          "response_code": 302,
          "scheme_redirect": "https",
          "host_redirect": "elsewhere.test",
          "path_redirect": "/landing"
         }
        },
        {
         "match": {
          "prefix": "/rw/old/"
         },
         "route": {
          "cluster_name": "s2",
          "prefix_rewrite": "/rw/new/",
          "host_rewrite": "rewritten.test"
         }
        },
        {
         "match": {
          "prefix": "/rx/"
         },
         "route": {
          "cluster_name": "s2",
          "regex_rewrite": {
           "pattern": {
            "regex": "^/rx/(\\w+)/(\\w+)"
           },
           "substitution": "/rx-done/$2/$1"
          }
         }
        },
        {
         "match": {
          "prefix": "/hdr/"
         },
         "route": {
          "cluster_name": "s2",
          "request_headers_to_add": [
           {
            "header": {
             "key": "x-added",
             "value": "route"
            }
           },
           {
            "header": {
             "key": "x-app",
             "value": "more"
            }
           },
           {
            "header": {
             "key": "x-seen-by",
             "value": "%x-mosn-host%"
            }
           }
          ],
          "request_headers_to_remove": [
           "x-drop"
          ],
          "response_headers_to_add": [
           {
            "header": {
             "key": "x-resp",
             "value": "r1"
            },
            "append": false
           }
          ],
          "response_headers_to_remove": [
           "x-backend-site"
          ]
         }
        },
        {
         "match": {
          "prefix": "/",
          "headers": [
           {
            "name": "x-case",
            "value": "byheader"
           }
          ]
         },
         "route": {
          "cluster_header": "x-cluster"
         }
        },
        {
         "match": {
          "prefix": "/pfc50"
         },
         "route": {
          "cluster_name": "s2"
         },
         "per_filter_config": {
          "fault": {
           "abort": {
            "status": 503,
            "percentage": 50
           }
          }
         }
        },
        {
         "match": {
          "prefix": "/pfc"
         },
         "route": {
          "cluster_name": "s2"
         },
         "per_filter_config": {
          "fault": {
           "abort": {
            "status": 418,
            "percentage": 100
           }
          }
         }
        },
        {
         "match": {
          "variables": [
           {
            "name": "x-mosn-method",
            "value": "PUT",
            "model": "or"
           },
           {
            "name": "Http1_request_header_x-var",
            "value": "yes"
           }
          ]
         },
         "direct_response": {
          "status": 200,
          "body": "variables"
         }
        },
        {
         "match": {
          "prefix": "/",
          "headers": [
           {
            "name": "x-case",
            "value": "weighted"
           }
          ]
         },
         "route": {
          "weighted_clusters": [
           {
            "cluster": {
             "name": "s2",
             "weight": 1
            }
           },
           {
            "cluster": {
             "name": "s3",
             "weight": 3
            }
           }
          ]
         }
        },
        {
         "match": {
          "prefix": "/",
          "headers": [
           {
            "name": "x-case",
            "value": "slow"
           }
          ]
         },
         "route": {
          "cluster_name": "slow",
          "timeout": "3s",
          "retry_policy": {
           "retry_on": true,
           "num_retries": 1,
           "retry_timeout": "300ms"
          }
         }
        },
        {
         "match": {
          "prefix": "/",
          "headers": [
           {
            "name": "x-mosn-on-envoy-unit",
            "value": "s1"
           }
          ]
         },
         "route": {
          "cluster_name": "s1"
         }
        },
        {
         "match": {
          "prefix": "/",
          "headers": [
           {
            "name": "x-mosn-on-envoy-unit",
            "value": "s2"
           }
          ]
         },
         "route": {
          "cluster_name": "s2"
         }
        },
        {
         "match": {
          "prefix": "/",
          "headers": [
           {
            "name": "x-mosn-on-envoy-unit",
            "value": "s3"
           }
          ]
         },
         "route": {
          "cluster_name": "s3"
         }
        },
        {
         "match": {
          "prefix": "/"
         },
         "route": {
          "cluster_name": "all_sites"
         }
        }
       ]
      },
      {
       "name": "vhost",
       "domains": [
        "vhost.test",
        "vhost.test:*"
       ],
       "routers": [
        {
         "match": {
          "prefix": "/v"
         },
         "direct_response": {
          "status": 200,
          "body": "vhost"
         }
        }
       ]
      }
     ]
    }
   ],
   "listeners": [
    {
     "name": "serverListener",
     "address": "127.0.0.1:2990",
     "bind_port": true,
     "filter_chains": [
      {
       "filters": [
        {
         "type": "proxy",
         "config": {
          "downstream_protocol": "Http1",
          "upstream_protocol": "Http1",
          "router_config_name": "unit_router"
         }
        }
       ]
      }
     ],
     "stream_filters": [
      {
       "type": "fault",
       "config": {
        "delay": {
         "fixed_delay": "400ms",
         "percentage": 100
        },
        "headers": [
         {
          "name": "x-case",
          "value": "delay"
         }
        ]
       }
      },
      {
       "type": "metadata",
       "config": {
        "metadataers": [
         {
          "meta_data_key": "UNIT",
          "config": {
           "unit_key": "uid"
          }
         }
        ]
       }
      }
     ]
    }
   ]
  }
 ],
 "cluster_manager": {
  "clusters": [
   {
    "name": "s1",
    "type": "SIMPLE",
    "lb_type": "LB_ROUNDROBIN",
    "hosts": [
     {
      "address": "127.0.0.1:3450"
     },
     {
      "address": "127.0.0.1:3451"
     }
    ]
   },
   {
    "name": "s2",
    "type": "SIMPLE",
    "lb_type": "LB_ROUNDROBIN",
    "hosts": [
     {
      "address": "127.0.0.1:3452"
     }
    ]
   },
   {
    "name": "s3",
    "type": "SIMPLE",
    "lb_type": "LB_ROUNDROBIN",
    "hosts": [
     {
      "address": "127.0.0.1:3453"
     }
    ]
   },
   {
    "name": "all_sites",
    "type": "SIMPLE",
    "lb_type": "LB_ROUNDROBIN",
    "hosts": [
     {
      "address": "127.0.0.1:3450"
     },
     {
      "address": "127.0.0.1:3451"
     },
     {
      "address": "127.0.0.1:3452"
     },
     {
      "address": "127.0.0.1:3453"
     }
    ]
   },
   {
    "name": "pair",
    "type": "SIMPLE",
    "lb_type": "LB_ROUNDROBIN",
    "hosts": [
     {
      "address": "127.0.0.1:3460"
     },
     {
      "address": "127.0.0.1:3452"
     }
    ]
   },
   {
    "name": "dead",
    "type": "SIMPLE",
    "lb_type": "LB_ROUNDROBIN",
    "hosts": [
     {
      "address": "127.0.0.1:3461"
     }
    ]
   },
   {
    "name": "flaky",
    "type": "SIMPLE",
    "lb_type": "LB_ROUNDROBIN",
    "hosts": [
     {
      "address": "127.0.0.1:3452"
     }
    ]
   },
   {
    "name": "flaky501",
    "type": "SIMPLE",
    "lb_type": "LB_ROUNDROBIN",
    "hosts": [
     {
      "address": "127.0.0.1:3452"
     }
    ]
   },
   {
    "name": "slow",
    "type": "SIMPLE",
    "lb_type": "LB_ROUNDROBIN",
    "hosts": [
     {
      "address": "127.0.0.1:3452"
     }
    ]
   },
   {
    "name": "failover",
    "type": "SIMPLE",
    "lb_type": "LB_ROUNDROBIN",
    "hosts": [
     {
      "address": "127.0.0.1:3452"
     }
    ]
   },
   {
    "name": "blackhole",
    "type": "SIMPLE",
    "lb_type": "LB_ROUNDROBIN",
    "hosts": [
     {
      "address": "127.0.0.1:3461"
     }
    ]
   }
  ]
 }
}
""")


def test_config_matches_contract_exactly():
    assert build_mosn_config(2990, PORTS) == EXPECTED
    assert listener_port(EXPECTED) == 2990


def test_config_variants():
    bad, path = with_bad_host_address(EXPECTED)
    assert path == "cluster_manager.clusters[0].hosts[0].address"
    assert bad["cluster_manager"]["clusters"][0]["hosts"][0]["address"] == "127.0.0.1"
    assert EXPECTED["cluster_manager"]["clusters"][0]["hosts"][0]["address"] == "127.0.0.1:3450"  # not mutated
    s3 = build_mosn_config(2990, PORTS, catch_all_cluster="s3")
    assert s3["servers"][0]["routers"][0]["virtual_hosts"][0]["routers"][-1]["route"] == {"cluster_name": "s3"}
    m = build_mosn_config(2990, {k: PORTS[k] for k in ("s1a", "s1b", "s2", "s3")}, minimal=True)
    assert [f["type"] for f in m["servers"][0]["listeners"][0]["stream_filters"]] == ["metadata"]
    assert [c["name"] for c in m["cluster_manager"]["clusters"]] == ["s1", "s2", "s3", "all_sites"]
    with pytest.raises(ValueError):
        build_mosn_config(2990, {"s1a": 1})


def test_access_log_parser():
    line = ("mosn_access method=GET path=/ status=200 cluster=s1 upstream_host=127.0.0.1:3450 unit=s1 "
            "flags=- details=via_upstream")
    d = hosts.parse_access_line(line)
    assert {k: v for k, v in d.items() if k != "_raw"} == {
        "method": "GET", "path": "/", "status": "200", "cluster": "s1", "upstream_host": "127.0.0.1:3450",
        "unit": "s1", "flags": "-", "details": "via_upstream"}
    # nginx-style multi-attempt upstream and a reason with spaces and parentheses
    d = hosts.parse_access_line('2026/11/23 [x] mosn_access method=GET path=/c/x/1 status=502 cluster=dead '
                                'upstream_host=127.0.0.1:1, 127.0.0.1:2 unit=- flags=- '
                                'details="connect() failed (111: Connection refused)"')
    assert d["upstream_host"] == "127.0.0.1:1, 127.0.0.1:2"
    assert hosts.last_upstream(d["upstream_host"]) == "127.0.0.1:2"
    assert d["details"] == "connect() failed (111: Connection refused)"
    assert hosts.is_empty(d["unit"]) and hosts.is_empty("") and not hosts.is_empty("UF")
    assert hosts.parse_access_line("[info] something else") is None
    d = hosts.parse_access_line("mosn_access method=GET path=/a status=200 cluster= upstream_host=- unit= flags=UF details=")
    assert d["cluster"] == "" and d["flags"] == "UF" and d["details"] == ""


def test_access_log_reader(tmp_path):
    log = hosts.AccessLog(tmp_path / "access.log")
    assert log.lines() == []
    with pytest.raises(TimeoutError):
        log.wait_for_lines(1, timeout=0.2)
    (tmp_path / "access.log").write_text("noise\nmosn_access method=GET path=/p status=200 cluster=s2\n")
    assert log.wait_for_lines(1, timeout=0.2)[0]["cluster"] == "s2"
    assert log.find("/p", timeout=0.2)[0]["status"] == "200"
    with pytest.raises(TimeoutError):
        log.find("/q", timeout=0.2)


def test_backend_and_client():
    srv, _ = backend.start_backend("s1", 0)
    try:
        port = srv.server_address[1]
        r = request(port, "/x/y?z=1", [("x-mosn-on-envoy-unit", "s1"), ("uid", "2")])
        assert r.status == 200 and r.text == f"site s1 from {port}\n"
        assert r.site() == ("s1", port)
        assert r.header("x-backend-port") == str(port)
        assert r.header("x-seen-unit") == "s1" and r.header("x-seen-uid") == "2"
        assert r.header("x-seen-path") == "/x/y?z=1"
        r = request(port, "/", raw_header_lines=[b"uid:2"])
        assert r.header("x-seen-uid") == "2" and r.header("x-seen-unit") == "-"
        r = request(port, "/", raw_header_lines=[b"uid: \x80\xff 1"])
        assert r.header("x-seen-uid") == "%80%FF 1"
        r = request(port, "/", raw_header_lines=[b"uid: " + b"9" * 10240])
        assert r.status == 200 and r.header("x-seen-uid") == "9" * 64 + "..."
        r = request(port, "/", [("x-mosn-on-envoy-unit", "a"), ("x-mosn-on-envoy-unit", "b")], method="POST",
                    body=b"uid=5")
        assert r.status == 200 and r.header("x-seen-unit") == "a,b"
        r = request(port, "/", method="HEAD")
        assert r.status == 200 and r.body == b""
        # keep-alive: two requests on one connection
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.sendall(b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        assert data.count(b"HTTP/1.1 200") == 2
    finally:
        srv.shutdown()
        srv.server_close()


def test_client_refuses_non_loopback():
    with pytest.raises(ValueError):
        request(80, "/", host="192.0.2.1")


def test_free_port():
    lo, _ = _ephemeral_range()
    ports = {free_port() for _ in range(20)}
    assert len(ports) == 20
    if lo > 21000:
        assert all(p < lo for p in ports), "ports should come from below the ephemeral range"


def test_backends_process():
    b = hosts.Backends([("a", "s1"), ("b", "s1"), ("c", "s2")]).start()
    try:
        assert set(b.ports) == {"a", "b", "c"}
        assert sorted(b.site_of.values()) == ["s1", "s1", "s2"]
        assert request(b.ports["c"], "/").site() == ("s2", b.ports["c"])
        pid = b.proc.pid
    finally:
        b.stop()
    assert b.proc.returncode == 0, "backend helper should exit cleanly on SIGTERM"
    assert all(not hosts.tcp_open(p, timeout=0.3) for p in b.ports.values()), "backend ports still open after stop"
    del pid


def test_host_lifecycle_with_fake(tmp_path, monkeypatch):
    """Host start/readiness/access log/reload/stop, driven by the pure-Python fake mosn-ext."""
    monkeypatch.setenv("MOSN_EXT_BIN", str(Path(hosts.__file__).with_name("fake_mosn_ext.py")))
    b = hosts.Backends([("s1a", "s1"), ("s1b", "s1"), ("s2", "s2"), ("s3", "s3")]).start()
    h = None
    try:
        listen, d1, d2 = hosts.free_ports(3)
        ports = dict(b.ports, dead1=d1, dead2=d2)
        h = hosts.Host("nginx", build_mosn_config(listen, ports), tmp_path / "run").start()
        assert h.alive() and h.ready_status == 200
        r = request(h.port, "/hello", [("uid", "150")])
        assert r.site() == ("s2", b.ports["s2"])
        line = h.find_access("/hello", timeout=3)[-1]
        assert line["cluster"] == "s2" and line["upstream_host"] == f"127.0.0.1:{b.ports['s2']}"
        assert h.wait_for_access_lines(2)  # readiness probe + /hello
        h.write_config(build_mosn_config(listen, ports, catch_all_cluster="s3"))
        h.reload()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and request(h.port, "/").site()[0] != "s3":
            time.sleep(0.05)
        assert [request(h.port, "/").site()[0] for _ in range(3)] == ["s3"] * 3
        assert "reloaded" in h.log_text()
        assert h.crash_lines() == []
        pid = h.pid
        assert h.stop() == 0
        assert not h.alive() and pid not in hosts._live
    finally:
        if h:
            h.stop()
        b.stop()


def test_host_start_failure_reports_logs(tmp_path, monkeypatch):
    fake = tmp_path / "broken-mosn-ext"
    fake.write_text("#!/bin/sh\necho 'boom: cluster_manager.clusters[0]' >&2\nexit 3\n")
    fake.chmod(0o755)
    monkeypatch.setenv("MOSN_EXT_BIN", str(fake))
    h = hosts.Host("envoy", build_mosn_config(free_port(), PORTS), tmp_path / "run", ready_timeout=5)
    with pytest.raises(hosts.HostStartError) as ei:
        h.start()
    msg = str(ei.value)
    assert "exited with status 3" in msg and "boom: cluster_manager.clusters[0]" in msg
    assert h.failed


def test_stop_kills_group_leftovers(tmp_path):
    """A 'master' that leaves a child behind when it exits: stop() also ends the child (same
    process group, which the harness created)."""
    script = tmp_path / "m.sh"
    script.write_text("#!/bin/sh\nsleep 300 &\necho $! > child.pid\ntrap 'exit 0' TERM\nwhile :; do sleep 0.1; done\n")
    script.chmod(0o755)
    import subprocess
    p = subprocess.Popen([str(script)], cwd=tmp_path, start_new_session=True)
    hosts._register(p)
    deadline = time.monotonic() + 5
    while not (tmp_path / "child.pid").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.1)
    child = int((tmp_path / "child.pid").read_text())
    hosts.stop_process(p, term_timeout=5)
    time.sleep(0.1)
    try:
        os.kill(child, 0)
        alive = Path(f"/proc/{child}/stat").read_text().split(") ")[1][0] != "Z"
    except ProcessLookupError:
        alive = False
    assert not alive, "left-over child of the stopped process group still running"


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
