/* The destination's migration port: accepting the authenticated streams
 * of one migration session, so that no connection can hold the port.
 *
 * Anyone who can reach the port can connect. Each accepted connection
 * gets the destination hello at once and HANDSHAKE_BUDGET_MS to send the
 * source hello; all pending handshakes are served by one poll() loop, so a
 * silent or slow connection costs the real source nothing. At most
 * PENDING_PER_PEER unauthenticated connections per peer address and
 * PENDING_MAX in all are kept: a new connection beyond that evicts the
 * oldest pending one of its address (or of the address with the most),
 * never itself, because the real source may share its address with the
 * attacker (NAT, or 127.0.0.1 in tests) and its connection is the newest.
 * Refused, evicted and timed-out connections are logged with the peer
 * address, at most REFUSAL_LOG_BURST lines per REFUSAL_LOG_WINDOW_MS, then
 * counted. */
#include "migrate/accept.h"
#include "common/util.h"
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define HANDSHAKE_BUDGET_MS 3000
#define PENDING_PER_PEER 8
#define PENDING_MAX 64
#define ACCEPTS_PER_ROUND 64 /* per listener, between two looks at the pending handshakes */
#define REFUSAL_LOG_BURST 10
#define REFUSAL_LOG_WINDOW_MS 10000

struct pending_conn {
	struct wire_handshake h; /* h.fd < 0: free slot */
	uint64_t since, deadline;
	char peer[64];
};

struct refusal_log {
	uint64_t window_start;
	int lines;
	unsigned long suppressed;
};

static void peer_name(int fd, char *out, size_t len)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char host[INET6_ADDRSTRLEN] = "?";
	if (getpeername(fd, (struct sockaddr *)&ss, &sl) == 0) {
		if (ss.ss_family == AF_INET)
			inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, host, sizeof(host));
		else if (ss.ss_family == AF_INET6)
			inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, host, sizeof(host));
	}
	snprintf(out, len, "%s", host);
}

static void refusal_log_flush(struct refusal_log *rl)
{
	if (rl->suppressed)
		glide_log("incoming", "%lu more refused or dropped migration connections not logged", rl->suppressed);
	rl->window_start = now_ns();
	rl->lines = 0;
	rl->suppressed = 0;
}

static void refusal_log(struct refusal_log *rl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void refusal_log(struct refusal_log *rl, const char *fmt, ...)
{
	char line[512];
	va_list ap;

	if (now_ns() - rl->window_start >= REFUSAL_LOG_WINDOW_MS * 1000000ULL)
		refusal_log_flush(rl);
	if (rl->lines >= REFUSAL_LOG_BURST) {
		rl->suppressed++;
		return;
	}
	rl->lines++;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	glide_log("incoming", "%s", line);
}

static void pending_drop(struct pending_conn *p)
{
	close(p->h.fd);
	wire_handshake_clear(&p->h);
}

/* A slot for a new connection from peer, evicting the oldest pending
 * connection of that peer (or, when all slots are taken, of the peer with
 * the most) if the caps are reached. */
static struct pending_conn *pending_slot(struct pending_conn *pend, const char *peer, struct refusal_log *rl)
{
	int total = 0, same = 0, free_slot = -1, victim = -1, victim_count = 0;
	uint64_t now = now_ns();

	for (int i = 0; i < PENDING_MAX; i++) {
		if (pend[i].h.fd < 0) {
			free_slot = i;
			continue;
		}
		total++;
		if (!strcmp(pend[i].peer, peer) && (same++ == 0 || pend[i].since < pend[victim].since))
			victim = i;
	}
	victim_count = same;
	if (same < PENDING_PER_PEER && total < PENDING_MAX)
		return &pend[free_slot];
	if (same < PENDING_PER_PEER) { /* all slots taken: the address with the most gives one up */
		victim = -1;
		victim_count = 0;
		for (int i = 0; i < PENDING_MAX; i++) {
			int n = 0;
			for (int k = 0; k < PENDING_MAX; k++)
				n += !strcmp(pend[k].peer, pend[i].peer);
			if (n > victim_count || (n == victim_count && pend[i].since < pend[victim].since))
				victim = i, victim_count = n;
		}
	}
	refusal_log(rl, "dropped the oldest unauthenticated migration connection from %s (open %.1f s): "
		    "%d pending from that address%s, at most %d per address and %d in all", pend[victim].peer,
		    (now - pend[victim].since) / 1e9, victim_count, same < PENDING_PER_PEER ? ", all slots taken" : "",
		    PENDING_PER_PEER, PENDING_MAX);
	pending_drop(&pend[victim]);
	return &pend[victim];
}

/* Accepts authenticated streams until one session has all of them. */
int incoming_accept(const int *listeners, int nl, const uint8_t key[WIRE_KEY_BYTES], bool can_encrypt,
		    struct wire_stream streams[WIRE_MAX_STREAMS], uint32_t *nstreams, char *err, size_t errlen)
{
	struct pending_conn pend[PENDING_MAX];
	struct pollfd pfd[WIRE_MAX_STREAMS + PENDING_MAX + WIRE_MAX_STREAMS];
	int slot_of[PENDING_MAX];
	struct refusal_log rl = { .window_start = now_ns() };
	uint8_t session[WIRE_SESSION_BYTES];
	bool have_session = false;
	uint32_t got = 0;
	uint64_t deadline = 0;
	char why[256];
	int rc = 0, left = 0;

	for (int i = 0; i < PENDING_MAX; i++) {
		memset(&pend[i], 0, sizeof(pend[i]));
		pend[i].h.fd = -1;
	}
	for (int i = 0; i < nl; i++) /* accept until EAGAIN, never block in accept() */
		fcntl(listeners[i], F_SETFL, fcntl(listeners[i], F_GETFL) | O_NONBLOCK);
	for (;;) {
		uint64_t now = now_ns(), wake = UINT64_MAX;
		int nfds = nl, timeout = -1;

		if (have_session) {
			if (now >= deadline) {
				errf(err, errlen, "only %u of %u migration streams connected", got, *nstreams);
				rc = -ETIMEDOUT;
				goto out;
			}
			wake = deadline;
		}
		for (int i = 0; i < nl; i++)
			pfd[i] = (struct pollfd){ .fd = listeners[i], .events = POLLIN };
		for (int i = 0; i < PENDING_MAX; i++) {
			if (pend[i].h.fd < 0)
				continue;
			slot_of[nfds - nl] = i;
			pfd[nfds++] = (struct pollfd){ .fd = pend[i].h.fd, .events = POLLIN };
			wake = MIN(wake, pend[i].deadline);
		}
		int npend = nfds;
		for (uint32_t i = 0; have_session && i < *nstreams; i++) /* a source that gives up is seen at once */
			if (streams[i].fd >= 0)
				pfd[nfds++] = (struct pollfd){ .fd = streams[i].fd, .events = POLLRDHUP };
		if (rl.suppressed) /* say how many were not logged once the window is over */
			wake = MIN(wake, rl.window_start + REFUSAL_LOG_WINDOW_MS * 1000000ULL);
		if (wake != UINT64_MAX)
			timeout = wake <= now ? 0 : (int)((wake - now) / 1000000) + 1;
		int r = poll(pfd, (nfds_t)nfds, timeout);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			rc = -errno;
			errf(err, errlen, "poll: %s", strerror(errno));
			goto out;
		}
		now = now_ns();
		if (rl.suppressed && now - rl.window_start >= REFUSAL_LOG_WINDOW_MS * 1000000ULL)
			refusal_log_flush(&rl);

		for (int k = npend; k < nfds; k++) {
			if (pfd[k].revents & (POLLRDHUP | POLLHUP | POLLERR)) {
				errf(err, errlen, "a migration stream closed before the other %u of its session connected "
				     "(the source gave up)", *nstreams - got);
				rc = -ECONNRESET;
				goto out;
			}
		}
		/* Pending handshakes first: a hello that is in completes before any eviction below. */
		for (int k = nl; k < npend; k++) {
			struct pending_conn *p = &pend[slot_of[k - nl]];
			struct wire_stream ws;
			uint8_t sess[WIRE_SESSION_BYTES];
			uint32_t count;

			r = pfd[k].revents ? wire_accept_read(&p->h, why, sizeof(why)) : 0;
			if (r == 0) {
				if (now >= p->deadline) {
					refusal_log(&rl, "dropped migration connection from %s: no handshake within %d ms (%zu of %d hello bytes)",
						    p->peer, HANDSHAKE_BUDGET_MS, p->h.got, WIRE_HELLO_S_BYTES);
					pending_drop(p);
				}
				continue;
			}
			if (r < 0 || wire_accept_finish(&ws, &p->h, key, sess, &count, why, sizeof(why))) {
				refusal_log(&rl, "refused migration connection from %s: %s", p->peer, why);
				pending_drop(p);
				continue;
			}
			snprintf(ws.peer, sizeof(ws.peer), "%s", p->peer);
			wire_handshake_clear(&p->h); /* ws owns the socket now */
			if (have_session && (memcmp(sess, session, sizeof(session)) || count != *nstreams ||
					     streams[ws.index].fd >= 0)) {
				glide_log("incoming", "refused stream %d from %s: not part of the current migration", ws.index,
					  ws.peer);
				wire_close(&ws);
				continue;
			}
			if (!have_session) {
				have_session = true;
				memcpy(session, sess, sizeof(session));
				*nstreams = count;
				deadline = now_ns() + INCOMING_STREAMS_WAIT_MS * 1000000ULL;
				glide_log("incoming", "migration from %s: %u stream%s, %s", ws.peer, count, count > 1 ? "s" : "",
					  ws.encrypted ? "encrypted" : "not encrypted");
			}
			streams[ws.index] = ws;
			if (++got == *nstreams)
				goto out;
		}

		for (int i = 0; i < nl; i++) {
			if (!(pfd[i].revents & POLLIN))
				continue;
			for (int n = 0; n < ACCEPTS_PER_ROUND; n++) {
				int fd = accept4(listeners[i], NULL, NULL, SOCK_CLOEXEC);
				if (fd < 0) {
					if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR &&
					    errno != ECONNABORTED)
						refusal_log(&rl, "cannot accept a migration connection: %s", strerror(errno));
					if (errno != EINTR && errno != ECONNABORTED)
						break;
					continue;
				}
				char peer[64];
				peer_name(fd, peer, sizeof(peer));
				struct pending_conn *p = pending_slot(pend, peer, &rl);
				if (wire_accept_start(&p->h, fd, can_encrypt, why, sizeof(why))) {
					refusal_log(&rl, "refused migration connection from %s: %s", peer, why);
					close(fd);
					wire_handshake_clear(&p->h);
					continue;
				}
				snprintf(p->peer, sizeof(p->peer), "%s", peer);
				p->since = now_ns();
				p->deadline = p->since + HANDSHAKE_BUDGET_MS * 1000000ULL;
			}
		}
	}
out:
	for (int i = 0; i < PENDING_MAX; i++) {
		if (pend[i].h.fd >= 0) {
			left++;
			pending_drop(&pend[i]);
		}
	}
	if (left)
		glide_log("incoming", "closed %d unauthenticated migration connection%s still pending", left,
			  left > 1 ? "s" : "");
	refusal_log_flush(&rl);
	return rc;
}
