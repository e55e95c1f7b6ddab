/* Fuzz target: the migration wire (src/migrate/wire.c) as the destination
 * sees it: wire_recv() on one end of a socketpair whose other end a writer
 * thread feeds, and the handshake (wire_accept()).
 *
 * wire.c keeps stream_setup() and the MAC helpers static, so this file
 * includes wire.c. Byte 0 of the input picks the mode:
 *   bits 0-1  0: raw frames, plain (CRC) stream
 *             1: raw frames, encrypted (AES-256-GCM) stream
 *             2: frames built by a real sender (wire_send_copy() into a
 *                memfd, same key), then optionally corrupted: plain or
 *                encrypted by bit 2; records {u8 type, u8 flags, u16 len,
 *                payload}, flags bit 0 skips a sequence number; with bit 3
 *                the last 4 input bytes are {u24 offset, u8 xor}
 *             3: handshake: the writer reads the destination's hello and
 *                answers with fields from the input (88 bytes) and a valid
 *                MAC, so the checks after the MAC are reached
 * Then wire_recv() runs until it fails (at the latest at end of input). */
#include "../../src/migrate/wire.c"
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>

static const uint8_t fuzz_key[WIRE_KEY_BYTES] = "glide fuzz one-time key 32 bytes";

struct feed {
	int fd;
	const uint8_t *p;
	size_t len;
	bool handshake;
};

static void *writer(void *arg)
{
	struct feed *fd = arg;
	if (fd->handshake) {
		uint8_t hd[HELLO_D_BYTES], hs[HELLO_S_BYTES] = { 0 }, ad[AUTH_D_BYTES];
		if (read_full(fd->fd, hd, sizeof(hd)) == 0) {
			memcpy(hs, fd->p, MIN(fd->len, HELLO_S_BYTES - WIRE_MAC_BYTES));
			client_mac(fuzz_key, hs, hd + 16, hs + HELLO_S_BYTES - WIRE_MAC_BYTES);
			if (write_full(fd->fd, hs, sizeof(hs)) == 0)
				read_full(fd->fd, ad, sizeof(ad));
		}
	} else if (fd->len) {
		write_full(fd->fd, fd->p, fd->len);
	}
	shutdown(fd->fd, SHUT_WR);
	return NULL;
}

static struct wire_stream rx_plain, rx_enc, tx_plain, tx_enc;
static int memfd = -1;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	signal(SIGPIPE, SIG_IGN); /* write_full() after the reader gave up */
	memcpy(rx_enc.rx_key, fuzz_key, WIRE_KEY_BYTES);
	memcpy(tx_enc.tx_key, fuzz_key, WIRE_KEY_BYTES);
	rx_enc.encrypted = tx_enc.encrypted = true;
	if (stream_setup(&rx_plain) || stream_setup(&rx_enc) || stream_setup(&tx_plain) || stream_setup(&tx_enc))
		abort();
	memfd = memfd_create("fuzz-wire", MFD_CLOEXEC);
	if (memfd < 0)
		abort();
	return 0;
}

/* Mode 2: a real sender writes frames into the memfd; returns a malloc'd stream. */
static uint8_t *build_frames(const uint8_t *d, size_t len, bool enc, bool corrupt, size_t *out_len)
{
	struct wire_stream *tx = enc ? &tx_enc : &tx_plain;
	char err[256];
	size_t off = 0, end = corrupt && len >= 4 ? len - 4 : len;
	uint8_t *buf;
	off_t n;

	if (ftruncate(memfd, 0) || lseek(memfd, 0, SEEK_SET))
		abort();
	tx->fd = memfd;
	tx->tx_seq = 0;
	while (end - off >= 4) {
		uint32_t type = d[off], flags = d[off + 1], plen = (uint32_t)d[off + 2] | (uint32_t)d[off + 3] << 8;
		off += 4;
		if (plen > end - off)
			plen = (uint32_t)(end - off);
		if (flags & 1)
			tx->tx_seq++;
		if (wire_send_copy(tx, type, d + off, plen, err, sizeof(err)))
			abort();
		off += plen;
	}
	n = lseek(memfd, 0, SEEK_END);
	buf = malloc(n ? (size_t)n : 1);
	if (!buf || pread(memfd, buf, (size_t)n, 0) != n)
		abort();
	if (corrupt && len >= 4 && n > 0) {
		size_t pos = ((size_t)d[len - 4] | (size_t)d[len - 3] << 8 | (size_t)d[len - 2] << 16) % (size_t)n;
		buf[pos] ^= d[len - 1] ? d[len - 1] : 1;
	}
	*out_len = (size_t)n;
	return buf;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int sv[2];
	struct feed feed;
	pthread_t t;
	uint8_t *built = NULL;
	char err[512];
	unsigned mode;
	struct wire_stream *rx;

	if (size < 1)
		return 0;
	mode = data[0] & 3;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv))
		abort();
	feed = (struct feed){ .fd = sv[1], .p = data + 1, .len = size - 1 };
	if (mode == 3) {
		struct wire_stream s;
		uint8_t session[WIRE_SESSION_BYTES];
		uint32_t count = 0;
		feed.handshake = true;
		pthread_create(&t, NULL, writer, &feed);
		if (wire_accept(&s, sv[0], fuzz_key, data[0] & 4, session, &count, err, sizeof(err)) == 0) {
			if (s.index < 0 || (uint32_t)s.index >= count || count == 0 || count > WIRE_MAX_STREAMS) {
				fprintf(stderr, "wire_accept accepted stream %d of %u\n", s.index, count);
				abort();
			}
			s.fd = -1; /* sv[0] is closed below */
			wire_close(&s);
		}
		close(sv[0]); /* a writer still waiting for our answer gets EOF */
		pthread_join(t, NULL);
		close(sv[1]);
		return 0;
	}
	if (mode == 2) {
		bool enc = data[0] & 4;
		built = build_frames(data + 1, size - 1, enc, data[0] & 8, &feed.len);
		feed.p = built;
		rx = enc ? &rx_enc : &rx_plain;
	} else {
		rx = mode == 1 ? &rx_enc : &rx_plain;
	}
	rx->fd = sv[0];
	rx->rx_seq = 0;
	rx->index = 0;
	pthread_create(&t, NULL, writer, &feed);
	for (int i = 0; i < 100000; i++) {
		struct wire_frame f;
		if (wire_recv(rx, &f, err, sizeof(err)))
			break;
		if (f.len > WIRE_FRAME_MAX_PAYLOAD || f.type == 0 || f.type > FRAME_TYPE_MAX ||
		    f.payload != rx->rx_buf + WIRE_FRAME_HEADER_BYTES) {
			fprintf(stderr, "wire_recv returned a bad frame (type %u, length %u)\n", f.type, f.len);
			abort();
		}
		/* touch the payload as a consumer would */
		volatile uint8_t x = 0;
		for (uint32_t k = 0; k < f.len; k++)
			x ^= f.payload[k];
		(void)x;
	}
	/* the reader may stop early: drain so the writer can finish */
	close(sv[0]);
	pthread_join(t, NULL);
	close(sv[1]);
	rx->fd = -1;
	free(built);
	return 0;
}
