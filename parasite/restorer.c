/* restorer.c: the last stage of a restored task (crpy/restore).
 *
 * Python clone3()s itself with the saved PID, premaps every memory area of the task into the
 * "restorer region" (filled from the pages image, final prot and flags set) and jumps here
 * with struct rst_args (restorer.h).  From here on no libc and no Python: the blob tears down
 * the Python address space, moves the vDSO and every premapped area to its saved address,
 * sets the per-task state that only the task itself can set, and ends in rt_sigreturn with a
 * frame Python built from the saved registers and XSAVE state.  The last syscall, munmap of
 * the region, runs from a `syscall; ...; ret` gadget in the vDSO so that nothing of crpy is
 * left in the task's maps.
 *
 * A failing step writes one line "rst STEP ADDR ERRNO" to report_fd and ends the task with
 * exit_group(RST_EXIT_BASE + STEP); crpy turns that into a RestoreError.
 */
#include "lib.h"
#include "restorer.h"

#define PR_SET_PDEATHSIG 1
#define PR_SET_NAME 15
#define PR_SET_MM 35
#define PR_SET_MM_MAP 14
#define ARCH_SET_GS 0x1001
#define ARCH_SET_FS 0x1002
#define MADV_GUARD_INSTALL 102
#define RSEQ_FLAG_UNREGISTER 1
#define SIGCONT 18
#define SIGSTOP 19
#define SIGPIPE 13
#define __NR_rt_sigpending 127
#define __NR_rt_sigqueueinfo 129
#define __NR_rt_tgsigqueueinfo 297

asm(".section .text.entry,\"ax\"\n"
    ".globl restorer_start\n"
    "restorer_start:\n"
    "  lea restorer_stack_top(%rip), %rsp\n"
    "  call restorer_main\n"
    "  ud2\n"
    ".previous\n");

/* The blob's own stack, in .bss (the caller's stack is Python's and goes away in the unmap step). */
asm(".section .bss\n"
    ".balign 16\n"
    "restorer_stack:\n"
    "  .skip 65536\n"
    "restorer_stack_top:\n"
    ".previous\n");

static BLOB_NORETURN void fail(struct rst_args *a, int step, u64 addr, long ret)
{
    char line[80];
    int n = 0;

    memcpy(line, "rst ", 4);
    n = 4;
    n += blob_utoa(step, line + n);
    line[n++] = ' ';
    n += blob_utoa(addr, line + n);
    line[n++] = ' ';
    n += blob_utoa(-ret, line + n);
    line[n++] = '\n';
    if (a->report_fd >= 0)
        sys3(__NR_write, a->report_fd, (long)line, n);
    for (;;)
        sys1(__NR_exit_group, RST_EXIT_BASE + step);
}

#define ECANCELED 125

/* Tests make a chosen step fail (see rst_args.fault_step) to prove every failure is reported;
 * with RST_FAULT_KILL the task dies there by SIGKILL, silently, as a fault would kill it. */
static void fault_point(struct rst_args *a, int step)
{
    if ((a->fault_step & ~RST_FAULT_KILL) != (u32)step)
        return;
    if (a->fault_step & RST_FAULT_KILL)
        sys2(__NR_kill, sys0(__NR_getpid), 9);
    fail(a, step, 0, -ECANCELED);
}

static long move(u64 from, u64 len, u64 to)
{
    return sys5(__NR_mremap, from, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, to);
}

static void unmap_foreign(struct rst_args *a)
{
    fault_point(a, RST_STEP_UNMAP);
    for (u32 i = 0; i < a->nr_unmap; i++) {
        long r = sys2(__NR_munmap, a->unmap[i].start, a->unmap[i].len);
        if (IS_ERR(r))
            fail(a, RST_STEP_UNMAP, a->unmap[i].start, r);
    }
}

/* Each of [vvar] [vvar_vclock] [vdso] moves whole (a partial mremap is refused). */
static void move_vdso(struct rst_args *a)
{
    u64 off = 0;

    fault_point(a, RST_STEP_VDSO);
    if (a->special_hop) {
        for (u32 i = 0; i < a->nr_special; i++) {
            struct rst_special *s = &a->special[i];
            long r = move(s->cur, s->len, a->special_scratch + off);
            if ((u64)r != a->special_scratch + off)
                fail(a, RST_STEP_VDSO, s->cur, IS_ERR(r) ? r : -EINVAL);
            s->cur = a->special_scratch + off;
            off += s->len;
        }
    }
    for (u32 i = 0; i < a->nr_special; i++) {
        struct rst_special *s = &a->special[i];
        if (s->cur == s->target)
            continue;
        long r = move(s->cur, s->len, s->target);
        if ((u64)r != s->target)
            fail(a, RST_STEP_VDSO, s->target, IS_ERR(r) ? r : -EINVAL);
    }
}

static void place_vmas(struct rst_args *a)
{
    fault_point(a, RST_STEP_VMAS);
    for (u32 i = 0; i < a->nr_vmas; i++) {
        struct rst_vma *v = &a->vmas[i];
        long r = move(v->premap, v->len, v->start);
        if ((u64)r != v->start)
            fail(a, RST_STEP_VMAS, v->start, IS_ERR(r) ? r : -EINVAL);
    }
    for (u32 i = 0; i < a->nr_guards; i++) {
        long r = sys3(__NR_madvise, a->guards[i].start, a->guards[i].len, MADV_GUARD_INSTALL);
        if (IS_ERR(r))
            fail(a, RST_STEP_GUARDS, a->guards[i].start, r);
    }
}

/* ------------------------------------------------------------------ AIO contexts */

#define __NR_io_setup 206
#define __NR_io_submit 209
#define IOCB_CMD_PREAD 0

/* The kernel's struct aio_ring header (fs/aio.c), followed by nr struct io_event of 32 bytes. */
struct rst_aio_ring {
    u32 id, nr, head, tail, magic, compat_features, incompat_features, header_length;
};

/* struct iocb of <linux/aio_abi.h> (x86_64, little endian). */
struct rst_iocb {
    u64 data;
    u32 key, rw_flags;
    u16 opcode;
    int16_t reqprio;
    u32 fildes;
    u64 buf, nbytes;
    s64 offset;
    u64 reserved2;
    u32 flags, resfd;
};

/* The kernel keeps the ring's tail to itself (where the next completion goes): a new context
 * starts at 0.  Completions move it, so `count` one-byte reads of /dev/zero (a->aio_fd; each
 * completes at once, in io_submit) bring it to the saved tail; a saved tail below head took a whole turn of
 * the ring first.  Setting the ring's head as they go is what io_getevents would do: it hands
 * their slots back, and leaves head at the saved value in the end. */
static void aio_move_tail(struct rst_args *a, struct rst_aio *r, u64 ctx, u32 head, u32 tail, u32 nr)
{
    struct rst_aio_ring *ring = (struct rst_aio_ring *)ctx;
    struct rst_iocb cb;
    struct rst_iocb *list[RST_AIO_BATCH];
    u32 count = tail >= head ? tail : nr + tail, done = 0;
    char byte = 0;

    memset(&cb, 0, sizeof(cb));
    cb.opcode = IOCB_CMD_PREAD;
    cb.fildes = (u32)a->aio_fd;
    cb.buf = (u64)&byte;
    cb.nbytes = 1;
    for (u32 i = 0; i < RST_AIO_BATCH; i++)
        list[i] = &cb;
    while (done < count) {
        u32 n = count - done < RST_AIO_BATCH ? count - done : RST_AIO_BATCH;
        long got = sys3(__NR_io_submit, ctx, n, (long)list);
        if (got <= 0)
            fail(a, RST_STEP_AIO, r->addr, got ? got : -EINVAL);
        done += (u32)got;
        __atomic_store_n(&ring->head, done < head ? done : head, __ATOMIC_RELEASE);
    }
}

static void restore_aio_ring(struct rst_args *a, struct rst_aio *r)
{
    struct rst_aio_ring *saved = (struct rst_aio_ring *)r->addr, *ring;
    u32 head = saved->head, tail = saved->tail, nr = saved->nr;
    u32 want = (u32)((r->len - sizeof(*saved)) / 32);
    u64 ctx = 0;
    long ret;

    ret = sys2(__NR_io_setup, r->nr_req, (long)&ctx);
    if (IS_ERR(ret))
        fail(a, RST_STEP_AIO, r->addr, ret);
    ring = (struct rst_aio_ring *)ctx;
    /* A ring of another size cannot take the saved one's place (this kernel or CPU count sizes
     * rings differently): refused rather than a context whose events land elsewhere. */
    if (nr != want || ring->nr != nr || head >= nr || tail >= nr)
        fail(a, RST_STEP_AIO, r->addr, -EINVAL);
    if (head || tail)
        aio_move_tail(a, r, ctx, head, tail, nr);
    memcpy((void *)(ctx + sizeof(*saved)), (void *)(r->addr + sizeof(*saved)), r->len - sizeof(*saved));
    ret = move(ctx, r->len, r->addr);          /* and the copy at addr is gone */
    if ((u64)ret != r->addr)
        fail(a, RST_STEP_AIO, r->addr, IS_ERR(ret) ? ret : -EINVAL);
}

static void restore_aio(struct rst_args *a)
{
    if (!a->nr_aio)
        return;
    fault_point(a, RST_STEP_AIO);
    for (u32 i = 0; i < a->nr_aio; i++)
        restore_aio_ring(a, &a->aio[i]);
}

/* Pending signals go back into the queues; every signal is blocked until rt_sigreturn sets the
 * task's mask, so they are delivered then, to the task's own handlers. */
static void queue_signals(struct rst_args *a, u32 tid)
{
    long pid = sys0(__NR_getpid);

    /* The kernel lets only the thread itself queue a siginfo that looks like kill() or tkill()
     * (si_code >= 0 or SI_TKILL) into its private queue: each thread queues its own. */
    for (u32 i = 0; i < a->nr_siginfo; i++) {
        struct rst_siginfo *s = &((struct rst_siginfo *)a->siginfo)[i];
        if (s->tid != tid)
            continue;
        s32 sig = *(s32 *)s->info;
        long r = s->shared ? sys3(__NR_rt_sigqueueinfo, pid, sig, (long)s->info)
                           : sys4(__NR_rt_tgsigqueueinfo, pid, tid ? tid : pid, sig, (long)s->info);
        if (IS_ERR(r))
            fail(a, RST_STEP_SIGQUEUE, sig, r);
    }
}

static void restore_task_state(struct rst_args *a)
{
    long r;

    fault_point(a, RST_STEP_MM_MAP);
    r = sys5(__NR_prctl, PR_SET_MM, PR_SET_MM_MAP, (long)&a->mm, sizeof(a->mm), 0);
    if (IS_ERR(r))
        fail(a, RST_STEP_MM_MAP, a->mm.start_brk, r);
    r = sys2(__NR_prctl, PR_SET_NAME, (long)a->comm);
    if (IS_ERR(r))
        fail(a, RST_STEP_COMM, 0, r);
    fault_point(a, RST_STEP_SIGACTIONS);
    for (int sig = 1; sig <= 64; sig++) {
        if (sig == 9 || sig == 19)
            continue;
        r = sys4(__NR_rt_sigaction, sig, (long)&a->sigactions[sig - 1], 0, 8);
        if (IS_ERR(r))
            fail(a, RST_STEP_SIGACTIONS, sig, r);
    }
    if (a->rseq_ptr) {
        r = sys4(__NR_rseq, a->rseq_ptr, a->rseq_len, 0, a->rseq_target_sig);
        if (IS_ERR(r))
            fail(a, RST_STEP_RSEQ, a->rseq_ptr, r);
    }
    sys1(__NR_set_tid_address, a->tid_address);
    if (a->robust_list_len) {
        r = sys2(__NR_set_robust_list, a->robust_list, a->robust_list_len);
        if (IS_ERR(r))
            fail(a, RST_STEP_ROBUST_LIST, a->robust_list, r);
    }
    r = sys2(__NR_prctl, PR_SET_PDEATHSIG, a->pdeath_sig);
    if (IS_ERR(r))
        fail(a, RST_STEP_PDEATHSIG, a->pdeath_sig, r);
    r = sys2(__NR_arch_prctl, ARCH_SET_FS, a->fs_base);
    if (IS_ERR(r))
        fail(a, RST_STEP_FS_GS, a->fs_base, r);
    if (a->gs_base) {
        r = sys2(__NR_arch_prctl, ARCH_SET_GS, a->gs_base);
        if (IS_ERR(r))
            fail(a, RST_STEP_FS_GS, a->gs_base, r);
    }
}

/* ------------------------------------------------------------------ creds */

#define PR_SET_DUMPABLE 4
#define PR_CAPBSET_READ 23
#define PR_CAPBSET_DROP 24
#define PR_SET_SECUREBITS 28
#define PR_CAP_AMBIENT 47
#define PR_CAP_AMBIENT_RAISE 2
#define PR_CAP_AMBIENT_CLEAR_ALL 4
#define PR_GET_SECUREBITS 27
#define SECBIT_KEEP_CAPS 0x10
#define LINUX_CAPABILITY_VERSION_3 0x20080522
#ifndef __NR_capset
#define __NR_capset 126
#endif
#ifndef __NR_setgroups
#define __NR_setgroups 116
#endif
#ifndef __NR_setresuid
#define __NR_setresuid 117
#endif
#ifndef __NR_setresgid
#define __NR_setresgid 119
#endif
#ifndef __NR_setfsuid
#define __NR_setfsuid 122
#endif
#ifndef __NR_setfsgid
#define __NR_setfsgid 123
#endif

struct rst_cap_header { u32 version; s32 pid; };
struct rst_cap_data { u32 effective, permitted, inheritable; };

#ifndef __NR_capget
#define __NR_capget 125
#endif

/* The calling thread's permitted set (0 if capget fails: the capset after it fails then). */
static u64 permitted_now(void)
{
    struct rst_cap_header h = { LINUX_CAPABILITY_VERSION_3, 0 };
    struct rst_cap_data d[2];

    if (IS_ERR(sys2(__NR_capget, (long)&h, (long)d)))
        return 0;
    return d[0].permitted | ((u64)d[1].permitted << 32);
}

static long capset3(u64 eff, u64 prm, u64 inh)
{
    struct rst_cap_header h = { LINUX_CAPABILITY_VERSION_3, 0 };
    struct rst_cap_data d[2] = {
        { (u32)eff, (u32)prm, (u32)inh },
        { (u32)(eff >> 32), (u32)(prm >> 32), (u32)(inh >> 32) },
    };
    return sys2(__NR_capset, (long)&h, (long)d);
}

#ifndef __NR_getgroups
#define __NR_getgroups 115
#endif

/* The ids the task had are the caller's already (an unprivileged restore of its own task):
 * nothing to switch, and no privilege to switch with. */
static int ids_unchanged(const struct rst_creds *c)
{
    u32 u[3], g[3];

    if (sys3(__NR_getresuid, (long)&u[0], (long)&u[1], (long)&u[2]) ||
        sys3(__NR_getresgid, (long)&g[0], (long)&g[1], (long)&g[2]))
        return 0;
    return u[0] == c->uid && u[1] == c->euid && u[2] == c->suid &&
           g[0] == c->gid && g[1] == c->egid && g[2] == c->sgid;
}

/* The groups are the caller's already (the kernel keeps them sorted, so does the image). */
static int groups_unchanged(const struct rst_creds *c)
{
    u32 now[256];
    long n = sys2(__NR_getgroups, 256, (long)now);

    if (n != (long)c->ngroups)
        return 0;
    for (u32 i = 0; i < c->ngroups; i++)
        if (now[i] != c->groups[i])
            return 0;
    return 1;
}

#define CREDS_TRY(expr, what) do { long r_ = (expr); if (IS_ERR(r_)) fail(a, RST_STEP_CREDS, (what), r_); } while (0)

/* Become the task's user, calling thread only (creds are per thread).  Root's full permitted set
 * is kept across the uid change (KEEP_CAPS) so that the bounding set, ambient set and securebits
 * can still be set; the final capset then drops what the task did not have.  A caller restoring
 * a task of its own uid, gids and groups (unprivileged) only drops capabilities: no id, group
 * or securebits change, each of which would need a privilege it may not have. */
static void switch_creds(struct rst_args *a)
{
    struct rst_creds *c = &a->creds;
    u64 full;
    int same_ids;

    if (!c->set)
        return;
    full = permitted_now();
    same_ids = ids_unchanged(c);
    for (u32 cap = 0; cap <= c->last_cap; cap++)
        if (!(c->cap_bnd & (1ULL << cap)) && sys5(__NR_prctl, PR_CAPBSET_READ, cap, 0, 0, 0) == 1)
            CREDS_TRY(sys5(__NR_prctl, PR_CAPBSET_DROP, cap, 0, 0, 0), 1);
    if (!groups_unchanged(c))
        CREDS_TRY(sys2(__NR_setgroups, c->ngroups, (long)c->groups), 2);
    if (!same_ids) {
        CREDS_TRY(sys5(__NR_prctl, PR_SET_SECUREBITS, SECBIT_KEEP_CAPS, 0, 0, 0), 3);
        CREDS_TRY(sys3(__NR_setresgid, c->gid, c->egid, c->sgid), 4);
        CREDS_TRY(sys3(__NR_setresuid, c->uid, c->euid, c->suid), 5);
    }
    sys1(__NR_setfsgid, c->fsgid);
    sys1(__NR_setfsuid, c->fsuid);
    /* Effective again (the uid change cleared it), with the task's inheritable set. */
    CREDS_TRY(capset3(full, full, c->cap_inh), 6);
    /* crpy's own ambient capabilities are not the task's */
    CREDS_TRY(sys5(__NR_prctl, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0), 7);
    for (u32 cap = 0; cap <= c->last_cap; cap++)
        if (c->cap_amb & (1ULL << cap))
            CREDS_TRY(sys5(__NR_prctl, PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0), 7);
    if (sys5(__NR_prctl, PR_GET_SECUREBITS, 0, 0, 0, 0) != (long)c->secbits)
        CREDS_TRY(sys5(__NR_prctl, PR_SET_SECUREBITS, c->secbits, 0, 0, 0), 8);
    CREDS_TRY(capset3(c->cap_eff, c->cap_prm, c->cap_inh), 9);
    /* A creds change made the task non-dumpable and cleared its parent-death signal. */
    if (c->dumpable >= 0)
        sys5(__NR_prctl, PR_SET_DUMPABLE, c->dumpable, 0, 0, 0);
    sys5(__NR_prctl, PR_SET_PDEATHSIG, a->pdeath_sig, 0, 0, 0);
}

/* ------------------------------------------------------------------ threads */

#define CLONE_VM 0x100
#define CLONE_FS 0x200
#define CLONE_FILES 0x400
#define CLONE_SIGHAND 0x800
#define CLONE_THREAD 0x10000
#define CLONE_SYSVSEM 0x40000
#define CLONE_SETTLS 0x80000
#define CLONE_CHILD_CLEARTID 0x200000
#define FUTEX_WAIT 0
#define FUTEX_WAKE 1
#define FUTEX_WAKE_OP 5
#define FUTEX_OP_ADD 1
/* FUTEX_WAKE_OP's encoded op: *uaddr2 += -1 (12-bit signed oparg), compare "== 0" (unused). */
#define FUTEX_OP_DEC ((FUTEX_OP_ADD << 28) | (0xfff << 12))

struct rst_clone_args {
    u64 flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls, set_tid,
        set_tid_size, cgroup;
};

/* clone3(ca, size); the new thread calls fn(a, t) on its own stack and never returns.  fn, a
 * and t ride in r9, r10, r8: the syscall keeps them, and the child has no stack frame yet. */
long rst_clone3(struct rst_clone_args *ca, u64 size, void (*fn)(struct rst_args *, struct rst_thread *),
                struct rst_args *a, struct rst_thread *t);
asm(".text\n"
    ".globl rst_clone3\n"
    "rst_clone3:\n"
    "  mov %rdx, %r9\n"
    "  mov %rcx, %r10\n"
    "  mov $435, %eax\n"
    "  syscall\n"
    "  test %rax, %rax\n"
    "  jnz 1f\n"
    "  mov %r10, %rdi\n"
    "  mov %r8, %rsi\n"
    "  call *%r9\n"
    "  ud2\n"
    "1: ret\n");

static void futex_wait_while(u32 *word, u32 value)
{
    while (__atomic_load_n(word, __ATOMIC_ACQUIRE) == value)
        sys6(__NR_futex, (long)word, FUTEX_WAIT, value, 0, 0, 0);
}

static void wait_count(u32 *word, u32 want)
{
    u32 v;

    while ((v = __atomic_load_n(word, __ATOMIC_ACQUIRE)) != want)
        sys6(__NR_futex, (long)word, FUTEX_WAIT, v, 0, 0, 0);
}

/* The last instructions of a thread: leave the region through the vDSO gadget, whose syscall
 * is futex(FUTEX_WAKE_OP) taking the thread off threads_left and waking the main thread
 * atomically in the kernel; the gadget's ret then pops the frame's pretcode (the task's
 * rt_sigreturn trampoline).  Nothing of the region runs after the count drops. */
static BLOB_NORETURN void thread_leave(struct rst_args *a, struct rst_thread *t)
{
    u64 frame = t->frame_addr;
    u32 *left = &a->threads_left;
    register long r10 asm("r10") = 0;
    register long r8 asm("r8") = (long)left;
    register long r9 asm("r9") = FUTEX_OP_DEC;

    if (a->gadget_kind == RST_GADGET_RET)
        asm volatile("mov %0, %%rsp\n jmp *%1\n"
                     :: "r"(frame), "r"(a->gadget), "a"(__NR_futex), "D"(left), "S"(FUTEX_WAKE_OP),
                        "d"(1), "r"(r10), "r"(r8), "r"(r9) : "memory");
    else if (a->gadget_kind == RST_GADGET_LEAVE_RET)
        asm volatile("mov %0, %%rbp\n jmp *%1\n"
                     :: "r"(frame - 8), "r"(a->gadget), "a"(__NR_futex), "D"(left), "S"(FUTEX_WAKE_OP),
                        "d"(1), "r"(r10), "r"(r8), "r"(r9) : "memory");
    /* No gadget: the region stays mapped anyway; count down here and return directly. */
    __atomic_fetch_sub(left, 1, __ATOMIC_RELEASE);
    sys6(__NR_futex, (long)left, FUTEX_WAKE, 1, 0, 0, 0);
    asm volatile("mov %0, %%rsp\n syscall\n" :: "r"(frame + 8), "a"(__NR_rt_sigreturn) : "memory");
    __builtin_unreachable();
}

static BLOB_NORETURN void thread_main(struct rst_args *a, struct rst_thread *t)
{
    long r;

    if (t->gs_base) {
        r = sys2(__NR_arch_prctl, ARCH_SET_GS, t->gs_base);
        if (IS_ERR(r))
            fail(a, RST_STEP_THREAD_STATE, t->tid, r);
    }
    if (t->rseq_ptr) {
        r = sys4(__NR_rseq, t->rseq_ptr, t->rseq_len, 0, t->rseq_sig);
        if (IS_ERR(r))
            fail(a, RST_STEP_THREAD_STATE, t->tid, r);
    }
    if (t->robust_list_len) {
        r = sys2(__NR_set_robust_list, t->robust_list, t->robust_list_len);
        if (IS_ERR(r))
            fail(a, RST_STEP_THREAD_STATE, t->tid, r);
    }
    if (t->comm[0])
        sys2(__NR_prctl, PR_SET_NAME, (long)t->comm);
    if (t->timerslack_ns)
        sys5(__NR_prctl, 29 /* PR_SET_TIMERSLACK */, t->timerslack_ns, 0, 0, 0);
    if (t->has_sched) {
        /* Exactly, as the leader's: nice first (a real-time or idle thread keeps it), then the
         * policy with its SCHED_RESET_ON_FORK bit. */
        u32 param = t->sched_prio;
        r = sys3(141 /* setpriority */, 0 /* PRIO_PROCESS */, 0 /* this thread */, t->nice);
        if (IS_ERR(r))
            fail(a, RST_STEP_THREAD_STATE, t->tid, r);
        r = sys3(144 /* sched_setscheduler */, 0, t->sched_policy, (long)&param);
        if (IS_ERR(r))
            fail(a, RST_STEP_THREAD_STATE, t->tid, r);
    }
    queue_signals(a, t->tid);
    switch_creds(a);
    memcpy((void *)t->frame_addr, t->frame, t->frame_len);
    __atomic_fetch_add(&a->threads_ready, 1, __ATOMIC_RELEASE);
    sys6(__NR_futex, (long)&a->threads_ready, FUTEX_WAKE, 1, 0, 0, 0);
    futex_wait_while(&a->threads_go, 0);
    thread_leave(a, t);
}

/* Every other thread, with its saved TID; returns when all have set their state. */
static void create_threads(struct rst_args *a)
{
    fault_point(a, RST_STEP_THREADS);
    for (u32 i = 0; i < a->nr_threads; i++) {
        struct rst_thread *t = &a->threads[i];
        struct rst_clone_args ca;

        memset(&ca, 0, sizeof(ca));
        ca.flags = CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD | CLONE_SYSVSEM |
                   CLONE_SETTLS | CLONE_CHILD_CLEARTID;
        ca.child_tid = t->tid_address;
        ca.stack = (u64)t->stack;
        ca.stack_size = sizeof(t->stack);
        ca.tls = t->fs_base;
        ca.set_tid = (u64)&t->tid;
        ca.set_tid_size = 1;
        long r = rst_clone3(&ca, sizeof(ca), thread_main, a, t);
        if (IS_ERR(r))
            fail(a, RST_STEP_THREADS, t->tid, r);
    }
    wait_count(&a->threads_ready, a->nr_threads);
}

/* Let the threads go and wait until the last one is out of the region. */
static void release_threads(struct rst_args *a)
{
    if (!a->nr_threads)
        return;
    __atomic_store_n(&a->threads_left, a->nr_threads, __ATOMIC_RELEASE);
    __atomic_store_n(&a->threads_go, 1, __ATOMIC_RELEASE);
    sys6(__NR_futex, (long)&a->threads_go, FUTEX_WAKE, 0x7fffffff, 0, 0, 0);
    wait_count(&a->threads_left, 0);
}

#define PR_TIMER_CREATE_RESTORE_IDS 77
#ifndef __NR_timer_create
#define __NR_timer_create 222
#endif
#ifndef __NR_timer_settime
#define __NR_timer_settime 223
#endif

/* POSIX timers, once every thread a timer may notify exists.  With PR_TIMER_CREATE_RESTORE_IDS
 * (Linux 6.13+) timer_create takes the wanted id from *id; older kernels hand ids out in order,
 * which only works when the saved ids happen to follow that order: checked either way. */
static void restore_timers(struct rst_args *a)
{
    long ids_on, r;

    if (!a->nr_timers)
        return;
    fault_point(a, RST_STEP_TIMERS);
    ids_on = sys5(__NR_prctl, PR_TIMER_CREATE_RESTORE_IDS, 1, 0, 0, 0);
    for (u32 i = 0; i < a->nr_timers; i++) {
        struct rst_timer *t = &a->timers[i];
        s32 id = t->id;

        r = sys3(__NR_timer_create, t->clock, (long)t->sigevent, (long)&id);
        if (IS_ERR(r))
            fail(a, RST_STEP_TIMERS, (u32)t->id, r);
        if (id != t->id)
            fail(a, RST_STEP_TIMERS, (u32)t->id, -EINVAL);
        r = sys4(__NR_timer_settime, id, 0, (long)t->its, 0);
        if (IS_ERR(r))
            fail(a, RST_STEP_TIMERS, (u32)t->id, r);
    }
    if (!IS_ERR(ids_on))
        sys5(__NR_prctl, PR_TIMER_CREATE_RESTORE_IDS, 0, 0, 0, 0);
}

/* The task was stopped by a->stop: it stops itself with that very signal, so that its parent's
 * waitpid (WSTOPSIG) and a tracer's PTRACE_INTERRUPT see it.  SIGSTOP stops at once.  SIGTSTP,
 * SIGTTIN and SIGTTOU stop only when delivered with their default action: for that moment the
 * action is SIG_DFL and the signal the only one unblocked.  The kernel drops these three in an
 * orphaned process group; then (no SIGCONT pending afterwards: nothing continued a stop) the
 * task stops with SIGSTOP instead of running on. */
static void stop_self(struct rst_args *a)
{
    u32 sig = a->stop;
    long pid = sys0(__NR_getpid);
    u64 all = ~0ULL, only = ~(1ULL << (sig - 1)), pending = 0;
    struct rst_sigaction dfl;

    if (sig == SIGSTOP || sig < 1 || sig > 64) {
        sys2(__NR_kill, pid, SIGSTOP);
        return;
    }
    memset(&dfl, 0, sizeof(dfl));
    dfl.mask = all;
    sys4(__NR_rt_sigaction, sig, (long)&dfl, 0, 8);
    sys2(__NR_kill, pid, sig);
    sys4(__NR_rt_sigprocmask, SIG_SETMASK, (long)&only, 0, 8);     /* delivered: stops here */
    sys4(__NR_rt_sigprocmask, SIG_SETMASK, (long)&all, 0, 8);
    sys4(__NR_rt_sigaction, sig, (long)&a->sigactions[sig - 1], 0, 8);
    sys2(__NR_rt_sigpending, (long)&pending, 8);
    if (!(pending & (1ULL << (SIGCONT - 1))))
        sys2(__NR_kill, pid, SIGSTOP);
}

/* See rst_args.restart_rip: a signal that came while the task was being restored (or stopped
 * again) ends the syscall its handler interrupts, as the kernel would. */
static void end_interrupted_syscall(struct rst_args *a)
{
    u64 pending = 0, ready;

    if (!a->restart_rip || IS_ERR(sys2(__NR_rt_sigpending, (long)&pending, 8)))
        return;
    ready = pending & a->restart_handled;
    if (!ready || !(a->restart_intr & (ready & -ready)))
        return;
    *(u64 *)(a->frame + RST_FRAME_RAX_OFF) = (u64)-EINTR;
    *(u64 *)(a->frame + RST_FRAME_RIP_OFF) = a->restart_rip;
}

/* Copy the frame onto the task's stack and return into the task.  With a gadget the region
 * (this code included) is unmapped by a syscall that runs in the vDSO, whose `ret` then pops
 * the frame's pretcode: the task's own rt_sigreturn trampoline. */
static BLOB_NORETURN void jump_to_task(struct rst_args *a)
{
    u64 frame = a->frame_addr;
    u64 gadget = a->gadget, kind = a->gadget_kind;
    u64 start = a->region_start, len = a->region_len;

    fault_point(a, RST_STEP_SIGRETURN);
    memcpy((void *)frame, a->frame, a->frame_len);
    if (kind == RST_GADGET_RET)
        asm volatile("mov %0, %%rsp\n jmp *%1\n"
                     :: "r"(frame), "r"(gadget), "a"(__NR_munmap), "D"(start), "S"(len)
                     : "memory");
    else if (kind == RST_GADGET_LEAVE_RET)
        asm volatile("mov %0, %%rbp\n jmp *%1\n"
                     :: "r"(frame - 8), "r"(gadget), "a"(__NR_munmap), "D"(start), "S"(len)
                     : "memory");
    asm volatile("mov %0, %%rsp\n syscall\n"
                 :: "r"(frame + 8), "a"(__NR_rt_sigreturn) : "memory");
    __builtin_unreachable();
}

/* "run PID": this task got through the steps of its restorer that juggle memory.  crpy counts
 * these after the go: a task that dies in the restorer without a word (a fault signal) is
 * missing from them, where its report fd closing alone looks like success.  crpy killed after
 * the go: the write fails with EPIPE and queues a SIGPIPE, blocked here, that would reach the
 * task once it runs; setting SIGPIPE's action to SIG_IGN drops it (from every queue, so before
 * the task's threads and saved pending signals are made), then the task's own action again. */
static void say_running(struct rst_args *a)
{
    struct rst_sigaction ignore = { .handler = 1 };   /* SIG_IGN */
    char line[32];
    int n = 4;

    if (a->report_fd < 0)
        return;
    memcpy(line, "run ", 4);
    n += blob_utoa(sys0(__NR_getpid), line + n);
    line[n++] = '\n';
    if (sys3(__NR_write, a->report_fd, (long)line, n) != -EPIPE)
        return;
    sys4(__NR_rt_sigaction, SIGPIPE, (long)&ignore, 0, 8);
    sys4(__NR_rt_sigaction, SIGPIPE, (long)&a->sigactions[SIGPIPE - 1], 0, 8);
}

/* crpy's fds (>= close_from) go; in a shared fd table only once everyone sharing it is done. */
static void close_crpy_fds(struct rst_args *a)
{
    char buf[64];
    uint32_t got = 0;
    long r;

    fault_point(a, RST_STEP_CLOSE_FDS);
    if (a->files_done_fd >= 0) {
        buf[0] = 'd';
        r = sys3(__NR_write, a->files_done_fd, (long)buf, 1);
        if (r != 1)
            fail(a, RST_STEP_CLOSE_FDS, a->files_done_fd, IS_ERR(r) ? r : -EPIPE);
        return;
    }
    while (got < a->files_wait_count) {
        uint32_t want = a->files_wait_count - got;

        r = sys3(__NR_read, a->files_wait_fd, (long)buf, want < sizeof(buf) ? want : sizeof(buf));
        if (r == -EINTR)
            continue;
        if (r <= 0)
            fail(a, RST_STEP_CLOSE_FDS, a->files_wait_fd, r ? r : -EPIPE);
        got += r;
    }
    r = sys3(__NR_close_range, a->close_from, ~0U, 0);
    if (IS_ERR(r))
        fail(a, RST_STEP_CLOSE_FDS, a->close_from, r);
}

BLOB_EXPORT BLOB_NORETURN void restorer_main(struct rst_args *a)
{
    long r;

    if (a->args_size != sizeof(*a))
        fail(a, RST_STEP_ABI, a->args_size, -EINVAL);
    if (a->cur_rseq) {
        r = sys4(__NR_rseq, a->cur_rseq, a->cur_rseq_len, RSEQ_FLAG_UNREGISTER, a->rseq_sig);
        if (IS_ERR(r))
            fail(a, RST_STEP_RSEQ_UNREG, a->cur_rseq, r);
    }
    unmap_foreign(a);
    move_vdso(a);
    place_vmas(a);
    restore_aio(a);
    restore_task_state(a);
    say_running(a);
    create_threads(a);
    restore_timers(a);
    queue_signals(a, 0);
    switch_creds(a);             /* late: everything above may need root */
    close_crpy_fds(a);
    if (a->stop)                 /* stops here; SIGCONT lets it go on into the task */
        stop_self(a);
    release_threads(a);
    end_interrupted_syscall(a);
    jump_to_task(a);
}
