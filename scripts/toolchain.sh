#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Decide which toolchain builds the kernel and prepare it.
#
# The host's tools are used when the kernel's own "make LLVM=1
# rustavailable" passes with them.  Otherwise a Debian trixie minbase tree
# (exactly 7.2's Rust minimums) is made with debootstrap under the cache and
# the build steps run in it with chroot.  The tree is remade only when the
# package list below changes.
. "$(dirname "$0")/lib.sh"

PKGS="build-essential busybox-static flex bison bc libelf-dev libssl-dev cpio kmod rustc
rust-src bindgen clang llvm lld libclang-dev rustfmt rust-clippy
gcc-multilib libnuma-dev libcap-dev rsync python3 python3-ply python3-git git ca-certificates"
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

pkgs=$(echo $PKGS)
stamp="trixie $MIRROR $pkgs"

host_ok() {
	[ "${FORCE_CHROOT:-0}" = 1 ] && return 1
	[ -f "$SRC/Makefile" ] || return 1
	command -v clang >/dev/null && command -v ld.lld >/dev/null &&
		command -v bindgen >/dev/null || return 1
	make -s -C "$SRC" LLVM=1 O="$CACHE/rustavailable" rustavailable \
		>/dev/null 2>&1
}

if host_ok; then
	say "toolchain: host tools pass 'make LLVM=1 rustavailable'"
	echo host > "$CACHE/toolchain.mode"
	exit 0
fi

if [ -f "$TCROOT/.stamp" ] && [ "$(cat "$TCROOT/.stamp")" = "$stamp" ]; then
	say "toolchain: trixie tree up to date ($TCROOT)"
	echo chroot > "$CACHE/toolchain.mode"
	exit 0
fi

need_root "making the trixie toolchain tree"
if ! command -v debootstrap >/dev/null; then
	say "toolchain: installing debootstrap on the host"
	apt-get install -y -qq debootstrap >/dev/null ||
		die "debootstrap is missing and could not be installed: apt-get install debootstrap"
fi

say "toolchain: host tools cannot build 7.2 Rust; making a trixie tree in $TCROOT"
rm -rf "$TCROOT.new"
debootstrap --variant=minbase --include="$(echo $pkgs | tr ' ' ,)" \
	trixie "$TCROOT.new" "$MIRROR" > "$CACHE/debootstrap.log" 2>&1 ||
	die "debootstrap failed; see $CACHE/debootstrap.log"
rm -rf "$TCROOT"
mv "$TCROOT.new" "$TCROOT"
echo "$stamp" > "$TCROOT/.stamp"
echo chroot > "$CACHE/toolchain.mode"
say "toolchain: trixie tree ready: $(chroot "$TCROOT" rustc --version)"
