#!/usr/bin/env python3
"""The unit-routing demo (seed 004) behind a real Envoy or Nginx.

Starts the three sites on free 127.0.0.1 ports (s1 with two hosts, s2 and s3 with one
each; each answers `site sN from PORT`), writes examples/unit-routing/mosn.json (or, with
`--example unit-subset`, the one-cluster variant whose hosts are picked by metadata) with
those ports and the listener port, runs `mosn-ext start --host HOST` (the same command a
user runs), sends the seed's curls, prints the answers and stops everything it started.
`--keep` leaves it running for a person to curl until Ctrl-C.
"""
import argparse
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from harness.hosts import Backends, Host  # noqa: E402

CURLS = [("uid:2", {"uid": "2"}), ("uid:2", {"uid": "2"}), ("uid:200", {"uid": "200"}), ("uid:201", {"uid": "201"})]


def config(port: int, ports: dict, example: str = "unit-routing") -> dict:
    cfg = json.loads((ROOT / "examples" / example / "mosn.json").read_text())
    cfg["servers"][0]["listeners"][0]["address"] = f"127.0.0.1:{port}"
    seed_ports = {"127.0.0.1:3450": ports["s1a"], "127.0.0.1:3451": ports["s1b"],
                  "127.0.0.1:3452": ports["s2"], "127.0.0.1:3453": ports["s3"]}
    for c in cfg["cluster_manager"]["clusters"]:
        for h in c["hosts"]:
            h["address"] = f"127.0.0.1:{seed_ports[h['address']]}"
    return cfg


def curl(port: int, headers: dict) -> str:
    args = ["curl", "-s", "--max-time", "5", f"http://127.0.0.1:{port}/"]
    for k, v in headers.items():
        args += ["-H", f"{k}: {v}"]
    r = subprocess.run(args, capture_output=True, text=True)
    return r.stdout.strip() or f"(curl exit {r.returncode})"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", choices=["envoy", "nginx"], default="envoy")
    ap.add_argument("--port", type=int, default=2990)
    ap.add_argument("--keep", action="store_true", help="keep running until Ctrl-C")
    ap.add_argument("--example", choices=["unit-routing", "unit-subset"], default="unit-routing",
                    help="unit-routing: a cluster per site; unit-subset: one cluster, hosts picked by metadata")
    a = ap.parse_args()

    work = ROOT / "build" / "demo" / a.host
    work.mkdir(parents=True, exist_ok=True)
    backends = Backends([("s1a", "s1"), ("s1b", "s1"), ("s2", "s2"), ("s3", "s3")], log_dir=work).start()
    host = None
    try:
        p = backends.ports
        print(f"sites: s1 on {p['s1a']} and {p['s1b']}, s2 on {p['s2']}, s3 on {p['s3']}")
        host = Host(a.host, config(a.port, p, a.example), work, concurrency=2)
        print(f"starting {a.host}: {' '.join(host.command())}")
        host.start()
        print(f"{a.host} with mosn-extension listens on 127.0.0.1:{a.port} (logs in {work})\n")
        for label, headers in CURLS:
            print(f"$ curl localhost:{a.port} -H \"{label}\"\n{curl(a.port, headers)}\n")
        print(f"$ curl localhost:{a.port}    # no uid: round robin over every site's hosts")
        for _ in range(4):
            print(curl(a.port, {}))
        print()
        if a.keep:
            print(f"running; try: curl localhost:{a.port} -H 'uid: 150'   (Ctrl-C stops)")
            signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
            while host.alive():
                time.sleep(0.5)
        return 0
    except KeyboardInterrupt:
        return 0
    finally:
        if host:
            host.stop()
        backends.stop()
        print("stopped everything the demo started")


if __name__ == "__main__":
    sys.exit(main())
