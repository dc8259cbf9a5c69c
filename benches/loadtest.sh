#!/usr/bin/env bash
# Load test: the broker (mqtt-broker) against mosquitto, with the
# load generator of benches/src/bin/loadtest.rs. See benches/README.md.
#
#   benches/loadtest.sh                      # 1000 connections, 100000 QoS 1 messages, 3 runs
#   RATE=20000 benches/loadtest.sh           # paced at 20000 msgs/s: latency at a fixed load
#   CONNECTIONS=100 MESSAGES=10000 RUNS=1 TARGETS="ours mosquitto" benches/loadtest.sh
#
# Environment (defaults in brackets):
#   CONNECTIONS [1000]  MESSAGES [100000]  QOS [1]  PROTOCOL [5]  PAYLOAD [64]  WINDOW [10]
#   RATE        []      total publish rate in msgs/s (empty: as fast as the windows allow)
#   SESSION_EXPIRY ["0 3600"]  Session Expiry Intervals to test, one table each: 0 = clean
#                       sessions (nothing about them need be persisted); > 0 = durable sessions
#                       (the example broker persists every QoS 1/2 message of those)
#   RUNS        [3]     repetitions; the table shows the median of each column
#   TIMEOUT     [300]   seconds, per load test run
#   TARGETS     ["ours ours-tmpfs mosquitto mosquitto-nodelay mosquitto-persist"]
#       ours               mqtt-broker, data dir on disk (fsync per commit)
#       ours-tmpfs         mqtt-broker, data dir on tmpfs (/dev/shm: fsync is a no-op)
#       ours-base          another build of mqtt-broker (BASE_BROKER=path), data dir on disk:
#                          a change measured before/after, interleaved in the same runs
#       mosquitto          mosquitto, persistence false (its defaults otherwise: Nagle on)
#       mosquitto-nodelay  the same with set_tcp_nodelay true (the example broker sets
#                          TCP_NODELAY on every connection)
#       mosquitto-persist  mosquitto, persistence true (written on autosave/shutdown only)
#       rumqttd            rumqttd 0.20 (benches/configs/rumqttd.toml; persistent sessions in
#                          memory only); installed with `cargo install rumqttd --version 0.20.0`
#                          when missing (without --locked: its locked `metrics` does not build
#                          on current rustc)
#   WORK_DIR    [target/loadtest]  where the on-disk data dirs and the logs go (not tmpfs)
#   LOADTEST_ARGS []    extra arguments for the load generator
#
# Each run starts the broker on a free loopback port with a fresh data directory, runs the
# load generator, reads the broker's peak RSS (VmHWM) and CPU time from /proc, and stops it
# (SIGTERM). Targets are interleaved within each repetition. Exit status: 0 when every run
# delivered every message, 1 otherwise.
set -euo pipefail

CONNECTIONS=${CONNECTIONS:-1000}
MESSAGES=${MESSAGES:-100000}
QOS=${QOS:-1}
PROTOCOL=${PROTOCOL:-5}
PAYLOAD=${PAYLOAD:-64}
WINDOW=${WINDOW:-10}
RATE=${RATE:-}
SESSION_EXPIRY=${SESSION_EXPIRY:-0 3600}
RUNS=${RUNS:-3}
TIMEOUT=${TIMEOUT:-300}
TARGETS=${TARGETS:-ours ours-tmpfs mosquitto mosquitto-nodelay mosquitto-persist}
LOADTEST_ARGS=${LOADTEST_ARGS:-}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK_DIR=${WORK_DIR:-$ROOT/target/loadtest}
mkdir -p "$WORK_DIR"
WORK_DIR=$(cd "$WORK_DIR" && pwd)
RUN_DIR=$(mktemp -d "$WORK_DIR/run.XXXXXX")

log() { printf '%s\n' "$*" >&2; }
die() { log "loadtest.sh: $*"; exit 1; }

# --- prerequisites --------------------------------------------------------------------------

case " $TARGETS " in
*" mosquitto"*)
    if ! command -v mosquitto >/dev/null 2>&1 && [ -x /usr/sbin/mosquitto ]; then
        PATH=$PATH:/usr/sbin
    fi
    if ! command -v mosquitto >/dev/null 2>&1; then
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
            log "installing mosquitto (apt-get install -y mosquitto)"
            apt-get install -y mosquitto >/dev/null 2>&1 ||
                { apt-get update >/dev/null && apt-get install -y mosquitto >/dev/null; } ||
                die "could not install mosquitto"
            PATH=$PATH:/usr/sbin
        else
            die "mosquitto is not installed (apt-get install mosquitto), or drop it from TARGETS"
        fi
    fi
    ;;
esac

case " $TARGETS " in
*" rumqttd "*)
    if ! command -v rumqttd >/dev/null 2>&1; then
        log "installing rumqttd (cargo install rumqttd --version 0.20.0): a few minutes"
        cargo install -q rumqttd --version 0.20.0 || die "could not install rumqttd"
    fi
    ;;
esac

# One file descriptor per connection in the load generator and in the broker, and spare.
want_fds=$((CONNECTIONS + 1024))
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt "$want_fds" ]; then
    ulimit -n "$want_fds" 2>/dev/null || ulimit -n "$(ulimit -Hn)" ||
        die "cannot raise the open-file limit to $want_fds"
    [ "$(ulimit -n)" = unlimited ] || [ "$(ulimit -n)" -ge "$want_fds" ] ||
        die "the open-file limit is $(ulimit -n), $want_fds needed (ulimit -Hn is $(ulimit -Hn))"
fi

log "building (release): the load generator and the broker"
(cd "$ROOT" && cargo build --release -q -p benches --bin loadtest &&
    cargo build --release -q -p mqtt-broker)
LOADTEST=$ROOT/target/release/loadtest
BROKER=$ROOT/target/release/mqtt-broker
case " $TARGETS " in
*" ours-base "*) [ -x "${BASE_BROKER:-}" ] || die "ours-base needs BASE_BROKER=path/to/mqtt-broker" ;;
esac

# --- helpers --------------------------------------------------------------------------------

BROKER_PID=
cleanup() {
    if [ -n "$BROKER_PID" ] && kill -0 "$BROKER_PID" 2>/dev/null; then
        kill -TERM "$BROKER_PID" 2>/dev/null || true
        wait "$BROKER_PID" 2>/dev/null || true
    fi
    # The data directories (logs and results are kept in $RUN_DIR).
    rm -rf "$RUN_DIR"/data-* /dev/shm/mqtt-loadtest-$$-* 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A TCP port nobody listens on (the kernel picks it; a race with other programs is possible
# but harmless: the broker would then fail to start and the run is reported as failed).
free_port() {
    if command -v python3 >/dev/null 2>&1; then
        python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
    else
        local port
        while :; do
            port=$((20000 + RANDOM % 40000))
            (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || { echo "$port"; return; }
        done
    fi
}

# Waits until something listens on 127.0.0.1:$1 (and process $2 is alive), at most 30 s.
wait_listening() {
    local i
    for i in $(seq 300); do
        kill -0 "$2" 2>/dev/null || return 1
        if command -v ss >/dev/null 2>&1; then
            ss -Hltn "sport = :$1" 2>/dev/null | grep -q . && return 0
        else
            (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        fi
        sleep 0.1
    done
    return 1
}

# Starts target $1 on port $2 with data directory $3, logging to $4.log (and configured by
# $4.conf); sets BROKER_PID.
start_broker() {
    local target=$1 port=$2 dir=$3 base=$4
    mkdir -p "$dir"
    case $target in
    ours-base)
        "$BASE_BROKER" --listen "127.0.0.1:$port" --data-dir "$dir" >"$base.log" 2>&1 &
        ;;
    ours | ours-tmpfs)
        "$BROKER" --listen "127.0.0.1:$port" --data-dir "$dir" >"$base.log" 2>&1 &
        ;;
    mosquitto | mosquitto-nodelay | mosquitto-persist)
        {
            echo "listener $port 127.0.0.1"
            echo "allow_anonymous true"
            echo "max_connections -1"
            if [ "$target" = mosquitto-persist ]; then
                echo "persistence true"
                echo "persistence_location $dir/"
            else
                echo "persistence false"
            fi
            [ "$target" != mosquitto-nodelay ] || echo "set_tcp_nodelay true"
        } >"$base.conf"
        mosquitto -c "$base.conf" >"$base.log" 2>&1 &
        ;;
    rumqttd)
        local listener=v5
        [ "$PROTOCOL" = 5 ] || listener=v4
        sed -e "s/@PORT@/$port/g" -e "s/@LISTENER@/$listener/g" \
            "$ROOT/benches/configs/rumqttd.toml" >"$base.toml"
        rumqttd --config "$base.toml" >"$base.log" 2>&1 &
        ;;
    *) die "unknown target $target" ;;
    esac
    BROKER_PID=$!
}

# Stops the broker, waiting for it to exit.
stop_broker() {
    kill -TERM "$BROKER_PID" 2>/dev/null || true
    wait "$BROKER_PID" 2>/dev/null || true
    BROKER_PID=
}

# The value of key $2 in a RESULT line $1.
field() { sed -n "s/.* $2=\([^ ]*\).*/\1/p" <<<"$1"; }

median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "-"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# " (min–max)" of the numbers on stdin, when there are two or more.
span() { sort -g | awk 'NR == 1 { min = $1 } { max = $1 } END { if (NR > 1) printf " (%s–%s)", min, max }'; }

ms() { awk -v us="$1" 'BEGIN { if (us == "-") print "-"; else printf "%.1f", us / 1000 }'; }

fstype() {
    local t
    t=$(findmnt -no FSTYPE -T "$1" 2>/dev/null | head -n1) || t=
    [ -n "$t" ] || t=$(stat -f -c %T "$1" 2>/dev/null) || t="?"
    echo "$t"
}

# --- runs -----------------------------------------------------------------------------------

RESULTS=$RUN_DIR/results.tsv
: >"$RESULTS"
failed=0
shm_ok=0
if [ -d /dev/shm ] && [ "$(fstype /dev/shm)" = tmpfs ]; then shm_ok=1; fi

log "machine: $(nproc) CPUs, $(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)," \
    "$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)"
log "work dir: $RUN_DIR ($(fstype "$RUN_DIR"))"

for run in $(seq "$RUNS"); do
  for expiry in $SESSION_EXPIRY; do
    for target in $TARGETS; do
        case $target in
        ours-tmpfs)
            [ "$shm_ok" = 1 ] || { log "skipping ours-tmpfs: /dev/shm is not a tmpfs"; continue; }
            dir=/dev/shm/mqtt-loadtest-$$-$target-$expiry-$run
            ;;
        *) dir=$RUN_DIR/data-$target-$expiry-$run ;;
        esac
        port=$(free_port)
        load=$(cut -d' ' -f1 /proc/loadavg)
        base=$RUN_DIR/$target-expiry$expiry-$run
        start_broker "$target" "$port" "$dir" "$base.broker"
        if ! wait_listening "$port" "$BROKER_PID"; then
            log "run $run $target: the broker did not start (see $base.broker.log)"
            stop_broker
            rm -rf "$dir"
            failed=$((failed + 1))
            continue
        fi
        out=$base.out
        # The load generator's CPU time too, when /usr/bin/time is there.
        timer=()
        [ ! -x /usr/bin/time ] || timer=(/usr/bin/time -f "%U %S" -o "$base.time")
        # shellcheck disable=SC2086 # LOADTEST_ARGS is split on purpose
        if "${timer[@]}" "$LOADTEST" --connect "127.0.0.1:$port" --connections "$CONNECTIONS" \
            --messages "$MESSAGES" --qos "$QOS" --protocol "$PROTOCOL" --payload "$PAYLOAD" \
            --window "$WINDOW" --session-expiry "$expiry" --timeout "$TIMEOUT" \
            ${RATE:+--rate "$RATE"} $LOADTEST_ARGS \
            >"$out" 2>&1; then
            status=ok
        else
            status=FAILED
            failed=$((failed + 1))
        fi
        # Peak RSS (kB) and CPU time (user + system, clock ticks) of the broker so far.
        hwm=$(awk '/^VmHWM:/ { print $2 }' "/proc/$BROKER_PID/status" 2>/dev/null || echo 0)
        ticks=$(awk '{ print $14 + $15 }' "/proc/$BROKER_PID/stat" 2>/dev/null || echo 0)
        stop_broker
        rm -rf "$dir"
        result=$(grep '^RESULT ' "$out" || echo "RESULT ok=0")
        cpu=$(awk -v t="$ticks" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.2f", t / hz }')
        gencpu=$(awk 'END { if (NF >= 2) printf "%.2f", $1 + $2; else print "-" }' "$base.time" 2>/dev/null || echo -)
        log "run $run, session expiry $expiry, $target (load $load): $status, $(field "$result" msgs_per_s) msgs/s," \
            "p50 $(ms "$(field "$result" p50_us)") ms, p99 $(ms "$(field "$result" p99_us)") ms," \
            "peak RSS $((hwm / 1024)) MiB, broker CPU $cpu s, load generator CPU $gencpu s"
        [ "$status" = ok ] || { log "  output:"; sed 's/^/    /' "$out" >&2; }
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$target" "$run" "$status" "$hwm" "$cpu" \
            "$load" "$result" "$expiry" "$gencpu" >>"$RESULTS"
    done
  done
done

# --- report ---------------------------------------------------------------------------------

describe() {
    case $1 in
    ours) echo "mqtt-broker, data dir on $(fstype "$RUN_DIR")" ;;
    ours-tmpfs) echo "mqtt-broker, data dir on tmpfs" ;;
    ours-base) echo "mqtt-broker built elsewhere ($BASE_BROKER), data dir on $(fstype "$RUN_DIR")" ;;
    mosquitto) echo "mosquitto $(mosquitto -h 2>/dev/null | sed -n 's/^mosquitto version //p' | head -n1), persistence false" ;;
    mosquitto-nodelay) echo "mosquitto, persistence false, set_tcp_nodelay true" ;;
    mosquitto-persist) echo "mosquitto, persistence true" ;;
    rumqttd) echo "rumqttd $(rumqttd --version 2>/dev/null | awk '{print $2}'), sessions in memory" ;;
    esac
}

for expiry in $SESSION_EXPIRY; do
echo
if [ "$expiry" = 0 ]; then sessions="clean sessions (Session Expiry Interval 0)"
else sessions="durable sessions (Session Expiry Interval $expiry s)"; fi
echo "$CONNECTIONS connections, $MESSAGES messages, QoS $QOS, MQTT $PROTOCOL, payload $PAYLOAD B," \
    "window $WINDOW, ${RATE:+paced at $RATE msgs/s, }$sessions; median of $RUNS runs" \
    "(range in brackets)"
echo
echo "| broker | msgs/s | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | setup s | peak RSS MiB | broker CPU s | load generator CPU s | ok runs |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
for target in $TARGETS; do
    sel() { awk -F'\t' -v t="$target" -v e="$expiry" '$1 == t && $8 == e' "$RESULTS"; }
    [ -n "$(sel)" ] || continue
    okrows() { sel | awk -F'\t' '$3 == "ok"'; }
    vals() { okrows | cut -f7 | while read -r line; do field "$line" "$1"; done; }
    col() { vals "$1" | median; }
    mib() { awk '$1 != "-" { printf "%.1f\n", $1 / 1024 }'; }
    hwm=$(okrows | cut -f4 | median)
    cpu="$(okrows | cut -f5 | median)$(okrows | cut -f5 | span)"
    gencpu=$(okrows | cut -f9 | grep -v '^-$' | median)
    printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s/%s |\n' \
        "$(describe "$target")" "$(col msgs_per_s)$(vals msgs_per_s | span)" "$(ms "$(col p50_us)")" \
        "$(ms "$(col p90_us)")" "$(ms "$(col p99_us)")" "$(ms "$(col p999_us)")" \
        "$(ms "$(col max_us)")" "$(col setup_s)" \
        "$(awk -v k="$hwm" 'BEGIN { if (k == "-") print "-"; else printf "%.1f", k / 1024 }')$(okrows | cut -f4 | mib | span)" \
        "$cpu" "$gencpu" "$(okrows | wc -l)" "$(sel | wc -l)"
done
done
echo
echo "Load average (1 min) before each run: $(cut -f6 "$RESULTS" | tr '\n' ' ')"
echo "Per-run output and broker logs: $RUN_DIR"

[ "$failed" = 0 ] || { log "loadtest.sh: $failed run(s) failed"; exit 1; }
