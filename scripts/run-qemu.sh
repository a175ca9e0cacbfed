#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Boot the kernel with an initramfs in QEMU, show test progress, save the
# serial log and turn it into results.
#   run-qemu.sh NAME INITRAMFS PLAN [HOST_LOG]
# PLAN is the plan packed into INITRAMFS: every line of it must have a
# result.  HOST_LOG: results of tests run on the host (the harness's own),
# counted in the same totals (scripts/results.py).
# TCG (-accel tcg -cpu max,la57=off) unless the host CPU shows vmx/svm and
# /dev/kvm is usable; ACCEL=tcg|kvm overrides.  BZIMAGE overrides the kernel.
# QEMU_TIMEOUT bounds the whole run.  QEMU_NUMA nodes (default 2) share the
# memory and the vCPUs, so that NUMA placement can be tested.
. "$(dirname "$0")/lib.sh"

name=$1 initrd=$2 plan=${3:?usage: run-qemu.sh NAME INITRAMFS PLAN [HOST_LOG]} hostlog=${4:-}
command -v qemu-system-x86_64 >/dev/null ||
	die "qemu-system-x86_64 not found: apt-get install qemu-system-x86"
accel=${ACCEL:-}
if [ -z "$accel" ]; then
	if grep -qwE 'vmx|svm' /proc/cpuinfo && [ -w /dev/kvm ]; then accel=kvm; else accel=tcg; fi
fi
case "$accel" in
kvm) aopts=(-accel kvm -cpu host) ;;
# la57=off: see "The early-boot KASAN report" in Documentation/testing.rst.
*) aopts=(-accel tcg -cpu max,la57=off) ;;
esac
smp=${QEMU_SMP:-2}
mem=${QEMU_MEM:-4G}
case "$mem" in
*G) mem_mb=$(( ${mem%G} * 1024 )) ;;
*M) mem_mb=${mem%M} ;;
*) mem_mb=$mem ;;
esac
nodes=${QEMU_NUMA:-2}
topo=(-m "${mem_mb}M" -smp "$smp")
if [ "$nodes" -gt 1 ]; then
	[ $(( smp % nodes )) -eq 0 ] || die "QEMU_SMP=$smp is not a multiple of QEMU_NUMA=$nodes"
	per_mb=$(( mem_mb / nodes )) per_cpu=$(( smp / nodes ))
	# A socket per node: vCPUs of one socket share a cache, and the kernel
	# warns when cache siblings sit on different nodes.
	topo=(-m "$(( per_mb * nodes ))M" -smp "$smp,sockets=$nodes,cores=$per_cpu,threads=1")
	for ((n = 0; n < nodes; n++)); do
		first=$(( n * per_cpu )) last=$(( (n + 1) * per_cpu - 1 ))
		topo+=(-object "memory-backend-ram,id=mem$n,size=${per_mb}M"
		       -numa "node,nodeid=$n,cpus=$first-$last,memdev=mem$n")
	done
fi
log=$LOGS/$name-guest.log
say "qemu: booting ($accel, $smp vCPUs, ${mem_mb} MiB, $nodes NUMA nodes); serial log: $log"
# No "quiet": the boot is logged on the serial console, so a boot that
# hangs shows where; /init lowers the console level before the tests.
cmdline="console=ttyS0 panic=-1 log_buf_len=16M"
cmdline="$cmdline kmemleak=on HUGEPAGES=${HUGEPAGES:-64}"
# KUnit at boot: only the doctests of our abstractions (rust/kernel/...),
# read back by the "kunit" plan lines; a kernel without them ignores this.
cmdline="$cmdline kunit.filter_glob=${KUNIT_GLOB:-rust_doctests_kernel.rust_doctest_kernel_mm_folio*} ${GUEST_CMDLINE:-}"

# boot: run QEMU in the background, writing the serial log to $log.
boot() {
	: > "$log"
	timeout -k 10 "${QEMU_TIMEOUT:-3600}" qemu-system-x86_64 "${aopts[@]}" \
		"${topo[@]}" -nodefaults -no-reboot \
		-display none -monitor none -serial "file:$log" \
		-kernel "${BZIMAGE:-$KOUT/arch/x86/boot/bzImage}" -initrd "$initrd" \
		-append "$cmdline" < /dev/null &
	qemu=$!
}

# Progress: one line per test that starts or ends.
tail -n +1 -F "$log" 2>/dev/null | sed -u -n \
	-e 's/\r$//' \
	-e 's/^@@@ BEGIN \([^ ]*\) \([^ ]*\).*/    ... \1\/\2/p' \
	-e 's/^@@@ END \([^ ]*\) \([^ ]*\) \(.*\)/    done \1\/\2 \3/p' \
	-e 's/^@@@ GUEST \(.*\)/    guest: \1/p' \
	-e 's/^\(.*Kernel panic.*\)/    \1/p' >&2 &
tailer=$!
trap 'kill $tailer 2>/dev/null || true; [ -n "${qemu:-}" ] && kill $qemu 2>/dev/null || true' EXIT

# A guest that has not reached /init after BOOT_TIMEOUT seconds is stuck in
# early boot (seen once in dozens of TCG boots on a loaded host, before any
# of our code runs): its log is kept as $name-boot-hang.log, the hang is
# reported, and the boot is tried once more.
for try in 1 2; do
	boot
	waited=0
	while kill -0 $qemu 2>/dev/null && ! grep -q '^@@@ GUEST kernel' "$log" &&
	      [ $waited -lt "${BOOT_TIMEOUT:-420}" ]; do
		sleep 2
		waited=$((waited + 2))
	done
	if kill -0 $qemu 2>/dev/null && ! grep -q '^@@@ GUEST kernel' "$log"; then
		kill $qemu 2>/dev/null || true
		wait $qemu 2>/dev/null || true
		cp "$log" "$LOGS/$name-boot-hang.log"
		say "qemu: BOOT HANG: no /init after ${BOOT_TIMEOUT:-420}s (try $try); log kept as $LOGS/$name-boot-hang.log; last lines:"
		tail -n 5 "$log" >&2
		[ $try -eq 1 ] && continue
	fi
	break
done
rc=0
wait $qemu || rc=$?
qemu=
sleep 1
kill $tailer 2>/dev/null || true
[ $rc -eq 124 ] && say "qemu: timed out after ${QEMU_TIMEOUT:-3600}s"
say "qemu: exited (rc=$rc)"
python3 "$TOP/scripts/results.py" --plan "$plan" ${hostlog:+--host-log "$hostlog"} "$log" |
	tee "$LOGS/$name-results.txt"
