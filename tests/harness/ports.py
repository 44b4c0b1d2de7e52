"""Free TCP ports on 127.0.0.1.

Ports are picked *below* the kernel's ephemeral range when possible: a port inside that range
can later be used as the source port of an outgoing connection, and a connect() to a
non-listening port that happens to equal its own source port self-connects on Linux
(TCP simultaneous open). That would turn a "dead" upstream into a live one, so dead ports in
particular must come from outside the ephemeral range.

CLI (used by scripts/bench-hosts.sh):  python3 ports.py N   -> prints N distinct free ports.
"""
from __future__ import annotations

import random
import socket
import sys

_handed_out: set[int] = set()


def _ephemeral_range() -> tuple[int, int]:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            lo, hi = (int(x) for x in f.read().split())
            return lo, hi
    except (OSError, ValueError):
        return 32768, 60999


def _bindable(port: int) -> bool:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        # No SO_REUSEADDR: a port in TIME_WAIT or bound elsewhere counts as taken.
        s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing is bound to right now (and that this process has
    not handed out before). Nothing listens on it after return: callers either bind it soon or
    use it as a deliberately dead address."""
    eph_lo, _ = _ephemeral_range()
    lo, hi = 20000, min(eph_lo, 32768) - 1
    if hi - lo > 1000:
        for _ in range(200):
            p = random.randint(lo, hi)
            if p not in _handed_out and _bindable(p):
                _handed_out.add(p)
                return p
    # Fallback: let the kernel choose (inside the ephemeral range).
    for _ in range(50):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind(("127.0.0.1", 0))
            p = s.getsockname()[1]
        finally:
            s.close()
        if p not in _handed_out:
            _handed_out.add(p)
            return p
    raise RuntimeError("could not find a free TCP port on 127.0.0.1")


def free_ports(n: int) -> list[int]:
    return [free_port() for _ in range(n)]


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1
    print(" ".join(str(p) for p in free_ports(n)))
