/* The soak test's workload (tests/zdtm/test_soak.py): three processes passing numbered lines on.
 *
 *   soak_target OUTFILE LIMIT INTERVAL_US
 *
 * The root (producer) writes line i = "i v(i)" into a pipe on each SIGALRM of an interval timer
 * (setitimer); its child "middle" reads the pipe, checks the numbering, adds a running hash of all
 * lines so far and writes the result through a unix socketpair; its child "consumer" appends each
 * complete line to OUTFILE (O_APPEND).  The content is deterministic: line i depends on i only,
 * so any run's file of M lines equals an uninterrupted run with LIMIT=M.  The producer stops after
 * LIMIT lines (0: never) or on SIGUSR1; then the pipe and socket close in turn, the children exit
 * and the root reaps them and exits 0 (non-zero if a child did not exit 0).
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>

static volatile sig_atomic_t ticks, stop;

static void on_alarm(int s) { (void)s; ticks++; }
static void on_usr1(int s) { (void)s; stop = 1; }

static void write_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = write(fd, p, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			_exit(10);
		}
		p += w;
		n -= w;
	}
}

static unsigned long value_of(unsigned long i) { return (i * 2654435761UL) % 1000003UL; }

/* Reads fd to EOF and calls line() on each complete line (without its newline). */
static void each_line(int fd, void (*line)(char *))
{
	char buf[8192];
	size_t have = 0;
	for (;;) {
		ssize_t r = read(fd, buf + have, sizeof(buf) - 1 - have);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		have += r;
		char *start = buf, *nl;
		while ((nl = memchr(start, '\n', buf + have - start))) {
			*nl = 0;
			line(start);
			start = nl + 1;
		}
		have = buf + have - start;
		memmove(buf, start, have);
	}
	if (have)
		_exit(11);              /* a torn line: the writer died mid-line */
}

static int out_fd;
static unsigned long expected = 1, hash = 5381;

static void middle_line(char *s)
{
	unsigned long i, v;
	char out[128];
	if (sscanf(s, "%lu %lu", &i, &v) != 2 || i != expected || v != value_of(i))
		_exit(12);              /* lost, duplicated or damaged line */
	expected++;
	for (char *c = s; *c; c++)
		hash = hash * 33 + (unsigned char)*c;
	int n = snprintf(out, sizeof(out), "%s %016lx\n", s, hash);
	write_all(out_fd, out, n);
}

static void consumer_line(char *s)
{
	size_t n = strlen(s);
	s[n] = '\n';
	write_all(out_fd, s, n + 1);
}

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: %s OUTFILE LIMIT INTERVAL_US\n", argv[0]);
		return 2;
	}
	unsigned long limit = strtoul(argv[2], NULL, 0);
	long interval = strtol(argv[3], NULL, 0);
	int pipefd[2], sk[2];
	if (pipe(pipefd) || socketpair(AF_UNIX, SOCK_STREAM, 0, sk))
		return 3;

	pid_t middle = fork();
	if (middle == 0) {
		close(pipefd[1]);
		close(sk[1]);
		out_fd = sk[0];
		each_line(pipefd[0], middle_line);
		return 0;
	}
	pid_t consumer = fork();
	if (consumer == 0) {
		close(pipefd[0]);
		close(pipefd[1]);
		close(sk[0]);
		out_fd = open(argv[1], O_WRONLY | O_CREAT | O_APPEND, 0600);
		if (out_fd < 0)
			return 4;
		each_line(sk[1], consumer_line);
		return 0;
	}
	close(pipefd[0]);
	close(sk[0]);
	close(sk[1]);

	struct sigaction sa = { .sa_flags = SA_RESTART };
	sa.sa_handler = on_alarm;
	sigaction(SIGALRM, &sa, NULL);
	sa.sa_handler = on_usr1;
	sigaction(SIGUSR1, &sa, NULL);
	sigset_t block, old;
	sigemptyset(&block);
	sigaddset(&block, SIGALRM);
	sigaddset(&block, SIGUSR1);
	sigprocmask(SIG_BLOCK, &block, &old);
	struct itimerval it = { { 0, interval }, { 0, interval } };
	setitimer(ITIMER_REAL, &it, NULL);

	unsigned long i = 0;
	while (!stop && (!limit || i < limit)) {
		while (!ticks && !stop)
			sigsuspend(&old);
		if (stop)
			break;
		ticks = 0;
		char line[64];
		i++;
		int n = snprintf(line, sizeof(line), "%lu %lu\n", i, value_of(i));
		write_all(pipefd[1], line, n);
	}
	close(pipefd[1]);
	int st, bad = 0;
	if (waitpid(middle, &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st))
		bad |= 1;
	if (waitpid(consumer, &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st))
		bad |= 2;
	return bad ? 20 + bad : 0;
}
