#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# retry-known PATTERN COMMAND ARGS...: run a test; if it fails and its
# output shows PATTERN, the signature of a known upstream bug (see
# Documentation/testing.rst), say so and run it once more.  The first
# attempt's output is kept, as TAP comments, so nothing is hidden.
pattern=$1
shift
out=/tmp/retry-known.$$
"$@" > "$out" 2>&1
rc=$?
if [ $rc -ne 0 ] && grep -q "$pattern" "$out"; then
	sed 's/^/# first attempt: /' "$out"
	echo "# KNOWN UPSTREAM ISSUE: '$pattern' (rc=$rc); running once more"
	echo "@@@ KNOWN-ISSUE-RETRY $pattern"
	"$@" > "$out" 2>&1
	rc=$?
fi
cat "$out"
rm -f "$out"
exit $rc
