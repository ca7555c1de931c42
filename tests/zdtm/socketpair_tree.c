/*
 * socketpair_tree: a unix stream socketpair whose ends live in two processes of the tree (the
 * parent keeps one, the child the other), with data queued both ways, and a dgram pair both of
 * whose ends the child inherited from the parent (one socket, two tasks).  After restore the
 * parent and the child still talk over the pair: each reads what was queued for it, then they
 * exchange a message, and the child's dgram pair carries a datagram; SO_PEERCRED still names the
 * parent, which made the pair.
 */
#include "lib/zdtmtst.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static int recv_exact(int fd, const char *want)
{
	char buf[64];
	ssize_t n = recv(fd, buf, sizeof(buf), 0);
	return n == (ssize_t)strlen(want) && !memcmp(buf, want, n);
}

int main(int argc, char **argv)
{
	int sv[2], d[2];
	pid_t kid;

	test_init(argc, argv);
	test_usr1_init();
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) || socketpair(AF_UNIX, SOCK_DGRAM, 0, d))
		test_abort("socketpair: %s", strerror(errno));
	if (send(d[0], "inherited", 9, 0) != 9)
		test_abort("send: %s", strerror(errno));
	kid = test_fork();
	if (kid == 0) {
		close(sv[0]);
		if (send(sv[1], "to parent", 9, 0) != 9)
			_exit(1);
		kill(getppid(), SIGUSR1);
		test_usr1_wait();
		if (!recv_exact(sv[1], "to child") || !recv_exact(d[1], "inherited"))
			_exit(2);
		if (send(sv[1], "after", 5, 0) != 5 || send(d[0], "x", 1, 0) != 1 || !recv_exact(d[1], "x"))
			_exit(3);
		_exit(0);
	}
	close(sv[1]);
	if (send(sv[0], "to child", 8, 0) != 8)
		test_abort("send: %s", strerror(errno));
	test_usr1_wait();
	test_write_pids(&kid, 1);
	test_daemon();

	test_waitsig();
	if (zdtm_break)
		send(sv[0], "!", 1, 0);
	struct ucred cr;
	socklen_t crlen = sizeof(cr);
	if (getsockopt(sv[0], SOL_SOCKET, SO_PEERCRED, &cr, &crlen) || cr.pid != getpid())
		fail("SO_PEERCRED names pid %d, not the parent %d that made the pair", cr.pid, getpid());
	if (!recv_exact(sv[0], "to parent"))
		fail("the parent did not read what the child queued");
	kill(kid, SIGUSR1);
	if (!recv_exact(sv[0], "after"))
		fail("the child's message after restore did not come");
	int code = test_reap(kid, "child");
	if (code > 0)
		fail("child exited %d", code);
	return test_finish();
}
