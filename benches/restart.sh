#!/usr/bin/env bash
# Restart time and memory per queued message: one offline durable session subscribed to q/#,
# N QoS 1 messages of 64 bytes published to it (benches/bulk_publish.py, 500 in flight), then
# SIGTERM and a restart. See benches/README.md ("Restart with 1 000 000 queued messages").
#
#   N=1000000 benches/restart.sh     # needs mosquitto_sub (mosquitto-clients) and python3
set -euo pipefail
N=${N:-1000000}
PORT=${PORT:-18830}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
(cd "$ROOT" && cargo build --release -q -p mqtt-broker)
BIN=$ROOT/target/release/mqtt-broker
D=$(mktemp -d "${TMPDIR:-/tmp}/restart.XXXXXX")
trap 'rm -rf "$D"' EXIT
rss() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
start() {
    "$BIN" --listen "127.0.0.1:$PORT" --max-queued-messages 2000000 \
        --max-queued-bytes 1000000000 --data-dir "$D/data" >"$D/out" 2>"$D/err" &
    echo $!
}
stop() { kill -TERM "$1"; while kill -0 "$1" 2>/dev/null; do sleep 0.1; done; }
pid=$(start)
while ! grep -q listening "$D/out" 2>/dev/null; do sleep 0.05; done
base=$(rss "$pid")
mosquitto_sub -h 127.0.0.1 -p "$PORT" -V mqttv5 -i r -c -x 3600 -q 1 -t 'q/#' -W 1 \
    >/dev/null 2>&1 || true
t0=$(date +%s.%N)
python3 "$ROOT/benches/bulk_publish.py" "$N" "$PORT"
t1=$(date +%s.%N)
loaded=$(rss "$pid")
echo "published $N in $(echo "$t1 - $t0" | bc) s; RSS $base -> $loaded KiB:" \
    "$(((loaded - base) * 1024 / N)) bytes per queued message"
stop "$pid"
echo "data file: $(du -h "$D/data/broker.redb" | cut -f1)"
t0=$(date +%s.%N)
pid=$(start)
while ! grep -q listening "$D/out" 2>/dev/null; do sleep 0.05; done
t1=$(date +%s.%N)
echo "restart with $N queued: $(echo "$t1 - $t0" | bc) s to listening; RSS $(rss "$pid") KiB"
stop "$pid"
