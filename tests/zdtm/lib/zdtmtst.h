/*
 * zdtmtst.h: the zdtm test protocol shared by every C test in tests/zdtm/.
 *
 * A test is started as `NAME --pidfile=F --outfile=F`.  test_init() forks: the parent waits until
 * the child is ready and exits; the child becomes a daemon (setsid, stdin on /dev/null, stdout and
 * stderr appended to the outfile) and sets up its state.  test_daemon() says "ready": it writes the
 * pidfile and lets the parent go.  The test then waits for SIGTERM (test_waitsig() or a loop on
 * test_go()), checks its state and ends with test_finish(), which writes `PASS` or `FAIL: reason`
 * as the last line of the outfile.
 *
 * ZDTM_BREAK=1 in the environment asks a test to damage its own state on purpose just before its
 * check, so that the harness can prove that every check is able to fail.
 */
#ifndef ZDTMTST_H
#define ZDTMTST_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <ucontext.h>

#define PAGE_SIZE 4096UL

extern const char *zdtm_outfile;        /* absolute path given by --outfile= */
extern int zdtm_break;                  /* ZDTM_BREAK set: break the state before checking */
extern volatile sig_atomic_t zdtm_stop; /* SIGTERM has arrived */

/* Called from the SIGTERM handler when set (signal context: async-signal-safe code only). */
extern void (*zdtm_sigterm_hook)(siginfo_t *info, ucontext_t *uc);

void test_init(int argc, char **argv);
void test_daemon(void);
void test_waitsig(void);
/* In a child forked before test_daemon(): drop the protocol's ready pipe, so that the harness does
 * not wait for this child too. */
void test_forked_child(void);
/* A test that forks lists the pids of its tree (besides itself) in OUTFILE.pids before
 * test_daemon(): the harness checks that they are gone after a dump and back after a restore. */
void test_write_pids(const pid_t *pids, int n);
static inline int test_go(void) { return !zdtm_stop; }
/* SIGUSR1 as the "go" between the processes of a test: test_usr1_init() (before fork) installs
 * a handler and blocks the signal; test_usr1_wait() sleeps until one has arrived (at once if one
 * came meanwhile) and consumes it.  test_fork() forks; the child has called test_forked_child(). */
void test_usr1_init(void);
void test_usr1_wait(void);
pid_t test_fork(void);
/* Reaps child pid: its exit code; -1 after a fail() naming it `who` when it did not exit (killed
 * by a signal: the wait status; or waitpid failed: why). */
int test_reap(pid_t pid, const char *who);

void test_msg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void test_text(const char *text); /* raw text of any length to the outfile */
void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int test_failed(void);
int test_finish(void); /* writes the verdict; returns the exit code (always 0) */

/* Setup failed before the test was ready: say why in the outfile and exit non-zero. */
void test_abort(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
/* Setup found that this machine cannot give the test what it needs (e.g. huge pages): before the
 * test is ready, say what in the outfile ("SKIP: reason") and exit with ZDTM_SKIP_EXIT; the harness
 * reports the test as skipped with that reason (never as passed). */
#define ZDTM_SKIP_EXIT 77
void test_skip(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* Small helpers that do not use malloc (tests watch their heap). */
char *test_path(const char *suffix);                 /* outfile + suffix, static storage per call slot */
long read_whole(const char *path, char *buf, size_t size); /* -1 on error; NUL-terminated */
size_t read_full(int fd, void *buf, size_t n);       /* reads until n bytes, EOF or error; returns the count */
size_t recv_full(int fd, void *buf, size_t n, int flags); /* the same with recv(2) and its flags */
unsigned long test_tty_nr(void);                     /* tty_nr of /proc/self/stat: the controlling terminal */
char proc_state(pid_t pid);                          /* the state letter of /proc/PID/stat, '?' if gone */
void wait_proc_state(pid_t pid, char state);         /* polls until pid is in state (T, Z, ...) */
char expect_proc_state(pid_t pid, char state);       /* fail()s naming pid and both states if it differs */
uint64_t xorshift64(uint64_t *state);
void fill_pattern(void *p, size_t len, uint64_t seed);
/* Offset of the first byte that differs from the pattern, or -1 when all match. */
long check_pattern(const void *p, size_t len, uint64_t seed);
/* A file of npages pages at path (created or truncated), page pg holding the pattern of seed + pg,
 * built in buf (npages pages, left holding them); returns it open O_RDWR.  Setup fails
 * (test_abort) if it cannot be written. */
int test_pattern_file(const char *path, unsigned char *buf, size_t npages, uint64_t seed);
/* Reads that file back into buf: fail()s, saying why that is wrong, for each page that no longer
 * holds its pattern (and once if it cannot be read). */
void check_pattern_file(const char *path, unsigned char *buf, size_t npages, uint64_t seed, const char *why);

/* The value of field NAME ("VmFlags", "KernelPageSize", ...) in the /proc/self/smaps block of the
 * VMA that starts at addr, to the end of its line ("" when there is no such VMA or field). */
void smaps_field(const void *addr, const char *name, char *out, size_t size);

/* The /proc/self/maps line of the VMA that starts at addr, without device and inode (a restore
 * may get new ones: shmem, hugetlbfs): "start-end perms offset path" ("" when there is none). */
void maps_line(const void *addr, char *out, size_t size);

/* rt_tgsigqueueinfo: signal sig queued to thread tid of this process as sigqueue(3) would (si_code
 * SI_QUEUE, our pid and uid, the value); 0, or -1 with errno. */
int queue_to_thread(pid_t tid, int sig, int value);

/* Try to touch one byte: returns 0 if it worked, SIGSEGV/SIGBUS if it faulted. */
int probe_read(const volatile void *addr);
int probe_write(volatile void *addr);

#endif
