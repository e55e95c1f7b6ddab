/* Network check between two hosts (netcheck.h): the one-check server a
 * destination agent runs on each of its service addresses, and the client
 * the source agent runs against it.
 *
 * TCP (one connection, the client's):
 *   client: "GLNC" u8 version=1, 3 zero bytes, token[16]
 *   then any number of 'p' (server answers 'p' for each: the RTT probe),
 *   then 'T' followed by data until the client shuts its side down;
 *   server: u64 bytes received after 'T', u64 nanoseconds from 'T' to the
 *   end (both big-endian), then it closes and the server ends.
 * UDP (same port): "GLNU" token[16] u32 seq, padding to the probed size;
 *   the answer is "GLNU" token[16] u32 seq u32 size received (28 bytes, so
 *   that the way back never needs a large frame). */
#include "host/netcheck.h"
#include "common/util.h"
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/crypto.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define NC_VERSION 1
#define NC_HDR_LEN 24
#define NC_UDP_HDR_LEN 24
#define NC_UDP_ANSWER_LEN 28
#define NC_CONNS_MAX 4            /* connections a server holds at once */
#define NC_HEADER_TIMEOUT_MS 3000 /* a connection must authenticate within this */
#define NC_PINGS 20
#define NC_PINGS_MAX 1000         /* a server answers at most this many per connection */
#define NC_UDP_ANSWERS_MAX 2000   /* and at most this many datagrams in its life */
#define NC_CONNECT_TIMEOUT_MS 3000
#define NC_IO_TIMEOUT_MS 5000
#define NC_BUF (256 * 1024)
#define NC_UDP_MIN_PROBE 64

static atomic_int servers_running;

static void put_be32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (24 - 8 * i));
}

static uint32_t get_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void put_be64(uint8_t *p, uint64_t v)
{
	put_be32(p, (uint32_t)(v >> 32));
	put_be32(p + 4, (uint32_t)v);
}

static uint64_t get_be64(const uint8_t *p)
{
	return (uint64_t)get_be32(p) << 32 | get_be32(p + 4);
}

bool netcheck_token_parse(const char *hex, uint8_t token[NETCHECK_TOKEN_LEN])
{
	return hex && strlen(hex) == 2 * NETCHECK_TOKEN_LEN && hex_decode(hex, NETCHECK_TOKEN_LEN, token) < 0;
}

void netcheck_endpoint(char *out, size_t len, const char *host, int port)
{
	snprintf(out, len, strchr(host, ':') ? "[%s]:%d" : "%s:%d", host, port);
}

bool netcheck_endpoint_parse(const char *ep, char *host, size_t hlen, int *port)
{
	const char *colon, *h = ep;
	size_t n;
	if (!ep)
		return false;
	if (*ep == '[') {
		const char *close = strchr(ep, ']');
		if (!close || close[1] != ':')
			return false;
		h = ep + 1;
		n = (size_t)(close - h);
		colon = close + 1;
	} else {
		colon = strrchr(ep, ':');
		if (!colon || memchr(ep, ':', (size_t)(colon - ep)))
			return false;
		n = (size_t)(colon - ep);
	}
	char *end;
	errno = 0;
	long p = strtol(colon + 1, &end, 10);
	if (!n || n >= hlen || !colon[1] || *end || errno || p < 1 || p > 65535)
		return false;
	memcpy(host, h, n);
	host[n] = 0;
	*port = (int)p;
	return true;
}

static int resolve(const char *host, int port, int socktype, struct sockaddr_storage *ss, socklen_t *sl)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = socktype, .ai_flags = AI_NUMERICHOST }, *ai;
	char ps[16];
	snprintf(ps, sizeof(ps), "%d", port);
	int rc = getaddrinfo(host, ps, &hints, &ai);
	if (rc)
		return -EINVAL;
	memcpy(ss, ai->ai_addr, ai->ai_addrlen);
	*sl = ai->ai_addrlen;
	freeaddrinfo(ai);
	return 0;
}

static void set_timeouts(int fd, int ms)
{
	struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

/* ---- server ---- */

enum nc_state { NC_HEADER, NC_PING, NC_THROUGHPUT };

struct nc_conn {
	int fd;
	enum nc_state state;
	uint8_t hdr[NC_HDR_LEN];
	size_t have;
	unsigned pings;
	uint64_t since_ns, start_ns, bytes;
};

struct nc_server {
	int lfd, ufd;
	uint8_t token[NETCHECK_TOKEN_LEN];
	uint64_t deadline_ns;
	char where[80];
};

static void conn_close(struct nc_conn *c, int *n, int i)
{
	close(c[i].fd);
	c[i] = c[--*n];
}

static void serve_udp(struct nc_server *s, uint8_t *buf, unsigned *answers)
{
	for (int burst = 0; burst < 64 && *answers < NC_UDP_ANSWERS_MAX; burst++) {
		struct sockaddr_storage from;
		socklen_t fl = sizeof(from);
		ssize_t n = recvfrom(s->ufd, buf, 65536, MSG_DONTWAIT, (struct sockaddr *)&from, &fl);
		if (n < 0)
			return;
		if (n < NC_UDP_HDR_LEN || memcmp(buf, "GLNU", 4) || CRYPTO_memcmp(buf + 4, s->token, NETCHECK_TOKEN_LEN))
			continue;
		uint8_t ans[NC_UDP_ANSWER_LEN];
		memcpy(ans, buf, NC_UDP_HDR_LEN);
		put_be32(ans + NC_UDP_HDR_LEN, (uint32_t)n);
		sendto(s->ufd, ans, sizeof(ans), MSG_DONTWAIT, (struct sockaddr *)&from, fl);
		(*answers)++;
	}
}

/* Reads what c has; false when the connection is to be closed. Sets *done
 * when the check is complete. */
static bool serve_conn(struct nc_server *s, struct nc_conn *c, bool authenticated_other, uint8_t *buf, bool *done)
{
	if (c->state == NC_HEADER) {
		ssize_t n = read(c->fd, c->hdr + c->have, NC_HDR_LEN - c->have);
		if (n <= 0)
			return n < 0 && (errno == EAGAIN || errno == EINTR);
		c->have += (size_t)n;
		if (c->have < NC_HDR_LEN)
			return true;
		if (memcmp(c->hdr, "GLNC", 4) || c->hdr[4] != NC_VERSION ||
		    CRYPTO_memcmp(c->hdr + 8, s->token, NETCHECK_TOKEN_LEN) || authenticated_other)
			return false;
		c->state = NC_PING;
		return true;
	}
	ssize_t n = read(c->fd, buf, NC_BUF);
	if (n < 0)
		return errno == EAGAIN || errno == EINTR;
	if (c->state == NC_THROUGHPUT) {
		if (n > 0) {
			c->bytes += (uint64_t)n;
			return true;
		}
		uint8_t ans[16];
		put_be64(ans, c->bytes);
		put_be64(ans + 8, now_ns() - c->start_ns);
		int fl = fcntl(c->fd, F_GETFL);
		fcntl(c->fd, F_SETFL, fl & ~O_NONBLOCK);
		set_timeouts(c->fd, 2000);
		write_full(c->fd, ans, sizeof(ans));
		*done = true;
		return false;
	}
	if (n == 0)
		return false;
	size_t pongs = 0;
	for (ssize_t i = 0; i < n; i++) {
		if (buf[i] == 'p' && c->state == NC_PING) {
			pongs++;
		} else if (buf[i] == 'T' && c->state == NC_PING) {
			c->state = NC_THROUGHPUT;
			c->start_ns = now_ns();
			c->bytes = (uint64_t)(n - i - 1);
			break;
		} else {
			return false;
		}
	}
	if (pongs) {
		if ((c->pings += (unsigned)pongs) > NC_PINGS_MAX)
			return false;
		memset(buf, 'p', pongs);
		if (write(c->fd, buf, pongs) != (ssize_t)pongs)
			return false;
	}
	return true;
}

static void *serve_thread(void *arg)
{
	struct nc_server *s = arg;
	struct nc_conn conns[NC_CONNS_MAX];
	int nconn = 0;
	unsigned answers = 0;
	bool done = false;
	uint8_t *buf = malloc(NC_BUF);

	while (buf && !done) {
		uint64_t now = now_ns();
		if (now >= s->deadline_ns)
			break;
		struct pollfd p[2 + NC_CONNS_MAX] = { { .fd = s->lfd, .events = POLLIN }, { .fd = s->ufd, .events = POLLIN } };
		for (int i = 0; i < nconn; i++)
			p[2 + i] = (struct pollfd){ .fd = conns[i].fd, .events = POLLIN };
		uint64_t left_ms = (s->deadline_ns - now) / 1000000 + 1;
		if (poll(p, (nfds_t)(2 + nconn), (int)MIN(left_ms, 250)) < 0 && errno != EINTR)
			break;
		int polled = nconn; /* p[2..] holds these; a connection accepted now is read next round */
		if (p[0].revents & POLLIN) {
			int fd = accept4(s->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
			if (fd >= 0 && nconn < NC_CONNS_MAX) {
				int one = 1;
				setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
				conns[nconn++] = (struct nc_conn){ .fd = fd, .state = NC_HEADER, .since_ns = now_ns() };
			} else if (fd >= 0) {
				close(fd);
			}
		}
		if (p[1].revents & POLLIN)
			serve_udp(s, buf, &answers);
		for (int i = polled - 1; i >= 0; i--) {
			if (i >= nconn || !(p[2 + i].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
			bool other = false;
			for (int k = 0; k < nconn; k++)
				other |= k != i && conns[k].state != NC_HEADER;
			if (!serve_conn(s, &conns[i], other, buf, &done))
				conn_close(conns, &nconn, i);
		}
		now = now_ns();
		for (int i = nconn - 1; i >= 0; i--)
			if (conns[i].state == NC_HEADER && now - conns[i].since_ns > (uint64_t)NC_HEADER_TIMEOUT_MS * 1000000)
				conn_close(conns, &nconn, i);
	}
	while (nconn)
		conn_close(conns, &nconn, nconn - 1);
	glide_log("host", "network check server on %s %s", s->where, done ? "done" : "ended unused");
	close(s->lfd);
	close(s->ufd);
	explicit_bzero(s->token, sizeof(s->token));
	free(s);
	free(buf);
	atomic_fetch_sub(&servers_running, 1);
	return NULL;
}

int netcheck_serve(const char *host, const uint8_t token[NETCHECK_TOKEN_LEN], int life_ms, int *port, char *err,
		   size_t errlen)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	int rc = 0, lfd = -1, ufd = -1;

	if (resolve(host, 0, SOCK_STREAM, &ss, &sl)) {
		errf(err, errlen, "%s is not a numeric address", host);
		return -EINVAL;
	}
	if (atomic_fetch_add(&servers_running, 1) >= NETCHECK_SERVERS_MAX) {
		atomic_fetch_sub(&servers_running, 1);
		errf(err, errlen, "%d network checks already wait here; try again in a minute", NETCHECK_SERVERS_MAX);
		return -EBUSY;
	}
	/* a free TCP port, and the UDP port of the same number */
	for (int tries = 0; tries < 20; tries++) {
		struct sockaddr_storage a = ss;
		socklen_t al = sl;
		lfd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		ufd = socket(ss.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (lfd < 0 || ufd < 0 || bind(lfd, (struct sockaddr *)&a, al) || listen(lfd, 16) ||
		    getsockname(lfd, (struct sockaddr *)&a, &al)) {
			rc = -errno;
			errf(err, errlen, "cannot listen on %s: %s", host, strerror(errno));
			break;
		}
		if (!bind(ufd, (struct sockaddr *)&a, al)) {
			*port = ntohs(a.ss_family == AF_INET ? ((struct sockaddr_in *)&a)->sin_port
							     : ((struct sockaddr_in6 *)&a)->sin6_port);
			rc = 1;
			break;
		}
		rc = -errno;
		errf(err, errlen, "no port free for both TCP and UDP on %s: %s", host, strerror(errno));
		close(lfd);
		close(ufd);
		lfd = ufd = -1;
	}
	struct nc_server *s = rc == 1 ? calloc(1, sizeof(*s)) : NULL;
	pthread_t t;
	if (s) {
		*s = (struct nc_server){ .lfd = lfd, .ufd = ufd, .deadline_ns = now_ns() + (uint64_t)life_ms * 1000000 };
		memcpy(s->token, token, NETCHECK_TOKEN_LEN);
		netcheck_endpoint(s->where, sizeof(s->where), host, *port);
		if (!pthread_create(&t, NULL, serve_thread, s)) {
			pthread_detach(t);
			return 0;
		}
		errf(err, errlen, "cannot start the network check thread");
		rc = -EAGAIN;
		free(s);
	} else if (rc == 1) {
		errf(err, errlen, "out of memory");
		rc = -ENOMEM;
	}
	if (lfd >= 0)
		close(lfd);
	if (ufd >= 0)
		close(ufd);
	atomic_fetch_sub(&servers_running, 1);
	return rc;
}

/* ---- client ---- */

static int bind_from(int fd, const char *from, int family)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	if (!from)
		return 0;
	if (resolve(from, 0, SOCK_STREAM, &ss, &sl) || ss.ss_family != family)
		return -EAFNOSUPPORT;
	return bind(fd, (struct sockaddr *)&ss, sl) ? -errno : 0;
}

static int tcp_connect(const struct sockaddr_storage *to, socklen_t tl, const char *from, double *ms, char *err, size_t errlen)
{
	int fd = socket(to->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), rc;
	uint64_t t0 = now_ns();
	if (fd < 0) {
		errf(err, errlen, "socket: %s", strerror(errno));
		return -1;
	}
	if ((rc = bind_from(fd, from, to->ss_family))) {
		errf(err, errlen, "cannot use local address %s: %s", from, strerror(-rc));
		close(fd);
		return -1;
	}
	if (connect(fd, (const struct sockaddr *)to, tl) && errno != EINPROGRESS) {
		errf(err, errlen, "%s", strerror(errno));
		close(fd);
		return -1;
	}
	struct pollfd p = { .fd = fd, .events = POLLOUT };
	int e = 0;
	socklen_t el = sizeof(e);
	rc = poll(&p, 1, NC_CONNECT_TIMEOUT_MS);
	if (rc <= 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &el) || e) {
		errf(err, errlen, "%s", rc == 0 ? "no answer within 3 s" : strerror(e ? e : errno));
		close(fd);
		return -1;
	}
	*ms = (double)(now_ns() - t0) / 1e6;
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	set_timeouts(fd, NC_IO_TIMEOUT_MS);
	return fd;
}

/* One UDP probe of `size` bytes: true when its answer came back saying all of it arrived. */
static bool udp_probe(int fd, const uint8_t token[NETCHECK_TOKEN_LEN], uint8_t *buf, size_t size, uint32_t *seq,
		      int timeout_ms, int tries, double *rtt_ms)
{
	for (int t = 0; t < tries; t++) {
		uint32_t want = ++*seq;
		memcpy(buf, "GLNU", 4);
		memcpy(buf + 4, token, NETCHECK_TOKEN_LEN);
		put_be32(buf + 20, want);
		uint64_t t0 = now_ns(), end = t0 + (uint64_t)timeout_ms * 1000000;
		if (send(fd, buf, size, 0) != (ssize_t)size)
			return false; /* EMSGSIZE: larger than this host lets out */
		for (uint64_t now = t0; now < end; now = now_ns()) {
			struct pollfd p = { .fd = fd, .events = POLLIN };
			if (poll(&p, 1, (int)((end - now) / 1000000 + 1)) <= 0)
				break;
			uint8_t ans[64];
			ssize_t n = recv(fd, ans, sizeof(ans), MSG_DONTWAIT);
			if (n != NC_UDP_ANSWER_LEN || memcmp(ans, "GLNU", 4) || memcmp(ans + 4, token, NETCHECK_TOKEN_LEN) ||
			    get_be32(ans + 20) != want)
				continue; /* an answer to an earlier probe, or noise */
			if (rtt_ms)
				*rtt_ms = (double)(now_ns() - t0) / 1e6;
			return get_be32(ans + 24) == size;
		}
	}
	return false;
}

/* The route's MTU to the peer and the largest datagram that crosses the path unfragmented. */
static json_t *check_mtu(const struct sockaddr_storage *to, socklen_t tl, const char *from,
			 const uint8_t token[NETCHECK_TOKEN_LEN], json_t *problems)
{
	bool v6 = to->ss_family == AF_INET6;
	int fd = socket(to->ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0), route = 0;
	int probe = v6 ? IPV6_PMTUDISC_PROBE : IP_PMTUDISC_PROBE;
	socklen_t ol = sizeof(route);
	uint8_t *buf = malloc(65536);
	uint32_t seq = 0;
	double rtt = 0;
	json_t *m = json_object();

	if (fd < 0 || !buf || bind_from(fd, from, to->ss_family) || connect(fd, (const struct sockaddr *)to, tl) ||
	    setsockopt(fd, v6 ? IPPROTO_IPV6 : IPPROTO_IP, v6 ? IPV6_MTU_DISCOVER : IP_MTU_DISCOVER, &probe, sizeof(probe)) ||
	    getsockopt(fd, v6 ? IPPROTO_IPV6 : IPPROTO_IP, v6 ? IPV6_MTU : IP_MTU, &route, &ol)) {
		json_object_set_new(m, "error", json_sprintf("cannot set up the UDP probe: %s", strerror(errno)));
		goto out;
	}
	memset(buf, 0x5a, 65536);
	int overhead = v6 ? 48 : 28, max = MIN(route - overhead, v6 ? 65527 : 65507);
	json_object_set_new(m, "route", json_integer(route));
	if (!udp_probe(fd, token, buf, NC_UDP_MIN_PROBE, &seq, 1000, 3, &rtt)) {
		json_object_set_new(m, "error", json_string("no answer to UDP datagrams (a firewall between the hosts?)"));
		json_array_append_new(problems, json_string("UDP probes got no answer: the path MTU is unknown"));
		goto out;
	}
	int timeout = (int)MIN(1000.0, MAX(20.0, 4 * rtt + 20)), path;
	if (udp_probe(fd, token, buf, (size_t)max, &seq, timeout, 2, NULL)) {
		path = route;
	} else {
		int lo = NC_UDP_MIN_PROBE, hi = max; /* lo crosses, hi does not */
		for (int steps = 0; hi - lo > 1 && steps < 20; steps++) {
			int mid = lo + (hi - lo) / 2;
			if (udp_probe(fd, token, buf, (size_t)mid, &seq, timeout, 2, NULL))
				lo = mid;
			else
				hi = mid;
		}
		path = lo + overhead;
		json_array_append_new(problems, json_sprintf("path MTU %d is below the route's MTU %d: larger frames are lost "
							     "between the hosts (check every port's MTU on the way)", path, route));
	}
	json_object_set_new(m, "path", json_integer(path));
out:
	if (fd >= 0)
		close(fd);
	free(buf);
	return m;
}

json_t *netcheck_run(const char *from, const char *to_host, int to_port, const uint8_t token[NETCHECK_TOKEN_LEN],
		     double seconds)
{
	struct sockaddr_storage to;
	socklen_t tl;
	char ep[96], err[256];
	json_t *r = json_object(), *problems = json_array();
	double connect_ms = 0;
	int fd = -1;

	netcheck_endpoint(ep, sizeof(ep), to_host, to_port);
	json_object_set_new(r, "from", from ? json_string(from) : json_null());
	json_object_set_new(r, "to", json_string(ep));
	if (!(seconds > 0) || seconds > NETCHECK_SECONDS_MAX)
		seconds = NETCHECK_SECONDS_DEFAULT;
	if (resolve(to_host, to_port, SOCK_STREAM, &to, &tl)) {
		errf(err, sizeof(err), "%s is not a numeric address", to_host);
		goto unreachable;
	}
	if ((fd = tcp_connect(&to, tl, from, &connect_ms, err, sizeof(err))) < 0)
		goto unreachable;
	uint8_t hdr[NC_HDR_LEN] = { 'G', 'L', 'N', 'C', NC_VERSION };
	memcpy(hdr + 8, token, NETCHECK_TOKEN_LEN);
	if (write_full(fd, hdr, sizeof(hdr))) {
		errf(err, sizeof(err), "the connection broke at once");
		goto unreachable;
	}
	json_object_set_new(r, "reachable", json_true());
	json_object_set_new(r, "connect_ms", json_real(connect_ms));

	json_object_set_new(r, "mtu", check_mtu(&to, tl, from, token, problems));

	double mn = 1e9, mx = 0, sum = 0;
	int pings = 0;
	for (; pings < NC_PINGS; pings++) {
		char c = 'p';
		uint64_t t0 = now_ns();
		if (write(fd, &c, 1) != 1 || read(fd, &c, 1) != 1 || c != 'p')
			break;
		double ms = (double)(now_ns() - t0) / 1e6;
		mn = MIN(mn, ms);
		mx = MAX(mx, ms);
		sum += ms;
	}
	if (pings < NC_PINGS) {
		json_array_append_new(problems, json_sprintf("the peer stopped answering after %d of %d round trips", pings, NC_PINGS));
		goto out;
	}
	json_object_set_new(r, "rtt_ms", json_pack("{s:f, s:f, s:f, s:i}", "min", mn, "avg", sum / pings, "max", mx, "count", pings));

	/* throughput: one stream for `seconds`, counted by the receiver */
	uint8_t *buf = malloc(NC_BUF);
	uint64_t sent = 0, t0 = now_ns(), end = t0 + (uint64_t)(seconds * 1e9);
	bool ok = buf && write(fd, "T", 1) == 1;
	if (buf)
		memset(buf, 0xa5, NC_BUF);
	while (ok && now_ns() < end) {
		ssize_t n = write(fd, buf, NC_BUF);
		if (n <= 0)
			ok = false;
		else
			sent += (uint64_t)n;
	}
	free(buf);
	uint8_t ans[16];
	if (!ok || shutdown(fd, SHUT_WR) || read_full(fd, ans, sizeof(ans))) {
		json_array_append_new(problems, json_sprintf("the throughput stream broke after %llu bytes", (unsigned long long)sent));
		goto out;
	}
	uint64_t got = get_be64(ans), ns = get_be64(ans + 8);
	if (got != sent)
		json_array_append_new(problems, json_sprintf("the receiver counted %llu bytes of %llu sent", (unsigned long long)got,
							     (unsigned long long)sent));
	json_object_set_new(r, "throughput", json_pack("{s:f, s:I, s:f}", "bits_per_s", ns ? (double)got * 8e9 / (double)ns : 0.0,
							"bytes", (json_int_t)got, "seconds", (double)ns / 1e9));
out:
	close(fd);
	json_object_set_new(r, "ok", json_boolean(json_array_size(problems) == 0));
	json_object_set_new(r, "problems", problems);
	return r;

unreachable:
	if (fd >= 0)
		close(fd);
	json_object_set_new(r, "reachable", json_false());
	json_object_set_new(r, "error", json_sprintf("cannot reach %s%s%s: %s", ep, from ? " from " : "", from ? from : "", err));
	json_array_append_new(problems, json_string(json_string_value(json_object_get(r, "error"))));
	json_object_set_new(r, "ok", json_false());
	json_object_set_new(r, "problems", problems);
	return r;
}
