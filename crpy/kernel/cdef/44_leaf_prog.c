/* A restored leaf task's whole restore as a list of steps, run in C right after its clone3
 * (crpy_fork_many), so that the child runs no Python at all (crpy.restore.leaf compiles it, in
 * the parent, before the fork).  A child forked from crpy's interpreter that runs Python copies
 * the pages of crpy's heap its bytecode touches: most of what a restored child of a tree cost.
 *
 * A program is an array of int64 words: [number of ops, report fd, may fall back (0/1), then
 * the ops, OP_WORDS words each], and a block of NUL-ended strings the ops name by offset (what a failure says).
 * Every pointer in it is an address in the parent's memory, which the child has a copy of.
 * An op:
 *   w0  kind | check << 8 | (register the result goes to + 1) << 16
 *   w1  syscall number (OP_SYSCALL)
 *   w2..w7  six arguments; argument i is register (r - 1) when byte i of w8 is r > 0
 *   w9  the value the check wants (CHK_EQ), or a pointer an op needs besides its arguments
 *   w10 offset of the op's description in the strings, -1 for none
 * A failed check writes "py WHAT: ENAME (error)" on the report fd and exits 1, as a Python child does
 * (crpy.restore.child.report_failure); CHK_FALLBACK instead returns 1 (the first op only, before
 * anything is done: the child goes on in Python) if the program may fall back (one forked by
 * another leaf may not: no Python is left there); CHK_EXIT exits 1 silently (crpy is gone).
 *
 * OP_UNMAP and OP_SPAWN make one leaf the forker of its siblings: it unmaps what of crpy's
 * memory no leaf needs (the interpreter, its heap), then forks them with CLONE_PARENT (their
 * parent is its own, the task that forked it) from its small address space, each with its own
 * program: a fork from crpy's 167-VMA interpreter cost ~0.4 ms in the parent and ~0.9 ms more
 * in the child, whatever it does. */
#include <stdio.h>
#include <sys/prctl.h>
#include <sched.h>

#define CRPY_OP_WORDS 11
#define CRPY_REGS 16
enum { CRPY_OP_SYSCALL = 1, CRPY_OP_STORE32, CRPY_OP_READ, CRPY_OP_READ_CRC, CRPY_OP_VERIFY,
       CRPY_OP_EXPECT_BYTE, CRPY_OP_JUMP, CRPY_OP_MEMCPY, CRPY_OP_UNMAP, CRPY_OP_SPAWN };
enum { CRPY_CHK_NONE = 0, CRPY_CHK_NONNEG, CRPY_CHK_EQ, CRPY_CHK_EXIT, CRPY_CHK_FALLBACK };

static int crpy_run_prog(const int64_t *prog, const char *strs);

static long crpy_read_piece(int fd, struct iovec *iov, int left, uint64_t pos, uint64_t len);
static long crpy_pread_crc(int fd, const uint64_t *addrs, const uint64_t *lens, int n, uint64_t offset,
                           uint32_t chunk, uint32_t *crcs);
static uint32_t crpy_crc32c_combine(uint32_t crc_a, uint32_t crc_b, uint64_t len_b);

static void crpy_prog_say(int fd, const char *line)
{
    size_t len = strlen(line), done = 0;

    while (done < len) {
        ssize_t n = write(fd, line + done, len - done);

        if (n <= 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        done += (size_t)n;
    }
}

static void crpy_prog_fail(int fd, const char *what, int err)
{
    char line[1024];

    const char *name = strerrorname_np(err);        /* as crpy.errors.KernelError says it */

    snprintf(line, sizeof(line), "py %s: %s (%s)\n", what ? what : "restore step", name ? name : "?",
             strerror(err));
    crpy_prog_say(fd, line);
    syscall(SYS_exit_group, 1);
}

/* Read n buffers (addrs[i], lens[i]) in order from fd at offset, every byte. */
static long crpy_prog_read(int fd, const uint64_t *addrs, const uint64_t *lens, long n, uint64_t offset)
{
    long i;

    for (i = 0; i < n; i++) {
        struct iovec iov = { (void *)(uintptr_t)addrs[i], (size_t)lens[i] };
        long err = crpy_read_piece(fd, &iov, 1, offset, lens[i]);

        if (err < 0)
            return err;
        offset += lens[i];
    }
    return 0;
}

/* The page chunks this task checks: table of n entries, each [expected crc, number of parts,
 * offset of the message's head, of its middle, of its tail, then (part index, part length)
 * per part]; the parts' digests in crcs.  The first damaged chunk is the one-line error
 * (head, the digest found, middle, how many more are damaged, tail: crpy.images.digest). */
static void crpy_prog_verify(int fd, const int64_t *table, long n, const uint32_t *crcs, const char *strs)
{
    const int64_t *bad = NULL;
    uint32_t bad_crc = 0;
    long more = 0, c;

    for (c = 0; c < n; c++) {
        long parts = table[1], k;
        uint32_t crc = crcs[table[5]];

        for (k = 1; k < parts; k++)
            crc = crpy_crc32c_combine(crc, crcs[table[5 + 2 * k]], (uint64_t)table[6 + 2 * k]);
        if (crc != (uint32_t)table[0]) {
            if (bad)
                more++;
            else
                bad = table, bad_crc = crc;
        }
        table += 5 + 2 * parts;
    }
    if (bad) {
        char line[2048], tail[64] = "";

        if (more)
            snprintf(tail, sizeof(tail), " (and %ld more chunks)", more);
        snprintf(line, sizeof(line), "py %s0x%016x%s%s%s\n", strs + bad[2], bad_crc, strs + bad[3],
                 tail, strs + bad[4]);
        crpy_prog_say(fd, line);
        syscall(SYS_exit_group, 1);
    }
}

/* Fork n siblings (CLONE_PARENT) with their pids, each running its program; the pid of the
 * first that cannot be forked (errno set), or 0. */
static long crpy_prog_spawn(const int64_t *pids, const int64_t *progs, long n, const char *strs, long parent)
{
    long i;

    for (i = 0; i < n; i++) {
        struct crpy_clone_args args;
        int tid = (int)pids[i];
        long ret;

        memset(&args, 0, sizeof(args));
        args.flags = CLONE_PARENT;
        args.exit_signal = 0;            /* CLONE_PARENT: the child takes this process's (SIGCHLD) */
        args.set_tid = (uint64_t)(uintptr_t)&tid;
        args.set_tid_size = 1;
        ret = syscall(SYS_clone3, &args, sizeof(args));
        if (ret == 0) {
            prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);     /* (signals are all blocked already) */
            if (getppid() != parent)
                syscall(SYS_exit_group, 1);
            crpy_run_prog((const int64_t *)(uintptr_t)progs[i], strs);
            syscall(SYS_exit_group, 1);
        }
        if (ret < 0)
            return tid;
    }
    return 0;
}

/* Run a program (see above); returns 1 to fall back to Python, else never returns. */
static int crpy_run_prog(const int64_t *prog, const char *strs)
{
    int64_t regs[CRPY_REGS] = { 0 };
    long nops = prog[0], i;
    int report = (int)prog[1];

    for (i = 0; i < nops; i++) {
        const int64_t *op = prog + 3 + i * CRPY_OP_WORDS;
        int kind = op[0] & 0xff, check = (op[0] >> 8) & 0xff, dst = (int)((op[0] >> 16) & 0xff) - 1;
        const char *what = op[10] >= 0 ? strs + op[10] : NULL;
        int64_t a[6], ret = 0;
        int k, err = 0;

        for (k = 0; k < 6; k++) {
            int r = (op[8] >> (8 * k)) & 0xff;

            a[k] = r ? regs[r - 1] : op[2 + k];
        }
        switch (kind) {
        case CRPY_OP_SYSCALL:
            ret = syscall(op[1], a[0], a[1], a[2], a[3], a[4], a[5]);
            err = ret < 0 ? errno : 0;
            break;
        case CRPY_OP_MEMCPY:
            memcpy((void *)(uintptr_t)a[0], (const void *)(uintptr_t)a[1], (size_t)a[2]);
            break;
        case CRPY_OP_UNMAP:                  /* best effort: what stays only costs time */
            for (k = 0; k < a[1]; k++)
                syscall(SYS_munmap, ((const int64_t *)(uintptr_t)a[0])[2 * k], ((const int64_t *)(uintptr_t)a[0])[2 * k + 1]);
            break;
        case CRPY_OP_SPAWN:
            ret = crpy_prog_spawn((const int64_t *)(uintptr_t)a[0], (const int64_t *)(uintptr_t)a[1], a[2],
                                  (const char *)(uintptr_t)a[3], a[4]);
            err = ret ? errno : 0;
            if (ret) {
                char line[256];

                snprintf(line, sizeof(line), "fork pid %ld as a sibling", (long)ret);
                crpy_prog_fail(report, line, err);
            }
            break;
        case CRPY_OP_STORE32:
            *(uint32_t *)(uintptr_t)a[0] = (uint32_t)a[1];
            break;
        case CRPY_OP_READ:
            ret = crpy_prog_read((int)a[0], (const uint64_t *)(uintptr_t)a[1],
                                 (const uint64_t *)(uintptr_t)a[2], a[3], (uint64_t)a[4]);
            err = ret < 0 ? (int)-ret : 0;
            break;
        case CRPY_OP_READ_CRC:
            ret = crpy_pread_crc((int)a[0], (const uint64_t *)(uintptr_t)a[1], (const uint64_t *)(uintptr_t)a[2],
                                 (int)a[3], (uint64_t)a[4], (uint32_t)a[5], (uint32_t *)(uintptr_t)op[9]);
            err = ret < 0 ? (int)-ret : 0;
            break;
        case CRPY_OP_VERIFY:
            crpy_prog_verify(report, (const int64_t *)(uintptr_t)a[0], a[1], (const uint32_t *)(uintptr_t)a[2], strs);
            break;
        case CRPY_OP_EXPECT_BYTE:
            if (*(const unsigned char *)(uintptr_t)a[0] != (unsigned char)a[1])
                syscall(SYS_exit_group, 1);
            break;
        case CRPY_OP_JUMP:
            ((void (*)(void *))(uintptr_t)a[0])((void *)(uintptr_t)a[1]);
            crpy_prog_fail(report, "the restorer blob returned", EINVAL);
            break;
        default:
            crpy_prog_fail(report, "leaf program: unknown op", EINVAL);
        }
        if (dst >= 0 && dst < CRPY_REGS)
            regs[dst] = ret;
        switch (check) {
        case CRPY_CHK_NONNEG:
            if (ret < 0)
                crpy_prog_fail(report, what, err ? err : EIO);
            break;
        case CRPY_CHK_EQ:
            if (ret != op[9])
                crpy_prog_fail(report, what, err ? err : EFAULT);
            break;
        case CRPY_CHK_EXIT:
            if (ret != op[9])
                syscall(SYS_exit_group, 1);
            break;
        case CRPY_CHK_FALLBACK:
            if (ret != op[9] && prog[2])
                return 1;
            if (ret != op[9])
                crpy_prog_fail(report, what, err ? err : EEXIST);
            break;
        }
    }
    crpy_prog_fail(report, "leaf program: it ended without jumping", EINVAL);
    return 1;
}
