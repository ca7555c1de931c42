/* lib.h: the whole "libc" of the crpy blobs (parasite and restorer).
 *
 * Freestanding x86_64: raw syscalls (sys0..sys6 return the kernel's raw result, -errno on
 * failure; there is no errno variable), x86_64 syscall numbers, a few kernel constants and
 * struct layouts, and the mem* / str* helpers gcc may call on its own.  No globals, so both
 * blobs can use it without any set-up.
 */
#ifndef CRPY_BLOB_LIB_H
#define CRPY_BLOB_LIB_H

#include <stddef.h>
#include <stdint.h>

typedef uint8_t u8;
typedef uint16_t u16;
typedef uint32_t u32;
typedef uint64_t u64;
typedef int32_t s32;
typedef int64_t s64;

/* Symbols a Python loader looks up (tools/build_blobs.py collects every named symbol;
 * mark the ones you rely on so they stay in the image even if unused from C). */
#define BLOB_EXPORT __attribute__((used, noinline))
#define BLOB_NORETURN __attribute__((noreturn))
#define BLOB_ALIGNED(n) __attribute__((aligned(n)))

/* A raw result in [-4095, -1] is an error. */
#define IS_ERR(r) ((unsigned long)(long)(r) >= (unsigned long)-4095L)

/* ---- x86_64 syscall numbers (only the ones the blobs may need) ---- */
#ifndef __NR_read
#define __NR_read 0
#define __NR_write 1
#define __NR_open 2
#define __NR_close 3
#define __NR_fstat 5
#define __NR_poll 7
#define __NR_lseek 8
#define __NR_mmap 9
#define __NR_mprotect 10
#define __NR_munmap 11
#define __NR_brk 12
#define __NR_rt_sigaction 13
#define __NR_rt_sigprocmask 14
#define __NR_rt_sigreturn 15
#define __NR_ioctl 16
#define __NR_pread64 17
#define __NR_pwrite64 18
#define __NR_readv 19
#define __NR_writev 20
#define __NR_mremap 25
#define __NR_madvise 28
#define __NR_dup 32
#define __NR_dup2 33
#define __NR_nanosleep 35
#define __NR_getitimer 36
#define __NR_setitimer 38
#define __NR_getpid 39
#define __NR_socket 41
#define __NR_connect 42
#define __NR_sendmsg 46
#define __NR_recvmsg 47
#define __NR_shutdown 48
#define __NR_clone 56
#define __NR_exit 60
#define __NR_wait4 61
#define __NR_kill 62
#define __NR_fcntl 72
#define __NR_umask 95
#define __NR_getuid 102
#define __NR_getgid 104
#define __NR_setuid 105
#define __NR_setgid 106
#define __NR_geteuid 107
#define __NR_getegid 108
#define __NR_setpgid 109
#define __NR_getppid 110
#define __NR_setsid 112
#define __NR_setgroups 116
#define __NR_setresuid 117
#define __NR_getresuid 118
#define __NR_setresgid 119
#define __NR_getresgid 120
#define __NR_getpgid 121
#define __NR_setfsuid 122
#define __NR_setfsgid 123
#define __NR_getsid 124
#define __NR_capget 125
#define __NR_capset 126
#define __NR_sigaltstack 131
#define __NR_personality 135
#define __NR_prctl 157
#define __NR_arch_prctl 158
#define __NR_setrlimit 160
#define __NR_gettid 186
#define __NR_futex 202
#define __NR_set_tid_address 218
#define __NR_restart_syscall 219
#define __NR_timer_create 222
#define __NR_timer_settime 223
#define __NR_timer_gettime 224
#define __NR_clock_gettime 228
#define __NR_clock_nanosleep 230
#define __NR_exit_group 231
#define __NR_tgkill 234
#define __NR_openat 257
#define __NR_ppoll 271
#define __NR_set_robust_list 273
#define __NR_get_robust_list 274
#define __NR_vmsplice 278
#define __NR_timerfd_settime 286
#define __NR_prlimit64 302
#define __NR_kcmp 312
#define __NR_seccomp 317
#define __NR_userfaultfd 323
#define __NR_rseq 334
#define __NR_pidfd_open 434
#define __NR_clone3 435
#define __NR_close_range 436
#define __NR_pidfd_getfd 438
#endif

/* ---- raw syscalls ---- */
static inline long sys0(long nr)
{
    long r;
    asm volatile("syscall" : "=a"(r) : "a"(nr) : "rcx", "r11", "memory");
    return r;
}

static inline long sys1(long nr, long a1)
{
    long r;
    asm volatile("syscall" : "=a"(r) : "a"(nr), "D"(a1) : "rcx", "r11", "memory");
    return r;
}

static inline long sys2(long nr, long a1, long a2)
{
    long r;
    asm volatile("syscall" : "=a"(r) : "a"(nr), "D"(a1), "S"(a2) : "rcx", "r11", "memory");
    return r;
}

static inline long sys3(long nr, long a1, long a2, long a3)
{
    long r;
    asm volatile("syscall" : "=a"(r) : "a"(nr), "D"(a1), "S"(a2), "d"(a3) : "rcx", "r11", "memory");
    return r;
}

static inline long sys4(long nr, long a1, long a2, long a3, long a4)
{
    long r;
    register long r10 asm("r10") = a4;
    asm volatile("syscall" : "=a"(r) : "a"(nr), "D"(a1), "S"(a2), "d"(a3), "r"(r10)
                 : "rcx", "r11", "memory");
    return r;
}

static inline long sys5(long nr, long a1, long a2, long a3, long a4, long a5)
{
    long r;
    register long r10 asm("r10") = a4;
    register long r8 asm("r8") = a5;
    asm volatile("syscall" : "=a"(r) : "a"(nr), "D"(a1), "S"(a2), "d"(a3), "r"(r10), "r"(r8)
                 : "rcx", "r11", "memory");
    return r;
}

static inline long sys6(long nr, long a1, long a2, long a3, long a4, long a5, long a6)
{
    long r;
    register long r10 asm("r10") = a4;
    register long r8 asm("r8") = a5;
    register long r9 asm("r9") = a6;
    asm volatile("syscall" : "=a"(r) : "a"(nr), "D"(a1), "S"(a2), "d"(a3), "r"(r10), "r"(r8), "r"(r9)
                 : "rcx", "r11", "memory");
    return r;
}

/* ---- kernel constants the blobs use ---- */
#define PROT_READ 1
#define PROT_WRITE 2
#define PROT_EXEC 4
#define MAP_SHARED 0x01
#define MAP_PRIVATE 0x02
#define MAP_FIXED 0x10
#define MAP_ANONYMOUS 0x20
#define MAP_FIXED_NOREPLACE 0x100000
#define MREMAP_MAYMOVE 1
#define MREMAP_FIXED 2

#define O_RDONLY 0
#define O_WRONLY 1
#define O_RDWR 2
#define O_NONBLOCK 04000
#define O_CLOEXEC 02000000

#define AF_UNIX 1
#define SOCK_SEQPACKET 5
#define SOCK_CLOEXEC O_CLOEXEC
#define MSG_TRUNC 0x20
#define MSG_DONTWAIT 0x40
#define MSG_NOSIGNAL 0x4000
#define MSG_CMSG_CLOEXEC 0x40000000
#define SOL_SOCKET 1
#define SCM_RIGHTS 1

#define POLLIN 0x001
#define POLLOUT 0x004
#define POLLERR 0x008
#define POLLHUP 0x010
#define POLLNVAL 0x020
#define POLLRDHUP 0x2000

#define SPLICE_F_NONBLOCK 2

#define ENOENT 2
#define EINTR 4
#define EBADF 9
#define EAGAIN 11
#define ENOMEM 12
#define EFAULT 14
#define EINVAL 22
#define EPIPE 32
#define ETIMEDOUT 110
#define E2BIG 7
#define EPROTO 71
#define EBADMSG 74
#define EMSGSIZE 90

#define SIG_BLOCK 0
#define SIG_UNBLOCK 1
#define SIG_SETMASK 2

struct blob_iovec { void *base; size_t len; };
struct blob_pollfd { int fd; short events; short revents; };
struct blob_timespec { long sec; long nsec; };
struct blob_msghdr {
    void *name; int namelen; int _pad0;
    struct blob_iovec *iov; size_t iovlen;
    void *control; size_t controllen;
    int flags; int _pad1;
};
struct blob_cmsghdr { size_t len; int level; int type; };  /* followed by data, 8-aligned */
struct blob_sockaddr_un { u16 family; char path[108]; };
/* The kernel's struct sigaction for rt_sigaction (not glibc's). */
struct blob_ksigaction { u64 handler; u64 flags; u64 restorer; u64 mask; };
struct blob_stack { u64 sp; s32 flags; s32 _pad; u64 size; };
struct blob_rlimit { u64 cur; u64 max; };

/* ---- helpers (lib.c) ---- */
void *memcpy(void *dst, const void *src, size_t n);
void *memmove(void *dst, const void *src, size_t n);
void *memset(void *dst, int c, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);
/* Writes v as decimal into buf (no NUL); returns the number of chars. */
int blob_utoa(u64 v, char *buf);

#endif
