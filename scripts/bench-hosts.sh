#!/usr/bin/env bash
# bench-hosts.sh — the module against its peers on each host, in ONE run against the same
# backends (four nginx servers answering `site sN from PORT`, fast, so the proxy is the
# bottleneck). For each host: native routing, a floor (fixed route, no decision), the Lua
# peer, njs (nginx) and the module; configs in benches/peers/ (see scripts/bench-lib.sh).
# Every request carries `uid: 150` (-> s2); every target writes an access log line per request
# and is checked for the right answer before it is measured.
#
# Each target gets a 1 s warm-up, then ROUNDS rounds of `wrk -t1 -c16 -d8s --latency`, the
# order of the targets rotated every round. "Proxy CPU" is user+system time of the proxy's
# processes (Envoy; nginx master + workers) over the run divided by its requests: steadier
# than req/s on a shared 2-core machine that also runs wrk and the backends. Each target's
# ratio to its host's native target is taken within a round; the report gives the median
# ratio over the rounds and its spread (min–max), and the raw numbers per round.
#
# Env: ROUNDS=3 DURATION=8s CONNS=16 THREADS=1 CONCURRENCY=2 (Envoy workers = nginx workers)
#      TARGETS="envoy-native ... nginx-module" (default: all nine; natives are always added)
#      MOSN_EXT_BIN (default build/output/mosn-ext), ENVOY_BIN (default: resolved from PATH),
#      KEEP=1 keeps the work dir (build/bench-runs/<stamp>).
# Everything started here is stopped by PID on exit (trap). wrk bounds every load loop by
# time (-d); the whole run by ROUNDS.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/bench-lib.sh"

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-8s}
CONNS=${CONNS:-16}
THREADS=${THREADS:-1}
CONCURRENCY=${CONCURRENCY:-2}
TARGETS=${TARGETS:-$ALL_TARGETS}
for h in envoy nginx; do  # a host's ratios need its native target
  if [[ " $TARGETS " == *" $h-"* ]] && [[ " $TARGETS " != *" $h-native "* ]]; then TARGETS="$h-native $TARGETS"; fi
done
read -r -a TLIST <<<"$TARGETS"

bench_need wrk
WORK="$ROOT/build/bench-runs/$(date +%Y%m%d-%H%M%S)-$$"
mkdir -p "$WORK"
trap bench_cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

bench_backends
for t in "${TLIST[@]}"; do bench_launch "$t" "$CONCURRENCY"; done
for t in "${TLIST[@]}"; do wait_http "$t" "${PORT_OF[$t]}" "$EXPECT" 300; done

to_ms() {  # 1.23ms / 456.00us / 1.02s / 3.00m -> ms
  awk -v v="$1" 'BEGIN{ n=v; sub(/[a-z]+$/,"",n); u=v; sub(/^[0-9.]+/,"",u);
    f=(u=="us")?0.001:(u=="ms")?1:(u=="s")?1000:(u=="m")?60000:1; printf "%.3f", n*f }'
}
RESULTS="$WORK/results.tsv"; : >"$RESULTS"
run_wrk() {  # target round
  local t=$1 r=$2 out rps p99 errs non2xx c0 c1 reqs cpu_us
  c0=$(cpu_ticks "${PID_OF_NAME[$t]}")
  out=$(wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency -H 'uid: 150' "http://127.0.0.1:${PORT_OF[$t]}/" 2>&1) \
    || die "wrk failed against $t: $out"
  c1=$(cpu_ticks "${PID_OF_NAME[$t]}")
  echo "$out" >"$WORK/wrk-$t-r$r.txt"
  reqs=$(awk '/requests in/{print $1}' <<<"$out")
  cpu_us=$(awk -v t=$((c1 - c0)) -v n="$reqs" -v hz="$(getconf CLK_TCK)" 'BEGIN{ printf "%.2f", (n > 0) ? t * 1e6 / hz / n : 0 }')
  rps=$(awk '/^Requests\/sec:/{print $2}' <<<"$out")
  p99=$(awk '$1=="99%"{print $2}' <<<"$out")
  non2xx=$(awk '/Non-2xx or 3xx responses:/{print $NF}' <<<"$out"); non2xx=${non2xx:-0}
  errs=$(awk '/Socket errors:/{gsub(/,/,""); print $4+$6+$8+$10}' <<<"$out"); errs=${errs:-0}
  [ -n "$rps" ] && [ -n "$p99" ] || die "could not parse wrk output for $t:\n$out"
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$t" "$r" "$rps" "$(to_ms "$p99")" "$((non2xx + errs))" "$cpu_us" >>"$RESULTS"
  log "round $r $t: $rps req/s, p99 $p99, proxy CPU ${cpu_us} us/req, non-2xx+errors $((non2xx + errs))"
}

for t in "${TLIST[@]}"; do  # warm-up (connections, caches, JITs), not recorded
  wrk -t1 -c"$CONNS" -d1s -H 'uid: 150' "http://127.0.0.1:${PORT_OF[$t]}/" >/dev/null 2>&1 || true
done
n=${#TLIST[@]}
for r in $(seq 1 "$ROUNDS"); do
  for i in $(seq 0 $((n - 1))); do  # rotated: round r starts at target r-1
    run_wrk "${TLIST[$(((i + r - 1) % n))]}" "$r"
  done
done

python3 - "$RESULTS" "$ROUNDS" "$DURATION" "$CONNS" "$THREADS" "$CONCURRENCY" "${TLIST[@]}" <<'PY'
import statistics, sys
path, rounds, dur, conns, threads, conc, *targets = sys.argv[1:]
by = {}
for line in open(path):
    if not line.strip():
        continue
    t, r, rps, p99, bad, cpu = line.rstrip("\n").split("\t")
    by.setdefault(t, {})[int(r)] = (float(rps), float(p99), int(bad), float(cpu))
print(f"## bench-hosts: wrk -t{threads} -c{conns} -d{dur} --latency -H 'uid: 150', {rounds} rounds "
      f"(order rotated), {conc} workers per proxy\n")
print("| target | req/s × native | proxy CPU µs/req × native | p99 × native | req/s | CPU µs/req | p99 (ms) | errors |")
print("|---|---:|---:|---:|---:|---:|---:|---:|")
def ratio(t, i, inv=False):
    nat = by.get(t.split("-")[0] + "-native", {})
    xs = sorted(by[t][r][i] / nat[r][i] for r in by[t] if r in nat and nat[r][i] > 0)
    if not xs:
        return "n/a"
    return f"{statistics.median(xs):.2f} ({xs[0]:.2f}–{xs[-1]:.2f})"
for t in targets:
    rows = by.get(t)
    if not rows:
        continue
    med = lambda i: statistics.median(v[i] for v in rows.values())
    print(f"| {t} | {ratio(t, 0)} | {ratio(t, 3)} | {ratio(t, 1)} | {med(0):,.0f} | {med(3):.1f} | {med(1):.2f} | "
          f"{sum(v[2] for v in rows.values())} |")
print("\n(ratios: median over the rounds of this target / its host's native in the same round, (min–max);"
      " raw columns: medians; errors: non-2xx + socket errors, all rounds)\n")
print("| target | round | req/s | p99 (ms) | proxy CPU µs/req | errors |")
print("|---|---:|---:|---:|---:|---:|")
for t in targets:
    for r, (rps, p99, bad, cpu) in sorted(by.get(t, {}).items()):
        print(f"| {t} | {r} | {rps:,.0f} | {p99:.2f} | {cpu:.1f} | {bad} |")
PY
