#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Build the VMM demo (vmm/, Documentation/vmm-demo.rst) with the host's
# cargo as a static x86-64 executable and install it as
# $CACHE/selftests-bin/gmem-vmm, which scripts/initramfs.sh packs as
# /tests/gmem-vmm.  Crate versions are the ones in vmm/Cargo.lock
# (--locked); objects go to $CACHE/vmm-target, never into the repository.
# The full log goes to $LOGS/vmm-build.log.
. "$(dirname "$0")/lib.sh"

log=$LOGS/vmm-build.log
BIN=$CACHE/selftests-bin
TRIPLE=x86_64-unknown-linux-gnu
export CARGO_TARGET_DIR=$CACHE/vmm-target

command -v cargo >/dev/null ||
	die "cargo not found: the VMM demo is built with the host's Rust (rustup, https://rustup.rs)"

# apt_need PKG WHAT: install PKG with apt-get when running as root.
apt_need() {
	if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
		say "vmm: installing $1 ($2) with apt-get"
		{ apt-get install -y -qq "$1" || { apt-get update -qq && apt-get install -y -qq "$1"; }; } \
			>>"$log" 2>&1 || die "could not install $1: apt-get install $1 (log: $log)"
	else
		die "$2 missing: apt-get install $1"
	fi
}

: > "$log"
# The guest payload is assembled by vmm/build.rs with as and objcopy.
command -v as >/dev/null && command -v objcopy >/dev/null || apt_need binutils "as, objcopy"
# userfaultfd-sys makes its bindings with bindgen at build time, which
# loads libclang (no version of the crate ships pregenerated bindings).
# Ask what bindgen asks: a library named as clang-sys looks for it
# (libclang.so*, libclang-N.so*; not libclang-cpp, a different library),
# that loads and exports clang_createIndex.
have_libclang() {
	python3 - "${LIBCLANG_PATH:-}" <<'PY'
import ctypes, glob, os, re, sys
dirs = [sys.argv[1]] if sys.argv[1] else []
dirs += glob.glob("/usr/lib/llvm-*/lib") + glob.glob("/usr/lib/*-linux-gnu") + ["/usr/lib", "/usr/local/lib"]
name = re.compile(r"^libclang(-[0-9][0-9.]*)?\.so(\.[0-9.]+)?$")
for d in dirs:
    for f in sorted(os.listdir(d)) if os.path.isdir(d) else []:
        if not name.match(f):
            continue
        try:
            ctypes.CDLL(os.path.join(d, f)).clang_createIndex
        except (OSError, AttributeError):
            continue
        print(os.path.join(d, f))
        sys.exit(0)
sys.exit(1)
PY
}
if ! lib=$(have_libclang); then
	apt_need libclang1 "libclang, for bindgen"
	lib=$(have_libclang) || die "libclang1 installed, but no loadable libclang found for bindgen"
fi
say "vmm: bindgen loads $lib"
rustup target list --installed 2>/dev/null | grep -qx "$TRIPLE" ||
	rustup target add "$TRIPLE" >>"$log" 2>&1 || true

# crt-static: glibc linked in; relocation-model=static: a plain static
# executable rather than static-pie.
export RUSTFLAGS="-C target-feature=+crt-static -C relocation-model=static"
if ! cargo build --release --locked --target "$TRIPLE" \
	--manifest-path "$TOP/vmm/Cargo.toml" >>"$log" 2>&1; then
	grep -E '^(error|warning)|-->' -A3 "$log" | tail -n 30 >&2 || true
	die "cargo build of vmm/ failed; full log: $log"
fi
exe=$CARGO_TARGET_DIR/$TRIPLE/release/gmem-vmm
desc=$(file -b "$exe")
case "$desc" in
*x86-64*"statically linked"*) ;;
*) die "gmem-vmm is not a static x86-64 executable: $desc" ;;
esac
mkdir -p "$BIN"
if ! cmp -s "$exe" "$BIN/gmem-vmm"; then
	install -m 0755 "$exe" "$BIN/gmem-vmm"
	say "vmm: installed $BIN/gmem-vmm"
fi
