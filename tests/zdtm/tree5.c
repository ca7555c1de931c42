/*
 * tree5: a tree of 5 processes (root -> a, b; a -> c, d) holding memory, files and pipes, the
 * victim of the fault-point and kill-at-any-moment tests (test_faults.py).  Each process i has
 * 2 MiB of anonymous memory filled with a pattern seeded by i, its own open description of the
 * shared file OUTFILE.data at offset 1000*i + 7, and (but the root) the write end of a pipe to its
 * parent into which it wrote one ready byte (read at once) and 3000 bytes before the dump.  The root also holds an unlinked file
 * (a ghost on restore) with 8 KiB of pattern and a flock (LOCK_EX) on its own open of OUTFILE.data
 * (dumped with --file-locks: desc.py).  Process b (2) also holds one end of a unix stream socket
 * pair whose other end the root holds, with 2000 bytes it sent queued in it.  After SIGTERM the root sends SIGUSR1 down the tree:
 * each process checks its memory and file offset (the root also that another open of the file
 * finds the flock held), reads its children's 3000 bytes, waits for them
 * and exits with the number of bad processes in its subtree; the root adds them up.
 */
#include "lib/zdtmtst.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define MEM (2UL << 20)
#define PIPED 3000
#define GHOST 8192
#define NPROC 5
#define SOCKETED 2000

static char *mem;
static int data_fd, ghost_fd = -1, ghost_held = -1;
static pid_t kids[2];
static int kid_pipes[2], nkids, up_fd = -1;
static int sock_down = -1, sock_up = -1;   /* the root's and b's ends of their socket pair */

/* Memory, file and ghost of process idx set up; returns nothing, aborts the process on error. */
static void setup(int idx)
{
	mem = mmap(NULL, MEM, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED)
		_exit(100);
	fill_pattern(mem, MEM, 0x5000 + idx);
	data_fd = open(test_path(".data"), O_RDWR);
	if (data_fd < 0 || lseek(data_fd, 1000 * idx + 7, SEEK_SET) < 0)
		_exit(101);
}

static int own_bad(int idx)
{
	static char buf[GHOST];
	int bad = 0;
	long at = check_pattern(mem, MEM, 0x5000 + idx);
	if (at >= 0) {
		test_msg("process %d: memory differs at byte %ld", idx, at);
		bad = 1;
	}
	off_t pos = lseek(data_fd, 0, SEEK_CUR);
	if (pos != 1000 * idx + 7) {
		test_msg("process %d: file offset %ld, was %d", idx, (long)pos, 1000 * idx + 7);
		bad = 1;
	}
	if (idx == 0) {
		int other = open(test_path(".data"), O_RDONLY);
		if (other < 0 || flock(other, LOCK_EX | LOCK_NB) == 0 || errno != EWOULDBLOCK) {
			test_msg("the root's flock is not held");
			bad = 1;
		}
		if (other >= 0)
			close(other);
	}
	if (ghost_fd >= 0 && (pread(ghost_fd, buf, GHOST, 0) != GHOST || check_pattern(buf, GHOST, 0x6666) >= 0)) {
		test_msg("process %d: the unlinked file's content differs", idx);
		bad = 1;
	}
	return bad;
}

/* Read each child's bytes, tell it to check, collect its count of bad processes. */
static int collect(void)
{
	static char buf[PIPED];
	int bad = 0, status;
	for (int i = 0; i < nkids; i++) {
		size_t got = read_full(kid_pipes[i], buf, PIPED);
		if (got != PIPED || check_pattern(buf, PIPED, 0x7000 + kids[i] % 1000) >= 0) {
			test_msg("pipe from %d: %zu bytes or wrong content", kids[i], got);
			bad++;
		}
		kill(kids[i], SIGUSR1);
	}
	if (sock_down >= 0) {
		size_t got = recv_full(sock_down, buf, SOCKETED, MSG_DONTWAIT);
		if (got != SOCKETED || check_pattern(buf, SOCKETED, 0x8000) >= 0) {
			test_msg("socket from process 2: %zu bytes or wrong content", got);
			bad++;
		}
	}
	for (int i = 0; i < nkids; i++) {
		if (waitpid(kids[i], &status, 0) != kids[i] || !WIFEXITED(status)) {
			test_msg("child %d ended with status 0x%x", kids[i], status);
			bad += 3;
		} else {
			bad += WEXITSTATUS(status);
		}
	}
	return bad;
}

static void process(int idx);

/* The kid's pid appended to OUTFILE.pids (the harness's list of the tree). */
static void register_pid(void)
{
	char line[32];
	int fd = open(test_path(".pids"), O_WRONLY | O_APPEND | O_CREAT, 0600);
	int n = snprintf(line, sizeof(line), "%d\n", getpid());
	if (fd < 0 || write(fd, line, n) != n)
		_exit(106);
	close(fd);
}

static void fork_kid(int idx)
{
	int p[2], sv[2] = { -1, -1 };
	if (pipe(p) || (idx == 2 && socketpair(AF_UNIX, SOCK_STREAM, 0, sv)))
		_exit(102);
	pid_t pid = test_fork();
	if (pid == 0) {
		close(p[0]);
		if (ghost_held >= 0)
			close(ghost_held);
		if (up_fd >= 0)
			close(up_fd);   /* the parent's own pipe up: only the parent writes to it */
		up_fd = p[1];
		for (int i = 0; i < nkids; i++)
			close(kid_pipes[i]);
		nkids = 0;
		if (sock_down >= 0)
			close(sock_down);
		sock_down = -1;
		if (sv[0] >= 0) {
			close(sv[0]);
			sock_up = sv[1];
		}
		process(idx);
	}
	close(p[1]);
	if (sv[0] >= 0) {
		close(sv[1]);
		sock_down = sv[0];
	}
	char ready;
	if (read(p[0], &ready, 1) != 1)      /* the kid and its own kids are set up */
		test_abort("process %d never got ready", idx);
	kid_pipes[nkids] = p[0];
	kids[nkids++] = pid;
}

/* A non-root process: a (1) forks c (3) and d (4); b (2), c and d have no children. */
static void process(int idx)
{
	setup(idx);
	if (idx == 1) {
		fork_kid(3);
		fork_kid(4);
	}
	register_pid();
	char buf[PIPED];
	fill_pattern(buf, PIPED, 0x7000 + getpid() % 1000);
	if (sock_up >= 0) {
		fill_pattern(buf, SOCKETED, 0x8000);
		if (send(sock_up, buf, SOCKETED, 0) != SOCKETED)
			_exit(107);
		fill_pattern(buf, PIPED, 0x7000 + getpid() % 1000);
	}
	if (write(up_fd, "r", 1) != 1 || write(up_fd, buf, PIPED) != PIPED)
		_exit(105);
	test_usr1_wait();
	if (zdtm_break && idx == 4)
		mem[MEM / 2] ^= 1;
	int bad = collect();
	_exit(bad + own_bad(idx));
}

int main(int argc, char **argv)
{
	static char buf[GHOST];

	test_init(argc, argv);
	test_usr1_init();
	int fd = open(test_path(".data"), O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || ftruncate(fd, 64 << 10))
		test_abort("data file: %s", strerror(errno));
	close(fd);
	ghost_fd = open(test_path(".ghost"), O_RDWR | O_CREAT | O_TRUNC, 0600);
	fill_pattern(buf, GHOST, 0x6666);
	if (ghost_fd < 0 || write(ghost_fd, buf, GHOST) != GHOST || unlink(test_path(".ghost")))
		test_abort("ghost file: %s", strerror(errno));
	unlink(test_path(".pids"));
	ghost_held = ghost_fd;          /* the children close it: only the root holds the ghost */
	ghost_fd = -1;
	fork_kid(1);
	fork_kid(2);
	ghost_fd = ghost_held;
	setup(0);
	if (flock(data_fd, LOCK_EX))
		test_abort("flock: %s", strerror(errno));
	test_daemon();

	test_waitsig();
	int bad = collect() + own_bad(0);
	if (bad)
		fail("%d of %d processes lost memory, a file offset, piped or socketed bytes", bad, NPROC);
	return test_finish();
}
