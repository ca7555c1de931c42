"""Benchmark: dump (--tcp-established) and restore of a tree of two processes holding 1000
established TCP connections over loopback, 500 pairs with both ends in the tree (the parent
holds the connecting ends, its child the accepted ones), images on /dev/shm.  Prints
milliseconds per connection each way: the time over that of the same tree holding none, measured
in the same run (alternating rounds; medians and minima).  After each restore a few pairs are
checked to work: a byte is sent each way over them and must arrive (through crpy's own copies of
the restored sockets, pidfd_getfd, so the tree itself is left alone).
run(reps) -> printed lines; `python3 -m bench.tcp [reps]` runs it alone."""

import os
import socket

from bench import common

PAIRS = 500
CHECKED_PAIRS = 5
HOLDER_C = r"""
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>
/* argv: pairs, ready file.  The ready file gets "PARENT CHILD FD0 FD1 ...\n": for pair i the
   parent holds the connecting end at fd FD<2i>, the child the accepted end at fd FD<2i+1>. */
int main(int argc, char **argv)
{
    int n = atoi(argv[1]), *fds = calloc(2 * n + 1, sizeof(int)), go[2];
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof(a);
    int l = socket(AF_INET, SOCK_STREAM, 0);
    if (l < 0 || bind(l, (void *)&a, sizeof(a)) || listen(l, 128) || getsockname(l, (void *)&a, &len))
        return 2;
    for (int i = 0; i < n; i++) {
        fds[2 * i] = socket(AF_INET, SOCK_STREAM, 0);
        if (fds[2 * i] < 0 || connect(fds[2 * i], (void *)&a, sizeof(a))) return 3;
        if ((fds[2 * i + 1] = accept(l, NULL, NULL)) < 0) return 4;
    }
    close(l);
    if (pipe(go)) return 5;
    pid_t child = fork();
    if (child == 0) {
        for (int i = 0; i < n; i++) close(fds[2 * i]);
        close(go[0]);
        close(go[1]);                      /* the parent's read ends: this end is closed */
        for (;;) pause();
    }
    for (int i = 0; i < n; i++) close(fds[2 * i + 1]);
    close(go[1]);
    char c;
    if (read(go[0], &c, 1) != 0) return 6;  /* EOF: the child has dropped the other ends */
    close(go[0]);
    FILE *f = fopen(argv[2], "w");
    fprintf(f, "%d %d", getpid(), child);
    for (int i = 0; i < 2 * n; i++) fprintf(f, " %d", fds[i]);
    fprintf(f, "\n");
    fclose(f);
    for (;;) pause();
}
"""


def _check_pairs(parent, child, fds, label):
    """Send one byte each way over the first CHECKED_PAIRS restored pairs; each must arrive."""
    from crpy.resources import taskfd

    for i in range(min(CHECKED_PAIRS, len(fds) // 2)):
        a = socket.socket(fileno=taskfd.duplicate(parent, fds[2 * i]))
        b = socket.socket(fileno=taskfd.duplicate(child, fds[2 * i + 1]))
        with a, b:
            try:
                peer = b.getpeername()
            except OSError:
                peer = None
            if a.getsockname() != peer:
                raise SystemExit(f"{label}: pair {i} is no longer connected end to end after restore")
            for src, dst, byte in ((a, b, b"x"), (b, a, b"y")):
                dst.settimeout(5)
                src.sendall(byte)
                try:
                    got = dst.recv(1)
                except OSError as e:
                    raise SystemExit(f"{label}: pair {i}: no byte after restore ({e})") from None
                if got != byte:
                    raise SystemExit(f"{label}: pair {i}: got {got!r} after restore, want {byte!r}")


def _one_round(exe, workdir, pairs):
    """(dump seconds, restore seconds) of the tree holding `pairs` connected pairs."""
    label = "bench.tcp"
    ready = os.path.join(workdir, "ready")
    p = common.start_target([exe, str(pairs), ready], ready, f"{label}: the connection holder", timeout=60)
    parent, child, *fds = (int(x) for x in open(ready).read().split())
    with common.killed_after([parent, child]), common.image_dir("crpy-bench-tcp-") as imgs:
        dump, restore = common.dump_then_restore(label, p, imgs, [parent, child],
                                                 extra=("--tcp-established",))
        _check_pairs(parent, child, fds, label)
        return dump, restore


def run(reps=3):
    base, full = [], []
    with common.child_subreaper(), common.work_dir("crpy-bench-tcp-") as workdir:
        exe = common.build_c(workdir, "holder", HOLDER_C, "-O1")
        for n in range(reps):          # alternating, the order swapped each round
            for pairs in ((0, PAIRS) if n % 2 == 0 else (PAIRS, 0)):
                (full if pairs else base).append(_one_round(exe, workdir, pairs))
    lines = [f"tree of 2 processes with {2 * PAIRS} established TCP connections ({PAIRS} loopback pairs, "
             f"--tcp-established), {reps} reps, ms per connection over the same tree without them "
             f"(median, min); {CHECKED_PAIRS} pairs checked to carry a byte each way after restore:"]
    return lines + common.per_item_lines(base, full, 2 * PAIRS, "without them")


if __name__ == "__main__":
    common.run_alone(run)
