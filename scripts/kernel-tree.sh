#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Bring the kernel git tree in the cache to pristine 7.2.13 + patches/,
# touching only the files that change (so builds stay incremental).
# patches/ is the one source of what enters the tree, our Rust files
# included; rust/ in the repository is a mirror of those files that
# "make export-patches" writes, and this checks it is not stale.
#
# The tree is a normal git repository: a developer may edit and commit in
# it ("make kernel-tree"), then "make export-patches" writes the series
# back to patches/.  Local commits are never thrown away: if patches/ and
# the tree disagree and the tree has its own commits, this stops.
. "$(dirname "$0")/lib.sh"

cd "$SRC"
git rev-parse -q --verify pristine >/dev/null || die "$SRC has no pristine tag: run scripts/kernel-src.sh"
state=$SRC/.git/gmem-series
patches=("$TOP"/patches/*.patch)
[ -e "${patches[0]}" ] || patches=()
want=$(cat /dev/null "${patches[@]}" | sha256sum | cut -c1-16)
{ read -r have_sum have_head < "$state"; } 2>/dev/null || { have_sum=none; have_head=none; }
head=$(git rev-parse HEAD)
dirty=$(git status --porcelain --untracked-files=no)

if [ "$want" = "$have_sum" ]; then
	if [ "$head" != "$have_head" ] || [ -n "$dirty" ]; then
		say "kernel tree: building local work in $SRC (not yet in patches/: run 'make export-patches')"
	else
		say "kernel tree: patches/ already applied (${#patches[@]} patches)"
	fi
else
	if [ "$have_sum" != none ] && { [ "$head" != "$have_head" ] || [ -n "$dirty" ]; } &&
	   [ "${FORCE:-0}" != 1 ]; then
		die "patches/ changed, but $SRC has local commits or edits. Run 'make export-patches' to keep them, or FORCE=1 to discard them."
	fi
	if [ "$have_sum" = none ] && [ "$head" != "$(git rev-parse pristine)" ] && [ "${FORCE:-0}" != 1 ]; then
		die "$SRC is not at pristine and has no record of an applied series; FORCE=1 to reset it"
	fi
	say "kernel tree: applying ${#patches[@]} patches from patches/"
	wt=$CACHE/am-worktree
	git worktree remove --force "$wt" >/dev/null 2>&1 || rm -rf "$wt"
	git worktree prune
	git worktree add -q --detach "$wt" pristine
	for p in "${patches[@]}"; do
		if ! git -C "$wt" am -q --no-3way "$p" > "$CACHE/am.log" 2>&1; then
			cat "$CACHE/am.log" >&2
			git -C "$wt" am --abort >/dev/null 2>&1 || true
			git worktree remove --force "$wt"
			die "patch does not apply to $KVER: $(basename "$p")"
		fi
	done
	new=$(git -C "$wt" rev-parse HEAD)
	git worktree remove --force "$wt"
	git reset -q --hard "$new"
	echo "$want $new" > "$state"
	say "kernel tree: series applied, HEAD $(git log --oneline -1)"
fi

# rust/ mirrors the files the series adds under rust/ (rust_mirror_diff in
# lib.sh).  A difference while the tree holds the series as exported means
# rust/ was edited by hand: say where the edit belongs instead of
# building without it.
if [ "$(git rev-parse HEAD)" = "$(cut -d' ' -f2 "$state")" ] &&
	[ -z "$(git status --porcelain --untracked-files=no)" ]; then
	if stale=$(rust_mirror_diff); [ -n "$stale" ]; then
		die "rust/ differs from what patches/ adds ($stale). rust/ is written by 'make export-patches': make the change in $SRC (make kernel-tree), commit it there, then export."
	fi
else
	say "kernel tree: rust/ will be rewritten from the tree by 'make export-patches'"
fi
