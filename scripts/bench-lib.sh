# bench-lib.sh — shared by bench-hosts.sh (wrk) and bench-instructions.sh (callgrind); sourced.
#
# Sets up, on free 127.0.0.1 ports, the four backends (benches/peers/backends.nginx.conf) and
# starts any of the targets below, each from its template in benches/peers/ (filled by
# render.py) or, for the module, from `mosn-ext start --print-config` on the bench config
# (tests/harness/config.py --minimal: the metadata/UNIT filter, unit routing, round robin).
#
#   envoy-native  header routes + STATIC clusters       nginx-native  map $http_uid + upstreams
#   envoy-floor   fixed route, no decision              nginx-floor   fixed upstream
#   envoy-lua     envoy.filters.http.lua                nginx-lua     set_by_lua + balancer_by_lua
#   envoy-module  the mosn module filter + clusters     nginx-njs     js_set (njs)
#   envoy-noopmodule  envoy-native + the module as a filter that does nothing (`{"noop": true}`)
#                                                       nginx-module  the mosn nginx module
#   The module targets log the peers' access-log fields; *-module-fulllog (not run by default)
#   log the generated config's whole format.
#
# Every process started here is recorded and stopped by PID on exit (bench_cleanup, trapped).
# The caller sets WORK (a fresh directory) before bench_backends.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
HARNESS="$ROOT/tests/harness"
PEERS="$ROOT/benches/peers"
MOSN_EXT_BIN=${MOSN_EXT_BIN:-$ROOT/build/output/mosn-ext}
MODULE_DIR=${MODULE_DIR:-$(dirname "$MOSN_EXT_BIN")}
ALL_TARGETS="envoy-native envoy-floor envoy-lua envoy-noopmodule envoy-module nginx-native nginx-floor nginx-lua nginx-njs nginx-module"
# On request only (TARGETS=...): the module with the generated config's whole access-log format.
EXTRA_TARGETS="envoy-module-fulllog nginx-module-fulllog"
# The same access-log fields on every Envoy peer (the module's generated config has its own).
ENVOY_LOG_FORMAT='mosn_access method=%REQ(:METHOD)% path=%REQ(:PATH)% status=%RESPONSE_CODE% cluster=%UPSTREAM_CLUSTER% upstream_host=%UPSTREAM_HOST% unit=%REQ(X-MOSN-ON-ENVOY-UNIT)% flags=%RESPONSE_FLAGS% details=%RESPONSE_CODE_DETAILS%'

log() { printf '[bench] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

bench_need() {  # the tools and binaries a run needs
  local t
  for t in nginx curl python3 "$@"; do command -v "$t" >/dev/null || die "$t not found (make install-deps)"; done
  [ -x "$MOSN_EXT_BIN" ] || die "mosn-ext not found at $MOSN_EXT_BIN (make build-l7 build-nginx-module)"
  ENVOY_BIN=${ENVOY_BIN:-$(cd "$ROOT/tests" && python3 -c 'from harness.hosts import envoy_binary; print(envoy_binary())')}
  [ -x "$ENVOY_BIN" ] || die "envoy binary not found ($ENVOY_BIN)"
}

declare -A PID_OF_NAME PORT_OF
PIDS=()
NAMES=()

bench_stop_pid() {  # PID NAME: SIGTERM, up to 30 s (valgrind writes its profile), then SIGKILL
  local pid=$1 name=$2 n=0
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null
  while kill -0 "$pid" 2>/dev/null && [ $n -lt 300 ]; do sleep 0.1; n=$((n + 1)); done
  if kill -0 "$pid" 2>/dev/null; then
    log "$name (pid $pid) ignored SIGTERM; SIGKILL"
    kill -KILL "$pid" 2>/dev/null
  fi
  wait "$pid" 2>/dev/null || true
}

bench_cleanup() {
  local rc=$?
  set +e
  local i
  for i in "${!PIDS[@]}"; do kill -TERM "${PIDS[$i]}" 2>/dev/null; done
  for i in "${!PIDS[@]}"; do bench_stop_pid "${PIDS[$i]}" "${NAMES[$i]}"; done
  if [ "${KEEP:-0}" = 1 ] || [ $rc -ne 0 ]; then
    log "work dir kept: $WORK"
  else
    rm -rf "$WORK"
    rmdir "$ROOT/build/bench-runs" 2>/dev/null
  fi
  exit $rc
}

# start NAME DIR CMD... : CMD in the background (stdin closed), logs in DIR, PID recorded
start() {
  local name=$1 dir=$2; shift 2
  mkdir -p "$dir"
  "$@" >"$dir/host.stdout.log" 2>"$dir/host.stderr.log" </dev/null &
  PIDS+=($!)
  NAMES+=("$name")
  PID_OF_NAME[$name]=$!
  log "started $name (pid $!): $*"
}

# cpu_ticks PID : user+system clock ticks of PID and its children (nginx workers)
cpu_ticks() {
  local pid=$1 total=0 p
  for p in $pid $(pgrep -P "$pid" 2>/dev/null); do
    [ -r "/proc/$p/stat" ] || continue
    total=$((total + $(awk '{sub(/^.*\) /, ""); print $12 + $13}' "/proc/$p/stat")))
  done
  echo "$total"
}

# wait_http NAME PORT EXPECT [TRIES] : until GET / with uid 150 answers with a body containing
# EXPECT (0.1 s between tries; a target that died stops the wait)
wait_http() {
  local name=$1 port=$2 expect=$3 tries=${4:-200} body="" i
  for i in $(seq 1 "$tries"); do
    body=$(curl --noproxy '*' -s -m 5 -H 'uid: 150' "http://127.0.0.1:$port/" 2>/dev/null || true)
    if [[ "$body" == *"$expect"* ]]; then log "$name ready on :$port ($body)"; return 0; fi
    if [ -n "${PID_OF_NAME[$name]:-}" ] && ! kill -0 "${PID_OF_NAME[$name]}" 2>/dev/null; then
      die "$name exited before answering (logs in $WORK/$name)"
    fi
    sleep 0.1
  done
  die "$name on :$port not ready / wrong answer: got '${body}', want '$expect' (logs in $WORK/$name)"
}

# bench_backends : ports for the backends and every target, the backends started
bench_backends() {
  read -r P_S1A P_S1B P_S2 P_S3 <<<"$(python3 "$HARNESS/ports.py" 4)"
  local t ports
  local all="$ALL_TARGETS $EXTRA_TARGETS"
  read -r -a ports <<<"$(python3 "$HARNESS/ports.py" "$(wc -w <<<"$all")")"
  local i=0
  for t in $all; do PORT_OF[$t]=${ports[$i]}; i=$((i + 1)); done
  local B="$WORK/backends"; mkdir -p "$B"
  render backends.nginx.conf "$B" 0 >"$B/nginx.conf"
  nginx -t -q -p "$B/" -c "$B/nginx.conf" 2>"$B/nginx-t.log" || die "backend nginx.conf invalid: $(cat "$B/nginx-t.log")"
  start backends "$B" nginx -p "$B/" -c "$B/nginx.conf" -e "$B/error.log" -g "daemon off;"
  local p
  for p in $P_S1A $P_S1B $P_S2 $P_S3; do
    for i in $(seq 1 100); do curl --noproxy '*' -s -m 1 -o /dev/null "http://127.0.0.1:$p/" && break; sleep 0.1; done
  done
  EXPECT="site s2 from $P_S2"
  [ "$(curl --noproxy '*' -s "http://127.0.0.1:$P_S2/")" = "$EXPECT" ] || die "backend s2 not answering"
}

# render TEMPLATE DIR PORT [WORKERS] : the template filled for a target in DIR
render() {
  python3 "$PEERS/render.py" "$PEERS/$1" DIR="$2" PORT="$3" WORKERS="${4:-1}" \
    S1A="$P_S1A" S1B="$P_S1B" S2="$P_S2" S3="$P_S3" ENVOY_LOG_FORMAT="$ENVOY_LOG_FORMAT"
}

# peer_log_fields HOST FILE : the generated config's access-log format cut to the peers'
# fields (ENVOY_LOG_FORMAT, benches/peers/nginx-common.part), each from the module's own source;
# on Envoy the filter is told which log filter state to write (`log_filter_state`).
peer_log_fields() {
  python3 - "$1" "$2" <<'PY'
import re, sys
host, path = sys.argv[1], sys.argv[2]
text = open(path).read()
if host == "envoy":
    fmt = ("mosn_access method=%REQ(:METHOD)% path=%REQ(:PATH)% status=%RESPONSE_CODE% cluster=%UPSTREAM_CLUSTER% "
           "upstream_host=%UPSTREAM_HOST% unit=%FILTER_STATE(mosn.unit:PLAIN)% flags=%DYNAMIC_METADATA(mosn:flags)% "
           "details=%RESPONSE_CODE_DETAILS%\\n")
    new, n = re.subn(r'inline_string: "mosn_access [^"]*"', lambda m: f'inline_string: "{fmt}"', text)
    # ... which reads mosn.unit only: the filter need not write mosn.live_streams.
    new, k = re.subn(r'(\\"listener\\":\\"[^\\"]*\\")', lambda m: m.group(1) + r',\"log_filter_state\":[\"mosn.unit\"]', new)
    if k != 1:
        sys.exit(f"peer_log_fields: {k} module filter configs in {path}, want 1")
else:
    fmt = ("mosn_access method=$request_method path=$request_uri status=$status cluster=$mosn_cluster "
           "upstream_host=$mosn_upstream_host unit=$mosn_unit flags=$mosn_flags details=$mosn_details")
    new, n = re.subn(r'log_format mosn "mosn_access [^"]*"', lambda m: f'log_format mosn "{fmt}"', text)
if n != 1:
    sys.exit(f"peer_log_fields: {n} access-log formats in {path}, want 1")
open(path, "w").write(new)
PY
}

# bench_launch TARGET WORKERS [PREFIX...] : writes the target's config, starts it (under PREFIX,
# e.g. valgrind; nginx then runs without a master process) and records its PID and port
bench_launch() {
  local t=$1 workers=$2; shift 2
  local D="$WORK/$t" port=${PORT_OF[$t]} host=${t%%-*} kind=${t#*-}
  mkdir -p "$D"
  local master=on
  [ $# -gt 0 ] && master=off
  if [ "$kind" = module ] || [ "$kind" = module-fulllog ]; then
    # What `mosn-ext start --host $host` runs, written out so it can run under PREFIX too.
    python3 "$HARNESS/config.py" --listen "$port" --s1a "$P_S1A" --s1b "$P_S1B" --s2 "$P_S2" --s3 "$P_S3" --minimal >"$D/mosn.json"
    "$MOSN_EXT_BIN" check -c "$D/mosn.json" >"$D/check.log" 2>&1 || die "mosn-ext check rejected the bench config: $(cat "$D/check.log")"
    local file=nginx.conf; [ "$host" = envoy ] && file=envoy.yaml
    "$MOSN_EXT_BIN" start --host "$host" -c "$D/mosn.json" --work-dir "$D" --concurrency "$workers" \
      --module-dir "$MODULE_DIR" --print-config >"$D/$file" || die "mosn-ext could not write $D/$file"
    # The module logs the peers' fields (equal work); module-fulllog keeps the generated format
    # (also attempts, duration_ms, live_streams, ...), what `mosn-ext start` runs.
    [ "$kind" = module ] && peer_log_fields "$host" "$D/$file"
  elif [ "$host" = envoy ]; then
    render "$t.yaml" "$D" "$port" >"$D/envoy.yaml"
  else
    render "$t.conf" "$D" "$port" "$workers" >"$D/nginx.conf"
  fi
  if [ "$host" = envoy ]; then
    ENVOY_DYNAMIC_MODULES_SEARCH_PATH="$MODULE_DIR" "$ENVOY_BIN" --mode validate -c "$D/envoy.yaml" --log-level error \
      >"$D/validate.log" 2>&1 || die "$t envoy.yaml invalid: $(tail -5 "$D/validate.log")"
    start "$t" "$D" env ENVOY_DYNAMIC_MODULES_SEARCH_PATH="$MODULE_DIR" "$@" "$ENVOY_BIN" -c "$D/envoy.yaml" \
      --concurrency "$workers" --disable-hot-restart --log-level warn --file-flush-interval-msec 100
  else
    nginx -t -q -p "$D/" -c "$D/nginx.conf" -e "$D/error.log" 2>"$D/nginx-t.log" || die "$t nginx.conf invalid: $(cat "$D/nginx-t.log")"
    start "$t" "$D" "$@" nginx -p "$D/" -c "$D/nginx.conf" -e "$D/error.log" -g "daemon off; master_process $master;"
  fi
}
