#!/usr/bin/env bash
# Soak: two tokengate nodes on one PostgreSQL under a mixed workload for DURATION
# seconds (default 600): Client-Token, API key and JWT requests that must pass, wrong
# keys that must be refused (401), and admin writes (a key created and revoked every
# second, alternating nodes). Every 10 s it prints the requests and errors of the last
# interval (an error is a wrong status, a socket error or a failed admin write), the
# worst p99 of the four request kinds, and each node's RSS and open file descriptors.
# Target: 0 errors, RSS and fds flat after warm-up. Self-contained.
# PAUSE_MS (default 1) is a pause before each request of a connection: 16 connections
# then offer at most ~16,000 requests a second, a sustained load rather than the
# saturation `compare.sh` measures (PAUSE_MS=0 saturates the machine instead).
#   bench/soak.sh               # DURATION=600 PAUSE_MS=1
source "$(dirname "$0")/lib.sh"
DURATION=${DURATION:-600}
PAUSE_MS=${PAUSE_MS:-1}
export TOKENGATE_ACCESS_TOKEN_LIFETIME_SECONDS=86400
# One issuer for both nodes (SPEC: nodes share public_url), so either verifies the JWT.
export TOKENGATE_PUBLIC_URL=http://tokengate.soak.test
build_tokengate
start_postgres
start_upstream
start_node a; A_PORT=$NODE_PORT A_PID=$NODE_PID
start_node b; B_PORT=$NODE_PORT B_PID=$NODE_PID
A="http://127.0.0.1:$A_PORT"

# Account 1: Client-Token active, an instance without rules.
ACC1=$(api -d '{"name":"soak-ct"}' "$A/v1/accounts" | jq -r .id)
I1=$(api -d "{\"name\":\"ct\",\"upstream_url\":\"http://127.0.0.1:$UP_PORT\"}" "$A/v1/accounts/$ACC1/instances")
CT=$(api -X POST "$A/v1/accounts/$ACC1/security-token" | jq -r .token)
api -X POST "$A/v1/accounts/$ACC1/security-token/activate" >/dev/null
CT_TAIL="/instances/$(jq -r .id <<<"$I1")/token/$(jq -r .token <<<"$I1")/send-text"
# Account 2: a rule-protected instance, an API key and an OAuth client.
ACC2=$(api -d '{"name":"soak-bearer"}' "$A/v1/accounts" | jq -r .id)
I2=$(api -d "{\"name\":\"b\",\"upstream_url\":\"http://127.0.0.1:$UP_PORT\",\"rules\":[{\"path\":\"/*\",\"scopes\":[\"messages:send\"]}]}" \
  "$A/v1/accounts/$ACC2/instances")
B_TAIL="/instances/$(jq -r .id <<<"$I2")/token/$(jq -r .token <<<"$I2")/send-text"
KEY=$(api -d '{"name":"soak","kind":"api_key","scopes":["messages:send"]}' "$A/v1/accounts/$ACC2/tokens" | jq -r .token)
CLIENT=$(api -d '{"name":"soak","scopes":["messages:send"]}' "$A/v1/accounts/$ACC2/oauth-clients")
JWT=$(curl -sf -u "$(jq -r .client_id <<<"$CLIENT"):$(jq -r .client_secret <<<"$CLIENT")" \
  -d grant_type=client_credentials "$A/oauth/token" | jq -r .access_token)
BAD=tgk_000000000000000000000000000000000000
sleep 1

# Admin writes at a low rate; failures are appended to admin.errors.
: >"$RUN/admin.errors"
(
  n=0
  while true; do
    port=$A_PORT; ((n % 2)) && port=$B_PORT
    id=$(api -d "{\"name\":\"w$n\",\"kind\":\"api_key\",\"scopes\":[\"messages:send\"]}" \
      "http://127.0.0.1:$port/v1/accounts/$ACC2/tokens" | jq -r .id) || { echo create >>"$RUN/admin.errors"; id=; }
    [[ -n $id ]] && { api -X DELETE "http://127.0.0.1:$port/v1/tokens/$id" >/dev/null || echo revoke >>"$RUN/admin.errors"; }
    n=$((n + 1)); sleep 1
  done
) & PIDS+=($!)

rss() { awk '/VmRSS/ {printf "%.1f", $2/1024}' "/proc/$1/status"; }
fds() { ls "/proc/$1/fd" | wc -l; }
printf '%-6s %-9s %-7s %-8s %-11s %-11s %-6s %-6s\n' t_s requests errors p99_ms rss_a_MiB rss_b_MiB fds_a fds_b
rounds=$((DURATION / 10)) seen_admin=0
for ((r = 1; r <= rounds; r++)); do
  X=$A_PORT Y=$B_PORT
  ((r % 2)) || { X=$B_PORT Y=$A_PORT; }
  wrk -t1 -c4 -d10s -s bench/soak/expect.lua -H "Client-Token: $CT" "http://127.0.0.1:$X$CT_TAIL" -- 200 $PAUSE_MS >"$RUN/w1" 2>&1 &
  wrk -t1 -c4 -d10s -s bench/soak/expect.lua -H "Authorization: Bearer $KEY" "http://127.0.0.1:$Y$B_TAIL" -- 200 $PAUSE_MS >"$RUN/w2" 2>&1 &
  wrk -t1 -c4 -d10s -s bench/soak/expect.lua -H "Authorization: Bearer $JWT" "http://127.0.0.1:$X$B_TAIL" -- 200 $PAUSE_MS >"$RUN/w3" 2>&1 &
  wrk -t1 -c4 -d10s -s bench/soak/expect.lua -H "Authorization: Bearer $BAD" "http://127.0.0.1:$Y$B_TAIL" -- 401 $PAUSE_MS >"$RUN/w4" 2>&1 &
  for j in $(jobs -p); do
    if ! printf '%s\n' "${PIDS[@]}" | grep -qx "$j"; then wait "$j" || true; fi
  done
  requests=0 errors=0 p99=0
  for w in w1 w2 w3 w4; do
    read -r _ n bad lat < <(grep '^SOAK' "$RUN/$w" || echo "SOAK 0 1 0")
    requests=$((requests + n)); errors=$((errors + bad))
    p99=$(python3 -c "print(max($p99, $lat))")
  done
  admin=$(wc -l <"$RUN/admin.errors"); errors=$((errors + admin - seen_admin)); seen_admin=$admin
  printf '%-6s %-9s %-7s %-8s %-11s %-11s %-6s %-6s\n' $((r * 10)) "$requests" "$errors" "$p99" \
    "$(rss "$A_PID")" "$(rss "$B_PID")" "$(fds "$A_PID")" "$(fds "$B_PID")"
done
