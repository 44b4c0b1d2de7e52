#!/usr/bin/env bash
# bench-hosts.sh — the module's cost on each host, measured in one run against the same backends:
#   (i)  Envoy + mosn module (mosn-ext start --host envoy)  vs  Envoy routing natively on `uid`
#        (header routes with safe_regex on uid ranges, static clusters), same --concurrency;
#   (ii) Nginx + mosn module (mosn-ext start --host nginx)  vs  Nginx natively
#        (map $http_uid with regexes, upstream blocks), same worker count.
# Every request carries `uid: 150` (-> s2). Backends are nginx servers answering
# `site sN from PORT` (fast, so the proxy is the bottleneck). Both sides write an access log
# (the module's contract logs every request; the native configs log the same fields).
# Each target gets a 1 s warm-up, then ROUNDS rounds of `wrk -t1 -c16 -d8s --latency`, module and
# native alternating (order flipped every round). Prints per-round numbers and a markdown summary
# (median req/s, median p99, ratio module/native) to stdout; progress goes to stderr.
#
# Env: ROUNDS=3 DURATION=8s CONNS=16 THREADS=1 CONCURRENCY=2 (Envoy workers = nginx workers)
#      BENCH_HOSTS="envoy nginx" (the hosts that get wrk runs)
#      MOSN_EXT_BIN (default build/output/mosn-ext), ENVOY_BIN (default: resolved from PATH),
#      KEEP=1 keeps the work dir (build/bench-runs/<stamp>),
#      BENCH_SKIP_MODULE=1 runs only the native rows (to check the script without the binary).
# Everything started here is stopped by PID on exit (trap).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
HARNESS="$ROOT/tests/harness"
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-8s}
CONNS=${CONNS:-16}
THREADS=${THREADS:-1}
CONCURRENCY=${CONCURRENCY:-2}
BENCH_HOSTS=${BENCH_HOSTS:-envoy nginx}   # which hosts get wrk runs
MOSN_EXT_BIN=${MOSN_EXT_BIN:-$ROOT/build/output/mosn-ext}
SKIP_MODULE=${BENCH_SKIP_MODULE:-0}

log() { printf '[bench] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

for t in wrk nginx curl python3; do command -v "$t" >/dev/null || die "$t not found"; done
if [ "$SKIP_MODULE" != 1 ]; then
  [ -x "$MOSN_EXT_BIN" ] || die "mosn-ext not found at $MOSN_EXT_BIN (build it, or BENCH_SKIP_MODULE=1 for native rows only)"
fi
ENVOY_BIN=${ENVOY_BIN:-$(cd "$ROOT/tests" && python3 -c 'from harness.hosts import envoy_binary; print(envoy_binary())')}
[ -x "$ENVOY_BIN" ] || die "envoy binary not found ($ENVOY_BIN)"

STAMP=$(date +%Y%m%d-%H%M%S)
WORK="$ROOT/build/bench-runs/$STAMP-$$"
mkdir -p "$WORK"

PIDS=()
NAMES=()
cleanup() {
  local rc=$?
  set +e
  for i in "${!PIDS[@]}"; do
    local pid=${PIDS[$i]}
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid" 2>/dev/null
    fi
  done
  for i in "${!PIDS[@]}"; do
    local pid=${PIDS[$i]} n=0
    while kill -0 "$pid" 2>/dev/null && [ $n -lt 100 ]; do sleep 0.1; n=$((n + 1)); done
    if kill -0 "$pid" 2>/dev/null; then
      log "${NAMES[$i]} (pid $pid) ignored SIGTERM; SIGKILL"
      kill -KILL "$pid" 2>/dev/null
    fi
    wait "$pid" 2>/dev/null
  done
  if [ "${KEEP:-0}" = 1 ] || [ $rc -ne 0 ]; then
    log "work dir kept: $WORK"
  else
    rm -rf "$WORK"
    rmdir "$ROOT/build/bench-runs" 2>/dev/null
  fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# start NAME DIR CMD... : run CMD in the background (foreground process), logs in DIR
start() {
  local name=$1 dir=$2; shift 2
  mkdir -p "$dir"
  "$@" >"$dir/host.stdout.log" 2>"$dir/host.stderr.log" </dev/null &
  PIDS+=($!)
  NAMES+=("$name")
  PID_OF_NAME[$name]=$!
  log "started $name (pid $!): $*"
}
declare -A PID_OF_NAME

# cpu_ticks PID : user+system clock ticks of PID and its children (nginx workers)
cpu_ticks() {
  local pid=$1 total=0 p
  for p in $pid $(pgrep -P "$pid" 2>/dev/null); do
    [ -r "/proc/$p/stat" ] || continue
    total=$((total + $(awk '{sub(/^.*\) /, ""); print $12 + $13}' "/proc/$p/stat")))
  done
  echo "$total"
}
CLK_TCK=$(getconf CLK_TCK)

# wait_http NAME PORT EXPECT : until GET / with uid 150 answers with a body containing EXPECT
wait_http() {
  local name=$1 port=$2 expect=$3 body="" i
  for i in $(seq 1 200); do
    body=$(curl --noproxy '*' -s -m 2 -H 'uid: 150' "http://127.0.0.1:$port/" 2>/dev/null || true)
    if [[ "$body" == *"$expect"* ]]; then log "$name ready on :$port ($body)"; return 0; fi
    sleep 0.1
  done
  die "$name on :$port not ready / wrong answer after 20 s: got '${body}', want '$expect' (logs in $WORK)"
}

read -r P_S1A P_S1B P_S2 P_S3 P_ENV_MOD P_ENV_NAT P_NGX_MOD P_NGX_NAT <<<"$(python3 "$HARNESS/ports.py" 8)"

# --- backends: one nginx, four servers ----------------------------------------------------------
B="$WORK/backends"; mkdir -p "$B"
{
  echo "worker_processes 1; daemon off; master_process on; pid $B/nginx.pid; error_log $B/error.log warn;"
  echo "events { worker_connections 4096; }"
  echo "http { access_log off; keepalive_requests 100000;"
  echo "  client_body_temp_path $B/cb; proxy_temp_path $B/px; fastcgi_temp_path $B/fc; uwsgi_temp_path $B/uw; scgi_temp_path $B/sc;"
  for sp in "s1:$P_S1A" "s1:$P_S1B" "s2:$P_S2" "s3:$P_S3"; do
    s=${sp%%:*}; p=${sp##*:}
    echo "  server { listen 127.0.0.1:$p; location / { default_type text/plain; return 200 \"site $s from $p\\n\"; } }"
  done
  echo "}"
} >"$B/nginx.conf"
nginx -t -q -p "$B/" -c "$B/nginx.conf" 2>"$B/nginx-t.log" || die "backend nginx.conf invalid: $(cat "$B/nginx-t.log")"
start backends "$B" nginx -p "$B/" -c "$B/nginx.conf"
for p in $P_S1A $P_S1B $P_S2 $P_S3; do
  for i in $(seq 1 100); do curl --noproxy '*' -s -m 1 -o /dev/null "http://127.0.0.1:$p/" && break; sleep 0.1; done
done
[ "$(curl --noproxy '*' -s "http://127.0.0.1:$P_S2/")" = "site s2 from $P_S2" ] || die "backend s2 not answering"
EXPECT="site s2 from $P_S2"

# --- regexes shared by the native configs (same semantics as the UNIT driver, i64 approximated) ---
RE_S1='^([1-9]|[1-9][0-9]|100)$'
RE_S2='^(10[1-9]|1[1-9][0-9]|200)$'
RE_S3='^[+-]?[0-9]{1,18}$'
FMT='mosn_access method=%REQ(:METHOD)% path=%REQ(:PATH)% status=%RESPONSE_CODE% cluster=%UPSTREAM_CLUSTER% upstream_host=%UPSTREAM_HOST% unit=%REQ(X-MOSN-ON-ENVOY-UNIT)% flags=%RESPONSE_FLAGS% details=%RESPONSE_CODE_DETAILS%'

# --- (i) Envoy native ------------------------------------------------------------------------------
EN="$WORK/envoy-native"; mkdir -p "$EN"
envoy_cluster() {  # name port...
  local name=$1; shift
  echo "  - name: $name"
  echo "    type: STATIC"
  echo "    connect_timeout: 1s"
  echo "    lb_policy: ROUND_ROBIN"
  echo "    load_assignment:"
  echo "      cluster_name: $name"
  echo "      endpoints:"
  echo "      - lb_endpoints:"
  for p in "$@"; do
    echo "        - endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: $p}}}"
  done
}
envoy_route() {  # regex cluster
  echo "              - match: {prefix: \"/\", headers: [{name: uid, string_match: {safe_regex: {regex: \"$1\"}}}]}"
  echo "                route: {cluster: $2}"
  echo "                request_headers_to_add: [{header: {key: x-mosn-on-envoy-unit, value: $2}, append_action: OVERWRITE_IF_EXISTS_OR_ADD}]"
}
{
  cat <<EOF
static_resources:
  listeners:
  - name: native
    address: {socket_address: {address: 127.0.0.1, port_value: $P_ENV_NAT}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: native
          access_log:
          - name: envoy.access_loggers.file
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
              path: $EN/access.log
              log_format: {text_format_source: {inline_string: "$FMT\n"}}
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}
          route_config:
            virtual_hosts:
            - name: sites
              domains: ["*"]
              routes:
EOF
  envoy_route "$RE_S1" s1
  envoy_route "$RE_S2" s2
  envoy_route "$RE_S3" s3
  echo "              - match: {prefix: \"/\"}"
  echo "                route: {cluster: all_sites}"
  echo "                request_headers_to_remove: [x-mosn-on-envoy-unit]"
  echo "  clusters:"
  envoy_cluster s1 "$P_S1A" "$P_S1B"
  envoy_cluster s2 "$P_S2"
  envoy_cluster s3 "$P_S3"
  envoy_cluster all_sites "$P_S1A" "$P_S1B" "$P_S2" "$P_S3"
} >"$EN/envoy.yaml"
"$ENVOY_BIN" --mode validate -c "$EN/envoy.yaml" --log-level error >"$EN/validate.log" 2>&1 \
  || die "native envoy.yaml invalid: $(tail -5 "$EN/validate.log")"
start envoy-native "$EN" "$ENVOY_BIN" -c "$EN/envoy.yaml" --concurrency "$CONCURRENCY" --use-dynamic-base-id \
  --log-level warn --file-flush-interval-msec 100

# --- (ii) Nginx native -----------------------------------------------------------------------------
NN="$WORK/nginx-native"; mkdir -p "$NN"
cat >"$NN/nginx.conf" <<EOF
worker_processes $CONCURRENCY;
daemon off;
master_process on;
pid $NN/nginx.pid;
error_log $NN/error.log warn;
events { worker_connections 4096; }
http {
  client_body_temp_path $NN/cb; proxy_temp_path $NN/px; fastcgi_temp_path $NN/fc; uwsgi_temp_path $NN/uw; scgi_temp_path $NN/sc;
  log_format mosn 'mosn_access method=\$request_method path=\$request_uri status=\$status cluster=\$site upstream_host=\$upstream_addr unit=\$unit flags=- details=\$upstream_status';
  access_log $NN/access.log mosn;
  map \$http_uid \$site {
    "~$RE_S1" s1;
    "~$RE_S2" s2;
    "~$RE_S3" s3;
    default all_sites;
  }
  map \$site \$unit { all_sites ""; default \$site; }
  upstream s1 { server 127.0.0.1:$P_S1A; server 127.0.0.1:$P_S1B; keepalive 16; }
  upstream s2 { server 127.0.0.1:$P_S2; keepalive 16; }
  upstream s3 { server 127.0.0.1:$P_S3; keepalive 16; }
  upstream all_sites { server 127.0.0.1:$P_S1A; server 127.0.0.1:$P_S1B; server 127.0.0.1:$P_S2; server 127.0.0.1:$P_S3; keepalive 16; }
  server {
    listen 127.0.0.1:$P_NGX_NAT;
    location / {
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header x-mosn-on-envoy-unit \$unit;   # replaces a client-sent one; empty = not sent
      proxy_pass http://\$site;
    }
  }
}
EOF
nginx -t -q -p "$NN/" -c "$NN/nginx.conf" 2>"$NN/nginx-t.log" || die "native nginx.conf invalid: $(cat "$NN/nginx-t.log")"
start nginx-native "$NN" nginx -p "$NN/" -c "$NN/nginx.conf"

# --- module hosts ---------------------------------------------------------------------------------
if [ "$SKIP_MODULE" != 1 ]; then
  for h in envoy nginx; do
    D="$WORK/$h-module"; mkdir -p "$D"
    if [ $h = envoy ]; then P=$P_ENV_MOD; else P=$P_NGX_MOD; fi
    python3 "$HARNESS/config.py" --listen "$P" --s1a "$P_S1A" --s1b "$P_S1B" --s2 "$P_S2" --s3 "$P_S3" --minimal >"$D/mosn.json"
    "$MOSN_EXT_BIN" check -c "$D/mosn.json" >"$D/check.log" 2>&1 || die "mosn-ext check rejected the bench config: $(cat "$D/check.log")"
    start "$h-module" "$D" "$MOSN_EXT_BIN" start --host $h -c "$D/mosn.json" --work-dir "$D" --concurrency "$CONCURRENCY"
  done
fi

TARGETS=(envoy-native nginx-native)
declare -A PORT_OF=([envoy-native]=$P_ENV_NAT [nginx-native]=$P_NGX_NAT [envoy-module]=$P_ENV_MOD [nginx-module]=$P_NGX_MOD)
[ "$SKIP_MODULE" = 1 ] || TARGETS+=(envoy-module nginx-module)
for t in "${TARGETS[@]}"; do wait_http "$t" "${PORT_OF[$t]}" "$EXPECT"; done

# --- wrk ------------------------------------------------------------------------------------------
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
  # The proxy's own CPU per request: steadier than req/s on a shared 2-core machine.
  cpu_us=$(awk -v t=$((c1 - c0)) -v n="$reqs" -v hz="$CLK_TCK" 'BEGIN{ printf "%.1f", (n > 0) ? t * 1e6 / hz / n : 0 }')
  rps=$(awk '/^Requests\/sec:/{print $2}' <<<"$out")
  p99=$(awk '$1=="99%"{print $2}' <<<"$out")
  non2xx=$(awk '/Non-2xx or 3xx responses:/{print $NF}' <<<"$out"); non2xx=${non2xx:-0}
  errs=$(awk '/Socket errors:/{gsub(/,/,""); print $4+$6+$8+$10}' <<<"$out"); errs=${errs:-0}
  [ -n "$rps" ] && [ -n "$p99" ] || die "could not parse wrk output for $t:\n$out"
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$t" "$r" "$rps" "$(to_ms "$p99")" "$((non2xx + errs))" "$cpu_us" >>"$RESULTS"
  log "round $r $t: $rps req/s, p99 $p99, proxy CPU ${cpu_us} us/req, non-2xx+errors $((non2xx + errs))"
}

for t in "${TARGETS[@]}"; do  # warm-up (connections, caches), not recorded
  wrk -t1 -c"$CONNS" -d1s -H 'uid: 150' "http://127.0.0.1:${PORT_OF[$t]}/" >/dev/null 2>&1 || true
done
for r in $(seq 1 "$ROUNDS"); do
  for host in $BENCH_HOSTS; do
    if [ "$SKIP_MODULE" = 1 ]; then order=(native)
    elif [ $((r % 2)) -eq 1 ]; then order=(module native)
    else order=(native module); fi
    for kind in "${order[@]}"; do run_wrk "$host-$kind" "$r"; done
  done
done

# --- report ---------------------------------------------------------------------------------------
python3 - "$RESULTS" "$ROUNDS" "$DURATION" "$CONNS" "$THREADS" "$CONCURRENCY" <<'EOF'
import statistics, sys
path, rounds, dur, conns, threads, conc = sys.argv[1:]
rows = [l.rstrip("\n").split("\t") for l in open(path) if l.strip()]
by = {}
for t, r, rps, p99, bad, cpu in rows:
    by.setdefault(t, []).append((int(r), float(rps), float(p99), int(bad), float(cpu)))
print(f"## bench-hosts: wrk -t{threads} -c{conns} -d{dur} --latency -H 'uid: 150', {rounds} alternating rounds, "
      f"{conc} workers per host\n")
print("| target | round | req/s | p99 (ms) | proxy CPU µs/req | non-2xx + socket errors |")
print("|---|---:|---:|---:|---:|---:|")
for t in sorted(by):
    for r, rps, p99, bad, cpu in sorted(by[t]):
        print(f"| {t} | {r} | {rps:,.0f} | {p99:.2f} | {cpu:.1f} | {bad} |")
print()
print("| host | module req/s | native req/s | module/native req/s | module p99 (ms) | native p99 (ms) | module/native p99 | module CPU µs/req | native CPU µs/req | extra CPU µs/req |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for host in ("envoy", "nginx"):
    m, n = by.get(f"{host}-module"), by.get(f"{host}-native")
    med = lambda xs, i: statistics.median(x[i] for x in xs)
    if n and m:
        mr, nr, mp, np_, mc, nc = med(m, 1), med(n, 1), med(m, 2), med(n, 2), med(m, 4), med(n, 4)
        print(f"| {host} | {mr:,.0f} | {nr:,.0f} | {mr / nr:.2f} | {mp:.2f} | {np_:.2f} | {mp / np_:.2f} | {mc:.1f} | {nc:.1f} | {mc - nc:+.1f} |")
    elif n:
        print(f"| {host} | n/a | {med(n, 1):,.0f} | n/a | n/a | {med(n, 2):.2f} | n/a |")
print("\n(medians over the rounds; both sides write an access log; backends: nginx `return 200`)")
EOF
