#!/usr/bin/env bash
# Runs the criterion benchmarks RUNS times (default 3) and regenerates the tables and plots of
# benches/README.md from the median of the per-run medians. See benches/README.md.
#
#   benches/run.sh                 # everything, 3 runs (about 30 minutes on 2 cores)
#   RUNS=1 benches/run.sh          # one run
#   BENCH=codec benches/run.sh     # one bench target (codec or engine)
#   FILTER=publish benches/run.sh  # a criterion filter
#   KEEP=1 BENCH=engine benches/run.sh   # keep the other results (e.g. codec's) for the report
#
# The results of each run are kept as the criterion baselines run1, run2, ... under
# target/criterion (the previous results there are removed first, unless KEEP=1); the counted values
# (allocations, memory) are in target/criterion/extra/. The report needs Python 3 and, for the
# plots, matplotlib (installed with pip if missing).
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-3}
BENCH=${BENCH:-}
FILTER=${FILTER:-}

target_dir=${CARGO_TARGET_DIR:-target}
if [[ -z ${KEEP:-} ]]; then
    rm -rf "$target_dir/criterion"
fi

bench_args=(-p benches)
if [[ -n $BENCH ]]; then
    bench_args+=(--bench "$BENCH")
fi
cargo bench "${bench_args[@]}" --no-run
for run in $(seq 1 "$RUNS"); do
    echo "== run $run of $RUNS ($(date -u +%H:%M:%S), load: $(cut -d' ' -f1-3 /proc/loadavg))"
    if [[ -n $FILTER ]]; then
        cargo bench "${bench_args[@]}" -- --save-baseline "run$run" "$FILTER"
    else
        cargo bench "${bench_args[@]}" -- --save-baseline "run$run"
    fi
done

if ! python3 -c 'import matplotlib' 2>/dev/null; then
    python3 -m pip install --quiet matplotlib || echo "matplotlib could not be installed: no plots"
fi
python3 benches/report.py
