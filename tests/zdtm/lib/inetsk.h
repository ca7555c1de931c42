/*
 * inetsk.h: small helpers of the TCP socket tests (header only): an int socket option read and
 * set, a sockaddr for an address string and port, either family, a connected loopback pair, the
 * TCP state, a test byte pattern and a writer that fills a connection with it and a reader
 * that checks it, a wait-then-read, a read of one expected message.
 */
#ifndef ZDTM_INETSK_H
#define ZDTM_INETSK_H

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "zdtmtst.h"

/* an int option, -1 when it cannot be read */
static inline int inet_geti(int fd, int level, int opt)
{
	int v = -1;
	socklen_t len = sizeof(v);

	if (getsockopt(fd, level, opt, &v, &len))
		return -1;
	return v;
}

static inline int inet_seti(int fd, int level, int opt, int v)
{
	return setsockopt(fd, level, opt, &v, sizeof(v));
}

/* sockaddr_in or sockaddr_in6 for addr:port into ss; returns its length */
static inline socklen_t inet_addr_of(int family, const char *addr, int port, struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof(*ss));
	if (family == AF_INET) {
		struct sockaddr_in *a = (struct sockaddr_in *)ss;

		a->sin_family = AF_INET;
		a->sin_port = htons(port);
		inet_pton(AF_INET, addr, &a->sin_addr);
		return sizeof(*a);
	}
	struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;

	a->sin6_family = AF_INET6;
	a->sin6_port = htons(port);
	inet_pton(AF_INET6, addr, &a->sin6_addr);
	return sizeof(*a);
}

/* A TCP connection over 127.0.0.1, both ends ours: *client connected, *server accepted (the
 * listener closed); bufsz, when not 0, is SO_RCVBUF and SO_SNDBUF of both.  Setup fails
 * (test_abort) without one. */
static inline void inet_tcp_pair(int bufsz, int *client, int *server)
{
	struct sockaddr_storage ss;
	socklen_t len = inet_addr_of(AF_INET, "127.0.0.1", 0, &ss);
	int l = socket(AF_INET, SOCK_STREAM, 0);

	if (bufsz)
		inet_seti(l, SOL_SOCKET, SO_RCVBUF, bufsz), inet_seti(l, SOL_SOCKET, SO_SNDBUF, bufsz);
	if (l < 0 || bind(l, (struct sockaddr *)&ss, len) || listen(l, 1) || getsockname(l, (struct sockaddr *)&ss, &len))
		test_abort("listen: %s", strerror(errno));
	*client = socket(AF_INET, SOCK_STREAM, 0);
	if (bufsz)
		inet_seti(*client, SOL_SOCKET, SO_RCVBUF, bufsz), inet_seti(*client, SOL_SOCKET, SO_SNDBUF, bufsz);
	if (*client < 0 || connect(*client, (struct sockaddr *)&ss, len))
		test_abort("connect: %s", strerror(errno));
	*server = accept(l, NULL, NULL);
	if (*server < 0)
		test_abort("accept: %s", strerror(errno));
	close(l);
}

/* the TCP state of fd (TCP_ESTABLISHED, TCP_CLOSE, ...: TCP_INFO's), -1 when it cannot be read */
static inline int inet_tcp_state(int fd)
{
	struct tcp_info ti;
	socklen_t len = sizeof(ti);

	return getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) ? -1 : ti.tcpi_state;
}

/* the byte at offset i of a test stream */
static inline unsigned char inet_pattern(unsigned long i, int seed)
{
	return (unsigned char)(i * 7 + seed + (i >> 8));
}

/* write the pattern to fd until the connection takes no more; returns the bytes written */
static inline unsigned long inet_fill(int fd, int seed)
{
	unsigned char buf[4096];
	unsigned long total = 0;
	int fl = fcntl(fd, F_GETFL);

	fcntl(fd, F_SETFL, fl | O_NONBLOCK);
	for (;;) {
		for (unsigned i = 0; i < sizeof(buf); i++)
			buf[i] = inet_pattern(total + i, seed);
		ssize_t n = write(fd, buf, sizeof(buf));
		if (n <= 0)
			break;
		total += n;
	}
	fcntl(fd, F_SETFL, fl);
	return total;
}

/* the next read of fd (waiting up to 5 s for it) is exactly the string `want` */
static inline int inet_recv_exact(int fd, const char *want)
{
	char buf[64];
	struct pollfd p = { .fd = fd, .events = POLLIN };
	ssize_t n;

	poll(&p, 1, 5000);
	n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
	return n == (ssize_t)strlen(want) && !memcmp(buf, want, n);
}

/* a read of fd once it has something (waiting up to 5 s) */
static inline ssize_t inet_recv_wait(int fd, void *buf, size_t size)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };

	poll(&p, 1, 5000);
	return recv(fd, buf, size, MSG_DONTWAIT);
}

/* fd reads exactly `total` bytes of the pattern `seed`, in order, then end-of-file; fails (naming
 * `who`) and returns -1 otherwise */
static inline int inet_read_pattern(int fd, unsigned long total, int seed, const char *who)
{
	unsigned char buf[8192];
	unsigned long got = 0;

	while (got < total) {
		ssize_t n = inet_recv_wait(fd, buf, sizeof(buf));

		if (n <= 0) {
			fail("%s read %zd after %lu of %lu bytes", who, n, got, total);
			return -1;
		}
		for (ssize_t k = 0; k < n; k++)
			if (buf[k] != inet_pattern(got + k, seed)) {
				fail("%s: byte %lu differs", who, got + k);
				return -1;
			}
		got += n;
	}
	if (inet_recv_wait(fd, buf, sizeof(buf)) != 0) {
		fail("%s does not read end-of-file after the data", who);
		return -1;
	}
	return 0;
}

#endif
