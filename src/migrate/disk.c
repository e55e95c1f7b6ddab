/* The "disk" live section: a disk copied along with the VM (shared-nothing
 * migration, `glide migrate --disk-to PATH`), as QEMU's blockdev-mirror in
 * write-blocking mode and vSphere's mirror driver do it.
 *
 * Source: setup sets a write-blocking mirror on the device
 * (virtio_blk_mirror with a `changed` hook: every write, discard or write
 * zeroes that completes calls disk_changed with its range, before the
 * guest sees the completion), then marks every allocated extent of the file
 * for the bulk copy (holes are skipped: SEEK_DATA). The bulk copy sends the
 * marked blocks, 256 at a time (a chunk; chunk c travels on stream
 * c % count, so a block's copies arrive in order), all-zero blocks as zero
 * runs. A guest write then either
 *   - lands in a chunk the bulk copy has not read yet: its blocks are
 *     marked, and the copy reads them later, or
 *   - lands where the copy has been: its blocks are read back from the file
 *     and sent at once as a MIRROR frame on the chunk's stream, and the
 *     guest's completion waits for the destination's MIRROR_ACK (it has
 *     written them).
 * Both happen under the stream's lock, which the copy also holds from
 * reading a chunk to sending it, and every other use of the stream takes:
 * so a chunk and a mirrored write of the same blocks never cross, and what
 * is read back last is what arrives last. Once the bulk copy is over the
 * destination's file never lags the source's by more than the writes in
 * flight: nothing is pending, the VM's pause completes (and so mirrors)
 * every request in flight, and the stun carries no disk data. A guest that
 * writes faster than the link (or the bandwidth cap) is throttled by the
 * mirror itself. A mirror that fails (the destination gone, the link cut)
 * fails the migration, never the guest's write: the source's file stays
 * authoritative, and is only read.
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
#include <jansson.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#define BLOCK 4096ULL
#define FRAME_BLOCKS_MAX 256ULL /* a frame covers at most 1 MiB of the disk */
/* The copy's unit (a frame): 256 KiB. A mirrored write waits for what is
 * ahead of it on its stream, a chunk at least (1 MiB chunks: 3 ms here). */
#define CHUNK_BLOCKS 64ULL
#define CHUNK_WORDS (CHUNK_BLOCKS / 64)
/* Under a bandwidth cap mirrored writes go ahead of the bulk copy (which
 * waits for the time they took) on a clock of their own, which may run
 * this far ahead of the cap: a guest write does not wait behind a 1 MiB
 * chunk, and a guest that writes faster than the cap waits for it. */
#define MIRROR_AHEAD_NS 50000000ULL
#define RUN_DATA 0
#define RUN_ZERO 1

struct disk_run {
	uint64_t first;
	uint32_t blocks;
	uint32_t kind;
};

struct copied_disk {
	int index, fd;
	uint64_t bytes, blocks, words, chunks;
	uint64_t *pass;    /* blocks the copy still has to send; chunk c's words under stream c % count's lock */
	/* the copy has been through stream k's chunks below cursor[k] (under its lock) */
	uint64_t cursor[WIRE_MAX_STREAMS];
	struct virtio_blk_mirror mirror; /* on the device from setup to cleanup */
	bool mirroring;
	struct live_source *ls;
	uint8_t *frame;    /* the mirror's frame, built and sent on the device's completion path */
	uint8_t *scratch;  /* ... and what it reads back */
	char error[256];   /* the mirror's first failure (mirror.error says there is one) */
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

static void mark_blocks(uint64_t *map, uint64_t first, uint64_t end)
{
	for (uint64_t b = first; b < end; b++)
		__atomic_or_fetch(&map[b / 64], 1ULL << (b % 64), __ATOMIC_RELAXED);
}

/* Marks the extents of fd that hold data (all of it where SEEK_DATA is not supported). */
static void mark_allocated(struct copied_disk *d)
{
	uint64_t data, hole;
	for (uint64_t pos = 0; file_data_extent(d->fd, pos, d->bytes, &data, &hole); pos = hole)
		mark_blocks(d->pass, data / BLOCK, (hole + BLOCK - 1) / BLOCK);
}

/* Two chunks to read a chunk into and build its frame, aligned for a disk opened O_DIRECT. */
static uint8_t *scratch_alloc(void)
{
	void *p = NULL;
	return posix_memalign(&p, BLOCK, 2 * CHUNK_BLOCKS * BLOCK) ? NULL : p;
}

/* Builds the frame of chunk c's blocks marked in words (the chunk's
 * CHUNK_WORDS words), reading them from the disk into scratch (2 chunks).
 * Returns the payload's length, 0 when nothing is marked, or -errno with
 * err set. */
static long build_frame(struct copied_disk *d, uint64_t c, const uint64_t *words, uint8_t *scratch, uint8_t *payload,
			uint64_t *blocks, uint64_t *zero_blocks, char *err, size_t errlen)
{
	uint64_t first = c * CHUNK_BLOCKS, n = MIN(CHUNK_BLOCKS, d->blocks - first);
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
			errf(err, errlen, "disk %d: reading it at %llu failed: %s", d->index, (unsigned long long)off,
			     strerror(-rc));
			return rc;
		}
		for (uint64_t k = b; k < e; k++) {
			const uint8_t *src = scratch + (k - b) * BLOCK;
			uint64_t bl = block_len(d, first + k);
			uint32_t kind = is_zero(src, bl) ? RUN_ZERO : RUN_DATA;
			(*blocks)++;
			*zero_blocks += kind == RUN_ZERO;
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
	return (long)(8 + nruns * sizeof(runs[0]) + data_bytes);
}

/* Sends blocks [first, end) of chunk c now, as a MIRROR frame on stream k
 * (its lock held), and waits for the destination's MIRROR_ACK. */
static int mirror_send(struct copied_disk *d, int k, uint64_t c, uint64_t first, uint64_t end)
{
	struct live_link *l = d->ls->link;
	struct wire_stream *ws = &l->streams[k];
	uint64_t words[CHUNK_WORDS] = { 0 }, blocks = 0, zero_blocks = 0;
	uint8_t *payload = d->frame + WIRE_FRAME_HEADER_BYTES;
	struct wire_frame f;
	int rc;

	for (uint64_t b = first; b < end; b++)
		words[(b - c * CHUNK_BLOCKS) / 64] |= 1ULL << ((b - c * CHUNK_BLOCKS) % 64);
	long len = build_frame(d, c, words, d->scratch, payload + LIVE_FRAME_ID_BYTES, &blocks, &zero_blocks, d->error,
			       sizeof(d->error));
	if (len <= 0)
		return (int)len;
	memcpy(payload, &d->ls->id, LIVE_FRAME_ID_BYTES);
	len += LIVE_FRAME_ID_BYTES;
	rc = wire_send_buf(ws, d->frame, FRAME_MIRROR, (uint32_t)len, d->error, sizeof(d->error));
	if (!rc)
		rc = wire_recv(ws, &f, d->error, sizeof(d->error));
	if (!rc && f.type == FRAME_ABORT) { /* the destination's reason, not to be lost */
		json_t *j = json_loadb((const char *)f.payload, f.len, 0, NULL);
		json_t *e = j ? json_object_get(j, "error") : NULL;
		errf(d->error, sizeof(d->error), "destination: %s", json_is_string(e) ? json_string_value(e) : "aborted");
		json_decref(j);
		rc = -ECONNABORTED;
	} else if (!rc && f.type != FRAME_MIRROR_ACK) {
		errf(d->error, sizeof(d->error), "the destination answered %s to a mirrored write on stream %d",
		     wire_frame_name(f.type), k);
		rc = -EPROTO;
	}
	if (!rc) {
		__atomic_add_fetch(l->wire_bytes, (uint64_t)len + WIRE_FRAME_HEADER_BYTES, __ATOMIC_RELAXED);
		__atomic_add_fetch(&l->mirrored_blocks, blocks, __ATOMIC_RELAXED);
	}
	return rc;
}

/* The device's hook: [off, off + len) of the disk changed (or may have),
 * and the guest's completion waits until the copy has it too. Completions
 * of one disk run one at a time (its run lock). */
static void disk_changed(struct virtio_blk_mirror *m, uint64_t off, uint64_t len)
{
	struct copied_disk *d = (struct copied_disk *)((char *)m - offsetof(struct copied_disk, mirror));
	struct live_link *l = d->ls->link;

	if (!len || m->error)
		return;
	if (*l->cancel || *l->failed) { /* the copy is over: it will not be used */
		errf(d->error, sizeof(d->error), "the migration is ending");
		__atomic_store_n(&m->error, -ECANCELED, __ATOMIC_RELEASE);
		return;
	}
	bool sent = false;
	uint64_t t0 = now_ns(), queued_max = 0;
	uint64_t first = off / BLOCK, end = MIN((off + len + BLOCK - 1) / BLOCK, d->blocks);
	for (uint64_t c = first / CHUNK_BLOCKS; c * CHUNK_BLOCKS < end; c++) {
		int k = (int)(c % (uint64_t)l->count);
		uint64_t b0 = MAX(first, c * CHUNK_BLOCKS), b1 = MIN(end, (c + 1) * CHUNK_BLOCKS);
		int rc = 0;
		uint64_t cursor = __atomic_load_n(&d->cursor[k], __ATOMIC_ACQUIRE);
		if (c >= cursor) { /* the copy has not read this chunk yet: it takes the blocks then */
			mark_blocks(d->pass, b0, b1);
			continue;
		}
		/* the cap's time first, without the lock; while the copy still goes
		 * through this stream it keeps half of the cap */
		rate_limit_ahead(l->rl, (b1 - b0) * (BLOCK + sizeof(struct disk_run)) + 16, MIRROR_AHEAD_NS,
				 cursor < d->chunks ? 2 : 1);
		fair_lock(&l->locks[k]);
		queued_max = MAX(queued_max, now_ns() - t0);
		rc = mirror_send(d, k, c, b0, b1);
		fair_unlock(&l->locks[k]);
		sent = true;
		if (rc) {
			__atomic_store_n(&m->error, rc, __ATOMIC_RELEASE); /* after d->error's text */
			char why[300];
			snprintf(why, sizeof(why), "disk %d: mirroring a guest write failed: %s", d->index, d->error);
			glide_log("migrate", "%s", why);
			l->fail(l, "disk", why); /* now: the copy is no good, nothing else is worth sending */
			return;
		}
	}
	if (sent) {
		uint64_t waited = now_ns() - t0;
		__atomic_add_fetch(&l->mirrored_writes, 1, __ATOMIC_RELAXED);
		__atomic_add_fetch(&l->mirror_wait_ns, waited, __ATOMIC_RELAXED);
		atomic_max_u64(&l->mirror_wait_max_ns, waited);
		atomic_max_u64(&l->mirror_queue_max_ns, queued_max);
	}
}

static void disk_cleanup(struct live_source *ls)
{
	struct disk_source *s = ls->priv;
	if (!s)
		return;
	for (int i = 0; i < s->n; i++) {
		if (s->d[i].mirroring)
			virtio_blk_mirror(ls->vm, s->d[i].index, NULL);
		free(s->d[i].pass);
		free(s->d[i].frame);
		free(s->d[i].scratch);
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
	if (!ls->tracing || !ls->link) /* a snapshot: disks stay where they are */
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
		d->ls = ls;
		d->blocks = (d->bytes + BLOCK - 1) / BLOCK;
		d->chunks = (d->blocks + CHUNK_BLOCKS - 1) / CHUNK_BLOCKS;
		d->words = d->chunks * CHUNK_WORDS; /* whole chunks: no word is shared by two */
		d->pass = calloc(d->words, sizeof(uint64_t));
		d->frame = malloc(WIRE_FRAME_BUF_BYTES(LIVE_FRAME_ID_BYTES + 8 + CHUNK_BLOCKS * (sizeof(struct disk_run) + BLOCK)));
		d->scratch = scratch_alloc();
		s->n++;
		if (!d->pass || !d->frame || !d->scratch) {
			errf(err, errlen, "out of memory for disk %d's copy", i);
			return -ENOMEM;
		}
		/* the mirror first, then the extents: a write before the mark is in the extents */
		d->mirror.changed = disk_changed;
		int rc = virtio_blk_mirror(ls->vm, i, &d->mirror);
		if (rc && rc != -EROFS) { /* a read-only disk gets no writes: the copy alone */
			errf(err, errlen, "disk %d: cannot mirror its writes: %s", i, strerror(-rc));
			return rc;
		}
		d->mirroring = !rc;
		for (int k = 0; k < ls->link->count; k++) /* guest writes wait for frames on these streams */
			wire_short_queue(&ls->link->streams[k], true);
		mark_allocated(d);
		glide_log("migrate", "disk %d (%s, %llu MiB): copying it to the destination, guest writes mirrored", i,
			  path, (unsigned long long)(d->bytes >> 20));
	}
	return 0;
}

static uint64_t disk_pending(struct live_source *ls)
{
	struct disk_source *s = ls->priv;
	uint64_t n = 0;
	for (int i = 0; s && i < s->n; i++)
		for (uint64_t w = 0; w < s->d[i].words; w++)
			n += (uint64_t)__builtin_popcountll(__atomic_load_n(&s->d[i].pass[w], __ATOMIC_RELAXED));
	return n * BLOCK;
}

/* End of a pass: a mirror that failed fails the migration (the copy misses a write). */
static int disk_harvest(struct live_source *ls, char *err, size_t errlen)
{
	struct disk_source *s = ls->priv;
	for (int i = 0; s && i < s->n; i++) {
		struct copied_disk *d = &s->d[i];
		int e = __atomic_load_n(&d->mirror.error, __ATOMIC_ACQUIRE); /* its text was written before */
		if (e) {
			errf(err, errlen, "disk %d: mirroring a guest write failed: %s", d->index, d->error);
			return e;
		}
	}
	return 0;
}

/* This channel's chunks of the pass, each read and sent under the stream's
 * lock; the cursor says how far the copy has been. */
static int disk_send_pass(struct live_source *ls, struct channel *ch)
{
	struct disk_source *s = ls->priv;
	int rc = 0;
	if (!s || !s->n)
		return 0;
	uint8_t *scratch = scratch_alloc();
	if (!scratch) {
		snprintf(ch->err, sizeof(ch->err), "out of memory for a disk chunk");
		return -ENOMEM;
	}
	uint64_t k = (uint64_t)ch->index, step = (uint64_t)ch->count;
	for (int i = 0; i < s->n && !rc; i++) {
		struct copied_disk *d = &s->d[i];
		uint64_t any = 0;
		channel_lock(ch);
		for (uint64_t c = k; c < d->chunks; c += step)
			for (uint64_t w = c * CHUNK_WORDS; w < (c + 1) * CHUNK_WORDS; w++)
				any |= __atomic_load_n(&d->pass[w], __ATOMIC_RELAXED);
		/* something to send: the copy goes through this stream's chunks again;
		 * nothing: every chunk is as good as copied, writes are mirrored */
		__atomic_store_n(&d->cursor[k], any ? 0 : d->chunks, __ATOMIC_RELEASE);
		channel_unlock(ch);
		for (uint64_t c = k; any && c < d->chunks && !rc && !channel_stopped(ch); c += step) {
			uint64_t *words = &d->pass[c * CHUNK_WORDS], mask[CHUNK_WORDS], marked = 0;
			long len = 0;
			rate_limit_clear(ch->rl); /* the cap's time for what went before, without the lock */
			channel_lock(ch);
			/* the marks are taken before the blocks are read: a write marked
			 * after this is read again in the next pass, or mirrored */
			for (uint64_t w = 0; w < CHUNK_WORDS; w++)
				marked |= mask[w] = __atomic_exchange_n(&words[w], 0, __ATOMIC_ACQ_REL);
			if (marked)
				len = build_frame(d, c, mask, scratch, channel_payload(ch), &ch->disk_blocks,
						  &ch->disk_zero_blocks, ch->err, sizeof(ch->err));
			if (len > 0) {
				rc = channel_send_locked(ch, (size_t)len);
				if (!rc)
					channel_progress(ch, MIN(CHUNK_BLOCKS, d->blocks - c * CHUNK_BLOCKS) * BLOCK);
			} else if (len < 0) {
				rc = (int)len;
			}
			/* from here a write in this chunk is mirrored, after the chunk on the stream */
			__atomic_store_n(&d->cursor[k], c + 1, __ATOMIC_RELEASE);
			channel_unlock(ch);
			if (len > 0)
				rate_limit_charge(ch->rl, (uint64_t)len + LIVE_FRAME_ID_BYTES);
		}
		if (any && !rc)
			__atomic_store_n(&d->cursor[k], d->chunks, __ATOMIC_RELEASE);
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
	if (nruns == 0 || nruns > FRAME_BLOCKS_MAX || (uint64_t)nruns * sizeof(struct disk_run) > len - 8) {
		errf(err, errlen, "disk frame has a bad run count %u", nruns);
		return -EBADMSG;
	}
	uint64_t blocks = (bytes[idx] + BLOCK - 1) / BLOCK, need = 0;
	struct disk_run runs[FRAME_BLOCKS_MAX];
	memcpy(runs, data + 8, nruns * sizeof(runs[0]));
	for (uint32_t i = 0; i < nruns; i++) {
		struct disk_run *r = &runs[i];
		if (!r->blocks || r->blocks > FRAME_BLOCKS_MAX || r->first >= blocks || r->blocks > blocks - r->first ||
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
	.version = 2, /* 2: a guest write waits for its MIRROR frame's answer (1: passes of what changed) */
	.order = 1,
	.live = &disk_live,
};

__attribute__((constructor)) static void disk_register(void)
{
	state_register(&disk_section);
}
