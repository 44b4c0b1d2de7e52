#!/usr/bin/env bash
# bench-instructions.sh — instructions per request for each host target (the same targets and
# backends as bench-hosts.sh, see scripts/bench-lib.sh), counted by callgrind: deterministic,
# so it decides where wall-clock numbers on the shared 2-core machine are noise.
#
# Per target, one at a time: the proxy single-worker under `valgrind --tool=callgrind` (Envoy
# --concurrency 1; nginx without a master process), one keep-alive client (bench-client.py)
# sending `uid: 150` and checking every answer. WARMUP requests, dump; N requests, dump (A);
# 3N requests, dump (B). Instructions per request = (Ir(B) − Ir(A)) / 2N: start-up, warm-up,
# the dump itself and what a window costs whatever its length cancel. User-space instructions
# only. Prints a table with ratios to each host's native target; with PROFILE=1 also the
# per-function breakdown of each target (callgrind-cost.py report) into the work dir.
#
# Env: N=1000 WARMUP=200 TARGETS="..." (default: all nine; natives are always added)
#      REPEAT=1: rounds of every target, one after another; the table gives each target's
#      median and, for the ratio, the median of the rounds' ratios to the same round's
#      native with the lowest and highest in brackets (Envoy's own count moves by ±400 a
#      request between runs of one build, so one round can not tell 1.049 from 1.056).
#      KEEP=1 keeps the work dir (build/bench-runs/<stamp>) with the dumps.
#      DUMP_INSTR=yes: the dumps count per instruction (per source line with addr2line).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/bench-lib.sh"

N=${N:-1000}
WARMUP=${WARMUP:-200}
REPEAT=${REPEAT:-1}
TARGETS=${TARGETS:-$ALL_TARGETS}
for h in envoy nginx; do
  if [[ " $TARGETS " == *" $h-"* ]] && [[ " $TARGETS " != *" $h-native "* ]]; then TARGETS="$h-native $TARGETS"; fi
done
read -r -a TLIST <<<"$TARGETS"

bench_need valgrind callgrind_control
WORK="$ROOT/build/bench-runs/$(date +%Y%m%d-%H%M%S)-$$-cg"
mkdir -p "$WORK"
trap bench_cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

bench_backends
CLIENT="$ROOT/scripts/bench-client.py"
COST="$ROOT/scripts/callgrind-cost.py"
RESULTS="$WORK/instructions.tsv"; : >"$RESULTS"

# dump PID OUT_BASE N : asks callgrind for a dump, waits for the new file, prints its path
dump() {
  local pid=$1 base=$2 n=$3 f i
  callgrind_control -d "$pid" >/dev/null 2>&1 || die "callgrind_control -d $pid failed"
  f="$base.$pid.$n"
  for i in $(seq 1 600); do [ -s "$f" ] && grep -q '^totals:\|^summary:' "$f" && break; sleep 0.1; done
  [ -s "$f" ] || die "no callgrind dump $f"
  echo "$f"
}

for round in $(seq 1 "$REPEAT"); do
for t in "${TLIST[@]}"; do
  D="$WORK/$t"; [ "$round" = 1 ] || D="$WORK/$t-r$round"
  mkdir -p "$D"
  bench_launch "$t" 1 valgrind --tool=callgrind --callgrind-out-file="$D/callgrind.out.%p" --dump-instr="${DUMP_INSTR:-no}"
  pid=${PID_OF_NAME[$t]}
  wait_http "$t" "${PORT_OF[$t]}" "$EXPECT" 3000   # Envoy takes ~20 s to start under valgrind
  python3 "$CLIENT" "${PORT_OF[$t]}" "$WARMUP" "$EXPECT" 600 || die "$t: warm-up failed"
  dump "$pid" "$D/callgrind.out" 1 >/dev/null
  python3 "$CLIENT" "${PORT_OF[$t]}" "$N" "$EXPECT" 1200 || die "$t: window A failed"
  a=$(dump "$pid" "$D/callgrind.out" 2)
  python3 "$CLIENT" "${PORT_OF[$t]}" "$((3 * N))" "$EXPECT" 3600 || die "$t: window B failed"
  b=$(dump "$pid" "$D/callgrind.out" 3)
  ir_a=$(python3 "$COST" total "$a"); ir_b=$(python3 "$COST" total "$b")
  per=$(( (ir_b - ir_a) / (2 * N) ))
  printf '%s\t%s\t%s\t%s\t%s\n' "$t" "$per" "$ir_a" "$ir_b" "$round" >>"$RESULTS"
  log "$t (round $round): $per instructions per request (window A $ir_a over $N, B $ir_b over $((3 * N)))"
  if [ "${PROFILE:-0}" = 1 ]; then
    python3 "$COST" report "$a" "$b" "$((2 * N))" --top 40 \
      --match 'envoy_dynamic_module|mosn|ngx_http_mosn|lua|njs' >"$D/profile.txt"
    log "$t: profile in $D/profile.txt"
  fi
  bench_stop_pid "$pid" "$t"
done
done

python3 - "$RESULTS" "$N" "$WARMUP" "$REPEAT" "${TLIST[@]}" <<'PY'
import statistics
import sys
path, n, warm, repeat, *targets = sys.argv[1:]
per = {}  # target -> {round: instructions per request}
for line in open(path):
    t, v, a, b, r = line.rstrip("\n").split("\t")
    per.setdefault(t, {})[r] = int(v)
print(f"## bench-instructions: callgrind, one worker, {warm} warm-up requests, then windows of {n} and "
      f"{3 * int(n)} requests; (Ir(B) − Ir(A)) / {2 * int(n)}; {repeat} round(s), medians\n")
print("| target | instructions/request | × native | vs floor |")
print("|---|---:|---:|---:|")
for t in targets:
    if t not in per:
        continue
    host = t.split("-")[0]
    runs = per[t]
    med = int(statistics.median(runs.values()))
    spread = f" ({min(runs.values()):,}–{max(runs.values()):,})" if len(runs) > 1 else ""
    nat, floor = per.get(f"{host}-native"), per.get(f"{host}-floor")
    if nat:
        ratios = [v / nat[r] for r, v in runs.items() if r in nat]
        x = f"{statistics.median(ratios):.3f}"
        if len(ratios) > 1:
            x += f" ({min(ratios):.3f}–{max(ratios):.3f})"
    else:
        x = "n/a"
    f = f"{med - int(statistics.median(floor.values())):+,}" if floor else "n/a"
    print(f"| {t} | {med:,}{spread} | {x} | {f} |")
PY
