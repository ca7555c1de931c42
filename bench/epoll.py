"""Benchmark: dump and restore of a process with 1000 eventfds registered in one epoll set,
images on /dev/shm.  Prints milliseconds per registered fd each way: the time over that of the
same program holding only the empty set, divided by 1000.
run(reps) -> printed lines; `python3 -m bench.epoll [reps]` runs it alone."""

import os

from bench import common

FDS = 1000
HOLDER_C = r"""
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>
int main(int argc, char **argv)
{
    int n = atoi(argv[1]), ep = epoll_create1(0);
    for (int i = 0; i < n; i++) {
        struct epoll_event ev = { .events = EPOLLIN, .data.u64 = i };
        int fd = eventfd(i & 1, EFD_NONBLOCK);
        if (fd < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev)) return 2;
    }
    FILE *f = fopen(argv[2], "w");
    fprintf(f, "%d\n", getpid());
    fclose(f);
    for (;;) pause();
}
"""


def _one_round(exe, workdir, n):
    """(dump seconds, restore seconds) of the holder with n registered eventfds."""
    ready = os.path.join(workdir, "ready")
    p = common.start_target([exe, str(n), ready], ready, "bench.epoll: the epoll holder")
    with common.killed_after([p.pid]), common.image_dir("crpy-bench-epoll-") as imgs:
        dump, restore = common.dump_then_restore("bench.epoll", p, imgs)
        epfd = next(fd for fd in os.listdir(f"/proc/{p.pid}/fd")
                    if os.readlink(f"/proc/{p.pid}/fd/{fd}") == "anon_inode:[eventpoll]")
        got = open(f"/proc/{p.pid}/fdinfo/{epfd}").read().count("tfd:")
        if got != n:
            raise SystemExit(f"bench.epoll: {got} registrations restored, want {n}")
        return dump, restore


def run(reps=3):
    with common.child_subreaper(), common.work_dir("crpy-bench-epoll-") as workdir:
        exe = common.build_c(workdir, "holder", HOLDER_C, "-O1")
        base = [_one_round(exe, workdir, 0) for _ in range(reps)]
        full = [_one_round(exe, workdir, FDS) for _ in range(reps)]
    lines = [f"process with {FDS} eventfds in one epoll set, {reps} reps, milliseconds per registered fd"
             " over the same process with the set empty (median, min):"]
    return lines + common.per_item_lines(base, full, FDS, "with the set empty")


if __name__ == "__main__":
    common.run_alone(run)
