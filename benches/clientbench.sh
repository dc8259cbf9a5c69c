#!/usr/bin/env bash
# The async client (mqtt-client) beside rumqttc's AsyncClient, against this repository's broker
# (release build, fresh data directory): QoS 0 and QoS 1 publish throughput over one connection
# (in-flight window 100 for both), receive throughput (QoS 1, from a flooding process on our
# client), and client CPU per message. Each case runs RUNS times (default 5), alternating the
# two clients; the medians are printed as a Markdown table.
#
#   benches/clientbench.sh            # 500 000 messages of 64 bytes per run
#   COUNT=200000 RUNS=3 benches/clientbench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
COUNT=${COUNT:-500000}
RUNS=${RUNS:-5}
cargo build --release -q -p mqtt-broker -p benches --bin mqtt-broker --bin clientbench
dir=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
target/release/mqtt-broker --listen "127.0.0.1:$port" --data-dir "$dir" >"$dir/broker.log" 2>&1 &
broker=$!
trap 'kill $broker 2>/dev/null; rm -rf "$dir"' EXIT
sleep 0.5
results="$dir/results"
for run in $(seq 1 "$RUNS"); do
  for mode in pub0 pub1 recv; do
    for client in ours rumqttc; do
      target/release/clientbench --client "$client" --mode "$mode" --count "$COUNT" \
        --broker "127.0.0.1:$port" --topic "bench/$client/$mode/$run" >>"$results"
    done
  done
done
python3 - "$results" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    client, mode, count, secs, rate, cpu = line.split()
    rows.setdefault((mode, client), []).append((float(rate), float(cpu)))
names = {"pub0": "publish QoS 0", "pub1": "publish QoS 1 (window 100)", "recv": "receive QoS 1"}
print("| case | mqtt-client msgs/s | rumqttc msgs/s | ratio | mqtt-client CPU µs/msg | rumqttc CPU µs/msg |")
print("|---|---|---|---|---|---|")
for mode in ("pub0", "pub1", "recv"):
    ours = rows[(mode, "ours")]; theirs = rows[(mode, "rumqttc")]
    o = statistics.median(r for r, _ in ours); t = statistics.median(r for r, _ in theirs)
    oc = statistics.median(c for _, c in ours); tc = statistics.median(c for _, c in theirs)
    lo = min(r for r, _ in ours) / max(r for r, _ in theirs)
    hi = max(r for r, _ in ours) / min(r for r, _ in theirs)
    print(f"| {names[mode]} | {o:,.0f} | {t:,.0f} | {o/t:.2f}× ({lo:.2f}–{hi:.2f}) | {oc:.2f} | {tc:.2f} |")
PY
