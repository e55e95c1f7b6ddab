/* Storage migration of a running VM's disk on its own host (`glide vm
 * move-disk`, the Storage vMotion of seed 002's family): the disk moves to
 * another file, on another directory or filesystem, while the guest runs.
 *
 *   1. The new file is created (O_EXCL, 0600, sparse, the disk's size) and
 *      set as the disk's write-blocking mirror (virtio_blk_mirror): from
 *      then on every write the guest completes is in both files.
 *   2. One pass copies the rest: every allocated extent of the disk
 *      (SEEK_DATA), 1 MiB at a time, each chunk read and written under the
 *      mirror's lock so that no mirrored write interleaves with it; all-zero
 *      chunks are skipped (the new file reads zeros there already, or what
 *      a mirrored write put there, which the disk has too). After the pass
 *      the two files are equal, and stay so.
 *   3. The switch: the new file is flushed, the VM paused (which completes
 *      every request in flight, mirrored), the device pointed at the new
 *      file (opened and locked as the old one was), the VM resumed. The
 *      stall is that pause, measured and reported.
 * The old file is left in place, unlocked: the host agent removes it once
 * its record names the new one. Any failure (the new filesystem full, a
 * mirrored write that failed, a cancel, the monitor stopping) stops the
 * mirror, removes the new file and leaves the VM on the old one, never
 * having failed a guest request. */
#include "migrate/disk_move.h"
#include "devices/virtio_dev.h"
#include "common/util.h"
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MOVE_CHUNK (1u << 20)

enum { MOVE_RUNNING, MOVE_COMPLETED, MOVE_FAILED };
static const char *const move_state_names[] = { "running", "completed", "failed" };

struct disk_move {
	struct monitor *m;
	pthread_t thread;
	bool joined;
	int disk;
	char from[PATH_MAX], to[PATH_MAX];
	int state;                 /* MOVE_*, under lock */
	char error[600];
	uint64_t bytes_copied, copy_total, zero_skipped;
	uint64_t writes_mirrored, bytes_mirrored;
	double stall_ms, total_ms;
	uint64_t started_ns;
	volatile bool cancel;
	pthread_mutex_t lock;
};

static bool all_zero(const uint8_t *p, size_t n)
{
	const uint64_t *w = (const uint64_t *)p;
	for (size_t i = 0; i < n / 8; i++)
		if (w[i])
			return false;
	for (size_t i = n / 8 * 8; i < n; i++)
		if (p[i])
			return false;
	return true;
}

static void move_fail(struct disk_move *dm, int fd, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void move_fail(struct disk_move *dm, int fd, const char *fmt, ...)
{
	va_list ap;
	pthread_mutex_lock(&dm->lock);
	va_start(ap, fmt);
	vsnprintf(dm->error, sizeof(dm->error), fmt, ap);
	va_end(ap);
	pthread_mutex_unlock(&dm->lock);
	if (fd >= 0)
		close(fd);
	if (unlink(dm->to) && errno != ENOENT)
		glide_log("disk-move", "cannot remove %s: %s", dm->to, strerror(errno));
	pthread_mutex_lock(&dm->lock);
	dm->total_ms = (now_ns() - dm->started_ns) / 1e6;
	dm->state = MOVE_FAILED;
	pthread_mutex_unlock(&dm->lock);
	glide_log("disk-move", "disk %d: move to %s failed: %s; the VM stays on %s", dm->disk, dm->to, dm->error, dm->from);
}

/* The pass: every allocated extent of src into the mirror, chunk by chunk under its lock. */
static int copy_pass(struct disk_move *dm, int src, uint64_t size, struct virtio_blk_mirror *mir, char *err, size_t errlen)
{
	uint8_t *buf = NULL;
	uint64_t pos = 0, data, hole;
	int rc = 0;
	if (posix_memalign((void **)&buf, 4096, MOVE_CHUNK))
		return -ENOMEM;
	while (!rc && file_data_extent(src, pos, size, &data, &hole)) {
		for (uint64_t off = data / 4096 * 4096; off < hole && !rc; off += MOVE_CHUNK) {
			uint32_t n = (uint32_t)MIN((uint64_t)MOVE_CHUNK, size - off);
			if (dm->cancel) {
				errf(err, errlen, "cancelled");
				rc = -ECANCELED;
				break;
			}
			pthread_mutex_lock(&mir->lock);
			ssize_t got = pread(src, buf, n, (off_t)off);
			bool zero = got == (ssize_t)n && all_zero(buf, n);
			if (got != (ssize_t)n) {
				rc = got < 0 ? -errno : -EIO;
				errf(err, errlen, "reading %s: %s", dm->from, strerror(-rc));
			} else if (mir->error) {
				rc = mir->error;
				errf(err, errlen, "a mirrored guest write failed: %s", strerror(-rc));
			} else if (!zero && (rc = pwrite_full(mir->fd, buf, n, off))) {
				errf(err, errlen, "writing %s: %s", dm->to, strerror(-rc));
				mir->error = rc;
			}
			pthread_mutex_unlock(&mir->lock);
			pthread_mutex_lock(&dm->lock);
			dm->bytes_copied += zero ? 0 : n;
			dm->zero_skipped += zero ? n : 0;
			pthread_mutex_unlock(&dm->lock);
			pos = off + n;
		}
		if (pos < hole)
			pos = hole;
	}
	free(buf);
	return rc;
}

static void *move_thread(void *arg)
{
	struct disk_move *dm = arg;
	struct monitor *m = dm->m;
	struct vm *vm = &m->vm;
	struct virtio_blk_mirror mir = { .fd = -1 };
	char err[512] = "", path[PATH_MAX];
	int dfd, src = -1, rc;
	uint64_t size;

	pthread_mutex_init(&mir.lock, NULL);
	if (virtio_blk_file(vm, dm->disk, &dfd, &size, path, sizeof(path))) {
		move_fail(dm, -1, "the VM has no disk %d", dm->disk);
		goto out;
	}
	/* the pass reads through a descriptor of its own (the disk may be O_DIRECT) */
	src = open(path, O_RDONLY | O_CLOEXEC);
	mir.fd = open(dm->to, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (mir.fd < 0) {
		int e = errno;
		dm->to[0] = e == EEXIST ? 0 : dm->to[0]; /* never remove a file that was there before */
		move_fail(dm, -1, "cannot create %s: %s%s", dm->to[0] ? dm->to : "the new file", strerror(e),
			  e == EEXIST ? " (a move never overwrites a file)" : "");
		goto out;
	}
	if (src < 0 || ftruncate(mir.fd, (off_t)size)) {
		move_fail(dm, mir.fd, "%s %s: %s", src < 0 ? "reading" : "sizing", src < 0 ? path : dm->to, strerror(errno));
		goto out;
	}
	pthread_mutex_lock(&dm->lock);
	struct stat st;
	dm->copy_total = fstat(src, &st) ? size : MIN(size, (uint64_t)st.st_blocks * 512);
	pthread_mutex_unlock(&dm->lock);
	if ((rc = virtio_blk_mirror(vm, dm->disk, &mir))) {
		move_fail(dm, mir.fd, "disk %d cannot be mirrored: %s", dm->disk, rc == -EROFS ? "it is read-only" : strerror(-rc));
		goto out;
	}
	rc = copy_pass(dm, src, size, &mir, err, sizeof(err));
	if (!rc && fdatasync(mir.fd)) { /* most of it now, so that the flush in the pause is short */
		rc = -errno;
		errf(err, sizeof(err), "flushing %s: %s", dm->to, strerror(errno));
	}
	if (rc) {
		virtio_blk_mirror(vm, dm->disk, NULL);
		move_fail(dm, mir.fd, "%s", err);
		goto out;
	}
	/* the switch, VM paused */
	bool was_paused = vm->pause_requested;
	uint64_t t0 = now_ns();
	if (vm_pause(vm)) {
		virtio_blk_mirror(vm, dm->disk, NULL);
		move_fail(dm, mir.fd, "the VM is shutting down");
		goto out;
	}
	rc = mir.error;
	if (!rc && fdatasync(mir.fd))
		rc = -errno;
	virtio_blk_mirror(vm, dm->disk, NULL);
	if (!rc)
		rc = virtio_blk_switch_file(vm, dm->disk, dm->to, err, sizeof(err));
	else
		errf(err, sizeof(err), "the new file failed at the switch: %s", strerror(-rc));
	if (!was_paused)
		vm_resume(vm);
	double stall = (now_ns() - t0) / 1e6;
	if (rc) {
		move_fail(dm, mir.fd, "%s", err);
		goto out;
	}
	close(mir.fd);
	pthread_mutex_lock(&dm->lock);
	dm->stall_ms = stall;
	dm->writes_mirrored = mir.writes;
	dm->bytes_mirrored = mir.bytes;
	dm->total_ms = (now_ns() - dm->started_ns) / 1e6;
	dm->state = MOVE_COMPLETED;
	pthread_mutex_unlock(&dm->lock);
	glide_log("disk-move", "disk %d moved from %s to %s in %.0f ms (%llu bytes copied, %llu guest writes mirrored, "
		  "stall %.2f ms)", dm->disk, dm->from, dm->to, dm->total_ms, (unsigned long long)dm->bytes_copied,
		  (unsigned long long)mir.writes, stall);
out:
	pthread_mutex_lock(&dm->lock);
	if (dm->state == MOVE_RUNNING) { /* cannot happen: every path above ends it */
		dm->state = MOVE_FAILED;
		snprintf(dm->error, sizeof(dm->error), "ended without a result");
	}
	if (!dm->writes_mirrored)
		dm->writes_mirrored = mir.writes;
	pthread_mutex_unlock(&dm->lock);
	if (src >= 0)
		close(src);
	pthread_mutex_destroy(&mir.lock);
	monitor_op_end(m);
	return NULL;
}

static json_t *move_json(struct disk_move *dm)
{
	pthread_mutex_lock(&dm->lock);
	double elapsed = dm->state == MOVE_RUNNING ? (now_ns() - dm->started_ns) / 1e6 : dm->total_ms;
	json_t *j = json_pack("{s:s, s:i, s:s, s:s, s:I, s:I, s:I, s:I, s:f}", "state", move_state_names[dm->state], "disk",
			      dm->disk, "from", dm->from, "to", dm->to, "bytes_copied", (json_int_t)dm->bytes_copied, "copy_total",
			      (json_int_t)dm->copy_total, "zero_bytes_skipped", (json_int_t)dm->zero_skipped, "writes_mirrored",
			      (json_int_t)dm->writes_mirrored, "elapsed_ms", elapsed);
	if (dm->state == MOVE_COMPLETED)
		json_object_set_new(j, "stall_ms", json_real(dm->stall_ms));
	if (dm->error[0])
		json_object_set_new(j, "error", json_string(dm->error));
	pthread_mutex_unlock(&dm->lock);
	return j;
}

static void move_reap(struct disk_move *dm)
{
	if (dm && !dm->joined) {
		pthread_join(dm->thread, NULL);
		dm->joined = true;
	}
}

int disk_move_api_start(void *ctx, const struct http_request *req, json_t **resp)
{
	struct monitor *m = ctx;
	json_t *disk = json_object_get(req->body, "disk"), *to = json_object_get(req->body, "path");
	char err[512], from[PATH_MAX];
	int fd;
	uint64_t size;

	if (!json_is_integer(disk) || !json_is_string(to) || json_string_value(to)[0] != '/' ||
	    json_string_length(to) >= PATH_MAX - 1 || json_object_size(req->body) != 2) {
		*resp = http_error("a disk move needs {\"disk\": INDEX, \"path\": the new file (an absolute path)}");
		return 400;
	}
	int i = (int)json_integer_value(disk);
	if (json_integer_value(disk) < 0 || json_integer_value(disk) >= VM_MAX_DISKS ||
	    virtio_blk_file(&m->vm, i, &fd, &size, from, sizeof(from))) {
		*resp = http_error("the VM has no disk %lld", (long long)json_integer_value(disk));
		return 404;
	}
	if (!strcmp(from, json_string_value(to))) {
		*resp = http_error("disk %d already is %s", i, from);
		return 409;
	}
	if (m->incoming || m->migrated_away || m->vm.state == VM_STATE_MASKED) {
		*resp = http_error("this VM's disks cannot move now (%s)", m->incoming ? "incoming migration"
						     : m->migrated_away ? "it migrated away" : "not started");
		return 409;
	}
	if (monitor_op_begin(m, "disk move", err, sizeof(err))) {
		*resp = http_error("%s", err);
		return 409;
	}
	move_reap(m->disk_move); /* the previous one ended (op_busy was free) */
	free(m->disk_move);
	struct disk_move *dm = calloc(1, sizeof(*dm));
	m->disk_move = dm;
	if (!dm) {
		monitor_op_end(m);
		return 500;
	}
	dm->m = m;
	dm->disk = i;
	dm->started_ns = now_ns();
	pthread_mutex_init(&dm->lock, NULL);
	snprintf(dm->from, sizeof(dm->from), "%s", from);
	snprintf(dm->to, sizeof(dm->to), "%s", json_string_value(to));
	if (pthread_create(&dm->thread, NULL, move_thread, dm)) {
		dm->joined = true;
		dm->state = MOVE_FAILED;
		snprintf(dm->error, sizeof(dm->error), "cannot start the move thread");
		monitor_op_end(m);
		*resp = move_json(dm);
		return 500;
	}
	glide_log("disk-move", "disk %d: moving from %s to %s", i, from, dm->to);
	*resp = move_json(dm);
	return 202;
}

int disk_move_api_status(void *ctx, const struct http_request *req, json_t **resp)
{
	struct monitor *m = ctx;
	(void)req;
	if (!m->disk_move) {
		*resp = http_error("no disk move has run in this monitor");
		return 404;
	}
	*resp = move_json(m->disk_move);
	return 200;
}

int disk_move_api_cancel(void *ctx, const struct http_request *req, json_t **resp)
{
	struct monitor *m = ctx;
	(void)req;
	if (!m->disk_move) {
		*resp = http_error("no disk move has run in this monitor");
		return 404;
	}
	m->disk_move->cancel = true;
	*resp = move_json(m->disk_move);
	return 200;
}

void disk_move_cancel(struct monitor *m)
{
	if (!m->disk_move)
		return;
	m->disk_move->cancel = true;
	move_reap(m->disk_move);
}
