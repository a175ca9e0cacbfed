#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Turn the serial log of a guest run into per-test results and totals.

    results.py --plan PLAN [--host-log HOSTLOG] GUEST_LOG...

The guest (scripts/guest-init.sh) runs each line of PLAN and frames its
output with "@@@ BEGIN GROUP NAME" / "@@@ END GROUP NAME rc=N"; when
several guests shared the plan (run-qemu.sh, LANES), each line ran on one
of them, and each GUEST_LOG is judged, its kernel on its own.  Markers
are found anywhere in a line: a test killed in the middle of a line is
still seen to end.  The rules (Documentation/testing.rst, "How the verdict
is made"):

- every plan line has exactly one BEGIN/END record, in all the logs
  together: none, a BEGIN without its END, or two records, is a failure;
- TAP: one result per "ok"/"not ok" line; a TAP plan "1..N" must be
  matched by exactly N results at its indentation (KTAP subtests are
  indented); a SKIP or TODO fails unless the plan line declares it
  ("#: skip=PREFIX,..." / "todo=PREFIX,..."); no TAP result at all fails
  unless the plan line says "#: notap", which makes the exit code the
  result; a non-zero exit with no failing result fails;
- group "kernel": splats in the guest's kernel log, a non-empty kmemleak
  scan, a taint flag other than O and N, a guest that did not reach its
  end.
HOSTLOG holds records made on the host (the harness's own tests), judged
like the guest's and listed first.  The last line is the totals, "N
passed, N failed" (", N skipped" when any were skipped); the exit status
is non-zero on any failure.
"""

import argparse
import collections
import re
import sys
import types

SPLATS = [
    r"WARNING:", r"BUG:", r"Oops", r"KASAN:", r"kernel BUG at", r"Kernel panic",
    r"general protection fault", r"UBSAN:", r"possible circular locking",
    r"possible recursive locking", r"inconsistent lock state",
    r"suspicious RCU usage", r"lockdep is turned off", r"detected stall",
    r"self-detected stall", r"Call Trace:",
    # The hung-task detector ("INFO: task X:1 blocked for more than 120
    # seconds.") and the lockup detectors.
    r"blocked for more than", r"soft lockup", r"hard LOCKUP",
]
SPLAT_RE = re.compile("|".join(SPLATS))
TAP_RE = re.compile(r"^(not ok|ok)\s+(\d+)\s*-?\s*(.*?)\s*(#\s*(\w+)\s*(.*))?$")
PLAN_RE = re.compile(r"^1\.\.(\d+)\s*(#\s*(\w+)\s*(.*))?$")
KSFT_SKIP = 4

# /proc/sys/kernel/tainted bit by bit (kernel/panic.c, taint_flags[]).
TAINT = [
    ("P", "proprietary module"), ("F", "module force-loaded"), ("S", "CPU out of spec"),
    ("R", "module force-removed"), ("M", "machine check"), ("B", "bad page"),
    ("U", "set from user space"), ("D", "kernel died: Oops or BUG"),
    ("A", "ACPI table overridden"), ("W", "kernel warning"), ("C", "staging driver"),
    ("I", "firmware workaround"), ("O", "out-of-tree module"), ("E", "unsigned module"),
    ("L", "soft lockup"), ("K", "live patch"), ("X", "auxiliary"),
    ("T", "struct randomization"), ("N", "KUnit test ran"), ("J", "fwctl used"),
]
# Every run has these: gmem_uffd is an out-of-tree module, KUnit runs at boot.
TAINT_OK = "ON"

# What a plan line expects (its "#:" annotations).
Expect = collections.namedtuple("Expect", "tap skip todo")
TAP = Expect(True, (), ())       # a plan line without annotations
NOTAP = Expect(False, (), ())    # the guest's own records (setup, leak)


class Results:
    def __init__(self):
        self.rows = []  # (group, name, status, detail)

    def add(self, group, name, status, detail=""):
        self.rows.append((group, name, status, detail))

    def since(self, start, status):
        return any(row[2] == status for row in self.rows[start:])


def read_plan(text, res):
    """The plan's lines as {(group, name): Expect}; bad annotations fail."""
    plan = collections.OrderedDict()
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        cmd, _, notes = line.partition("#:")
        fields = cmd.split()
        if len(fields) < 4:
            res.add("plan", line[:60], "fail", "    not GROUP NAME TIMEOUT COMMAND")
            continue
        tap, lists = True, {"skip": [], "todo": []}
        for word in notes.split():
            key, _, val = word.partition("=")
            if word == "notap":
                tap = False
            elif key in lists and val:
                lists[key] += val.split(",")
            else:
                res.add(fields[0], f"{fields[1]}: plan annotation '{word}'", "fail",
                        "    known: notap, skip=PREFIX,..., todo=PREFIX,...")
        if (fields[0], fields[1]) in plan:
            res.add(fields[0], f"{fields[1]}: twice in the plan", "fail",
                    "    its results could not be told apart")
        plan[(fields[0], fields[1])] = Expect(tap, tuple(lists["skip"]), tuple(lists["todo"]))
    return plan


def declared(prefixes, desc):
    return any(p == "*" or (desc and desc.startswith(p)) for p in prefixes)


def exit_text(rc):
    killed = " (killed: the plan line's timeout?)" if rc in (124, 137, 143) else ""
    return f"exit code {rc}{killed}"


def judge_tap(group, name, lines, rc, expect, res):
    """The results of one test's output."""
    start = len(res.rows)
    blocks = {}  # indentation -> [planned, results]
    leaves = 0
    plan_skip = None

    def close(deeper_than):
        for depth in sorted(d for d in blocks if d > deeper_than):
            planned, got = blocks.pop(depth)
            if got != planned:
                res.add(group, f"{name}: TAP plan 1..{planned}, {got} results", "fail",
                        f"    {exit_text(rc)}")

    for raw in lines:
        line = raw.strip()
        depth = len(raw) - len(raw.lstrip())
        if line.startswith("Bail out!"):
            res.add(group, f"{name}: {line}", "fail")
            continue
        m = PLAN_RE.match(line)
        if m:
            close(depth - 1)
            blocks[depth] = [int(m.group(1)), 0]
            if (m.group(3) or "").upper() == "SKIP":
                plan_skip = m.group(4)
            continue
        m = TAP_RE.match(line)
        if not m:
            continue
        verdict, num, desc, _, directive, reason = m.groups()
        # A result below deeper results closes a KTAP subtest: it is the
        # subtest's own line, not one more test.
        summary = any(d > depth for d in blocks)
        close(depth)
        if depth in blocks:
            blocks[depth][1] += 1
        if summary:
            if verdict != "ok" and not res.since(start, "fail"):
                res.add(group, f"{name}: suite {desc}", "fail")
            continue
        leaves += 1
        desc = desc or reason or f"#{num}"
        directive = (directive or "").upper()
        if directive in ("SKIP", "TODO"):
            ok = declared(expect.skip if directive == "SKIP" else expect.todo, desc)
            res.add(group, f"{name}: {desc}" + ("" if ok else f" ({directive})"),
                    "skip" if ok else "fail",
                    "" if ok else f"    {directive} not declared on the plan line "
                    f"('#: {directive.lower()}=PREFIX')")
        else:
            res.add(group, f"{name}: {desc}", "pass" if verdict == "ok" else "fail")
    close(-1)

    if res.since(start, "fail"):
        return
    if not leaves:
        if rc == KSFT_SKIP or plan_skip is not None:
            ok = declared(expect.skip, plan_skip)
            res.add(group, name + ("" if ok else " (SKIP)"), "skip" if ok else "fail",
                    f"    skipped as a whole: {plan_skip or exit_text(rc)}" +
                    ("" if ok else "; not declared on the plan line ('#: skip=*')"))
        elif expect.tap:
            res.add(group, name, "fail",
                    f"    no TAP result ({exit_text(rc)}); the plan line expects TAP "
                    "('#: notap' if the exit code is its result)")
        else:
            res.add(group, name, "pass" if rc == 0 else "fail",
                    "" if rc == 0 else f"    {exit_text(rc)}")
    elif rc != 0 and not (rc == KSFT_SKIP and res.since(start, "skip")):
        res.add(group, f"{name}: exit status", "fail", f"    {exit_text(rc)}")


class Record:
    def __init__(self, group, name):
        self.group, self.name = group, name
        self.lines = []
        self.rc = None      # None: no END
        self.problem = None


def scan(text):
    """The records and blocks of a serial log."""
    log = types.SimpleNamespace(records=[], dmesg=None, kmemleak=None, done=False,
                                taint=None)
    cur = None
    block = None

    def end_cur(problem):
        nonlocal cur
        if cur:
            cur.problem = problem
        cur = None

    for line in text.replace("\r", "").split("\n"):
        pieces = re.split(r"(?=@@@ )", line)
        for piece in pieces:
            words = piece.split()
            marker = piece.startswith("@@@ ") and len(words) > 1
            key = words[1:3] if marker else []
            if marker and words[1] == "BEGIN" and len(words) >= 4:
                end_cur("did not finish: a BEGIN came before its END")
                cur = Record(words[2], words[3])
                log.records.append(cur)
            elif marker and words[1] == "END" and len(words) >= 4:
                if cur and (cur.group, cur.name) == (words[2], words[3]):
                    m = re.search(r"rc=(\d+)", piece)
                    cur.rc = int(m.group(1)) if m else 1
                    cur = None
                else:
                    end_cur("did not finish: the END of another test came first")
                    stray = Record(words[2], words[3])
                    stray.problem = "an END without its BEGIN"
                    log.records.append(stray)
            elif key in (["DMESG", "BEGIN"], ["KMEMLEAK", "BEGIN"]):
                block = key[0]
                setattr(log, block.lower(), [])
            elif key in (["DMESG", "END"], ["KMEMLEAK", "END"]):
                block = None
            elif marker and words[1] == "TAINTED" and len(words) > 2 and words[2].isdigit():
                log.taint = int(words[2])
            elif key == ["GUEST", "DONE"]:
                log.done = True
            elif marker and words[1] == "GUEST":
                pass
            elif piece or len(pieces) == 1:
                # Text: a test's output, the kernel log or the kmemleak report.
                if cur:
                    cur.lines.append(piece)
                elif block:
                    getattr(log, block.lower()).append(piece)
    end_cur("did not finish: no END (hung, killed with the guest, or the guest died)")
    return log


def judge_records(log, plan, default, res, guest=""):
    """Judge each record of a log; a record not in the plan (the guest's
    own: setup, leak) gets GUEST after its name."""
    for r in log.records:
        name = r.name if (r.group, r.name) in plan else r.name + guest
        if r.problem:
            tail = "\n".join("    " + l for l in r.lines[-10:])
            res.add(r.group, name, "fail", f"    {r.problem}; its last lines:\n{tail}")
        else:
            judge_tap(r.group, name, r.lines, r.rc, plan.get((r.group, r.name), default), res)


def memcg_oom_report(klog, i):
    """Whether the Call Trace at klog[i] is the stack of a memory cgroup's OOM report: a
    cgroup reaching its memory.max (which tests do on purpose) is no kernel bug.  A global
    OOM still counts as a splat."""
    before = klog[max(0, i - 6):i]
    after = klog[i:i + 150]
    return (any("invoked oom-killer:" in l for l in before)
            and any("Memory cgroup stats for" in l or "oom-kill:constraint=CONSTRAINT_MEMCG" in l
                    for l in after))


def judge_kernel(log, lines, res, guest=""):
    """The checks of one guest's kernel, each named with GUEST at its end."""
    first = len(res.rows)
    judge_kernel_log(log, lines, res)
    for i in range(first, len(res.rows)):
        group, name, status, detail = res.rows[i]
        res.rows[i] = (group, name + guest, status, detail)


def judge_kernel_log(log, lines, res):
    if not log.done:
        res.add("kernel", "guest finished and powered off", "fail",
                "    no '@@@ GUEST DONE': timeout, panic or hang; see the log")

    # Kernel splats: from the guest's own dmesg when it got that far,
    # otherwise from the whole serial log (panics, hangs).
    klog = log.dmesg if log.dmesg is not None else lines
    splats = []
    for i, line in enumerate(klog):
        if SPLAT_RE.search(line) and not line.startswith("@@@"):
            # Call Trace lines belong to the splat that printed them.
            if "Call Trace:" in line and splats and i - splats[-1] < 60:
                continue
            if "Call Trace:" in line and memcg_oom_report(klog, i):
                continue
            if splats and i - splats[-1] < 5:
                continue
            splats.append(i)
    for i in splats:
        excerpt = "\n".join("    " + l for l in klog[max(0, i - 2):i + 25])
        res.add("kernel", f"splat: {klog[i].strip()[:100]}", "fail", excerpt)
    if log.dmesg is not None:
        res.add("kernel", "no WARN/BUG/Oops/KASAN/UBSAN/lockdep/RCU-stall/hung-task/lockup in dmesg",
                "pass" if not splats else "fail")

    if log.kmemleak is not None:
        # The scan must be empty, whoever allocated the objects (the
        # report says whether any came from gmem_uffd).
        objs = [l for l in log.kmemleak if "unreferenced object" in l]
        ours = " (some from gmem_uffd)" if "gmem_uffd" in "\n".join(log.kmemleak) else ""
        res.add("kernel", f"kmemleak scan ({len(objs)} unreferenced objects{ours})",
                "fail" if objs else "pass",
                "\n".join("    " + l for l in log.kmemleak[:60]) if objs else "")

    # The backstop: whatever a splat pattern missed, the kernel's taint
    # flags remember.
    if log.taint is None:
        if log.done:
            res.add("kernel", "taint flags", "fail", "    no '@@@ TAINTED' line from the guest")
        return
    flags = [(c, why) for bit, (c, why) in enumerate(TAINT) if log.taint >> bit & 1]
    flags += [(f"bit {b}", "unknown") for b in range(len(TAINT), 64) if log.taint >> b & 1]
    bad = [f"{c} ({why})" for c, why in flags if c not in TAINT_OK]
    res.add("kernel", "kernel tainted: " + ", ".join(bad) if bad else
            f"kernel not tainted (besides {', '.join(TAINT_OK)})",
            "fail" if bad else "pass",
            f"    /proc/sys/kernel/tainted = {log.taint}: "
            f"{' '.join(c for c, _ in flags)}" if bad else "")


def evaluate(guest_texts, plan_text, host_text=None):
    """Judge the serial logs of the guests that shared a plan: Results.
    GUEST_TEXTS is one log or a list of them; every plan line
    must have exactly one record among them all.  With several guests,
    each guest's own checks are named with "(guest K)"."""
    if isinstance(guest_texts, str):
        guest_texts = [guest_texts]
    res = Results()
    plan = read_plan(plan_text, res)
    if host_text is not None:
        host = scan(host_text)
        if not host.records:
            res.add("harness", "host tests", "fail", "    no record in the host log")
        judge_records(host, {}, TAP, res)
    runs = collections.Counter()
    for k, text in enumerate(guest_texts, 1):
        guest = f" (guest {k})" if len(guest_texts) > 1 else ""
        log = scan(text)
        judge_records(log, plan, NOTAP, res, guest)
        runs.update((r.group, r.name) for r in log.records)
        judge_kernel(log, text.replace("\r", "").split("\n"), res, guest)
    for group, name in plan:
        n = runs[(group, name)]
        if n != 1:
            res.add(group, name, "fail", "    no result: no guest ran this plan line"
                    if not n else f"    {n} records for one plan line")
    return res


def report(res, out=sys.stdout):
    """Print every result, the groups and the totals: the exit status."""
    counts = collections.Counter()
    groups = collections.OrderedDict()
    for group, name, status, detail in res.rows:
        counts[status] += 1
        groups.setdefault(group, collections.Counter())[status] += 1
        print(f"{status.upper()}  [{group}] {name}", file=out)
        if detail and status == "fail":
            print(detail, file=out)
    print(file=out)
    for group, c in groups.items():
        s = f"  {group}: {c['pass']} passed, {c['fail']} failed"
        if c["skip"]:
            s += f", {c['skip']} skipped"
        print(s, file=out)
    total = f"{counts['pass']} passed, {counts['fail']} failed"
    if counts["skip"]:
        total += f", {counts['skip']} skipped"
    print(total, file=out)
    return 1 if counts["fail"] or not res.rows else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--plan", required=True, help="the plan the guest ran")
    ap.add_argument("--host-log", help="records of tests run on the host")
    ap.add_argument("log", nargs="+", help="the serial log of each guest")
    args = ap.parse_args()

    def read(path):
        with open(path, errors="replace") as f:
            return f.read()

    host = read(args.host_log) if args.host_log else None
    return report(evaluate([read(l) for l in args.log], read(args.plan), host))


if __name__ == "__main__":
    sys.exit(main())
