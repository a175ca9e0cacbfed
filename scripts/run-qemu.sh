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
# QEMU_TIMEOUT bounds each guest's run.  QEMU_NUMA nodes (default 2) share
# the memory and the vCPUs of a guest, so that NUMA placement can be tested.
# LANES guests (default 1) run side by side and share the plan.
# QEMU_ICOUNT (TCG only), e.g. "shift=0,sleep=off": the guest's clock counts
# instructions, not host time (Documentation/performance.rst).
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
*) aopts=(-accel tcg -cpu max,la57=off ${QEMU_ICOUNT:+-icount "$QEMU_ICOUNT"}) ;;
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
# LANES guests (default 1) share the plan: each asks scripts/dispatch.py
# for its next line on its second serial port, so a plan line runs once, on
# whichever guest is free.  Each guest is a machine of its own (its own
# kernel log, leak and kmemleak checks); no more guests than plan lines.
ntests=$(grep -cvE '^[[:space:]]*(#|$)' "$plan" || true)
lanes=${LANES:-1}
[ "$lanes" -le "$ntests" ] || lanes=$ntests
[ "$lanes" -ge 1 ] || lanes=1
logs=()
if [ "$lanes" -eq 1 ]; then
	logs=("$LOGS/$name-guest.log")
else
	for ((k = 1; k <= lanes; k++)); do logs+=("$LOGS/$name-guest$k.log"); done
fi
rm -f "$LOGS/$name"-guest*.log "$LOGS/$name-boot-hang"*.log
say "qemu: booting $lanes guest(s) ($accel, $smp vCPUs, ${mem_mb} MiB, $nodes NUMA nodes each); serial log: ${logs[*]}"
# No "quiet": the boot is logged on the serial console, so a boot that
# hangs shows where; /init lowers the console level before the tests.
cmdline="console=ttyS0 panic=-1 log_buf_len=16M"
cmdline="$cmdline kmemleak=on HUGEPAGES=${HUGEPAGES:-64} QUEUE=1"
# KUnit at boot: only the doctests of our abstractions (rust/kernel/...),
# read back by the "kunit" plan lines; a kernel without them ignores this.
cmdline="$cmdline kunit.filter_glob=${KUNIT_GLOB:-rust_doctests_kernel.rust_doctest_kernel_mm_folio*} ${GUEST_CMDLINE:-}"

sockdir=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$sockdir"' EXIT
python3 "$TOP/scripts/dispatch.py" "$plan" "$LOGS/$name-dispatch.log" \
	$(for ((k = 1; k <= lanes; k++)); do echo "$sockdir/q$k"; done) &
pids+=($!)
for ((k = 1; k <= lanes; k++)); do
	w=0
	while [ ! -S "$sockdir/q$k" ] && [ $w -lt 100 ]; do sleep 0.1; w=$((w + 1)); done
	[ -S "$sockdir/q$k" ] || die "scripts/dispatch.py did not start"
done

# guest K: boot guest K (of $lanes) and wait for it to power off; its
# serial log is ${logs[K-1]}.  A guest that has not reached /init after
# BOOT_TIMEOUT seconds is stuck in early boot (seen once in dozens of TCG
# boots on a loaded host, before any of our code runs): its log is kept as
# $name-boot-hang.log, the hang is reported, and the boot is tried once more.
guest() {
	local k=$1 log=${logs[$1 - 1]} who="" try waited qemu rc=0
	[ "$lanes" -eq 1 ] || who="guest $k: "
	# Progress: one line per test that starts or ends.
	tail -n +1 -F "$log" 2>/dev/null | sed -u -n \
		-e 's/\r$//' \
		-e "s/^@@@ BEGIN \([^ ]*\) \([^ ]*\).*/    $who... \1\/\2/p" \
		-e "s/^@@@ END \([^ ]*\) \([^ ]*\) \(.*\)/    ${who}done \1\/\2 \3/p" \
		-e "s/^@@@ GUEST \(.*\)/    ${who}guest: \1/p" \
		-e "s/^\(.*Kernel panic.*\)/    $who\1/p" >&2 &
	local tailer=$!
	# Killed (run-qemu.sh's own exit kills each guest's subshell): take
	# QEMU and the progress line with it.
	trap 'kill $tailer ${qemu:-} 2>/dev/null || true' EXIT
	for try in 1 2; do
		: > "$log"
		timeout -k 10 "${QEMU_TIMEOUT:-3600}" qemu-system-x86_64 "${aopts[@]}" \
			"${topo[@]}" -nodefaults -no-reboot \
			-display none -monitor none -serial "file:$log" \
			-chardev "socket,id=queue,path=$sockdir/q$k" -serial chardev:queue \
			-kernel "${BZIMAGE:-$KOUT/arch/x86/boot/bzImage}" -initrd "$initrd" \
			-append "$cmdline${who:+ LANE=$k}" < /dev/null &
		qemu=$!
		waited=0
		while kill -0 $qemu 2>/dev/null && ! grep -q '^@@@ GUEST kernel' "$log" &&
		      [ $waited -lt "${BOOT_TIMEOUT:-420}" ]; do
			sleep 2
			waited=$((waited + 2))
		done
		if kill -0 $qemu 2>/dev/null && ! grep -q '^@@@ GUEST kernel' "$log"; then
			kill $qemu 2>/dev/null || true
			wait $qemu 2>/dev/null || true
			cp "$log" "${log/-guest/-boot-hang}"
			say "qemu: ${who}BOOT HANG: no /init after ${BOOT_TIMEOUT:-420}s (try $try); log kept as ${log/-guest/-boot-hang}; last lines:"
			tail -n 5 "$log" >&2
			[ $try -eq 1 ] && continue
		fi
		break
	done
	wait $qemu || rc=$?
	sleep 1
	kill $tailer 2>/dev/null || true
	[ $rc -eq 124 ] && say "qemu: ${who}timed out after ${QEMU_TIMEOUT:-3600}s"
	say "qemu: ${who}exited (rc=$rc)"
}
guests=()
for ((k = 1; k <= lanes; k++)); do
	guest $k &
	guests+=($!)
	pids+=($!)
done
wait "${guests[@]}" || true
python3 "$TOP/scripts/results.py" --plan "$plan" ${hostlog:+--host-log "$hostlog"} "${logs[@]}" |
	tee "$LOGS/$name-results.txt"
