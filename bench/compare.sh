#!/usr/bin/env bash
# Load benchmark, self-contained: tokengate against nginx doing the same header check in
# front of the same upstream (nginx answering {"ok":true}), on loopback, in the same
# run, rounds interleaved. Upstream and gateways share CPU 0, wrk runs on CPU 1, one
# worker each. Prints req/s, p99 and the ratio to nginx for the accept and reject paths.
#
#   TOKEN_KIND=client_token bench/compare.sh   # Client-Token header (403 without it)
#   bench/compare.sh                           # bearer API key on a rule-protected route
#   TOKEN_KIND=jwt bench/compare.sh            # an OAuth JWT access token
#   ROUNDS=5 DURATION=20 bench/compare.sh
#   WORKERS=2 bench/compare.sh                 # both gateways with 2 workers on both CPUs
#   CPUTIME=1 bench/compare.sh                 # CPU, context switches, TCP segments per request
#   UP_CPUS=1 bench/compare.sh                 # the upstream on wrk's CPU, not the gateway's
#   HOLD=1 HOLD_FILE=f bench/compare.sh        # set up, write the URLs and header to f, wait
#
# Needs nginx (nginx-light), wrk, jq and curl; BENCH_INSTALL=1 installs them with apt-get.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
CONNS=${CONNS:-64}
UP=18180 NG=18181 TG=18190
WORKERS=${WORKERS:-1}
# One worker: gateways and upstream on CPU 0, wrk on CPU 1. Two: everything on both.
GW_CPUS=0 WRK_CPUS=1
if [[ $WORKERS != 1 ]]; then GW_CPUS=0,1 WRK_CPUS=0,1; fi
# UP_CPUS=1 moves the upstream beside wrk: CPU 0 is then the gateway's alone.
UP_CPUS=${UP_CPUS:-$GW_CPUS}
if [[ ${BENCH_INSTALL:-0} == 1 ]]; then
  DEBIAN_FRONTEND=noninteractive apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q nginx-light wrk jq curl
fi
for tool in nginx wrk jq curl taskset; do command -v $tool >/dev/null || { echo "compare.sh: $tool missing (BENCH_INSTALL=1 installs it)" >&2; exit 2; }; done
# TOKENGATE_BIN=path runs a binary built elsewhere (another allocator, a profiling build).
if [[ -z ${TOKENGATE_BIN:-} ]]; then cargo build --release --locked --bin tokengate; fi
BIN=${TOKENGATE_BIN:-$ROOT/target/release/tokengate}

RUN=$(mktemp -d -t tokengate-bearer.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$RUN"; }
trap cleanup EXIT
wait_up() { for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$1/" && return 0; sleep 0.1; done; echo "port $1 did not open" >&2; exit 2; }

# The upstream: a constant JSON answer.
cat > "$RUN/upstream.conf" <<CONF
worker_processes $WORKERS; daemon off; pid $RUN/upstream.pid; error_log $RUN/upstream.err;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  server { listen 127.0.0.1:$UP; location / { default_type application/json; return 200 '{"ok":true}'; } } }
CONF
taskset -c "$UP_CPUS" nginx -p "$RUN" -c "$RUN/upstream.conf" & PIDS+=($!)
wait_up $UP

# tokengate: for a bearer kind, an instance whose one rule needs messages:send and a
# token holding it; for the Client-Token, an instance without rules and an active
# security token.
TOKENGATE_WORKERS=$WORKERS taskset -c $GW_CPUS "$BIN" serve --data-dir "$RUN/tg" --listen "127.0.0.1:$TG" --log-level warn & PIDS+=($!)
wait_up $TG
ADMIN="Authorization: Bearer $(cat "$RUN/tg/admin-token")"
api() { curl -sf -H "$ADMIN" -H 'Content-Type: application/json' "$@"; }
ACC=$(api -d '{"name":"bench"}' "http://127.0.0.1:$TG/v1/accounts" | jq -r .id)
KIND=${TOKEN_KIND:-api_key}
RULES='[{"path":"/*","scopes":["messages:send"]}]'
[[ $KIND == client_token ]] && RULES='[]'
INST=$(api -d "{\"name\":\"b\",\"upstream_url\":\"http://127.0.0.1:$UP\",\"rules\":$RULES}" \
  "http://127.0.0.1:$TG/v1/accounts/$ACC/instances")
KEY=$(api -d '{"name":"bench","kind":"api_key","scopes":["messages:send"]}' "http://127.0.0.1:$TG/v1/accounts/$ACC/tokens" | jq -r .token)
if [[ $KIND == client_token ]]; then
  KEY=$(api -X POST "http://127.0.0.1:$TG/v1/accounts/$ACC/security-token" | jq -r .token)
  api -X POST "http://127.0.0.1:$TG/v1/accounts/$ACC/security-token/activate" >/dev/null
fi
if [[ $KIND == jwt ]]; then
  CLIENT=$(api -d '{"name":"bench","scopes":["messages:send"]}' "http://127.0.0.1:$TG/v1/accounts/$ACC/oauth-clients")
  KEY=$(curl -sf -u "$(jq -r .client_id <<<"$CLIENT"):$(jq -r .client_secret <<<"$CLIENT")" \
    -d grant_type=client_credentials "http://127.0.0.1:$TG/oauth/token" | jq -r .access_token)
fi
TG_URL="http://127.0.0.1:$TG/instances/$(jq -r .id <<<"$INST")/token/$(jq -r .token <<<"$INST")/api/ping"

# nginx: the same check against a static secret.
HEADER="Authorization: Bearer $KEY" CHECK="if (\$http_authorization != \"Bearer $KEY\") { return 401 '{\"error\":\"invalid_token\"}'; }" DENY=401
if [[ $KIND == client_token ]]; then
  HEADER="Client-Token: $KEY" CHECK="if (\$http_client_token = \"\") { return 403 '{\"error\":\"null not allowed\"}'; } if (\$http_client_token != \"$KEY\") { return 403 '{\"error\":\"Client-Token not allowed\"}'; }" DENY=403
fi
cat > "$RUN/gate.conf" <<CONF
worker_processes $WORKERS; daemon off; pid $RUN/gate.pid; error_log $RUN/gate.err;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  upstream up { server 127.0.0.1:$UP; keepalive 512; }
  server { listen 127.0.0.1:$NG;
    location / {
      default_type application/json;
      $CHECK
      proxy_http_version 1.1; proxy_set_header Connection ""; proxy_pass http://up; } } }
CONF
taskset -c $GW_CPUS nginx -p "$RUN" -c "$RUN/gate.conf" & PIDS+=($!)
wait_up $NG
NG_URL="http://127.0.0.1:$NG/api/ping"

# Both must accept the key and refuse a missing one before anything is timed.
for url in "$TG_URL" "$NG_URL"; do
  [[ $(curl -s -o /dev/null -w '%{http_code}' -H "$HEADER" "$url") == 200 ]] || { echo "not 200: $url" >&2; exit 1; }
  [[ $(curl -s -o /dev/null -w '%{http_code}' "$url") == "$DENY" ]] || { echo "not $DENY without the key: $url" >&2; exit 1; }
done

rps() {  # rps URL [HEADER] -> "requests/s p99-ms non-2xx"
  local out
  if [[ -n ${2:-} ]]; then
    out=$(taskset -c $WRK_CPUS wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency -H "$2" "$1")
  else
    out=$(taskset -c $WRK_CPUS wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency "$1")
  fi
  local bad; bad=$(awk '/Non-2xx/ {print $NF}' <<<"$out"); bad=${bad:-0}
  # wrk prints the 99th percentile as e.g. "99%  3.21ms" (or us / s).
  local p99; p99=$(awk '$1 == "99%" { v=$2; u=v; gsub(/[0-9.]/, "", u); gsub(/[a-z]/, "", v);
    if (u == "us") v /= 1000; else if (u == "s") v *= 1000; printf "%.2f", v }' <<<"$out")
  echo "$(awk '/Requests\/sec/ {printf "%.0f", $2}' <<<"$out") ${p99:-0} $bad"
}
if [[ ${HOLD:-0} == 1 ]]; then  # everything set up, for probing by hand: the URLs, the header, then wait
  printf 'nginx %s\ntokengate %s\nheader %s\n' "$NG_URL" "$TG_URL" "$HEADER" > "${HOLD_FILE:-/dev/stdout}"
  sleep infinity & PIDS+=($!); wait $!
fi
# CPUTIME=1: user and system CPU per request, gateway and upstream (/proc/PID/stat),
# context switches and TCP segments. The upstream does the same work behind either
# gateway, so the gateway's CPU in units of the upstream's is the figure that a slower
# or faster moment of the machine moves least.
if [[ ${CPUTIME:-0} == 1 ]]; then
  ticks() { awk '{print $14, $15}' "/proc/$1/stat"; }  # utime stime, in clock ticks
  segments() { awk '/^Tcp:/ && ++n == 2 {print $12}' /proc/net/snmp; }  # TCP segments sent, all of loopback
  switches() { cat /proc/"$1"/task/*/status | awk '/ctxt_switches/ {n += $2} END {print n}'; }  # every thread's, voluntary + involuntary
  HZ=$(getconf CLK_TCK)
  UP_PID=$(pgrep -f "nginx: worker process" -o)
  for target in nginx tokengate; do
    url=$NG_URL gw=$(pgrep -f "nginx: worker process" -n)
    if [[ $target == tokengate ]]; then url=$TG_URL; gw=$(pgrep -f "$BIN serve --data-dir $RUN/tg" | head -1); fi
    read -r gu0 gs0 < <(ticks "$gw"); read -r uu0 us0 < <(ticks "$UP_PID"); gc0=$(switches "$gw"); uc0=$(switches "$UP_PID"); sg0=$(segments)
    n=$(taskset -c $WRK_CPUS wrk -t1 -c"$CONNS" -d"${DURATION}s" -H "$HEADER" "$url" | awk '/requests in/ {print $1}')
    read -r gu1 gs1 < <(ticks "$gw"); read -r uu1 us1 < <(ticks "$UP_PID"); gc1=$(switches "$gw"); uc1=$(switches "$UP_PID"); sg1=$(segments)
    awk -v t="$target" -v n="$n" -v hz="$HZ" -v gu=$((gu1 - gu0)) -v gs=$((gs1 - gs0)) -v uu=$((uu1 - uu0)) -v us=$((us1 - us0)) \
      -v gc=$((gc1 - gc0)) -v uc=$((uc1 - uc0)) -v sg=$((sg1 - sg0)) \
      'BEGIN { f = 1e6 / hz / n; printf "%-10s %8d requests: gateway user %5.1f us, system %5.1f us, %.3f switches; upstream user %5.1f us, system %5.1f us, %.3f switches; %.2f TCP segments; gateway CPU / upstream CPU %.2f\n", t, n, gu * f, gs * f, gc / n, uu * f, us * f, uc / n, sg / n, (uu + us > 0) ? (gu + gs) / (uu + us) : 0 }'
  done
  exit 0
fi
if [[ ${SYSCALLS:-0} == 1 ]]; then  # system calls per request, tokengate and nginx (strace -c)
  for target in nginx tokengate; do
    url=$NG_URL pid=$(pgrep -f "nginx: worker process" -n)
    if [[ $target == tokengate ]]; then url=$TG_URL; pid=$(pgrep -f "$BIN serve --data-dir $RUN/tg" | head -1); fi
    timeout 6 strace -c -f -p "$pid" -o "$RUN/strace.$target" & ST=$!
    sleep 0.5
    n=$(taskset -c 1 wrk -t1 -c"$CONNS" -d3s -H "$HEADER" "$url" | awk '/requests in/ {print $1}')
    wait $ST || true
    echo "== $target: $n requests"; awk -v n="$n" 'NR > 2 && $4 ~ /^[0-9]+$/ {printf "%-16s %8.2f per request\n", $NF, $4 / n}' "$RUN/strace.$target"
  done
  exit 0
fi
if [[ ${PROFILE:-0} == 1 ]]; then  # bench/profile.sh: one path of tokengate under perf
  TG_PID=$(pgrep -f "$BIN serve --data-dir $RUN/tg" | head -1)
  H=$HEADER; [[ ${PATHKIND:-accept} == reject ]] && H=
  perf record -F 1999 --call-graph dwarf,32768 -p "$TG_PID" -o "$PROFILE_OUT/perf.data" -- sleep "$DURATION" >/dev/null 2>&1 &
  PERF=$!
  rps "$TG_URL" "$H" >/dev/null
  wait $PERF || true
  exit 0
fi
echo "== $KIND: $ROUNDS rounds x ${DURATION}s, $CONNS connections, $WORKERS worker(s)"
printf '%-6s %-10s %-8s %10s %9s %8s\n' round target path req/s p99_ms non2xx
# The two gateways run back to back on each path, the order swapped every round, so a
# drift of the machine's speed weighs on both alike; each round gives a ratio too.
declare -A SUM P99 RATIO
for r in $(seq "$ROUNDS"); do
  order="nginx tokengate"; (( r % 2 == 0 )) && order="tokengate nginx"
  for path in accept reject; do
    h=$HEADER; [[ $path == reject ]] && h=
    declare -A RATE=()
    for target in $order; do
      url=$NG_URL; [[ $target == tokengate ]] && url=$TG_URL
      read -r a ap abad < <(rps "$url" "$h")
      printf '%-6s %-10s %-8s %10s %9s %8s\n' "$r" "$target" "$path" "$a" "$ap" "$abad"
      SUM[$target-$path]+="$a "; P99[$target-$path]+="$ap "; RATE[$target]=$a
    done
    RATIO[$path]+="$(awk -v t="${RATE[tokengate]}" -v n="${RATE[nginx]}" 'BEGIN {print (n > 0) ? t / n : 0}') "
  done
done
median() { tr ' ' '\n' <<<"$1" | grep . | sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
echo "-- medians ($KIND; ratio: of the medians; round_ratio: median of the rounds' ratios)"
printf '%-8s %10s %10s %11s %11s %7s %11s\n' path nginx tokengate nginx_p99 tg_p99 ratio round_ratio
for path in accept reject; do
  n=$(median "${SUM[nginx-$path]}"); t=$(median "${SUM[tokengate-$path]}")
  np=$(median "${P99[nginx-$path]}"); tp=$(median "${P99[tokengate-$path]}")
  printf '%-8s %10.0f %10.0f %9.2fms %9.2fms %7.2f %11.2f\n' "$path" "$n" "$t" "$np" "$tp" \
    "$(awk -v t="$t" -v n="$n" 'BEGIN {print t/n}')" "$(median "${RATIO[$path]}")"
done

# Per-request CPU (CPU=1): instructions per request under valgrind's callgrind, stable
# where timings are not. Both gateways are restarted under valgrind (same store, same
# nginx configuration); the counters are zeroed, wrk sends requests on 4 connections
# for CPU_SECONDS, and the instructions executed meanwhile are divided by the requests.
if [[ ${CPU:-0} == 1 ]]; then
  command -v valgrind >/dev/null || { echo "compare.sh: valgrind missing (apt-get install valgrind)" >&2; exit 2; }
  CPU_SECONDS=${CPU_SECONDS:-5}
  for p in "${PIDS[@]:1}"; do kill "$p" 2>/dev/null || true; done
  sleep 1
  mkdir -p "$RUN/cg"
  taskset -c 0 valgrind --tool=callgrind --callgrind-out-file="$RUN/cg/tg.%p" "$BIN" serve --data-dir "$RUN/tg" \
    --listen "127.0.0.1:$TG" --log-level warn 2>/dev/null & PIDS+=($!); TG_VG=$!
  sed -e 's/^worker_processes 1; daemon off;/worker_processes 1; daemon off; master_process off;/' "$RUN/gate.conf" > "$RUN/gate-vg.conf"
  taskset -c 0 valgrind --tool=callgrind --callgrind-out-file="$RUN/cg/ng.%p" nginx -p "$RUN" -c "$RUN/gate-vg.conf" 2>/dev/null & PIDS+=($!); NG_VG=$!
  for _ in $(seq 600); do
    curl -s -o /dev/null "http://127.0.0.1:$TG/healthz" && curl -s -o /dev/null "$NG_URL" && break; sleep 0.2
  done
  per_request() {  # per_request PID URL [HEADER] -> instructions per request
    local pid=$1 url=$2 header=${3:-} out before after n
    callgrind_control -z "$pid" >/dev/null 2>&1
    if [[ -n $header ]]; then out=$(taskset -c 1 wrk -t1 -c4 -d"${CPU_SECONDS}s" -H "$header" "$url")
    else out=$(taskset -c 1 wrk -t1 -c4 -d"${CPU_SECONDS}s" "$url"); fi
    n=$(awk '/requests in/ {print $1}' <<<"$out")
    callgrind_control -d "$pid" >/dev/null 2>&1
    sleep 0.5
    # The newest dump of that process holds what ran since the counters were zeroed.
    local dump; dump=$(ls -t "$RUN"/cg/*."$pid"* | head -1)
    # CALLGRIND_KEEP=DIR keeps the dumps (callgrind_annotate --inclusive=yes them).
    if [[ -n ${CALLGRIND_KEEP:-} ]]; then
      mkdir -p "$CALLGRIND_KEEP" && cp "$dump" "$CALLGRIND_KEEP/$(basename "$dump").$n-requests"
    fi
    awk -v n="$n" '/^(summary|totals):/ {print int($2 / n); exit}' "$dump"
  }
  echo "-- instructions per request ($KIND, callgrind)"
  printf '%-8s %12s %12s %7s\n' path nginx tokengate ratio
  for path in accept reject; do
    h=$HEADER
    if [[ $path == reject ]]; then h=; fi
    ni=$(per_request "$NG_VG" "$NG_URL" "$h"); ti=$(per_request "$TG_VG" "$TG_URL" "$h")
    printf '%-8s %12s %12s %7.2f\n' "$path" "$ni" "$ti" "$(awk -v t="$ti" -v n="$ni" 'BEGIN {print t/n}')"
  done
fi

