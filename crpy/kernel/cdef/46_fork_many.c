/* Fork many children of this Python process, each with a chosen PID, in ONE C call (a tree's
 * restore forks a task's children this way): one trip through cffi and the GIL for all of them,
 * and each child is made ready for the restore in C (every signal blocked, PR_SET_PDEATHSIG) before
 * it runs any bytecode.
 *
 * CPython's fork hooks (PyOS_BeforeFork / PyOS_AfterFork_*, see 45_fork.c) are skipped when this
 * interpreter has a single thread state: they are what made a fork from Python cost, the child's
 * side the most (it rebuilds the GIL, the import lock, the thread list, runs the at-fork hooks).
 * Why the child is safe without them when there is one thread state:
 *  - no other Python thread exists, so none holds the GIL, the import lock or a module's lock
 *    (threading's, logging's) at the fork: the child inherits them all free, as the parent holds
 *    them (the GIL, by this thread: PyGILState_Ensure below, released in the child as well);
 *  - the thread list has only this thread, the one that runs in the child, with the same
 *    pthread_t (the child's main thread is a copy of this one), so threading's bookkeeping and
 *    the GIL's owner still hold; only tstate's native thread id is stale, which nothing crpy
 *    runs in the child reads (threading.get_native_id asks the kernel);
 *  - the at-fork hooks skipped in the child (random's reseed, threading's and logging's lock
 *    reinit) are not needed by a restored task: it never returns to the interpreter's shutdown
 *    (it jumps into the restorer or _exits), draws no random numbers, and its locks are free;
 *  - signals: every one is blocked in C before the child returns, so a signal flagged in the
 *    parent but not yet handled (_PySignal_AfterFork would clear it) runs no handler in the child
 *    before the restorer sets the task's own mask and actions.
 * With more than one thread state the hooks run around the batch, as os.fork runs them.
 * progs (or NULL): per child, NULL or its whole restore compiled into a program
 * (44_leaf_prog.c), which it runs instead of returning to Python (unless it falls back).
 * Returns: in the child 0, with *index = its place in pids; in the parent the number forked (n),
 * or -1 with *err = errno and *index = the child that failed (those before it run). */
#include <signal.h>
#include <sys/prctl.h>

PyThreadState *PyInterpreterState_ThreadHead(PyInterpreterState *interp);
PyThreadState *PyThreadState_Next(PyThreadState *tstate);
PyInterpreterState *PyInterpreterState_Get(void);

static int crpy_single_thread_state(void)
{
    PyThreadState *head = PyInterpreterState_ThreadHead(PyInterpreterState_Get());

    return head != NULL && PyThreadState_Next(head) == NULL;
}

static void crpy_child_ready(int parent, int pdeathsig)
{
    sigset_t all;

    sigfillset(&all);
    sigprocmask(SIG_BLOCK, &all, NULL);
    if (pdeathsig) {
        prctl(PR_SET_PDEATHSIG, pdeathsig, 0, 0, 0);
        if (getppid() != parent)        /* the parent died before the prctl: nobody will kill us */
            _exit(1);
    }
}

static long crpy_fork_many(const int *pids, int n, uint64_t flags, uint64_t exit_signal,
                           int pdeathsig, int *err, int *index, const int64_t *const *progs,
                           const char *const *strs)
{
    struct crpy_clone_args args;
    PyGILState_STATE gil = PyGILState_Ensure();
    int hooks = !crpy_single_thread_state();
    int parent = getpid();
    long ret = 0;
    int i;

    *err = 0;
    if (hooks)
        PyOS_BeforeFork();
    for (i = 0; i < n; i++) {
        int tid = pids[i];

        memset(&args, 0, sizeof(args));
        args.flags = flags;
        args.exit_signal = exit_signal;
        args.set_tid = (uint64_t)(uintptr_t)&tid;
        args.set_tid_size = 1;
        ret = syscall(SYS_clone3, &args, sizeof(args));
        if (ret == 0) {
            crpy_child_ready(parent, pdeathsig);
            if (progs && progs[i])      /* its whole restore, compiled: returns only to fall back */
                crpy_run_prog(progs[i], strs[i]);
            if (hooks)
                PyOS_AfterFork_Child();
            *index = i;
            PyGILState_Release(gil);
            return 0;
        }
        if (ret < 0) {
            *err = errno;
            *index = i;
            break;
        }
    }
    if (hooks)
        PyOS_AfterFork_Parent();
    PyGILState_Release(gil);
    return *err ? -1 : n;
}
