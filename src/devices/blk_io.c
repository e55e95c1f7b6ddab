/* A disk's I/O engine (blk_io.h): sync, a thread pool, or io_uring, each
 * completing whole operations and signalling an eventfd. */
#include "devices/blk_io.h"
#include "common/util.h"
#include <errno.h>
#include <liburing.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

struct blk_io {
	enum blk_io_engine engine;
	int fd, efd;
	unsigned in_flight;             /* submitted, not yet reaped (caller's side) */
	struct blk_io_op *queued, **queued_tail; /* submitted, not yet kicked */
	/* threads */
	pthread_mutex_t lock;
	pthread_cond_t work_cond, done_cond;
	struct blk_io_op *work, **work_tail;
	struct blk_io_op *done, **done_tail;
	pthread_t threads[BLK_IO_THREADS_COUNT];
	int nthreads;
	uint64_t test_delay_ns;         /* GLIDE_TEST_BLK_DELAY_US: each worker operation takes this much longer */
	bool stop;
	/* io_uring */
	struct io_uring ring;
	bool ring_open;
};

static const char *const engine_names[] = { "default", "sync", "threads", "io_uring" };

const char *blk_io_engine_name(enum blk_io_engine e)
{
	return e <= BLK_IO_URING ? engine_names[e] : NULL;
}

int blk_io_engine_parse(const char *s, size_t len, enum blk_io_engine *out)
{
	for (int e = BLK_IO_DEFAULT; e <= BLK_IO_URING; e++)
		if (strlen(engine_names[e]) == len && !strncmp(s, engine_names[e], len)) {
			*out = (enum blk_io_engine)e;
			return 0;
		}
	return -EINVAL;
}

enum blk_io_engine blk_io_engine_default(void)
{
	return BLK_IO_URING;
}

int blk_io_full(int fd, bool write, struct iovec *iov, int n, uint64_t offset)
{
	while (n > 0) {
		ssize_t r = write ? pwritev(fd, iov, n, (off_t)offset) : preadv(fd, iov, n, (off_t)offset);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (r == 0) {
			if (!write) { /* reading past the end of a short file: zeros */
				for (int i = 0; i < n; i++)
					memset(iov[i].iov_base, 0, iov[i].iov_len);
				return 0;
			}
			return -EIO;
		}
		offset += (uint64_t)r;
		while (n > 0 && (size_t)r >= iov[0].iov_len) {
			r -= (ssize_t)iov[0].iov_len;
			iov++;
			n--;
		}
		if (n > 0) {
			iov[0].iov_base = (uint8_t *)iov[0].iov_base + r;
			iov[0].iov_len -= (size_t)r;
		}
	}
	return 0;
}

static int run_op(int fd, struct blk_io_op *op)
{
	if (op->kind == BLK_IO_FLUSH)
		return fdatasync(fd) ? -errno : 0;
	return blk_io_full(fd, op->kind == BLK_IO_WRITE, op->iov, op->niov, op->offset);
}

/* An io_uring transfer that moved `done` bytes of op: the rest, here. */
static int finish_short(int fd, struct blk_io_op *op, uint64_t done)
{
	struct iovec *iov = op->iov;
	int n = op->niov;
	uint64_t offset = op->offset + done;
	while (n > 0 && done >= iov[0].iov_len) {
		done -= iov[0].iov_len;
		iov++;
		n--;
	}
	if (n > 0) {
		iov[0].iov_base = (uint8_t *)iov[0].iov_base + done;
		iov[0].iov_len -= (size_t)done;
	}
	return blk_io_full(fd, op->kind == BLK_IO_WRITE, iov, n, offset);
}

static uint64_t op_bytes(const struct blk_io_op *op)
{
	uint64_t total = 0;
	for (int i = 0; i < op->niov; i++)
		total += op->iov[i].iov_len;
	return total;
}

static void signal_done(struct blk_io *io)
{
	uint64_t one = 1;
	if (write(io->efd, &one, sizeof(one)) < 0) {
		/* the counter is saturated: the reader wakes anyway */
	}
}

static void append_done(struct blk_io *io, struct blk_io_op *op)
{
	op->next = NULL;
	*io->done_tail = op;
	io->done_tail = &op->next;
}

static void *worker(void *arg)
{
	struct blk_io *io = arg;
	pthread_setname_np(pthread_self(), "blk-io");
	pthread_mutex_lock(&io->lock);
	for (;;) {
		while (!io->work && !io->stop)
			pthread_cond_wait(&io->work_cond, &io->lock);
		if (!io->work)
			break;
		struct blk_io_op *op = io->work;
		io->work = op->next;
		if (!io->work)
			io->work_tail = &io->work;
		pthread_mutex_unlock(&io->lock);
		if (io->test_delay_ns)
			sleep_ns(io->test_delay_ns);
		op->result = run_op(io->fd, op);
		pthread_mutex_lock(&io->lock);
		append_done(io, op);
		pthread_cond_broadcast(&io->done_cond);
		signal_done(io);
	}
	pthread_mutex_unlock(&io->lock);
	return NULL;
}

void blk_io_set_fd(struct blk_io *io, int fd)
{
	pthread_mutex_lock(&io->lock); /* the workers read it after taking an operation under this lock */
	io->fd = fd;
	pthread_mutex_unlock(&io->lock);
}

int blk_io_open(struct blk_io **out, int fd, enum blk_io_engine engine, unsigned depth, enum blk_io_engine *used,
		char *err, size_t errlen)
{
	struct blk_io *io = calloc(1, sizeof(*io));
	if (!io)
		return -ENOMEM;
	io->fd = fd;
	io->queued_tail = &io->queued;
	io->work_tail = &io->work;
	io->done_tail = &io->done;
	pthread_mutex_init(&io->lock, NULL);
	pthread_cond_init(&io->work_cond, NULL);
	pthread_cond_init(&io->done_cond, NULL);
	io->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (io->efd < 0) {
		int rc = -errno;
		errf(err, errlen, "disk I/O: eventfd: %s", strerror(errno));
		free(io);
		return rc;
	}
	if (engine == BLK_IO_DEFAULT)
		engine = blk_io_engine_default();
	if (engine == BLK_IO_URING) {
		int rc = io_uring_queue_init(depth, &io->ring, 0);
		bool ring_made = !rc;
		if (!rc)
			rc = io_uring_register_eventfd(&io->ring, io->efd);
		if (rc) {
			glide_log("virtio-blk", "io_uring refused (%s): using the thread pool", strerror(-rc));
			if (ring_made)
				io_uring_queue_exit(&io->ring);
			engine = BLK_IO_THREADS;
		} else {
			io->ring_open = true;
		}
	}
	io->engine = engine;
	/* Fault injection for tests: slow requests stay in flight long enough
	 * for a pause to meet them (tests/test_disk_inflight.sh). */
	const char *delay = getenv("GLIDE_TEST_BLK_DELAY_US");
	if (delay && engine == BLK_IO_THREADS) {
		io->test_delay_ns = strtoull(delay, NULL, 10) * 1000ULL;
		if (io->test_delay_ns > 1000000000ULL)
			io->test_delay_ns = 1000000000ULL;
		glide_log("virtio-blk", "test: every request takes %llu us longer", (unsigned long long)io->test_delay_ns / 1000);
	}
	if (engine == BLK_IO_THREADS)
		for (int i = 0; i < BLK_IO_THREADS_COUNT; i++) {
			if (pthread_create(&io->threads[i], NULL, worker, io)) {
				errf(err, errlen, "disk I/O: cannot start a worker thread");
				blk_io_close(io);
				return -EAGAIN;
			}
			io->nthreads++;
		}
	if (used)
		*used = engine;
	*out = io;
	return 0;
}

int blk_io_event_fd(const struct blk_io *io)
{
	return io->efd;
}

unsigned blk_io_in_flight(const struct blk_io *io)
{
	return io->in_flight;
}

static void uring_prep(struct blk_io *io, struct blk_io_op *op)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&io->ring);
	if (!sqe) { /* the submission ring is full: hand it over, then there is room */
		io_uring_submit(&io->ring);
		sqe = io_uring_get_sqe(&io->ring);
	}
	if (!sqe) { /* cannot happen with depth >= operations in flight; do it here */
		op->result = run_op(io->fd, op);
		pthread_mutex_lock(&io->lock);
		append_done(io, op);
		pthread_mutex_unlock(&io->lock);
		signal_done(io);
		return;
	}
	if (op->kind == BLK_IO_FLUSH)
		io_uring_prep_fsync(sqe, io->fd, IORING_FSYNC_DATASYNC);
	else if (op->kind == BLK_IO_WRITE)
		io_uring_prep_writev(sqe, io->fd, op->iov, (unsigned)op->niov, op->offset);
	else
		io_uring_prep_readv(sqe, io->fd, op->iov, (unsigned)op->niov, op->offset);
	io_uring_sqe_set_data(sqe, op);
}

void blk_io_submit(struct blk_io *io, struct blk_io_op *op)
{
	io->in_flight++;
	op->next = NULL;
	switch (io->engine) {
	case BLK_IO_URING:
		uring_prep(io, op);
		break;
	case BLK_IO_THREADS:
		*io->queued_tail = op;
		io->queued_tail = &op->next;
		break;
	default: /* sync: done now, reaped after the kick */
		op->result = run_op(io->fd, op);
		pthread_mutex_lock(&io->lock);
		append_done(io, op);
		pthread_mutex_unlock(&io->lock);
		break;
	}
}

void blk_io_kick(struct blk_io *io)
{
	if (io->engine == BLK_IO_URING) {
		io_uring_submit(&io->ring);
	} else if (io->engine == BLK_IO_THREADS && io->queued) {
		pthread_mutex_lock(&io->lock);
		*io->work_tail = io->queued;
		io->work_tail = io->queued_tail;
		io->queued = NULL;
		io->queued_tail = &io->queued;
		pthread_cond_broadcast(&io->work_cond);
		pthread_mutex_unlock(&io->lock);
	}
}

/* Completions waiting in the ring, onto the done list; with wait, at least
 * one. 0, or -errno when waiting failed. */
static int uring_collect(struct blk_io *io, bool wait)
{
	struct io_uring_cqe *cqe;
	bool got = false;
	for (;;) {
		int rc = got || !wait ? io_uring_peek_cqe(&io->ring, &cqe) : io_uring_wait_cqe(&io->ring, &cqe);
		if (rc == -EINTR)
			continue;
		if (rc == -EAGAIN || (!rc && !cqe))
			return 0; /* nothing (more) to collect */
		if (rc)
			return rc;
		struct blk_io_op *op = io_uring_cqe_get_data(cqe);
		int res = cqe->res;
		io_uring_cqe_seen(&io->ring, cqe);
		if (!op)
			continue;
		if (res == -EINTR || res == -EAGAIN)
			op->result = run_op(io->fd, op); /* try again, here */
		else if (res < 0)
			op->result = res;
		else if (op->kind != BLK_IO_FLUSH && (uint64_t)res < op_bytes(op))
			op->result = finish_short(io->fd, op, (uint64_t)res);
		else
			op->result = 0;
		append_done(io, op);
		got = true;
	}
}

struct blk_io_op *blk_io_reap(struct blk_io *io, bool wait)
{
	uint64_t count;
	if (wait)
		blk_io_kick(io);
	/* the eventfd first: a completion signalled after this read is on the list or wakes us again */
	if (read(io->efd, &count, sizeof(count)) < 0) {
	}
	wait = wait && io->in_flight > 0;
	pthread_mutex_lock(&io->lock);
	if (io->engine == BLK_IO_URING) {
		int rc = uring_collect(io, false);
		while (!rc && wait && !io->done)
			rc = uring_collect(io, true);
		if (rc)
			glide_log("virtio-blk", "waiting for disk I/O failed: %s", strerror(-rc));
	} else {
		while (wait && !io->done)
			pthread_cond_wait(&io->done_cond, &io->lock);
	}
	struct blk_io_op *list = io->done;
	io->done = NULL;
	io->done_tail = &io->done;
	pthread_mutex_unlock(&io->lock);
	for (struct blk_io_op *op = list; op; op = op->next)
		io->in_flight--;
	return list;
}

void blk_io_close(struct blk_io *io)
{
	if (!io)
		return;
	while (io->in_flight && blk_io_reap(io, true)) {
	}
	pthread_mutex_lock(&io->lock);
	io->stop = true;
	pthread_cond_broadcast(&io->work_cond);
	pthread_mutex_unlock(&io->lock);
	for (int i = 0; i < io->nthreads; i++)
		pthread_join(io->threads[i], NULL);
	if (io->ring_open)
		io_uring_queue_exit(&io->ring);
	close(io->efd);
	pthread_cond_destroy(&io->work_cond);
	pthread_cond_destroy(&io->done_cond);
	pthread_mutex_destroy(&io->lock);
	free(io);
}
