#!/usr/bin/env bash
# Builds ngx_http_mosn_module.so out of tree against Debian's nginx-dev (1.22) and copies it
# to build/output/ next to mosn_extension.so (the module finds it through RUNPATH $ORIGIN).
#
#   bash nginx-module/build.sh        (run `make build-l7` first; `make build-nginx-module` does both)
#
# Idempotent: configure (~10 s) runs again only when its inputs change (this script, the
# addon `config`, Debian's conf_flags, the compiler flags or the paths); `make` then rebuilds
# only what changed. Nothing is written outside build/nginx-module/ and build/output/.
set -euo pipefail

MODULE_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$MODULE_DIR/.." && pwd)"
NGX_SRC="${NGX_SRC:-/usr/share/nginx/src}"
# ASAN=1 (make asan): an AddressSanitizer build into build/asan/ next to the ASan library.
if [ "${ASAN:-0}" = 1 ]; then
    BUILD_DIR="$ROOT/build/nginx-module-asan"
    export MOSN_LIB_DIR="$ROOT/build/asan"
    SAN_OPT="-fsanitize=address -fno-omit-frame-pointer"
else
    BUILD_DIR="$ROOT/build/nginx-module"
    export MOSN_LIB_DIR="$ROOT/build/output"
    SAN_OPT=""
fi
export MOSN_INC_DIR="$ROOT/include"

die() { echo "nginx-module/build.sh: $*" >&2; exit 1; }

[ -f "$NGX_SRC/configure" ] && [ -f "$NGX_SRC/conf_flags" ] ||
    die "$NGX_SRC/configure or conf_flags missing: install nginx-dev (apt-get install nginx-dev)"
[ -f "$MOSN_LIB_DIR/mosn_extension.so" ] ||
    die "$MOSN_LIB_DIR/mosn_extension.so missing: run 'make build-l7' first"
[ -f "$MOSN_INC_DIR/mosn_extension.h" ] || die "$MOSN_INC_DIR/mosn_extension.h missing"
command -v dpkg-buildflags >/dev/null || die "dpkg-buildflags not found (apt-get install dpkg-dev)"

# Debian's ABI-relevant configure flags (NGX_CONF_FLAGS=(...)), as its nginx_mod buildsystem does.
# shellcheck disable=SC1091
. "$NGX_SRC/conf_flags"

cd "$ROOT"   # dpkg-buildflags maps the cwd (-ffile-prefix-map): keep it stable
CC_OPT="$(dpkg-buildflags --get CFLAGS) -fPIC $(dpkg-buildflags --get CPPFLAGS) $SAN_OPT"
LD_OPT="$(dpkg-buildflags --get LDFLAGS) -fPIC $SAN_OPT"

mkdir -p "$BUILD_DIR" "$MOSN_LIB_DIR"

stamp_text() {
    printf '%s\n' "$CC_OPT" "$LD_OPT" "$MOSN_LIB_DIR" "$MOSN_INC_DIR" "$MODULE_DIR" "$NGX_SRC" "${NGX_CONF_FLAGS[@]}"
    cat "$MODULE_DIR/config" "$NGX_SRC/conf_flags" "${BASH_SOURCE[0]}"
    nginx -v 2>&1 || true
}
STAMP="$BUILD_DIR/.configure-stamp"
WANT="$(stamp_text | sha256sum | cut -d' ' -f1)"

if [ ! -f "$BUILD_DIR/Makefile" ] || [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ]; then
    echo "nginx-module: configure (into $BUILD_DIR)"
    rm -f "$STAMP"
    (
        cd "$NGX_SRC"
        ./configure \
            --with-cc-opt="$CC_OPT" \
            --with-ld-opt="$LD_OPT" \
            "${NGX_CONF_FLAGS[@]}" \
            --add-dynamic-module="$MODULE_DIR" \
            --builddir="$BUILD_DIR"
    ) >"$BUILD_DIR/configure.log" 2>&1 || { tail -30 "$BUILD_DIR/configure.log" >&2; die "configure failed (log: $BUILD_DIR/configure.log)"; }
    echo "$WANT" >"$STAMP"
fi

# The module must compile warning-free. nginx's configure puts -W (= -Wextra) -Wall
# -Werror into the Makefile's CFLAGS (auto/cc/gcc); check it did rather than add them to
# --with-cc-opt, which configure's feature tests also use (a failing test changes the ABI).
CFLAGS_LINE="$(grep -m1 '^CFLAGS =' "$BUILD_DIR/Makefile" || true)"
for flag in -W -Wall -Werror; do
    case " $CFLAGS_LINE " in
        *" $flag "*) ;;
        *) die "CFLAGS in $BUILD_DIR/Makefile lack $flag: $CFLAGS_LINE" ;;
    esac
done

echo "nginx-module: make modules"
make -f "$BUILD_DIR/Makefile" -C "$NGX_SRC" modules

SO="$BUILD_DIR/ngx_http_mosn_module.so"
[ -f "$SO" ] || die "$SO was not produced"
install -m 0755 "$SO" "$MOSN_LIB_DIR/ngx_http_mosn_module.so"

# Sanity: the module needs mosn_extension.so by SONAME and finds it next to itself.
if command -v readelf >/dev/null; then
    readelf -d "$MOSN_LIB_DIR/ngx_http_mosn_module.so" | grep -q 'NEEDED.*\[mosn_extension.so\]' ||
        die "module does not record NEEDED mosn_extension.so"
    readelf -d "$MOSN_LIB_DIR/ngx_http_mosn_module.so" | grep -q 'R\(UN\)\?PATH.*\[\$ORIGIN\]' ||
        die "module has no RUNPATH \$ORIGIN"
fi
echo "built: $MOSN_LIB_DIR/ngx_http_mosn_module.so"
