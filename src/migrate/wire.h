/* Migration wire protocol (docs/migration.md, "Wire protocol"): connection
 * handshake with mutual proof of the one-time key, and frames that are
 * either AES-256-GCM encrypted and authenticated or CRC32-checked. */
#ifndef GLIDE_MIGRATE_WIRE_H
#define GLIDE_MIGRATE_WIRE_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <openssl/evp.h>

#define WIRE_MAGIC "GLIDEMIG"
#define WIRE_PROTOCOL_VERSION 2
#define WIRE_KEY_BYTES 32
#define WIRE_NONCE_BYTES 32
#define WIRE_SESSION_BYTES 16
#define WIRE_MAC_BYTES 32
#define WIRE_FRAME_HEADER_BYTES 16
#define WIRE_GCM_TAG_BYTES 16
#define WIRE_CRC_BYTES 4
#define WIRE_FRAME_MAX_PAYLOAD (8u << 20)
#define WIRE_MAX_STREAMS 16
#define WIRE_STALL_TIMEOUT_MIN_S 0.1
#define WIRE_STALL_TIMEOUT_MAX_S 3600
#define WIRE_STALL_TIMEOUT_MS_DEFAULT 30000 /* a stream that waits this long without progress: it failed */
#define WIRE_STALL_PROGRESS_BYTES (4u << 20) /* sent while waiting, this much shows the peer reads */
#define WIRE_STALL_SLOTS 8                   /* the stall timeout in parts ... */
#define WIRE_STALL_PROGRESS_SLOTS 4          /* ... and in how many of them bytes must go out to show the same */
#define WIRE_HELLO_D_BYTES (8 + 4 + 4 + WIRE_NONCE_BYTES)
#define WIRE_HELLO_S_BYTES (8 + 4 + 4 + WIRE_SESSION_BYTES + 4 + 4 + WIRE_NONCE_BYTES + WIRE_MAC_BYTES)

enum wire_frame_type {
	FRAME_CONFIG = 1,   /* s->d stream 0: VM configuration + CPUID (JSON) */
	FRAME_CONFIG_OK,    /* d->s: {"ok":true} or {"error":...} */
	FRAME_LIVE,         /* s->d: u32 live section id + its payload (live.h; RAM: ram.c) */
	FRAME_PROBE,        /* s->d: throughput probe, discarded */
	FRAME_FINAL,        /* s->d: no more pages on this stream */
	FRAME_STATE,        /* s->d stream 0: checkpoint (state-format blob) */
	FRAME_RESTORED,     /* d->s: state applied, VM ready to run */
	FRAME_GO,           /* s->d: source released; run */
	FRAME_RUNNING,      /* d->s: destination VM is running */
	FRAME_ABORT,        /* either way: {"error":...} */
	FRAME_SYNC,         /* s->d: end of a phase on this stream */
	FRAME_SYNC_ACK,     /* d->s: every page before the SYNC is in guest memory */
	FRAME_VERIFY,       /* s->d stream 0, after STATE with --verify: the source's RAM digest (vmm/digest.h) */
	FRAME_NET,          /* s->d stream 0, after RUNNING: u32 NIC index + a frame (virtio-net header first)
			     * that reached the source's tap after its checkpoint */
	FRAME_NET_END,      /* s->d: no more forwarded frames */
	FRAME_FILE_DATA,    /* cold copy between host agents (host/copy.c): u32 file, u32 length, u64 offset, bytes */
	FRAME_FILE_END,     /* u32 file, u32 0, u64 size, SHA-256 copy digest */
	FRAME_FILE_OK,      /* receiver: every file's digest matched */
	FRAME_MIRROR,       /* s->d: a LIVE payload that a guest write is waiting for (disk.c's write-blocking
			     * mirror): apply it, then answer MIRROR_ACK on the same stream */
	FRAME_MIRROR_ACK,   /* d->s: the MIRROR before it is applied */
	FRAME_TYPE_MAX = FRAME_MIRROR_ACK,
};

enum wire_encrypt_mode { ENCRYPT_OFF, ENCRYPT_OPPORTUNISTIC, ENCRYPT_REQUIRED };

#define WIRE_FLAG_ENCRYPT 1u          /* hello: can encrypt / wants encryption; auth: encryption on */
#define WIRE_FLAG_ENCRYPT_REQUIRED 2u

struct wire_stream {
	int fd;
	int index;
	bool encrypted;
	EVP_CIPHER_CTX *tx_ctx, *rx_ctx;
	uint8_t tx_key[WIRE_KEY_BYTES], rx_key[WIRE_KEY_BYTES];
	uint64_t tx_seq, rx_seq;
	uint8_t *tx_buf, *rx_buf;  /* header + payload + trailer */
	uint64_t bytes_sent, bytes_received;
	uint64_t stall_ms;         /* 0: WIRE_STALL_TIMEOUT_MS_DEFAULT */
	uint64_t stall_since;      /* the stall clock: first wait not yet answered by progress, 0: none */
	uint64_t stall_last_wait;  /* when an operation last had to wait */
	uint64_t stall_moved;      /* bytes moved since stall_since (sent: acknowledged by the peer) */
	uint64_t stall_acked;      /* what the peer had acknowledged when stall_moved was last counted */
	uint64_t tx_accepted;      /* bytes our kernel took from us on this stream, ever */
	uint32_t stall_slots;      /* parts of the timeout since stall_since in which bytes moved (bits) */
	char peer[64];
};

struct wire_frame {
	uint32_t type;
	uint32_t len;
	uint8_t *payload; /* points into the stream's rx buffer; valid until the next receive */
};

struct wire_session_params {
	uint8_t key[WIRE_KEY_BYTES];
	uint8_t session[WIRE_SESSION_BYTES];
	uint32_t stream_count;
	enum wire_encrypt_mode encrypt;
};

/* Source side: connect stream `index` to addr ("HOST:PORT") and authenticate. */
int wire_connect(struct wire_stream *s, const char *addr, int index, const struct wire_session_params *p,
		 int dscp, int timeout_ms, char *err, size_t errlen);
/* Destination side: handshake on an accepted socket, blocking (at most
 * 10 s per step). On success fills the session id, stream index and count
 * the source sent. On failure the caller still owns fd. */
int wire_accept(struct wire_stream *s, int fd, const uint8_t key[WIRE_KEY_BYTES], bool can_encrypt,
		uint8_t session_out[WIRE_SESSION_BYTES], uint32_t *count_out, char *err, size_t errlen);

/* The same handshake in steps, so that one thread can run many at once
 * without blocking on any: wire_accept_start() makes fd non-blocking and
 * sends the destination hello (small: it fits an empty socket buffer);
 * wire_accept_read() takes whatever part of the source hello has arrived;
 * once it is complete, wire_accept_finish() checks it (magic, version, MAC,
 * stream index and count, encryption flags), answers and sets the stream up
 * (keys, buffers, blocking mode). The caller owns fd until finish succeeds;
 * wire_handshake_clear() wipes the state. */
struct wire_handshake {
	int fd;
	bool can_encrypt;
	uint8_t hello_d[WIRE_HELLO_D_BYTES];
	uint8_t hello_s[WIRE_HELLO_S_BYTES];
	size_t got;             /* bytes of hello_s received */
};
int wire_accept_start(struct wire_handshake *h, int fd, bool can_encrypt, char *err, size_t errlen);
/* 1: the source hello is complete; 0: more to come (poll fd for input); -errno with err set. */
int wire_accept_read(struct wire_handshake *h, char *err, size_t errlen);
int wire_accept_finish(struct wire_stream *s, struct wire_handshake *h, const uint8_t key[WIRE_KEY_BYTES],
		       uint8_t session_out[WIRE_SESSION_BYTES], uint32_t *count_out, char *err, size_t errlen);
void wire_handshake_clear(struct wire_handshake *h);
void wire_close(struct wire_stream *s);
/* Data phase: a frame part (header or payload) that has not gone through ms after it
 * first had to wait fails with -ETIMEDOUT (0: the default). */
void wire_set_stall_timeout(struct wire_stream *s, uint64_t ms);

/* The payload is built in place: wire_tx_payload() returns the buffer to fill (WIRE_FRAME_MAX_PAYLOAD bytes). */
uint8_t *wire_tx_payload(struct wire_stream *s);
int wire_send(struct wire_stream *s, uint32_t type, uint32_t len, char *err, size_t errlen);
/* The same from a frame buffer of the caller's (WIRE_FRAME_BUF_BYTES(len) bytes, the payload at
 * WIRE_FRAME_HEADER_BYTES), for a sender that must not touch the stream's own buffer, which another
 * thread may be filling; callers serialise sends on a stream. */
#define WIRE_FRAME_BUF_BYTES(payload) (WIRE_FRAME_HEADER_BYTES + (payload) + WIRE_GCM_TAG_BYTES)
int wire_send_buf(struct wire_stream *s, uint8_t *buf, uint32_t type, uint32_t len, char *err, size_t errlen);
int wire_send_copy(struct wire_stream *s, uint32_t type, const void *data, uint32_t len, char *err, size_t errlen);
int wire_recv(struct wire_stream *s, struct wire_frame *f, char *err, size_t errlen);
/* A stream whose frames something waits for (a disk's mirrored writes):
 * little may queue in the sockets ahead of such a frame. The source keeps
 * at most WIRE_SHORT_QUEUE_UNSENT bytes unsent in its socket, the
 * destination's receive buffer holds WIRE_SHORT_QUEUE_RCVBUF: a mirrored
 * write then waits for about that much ahead of it (~1 MiB: 3 ms at
 * 300 MB/s), not the megabytes the kernel would queue otherwise (tens of
 * ms). Enough for full speed on a LAN (1 MiB is the bandwidth-delay product
 * of 10 Gb/s at 0.8 ms RTT). */
#define WIRE_SHORT_QUEUE_UNSENT (128u << 10)
#define WIRE_SHORT_QUEUE_RCVBUF (1u << 20)
void wire_short_queue(struct wire_stream *s, bool source);
/* Parses "HOST:PORT[,HOST:PORT...]" into at most max entries. */
int wire_parse_addrs(const char *list, char addrs[][128], int max);
const char *wire_frame_name(uint32_t type);
#endif
