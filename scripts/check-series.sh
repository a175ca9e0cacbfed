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

# Resume an interrupted run: $state lists the sha256 of each patch applied
# in the worktree, in order.  If that list is a prefix of patches/ and the
# worktree holds exactly those commits, go on from there; otherwise start
# again from pristine.  (A reset to pristine rewrites every file the applied
# patches touched, and patch 1 touches mm_types.h: a full rebuild.)
state=$out/.series-state
# Another config/base.config: start again from pristine with the new config.
cfgsum=$(frags_sum "$TOP/config/base.config")
if [ "$(cat "$out/.config.frags" 2>/dev/null)" != "$cfgsum" ]; then
	rm -f "$out/.config" "$state"
fi
sums=()
for p in "${patches[@]}"; do sums+=("$(sha256sum < "$p" | cut -d' ' -f1)"); done
done_n=0
if [ -f "$state" ] && [ -f "$CACHE/bzImage-pristine" ]; then
	mapfile -t applied < "$state"
	ncommits=$(git -C "$wt" rev-list --count pristine..HEAD 2>/dev/null || echo -1)
	if [ "${#applied[@]}" -eq "$ncommits" ] && [ "$ncommits" -le "${#patches[@]}" ]; then
		done_n=$ncommits
		for ((j = 0; j < ncommits; j++)); do
			[ "${applied[j]}" = "${sums[j]}" ] || { done_n=0; break; }
		done
	fi
fi
mkdir -p "$out"
if [ "$done_n" -eq 0 ]; then
	git -C "$wt" reset -q --hard pristine
	: > "$state"
fi
if [ ! -f "$out/.config" ]; then
	(cd "$wt" && tc env LLVM=1 ARCH=x86_64 scripts/kconfig/merge_config.sh -n -O "$out" \
		"$TOP/config/base.config") >>"$log" 2>&1 || die "config failed; see $log"
	echo "$cfgsum" > "$out/.config.frags"
fi

build_prefix() { # N: build the worktree as it is, with N patches applied
	local s
	s=$(date +%s)
	if ! (cd "$wt" && tc make LLVM=1 ARCH=x86_64 O="$out" -j"$JOBS" vmlinux modules) >>"$log" 2>&1; then
		grep -E 'error' "$log" | tail -n 20 >&2
		die "build fails after patch $1/${#patches[@]}: $(basename "${patches[$1 - 1]}") (log: $log)"
	fi
	say "series: patch $1/${#patches[@]} builds ($(( $(date +%s) - s ))s): $(basename "${patches[$1 - 1]}")"
}

if [ "$done_n" -eq 0 ]; then
	# Prefix 0: pristine 7.2.13 with the same config, kept as a bootable
	# image for comparisons (Documentation/testing.rst: the uffd baseline).
	s=$(date +%s)
	(cd "$wt" && tc make LLVM=1 ARCH=x86_64 O="$out" -j"$JOBS" bzImage vmlinux modules) >>"$log" 2>&1 ||
		die "pristine $KVER does not build (log: $log)"
	cp "$out/arch/x86/boot/bzImage" "$CACHE/bzImage-pristine"
	say "series: pristine $KVER builds ($(( $(date +%s) - s ))s); image: $CACHE/bzImage-pristine"
else
	say "series: resuming after patch $done_n/${#patches[@]} (pristine built before: $CACHE/bzImage-pristine)"
	build_prefix "$done_n"
fi

for ((i = done_n + 1; i <= ${#patches[@]}; i++)); do
	p=${patches[i - 1]}
	git -C "$wt" am -q --no-3way "$p" >>"$log" 2>&1 || die "patch $i does not apply: $(basename "$p")"
	echo "${sums[i - 1]}" >> "$state"
	build_prefix "$i"
done
# The module against the whole series, built as for a flavour of its own
# (a copy of the sources in $CACHE/module-series; src/ keeps the debug build).
GMEM_KOUT=$out FLAVOUR=series "$TOP/scripts/build-module.sh" >>"$log" 2>&1 ||
	die "module does not build against the whole series (log: $log)"
say "series: all ${#patches[@]} prefixes build, and the module builds against the series"
