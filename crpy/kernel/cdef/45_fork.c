/* Fork this Python process with a chosen PID (clone3 with set_tid), the way os.fork does it: the
 * interpreter's fork hooks run around the syscall in ONE C call with the GIL held.  Doing the same
 * from Python (ctypes) lets the child run bytecode between clone3 and PyOS_AfterFork_Child; if the
 * eval loop then honours a GIL drop request from one of the parent's threads, the child waits
 * forever for a thread that does not exist in it.  cffi releases the GIL around this call, so it
 * takes the GIL back itself. */
/* cffi builds against the limited API, which hides these three (they exist in every CPython 3). */
void PyOS_BeforeFork(void);
void PyOS_AfterFork_Parent(void);
void PyOS_AfterFork_Child(void);

static long crpy_fork_with_pid(int pid, uint64_t flags, uint64_t exit_signal, int *err)
{
    struct crpy_clone_args args;
    int tid = pid;
    long ret;
    PyGILState_STATE gil = PyGILState_Ensure();

    memset(&args, 0, sizeof(args));
    args.flags = flags;
    args.exit_signal = exit_signal;
    args.set_tid = (uint64_t)(uintptr_t)&tid;
    args.set_tid_size = 1;
    PyOS_BeforeFork();
    ret = syscall(SYS_clone3, &args, sizeof(args));
    *err = ret < 0 ? errno : 0;
    if (ret == 0)
        PyOS_AfterFork_Child();
    else
        PyOS_AfterFork_Parent();
    PyGILState_Release(gil);
    return ret;
}
