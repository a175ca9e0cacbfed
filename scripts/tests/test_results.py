#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Tests of scripts/results.py, the verdict of a guest run, on synthetic
serial logs: each hole a run could pass through has a log here and the
verdict it must get.  No third-party module, no guest.

    python3 scripts/tests/test_results.py       TAP, as make check runs it
    python3 -m unittest discover scripts/tests  the usual unittest runner
"""

import importlib.util
import io
import os
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))
RESULTS = os.path.join(TOP, "scripts", "results.py")
_spec = importlib.util.spec_from_file_location("results", RESULTS)
results = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(results)

PLAN = """\
# GROUP NAME TIMEOUT COMMAND ARGS...
gmem api 60 /tests/api
uffd stress 60 /tests/uffd-stress anon 32 8
"""
OK_TAINT = 1 << 12 | 1 << 18  # O and N


def record(group, name, body, rc=0):
    """A test as guest-init.sh frames it."""
    return f"\n@@@ BEGIN {group} {name}\n{body}\n@@@ END {group} {name} rc={rc} secs=1\n"


def guest(*records, taint=OK_TAINT, dmesg="[    1.000000] Run /init as init process"):
    """A whole serial log: boot, the records, the end of guest-init.sh."""
    end = "" if taint is None else f"\n@@@ TAINTED {taint}"
    return ("[    0.000000] Linux version 7.2.13\n\n@@@ GUEST kernel 7.2.13 cpus 2\n" +
            record("setup", "insmod", "crw------- 1 0 0 10, 124 /dev/guest_memfd") +
            "".join(records) + record("leak", "memfree", "MemFree: 0 kB less") +
            f"{end}\n@@@ DMESG BEGIN\n{dmesg}\n@@@ DMESG END\n@@@ GUEST DONE\n")


API = record("gmem", "api", "TAP version 13\n1..2\nok 1 global.a\nok 2 global.b")
STRESS = record("uffd", "stress", "TAP version 13\n1..1\n# bounces: 7, mode: rnd\n"
                "ok 1 uffd-stress anon")


class Verdict(unittest.TestCase):
    def judge(self, log, plan=PLAN, host=None):
        res = results.evaluate(log, plan, host)
        self.rows = res.rows
        return res

    def status(self, group, name):
        """The statuses of the rows of GROUP whose name starts with NAME."""
        return [r[2] for r in self.rows if r[0] == group and r[1].startswith(name)]

    def failed(self):
        return [(r[0], r[1]) for r in self.rows if r[2] == "fail"]

    def assertOnlyFailure(self, group, name):
        fails = self.failed()
        self.assertEqual(1, len(fails), fails)
        self.assertEqual(group, fails[0][0])
        self.assertTrue(fails[0][1].startswith(name), fails)

    # A normal run.
    def test_passing_log(self):
        res = self.judge(guest(API, STRESS))
        self.assertEqual([], self.failed())
        self.assertEqual(["pass", "pass"], self.status("gmem", "api:"))
        self.assertEqual(["pass"], self.status("uffd", "stress:"))
        self.assertEqual(["pass"], self.status("kernel", "kernel not tainted"))
        self.assertEqual(0, results.report(res, out=io.StringIO()))

    # 1. Markers anywhere in a line; one result per plan line.
    def test_end_mid_line_after_kill(self):
        # uffd-stress killed by its timeout in a bounce: END mid-line.
        hung = ("\n@@@ BEGIN uffd stress\nTAP version 13\n1..1\n# bounces: 3, mode: rnd racing, "
                "@@@ END uffd stress rc=143 secs=600\n")
        self.judge(guest(API, hung))
        self.assertOnlyFailure("uffd", "stress: TAP plan 1..1, 0 results")

    def test_end_mid_line_of_a_passing_test(self):
        body = "\n@@@ BEGIN uffd stress\n1..1\nok 1 uffd-stress anon\n# done@@@ END uffd stress rc=0\n"
        self.judge(guest(API, body))
        self.assertEqual([], self.failed())
        self.assertEqual(["pass"], self.status("uffd", "stress"))

    def test_begin_without_end(self):
        self.judge(guest("\n@@@ BEGIN gmem api\n1..2\nok 1 global.a\n", STRESS))
        self.assertOnlyFailure("gmem", "api")
        self.assertEqual(["fail"], self.status("gmem", "api"))
        self.assertIn("BEGIN came before its END", self.rows[1][3])

    def test_missing_plan_line(self):
        self.judge(guest(API))
        self.assertOnlyFailure("uffd", "stress")
        self.assertIn("no guest ran", [r for r in self.rows if r[2] == "fail"][0][3])

    def test_plan_line_run_twice(self):
        self.judge(guest(API, STRESS, STRESS))
        self.assertOnlyFailure("uffd", "stress")

    def test_guest_died(self):
        log = "@@@ GUEST kernel\n" + API + "\n@@@ BEGIN uffd stress\n1..1\nKernel panic - not syncing"
        self.judge(log)
        self.assertIn(("uffd", "stress"), self.failed())
        self.assertIn(("kernel", "guest finished and powered off"), self.failed())
        self.assertIn(("kernel", "splat: Kernel panic - not syncing"), self.failed())

    # 2. SKIP fails unless the plan line declares it.
    SKIPPING = record("gmem", "api", "1..2\nok 1 memcg.a\n"
                      "ok 2 numa.copy_follows_vma_policy # SKIP needs two NUMA nodes, the system has 1")

    def test_unexpected_skip(self):
        self.judge(guest(self.SKIPPING, STRESS))
        self.assertOnlyFailure("gmem", "api: numa.copy_follows_vma_policy (SKIP)")

    def test_expected_skip(self):
        plan = PLAN.replace("/tests/api", "/tests/api  #: skip=numa.")
        res = self.judge(guest(self.SKIPPING, STRESS), plan)
        self.assertEqual([], self.failed())
        self.assertEqual(["skip"], self.status("gmem", "api: numa.copy"))
        self.assertEqual(0, results.report(res, out=io.StringIO()))

    def test_skip_named_by_its_reason(self):
        # uffd-unit-tests: "ok 5 # SKIP minor-collapse on shmem (MADV_COLLAPSE failed)"
        body = record("gmem", "api", "1..1\nok 1 # SKIP minor-collapse on shmem (MADV_COLLAPSE failed)")
        self.judge(guest(body, STRESS), PLAN.replace("/tests/api", "/tests/api #: skip=minor-collapse"))
        self.assertEqual([], self.failed())
        self.judge(guest(body, STRESS), PLAN.replace("/tests/api", "/tests/api #: skip=minor-wp"))
        self.assertOnlyFailure("gmem", "api: minor-collapse on shmem")

    def test_whole_program_skip(self):
        body = record("gmem", "api", "1..0 # SKIP no /dev/kvm", rc=4)
        self.judge(guest(body, STRESS))
        self.assertOnlyFailure("gmem", "api (SKIP)")
        self.judge(guest(body, STRESS), PLAN.replace("/tests/api", "/tests/api #: skip=*"))
        self.assertEqual([], self.failed())
        self.assertEqual(["skip"], self.status("gmem", "api"))

    def test_unknown_annotation(self):
        self.judge(guest(API, STRESS), PLAN.replace("/tests/api", "/tests/api #: skipp=x"))
        self.assertOnlyFailure("gmem", "api: plan annotation 'skipp=x'")

    # 3. Empty output, TAP plans, TODO.
    def test_empty_output_where_tap_is_expected(self):
        self.judge(guest(record("gmem", "api", ""), STRESS))
        self.assertOnlyFailure("gmem", "api")

    def test_empty_output_notap(self):
        plan = PLAN.replace("/tests/api", "/tests/api  #: notap")
        self.judge(guest(record("gmem", "api", ""), STRESS), plan)
        self.assertEqual([], self.failed())
        self.judge(guest(record("gmem", "api", "", rc=1), STRESS), plan)
        self.assertOnlyFailure("gmem", "api")

    def test_empty_kunit_results(self):
        # "cat /sys/kernel/debug/kunit/SUITE/results" of an empty file
        self.judge(guest(API, STRESS, record("kunit", "doctests", "")),
                   PLAN + "kunit doctests 60 cat /sys/kernel/debug/kunit/x/results\n")
        self.assertOnlyFailure("kunit", "doctests")

    def test_tap_plan_only(self):
        self.judge(guest(record("gmem", "api", "TAP version 13\n1..3"), STRESS))
        self.assertOnlyFailure("gmem", "api: TAP plan 1..3, 0 results")

    def test_tap_plan_mismatch(self):
        self.judge(guest(record("gmem", "api", "1..3\nok 1 a\nok 2 b"), STRESS))
        self.assertOnlyFailure("gmem", "api: TAP plan 1..3, 2 results")
        self.judge(guest(record("gmem", "api", "1..1\nok 1 a\nok 2 b"), STRESS))
        self.assertOnlyFailure("gmem", "api: TAP plan 1..1, 2 results")

    def test_kunit_ktap(self):
        ktap = ("KTAP version 1\n1..1\n    KTAP version 1\n    # Subtest: rust_doctests_kernel\n"
                "    1..2\n    ok 1 rust_doctest_a\n        # a comment\n    ok 2 rust_doctest_b\n"
                "# rust_doctests_kernel: pass:2 fail:0 skip:0 total:2\nok 1 rust_doctests_kernel")
        plan = PLAN + "kunit doctests 60 cat /sys/kernel/debug/kunit/x/results\n"
        self.judge(guest(API, STRESS, record("kunit", "doctests", ktap)), plan)
        self.assertEqual([], self.failed())
        self.assertEqual(["pass", "pass"], self.status("kunit", "doctests"))
        short = ktap.replace("    ok 2 rust_doctest_b\n", "")
        self.judge(guest(API, STRESS, record("kunit", "doctests", short)), plan)
        self.assertOnlyFailure("kunit", "doctests: TAP plan 1..2, 1 results")

    def test_todo(self):
        body = record("gmem", "api", "1..2\nok 1 a\nnot ok 2 unfinished # TODO later")
        self.judge(guest(body, STRESS))
        self.assertOnlyFailure("gmem", "api: unfinished (TODO)")
        self.judge(guest(body, STRESS), PLAN.replace("/tests/api", "/tests/api #: todo=unfinished"))
        self.assertEqual([], self.failed())

    def test_nonzero_exit_without_failing_result(self):
        self.judge(guest(record("gmem", "api", "1..1\nok 1 a", rc=1), STRESS))
        self.assertOnlyFailure("gmem", "api: exit status")

    # 5. Taint and splats.
    def test_taint(self):
        self.judge(guest(API, STRESS, taint=OK_TAINT | 1 << 9 | 1 << 7))
        self.assertOnlyFailure("kernel", "kernel tainted: D (kernel died: Oops or BUG), W (kernel warning)")

    def test_taint_not_reported(self):
        self.judge(guest(API, STRESS, taint=None))
        self.assertOnlyFailure("kernel", "taint flags")

    def test_splats_of_the_detectors(self):
        for line in ["INFO: task gmem_stress:123 blocked for more than 122 seconds.",
                     "watchdog: BUG: soft lockup - CPU#1 stuck for 26s! [gmem_stress:99]",
                     "UBSAN: array-index-out-of-bounds in mm/filemap.c:100:5"]:
            self.judge(guest(API, STRESS, dmesg=f"[   10.0] {line}"))
            self.assertIn(("kernel", f"splat: [   10.0] {line}"[:108]), self.failed())

    def test_oom_reports(self):
        """A memory cgroup's OOM report (tests reach memory.max on purpose) is no splat; a
        global one is."""
        def oom(constraint, stats):
            return "\n".join([
                "[   20.0] gmem_reclaim_te invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0",
                "[   20.0] CPU: 1 UID: 0 PID: 99 Comm: gmem_reclaim_te Tainted: [O]=OOT_MODULE",
                "[   20.0] Call Trace:", "[   20.0]  <TASK>", "[   20.0]  dump_stack_lvl+0x67/0x90",
                "[   20.0]  </TASK>"] + stats + [
                f"[   20.1] oom-kill:constraint={constraint},nodemask=(null),task=hog,pid=99"])
        memcg = oom("CONSTRAINT_MEMCG", ["[   20.1] memory: usage 8192kB, limit 8192kB",
                                         "[   20.1] Memory cgroup stats for /t:"])
        self.judge(guest(API, STRESS, dmesg=memcg))
        self.assertEqual([], self.failed())
        self.judge(guest(API, STRESS, dmesg=oom("CONSTRAINT_NONE", ["[   20.1] Mem-Info:"])))
        self.assertIn(("kernel", "splat: [   20.0] Call Trace:"), self.failed())

    # The harness's own results, from the host.
    def test_host_log(self):
        host = record("harness", "test_results", "1..2\nok 1 a\nnot ok 2 b", rc=1)
        self.judge(guest(API, STRESS), host=host)
        self.assertEqual("harness", self.rows[0][0])
        self.assertOnlyFailure("harness", "test_results: b")
        self.judge(guest(API, STRESS), host="")
        self.assertOnlyFailure("harness", "host tests")

    # Several guests shared the plan (run-qemu.sh, LANES): each line runs on
    # one of them, and each guest's kernel is judged on its own.
    def test_guests_share_the_plan(self):
        self.judge([guest(API), guest(STRESS)])
        self.assertEqual([], self.failed())
        self.assertEqual(["pass", "pass"], self.status("gmem", "api:"))
        for k in (1, 2):
            self.assertEqual(["pass"], self.status("setup", f"insmod (guest {k})"))
            self.assertEqual(["pass"], self.status("kernel", f"kernel not tainted (besides O, N) (guest {k})"))

    def test_plan_line_on_two_guests(self):
        self.judge([guest(API, STRESS), guest(STRESS)])
        self.assertEqual([("uffd", "stress")], self.failed())

    def test_plan_line_on_no_guest(self):
        self.judge([guest(API), guest()])
        self.assertOnlyFailure("uffd", "stress")

    def test_one_guest_splats_or_dies(self):
        self.judge([guest(API), guest(STRESS, dmesg="[    9.0] BUG: unable to handle page fault")])
        self.assertEqual(["pass"], self.status("kernel", "no WARN/BUG/Oops/KASAN/UBSAN/lockdep/RCU-stall/hung-task/lockup in dmesg (guest 1)"))
        self.assertEqual(["fail"], self.status("kernel", "no WARN/BUG/Oops/KASAN/UBSAN/lockdep/RCU-stall/hung-task/lockup in dmesg (guest 2)"))
        died = guest(STRESS).split("\n@@@ END uffd stress")[0]
        self.judge([guest(API), died])
        self.assertIn(("uffd", "stress"), self.failed())
        self.assertIn(("kernel", "guest finished and powered off (guest 2)"), self.failed())

    # scripts/dispatch.py hands each plan line to exactly one guest, in plan
    # order, whichever asks, framed "@LEN LINE"; the same answer again on
    # "again"; then the empty line to every guest that asks.
    def test_dispatch(self):
        import socket
        import time
        with tempfile.TemporaryDirectory() as d:
            plan = os.path.join(d, "plan")
            with open(plan, "w") as f:
                f.write(PLAN + "gmem third 60 /tests/third  #: notap\n")
            socks = [os.path.join(d, f"q{k}") for k in (1, 2)]
            p = subprocess.Popen([sys.executable, os.path.join(TOP, "scripts", "dispatch.py"),
                                  plan, os.path.join(d, "log")] + socks)
            try:
                for _ in range(100):
                    if all(os.path.exists(s) for s in socks):
                        break
                    time.sleep(0.05)
                conns = []
                for path in socks:
                    c = socket.socket(socket.AF_UNIX)
                    c.connect(path)
                    conns.append(c.makefile("rw"))

                def ask(k, req="next\n"):
                    conns[k].write(req)
                    conns[k].flush()
                    return conns[k].readline().strip()

                got = [ask(0), ask(1, "noise\r\nnext\r\n"), ask(1, "again\n"), ask(0),
                       ask(1), ask(0)]
                self.assertEqual(["@22 gmem api 60 /tests/api",
                                  "@43 uffd stress 60 /tests/uffd-stress anon 32 8",
                                  "@43 uffd stress 60 /tests/uffd-stress anon 32 8",
                                  "@36 gmem third 60 /tests/third  #: notap", "@0", "@0"], got)
            finally:
                p.kill()
                p.wait()
            with open(os.path.join(d, "log")) as f:
                self.assertEqual("guest 1: gmem api\nguest 2: uffd stress\nguest 2: sent again\n"
                                 "guest 1: gmem third\n", f.read())

    # Every plan of the repository, and the controls, parse.
    def test_plans_parse(self):
        plans = [os.path.join(TOP, "scripts", "plans", f) for f in os.listdir(os.path.join(TOP, "scripts", "plans"))
                 if f.endswith(".plan")] + [os.path.join(HERE, "negative.plan")]
        for path in plans:
            res = results.Results()
            with open(path) as f:
                self.assertTrue(results.read_plan(f.read(), res), path)
            self.assertEqual([], res.rows, path)

    # What the guest prints for scripts/tests/negative.plan ("make controls"):
    # every "controls" line fails, no "expected" line does.
    def test_negative_controls(self):
        out = {
            "hung": ("1..1\n# bounces: 7, mode: rnd racing ver poll, ", 143),
            "silent": ("", 0),
            "plan-only": ("1..3", 0),
            "unexpected-skip": ("1..2\nok 1 works\nok 2 # SKIP feature missing", 0),
            "unexpected-skip-exit": ("1..0 # SKIP no such device", 4),
            "todo": ("1..1\nnot ok 1 unfinished # TODO", 0),
            "taint": ("1..1\nok 1 tainted U", 0),
            "skip": ("1..2\nok 1 works\nok 2 # SKIP feature missing", 0),
            "exit-code": ("", 0),
            "end-of-plan": ("", 0),
        }
        with open(os.path.join(HERE, "negative.plan")) as f:
            plan = f.read()
        lines = results.read_plan(plan, results.Results())
        log = guest(*(record(g, n, *out[n]) for g, n in lines if n in out), taint=OK_TAINT | 1 << 6)
        self.judge(log, plan)
        for group, name in lines:
            self.assertEqual(group == "controls", "fail" in self.status(group, name), name)
        self.assertIn(("kernel", "kernel tainted: U (set from user space)"), self.failed())

    # The command line: the totals are the last line, the exit status follows them.
    def test_command_line(self):
        with tempfile.TemporaryDirectory() as d:
            def run(log, host=None):
                paths = {}
                for name, text in (("plan", PLAN), ("log", log), ("host", host)):
                    if text is not None:
                        paths[name] = os.path.join(d, name)
                        with open(paths[name], "w") as f:
                            f.write(text)
                cmd = [sys.executable, RESULTS, "--plan", paths["plan"], paths["log"]]
                if host is not None:
                    cmd[2:2] = ["--host-log", paths["host"]]
                p = subprocess.run(cmd, capture_output=True, text=True)
                return p.returncode, p.stdout.rstrip("\n").split("\n")[-1]

            # (setup, 2 api, stress, memfree, dmesg, taint) + 1 harness
            self.assertEqual((0, "8 passed, 0 failed"),
                             run(guest(API, STRESS), record("harness", "t", "1..1\nok 1 x")))
            self.assertEqual((1, "6 passed, 1 failed"), run(guest(API)))


def tap():
    """Run the tests, print TAP: one result per test method."""
    tests = list(unittest.defaultTestLoader.loadTestsFromTestCase(Verdict))
    print(f"TAP version 13\n1..{len(tests)}")
    bad = 0
    for i, test in enumerate(tests, 1):
        outcome = unittest.TestResult()
        test.run(outcome)
        for _, trace in outcome.failures + outcome.errors:
            print("\n".join("# " + l for l in trace.rstrip().split("\n")))
        ok = outcome.wasSuccessful()
        bad += not ok
        print(f"{'ok' if ok else 'not ok'} {i} {test._testMethodName}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(tap())
