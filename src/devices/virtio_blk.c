/* virtio-blk: a disk backed by a raw file or block device. Reads, writes
 * and flushes go to the disk's I/O engine (blk_io.h: io_uring, a thread
 * pool, or synchronous on the event thread) and complete on the event
 * thread; get id, discard and write zeroes are done at once. Pausing the
 * VM waits for every request in flight and completes it to the guest
 * (quiesce), so none is in flight at a checkpoint: a checkpoint holds only
 * the queues' positions, and no request is lost or done twice. A writable
 * disk is locked (an OFD write lock on the whole file) so that no second
 * VM opens it; a migration hands the lock to the destination at the
 * switchover (virtio_blk_release_locks / virtio_blk_acquire_locks). */
#include "devices/blk_io.h"
#include "devices/devices.h"
#include "devices/virtio.h"
#include "devices/virtio_dev.h"
#include "state/state.h"
#include "common/util.h"
#include "vmm/vm.h"
#include <errno.h>
#include <stdio.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#define VIRTIO_BLK_F_SEG_MAX 2
#define VIRTIO_BLK_F_RO 5
#define VIRTIO_BLK_F_BLK_SIZE 6
#define VIRTIO_BLK_F_FLUSH 9
#define VIRTIO_BLK_F_DISCARD 13
#define VIRTIO_BLK_F_WRITE_ZEROES 14

#define VIRTIO_BLK_T_IN 0
#define VIRTIO_BLK_T_OUT 1
#define VIRTIO_BLK_T_FLUSH 4
#define VIRTIO_BLK_T_GET_ID 8
#define VIRTIO_BLK_T_DISCARD 11
#define VIRTIO_BLK_T_WRITE_ZEROES 13
#define VIRTIO_BLK_S_OK 0
#define VIRTIO_BLK_S_IOERR 1
#define VIRTIO_BLK_S_UNSUPP 2
#define VIRTIO_BLK_ID_BYTES 20
#define BLK_WRITE_ZEROES_FLAG_UNMAP 1
#define SECTOR 512ULL

#define BLK_QUEUE_SIZE 256
#define BLK_SEG_MAX (VIRTIO_CHAIN_MAX - 2)
#define BLK_DISCARD_SEG_MAX 16
#define BLK_CONFIG_LEN 60

/* A request taken from the queue and not yet completed to the guest. */
struct blk_req {
	struct blk_io_op op;    /* first: the engine hands it back */
	struct virtq_chain c;
	int q;
	uint32_t written;       /* bytes of data written to the guest (reads) */
	uint64_t written_len;   /* bytes a write request writes to the disk */
	struct blk_req *next_free;
};

struct virtio_blk {
	struct virtio_dev vd;   /* first: freed as a virtio_dev */
	struct blk_io *io;
	enum blk_io_engine engine;
	struct blk_req *reqs, *free_reqs;
	int index;
	int fd;
	bool readonly;
	bool direct;            /* opened O_DIRECT */
	bool locked;
	uint64_t capacity;      /* sectors */
	char path[4096];
	char name[24];
	uint8_t config[BLK_CONFIG_LEN];
	uint64_t reads, writes, flushes, errors;
	uint64_t in_flight_max; /* the most requests in flight at once */
	struct virtio_blk_mirror *mirror; /* a storage move's write-blocking mirror, or NULL; run lock */
};

struct blk_req_header {
	uint32_t type, reserved;
	uint64_t sector;
};

struct blk_discard {
	uint64_t sector;
	uint32_t num_sectors, flags;
};

static int blk_lock(struct virtio_blk *b, bool take, char *err, size_t errlen)
{
	struct flock fl = { .l_type = take ? (b->readonly ? F_RDLCK : F_WRLCK) : F_UNLCK, .l_whence = SEEK_SET };
	if (fcntl(b->fd, F_OFD_SETLK, &fl) < 0) {
		int e = errno;
		if (e == EAGAIN || e == EACCES)
			errf(err, errlen, "disk %s is in use by another VM (it holds the disk's lock)", b->path);
		else
			errf(err, errlen, "disk %s: cannot lock it: %s", b->path, strerror(e));
		return -e;
	}
	b->locked = take;
	return 0;
}

static void blk_config_access(struct virtio_dev *vd, uint64_t off, bool is_write, uint8_t *data, int len)
{
	struct virtio_blk *b = (struct virtio_blk *)vd;
	if (!is_write)
		memcpy(data, b->config + off, (size_t)len);
	/* writeback (offset 32) is not offered (CONFIG_WCE): writes are ignored */
}

/* Data iovecs of a chain: readable after the 16-byte header (OUT), or
 * writable before the status byte (IN). Returns how many, bytes in *len. */
static int data_iov(const struct virtq_chain *c, bool out, struct iovec *iov, uint64_t *len)
{
	int n = 0;
	*len = 0;
	if (out) {
		size_t skip = sizeof(struct blk_req_header);
		for (int i = 0; i < c->nout; i++) {
			size_t l = c->iov[i].iov_len;
			if (skip >= l) {
				skip -= l;
				continue;
			}
			iov[n].iov_base = (uint8_t *)c->iov[i].iov_base + skip;
			iov[n].iov_len = l - skip;
			*len += iov[n++].iov_len;
			skip = 0;
		}
	} else {
		uint64_t left = c->in_bytes - 1; /* the status byte is the last writable byte */
		for (int i = c->nout; i < c->nout + c->nin && left; i++) {
			size_t l = MIN((uint64_t)c->iov[i].iov_len, left);
			iov[n].iov_base = c->iov[i].iov_base;
			iov[n].iov_len = l;
			*len += l;
			left -= l;
			n++;
		}
	}
	return n;
}

static bool range_ok(const struct virtio_blk *b, uint64_t sector, uint64_t bytes)
{
	return bytes % SECTOR == 0 && sector <= b->capacity && bytes / SECTOR <= b->capacity - sector;
}

/* A storage copy is running: the blocks [offset, offset + bytes) changed. */
/* Zeroes [off, off + bytes) of fd with fallocate mode, or by writing
 * zeros where that is refused and zeros are required. */
static int zero_range(int fd, int mode, uint64_t off, uint64_t bytes, bool required)
{
	static const uint8_t zero[65536];
	if (fallocate(fd, mode, (off_t)off, (off_t)bytes) == 0)
		return 0;
	if (!required)
		return -errno;
	for (uint64_t o = 0; o < bytes; o += sizeof(zero)) {
		int rc = pwrite_full(fd, zero, (size_t)MIN(sizeof(zero), bytes - o), off + o);
		if (rc)
			return rc;
	}
	return 0;
}

/* The mirror gets what the disk got (a write's data, or a range zeroed). */
static void mirror_write(struct virtio_blk *b, struct blk_req *r)
{
	struct virtio_blk_mirror *m = b->mirror;
	struct iovec iov[VIRTIO_CHAIN_MAX];
	uint64_t len;
	int n = data_iov(&r->c, true, iov, &len); /* the engine consumed the request's own iovecs */
	if (m->changed) {
		m->changed(m, r->op.offset, len);
		return;
	}
	pthread_mutex_lock(&m->lock);
	if (!m->error) {
		int rc = r->op.result ? r->op.result : blk_io_full(m->fd, true, iov, n, r->op.offset);
		if (rc) /* a failed write may have changed part of the disk: the mirror cannot say what */
			m->error = rc < 0 ? rc : -EIO;
		m->writes++;
		m->bytes += len;
	}
	pthread_mutex_unlock(&m->lock);
}

static void mirror_zero(struct virtio_blk *b, int mode, uint64_t off, uint64_t bytes, int disk_rc)
{
	struct virtio_blk_mirror *m = b->mirror;
	if (m->changed) {
		m->changed(m, off, bytes);
		return;
	}
	pthread_mutex_lock(&m->lock);
	if (!m->error) {
		/* the disk's range reads as zeros now, unless a discard was ignored (then it is unchanged) */
		int rc = disk_rc ? 0 : zero_range(m->fd, mode, off, bytes, true);
		if (rc)
			m->error = rc;
		m->writes++;
	}
	pthread_mutex_unlock(&m->lock);
}

static uint8_t blk_discard(struct virtio_blk *b, const struct virtq_chain *c, bool zeroes)
{
	struct blk_discard seg[BLK_DISCARD_SEG_MAX];
	uint64_t total = 0;
	for (int i = 0; i < c->nout; i++)
		total += c->iov[i].iov_len;
	total -= sizeof(struct blk_req_header);
	if (total == 0 || total % sizeof(seg[0]) || total / sizeof(seg[0]) > BLK_DISCARD_SEG_MAX)
		return VIRTIO_BLK_S_UNSUPP;
	size_t n = (size_t)(total / sizeof(seg[0]));
	virtq_chain_from_guest(c, sizeof(struct blk_req_header), seg, total);
	/* Every segment is checked before any is applied. virtio 1.2 5.2.6.2: a
	 * flag the device does not know, or unmap on a discard, is UNSUPP. */
	for (size_t i = 0; i < n; i++) {
		if (!range_ok(b, seg[i].sector, (uint64_t)seg[i].num_sectors * SECTOR))
			return VIRTIO_BLK_S_IOERR;
		if ((seg[i].flags & ~BLK_WRITE_ZEROES_FLAG_UNMAP) || (!zeroes && seg[i].flags))
			return VIRTIO_BLK_S_UNSUPP;
	}
	for (size_t i = 0; i < n; i++) {
		uint64_t bytes = (uint64_t)seg[i].num_sectors * SECTOR;
		int mode = zeroes && !(seg[i].flags & BLK_WRITE_ZEROES_FLAG_UNMAP) ? FALLOC_FL_ZERO_RANGE : FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE;
		/* discard is a hint (a filesystem without hole punching ignores
		 * it); write zeroes must happen: written out where refused */
		int rc = zero_range(b->fd, mode, seg[i].sector * SECTOR, bytes, zeroes);
		if (b->mirror)
			mirror_zero(b, mode, seg[i].sector * SECTOR, bytes, rc);
		if (rc && zeroes)
			return VIRTIO_BLK_S_IOERR;
	}
	return VIRTIO_BLK_S_OK;
}

/* Starts the request: true when it went to the I/O engine, false when it
 * is done already (status in *status, data bytes for the guest in *written). */
static bool blk_start(struct virtio_blk *b, struct blk_req *r, uint8_t *status)
{
	const struct virtq_chain *c = &r->c;
	struct blk_req_header h;
	uint64_t len;

	r->written = 0;
	*status = VIRTIO_BLK_S_IOERR;
	if (virtq_chain_from_guest(c, 0, &h, sizeof(h)) != sizeof(h))
		return false;
	switch (h.type) {
	case VIRTIO_BLK_T_IN:
	case VIRTIO_BLK_T_OUT: {
		bool out = h.type == VIRTIO_BLK_T_OUT;
		if (out && b->readonly)
			return false;
		r->op.niov = data_iov(c, out, r->op.iov, &len);
		if (!range_ok(b, h.sector, len))
			return false;
		r->op.kind = out ? BLK_IO_WRITE : BLK_IO_READ;
		r->op.offset = h.sector * SECTOR;
		r->written = out ? 0 : (uint32_t)len;
		r->written_len = out ? len : 0;
		blk_io_submit(b->io, &r->op);
		return true;
	}
	case VIRTIO_BLK_T_FLUSH:
		r->op.kind = BLK_IO_FLUSH;
		r->op.niov = 0;
		blk_io_submit(b->io, &r->op);
		return true;
	case VIRTIO_BLK_T_GET_ID: {
		char id[VIRTIO_BLK_ID_BYTES + 1];
		snprintf(id, sizeof(id), "glide-disk%d", b->index);
		r->written = (uint32_t)virtq_chain_to_guest(&b->vd, c, 0, id,
							    MIN((uint64_t)VIRTIO_BLK_ID_BYTES, c->in_bytes - 1));
		*status = VIRTIO_BLK_S_OK;
		return false;
	}
	case VIRTIO_BLK_T_DISCARD:
	case VIRTIO_BLK_T_WRITE_ZEROES:
		if (!b->readonly)
			*status = blk_discard(b, c, h.type == VIRTIO_BLK_T_WRITE_ZEROES);
		return false;
	default:
		*status = VIRTIO_BLK_S_UNSUPP;
		return false;
	}
}

/* Answers the request to the guest (status byte, used entry) and frees it. */
static void blk_finish(struct virtio_blk *b, struct blk_req *r, uint8_t status)
{
	if (status != VIRTIO_BLK_S_OK)
		b->errors++;
	virtq_chain_to_guest(&b->vd, &r->c, r->c.in_bytes - 1, &status, 1);
	virtq_push(&b->vd, r->q, &r->c, (status == VIRTIO_BLK_S_OK ? r->written : 0) + 1);
	r->next_free = b->free_reqs;
	b->free_reqs = r;
}

/* Completes what the engine finished (all in flight with wait); true when
 * something went to the guest. Event thread or run lock held. */
static bool blk_complete(struct virtio_blk *b, bool wait)
{
	bool pushed = false;
	do {
		struct blk_io_op *op = blk_io_reap(b->io, wait);
		while (op) {
			struct blk_req *r = (struct blk_req *)op;
			op = op->next;
			if (!r->op.result)
				r->op.kind == BLK_IO_READ ? b->reads++ : r->op.kind == BLK_IO_WRITE ? b->writes++ : b->flushes++;
			/* a write that failed may still have changed part of the file: mirrored too */
			if (r->op.kind == BLK_IO_WRITE && b->mirror)
				mirror_write(b, r);
			blk_finish(b, r, r->op.result ? VIRTIO_BLK_S_IOERR : VIRTIO_BLK_S_OK);
			pushed = true;
		}
	} while (wait && blk_io_in_flight(b->io));
	return pushed;
}

static void blk_queue_notify(struct virtio_dev *vd, int q)
{
	struct virtio_blk *b = (struct virtio_blk *)vd;
	bool pushed = false;
	/* A bounded batch, then look again: a busy guest cannot hold the thread forever. */
	for (int i = 0; i < BLK_QUEUE_SIZE && b->free_reqs; i++) {
		struct blk_req *r = b->free_reqs;
		if (virtq_pop(vd, q, &r->c) <= 0)
			break;
		b->free_reqs = r->next_free;
		r->q = q;
		if (r->c.nout < 1 || r->c.nin < 1 || r->c.in_bytes < 1) {
			/* no header or no status byte: nothing to answer into */
			virtq_push(vd, q, &r->c, 0);
			r->next_free = b->free_reqs;
			b->free_reqs = r;
			pushed = true;
			b->errors++;
			continue;
		}
		uint8_t status;
		if (!blk_start(b, r, &status)) {
			blk_finish(b, r, status);
			pushed = true;
		}
	}
	blk_io_kick(b->io);
	if (blk_io_in_flight(b->io) > b->in_flight_max)
		b->in_flight_max = blk_io_in_flight(b->io);
	pushed |= blk_complete(b, false);
	if (pushed)
		virtq_notify(vd, q);
}

/* The engine's eventfd: requests completed. */
static void blk_backend_ready(struct virtio_dev *vd, int fd)
{
	struct virtio_blk *b = (struct virtio_blk *)vd;
	if (blk_complete(b, false))
		virtq_notify(vd, 0);
	/* every request slot may have been taken: the queue may hold more */
	if (virtio_queue_ready(vd, 0))
		blk_queue_notify(vd, 0);
}

/* Before a pause (run lock held): every request in flight completes to the guest. */
static void blk_quiesce(struct virtio_dev *vd)
{
	struct virtio_blk *b = (struct virtio_blk *)vd;
	if (blk_io_in_flight(b->io) && blk_complete(b, true))
		virtq_notify(vd, 0);
}

/* Driver reset: what is in flight still writes into guest memory; wait for
 * it, and answer nothing (the queues are gone). */
static void blk_reset(struct virtio_dev *vd)
{
	struct virtio_blk *b = (struct virtio_blk *)vd;
	while (blk_io_in_flight(b->io)) {
		struct blk_io_op *op = blk_io_reap(b->io, true);
		if (!op)
			break;
		while (op) {
			struct blk_req *r = (struct blk_req *)op;
			op = op->next;
			/* unanswered, but the file changed: a mirror must know */
			if (r->op.kind == BLK_IO_WRITE && b->mirror)
				mirror_write(b, r);
			r->next_free = b->free_reqs;
			b->free_reqs = r;
		}
	}
}

/* ---- state: the transport's and the capacity (no request is in flight at a checkpoint: quiesce) ---- */

static bool blk_present(struct vm *vm, int i)
{
	return vm->disks[i] != NULL;
}

static int blk_save(struct vm *vm, int i, struct state_buf *out)
{
	struct virtio_blk *b = (struct virtio_blk *)vm->disks[i];
	if (!b)
		return -ENOENT;
	if (blk_io_in_flight(b->io)) { /* cannot happen: the pause completed them (quiesce) */
		glide_log("virtio-blk", "disk %s: %u request(s) in flight at a checkpoint: refusing to save it", b->path,
			  blk_io_in_flight(b->io));
		return -EBUSY;
	}
	virtio_dev_save(&b->vd, out);
	sbuf_u64(out, b->capacity);
	return 0;
}

static int blk_load(struct vm *vm, int i, uint32_t version, const uint8_t *data, size_t len, char *err, size_t errlen)
{
	struct virtio_blk *b = (struct virtio_blk *)vm->disks[i];
	struct state_cursor c = { data, len, false };
	if (!b) {
		errf(err, errlen, "the state has disk %d, this VM has no such disk", i);
		return -EINVAL;
	}
	int rc = virtio_dev_load(&b->vd, &c, err, errlen);
	if (rc)
		return rc;
	uint64_t capacity = scur_u64(&c);
	if (c.failed || c.left) {
		errf(err, errlen, "virtio-blk %d: state truncated or too long", i);
		return -EINVAL;
	}
	if (capacity != b->capacity) {
		errf(err, errlen, "virtio-blk %d: the disk had %llu sectors, %s here has %llu", i,
		     (unsigned long long)capacity, b->path, (unsigned long long)b->capacity);
		return -EINVAL;
	}
	return 0;
}

static const struct state_section_ops blk_section = {
	.name = "virtio-blk", .version = 1, .order = 50, .instances = VM_MAX_DISKS, .present = blk_present,
	.save = blk_save, .load = blk_load,
};

static void blk_destroy(struct virtio_dev *vd)
{
	struct virtio_blk *b = (struct virtio_blk *)vd;
	blk_io_close(b->io);
	b->io = NULL;
	free(b->reqs);
	b->reqs = NULL;
	if (b->fd >= 0)
		close(b->fd); /* closing the description drops its OFD lock */
	b->fd = -1;
}

static const struct virtio_dev_ops blk_ops = {
	.config_access = blk_config_access,
	.queue_notify = blk_queue_notify,
	.backend_ready = blk_backend_ready,
	.reset = blk_reset,
	.quiesce = blk_quiesce,
	.destroy = blk_destroy,
};

int virtio_blk_create(struct vm *vm, int index, const struct disk_spec *spec, char *err, size_t errlen)
{
	struct virtio_blk *b = calloc(1, sizeof(*b));
	int rc;

	if (!b)
		return -ENOMEM;
	b->index = index;
	b->readonly = spec->readonly;
	b->direct = spec->direct;
	snprintf(b->path, sizeof(b->path), "%s", spec->path);
	int flags = (spec->readonly ? O_RDONLY : O_RDWR) | O_CLOEXEC | (spec->direct ? O_DIRECT : 0);
	b->fd = open(spec->path, flags);
	if (b->fd < 0) {
		rc = -errno;
		errf(err, errlen, "disk %s: %s%s", spec->path, strerror(errno),
		     rc == -EACCES || rc == -EROFS || rc == -EPERM ? " (use ,readonly for a read-only disk)" : "");
		free(b);
		return rc;
	}
	struct stat st;
	off_t end = lseek(b->fd, 0, SEEK_END);
	if (fstat(b->fd, &st) || end < (off_t)SECTOR) {
		errf(err, errlen, "disk %s: cannot read its size", spec->path);
		close(b->fd);
		free(b);
		return -EIO;
	}
	b->capacity = (uint64_t)end / SECTOR;
	/* A VM that is arriving takes the lock at the switchover, when its source lets go. */
	if (!vm->arriving) {
		rc = blk_lock(b, true, err, errlen);
		if (rc) {
			close(b->fd);
			free(b);
			return rc;
		}
	}
	b->reqs = calloc(BLK_QUEUE_SIZE, sizeof(*b->reqs));
	rc = b->reqs ? blk_io_open(&b->io, b->fd, spec->aio, BLK_QUEUE_SIZE, &b->engine, err, errlen) : -ENOMEM;
	if (rc) {
		free(b->reqs);
		close(b->fd);
		free(b);
		return rc;
	}
	for (int i = BLK_QUEUE_SIZE - 1; i >= 0; i--) {
		b->reqs[i].next_free = b->free_reqs;
		b->free_reqs = &b->reqs[i];
	}
	memcpy(b->config, &b->capacity, 8);
	uint32_t v32 = BLK_SEG_MAX;
	memcpy(b->config + 12, &v32, 4);
	v32 = SECTOR;
	memcpy(b->config + 20, &v32, 4);
	uint16_t v16 = 1;
	memcpy(b->config + 34, &v16, 2);
	v32 = (uint32_t)MIN(b->capacity, 0xffffffffULL);
	memcpy(b->config + 36, &v32, 4); /* max_discard_sectors */
	v32 = BLK_DISCARD_SEG_MAX;
	memcpy(b->config + 40, &v32, 4);
	v32 = 1;
	memcpy(b->config + 44, &v32, 4); /* discard alignment: a sector */
	v32 = (uint32_t)MIN(b->capacity, 0xffffffffULL);
	memcpy(b->config + 48, &v32, 4); /* max_write_zeroes_sectors */
	v32 = BLK_DISCARD_SEG_MAX;
	memcpy(b->config + 52, &v32, 4);
	b->config[56] = 1; /* write_zeroes_may_unmap */

	uint64_t features = 1ULL << VIRTIO_BLK_F_SEG_MAX | 1ULL << VIRTIO_BLK_F_BLK_SIZE | 1ULL << VIRTIO_BLK_F_FLUSH |
			    1ULL << VIRTIO_F_RING_INDIRECT_DESC | 1ULL << VIRTIO_F_RING_EVENT_IDX;
	if (b->readonly)
		features |= 1ULL << VIRTIO_BLK_F_RO;
	else
		features |= 1ULL << VIRTIO_BLK_F_DISCARD | 1ULL << VIRTIO_BLK_F_WRITE_ZEROES;
	snprintf(b->name, sizeof(b->name), "virtio-blk%d", index);
	b->vd.instance = index;
	rc = virtio_dev_create(vm, &b->vd, b->name, VIRTIO_ID_BLOCK, 1, BLK_QUEUE_SIZE, BLK_CONFIG_LEN, features,
			       &blk_ops, err, errlen);
	vm->disks[index] = &b->vd; /* destroyed with the VM, also after a failure here */
	if (!rc && (rc = virtio_watch_fd(&b->vd, blk_io_event_fd(b->io))))
		errf(err, errlen, "disk %s: cannot watch its I/O completions: %s", b->path, strerror(-rc));
	return rc;
}

int virtio_blk_stats(struct vm *vm, int i, struct blk_stats *out, char *path, size_t pathlen)
{
	struct virtio_blk *b = i >= 0 && i < VM_MAX_DISKS ? (struct virtio_blk *)vm->disks[i] : NULL;
	if (!b)
		return -ENOENT;
	*out = (struct blk_stats){ b->reads, b->writes, b->flushes, b->errors, b->capacity, b->readonly, b->locked,
				   (int)b->engine, b->in_flight_max };
	snprintf(path, pathlen, "%s", b->path);
	return 0;
}

int virtio_blk_release_locks(struct vm *vm, uint32_t keep)
{
	for (int i = 0; i < VM_MAX_DISKS; i++) {
		struct virtio_blk *b = (struct virtio_blk *)vm->disks[i];
		if (b && b->locked && !(keep & (1u << i))) {
			if (!b->readonly && fdatasync(b->fd))
				glide_log("virtio-blk", "disk %s: flush before handing it over failed: %s", b->path, strerror(errno));
			blk_lock(b, false, NULL, 0);
		}
	}
	return 0;
}

int virtio_blk_acquire_locks(struct vm *vm, char *err, size_t errlen)
{
	for (int i = 0; i < VM_MAX_DISKS; i++) {
		struct virtio_blk *b = (struct virtio_blk *)vm->disks[i];
		if (b && !b->locked) {
			int rc = blk_lock(b, true, err, errlen);
			if (rc)
				return rc;
		}
	}
	return 0;
}

int virtio_blk_mirror(struct vm *vm, int i, struct virtio_blk_mirror *m)
{
	struct virtio_blk *b = i >= 0 && i < VM_MAX_DISKS ? (struct virtio_blk *)vm->disks[i] : NULL;
	if (!b)
		return -ENOENT;
	if (b->readonly && m)
		return -EROFS;
	pthread_mutex_lock(&b->vd.run_lock); /* no completion uses the old one when this returns */
	b->mirror = m;
	pthread_mutex_unlock(&b->vd.run_lock);
	return 0;
}

int virtio_blk_switch_file(struct vm *vm, int i, const char *path, char *err, size_t errlen)
{
	struct virtio_blk *b = i >= 0 && i < VM_MAX_DISKS ? (struct virtio_blk *)vm->disks[i] : NULL;
	if (!b) {
		errf(err, errlen, "no disk %d", i);
		return -ENOENT;
	}
	int fd = open(path, (b->readonly ? O_RDONLY : O_RDWR) | O_CLOEXEC | (b->direct ? O_DIRECT : 0));
	if (fd < 0) {
		errf(err, errlen, "disk %d: cannot open %s: %s", i, path, strerror(errno));
		return -errno;
	}
	off_t end = lseek(fd, 0, SEEK_END);
	if (end < 0 || (uint64_t)end / SECTOR != b->capacity) {
		errf(err, errlen, "disk %d: %s has %lld bytes, the disk %llu", i, path, (long long)end,
		     (unsigned long long)(b->capacity * SECTOR));
		close(fd);
		return -EINVAL;
	}
	pthread_mutex_lock(&b->vd.run_lock);
	if (blk_io_in_flight(b->io)) { /* cannot happen: the VM is paused (quiesce) */
		pthread_mutex_unlock(&b->vd.run_lock);
		close(fd);
		errf(err, errlen, "disk %d: requests in flight", i);
		return -EBUSY;
	}
	int old = b->fd;
	bool was_locked = b->locked;
	b->fd = fd;
	int rc = was_locked ? blk_lock(b, true, err, errlen) : 0;
	if (rc) {
		b->fd = old;
		pthread_mutex_unlock(&b->vd.run_lock);
		close(fd);
		return rc;
	}
	blk_io_set_fd(b->io, fd);
	snprintf(b->path, sizeof(b->path), "%s", path);
	pthread_mutex_unlock(&b->vd.run_lock);
	close(old); /* its description's lock goes with it */
	return 0;
}

int virtio_blk_file(struct vm *vm, int i, int *fd, uint64_t *bytes, char *path, size_t pathlen)
{
	struct virtio_blk *b = i >= 0 && i < VM_MAX_DISKS ? (struct virtio_blk *)vm->disks[i] : NULL;
	if (!b)
		return -ENOENT;
	*fd = b->fd;
	*bytes = b->capacity * SECTOR;
	if (path)
		snprintf(path, pathlen, "%s", b->path);
	return 0;
}

__attribute__((constructor)) static void blk_register(void)
{
	state_register(&blk_section);
}
