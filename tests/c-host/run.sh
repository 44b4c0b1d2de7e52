#!/usr/bin/env bash
# Builds the plain C host against include/mosn_extension.h and the built library, runs it.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
out=$root/build/output
mkdir -p "$root/build/c-host"
cc -std=c11 -Wall -Wextra -Werror -O1 -I"$root/include" "$root/tests/c-host/main.c" \
   -L"$out" -l:mosn_extension.so -Wl,-rpath,"$out" -lpthread -o "$root/build/c-host/c-host"
echo "c-host: $root/build/c-host/c-host $root/examples/unit-routing/mosn.json"
"$root/build/c-host/c-host" "$root/examples/unit-routing/mosn.json"
# The same under valgrind's memcheck (issue 14): no invalid access, no leak of the parent.
if [ "${MEMCHECK:-1}" != 0 ]; then
  command -v valgrind >/dev/null || { echo "c-host: valgrind missing (make install-deps)"; exit 1; }
  echo "c-host: under valgrind memcheck"
  log=$root/build/c-host/memcheck.log
  rc=0
  valgrind -q --error-exitcode=9 --leak-check=full --show-leak-kinds=definite,indirect \
    --errors-for-leak-kinds=definite,indirect --child-silent-after-fork=yes \
    "$root/build/c-host/c-host" "$root/examples/unit-routing/mosn.json" >"$log" 2>&1 || rc=$?
  grep -v '^mosn: ' "$log" || true
  [ "$rc" = 0 ] || { echo "c-host: memcheck failed (status $rc; log $log)"; exit 1; }
fi
