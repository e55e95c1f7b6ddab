/* The source side of a live migration, in the order of seed 002:
 *
 *  1. connect: open N authenticated streams to the destination (N chosen by
 *     a short throughput probe when "auto"), send the VM configuration and
 *     CPUID, and wait for the destination to accept them (prepare).
 *  2. trace: turn on dirty logging (manual protect: no stall).
 *  3. pre-copy: phase -1 sends all memory, phases 0..n the pages dirtied
 *     during the previous phase. Every stream has its own helper thread that
 *     re-protects a 2 MiB chunk, reads its dirty pages and sends them (zero
 *     pages as markers); a chunk always travels on the same stream.
 *  4. converge: after each phase, predict the switchover time from the
 *     measured transmit rate and the dirty pages left; stop when it fits the
 *     switchover goal; fail cleanly at the timeout.
 *  5. SDPS: when a phase makes too little progress, throttle the vCPUs.
 *  6. switchover: stun, send the last dirty pages and the checkpoint, wait
 *     for RESTORED, send GO (the commit point), wait for RUNNING.
 *  7. anything going wrong before RESTORED: resume the source as it was.
 *     Its memory is only ever read. */
#include "migrate/migration.h"
#include "state/state.h"
#include "vmm/config.h"
#include "common/util.h"
#include <errno.h>
#include <lz4.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/sysinfo.h>
#include <sys/time.h>
#include <unistd.h>

#define PAGES_HEADER_BYTES 8
#define PROBE_WINDOW_NS 20000000ULL

/* Guards monitor.migration and every migration's reference count. A
 * migration is freed when its last holder lets go: the monitor (until the
 * next migration replaces it), its thread, and API calls reading it. */
static pthread_mutex_t migration_ptr_lock = PTHREAD_MUTEX_INITIALIZER;

static void migration_free(struct migration *mig)
{
	json_decref(mig->phases);
	pthread_mutex_destroy(&mig->lock);
	pthread_mutex_destroy(&mig->rl.lock);
	explicit_bzero(mig, sizeof(*mig)); /* the key */
	free(mig);
}

/* The monitor's latest migration with a reference taken, or NULL. */
static struct migration *migration_get(struct monitor *m)
{
	pthread_mutex_lock(&migration_ptr_lock);
	struct migration *mig = m->migration;
	if (mig)
		mig->refs++;
	pthread_mutex_unlock(&migration_ptr_lock);
	return mig;
}

static void migration_put(struct migration *mig)
{
	if (!mig)
		return;
	pthread_mutex_lock(&migration_ptr_lock);
	bool last = --mig->refs == 0;
	pthread_mutex_unlock(&migration_ptr_lock);
	if (last)
		migration_free(mig);
}

/* ---- bandwidth cap shared by all streams ---- */

static void rate_limit(struct rate_limiter *r, uint64_t bytes)
{
	uint64_t now, slot;
	if (!r->bytes_per_s)
		return;
	pthread_mutex_lock(&r->lock);
	now = now_ns();
	if (r->next_ns + 20000000ULL < now) /* idle: allow at most a 20 ms burst */
		r->next_ns = now - 20000000ULL;
	slot = r->next_ns;
	r->next_ns += bytes * 1000000000ULL / r->bytes_per_s;
	pthread_mutex_unlock(&r->lock);
	if (slot > now)
		sleep_ns(slot - now);
}

/* ---- progress ---- */

static void set_stage(struct migration *mig, const char *stage)
{
	pthread_mutex_lock(&mig->lock);
	mig->stage = stage;
	pthread_mutex_unlock(&mig->lock);
}

static void fail(struct migration *mig, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail(struct migration *mig, const char *fmt, ...)
{
	va_list ap;
	pthread_mutex_lock(&mig->lock);
	if (!mig->error[0]) {
		va_start(ap, fmt);
		vsnprintf(mig->error, sizeof(mig->error), fmt, ap);
		va_end(ap);
	}
	pthread_mutex_unlock(&mig->lock);
	mig->failed = true;
}

/* ---- page sending (one helper thread per stream) ---- */

struct page_batch {
	struct page_run runs[PAGES_FRAME_MAX_RUNS];
	uint32_t nruns;
	uint32_t data_bytes;
};

static int batch_flush(struct stream_worker *w, struct page_batch *b)
{
	struct migration *mig = w->mig;
	uint8_t *payload = wire_tx_payload(w->ws);
	uint32_t phase = (uint32_t)mig->phase;
	size_t len;
	int rc;

	if (!b->nruns)
		return 0;
	memcpy(payload, &b->nruns, 4);
	memcpy(payload + 4, &phase, 4);
	len = PAGES_HEADER_BYTES + b->data_bytes;
	memcpy(payload + len, b->runs, b->nruns * sizeof(struct page_run));
	len += b->nruns * sizeof(struct page_run);
	rate_limit(&mig->rl, len);
	rc = wire_send(w->ws, FRAME_PAGES, (uint32_t)len, w->err, sizeof(w->err));
	if (rc)
		return rc;
	w->bytes += len;
	__atomic_add_fetch(&mig->bytes_sent, len + WIRE_FRAME_HEADER_BYTES, __ATOMIC_RELAXED);
	b->nruns = b->data_bytes = 0;
	return 0;
}

/* Appends one page: zero pages as a marker, others LZ4-compressed when that
 * saves space (with --compress lz4) or raw. Contiguous pages of one kind
 * share a run. */
static int batch_add(struct stream_worker *w, struct page_batch *b, uint64_t pfn, bool zero)
{
	struct migration *mig = w->mig;
	const uint8_t *src = mig->vm->mem.host + pfn * GUEST_PAGE_SIZE;
	uint32_t kind = PAGE_RUN_ZERO;
	struct page_run *last;
	int rc;

	if ((b->nruns == PAGES_FRAME_MAX_RUNS ||
	     (!zero && b->data_bytes + 4 + GUEST_PAGE_SIZE > PAGES_FRAME_MAX_DATA_BYTES)) &&
	    (rc = batch_flush(w, b)))
		return rc;
	if (!zero) {
		uint8_t *dst = wire_tx_payload(w->ws) + PAGES_HEADER_BYTES + b->data_bytes;
		int clen = 0;
		if (mig->p.compress)
			clen = LZ4_compress_default((const char *)src, (char *)dst + 4, (int)GUEST_PAGE_SIZE,
						    (int)GUEST_PAGE_SIZE - 64);
		if (clen > 0) {
			uint32_t c = (uint32_t)clen;
			memcpy(dst, &c, 4);
			b->data_bytes += 4 + c;
			kind = PAGE_RUN_LZ4;
			w->compressed_pages++;
		} else {
			memcpy(dst, src, GUEST_PAGE_SIZE);
			b->data_bytes += GUEST_PAGE_SIZE;
			kind = PAGE_RUN_DATA;
		}
	} else {
		w->zero_pages++;
	}
	w->pages++;
	last = b->nruns ? &b->runs[b->nruns - 1] : NULL;
	if (last && last->kind == kind && last->first_pfn + last->npages == pfn)
		last->npages++;
	else
		b->runs[b->nruns++] = (struct page_run){ .first_pfn = pfn, .npages = 1, .kind = kind };
	return 0;
}

static bool chunk_all_set(const uint64_t *words, uint64_t n)
{
	for (uint64_t i = 0; i < n / 64; i++)
		if (words[i] != ~0ULL)
			return false;
	return n % 64 == 0 || (words[n / 64] & ((1ULL << (n % 64)) - 1)) == (1ULL << (n % 64)) - 1;
}

static bool memchr_resident(const unsigned char *resident, uint64_t n)
{
	for (uint64_t i = 0; i < n; i++)
		if (resident[i] & 1)
			return true;
	return false;
}

static int batch_add_zero_run(struct stream_worker *w, struct page_batch *b, uint64_t pfn, uint64_t n)
{
	struct page_run *last = b->nruns ? &b->runs[b->nruns - 1] : NULL;
	int rc;

	w->pages += n;
	w->zero_pages += n;
	if (last && last->kind == PAGE_RUN_ZERO && last->first_pfn + last->npages == pfn &&
	    last->npages + n <= UINT32_MAX) {
		last->npages += (uint32_t)n;
		return 0;
	}
	if (b->nruns == PAGES_FRAME_MAX_RUNS && (rc = batch_flush(w, b)))
		return rc;
	b->runs[b->nruns++] = (struct page_run){ .first_pfn = pfn, .npages = (uint32_t)n, .kind = PAGE_RUN_ZERO };
	return 0;
}

/* End of a pre-copy phase on one stream: wait until the destination has
 * put every page sent so far into guest memory, so that the measured rate is
 * end to end and no backlog is left to drain during the stun. */
static int stream_sync(struct stream_worker *w)
{
	struct wire_frame f;
	int rc = wire_send(w->ws, FRAME_SYNC, 0, w->err, sizeof(w->err));
	if (!rc)
		rc = wire_recv(w->ws, &f, w->err, sizeof(w->err));
	if (!rc && f.type != FRAME_SYNC_ACK) {
		snprintf(w->err, sizeof(w->err), "destination answered %s to SYNC on stream %d", wire_frame_name(f.type),
			 w->ws->index);
		rc = -EPROTO;
	}
	return rc;
}

static void *stream_worker_run(void *arg)
{
	struct stream_worker *w = arg;
	struct migration *mig = w->mig;
	struct dirty_tracker *t = &mig->dirty;
	uint64_t nchunks = (t->npages + PAGES_PER_CHUNK - 1) / PAGES_PER_CHUNK;
	struct page_batch *b = calloc(1, sizeof(*b));
	unsigned char resident[PAGES_PER_CHUNK];
	int idx = w->ws->index;

	if (!b) {
		w->rc = -ENOMEM;
		return NULL;
	}
	for (uint64_t c = (uint64_t)idx; c < nchunks && !w->rc; c += (uint64_t)mig->nstreams) {
		uint64_t *words = &t->bitmap[c * PAGES_PER_CHUNK / 64];
		uint64_t first = c * PAGES_PER_CHUNK, n = MIN(PAGES_PER_CHUNK, t->npages - first);
		uint64_t nwords = (n + 63) / 64, any = 0;

		if (mig->cancel || mig->failed)
			break;
		for (uint64_t i = 0; i < nwords; i++)
			any |= words[i];
		if (!any)
			continue;
		if (!w->final && (w->rc = dirty_clear_chunk(t, c))) {
			snprintf(w->err, sizeof(w->err), "KVM_CLEAR_DIRTY_LOG failed: %s", strerror(-w->rc));
			break;
		}
		bool have_resident = t->skip_nonresident &&
				     mincore(mig->vm->mem.host + first * GUEST_PAGE_SIZE, n * GUEST_PAGE_SIZE, resident) == 0;
		if (have_resident && chunk_all_set(words, n) && !memchr_resident(resident, n)) {
			/* a whole chunk the guest never touched: one zero run (idle memory, phase -1) */
			w->rc = batch_add_zero_run(w, b, first, n);
			memset(words, 0, nwords * sizeof(uint64_t));
			__atomic_add_fetch(&mig->phase_sent, n, __ATOMIC_RELAXED);
			continue;
		}
		for (uint64_t i = 0; i < nwords && !w->rc; i++) {
			uint64_t bits = words[i];
			words[i] = 0;
			while (bits && !w->rc) {
				uint64_t bit = (uint64_t)__builtin_ctzll(bits);
				uint64_t pfn = first + i * 64 + bit;
				bits &= bits - 1;
				bool zero = (have_resident && !(resident[pfn - first] & 1)) ||
					    page_is_zero(mig->vm->mem.host + pfn * GUEST_PAGE_SIZE);
				w->rc = batch_add(w, b, pfn, zero);
			}
		}
		__atomic_add_fetch(&mig->phase_sent, n, __ATOMIC_RELAXED);
	}
	if (!w->rc && !mig->cancel && !mig->failed)
		w->rc = batch_flush(w, b);
	if (!w->rc && w->final && !mig->cancel && !mig->failed)
		w->rc = wire_send(w->ws, FRAME_FINAL, 0, w->err, sizeof(w->err));
	else if (!w->rc && !mig->cancel && !mig->failed)
		w->rc = stream_sync(w);
	free(b);
	return NULL;
}

/* Sends every page set in the dirty bitmap, all streams in parallel. */
static int send_phase(struct migration *mig, bool final)
{
	uint64_t pages = 0, zero = 0;
	int started = 0;

	for (int i = 0; i < mig->nstreams; i++) {
		struct stream_worker *w = &mig->workers[i];
		memset(w, 0, sizeof(*w));
		w->mig = mig;
		w->ws = &mig->streams[i];
		w->final = final;
		if (pthread_create(&w->thread, NULL, stream_worker_run, w)) {
			fail(mig, "cannot start stream helper thread");
			break;
		}
		started++;
	}
	for (int i = 0; i < started; i++) {
		struct stream_worker *w = &mig->workers[i];
		pthread_join(w->thread, NULL);
		pages += w->pages;
		zero += w->zero_pages;
		if (w->rc && !mig->cancel)
			fail(mig, "%s", w->err[0] ? w->err : strerror(-w->rc));
		__atomic_add_fetch(&mig->compressed_pages, w->compressed_pages, __ATOMIC_RELAXED);
	}
	__atomic_add_fetch(&mig->pages_sent, pages, __ATOMIC_RELAXED);
	__atomic_add_fetch(&mig->zero_pages, zero, __ATOMIC_RELAXED);
	return mig->failed || mig->cancel ? -1 : 0;
}

/* ---- connecting ---- */

static int connect_streams(struct migration *mig, int count)
{
	struct wire_session_params sp = { .stream_count = (uint32_t)count, .encrypt = mig->p.encrypt };
	char err[512];

	memcpy(sp.key, mig->p.key, WIRE_KEY_BYTES);
	memcpy(sp.session, mig->session, WIRE_SESSION_BYTES);
	for (int i = 0; i < count; i++) {
		const char *addr = mig->p.addrs[i % mig->p.naddrs];
		int rc = wire_connect(&mig->streams[i], addr, i, &sp, mig->p.dscp, 5000, err, sizeof(err));
		if (rc) {
			fail(mig, "%s", err);
			explicit_bzero(&sp, sizeof(sp));
			return rc;
		}
		wire_set_stall_timeout(&mig->streams[i], mig->p.stall_timeout_ms);
		mig->nstreams = i + 1;
	}
	explicit_bzero(&sp, sizeof(sp));
	return 0;
}

struct probe_arg {
	struct migration *mig;
	struct wire_stream *ws;
	uint64_t deadline, bytes;
	int rc;
};

static void *probe_run(void *arg)
{
	struct probe_arg *a = arg;
	char err[256];
	memset(wire_tx_payload(a->ws), 0xa5, 1 << 20);
	while (now_ns() < a->deadline && !a->rc) {
		a->rc = wire_send(a->ws, FRAME_PROBE, 1 << 20, err, sizeof(err));
		a->bytes += 1 << 20;
	}
	return NULL;
}

static double probe(struct migration *mig, int n)
{
	struct probe_arg a[WIRE_MAX_STREAMS];
	pthread_t th[WIRE_MAX_STREAMS];
	uint64_t t0 = now_ns(), bytes = 0;
	for (int i = 0; i < n; i++) {
		a[i] = (struct probe_arg){ .mig = mig, .ws = &mig->streams[i], .deadline = t0 + PROBE_WINDOW_NS };
		pthread_create(&th[i], NULL, probe_run, &a[i]);
	}
	for (int i = 0; i < n; i++) {
		pthread_join(th[i], NULL);
		bytes += a[i].bytes;
		if (a[i].rc)
			return -1;
	}
	return (double)bytes / ((now_ns() - t0) / 1e9);
}

/* Memory the guest has touched (what pre-copy will really send). */
static uint64_t resident_bytes(struct vm *vm)
{
	static unsigned char vec[(1ULL << 30) / GUEST_PAGE_SIZE];
	struct sysinfo si;
	uint64_t total = 0;

	if (sysinfo(&si) || si.totalswap) /* swapped-out pages are not resident but not zero either */
		return vm->mem.size;
	for (uint64_t off = 0; off < vm->mem.size; off += sizeof(vec) * GUEST_PAGE_SIZE) {
		uint64_t len = MIN((uint64_t)sizeof(vec) * GUEST_PAGE_SIZE, vm->mem.size - off);
		if (mincore(vm->mem.host + off, len, vec))
			return vm->mem.size;
		for (uint64_t i = 0; i < len / GUEST_PAGE_SIZE; i++)
			total += vec[i] & 1;
	}
	return total * GUEST_PAGE_SIZE;
}

/* "auto": how many streams are worth opening. Capped migrations (the cap,
 * not the link, limits) and VMs with little touched memory (a probe would
 * cost more than it saves) use one; otherwise up to one per two CPUs: each
 * stream has a busy helper thread, and the guest's vCPUs need CPUs too. */
static int auto_stream_candidates(struct migration *mig)
{
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	if (mig->p.max_bandwidth || resident_bytes(mig->vm) < STREAMS_AUTO_PROBE_MIN_BYTES)
		return 1;
	/* a helper thread per stream, and half of the CPUs left to the guest */
	return (int)MIN((long)STREAMS_AUTO_MAX, MAX(cpus / 2, 1L));
}

/* "auto" with several candidates: send probe frames over 1, 2, 4 streams
 * for 20 ms each and keep the smallest count within 15% of the best rate. */
static int choose_streams(struct migration *mig, int max)
{
	double best = 0, rate[STREAMS_AUTO_MAX + 1] = { 0 };
	int chosen = 1;

	for (int n = 1; n <= max; n *= 2) {
		rate[n] = probe(mig, n);
		if (rate[n] < 0)
			return -1;
		if (rate[n] > best)
			best = rate[n];
	}
	for (int n = 1; n <= max; n *= 2)
		if (rate[n] >= best * 0.85) {
			chosen = n;
			break;
		}
	glide_log("migrate", "streams auto: 1=%.0f MB/s 2=%.0f MB/s 4=%.0f MB/s -> %d", rate[1] / 1e6, rate[2] / 1e6,
		  rate[4] / 1e6, chosen);
	return chosen;
}

static int send_config(struct migration *mig)
{
	struct wire_stream *s0 = &mig->streams[0];
	json_t *cpuid = json_array(), *msg;
	struct kvm_cpuid2 *c = mig->vm->vcpus[0].cpuid;
	struct wire_frame f;
	char err[512], *text;
	int rc;

	for (uint32_t i = 0; i < c->nent; i++) {
		struct kvm_cpuid_entry2 *e = &c->entries[i];
		json_array_append_new(cpuid, json_pack("[I,I,I,I,I,I]", (json_int_t)e->function, (json_int_t)e->index,
						       (json_int_t)e->eax, (json_int_t)e->ebx, (json_int_t)e->ecx,
						       (json_int_t)e->edx));
	}
	msg = json_pack("{s:o, s:o, s:i, s:i}", "config", vm_config_to_json(&mig->vm->cfg), "cpuid", cpuid, "protocol",
			WIRE_PROTOCOL_VERSION, "state_format", STATE_FORMAT_VERSION);
	text = json_dumps(msg, JSON_COMPACT);
	json_decref(msg);
	rc = wire_send_copy(s0, FRAME_CONFIG, text, (uint32_t)strlen(text), err, sizeof(err));
	free(text);
	if (!rc)
		rc = wire_recv(s0, &f, err, sizeof(err));
	if (rc) {
		fail(mig, "destination: %s", err);
		return rc;
	}
	if (f.type != FRAME_CONFIG_OK) {
		json_t *j = json_loadb((char *)f.payload, f.len, 0, NULL);
		json_t *e = j ? json_object_get(j, "error") : NULL;
		fail(mig, "destination refused the VM: %s", json_is_string(e) ? json_string_value(e) : "unknown reason");
		json_decref(j);
		return -EPROTO;
	}
	return 0;
}

/* ---- the migration ---- */

static json_t *phase_json(int number, uint64_t pages, uint64_t zero, uint64_t bytes, double ms, double dirty_rate,
			  double transmit_rate)
{
	return json_pack("{s:i, s:I, s:I, s:I, s:f, s:f, s:f}", "number", number, "pages", (json_int_t)pages,
			 "zero_pages", (json_int_t)zero, "bytes", (json_int_t)bytes, "duration_ms", ms, "dirty_rate",
			 dirty_rate, "transmit_rate", transmit_rate);
}

static int precopy(struct migration *mig)
{
	struct dirty_tracker *t = &mig->dirty;
	uint64_t to_send = t->npages, prev_sent = UINT64_MAX;
	int rc;

	for (mig->phase = -1;; mig->phase++) {
		uint64_t t0 = now_ns(), b0 = mig->bytes_sent, p0 = mig->pages_sent, z0 = mig->zero_pages, dirty;
		pthread_mutex_lock(&mig->lock);
		mig->phase_pages = to_send;
		mig->phase_sent = 0;
		pthread_mutex_unlock(&mig->lock);
		if (send_phase(mig, false))
			return -1;
		rc = dirty_harvest(t, &dirty);
		if (rc) {
			fail(mig, "reading the dirty log failed: %s", strerror(-rc));
			return -1;
		}
		double secs = MAX((now_ns() - t0) / 1e9, 1e-6);
		double tx = (double)(mig->bytes_sent - b0) / secs;
		double dr = (double)dirty * GUEST_PAGE_SIZE / secs;
		double predicted_ms = tx > 0 ? (double)dirty * (GUEST_PAGE_SIZE + 16) / tx * 1000 : 1e9;
		pthread_mutex_lock(&mig->lock);
		json_array_append_new(mig->phases, phase_json(mig->phase, mig->pages_sent - p0, mig->zero_pages - z0,
							      mig->bytes_sent - b0, secs * 1000, dr, tx));
		mig->transmit_rate = tx;
		mig->dirty_rate = dr;
		mig->predicted_stun_ms = predicted_ms;
		pthread_mutex_unlock(&mig->lock);

		/* The rest fits the goal: switch over, unless another phase still
		 * shrinks the dirty set a lot (then the stun gets shorter still). */
		if (dirty == 0)
			return 0;
		if (predicted_ms <= (double)mig->p.switchover_goal_ms) {
			bool tiny = predicted_ms <= MAX((double)mig->p.switchover_goal_ms / 20, 5.0);
			bool shrinking = (double)dirty < 0.5 * (double)to_send;
			if (tiny || !shrinking || mig->phase >= CONVERGED_EXTRA_PHASES_MAX)
				return 0;
		}
		if (mig->p.timeout_s && now_ns() - mig->start_ns > mig->p.timeout_s * 1000000000ULL) {
			fail(mig, "did not converge within %llu s (dirty rate %.1f MB/s, transmit rate %.1f MB/s, %llu pages left%s)",
			     (unsigned long long)mig->p.timeout_s, dr / 1e6, tx / 1e6, (unsigned long long)dirty,
			     mig->p.sdps == SDPS_OFF ? "; SDPS is off" : "");
			return -1;
		}
		if (mig->phase >= MIGRATION_PHASES_MAX) {
			fail(mig, "did not converge after %d phases", MIGRATION_PHASES_MAX);
			return -1;
		}
		/* Progress: this phase's dirty set must shrink against what we just sent. */
		double base = (double)MIN(to_send, prev_sent);
		enum sdps_progress progress = mig->phase < 0 || (double)dirty < 0.8 * base ? SDPS_PROGRESSING
					      : (double)dirty >= 0.95 * (double)to_send ? SDPS_SATURATED
					      : SDPS_STALLED;
		if (mig->p.sdps == SDPS_ALWAYS || (mig->p.sdps == SDPS_DYNAMIC && mig->phase >= 0 &&
						    (progress != SDPS_PROGRESSING || mig->sdps.level > 0))) {
			double level = sdps_next_level(&mig->sdps, dr, tx, progress);
			if (level != mig->sdps.level)
				glide_log("migrate", "phase %d: dirty %.1f MB/s, transmit %.1f MB/s: SDPS level %.3f -> %.3f",
					  mig->phase, dr / 1e6, tx / 1e6, mig->sdps.level, level);
			sdps_set_level(&mig->sdps, level);
		}
		prev_sent = to_send;
		to_send = dirty;
	}
}

static int switchover(struct migration *mig)
{
	struct wire_stream *s0 = &mig->streams[0];
	struct state_buf blob = { 0 };
	struct state_writer w = { state_writer_buf, &blob };
	struct wire_frame f;
	uint64_t dirty, t0, b0, p0, z0;
	char err[512];
	int rc;

	set_stage(mig, "switchover");
	sdps_stop(&mig->sdps);
	mig->stun_start_ns = now_ns();
	if (vm_pause(mig->vm)) {
		fail(mig, "the VM shut down during migration");
		return -1;
	}
	t0 = now_ns(), b0 = mig->bytes_sent, p0 = mig->pages_sent, z0 = mig->zero_pages;
	rc = dirty_harvest(&mig->dirty, &dirty);
	if (rc) {
		fail(mig, "reading the dirty log failed: %s", strerror(-rc));
		return -1;
	}
	mig->phase++;
	pthread_mutex_lock(&mig->lock);
	mig->phase_pages = dirty;
	mig->phase_sent = 0;
	pthread_mutex_unlock(&mig->lock);
	if (send_phase(mig, true))
		return -1;
	rc = state_save_all(mig->vm, &w, true);
	if (rc || blob.failed || blob.len > WIRE_FRAME_MAX_PAYLOAD) {
		fail(mig, "capturing the VM state failed: %s", rc ? strerror(-rc) : "too large");
		sbuf_free(&blob);
		return -1;
	}
	rc = wire_send_copy(s0, FRAME_STATE, blob.data, (uint32_t)blob.len, err, sizeof(err));
	__atomic_add_fetch(&mig->bytes_sent, blob.len, __ATOMIC_RELAXED);
	sbuf_free(&blob);
	double secs = MAX((now_ns() - t0) / 1e9, 1e-6);
	pthread_mutex_lock(&mig->lock);
	json_array_append_new(mig->phases, phase_json(mig->phase, mig->pages_sent - p0, mig->zero_pages - z0,
						      mig->bytes_sent - b0, secs * 1000, 0,
						      (double)(mig->bytes_sent - b0) / secs));
	pthread_mutex_unlock(&mig->lock);
	if (!rc)
		rc = wire_recv(s0, &f, err, sizeof(err));
	if (rc) {
		fail(mig, "switchover: %s", err);
		return -1;
	}
	if (f.type != FRAME_RESTORED) {
		json_t *j = json_loadb((char *)f.payload, f.len, 0, NULL);
		json_t *e = j ? json_object_get(j, "error") : NULL;
		fail(mig, "destination could not restore the VM: %s", json_is_string(e) ? json_string_value(e) : wire_frame_name(f.type));
		json_decref(j);
		return -1;
	}
	/* Commit point: from here the destination owns the VM. GO says whether
	 * it runs or stays paused, as it was here before the migration. */
	char go[32];
	int golen = snprintf(go, sizeof(go), "{\"paused\":%s}", mig->source_was_paused ? "true" : "false");
	rc = wire_send_copy(s0, FRAME_GO, go, (uint32_t)golen, err, sizeof(err));
	if (rc) {
		fail(mig, "switchover: sending GO failed: %s", err);
		return -1;
	}
	mig->resumed_source = false;
	pthread_mutex_lock(&mig->lock);
	mig->stage = "released";
	pthread_mutex_unlock(&mig->lock);
	if (wire_recv(s0, &f, err, sizeof(err)) == 0 && f.type == FRAME_RUNNING) {
		json_t *j = json_loadb((char *)f.payload, f.len, 0, NULL);
		mig->dest_restore_ms = j ? json_real_value(json_object_get(j, "restore_ms")) : 0;
		json_decref(j);
	} else {
		glide_log("migrate", "destination did not confirm RUNNING: %s", err);
	}
	mig->stun_end_ns = now_ns();
	return 0;
}

/* After a failure on our side (often just "connection reset"), the
 * destination may have said why in an ABORT frame on stream 0. */
static void read_destination_reason(struct migration *mig)
{
	struct wire_stream *s0 = &mig->streams[0];
	struct wire_frame f;
	char err[256];

	wire_set_stall_timeout(s0, 300);
	for (int i = 0; i < 64; i++) {
		if (wire_recv(s0, &f, err, sizeof(err)))
			return;
		if (f.type != FRAME_ABORT)
			continue;
		json_t *j = json_loadb((char *)f.payload, f.len, 0, NULL);
		json_t *e = j ? json_object_get(j, "error") : NULL;
		if (json_is_string(e) && !strstr(mig->error, json_string_value(e))) {
			pthread_mutex_lock(&mig->lock);
			char mine[sizeof(mig->error)];
			snprintf(mine, sizeof(mine), "%s", mig->error);
			snprintf(mig->error, sizeof(mig->error), "destination: %.300s (here: %.150s)", json_string_value(e), mine);
			pthread_mutex_unlock(&mig->lock);
		}
		json_decref(j);
		return;
	}
}

static void *migration_thread(void *arg)
{
	struct migration *mig = arg;
	struct vm *vm = mig->vm;
	bool was_paused = mig->source_was_paused;
	int count = mig->p.streams ? mig->p.streams : auto_stream_candidates(mig);
	bool committed = false;

	glide_log("migrate", "migrating to %s (%d address%s, streams %s, goal %llu ms, bandwidth %s, sdps %d, encrypt %d)",
		  mig->p.addrs[0], mig->p.naddrs, mig->p.naddrs > 1 ? "es" : "",
		  mig->p.streams ? "fixed" : "auto", (unsigned long long)mig->p.switchover_goal_ms,
		  mig->p.max_bandwidth ? "capped" : "unlimited", mig->p.sdps, mig->p.encrypt);
	set_stage(mig, "connecting");
	if (connect_streams(mig, count))
		goto out;
	if (!mig->p.streams && count > 1) {
		int n = choose_streams(mig, count);
		if (n < 0) {
			fail(mig, "stream probe failed: connection lost");
			goto out;
		}
		/* Streams beyond n are done: they end with FINAL right away. */
		char err[256];
		for (int i = n; i < mig->nstreams; i++) {
			if (wire_send(&mig->streams[i], FRAME_FINAL, 0, err, sizeof(err))) {
				fail(mig, "%s", err);
				goto out;
			}
			wire_close(&mig->streams[i]);
		}
		mig->nstreams = n;
	}
	set_stage(mig, "prepare");
	if (send_config(mig))
		goto out;
	set_stage(mig, "precopy");
	int rc = dirty_start(&mig->dirty, vm);
	if (rc) {
		fail(mig, "cannot start page tracing: %s", strerror(-rc));
		goto out;
	}
	if (precopy(mig))
		goto out;
	committed = switchover(mig) == 0;
out:
	sdps_stop(&mig->sdps);
	if (!committed && !mig->cancel && mig->nstreams > 0 && mig->streams[0].rx_buf)
		read_destination_reason(mig);
	if (!committed && mig->nstreams > 0 && mig->streams[0].fd >= 0 && mig->streams[0].tx_buf) {
		/* Best effort: a frozen destination must not hold the source's answer up. */
		wire_set_stall_timeout(&mig->streams[0], 1000);
		json_t *j = json_pack("{s:s}", "error", mig->cancel ? "cancelled" : mig->error);
		char *text = json_dumps(j, JSON_COMPACT);
		wire_send_copy(&mig->streams[0], FRAME_ABORT, text, (uint32_t)strlen(text), (char[8]){ 0 }, 8);
		free(text);
		json_decref(j);
	}
	for (int i = 0; i < count && i < WIRE_MAX_STREAMS; i++)
		if (mig->streams[i].tx_buf || mig->streams[i].fd >= 0)
			wire_close(&mig->streams[i]);
	if (mig->dirty.vm)
		dirty_stop(&mig->dirty);
	pthread_mutex_lock(&mig->lock);
	mig->end_ns = now_ns();
	if (committed) {
		mig->status = "completed";
		mig->stage = "completed";
	} else {
		mig->status = mig->cancel ? "cancelled" : "failed";
		mig->stage = mig->status;
		if (mig->cancel && !mig->error[0])
			snprintf(mig->error, sizeof(mig->error), "cancelled%s%s", mig->stop_reason[0] ? ": " : "",
				 mig->stop_reason);
	}
	pthread_mutex_unlock(&mig->lock);
	bool stopping = mig->stop_reason[0] || vm->quit;
	if (committed) {
		glide_log("migrate", "completed: %.1f ms total, stun %.1f ms", (mig->end_ns - mig->start_ns) / 1e6,
			  (mig->stun_end_ns - mig->stun_start_ns) / 1e6);
		mig->mon->migrated_away = true;
		vm_request_exit(vm, 0, "migrated to another host");
	} else if (stopping) {
		/* The monitor is stopping (signal, shutdown): the VM stops with it. */
		glide_log("migrate", "%s: %s; the VM stops with its monitor (%s)", mig->status, mig->error,
			  mig->stop_reason[0] ? mig->stop_reason : vm->exit_reason);
	} else {
		if (!was_paused)
			vm_resume(vm);
		pthread_mutex_lock(&mig->lock);
		mig->resumed_source = true;
		pthread_mutex_unlock(&mig->lock);
		glide_log("migrate", "%s: %s; the VM keeps %s here", mig->status, mig->error, was_paused ? "paused" : "running");
	}
	/* Only now may another long operation (or a pause/resume) start. */
	monitor_op_end(mig->mon);
	migration_put(mig);
	return NULL;
}

/* ---- API ---- */

static json_t *migration_json(struct migration *mig)
{
	pthread_mutex_lock(&mig->lock);
	uint64_t end = mig->end_ns ? mig->end_ns : now_ns();
	double stun_ms = mig->stun_end_ns ? (mig->stun_end_ns - mig->stun_start_ns) / 1e6 : 0;
	uint64_t remaining = mig->phase_pages > mig->phase_sent ? mig->phase_pages - mig->phase_sent : 0;
	json_t *j = json_pack("{s:s, s:s, s:i, s:f, s:f, s:I, s:I, s:I, s:I, s:i, s:f, s:f, s:f, s:b, s:o}",
			      "status", mig->status, "stage", mig->stage, "phase", mig->phase,
			      "total_ms", (end - mig->start_ns) / 1e6, "stun_ms", stun_ms,
			      "bytes_sent", (json_int_t)mig->bytes_sent, "pages_sent", (json_int_t)mig->pages_sent,
			      "zero_pages", (json_int_t)mig->zero_pages, "remaining_pages", (json_int_t)remaining,
			      "streams", mig->nstreams, "transmit_rate", mig->transmit_rate, "dirty_rate", mig->dirty_rate,
			      "predicted_stun_ms", mig->predicted_stun_ms,
			      "encrypted", mig->nstreams > 0 && mig->streams[0].encrypted,
			      "phases", json_deep_copy(mig->phases));
	json_object_set_new(j, "id", json_integer(mig->id));
	json_object_set_new(j, "stall_timeout_s", json_real(mig->p.stall_timeout_ms / 1e3));
	json_object_set_new(j, "sdps", json_pack("{s:s, s:f, s:f, s:f}", "mode",
						 mig->p.sdps == SDPS_OFF ? "off" : mig->p.sdps == SDPS_ALWAYS ? "always" : "dynamic",
						 "level", mig->sdps.level, "max_level", mig->sdps.max_level,
						 "guest_time_ms", sdps_guest_time_ns(&mig->sdps) / 1e6));
	json_object_set_new(j, "iteration", json_integer(mig->phase + 1));
	json_object_set_new(j, "phase_pages", json_integer((json_int_t)mig->phase_pages));
	json_object_set_new(j, "compress", json_string(mig->p.compress ? "lz4" : "off"));
	json_object_set_new(j, "compressed_pages", json_integer((json_int_t)mig->compressed_pages));
	json_object_set_new(j, "switchover_goal_ms", json_integer((json_int_t)mig->p.switchover_goal_ms));
	json_object_set_new(j, "max_bandwidth", json_integer((json_int_t)mig->p.max_bandwidth));
	if (mig->dest_restore_ms)
		json_object_set_new(j, "dest_restore_ms", json_real(mig->dest_restore_ms));
	if (mig->error[0])
		json_object_set_new(j, "error", json_string(mig->error));
	json_object_set_new(j, "source_resumed", json_boolean(mig->resumed_source));
	pthread_mutex_unlock(&mig->lock);
	return j;
}

static int parse_params(json_t *b, struct migration_params *p, char *err, size_t errlen)
{
	json_t *v;
	memset(p, 0, sizeof(*p));
	p->switchover_goal_ms = SWITCHOVER_GOAL_MS_DEFAULT;
	p->sdps = SDPS_DYNAMIC;
	p->encrypt = ENCRYPT_OPPORTUNISTIC;
	p->stall_timeout_ms = WIRE_STALL_TIMEOUT_MS_DEFAULT;
	if (!json_is_object(b)) {
		errf(err, errlen, "migration needs a JSON body with at least \"to\" and \"key_file\"");
		return -EINVAL;
	}
	v = json_object_get(b, "to");
	if (!json_is_string(v) || (p->naddrs = wire_parse_addrs(json_string_value(v), p->addrs, WIRE_MAX_STREAMS)) < 0) {
		errf(err, errlen, "\"to\" must be HOST:PORT[,HOST:PORT...] (at most %d)", WIRE_MAX_STREAMS);
		return -EINVAL;
	}
	v = json_object_get(b, "key_file");
	if (!json_is_string(v)) {
		errf(err, errlen, "\"key_file\" (a file holding the one-time key as 64 hex digits) is required");
		return -EINVAL;
	}
	if (read_key_file(json_string_value(v), p->key, err, errlen))
		return -EINVAL;
	v = json_object_get(b, "streams");
	if (v && !(json_is_string(v) && !strcmp(json_string_value(v), "auto"))) {
		if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > WIRE_MAX_STREAMS) {
			errf(err, errlen, "\"streams\" must be 1..%d or \"auto\"", WIRE_MAX_STREAMS);
			return -EINVAL;
		}
		p->streams = (int)json_integer_value(v);
	}
	v = json_object_get(b, "switchover_goal_ms");
	if (v) {
		if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > 600000) {
			errf(err, errlen, "\"switchover_goal_ms\" must be 1..600000");
			return -EINVAL;
		}
		p->switchover_goal_ms = (uint64_t)json_integer_value(v);
	}
	v = json_object_get(b, "max_bandwidth");
	if (v) {
		if (json_is_integer(v) && json_integer_value(v) >= 0)
			p->max_bandwidth = (uint64_t)json_integer_value(v);
		else if (!json_is_string(v) || parse_rate(json_string_value(v), &p->max_bandwidth)) {
			errf(err, errlen, "\"max_bandwidth\" must be bytes/s (e.g. 52428800 or \"50M\")");
			return -EINVAL;
		}
	}
	v = json_object_get(b, "sdps");
	if (v) {
		const char *s = json_string_value(v);
		if (s && !strcmp(s, "off")) p->sdps = SDPS_OFF;
		else if (s && !strcmp(s, "always")) p->sdps = SDPS_ALWAYS;
		else if (s && !strcmp(s, "dynamic")) p->sdps = SDPS_DYNAMIC;
		else {
			errf(err, errlen, "\"sdps\" must be off, always or dynamic");
			return -EINVAL;
		}
	}
	v = json_object_get(b, "encrypt");
	if (v) {
		const char *s = json_string_value(v);
		if (s && !strcmp(s, "off")) p->encrypt = ENCRYPT_OFF;
		else if (s && !strcmp(s, "opportunistic")) p->encrypt = ENCRYPT_OPPORTUNISTIC;
		else if (s && !strcmp(s, "required")) p->encrypt = ENCRYPT_REQUIRED;
		else {
			errf(err, errlen, "\"encrypt\" must be off, opportunistic or required");
			return -EINVAL;
		}
	}
	v = json_object_get(b, "compress");
	if (v) {
		const char *c = json_string_value(v);
		if (c && !strcmp(c, "lz4"))
			p->compress = true;
		else if (!c || strcmp(c, "off")) {
			errf(err, errlen, "\"compress\" must be off or lz4");
			return -EINVAL;
		}
	}
	v = json_object_get(b, "timeout_s");
	if (v) {
		if (!json_is_integer(v) || json_integer_value(v) < 0) {
			errf(err, errlen, "\"timeout_s\" must be a non-negative integer");
			return -EINVAL;
		}
		p->timeout_s = (uint64_t)json_integer_value(v);
	}
	v = json_object_get(b, "dscp");
	if (v) {
		if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 63) {
			errf(err, errlen, "\"dscp\" must be 0..63");
			return -EINVAL;
		}
		p->dscp = (int)json_integer_value(v);
	}
	v = json_object_get(b, "stall_timeout_s");
	if (v) {
		if (!json_is_number(v) || json_number_value(v) < 0.1 || json_number_value(v) > 3600) {
			errf(err, errlen, "\"stall_timeout_s\" must be seconds, 0.1..3600");
			return -EINVAL;
		}
		p->stall_timeout_ms = (uint64_t)(json_number_value(v) * 1000 + 0.5);
	}
	return 0;
}

static bool migration_active(struct migration *mig)
{
	return mig && !strcmp(mig->status, "running");
}

bool migrate_in_progress(struct monitor *m)
{
	struct migration *mig = migration_get(m);
	bool active = migration_active(mig);
	migration_put(mig);
	return active;
}

int migrate_api_start(void *ctx, const struct http_request *req, json_t **resp)
{
	struct monitor *m = ctx;
	struct migration *mig;
	char err[512];

	if (m->vm.state == VM_STATE_MASKED || m->incoming || m->migrated_away || m->vm.quit) {
		*resp = http_error("this VM cannot be migrated now (state %s)", m->migrated_away ? "migrated" : vm_state_name(m->vm.state));
		return 409;
	}
	mig = calloc(1, sizeof(*mig));
	if (!mig)
		return 500;
	if (parse_params(req->body, &mig->p, err, sizeof(err))) {
		explicit_bzero(mig, sizeof(*mig));
		free(mig);
		*resp = http_error("%s", err);
		return 400;
	}
	/* The migration is a long operation from here until its thread ends:
	 * no snapshot, memsave, pause or resume can run inside it. */
	if (monitor_op_begin(m, "migration", err, sizeof(err))) {
		explicit_bzero(mig, sizeof(*mig));
		free(mig);
		*resp = http_error("%s", err);
		return 409;
	}
	mig->mon = m;
	mig->vm = &m->vm;
	mig->source_was_paused = m->vm.pause_requested;
	mig->status = "running";
	mig->stage = "starting";
	mig->phase = -1;
	mig->phases = json_array();
	mig->start_ns = now_ns();
	pthread_mutex_init(&mig->lock, NULL);
	pthread_mutex_init(&mig->rl.lock, NULL);
	mig->rl.bytes_per_s = mig->p.max_bandwidth;
	for (int i = 0; i < WIRE_MAX_STREAMS; i++)
		mig->streams[i].fd = -1;
	RAND_bytes(mig->session, sizeof(mig->session));
	sdps_init(&mig->sdps, &m->vm);
	pthread_mutex_lock(&migration_ptr_lock);
	mig->id = ++m->migrations_started;
	/* The previous (finished) migration goes when its last reader is done. */
	struct migration *old = m->migration;
	m->migration = mig;
	mig->refs = 3; /* the monitor's, the thread's and this answer's */
	pthread_mutex_unlock(&migration_ptr_lock);
	migration_put(old);
	if (pthread_create(&mig->thread, NULL, migration_thread, mig)) {
		pthread_mutex_lock(&mig->lock);
		mig->status = "failed";
		mig->stage = "failed";
		snprintf(mig->error, sizeof(mig->error), "cannot start the migration thread");
		mig->resumed_source = true;
		pthread_mutex_unlock(&mig->lock);
		migration_put(mig); /* no thread */
		migration_put(mig);
		monitor_op_end(m);
		*resp = http_error("cannot start the migration thread");
		return 500;
	}
	pthread_detach(mig->thread);
	*resp = migration_json(mig);
	migration_put(mig);
	return 202;
}

/* GET /v1/migration[?id=N]: the latest migration (or migration N, which
 * must be the latest). Returning a finished migration's result marks it
 * served, which lets a source whose VM moved away exit. */
int migrate_api_status(void *ctx, const struct http_request *req, json_t **resp)
{
	struct monitor *m = ctx;
	const char *want = http_query(req, "id");
	pthread_mutex_lock(&migration_ptr_lock);
	struct migration *mig = m->migration;
	if (!mig) {
		pthread_mutex_unlock(&migration_ptr_lock);
		*resp = http_error("no migration has been started on this VM");
		return 404;
	}
	if (want) {
		char *end;
		long id = strtol(want, &end, 10);
		if (!*want || *end || id != mig->id) {
			pthread_mutex_unlock(&migration_ptr_lock);
			*resp = http_error("migration %s is not this VM's latest migration (that is %d)", want, mig->id);
			return 404;
		}
	}
	*resp = migration_json(mig);
	if (!migration_active(mig))
		mig->result_served = true;
	pthread_mutex_unlock(&migration_ptr_lock);
	return 200;
}

bool migrate_result_served(struct monitor *m)
{
	pthread_mutex_lock(&migration_ptr_lock);
	bool served = !m->migration || m->migration->result_served;
	pthread_mutex_unlock(&migration_ptr_lock);
	return served;
}

static void cancel_streams(struct migration *mig)
{
	mig->cancel = true;
	for (int i = 0; i < WIRE_MAX_STREAMS; i++)
		if (mig->streams[i].fd >= 0)
			shutdown(mig->streams[i].fd, SHUT_RDWR);
}

int migrate_api_cancel(void *ctx, const struct http_request *req, json_t **resp)
{
	struct monitor *m = ctx;
	struct migration *mig = migration_get(m);
	if (!migration_active(mig)) {
		migration_put(mig);
		*resp = http_error("no migration is in progress");
		return 409;
	}
	if (!strcmp(mig->stage, "released")) {
		migration_put(mig);
		*resp = http_error("too late to cancel: the destination already owns the VM");
		return 409;
	}
	cancel_streams(mig);
	for (int i = 0; i < 3000 && migration_active(mig); i++)
		sleep_ns(1000000);
	*resp = migration_json(mig);
	migration_put(mig);
	return 200;
}

void migrate_cancel(struct monitor *m, const char *why)
{
	struct migration *mig = migration_get(m);
	if (!migration_active(mig)) {
		migration_put(mig);
		return;
	}
	pthread_mutex_lock(&mig->lock);
	if (!mig->stop_reason[0])
		snprintf(mig->stop_reason, sizeof(mig->stop_reason), "%s", why && *why ? why : "the monitor is stopping");
	pthread_mutex_unlock(&mig->lock);
	if (strcmp(mig->stage, "released"))
		cancel_streams(mig);
	for (int i = 0; i < 5000 && migration_active(mig); i++)
		sleep_ns(1000000);
	migration_put(mig);
}
