#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Build the kernel selftests the initramfs needs, as static x86_64
# binaries (one of ours i386), from the kernel tree $SRC, and copy them to
# $CACHE/selftests-bin/:
#
#   tools/testing/selftests/mm:  uffd-unit-tests, uffd-stress
#   tools/testing/selftests/kvm: the KVM_TESTS below, unmodified
#   selftests/*.c (ours), scripts/guest/*.c (the guest's helpers): one program each
#   selftests/kvm/*.c (ours):    one program each, built by the kvm
#                                Makefile with its library (kvm_util)
#   selftests/kvm/TEST-*.patch:  TEST-gmem_uffd, the kernel's TEST patched,
#                                built the same way
#
# The mm tests are built from a copy of their sources with
# selftests/mm/uffd-guest_memfd.patch applied (the guest_memfd memory type of
# the userfaultfd tests), in $CACHE/selftests-build/mm-src.
#
# Nothing is written into $SRC: the uapi headers are made with their own
# O= directory and every object goes to OUTPUT= under
# $CACHE/selftests-build/.  Make decides what is out of date, so a second
# run only re-checks.  The full log goes to $LOGS/selftests-build.log.
. "$(dirname "$0")/lib.sh"

ST=$SRC/tools/testing/selftests
BLD=$CACHE/selftests-build
HDR=$BLD/hdr              # O= of "make headers"; never $KOUT
MMCFG=$BLD/mm-config      # local_config.mk for the mm Makefile
MMSRC=$BLD/mm-src         # the patched copy of the mm tests, in tree layout
MST=$MMSRC/tools/testing/selftests
UFFD_PATCH=$TOP/selftests/mm/uffd-guest_memfd.patch
# What the mm build reads from the tree, relative to its root: the mm
# directory, the selftests files lib.mk and the mm Makefile use, the tools
# uapi headers (TOOLS_INCLUDES) and mm/gup_test.h.
MM_FILES=(tools/testing/selftests/mm tools/testing/selftests/lib.mk
	tools/testing/selftests/kselftest.h
	tools/testing/selftests/kselftest_harness.h
	tools/testing/selftests/kselftest
	tools/testing/selftests/x86/check_cc.sh
	tools/testing/selftests/x86/trivial_program.c
	tools/testing/selftests/x86/trivial_32bit_program.c
	tools/testing/selftests/x86/trivial_64bit_program.c
	tools/include mm/gup_test.h)
BIN=$CACHE/selftests-bin
log=$LOGS/selftests-build.log
# At most two jobs: the machine is small and a kernel may build beside us.
J=${SELFTESTS_JOBS:-2}

[ -f "$ST/mm/Makefile" ] && [ -f "$ST/kvm/Makefile" ] ||
	die "no selftests in $SRC: run scripts/kernel-src.sh first"
[ -f "$UFFD_PATCH" ] || die "$UFFD_PATCH is missing"

mkdir -p "$BLD/mm" "$BLD/kvm" "$HDR" "$MMCFG" "$BIN"
: > "$log"

# run CMD...: run CMD with the toolchain in the current directory, echoing
# it into the log, all output to the log.
run() {
	{ printf '+'; printf ' %q' "$@"; echo; } >> "$log"
	tc "$@" >> "$log" 2>&1
}

fail() {
	grep -E 'error|Error|undefined reference|No rule' "$log" |
		grep -v HDRINST | tail -n 20 >&2 || true
	die "$1; full log: $log"
}

# Everything the selftests Makefiles share.  -static comes through
# USERLDFLAGS, which lib.mk appends to LDFLAGS for exactly this use.
COMMON=(ARCH=x86_64 CC=gcc "KHDR_INCLUDES=-isystem $HDR/usr/include"
	USERLDFLAGS=-static V=1)

build_headers() {
	# The exported uapi headers, as the top-level kselftest target makes
	# them (KHDR_INCLUDES=-isystem $objtree/usr/include).
	cd "$SRC"
	run make ARCH=x86_64 O="$HDR" -j"$J" headers ||
		fail "make headers failed"
	[ -f "$HDR/usr/include/linux/userfaultfd.h" ] ||
		fail "headers made but $HDR/usr/include/linux/userfaultfd.h is missing"
}

prepare_mm_src() {
	# Every run copies MM_FILES from $SRC into a scratch tree and applies
	# the patch there (exactly: no fuzz); rsync -c then writes into
	# $MMSRC only the files whose content differs, with a new mtime, so
	# make rebuilds what a change of the sources or of the patch touched
	# and nothing else.
	local tmp=$MMSRC.new
	rm -rf "$tmp"
	mkdir -p "$tmp" "$MMSRC"
	cd "$SRC"
	run rsync -aR "${MM_FILES[@]}" "$tmp/" ||
		fail "copying the mm selftests from $SRC failed"
	cd "$tmp"
	if ! run patch -p1 --forward --batch --fuzz=0 \
		--no-backup-if-mismatch -i "$UFFD_PATCH"; then
		tail -n 20 "$log" >&2
		die "$UFFD_PATCH does not apply to $SRC (rejects in $tmp); full log: $log"
	fi
	cd "$BLD"
	run rsync -rlpc --delete "$tmp/" "$MMSRC/" ||
		fail "updating $MMSRC failed"
	rm -rf "$tmp"
}

build_mm() {
	# mm/Makefile does "include local_config.mk" and would make it (and
	# local_config.h) in the source directory with check_config.sh.  The
	# file is given from $MMCFG through make's include path instead; only
	# cow and gup_longterm use it (for liburing), neither is built here.
	#
	# LOCAL_HDRS (the headers every program depends on) is given too:
	# the Makefile's own list would name local_config.h in the mm
	# directory.  The mm Makefile has no header dependency tracking, so
	# the list here is wider than upstream's: the mm headers, kselftest's,
	# and a stamp that is touched whenever "make headers" changed a uapi
	# header (linux/userfaultfd.h above all).
	if [ ! -f "$MMCFG/local_config.mk" ]; then
		printf '%s\n' '# Written by build-selftests.sh: no liburing wanted.' \
			'IOURING_EXTRA_LIBS =' > "$MMCFG/local_config.mk"
	fi
	local stamp=$BLD/uapi.stamp hdrs
	if [ ! -e "$stamp" ] ||
		[ -n "$(find "$HDR/usr/include" -newer "$stamp" -print -quit)" ]; then
		touch "$stamp"
	fi
	hdrs="$stamp $MMSRC/mm/gup_test.h $MST/kselftest_harness.h $MST/kselftest.h"
	hdrs+=" $(cd "$MST/mm" && echo "$PWD"/*.h)"
	cd "$MST/mm"
	run make -I "$MMCFG" -j"$J" "${COMMON[@]}" OUTPUT="$BLD/mm" \
		LOCAL_HDRS="$hdrs" \
		"$BLD/mm/uffd-unit-tests" "$BLD/mm/uffd-stress" ||
		fail "mm selftests build failed"
}

# The kernel's KVM selftests that exercise guest_memfd.
KVM_TESTS=(guest_memfd_test set_memory_region_test pre_fault_memory_test
	x86/private_mem_conversions_test x86/private_mem_kvm_exits_test)
# Ours, in selftests/kvm/: found through VPATH, built as the Makefile's
# TEST_GEN_PROGS_EXTENDED (which links them with the library).  Among them,
# for each selftests/kvm/TEST-WHAT.patch, TEST-gmem_uffd: the kernel's TEST
# with that patch applied, made in $KVMPATCHED (guest_memfd_test-rw.patch:
# read() and write() work; set_memory_region_test-gmem.patch: an option to
# run only its guest_memfd tests).
KVMPATCHED=$BLD/kvm-patched
KVM_PATCHES=("$TOP"/selftests/kvm/*.patch)
OUR_KVM="$(cd "$TOP/selftests/kvm" && ls *.c | sed 's/\.c$//')"
for p in "${KVM_PATCHES[@]}"; do
	p=$(basename "$p")
	OUR_KVM="$OUR_KVM ${p%-*}-gmem_uffd"
done

prepare_kvm_patched() {
	# Rewritten only when its content changes, so make rebuilds only then.
	local new=$KVMPATCHED/new p t
	for p in "${KVM_PATCHES[@]}"; do
		t=$(basename "$p")
		t=${t%-*}
		rm -rf "$new"
		mkdir -p "$new/tools/testing/selftests/kvm"
		cp "$ST/kvm/$t.c" "$new/tools/testing/selftests/kvm/"
		if ! (cd "$new" && run patch -p1 --forward --batch --fuzz=0 \
			--no-backup-if-mismatch -i "$p"); then
			die "$p does not apply to $SRC; full log: $log"
		fi
		if ! cmp -s "$new/tools/testing/selftests/kvm/$t.c" "$KVMPATCHED/$t-gmem_uffd.c"; then
			cp "$new/tools/testing/selftests/kvm/$t.c" "$KVMPATCHED/$t-gmem_uffd.c"
		fi
	done
	rm -rf "$new"
}

build_kvm() {
	# Ours are compiled again every time (a few seconds): the dependency
	# files make writes name their sources under $TOP, which is another
	# directory in the next clone, and a stale one stops make.
	local n
	for n in $OUR_KVM; do
		rm -f "$BLD/kvm/$n" "$BLD/kvm/$n.o" "$BLD/kvm/$n.d"
	done
	# TMPOUT: tools/build/Build.include's try-run makes its scratch
	# directory .tmp_$$ in the current directory, i.e. in $SRC; give it
	# one in OUTPUT ($$$$ is make's escape for the shell's $$).
	cd "$ST/kvm"
	run make -j"$J" "${COMMON[@]}" OUTPUT="$BLD/kvm" \
		TMPOUT="$BLD/kvm/.tmp_\$\$\$\$" \
		VPATH="$TOP/selftests/kvm:$KVMPATCHED" \
		TEST_GEN_PROGS_EXTENDED_x86="$(echo $OUR_KVM)" \
		"${KVM_TESTS[@]/#/$BLD/kvm/}" $(printf "$BLD/kvm/%s " $OUR_KVM) ||
		fail "kvm selftests build failed"
}

build_ours() {
	# Our own tests in selftests/ and the guest helpers in scripts/guest/:
	# every *.c is one program.
	mkdir -p "$BLD/ours"
	cd "$TOP/selftests"
	run make -j"$J" CC=gcc OUTPUT="$BLD/ours" KSFT="$ST" KHDR="$HDR/usr/include" ||
		fail "our selftests (selftests/) failed to build"
}

# install_bin FILE: check FILE is a static x86-64 executable (i386 for
# a *compat32* test) and copy it to $BIN when it differs from the copy there.
install_bin() {
	local f=$1 name desc arch=X86-64 farch=x86-64
	name=$(basename "$f")
	case "$name" in
	*compat32*) arch=80386 farch="Intel 80386" ;;
	esac
	[ -x "$f" ] || die "$f was not built; full log: $log"
	if command -v file >/dev/null; then
		desc=$(file -b "$f")
		case "$desc" in
		*"$farch"*", statically linked"*) ;;
		*) die "$name is not a static $farch executable: $desc" ;;
		esac
	else
		# No file(1) on the host: readelf from the toolchain; an
		# executable without a program interpreter is static.
		desc=$(tc readelf -hlW "$f") || die "readelf failed on $f"
		case "$desc" in
		*"program interpreter"*) die "$name is dynamically linked" ;;
		*"Type:"*"EXEC"*"$arch"*) ;;
		*) die "$name is not an $arch executable" ;;
		esac
	fi
	if ! cmp -s "$f" "$BIN/$name"; then
		install -m 0755 "$f" "$BIN/$name"
		say "selftests: installed $BIN/$name"
	fi
}

say "selftests: start (log: $log)"
stage "selftests: uapi headers" build_headers
stage "selftests: mm sources (patched copy)" prepare_mm_src
stage "selftests: mm (uffd-unit-tests, uffd-stress)" build_mm
stage "selftests: kvm, patched copies (selftests/kvm/*.patch)" prepare_kvm_patched
stage "selftests: kvm (${KVM_TESTS[*]##*/} $OUR_KVM)" build_kvm
stage "selftests: ours (selftests/)" build_ours
for f in "$BLD/mm/uffd-unit-tests" "$BLD/mm/uffd-stress" \
	"${KVM_TESTS[@]/#/$BLD/kvm/}" $(printf "$BLD/kvm/%s " $OUR_KVM) \
	"$BLD"/ours/*; do
	install_bin "$f"
done
if grep -q 'warning:' "$log"; then
	say "selftests: $(grep -c 'warning:' "$log") compiler warning(s), see $log"
fi
say "selftests: done: $(cd "$BIN" && echo *) in $BIN"
