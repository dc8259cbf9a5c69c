#!/usr/bin/env bash
# Runs the conformance tester against mosquitto (Debian's package) and compares the tests that
# fail with the committed list, mqtt-conformance/expected/mosquitto-MAJOR.MINOR.txt (one test id
# per line, `#` comments). Any difference fails: a test that newly fails, and a listed test that
# now passes (then the list, and docs/mosquitto-conformance.md, are brought up to date).
#
# usage: mqtt-conformance/ci-mosquitto.sh [PATH_TO_mqtt-conformance]
set -euo pipefail
cd "$(dirname "$0")/.."
tester=${1:-target/debug/mqtt-conformance}
[ -x "$tester" ] || cargo build -q -p mqtt-conformance
mosquitto=$(command -v mosquitto || echo /usr/sbin/mosquitto)
version=$({ "$mosquitto" -h 2>/dev/null || true; } | awk '/^mosquitto version/{print $3; exit}')
series=$(cut -d. -f1,2 <<<"$version")
expected="mqtt-conformance/expected/mosquitto-$series.txt"
[ -f "$expected" ] || { echo "no expected-failures file for mosquitto $version ($expected)" >&2; exit 1; }
work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$work/mosquitto.conf" <<CONF
listener $port 127.0.0.1
allow_anonymous true
persistence false
CONF
"$mosquitto" -c "$work/mosquitto.conf" >"$work/mosquitto.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 50); do
  python3 -c "import socket; socket.create_connection(('127.0.0.1',$port),0.2)" 2>/dev/null && break
  sleep 0.1
done
echo "mosquitto $version on port $port"
status=0
"$tester" --broker "127.0.0.1:$port" --json "$work/report.json" >"$work/table.txt" || status=$?
if [ "$status" -ge 2 ]; then
  cat "$work/table.txt"; cat "$work/mosquitto.log" >&2
  echo "the tester could not run against mosquitto (exit $status)" >&2
  exit 1
fi
python3 - "$work/report.json" "$expected" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
failed = sorted(t["id"] for t in report["tests"] if t["result"] == "fail")
expected = sorted(l.split("#")[0].strip() for l in open(sys.argv[2]) if l.split("#")[0].strip())
new = [t for t in failed if t not in expected]
fixed = [t for t in expected if t not in failed]
counts = {}
for t in report["tests"]:
    counts[t["result"]] = counts.get(t["result"], 0) + 1
print(f"mosquitto: {len(report['tests'])} tests, {counts}; {len(failed)} failures, {len(expected)} expected")
for t in report["tests"]:
    if t["id"] in new:
        print(f"NEW FAILURE {t['id']}: [{t.get('statement')}] expected {t['expected']}; observed {t['observed']}")
        for line in t.get("transcript", [])[-12:]:
            print("    " + line)
for t in fixed:
    print(f"NOW PASSES (remove from {sys.argv[2]}): {t}")
sys.exit(1 if new or fixed else 0)
PY
