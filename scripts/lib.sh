# SPDX-License-Identifier: GPL-2.0
# Common settings and helpers for the build scripts.  Sourced, not run.

set -euo pipefail

TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PROJECT=gmem-uffd
KVER=7.2.13
CACHE=${GMEM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/$PROJECT}
LOGS=${LOGS:-$TOP/logs}
# Flavour of the kernel: "debug" (make check) or "release" (make bench).
FLAVOUR=${FLAVOUR:-debug}
SRC=$CACHE/linux-$KVER
# The kernel build of $FLAVOUR; GMEM_KOUT points elsewhere (check-series
# builds the module against its own tree that way).
KOUT=${GMEM_KOUT:-$CACHE/build-$FLAVOUR}
TCROOT=$CACHE/trixie
JOBS=${JOBS:-$(nproc)}

# The Debian tarball we know; its sha256 is checked when it is used.
DEBIAN_TARBALL_SHA256=ecb3877b9988c936dcc64c63af8a54c2fa6df7f717d4e5ee429d0f4c4859e68b

mkdir -p "$CACHE" "$LOGS"

_t0=${_T0:-$(date +%s)}
export _T0=$_t0

elapsed() { echo "$(( $(date +%s) - _T0 ))s"; }
say() { printf '==> [%6s] %s\n' "$(elapsed)" "$*" >&2; }
die() { printf 'ERROR: %s\n' "$*" >&2; exit 1; }

# stage NAME CMD...: run a step with a start and an end line.
stage() {
	local name=$1 s rc=0
	shift
	s=$(date +%s)
	say "$name: start"
	"$@" || rc=$?
	if [ "$rc" -ne 0 ]; then
		say "$name: FAILED (rc=$rc, $(( $(date +%s) - s ))s)"
		return "$rc"
	fi
	say "$name: done ($(( $(date +%s) - s ))s)"
}

# The module built for $FLAVOUR (scripts/build-module.sh).
module_ko() {
	if [ "$FLAVOUR" = debug ]; then
		echo "$TOP/src/gmem_uffd.ko"
	else
		echo "$CACHE/module-$FLAVOUR/src/gmem_uffd.ko"
	fi
}

need_root() {
	[ "$(id -u)" -eq 0 ] || die "$1 needs root (chroot and mounts); run as root or inside a root container"
}

# Which toolchain builds the kernel: "host" or "chroot" (decided by
# scripts/toolchain.sh and recorded in the cache).
# frags_sum FRAGMENT...: the checksum of the config fragments a .config was
# made from, which the build directory keeps in .config.frags: another sum
# means the .config must be made again.
frags_sum() { cat "$@" | sha256sum | cut -c1-16; }

tc_mode() { cat "$CACHE/toolchain.mode" 2>/dev/null || echo none; }

# tc CMD...: run CMD with the kernel toolchain, in the current directory.
# In chroot mode the command runs in a private mount namespace: the bind
# mounts of the repository and the cache exist only there and vanish with
# it on every exit path (errors, Ctrl-C, even SIGKILL).
tc() {
	case "$(tc_mode)" in
	host) "$@" ;;
	chroot)
		need_root "the trixie toolchain"
		unshare --mount --propagation private -- \
			"$TOP/scripts/chroot-exec.sh" "$TCROOT" "$PWD" "$TOP" "$CACHE" "$@"
		;;
	*) die "no toolchain prepared: run scripts/toolchain.sh (make toolchain)" ;;
	esac
}

# The files the series adds under rust/ (the kernel crate), as the kernel
# tree $SRC holds them at HEAD.
series_rust_files() {
	git -C "$SRC" diff --name-only --diff-filter=A pristine HEAD -- rust/ | sort
}

# Print the first difference between $TOP/rust and the Rust files the
# series adds (nothing if the mirror is exact).
rust_mirror_diff() {
	local f have want
	want=$(series_rust_files)
	have=$(cd "$TOP" && find rust -type f 2>/dev/null | sort)
	[ "$have" = "$want" ] || { echo "the file lists differ"; return; }
	for f in $want; do
		cmp -s "$TOP/$f" "$SRC/$f" || { echo "$f"; return; }
	done
}
