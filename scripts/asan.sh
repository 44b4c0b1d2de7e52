#!/usr/bin/env bash
# make asan: the library (nightly Rust, -Zsanitizer=address) and the nginx module (gcc
# -fsanitize=address) built with AddressSanitizer, and the whole shared conformance suite run on
# nginx with them (ASan + LeakSanitizer). Reports go to build/asan/reports/; any report fails.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
out=$root/build/asan
reports=$out/reports
mkdir -p "$out"
rm -rf "$reports"; mkdir -p "$reports"

rustup toolchain list | grep -q '^nightly' || { echo "asan: needs the nightly toolchain (rustup toolchain install nightly)"; exit 1; }
echo "asan: library (nightly, -Zsanitizer=address)"
RUSTFLAGS="-Zsanitizer=address" cargo +nightly build --release -p mosn-extension-ffi \
  --target x86_64-unknown-linux-gnu --target-dir target/asan
install -m 755 target/asan/x86_64-unknown-linux-gnu/release/libmosn_extension_ffi.so "$out/mosn_extension.so"
# mosn-ext finds the host modules next to itself.
install -m 755 build/output/mosn-ext "$out/mosn-ext"
install -m 755 build/output/libmosn_envoy.so "$out/libmosn_envoy.so"
echo "asan: nginx module (-fsanitize=address)"
ASAN=1 bash nginx-module/build.sh

libasan=$(gcc -print-file-name=libasan.so)
[ -f "$libasan" ] || { echo "asan: gcc's libasan not found"; exit 1; }
echo "asan: the shared suite on nginx (LD_PRELOAD=$libasan)"
rc=0
MOSN_EXT_BIN="$out/mosn-ext" MOSN_HOST_LD_PRELOAD="$libasan" \
  ASAN_OPTIONS="log_path=$reports/asan:detect_leaks=1:abort_on_error=0:halt_on_error=0:detect_odr_violation=0" \
  LSAN_OPTIONS="suppressions=$root/tests/asan/lsan.supp:print_suppressions=0" \
  python3 -m pytest -q -p no:cacheprovider tests/test_hosts.py tests/test_nginx_only.py tests/test_tls.py tests/test_reload.py -k "nginx" || rc=$?
n=$(find "$reports" -type f | wc -l)
echo "asan: suite exit status $rc; sanitizer reports: $n (in $reports)"
if [ "$n" -gt 0 ]; then
  for f in $(find "$reports" -type f | head -5); do echo "--- $f"; head -40 "$f"; done
  exit 1
fi
exit "$rc"
