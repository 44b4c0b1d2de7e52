#!/usr/bin/env bash
# Runs one cargo-fuzz target for a while (one libFuzzer process) and prints what it did:
#   scripts/fuzz.sh <target> [seconds]
# New inputs go to build/fuzz/corpus/<target> (the checked-in fuzz/corpus/<target> is read,
# not written); a crash is saved under fuzz/artifacts/<target>/. Needs the nightly toolchain
# and cargo-fuzz (installed here if missing). Exit 1 if the target crashed.
set -uo pipefail
target=${1:?usage: scripts/fuzz.sh <target> [seconds]}
seconds=${2:-600}
root=$(cd "$(dirname "$0")/.." && pwd)
work=$root/build/fuzz
mkdir -p "$work/corpus/$target" "$work/logs"
log=$work/logs/$target.log
cd "$root/fuzz"
# cargo-fuzz itself, once (a fresh machine has the nightly toolchain but not the subcommand).
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz (cargo install cargo-fuzz --locked)"
  cargo +nightly install cargo-fuzz --locked >"$work/logs/cargo-fuzz-install.log" 2>&1 \
    || { tail -20 "$work/logs/cargo-fuzz-install.log"; echo "fuzz: could not install cargo-fuzz"; exit 1; }
fi
# -a: debug assertions and overflow checks on (an overflow is a finding too).
if ! cargo +nightly fuzz build -a "$target" >"$log.build" 2>&1; then
  tail -30 "$log.build"; echo "fuzz $target: build failed"; exit 1
fi
cargo +nightly fuzz run -a "$target" "$work/corpus/$target" "corpus/$target" -- \
  -max_total_time="$seconds" -print_final_stats=1 -timeout=10 -rss_limit_mb=4096 >"$log" 2>&1
rc=$?
execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
final=$(grep -E '^#[0-9]+[[:space:]]+(DONE|pulse|NEW|REDUCE)' "$log" | tail -1)
cov=$(grep -o 'cov: [0-9]*' <<<"$final" | grep -o '[0-9]*')
ft=$(grep -o 'ft: [0-9]*' <<<"$final" | grep -o '[0-9]*')
corp=$(grep -o 'corp: [0-9]*/[0-9A-Za-z]*' <<<"$final" | cut -d' ' -f2)
if [ $rc -eq 0 ]; then
  echo "fuzz $target: ${seconds}s, ${execs:-?} executions, cov ${cov:-?}, ft ${ft:-?}, corpus ${corp:-?}, no crash"
else
  echo "fuzz $target: CRASH after ${execs:-?} executions (cov ${cov:-?}, ft ${ft:-?}); log $log"
  grep -E 'panicked at|ERROR: libFuzzer|SUMMARY|Test unit written' "$log" | head -8
  exit 1
fi
