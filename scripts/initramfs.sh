#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Make the test initramfs: busybox (static), /init (scripts/guest-init.sh),
# the module, the static test binaries and the test plan.
#   initramfs.sh PLAN OUTPUT
# The archive is written with the kernel's own usr/gen_init_cpio, so no
# root and no device nodes on the host are needed.
. "$(dirname "$0")/lib.sh"

plan=$1 out=$2
bin=$CACHE/selftests-bin
busybox=
for b in "$TCROOT/bin/busybox" "$TCROOT/usr/bin/busybox" "$(command -v busybox || true)"; do
	[ -n "$b" ] && [ -x "$b" ] && file -L "$b" | grep -q 'statically linked' && { busybox=$b; break; }
done
[ -n "$busybox" ] || die "no static busybox: install busybox-static (apt-get install busybox-static)"

list=$CACHE/initramfs-$(basename "$plan" .plan).list
# The archive is made inside the toolchain root, which sees only the
# repository and the cache: take a copy of the plan there.
cp "$plan" "$list.plan"

{
	echo "dir /bin 0755 0 0"
	echo "dir /sbin 0755 0 0"
	echo "dir /dev 0755 0 0"
	echo "nod /dev/console 0600 0 0 c 5 1"
	echo "nod /dev/null 0666 0 0 c 1 3"
	for d in /proc /sys /tmp /mnt /modules /tests; do echo "dir $d 0755 0 0"; done
	echo "file /bin/busybox $busybox 0755 0 0"
	echo "slink /bin/sh /bin/busybox 0777 0 0"
	echo "file /init $TOP/scripts/guest-init.sh 0755 0 0"
	echo "file /tests/plan $list.plan 0644 0 0"
	ko=${MODULE_KO:-$(module_ko)}
	[ -f "$ko" ] && echo "file /modules/gmem_uffd.ko $ko 0644 0 0"
	for f in "$bin"/*; do
		[ -f "$f" ] && echo "file /tests/$(basename "$f") $f 0755 0 0"
	done
	# Helpers the plan runs tests with (scripts/guest/NAME.sh as /tests/NAME).
	for f in "$TOP"/scripts/guest/*.sh; do
		echo "file /tests/$(basename "$f" .sh) $f 0755 0 0"
	done
} > "$list"
# Every binary the plan names must be there.
while read -r group name tmo cmd; do
	case "$group" in ''|'#'*) continue ;; esac
	for exe in ${cmd%%#:*}; do
		case "$exe" in
		/tests/*) [ -f "$bin/${exe#/tests/}" ] || [ -f "$TOP/scripts/guest/${exe#/tests/}.sh" ] ||
			die "plan $plan needs $exe, not built" ;;
		esac
	done
done < "$plan"
tc "$KOUT/usr/gen_init_cpio" "$list" > "$out.tmp"
mv "$out.tmp" "$out"
say "initramfs: $out ($(du -h "$out" | cut -f1))"
