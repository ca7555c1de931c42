"""End to end: a real C program dumped by `crpy dump` and brought back by `crpy restore`.

The program (its source is below) holds known patterns in its heap, .data, .bss, brk area, a
read-only and a PROT_NONE anonymous mapping and a private file mapping written after mmap; keeps
values in ymm0-15 and r13-r15 across a loop that counts in r12; blocks SIGPROF, ignores SIGUSR2
and, on SIGUSR1, stores its registers back, checks everything and appends "OK counter=N" (or
"FAIL reason") to its outfile.  After a restore it must have the same PID, exactly the same
/proc/PID/maps (addresses, protections, offsets, names), pass its own check and keep counting.
"""

import os
import re
import signal
import subprocess
import sys

import pytest
from tests.unit.crhelpers import (ROOT, build_c, crpy, gone, kill_quietly, log_tail, read_text, start_target,
                                  wait_for)

TARGET_C = r"""
/* restore test target: memory patterns, AVX registers, a counter, signal handling */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t check_flag;
static uint64_t counter;
static uint64_t data_arr[512] = {1};
static uint64_t bss_arr[4096];
static struct { uint8_t in[16][32]; uint8_t out[16][32]; uint64_t gpr[3]; } R __attribute__((aligned(32)));
#define ymm_in R.in
#define ymm_out R.out
#define gpr_out R.gpr
static uint64_t *heap; static size_t heap_words;
static uint64_t *brk_mem; static uint8_t *ro_mem, *file_mem, *shared_mem;
static const char *outfile; static int busy;

static uint64_t mix(uint64_t x) { x ^= x >> 33; x *= 0xff51afd7ed558ccdULL; x ^= x >> 33; return x; }

static void on_usr1(int sig) { (void)sig; check_flag = 1; }

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
    FILE *f = fopen(outfile, "a");
    va_list ap; va_start(ap, fmt); vfprintf(f, fmt, ap); va_end(ap);
    fclose(f);
}

static void run_loop(void)
{
    struct timespec ts = {0, 5 * 1000 * 1000};
    asm volatile(
        "vmovdqa 0(%[in]), %%ymm0\n vmovdqa 32(%[in]), %%ymm1\n vmovdqa 64(%[in]), %%ymm2\n"
        "vmovdqa 96(%[in]), %%ymm3\n vmovdqa 128(%[in]), %%ymm4\n vmovdqa 160(%[in]), %%ymm5\n"
        "vmovdqa 192(%[in]), %%ymm6\n vmovdqa 224(%[in]), %%ymm7\n vmovdqa 256(%[in]), %%ymm8\n"
        "vmovdqa 288(%[in]), %%ymm9\n vmovdqa 320(%[in]), %%ymm10\n vmovdqa 352(%[in]), %%ymm11\n"
        "vmovdqa 384(%[in]), %%ymm12\n vmovdqa 416(%[in]), %%ymm13\n vmovdqa 448(%[in]), %%ymm14\n"
        "vmovdqa 480(%[in]), %%ymm15\n"
        "mov (%[cnt]), %%r12\n"
        "movabs $0x1313131313131313, %%r13\n movabs $0x1414141414141414, %%r14\n"
        "movabs $0x1515151515151515, %%r15\n"
        "1:\n"
        " inc %%r12\n mov %%r12, (%[cnt])\n"
        " cmpl $0, %[busy]\n jne 2f\n"
        " mov $35, %%eax\n mov %[ts], %%rdi\n xor %%esi, %%esi\n syscall\n"
        "2:\n"
        " cmpl $0, (%[flag])\n je 1b\n"
        "vmovdqa %%ymm0, 512(%[in])\n vmovdqa %%ymm1, 544(%[in])\n vmovdqa %%ymm2, 576(%[in])\n"
        "vmovdqa %%ymm3, 608(%[in])\n vmovdqa %%ymm4, 640(%[in])\n vmovdqa %%ymm5, 672(%[in])\n"
        "vmovdqa %%ymm6, 704(%[in])\n vmovdqa %%ymm7, 736(%[in])\n vmovdqa %%ymm8, 768(%[in])\n"
        "vmovdqa %%ymm9, 800(%[in])\n vmovdqa %%ymm10, 832(%[in])\n vmovdqa %%ymm11, 864(%[in])\n"
        "vmovdqa %%ymm12, 896(%[in])\n vmovdqa %%ymm13, 928(%[in])\n vmovdqa %%ymm14, 960(%[in])\n"
        "vmovdqa %%ymm15, 992(%[in])\n"
        "mov %%r13, 1024(%[in])\n mov %%r14, 1032(%[in])\n mov %%r15, 1040(%[in])\n"
        "vzeroupper\n"
        :
        : [in] "r"(&R), [cnt] "r"(&counter), [flag] "r"(&check_flag),
          [ts] "r"(&ts), [busy] "m"(busy)
        : "rax", "rcx", "r11", "rdi", "rsi", "r12", "r13", "r14", "r15", "memory", "cc",
          "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9",
          "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15");
}

static const char *check(void)
{
    static char why[200];
    uint64_t stack_arr[256];
    for (int i = 0; i < 16; i++)
        if (memcmp(ymm_in[i], ymm_out[i], 32)) { snprintf(why, sizeof why, "ymm%d differs", i); return why; }
    if (gpr_out[0] != 0x1313131313131313ULL || gpr_out[1] != 0x1414141414141414ULL ||
        gpr_out[2] != 0x1515151515151515ULL) return "r13-r15 differ";
    for (size_t i = 0; i < heap_words; i++)
        if (heap[i] != mix(i)) { snprintf(why, sizeof why, "heap word %zu", i); return why; }
    for (int i = 1; i < 512; i++) if (data_arr[i] != mix(i + 7)) return ".data differs";
    for (int i = 0; i < 4096; i++) if (bss_arr[i] != mix(i + 11)) return ".bss differs";
    for (int i = 0; i < 12800; i++) if (brk_mem[i] != mix(i + 13)) return "brk differs";
    for (int i = 0; i < 8192; i++) if (ro_mem[i] != (uint8_t)(i * 7)) return "ro mapping differs";
    for (int i = 0; i < 4096; i++) if (file_mem[i] != (uint8_t)(i * 3)) return "private file mapping differs";
    for (int i = 0; i < 3 * 4096; i++) if (shared_mem[i] != (uint8_t)(i * 5 + 1)) return "shared anon mapping differs";
    (void)stack_arr;
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    syscall(SYS_clock_gettime, CLOCK_MONOTONIC, &b);
    if (b.tv_sec - a.tv_sec > 1 || a.tv_sec - b.tv_sec > 1) return "vdso clock differs";
    struct sigaction sa;
    sigaction(SIGUSR2, NULL, &sa);
    if (sa.sa_handler != SIG_IGN) return "SIGUSR2 not ignored";
    sigset_t cur;
    sigprocmask(SIG_BLOCK, NULL, &cur);
    if (!sigismember(&cur, SIGPROF)) return "SIGPROF not blocked";
    if (getpid() != (pid_t)syscall(SYS_gettid)) return "pid != tid";
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 3) return 2;
    outfile = argv[1];
    heap_words = strtoull(argv[2], 0, 0) / 8;
    busy = argc > 3 && !strcmp(argv[3], "busy");
    for (int i = 0; i < 16; i++) for (int j = 0; j < 32; j++) ymm_in[i][j] = (uint8_t)mix(i * 32 + j);
    heap = malloc(heap_words * 8);
    for (size_t i = 0; i < heap_words; i++) heap[i] = mix(i);
    for (int i = 1; i < 512; i++) data_arr[i] = mix(i + 7);
    for (int i = 0; i < 4096; i++) bss_arr[i] = mix(i + 11);
    brk_mem = sbrk(12800 * 8);
    for (int i = 0; i < 12800; i++) brk_mem[i] = mix(i + 13);
    /* guard page, read-only data, a private file mapping written after mmap */
    uint8_t *three = mmap(NULL, 3 * 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    mprotect(three, 8192, PROT_NONE);
    ro_mem = three + 8192;
    for (int i = 0; i < 8192; i++) ro_mem[i] = (uint8_t)(i * 7);
    mprotect(ro_mem, 8192, PROT_READ);
    char path[256];
    snprintf(path, sizeof path, "%s.map", outfile);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    ftruncate(fd, 3 * 4096);
    file_mem = mmap(NULL, 3 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    close(fd);
    for (int i = 0; i < 4096; i++) file_mem[i] = (uint8_t)(i * 3);
    shared_mem = mmap(NULL, 4 * 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    for (int i = 0; i < 3 * 4096; i++) shared_mem[i] = (uint8_t)(i * 5 + 1);
    struct sigaction sa = {0};
    sa.sa_handler = on_usr1; sa.sa_flags = SA_RESTART;
    sigaction(SIGUSR1, &sa, NULL);
    signal(SIGUSR2, SIG_IGN);
    sigset_t set; sigemptyset(&set); sigaddset(&set, SIGPROF);
    sigprocmask(SIG_BLOCK, &set, NULL);
    say("READY %d\n", getpid());
    for (;;) {
        run_loop();
        check_flag = 0;
        const char *why = check();
        if (why) say("FAIL %s counter=%llu\n", why, (unsigned long long)counter);
        else say("OK counter=%llu\n", (unsigned long long)counter);
    }
}
"""


@pytest.fixture(scope="module")
def target_bin(tmp_path_factory):
    return build_c(tmp_path_factory.mktemp("restore_target"), "target", TARGET_C, "-O2", "-mavx2")


def lines(path):
    return read_text(path).splitlines()


def started(outfile):
    """The target is ready once it has said READY in its outfile."""
    return any(ln.startswith("READY") for ln in lines(outfile))


def check_line(outfile, before):
    """Ask for a check (SIGUSR1 is sent by the caller) and return the next OK/FAIL line."""
    got = wait_for(lambda: lines(outfile)[before:] or None, what=f"a check line in {outfile}")
    return got[0]


def poke(pid, outfile):
    before = len(lines(outfile))
    os.kill(pid, signal.SIGUSR1)
    line = check_line(outfile, before)
    assert line.startswith("OK counter="), line
    return int(line.split("=")[1])


def read_maps(pid):
    """/proc/PID/maps, with the inode of shared anonymous memory masked: a restored
    "/dev/zero (deleted)" mapping is a new shmem object, same content, new inode number."""
    with open(f"/proc/{pid}/maps") as f:
        text = f.read()
    return re.sub(r"^(\S+ \S+ \S+ \S+ )\d+\s+(/dev/zero \(deleted\))$", r"\1INODE \2", text, flags=re.M)


def kill_restored(pid):
    kill_quietly(pid)
    wait_for(lambda: gone(pid), what=f"pid {pid} to go")


class Target:
    """The target running MODE, ready; its images go to tmp/images.  Leaving a `with Target(...)`
    kills what is left of it: the task itself when no dump did, and the restored one."""

    def __init__(self, binary, tmp, mode, size=16 << 20):
        self.outfile = str(tmp / "out")
        self.images = tmp / "images"
        self.proc = start_target([binary, self.outfile, size, mode], lambda: started(self.outfile),
                                 what="the target")
        self.pid = self.proc.pid

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        kill_restored(self.pid)

    def maps(self):
        return read_maps(self.pid)

    def fds(self):
        d = f"/proc/{self.pid}/fd"
        out = {}
        for fd in os.listdir(d):
            try:
                out[fd] = os.readlink(f"{d}/{fd}")
            except FileNotFoundError:      # closed since the listing: not in the table
                pass
        return out

    def fds_without(self, path):
        """fds() if none of them is path, else None."""
        fds = self.fds()
        return None if str(path) in fds.values() else fds

    def dump(self):
        res = crpy("dump", "-t", self.pid, "-D", self.images, "-v4", "-o", "dump.log")
        assert res.returncode == 0, res.stderr + log_tail(self.images / "dump.log")
        self.proc.wait(timeout=10)          # the dump killed it; reap it so the pid is free
        assert gone(self.pid)


@pytest.mark.parametrize("mode", ["sleep", "busy"])
def test_dump_restore_same_pid_maps_and_state(target_bin, tmp_path, mode):
    with Target(target_bin, tmp_path, mode) as t:
        counter = poke(t.pid, t.outfile)
        # its OK line is in the outfile before fclose() closes the fd: listed once it is closed
        fds_before = wait_for(lambda: t.fds_without(t.outfile), what="the target's outfile closed after its OK line")
        maps_before = t.maps()
        t.dump()
        pidfile = tmp_path / "pidfile"
        res = crpy("restore", "-D", t.images, "-d", "--pidfile", pidfile, "-v4", "-o", "restore.log")
        assert res.returncode == 0, res.stderr + log_tail(t.images / "restore.log")
        assert int(pidfile.read_text()) == t.pid
        assert t.maps() == maps_before
        assert t.fds() == fds_before                   # and none of crpy's own left open
        after = poke(t.pid, t.outfile)
        assert after > counter
        assert poke(t.pid, t.outfile) > after          # it keeps counting


def test_restore_waits_and_returns_exit_status(target_bin, tmp_path):
    """Without -d crpy waits for the task; a task killed by signal N gives 128+N, as a shell."""
    with Target(target_bin, tmp_path, "sleep") as t:
        t.dump()
        rest = subprocess.Popen([sys.executable, "-m", "crpy", "restore", "-D", str(t.images), "-v4", "-o",
                                 "restore.log"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        wait_for(lambda: "restored in" in log_tail(t.images / "restore.log", 3), what="the restore")
        poke(t.pid, t.outfile)
        os.kill(t.pid, signal.SIGTERM)
        out, err = rest.communicate(timeout=30)
        assert rest.returncode == 128 + signal.SIGTERM, err


def test_restore_refuses_a_taken_pid(target_bin, tmp_path):
    with Target(target_bin, tmp_path, "sleep") as t:
        t.dump()
        assert crpy("restore", "-D", t.images, "-d").returncode == 0
        res = crpy("restore", "-D", t.images, "-d")
        assert res.returncode == 1
        assert res.stderr.count("\n") == 1 and f"pid {t.pid} is taken" in res.stderr, res.stderr
        poke(t.pid, t.outfile)                         # the first restore is untouched


def test_restore_truncated_pages_leaves_nothing_behind(target_bin, tmp_path):
    t = Target(target_bin, tmp_path, "sleep")
    t.dump()
    pages = [p for p in os.listdir(t.images) if re.fullmatch(r"pages-\d+\.img", p)]
    assert pages
    path = t.images / pages[0]
    os.truncate(path, os.path.getsize(path) - 4096)
    res = crpy("restore", "-D", t.images, "-d")              # the digests see it first
    assert res.returncode == 1 and res.stderr.count("\n") == 1, res.stderr
    size = os.path.getsize(path)
    assert f"{pages[0]} at offset {size}: holds {size} bytes" in res.stderr, res.stderr
    assert "missing (truncated)" in res.stderr, res.stderr
    res = crpy("restore", "-D", t.images, "-d", "--skip-integrity")   # then the pagemap check
    assert res.returncode == 1
    assert res.stderr.count("\n") == 1 and "pagemap points past the end" in res.stderr, res.stderr
    assert "Traceback" not in res.stderr
    assert gone(t.pid)


@pytest.fixture(scope="module")
def dumped(target_bin, tmp_path_factory):
    """One dump of the target (dead and reaped), for tests whose restores must all fail."""
    tmp = tmp_path_factory.mktemp("dumped")
    t = Target(target_bin, tmp, "sleep")
    t.dump()
    return t.pid, t.images


@pytest.mark.parametrize("step,by_line", [("unmap", True), ("vdso", True), ("vmas", True),
                                          ("mm-map", True), ("sigactions", True),
                                          ("close-fds", True), ("sigreturn", False)])
def test_a_failing_restorer_step_is_reported_and_cleaned_up(dumped, step, by_line):
    """Each step of the blob can fail after the fork (forced with the CRPY_FAULT test hook): one
    line naming the step, exit 1, and no process left.  Up to close-fds the blob reports on the
    pipe; after it (sigreturn) only its exit code tells the step."""
    pid, images = dumped
    res = crpy("restore", "-D", images, "-d", env=dict(os.environ, CRPY_FAULT=f"restorer:{step}"))
    assert res.returncode == 1
    assert res.stderr.count("\n") == 1 and f"restorer step {step} failed" in res.stderr, res.stderr
    assert ("ECANCELED" in res.stderr) == by_line, res.stderr
    assert gone(pid)


def test_restore_refuses_a_changed_executable_before_forking(dumped, target_bin):
    pid, images = dumped
    os.chmod(target_bin, 0o700)
    try:
        res = crpy("restore", "-D", str(images), "-d")
    finally:
        os.chmod(target_bin, 0o755)
    assert res.returncode == 1
    assert res.stderr.count("\n") == 1 and "mode is now 700" in res.stderr, res.stderr
    assert gone(pid)


@pytest.mark.parametrize("make", ["missing", "empty"])
def test_restore_of_missing_or_empty_dir(tmp_path, make):
    d = tmp_path / "imgs"
    if make == "empty":
        d.mkdir()
    res = crpy("restore", "-D", str(d))
    assert res.returncode == 1
    assert res.stderr.startswith("crpy: error: ") and res.stderr.count("\n") == 1, res.stderr
    assert "Traceback" not in res.stderr


def _no_aslr_with_stack(kib):
    """preexec_fn: no address randomization and a given RLIMIT_STACK; with a stack limit above
    128 MiB each extra page moves mmap_base (and so the vDSO) down by one page."""
    import ctypes
    import resource

    def setup():
        resource.setrlimit(resource.RLIMIT_STACK, (kib * 1024, resource.RLIM_INFINITY))
        ctypes.CDLL(None).personality(0x0040000)           # ADDR_NO_RANDOMIZE
    return setup


def test_restore_moves_an_overlapping_vdso_through_scratch(target_bin, tmp_path):
    """The task's vDSO block lies one page below the restorer's own: they overlap, so the blob
    must move [vvar] [vvar_vclock] [vdso] through scratch space first."""
    outfile = str(tmp_path / "out")
    proc = start_target([target_bin, outfile, 1 << 20, "sleep"], lambda: started(outfile), what="the target",
                        preexec_fn=_no_aslr_with_stack(200004))
    pid = proc.pid
    images = tmp_path / "images"
    try:
        maps_before = read_maps(pid)
        res = crpy("dump", "-t", str(pid), "-D", str(images), "-v4", "-o", "dump.log")
        assert res.returncode == 0, res.stderr
        proc.wait(timeout=10)
        res = crpy("restore", "-D", images, "-d", "-v4", "-o", "restore.log",
                   preexec_fn=_no_aslr_with_stack(200000))
        assert res.returncode == 0, res.stderr + log_tail(images / "restore.log")
        log = (images / "restore.log").read_text()
        assert "(overlapping: through scratch)" in log, \
            "the vDSO blocks did not overlap: this kernel lays out no-ASLR processes differently"
        assert read_maps(pid) == maps_before
        poke(pid, outfile)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        kill_restored(pid)
