#!/usr/bin/env bash
# Changes right after a store outage: two nodes on one PostgreSQL; PostgreSQL stopped
# for OUTAGE seconds (3 and 10 by default) and started again; as soon as node A takes
# an admin write, an API key is revoked through A, and node B is polled every 10 ms
# until it refuses the key. Prints the time from the revocation's acknowledgement to
# B's refusal (SPEC §5: within 1 s). Also how long A's writes answered while down.
#   bench/outage.sh            # OUTAGES="3 10" RUNS=3
source "$(dirname "$0")/lib.sh"
OUTAGES=${OUTAGES:-3 10}
RUNS=${RUNS:-3}
build_tokengate
start_postgres
start_upstream
start_node a; A="http://127.0.0.1:$NODE_PORT"
start_node b; B="http://127.0.0.1:$NODE_PORT"
ACC=$(api -d '{"name":"outage"}' "$A/v1/accounts" | jq -r .id)
INST=$(api -d "{\"name\":\"i\",\"upstream_url\":\"http://127.0.0.1:$UP_PORT\",\"rules\":[{\"path\":\"/*\",\"scopes\":[\"messages:send\"]}]}" \
  "$A/v1/accounts/$ACC/instances")
TAIL="/instances/$(jq -r .id <<<"$INST")/token/$(jq -r .token <<<"$INST")/send-text"
pg_ctl_() { "${as_pg[@]}" "$PG_BIN/pg_ctl" -D "$RUN/pg/data" "$@" >/dev/null; }
now() { date +%s.%N; }
printf '%-8s %-4s %-22s %-22s %-24s\n' outage run "write while down (s)" "readyz while down (s)" "revocation on B after (s)"
for outage in $OUTAGES; do
  for run in $(seq "$RUNS"); do
    TOKEN=$(api -d '{"name":"k","kind":"api_key","scopes":["messages:send"]}' "$A/v1/accounts/$ACC/tokens")
    KEY=$(jq -r .token <<<"$TOKEN") ID=$(jq -r .id <<<"$TOKEN")
    until [[ $(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $KEY" -X POST "$B$TAIL") == 200 ]]; do sleep 0.05; done
    pg_ctl_ -m fast -w stop
    t0=$(now); curl -s -o /dev/null -H "Authorization: Bearer $ADMIN" -H 'Content-Type: application/json' -d '{"name":"x"}' "$A/v1/accounts"; t1=$(now)
    curl -s -o /dev/null "$B/readyz"; t2=$(now)
    write_down=$(python3 -c "print(f'{$t1-$t0:.3f}')") ready_down=$(python3 -c "print(f'{$t2-$t1:.3f}')")
    sleep "$outage"
    pg_ctl_ -l "$RUN/pg/log" -o "$PG_OPTS" -w start
    until [[ $(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $ADMIN" -X DELETE "$A/v1/tokens/$ID") == 204 ]]; do sleep 0.01; done
    acked=$(now)
    until [[ $(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $KEY" -X POST "$B$TAIL") == 401 ]]; do sleep 0.01; done
    printf '%-8s %-4s %-22s %-22s %-24s\n' "$outage" "$run" "$write_down" "$ready_down" "$(python3 -c "print(f'{$(now)-$acked:.3f}')")"
  done
done
