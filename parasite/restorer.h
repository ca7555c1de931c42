/* restorer.h: the argument block Python hands to the restorer blob (parasite/restorer.c).
 *
 * Declared once, here, and read by both sides: the blob includes this file after lib.h, and
 * crpy/kernel/cdef/40_restore.cdef and 40_restore.c are symlinks to it, so cffi gives Python the
 * very same layout (ffi.new("struct rst_args *"), ffi.offsetof).  That is why this file holds
 * only what cffi's cdef parser accepts: comments, integer #defines and plain structs of
 * fixed-width fields, with literal array sizes, and no include guard.
 *
 * Python fills every field with absolute addresses of the restored task and of the "restorer
 * region" (blob + this block + premapped memory); the blob only executes the list.
 */

/* Steps of the blob, in order.  A failing step ends the task with exit_group(RST_EXIT_BASE +
 * step) after writing "rst STEP ADDR ERRNO\n" (decimal) to report_fd.  Python names them. */
#define RST_FAULT_KILL 0x100   /* or'ed into rst_args.fault_step (crpy.restore.blob.FAULT_KILL) */
#define RST_STEP_RSEQ_UNREG 1
#define RST_STEP_UNMAP 2
#define RST_STEP_VDSO 3
#define RST_STEP_VMAS 4
#define RST_STEP_GUARDS 5
#define RST_STEP_MM_MAP 6
#define RST_STEP_COMM 7
#define RST_STEP_SIGACTIONS 8
#define RST_STEP_RSEQ 9
#define RST_STEP_TID_ADDRESS 10
#define RST_STEP_ROBUST_LIST 11
#define RST_STEP_FS_GS 12
#define RST_STEP_CLOSE_FDS 13
#define RST_STEP_SIGRETURN 14
#define RST_STEP_PDEATHSIG 15
#define RST_STEP_SIGQUEUE 16
#define RST_STEP_ABI 17
#define RST_STEP_THREADS 18
#define RST_STEP_THREAD_STATE 19
#define RST_STEP_TIMERS 20
#define RST_STEP_CREDS 21
#define RST_STEP_AIO 22
#define RST_EXIT_BASE 100

/* How the final jump removes the region: see rst_args.gadget_kind. */
#define RST_GADGET_NONE 0
#define RST_GADGET_RET 1
#define RST_GADGET_LEAVE_RET 2

#define RST_MAX_VMAS 65536
#define RST_MAX_UNMAP 8
#define RST_MAX_GUARDS 4096
#define RST_MAX_FRAME 16384
#define RST_AUXV_WORDS 64
#define RST_MAX_THREADS 256
#define RST_THREAD_STACK 8192
#define RST_MAX_TIMERS 64
#define RST_MAX_AIO 256
#define RST_AIO_BATCH 64
/* rax and rip in the rt_sigframe (crpy/restore/sigframe.py lays it out: uc_mcontext at 48) */
#define RST_FRAME_RAX_OFF 152
#define RST_FRAME_RIP_OFF 176

/* One memory area: `len` bytes premapped by Python at `premap` (filled, with the final prot and
 * flags already set) that the blob moves to `start` with mremap. */
struct rst_vma {
    uint64_t start;
    uint64_t len;
    uint64_t premap;
};

struct rst_range {
    uint64_t start;
    uint64_t len;
};

/* One of [vvar] [vvar_vclock] [vdso]: where it is now, where it must go. */
struct rst_special {
    uint64_t cur;
    uint64_t target;
    uint64_t len;
};

/* The kernel's struct sigaction for rt_sigaction. */
struct rst_sigaction {
    uint64_t handler;
    uint64_t flags;
    uint64_t restorer;
    uint64_t mask;
};

/* A pending signal to queue again: raw siginfo (128 bytes), to the process (shared) or to one
 * thread (tid; 0 = the main thread). */
struct rst_siginfo {
    uint32_t shared;
    uint32_t tid;
    uint8_t info[128];
};

/* The task's credentials, switched to by every thread as its last step before rt_sigreturn
 * (set = 0: crpy's own creds are the task's, nothing to do).  Capability sets are 64-bit masks;
 * dumpable and pdeath_sig are set again afterwards (a creds change resets them). */
struct rst_creds {
    uint32_t set;
    uint32_t secbits;
    uint32_t uid, euid, suid, fsuid;
    uint32_t gid, egid, sgid, fsgid;
    uint64_t cap_inh, cap_prm, cap_eff, cap_bnd, cap_amb;
    uint32_t last_cap;
    int32_t dumpable;            /* -1: leave as it is */
    uint32_t ngroups;
    uint32_t pad;
    uint32_t groups[256];
};

/* One POSIX timer: created again with its id (PR_TIMER_CREATE_RESTORE_IDS), its clock and the
 * raw struct sigevent Python packed, then armed with the time it had left (relative). */
struct rst_timer {
    int32_t id;
    int32_t clock;
    uint8_t sigevent[64];
    int64_t its[4];              /* struct itimerspec: interval sec, nsec, value sec, nsec */
};

/* One AIO context (io_setup) to make again.  Its saved ring (header, head, tail and the events
 * not read yet) was premapped like anonymous memory and moved to `addr` with the other areas;
 * the blob makes a new context of nr_req events, brings the new ring's kernel tail and head to
 * the saved ones, copies the events in and mremaps the new ring over the copy at `addr`: the
 * context id a program holds is the ring's address, so its io_* calls go on working. */
struct rst_aio {
    uint64_t addr;
    uint64_t len;
    uint32_t nr_req;
    uint32_t pad;
};

/* One thread besides the main one: created by the blob with clone3 (set_tid = tid, fs base as
 * TLS, clear_child_tid = tid_address), it sets its own state on `stack`, copies `frame` to
 * frame_addr (on its own stack in task memory) and leaves through its own rt_sigreturn. */
struct rst_thread {
    uint64_t tid;
    uint64_t fs_base;
    uint64_t gs_base;
    uint64_t tid_address;
    uint64_t robust_list;
    uint64_t robust_list_len;
    uint64_t rseq_ptr;
    uint32_t rseq_len;
    uint32_t rseq_sig;
    char comm[16];
    uint64_t timerslack_ns;      /* 0: leave the leader's */
    uint32_t has_sched;          /* 1: set nice and policy (else the leader's, inherited) */
    int32_t nice;
    uint32_t sched_policy;
    uint32_t sched_prio;
    uint64_t frame_addr;
    uint64_t frame_len;
    uint8_t frame[16384];
    uint8_t stack[8192];
};

/* struct prctl_mm_map of PR_SET_MM_MAP (104 bytes). */
struct rst_mm_map {
    uint64_t start_code, end_code, start_data, end_data, start_brk, brk, start_stack;
    uint64_t arg_start, arg_end, env_start, env_end;
    uint64_t auxv;
    uint32_t auxv_size;
    uint32_t exe_fd;
};

struct rst_args {
    /* Where errors go (a pipe to the restoring parent) and which fds to close at the end:
     * every fd >= close_from (crpy's own, F_DUPFD'ed up there). */
    int32_t report_fd;
    uint32_t close_from;
    /* sizeof(struct rst_args) as Python's cffi module sees it: a blob and a _sys module built
     * from different versions of this file refuse to run together. */
    uint64_t args_size;
    /* Test hook (CRPY_FAULT=restorer:STEP): fail on purpose at the start of that step; with
     * RST_FAULT_KILL or'ed in, die there by SIGKILL without a word. */
    uint32_t fault_step;
    /* A fd table several tasks share (CLONE_FILES) holds all their crpy fds: it is closed once,
     * by its first task, after every other one is done with them.  files_done_fd >= 0: this
     * task only writes one byte there instead of closing; files_wait_count > 0: read that many
     * bytes from files_wait_fd before closing. */
    uint32_t files_wait_count;
    int32_t files_done_fd;
    int32_t files_wait_fd;

    /* The restorer region: unmapped by the final jump when a gadget is known. */
    uint64_t region_start;
    uint64_t region_len;

    /* Python's own rseq registration, dropped before its TLS goes away. */
    uint64_t cur_rseq;
    uint32_t cur_rseq_len;
    uint32_t rseq_sig;

    /* Everything to munmap first: the complement of the region and the current vDSO block. */
    uint32_t nr_unmap;
    uint32_t nr_special;
    struct rst_range unmap[8];

    /* The vDSO trio; hop != 0: move all three through scratch first (ranges overlap). */
    struct rst_special special[4];
    uint64_t special_scratch;
    uint64_t special_hop;

    uint32_t nr_vmas;
    uint32_t nr_guards;
    struct rst_vma vmas[65536];
    struct rst_range guards[4096];

    struct rst_mm_map mm;
    uint64_t auxv[64];
    char comm[16];

    /* Signals 1..64 (index sig-1); 9 and 19 are skipped. */
    struct rst_sigaction sigactions[64];

    /* Task state restored by syscalls before the jump. */
    uint64_t rseq_ptr;
    uint32_t rseq_len;
    uint32_t rseq_target_sig;
    uint64_t tid_address;
    uint64_t robust_list;
    uint64_t robust_list_len;
    uint64_t fs_base;
    uint64_t gs_base;
    uint32_t pdeath_sig;
    uint32_t stop;               /* 0, or the signal that stopped the task: it stops itself with it */
    uint32_t nr_siginfo;
    uint32_t pad1;
    /* Address of the nr_siginfo pending signals (struct rst_siginfo), right after this block
     * in the region: as many as the kernel had queued (RLIMIT_SIGPENDING allows thousands). */
    uint64_t siginfo;

    /* The rt_sigframe, copied to frame_addr on the restored stack; rt_sigreturn runs with
     * rsp = frame_addr + 8.  With a gadget, munmap(region) runs first from the vDSO:
     * RET: rsp = frame_addr, the gadget's ret pops pretcode (the task's sa_restorer);
     * LEAVE_RET: rbp = frame_addr - 8, `leave` lands rsp on frame_addr, then the same. */
    uint64_t frame_addr;
    uint64_t frame_len;
    uint64_t gadget;
    uint32_t gadget_kind;
    uint32_t pad0;
    /* restart_rip != 0: the frame re-enters a syscall the task slept in (restart_rip: just
     * after its `syscall`).  If signals of restart_handled (caught, unblocked) are pending at
     * the jump, the lowest one's handler runs first; when it is one of restart_intr the kernel
     * would have ended that syscall with -EINTR (a SIGCONT ending the restored stop, say): the
     * blob makes the frame do so. */
    uint64_t restart_rip;
    uint64_t restart_handled;
    uint64_t restart_intr;
    uint8_t frame[16384];

    /* The other threads.  threads_ready: how many have set their state (futex the main thread
     * waits on); threads_go: set to 1 when they may leave; threads_left: how many are still in
     * the region (each takes itself off with FUTEX_WAKE_OP from the vDSO gadget, so the main
     * thread unmaps the region only after the last one is out). */
    uint32_t nr_threads;
    uint32_t threads_ready;
    uint32_t threads_go;
    uint32_t threads_left;
    uint32_t nr_timers;
    uint32_t pad3;
    struct rst_creds creds;
    struct rst_timer timers[64];
    struct rst_thread threads[256];
    uint32_t nr_aio;
    int32_t aio_fd;              /* /dev/zero, opened by crpy (a chrooted task may lack it) */
    struct rst_aio aio[256];
};
