#!/usr/bin/env bash
# Accuracy of rate limits across nodes: NODES tokengate nodes (2 and 3 by default) on
# one PostgreSQL, one API key with a limit of LIMIT requests a day, and wrk hammering
# every node at once for SECONDS with that key. Prints how many requests the
# deployment accepted against the limit (target: within ±10 %). Self-contained.
#   bench/cluster-limits.sh            # NODES="2 3" LIMIT="100 2000" SECONDS_=5
source "$(dirname "$0")/lib.sh"
NODE_COUNTS=${NODES:-2 3}
LIMITS=${LIMIT:-100 2000}
SECS=${SECONDS_:-5}
build_tokengate
start_postgres
start_upstream
PORTS=()
for n in 1 2 3; do start_node "node$n"; PORTS+=("$NODE_PORT"); done
A="http://127.0.0.1:${PORTS[0]}"
ACC=$(api -d '{"name":"limits"}' "$A/v1/accounts" | jq -r .id)
INST=$(api -d "{\"name\":\"i\",\"upstream_url\":\"http://127.0.0.1:$UP_PORT\",\"rules\":[{\"path\":\"/*\",\"scopes\":[\"messages:send\"]}]}" \
  "$A/v1/accounts/$ACC/instances")
TAIL="/instances/$(jq -r .id <<<"$INST")/token/$(jq -r .token <<<"$INST")/send-text"
printf '%-6s %-7s %-10s %-10s %-8s\n' nodes limit requests accepted "ratio"
for nodes in $NODE_COUNTS; do
  for limit in $LIMITS; do
    KEY=$(api -d "{\"name\":\"k\",\"kind\":\"api_key\",\"scopes\":[\"messages:send\"],\"rate_limit\":{\"limit\":$limit,\"window_seconds\":86400}}" \
      "$A/v1/accounts/$ACC/tokens" | jq -r .token)
    sleep 0.5   # every node has the key
    for ((i = 0; i < nodes; i++)); do
      wrk_counts "http://127.0.0.1:${PORTS[$i]}$TAIL" "Authorization: Bearer $KEY" "$SECS" 8 >"$RUN/count.$i" &
    done
    wait_jobs=$(jobs -p | grep -v -F -x -f <(printf '%s\n' "${PIDS[@]}") || true)
    for j in $wait_jobs; do wait "$j"; done
    total=0 accepted=0
    for ((i = 0; i < nodes; i++)); do
      read -r t non <"$RUN/count.$i"
      total=$((total + t)); accepted=$((accepted + t - non))
    done
    printf '%-6s %-7s %-10s %-10s %-8s\n' "$nodes" "$limit" "$total" "$accepted" \
      "$(python3 -c "print(f'{$accepted/$limit:.3f}')")"
  done
done
