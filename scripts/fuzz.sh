#!/usr/bin/env bash
# Runs every cargo-fuzz target (fuzz/fuzz_targets) for a bounded time each, on the
# nightly toolchain with AddressSanitizer: the path canonicalizer, token parsing,
# token04 decoding, JWT/JWKS parsing and the configuration loader.
#   scripts/fuzz.sh            # 60 s per target
#   scripts/fuzz.sh 300 jwt    # 300 s, one target
# Crashes land in fuzz/artifacts/<target>/; the corpus grows in fuzz/corpus/<target>/.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH=${1:-60}
shift || true
if ! rustup toolchain list | grep -q '^nightly'; then
  rustup toolchain install nightly --profile minimal
fi
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
targets=("$@")
if ((${#targets[@]} == 0)); then
  mapfile -t targets < <(cargo +nightly fuzz list)
fi
for target in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$target" "fuzz/artifacts/$target"
  before=$(ls "fuzz/artifacts/$target" | sort)
  echo "== $target (${SECONDS_EACH}s)"
  cargo +nightly fuzz run "$target" "fuzz/corpus/$target" -- -max_total_time="$SECONDS_EACH" -rss_limit_mb=4096 2>&1 \
    | grep -E '^(#[0-9]+ +DONE|==[0-9]+==|SUMMARY|Done|INFO: -max_total_time)|panicked|crash-' || true
  new=$(comm -13 <(echo "$before") <(ls "fuzz/artifacts/$target" | sort) | grep . || true)
  if [[ -n $new ]]; then
    echo "fuzz.sh: $target found a crash: fuzz/artifacts/$target/$new" >&2
    exit 1
  fi
done
echo "fuzz.sh: no crashes"
