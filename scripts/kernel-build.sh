#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Build bzImage (LLVM=1) in $KOUT, incrementally.  The full log goes to
# $LOGS/kernel-build-$FLAVOUR.log; a progress line is printed every 30 s.
. "$(dirname "$0")/lib.sh"

log=$LOGS/kernel-build-$FLAVOUR.log
cd "$SRC"
: > "$log"
(
	while sleep 30; do
		n=$(grep -c '^  \(CC\|RUSTC\|LD\|AR\)' "$log" 2>/dev/null || true)
		last=$(grep '^  [A-Z]' "$log" 2>/dev/null | tail -n 1 | sed 's/^ *//')
		say "kernel build: $n steps so far, now: $last"
	done
) &
ticker=$!
trap 'kill $ticker 2>/dev/null || true' EXIT
rc=0
tc make LLVM=1 ARCH=x86_64 O="$KOUT" -j"$JOBS" bzImage modules >>"$log" 2>&1 || rc=$?
kill $ticker 2>/dev/null
if [ $rc -ne 0 ]; then
	grep -E 'error|Error' "$log" | head -n 30 >&2
	die "kernel build failed; full log: $log"
fi
say "kernel build: $(cat "$KOUT/include/config/kernel.release") ready: $KOUT/arch/x86/boot/bzImage"
