"""The digests of a dump hold while the kernel writes the task's rseq area under the parasite.

The parasite hashes the pages it vmsplices; crpy's splice copies them out of the pipe a moment
later.  The kernel rewrites the rseq area (cpu_id, mm_cid) of the thread running the parasite
whenever that thread comes back to user mode on another CPU, so a page holding the area could
change in between: a restore then refused the dump as damaged (seen once in CI, a Python
program dumped on a loaded machine).  Here the task registers its own rseq area on the last
page of the image's first hashed chunk (its lowest mapping, fully written: the first 4 MiB
of pages-1.img), so that chunk's whole splice is the window, and a thread moves the task
between CPUs all along.  Before the fix this test failed at one of its first 5 dumps in each of
3 runs (and 17 dumps in 30 were damaged with glibc's own area near the end of a hashed chunk).
"""

import os
import threading

import pytest

from tests.unit.crhelpers import build_c, crpy, kill_quietly, read_text, start_target

TARGET = r"""
#define _GNU_SOURCE
#include <linux/rseq.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>
#define AT ((char *)0x100000000UL)   /* below the executable: the image's first pages */
#define SIZE (8UL << 20)
int main(int argc, char **argv)
{
	char *p = mmap(AT, SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
	if (p != AT)
		return 1;
	memset(p, 1, SIZE);
	struct rseq *rs = (struct rseq *)(p + (4UL << 20) - 64);
	memset(rs, 0, sizeof(*rs));
	rs->cpu_id = RSEQ_CPU_ID_UNINITIALIZED;
	if (syscall(SYS_rseq, rs, 32, 0, 0x53053053))
		return 2;
	FILE *f = fopen(argv[1], "w");
	fputs("ready\n", f);
	fclose(f);
	for (;;)
		pause();
}
"""

DUMPS = 8


def test_digests_hold_while_the_parasite_thread_changes_cpu(tmp_path):
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        pytest.skip(f"needs two CPUs to move the task between, this process may use {cpus}")
    binary = build_c(tmp_path, "rseq_target", TARGET)
    ready = tmp_path / "ready"
    # glibc registers no area of its own: the task's one is where the test put it
    env = {**os.environ, "GLIBC_TUNABLES": "glibc.pthread.rseq=0"}
    p = start_target([binary, ready], lambda: "ready" in read_text(ready), env=env)
    stop = threading.Event()

    def move_between_cpus():
        i = 0
        while not stop.is_set():
            try:
                os.sched_setaffinity(p.pid, {cpus[i % 2]})
            except OSError:
                pass
            i += 1
            stop.wait(0.0002)

    mover = threading.Thread(target=move_between_cpus, daemon=True)
    mover.start()
    try:
        for n in range(DUMPS):
            images = tmp_path / f"img{n}"
            r = crpy("dump", "-t", p.pid, "-D", images, "--leave-running")
            assert r.returncode == 0, r.stderr
            r = crpy("check-images", "-D", images)
            assert r.returncode == 0, f"dump {n + 1} of {DUMPS}: {r.stderr}"
    finally:
        stop.set()
        mover.join()
        kill_quietly(p.pid)
        p.wait()
