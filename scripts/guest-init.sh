#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# /init of the test initramfs (busybox sh).  Runs the plan in /tests/plan,
# each line "GROUP NAME TIMEOUT COMMAND ARGS... [#: ANNOTATIONS]" (the
# annotations are for the host), and frames every test's output with
# markers the host parses (scripts/results.py):
#   @@@ BEGIN GROUP NAME
#   ... TAP or free-form output ...
#   @@@ END GROUP NAME rc=N
# Every marker starts a line of its own, whatever the output before it.
# Then it checks the module's counters and free memory, runs a kmemleak
# scan, reports the kernel's taint flags, prints the kernel log (the host
# looks for splats in it) and powers off.

/bin/busybox --install -s /bin
export PATH=/bin:/sbin:/tests
# The boot was logged on the console; from here on only errors and worse
# (as "quiet" would), so that test output stays readable.  The whole kernel
# log is printed at the end anyway.
dmesg -n 4
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
mkdir -p /dev/pts /dev/shm /tmp /mnt/huge
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
mount -t tmpfs tmpfs /tmp
mount -t debugfs debugfs /sys/kernel/debug
mount -t hugetlbfs hugetlbfs /mnt/huge
ulimit -c 0

# mark WORDS...: a marker line, on a line of its own even when the output
# before it did not end with a newline.
mark() {
	printf '\n@@@ %s\n' "$*"
}

mark "GUEST kernel $(uname -r) cpus $(nproc) mem $(awk '/MemTotal/{print $2}' /proc/meminfo)kB${LANE:+ guest $LANE}"
echo "${HUGEPAGES:-64}" > /proc/sys/vm/nr_hugepages
mark "GUEST hugepages $(cat /proc/sys/vm/nr_hugepages)"
# userfaultfd from unprivileged users is off by default; the tests run as
# root, but uffd-unit-tests also checks the user-mode-only variant.
echo 1 > /proc/sys/vm/unprivileged_userfaultfd 2>/dev/null

# Free memory before the tests, compared with the value after the module
# is gone ("leak memfree" below; Documentation/testing.rst).  free_kb:
# MemFree plus the free pages on the per-CPU lists, which MemFree leaves
# out (the "count:" lines of /proc/zoneinfo), after dropping the page
# cache and shrinking every slab cache (which also takes the cache's freed
# objects out of KASAN's quarantine).
free_kb() {
	sync
	echo 3 > /proc/sys/vm/drop_caches
	for f in /sys/kernel/slab/*/shrink; do echo 1 > "$f"; done 2>/dev/null
	pcp=$(awk '/^ +count:/ { s += $2 } END { print s * 4 }' /proc/zoneinfo)
	awk -v pcp="$pcp" '/^MemFree:/ { print $2 + pcp }' /proc/meminfo
}
# Hold one KVM VM for the whole run (scripts/guest/kvm_hold.c says why).  It
# is never killed: the VM going away would switch the key back, patching
# __schedule() again while the other CPU runs it; poweroff -f ends the
# guest with the VM still there.  Started before free memory is measured,
# so that its VM is in both measurements.  The one switch it makes is
# made with the other CPUs offline: nothing else runs __schedule() while
# it is patched, and static-key patching and CPU hotplug exclude each other
# (cpus_read_lock()), so a CPU coming back sees the finished text.
if [ -c /dev/kvm ] && [ -x /tests/kvm_hold ]; then
	others=
	for c in /sys/devices/system/cpu/cpu[1-9]*/online; do
		[ -w "$c" ] && echo 0 > "$c" && others="$others $c"
	done
	alone=$(nproc)
	kvm_hold > /tmp/kvm_hold.out 2>&1 &
	i=0
	while ! grep -q ready /tmp/kvm_hold.out && [ $i -lt 100 ]; do
		sleep 0.1
		i=$((i + 1))
	done
	for c in $others; do echo 1 > "$c"; done
	mark "GUEST $(cat /tmp/kvm_hold.out) ($alone CPU online then, $(nproc) now)"
fi

memfree0=$(free_kb)
cp /proc/meminfo /tmp/meminfo0

if [ -f /modules/gmem_uffd.ko ]; then
	mark "BEGIN setup insmod"
	insmod /modules/gmem_uffd.ko
	rc=$?
	ls -l /dev/guest_memfd
	mark "END setup insmod rc=$rc"
fi

# The plan's lines, one at a time.  Booted by run-qemu.sh (QUEUE=1 on the
# kernel command line), the guest asks the host for each on its second
# serial port (scripts/dispatch.py): the guests of one run share the plan,
# and an empty line says it is done.  Each answer comes as "@LEN LINE": one
# whose LINE is not LEN long was garbled on the way and is asked for again,
# at most twice, with a line in the log; then the guest stops, and the plan
# lines it did not run fail for want of a result.  Booted by hand, it reads
# /tests/plan.  The tests do not inherit fd 3.
if [ -n "${QUEUE:-}" ]; then
	stty -F /dev/ttyS1 raw -echo
	exec 3<>/dev/ttyS1
	next_test() {
		tries=0
		echo next >&3
		while IFS= read -r reply <&3; do
			len=${reply%% *} line=${reply#* }
			if [ "$len" = "@${#line}" ]; then
				[ -n "$line" ]
				return
			fi
			echo "queue: garbled answer '$reply' from the host"
			tries=$((tries + 1))
			[ "$tries" -lt 3 ] || return 1
			echo again >&3
		done
		return 1
	}
else
	exec 3</tests/plan
	next_test() {
		IFS= read -r line <&3
	}
fi
while next_test; do
	read -r group name tmo cmd <<EOF
$line
EOF
	case "$group" in ''|'#'*) continue ;; esac
	cmd=${cmd%%#:*}
	mark "BEGIN $group $name"
	start=$(date +%s)
	# shellcheck disable=SC2086
	timeout "$tmo" sh -c "cd /tmp && exec $cmd" < /dev/null 3<&- 2>&1
	rc=$?
	mark "END $group $name rc=$rc secs=$(( $(date +%s) - start ))"
	sync
done
exec 3<&-

# Every guest memory file and folio is gone once the tests are.
if [ -d /sys/kernel/debug/gmem_uffd ]; then
	mark "BEGIN leak gmem-counters"
	rc=0
	for c in files folios missing_events minor_events; do
		v=$(cat /sys/kernel/debug/gmem_uffd/$c)
		echo "$c $v"
		case $c in files|folios) [ "$v" = 0 ] || rc=1 ;; esac
	done
	mark "END leak gmem-counters rc=$rc"
fi

if [ -f /modules/gmem_uffd.ko ]; then
	mark "BEGIN setup rmmod"
	rmmod gmem_uffd
	rc=$?
	[ -e /dev/guest_memfd ] && { echo "/dev/guest_memfd still present"; rc=1; }
	mark "END setup rmmod rc=$rc"
fi

# Free memory back within MEMFREE_MARGIN_KB (kernel command line) of its
# value before the tests; the fields of /proc/meminfo that moved by 1 MiB
# or more are printed.
memfree1=$(free_kb)
margin=${MEMFREE_MARGIN_KB:-16384}
mark "BEGIN leak memfree"
echo "MemFree + per-CPU free lists: ${memfree0} kB before the tests, ${memfree1} kB after: $((memfree0 - memfree1)) kB less, margin ${margin} kB"
awk 'NR == FNR { was[$1] = $2; next }
	$2 - was[$1] >= 1024 || was[$1] - $2 >= 1024 {
		printf "  %s %d kB before, %d kB after\n", $1, was[$1], $2 }' /tmp/meminfo0 /proc/meminfo
rc=0
[ $((memfree0 - memfree1)) -le "$margin" ] || rc=1
mark "END leak memfree rc=$rc"

if [ -w /sys/kernel/debug/kmemleak ]; then
	echo scan > /sys/kernel/debug/kmemleak
	sleep 1
	echo scan > /sys/kernel/debug/kmemleak
	mark "KMEMLEAK BEGIN"
	cat /sys/kernel/debug/kmemleak
	mark "KMEMLEAK END"
fi

# The backstop of the splat check: the kernel's taint flags (decoded and
# judged by the host; O, our out-of-tree module, and N, KUnit, are expected).
mark "TAINTED $(cat /proc/sys/kernel/tainted)"
mark "DMESG BEGIN"
dmesg
mark "DMESG END"
mark "GUEST DONE"
sync
poweroff -f
