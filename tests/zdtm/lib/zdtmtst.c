/*
 * zdtmtst.c: the zdtm protocol (daemonize, pidfile, SIGTERM, verdict) and small helpers that the
 * C tests share.  See zdtmtst.h for the protocol.  Nothing here calls malloc, so that tests which
 * check their heap (brk) see only their own allocations.
 */
#include "zdtmtst.h"

#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

const char *zdtm_outfile;
static const char *pidfile;
int zdtm_break;
volatile sig_atomic_t zdtm_stop;
void (*zdtm_sigterm_hook)(siginfo_t *info, ucontext_t *uc);

static int ready_fd = -1;
static int nr_failed;
static char first_failure[512];

static void write_all(int fd, const char *buf, size_t len)
{
	while (len) {
		ssize_t n = write(fd, buf, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return;
		buf += n;
		len -= (size_t)n;
	}
}

static void vline(const char *prefix, const char *fmt, va_list ap, char *copy, size_t copy_size)
{
	char buf[1024];
	int n = snprintf(buf, sizeof(buf), "%s", prefix);
	n += vsnprintf(buf + n, sizeof(buf) - (size_t)n - 1, fmt, ap);
	if (n > (int)sizeof(buf) - 2)
		n = (int)sizeof(buf) - 2;
	if (copy)
		snprintf(copy, copy_size, "%s", buf + strlen(prefix));
	buf[n++] = '\n';
	write_all(1, buf, (size_t)n);
}

void test_msg(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vline("", fmt, ap, NULL, 0);
	va_end(ap);
}

void test_text(const char *text)
{
	write_all(1, text, strlen(text));
}

void fail(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vline("check failed: ", fmt, ap, nr_failed ? NULL : first_failure, sizeof(first_failure));
	va_end(ap);
	nr_failed++;
}

int test_failed(void)
{
	return nr_failed;
}

int test_finish(void)
{
	if (nr_failed)
		test_msg("FAIL: %d check(s) failed, first: %s", nr_failed, first_failure);
	else
		test_msg("PASS");
	return 0;
}

void test_abort(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vline("FAIL: setup: ", fmt, ap, NULL, 0);
	va_end(ap);
	_exit(1);
}

void test_skip(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vline("SKIP: ", fmt, ap, NULL, 0);
	va_end(ap);
	_exit(ZDTM_SKIP_EXIT);
}

static void on_sigterm(int sig, siginfo_t *info, void *uc)
{
	(void)sig;
	zdtm_stop = 1;
	if (zdtm_sigterm_hook)
		zdtm_sigterm_hook(info, (ucontext_t *)uc);
}

static void parse_args(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		if (!strncmp(argv[i], "--pidfile=", 10))
			pidfile = argv[i] + 10;
		else if (!strncmp(argv[i], "--outfile=", 10))
			zdtm_outfile = argv[i] + 10;
	}
	if (!pidfile || !zdtm_outfile) {
		fprintf(stderr, "usage: %s --pidfile=FILE --outfile=FILE\n", argv[0]);
		exit(2);
	}
}

/* Parent side: wait for the child's "ready" byte and then for EOF, which means the child has
 * closed its end (so no harness can see that pipe in the child's fd table); exit 0 if ready, 1 if
 * the child died first. */
static void wait_ready(pid_t child, int rfd)
{
	char c;
	ssize_t n;
	int status = 0, ready = 0;

	for (;;) {
		n = read(rfd, &c, 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		ready |= c == 'R';
	}
	if (ready)
		_exit(0);
	waitpid(child, &status, 0);
	if (WIFEXITED(status) && WEXITSTATUS(status) == ZDTM_SKIP_EXIT)
		_exit(ZDTM_SKIP_EXIT);
	fprintf(stderr, "zdtm: test %d died before it was ready (status 0x%x), see %s\n", child, status,
		zdtm_outfile);
	_exit(1);
}

static void become_daemon(void)
{
	int out, null;

	setsid();
	out = open(zdtm_outfile, O_WRONLY | O_CREAT | O_APPEND, 0644);
	null = open("/dev/null", O_RDWR);
	if (out < 0 || null < 0)
		_exit(3);
	dup2(null, 0);
	dup2(out, 1);
	dup2(out, 2);
	if (out > 2)
		close(out);
	if (null > 2)
		close(null);
}

void test_init(int argc, char **argv)
{
	struct sigaction sa;
	int p[2];
	pid_t pid;

	parse_args(argc, argv);
	zdtm_break = getenv("ZDTM_BREAK") != NULL;
	if (pipe(p))
		exit(3);
	pid = fork();
	if (pid < 0)
		exit(3);
	if (pid > 0) {
		close(p[1]);
		wait_ready(pid, p[0]);
	}
	close(p[0]);
	ready_fd = p[1];
	become_daemon();

	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_sigterm;
	sa.sa_flags = SA_SIGINFO;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGTERM, &sa, NULL))
		test_abort("sigaction(SIGTERM): %s", strerror(errno));
}

void test_daemon(void)
{
	char tmp[4096], buf[32];
	int fd, n;

	snprintf(tmp, sizeof(tmp), "%s.tmp", pidfile);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0)
		test_abort("open %s: %s", tmp, strerror(errno));
	n = snprintf(buf, sizeof(buf), "%d\n", getpid());
	write_all(fd, buf, (size_t)n);
	close(fd);
	if (rename(tmp, pidfile))
		test_abort("rename %s: %s", tmp, strerror(errno));
	/* The pipe to the parent must be gone before any dump: it is not part of the test's state. */
	write_all(ready_fd, "R", 1);
	close(ready_fd);
	ready_fd = -1;
}

void test_forked_child(void)
{
	if (ready_fd >= 0)
		close(ready_fd);
	ready_fd = -1;
}

static volatile sig_atomic_t usr1_seen;
static sigset_t usr1_wait_mask;

static void on_usr1(int sig)
{
	(void)sig;
	usr1_seen = 1;
}

void test_usr1_init(void)
{
	sigset_t block;

	signal(SIGUSR1, on_usr1);
	sigemptyset(&block);
	sigaddset(&block, SIGUSR1);
	sigprocmask(SIG_BLOCK, &block, &usr1_wait_mask);
}

void test_usr1_wait(void)
{
	while (!usr1_seen)
		sigsuspend(&usr1_wait_mask);
	usr1_seen = 0;
}

pid_t test_fork(void)
{
	pid_t pid = fork();

	if (pid < 0)
		test_abort("fork: %s", strerror(errno));
	if (pid == 0)
		test_forked_child();
	return pid;
}

int test_reap(pid_t pid, const char *who)
{
	int status;

	if (waitpid(pid, &status, 0) != pid) {
		fail("%s (pid %d): waitpid: %s", who, pid, strerror(errno));
		return -1;
	}
	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	fail("%s (pid %d) did not exit: wait status 0x%x", who, pid, status);
	return -1;
}

void test_write_pids(const pid_t *pids, int n)
{
	char buf[32];
	int fd = open(test_path(".pids"), O_WRONLY | O_CREAT | O_TRUNC, 0644);

	if (fd < 0)
		test_abort("open %s: %s", test_path(".pids"), strerror(errno));
	for (int i = 0; i < n; i++)
		write_all(fd, buf, (size_t)snprintf(buf, sizeof(buf), "%d\n", pids[i]));
	close(fd);
}

void test_waitsig(void)
{
	sigset_t mask;

	sigprocmask(SIG_SETMASK, NULL, &mask);
	sigdelset(&mask, SIGTERM);
	while (!zdtm_stop)
		sigsuspend(&mask);
}

char *test_path(const char *suffix)
{
	static char slots[8][4096];
	static int next;
	char *p = slots[next++ % 8];

	snprintf(p, 4096, "%s%s", zdtm_outfile, suffix);
	return p;
}

unsigned long test_tty_nr(void)
{
	char buf[1024];
	unsigned long v = 0;
	if (read_whole("/proc/self/stat", buf, sizeof(buf)) < 0)
		return 0;
	char *p = strrchr(buf, ')');
	if (!p || sscanf(p + 2, "%*c %*d %*d %*d %lu", &v) != 1)
		return 0;
	return v;
}

size_t read_full(int fd, void *buf, size_t n)
{
	size_t got = 0;

	while (got < n) {
		ssize_t r = read(fd, (char *)buf + got, n - got);
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	return got;
}

size_t recv_full(int fd, void *buf, size_t n, int flags)
{
	size_t got = 0;

	while (got < n) {
		ssize_t r = recv(fd, (char *)buf + got, n - got, flags);
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	return got;
}

long read_whole(const char *path, char *buf, size_t size)
{
	long total = 0;
	int fd = open(path, O_RDONLY);

	if (fd < 0)
		return -1;
	while ((size_t)total < size - 1) {
		ssize_t n = read(fd, buf + total, size - 1 - (size_t)total);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			close(fd);
			return -1;
		}
		if (n == 0)
			break;
		total += n;
	}
	close(fd);
	buf[total] = 0;
	return total;
}

char proc_state(pid_t pid)
{
	char path[64], buf[512], *p;

	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	if (read_whole(path, buf, sizeof(buf)) < 0 || !(p = strrchr(buf, ')')))
		return '?';
	return p[2];
}

void wait_proc_state(pid_t pid, char state)
{
	while (proc_state(pid) != state)
		usleep(1000);
}

char expect_proc_state(pid_t pid, char state)
{
	char st = proc_state(pid);

	if (st != state)
		fail("process %d is in state %c, not %c", pid, st, state);
	return st;
}

uint64_t xorshift64(uint64_t *state)
{
	uint64_t x = *state;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return *state = x;
}

void fill_pattern(void *p, size_t len, uint64_t seed)
{
	uint64_t st = seed | 1, *w = p;
	size_t i;

	for (i = 0; i < len / 8; i++)
		w[i] = xorshift64(&st);
	for (i = len & ~7UL; i < len; i++)
		((unsigned char *)p)[i] = (unsigned char)xorshift64(&st);
}

long check_pattern(const void *p, size_t len, uint64_t seed)
{
	uint64_t st = seed | 1;
	const uint64_t *w = p;
	size_t i;

	for (i = 0; i < len / 8; i++)
		if (w[i] != xorshift64(&st)) {
			for (size_t b = 0; b < 8; b++) {
				uint64_t want = st;
				if (((const unsigned char *)&w[i])[b] != ((unsigned char *)&want)[b])
					return (long)(i * 8 + b);
			}
		}
	for (i = len & ~7UL; i < len; i++)
		if (((const unsigned char *)p)[i] != (unsigned char)xorshift64(&st))
			return (long)i;
	return -1;
}

int queue_to_thread(pid_t tid, int sig, int value)
{
	siginfo_t si;

	memset(&si, 0, sizeof(si));
	si.si_signo = sig;
	si.si_code = SI_QUEUE;
	si.si_pid = getpid();
	si.si_uid = getuid();
	si.si_value.sival_int = value;
	return (int)syscall(SYS_rt_tgsigqueueinfo, getpid(), tid, sig, &si);
}

int test_pattern_file(const char *path, unsigned char *buf, size_t npages, uint64_t seed)
{
	size_t size = npages * PAGE_SIZE;
	int fd;

	for (size_t pg = 0; pg < npages; pg++)
		fill_pattern(buf + pg * PAGE_SIZE, PAGE_SIZE, seed + pg);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || write(fd, buf, size) != (ssize_t)size)
		test_abort("cannot write %s: %s", path, strerror(errno));
	return fd;
}

void check_pattern_file(const char *path, unsigned char *buf, size_t npages, uint64_t seed, const char *why)
{
	size_t size = npages * PAGE_SIZE;
	int fd = open(path, O_RDONLY);

	if (fd < 0 || pread(fd, buf, size, 0) != (ssize_t)size) {
		fail("cannot read back %s: %s", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return;
	}
	close(fd);
	for (size_t pg = 0; pg < npages; pg++)
		if (check_pattern(buf + pg * PAGE_SIZE, PAGE_SIZE, seed + pg) >= 0)
			fail("file page %zu changed: %s", pg, why);
}

static sigjmp_buf probe_env;
static volatile sig_atomic_t probe_active;

static void on_probe_fault(int sig)
{
	if (probe_active)
		siglongjmp(probe_env, sig);
	signal(sig, SIG_DFL);
	raise(sig);
}

static int probe(volatile void *addr, int do_write)
{
	struct sigaction sa, old_segv, old_bus;
	int sig;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_probe_fault;
	sa.sa_flags = SA_NODEFER;
	sigaction(SIGSEGV, &sa, &old_segv);
	sigaction(SIGBUS, &sa, &old_bus);
	sig = sigsetjmp(probe_env, 1);
	if (!sig) {
		probe_active = 1;
		if (do_write)
			*(volatile char *)addr = *(volatile char *)addr;
		else
			(void)*(const volatile char *)addr;
	}
	probe_active = 0;
	sigaction(SIGSEGV, &old_segv, NULL);
	sigaction(SIGBUS, &old_bus, NULL);
	return sig;
}

int probe_read(const volatile void *addr)
{
	return probe((volatile void *)addr, 0);
}

int probe_write(volatile void *addr)
{
	return probe(addr, 1);
}

void smaps_field(const void *addr, const char *name, char *out, size_t size)
{
	static char smaps[1 << 20];
	char want[64], *block, *end, *f;

	out[0] = 0;
	snprintf(want, sizeof(want), "\n%lx-", (unsigned long)addr);
	smaps[0] = '\n';
	if (read_whole("/proc/self/smaps", smaps + 1, sizeof(smaps) - 1) < 0 || !(block = strstr(smaps, want)))
		return;
	/* VmFlags is the last line of a block */
	end = strstr(block, "\nVmFlags:");
	end = end ? end + 1 + strcspn(end + 1, "\n") : block + strlen(block);
	snprintf(want, sizeof(want), "\n%s:", name);
	f = strstr(block, want);
	if (!f || f >= end)
		return;
	f += strlen(want);
	f += strspn(f, " ");
	snprintf(out, size, "%.*s", (int)strcspn(f, "\n"), f);
}

void maps_line(const void *addr, char *out, size_t size)
{
	static char maps[1 << 20];
	char want[64], perms[8], off[32], path[256] = "", line[512], *l;
	unsigned long s, e;

	out[0] = 0;
	snprintf(want, sizeof(want), "\n%lx-", (unsigned long)addr);
	maps[0] = '\n';
	if (read_whole("/proc/self/maps", maps + 1, sizeof(maps) - 1) < 0 || !(l = strstr(maps, want)))
		return;
	snprintf(line, sizeof(line), "%.*s", (int)strcspn(l + 1, "\n"), l + 1);
	if (sscanf(line, "%lx-%lx %7s %31s %*s %*s %255[^\n]", &s, &e, perms, off, path) >= 4)
		snprintf(out, size, "%lx-%lx %s %s %s", s, e, perms, off, path);
}
