#!/usr/bin/env python3
"""One keep-alive HTTP/1.1 client for bench-instructions.sh: sends N GET / with `uid: 150` to
127.0.0.1:PORT, checks every answer (200 and a body containing EXPECT), bounded by count and
by a deadline; opens a new connection when the proxy closes one (nginx's keepalive_requests:
1,000 by default). Exit 1 on a wrong answer or the deadline.

    python3 bench-client.py PORT N EXPECT [DEADLINE_S]
"""
import http.client
import sys
import time


def main() -> int:
    port, n, expect = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3].encode()
    deadline = time.monotonic() + (float(sys.argv[4]) if len(sys.argv) > 4 else 600.0)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    for i in range(n):
        if time.monotonic() > deadline:
            print(f"bench-client: deadline passed after {i} of {n} requests", file=sys.stderr)
            return 1
        conn.request("GET", "/", headers={"uid": "150", "Host": "bench.test"})
        r = conn.getresponse()
        body = r.read()
        if r.status != 200 or expect not in body:
            print(f"bench-client: request {i}: {r.status} {body[:200]!r}", file=sys.stderr)
            return 1
        if r.getheader("connection", "").lower() == "close":
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
