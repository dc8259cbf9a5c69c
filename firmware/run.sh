#!/usr/bin/env bash
# Builds the test firmware for a Cortex-M4 (thumbv7em-none-eabihf) and runs it under QEMU
# (mps2-an386, semihosting): the codec's hex vectors, then a client session against the broker
# engine. Fails when the firmware fails (its exit code), or when it ran another number of
# vectors than the file holds (the std test, mqtt-codec/tests/vectors_file.rs, runs them all).
#
#   firmware/run.sh            # release build (opt-level z, LTO)
#   PROFILE=dev firmware/run.sh
set -euo pipefail
cd "$(dirname "$0")"
profile=${PROFILE:-release}
command -v qemu-system-arm >/dev/null || { echo "qemu-system-arm is not installed" >&2; exit 1; }
flag=--release
[ "$profile" = release ] || flag=
cargo build -q $flag
status=0
out=$(timeout 120 cargo run -q $flag 2>&1) || status=$?
echo "$out"
[ "$status" = 0 ] || { echo "the firmware failed (exit status $status)" >&2; exit 1; }
file=../mqtt-codec/tests/data/vectors.tsv
valid=$(grep -c $'^valid\t' "$file")
malformed=$(grep -c $'^malformed\t' "$file")
expected="vectors: $valid valid, $malformed malformed, 0 failed"
grep -qxF "$expected" <<<"$out" || { echo "expected \"$expected\"" >&2; exit 1; }
# (As mqtt-codec/tests/vectors_file.rs: a file cut short would not reach these.)
[ "$valid" -ge 80 ] && [ "$malformed" -ge 200 ] || { echo "too few vectors in $file" >&2; exit 1; }
grep -q "^session 5.0: resumed" <<<"$out" && grep -q "^session 3.1.1: resumed" <<<"$out" ||
  { echo "a client session did not run" >&2; exit 1; }
echo "firmware: ok (the $((valid + malformed)) vectors of $file, as on std)"
