#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Regenerate patches/ from the commits on top of "pristine" in the kernel
# tree, so that the series round-trips (git am, then format-patch), and
# rust/ (the mirror of the Rust files the series adds) from the tree.
. "$(dirname "$0")/lib.sh"

cd "$SRC"
[ -z "$(git status --porcelain --untracked-files=no)" ] ||
	die "$SRC has uncommitted changes: commit them first (git commit -a)"
n=$(git rev-list --count pristine..HEAD)
rm -f "$TOP"/patches/*.patch
mkdir -p "$TOP/patches"
git format-patch -q --zero-commit --no-signature --abbrev=12 \
	-o "$TOP/patches" pristine..HEAD
want=$(cat /dev/null "$TOP"/patches/*.patch | sha256sum | cut -c1-16)
echo "$want $(git rev-parse HEAD)" > "$SRC/.git/gmem-series"
say "export-patches: wrote $n patches to patches/"
rm -rf "$TOP/rust"
for f in $(series_rust_files); do
	install -D -m 0644 "$SRC/$f" "$TOP/$f"
done
say "export-patches: mirrored $(series_rust_files | wc -l) Rust files to rust/"
