/* The "disk" live section: a disk copied along with the VM (shared-nothing
 * migration, `glide migrate --disk-to PATH`), the way the RAM section
 * copies memory.
 *
 * Source: setup starts the device's dirty tracking (virtio_blk_track: every
 * write, discard or write zeroes that completes sets its 4 KiB blocks in a
 * map, before the guest sees the completion), then marks every allocated
 * extent of the file for the first pass (holes are skipped: SEEK_DATA).
 * A pass sends the marked blocks, 256 at a time (a chunk; chunk c travels
 * on channel c % count, so a block's copies arrive in order), all-zero
 * blocks as zero runs; harvest turns what the guest wrote meanwhile into
 * the next pass. The final pass runs while the VM is stunned, after the
 * pause completed every request in flight, so the destination's file
 * equals the source's at the checkpoint. The source's file is only read.
 *
 * Destination: the file was created empty at CONFIG (dest.c); frames are
 * checked whole, then written (zero runs punch holes). Until the VM runs
 * on it the copy is marked partial (an xattr) under the destination's
 * lock; one a destination left when it died (SIGKILL) is removed by the
 * next destination on that --disk-dir (disk_copy_sweep at its start, or
 * disk_copy_create for the same path), never taken for a disk.
 *
 * Payload: u32 disk, u32 nruns, nruns x { u64 first block, u32 blocks,
 * u32 kind (0 data, 1 zero) }, then the data runs' bytes in order. A
 * block's length is 4 KiB, or what is left of the disk for its last block. */
#include "migrate/disk.h"
#include "migrate/live.h"
#include "devices/blk_io.h"
#include "devices/virtio_dev.h"
#include "state/state.h"
#include "common/util.h"
#include "vmm/vm.h"
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#define BLOCK VIRTIO_BLK_TRACK_BLOCK
#define CHUNK_BLOCKS 256ULL /* 1 MiB: a frame */
#define RUN_DATA 0
#define RUN_ZERO 1

struct disk_run {
	uint64_t first;
	uint32_t blocks;
	uint32_t kind;
};

struct copied_disk {
	int index, fd;
	uint64_t bytes, blocks, words;
	uint64_t *dirty;   /* marked by the device */
	uint64_t *pass;    /* what the current pass sends */
};

struct disk_source {
	int n;
	struct copied_disk d[VM_MAX_DISKS];
};

static uint64_t block_len(const struct copied_disk *d, uint64_t blk)
{
	return MIN(BLOCK, d->bytes - blk * BLOCK);
}

static bool is_zero(const uint8_t *p, uint64_t n)
{
	static const uint8_t zero[BLOCK];
	return !memcmp(p, zero, n);
}

/* Marks the extents of fd that hold data (all of it where SEEK_DATA is not supported). */
static int mark_allocated(struct copied_disk *d)
{
	off_t pos = 0;
	while ((uint64_t)pos < d->bytes) {
		off_t data = lseek(d->fd, pos, SEEK_DATA);
		if (data < 0 && errno == ENXIO)
			break; /* a hole up to the end */
		if (data < 0) { /* no SEEK_DATA here: everything */
			data = pos;
		}
		off_t hole = lseek(d->fd, data, SEEK_HOLE);
		if (hole < 0 || (uint64_t)hole > d->bytes)
			hole = (off_t)d->bytes;
		for (uint64_t b = (uint64_t)data / BLOCK; b < ((uint64_t)hole + BLOCK - 1) / BLOCK; b++)
			d->pass[b / 64] |= 1ULL << (b % 64);
		if (hole <= data)
			break;
		pos = hole;
	}
	return 0;
}

static void disk_cleanup(struct live_source *ls)
{
	struct disk_source *s = ls->priv;
	if (!s)
		return;
	for (int i = 0; i < s->n; i++) {
		virtio_blk_track(ls->vm, s->d[i].index, NULL);
		free(s->d[i].dirty);
		free(s->d[i].pass);
	}
	free(s);
	ls->priv = NULL;
}

static int disk_setup(struct live_source *ls, char *err, size_t errlen)
{
	struct disk_source *s = calloc(1, sizeof(*s));
	if (!s) {
		errf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	ls->priv = s;
	if (!ls->tracing) /* a snapshot: disks stay where they are */
		return 0;
	for (int i = 0; i < VM_MAX_DISKS; i++) {
		if (!(ls->disk_copy & (1u << i)))
			continue;
		struct copied_disk *d = &s->d[s->n];
		char path[4096];
		if (virtio_blk_file(ls->vm, i, &d->fd, &d->bytes, path, sizeof(path))) {
			errf(err, errlen, "disk %d to copy: the VM has no such disk", i);
			return -ENOENT;
		}
		d->index = i;
		d->blocks = (d->bytes + BLOCK - 1) / BLOCK;
		d->words = (d->blocks + 63) / 64;
		d->dirty = calloc(d->words, sizeof(uint64_t));
		d->pass = calloc(d->words, sizeof(uint64_t));
		s->n++;
		if (!d->dirty || !d->pass) {
			errf(err, errlen, "out of memory for disk %d's block map", i);
			return -ENOMEM;
		}
		/* tracing first, then the extents: a write racing the first pass is sent again */
		virtio_blk_track(ls->vm, i, d->dirty);
		mark_allocated(d);
		glide_log("migrate", "disk %d (%s, %llu MiB): copying it to the destination", i, path,
			  (unsigned long long)(d->bytes >> 20));
	}
	return 0;
}

static uint64_t disk_pending(struct live_source *ls)
{
	struct disk_source *s = ls->priv;
	uint64_t n = 0;
	for (int i = 0; s && i < s->n; i++)
		for (uint64_t w = 0; w < s->d[i].words; w++)
			n += (uint64_t)__builtin_popcountll(s->d[i].pass[w]);
	return n * BLOCK;
}

static int disk_harvest(struct live_source *ls, char *err, size_t errlen)
{
	struct disk_source *s = ls->priv;
	for (int i = 0; s && i < s->n; i++)
		for (uint64_t w = 0; w < s->d[i].words; w++)
			s->d[i].pass[w] |= __atomic_exchange_n(&s->d[i].dirty[w], 0, __ATOMIC_ACQ_REL);
	return 0;
}

/* One chunk of one disk: every marked block, as one frame. */
static int send_chunk(struct channel *ch, struct copied_disk *d, uint64_t c, uint8_t *scratch)
{
	uint64_t first = c * CHUNK_BLOCKS, n = MIN(CHUNK_BLOCKS, d->blocks - first);
	uint64_t *words = &d->pass[first / 64];
	uint8_t *payload = channel_payload(ch);
	struct disk_run runs[CHUNK_BLOCKS];
	uint32_t nruns = 0;
	uint64_t data_bytes = 0, b = 0;
	int rc;

	/* the marked runs, read in one pread each, split into data and zero runs */
	while (b < n) {
		if (!(words[b / 64] >> (b % 64) & 1)) {
			b++;
			continue;
		}
		uint64_t e = b;
		while (e < n && (words[e / 64] >> (e % 64) & 1))
			e++;
		uint64_t off = (first + b) * BLOCK, len = (first + e - 1) * BLOCK + block_len(d, first + e - 1) - off;
		struct iovec iov = { scratch, len };
		if ((rc = blk_io_full(d->fd, false, &iov, 1, off))) { /* zeros past a file that shrank */
			snprintf(ch->err, sizeof(ch->err), "disk %d: reading it at %llu failed: %s", d->index,
				 (unsigned long long)off, strerror(-rc));
			return rc;
		}
		for (uint64_t k = b; k < e; k++) {
			const uint8_t *src = scratch + (k - b) * BLOCK;
			uint64_t bl = block_len(d, first + k);
			uint32_t kind = is_zero(src, bl) ? RUN_ZERO : RUN_DATA;
			ch->disk_blocks++;
			ch->disk_zero_blocks += kind == RUN_ZERO;
			if (nruns && runs[nruns - 1].kind == kind && runs[nruns - 1].first + runs[nruns - 1].blocks == first + k)
				runs[nruns - 1].blocks++;
			else
				runs[nruns++] = (struct disk_run){ first + k, 1, kind };
			if (kind == RUN_DATA) {
				/* data goes after the run table, which is at most CHUNK_BLOCKS runs: built in scratch's tail */
				memcpy(scratch + CHUNK_BLOCKS * BLOCK + data_bytes, src, bl);
				data_bytes += bl;
			}
		}
		b = e;
	}
	if (!nruns)
		return 0;
	uint32_t idx = (uint32_t)d->index;
	memcpy(payload, &idx, 4);
	memcpy(payload + 4, &nruns, 4);
	memcpy(payload + 8, runs, nruns * sizeof(runs[0]));
	memcpy(payload + 8 + nruns * sizeof(runs[0]), scratch + CHUNK_BLOCKS * BLOCK, data_bytes);
	if (!ch->final)
		memset(words, 0, (n + 63) / 64 * sizeof(uint64_t));
	rc = channel_send(ch, 8 + nruns * sizeof(runs[0]) + data_bytes);
	if (!rc)
		channel_progress(ch, n * BLOCK);
	return rc;
}

static int disk_send_pass(struct live_source *ls, struct channel *ch)
{
	struct disk_source *s = ls->priv;
	int rc = 0;
	if (!s || !s->n)
		return 0;
	uint8_t *scratch = malloc(2 * CHUNK_BLOCKS * BLOCK);
	if (!scratch) {
		snprintf(ch->err, sizeof(ch->err), "out of memory for a disk chunk");
		return -ENOMEM;
	}
	for (int i = 0; i < s->n && !rc; i++) {
		struct copied_disk *d = &s->d[i];
		uint64_t nchunks = (d->blocks + CHUNK_BLOCKS - 1) / CHUNK_BLOCKS;
		for (uint64_t c = (uint64_t)ch->index; c < nchunks && !rc && !channel_stopped(ch); c += (uint64_t)ch->count) {
			uint64_t any = 0;
			for (uint64_t w = c * CHUNK_BLOCKS / 64; w < MIN(d->words, (c + 1) * CHUNK_BLOCKS / 64); w++)
				any |= d->pass[w];
			if (any)
				rc = send_chunk(ch, d, c, scratch);
		}
	}
	free(scratch);
	return rc;
}

/* ---- destination ---- */

struct disk_dest {
	int fd[VM_MAX_DISKS];
	uint64_t bytes[VM_MAX_DISKS];
};

static int disk_load_setup(struct live_dest *ld, char *err, size_t errlen)
{
	struct disk_dest *dd = calloc(1, sizeof(*dd));
	if (!dd) {
		errf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	ld->priv = dd;
	for (int i = 0; i < VM_MAX_DISKS; i++) {
		dd->fd[i] = -1;
		if ((ld->disk_copy & (1u << i)) && virtio_blk_file(ld->vm, i, &dd->fd[i], &dd->bytes[i], NULL, 0)) {
			errf(err, errlen, "disk %d arrives as a copy but this VM has no such disk", i);
			return -ENOENT;
		}
	}
	return 0;
}

int disk_apply_frame(const int fd[VM_MAX_DISKS], const uint64_t bytes[VM_MAX_DISKS], const uint8_t *data, size_t len,
		     char *err, size_t errlen)
{
	uint32_t idx, nruns;
	if (len < 8) {
		errf(err, errlen, "disk frame too short (%zu bytes)", len);
		return -EBADMSG;
	}
	memcpy(&idx, data, 4);
	memcpy(&nruns, data + 4, 4);
	if (idx >= VM_MAX_DISKS || fd[idx] < 0) {
		errf(err, errlen, "disk frame for disk %u, which does not arrive as a copy", idx);
		return -EBADMSG;
	}
	if (nruns == 0 || nruns > CHUNK_BLOCKS || (uint64_t)nruns * sizeof(struct disk_run) > len - 8) {
		errf(err, errlen, "disk frame has a bad run count %u", nruns);
		return -EBADMSG;
	}
	uint64_t blocks = (bytes[idx] + BLOCK - 1) / BLOCK, need = 0;
	struct disk_run runs[CHUNK_BLOCKS];
	memcpy(runs, data + 8, nruns * sizeof(runs[0]));
	for (uint32_t i = 0; i < nruns; i++) {
		struct disk_run *r = &runs[i];
		if (!r->blocks || r->blocks > CHUNK_BLOCKS || r->first >= blocks || r->blocks > blocks - r->first ||
		    r->kind > RUN_ZERO) {
			errf(err, errlen, "disk frame has an invalid run (block %llu, %u blocks, kind %u)",
			     (unsigned long long)r->first, r->blocks, r->kind);
			return -EBADMSG;
		}
		if (r->kind == RUN_DATA)
			need += MIN((uint64_t)r->blocks * BLOCK, bytes[idx] - r->first * BLOCK);
	}
	const uint8_t *p = data + 8 + nruns * sizeof(runs[0]);
	if (need != (uint64_t)(data + len - p)) {
		errf(err, errlen, "disk frame length %zu does not match its runs", len);
		return -EBADMSG;
	}
	for (uint32_t i = 0; i < nruns; i++) {
		uint64_t off = runs[i].first * BLOCK, n = MIN((uint64_t)runs[i].blocks * BLOCK, bytes[idx] - off);
		int rc = 0;
		if (runs[i].kind == RUN_DATA) {
			rc = pwrite_full(fd[idx], p, n, off);
			p += n;
		} else if (fallocate(fd[idx], FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)n) < 0) {
			static const uint8_t zero[BLOCK];
			for (uint64_t o = 0; o < n && !rc; o += BLOCK)
				rc = pwrite_full(fd[idx], zero, MIN(BLOCK, n - o), off + o);
		}
		if (rc) {
			const char *why = rc == -ENOSPC ? " (ENOSPC: no room left for the copy on the destination)"
					  : rc == -EDQUOT ? " (EDQUOT: the destination's disk quota is used up)" : "";
			errf(err, errlen, "disk %u: writing the copy at %llu failed: %s%s", idx, (unsigned long long)off,
			     strerror(-rc), why);
			return rc;
		}
	}
	return 0;
}

static int disk_load(struct live_dest *ld, const uint8_t *data, size_t len, char *err, size_t errlen)
{
	struct disk_dest *dd = ld->priv;
	return disk_apply_frame(dd->fd, dd->bytes, data, len, err, errlen);
}

/* A copy is partial, never a disk a VM ran on, while it carries this mark.
 * The destination writing it marks it once it holds an OFD write lock on it
 * and removes the mark before it lets go (disk_copy_commit): a marked file
 * that nobody holds a lock on was left by a destination that died (SIGKILL,
 * a crash), and removing it loses nothing. A file system without user
 * xattrs gets no mark: such a copy stays until removed by hand. */
#define PARTIAL_MARK "user.glide.partial"

/* 1: path was a partial copy whose destination died, now removed; 0: not
 * a partial copy (unmarked files are not even opened); -EBUSY: a live
 * destination writes it. */
static int remove_stale_copy(const char *path)
{
	struct stat st, now;
	struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET };
	int fd, rc = 0;

	if (lgetxattr(path, PARTIAL_MARK, NULL, 0) < 0 || lstat(path, &st) || !S_ISREG(st.st_mode))
		return 0;
	fd = open(path, O_RDWR | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	if (fcntl(fd, F_OFD_SETLK, &fl) < 0) {
		rc = -EBUSY;
		goto out;
	}
	/* marked while we hold the lock: its writer is gone; the name must still be this file */
	if (fgetxattr(fd, PARTIAL_MARK, NULL, 0) >= 0 && !fstat(fd, &st) && !lstat(path, &now) &&
	    now.st_ino == st.st_ino && now.st_dev == st.st_dev)
		rc = unlink(path) == 0;
out:
	close(fd);
	return rc;
}

int disk_copy_create(const char *path, uint64_t bytes, char *err, size_t errlen)
{
	struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET };
	int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600), rc, stale = 0;

	if (fd < 0 && errno == EEXIST) {
		stale = remove_stale_copy(path);
		if (stale == 1) {
			glide_log("incoming", "removed %s, a partial copy left by a destination that died", path);
			fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
		} else {
			errno = EEXIST;
		}
	}
	if (fd < 0) {
		rc = -errno;
		errf(err, errlen, "cannot create %s: %s%s", path, strerror(-rc),
		     stale == -EBUSY ? " (an incoming migration is writing a copy there)"
		     : rc == -EEXIST ? " (a copy never overwrites a file)" : "");
		return rc;
	}
	if (ftruncate(fd, (off_t)bytes) < 0) {
		rc = -errno;
		errf(err, errlen, "cannot size %s to %llu bytes: %s", path, (unsigned long long)bytes, strerror(-rc));
		goto fail;
	}
	if (fcntl(fd, F_OFD_SETLK, &fl) < 0) {
		rc = -errno;
		errf(err, errlen, "cannot lock %s: %s", path, strerror(-rc));
		goto fail;
	}
	char owner[32];
	int n = snprintf(owner, sizeof(owner), "pid %d", (int)getpid());
	if (fsetxattr(fd, PARTIAL_MARK, owner, (size_t)n, 0) < 0)
		glide_log("incoming", "cannot mark %s as a partial copy (%s): should this destination die, the file "
			  "stays until removed by hand", path, strerror(errno));
	return fd;
fail:
	close(fd);
	unlink(path);
	return rc;
}

int disk_copy_commit(const char *path, int fd, char *err, size_t errlen)
{
	int rc = 0;
	if (fremovexattr(fd, PARTIAL_MARK) < 0 && errno != ENODATA && errno != ENOTSUP) {
		rc = -errno;
		errf(err, errlen, "%s: cannot remove its partial-copy mark: %s", path, strerror(errno));
	}
	close(fd); /* drops our lock: the device takes its own */
	return rc;
}

void disk_copy_sweep(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	char path[4096];

	if (!d)
		return;
	while ((e = readdir(d))) {
		if ((e->d_type != DT_REG && e->d_type != DT_UNKNOWN) ||
		    snprintf(path, sizeof(path), "%s/%s", dir, e->d_name) >= (int)sizeof(path))
			continue;
		if (remove_stale_copy(path) == 1)
			glide_log("incoming", "removed %s, a partial copy left by a destination that died", path);
	}
	closedir(d);
}

static void disk_load_cleanup(struct live_dest *ld)
{
	free(ld->priv);
	ld->priv = NULL;
}

static bool disk_needed(uint32_t disk_copy)
{
	return disk_copy != 0;
}

static const struct live_section_ops disk_live = {
	.needed = disk_needed,
	.setup = disk_setup,
	.pending = disk_pending,
	.iterate = disk_send_pass,
	.harvest = disk_harvest,
	.complete = disk_send_pass,
	.cleanup = disk_cleanup,
	.load_setup = disk_load_setup,
	.load = disk_load,
	.load_cleanup = disk_load_cleanup,
};

static const struct state_section_ops disk_section = {
	.name = "disk",
	.version = 1,
	.order = 1,
	.live = &disk_live,
};

__attribute__((constructor)) static void disk_register(void)
{
	state_register(&disk_section);
}
