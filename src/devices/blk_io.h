/* A disk's I/O engine (virtio_blk.c): reads, writes and flushes of one
 * file, run by one of three engines and completed through an eventfd.
 *
 *  sync      on the caller (the device's event thread), one at a time;
 *  threads   a pool of worker threads doing preadv/pwritev/fdatasync;
 *  io_uring  the kernel's asynchronous ring (liburing), batched submits.
 *
 * Every engine completes whole operations: a short transfer is finished
 * (a read past the end of the file gives zeros), so an operation ends with
 * 0 or -errno. blk_io_submit never blocks on the disk except with "sync";
 * completions are collected with blk_io_reap, which any thread may call
 * while the caller keeps it single-threaded (the device's run lock).
 *
 * Tests only: GLIDE_TEST_BLK_DELAY_US=N in the environment makes each
 * operation of the "threads" engine N microseconds slower (at most 1 s), so
 * that requests are in flight when a pause comes. */
#ifndef GLIDE_DEVICES_BLK_IO_H
#define GLIDE_DEVICES_BLK_IO_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

enum blk_io_engine { BLK_IO_DEFAULT, BLK_IO_SYNC, BLK_IO_THREADS, BLK_IO_URING };
enum blk_io_kind { BLK_IO_READ, BLK_IO_WRITE, BLK_IO_FLUSH };

#define BLK_IO_IOV_MAX 64
#define BLK_IO_THREADS_COUNT 4 /* workers of the "threads" engine */

struct blk_io_op {
	enum blk_io_kind kind;
	struct iovec iov[BLK_IO_IOV_MAX];
	int niov;
	uint64_t offset;
	int result;             /* 0 or -errno, once completed */
	struct blk_io_op *next; /* the engine's lists */
	void *owner;            /* the caller's */
};

struct blk_io;

/* "sync", "threads", "io_uring" (and "default"); NULL when unknown. */
const char *blk_io_engine_name(enum blk_io_engine e);
int blk_io_engine_parse(const char *s, size_t len, enum blk_io_engine *out);
/* The engine a disk gets when none is asked for (see docs/benchmarks.md). */
enum blk_io_engine blk_io_engine_default(void);

/* An engine over fd with room for `depth` operations in flight. io_uring
 * that the kernel refuses falls back to threads (*used says which). */
int blk_io_open(struct blk_io **out, int fd, enum blk_io_engine engine, unsigned depth, enum blk_io_engine *used,
		char *err, size_t errlen);
/* The fd that becomes readable when operations completed (watch it). */
int blk_io_event_fd(const struct blk_io *io);
/* Queues op; blk_io_kick hands what was queued to the engine. */
void blk_io_submit(struct blk_io *io, struct blk_io_op *op);
void blk_io_kick(struct blk_io *io);
/* Completed operations, oldest first, as a list (NULL: none yet). With
 * wait, blocks until at least one completes unless none is in flight. */
struct blk_io_op *blk_io_reap(struct blk_io *io, bool wait);
unsigned blk_io_in_flight(const struct blk_io *io);
/* Points the engine at another file; only with nothing in flight. */
void blk_io_set_fd(struct blk_io *io, int fd);
/* Waits for everything in flight, then frees the engine (fd stays open). */
void blk_io_close(struct blk_io *io);

/* The whole transfer with preadv/pwritev (EINTR and short counts handled,
 * zeros past the end of the file on a read); iov is consumed. 0 or -errno. */
int blk_io_full(int fd, bool write, struct iovec *iov, int n, uint64_t offset);
#endif
