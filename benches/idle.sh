#!/usr/bin/env bash
# Memory per idle connection: N connections (CONNECT, CONNACK, nothing more) to the broker and
# to mosquitto, the RSS of each before and after (benches/idle.py). See benches/README.md.
#
#   N=10000 RUNS=3 benches/idle.sh        # needs python3 and mosquitto (for its column)
#   BIN=/path/to/mqtt-broker TARGETS=ours benches/idle.sh    # another build of the broker
set -euo pipefail
N=${N:-10000}
RUNS=${RUNS:-3}
PORT=${PORT:-18831}
PROTOCOL=${PROTOCOL:-5}
TARGETS=${TARGETS:-ours mosquitto}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [ -z "${BIN:-}" ]; then
    (cd "$ROOT" && cargo build --release -q -p mqtt-broker)
    BIN=$ROOT/target/release/mqtt-broker
fi
[ -x /usr/sbin/mosquitto ] && PATH=$PATH:/usr/sbin
ulimit -n $((N + 1024)) 2>/dev/null || ulimit -n "$(ulimit -Hn)"
D=$(mktemp -d "${TMPDIR:-/tmp}/idle.XXXXXX")
trap 'rm -rf "$D"' EXIT
printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\n' "$PORT" >"$D/mosquitto.conf"
for run in $(seq "$RUNS"); do
    for target in $TARGETS; do
        rm -rf "$D/data"
        case $target in
        ours) "$BIN" --listen "127.0.0.1:$PORT" --data-dir "$D/data" >"$D/out" 2>"$D/err" & ;;
        mosquitto) mosquitto -c "$D/mosquitto.conf" >"$D/out" 2>&1 & ;;
        *) echo "unknown target $target" >&2; exit 2 ;;
        esac
        pid=$!
        until python3 -c "import socket,sys; socket.create_connection(('127.0.0.1',$PORT)).close()" 2>/dev/null; do
            sleep 0.05
        done
        printf '%s run %s: ' "$target" "$run"
        python3 "$ROOT/benches/idle.py" "$N" "$PORT" "$pid" "$PROTOCOL"
        kill -TERM "$pid"
        wait "$pid" 2>/dev/null || true
    done
done
