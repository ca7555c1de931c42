/* Base of crpy.kernel._sys: headers and raw syscall wrappers.  Each wrapper returns the raw
 * result and leaves errno set, which cffi captures (ffi.errno). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <fcntl.h>
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <signal.h>
#include <unistd.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <sys/ioctl.h>

static long crpy_syscall6(long nr, long a1, long a2, long a3, long a4, long a5, long a6)
{
    return syscall(nr, a1, a2, a3, a4, a5, a6);
}

static long crpy_ptrace(long request, long pid, uintptr_t addr, uintptr_t data)
{
    /* The raw syscall: no glibc PEEK* special case, no varargs. */
    return syscall(SYS_ptrace, request, pid, addr, data);
}
