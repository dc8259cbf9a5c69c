#!/usr/bin/env bash
# Fuzzes one target: fuzz/run.sh TARGET [LIBFUZZER_FLAG ...], e.g. `fuzz/run.sh decode_v5 -max_total_time=600`.
#
# Starts from the committed corpus (fuzz/corpus/TARGET) and the fixed crashes
# (fuzz/regressions/TARGET), and writes what it learns to fuzz/corpus-work/TARGET, which git
# ignores: the working tree stays clean. To keep new inputs, merge them into the committed corpus:
#   cargo fuzz cmin TARGET corpus/TARGET   (after copying corpus-work/TARGET/* into it)
# Uses the stable toolchain with RUSTC_BOOTSTRAP=1; FUZZ_TOOLCHAIN=nightly uses `cargo +nightly`.
# A crash stops it with libFuzzer's report; the input is in fuzz/artifacts/TARGET/.
set -euo pipefail
if [ $# -lt 1 ]; then
  echo "usage: fuzz/run.sh TARGET [LIBFUZZER_FLAG ...]" >&2
  exit 2
fi
target="$1"
shift
cd "$(dirname "$0")"
# shellcheck source=toolchain.sh
. ./toolchain.sh
work="corpus-work/$target"
mkdir -p "$work" "corpus/$target"
inputs=("corpus/$target")
[ -d "regressions/$target" ] && inputs+=("regressions/$target")
exec "${fuzz[@]}" run -O "$target" "$work" "${inputs[@]}" -- -max_len=4096 -rss_limit_mb=2048 "$@"
