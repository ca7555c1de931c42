"""Victims and /proc snapshots shared by the parasite and ptrace tests (no tests in here).

The victim is a small C program that checks itself: it keeps known values in all 16 ymm
registers and in r12..r15 across a busy loop ("busy") or a raw nanosleep syscall ("sleep"),
and on SIGUSR1 prints "OK <rounds>" (or "FAIL ..." and exits 1 if a register changed).  It
also holds state the parasite must report: a SIGUSR1 handler (SA_ONSTACK, mask SIGINT),
SIGUSR2 ignored, SIGHUP blocked, umask 027, a sigaltstack, an ITIMER_REAL (500 s interval),
a few fds and a heap of random data.
"""

import os
import re
import select
import signal
import subprocess
import time

from tests.unit.crhelpers import build_c

VICTIM_C = r"""
#define _GNU_SOURCE
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <fcntl.h>
#include <unistd.h>

static uint64_t pat[16][4] __attribute__((aligned(32)));
static uint64_t got[16][4] __attribute__((aligned(32)));
static uint64_t gpr[4];
static volatile sig_atomic_t report;

#define LOAD  "vmovdqa 0(%[p]),%%ymm0\n vmovdqa 32(%[p]),%%ymm1\n vmovdqa 64(%[p]),%%ymm2\n" \
    "vmovdqa 96(%[p]),%%ymm3\n vmovdqa 128(%[p]),%%ymm4\n vmovdqa 160(%[p]),%%ymm5\n" \
    "vmovdqa 192(%[p]),%%ymm6\n vmovdqa 224(%[p]),%%ymm7\n vmovdqa 256(%[p]),%%ymm8\n" \
    "vmovdqa 288(%[p]),%%ymm9\n vmovdqa 320(%[p]),%%ymm10\n vmovdqa 352(%[p]),%%ymm11\n" \
    "vmovdqa 384(%[p]),%%ymm12\n vmovdqa 416(%[p]),%%ymm13\n vmovdqa 448(%[p]),%%ymm14\n" \
    "vmovdqa 480(%[p]),%%ymm15\n" \
    "mov $0x1234567812345678,%%r12\n mov $0x0badc0ffee0ddf00,%%r13\n" \
    "mov $0x7777777700000001,%%r14\n mov $0x5a5a5a5aa5a5a5a5,%%r15\n"
#define STORE "vmovdqa %%ymm0,0(%[g])\n vmovdqa %%ymm1,32(%[g])\n vmovdqa %%ymm2,64(%[g])\n" \
    "vmovdqa %%ymm3,96(%[g])\n vmovdqa %%ymm4,128(%[g])\n vmovdqa %%ymm5,160(%[g])\n" \
    "vmovdqa %%ymm6,192(%[g])\n vmovdqa %%ymm7,224(%[g])\n vmovdqa %%ymm8,256(%[g])\n" \
    "vmovdqa %%ymm9,288(%[g])\n vmovdqa %%ymm10,320(%[g])\n vmovdqa %%ymm11,352(%[g])\n" \
    "vmovdqa %%ymm12,384(%[g])\n vmovdqa %%ymm13,416(%[g])\n vmovdqa %%ymm14,448(%[g])\n" \
    "vmovdqa %%ymm15,480(%[g])\n" \
    "mov %%r12,0(%[r])\n mov %%r13,8(%[r])\n mov %%r14,16(%[r])\n mov %%r15,24(%[r])\n"
#define CLOB "xmm0","xmm1","xmm2","xmm3","xmm4","xmm5","xmm6","xmm7","xmm8","xmm9","xmm10", \
    "xmm11","xmm12","xmm13","xmm14","xmm15","r12","r13","r14","r15","rcx","r11","memory"

static void busy(void)
{
    asm volatile(LOAD "mov $20000000,%%rcx\n1: dec %%rcx\n jnz 1b\n" STORE
                 : : [p] "r"(pat), [g] "r"(got), [r] "r"(gpr) : CLOB);
}

static void sleepy(void)
{
    struct timespec ts = { 0, 200000000 };  /* short: a racing SIGUSR1 is still seen soon */
    asm volatile(LOAD "mov $35,%%eax\n mov %[t],%%rdi\n xor %%esi,%%esi\n syscall\n" STORE
                 : : [p] "r"(pat), [g] "r"(got), [r] "r"(gpr), [t] "r"(&ts) : CLOB, "rax", "rdi", "rsi");
}

static void on_usr1(int s) { report = 1; }

int main(int argc, char **argv)
{
    int sleep_mode = argc > 1 && !strcmp(argv[1], "sleep");
    size_t heap_mb = argc > 2 ? strtoul(argv[2], 0, 0) : 4;
    uint64_t x = 88172645463325252ULL, rounds = 0, *heap;
    static char altstack[65536];
    stack_t ss = { .ss_sp = altstack, .ss_size = sizeof(altstack) };
    struct sigaction sa = { .sa_handler = on_usr1, .sa_flags = SA_ONSTACK };
    sigset_t hup;
    int sv[2], p[2];

    for (int i = 0; i < 16; i++)
        for (int j = 0; j < 4; j++)
            pat[i][j] = (x ^= x << 13, x ^= x >> 7, x ^= x << 17);
    heap = malloc(heap_mb << 20);
    for (size_t i = 0; i < (heap_mb << 20) / 8; i++)
        heap[i] = (x ^= x << 13, x ^= x >> 7, x ^= x << 17);
    sigemptyset(&sa.sa_mask);
    sigaddset(&sa.sa_mask, SIGINT);
    sigaction(SIGUSR1, &sa, 0);
    signal(SIGUSR2, SIG_IGN);
    sigemptyset(&hup);
    sigaddset(&hup, SIGHUP);
    sigprocmask(SIG_BLOCK, &hup, 0);
    umask(027);
    sigaltstack(&ss, 0);
    struct itimerval it = { { 500, 0 }, { 1000, 0 } };  /* never fires during a test */
    setitimer(ITIMER_REAL, &it, 0);
    open("/dev/null", O_RDONLY);
    open("/proc/self/status", O_RDONLY | O_CLOEXEC);
    pipe(p);
    write(p[1], "pipe data", 9);
    socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
    printf("ready heap=%p len=%zu altstack=%p\n", (void *)heap, heap_mb << 20, (void *)altstack);
    fflush(stdout);
    for (;;) {
        if (sleep_mode) sleepy(); else busy();
        rounds++;
        if (memcmp(pat, got, sizeof(pat)) || gpr[0] != 0x1234567812345678ULL ||
            gpr[1] != 0x0badc0ffee0ddf00ULL || gpr[2] != 0x7777777700000001ULL ||
            gpr[3] != 0x5a5a5a5aa5a5a5a5ULL) {
            printf("FAIL registers changed after %llu rounds\n", (unsigned long long)rounds);
            return 1;
        }
        if (report) {
            report = 0;
            printf("OK %llu\n", (unsigned long long)rounds);
            fflush(stdout);
        }
    }
}
"""


def build_victim(tmpdir):
    return build_c(tmpdir, "victim", VICTIM_C, "-O2", "-mavx2")


class Victim:
    """A running victim with its stdout; kill() on teardown (or leave a `with Victim(...) as v:`)."""

    def __init__(self, exe, mode="busy", heap_mb=4, user=None):
        self.proc = subprocess.Popen([exe, mode, str(heap_mb)], stdout=subprocess.PIPE, text=True, user=user)
        self.pid = self.proc.pid
        try:
            line = self.readline(10)
        except BaseException:
            self.kill()
            raise
        m = re.match(r"ready heap=0x([0-9a-f]+) len=(\d+) altstack=0x([0-9a-f]+)", line)
        assert m, f"victim did not start: {line!r}"
        self.heap, self.heap_len, self.altstack = int(m[1], 16), int(m[2]), int(m[3], 16)

    def readline(self, timeout):
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        assert ready, f"victim {self.pid} said nothing in {timeout} s"
        return self.proc.stdout.readline()

    def check(self, timeout=10):
        """Ask the victim to verify its registers; assert it answers OK."""
        os.kill(self.pid, signal.SIGUSR1)
        line = self.readline(timeout)
        assert line.startswith("OK"), f"victim {self.pid}: {line!r} (exit {self.proc.poll()})"
        return int(line.split()[1])

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.proc.stdout.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.kill()


# SigQ is left out: it counts the signals queued for the whole user, not for this task.
STATUS_KEYS = ("State", "SigPnd", "ShdPnd", "SigBlk", "SigIgn", "SigCgt", "Umask", "NoNewPrivs",
               "Seccomp", "TracerPid", "PPid", "Tgid", "Pid")


def status(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in STATUS_KEYS:
                out[key] = value.strip()
    return out


def fd_table(pid):
    base, out = f"/proc/{pid}/fd", {}
    for fd in os.listdir(base):
        try:
            out[int(fd)] = os.readlink(f"{base}/{fd}")
        except FileNotFoundError:
            pass                  # closed since the listing (a parasite curing itself): not in the table
    return out


def snapshot(pid):
    """What must be identical before the infection and after the cure."""
    with open(f"/proc/{pid}/maps") as f:
        maps = f.read()
    st = status(pid)
    st.pop("State", None)
    return {"maps": maps, "fds": fd_table(pid), "status": st}


def differences(before, after):
    """Readable list of what differs between two snapshots ([] when identical)."""
    out = []
    for key in ("fds", "status"):
        for k in sorted(set(before[key]) | set(after[key]), key=str):
            if before[key].get(k) != after[key].get(k):
                out.append(f"{key}[{k}]: {before[key].get(k)!r} -> {after[key].get(k)!r}")
    old, new = set(before["maps"].splitlines()), set(after["maps"].splitlines())
    out += [f"maps lost: {m}" for m in sorted(old - new)] + [f"maps new: {m}" for m in sorted(new - old)]
    return out


def wait_untraced(pid, timeout=10):
    """Wait until nobody traces pid (after the tracer died); returns its status dict."""
    deadline = time.monotonic() + timeout
    while True:
        st = status(pid)
        if st["TracerPid"] == "0" or time.monotonic() > deadline:
            return st
        time.sleep(0.01)
