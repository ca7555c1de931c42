/*
 * unix_peer_outside: a unix stream socketpair whose other end a process outside the dumped tree
 * holds (a grandchild left to init), with data queued both ways.  crpy cannot bring that peer
 * back, so the dump must refuse in one line naming the fd and the task stay untouched
 * (tests/zdtm/desc.py: dump_fails); then the pair still works: each side reads its data.
 */
#include "lib/zdtmtst.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	int sv[2];
	char buf[32];
	pid_t kid;

	test_init(argc, argv);
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv))
		test_abort("socketpair: %s", strerror(errno));
	kid = test_fork();
	if (kid == 0) {
		if (test_fork() == 0) {         /* the grandchild: outside the tree once its parent exits */
			for (int fd = 0; fd < 1024; fd++)   /* nothing of the harness's kept open */
				if (fd != sv[1])
					close(fd);
			if (send(sv[1], "from outside", 12, 0) != 12)
				_exit(1);
			/* echo what was queued for it once the test adds 3 bytes (after the dump attempt) */
			if (recv(sv[1], buf, 9, MSG_WAITALL) == 9)
				send(sv[1], buf, 9, 0);
			_exit(0);
		}
		_exit(0);
	}
	waitpid(kid, NULL, 0);
	close(sv[1]);
	if (send(sv[0], "queued", 6, 0) != 6)
		test_abort("send: %s", strerror(errno));
	test_daemon();

	test_waitsig();
	if (zdtm_break)
		send(sv[0], "X", 1, 0);
	ssize_t n = recv(sv[0], buf, 12, MSG_WAITALL);
	if (n != 12 || memcmp(buf, "from outside", 12))
		fail("lost the data the outside peer queued");
	if (send(sv[0], "123", 3, 0) != 3 || recv(sv[0], buf, 9, MSG_WAITALL) != 9 || memcmp(buf, "queued123", 9))
		fail("the outside peer did not get what was queued for it");
	return test_finish();
}
