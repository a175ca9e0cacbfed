#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Summarise a "make bench" guest run: a table on stdout, JSON and a PNG.

    bench-report.py SERIAL_LOG OUTDIR

Reads the lines selftests/gmem_bench.c prints in the serial log
(BENCH_TEST, BENCH, BENCH_SKIP, BENCH_ERROR, PROFILE, LATENCY) and the VMM demo's
"RESULT step=restore ..." lines (restore_mib_s against memcpy_mib_s, the
bound), and writes OUTDIR/bench.json and OUTDIR/bench.png (a chart of the
ratios, drawn with matplotlib).

For every test, each variant's value over the measured rounds (round 0 is
the warm-up, left out) is given as median, min and max; the ratio of gmem
to each other variant is taken round by round (the two ran back to back)
and given as the median of those ratios, with min and max.  The goals are
reported, never asserted: exit status 1 only if the log holds no result or
a benchmark reported an error.
"""

import datetime
import json
import os
import re
import statistics
import sys

# (test prefix, numerator, denominator, goal): goal None = informative.
COMPARISONS = [
    ("first-touch", "gmem", "kvm_gmem", 1.0),
    ("first-touch", "gmem", "memfd", None),
    ("vcpu-touch", "gmem", "kvm_gmem", None),
    ("missing", "gmem", "memfd", 1.05),
    ("missing", "gmem", "anon", None),
    ("minor", "gmem", "memfd", 1.05),
    ("pwrite", "gmem", "memfd", 1.05),
    ("restore", "gmem", "memcpy(gmem)", 0.8),
    ("restore", "memfd", "memcpy(memfd)", None),
    ("restore", "gmem", "memfd", None),
    # What secret hiding costs (GUEST_MEMFD_FLAG_NO_DIRECT_MAP: a direct map
    # change and a kernel TLB flush per page published).
    ("first-touch", "gmem_secret", "gmem", None),
    ("missing", "gmem_secret", "gmem", None),
    ("minor", "gmem_secret", "gmem", None),
    ("pwrite", "gmem_secret", "gmem", None),
    ("restore", "gmem-secret", "gmem", None),
]

KV_RE = re.compile(r"(\w+)=(\S+)")


def kv(line):
    return dict(KV_RE.findall(line))


class Test:
    def __init__(self, name, unit="", meta=None):
        self.name = name
        self.unit = unit
        self.meta = meta or {}
        self.values = {}  # variant -> {round: value}
        self.skips = {}   # variant -> reason
        self.order = []

    def add(self, variant, rnd, value):
        if variant not in self.values:
            self.values[variant] = {}
            self.order.append(variant)
        self.values[variant][rnd] = value


def summary(vals):
    return {"median": statistics.median(vals), "min": min(vals), "max": max(vals),
            "n": len(vals)}


def parse(path):
    text = open(path, errors="replace").read().replace("\r", "")
    tests, errors, profiles, info = {}, [], {}, {}
    section = None
    restore_rounds = {}
    for line in text.split("\n"):
        if line.startswith("@@@ GUEST kernel"):
            info["guest"] = line[len("@@@ GUEST "):]
        elif line.startswith("@@@ BEGIN "):
            section = line.split()[2:4]
        elif line.startswith("@@@ END "):
            m = re.search(r"rc=(\d+)", line)
            # Only the benchmarks' own exit codes: the harness's checks
            # (setup, leak, kernel) are counted by scripts/results.py.
            if m and section and m.group(1) not in ("0", "4") and section[0] == "bench":
                errors.append(f"{'/'.join(section)}: exit code {m.group(1)}")
            section = None
        elif line.startswith("BENCH_TEST "):
            d = kv(line)
            t = tests.setdefault(d["test"], Test(d["test"]))
            t.unit = d.get("unit", "")
            t.meta = {k: v for k, v in d.items() if k not in ("test", "unit")}
        elif line.startswith("BENCH "):
            d = kv(line)
            if d.get("warmup") == "1":
                continue
            t = tests.setdefault(d["test"], Test(d["test"], d.get("unit", "")))
            t.add(d["variant"], int(d["round"]), float(d["value"]))
        elif line.startswith("BENCH_SKIP "):
            d = kv(line)
            t = tests.setdefault(d["test"], Test(d["test"]))
            t.skips[d["variant"]] = line.split("reason=", 1)[-1]
        elif line.startswith("BENCH_ERROR "):
            errors.append(line[len("BENCH_ERROR "):])
        elif line.startswith("PROFILE "):
            d = kv(line)
            key = f"{d['test']}/{d['variant']}"
            profiles.setdefault(key, []).append(
                {"sym": d["sym"], "pct": float(d["pct"]), "samples": int(d["samples"])})
        elif line.startswith("LATENCY "):
            d = kv(line)
            info.setdefault("latency", []).append(d)
        elif line.startswith("RESULT ") and "step=restore" in line:
            d = kv(line)
            rate, bound = d.get("restore_mib_s"), d.get("memcpy_mib_s")
            if rate is None or bound is None:
                continue
            try:
                # The VMM's own definition (MiB served / restore_s), with
                # more digits than the line prints.
                rate = int(d["served"]) * 4096 / 2**20 / float(d["restore_s"])
            except (KeyError, ValueError, ZeroDivisionError):
                pass
            backend, mode = d.get("backend", "?"), d.get("mode", "?")
            name = f"restore-{mode}"
            t = tests.setdefault(name, Test(name, "MiB/s", {"mem_mib": d.get("mem_mib", "?")}))
            rnd = restore_rounds.get((name, backend), 0) + 1
            restore_rounds[(name, backend)] = rnd
            t.add(backend, rnd, float(rate))
            t.add(f"memcpy({backend})", rnd, float(bound))
    return tests, errors, profiles, info


def compare(tests):
    out = {}
    for name, t in tests.items():
        rows = []
        for prefix, num, den, goal in COMPARISONS:
            if not name.startswith(prefix) or num not in t.values or den not in t.values:
                continue
            a, b = t.values[num], t.values[den]
            rounds = sorted(set(a) & set(b))
            per = [a[r] / b[r] for r in rounds if b[r] > 0]
            if not per:
                continue
            row = {"num": num, "den": den, "per_round": per, **summary(per), "goal": goal}
            row["met"] = None if goal is None else row["median"] >= goal
            rows.append(row)
        out[name] = rows
    return out


def fmt(x):
    if x < 0.1:
        return f"{x:.2e}"
    if x >= 100:
        return f"{x:.0f}"
    if x >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


def rfmt(x):
    return f"{x:7.3f}" if x >= 0.01 else f"{x:7.1e}"



def table(tests, ratios, errors, info):
    lines = []
    lines.append(f"gmem_uffd bench, {info.get('guest', 'guest ?')}")
    lines.append(f"{'test':<16} {'variant':<14} {'median':>10} {'min':>10} {'max':>10}  unit  rounds")
    for name, t in tests.items():
        for v in t.order:
            s = summary(list(t.values[v].values()))
            lines.append(f"{name:<16} {v:<14} {fmt(s['median']):>10} {fmt(s['min']):>10} "
                         f"{fmt(s['max']):>10}  {t.unit}  {s['n']}")
        for v, why in t.skips.items():
            lines.append(f"{name:<16} {v:<14} {'skipped':>10}  ({why})")
    lines.append("")
    lines.append(f"{'ratio':<36} {'median':>7} {'min':>7} {'max':>7}  {'goal':>6}  verdict")
    for name, rows in ratios.items():
        for r in rows:
            goal = "" if r["goal"] is None else f">={r['goal']:.2f}"
            verdict = "" if r["met"] is None else ("met" if r["met"] else "MISSED")
            lines.append(f"{name + ' ' + r['num'] + '/' + r['den']:<36} {rfmt(r['median'])} "
                         f"{rfmt(r['min'])} {rfmt(r['max'])}  {goal:>6}  {verdict}")
    for e in errors:
        lines.append(f"ERROR: {e}")
    return "\n".join(lines)


# ---- A PNG chart without a plotting library ----

# 5x7 glyphs, five columns each, bit 0 at the top (the classic glcdfont).
def chart(ratios, info, path):
    """One horizontal bar per ratio (median), with its min-max range as an error bar and
    the goal, where there is one, as a red tick.  A linear scale, so that 0.97 and 1.05
    look apart; a ratio far below 1 (restore against memcpy under TCG) is a sliver, read
    from its label."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [(f"{name}  {r['num']}/{r['den']}", r) for name, rs in ratios.items() for r in rs]
    if not rows:
        return
    fig, ax = plt.subplots(figsize=(10, 0.45 * len(rows) + 1.6))
    ys = range(len(rows))
    med = [r["median"] for _, r in rows]
    err = [[r["median"] - r["min"] for _, r in rows], [r["max"] - r["median"] for _, r in rows]]
    colors = ["tab:blue" if r["met"] is None else ("tab:green" if r["met"] else "tab:orange")
              for _, r in rows]
    ax.barh(ys, med, xerr=err, color=colors, capsize=3, height=0.6)
    for y, (_, r) in zip(ys, rows):
        if r["goal"] is not None:
            ax.plot([r["goal"]] * 2, [y - 0.4, y + 0.4], color="red", linewidth=2)
        ax.annotate(rfmt(r["median"]).strip(), (r["max"], y), xytext=(4, -4),
                    textcoords="offset points", fontsize=8)
    ax.axvline(1.0, color="grey", linewidth=0.8)
    ax.set_xlim(0, 1.1 * max([2.0] + [r["max"] for _, r in rows] + [r["goal"] or 0 for _, r in rows]))
    ax.set_yticks(list(ys), [label for label, _ in rows], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("ratio gmem / other, paired per round (bar: median, whiskers: min-max, "
                  "red: goal)")
    ax.set_title(f"gmem_uffd bench: green met, orange missed, blue informative\n"
                 f"{info.get('guest', '')} {info.get('date', '')}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main():
    if len(sys.argv) != 3:
        print("usage: bench-report.py SERIAL_LOG OUTDIR", file=sys.stderr)
        return 2
    log, outdir = sys.argv[1], sys.argv[2]
    tests, errors, profiles, info = parse(log)
    ratios = compare(tests)
    info["date"] = datetime.datetime.fromtimestamp(os.path.getmtime(log)).strftime("%Y-%m-%d %H:%M")
    print(table(tests, ratios, errors, info))
    doc = {
        "date": datetime.datetime.fromtimestamp(os.path.getmtime(log)).isoformat(timespec="seconds"),
        "guest": info.get("guest"),
        "log": os.path.abspath(log),
        "tests": {
            name: {
                "unit": t.unit, "meta": t.meta, "skipped": t.skips,
                "variants": {v: {"rounds": t.values[v], **summary(list(t.values[v].values()))}
                             for v in t.order},
                "ratios": ratios.get(name, []),
            } for name, t in tests.items()
        },
        "profiles": profiles,
        "latency": info.get("latency", []),
        "errors": errors,
    }
    os.makedirs(outdir, exist_ok=True)
    with open(os.path.join(outdir, "bench.json"), "w") as f:
        json.dump(doc, f, indent=1)
    chart(ratios, info, os.path.join(outdir, "bench.png"))
    print(f"\nwritten: {os.path.join(outdir, 'bench.json')}, {os.path.join(outdir, 'bench.png')}")
    if errors or not any(t.values for t in tests.values()):
        print("bench-report: " + ("errors above" if errors else "no results in " + log),
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
