/* Target for tests/unit/test_files*.py: sets up open files of one kind, waits for SIGUSR1
 * (the test dumps and restores it meanwhile), then checks every fd and writes "ok" or the
 * first failure into RESULT.  Usage: files_target RESULT MODE [ARG]. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t go;
static const char *result;

static void on_usr1(int s) { (void)s; go = 1; }

static void report(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
#include <stdarg.h>
static void report(const char *fmt, ...)
{
	char tmp[4096];
	va_list ap;
	snprintf(tmp, sizeof(tmp), "%s.tmp", result);
	FILE *f = fopen(tmp, "w");
	va_start(ap, fmt);
	vfprintf(f, fmt, ap);
	va_end(ap);
	fclose(f);
	rename(tmp, result);
	exit(0);
}

static unsigned char pat(size_t i, int seed) { return (unsigned char)(i * 131 + seed + i / 4096); }

static void fill(unsigned char *b, size_t n, int seed) { for (size_t i = 0; i < n; i++) b[i] = pat(i, seed); }

static void check_bytes(int fd, size_t n, int seed, const char *what)
{
	unsigned char *b = malloc(n + 1);
	size_t got = 0;
	while (got < n) {
		ssize_t r = read(fd, b + got, n - got);
		if (r <= 0)
			report("%s: read returned %zd (%s) after %zu of %zu bytes\n", what, r, strerror(errno), got, n);
		got += r;
	}
	for (size_t i = 0; i < n; i++)
		if (b[i] != pat(i, seed))
			report("%s: byte %zu is %u, want %u\n", what, i, b[i], pat(i, seed));
	free(b);
}

static void write_all(int fd, const unsigned char *b, size_t n)
{
	while (n) {
		ssize_t w = write(fd, b, n);
		if (w <= 0) { perror("write"); exit(2); }
		b += w; n -= w;
	}
}

static void expect_empty(int fd, const char *what)
{
	int n = -1;
	ioctl(fd, FIONREAD, &n);
	if (n != 0)
		report("%s: %d bytes left over\n", what, n);
}

static void wait_go(void)
{
	char tmp[4096], path[4096];
	/* made under another name and renamed once closed: a test that sees RESULT.ready may dump
	 * at once, and must not find the ready file's fd still open */
	snprintf(path, sizeof(path), "%s.ready", result);
	snprintf(tmp, sizeof(tmp), "%s.ready.new", result);
	close(open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644));
	rename(tmp, path);
	while (!go) {
		struct timespec ts = { 0, 10 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
}

/* pipe N: a pipe sized for N bytes holding N bytes, both ends here (write end non-blocking) */
static void mode_pipe(size_t n)
{
	int p[2];
	unsigned char *b = malloc(n);
	if (pipe(p)) exit(2);
	int sz = n < 65536 ? 65536 : (int)n;
	if (fcntl(p[1], F_SETPIPE_SZ, sz) < 0) { perror("F_SETPIPE_SZ"); exit(2); }
	sz = fcntl(p[1], F_GETPIPE_SZ);
	fill(b, n, 7);
	write_all(p[1], b, n);
	fcntl(p[1], F_SETFL, O_NONBLOCK);
	int dupw = dup(p[1]);
	wait_go();
	if (fcntl(p[0], F_GETPIPE_SZ) != sz)
		report("pipe size %d, want %d\n", fcntl(p[0], F_GETPIPE_SZ), sz);
	if (!(fcntl(p[1], F_GETFL) & O_NONBLOCK) || (fcntl(p[0], F_GETFL) & O_NONBLOCK))
		report("pipe flags lost\n");
	if ((fcntl(p[1], F_GETFL) & O_ACCMODE) != O_WRONLY || (fcntl(p[0], F_GETFL) & O_ACCMODE) != O_RDONLY)
		report("pipe ends swapped\n");
	check_bytes(p[0], n, 7, "pipe");
	expect_empty(p[0], "pipe");
	/* the write end still writes into the same pipe, also through its dup */
	write_all(dupw, (const unsigned char *)"zz", 2);
	char z[2];
	if (read(p[0], z, 2) != 2 || z[0] != 'z')
		report("pipe: write end not connected to read end\n");
	report("ok\n");
}

/* fifo DIR: FIFOs opened read-only + write-only (data in flight) and one read-write alone */
static void mode_fifo(const char *dir)
{
	char a[4096], b[4096];
	unsigned char buf[100000];
	snprintf(a, sizeof(a), "%s/fifo-a", dir);
	snprintf(b, sizeof(b), "%s/fifo-b", dir);
	if (mkfifo(a, 0600) || mkfifo(b, 0640)) exit(2);
	int rd = open(a, O_RDONLY | O_NONBLOCK);
	int wr = open(a, O_WRONLY);
	int rw = open(b, O_RDWR);
	fcntl(rd, F_SETFL, 0);
	fill(buf, sizeof(buf), 3);
	write_all(wr, buf, 30000);
	write_all(rw, buf, 1000);
	wait_go();
	if ((fcntl(rd, F_GETFL) & O_ACCMODE) != O_RDONLY || (fcntl(wr, F_GETFL) & O_ACCMODE) != O_WRONLY ||
	    (fcntl(rw, F_GETFL) & O_ACCMODE) != O_RDWR)
		report("fifo access modes lost\n");
	check_bytes(rd, 30000, 3, "fifo read end");
	expect_empty(rd, "fifo read end");
	check_bytes(rw, 1000, 3, "fifo rw");
	write_all(wr, (const unsigned char *)"q", 1);
	char q;
	if (read(rd, &q, 1) != 1 || q != 'q')
		report("fifo: ends not connected\n");
	report("ok\n");
}

/* ghost PATH SIZE: a file of SIZE bytes, read-write at an offset, unlinked; plus a dup and a
 * second read-only open of it, and a shared mapping of it */
static void mode_ghost(const char *path, size_t n)
{
	unsigned char *b = malloc(n);
	fill(b, n, 11);
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0640);
	write_all(fd, b, n);
	int ro = open(path, O_RDONLY);
	lseek(fd, n / 3, SEEK_SET);
	lseek(ro, 17, SEEK_SET);
	unlink(path);
	wait_go();
	struct stat st;
	fstat(fd, &st);
	if ((size_t)st.st_size != n || st.st_nlink != 0 || (st.st_mode & 0777) != 0640)
		report("ghost: size %lld nlink %lu mode %o\n", (long long)st.st_size, (unsigned long)st.st_nlink, st.st_mode & 0777);
	if (lseek(fd, 0, SEEK_CUR) != (off_t)(n / 3) || lseek(ro, 0, SEEK_CUR) != 17)
		report("ghost: offsets lost\n");
	struct stat st2;
	fstat(ro, &st2);
	if (st2.st_ino != st.st_ino)
		report("ghost: two fds no longer on one file\n");
	lseek(fd, 0, SEEK_SET);
	check_bytes(fd, n, 11, "ghost");
	if (access(path, F_OK) == 0)
		report("ghost: %s exists again\n", path);
	report("ok\n");
}

/* locks DIR: flock on DIR/flock, POSIX write lock on bytes 10..19 and read lock from 100 to EOF of
 * DIR/posix, OFD write lock on DIR/ofd (the test probes them from outside) */
static void mode_locks(const char *dir)
{
	char p[4096];
	snprintf(p, sizeof(p), "%s/flock", dir);
	int a = open(p, O_RDWR | O_CREAT, 0600);
	snprintf(p, sizeof(p), "%s/posix", dir);
	int b = open(p, O_RDWR | O_CREAT, 0600);
	snprintf(p, sizeof(p), "%s/ofd", dir);
	int c = open(p, O_RDWR | O_CREAT, 0600);
	struct flock w = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 10, .l_len = 10 };
	struct flock r = { .l_type = F_RDLCK, .l_whence = SEEK_SET, .l_start = 100, .l_len = 0 };
	struct flock o = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0 };
	if (flock(a, LOCK_EX | LOCK_NB) || fcntl(b, F_SETLK, &w) || fcntl(b, F_SETLK, &r) ||
	    fcntl(c, F_OFD_SETLK, &o)) { perror("lock"); exit(2); }
	wait_go();
	/* still ours: taking them again from here succeeds */
	if (flock(a, LOCK_EX | LOCK_NB) || fcntl(c, F_OFD_SETLK, &o))
		report("locks: cannot take my own locks again: %s\n", strerror(errno));
	report("ok\n");
}

/* tree N FILE: a child reads N bytes in flight from a pipe the parent writes into, and both move
 * one shared offset of FILE (opened before the fork) */
static void mode_tree(size_t n, const char *path)
{
	int p[2], st;
	unsigned char *b = malloc(n);
	if (pipe(p)) exit(2);
	fcntl(p[1], F_SETPIPE_SZ, n < 65536 ? 65536 : (int)n);
	int f = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	pid_t kid = fork();
	if (kid == 0) {
		close(p[1]);
		while (!go) {
			struct timespec ts = { 0, 10 * 1000 * 1000 };
			nanosleep(&ts, NULL);
		}
		check_bytes(p[0], n, 5, "child's pipe");
		if (lseek(f, 0, SEEK_CUR) != 3)
			report("child: shared offset %lld, want 3\n", (long long)lseek(f, 0, SEEK_CUR));
		write(f, "kid", 3);
		_exit(0);
	}
	close(p[0]);
	fill(b, n, 5);
	fcntl(p[1], F_SETFL, O_NONBLOCK);
	size_t off = 0;
	while (off < n) {
		ssize_t w = write(p[1], b + off, n - off);
		if (w <= 0) { perror("pipe write"); exit(2); }
		off += w;
	}
	write(f, "mom", 3);
	wait_go();
	kill(kid, SIGUSR1);
	if (waitpid(kid, &st, 0) != kid || !WIFEXITED(st))
		report("child did not exit (status %#x)\n", st);
	if (access(result, F_OK) == 0)
		exit(0);                                /* the child reported a failure */
	if (lseek(f, 0, SEEK_CUR) != 6)
		report("parent: shared offset %lld, want 6\n", (long long)lseek(f, 0, SEEK_CUR));
	report("ok\n");
}

/* hardlink PATH OTHER: PATH, also linked as OTHER, opened at offset 5, then unlinked as PATH */
static void mode_hardlink(const char *path, const char *other)
{
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	write_all(fd, (const unsigned char *)"0123456789", 10);
	if (link(path, other)) exit(2);
	lseek(fd, 5, SEEK_SET);
	unlink(path);
	wait_go();
	struct stat a, b;
	fstat(fd, &a);
	if (stat(other, &b) || a.st_ino != b.st_ino || a.st_nlink != 1)
		report("hardlink: fd no longer on %s (nlink %lu)\n", other, (unsigned long)a.st_nlink);
	char c;
	if (lseek(fd, 0, SEEK_CUR) != 5 || read(fd, &c, 1) != 1 || c != '5')
		report("hardlink: offset lost\n");
	report("ok\n");
}

/* tty: a shell job on its terminal; after restore it must be on a terminal, in the foreground,
 * with the terminal's echo still off (the test turned it off before the dump) */
static void mode_tty(void)
{
	wait_go();
	struct termios t;
	if (!isatty(0) || !isatty(1))
		report("tty: fds 0/1 are no terminal\n");
	if (tcgetpgrp(0) != getpgrp())
		report("tty: not in the foreground (fg %d, mine %d)\n", tcgetpgrp(0), getpgrp());
	if (tcgetattr(0, &t) || (t.c_lflag & ECHO))
		report("tty: termios lost (lflag %#x)\n", t.c_lflag);
	write(1, "hello-tty\n", 10);
	report("ok\n");
}

/* mapghost PATH SIZE: PATH mapped shared and private (a private page changed), and open, then
 * unlinked; after restore the mappings hold the contents and the shared one is the fd's file */
static void mode_mapghost(const char *path, size_t n)
{
	unsigned char *b = malloc(n);
	fill(b, n, 9);
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	write_all(fd, b, n);
	unsigned char *sh = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	unsigned char *pr = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
	if (sh == MAP_FAILED || pr == MAP_FAILED) exit(2);
	pr[4096] = 'P';
	unlink(path);
	wait_go();
	for (size_t i = 0; i < n; i++) {
		unsigned char want = pat(i, 9);
		if (sh[i] != want)
			report("mapghost: shared byte %zu is %u, want %u\n", i, sh[i], want);
		if (i != 4096 && pr[i] != want)
			report("mapghost: private byte %zu is %u, want %u\n", i, pr[i], want);
	}
	if (pr[4096] != 'P')
		report("mapghost: private page lost its change\n");
	sh[10] = 'S';
	char c;
	if (pread(fd, &c, 1, 10) != 1 || c != 'S')
		report("mapghost: the shared mapping and the fd are no longer one file\n");
	report("ok\n");
}

/* misc DIR: cwd in DIR/sub; DIR/f opened read-only, write-only, read-write and O_APPEND at various
 * offsets, a dup, a directory fd, an O_PATH fd, /dev/null, /dev/zero, /dev/urandom, close-on-exec */
static int o_rd, o_wr, o_rw, o_ap, o_dup, o_dir, o_path, o_null, o_zero, o_rand;
static void expect_fd(int fd, int acc, off_t off, int cloexec, const char *what)
{
	int fl = fcntl(fd, F_GETFL), fdfl = fcntl(fd, F_GETFD);
	if (fl < 0)
		report("%s: fd %d closed\n", what, fd);
	if ((fl & (O_ACCMODE | O_APPEND | O_NONBLOCK | O_PATH)) != acc)
		report("%s: flags %#o, want %#o\n", what, fl & (O_ACCMODE | O_APPEND | O_NONBLOCK | O_PATH), acc);
	if (off >= 0 && lseek(fd, 0, SEEK_CUR) != off)
		report("%s: offset %lld, want %lld\n", what, (long long)lseek(fd, 0, SEEK_CUR), (long long)off);
	if (!!(fdfl & FD_CLOEXEC) != cloexec)
		report("%s: close-on-exec %d, want %d\n", what, !!(fdfl & FD_CLOEXEC), cloexec);
}

static void mode_misc(const char *dir)
{
	char p[4096];
	unsigned char b[10000];
	snprintf(p, sizeof(p), "%s/sub", dir);
	mkdir(p, 0700);
	if (chdir(p)) exit(2);
	snprintf(p, sizeof(p), "%s/f", dir);
	o_rw = open(p, O_RDWR | O_CREAT, 0644);
	fill(b, sizeof(b), 1);
	write_all(o_rw, b, sizeof(b));
	o_rd = open(p, O_RDONLY | O_CLOEXEC);
	o_wr = open(p, O_WRONLY | O_NONBLOCK);
	o_ap = open(p, O_WRONLY | O_APPEND);
	lseek(o_rd, 123, SEEK_SET);
	lseek(o_wr, 4567, SEEK_SET);
	lseek(o_rw, 9999, SEEK_SET);
	o_dup = dup(o_rd);
	o_dir = open(dir, O_RDONLY | O_DIRECTORY);
	o_path = open(p, O_PATH);
	o_null = open("/dev/null", O_WRONLY);
	o_zero = open("/dev/zero", O_RDONLY);
	o_rand = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
	wait_go();
	expect_fd(o_rd, O_RDONLY, 123, 1, "read-only file");
	expect_fd(o_dup, O_RDONLY, 123, 0, "dup of it");
	expect_fd(o_wr, O_WRONLY | O_NONBLOCK, 4567, 0, "write-only file");
	expect_fd(o_rw, O_RDWR, 9999, 0, "read-write file");
	expect_fd(o_ap, O_WRONLY | O_APPEND, -1, 0, "append-only file");
	expect_fd(o_dir, O_RDONLY, -1, 0, "directory");
	expect_fd(o_path, O_PATH, -1, 0, "O_PATH fd");
	expect_fd(o_null, O_WRONLY, -1, 0, "/dev/null");
	expect_fd(o_zero, O_RDONLY, -1, 0, "/dev/zero");
	expect_fd(o_rand, O_RDONLY, -1, 1, "/dev/urandom");
	lseek(o_rd, 0, SEEK_SET);
	check_bytes(o_dup, 100, 1, "dup shares the offset");
	if (lseek(o_rd, 0, SEEK_CUR) != 100)
		report("dup does not share the offset\n");
	write_all(o_ap, (const unsigned char *)"A", 1);
	struct stat st;
	fstat(o_rw, &st);
	if (st.st_size != sizeof(b) + 1)
		report("append did not append (size %lld)\n", (long long)st.st_size);
	char cwd[4096];
	snprintf(p, sizeof(p), "%s/sub", dir);
	if (!getcwd(cwd, sizeof(cwd)) || strcmp(cwd, p))
		report("cwd is %s, want %s\n", cwd, p);
	int z;
	if (read(o_zero, &z, 4) != 4 || z != 0 || write(o_null, "x", 1) != 1 || read(o_rand, &z, 4) != 4)
		report("devices do not work\n");
	if (fstatat(o_dir, "f", &st, 0))
		report("directory fd does not point at %s\n", dir);
	report("ok\n");
}

/* pty: a pty pair (echo off, 33x101) with bytes waiting on both sides: "from-slave\n" written at the
 * slave (the master reads "from-slave\r\n"), "line1\npart" written at the master */
static void mode_pty(void)
{
	int m = posix_openpt(O_RDWR | O_NOCTTY);
	if (m < 0 || grantpt(m) || unlockpt(m)) exit(2);
	char name[64];
	snprintf(name, sizeof(name), "%s", ptsname(m));
	int s = open(name, O_RDWR | O_NOCTTY);
	struct termios t;
	tcgetattr(s, &t);
	t.c_lflag &= ~ECHO;
	tcsetattr(s, TCSANOW, &t);
	struct winsize ws = { .ws_row = 33, .ws_col = 101 };
	ioctl(m, TIOCSWINSZ, &ws);
	write_all(s, (const unsigned char *)"from-slave\n", 11);
	write_all(m, (const unsigned char *)"line1\npart", 10);
	wait_go();
	if (strcmp(ptsname(m), name))
		report("pty: slave is %s, was %s\n", ptsname(m), name);
	struct winsize w2;
	if (ioctl(s, TIOCGWINSZ, &w2) || w2.ws_row != 33 || w2.ws_col != 101)
		report("pty: window size %dx%d\n", w2.ws_row, w2.ws_col);
	if (tcgetattr(s, &t) || (t.c_lflag & ECHO) || !(t.c_lflag & ICANON))
		report("pty: termios lost\n");
	char b[100];
	fcntl(m, F_SETFL, O_NONBLOCK);
	ssize_t n = read(m, b, sizeof(b));
	if (n != 12 || memcmp(b, "from-slave\r\n", 12))
		report("pty: master read %zd bytes: %.*s\n", n, (int)(n > 0 ? n : 0), b);
	n = read(s, b, sizeof(b));
	if (n != 6 || memcmp(b, "line1\n", 6))
		report("pty: slave read %zd bytes: %.*s\n", n, (int)(n > 0 ? n : 0), b);
	write_all(m, (const unsigned char *)"\n", 1);
	n = read(s, b, sizeof(b));
	if (n < 4 || memcmp(b, "part", 4))
		report("pty: slave's partial line lost (%zd bytes)\n", n);
	/* the pair is still one: master to slave */
	report("ok\n");
}

/* ptytree: the parent holds a pty master, its child runs on the slave as its session's controlling
 * terminal; "hi\n" from the child waits at the master, "cmd\n" from the parent at the slave */
static void mode_ptytree(void)
{
	int m = posix_openpt(O_RDWR | O_NOCTTY), st;
	if (m < 0 || grantpt(m) || unlockpt(m)) exit(2);
	char name[64], b[200];
	snprintf(name, sizeof(name), "%s", ptsname(m));
	int ready[2];
	if (pipe(ready)) exit(2);
	pid_t kid = fork();
	if (kid == 0) {
		close(m);
		setsid();
		int s = open(name, O_RDWR);           /* the session's controlling terminal now */
		dup2(s, 0); dup2(s, 1); dup2(s, 2);
		close(s);
		close(ready[0]);
		write_all(1, (const unsigned char *)"hi\n", 3);
		close(ready[1]);
		while (!go) {
			struct timespec ts = { 0, 10 * 1000 * 1000 };
			nanosleep(&ts, NULL);
		}
		int ok = isatty(0) && tcgetpgrp(0) == getpgrp() && getsid(0) == getpid();
		ssize_t n = read(0, b, sizeof(b));
		ok = ok && n == 4 && !memcmp(b, "cmd\n", 4);
		write_all(1, (const unsigned char *)(ok ? "ok-child\n" : "bad-child\n"), ok ? 9 : 10);
		_exit(ok ? 0 : 1);
	}
	close(ready[1]);
	read(ready[0], b, 1);                    /* the child has written */
	close(ready[0]);
	write_all(m, (const unsigned char *)"cmd\n", 4);
	wait_go();
	kill(kid, SIGUSR1);
	if (waitpid(kid, &st, 0) != kid || !WIFEXITED(st) || WEXITSTATUS(st))
		report("ptytree: child failed (status %#x)\n", st);
	size_t got = 0;
	fcntl(m, F_SETFL, O_NONBLOCK);
	for (;;) {
		ssize_t n = read(m, b + got, sizeof(b) - 1 - got);
		if (n <= 0) break;
		got += n;
	}
	b[got] = 0;
	if (strcmp(b, "hi\r\ncmd\r\nok-child\r\n"))     /* cmd was echoed before the dump */
		report("ptytree: master read '%s'\n", b);
	report("ok\n");
}

int main(int argc, char **argv)
{
	if (argc < 3)
		return 2;
	result = argv[1];
	signal(SIGUSR1, on_usr1);
	if (!strcmp(argv[2], "pipe"))
		mode_pipe(strtoul(argv[3], NULL, 0));
	else if (!strcmp(argv[2], "fifo"))
		mode_fifo(argv[3]);
	else if (!strcmp(argv[2], "tree"))
		mode_tree(strtoul(argv[3], NULL, 0), argv[4]);
	else if (!strcmp(argv[2], "hardlink"))
		mode_hardlink(argv[3], argv[4]);
	else if (!strcmp(argv[2], "tty"))
		mode_tty();
	else if (!strcmp(argv[2], "mapghost"))
		mode_mapghost(argv[3], strtoul(argv[4], NULL, 0));
	else if (!strcmp(argv[2], "misc"))
		mode_misc(argv[3]);
	else if (!strcmp(argv[2], "pty"))
		mode_pty();
	else if (!strcmp(argv[2], "ptytree"))
		mode_ptytree();
	else if (!strcmp(argv[2], "locks"))
		mode_locks(argv[3]);
	else if (!strcmp(argv[2], "ghost"))
		mode_ghost(argv[3], strtoul(argv[4], NULL, 0));
	return 2;
}
