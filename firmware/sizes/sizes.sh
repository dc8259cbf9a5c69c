#!/usr/bin/env bash
# Flash and static RAM of the same MQTT 5.0 client program with mqtt-embedded, minimq and
# rust-mqtt (src/bin/), minus an empty firmware with the same runtime; each program must also
# run under QEMU against the scripted server. Prints a markdown table (benches/README.md).
#
#   firmware/sizes/sizes.sh
set -euo pipefail
cd "$(dirname "$0")"
bin_dir=target/thumbv7em-none-eabihf/release
qemu=(qemu-system-arm -cpu cortex-m4 -machine mps2-an386 -nographic -semihosting-config enable=on,target=native -kernel)
cargo build -q --release --bin empty
cargo build -q --release --features ours --bin ours --bin ours-heap
cargo build -q --release --features minimq --bin minimq
cargo build -q --release --features rust-mqtt --bin rust-mqtt
# Sizes of the sections of an ELF file, in bytes: flash (vector table, .text, .rodata, and
# .data's initial values) and static RAM (.data, .bss, .uninit).
sizes() {
  local flash=0 ram=0 name size
  while read -r name size; do
    case $name in
      .vector_table | .text | .rodata) flash=$((flash + 16#$size)) ;;
      .data) flash=$((flash + 16#$size)); ram=$((ram + 16#$size)) ;;
      .bss | .uninit) ram=$((ram + 16#$size)) ;;
    esac
  done < <(readelf -SW "$1" | sed -n 's/^ *\[ *[0-9]*\] *\(\.[a-z_]*\) *[A-Z]* *[0-9a-f]* *[0-9a-f]* *\([0-9a-f]*\).*/\1 \2/p')
  echo "$flash $ram"
}
read -r empty_flash empty_ram < <(sizes "$bin_dir/empty")
echo "| program | flash bytes | over the empty firmware | static RAM bytes | over the empty firmware |"
echo "|---|---:|---:|---:|---:|"
echo "| empty (cortex-m-rt, embedded-alloc with a 64 KiB heap, semihosting, block_on) | $empty_flash | 0 | $empty_ram | 0 |"
for program in ours minimq rust-mqtt; do
  out=$(timeout 20 "${qemu[@]}" "$bin_dir/$program" 2>&1) || { echo "$program failed under QEMU: $out" >&2; exit 1; }
  read -r flash ram < <(sizes "$bin_dir/$program")
  echo "| $program | $flash | $((flash - empty_flash)) | $ram | $((ram - empty_ram)) |"
done
timeout 20 "${qemu[@]}" "$bin_dir/ours-heap" 2>&1 | grep -v terminating >&2
