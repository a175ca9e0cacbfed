#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Turn the serial log of a guest run into per-test results and totals.

The guest (scripts/guest-init.sh) frames each test with
"@@@ BEGIN GROUP NAME" / "@@@ END GROUP NAME rc=N".  A test that prints
TAP counts one result per "ok"/"not ok" line (SKIP directives count as
skipped); a test without TAP counts one result from its exit code.  A
non-zero exit, or fewer results than the TAP plan announced, is a failure
too.  Every kernel splat found in the guest's kernel log is a failure of
group "kernel", printed with an excerpt.  The last line is the totals:
"N passed, N failed" (", N skipped" when any were skipped).
"""

import collections
import re
import sys

SPLATS = [
    r"WARNING:", r"BUG:", r"Oops", r"KASAN:", r"kernel BUG at", r"Kernel panic",
    r"general protection fault", r"UBSAN:", r"possible circular locking",
    r"possible recursive locking", r"inconsistent lock state",
    r"suspicious RCU usage", r"lockdep is turned off", r"detected stall",
    r"self-detected stall", r"blocked for more than", r"Call Trace:",
]
SPLAT_RE = re.compile("|".join(SPLATS))
TAP_RE = re.compile(r"^(not ok|ok)\s+(\d+)\s*-?\s*(.*?)\s*(#\s*(\w+)\s*(.*))?$")
PLAN_RE = re.compile(r"^1\.\.(\d+)")
KSFT_SKIP = 4


class Results:
    def __init__(self):
        self.rows = []  # (group, name, status, detail)

    def add(self, group, name, status, detail=""):
        self.rows.append((group, name, status, detail))


def parse_test(group, name, lines, rc, res):
    plan = None
    seen = 0
    failed = 0
    suites = set()
    for raw in lines:
        line = raw.strip()
        # KTAP (KUnit): "# Subtest: SUITE" opens a suite whose own plan
        # counts its test cases; its closing "ok N SUITE" line is not a test.
        m = re.match(r"^# Subtest: (\S+)", line)
        if m:
            suites.add(m.group(1))
            plan = None
            continue
        m = PLAN_RE.match(line)
        if m and plan is None:
            plan = int(m.group(1))
            continue
        m = TAP_RE.match(line)
        if not m:
            continue
        verdict, _, desc, _, directive, reason = m.groups()
        if desc in suites:
            if verdict != "ok" and failed == 0:
                failed += 1
                res.add(group, f"{name}: suite {desc}", "fail")
            continue
        seen += 1
        desc = desc or reason or f"#{m.group(2)}"
        directive = (directive or "").upper()
        if directive == "SKIP":
            res.add(group, f"{name}: {desc}", "skip")
        elif verdict == "ok" or directive in ("XFAIL", "TODO"):
            res.add(group, f"{name}: {desc}", "pass")
        else:
            failed += 1
            res.add(group, f"{name}: {desc}", "fail")
    if seen == 0:
        if rc == KSFT_SKIP:
            res.add(group, name, "skip", "exit code 4 (KSFT_SKIP)")
            return
        status = "pass" if rc == 0 else "fail"
        res.add(group, name, status, "" if rc == 0 else f"exit code {rc}")
        return
    if plan is not None and seen < plan:
        res.add(group, f"{name}: {plan - seen} planned tests did not run",
                "fail", f"exit code {rc}")
    elif rc != 0 and failed == 0:
        res.add(group, f"{name}: exit status", "fail", f"exit code {rc}")


def main():
    log = open(sys.argv[1], errors="replace").read().replace("\r", "")
    lines = log.split("\n")
    res = Results()
    cur = None
    body = []
    dmesg = None
    kmemleak = None
    block = None
    done = False
    retries = []
    for line in lines:
        if line.startswith("@@@ BEGIN "):
            parts = line.split()
            cur = (parts[2], parts[3])
            body = []
            continue
        if line.startswith("@@@ END ") and cur:
            m = re.search(r"rc=(\d+)", line)
            parse_test(cur[0], cur[1], body, int(m.group(1)) if m else 1, res)
            cur = None
            continue
        if line == "@@@ DMESG BEGIN":
            block, dmesg = "dmesg", []
            continue
        if line == "@@@ DMESG END":
            block = None
            continue
        if line == "@@@ KMEMLEAK BEGIN":
            block, kmemleak = "kmemleak", []
            continue
        if line == "@@@ KMEMLEAK END":
            block = None
            continue
        if line.startswith("@@@ KNOWN-ISSUE-RETRY") and cur:
            retries.append(f"{cur[0]}/{cur[1]}: {line[len('@@@ KNOWN-ISSUE-RETRY '):]}")
            continue
        if line == "@@@ GUEST DONE":
            done = True
            continue
        if cur:
            body.append(line)
        elif block == "dmesg":
            dmesg.append(line)
        elif block == "kmemleak":
            kmemleak.append(line)

    if cur:
        res.add(cur[0], f"{cur[1]}", "fail", "did not finish (guest hung or died)")
        parse_test(cur[0], cur[1] + " (partial)", body, 1, Results())
    if not done:
        res.add("kernel", "guest finished and powered off", "fail",
                "no '@@@ GUEST DONE': timeout, panic or hang; see the log")

    # Kernel splats: from the guest's own dmesg when it got that far,
    # otherwise from the whole serial log (panics, hangs).
    klog = dmesg if dmesg is not None else lines
    splats = []
    for i, line in enumerate(klog):
        if SPLAT_RE.search(line) and not line.startswith("@@@"):
            # Call Trace lines belong to the splat that printed them.
            if "Call Trace:" in line and splats and i - splats[-1] < 60:
                continue
            if splats and i - splats[-1] < 5:
                continue
            splats.append(i)
    for i in splats:
        excerpt = "\n".join("    " + l for l in klog[max(0, i - 2):i + 25])
        res.add("kernel", f"splat: {klog[i].strip()[:100]}", "fail", excerpt)
    if dmesg is not None:
        res.add("kernel", "no WARN/BUG/Oops/KASAN/lockdep/RCU-stall in dmesg",
                "pass" if not splats else "fail")

    if kmemleak is not None:
        # The scan must be empty, whoever allocated the objects (the
        # report says whether any came from gmem_uffd).
        objs = [l for l in kmemleak if "unreferenced object" in l]
        ours = " (some from gmem_uffd)" if "gmem_uffd" in "\n".join(kmemleak) else ""
        res.add("kernel", f"kmemleak scan ({len(objs)} unreferenced objects{ours})",
                "fail" if objs else "pass",
                "\n".join("    " + l for l in kmemleak[:60]) if objs else "")

    counts = collections.Counter()
    groups = collections.OrderedDict()
    for group, name, status, detail in res.rows:
        counts[status] += 1
        groups.setdefault(group, collections.Counter())[status] += 1
        tag = {"pass": "PASS", "fail": "FAIL", "skip": "SKIP"}[status]
        print(f"{tag}  [{group}] {name}")
        if detail and status == "fail":
            print(detail)
    print()
    for group, c in groups.items():
        s = f"  {group}: {c['pass']} passed, {c['fail']} failed"
        if c["skip"]:
            s += f", {c['skip']} skipped"
        print(s)
    for r in retries:
        print(f"  note: known upstream issue hit and retried once: {r}")
    total = f"{counts['pass']} passed, {counts['fail']} failed"
    if counts["skip"]:
        total += f", {counts['skip']} skipped"
    print(total)
    return 1 if counts["fail"] or not res.rows else 0


if __name__ == "__main__":
    sys.exit(main())
