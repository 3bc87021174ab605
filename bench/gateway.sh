#!/usr/bin/env bash
# The Client-Token path against nginx doing the same header check, in the same run:
# bench/compare.sh with TOKEN_KIND=client_token (self-contained: its own upstream and
# nginx configuration). Knobs: ROUNDS, DURATION, CONNS, BENCH_INSTALL=1.
set -euo pipefail
TOKEN_KIND=client_token exec "$(dirname "$0")/compare.sh" "$@"
