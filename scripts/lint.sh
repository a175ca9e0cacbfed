#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# rustfmt and clippy on src/, rust/ and vmm/, checkpatch --strict on
# patches/ and on our C selftests.  Exit non-zero on any finding.
. "$(dirname "$0")/lib.sh"

bad=0
mapfile -t rs < <(cd "$TOP" && find src rust -name '*.rs' 2>/dev/null | sort)
if [ ${#rs[@]} -gt 0 ]; then
	if (cd "$TOP" && tc rustfmt --check --edition 2021 --config-path "$SRC/.rustfmt.toml" "${rs[@]}"); then
		say "lint: rustfmt clean (${#rs[@]} files)"
	else
		say "lint: rustfmt found differences (run: rustfmt --edition 2021 --config-path $SRC/.rustfmt.toml)"
		bad=1
	fi
fi

# clippy on the module: the kernel's CLIPPY=1, warnings are findings.  The
# object is removed first so that the module is really compiled again.
rm -f "$TOP"/src/*.o
if "$TOP/scripts/build-module.sh" CLIPPY=1 2>"$LOGS/clippy.err"; then
	if grep -qE '^(warning|error)' "$LOGS/module-build.log"; then
		grep -E '^(warning|error)' -A8 "$LOGS/module-build.log"
		say "lint: clippy findings in src/"
		bad=1
	else
		say "lint: clippy clean on src/"
	fi
	rm -f "$TOP"/src/*.o
else
	cat "$LOGS/clippy.err"
	bad=1
fi
# clippy on our kernel crate files: rebuilds rust/ of the kernel build with
# CLIPPY=1, which changes the kernel crate's symbol hashes; the kernel and
# the module are then rebuilt normally so that they match again.
if [ -n "$(ls -A "$TOP/rust" 2>/dev/null)" ]; then
	"$TOP/scripts/kernel-tree.sh"
	if (cd "$SRC" && tc make LLVM=1 O="$KOUT" -j"$JOBS" CLIPPY=1 rust/) >"$LOGS/clippy-rust.log" 2>&1 &&
	   ! grep -qE '^(warning|error)' "$LOGS/clippy-rust.log"; then
		say "lint: clippy clean on rust/"
	else
		grep -E '^(warning|error)' -A8 "$LOGS/clippy-rust.log"
		say "lint: clippy findings in rust/ (log: $LOGS/clippy-rust.log)"
		bad=1
	fi
	"$TOP/scripts/kernel-build.sh" && "$TOP/scripts/build-module.sh" ||
		die "lint: rebuilding the kernel after clippy failed"
fi

# Two checks are left to review.  The kernel tree is made from the release
# tarball, without upstream's git history: checkpatch cannot look up the
# commit ids that messages cite ("Fixes:").  And it asks whether MAINTAINERS
# needs updating for every new file, even one under a directory an entry
# already lists: the Rust files of patches 9 and 10 are in rust/kernel/mm/
# and rust/kernel/fs/ (patch 5 adds its new helper files to MM RUST).
cp=(perl "$SRC/scripts/checkpatch.pl" --strict --color=never --quiet
	--ignore UNKNOWN_COMMIT_ID,FILE_PATH_CHANGES)
for p in "$TOP"/patches/*.patch; do
	if ! (cd "$SRC" && tc "${cp[@]}" "$p"); then
		say "lint: checkpatch --strict: $(basename "$p")"
		bad=1
	fi
done
# Userspace tests: kernel style, without --strict's kernel-only checks
# (u64 over uint64_t and the like).
for f in "$TOP"/selftests/*.c "$TOP"/selftests/kvm/*.c "$TOP"/scripts/guest/*.c; do
	[ -f "$f" ] || continue
	if ! (cd "$SRC" && tc perl "$SRC/scripts/checkpatch.pl" --color=never --quiet --no-tree -f "$f"); then
		say "lint: checkpatch: ${f#"$TOP"/}"
		bad=1
	fi
done
# The VMM demo: the host's cargo, as scripts/build-vmm.sh builds it.
if [ -f "$TOP/vmm/Cargo.toml" ]; then
	if (cd "$TOP/vmm" && cargo fmt --check) >"$LOGS/vmm-fmt.log" 2>&1; then
		say "lint: rustfmt clean on vmm/"
	else
		cat "$LOGS/vmm-fmt.log"
		say "lint: rustfmt found differences in vmm/ (run: cd vmm && cargo fmt)"
		bad=1
	fi
	if (cd "$TOP/vmm" && CARGO_TARGET_DIR=$CACHE/vmm-target cargo clippy --locked --release \
		--target x86_64-unknown-linux-gnu -- -D warnings) >"$LOGS/vmm-clippy.log" 2>&1; then
		say "lint: clippy clean on vmm/"
	else
		grep -E '^(warning|error)' -A8 "$LOGS/vmm-clippy.log"
		say "lint: clippy findings in vmm/ (log: $LOGS/vmm-clippy.log)"
		bad=1
	fi
fi
[ $bad -eq 0 ] || die "lint: findings above"
say "lint: clean"
