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
#define SIGSTOP 19
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

/* Tests make a chosen step fail (see rst_args.fault_step) to prove every failure is reported. */
static void fault_point(struct rst_args *a, int step)
{
    if (a->fault_step == (u32)step)
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

/* Pending signals go back into the queues; every signal is blocked until rt_sigreturn sets the
 * task's mask, so they are delivered then, to the task's own handlers. */
static void queue_signals(struct rst_args *a)
{
    long pid = sys0(__NR_getpid);

    for (u32 i = 0; i < a->nr_siginfo; i++) {
        struct rst_siginfo *s = &a->siginfo[i];
        s32 sig = *(s32 *)s->info;
        long r = s->shared ? sys3(__NR_rt_sigqueueinfo, pid, sig, (long)s->info)
                           : sys4(__NR_rt_tgsigqueueinfo, pid, pid, sig, (long)s->info);
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
    queue_signals(a);
    r = sys2(__NR_arch_prctl, ARCH_SET_FS, a->fs_base);
    if (IS_ERR(r))
        fail(a, RST_STEP_FS_GS, a->fs_base, r);
    if (a->gs_base) {
        r = sys2(__NR_arch_prctl, ARCH_SET_GS, a->gs_base);
        if (IS_ERR(r))
            fail(a, RST_STEP_FS_GS, a->gs_base, r);
    }
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
    restore_task_state(a);
    fault_point(a, RST_STEP_CLOSE_FDS);
    r = sys3(__NR_close_range, a->close_from, ~0U, 0);
    if (IS_ERR(r))
        fail(a, RST_STEP_CLOSE_FDS, a->close_from, r);
    if (a->stop)                 /* stops here; SIGCONT lets it go on into the task */
        sys2(__NR_kill, sys0(__NR_getpid), SIGSTOP);
    jump_to_task(a);
}
