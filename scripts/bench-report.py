#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Summarise a "make bench" guest run: a table on stdout, JSON and a PNG.

    bench-report.py SERIAL_LOG OUTDIR

Reads the lines selftests/gmem_bench.c prints in the serial log
(BENCH_TEST, BENCH, BENCH_SKIP, BENCH_ERROR, PROFILE, LATENCY) and the VMM demo's
"RESULT step=restore ..." lines (restore_mib_s against memcpy_mib_s, the
bound), and writes OUTDIR/bench.json and OUTDIR/bench.png (a chart of the
ratios, drawn here: no plotting library needed).

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
import struct
import sys
import zlib

# (test prefix, numerator, denominator, goal): goal None = informative.
COMPARISONS = [
    ("first-touch", "gmem", "kvm_gmem", 1.0),
    ("first-touch", "gmem", "memfd", None),
    ("missing", "gmem", "memfd", 1.05),
    ("missing", "gmem", "anon", None),
    ("minor", "gmem", "memfd", 1.05),
    ("pwrite", "gmem", "memfd", 1.05),
    ("restore", "gmem", "memcpy(gmem)", 0.8),
    ("restore", "memfd", "memcpy(memfd)", None),
    ("restore", "gmem", "memfd", None),
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
FONT = {
    " ": "0000000000", "0": "3e5149453e", "1": "00427f4000", "2": "4261514946",
    "3": "2141454b31", "4": "1814127f10", "5": "2745454539", "6": "3c4a494930",
    "7": "0171090503", "8": "3649494936", "9": "064949291e", "A": "7e1111117e",
    "B": "7f49494936", "C": "3e41414122", "D": "7f4141221c", "E": "7f49494941",
    "F": "7f09090901", "G": "3e4149497a", "H": "7f0808087f", "I": "00417f4100",
    "J": "2040413f01", "K": "7f08142241", "L": "7f40404040", "M": "7f020c027f",
    "N": "7f0408107f", "O": "3e4141413e", "P": "7f09090906", "Q": "3e4151215e",
    "R": "7f09192946", "S": "4649494931", "T": "01017f0101", "U": "3f4040403f",
    "V": "1f2040201f", "W": "3f4038403f", "X": "6314081463", "Y": "0708700807",
    "Z": "6151494543", "-": "0808080808", ".": "0060600000", "/": "2010080402",
    "(": "001c224100", ")": "0041221c00", ":": "0036360000", "=": "1414141414",
    ">": "0041221408", "_": "4040404040", ",": "0050300000", "%": "2313086462",
    "[": "007f414100", "]": "004141417f", "+": "08083e0808",
    "<": "0814224100", "|": "00007f0000",
}


class Canvas:
    def __init__(self, w, h):
        self.w, self.h = w, h
        self.px = bytearray(b"\xff" * (w * h * 3))

    def rect(self, x0, y0, x1, y1, rgb):
        x0, x1 = max(0, int(x0)), min(self.w, int(x1))
        y0, y1 = max(0, int(y0)), min(self.h, int(y1))
        if x1 <= x0:
            return
        row = bytes(rgb) * (x1 - x0)
        for y in range(y0, y1):
            o = (y * self.w + x0) * 3
            self.px[o:o + len(row)] = row

    def text(self, x, y, s, rgb=(0, 0, 0), scale=2):
        for ch in s:
            glyph = FONT.get(ch) or FONT.get(ch.upper()) or FONT[" "]
            for cx in range(5):
                col = int(glyph[2 * cx:2 * cx + 2], 16)
                for cy in range(7):
                    if col >> cy & 1:
                        self.rect(x + cx * scale, y + cy * scale,
                                  x + (cx + 1) * scale, y + (cy + 1) * scale, rgb)
            x += 6 * scale

    def save(self, path):
        raw = b"".join(b"\x00" + bytes(self.px[y * self.w * 3:(y + 1) * self.w * 3])
                       for y in range(self.h))

        def chunk(kind, data):
            return (struct.pack(">I", len(data)) + kind + data +
                    struct.pack(">I", zlib.crc32(kind + data) & 0xffffffff))
        with open(path, "wb") as f:
            f.write(b"\x89PNG\r\n\x1a\n")
            f.write(chunk(b"IHDR", struct.pack(">IIBBBBB", self.w, self.h, 8, 2, 0, 0, 0)))
            f.write(chunk(b"IDAT", zlib.compress(raw, 9)))
            f.write(chunk(b"IEND", b""))


def chart(ratios, info, path):
    rows = [(name, r) for name, rs in ratios.items() for r in rs]
    label_w, plot_w, row_h, top = 460, 560, 30, 92
    w, h = label_w + plot_w + 40, top + row_h * max(1, len(rows)) + 50
    c = Canvas(w, h)
    c.text(10, 10, "gmem_uffd bench: ratio gmem / other, per round paired")
    c.text(10, 32, "bar: median, line: min to max, red: goal. green met, orange missed",
           (80, 80, 80))
    c.text(10, 54, (info.get("guest", "") + " " + info.get("date", ""))[:80], (80, 80, 80))
    hi = max([1.5] + [r["max"] for _, r in rows] + [r["goal"] or 0 for _, r in rows])
    hi = (int(hi * 2) + 1) / 2.0

    def X(v):
        return label_w + v / hi * plot_w
    # Grid every 0.25, labels every 0.5, 1.0 darker.
    v = 0.0
    while v <= hi + 1e-9:
        shade = (150, 150, 150) if abs(v - 1.0) < 1e-9 else (225, 225, 225)
        c.rect(X(v), top - 6, X(v) + 1, h - 40, shade)
        if abs(v * 2 - round(v * 2)) < 1e-9:
            c.text(X(v) - 12, h - 34, f"{v:.1f}", (60, 60, 60))
        v += 0.25
    for i, (name, r) in enumerate(rows):
        y = top + i * row_h
        c.text(10, y + 6, f"{name} {r['num']}/{r['den']}"[:37])
        if r["met"] is None:
            color = (100, 140, 200)
        else:
            color = (60, 170, 90) if r["met"] else (220, 120, 40)
        c.rect(X(0), y + 4, X(r["median"]), y + row_h - 6, color)
        mid = y + row_h // 2 - 1
        c.rect(X(r["min"]), mid, X(r["max"]) + 1, mid + 2, (0, 0, 0))
        c.rect(X(r["min"]), mid - 5, X(r["min"]) + 2, mid + 7, (0, 0, 0))
        c.rect(X(r["max"]) - 1, mid - 5, X(r["max"]) + 1, mid + 7, (0, 0, 0))
        if r["goal"] is not None:
            c.rect(X(r["goal"]) - 1, y + 1, X(r["goal"]) + 2, y + row_h - 3, (200, 0, 0))
        c.text(max(X(r["median"]), X(r["max"])) + 6, y + 8, rfmt(r["median"]).strip(), (40, 40, 40))
    c.save(path)


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
