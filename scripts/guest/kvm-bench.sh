#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# In the guest: run a KVM benchmark against gmem_uffd and KVM's own
# guest_memfd, round by round, alternating the order (A B, B A, ...).
#   kvm-bench ROUNDS BENCH [ARGS...]
# Round 0 is the warm-up.  Each run goes through kvm-served, which checks
# who served it ("module": gmem_uffd, "kvm": gmem_uffd reloaded kvm=0) and
# gets "-r ROUND" appended.  The exit code is 1 if any run failed.
rounds=$1
shift
rc=0
r=0
while [ "$r" -le "$rounds" ]; do
	if [ $((r % 2)) -eq 0 ]; then order="module kvm"; else order="kvm module"; fi
	for mode in $order; do
		/tests/kvm-served "$mode" "$@" -r "$r" || rc=1
	done
	r=$((r + 1))
done
exit $rc
