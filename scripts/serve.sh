#!/usr/bin/env bash
# Builds tokengate (release) and runs the gateway on the embedded SQLite store in
# ./tokengate-data, listening on 127.0.0.1:8080 unless flags say otherwise.
# Any argument is passed to `tokengate serve` (see `tokengate serve --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v cc >/dev/null; then
  if [[ $(id -u) != 0 ]]; then echo "serve.sh: a C compiler is needed (apt-get install build-essential)" >&2; exit 2; fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q && apt-get install -y -q --no-install-recommends build-essential
fi
cargo build --release --locked --bin tokengate
exec target/release/tokengate serve "$@"
