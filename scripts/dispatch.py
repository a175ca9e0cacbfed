#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Hand the lines of a test plan to the guests of one run, a line at a time.

    dispatch.py PLAN LOG SOCKET...

Listens on each unix SOCKET; run-qemu.sh connects the second serial port
(/dev/ttyS1) of one guest to each.  A guest that is ready for a test
writes "next"; the answer is the next line of PLAN (comments and blank
lines left out), or an empty line once every line has been handed out.  So
each plan line runs exactly once, on whichever guest asks first, and a
guest that finishes early takes the next line instead of idling.

Every answer is framed as "@LEN LINE", LEN the length of LINE, so that a
guest can tell a reply the serial line garbled from a plan line; it then
writes "again" and gets the same answer once more.  Each line handed out is
recorded in LOG as "guest N: GROUP NAME", each answer sent again as
"guest N: sent again".  Any other input (line noise) is ignored.  Runs
until killed.
"""

import os
import selectors
import socket
import sys


class Guest:
    """One guest's connection: its number, what it sent that is not a
    whole line yet, and the last answer it got."""

    def __init__(self, n):
        self.n = n
        self.buf = b""
        self.last = b""


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    plan, log_path, paths = sys.argv[1], sys.argv[2], sys.argv[3:]
    with open(plan) as f:
        queue = [l.strip() for l in f if l.strip() and not l.lstrip().startswith("#")]
    queue.reverse()
    log = open(log_path, "w", buffering=1)
    sel = selectors.DefaultSelector()
    for n, path in enumerate(paths, 1):
        if os.path.exists(path):
            os.unlink(path)
        srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        srv.bind(path)
        srv.listen()
        sel.register(srv, selectors.EVENT_READ, n)
    while True:
        for key, _ in sel.select():
            if not isinstance(key.data, Guest):
                # A guest (re)booted: its serial port connects.
                conn, _ = key.fileobj.accept()
                sel.register(conn, selectors.EVENT_READ, Guest(key.data))
                continue
            guest = key.data
            data = key.fileobj.recv(4096)
            if not data:
                sel.unregister(key.fileobj)
                key.fileobj.close()
                continue
            guest.buf += data
            while b"\n" in guest.buf:
                line, _, guest.buf = guest.buf.partition(b"\n")
                req = line.strip(b"\r ")
                if req == b"again" and guest.last:
                    log.write(f"guest {guest.n}: sent again\n")
                elif req == b"next":
                    test = queue.pop() if queue else ""
                    if test:
                        log.write(f"guest {guest.n}: {' '.join(test.split()[:2])}\n")
                    guest.last = f"@{len(test)} {test}\n".encode()
                else:
                    continue
                key.fileobj.sendall(guest.last)


if __name__ == "__main__":
    main()
