/* The migration wire: TCP connections that both sides authenticate with the
 * one-time key (HMAC-SHA256 over fresh nonces, never the key itself), then
 * frames: header (type, length, sequence) + payload + trailer.
 *
 * Encrypted streams use AES-256-GCM with per-stream, per-direction keys
 * derived from the one-time key, the session id and both nonces; the IV is
 * the frame sequence number and the header is authenticated data, so a
 * flipped bit, a replayed or reordered frame fails the tag check. Plain
 * streams carry a CRC32 of header and payload instead. */
#include "migrate/wire.h"
#include "common/util.h"
#include "common/net.h"
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/time.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <linux/sockios.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <zlib.h>

#define HELLO_D_BYTES WIRE_HELLO_D_BYTES
#define HELLO_S_BYTES WIRE_HELLO_S_BYTES
#define AUTH_D_BYTES (4 + 4 + WIRE_MAC_BYTES)
#define WIRE_BUF_BYTES WIRE_FRAME_BUF_BYTES(WIRE_FRAME_MAX_PAYLOAD)
#define HANDSHAKE_TIMEOUT_MS 10000

const char *wire_frame_name(uint32_t type)
{
	static const char *names[] = { "?", "CONFIG", "CONFIG_OK", "LIVE", "PROBE", "FINAL", "STATE",
				       "RESTORED", "GO", "RUNNING", "ABORT", "SYNC", "SYNC_ACK", "VERIFY", "NET", "NET_END",
				       "FILE_DATA", "FILE_END", "FILE_OK", "MIRROR", "MIRROR_ACK" };
	return type < sizeof(names) / sizeof(names[0]) ? names[type] : "?";
}

int wire_parse_addrs(const char *list, char addrs[][128], int max)
{
	int n = 0;
	const char *p = list;
	while (p && *p) {
		const char *comma = strchr(p, ',');
		size_t len = comma ? (size_t)(comma - p) : strlen(p);
		if (!len || len >= 128 || n >= max || !memchr(p, ':', len))
			return -EINVAL;
		memcpy(addrs[n], p, len);
		addrs[n][len] = 0;
		n++;
		p = comma ? comma + 1 : NULL;
	}
	return n ? n : -EINVAL;
}

static void hmac(const uint8_t key[WIRE_KEY_BYTES], const void *msg, size_t len, uint8_t out[WIRE_MAC_BYTES])
{
	unsigned int outlen = WIRE_MAC_BYTES;
	HMAC(EVP_sha256(), key, WIRE_KEY_BYTES, msg, len, out, &outlen);
}

static int timed_io(int fd, void *buf, size_t len, bool is_write, int timeout_ms)
{
	uint8_t *p = buf;
	uint64_t deadline = now_ns() + (uint64_t)timeout_ms * 1000000ULL;
	while (len) {
		struct pollfd pfd = { .fd = fd, .events = is_write ? POLLOUT : POLLIN };
		uint64_t now = now_ns();
		if (now >= deadline)
			return -ETIMEDOUT;
		int r = poll(&pfd, 1, (int)((deadline - now) / 1000000ULL) + 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return r ? -errno : -ETIMEDOUT;
		ssize_t n = is_write ? send(fd, p, len, MSG_NOSIGNAL) : recv(fd, p, len, 0);
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -EPIPE;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static void derive_keys(struct wire_stream *s, const uint8_t key[WIRE_KEY_BYTES], const uint8_t *session,
			const uint8_t *nonce_d, const uint8_t *nonce_s, bool is_source)
{
	uint8_t msg[32 + WIRE_SESSION_BYTES + 2 * WIRE_NONCE_BYTES + 4];
	uint8_t s2d[WIRE_MAC_BYTES], d2s[WIRE_MAC_BYTES];
	uint32_t idx = (uint32_t)s->index;
	size_t n;

	for (int dir = 0; dir < 2; dir++) {
		memset(msg, 0, sizeof(msg));
		memcpy(msg, dir ? "glide/1 key d2s" : "glide/1 key s2d", 15);
		n = 32;
		memcpy(msg + n, session, WIRE_SESSION_BYTES), n += WIRE_SESSION_BYTES;
		memcpy(msg + n, nonce_d, WIRE_NONCE_BYTES), n += WIRE_NONCE_BYTES;
		memcpy(msg + n, nonce_s, WIRE_NONCE_BYTES), n += WIRE_NONCE_BYTES;
		memcpy(msg + n, &idx, 4), n += 4;
		hmac(key, msg, n, dir ? d2s : s2d);
	}
	memcpy(s->tx_key, is_source ? s2d : d2s, WIRE_KEY_BYTES);
	memcpy(s->rx_key, is_source ? d2s : s2d, WIRE_KEY_BYTES);
	explicit_bzero(s2d, sizeof(s2d));
	explicit_bzero(d2s, sizeof(d2s));
}

static int stream_setup(struct wire_stream *s)
{
	s->tx_buf = malloc(WIRE_BUF_BYTES);
	s->rx_buf = malloc(WIRE_BUF_BYTES);
	if (!s->tx_buf || !s->rx_buf)
		return -ENOMEM;
	if (s->encrypted) {
		s->tx_ctx = EVP_CIPHER_CTX_new();
		s->rx_ctx = EVP_CIPHER_CTX_new();
		if (!s->tx_ctx || !s->rx_ctx ||
		    EVP_EncryptInit_ex(s->tx_ctx, EVP_aes_256_gcm(), NULL, s->tx_key, NULL) != 1 ||
		    EVP_DecryptInit_ex(s->rx_ctx, EVP_aes_256_gcm(), NULL, s->rx_key, NULL) != 1)
			return -EIO;
	}
	return 0;
}

static void client_mac(const uint8_t key[WIRE_KEY_BYTES], const uint8_t *hello_s_without_mac,
		       const uint8_t *nonce_d, uint8_t out[WIRE_MAC_BYTES])
{
	uint8_t msg[16 + WIRE_NONCE_BYTES + HELLO_S_BYTES];
	memcpy(msg, "glide/1 client\0\0", 16);
	memcpy(msg + 16, nonce_d, WIRE_NONCE_BYTES);
	memcpy(msg + 16 + WIRE_NONCE_BYTES, hello_s_without_mac, HELLO_S_BYTES - WIRE_MAC_BYTES);
	hmac(key, msg, 16 + WIRE_NONCE_BYTES + HELLO_S_BYTES - WIRE_MAC_BYTES, out);
}

static void server_mac(const uint8_t key[WIRE_KEY_BYTES], const uint8_t *auth_without_mac, const uint8_t *nonce_s,
		       const uint8_t *nonce_d, const uint8_t *session, uint8_t out[WIRE_MAC_BYTES])
{
	uint8_t msg[16 + 2 * WIRE_NONCE_BYTES + WIRE_SESSION_BYTES + 8];
	size_t n = 0;
	memcpy(msg, "glide/1 server\0\0", 16), n = 16;
	memcpy(msg + n, nonce_s, WIRE_NONCE_BYTES), n += WIRE_NONCE_BYTES;
	memcpy(msg + n, nonce_d, WIRE_NONCE_BYTES), n += WIRE_NONCE_BYTES;
	memcpy(msg + n, session, WIRE_SESSION_BYTES), n += WIRE_SESSION_BYTES;
	memcpy(msg + n, auth_without_mac, 8), n += 8;
	hmac(key, msg, n, out);
}

/* Data phase: one stall clock per stream. It starts the first time an
 * operation on the stream has to wait and runs across frames and
 * directions until the peer shows it is alive: it sends us a byte, or it
 * acknowledges what we send, at least WIRE_STALL_PROGRESS_BYTES or in
 * WIRE_STALL_PROGRESS_SLOTS of the WIRE_STALL_SLOTS parts of the timeout
 * after the first (a slow but live link moves something in every part; a
 * frozen peer only right after the first wait, while the buffers settle,
 * and at most once or twice later). When it reaches the stall timeout, the
 * operation fails with -ETIMEDOUT.
 *
 * Two lessons are in this. A frozen peer's kernel still accepts a few
 * hundred KiB now and then (receive queue collapsing, seen at its
 * zero-window probes, which back off to ~25 s): with a deadline per frame
 * part, that let the part in flight finish late and gave the next part a
 * fresh timeout, so a frozen destination was noticed after up to twice the
 * timeout (59.7 s of 30 s, in a sanitizer run). And what our own kernel
 * accepts is not what the peer got: on a cut link, no ACK comes back, yet
 * our kernel frees send buffer space as it merges the queued segments it
 * retransmits, and send() takes a few hundred KiB at a time; counted as
 * progress, that restarted the clock and a cut link was noticed after 9 s
 * of a 5 s timeout (a CI run). So sent bytes count once acknowledged: what
 * we handed over minus what is still in the socket's send queue (SIOCOUTQ).
 * A clock that has not seen a wait for a whole timeout (an idle stream)
 * starts again. Cancel uses shutdown(), which wakes the poll at once. */
static void set_blocking(int fd)
{
	int fl = fcntl(fd, F_GETFL);
	fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
}

/* What the peer has acknowledged of what we sent (all of it on a file). */
static uint64_t peer_acked(const struct wire_stream *s)
{
	int queued = 0;
	if (ioctl(s->fd, SIOCOUTQ, &queued) || queued < 0 || (uint64_t)queued > s->tx_accepted)
		return s->tx_accepted;
	return s->tx_accepted - (uint64_t)queued;
}

/* Counts what the peer acknowledged since the last look; clears the clock
 * when that shows the peer is alive. Acknowledgements at or after the
 * deadline are too late to count. */
static void stall_count_acked(struct wire_stream *s, uint64_t stall_ns)
{
	uint64_t acked = peer_acked(s), now = now_ns();
	if (acked <= s->stall_acked)
		return;
	uint64_t part = (now - s->stall_since) * WIRE_STALL_SLOTS / stall_ns;
	if (part < WIRE_STALL_SLOTS)
		s->stall_slots |= 1u << part;
	s->stall_moved += acked - s->stall_acked;
	s->stall_acked = acked;
	if (s->stall_moved >= WIRE_STALL_PROGRESS_BYTES ||
	    __builtin_popcount(s->stall_slots & ~1u) >= WIRE_STALL_PROGRESS_SLOTS)
		s->stall_since = 0; /* the peer is alive */
}

static int stream_io(struct wire_stream *s, void *buf, size_t len, bool is_write)
{
	uint8_t *p = buf;
	uint64_t stall_ns = (s->stall_ms ? s->stall_ms : WIRE_STALL_TIMEOUT_MS_DEFAULT) * 1000000ULL;

	while (len) {
		ssize_t n = is_write ? send(s->fd, p, len, MSG_NOSIGNAL | MSG_DONTWAIT) : recv(s->fd, p, len, MSG_DONTWAIT);
		if (n < 0 && errno == ENOTSOCK) /* a file (the fuzz target's memfd): plain I/O */
			n = is_write ? write(s->fd, p, len) : read(s->fd, p, len);
		if (n > 0) {
			p += n;
			len -= (size_t)n;
			if (is_write)
				s->tx_accepted += (uint64_t)n;
			if (s->stall_since) {
				if (is_write)
					stall_count_acked(s, stall_ns);
				else
					s->stall_since = 0; /* the peer sent us something: alive */
			}
			continue;
		}
		if (n == 0)
			return -EPIPE;
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK)
			return -errno;
		uint64_t now = now_ns();
		if (!s->stall_since || now - s->stall_last_wait >= stall_ns) {
			s->stall_since = now;
			s->stall_moved = 0;
			s->stall_slots = 0;
			s->stall_acked = peer_acked(s);
		} else if (is_write) {
			stall_count_acked(s, stall_ns);
			if (!s->stall_since) /* alive: this wait starts a new clock */
				continue;
		}
		s->stall_last_wait = now;
		uint64_t deadline = s->stall_since + stall_ns;
		if (now >= deadline)
			return -ETIMEDOUT;
		/* A writer also watches for the peer's end of the connection: a
		 * peer that closed its side (a FIN: it exited, or a proxy cut the
		 * link) sends no acknowledgement again, and while its socket stays
		 * open its kernel may keep taking data until its buffer is full,
		 * so without this the writer only failed at the stall timeout. */
		struct pollfd pfd = { .fd = s->fd, .events = is_write ? POLLOUT | POLLRDHUP : POLLIN };
		int timeout = (int)MIN((deadline - now) / 1000000ULL + 1, (uint64_t)INT32_MAX);
		if (poll(&pfd, 1, timeout) < 0 && errno != EINTR)
			return -errno;
		if (is_write && (pfd.revents & POLLRDHUP))
			return -EPIPE;
		s->stall_last_wait = now_ns();
	}
	return 0;
}

void wire_short_queue(struct wire_stream *s, bool source)
{
	int v = source ? (int)WIRE_SHORT_QUEUE_UNSENT : (int)WIRE_SHORT_QUEUE_RCVBUF;
	if (source)
		setsockopt(s->fd, IPPROTO_TCP, TCP_NOTSENT_LOWAT, &v, sizeof(v));
	else
		setsockopt(s->fd, SOL_SOCKET, SO_RCVBUF, &v, sizeof(v));
}

void wire_set_stall_timeout(struct wire_stream *s, uint64_t ms)
{
	s->stall_ms = ms;
}

int wire_connect(struct wire_stream *s, const char *addr, int index, const struct wire_session_params *p,
		 int dscp, int timeout_ms, char *err, size_t errlen)
{
	uint8_t hd[HELLO_D_BYTES], hs[HELLO_S_BYTES], ad[AUTH_D_BYTES], mac[WIRE_MAC_BYTES];
	uint8_t nonce_s[WIRE_NONCE_BYTES];
	uint32_t version, flags, status, u;
	int fd, rc;

	memset(s, 0, sizeof(*s));
	s->fd = -1;
	s->index = index;
	snprintf(s->peer, sizeof(s->peer), "%s", addr);
	fd = net_connect_tcp(addr, timeout_ms, dscp, err, errlen);
	if (fd < 0)
		return fd;
	s->fd = fd;
	rc = timed_io(fd, hd, sizeof(hd), false, HANDSHAKE_TIMEOUT_MS);
	if (rc) {
		errf(err, errlen, "%s: no migration handshake from the destination (%s)", addr,
		     rc == -EPIPE ? "connection closed" : strerror(-rc));
		goto fail;
	}
	if (memcmp(hd, WIRE_MAGIC, 8)) {
		errf(err, errlen, "%s is not a glide migration destination", addr);
		rc = -EPROTO;
		goto fail;
	}
	memcpy(&version, hd + 8, 4);
	memcpy(&flags, hd + 12, 4);
	if (version != WIRE_PROTOCOL_VERSION) {
		errf(err, errlen, "%s speaks migration protocol version %u, this glide speaks %u", addr, version,
		     WIRE_PROTOCOL_VERSION);
		rc = -EPROTONOSUPPORT;
		goto fail;
	}
	bool dest_can_encrypt = flags & WIRE_FLAG_ENCRYPT;
	if (p->encrypt == ENCRYPT_REQUIRED && !dest_can_encrypt) {
		errf(err, errlen, "encryption is required but the destination %s does not support it", addr);
		rc = -EPROTO;
		goto fail;
	}
	RAND_bytes(nonce_s, sizeof(nonce_s));
	size_t n = 0;
	memcpy(hs, WIRE_MAGIC, 8), n = 8;
	u = WIRE_PROTOCOL_VERSION, memcpy(hs + n, &u, 4), n += 4;
	u = (p->encrypt != ENCRYPT_OFF && dest_can_encrypt ? WIRE_FLAG_ENCRYPT : 0) |
	    (p->encrypt == ENCRYPT_REQUIRED ? WIRE_FLAG_ENCRYPT_REQUIRED : 0);
	memcpy(hs + n, &u, 4), n += 4;
	memcpy(hs + n, p->session, WIRE_SESSION_BYTES), n += WIRE_SESSION_BYTES;
	u = (uint32_t)index, memcpy(hs + n, &u, 4), n += 4;
	u = p->stream_count, memcpy(hs + n, &u, 4), n += 4;
	memcpy(hs + n, nonce_s, WIRE_NONCE_BYTES), n += WIRE_NONCE_BYTES;
	client_mac(p->key, hs, hd + 16, hs + n);
	rc = timed_io(fd, hs, sizeof(hs), true, HANDSHAKE_TIMEOUT_MS);
	if (!rc)
		rc = timed_io(fd, ad, sizeof(ad), false, HANDSHAKE_TIMEOUT_MS);
	if (rc) {
		errf(err, errlen, "%s refused the migration connection (wrong key?): %s", addr,
		     rc == -EPIPE ? "connection closed" : strerror(-rc));
		rc = -EACCES;
		goto fail;
	}
	server_mac(p->key, ad, nonce_s, hd + 16, p->session, mac);
	if (CRYPTO_memcmp(mac, ad + 8, WIRE_MAC_BYTES)) {
		errf(err, errlen, "%s could not prove it knows the migration key", addr);
		rc = -EACCES;
		goto fail;
	}
	memcpy(&status, ad, 4);
	memcpy(&flags, ad + 4, 4);
	if (status) {
		errf(err, errlen, "%s refused the migration stream (status %u)", addr, status);
		rc = -EPROTO;
		goto fail;
	}
	s->encrypted = flags & WIRE_FLAG_ENCRYPT;
	if (p->encrypt == ENCRYPT_REQUIRED && !s->encrypted) {
		errf(err, errlen, "encryption is required but %s did not enable it", addr);
		rc = -EPROTO;
		goto fail;
	}
	derive_keys(s, p->key, p->session, hd + 16, nonce_s, true);
	rc = stream_setup(s);
	if (rc) {
		errf(err, errlen, "cannot set up stream buffers/cipher");
		goto fail;
	}
	set_blocking(fd);
	return 0;
fail:
	wire_close(s);
	return rc;
}

int wire_accept_start(struct wire_handshake *h, int fd, bool can_encrypt, char *err, size_t errlen)
{
	uint32_t u;
	int one = 1;
	ssize_t n;

	memset(h, 0, sizeof(*h));
	h->fd = fd;
	h->can_encrypt = can_encrypt;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	memcpy(h->hello_d, WIRE_MAGIC, 8);
	u = WIRE_PROTOCOL_VERSION, memcpy(h->hello_d + 8, &u, 4);
	u = can_encrypt ? WIRE_FLAG_ENCRYPT : 0, memcpy(h->hello_d + 12, &u, 4);
	RAND_bytes(h->hello_d + 16, WIRE_NONCE_BYTES);
	/* A fresh connection's send buffer is empty: the hello goes out whole or not at all. */
	do
		n = send(fd, h->hello_d, sizeof(h->hello_d), MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	if (n != (ssize_t)sizeof(h->hello_d)) {
		errf(err, errlen, "handshake: cannot send the hello: %s",
		     n < 0 ? strerror(errno) : "socket buffer full");
		return n < 0 ? -errno : -EAGAIN;
	}
	return 0;
}

int wire_accept_read(struct wire_handshake *h, char *err, size_t errlen)
{
	while (h->got < sizeof(h->hello_s)) {
		ssize_t n = recv(h->fd, h->hello_s + h->got, sizeof(h->hello_s) - h->got, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 0;
		if (n < 0) {
			errf(err, errlen, "handshake: %s", strerror(errno));
			return -errno;
		}
		if (n == 0) {
			errf(err, errlen, "handshake: connection closed after %zu of %zu hello bytes", h->got,
			     sizeof(h->hello_s));
			return -EPIPE;
		}
		h->got += (size_t)n;
	}
	return 1;
}

int wire_accept_finish(struct wire_stream *s, struct wire_handshake *h, const uint8_t key[WIRE_KEY_BYTES],
		       uint8_t session_out[WIRE_SESSION_BYTES], uint32_t *count_out, char *err, size_t errlen)
{
	const uint8_t *hd = h->hello_d, *hs = h->hello_s;
	uint8_t ad[AUTH_D_BYTES], mac[WIRE_MAC_BYTES];
	uint32_t u, version, flags, index, count;
	int rc;

	memset(s, 0, sizeof(*s));
	s->fd = h->fd;
	if (h->got != sizeof(h->hello_s)) {
		errf(err, errlen, "handshake: incomplete hello (%zu of %zu bytes)", h->got, sizeof(h->hello_s));
		rc = -EPROTO;
		goto fail;
	}
	if (memcmp(hs, WIRE_MAGIC, 8)) {
		errf(err, errlen, "handshake: not a glide migration source");
		rc = -EPROTO;
		goto fail;
	}
	memcpy(&version, hs + 8, 4);
	memcpy(&flags, hs + 12, 4);
	memcpy(&index, hs + 16 + WIRE_SESSION_BYTES, 4);
	memcpy(&count, hs + 20 + WIRE_SESSION_BYTES, 4);
	client_mac(key, hs, hd + 16, mac);
	if (CRYPTO_memcmp(mac, hs + HELLO_S_BYTES - WIRE_MAC_BYTES, WIRE_MAC_BYTES)) {
		errf(err, errlen, "handshake: the source did not prove knowledge of the one-time key");
		rc = -EACCES;
		goto fail;
	}
	if (version != WIRE_PROTOCOL_VERSION || count == 0 || count > WIRE_MAX_STREAMS || index >= count) {
		errf(err, errlen, "handshake: unsupported version %u or bad stream %u/%u", version, index, count);
		rc = -EPROTO;
		goto fail;
	}
	if ((flags & WIRE_FLAG_ENCRYPT_REQUIRED) && !h->can_encrypt) {
		errf(err, errlen, "handshake: the source requires encryption, which is disabled here");
		rc = -EPROTO;
		goto fail;
	}
	s->index = (int)index;
	s->encrypted = h->can_encrypt && (flags & WIRE_FLAG_ENCRYPT);
	u = 0, memcpy(ad, &u, 4);
	u = s->encrypted ? WIRE_FLAG_ENCRYPT : 0, memcpy(ad + 4, &u, 4);
	server_mac(key, ad, hs + 20 + WIRE_SESSION_BYTES + 4, hd + 16, hs + 16, ad + 8);
	/* 40 bytes into a socket buffer nothing else has used since the hello */
	rc = timed_io(s->fd, ad, sizeof(ad), true, 1000);
	if (rc) {
		errf(err, errlen, "handshake: cannot answer: %s", rc == -EPIPE ? "connection closed" : strerror(-rc));
		goto fail;
	}
	derive_keys(s, key, hs + 16, hd + 16, hs + 20 + WIRE_SESSION_BYTES + 4, false);
	memcpy(session_out, hs + 16, WIRE_SESSION_BYTES);
	*count_out = count;
	rc = stream_setup(s);
	if (rc) {
		errf(err, errlen, "cannot set up stream buffers/cipher");
		goto fail;
	}
	set_blocking(s->fd);
	return 0;
fail:
	s->fd = -1; /* the caller owns fd on failure */
	wire_close(s);
	return rc;
}

void wire_handshake_clear(struct wire_handshake *h)
{
	explicit_bzero(h, sizeof(*h));
	h->fd = -1;
}

int wire_accept(struct wire_stream *s, int fd, const uint8_t key[WIRE_KEY_BYTES], bool can_encrypt,
		uint8_t session_out[WIRE_SESSION_BYTES], uint32_t *count_out, char *err, size_t errlen)
{
	struct wire_handshake h;
	uint64_t deadline = now_ns() + HANDSHAKE_TIMEOUT_MS * 1000000ULL;
	int rc = wire_accept_start(&h, fd, can_encrypt, err, errlen);

	while (!rc) {
		uint64_t now = now_ns();
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		if (now >= deadline) {
			errf(err, errlen, "handshake: %s", strerror(ETIMEDOUT));
			rc = -ETIMEDOUT;
			break;
		}
		int r = poll(&pfd, 1, (int)((deadline - now) / 1000000ULL) + 1);
		if (r < 0 && errno != EINTR) {
			rc = -errno;
			errf(err, errlen, "handshake: %s", strerror(errno));
			break;
		}
		if (r > 0 && (rc = wire_accept_read(&h, err, errlen)) == 1) {
			rc = wire_accept_finish(s, &h, key, session_out, count_out, err, errlen);
			wire_handshake_clear(&h);
			return rc;
		}
	}
	wire_handshake_clear(&h);
	memset(s, 0, sizeof(*s));
	s->fd = -1;
	return rc;
}

void wire_close(struct wire_stream *s)
{
	if (s->fd >= 0)
		close(s->fd);
	s->fd = -1;
	EVP_CIPHER_CTX_free(s->tx_ctx);
	EVP_CIPHER_CTX_free(s->rx_ctx);
	s->tx_ctx = s->rx_ctx = NULL;
	free(s->tx_buf);
	free(s->rx_buf);
	s->tx_buf = s->rx_buf = NULL;
	explicit_bzero(s->tx_key, sizeof(s->tx_key));
	explicit_bzero(s->rx_key, sizeof(s->rx_key));
}

uint8_t *wire_tx_payload(struct wire_stream *s)
{
	return s->tx_buf + WIRE_FRAME_HEADER_BYTES;
}

/* "stalled: ... in 30.0 s" for a stall, the errno text otherwise. */
static const char *stall_text(struct wire_stream *s, int rc)
{
	static __thread char buf[128];
	if (rc != -ETIMEDOUT)
		return strerror(-rc);
	snprintf(buf, sizeof(buf), "stalled: no progress for %.1f s (peer frozen or network down)",
		 (s->stall_ms ? s->stall_ms : WIRE_STALL_TIMEOUT_MS_DEFAULT) / 1e3);
	return buf;
}

static void make_iv(uint8_t iv[12], uint64_t seq)
{
	memset(iv, 0, 4);
	memcpy(iv + 4, &seq, 8);
}

int wire_send(struct wire_stream *s, uint32_t type, uint32_t len, char *err, size_t errlen)
{
	return wire_send_buf(s, s->tx_buf, type, len, err, errlen);
}

int wire_send_buf(struct wire_stream *s, uint8_t *buf, uint32_t type, uint32_t len, char *err, size_t errlen)
{
	uint8_t *h = buf, *payload = h + WIRE_FRAME_HEADER_BYTES;
	size_t total;
	int rc;

	if (len > WIRE_FRAME_MAX_PAYLOAD) {
		errf(err, errlen, "frame too large (%u bytes)", len);
		return -EMSGSIZE;
	}
	memcpy(h, &type, 4);
	memcpy(h + 4, &len, 4);
	memcpy(h + 8, &s->tx_seq, 8);
	if (s->encrypted) {
		uint8_t iv[12];
		int outl = 0;
		make_iv(iv, s->tx_seq);
		if (EVP_EncryptInit_ex(s->tx_ctx, NULL, NULL, NULL, iv) != 1 ||
		    EVP_EncryptUpdate(s->tx_ctx, NULL, &outl, h, WIRE_FRAME_HEADER_BYTES) != 1 ||
		    (len && EVP_EncryptUpdate(s->tx_ctx, payload, &outl, payload, (int)len) != 1) ||
		    EVP_EncryptFinal_ex(s->tx_ctx, payload + len, &outl) != 1 ||
		    EVP_CIPHER_CTX_ctrl(s->tx_ctx, EVP_CTRL_GCM_GET_TAG, WIRE_GCM_TAG_BYTES, payload + len) != 1) {
			errf(err, errlen, "encryption failed");
			return -EIO;
		}
		total = WIRE_FRAME_HEADER_BYTES + len + WIRE_GCM_TAG_BYTES;
	} else {
		uint32_t c = (uint32_t)crc32(crc32(0L, Z_NULL, 0), h, WIRE_FRAME_HEADER_BYTES + len);
		memcpy(payload + len, &c, 4);
		total = WIRE_FRAME_HEADER_BYTES + len + WIRE_CRC_BYTES;
	}
	rc = stream_io(s, h, total, true);
	if (rc) {
		errf(err, errlen, "stream %d to %s: send failed: %s", s->index, s->peer,
		     rc == -EPIPE ? "the peer closed the connection" : stall_text(s, rc));
		return rc;
	}
	s->tx_seq++;
	s->bytes_sent += total;
	return 0;
}

int wire_send_copy(struct wire_stream *s, uint32_t type, const void *data, uint32_t len, char *err, size_t errlen)
{
	if (len > WIRE_FRAME_MAX_PAYLOAD) {
		errf(err, errlen, "frame too large (%u bytes)", len);
		return -EMSGSIZE;
	}
	if (len)
		memcpy(wire_tx_payload(s), data, len);
	return wire_send(s, type, len, err, errlen);
}

int wire_recv(struct wire_stream *s, struct wire_frame *f, char *err, size_t errlen)
{
	uint8_t *h = s->rx_buf, *payload = h + WIRE_FRAME_HEADER_BYTES;
	uint32_t type, len;
	uint64_t seq;
	int rc = stream_io(s, h, WIRE_FRAME_HEADER_BYTES, false);

	if (rc) {
		errf(err, errlen, "stream %d: %s", s->index, rc == -EPIPE ? "connection closed by peer" : stall_text(s, rc));
		return rc;
	}
	memcpy(&type, h, 4);
	memcpy(&len, h + 4, 4);
	memcpy(&seq, h + 8, 8);
	if (len > WIRE_FRAME_MAX_PAYLOAD || type == 0 || type > FRAME_TYPE_MAX) {
		errf(err, errlen, "stream %d: corrupted frame header (type %u, length %u)", s->index, type, len);
		return -EBADMSG;
	}
	if (seq != s->rx_seq) {
		errf(err, errlen, "stream %d: frame out of sequence (%llu, expected %llu)", s->index,
		     (unsigned long long)seq, (unsigned long long)s->rx_seq);
		return -EBADMSG;
	}
	rc = stream_io(s, payload, len + (s->encrypted ? WIRE_GCM_TAG_BYTES : WIRE_CRC_BYTES), false);
	if (rc) {
		errf(err, errlen, "stream %d: %s", s->index,
		     rc == -EPIPE ? "connection closed by peer mid-frame" : stall_text(s, rc));
		return rc;
	}
	if (s->encrypted) {
		uint8_t iv[12];
		int outl = 0;
		make_iv(iv, seq);
		if (EVP_DecryptInit_ex(s->rx_ctx, NULL, NULL, NULL, iv) != 1 ||
		    EVP_DecryptUpdate(s->rx_ctx, NULL, &outl, h, WIRE_FRAME_HEADER_BYTES) != 1 ||
		    (len && EVP_DecryptUpdate(s->rx_ctx, payload, &outl, payload, (int)len) != 1) ||
		    EVP_CIPHER_CTX_ctrl(s->rx_ctx, EVP_CTRL_GCM_SET_TAG, WIRE_GCM_TAG_BYTES, payload + len) != 1 ||
		    EVP_DecryptFinal_ex(s->rx_ctx, payload + len, &outl) != 1) {
			errf(err, errlen, "stream %d: frame %llu failed authentication (corrupted or tampered)", s->index,
			     (unsigned long long)seq);
			return -EBADMSG;
		}
		s->bytes_received += WIRE_FRAME_HEADER_BYTES + len + WIRE_GCM_TAG_BYTES;
	} else {
		uint32_t c, want = (uint32_t)crc32(crc32(0L, Z_NULL, 0), h, WIRE_FRAME_HEADER_BYTES + len);
		memcpy(&c, payload + len, 4);
		if (c != want) {
			errf(err, errlen, "stream %d: frame %llu checksum mismatch (corrupted)", s->index,
			     (unsigned long long)seq);
			return -EBADMSG;
		}
		s->bytes_received += WIRE_FRAME_HEADER_BYTES + len + WIRE_CRC_BYTES;
	}
	s->rx_seq++;
	f->type = type;
	f->len = len;
	f->payload = payload;
	return 0;
}
