/*
 * unix_peercred: a unix stream connection from a child's client to its parent's listener,
 * accepted by the parent.  The accepted end's SO_PEERCRED names the child (who connected); crpy
 * makes a connection between two tasks again in the tree's root, so it would name the parent:
 * the dump must refuse in one line naming the fd and the task stay untouched (desc.py:
 * dump_fails).  Then SO_PEERCRED still names the child and the connection still works.
 */
#include "lib/zdtmtst.h"
#include "lib/unixsk.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	struct sockaddr_un a;
	socklen_t alen;
	struct ucred cr;
	socklen_t crlen = sizeof(cr);
	char name[64];
	int l, s;
	pid_t kid;

	test_init(argc, argv);
	test_usr1_init();
	snprintf(name, sizeof(name), "zdtm-unix-peercred-%d", getpid());
	alen = unix_addr(&a, name, 1);
	l = socket(AF_UNIX, SOCK_STREAM, 0);
	if (bind(l, (struct sockaddr *)&a, alen) || listen(l, 1))
		test_abort("listen: %s", strerror(errno));
	kid = test_fork();
	if (kid == 0) {
		int c = socket(AF_UNIX, SOCK_STREAM, 0);
		if (connect(c, (struct sockaddr *)&a, alen))
			_exit(1);
		test_usr1_wait();
		_exit(send(c, "hi", 2, 0) == 2 ? 0 : 2);
	}
	s = accept(l, NULL, NULL);
	if (s < 0)
		test_abort("accept: %s", strerror(errno));
	test_write_pids(&kid, 1);
	test_daemon();

	test_waitsig();
	if (zdtm_break)
		close(s);
	if (getsockopt(s, SOL_SOCKET, SO_PEERCRED, &cr, &crlen) || cr.pid != kid)
		fail("SO_PEERCRED names pid %d, not the child %d", cr.pid, kid);
	kill(kid, SIGUSR1);
	char buf[4];
	if (recv(s, buf, sizeof(buf), 0) != 2)
		fail("the connection no longer carries data");
	int code = test_reap(kid, "child");
	if (code > 0)
		fail("child exited %d", code);
	return test_finish();
}
