"""Benchmark: dump and restore of a process holding 1000 open fds (500 regular files, 250 pipes
with 100 bytes in flight each, both ends open), images on /dev/shm.  Prints milliseconds per fd
each way: the time over that of the same program holding no extra fds, divided by 1000.
run(reps) -> printed lines; `python3 -m bench.files [reps]` runs it alone."""

import os

from bench import common

FDS = 1000
HOLDER_C = r"""
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
int main(int argc, char **argv)
{
    int nfiles = atoi(argv[1]), npipes = atoi(argv[2]);
    char path[4096], data[100];
    memset(data, 'p', sizeof(data));
    for (int i = 0; i < nfiles; i++) {
        snprintf(path, sizeof(path), "%s/f%d", argv[3], i);
        int fd = open(path, O_RDWR | O_CREAT, 0600);
        if (fd < 0 || write(fd, path, strlen(path)) < 0) return 2;
    }
    for (int i = 0; i < npipes; i++) {
        int p[2];
        if (pipe(p) || write(p[1], data, sizeof(data)) != sizeof(data)) return 2;
    }
    FILE *f = fopen(argv[4], "w");
    fprintf(f, "%d\n", getpid());
    fclose(f);
    for (;;) pause();
}
"""


def _one_round(exe, workdir, nfiles, npipes):
    """(dump seconds, restore seconds) of the holder with nfiles files and npipes pipes."""
    ready = os.path.join(workdir, "ready")
    p = common.start_target([exe, str(nfiles), str(npipes), workdir, ready], ready,
                            "bench.files: the fd holder")
    with common.killed_after([p.pid]), common.image_dir("crpy-bench-files-") as imgs:
        dump, restore = common.dump_then_restore("bench.files", p, imgs)
        want = nfiles + 2 * npipes
        got = len(os.listdir(f"/proc/{p.pid}/fd"))
        if got < want:
            raise SystemExit(f"bench.files: restored {got} fds, want at least {want}")
        return dump, restore


def run(reps=3):
    with common.child_subreaper(), common.work_dir("crpy-bench-files-") as workdir:
        exe = common.build_c(workdir, "holder", HOLDER_C, "-O1")
        base = [_one_round(exe, workdir, 0, 0) for _ in range(reps)]
        full = [_one_round(exe, workdir, FDS // 2, FDS // 4) for _ in range(reps)]
    lines = [f"process with {FDS} open fds ({FDS // 2} files, {FDS // 4} pipes with 100 bytes in flight),"
             f" {reps} reps, milliseconds per fd over the same process without them (median, min):"]
    return lines + common.per_item_lines(base, full, FDS, "without the fds")


if __name__ == "__main__":
    common.run_alone(run)
