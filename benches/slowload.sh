#!/usr/bin/env bash
# The slow-consumer load (benches/src/bin/slowload.rs) against mqtt-broker and mosquitto:
# a burst to two fast readers, and a subscriber stuck for 10 s. See benches/README.md.
#
#   benches/slowload.sh                 # both scenarios, both brokers, RUNS=3 each
#   RUNS=1 TARGETS=ours benches/slowload.sh
#   BASE_BROKER=path TARGETS="ours ours-base" benches/slowload.sh   # a change, before/after
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
TARGETS=${TARGETS:-"ours mosquitto"}
SCENARIOS=${SCENARIOS:-"burst stuck"}
WORK=${WORK_DIR:-target/slowload}
mkdir -p "$WORK"
cargo build --release -q -p mqtt-broker
cargo build --release -q -p benches --bin slowload
MOSQUITTO=$(command -v mosquitto || echo /usr/sbin/mosquitto)
port=18900
for run in $(seq "$RUNS"); do
  for scenario in $SCENARIOS; do
    for target in $TARGETS; do
      port=$((port + 1))
      rm -rf "$WORK/data-$port"
      case $target in
        ours) target/release/mqtt-broker --listen "127.0.0.1:$port" --data-dir "$WORK/data-$port" >"$WORK/$target-$port.log" 2>&1 & ;;
        ours-base) "${BASE_BROKER:?ours-base needs BASE_BROKER=path}" --listen "127.0.0.1:$port" --data-dir "$WORK/data-$port" >"$WORK/$target-$port.log" 2>&1 & ;;
        mosquitto)
          printf 'listener %s 127.0.0.1\nallow_anonymous true\nset_tcp_nodelay true\n' "$port" >"$WORK/mosquitto-$port.conf"
          "$MOSQUITTO" -c "$WORK/mosquitto-$port.conf" >"$WORK/$target-$port.log" 2>&1 & ;;
      esac
      pid=$!
      sleep 0.5
      result=$(target/release/slowload --connect "127.0.0.1:$port" --scenario "$scenario" --broker-pid "$pid" | grep '^RESULT' || echo "RESULT failed")
      echo "run=$run target=$target $result"
      kill "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
    done
  done
done
