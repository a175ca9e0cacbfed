#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Build gmem_uffd.ko from src/ against the kernel build in $KOUT, through the
# top-level Kbuild: make -C $KOUT M=$TOP.  Extra make arguments (CLIPPY=1)
# are passed through.  The debug flavour's module is built in place
# (src/gmem_uffd.ko, what `make check` and the lint use); other flavours
# build a copy of the sources in the cache, so that both modules coexist
# (Kbuild's MO= would need a source tree without the debug objects).
. "$(dirname "$0")/lib.sh"

[ -f "$KOUT/Module.symvers" ] || die "no kernel build in $KOUT: run 'make kernel' first"
log=$LOGS/module-build.log
mdir=$TOP
if [ "$FLAVOUR" != debug ]; then
	log=$LOGS/module-build-$FLAVOUR.log
	mdir=$CACHE/module-$FLAVOUR
	mkdir -p "$mdir/src"
	rm -f "$mdir/Makefile"
	cp -p "$TOP/Kbuild" "$mdir/"
	cp -p "$TOP"/src/Kbuild "$TOP"/src/*.rs "$mdir/src/"
fi
cd "$mdir"
if ! tc make -C "$KOUT" M="$mdir" LLVM=1 -j"$JOBS" "$@" modules >"$log" 2>&1; then
	cat "$log" >&2
	die "module build failed; log: $log"
fi
grep -E '^(warning|error)' -A8 "$log" >&2 || true
say "module: $(module_ko)"
