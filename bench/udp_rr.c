/*
 * udp_rr: UDP request/response rate against an echo server (bench/devices.sh).
 *
 *   udp_rr ADDR PORT [--seconds S] [--window K] [--size BYTES] [--warmup S] [--timeout-ms MS]
 *
 * Keeps K datagrams in flight: each echo that comes back (same bytes, from
 * ADDR:PORT) is timed and replaced by a new datagram. When nothing comes
 * back for --timeout-ms (default 100) every datagram in flight is counted
 * lost and a fresh window is sent (a stall; echoes of those datagrams that
 * still come back are counted late). Round trips of the first --warmup seconds
 * (default 0.5) are not counted. Then sends for --seconds (default 5, at most
 * 60) and waits --timeout-ms for the last echoes. Prints one JSON line:
 * round trips per second, latency percentiles of each round trip (us),
 * datagrams sent, echoed, lost, late (echoed after being counted lost), never
 * echoed (lost - late), bad (wrong length or bytes) and the stalls. Exit 0 if at least one echo came back.
 * Bounded: at most 60 s, at most 16M latency samples kept.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_SAMPLES (16u << 20)
#define MAX_SIZE 1472

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

static void fill(unsigned char *buf, size_t size, uint64_t seq, uint64_t t)
{
	memset(buf, 0, size);
	for (size_t i = 16; i < size; i++)
		buf[i] = (unsigned char)(i * 7 + seq);
	if (size >= 16) {
		memcpy(buf, &seq, 8);
		memcpy(buf + 8, &t, 8);
	}
}

static void usage(void)
{
	fprintf(stderr, "usage: udp_rr ADDR PORT [--seconds S] [--window K] [--size BYTES] [--warmup S] "
			"[--timeout-ms MS]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	double seconds = 5, warmup = 0.5;
	long window = 1, size = 64, timeout_ms = 100;
	if (argc < 3)
		usage();
	const char *addr = argv[1];
	int port = atoi(argv[2]);
	for (int i = 3; i < argc; i++) {
		if (i + 1 >= argc)
			usage();
		if (!strcmp(argv[i], "--seconds"))
			seconds = atof(argv[++i]);
		else if (!strcmp(argv[i], "--window"))
			window = atol(argv[++i]);
		else if (!strcmp(argv[i], "--size"))
			size = atol(argv[++i]);
		else if (!strcmp(argv[i], "--warmup"))
			warmup = atof(argv[++i]);
		else if (!strcmp(argv[i], "--timeout-ms"))
			timeout_ms = atol(argv[++i]);
		else
			usage();
	}
	if (seconds <= 0 || seconds > 60 || warmup < 0 || warmup > 10 || window < 1 || window > 1024 ||
	    size < 16 || size > MAX_SIZE || timeout_ms < 1 || timeout_ms > 10000 || port <= 0 || port > 65535)
		usage();

	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	if (s < 0 || inet_pton(AF_INET, addr, &sa.sin_addr) != 1 || connect(s, (struct sockaddr *)&sa, sizeof(sa))) {
		perror("udp_rr: socket/connect");
		return 2;
	}
	int rcvbuf = 4 << 20;
	setsockopt(s, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));

	uint32_t *lat = malloc(MAX_SAMPLES * sizeof(*lat));
	if (!lat)
		return 2;
	unsigned char out[MAX_SIZE], in[MAX_SIZE + 1], want[MAX_SIZE];
	uint64_t seq = 0, sent = 0, echoed = 0, counted = 0, lost = 0, late = 0, bad = 0, nlat = 0, stalls = 0;
	uint64_t inflight = 0, lost_below = 0; /* echoes of datagrams below lost_below were counted lost */
	uint64_t t0 = now_ns(), t_warm = t0 + (uint64_t)(warmup * 1e9), t_end = t_warm + (uint64_t)(seconds * 1e9);
	uint64_t last_rx = t0;
	int sending = 1;

	for (;;) {
		uint64_t t = now_ns();
		if (sending && t >= t_end)
			sending = 0;
		while (sending && inflight < (uint64_t)window) {
			fill(out, (size_t)size, seq, now_ns());
			if (send(s, out, (size_t)size, 0) < 0) {
				if (errno == EINTR)
					continue;
				if (errno == ENOBUFS || errno == EAGAIN || errno == ECONNREFUSED)
					break; /* retried at the next echo or timeout */
				perror("udp_rr: send");
				return 2;
			}
			seq++, sent++, inflight++;
		}
		if (!sending && inflight == 0)
			break;
		struct pollfd p = { .fd = s, .events = POLLIN };
		int wait_ms = (int)timeout_ms - (int)((t - last_rx) / 1000000);
		int r = poll(&p, 1, wait_ms > 0 ? wait_ms : 0);
		if (r < 0 && errno != EINTR)
			return 2;
		t = now_ns();
		if (r <= 0) {
			if (t - last_rx >= (uint64_t)timeout_ms * 1000000) {
				lost += inflight; /* nothing for a while: the window is gone */
				stalls += inflight > 0;
				inflight = 0;
				lost_below = seq;
				last_rx = t;
				if (!sending)
					break;
			}
			continue;
		}
		for (;;) {
			ssize_t n = recv(s, in, sizeof(in), MSG_DONTWAIT);
			if (n < 0) {
				if (errno == ECONNREFUSED)
					continue;
				break;
			}
			t = now_ns();
			last_rx = t;
			uint64_t rseq, rts;
			if (n != size) {
				bad++;
				continue;
			}
			memcpy(&rseq, in, 8);
			memcpy(&rts, in + 8, 8);
			fill(want, (size_t)size, rseq, rts);
			if (rseq >= seq || memcmp(in, want, (size_t)size)) {
				bad++;
				continue;
			}
			echoed++;
			if (rseq < lost_below) {
				late++;
				continue;
			}
			inflight--;
			if (rts >= t_warm && t <= t_end) {
				counted++;
				if (nlat < MAX_SAMPLES)
					lat[nlat++] = (uint32_t)((t - rts) / 100 > UINT32_MAX ? UINT32_MAX : (t - rts) / 100);
			}
		}
	}
	qsort(lat, nlat, sizeof(*lat), cmp_u32);
	/* the rate over the measured interval: from the warm-up's end to the end of sending */
	double span = (double)(t_end - t_warm) / 1e9;
	double rate = counted / span;
#define PCT(q) (nlat ? lat[(size_t)((double)(nlat - 1) * (q))] / 10.0 : -1.0)
	printf("{\"seconds\": %.3f, \"window\": %ld, \"size\": %ld, \"rate\": %.1f, \"round_trips\": %llu, "
	       "\"sent\": %llu, \"echoed\": %llu, \"lost\": %llu, \"late\": %llu, \"never_echoed\": %llu, "
	       "\"bad\": %llu, \"stalls\": %llu, "
	       "\"lat_us\": {\"min\": %.1f, \"p50\": %.1f, \"p90\": %.1f, \"p99\": %.1f, \"max\": %.1f}}\n",
	       span, window, size, rate, (unsigned long long)counted, (unsigned long long)sent,
	       (unsigned long long)echoed, (unsigned long long)lost, (unsigned long long)late,
	       (unsigned long long)(lost > late ? lost - late : 0), (unsigned long long)bad, (unsigned long long)stalls, PCT(0), PCT(0.5), PCT(0.9), PCT(0.99), PCT(1.0));
	free(lat);
	close(s);
	return echoed ? 0 : 1;
}
