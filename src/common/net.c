/* TCP sockets for glide's servers and migration streams: address parsing
 * ("HOST:PORT", "[v6]:PORT"), listening with SO_REUSEADDR, and connecting
 * with a timeout and optional DSCP marking. */
#include "common/net.h"
#include "common/util.h"
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int resolve(const char *hostport, bool passive, struct addrinfo **ai, char *err, size_t errlen)
{
	char host[256], *colon, *h;
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
				  .ai_flags = passive ? AI_PASSIVE : 0 };
	int rc;

	snprintf(host, sizeof(host), "%s", hostport);
	colon = strrchr(host, ':');
	if (!colon || !colon[1]) {
		errf(err, errlen, "address '%s' must be HOST:PORT", hostport);
		return -EINVAL;
	}
	*colon = 0;
	h = host;
	if (*h == '[') {
		h++;
		char *e = strchr(h, ']');
		if (e)
			*e = 0;
	}
	rc = getaddrinfo(*h ? h : NULL, colon + 1, &hints, ai);
	if (rc) {
		errf(err, errlen, "address '%s': %s", hostport, gai_strerror(rc));
		return -EINVAL;
	}
	return 0;
}

int net_listen_tcp(const char *hostport, int backlog, char *err, size_t errlen)
{
	struct addrinfo *ai;
	int fd, one = 1, rc = resolve(hostport, true, &ai, err, errlen);

	if (rc)
		return rc;
	fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd >= 0)
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (fd < 0 || bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, backlog) < 0) {
		rc = -errno;
		errf(err, errlen, "cannot listen on %s: %s", hostport, strerror(errno));
		if (fd >= 0)
			close(fd);
		freeaddrinfo(ai);
		return rc;
	}
	freeaddrinfo(ai);
	return fd;
}

int net_connect_tcp(const char *hostport, int timeout_ms, int dscp, char *err, size_t errlen)
{
	struct addrinfo *ai;
	int fd, one = 1, rc = resolve(hostport, false, &ai, err, errlen);

	if (rc)
		return rc;
	fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		rc = -errno;
		freeaddrinfo(ai);
		errf(err, errlen, "socket: %s", strerror(-rc));
		return rc;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (dscp > 0) {
		int tos = dscp << 2;
		if (ai->ai_family == AF_INET6)
			setsockopt(fd, IPPROTO_IPV6, IPV6_TCLASS, &tos, sizeof(tos));
		else
			setsockopt(fd, IPPROTO_IP, IP_TOS, &tos, sizeof(tos));
	}
	rc = connect(fd, ai->ai_addr, ai->ai_addrlen);
	freeaddrinfo(ai);
	if (rc < 0 && errno == EINPROGRESS) {
		struct pollfd pfd = { .fd = fd, .events = POLLOUT };
		int soerr = 0;
		socklen_t sl = sizeof(soerr);
		rc = poll(&pfd, 1, timeout_ms);
		if (rc == 0) {
			errno = ETIMEDOUT;
			rc = -1;
		} else if (rc > 0) {
			getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl);
			errno = soerr;
			rc = soerr ? -1 : 0;
		}
	}
	if (rc < 0) {
		rc = -errno;
		errf(err, errlen, "cannot connect to %s: %s", hostport, strerror(errno));
		close(fd);
		return rc;
	}
	return fd;
}
