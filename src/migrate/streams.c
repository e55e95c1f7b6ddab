/* The source's streams (channels): connecting them (authenticated, DSCP),
 * choosing how many when "auto" (a VM without disks: pass -1 tries 1, 2
 * and 4 streams on its own memory and keeps the fastest; with disks, a
 * short throughput probe), and one
 * helper thread per stream that runs a pass of every live section on its
 * channel and closes it with SYNC (pre-copy) or FINAL (switchover). */
#include "migrate/migration.h"
#include "common/util.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/sysinfo.h>
#include <unistd.h>

#define PROBE_WINDOW_NS 20000000ULL
#define STREAMS_ADAPT_UNIT (2ULL << 20) /* progress comes in the RAM section's chunks (ram.h) */

/* End of a pre-copy phase on one stream: wait until the destination has
 * put every page sent so far into guest memory, so that the measured rate is
 * end to end and no backlog is left to drain during the stun. */
static int stream_sync(struct stream_worker *w)
{
	struct channel *ch = &w->ch;
	struct wire_frame f;
	channel_lock(ch); /* the answer is ours: a mirror reads its own under the lock too */
	int rc = wire_send(ch->ws, FRAME_SYNC, 0, ch->err, sizeof(ch->err));
	if (!rc)
		rc = wire_recv(ch->ws, &f, ch->err, sizeof(ch->err));
	channel_unlock(ch);
	if (!rc && f.type != FRAME_SYNC_ACK) {
		snprintf(ch->err, sizeof(ch->err), "destination answered %s to SYNC on stream %d", wire_frame_name(f.type),
			 ch->ws->index);
		rc = -EPROTO;
	}
	return rc;
}

/* One stream's helper thread for one pass: every live section sends its
 * share of the pass on this channel, then SYNC (pre-copy) or FINAL
 * (switchover) closes the pass on the stream. */
static void *stream_worker_run(void *arg)
{
	struct stream_worker *w = arg;
	struct migration *mig = w->mig;
	struct channel *ch = &w->ch;
	int rc = 0;

	for (int i = 0; i < mig->nlive && !rc && !channel_stopped(ch); i++) {
		const struct live_section_ops *live = mig->live_ops[i]->live;
		ch->section_id = (uint32_t)i;
		ch->section = mig->live_ops[i];
		rc = ch->final ? live->complete(&mig->live[i], ch) : live->iterate(&mig->live[i], ch);
	}
	if (!rc && !channel_stopped(ch) && ch->final) {
		channel_lock(ch);
		rc = wire_send(ch->ws, FRAME_FINAL, 0, ch->err, sizeof(ch->err));
		channel_unlock(ch);
	} else if (!rc && !channel_stopped(ch)) {
		rc = stream_sync(w);
	}
	w->rc = rc;
	__atomic_store_n(&w->done, true, __ATOMIC_RELEASE);
	return NULL;
}

static bool workers_done(struct migration *mig, int n)
{
	for (int i = 0; i < n; i++)
		if (!__atomic_load_n(&mig->workers[i].done, __ATOMIC_ACQUIRE))
			return false;
	return true;
}

/* Waits until the pass handled `bytes` more than at b0 or `ns` passed;
 * false when the pass ended meanwhile. */
static bool adapt_wait(struct migration *mig, int n, uint64_t b0, uint64_t bytes, uint64_t ns)
{
	uint64_t t0 = now_ns();
	while (__atomic_load_n(&mig->phase_sent, __ATOMIC_ACQUIRE) - b0 < bytes && now_ns() - t0 < ns) {
		if (workers_done(mig, n) || mig->failed || mig->cancel)
			return false;
		sleep_ns(1000000);
	}
	return !workers_done(mig, n);
}

/* Makes `active` streams take chunks, and wakes the ones that wait. */
static void adapt_set_active(struct migration *mig, int active, bool settled)
{
	__atomic_store_n(&mig->active_streams, active, __ATOMIC_RELEASE);
	if (settled)
		__atomic_store_n(&mig->adapt_settled, true, __ATOMIC_RELEASE);
	futex_wake_all(&mig->active_streams);
}

/* The pass's progress rate (bytes handled per second) with `active`
 * streams taking chunks: after each has finished about one chunk (the
 * new count ramps up), over STREAMS_ADAPT_CHUNKS more per stream (progress
 * is counted a chunk at a time) or STREAMS_ADAPT_WINDOW_NS. A window in
 * which less than a chunk per stream was done (the streams or the guest
 * were not scheduled: start-up, a busy machine) says nothing of the count
 * and is measured once more. -1 when the pass ended meanwhile. */
static double adapt_window(struct migration *mig, int n, int active, uint64_t pass_t0)
{
	uint64_t unit = STREAMS_ADAPT_UNIT * (uint64_t)active, done = 0, ns = 1, t_set = now_ns();

	adapt_set_active(mig, active, false);
	if (!adapt_wait(mig, n, __atomic_load_n(&mig->phase_sent, __ATOMIC_ACQUIRE), unit, STREAMS_ADAPT_WINDOW_NS / 4))
		return -1;
	uint64_t ramp_ns = now_ns() - t_set;
	for (int attempt = 0; attempt < 2 && done < unit; attempt++) {
		uint64_t t0 = now_ns(), b0 = __atomic_load_n(&mig->phase_sent, __ATOMIC_ACQUIRE);
		if (!adapt_wait(mig, n, b0, unit * STREAMS_ADAPT_CHUNKS, STREAMS_ADAPT_WINDOW_NS))
			return -1;
		done = __atomic_load_n(&mig->phase_sent, __ATOMIC_ACQUIRE) - b0;
		ns = now_ns() - t0;
	}
	double rate = (double)done / (ns / 1e9);
	pthread_mutex_lock(&mig->lock); /* the status readers copy it */
	/* at_ms: when the count was set, from the pass's start; ramp_ms: until
	 * each stream had finished a chunk; window_ms: the measured window */
	json_array_append_new(mig->adapt_log, json_pack("{s:i, s:f, s:f, s:f, s:f}", "streams", active, "mb_s", rate / 1e6,
							"at_ms", (t_set - pass_t0) / 1e6, "ramp_ms", ramp_ns / 1e6,
							"window_ms", ns / 1e6));
	pthread_mutex_unlock(&mig->lock);
	return rate;
}

/* Pass -1 with "auto": one stream, then two, then four, each for a window;
 * the largest count within STREAMS_ADAPT_TOLERANCE of the fastest carries
 * the rest of the pass (the other streams leave it at once) and the later
 * ones (converge_pick_streams says why the largest). The start of the pass
 * is its fastest part for few streams (the destination's prefault is
 * ahead of the pages there; later, each receiving stream faults memory in
 * itself): while that would keep fewer streams than the most measured, the
 * count is measured once more (each count once at most) and the new rate
 * replaces the first. Without that, one stream measured 1.7x faster than
 * four at the start and was kept in 2 of 16 S5 runs, which then took 496
 * and 554 ms against a median of 281 ms. (Measuring four streams first
 * instead made the one- and two-stream windows, at the end, the slow part
 * of the pass: 8 S5 runs took 367 ms in median against 281.) */
static void adapt_streams(struct migration *mig, int n, uint64_t pass_t0)
{
	int counts[8], tried = 0;
	double rates[8];
	for (int c = 1; c <= n && tried < 8; c *= 2) {
		double r = adapt_window(mig, n, c, pass_t0);
		if (r < 0) /* the pass is over: what was measured decides */
			break;
		counts[tried] = c;
		rates[tried++] = r;
	}
	bool again[8] = { false };
	for (;;) { /* each count measured once more at most */
		int pick = converge_pick_streams(counts, rates, tried, STREAMS_ADAPT_TOLERANCE), i = 0;
		while (i < tried && counts[i] != pick)
			i++;
		if (i >= tried - 1 || again[i])
			break;
		double r = adapt_window(mig, n, pick, pass_t0);
		if (r < 0)
			break;
		rates[i] = r;
		again[i] = true;
	}
	int best = converge_pick_streams(counts, rates, tried, STREAMS_ADAPT_TOLERANCE);
	adapt_set_active(mig, best, true);
	pthread_mutex_lock(&mig->lock);
	char *log = json_dumps(mig->adapt_log, JSON_COMPACT);
	pthread_mutex_unlock(&mig->lock);
	glide_log("migrate", "streams auto: pass -1 measured %s -> %d", log ? log : "?", best);
	free(log);
}

int streams_adapt_done(struct migration *mig)
{
	int n = __atomic_load_n(&mig->active_streams, __ATOMIC_ACQUIRE);
	char err[256];
	mig->adaptive = false;
	if (n < 1 || n > mig->nstreams)
		n = 1;
	for (int i = n; i < mig->nstreams; i++) {
		if (wire_send(&mig->streams[i], FRAME_FINAL, 0, err, sizeof(err))) {
			migration_fail(mig, "%s", err);
			return -1;
		}
		wire_close(&mig->streams[i]);
	}
	mig->nstreams = n;
	mig->link.count = n; /* (live sections that send on their own, disks, are not in an adaptive migration) */
	return 0;
}

/* One pass of every live section over all streams in parallel. */
int streams_send_pass(struct migration *mig, bool final)
{
	int started = 0;
	bool adapt = mig->adaptive && !final && mig->phase == -1;
	uint64_t t0 = now_ns();

	if (adapt) {
		mig->next_chunk = 0;
		mig->active_streams = 1; /* the first window's count */
		mig->adapt_settled = false;
		pthread_mutex_lock(&mig->lock);
		json_decref(mig->adapt_log);
		mig->adapt_log = json_array();
		pthread_mutex_unlock(&mig->lock);
	}
	for (int i = 0; i < mig->nstreams; i++) {
		struct stream_worker *w = &mig->workers[i];
		memset(w, 0, sizeof(*w));
		w->mig = mig;
		w->ch = (struct channel){
			.ws = &mig->streams[i], .index = i, .count = mig->nstreams, .pass = mig->phase, .final = final,
			.rl = &mig->rl, .lock = &mig->stream_lock[i], .cancel = &mig->cancel, .failed = &mig->failed, .pass_done = &mig->phase_sent,
			.wire_bytes = &mig->bytes_sent,
			.next_chunk = adapt ? &mig->next_chunk : NULL, .active = adapt ? &mig->active_streams : NULL,
			.settled = adapt ? &mig->adapt_settled : NULL,
		};
		if (pthread_create(&w->thread, NULL, stream_worker_run, w)) {
			migration_fail(mig, "cannot start stream helper thread");
			break;
		}
		started++;
	}
	if (adapt && started == mig->nstreams)
		adapt_streams(mig, started, t0);
	uint64_t pages = 0, zero = 0, compressed = 0, blocks = 0, zero_blocks = 0;
	for (int i = 0; i < started; i++) {
		struct stream_worker *w = &mig->workers[i];
		pthread_join(w->thread, NULL);
		pages += w->ch.items;
		zero += w->ch.zero_items;
		compressed += w->ch.compressed_items;
		blocks += w->ch.disk_blocks;
		zero_blocks += w->ch.disk_zero_blocks;
		if (w->rc && !mig->cancel)
			migration_fail(mig, "%s", w->ch.err[0] ? w->ch.err : strerror(-w->rc));
	}
	__atomic_add_fetch(&mig->pages_sent, pages, __ATOMIC_RELAXED);
	__atomic_add_fetch(&mig->zero_pages, zero, __ATOMIC_RELAXED);
	__atomic_add_fetch(&mig->compressed_pages, compressed, __ATOMIC_RELAXED);
	__atomic_add_fetch(&mig->disk_blocks, blocks, __ATOMIC_RELAXED);
	__atomic_add_fetch(&mig->disk_zero_blocks, zero_blocks, __ATOMIC_RELAXED);
	return mig->failed || mig->cancel ? -1 : 0;
}

int streams_connect(struct migration *mig, int count)
{
	struct wire_session_params sp = { .stream_count = (uint32_t)count, .encrypt = mig->p.encrypt };
	char err[512];

	memcpy(sp.key, mig->p.key, WIRE_KEY_BYTES);
	memcpy(sp.session, mig->session, WIRE_SESSION_BYTES);
	for (int i = 0; i < count; i++) {
		const char *addr = mig->p.addrs[i % mig->p.naddrs];
		int rc = wire_connect(&mig->streams[i], addr, i, &sp, mig->p.dscp, 5000, err, sizeof(err));
		if (rc) {
			migration_fail(mig, "%s", err);
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
 * not the link, limits) and VMs with little touched memory (measuring
 * would cost more than it saves) use one. A VM without disks opens
 * STREAMS_AUTO_MAX and lets pass -1 find how many are worth it
 * (streams_send_pass), on this machine, this link and this guest, whatever
 * the CPU count. A VM with disks (their mirrors send on the streams on
 * their own, outside the passes) opens up to one per two CPUs, chosen by
 * a probe: each stream has a busy helper thread, and the guest's vCPUs
 * need CPUs too. */
int streams_auto_count(struct migration *mig)
{
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	mig->adaptive = false;
	if (mig->p.max_bandwidth)
		return 1;
	if (!mig->vm->cfg.ndisks) {
		if (resident_bytes(mig->vm) < STREAMS_ADAPT_MIN_BYTES)
			return 1;
		mig->adaptive = true;
		return STREAMS_AUTO_MAX;
	}
	if (resident_bytes(mig->vm) < STREAMS_AUTO_PROBE_MIN_BYTES)
		return 1;
	/* a helper thread per stream, and half of the CPUs left to the guest */
	return (int)MIN((long)STREAMS_AUTO_MAX, MAX(cpus / 2, 1L));
}

/* "auto" with several candidates: send probe frames over 1, 2, 4 streams
 * for 20 ms each and keep the smallest count within 15% of the best rate. */
int streams_choose(struct migration *mig, int max)
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

