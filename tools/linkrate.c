/* linkrate: what this machine can move at most, for benchmarks to put
 * their throughputs beside (bench/compare.sh, issue 14): one TCP
 * connection over 127.0.0.1 (the link every benchmark migration uses; a
 * sender and a receiver thread, 1 MiB writes), the same connection
 * received into memory never touched before (what a migration's
 * destination does in phase -1: every page it writes first is a page fault
 * that makes it present), the first touch of fresh memory alone (memset
 * into a new mapping), and memcpy between two buffers larger than the
 * caches. Prints one JSON object:
 *   {"tcp_loopback_bytes_per_s": ..., "tcp_into_fresh_memory_bytes_per_s": ...,
 *    "first_touch_bytes_per_s": ..., "memcpy_bytes_per_s": ..., "seconds": ...}
 *
 *   linkrate [--seconds S]     (each measure runs S seconds, default 1, at most 10)
 *
 * Traffic stays on 127.0.0.1 (an ephemeral port); nothing is installed. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define IO_BYTES (1u << 20)
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define COPY_BYTES (256u << 20)
#define FRESH_BYTES (256u << 20) /* a fresh mapping this large at a time */

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

struct receiver {
	int fd;
	bool fresh; /* into memory never touched: a new mapping every FRESH_BYTES */
	uint64_t bytes;
};

static void *receive_all(void *arg)
{
	struct receiver *r = arg;
	size_t size = r->fresh ? FRESH_BYTES : IO_BYTES, off = 0;
	char *buf = r->fresh ? mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0) : malloc(size);
	ssize_t n;
	if (!buf || buf == MAP_FAILED)
		goto fail;
	while ((n = recv(r->fd, buf + off, MIN(IO_BYTES, size - off), 0)) > 0) {
		r->bytes += (uint64_t)n;
		off = r->fresh ? off + (size_t)n : 0;
		if (off == size) {
			munmap(buf, size);
			buf = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
			if (buf == MAP_FAILED)
				goto fail;
			off = 0;
		}
	}
	if (r->fresh)
		munmap(buf, size);
	else
		free(buf);
	return NULL;
fail: /* no memory: the sender must not block on a receiver that is gone */
	shutdown(r->fd, SHUT_RDWR);
	return NULL;
}

/* Bytes per second through one loopback TCP connection for `seconds`, the
 * receiver writing into fresh memory or into one reused buffer; -1 on
 * failure. */
static double tcp_loopback(double seconds, bool fresh)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t sl = sizeof(sa);
	int ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), c = -1;
	struct receiver r = { .fd = -1, .fresh = fresh };
	pthread_t t;
	double rate = -1;
	char *buf = calloc(1, IO_BYTES);

	if (ls < 0 || !buf || bind(ls, (struct sockaddr *)&sa, sizeof(sa)) || listen(ls, 1) ||
	    getsockname(ls, (struct sockaddr *)&sa, &sl))
		goto out;
	c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c < 0 || connect(c, (struct sockaddr *)&sa, sizeof(sa)) || (r.fd = accept(ls, NULL, NULL)) < 0)
		goto out;
	if (pthread_create(&t, NULL, receive_all, &r))
		goto out;
	memset(buf, 0x5a, IO_BYTES); /* not zero pages: what a migration of touched memory sends */
	double t0 = now_s(), t1 = t0;
	uint64_t sent = 0;
	while (t1 - t0 < seconds) {
		ssize_t n = send(c, buf, IO_BYTES, MSG_NOSIGNAL);
		if (n <= 0)
			break;
		sent += (uint64_t)n;
		t1 = now_s();
	}
	shutdown(c, SHUT_WR);
	pthread_join(t, NULL);
	t1 = now_s(); /* until the receiver had everything */
	if (r.bytes == sent && t1 > t0)
		rate = sent / (t1 - t0);
out:
	if (r.fd >= 0)
		close(r.fd);
	if (c >= 0)
		close(c);
	if (ls >= 0)
		close(ls);
	free(buf);
	return rate;
}

/* Bytes per second memset writes into memory never touched before (each
 * page a fault that makes it present), or -1. */
static double first_touch_rate(double seconds)
{
	double t0 = now_s(), t1 = t0;
	uint64_t touched = 0;
	for (int i = 0; t1 - t0 < seconds || i == 0; i++) {
		char *p = mmap(NULL, FRESH_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (p == MAP_FAILED)
			return -1;
		memset(p, 0x5a, FRESH_BYTES);
		touched += FRESH_BYTES;
		t1 = now_s();
		munmap(p, FRESH_BYTES);
	}
	return touched / (t1 - t0);
}

/* Bytes per second memcpy moves between two COPY_BYTES buffers, or -1. */
static double memcpy_rate(double seconds)
{
	char *a = malloc(COPY_BYTES), *b = malloc(COPY_BYTES);
	double rate = -1;
	if (!a || !b)
		goto out;
	memset(a, 0x5a, COPY_BYTES);
	memset(b, 0xa5, COPY_BYTES); /* both touched: no first-touch faults in the measure */
	double t0 = now_s(), t1 = t0;
	uint64_t copied = 0;
	for (int i = 0; t1 - t0 < seconds || i == 0; i++) {
		memcpy(i % 2 ? a : b, i % 2 ? b : a, COPY_BYTES);
		copied += COPY_BYTES;
		t1 = now_s();
	}
	rate = copied / (t1 - t0);
out:
	free(a);
	free(b);
	return rate;
}

int main(int argc, char **argv)
{
	double seconds = 1;
	for (int i = 1; i < argc; i++) {
		char *end;
		if (!strcmp(argv[i], "--seconds") && i + 1 < argc) {
			seconds = strtod(argv[++i], &end);
			if (*end || !(seconds > 0 && seconds <= 10)) {
				fprintf(stderr, "linkrate: --seconds must be a number in (0, 10]\n");
				return 2;
			}
		} else {
			fprintf(stderr, "usage: linkrate [--seconds S]\n");
			return 2;
		}
	}
	double tcp = tcp_loopback(seconds, false), tcp_fresh = tcp_loopback(seconds, true);
	double touch = first_touch_rate(seconds), mem = memcpy_rate(seconds);
	const char *failed = tcp < 0 ? "the loopback TCP measure" : tcp_fresh < 0 ? "the TCP into fresh memory measure"
			   : touch < 0 ? "the first touch measure" : mem < 0 ? "the memcpy measure" : NULL;
	if (failed) {
		fprintf(stderr, "linkrate: %s failed: %s\n", failed, strerror(errno));
		return 1;
	}
	printf("{\"tcp_loopback_bytes_per_s\": %.0f, \"tcp_into_fresh_memory_bytes_per_s\": %.0f, "
	       "\"first_touch_bytes_per_s\": %.0f, \"memcpy_bytes_per_s\": %.0f, \"seconds\": %g}\n",
	       tcp, tcp_fresh, touch, mem, seconds);
	return 0;
}
