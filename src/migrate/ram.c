/* RAM as a live section (ram.h, live.h): page tracing, zero and untouched
 * page detection, page-run encoding on the source and decoding on the
 * destination.
 *
 * Page tracing for pre-copy.
 * With KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 + INITIALLY_SET (enabled when the VM
 * is created), turning dirty logging on is cheap and stalls no vCPU: every
 * page starts dirty and write-protection is re-armed chunk by chunk with
 * KVM_CLEAR_DIRTY_LOG just before that chunk's pages are read and sent. A
 * write that lands after the clear sets the bit again for the next phase.
 * Without manual protect, KVM_GET_DIRTY_LOG clears and re-protects itself. */
#include "migrate/ram.h"
#include "migrate/live.h"
#include "state/state.h"
#include "common/util.h"
#include <errno.h>
#include <lz4.h>
#include <stdio.h>
#include <sys/mman.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

bool page_is_zero(const uint8_t *page)
{
	const uint64_t *q = (const uint64_t *)page;
	for (size_t i = 0; i < GUEST_PAGE_SIZE / 8; i += 8)
		if (q[i] | q[i + 1] | q[i + 2] | q[i + 3] | q[i + 4] | q[i + 5] | q[i + 6] | q[i + 7])
			return false;
	return true;
}

int dirty_start(struct dirty_tracker *t, struct vm *vm, bool trace)
{
	size_t words;
	int rc;

	memset(t, 0, sizeof(*t));
	t->vm = vm;
	t->tracing = trace;
	t->npages = vm->mem.size / GUEST_PAGE_SIZE;
	words = (t->npages + 63) / 64;
	t->bitmap = calloc(words, sizeof(uint64_t));
	t->slot_bits = trace ? calloc(words, sizeof(uint64_t)) : NULL;
	if (!t->bitmap || (trace && !t->slot_bits))
		return -ENOMEM;
	t->skip_nonresident = guest_memory_nonresident_is_zero();
	/* Phase -1 (or a snapshot) sends everything. */
	memset(t->bitmap, 0xff, words * sizeof(uint64_t));
	if (t->npages % 64)
		t->bitmap[words - 1] = (1ULL << (t->npages % 64)) - 1;
	if (!trace)
		return 0;
	t->manual_protect = ioctl(vm->vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2) > 0;
	if (vm->user_dirty_bitmap) {
		pthread_mutex_lock(&vm->user_dirty_lock);
		memset(vm->user_dirty_bitmap, 0, words * sizeof(uint64_t));
		pthread_mutex_unlock(&vm->user_dirty_lock);
	}
	uint64_t t0 = now_ns();
	rc = vm_set_dirty_logging(vm, true);
	if (rc)
		return rc;
	glide_log("migrate", "page tracing on in %.3f ms (%s)", (now_ns() - t0) / 1e6,
		  t->manual_protect ? "manual protect, initially set" : "write-protect all");
	if (!t->manual_protect) /* reset the log so phase 0 sees only new writes */
		return dirty_harvest(t, &(uint64_t){ 0 });
	return 0;
}

int dirty_harvest(struct dirty_tracker *t, uint64_t *count)
{
	struct vm *vm = t->vm;

	for (int i = 0; i < vm->mem.nregions; i++) {
		struct guest_ram_region *r = &vm->mem.regions[i];
		uint64_t first = r->ram_offset / GUEST_PAGE_SIZE, n = r->size / GUEST_PAGE_SIZE;
		struct kvm_dirty_log log = { .slot = r->slot, .dirty_bitmap = t->slot_bits };

		memset(t->slot_bits, 0, (n + 63) / 64 * sizeof(uint64_t));
		if (ioctl(vm->vm_fd, KVM_GET_DIRTY_LOG, &log) < 0)
			return -errno;
		/* region starts are 64-page aligned (0 and 3 GiB) */
		for (uint64_t w = 0; w < (n + 63) / 64; w++)
			t->bitmap[first / 64 + w] |= t->slot_bits[w];
	}
	if (vm->user_dirty_bitmap) {
		pthread_mutex_lock(&vm->user_dirty_lock);
		for (uint64_t w = 0; w < (t->npages + 63) / 64; w++) {
			t->bitmap[w] |= vm->user_dirty_bitmap[w];
			vm->user_dirty_bitmap[w] = 0;
		}
		pthread_mutex_unlock(&vm->user_dirty_lock);
	}
	*count = dirty_count(t);
	return 0;
}

uint64_t dirty_count(const struct dirty_tracker *t)
{
	uint64_t c = 0;
	for (uint64_t w = 0; w < (t->npages + 63) / 64; w++)
		c += (uint64_t)__builtin_popcountll(t->bitmap[w]);
	return c;
}

int dirty_clear_chunk(struct dirty_tracker *t, uint64_t chunk)
{
	struct vm *vm = t->vm;
	uint64_t first = chunk * PAGES_PER_CHUNK;

	if (!t->manual_protect)
		return 0;
	for (int i = 0; i < vm->mem.nregions; i++) {
		struct guest_ram_region *r = &vm->mem.regions[i];
		uint64_t rfirst = r->ram_offset / GUEST_PAGE_SIZE, rn = r->size / GUEST_PAGE_SIZE;
		if (first < rfirst || first >= rfirst + rn)
			continue;
		uint64_t n = MIN(PAGES_PER_CHUNK, rfirst + rn - first);
		struct kvm_clear_dirty_log c = {
			.slot = r->slot,
			.num_pages = (uint32_t)n,
			.first_page = first - rfirst,
			.dirty_bitmap = &t->bitmap[first / 64],
		};
		if (ioctl(vm->vm_fd, KVM_CLEAR_DIRTY_LOG, &c) < 0)
			return -errno;
		return 0;
	}
	return -EINVAL;
}

void dirty_stop(struct dirty_tracker *t)
{
	if (t->vm && t->tracing)
		vm_set_dirty_logging(t->vm, false);
	free(t->bitmap);
	free(t->slot_bits);
	t->bitmap = t->slot_bits = NULL;
	t->vm = NULL;
}

/* ---- source: send the pages of the current pass (one call per channel) ---- */

struct ram_source {
	struct dirty_tracker dirty;
};

struct page_batch {
	struct page_run runs[PAGES_FRAME_MAX_RUNS];
	uint32_t nruns;
	uint32_t data_bytes;
};

static int batch_flush(struct channel *ch, struct page_batch *b)
{
	uint8_t *payload = channel_payload(ch);
	uint32_t pass = (uint32_t)ch->pass;
	size_t len;

	if (!b->nruns)
		return 0;
	memcpy(payload, &b->nruns, 4);
	memcpy(payload + 4, &pass, 4);
	len = PAGES_HEADER_BYTES + b->data_bytes;
	memcpy(payload + len, b->runs, b->nruns * sizeof(struct page_run));
	len += b->nruns * sizeof(struct page_run);
	b->nruns = b->data_bytes = 0;
	return channel_send(ch, len);
}

/* Appends one page: zero pages as a marker, others LZ4-compressed when that
 * saves space (with compress) or raw. Contiguous pages of one kind share a run. */
static int batch_add(struct channel *ch, struct page_batch *b, const uint8_t *src, uint64_t pfn, bool zero,
		     bool compress)
{
	uint32_t kind = PAGE_RUN_ZERO;
	struct page_run *last;
	int rc;

	if ((b->nruns == PAGES_FRAME_MAX_RUNS ||
	     (!zero && b->data_bytes + 4 + GUEST_PAGE_SIZE > PAGES_FRAME_MAX_DATA_BYTES)) &&
	    (rc = batch_flush(ch, b)))
		return rc;
	if (!zero) {
		uint8_t *dst = channel_payload(ch) + PAGES_HEADER_BYTES + b->data_bytes;
		int clen = 0;
		if (compress)
			clen = LZ4_compress_default((const char *)src, (char *)dst + 4, (int)GUEST_PAGE_SIZE,
						    (int)GUEST_PAGE_SIZE - 64);
		if (clen > 0) {
			uint32_t c = (uint32_t)clen;
			memcpy(dst, &c, 4);
			b->data_bytes += 4 + c;
			kind = PAGE_RUN_LZ4;
			ch->compressed_items++;
		} else {
			memcpy(dst, src, GUEST_PAGE_SIZE);
			b->data_bytes += GUEST_PAGE_SIZE;
			kind = PAGE_RUN_DATA;
		}
	} else {
		ch->zero_items++;
	}
	ch->items++;
	last = b->nruns ? &b->runs[b->nruns - 1] : NULL;
	if (last && last->kind == kind && last->first_pfn + last->npages == pfn)
		last->npages++;
	else
		b->runs[b->nruns++] = (struct page_run){ .first_pfn = pfn, .npages = 1, .kind = kind };
	return 0;
}

static int batch_add_zero_run(struct channel *ch, struct page_batch *b, uint64_t pfn, uint64_t n)
{
	struct page_run *last = b->nruns ? &b->runs[b->nruns - 1] : NULL;
	int rc;

	ch->items += n;
	ch->zero_items += n;
	if (last && last->kind == PAGE_RUN_ZERO && last->first_pfn + last->npages == pfn &&
	    last->npages + n <= UINT32_MAX) {
		last->npages += (uint32_t)n;
		return 0;
	}
	if (b->nruns == PAGES_FRAME_MAX_RUNS && (rc = batch_flush(ch, b)))
		return rc;
	b->runs[b->nruns++] = (struct page_run){ .first_pfn = pfn, .npages = (uint32_t)n, .kind = PAGE_RUN_ZERO };
	return 0;
}

static bool chunk_all_set(const uint64_t *words, uint64_t n)
{
	for (uint64_t i = 0; i < n / 64; i++)
		if (words[i] != ~0ULL)
			return false;
	return n % 64 == 0 || (words[n / 64] & ((1ULL << (n % 64)) - 1)) == (1ULL << (n % 64)) - 1;
}

static bool any_resident(const unsigned char *resident, uint64_t n)
{
	for (uint64_t i = 0; i < n; i++)
		if (resident[i] & 1)
			return true;
	return false;
}

/* The chunks of this channel (chunk % count == index: a chunk always
 * travels on the same stream, so two copies of a page never race on
 * different connections; or, in an adaptive pass -1, the next chunk nobody
 * took: each is sent once in that pass, and every pass ends with SYNC on
 * every stream before the next begins). A chunk's write protection is re-armed just
 * before its pages are read, except in the final pass (the VM is stunned). */
static int ram_send_pass(struct live_source *ls, struct channel *ch)
{
	struct ram_source *rs = ls->priv;
	struct dirty_tracker *t = &rs->dirty;
	struct vm *vm = ls->vm;
	uint64_t nchunks = (t->npages + PAGES_PER_CHUNK - 1) / PAGES_PER_CHUNK;
	struct page_batch *b = calloc(1, sizeof(*b));
	unsigned char resident[PAGES_PER_CHUNK];
	int rc = 0;

	if (!b) {
		snprintf(ch->err, sizeof(ch->err), "out of memory for a page batch");
		return -ENOMEM;
	}
	for (uint64_t c = channel_first_chunk(ch, nchunks); c < nchunks && !rc; c = channel_next_chunk(ch, c, nchunks)) {
		uint64_t *words = &t->bitmap[c * PAGES_PER_CHUNK / 64];
		uint64_t first = c * PAGES_PER_CHUNK, n = MIN(PAGES_PER_CHUNK, t->npages - first);
		uint64_t nwords = (n + 63) / 64, any = 0;

		if (channel_stopped(ch))
			break;
		for (uint64_t i = 0; i < nwords; i++)
			any |= words[i];
		if (!any)
			continue;
		if (!ch->final && (rc = dirty_clear_chunk(t, c))) {
			snprintf(ch->err, sizeof(ch->err), "KVM_CLEAR_DIRTY_LOG failed: %s", strerror(-rc));
			break;
		}
		bool have_resident = t->skip_nonresident &&
				     mincore(vm->mem.host + first * GUEST_PAGE_SIZE, n * GUEST_PAGE_SIZE, resident) == 0;
		if (have_resident && chunk_all_set(words, n) && !any_resident(resident, n)) {
			/* a whole chunk the guest never touched: one zero run (idle memory, pass -1) */
			rc = batch_add_zero_run(ch, b, first, n);
			memset(words, 0, nwords * sizeof(uint64_t));
			channel_progress(ch, n * GUEST_PAGE_SIZE);
			continue;
		}
		for (uint64_t i = 0; i < nwords && !rc; i++) {
			uint64_t bits = words[i];
			words[i] = 0;
			while (bits && !rc) {
				uint64_t bit = (uint64_t)__builtin_ctzll(bits);
				uint64_t pfn = first + i * 64 + bit;
				const uint8_t *src = vm->mem.host + pfn * GUEST_PAGE_SIZE;
				bits &= bits - 1;
				bool zero = (have_resident && !(resident[pfn - first] & 1)) || page_is_zero(src);
				rc = batch_add(ch, b, src, pfn, zero, ls->compress);
			}
		}
		channel_progress(ch, n * GUEST_PAGE_SIZE);
	}
	if (!rc && !channel_stopped(ch))
		rc = batch_flush(ch, b);
	free(b);
	return rc;
}

static int ram_setup(struct live_source *ls, char *err, size_t errlen)
{
	struct ram_source *rs = calloc(1, sizeof(*rs));
	if (!rs) {
		errf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	ls->priv = rs;
	/* a snapshot (no tracing): every page once, the VM is paused */
	int rc = dirty_start(&rs->dirty, ls->vm, ls->tracing);
	if (rc)
		errf(err, errlen, "cannot start page tracing: %s", strerror(-rc));
	return rc;
}

static uint64_t ram_pending(struct live_source *ls)
{
	struct ram_source *rs = ls->priv;
	return dirty_count(&rs->dirty) * GUEST_PAGE_SIZE;
}

static int ram_harvest(struct live_source *ls, char *err, size_t errlen)
{
	struct ram_source *rs = ls->priv;
	uint64_t n;
	int rc = dirty_harvest(&rs->dirty, &n);
	if (rc)
		errf(err, errlen, "reading the dirty log failed: %s", strerror(-rc));
	return rc;
}

static void ram_cleanup(struct live_source *ls)
{
	struct ram_source *rs = ls->priv;
	if (rs)
		dirty_stop(&rs->dirty);
	free(rs);
	ls->priv = NULL;
}

/* ---- destination: validate a whole frame, then write guest memory ---- */

int ram_apply_frame(struct vm *vm, uint64_t *touched, const uint8_t *payload, size_t len, char *err, size_t errlen)
{
	uint32_t nruns;
	uint64_t total = vm->mem.size / GUEST_PAGE_SIZE;
	const uint8_t *data, *runs, *data_end;
	struct page_run run;

	if (len < PAGES_HEADER_BYTES) {
		errf(err, errlen, "RAM frame too short");
		return -EBADMSG;
	}
	memcpy(&nruns, payload, 4);
	if (nruns == 0 || nruns > PAGES_FRAME_MAX_RUNS || (uint64_t)nruns * sizeof(run) > len - PAGES_HEADER_BYTES) {
		errf(err, errlen, "RAM frame has a bad run count %u", nruns);
		return -EBADMSG;
	}
	runs = payload + len - (size_t)nruns * sizeof(run);
	data_end = runs;
	data = payload + PAGES_HEADER_BYTES;
	for (uint32_t i = 0; i < nruns; i++) {
		memcpy(&run, runs + i * sizeof(run), sizeof(run));
		if (!run.npages || run.first_pfn >= total || run.npages > total - run.first_pfn ||
		    run.kind > PAGE_RUN_LZ4) {
			errf(err, errlen, "RAM frame has an invalid run (page %llu, %u pages, kind %u)",
			     (unsigned long long)run.first_pfn, run.npages, run.kind);
			return -EBADMSG;
		}
		for (uint32_t k = 0; k < run.npages && run.kind != PAGE_RUN_ZERO; k++) {
			uint32_t n = GUEST_PAGE_SIZE;
			if (run.kind == PAGE_RUN_LZ4) {
				if (data_end - data < 4)
					goto bad_length;
				memcpy(&n, data, 4);
				data += 4;
				if (n == 0 || n >= GUEST_PAGE_SIZE)
					goto bad_length;
			}
			if ((uint64_t)(data_end - data) < n)
				goto bad_length;
			data += n;
		}
	}
	if (data != data_end)
		goto bad_length;
	data = payload + PAGES_HEADER_BYTES;
	for (uint32_t i = 0; i < nruns; i++) {
		memcpy(&run, runs + i * sizeof(run), sizeof(run));
		for (uint64_t p = run.first_pfn; p < run.first_pfn + run.npages; p++) {
			uint8_t *dst = vm->mem.host + p * GUEST_PAGE_SIZE;
			if (run.kind == PAGE_RUN_DATA) {
				memcpy(dst, data, GUEST_PAGE_SIZE);
				data += GUEST_PAGE_SIZE;
			} else if (run.kind == PAGE_RUN_LZ4) {
				uint32_t n;
				memcpy(&n, data, 4);
				if (LZ4_decompress_safe((const char *)data + 4, (char *)dst, (int)n, (int)GUEST_PAGE_SIZE) !=
				    (int)GUEST_PAGE_SIZE) {
					errf(err, errlen, "RAM frame: page %llu does not decompress to 4 KiB",
					     (unsigned long long)p);
					return -EBADMSG;
				}
				data += 4 + n;
			} else if (touched[p / 64] & (1ULL << (p % 64))) {
				memset(dst, 0, GUEST_PAGE_SIZE);
				continue;
			} else {
				continue;
			}
			/* A word (64 pages) lies inside one 512-page chunk, and a chunk always
			 * travels on one stream: only its receiver writes the word. */
			touched[p / 64] |= 1ULL << (p % 64);
		}
	}
	return 0;
bad_length:
	errf(err, errlen, "RAM frame length %zu does not match its runs", len);
	return -EBADMSG;
}

static int ram_load_setup(struct live_dest *ld, char *err, size_t errlen)
{
	ld->priv = calloc((ld->vm->mem.size / GUEST_PAGE_SIZE + 63) / 64, sizeof(uint64_t));
	if (!ld->priv) {
		errf(err, errlen, "out of memory for the page map");
		return -ENOMEM;
	}
	return 0;
}

static int ram_load(struct live_dest *ld, const uint8_t *data, size_t len, char *err, size_t errlen)
{
	return ram_apply_frame(ld->vm, ld->priv, data, len, err, errlen);
}

static void ram_load_cleanup(struct live_dest *ld)
{
	free(ld->priv);
	ld->priv = NULL;
}

static const struct live_section_ops ram_live = {
	.setup = ram_setup,
	.pending = ram_pending,
	.iterate = ram_send_pass,
	.harvest = ram_harvest,
	.complete = ram_send_pass,
	.cleanup = ram_cleanup,
	.load_setup = ram_load_setup,
	.load = ram_load,
	.load_cleanup = ram_load_cleanup,
};

static const struct state_section_ops ram_section = {
	.name = "ram",
	.version = 1,
	.order = 0,
	.live = &ram_live,
};

__attribute__((constructor)) static void ram_register(void)
{
	state_register(&ram_section);
}
