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
