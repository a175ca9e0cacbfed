#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Show that every prefix of patches/ builds: build pristine 7.2.13, then
# apply the series one patch at a time in a separate worktree and build the
# kernel after each (vmlinux, incrementally, with the base config and no
# debug options), then the module against the whole series.  The first
# build is a full one.
. "$(dirname "$0")/lib.sh"

wt=$CACHE/series-tree
out=$CACHE/series-build
log=$LOGS/check-series.log
patches=("$TOP"/patches/*.patch)
: > "$log"

cd "$SRC"
if [ ! -d "$wt/.git" ] && [ ! -f "$wt/.git" ]; then
	git worktree prune
	git worktree add -q --detach "$wt" pristine
fi
git -C "$wt" am --abort >/dev/null 2>&1 || true
git -C "$wt" reset -q --hard pristine

mkdir -p "$out"
if [ ! -f "$out/.config" ]; then
	(cd "$wt" && tc env LLVM=1 ARCH=x86_64 scripts/kconfig/merge_config.sh -O "$out" \
		arch/x86/configs/x86_64_defconfig kernel/configs/kvm_guest.config \
		"$TOP/config/base.config") >>"$log" 2>&1 || die "config failed; see $log"
fi
[ -d "$TOP/rust" ] && [ -n "$(ls -A "$TOP/rust")" ] && tc rsync -rc "$TOP/rust/" "$wt/rust/"

# Prefix 0: pristine 7.2.13 with the same config, kept as a bootable image
# for comparisons (Documentation/testing.rst: the uffd baseline).
s=$(date +%s)
(cd "$wt" && tc make LLVM=1 ARCH=x86_64 O="$out" -j"$JOBS" bzImage vmlinux modules) >>"$log" 2>&1 ||
	die "pristine $KVER does not build (log: $log)"
cp "$out/arch/x86/boot/bzImage" "$CACHE/bzImage-pristine"
say "series: pristine $KVER builds ($(( $(date +%s) - s ))s); image: $CACHE/bzImage-pristine"

i=0
for p in "${patches[@]}"; do
	i=$((i + 1))
	git -C "$wt" am -q --no-3way "$p" >>"$log" 2>&1 || die "patch $i does not apply: $(basename "$p")"
	s=$(date +%s)
	if ! (cd "$wt" && tc make LLVM=1 ARCH=x86_64 O="$out" -j"$JOBS" vmlinux modules) >>"$log" 2>&1; then
		grep -E 'error' "$log" | tail -n 20 >&2
		die "build fails after patch $i/${#patches[@]}: $(basename "$p") (log: $log)"
	fi
	say "series: patch $i/${#patches[@]} builds ($(( $(date +%s) - s ))s): $(basename "$p")"
done
(cd "$TOP" && tc make -C "$out" M="$TOP" LLVM=1 -j"$JOBS" modules) >>"$log" 2>&1 ||
	die "module does not build against the whole series (log: $log)"
say "series: all ${#patches[@]} prefixes build, and the module builds against the series"
