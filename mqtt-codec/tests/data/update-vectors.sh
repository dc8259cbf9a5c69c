#!/usr/bin/env bash
# Writes tests/data/vectors.tsv anew from the hex-vector tests (vectors_v5.rs,
# vectors_v311.rs): every vector their helpers check, one per line, sorted.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=tests/data/vectors.tsv
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
RECORD_VECTORS="$tmp" cargo test -q -p mqtt-codec --test vectors_v5 --test vectors_v311 >/dev/null
{
  echo "# The codec's hex vectors, written by tests/data/update-vectors.sh from vectors_v5.rs and"
  echo "# vectors_v311.rs; run by tests/vectors_file.rs and by the firmware under QEMU (firmware/)."
  echo "# valid<TAB>version<TAB>hex: decodes, and re-encodes to the same bytes."
  echo "# malformed<TAB>version<TAB>hex<TAB>violation<TAB>statement (- none)<TAB>reason code: refused so."
  echo "# version: 5, 3.1.1, or server (a server's decoder, which learns the version from the CONNECT)."
  LC_ALL=C sort -u "$tmp"
} >"$out"
echo "$(grep -vc '^#' "$out") vectors in $out"
