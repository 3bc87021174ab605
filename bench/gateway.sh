#!/usr/bin/env bash
# Load benchmark of tokengate's gateway against nginx and HAProxy doing the same
# Client-Token header check on loopback, in the same run.
#
# It builds tokengate (release), prepares a store with one account whose security token
# is active and one instance in front of the harness's upstream (127.0.0.1:18080), then
# hands tokengate to the comparison harness (SHARED_BENCH, default ../shared/bench/run.sh)
# as its "extra" target. Needs nginx-light, haproxy, wrk and jq (BENCH_INSTALL=1 installs
# them with apt-get). Knobs of the harness (ROUNDS, DURATION, CONNS, ...) pass through.
#
#   bench/gateway.sh                  # 1 round
#   ROUNDS=3 bench/gateway.sh         # 3 interleaved rounds, medians
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SHARED_BENCH=${SHARED_BENCH:-$ROOT/../shared/bench/run.sh}
PORT=${TG_BENCH_PORT:-18090}
[[ -x $SHARED_BENCH ]] || { echo "gateway.sh: harness not found at $SHARED_BENCH (set SHARED_BENCH)" >&2; exit 2; }
if [[ ${BENCH_INSTALL:-0} == 1 ]]; then
  DEBIAN_FRONTEND=noninteractive apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q nginx-light haproxy wrk jq curl
fi
cargo build --release --locked --bin tokengate
BIN=$ROOT/target/release/tokengate

DATA=$(mktemp -d -t tokengate-bench.XXXXXX)
trap 'kill "${SETUP_PID:-}" 2>/dev/null || true; rm -rf "$DATA"' EXIT

# Set-up run: create the account, the instance and an active security token.
"$BIN" serve --data-dir "$DATA" --listen "127.0.0.1:$PORT" --log-level warn &
SETUP_PID=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.1; done
ADMIN="Authorization: Bearer $(cat "$DATA/admin-token")"
api() { curl -sf -H "$ADMIN" -H 'Content-Type: application/json' "$@"; }
ACC=$(api -d '{"name":"bench"}' "http://127.0.0.1:$PORT/v1/accounts" | jq -r .id)
INSTANCE=$(api -d '{"name":"bench","upstream_url":"http://127.0.0.1:18080"}' "http://127.0.0.1:$PORT/v1/accounts/$ACC/instances")
CT=$(api -X POST "http://127.0.0.1:$PORT/v1/accounts/$ACC/security-token" | jq -r .token)
api -X POST "http://127.0.0.1:$PORT/v1/accounts/$ACC/security-token/activate" >/dev/null
kill -TERM "$SETUP_PID"; wait "$SETUP_PID" || true; unset SETUP_PID

ID=$(jq -r .id <<<"$INSTANCE"); ITOKEN=$(jq -r .token <<<"$INSTANCE")
EXTRA_NAME=${EXTRA_NAME:-tokengate} \
EXTRA_URL="http://127.0.0.1:$PORT/instances/$ID/token/$ITOKEN/api/ping" \
EXTRA_SECRET="$CT" \
EXTRA_CMD="$BIN serve --data-dir $DATA --listen 127.0.0.1:$PORT --log-level warn" \
  "$SHARED_BENCH"
