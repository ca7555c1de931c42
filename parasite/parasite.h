/* parasite.h: the contract between the dump-side parasite blob and crpy/dump/infect_*.py.
 *
 * The dumper maps [blob image + bss | args page | stack] in the task, fills the args page,
 * and starts parasite_start with rdi = args.  The parasite connects to the dumper's abstract
 * AF_UNIX SOCK_SEQPACKET address and serves commands until FINISH, EOF, an error or the idle
 * timeout; then it closes its fds and cures itself: munmap of its mapping from the gadget G
 * (syscall; xors; ret) with rsp at the emergency rt_sigframe, whose rt_sigreturn puts the task
 * back.  Python mirrors every number and layout here (crpy/dump/infect_channel.py).
 */
#ifndef CRPY_PARASITE_H
#define CRPY_PARASITE_H

#include "lib.h"

#define PARASITE_MAGIC 0x7261702d79707263ULL /* "crpy-par" */

/* Filled by the dumper (offsets are fixed: Python packs this). */
struct parasite_args {
    u64 magic;
    u64 map_base;   /* the whole parasite mapping, unmapped at the end */
    u64 map_len;
    u64 frame;      /* emergency rt_sigframe on the task's stack: rsp for G's ret */
    u64 gadget;     /* G: syscall; xor...; ret */
    s32 addr_len;   /* sockaddr length (family + '\0' + name) */
    s32 idle_ms;    /* longest wait for a command (and for pipe room); <= 0: forever */
    struct blob_sockaddr_un addr;
    u8 _pad[2];
    /* written by the parasite, for post-mortem debugging */
    s32 state;
    s32 last_err;
    /* restart_rip != 0: the frame re-issues the syscall the task slept in (restart_rip: just
     * after its `syscall`; restart_err: the -ERESTART* it was interrupted with).  A signal
     * that came during the infection is delivered after the self-cure's rt_sigreturn, before
     * the re-issued syscall: if its handler would have ended that syscall with -EINTR, the
     * cure makes the frame do so (else a pause() loop sleeps on, its wakeup lost). */
    u64 restart_rip;
    s64 restart_err;
};

#define PAR_HASH 1              /* PAR_DUMP a1: hash what is spliced, going on from the state kept */
#define PAR_HASH_SET 2          /* ... from the state in a2 (crc) and a3 (bytes into the chunk) */
#define PAR_HASH_CHUNK (1UL << 20)

enum parasite_state { PST_STARTED = 1, PST_CONNECTED, PST_SERVING, PST_CURING };

/* Command: header, then `len` bytes of data (possibly with SCM_RIGHTS). */
struct parasite_cmd {
    u32 op;
    u32 len;
    u64 a[4];
};

/* Reply: header, then `len` bytes of data (DRAIN_FDS: plus SCM_RIGHTS). */
struct parasite_reply {
    s64 ret;        /* >= 0 or -errno */
    u32 len;
    u32 op;
};

enum parasite_op {
    PAR_PING = 1,       /* ret = a0 + 1 */
    PAR_OPEN = 2,       /* data = path\0, a0 = flags, a1 = mode; ret = fd (owned by the parasite) */
    PAR_CLOSE = 3,      /* a0 = fd that OPEN/RECVFD gave */
    PAR_RECVFD = 4,     /* fds arrive with the command; ret = first fd (owned) */
    PAR_DUMP = 5,       /* a0 = pipe fd (owned), or -1: the pipe fd a DUMP carried (SCM_RIGHTS: a
                         * DUMP may bring the pipe itself, no RECVFD round trip before it);
                         * data = {u64 base, u64 len}[]; ret = bytes spliced;
                         * a1 = PAR_HASH_*: also crc32c the bytes per PAR_HASH_CHUNK of the file
                         * (SET: a2 = crc of the a3 bytes of the current chunk written before);
                         * reply = u32 {crc, bytes} of the current chunk, then a u32 crc per chunk
                         * completed by this command */
    PAR_SIGACTS = 6,    /* data = struct blob_ksigaction[64] for signals 1..64; ret = 64 */
    PAR_MISC = 7,       /* data = struct parasite_misc */
    PAR_DRAIN_FDS = 8,  /* data = s32 fds[] (<= PAR_MAX_FDS); reply carries them; ret = count */
    PAR_FINISH = 9,     /* ret = the channel fd; all other fds closed, it waits for the dumper (or EOF) */
    PAR_TIMERS = 10,    /* data = s32 ids[] (<= PAR_MAX_TIMERS); reply = struct parasite_timer[] */
    PAR_UFFD = 11,      /* a0 = userfaultfd() flags; the reply carries the new fd, closed here */
};

/* One POSIX timer as timer_gettime/timer_getoverrun see it; ret: 0 or -errno. */
struct parasite_timer {
    s64 ret;
    s64 interval_sec, interval_nsec, value_sec, value_nsec;
    s64 overrun;
};
#define PAR_MAX_TIMERS 128

#define PAR_MAX_FDS 253          /* SCM_MAX_FD: one message carries at most this many */
#define PAR_CMD_BUF (256 * 1024) /* largest command (header + data) */
#define PAR_OWNED_FDS 16

/* Everything only the task itself can tell; each field is the raw result (-errno on error). */
struct parasite_misc {
    s64 pid, tid, ppid, pgid, sid;
    s64 umask, personality;
    s64 dumpable, no_new_privs, pdeathsig, child_subreaper, timerslack, thp_disable;
    s64 seccomp, securebits, keepcaps;
    s64 brk, tid_address, tid_address_ret;
    s64 ruid, euid, suid, rgid, egid, sgid, fsuid, fsgid;
    s64 altstack_ret;
    struct blob_stack altstack;
    s64 itimer_ret[3];
    s64 itimers[3][4];          /* ITIMER_REAL/VIRTUAL/PROF: interval sec,usec, value sec,usec */
    struct blob_rlimit rlimits[16];
    s64 rlimit_ret[16];
    char name[16];
    s64 membarrier;             /* MEMBARRIER_CMD_REGISTER_* bits the mm is registered for */
    s64 xcomp_perm_ret;         /* arch_prctl(ARCH_GET_XCOMP_PERM): 0, or -EINVAL without XSAVE */
    u64 xcomp_perm;             /* the XSAVE features the process may use (AMX once it asked) */
};

#endif
