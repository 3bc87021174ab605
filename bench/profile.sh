#!/usr/bin/env bash
# Where a gateway request's time goes: tokengate (a `profiling` build, symbols kept)
# under `perf record` (software clock: no hardware counters needed) while wrk loads
# one path, then the hottest symbols, grouped by the phase they belong to.
#
#   TOKEN_KIND=client_token PATHKIND=accept bench/profile.sh
#   PATHKIND=reject DURATION=10 bench/profile.sh
#
# Needs nginx, wrk, jq, curl and perf (BENCH_INSTALL=1 installs them with apt-get).
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ ${BENCH_INSTALL:-0} == 1 ]]; then
  DEBIAN_FRONTEND=noninteractive apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q nginx-light wrk jq curl linux-perf
fi
cargo build --profile profiling --locked --bin tokengate
export TOKENGATE_BIN=$PWD/target/profiling/tokengate
export PROFILE_OUT=${PROFILE_OUT:-$(mktemp -d -t tokengate-profile.XXXXXX)}
mkdir -p "$PROFILE_OUT"
PROFILE=1 ROUNDS=1 bench/compare.sh
perf report -i "$PROFILE_OUT/perf.data" --no-children -g none --sort dso,symbol --percent-limit 0.7 --stdio 2>/dev/null \
  | grep -v '^#' | grep . | head -60
echo "(perf data in $PROFILE_OUT/perf.data)"
