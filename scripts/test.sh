#!/usr/bin/env bash
# The whole test suite, on a fresh Debian machine or a developer's: installs what it
# needs (as root, with apt-get), starts a throwaway PostgreSQL server for the
# PostgreSQL half of the tests, then runs formatting, clippy and every test.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_UPDATED=0
apt_install() {
  if [[ $(id -u) != 0 ]]; then
    echo "test.sh: missing $*; run as root or install them" >&2
    exit 2
  fi
  export DEBIAN_FRONTEND=noninteractive
  if [[ $APT_UPDATED == 0 ]]; then apt-get update -q; APT_UPDATED=1; fi
  apt-get install -y -q --no-install-recommends "$@"
}

need_pkgs=()
command -v cc >/dev/null || need_pkgs+=(build-essential)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need_pkgs+=(postgresql)
command -v runuser >/dev/null || need_pkgs+=(util-linux)
command -v curl >/dev/null || need_pkgs+=(curl)
# The dashboard's end-to-end tests drive a real headless Chromium through chromedriver.
command -v chromium >/dev/null || need_pkgs+=(chromium)
command -v chromedriver >/dev/null || need_pkgs+=(chromium-driver)
[[ -e /etc/ssl/certs/ca-certificates.crt ]] || need_pkgs+=(ca-certificates)
# /decide is tested behind a real nginx (auth_request) and a real Caddy (forward_auth).
command -v nginx >/dev/null || [[ -x /usr/sbin/nginx ]] || need_pkgs+=(nginx-light)
command -v caddy >/dev/null || need_pkgs+=(caddy)
if ((${#need_pkgs[@]})); then apt_install "${need_pkgs[@]}"; fi

# A throwaway PostgreSQL cluster: its own data directory and port, stopped on exit.
PG_BIN=$(dirname "$(ls /usr/lib/postgresql/*/bin/initdb | sort -V | tail -n 1)")
PG_DIR=$(mktemp -d -t tokengate-pg.XXXXXX)
PG_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
as_pg=()
if [[ $(id -u) == 0 ]]; then
  chown postgres:postgres "$PG_DIR"
  as_pg=(runuser -u postgres --)
fi
stop_pg() {
  "${as_pg[@]}" "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m fast -w stop >/dev/null 2>&1 || true
  rm -rf "$PG_DIR"
}
trap stop_pg EXIT
"${as_pg[@]}" "$PG_BIN/initdb" -D "$PG_DIR/data" -A trust -U postgres --no-sync >/dev/null
"${as_pg[@]}" "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w \
  -o "-p $PG_PORT -k $PG_DIR -c listen_addresses=127.0.0.1 -c max_connections=300" start >/dev/null
export TOKENGATE_TEST_DATABASE_URL="postgres://postgres@127.0.0.1:$PG_PORT/postgres"

# Independent implementations for the end-to-end tests: Python's `cryptography` decodes
# token04 room tokens; authlib (OAuth client) and PyJWT (JOSE) drive the OAuth flow. In
# a virtual environment kept under target/.
VENV=target/test-venv
# schemathesis (an independent OpenAPI fuzzer) checks the OpenAPI document against the
# real server at the end.
if ! "$VENV/bin/python" -c 'import cryptography, authlib, jwt, requests, schemathesis' 2>/dev/null; then
  python3 -m venv "$VENV" || { apt_install python3-venv && python3 -m venv "$VENV"; }
  "$VENV/bin/pip" install -q --disable-pip-version-check cryptography authlib pyjwt requests schemathesis
fi
export TOKENGATE_TEST_PYTHON=$PWD/$VENV/bin/python

# A whole-suite run is a build from scratch on CI: incremental caches would only double
# the disk it takes (set CARGO_INCREMENTAL=1 to keep them while iterating).
export CARGO_INCREMENTAL=${CARGO_INCREMENTAL:-0}

cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
if command -v cargo-nextest >/dev/null; then
  cargo nextest run --workspace --locked --no-fail-fast
  cargo test --workspace --doc --locked
else
  cargo test --workspace --locked --no-fail-fast
fi
# The integration tests built the server binary with the test run's features; a
# separate `cargo build -p tokengate` would resolve other features and build every
# dependency a second time.
[[ -x target/debug/tokengate ]] || cargo build -p tokengate --locked
scripts/schemathesis.sh target/debug/tokengate "$VENV/bin/schemathesis"
