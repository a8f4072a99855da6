#!/usr/bin/env bash
# Fuzz smoke test: builds every cargo-fuzz target in fuzz/ and runs each for
# FUZZ_SECONDS (default 30) from the committed corpus, two at a time. Fails
# on any crash; the crashing input lands in fuzz/artifacts/<target>/.
#
# cargo-fuzz needs nightly-only compiler flags; on the stable toolchain
# RUSTC_BOOTSTRAP=1 unlocks them. No sanitizer (-s none): the code fuzzed is
# safe Rust, so ASan adds build time and little else; debug assertions
# (-a) are on so integer overflow panics. New corpus entries go to a
# scratch directory, never into the committed corpus (see
# docs/reliability.md for how the corpus is refreshed).
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds="${FUZZ_SECONDS:-30}"
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "== installing cargo-fuzz"
  cargo install cargo-fuzz --locked --version 0.13.2
fi

targets=$(cargo fuzz list)
echo "== building fuzz targets: $(echo $targets)"
start=$SECONDS
cargo fuzz build -s none -a
echo "   built in $((SECONDS - start)) s"

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
run() {
  local t=$1
  mkdir -p "$scratch/$t"
  if cargo fuzz run -s none -a "$t" "$scratch/$t" "corpus/$t" -- \
      -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
      -print_final_stats=1 >"$scratch/$t.log" 2>&1; then
    echo "   $t: ok, $(grep -o 'stat::number_of_executed_units: *[0-9]*' "$scratch/$t.log" | grep -o '[0-9]*$') execs"
  else
    echo "   $t: FAILED"
    tail -n 40 "$scratch/$t.log"
    return 1
  fi
}

echo "== running each target for ${seconds} s"
start=$SECONDS
failed=0
set -- $targets
while (($#)); do
  pids=()
  run "$1" & pids+=($!)
  shift
  if (($#)); then run "$1" & pids+=($!); shift; fi
  for p in "${pids[@]}"; do wait "$p" || failed=1; done
done
echo "   fuzzed in $((SECONDS - start)) s"
exit "$failed"
