#!/usr/bin/env bash
# make deb: the Nginx side as a Debian package, libnginx-mod-http-mosn, built from build/output/
# (make build-nginx-module first). Installs like Debian's own nginx modules:
#   /usr/lib/nginx/modules/ngx_http_mosn_module.so   the module
#   /usr/lib/nginx/modules/mosn_extension.so         the library (the module's RUNPATH is $ORIGIN)
#   /usr/share/nginx/modules-available/mod-http-mosn.conf   load_module, linked into
#   /etc/nginx/modules-enabled/50-mod-http-mosn.conf on a fresh install
#   /usr/bin/mosn-ext                                check / route-check / start
# and depends on the nginx ABI its module was built against (nginx-abi-<version>).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=$root/build/output
for f in ngx_http_mosn_module.so mosn_extension.so mosn-ext; do
  [ -f "$out/$f" ] || { echo "deb: $out/$f missing (make build-nginx-module)"; exit 1; }
done
pkg=libnginx-mod-http-mosn
version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$root/Cargo.toml" | head -1)
arch=$(dpkg --print-architecture)
abi=$(dpkg -s nginx 2>/dev/null | sed -n 's/^Provides:.*\(nginx-abi-[^ ,]*\).*/\1/p')
[ -n "$abi" ] || { echo "deb: the installed nginx names no nginx-abi (dpkg -s nginx)"; exit 1; }
# The newest glibc symbol version either binary needs.
glibc=$(objdump -T "$out/mosn_extension.so" "$out/ngx_http_mosn_module.so" | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -1)

stage=$root/build/deb/$pkg
rm -rf "$stage"
mkdir -p "$stage/DEBIAN" "$stage/usr/lib/nginx/modules" "$stage/usr/share/nginx/modules-available" \
         "$stage/usr/bin" "$stage/usr/share/doc/$pkg"
install -m 644 "$out/ngx_http_mosn_module.so" "$out/mosn_extension.so" "$stage/usr/lib/nginx/modules/"
install -m 755 "$out/mosn-ext" "$stage/usr/bin/"
strip --strip-debug "$stage/usr/lib/nginx/modules/"*.so "$stage/usr/bin/mosn-ext"
echo "load_module modules/ngx_http_mosn_module.so;" >"$stage/usr/share/nginx/modules-available/mod-http-mosn.conf"
cat >"$stage/usr/share/doc/$pkg/README" <<'DOC'
mosn-extension for nginx: MOSN's stream filters, router and upstream (configured by a MOSN
mosn.json) inside nginx. The module is loaded from /etc/nginx/modules-enabled; in http {}:

    mosn_config /etc/mosn/mosn.json;
    upstream mosn_upstream { mosn_upstream; keepalive 64; }
    server { listen 2990; mosn_listener serverListener;
             location / { proxy_pass http://mosn_upstream; proxy_http_version 1.1;
                          proxy_set_header Connection ""; proxy_set_header Host $http_host; } }

`mosn-ext check -c /etc/mosn/mosn.json` names any field it can not honour; `nginx -t` does too.
DOC
cat >"$stage/DEBIAN/control" <<CTL
Package: $pkg
Version: $version
Architecture: $arch
Section: httpd
Priority: optional
Maintainer: mosn-extension developers <mosn-extension@localhost>
Depends: $abi, libc6 (>= $glibc)
Description: MOSN's filters, router and upstream for nginx
 Runs MOSN's stream filters, router and upstream stack (virtual hosts, routes,
 clusters, subset load balancing, health checks, circuit breakers, retries)
 inside nginx, configured by a MOSN mosn.json.
CTL
cat >"$stage/DEBIAN/postinst" <<'SH'
#!/bin/sh
set -e
# A fresh install enables the module (an admin's later removal of the link is kept).
# DPKG_ROOT: set by dpkg --root with --force-script-chrootless (the package test does that).
if [ "$1" = configure ] && [ -z "$2" ] && [ -d "$DPKG_ROOT/etc/nginx/modules-enabled" ]; then
  ln -sf /usr/share/nginx/modules-available/mod-http-mosn.conf "$DPKG_ROOT/etc/nginx/modules-enabled/50-mod-http-mosn.conf"
fi
SH
cat >"$stage/DEBIAN/prerm" <<'SH'
#!/bin/sh
set -e
if [ "$1" = remove ]; then
  rm -f "$DPKG_ROOT/etc/nginx/modules-enabled/50-mod-http-mosn.conf"
fi
SH
chmod 755 "$stage/DEBIAN/postinst" "$stage/DEBIAN/prerm"
deb=$out/${pkg}_${version}_${arch}.deb
dpkg-deb --root-owner-group --build "$stage" "$deb" >/dev/null
echo "deb: $deb ($(dpkg-deb -f "$deb" Depends))"
