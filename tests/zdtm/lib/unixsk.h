/*
 * unixsk.h: small helpers of the unix socket tests (header only): an address for a path or an
 * abstract name, whether a socket (or its peer) has a given name, whether the next message is
 * exactly a given string.
 */
#ifndef ZDTM_UNIXSK_H
#define ZDTM_UNIXSK_H

#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

/* sockaddr_un for `name` (a path, or with abstract set an abstract name); returns its length */
static inline socklen_t unix_addr(struct sockaddr_un *a, const char *name, int abstract)
{
	memset(a, 0, sizeof(*a));
	a->sun_family = AF_UNIX;
	strncpy(a->sun_path + (abstract ? 1 : 0), name, sizeof(a->sun_path) - 2);
	return offsetof(struct sockaddr_un, sun_path) + (abstract ? 1 : 0) + strlen(name) + (abstract ? 0 : 1);
}

/* 1 when getsockname (peer: getpeername) of fd is exactly want */
static inline int unix_named(int fd, const struct sockaddr_un *want, socklen_t wlen, int peer)
{
	struct sockaddr_un got;
	socklen_t len = sizeof(got);
	if ((peer ? getpeername : getsockname)(fd, (struct sockaddr *)&got, &len))
		return 0;
	return len == wlen && !memcmp(&got, want, len);
}

/* 1 when the next message (or bytes waiting) on fd are exactly want; never waits */
static inline int unix_recv_is(int fd, const char *want)
{
	char buf[64];
	ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
	return n == (ssize_t)strlen(want) && !memcmp(buf, want, n);
}

#endif
