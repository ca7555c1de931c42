/* parasite.c: the dump-side parasite blob (see parasite.h for the protocol).
 *
 * Runs inside the dumped task with every signal blocked, on its own stack.  It serves the
 * dumper's commands over a SOCK_SEQPACKET socket and always ends the same way, whether the
 * dumper said FINISH or vanished: close every fd it created, then jump to the vDSO gadget G
 * with rax = munmap(its own mapping) and rsp = the emergency rt_sigframe, so that G's `ret`
 * lands on an rt_sigreturn restorer that brings the task's registers, FPU state and signal
 * mask back.  Nothing runs from the blob after the munmap.
 *
 * Blocking waits use ppoll, never poll/nanosleep: those would overwrite the task's
 * restart_block, which the normal cure relies on to restart the task's own interrupted syscall.
 */
#include "parasite.h"
#include "crc32c.h"

/* Entry (rdi = args).  If the CPU and kernel have protection keys (CPUID 7: ECX.OSPKE), open
 * them all (PKRU = 0) first: the task's PKRU may deny access to its own pages, and vmsplice
 * from inside the task obeys it.  The task's PKRU comes back with its XSAVE state at the cure. */
asm(".section .text.entry,\"ax\"\n"
    ".globl parasite_start\n"
    "parasite_start:\n"
    "    and $-16, %rsp\n"
    "    mov %rdi, %r12\n"
    "    xor %eax, %eax\n"
    "    cpuid\n"
    "    cmp $7, %eax\n"
    "    jb 1f\n"
    "    mov $7, %eax\n"
    "    xor %ecx, %ecx\n"
    "    cpuid\n"
    "    test $0x10, %ecx\n"
    "    jz 1f\n"
    "    xor %eax, %eax\n"
    "    xor %ecx, %ecx\n"
    "    xor %edx, %edx\n"
    "    wrpkru\n"
    "1:  mov %r12, %rdi\n"
    "    call parasite_main\n"
    "    ud2\n"
    ".previous\n");

#define PR_GET_PDEATHSIG 2
#define PR_GET_DUMPABLE 3
#define PR_GET_KEEPCAPS 7
#define PR_GET_NAME 16
#define PR_GET_SECCOMP 21
#define PR_GET_SECUREBITS 27
#define PR_GET_TIMERSLACK 30
#define PR_GET_CHILD_SUBREAPER 37
#define PR_GET_NO_NEW_PRIVS 39
#define PR_GET_TID_ADDRESS 40
#define PR_GET_THP_DISABLE 42
#define UIO_MAXIOV 1024
#define __NR_membarrier 324
#define MEMBARRIER_CMD_GET_REGISTRATIONS (1 << 9)
#define MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED (1 << 2)
#define EPERM 1
#define ENOSYS 38

static struct parasite_args *args;
static int sock = -1;
static int owned[PAR_OWNED_FDS];
static int n_owned;
static int dump_pipe = -1;      /* the first fd the last DUMP carrying fds brought (PAR_DUMP a0 = -1) */
static u8 cmdbuf[PAR_CMD_BUF] BLOB_ALIGNED(16);
static u8 reply_data[4096] BLOB_ALIGNED(16);
static u8 ctlbuf[16 + 4 * PAR_MAX_FDS + 8] BLOB_ALIGNED(16);

/* ---- owned fds ---- */

static int own_fd(int fd)
{
    if (n_owned == PAR_OWNED_FDS) {
        sys1(__NR_close, fd);
        return -EMSGSIZE;
    }
    owned[n_owned++] = fd;
    return fd;
}

static int is_owned(int fd)
{
    for (int i = 0; i < n_owned; i++)
        if (owned[i] == fd)
            return i;
    return -1;
}

static long close_owned(int fd)
{
    int i = is_owned(fd);
    if (i < 0)
        return -EBADF;
    owned[i] = owned[--n_owned];
    return sys1(__NR_close, fd);
}

static void close_all_owned(void)
{
    while (n_owned)
        sys1(__NR_close, owned[--n_owned]);
    if (sock >= 0)
        sys1(__NR_close, sock);
    sock = -1;
}

/* ---- the one way out ---- */

#define __NR_rt_sigpending 127
#define FRAME_RAX_OFF 152       /* in the emergency frame (crpy/dump/emergency_frame.py) */
#define FRAME_RIP_OFF 176
#define FRAME_SIGMASK_OFF 304
#define SIG_IGN_ 1UL
#define SA_RESTART_ 0x10000000UL
#define ERESTARTSYS_ 512
#define ERESTARTNOHAND_ 514
#define ERESTART_RESTARTBLOCK_ 516
/* Signals whose default action is to ignore (CHLD CONT URG WINCH) or stop (STOP TSTP TTIN TTOU):
 * the kernel passes over them to the next pending one. */
#define SIGS_PASSED_OVER ((1UL << 16) | (1UL << 17) | (1UL << 22) | (1UL << 27) | \
                          (1UL << 18) | (1UL << 19) | (1UL << 20) | (1UL << 21))

/* See parasite_args.restart_rip: the first pending signal the kernel delivers after the
 * rt_sigreturn (lowest number, not blocked by the task's own mask, not ignored) decides, as
 * handle_signal() would for a syscall interrupted by it.  A signal arriving after this look
 * (during the munmap, microseconds) still meets the re-issued syscall: no way around that
 * from user space, since rt_sigreturn sets orig_ax = -1. */
static void end_interrupted_syscall(void)
{
    u8 *frame = (u8 *)args->frame;
    u64 pending = 0, mask = *(u64 *)(frame + FRAME_SIGMASK_OFF), ready;
    long err = -args->restart_err;

    if (!args->restart_rip || IS_ERR(sys2(__NR_rt_sigpending, (long)&pending, 8)))
        return;
    for (ready = pending & ~mask; ready; ready &= ready - 1) {
        int sig = __builtin_ctzll(ready) + 1;
        struct blob_ksigaction k;
        if (sys4(__NR_rt_sigaction, sig, 0, (long)&k, 8) < 0 || k.handler == SIG_IGN_)
            continue;
        if (k.handler == 0) {                   /* SIG_DFL */
            if (SIGS_PASSED_OVER & (1UL << (sig - 1)))
                continue;
            return;                             /* fatal: the task ends anyway */
        }
        if (err == ERESTARTNOHAND_ || err == ERESTART_RESTARTBLOCK_ ||
            (err == ERESTARTSYS_ && !(k.flags & SA_RESTART_))) {
            *(u64 *)(frame + FRAME_RAX_OFF) = (u64)-EINTR;
            *(u64 *)(frame + FRAME_RIP_OFF) = args->restart_rip;
        }
        return;
    }
}

static BLOB_NORETURN void cure(int err)
{
    args->state = PST_CURING;
    args->last_err = err;
    close_all_owned();
    end_interrupted_syscall();
    /* Everything after the loads runs from registers only: the munmap takes the stack away.
     * rdi/rsi = the mapping, rsp = the frame (G's `ret` pops R), rcx = G. */
    asm volatile("mov 8(%%rax), %%rdi\n"
                 "mov 16(%%rax), %%rsi\n"
                 "mov 32(%%rax), %%rcx\n"
                 "mov 24(%%rax), %%rsp\n"
                 "mov $11, %%eax\n"  /* __NR_munmap */
                 "jmp *%%rcx\n"
                 : : "a"(args) : "memory");
    __builtin_unreachable();
}

/* ---- waiting ---- */

/* Wait until fd has `events` or the dumper is gone: 0, or -EPIPE (dumper gone) / -ETIMEDOUT. */
static long wait_for(int fd, short events)
{
    struct blob_pollfd p[2] = {
        { .fd = sock, .events = POLLRDHUP },
        { .fd = fd, .events = events },
    };
    struct blob_timespec ts = { args->idle_ms / 1000, (args->idle_ms % 1000) * 1000000L };
    long n = fd == sock ? 1 : 2;
    if (fd == sock)
        p[0].events |= events;
    for (;;) {
        long r = sys5(__NR_ppoll, (long)p, n, args->idle_ms > 0 ? (long)&ts : 0, 0, 8);
        if (r == -EINTR)
            continue;
        if (r < 0)
            return r;
        if (r == 0)
            return -ETIMEDOUT;
        if (p[0].revents & (POLLHUP | POLLRDHUP | POLLERR | POLLNVAL))
            if (fd != sock || !(p[0].revents & POLLIN))
                return -EPIPE;
        if (n == 2 && (p[1].revents & (POLLERR | POLLNVAL)))
            return -EPIPE;
        if ((fd == sock ? p[0].revents : p[1].revents) & events)
            return 0;
    }
}

/* ---- replies ---- */

static void reply(u32 op, long ret, const void *data, u32 len, const int *fds, int nfds)
{
    struct parasite_reply h = { .ret = ret, .len = len, .op = op };
    struct blob_iovec iov[2] = { { &h, sizeof(h) }, { (void *)data, len } };
    struct blob_msghdr m = { .iov = iov, .iovlen = len ? 2 : 1 };
    long r;

    if (nfds) {
        struct blob_cmsghdr *c = (struct blob_cmsghdr *)ctlbuf;
        c->len = sizeof(*c) + 4 * (size_t)nfds;
        c->level = SOL_SOCKET;
        c->type = SCM_RIGHTS;
        memcpy(c + 1, fds, 4 * (size_t)nfds);
        m.control = ctlbuf;
        m.controllen = (c->len + 7) & ~7UL;
    }
    do
        r = sys3(__NR_sendmsg, sock, (long)&m, MSG_NOSIGNAL);
    while (r == -EINTR);
    if (r < 0)
        cure((int)-r);
}

/* FINISH: close every fd but the channel, answer with the channel's fd number, and wait on
 * it.  The dumper interrupts the task in that wait and removes the rest itself (it injects
 * close(sock) and the munmap: two syscalls to step through, not the dozen of cure()'s path);
 * should the dumper vanish first, the wait ends with EOF and the parasite cures itself. */
static BLOB_NORETURN void finish(int op)
{
    while (n_owned)
        sys1(__NR_close, owned[--n_owned]);
    reply(op, sock, 0, 0, 0, 0);
    wait_for(sock, POLLIN);
    cure(0);
}

/* ---- commands ---- */

/* crc32c of the pages spliced, per PAR_HASH_CHUNK bytes of the image they go to: the digest of
 * crpy-digests computed where the pages already are (mapped, in cache), beside the dumper's
 * splice out of the pipe.  The state runs on from one DUMP command to the next. */
static struct {
    u32 crc, into;              /* of the chunk being hashed: crc and bytes so far */
    u32 n, done[(sizeof(reply_data) - 8) / 4];  /* chunks completed by this command */
} hash;

static long hash_bytes(const u8 *p, u64 len)
{
    while (len) {
        u64 take = PAR_HASH_CHUNK - hash.into;
        if (take > len)
            take = len;
        hash.crc = crc32c_update(hash.crc, p, take);
        hash.into += (u32)take;
        p += take;
        len -= take;
        if (hash.into == PAR_HASH_CHUNK) {
            if (hash.n == sizeof(hash.done) / 4)
                return -E2BIG;
            hash.done[hash.n++] = hash.crc;
            hash.crc = hash.into = 0;
        }
    }
    return 0;
}

/* the first `bytes` of iov[0..n) */
static long hash_iovs(const struct blob_iovec *iov, long n, long bytes)
{
    for (; n > 0 && bytes > 0; iov++, n--) {
        u64 len = iov->len < (u64)bytes ? iov->len : (u64)bytes;
        long r = hash_bytes(iov->base, len);
        if (r < 0)
            return r;
        bytes -= (long)len;
    }
    return 0;
}

static long do_dump(int pipe_fd, struct blob_iovec *iov, long n, int hashing)
{
    long total = 0;

    if (is_owned(pipe_fd) < 0)
        return -EBADF;
    while (n > 0) {
        long cnt = n > UIO_MAXIOV ? UIO_MAXIOV : n;
        long r = sys4(__NR_vmsplice, pipe_fd, (long)iov, cnt, SPLICE_F_NONBLOCK);
        if (r == -EAGAIN) {
            r = wait_for(pipe_fd, POLLOUT);
            if (r == -EPIPE)
                cure(EPIPE);
            if (r < 0)
                return r;
            continue;
        }
        if (r == -EINTR)
            continue;
        if (r < 0)
            return r;
        total += r;
        if (hashing) {          /* the pages just spliced: the pipe drains meanwhile */
            long h = hash_iovs(iov, n, r);
            if (h < 0)
                return h;
        }
        while (n > 0 && (u64)r >= iov->len) {  /* drop the iovecs done, trim a partial one */
            r -= (long)iov->len;
            iov++;
            n--;
        }
        if (n > 0) {
            iov->base = (u8 *)iov->base + r;
            iov->len -= (u64)r;
        }
    }
    return total;
}

static void do_sigacts(void)
{
    struct blob_ksigaction *k = (struct blob_ksigaction *)reply_data;
    for (int s = 1; s <= 64; s++)
        if (sys4(__NR_rt_sigaction, s, 0, (long)&k[s - 1], 8) < 0)
            memset(&k[s - 1], 0, sizeof(*k));
    reply(PAR_SIGACTS, 64, k, 64 * sizeof(*k), 0, 0);
}

/* The MEMBARRIER_CMD_REGISTER_* commands that give this mm its registrations again.  A private
 * expedited barrier of a kind works only once the mm is registered for that kind (EPERM
 * otherwise, EINVAL where the kind does not exist), and issuing one is harmless: REGISTER_xxx
 * is MEMBARRIER_CMD_xxx << 1.  GET_REGISTRATIONS (Linux 6.3+) is no substitute for these: a
 * sync-core or rseq registration shows the plain private one too, which it does not allow.  It
 * is the only way to see a global expedited registration (none on older kernels). */
static long membarrier_registrations(void)
{
    static const int barriers[] = { 1 << 3, 1 << 5, 1 << 7 };  /* PRIVATE_EXPEDITED, _SYNC_CORE, _RSEQ */
    long all = sys3(__NR_membarrier, MEMBARRIER_CMD_GET_REGISTRATIONS, 0, 0);
    long mask = all > 0 ? all & MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED : 0;

    for (unsigned i = 0; i < sizeof(barriers) / sizeof(barriers[0]); i++) {
        long r = sys3(__NR_membarrier, barriers[i], 0, 0);
        if (r == 0)
            mask |= barriers[i] << 1;
        else if (r != -EPERM && r != -EINVAL && r != -ENOSYS)
            return r;
    }
    return mask;
}

/* noinline: tests break it on purpose to exercise the fault path */
static BLOB_EXPORT void do_misc(void)
{
    struct parasite_misc *m = (struct parasite_misc *)reply_data;
    u32 ids[3];
    long r;

    memset(m, 0, sizeof(*m));
    m->pid = sys0(__NR_getpid);
    m->tid = sys0(__NR_gettid);
    m->ppid = sys0(__NR_getppid);
    m->pgid = sys1(__NR_getpgid, 0);
    m->sid = sys1(__NR_getsid, 0);
    m->umask = sys1(__NR_umask, 0);
    sys1(__NR_umask, m->umask);
    m->personality = sys1(__NR_personality, 0xffffffff);
    m->dumpable = sys5(__NR_prctl, PR_GET_DUMPABLE, 0, 0, 0, 0);
    m->no_new_privs = sys5(__NR_prctl, PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0);
    m->pdeathsig = sys2(__NR_prctl, PR_GET_PDEATHSIG, (long)&ids[0]);
    if (m->pdeathsig == 0)
        m->pdeathsig = (s32)ids[0];
    m->child_subreaper = sys2(__NR_prctl, PR_GET_CHILD_SUBREAPER, (long)&ids[0]);
    if (m->child_subreaper == 0)
        m->child_subreaper = (s32)ids[0];
    m->timerslack = sys5(__NR_prctl, PR_GET_TIMERSLACK, 0, 0, 0, 0);
    m->thp_disable = sys5(__NR_prctl, PR_GET_THP_DISABLE, 0, 0, 0, 0);
    m->seccomp = sys5(__NR_prctl, PR_GET_SECCOMP, 0, 0, 0, 0);
    m->securebits = sys5(__NR_prctl, PR_GET_SECUREBITS, 0, 0, 0, 0);
    m->keepcaps = sys5(__NR_prctl, PR_GET_KEEPCAPS, 0, 0, 0, 0);
    m->brk = sys1(__NR_brk, 0);
    m->tid_address_ret = sys2(__NR_prctl, PR_GET_TID_ADDRESS, (long)&m->tid_address);
    r = sys3(__NR_getresuid, (long)&ids[0], (long)&ids[1], (long)&ids[2]);
    m->ruid = r ? r : ids[0], m->euid = r ? r : ids[1], m->suid = r ? r : ids[2];
    r = sys3(__NR_getresgid, (long)&ids[0], (long)&ids[1], (long)&ids[2]);
    m->rgid = r ? r : ids[0], m->egid = r ? r : ids[1], m->sgid = r ? r : ids[2];
    m->fsuid = sys1(__NR_setfsuid, -1);  /* -1 is never valid: a pure query */
    m->fsgid = sys1(__NR_setfsgid, -1);
    m->altstack_ret = sys2(__NR_sigaltstack, 0, (long)&m->altstack);
    for (int i = 0; i < 3; i++)
        m->itimer_ret[i] = sys2(__NR_getitimer, i, (long)m->itimers[i]);
    for (int i = 0; i < 16; i++)
        m->rlimit_ret[i] = sys4(__NR_prlimit64, 0, i, 0, (long)&m->rlimits[i]);
    sys2(__NR_prctl, PR_GET_NAME, (long)m->name);
    m->membarrier = membarrier_registrations();
    m->xcomp_perm_ret = sys2(__NR_arch_prctl, 0x1022 /* ARCH_GET_XCOMP_PERM */, (long)&m->xcomp_perm);
    reply(PAR_MISC, 0, m, sizeof(*m), 0, 0);
}

#ifndef __NR_timer_getoverrun
#define __NR_timer_getoverrun 225
#endif

static void do_timers(const s32 *ids, u32 len)
{
    static struct parasite_timer out[PAR_MAX_TIMERS];
    u32 n = len / 4;

    if (n > PAR_MAX_TIMERS || len % 4)
        return reply(PAR_TIMERS, -EINVAL, 0, 0, 0, 0);
    for (u32 i = 0; i < n; i++) {
        struct parasite_timer *t = &out[i];
        t->ret = sys2(__NR_timer_gettime, ids[i], (long)&t->interval_sec);
        t->overrun = sys1(__NR_timer_getoverrun, ids[i]);
    }
    reply(PAR_TIMERS, n, out, n * sizeof(out[0]), 0, 0);
}

static void do_drain(const s32 *fds, u32 len)
{
    u32 n = len / 4;
    if (n == 0 || n > PAR_MAX_FDS || len % 4)
        return reply(PAR_DRAIN_FDS, -EINVAL, 0, 0, 0, 0);
    /* A bad fd makes sendmsg fail with EBADF; say so in a reply without fds. */
    struct parasite_reply h = { .ret = n, .len = 0, .op = PAR_DRAIN_FDS };
    struct blob_iovec iov = { &h, sizeof(h) };
    struct blob_cmsghdr *c = (struct blob_cmsghdr *)ctlbuf;
    struct blob_msghdr m = { .iov = &iov, .iovlen = 1, .control = ctlbuf };
    long r;

    c->len = sizeof(*c) + 4 * (size_t)n;
    c->level = SOL_SOCKET;
    c->type = SCM_RIGHTS;
    memcpy(c + 1, fds, 4 * (size_t)n);
    m.controllen = (c->len + 7) & ~7UL;
    do
        r = sys3(__NR_sendmsg, sock, (long)&m, MSG_NOSIGNAL);
    while (r == -EINTR);
    if (r == -EBADF || r == -EINVAL)
        return reply(PAR_DRAIN_FDS, r, 0, 0, 0, 0);
    if (r < 0)
        cure((int)-r);
}

/* Track fds that came with a command; returns the first or -ENOENT. */
static long take_fds(struct blob_msghdr *m)
{
    long first = -ENOENT;
    u8 *p = m->control, *end = p + m->controllen;
    while (p + sizeof(struct blob_cmsghdr) <= end) {
        struct blob_cmsghdr *c = (struct blob_cmsghdr *)p;
        if (c->len < sizeof(*c) || p + c->len > end)
            break;
        if (c->level == SOL_SOCKET && c->type == SCM_RIGHTS) {
            int *fd = (int *)(c + 1);
            for (size_t i = 0; i < (c->len - sizeof(*c)) / 4; i++) {
                long r = own_fd(fd[i]);
                if (first < 0)
                    first = r;
            }
        }
        p += (c->len + 7) & ~7UL;
    }
    return first;
}

/* A userfaultfd bound to this mm (only the task can make one), sent to the dumper and closed
 * here at once: the task's fd table ends as it was (crpy.dump.memtrack). */
static void do_uffd(long flags)
{
    long fd = sys1(__NR_userfaultfd, flags);
    int f = (int)fd;

    if (fd < 0)
        return reply(PAR_UFFD, fd, 0, 0, 0, 0);
    reply(PAR_UFFD, 0, 0, 0, &f, 1);
    sys1(__NR_close, fd);
}

static void serve(struct parasite_cmd *cmd, long got_fd)
{
    u8 *data = (u8 *)(cmd + 1);
    long r;

    switch (cmd->op) {
    case PAR_PING:
        return reply(cmd->op, (long)cmd->a[0] + 1, 0, 0, 0, 0);
    case PAR_OPEN:
        if (cmd->len == 0 || data[cmd->len - 1] != 0)
            return reply(cmd->op, -EINVAL, 0, 0, 0, 0);
        r = sys4(__NR_openat, -100 /* AT_FDCWD */, (long)data, (long)cmd->a[0] | O_CLOEXEC, (long)cmd->a[1]);
        return reply(cmd->op, r < 0 ? r : own_fd((int)r), 0, 0, 0, 0);
    case PAR_CLOSE:
        return reply(cmd->op, close_owned((int)cmd->a[0]), 0, 0, 0, 0);
    case PAR_RECVFD:
        return reply(cmd->op, got_fd, 0, 0, 0, 0);
    case PAR_DUMP:
        if (cmd->len % sizeof(struct blob_iovec))
            return reply(cmd->op, -EINVAL, 0, 0, 0, 0);
        if (cmd->a[1] & PAR_HASH_SET) {
            if (cmd->a[3] >= PAR_HASH_CHUNK)
                return reply(cmd->op, -EINVAL, 0, 0, 0, 0);
            hash.crc = (u32)cmd->a[2];
            hash.into = (u32)cmd->a[3];
        }
        hash.n = 0;
        if (got_fd != -ENOENT)         /* it brought fds (a negative got_fd: not kept, EBADF) */
            dump_pipe = (int)got_fd;
        r = do_dump((s64)cmd->a[0] < 0 ? dump_pipe : (int)cmd->a[0], (struct blob_iovec *)data,
                    cmd->len / sizeof(struct blob_iovec), cmd->a[1] & PAR_HASH);
        if (!(cmd->a[1] & PAR_HASH) || r < 0)
            return reply(cmd->op, r, 0, 0, 0, 0);
        ((u32 *)reply_data)[0] = hash.crc;
        ((u32 *)reply_data)[1] = hash.into;
        memcpy(reply_data + 8, hash.done, 4 * (size_t)hash.n);
        return reply(cmd->op, r, reply_data, 8 + 4 * hash.n, 0, 0);
    case PAR_SIGACTS:
        return do_sigacts();
    case PAR_MISC:
        return do_misc();
    case PAR_DRAIN_FDS:
        return do_drain((const s32 *)data, cmd->len);
    case PAR_TIMERS:
        return do_timers((const s32 *)data, cmd->len);
    case PAR_UFFD:
        return do_uffd((long)cmd->a[0]);
    case PAR_FINISH:
        finish(cmd->op);
    default:
        return reply(cmd->op, -EINVAL, 0, 0, 0, 0);
    }
}

static void serve_forever(void)
{
    for (;;) {
        struct blob_iovec iov = { cmdbuf, sizeof(cmdbuf) };
        struct blob_msghdr m = { .iov = &iov, .iovlen = 1, .control = ctlbuf, .controllen = sizeof(ctlbuf) };
        struct parasite_cmd *cmd = (struct parasite_cmd *)cmdbuf;
        long r = wait_for(sock, POLLIN), fd;

        if (r < 0)
            cure((int)-r);
        r = sys3(__NR_recvmsg, sock, (long)&m, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
        if (r == -EINTR || r == -EAGAIN)
            continue;
        if (r <= 0)
            cure(r == 0 ? EPIPE : (int)-r);  /* EOF: the dumper is gone */
        fd = m.controllen ? take_fds(&m) : -ENOENT;
        if ((size_t)r < sizeof(*cmd) || (size_t)r != sizeof(*cmd) + cmd->len || (m.flags & MSG_TRUNC)) {
            reply(0, -EBADMSG, 0, 0, 0, 0);
            continue;
        }
        serve(cmd, fd);
    }
}

BLOB_EXPORT BLOB_NORETURN void parasite_main(struct parasite_args *a)
{
    long r;

    args = a;
    a->state = PST_STARTED;
    if (a->magic != PARASITE_MAGIC)
        cure(EINVAL);
    r = sys3(__NR_socket, AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    if (r < 0)
        cure((int)-r);
    sock = (int)r;
    do
        r = sys3(__NR_connect, sock, (long)&a->addr, a->addr_len);
    while (r == -EINTR);
    if (r < 0)
        cure((int)-r);
    a->state = PST_SERVING;
    serve_forever();
}
