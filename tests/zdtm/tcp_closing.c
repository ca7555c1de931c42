/*
 * tcp_closing (dumped with --tcp-established): the two closing states that last only an instant
 * on loopback, held by a full window.
 *   L (LAST_ACK): the server fills its client's window, the client shuts down (its FIN is
 *     acknowledged: FIN_WAIT2, the server in CLOSE_WAIT), then the server shuts down too: its FIN
 *     waits behind the bytes the window keeps back, unacknowledged.
 *   K (CLOSING): the client fills the server's window and shuts down (FIN_WAIT1, its FIN behind
 *     the bytes), then the server shuts down: the client receives that FIN before its own is
 *     acknowledged (CLOSING), the server has its FIN acknowledged (FIN_WAIT2).
 * After restore the same states; each reader gets every byte once, in order, then end-of-file;
 * the closing ends reach TCP_CLOSE once their FIN is acknowledged; nobody can send any more.
 */
#include "lib/zdtmtst.h"
#include "lib/inetsk.h"

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define WINDOW 65536

static int expect_states(const char *when, int lc, int ls, int kc, int ks)
{
	int got[4] = { inet_tcp_state(lc), inet_tcp_state(ls), inet_tcp_state(kc), inet_tcp_state(ks) };

	if (got[0] == TCP_FIN_WAIT2 && got[1] == TCP_LAST_ACK && got[2] == TCP_CLOSING && got[3] == TCP_FIN_WAIT2)
		return 0;
	fail("%s: states %d %d %d %d, not FIN_WAIT2 LAST_ACK CLOSING FIN_WAIT2", when, got[0], got[1], got[2], got[3]);
	return -1;
}

/* fd reaches TCP_CLOSE within 5 s */
static void expect_closed(int fd, const char *who)
{
	for (int i = 0; i < 500 && inet_tcp_state(fd) != TCP_CLOSE; i++)
		usleep(10000);
	if (inet_tcp_state(fd) != TCP_CLOSE)
		fail("%s is in state %d, not closed, once its FIN could be acknowledged", who, inet_tcp_state(fd));
}

int main(int argc, char **argv)
{
	int lc, ls, kc, ks;
	unsigned long l_bytes, k_bytes;
	char c;

	test_init(argc, argv);
	signal(SIGPIPE, SIG_IGN);
	inet_tcp_pair(WINDOW, &lc, &ls);
	inet_tcp_pair(WINDOW, &kc, &ks);
	l_bytes = inet_fill(ls, 5);
	k_bytes = inet_fill(kc, 9);
	if (shutdown(lc, SHUT_WR) || shutdown(kc, SHUT_WR))
		test_abort("shutdown: %s", strerror(errno));
	usleep(100000);                          /* L's client FIN acknowledged, the server in CLOSE_WAIT */
	if (shutdown(ls, SHUT_WR) || shutdown(ks, SHUT_WR))
		test_abort("shutdown: %s", strerror(errno));
	usleep(100000);                          /* K's server FIN received by its client */
	if (expect_states("before the dump", lc, ls, kc, ks))
		test_abort("the closing states cannot be held here");
	test_daemon();

	test_waitsig();
	if (zdtm_break)
		recv(lc, &c, 1, MSG_DONTWAIT);
	expect_states("after restore", lc, ls, kc, ks);
	if (send(lc, "x", 1, 0) != -1 || send(ls, "x", 1, 0) != -1 || send(kc, "x", 1, 0) != -1 ||
	    send(ks, "x", 1, 0) != -1)
		fail("a shut-down end can still send");
	inet_read_pattern(lc, l_bytes, 5, "L's client");
	expect_closed(ls, "L's server (LAST_ACK)");
	inet_read_pattern(ks, k_bytes, 9, "K's server");
	expect_closed(kc, "K's client (CLOSING)");
	return test_finish();
}
