#!/usr/bin/env bash
# Imports N (default 1,000,000) keys through `POST /v1/accounts/{acc}/tokens/import`
# into a fresh embedded store and prints the time it took, then checks that one of
# them is accepted. Self-contained: builds tokengate (release), starts it on a free
# loopback port with a throwaway data directory, and stops it afterwards.
#   bench/import.sh [N]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000000}

cargo build --release -q -p tokengate
BIN=target/release/tokengate
WORK=$(mktemp -d -t tokengate-import.XXXXXX)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cleanup() { [[ -n ${PID:-} ]] && kill "$PID" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

TOKENGATE_MAX_TOKENS_PER_ACCOUNT=$((N + 10)) "$BIN" serve --listen "127.0.0.1:$PORT" \
  --data-dir "$WORK/data" --log-level warn >"$WORK/server.log" 2>&1 &
PID=$!
for _ in $(seq 100); do [[ -s $WORK/data/admin-token ]] && curl -fs "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.1; done
ADMIN=$(cat "$WORK/data/admin-token")
ACC=$(curl -fs -H "Authorization: Bearer $ADMIN" -H 'Content-Type: application/json' \
  -d '{"name":"import-bench"}' "http://127.0.0.1:$PORT/v1/accounts" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')

# Half plaintext keys (as Kong stores them), half SHA-256 digests only.
python3 - "$N" >"$WORK/keys.ndjson" <<'PY'
import hashlib, json, sys
n = int(sys.argv[1])
out = sys.stdout
for i in range(n):
    key = f"bench-import-key-{i:09d}"
    if i % 2:
        out.write(json.dumps({"name": f"k{i}", "sha256": hashlib.sha256(key.encode()).hexdigest()}) + "\n")
    else:
        out.write(json.dumps({"name": f"k{i}", "key": key, "scopes": ["messages:send"]}) + "\n")
PY
echo "import: $N lines, $(du -h "$WORK/keys.ndjson" | cut -f1)"
START=$(date +%s.%N)
curl -fs -H "Authorization: Bearer $ADMIN" -H 'Content-Type: application/x-ndjson' --data-binary @"$WORK/keys.ndjson" \
  "http://127.0.0.1:$PORT/v1/accounts/$ACC/tokens/import" >"$WORK/summary.json"
END=$(date +%s.%N)
python3 - "$WORK/summary.json" "$START" "$END" "$N" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
secs = float(sys.argv[3]) - float(sys.argv[2])
n = int(sys.argv[4])
print(f"imported {s['imported']}, skipped {s['skipped']}, errors {len(s['errors'])}")
print(f"{secs:.1f} s, {n / secs:,.0f} keys/s")
PY
LAST=$(( (N - 1) / 2 * 2 - 1 ))
[[ $LAST -lt 1 ]] && LAST=1
KEY=$(printf 'bench-import-key-%09d' "$LAST")
VERDICT=$(curl -fs -H "Authorization: Bearer $ADMIN" -H 'Content-Type: application/json' \
  -d "{\"token\":\"$KEY\"}" "http://127.0.0.1:$PORT/v1/verify")
echo "verify of a digest-only key: $VERDICT"
echo "server RSS: $(ps -o rss= -p "$PID" | awk '{printf "%.0f MiB", $1/1024}')"
