#!/usr/bin/env python3
"""Turns the criterion results under target/criterion into the tables and plots of
benches/README.md.

    python3 benches/report.py [--criterion DIR] [--readme FILE] [--plots DIR]

Inputs:
  - criterion's per-benchmark results: <DIR>/<bench>/<baseline>/{benchmark,estimates}.json.
    When baselines named run1, run2, ... exist (benches/run.sh saves one per repetition),
    each benchmark's figure is the median of its per-run medians, and the spread (min-max of
    the per-run medians) is given beside it; otherwise criterion's `new` baseline is used.
  - <DIR>/extra/*.json: allocation counts, memory and other values the bench binaries
    record besides criterion (benches/src/lib.rs, `Extras`).

Outputs: the sections between `<!-- results:NAME -->` and `<!-- /results:NAME -->` in the
README are replaced; PNG plots go to --plots (benches/results/).
"""
import argparse
import json
import math
import os
import re
import statistics
import sys
from collections import defaultdict

CONTENDERS = ["ours", "ours-borrowed", "rumqttc", "mqttbytes", "mqtt-protocol-core", "mqttrs"]
OURS = ("ours", "ours-borrowed")


def load_criterion(root):
    """{full_id: {"group", "function", "value", "throughput", "runs": [median ns, ...]}}"""
    results = {}
    for dirpath, _dirs, files in os.walk(root):
        if "benchmark.json" not in files or "estimates.json" not in files:
            continue
        baseline = os.path.basename(dirpath)
        if baseline in ("base", "change", "report"):
            continue
        with open(os.path.join(dirpath, "benchmark.json")) as f:
            bench = json.load(f)
        with open(os.path.join(dirpath, "estimates.json")) as f:
            est = json.load(f)
        entry = results.setdefault(
            bench["full_id"],
            {
                "group": bench["group_id"],
                "function": bench.get("function_id") or "",
                "value": bench.get("value_str") or "",
                "throughput": bench.get("throughput"),
                "baselines": {},
            },
        )
        entry["baselines"][baseline] = est["median"]["point_estimate"]
    for entry in results.values():
        runs = {k: v for k, v in entry["baselines"].items() if re.fullmatch(r"run\d+", k)}
        chosen = runs if runs else {k: v for k, v in entry["baselines"].items() if k == "new"}
        entry["runs"] = sorted(chosen.values())
        entry["median"] = statistics.median(entry["runs"]) if entry["runs"] else None
    return results


def load_extras(root):
    """{(group, id, metric): value}"""
    extras = {}
    d = os.path.join(root, "extra")
    if not os.path.isdir(d):
        return extras
    for name in sorted(os.listdir(d)):
        if not name.endswith(".json"):
            continue
        with open(os.path.join(d, name)) as f:
            for row in json.load(f):
                extras[(row["group"], row["id"], row["metric"])] = row["value"]
    return extras


def fmt_time(ns):
    if ns is None:
        return "—"
    if ns < 1_000:
        return f"{ns:.0f} ns" if ns >= 100 else f"{ns:.1f} ns"
    if ns < 1_000_000:
        return f"{ns / 1_000:.2f} µs" if ns < 10_000 else f"{ns / 1_000:.1f} µs"
    if ns < 1_000_000_000:
        return f"{ns / 1_000_000:.2f} ms"
    return f"{ns / 1_000_000_000:.2f} s"


def fmt_rate(per_s):
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if per_s >= scale:
            return f"{per_s / scale:.2f} {unit}"
    return f"{per_s:.0f} "


def spread(entry):
    runs = entry["runs"]
    if len(runs) < 2 or not entry["median"]:
        return ""
    lo, hi = runs[0], runs[-1]
    return f" ±{(hi - lo) / 2 / entry['median'] * 100:.0f}%"


def throughput_of(entry):
    t = entry.get("throughput") or {}
    for kind in ("Bytes", "BytesDecimal", "Elements"):
        if kind in t and entry["median"]:
            return kind, t[kind] / (entry["median"] / 1e9)
    return None, None


# ---- codec -------------------------------------------------------------------------------


def codec_tables(results, extras):
    by_case = defaultdict(dict)  # (direction, case) -> contender -> entry
    for entry in results.values():
        m = re.fullmatch(r"(decode|encode)/(.+)", entry["group"])
        if not m:
            continue
        by_case[(m.group(1), m.group(2))][entry["function"] or entry["value"]] = entry
    if not by_case:
        return "_No codec results: run `cargo bench -p benches --bench codec`._\n", {}
    contenders = [c for c in CONTENDERS if any(c in v for v in by_case.values())]
    contenders += sorted({c for v in by_case.values() for c in v} - set(contenders))
    out = []
    ratios = {}
    for direction in ("decode", "encode"):
        cases = sorted(c for d, c in by_case if d == direction)
        if not cases:
            continue
        out.append(f"**{direction}** — median time per iteration (one packet; the 20 packets "
                   "of the stream for `mixed_stream`). In brackets beside a peer: its time "
                   "divided by ours. The last columns: the fastest peer's time divided by ours "
                   "(above 1: we are faster), for the owned `Packet` API and the borrowed "
                   "`PacketRef` (decode) / `PublishRef` (encode). `—`: no such API or no codec for that version.\n")
        out.append("| case | size | " + " | ".join(contenders)
                   + " | fastest peer / ours | fastest peer / ours-borrowed |")
        out.append("|---|---:|" + "---:|" * len(contenders) + "---:|---:|")
        for case in cases:
            row = by_case[(direction, case)]
            ours = row.get("ours")
            size = ""
            if ours and (ours.get("throughput") or {}).get("Bytes"):
                size = f"{ours['throughput']['Bytes']} B"
            cells = []
            for c in contenders:
                e = row.get(c)
                if not e or e["median"] is None:
                    cells.append("—")
                    continue
                cell = fmt_time(e["median"]) + spread(e)
                if c not in OURS and ours and ours["median"]:
                    cell += f" ({e['median'] / ours['median']:.2f})"
                cells.append(cell)
            peers = [e["median"] for c, e in row.items() if c not in OURS and e["median"]]
            ratio_cells = []
            for mine in OURS:
                m = row.get(mine)
                if peers and m and m["median"]:
                    r = min(peers) / m["median"]
                    ratios[(direction, case, mine)] = r
                    ratio_cells.append(f"**{r:.2f}×**")
                else:
                    ratio_cells.append("—")
            out.append(f"| `{case}` | {size} | " + " | ".join(cells) + " | " + " | ".join(ratio_cells) + " |")
        out.append("")
    # Throughput (bytes/s) of ours, and allocations per operation for everyone.
    out.append("**Heap allocations per operation** (counted by a global counting allocator over "
               "1 000 operations; the bytes requested are in brackets).\n")
    out.append("| operation | " + " | ".join(contenders) + " |")
    out.append("|---|" + "---:|" * len(contenders))
    for (direction, case) in sorted(by_case):
        group = f"{direction}/{case}"
        cells = []
        for c in contenders:
            a = extras.get((group, c, "allocs"))
            b = extras.get((group, c, "alloc_bytes"))
            if a is None:
                cells.append("—")
            else:
                cells.append(f"{a:.1f}" + (f" ({b:.0f} B)" if b else ""))
        out.append(f"| {direction} `{case}` | " + " | ".join(cells) + " |")
    out.append("")
    return "\n".join(out) + "\n", ratios


def strictness_table(extras):
    rows = defaultdict(dict)
    ids = set()
    for (group, ident, metric), value in extras.items():
        if group != "strictness" or not metric.startswith("rejects:"):
            continue
        rows[metric[len("rejects:"):]][ident] = value
        ids.add(ident)
    if not rows:
        return "_No strictness results._\n"
    order = sorted(ids, key=lambda i: (next((k for k, c in enumerate(CONTENDERS) if i.startswith(c)), 99), i))
    sym = {1.0: "rejects", 0.0: "**accepts**", 2.0: "**panics**"}
    out = ["| malformed input | " + " | ".join(order) + " |",
           "|---|" + "---|" * len(order)]
    for case in sorted(rows):
        out.append(f"| {case} | " + " | ".join(sym.get(rows[case].get(i), "—") for i in order) + " |")
    return "\n".join(out) + "\n"


# ---- engine ------------------------------------------------------------------------------


def numeric(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def engine_tables(results, extras, plots_dir, readme_dir):
    groups = defaultdict(list)
    for entry in results.values():
        if re.match(r"(decode|encode)/", entry["group"]):
            continue
        groups[entry["group"]].append(entry)
    out = []
    for group in sorted(groups):
        entries = sorted(groups[group], key=lambda e: (e["function"], numeric(e["value"]) or 0, e["value"]))
        out.append(f"**`{group}`**\n")
        out.append("| benchmark | parameter | median time | throughput |")
        out.append("|---|---:|---:|---:|")
        for e in entries:
            kind, rate = throughput_of(e)
            unit = {"Bytes": "B/s", "BytesDecimal": "B/s", "Elements": "/s"}.get(kind, "")
            tp = f"{fmt_rate(rate)}{unit}" if rate else ""
            out.append(f"| {e['function'] or '—'} | {e['value'] or '—'} | {fmt_time(e['median'])}{spread(e)} | {tp} |")
        out.append("")
        plot = plot_group(group, entries, plots_dir)
        if plot:
            rel = os.path.relpath(plot, readme_dir)
            out.append(f"![{group}]({rel})\n")
    extra_groups = sorted({g for (g, _i, _m) in extras if not re.match(r"(decode|encode)/|strictness$", g)})
    if extra_groups:
        out.append("**Counted (not timed)**: allocations per operation, memory, setup.\n")
        out.append("| group | id | metric | value |")
        out.append("|---|---|---|---:|")
        for (g, i, m), v in sorted(extras.items()):
            if g in extra_groups:
                val = "—" if v is None else (f"{v:,.0f}" if abs(v) >= 100 else f"{v:.2f}")
                out.append(f"| {g} | {i} | {m} | {val} |")
        out.append("")
    return "\n".join(out) + "\n"


# What the parameter of a group is, and what its throughput counts.
X_LABELS = {
    "route/fanout": ("subscribers of the topic", "deliveries per second"),
    "route/sessions": ("sessions (10 subscriptions each)", "deliveries per second"),
    "route/subscriptions": ("subscriptions (1 000 sessions)", "deliveries per second"),
    "match/subscriptions": ("subscriptions", ""),
    "match/tree": ("subscriptions in the tree", ""),
}


def plot_group(group, entries, plots_dir):
    """A log-x plot of the median time (and throughput, if any) against a numeric parameter."""
    series = defaultdict(list)
    for e in entries:
        x = numeric(e["value"])
        if x is None or e["median"] is None:
            continue
        series[e["function"] or group].append((x, e))
    series = {k: sorted(v, key=lambda p: p[0]) for k, v in series.items() if len(v) >= 3}
    if not series:
        return None
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plots (pip install matplotlib)", file=sys.stderr)
        return None
    os.makedirs(plots_dir, exist_ok=True)
    with_tp = all(throughput_of(e)[1] for pts in series.values() for _x, e in pts)
    fig, axes = plt.subplots(1, 2 if with_tp else 1, figsize=(11 if with_tp else 6, 4))
    if not with_tp:
        axes = [axes]
    for name, pts in series.items():
        xs = [x for x, _ in pts]
        axes[0].plot(xs, [e["median"] / 1000 for _x, e in pts], marker="o", label=name)
        if with_tp:
            axes[1].plot(xs, [throughput_of(e)[1] for _x, e in pts], marker="o", label=name)
    axes[0].set_xscale("log")
    axes[0].set_yscale("log")
    axes[0].set_ylabel("median time per iteration (µs)")
    xlabel, ylabel = X_LABELS.get(group, ("parameter", ""))
    axes[0].set_xlabel(xlabel)
    axes[0].grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=8)
    if with_tp:
        kind = throughput_of(series[next(iter(series))][0][1])[0]
        axes[1].set_xscale("log")
        axes[1].set_yscale("log")
        axes[1].set_ylabel(ylabel or ("bytes per second" if kind.startswith("Bytes") else "per second"))
        axes[1].set_xlabel(xlabel)
        axes[1].grid(True, which="both", alpha=0.3)
        axes[1].legend(fontsize=8)
    fig.suptitle(group)
    fig.tight_layout()
    path = os.path.join(plots_dir, re.sub(r"[^A-Za-z0-9_.-]+", "_", group) + ".png")
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def replace_section(text, name, body):
    start, end = f"<!-- results:{name} -->", f"<!-- /results:{name} -->"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    block = f"{start}\n{body}{end}"
    if pattern.search(text):
        return pattern.sub(lambda _m: block, text)
    return text.rstrip("\n") + f"\n\n{block}\n"


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--criterion", default=os.path.join(here, "..", "target", "criterion"))
    ap.add_argument("--readme", default=os.path.join(here, "README.md"))
    ap.add_argument("--plots", default=os.path.join(here, "results"))
    args = ap.parse_args()
    if not os.path.isdir(args.criterion):
        sys.exit(f"{args.criterion}: no criterion results; run `cargo bench -p benches` first")
    results = load_criterion(args.criterion)
    extras = load_extras(args.criterion)
    codec, ratios = codec_tables(results, extras)
    engine = engine_tables(results, extras, args.plots, os.path.dirname(args.readme))
    with open(args.readme) as f:
        text = f.read()
    text = replace_section(text, "codec", codec)
    text = replace_section(text, "strictness", strictness_table(extras))
    text = replace_section(text, "engine", engine)
    with open(args.readme, "w") as f:
        f.write(text)
    print(f"{len(results)} benchmarks, {len(extras)} counted values -> {args.readme}")
    for (direction, case, mine), r in sorted(ratios.items()):
        print(f"  {direction:6} {case:32} fastest peer / {mine:13} = {r:.2f}")


if __name__ == "__main__":
    main()
