#!/usr/bin/env bash
# Runs every fuzz target for a while: fuzz/smoke.sh [SECONDS_PER_TARGET] (default 60).
#
# Uses the stable toolchain with RUSTC_BOOTSTRAP=1 (cargo-fuzz needs nightly flags); set
# FUZZ_TOOLCHAIN=nightly to use `cargo +nightly` instead. Each target starts from the committed
# corpus (fuzz/corpus/TARGET) and the fixed crashes (fuzz/regressions/TARGET); what it learns goes
# to fuzz/corpus-work/TARGET (not committed): each target runs through fuzz/run.sh. A crash stops the script with a non-zero status and
# libFuzzer's report; the input is in fuzz/artifacts/TARGET/.
set -euo pipefail
seconds="${1:-60}"
cd "$(dirname "$0")"
# shellcheck source=toolchain.sh
. ./toolchain.sh

"${fuzz[@]}" build -O
for target in $("${fuzz[@]}" list); do
  echo "== fuzz $target for ${seconds}s"
  log="$(mktemp)"
  set +e
  ./run.sh "$target" -max_total_time="$seconds" -print_final_stats=1 >"$log" 2>&1
  status=$?
  set -e
  grep -E '^(#[0-9]+ +DONE|stat::number_of_executed_units|stat::peak_rss_mb)' "$log" || true
  if [ "$status" -ne 0 ]; then
    tail -n 60 "$log"
    echo "fuzz target $target failed (status $status); the input is in fuzz/artifacts/$target/" >&2
    exit "$status"
  fi
  rm -f "$log"
done
echo "fuzz smoke run: all targets clean"
