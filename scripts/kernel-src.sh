#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Obtain the Linux 7.2.13 source and extract it once into the cache as a git
# repository with a pristine commit (tag "pristine").
#
# Sources, in this order:
#   1. KERNEL_TARBALL=path (sha256 checked when it is the Debian tarball)
#   2. Debian's linux-source-7.2 from unstable, fetched with apt using a
#      private sources list and lists directory (host apt config untouched)
#   3. kernel.org's linux-7.2.13.tar.xz
. "$(dirname "$0")/lib.sh"

if [ -d "$SRC/.git" ] && git -C "$SRC" rev-parse -q --verify pristine >/dev/null; then
	say "kernel source: $SRC (pristine $KVER present)"
	exit 0
fi

dl=$CACHE/download
mkdir -p "$dl"
tried=()

from_var() {
	[ -n "${KERNEL_TARBALL:-}" ] || { tried+=("KERNEL_TARBALL: not set"); return 1; }
	[ -f "$KERNEL_TARBALL" ] || { tried+=("KERNEL_TARBALL=$KERNEL_TARBALL: no such file"); return 1; }
	case "$(basename "$KERNEL_TARBALL")" in
	linux-source-7.2.tar.xz)
		say "kernel source: checking sha256 of $KERNEL_TARBALL"
		echo "$DEBIAN_TARBALL_SHA256  $KERNEL_TARBALL" | sha256sum -c --quiet - ||
			die "KERNEL_TARBALL=$KERNEL_TARBALL: sha256 does not match Debian's linux-source-7.2 (7.2.13-1)"
		;;
	esac
	tarball=$KERNEL_TARBALL
}

from_debian() {
	local a=$dl/apt
	command -v apt-get >/dev/null || { tried+=("Debian apt: no apt-get"); return 1; }
	mkdir -p "$a/lists/partial" "$a/archives/partial" "$a/cache"
	echo "deb ${DEBIAN_MIRROR:-http://deb.debian.org/debian} unstable main" > "$a/sources.list"
	local opts=(-o Dir::Etc::SourceList="$a/sources.list"
		-o Dir::Etc::SourceParts=/dev/null
		-o Dir::State::Lists="$a/lists"
		-o Dir::Cache="$a/cache"
		-o Dir::Cache::Archives="$a/archives"
		-o APT::Get::List-Cleanup=0)
	say "kernel source: fetching linux-source-7.2 from Debian unstable"
	if ! apt-get "${opts[@]}" -qq update >"$dl/apt.log" 2>&1 ||
	   ! (cd "$dl" && apt-get "${opts[@]}" -qq download linux-source-7.2 >>"$dl/apt.log" 2>&1); then
		tried+=("Debian unstable linux-source-7.2: apt failed (see $dl/apt.log)")
		return 1
	fi
	rm -rf "$dl/deb"
	dpkg-deb -x "$dl"/linux-source-7.2_*.deb "$dl/deb"
	tarball=$(ls "$dl"/deb/usr/src/linux-source-7.2.tar.xz)
}

from_kernel_org() {
	local url=https://cdn.kernel.org/pub/linux/kernel/v7.x/linux-$KVER.tar.xz
	say "kernel source: downloading $url"
	if ! curl -fsSL -o "$dl/linux-$KVER.tar.xz.part" "$url"; then
		tried+=("kernel.org $url: download failed")
		return 1
	fi
	mv "$dl/linux-$KVER.tar.xz.part" "$dl/linux-$KVER.tar.xz"
	tarball=$dl/linux-$KVER.tar.xz
}

tarball=
from_var || from_debian || from_kernel_org || {
	printf 'ERROR: no Linux %s source could be had. Tried:\n' "$KVER" >&2
	printf '  - %s\n' "${tried[@]}" >&2
	printf 'Set KERNEL_TARBALL=/path/to/linux-source-7.2.tar.xz (Debian 7.2.13-1) or linux-%s.tar.xz.\n' "$KVER" >&2
	exit 1
}

say "kernel source: extracting $tarball"
rm -rf "$SRC.tmp" "$SRC"
mkdir -p "$SRC.tmp"
tar -C "$SRC.tmp" -xf "$tarball"
top=$(ls "$SRC.tmp")
[ "$(echo "$top" | wc -l)" -eq 1 ] || die "unexpected tarball layout in $tarball"
v=$(make -s -C "$SRC.tmp/$top" kernelversion 2>/dev/null)
[ "$v" = "$KVER" ] || die "$tarball holds Linux $v, not $KVER"
mv "$SRC.tmp/$top" "$SRC"
rmdir "$SRC.tmp"

say "kernel source: making the pristine git commit"
cd "$SRC"
git init -q -b master
git config user.name "gmem-uffd developers"
git config user.email "dev@gmem-uffd.invalid"
git config core.abbrev 12
# Debian's .gitignore ignores every top-level entry: force the import.
git add -A -f . >/dev/null
git commit -q --no-verify -m "Linux $KVER (pristine, from $(basename "$tarball"))"
git tag pristine
say "kernel source: ready at $SRC"
