#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Make $KOUT/.config from allnoconfig plus config/base.config and
# config/$FLAVOUR.config, then check that every requested option stuck.
. "$(dirname "$0")/lib.sh"

frags=("$TOP/config/base.config" "$TOP/config/$FLAVOUR.config")
sum=$(frags_sum "${frags[@]}")
mkdir -p "$KOUT"
if [ -f "$KOUT/.config" ] && [ "$(cat "$KOUT/.config.frags" 2>/dev/null)" = "$sum" ]; then
	say "config: $KOUT/.config up to date ($FLAVOUR)"
	exit 0
fi

cd "$SRC"
tc env LLVM=1 ARCH=x86_64 scripts/kconfig/merge_config.sh -n -O "$KOUT" \
	"${frags[@]}" > "$KOUT/merge_config.log" 2>&1 ||
	die "merge_config.sh failed; see $KOUT/merge_config.log"

bad=0
while IFS= read -r line; do
	case "$line" in
	CONFIG_*=n)
		opt=${line%%=*}
		if grep -q "^$opt=" "$KOUT/.config"; then
			echo "config: $opt=n requested but $(grep "^$opt=" "$KOUT/.config") set" >&2
			bad=1
		fi ;;
	CONFIG_*=*)
		if ! grep -qx "$line" "$KOUT/.config"; then
			opt=${line%%=*}
			got=$(grep -E "^$opt=|^# $opt is not set" "$KOUT/.config" || echo "absent")
			echo "config: $line requested but got: $got" >&2
			bad=1
		fi ;;
	esac
done < <(cat "${frags[@]}" | sed 's/#.*//; s/[[:space:]]*$//' | grep .)
[ "$bad" -eq 0 ] || die "requested kernel options did not stick (see above and $KOUT/merge_config.log)"
echo "$sum" > "$KOUT/.config.frags"
say "config: $FLAVOUR config merged and verified"
