/* Unit test: the stall clock of a migration stream (src/migrate/wire.c),
 * on a real TCP connection over loopback with a peer this test controls.
 *
 *  - a frozen peer whose kernel lets a little through late in the timeout
 *    (what receive-queue collapsing does at a zero-window probe) is still
 *    declared stalled one timeout after the first wait, not two;
 *  - a slow peer that keeps reading is never declared stalled, even when
 *    every send has to wait and the whole transfer takes longer than the
 *    timeout, nor is a slow steady link that moves far less than
 *    WIRE_STALL_PROGRESS_BYTES per timeout;
 *  - send buffer space our own kernel frees while the peer acknowledges
 *    nothing (on a cut link: merging the segments it retransmits) is not
 *    progress: stalled after one timeout;
 *  - a receive from a silent peer fails after the timeout;
 *  - a stream that waited a little, then sat idle longer than the timeout,
 *    starts a fresh clock on its next wait. */
#include "migrate/wire.h"
#include "common/util.h"
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define STALL_MS 1000
#define SMALL_BUF (64 * 1024)
#define FRAME_BYTES 1024

static int failures;

static void result(bool ok, const char *name, const char *detail)
{
	printf("%s wire stall: %s%s%s\n", ok ? "PASS" : "FAIL", name, detail[0] ? ": " : "", detail);
	failures += !ok;
}

struct pair {
	struct wire_stream src; /* the side under test */
	int peer_fd;            /* the other end, read and written raw */
};

struct accept_arg {
	int listen_fd;
	struct wire_stream dst;
	int rc;
	char err[256];
};

static void *accept_thread(void *arg)
{
	struct accept_arg *a = arg;
	uint8_t key[WIRE_KEY_BYTES] = { 7 }, session[WIRE_SESSION_BYTES];
	uint32_t count;
	int fd = accept(a->listen_fd, NULL, NULL);
	a->rc = fd < 0 ? -errno : wire_accept(&a->dst, fd, key, false, session, &count, a->err, sizeof(a->err));
	return NULL;
}

/* An authenticated plain stream over loopback; small socket buffers so that
 * a peer that does not read blocks the sender within a few hundred KiB. */
static int pair_open(struct pair *p)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t sl = sizeof(sa);
	struct accept_arg a = { 0 };
	struct wire_session_params sp = { .key = { 7 }, .stream_count = 1, .encrypt = ENCRYPT_OFF };
	char addr[64], err[256];
	pthread_t t;

	a.listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (a.listen_fd < 0 || bind(a.listen_fd, (struct sockaddr *)&sa, sizeof(sa)) ||
	    listen(a.listen_fd, 1) || getsockname(a.listen_fd, (struct sockaddr *)&sa, &sl))
		return -errno;
	snprintf(addr, sizeof(addr), "127.0.0.1:%u", ntohs(sa.sin_port));
	pthread_create(&t, NULL, accept_thread, &a);
	int rc = wire_connect(&p->src, addr, 0, &sp, -1, 2000, err, sizeof(err));
	pthread_join(t, NULL);
	close(a.listen_fd);
	if (rc || a.rc) {
		fprintf(stderr, "handshake failed: %s %s\n", rc ? err : "", a.rc ? a.err : "");
		return rc ? rc : a.rc;
	}
	/* the peer end is driven raw from here on */
	p->peer_fd = dup(a.dst.fd);
	wire_close(&a.dst);
	int small = SMALL_BUF;
	setsockopt(p->src.fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
	setsockopt(p->peer_fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
	wire_set_stall_timeout(&p->src, STALL_MS);
	return 0;
}

static void pair_close(struct pair *p)
{
	wire_close(&p->src);
	close(p->peer_fd);
}

/* The peer: after start_ms, reads `bytes` (0: all it can, forever) in
 * pieces of `piece`, one every gap_ms; -1 start_ms: reads nothing. */
struct reader {
	int fd;
	int start_ms;
	uint64_t bytes, piece, gap_ms;
	volatile bool stop;
	uint64_t got;
};

static void *reader_thread(void *arg)
{
	struct reader *r = arg;
	static uint8_t buf[1 << 20];
	uint64_t until = now_ns() + (uint64_t)r->start_ms * 1000000ULL;

	while (!r->stop && now_ns() < until)
		sleep_ns(1000000);
	while (!r->stop && (!r->bytes || r->got < r->bytes)) {
		uint64_t want = r->piece;
		if (r->bytes && r->bytes - r->got < want)
			want = r->bytes - r->got;
		ssize_t n = recv(r->fd, buf, want, MSG_DONTWAIT);
		if (n > 0)
			r->got += (uint64_t)n;
		else if (n == 0)
			break;
		sleep_ns(r->gap_ms ? r->gap_ms * 1000000ULL : 1000000);
	}
	return NULL;
}

/* Sends frames of FRAME_BYTES until `total` bytes went or a send fails. */
static int send_frames(struct wire_stream *s, uint64_t total, uint64_t *sent, char *err, size_t errlen)
{
	static uint8_t frame[FRAME_BYTES];
	*sent = 0;
	while (*sent < total) {
		int rc = wire_send_copy(s, 1, frame, sizeof(frame), err, errlen);
		if (rc)
			return rc;
		*sent += sizeof(frame);
	}
	return 0;
}

static void frozen_peer_with_late_trickle(void)
{
	struct pair p;
	char err[256], detail[512];
	uint64_t sent;
	if (pair_open(&p)) {
		result(false, "frozen peer with a late trickle", "cannot open a loopback stream");
		return;
	}
	/* Frozen, except that 0.8 timeouts in, 256 KiB leave its receive queue:
	 * with a deadline per frame, the frame in flight completed then and
	 * the next one got a fresh timeout (detection after ~1.8 timeouts). */
	struct reader r = { .fd = p.peer_fd, .start_ms = STALL_MS * 8 / 10, .bytes = 256 * 1024, .piece = 64 * 1024 };
	pthread_t t;
	pthread_create(&t, NULL, reader_thread, &r);
	uint64_t t0 = now_ns();
	int rc = send_frames(&p.src, 1ULL << 30, &sent, err, sizeof(err));
	double secs = (now_ns() - t0) / 1e9;
	r.stop = true;
	pthread_join(t, NULL);
	bool trickled = r.got > 0;
	snprintf(detail, sizeof(detail), "failed after %.2f s (timeout %.1f s, at most %.1f s allowed), %llu KiB sent, "
		 "peer read %llu KiB late: %s", secs, STALL_MS / 1e3, STALL_MS * 1.35 / 1e3,
		 (unsigned long long)(sent >> 10), (unsigned long long)(r.got >> 10), rc ? err : "no error");
	result(rc == -ETIMEDOUT && trickled && secs >= STALL_MS * 0.95 / 1e3 && secs <= STALL_MS * 1.35 / 1e3 &&
	       strstr(err, "stalled"), "a frozen peer that lets a little through late is stalled after one timeout",
	       detail);
	pair_close(&p);
}

/* Grows the sender's send buffer by 64 KiB in every part of the timeout. */
struct grower {
	int fd;
	volatile bool stop;
	int steps;
};

static void *grow_thread(void *arg)
{
	struct grower *g = arg;
	int size = SMALL_BUF;
	for (int i = 0; i < 3 * WIRE_STALL_SLOTS && !g->stop; i++) {
		sleep_ns(STALL_MS * 1000000ULL / WIRE_STALL_SLOTS);
		size += 64 * 1024;
		setsockopt(g->fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof(size));
		g->steps++;
	}
	return NULL;
}

static void space_freed_without_acks(void)
{
	struct pair p;
	char err[256] = "", detail[512];
	uint64_t sent;
	if (pair_open(&p)) {
		result(false, "space freed without acknowledgements", "cannot open a loopback stream");
		return;
	}
	/* The peer reads nothing; our send buffer grows in every part of the
	 * timeout, so send() takes more now and then. Counted as progress, that
	 * cleared the clock after 4 parts again and again (a cut 5 s link was
	 * noticed after 9 s). */
	struct grower g = { .fd = p.src.fd };
	pthread_t t;
	pthread_create(&t, NULL, grow_thread, &g);
	uint64_t t0 = now_ns();
	int rc = send_frames(&p.src, 1ULL << 30, &sent, err, sizeof(err));
	double secs = (now_ns() - t0) / 1e9;
	g.stop = true;
	pthread_join(t, NULL);
	snprintf(detail, sizeof(detail), "failed after %.2f s (timeout %.1f s, at most %.1f s allowed), %llu KiB taken by our "
		 "kernel, the send buffer grew %d times meanwhile: %s", secs, STALL_MS / 1e3, STALL_MS * 1.35 / 1e3,
		 (unsigned long long)(sent >> 10), g.steps, rc ? err : "no error");
	result(rc == -ETIMEDOUT && g.steps >= WIRE_STALL_PROGRESS_SLOTS && secs >= STALL_MS * 0.95 / 1e3 &&
	       secs <= STALL_MS * 1.35 / 1e3, "send buffer space freed while the peer acknowledges nothing is not progress",
	       detail);
	pair_close(&p);
}

/* A live peer that reads `piece` bytes every `gap_ms`: sending `total`
 * bytes takes longer than the timeout and must never be declared stalled. */
static void live_reader(const char *name, uint64_t piece, uint64_t gap_ms, uint64_t total)
{
	struct pair p;
	char err[256] = "", detail[512];
	uint64_t sent;
	if (pair_open(&p)) {
		result(false, name, "cannot open a loopback stream");
		return;
	}
	struct reader r = { .fd = p.peer_fd, .start_ms = 0, .bytes = 0, .piece = piece, .gap_ms = gap_ms };
	pthread_t t;
	pthread_create(&t, NULL, reader_thread, &r);
	uint64_t t0 = now_ns();
	int rc = send_frames(&p.src, total, &sent, err, sizeof(err));
	double secs = (now_ns() - t0) / 1e9;
	r.stop = true;
	pthread_join(t, NULL);
	snprintf(detail, sizeof(detail), "%llu of %llu KiB sent in %.2f s with a %.1f s timeout%s%s",
		 (unsigned long long)(sent >> 10), (unsigned long long)(total >> 10), secs, STALL_MS / 1e3,
		 rc ? ": " : "", err);
	result(rc == 0 && secs > STALL_MS / 1e3, name, detail);
	pair_close(&p);
}

static void silent_peer_receive(void)
{
	struct pair p;
	struct wire_frame f;
	char err[256] = "", detail[512];
	if (pair_open(&p)) {
		result(false, "silent peer", "cannot open a loopback stream");
		return;
	}
	wire_set_stall_timeout(&p.src, 300);
	uint64_t t0 = now_ns();
	int rc = wire_recv(&p.src, &f, err, sizeof(err));
	double secs = (now_ns() - t0) / 1e9;
	snprintf(detail, sizeof(detail), "receive failed after %.2f s (timeout 0.3 s): %s", secs, rc ? err : "no error");
	result(rc == -ETIMEDOUT && secs >= 0.28 && secs <= 0.6, "a receive from a silent peer fails after the timeout",
	       detail);
	pair_close(&p);
}

static void idle_stream_starts_a_fresh_clock(void)
{
	struct pair p;
	char err[256] = "", detail[512];
	uint64_t sent;
	if (pair_open(&p)) {
		result(false, "idle stream", "cannot open a loopback stream");
		return;
	}
	/* Twice: the sender fills the buffers and waits; after 0.3 timeouts the
	 * peer drains them (far less than WIRE_STALL_PROGRESS_BYTES, so that
	 * clock is not cleared by progress); between the two, the stream sits
	 * idle for 1.3 timeouts. The second wait must get a fresh clock. */
	int rc = 0;
	double secs[2] = { 0, 0 };
	for (int round = 0; round < 2 && !rc; round++) {
		struct reader r = { .fd = p.peer_fd, .start_ms = STALL_MS * 3 / 10, .bytes = 0, .piece = 64 * 1024 };
		pthread_t t;
		pthread_create(&t, NULL, reader_thread, &r);
		uint64_t t0 = now_ns();
		rc = send_frames(&p.src, 512 * 1024, &sent, err, sizeof(err));
		secs[round] = (now_ns() - t0) / 1e9;
		sleep_ns(200000000); /* let the peer take the rest */
		r.stop = true;
		pthread_join(t, NULL);
		if (round == 0)
			sleep_ns(STALL_MS * 1300000ULL);
	}
	snprintf(detail, sizeof(detail), "two blocked sends of 512 KiB took %.2f s and %.2f s around an idle %.1f s%s%s",
		 secs[0], secs[1], STALL_MS * 1.3 / 1e3, rc ? ": " : "", err);
	result(rc == 0 && secs[1] >= STALL_MS * 0.25 / 1e3, "an idle stream starts a fresh stall clock", detail);
	pair_close(&p);
}

int main(void)
{
	frozen_peer_with_late_trickle();
	/* ~12 MiB/s: every send waits for the peer, the 24 MiB take ~2 timeouts */
	live_reader("a slow peer that keeps reading is never stalled", 64 * 1024, 5, 24ULL << 20);
	/* ~1.3 MB/s: less than WIRE_STALL_PROGRESS_BYTES per timeout, but something
	 * goes out in every part of it (a long, lossy WAN link) */
	live_reader("a slow but steady link (1.3 MB/s, under 4 MiB per timeout) is never stalled", 32 * 1024, 25,
		    3ULL << 20);
	space_freed_without_acks();
	silent_peer_receive();
	idle_stream_starts_a_fresh_clock();
	return failures ? 1 : 0;
}
