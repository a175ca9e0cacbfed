#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# The whole job, one stage at a time, each with a start and an end line:
#   pipeline.sh build            toolchain, kernel source, tree, config, kernel, module, tests
#   pipeline.sh check|run|stress build, then boot QEMU with scripts/plans/<name>.plan
#                                (check also runs the harness's own tests, on the host,
#                                and shares its plan among LANES guests)
#   pipeline.sh controls         build, then boot scripts/tests/negative.plan: the
#                                harness's negative controls, each must be a FAIL
#   pipeline.sh bench            the same with the release kernel, then the report
#   pipeline.sh profile          the release kernel, scripts/plans/profile.plan (sampled)
# A plan may say @ARGS@ where the options given as ARGS=... belong.
. "$(dirname "$0")/lib.sh"

what=${1:-check}
S=$TOP/scripts

prereqs() {
	local missing=()
	command -v python3 >/dev/null || missing+=(python3)
	command -v qemu-system-x86_64 >/dev/null || missing+=(qemu-system-x86)
	command -v file >/dev/null || missing+=(file)
	command -v xz >/dev/null || missing+=(xz-utils)
	command -v git >/dev/null || missing+=(git)
	command -v cargo >/dev/null || die "cargo not found: the VMM demo is built with the host's Rust (rustup, https://rustup.rs)"
	[ ${#missing[@]} -eq 0 ] && return 0
	if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
		say "prerequisites: installing ${missing[*]} with apt-get"
		{ apt-get update -qq && apt-get install -y -qq "${missing[@]}"; } >"$LOGS/host-apt.log" 2>&1 ||
			die "could not install ${missing[*]}: apt-get install ${missing[*]} (log: $LOGS/host-apt.log)"
	else
		die "missing host tools: apt-get install ${missing[*]}"
	fi
}

# plot_python: a python3 with matplotlib, for the bench chart: the first
# python3 on PATH if it has it, else Debian's (python3-matplotlib, installed
# with apt when missing and running as root).
plot_python() {
	local py
	for py in python3 /usr/bin/python3; do
		"$py" -c 'import matplotlib' 2>/dev/null && { command -v "$py"; return; }
	done
	if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
		say "prerequisites: installing python3-matplotlib with apt-get"
		{ apt-get update -qq && apt-get install -y -qq python3-matplotlib; } >>"$LOGS/host-apt.log" 2>&1 &&
			/usr/bin/python3 -c 'import matplotlib' && { echo /usr/bin/python3; return; }
	fi
	die "no python3 with matplotlib for the bench chart: apt-get install python3-matplotlib"
}

build() {
	stage prerequisites prereqs
	# make check: first the harness's own tests (seconds, on the host).
	[ "$what" != check ] || stage "harness tests (host)" harness check
	stage "kernel source" "$S/kernel-src.sh"
	stage toolchain "$S/toolchain.sh"
	stage "kernel tree" "$S/kernel-tree.sh"
	stage "kernel config ($FLAVOUR)" "$S/kernel-config.sh"
	stage "kernel build ($FLAVOUR)" "$S/kernel-build.sh"
	stage module "$S/build-module.sh"
	stage selftests "$S/build-selftests.sh"
	stage "vmm demo" "$S/build-vmm.sh"
}

# harness NAME: the tests of scripts/results.py (scripts/tests/) on the
# host, as a record of group "harness" in $hostlog, which the results of
# the guest run that follows count.
hostlog=
harness() {
	local rc=0
	hostlog=$LOGS/$1-harness.log
	{
		echo "@@@ BEGIN harness test_results"
		python3 "$S/tests/test_results.py" 2>&1 || rc=$?
		echo "@@@ END harness test_results rc=$rc"
	} > "$hostlog"
	say "harness: $(grep -c '^ok' "$hostlog") passed, $(grep -c '^not ok' "$hostlog") failed (counted in the totals)"
}

# boot NAME [PLAN]: the plan (default selftests/NAME.plan) in a guest.
boot() {
	local plan=${2:-$TOP/scripts/plans/$1.plan} img=$CACHE/initramfs-$1.cpio
	sed "s|@ARGS@|${ARGS:-}|g" "$plan" > "$CACHE/$1-args.plan"
	plan=$CACHE/$1-args.plan
	if [ -n "${TESTS:-}" ]; then
		# TESTS=regex: only the plan lines whose group or name matches.
		awk -v re="$TESTS" '/^#/ || NF == 0 { next } $1 ~ re || $2 ~ re' \
			"$plan" > "$CACHE/$1-selected.plan"
		[ -s "$CACHE/$1-selected.plan" ] || die "TESTS=$TESTS matches no test of $plan"
		say "plan: only the tests matching '$TESTS'"
		plan=$CACHE/$1-selected.plan
	fi
	stage initramfs "$S/initramfs.sh" "$plan" "$img"
	local rc=0
	stage "qemu $1" "$S/run-qemu.sh" "$1" "$img" "$plan" ${hostlog:+"$hostlog"} || rc=$?
	# The totals are the last line of the output.
	[ -s "$LOGS/$1-results.txt" ] && tail -n 1 "$LOGS/$1-results.txt"
	return $rc
}

# lanes: how many guests share a plan (run-qemu.sh): one per two host CPUs
# (a TCG guest with 2 vCPUs keeps 1.5 of them busy in the uffd tests; two
# guests on 2 CPUs ran each test 2.4 times slower), as long as each can
# have 5 GiB of the host's memory, at most 4.
lanes() {
	local n mem
	n=$(( $(nproc) / 2 ))
	mem=$(( $(awk '/^MemAvailable:/ { print $2 }' /proc/meminfo) / 1024 / 1024 / 5 ))
	[ "$n" -le "$mem" ] || n=$mem
	[ "$n" -le 4 ] || n=4
	echo $(( n < 1 ? 1 : n ))
}

case "$what" in
build) build ;;
check) build; export LANES=${LANES:-$(lanes)}; boot check ;;
run|stress) build; boot "$what" ;;
controls) build; export LANES=${LANES:-$(lanes)}; boot controls "$TOP/scripts/tests/negative.plan" ;;
bench)
	export FLAVOUR=release
	build
	boot bench
	stage "bench report" "$(plot_python)" "$S/bench-report.py" "$LOGS/bench-guest.log" "$LOGS"
	;;
profile)
	export FLAVOUR=release
	build
	boot profile
	grep -E '^(PROFILE|LATENCY)' "$LOGS/profile-guest.log" || die "no PROFILE lines in $LOGS/profile-guest.log"
	;;
*) die "usage: pipeline.sh build|check|run|stress|controls|bench|profile" ;;
esac
