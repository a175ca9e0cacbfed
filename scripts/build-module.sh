#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Build gmem_uffd.ko from src/ against the kernel build in $KOUT, through the
# top-level Kbuild: make -C $KOUT M=$TOP.  Extra make arguments (CLIPPY=1)
# are passed through.
. "$(dirname "$0")/lib.sh"

[ -f "$KOUT/Module.symvers" ] || die "no kernel build in $KOUT: run 'make kernel' first"
log=$LOGS/module-build.log
cd "$TOP"
if ! tc make -C "$KOUT" M="$TOP" LLVM=1 -j"$JOBS" "$@" modules >"$log" 2>&1; then
	cat "$log" >&2
	die "module build failed; log: $log"
fi
grep -E '^(warning|error)' -A8 "$log" >&2 || true
say "module: $TOP/src/gmem_uffd.ko"
