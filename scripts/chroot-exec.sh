#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Runs inside a private mount namespace (see tc() in lib.sh):
#   chroot-exec.sh ROOT CWD TOP CACHE CMD...
# Bind-mounts the repository and the cache at the same paths inside ROOT,
# then runs CMD chrooted in CWD.  The mounts die with the namespace.
set -euo pipefail
root=$1 cwd=$2 top=$3 cache=$4
shift 4
for d in "$top" "$cache"; do
	mkdir -p "$root$d"
	mount --bind "$d" "$root$d"
done
mount -t proc proc "$root/proc"
mount --rbind /dev "$root/dev"
mount --rbind /sys "$root/sys"
exec chroot "$root" /usr/bin/env -i HOME=/root LANG=C.UTF-8 \
	PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
	TERM="${TERM:-dumb}" _T0="${_T0:-0}" \
	/bin/bash -c 'cd "$1" && shift && exec "$@"' _ "$cwd" "$@"
