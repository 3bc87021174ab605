# Shared by the multi-node benchmarks (sourced): a throwaway PostgreSQL, a constant
# upstream (nginx), tokengate nodes on free loopback ports, and cleanup on exit.
# Needs nginx (nginx-light), PostgreSQL, wrk, jq, curl; BENCH_INSTALL=1 installs them.

set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
if [[ ${BENCH_INSTALL:-0} == 1 ]]; then
  DEBIAN_FRONTEND=noninteractive apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q nginx-light postgresql wrk jq curl
fi
for tool in nginx wrk jq curl python3; do
  command -v $tool >/dev/null || { echo "$0: $tool missing (BENCH_INSTALL=1 installs it)" >&2; exit 2; }
done
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { echo "$0: PostgreSQL missing (BENCH_INSTALL=1)" >&2; exit 2; }

RUN=$(mktemp -d -t tokengate-bench.XXXXXX)
chmod 755 "$RUN"
PIDS=()
PG_BIN=$(dirname "$(ls /usr/lib/postgresql/*/bin/initdb | sort -V | tail -n 1)")
as_pg=()
[[ $(id -u) == 0 ]] && as_pg=(runuser -u postgres --)
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [[ -d $RUN/pg/data ]] && "${as_pg[@]}" "$PG_BIN/pg_ctl" -D "$RUN/pg/data" -m fast -w stop >/dev/null 2>&1 || true
  rm -rf "$RUN"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { for _ in $(seq 300); do curl -fs -o /dev/null "$1" && return 0; sleep 0.1; done; echo "$1 did not answer" >&2; exit 2; }

# start_postgres: sets PG_URL.
start_postgres() {
  mkdir -p "$RUN/pg"
  [[ $(id -u) == 0 ]] && chown postgres:postgres "$RUN/pg"
  local port; port=$(free_port)
  "${as_pg[@]}" "$PG_BIN/initdb" -D "$RUN/pg/data" -A trust -U postgres --no-sync >/dev/null
  PG_OPTS="-p $port -k $RUN/pg -c listen_addresses=127.0.0.1 -c max_connections=200"
  "${as_pg[@]}" "$PG_BIN/pg_ctl" -D "$RUN/pg/data" -l "$RUN/pg/log" -w -o "$PG_OPTS" start >/dev/null
  PG_URL="postgres://postgres@127.0.0.1:$port/postgres"
}

# start_upstream: nginx answering {"ok":true}; sets UP_PORT.
start_upstream() {
  UP_PORT=$(free_port)
  cat > "$RUN/upstream.conf" <<CONF
worker_processes 1; daemon off; pid $RUN/upstream.pid; error_log $RUN/upstream.err;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  server { listen 127.0.0.1:$UP_PORT; location / { default_type application/json; return 200 '{"ok":true}'; } } }
CONF
  nginx -p "$RUN" -c "$RUN/upstream.conf" & PIDS+=($!)
  wait_http "http://127.0.0.1:$UP_PORT/"
}

build_tokengate() {
  cargo build --release --locked -q --bin tokengate
  BIN=$ROOT/target/release/tokengate
}

# start_node NAME: a tokengate node on PG_URL; sets NODE_PORT and NODE_PID, and
# ADMIN (from the first node to initialize the store).
MASTER_KEY=$(python3 -c 'import secrets; print(secrets.token_hex(32))')
start_node() {
  local name=$1; NODE_PORT=$(free_port)
  TOKENGATE_MASTER_KEY=$MASTER_KEY "$BIN" serve --data-dir "$RUN/$name" --listen "127.0.0.1:$NODE_PORT" \
    --database-url "$PG_URL" --log-level warn >"$RUN/$name.log" 2>&1 & NODE_PID=$!
  PIDS+=("$NODE_PID")
  wait_http "http://127.0.0.1:$NODE_PORT/readyz"
  [[ -s $RUN/$name/admin-token ]] && ADMIN=$(cat "$RUN/$name/admin-token")
  return 0
}

api() { curl -sf -H "Authorization: Bearer $ADMIN" -H 'Content-Type: application/json' "$@"; }

# wrk_accepted URL HEADER SECONDS CONNS: prints "total non2xx".
wrk_counts() {
  local out; out=$(wrk -t1 -c"$4" -d"$3s" -H "$2" "$1" 2>&1)
  local total non; total=$(awk '/requests in/ {print $1}' <<<"$out")
  non=$(awk '/Non-2xx or 3xx responses/ {print $5}' <<<"$out")
  echo "${total:-0} ${non:-0}"
}
