#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# In the guest: run a KVM selftest and check who served its guest_memfd.
#   kvm-served module TEST [ARGS...]  gmem_uffd loaded (kvm=1): the test
#       must create at least one file through it (debugfs kvm_files rises)
#   kvm-served kvm TEST [ARGS...]     gmem_uffd reloaded with kvm=0, so
#       KVM's own guest_memfd serves the test (kvm_files must not rise);
#       reloaded with its defaults afterwards
# The exit code is the test's, or 1 if the check fails.
D=/sys/kernel/debug/gmem_uffd
KO=/modules/gmem_uffd.ko
mode=$1
shift
reload() {
	rmmod gmem_uffd || { echo "# kvm-served: rmmod gmem_uffd failed"; exit 1; }
	insmod $KO "$@" || { echo "# kvm-served: insmod $KO $* failed"; exit 1; }
}
case $mode in
module) ;;
kvm) reload kvm=0 ;;
*) echo "# kvm-served: unknown mode $mode"; exit 2 ;;
esac
before=$(cat $D/kvm_files) || exit 1
"$@"
rc=$?
after=$(cat $D/kvm_files) || exit 1
echo "# kvm-served: $mode: files made for KVM by gmem_uffd: $before before, $after after"
case $mode in
module) [ "$after" -gt "$before" ] || { echo "# kvm-served: not served by gmem_uffd"; rc=1; } ;;
kvm)
	[ "$after" = "$before" ] || { echo "# kvm-served: gmem_uffd served it with kvm=0"; rc=1; }
	reload
	;;
esac
exit $rc
