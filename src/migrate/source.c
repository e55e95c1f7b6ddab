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

#define PROBE_WINDOW_NS 20000000ULL

static pthread_mutex_t migration_ptr_lock = PTHREAD_MUTEX_INITIALIZER;

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

/* ---- live sections: one helper thread per stream ---- */

/* End of a pre-copy phase on one stream: wait until the destination has
 * put every page sent so far into guest memory, so that the measured rate is
 * end to end and no backlog is left to drain during the stun. */
static int stream_sync(struct stream_worker *w)
{
	struct channel *ch = &w->ch;
	struct wire_frame f;
	int rc = wire_send(ch->ws, FRAME_SYNC, 0, ch->err, sizeof(ch->err));
	if (!rc)
		rc = wire_recv(ch->ws, &f, ch->err, sizeof(ch->err));
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
	if (!rc && !channel_stopped(ch))
		rc = ch->final ? wire_send(ch->ws, FRAME_FINAL, 0, ch->err, sizeof(ch->err)) : stream_sync(w);
	w->rc = rc;
	return NULL;
}

/* One pass of every live section over all streams in parallel. */
static int send_phase(struct migration *mig, bool final)
{
	int started = 0;

	for (int i = 0; i < mig->nstreams; i++) {
		struct stream_worker *w = &mig->workers[i];
		memset(w, 0, sizeof(*w));
		w->mig = mig;
		w->ch = (struct channel){
			.ws = &mig->streams[i], .index = i, .count = mig->nstreams, .pass = mig->phase, .final = final,
			.rl = &mig->rl, .cancel = &mig->cancel, .failed = &mig->failed, .pass_done = &mig->phase_sent,
			.wire_bytes = &mig->bytes_sent,
		};
		if (pthread_create(&w->thread, NULL, stream_worker_run, w)) {
			fail(mig, "cannot start stream helper thread");
			break;
		}
		started++;
	}
	uint64_t pages = 0, zero = 0, compressed = 0;
	for (int i = 0; i < started; i++) {
		struct stream_worker *w = &mig->workers[i];
		pthread_join(w->thread, NULL);
		pages += w->ch.items;
		zero += w->ch.zero_items;
		compressed += w->ch.compressed_items;
		if (w->rc && !mig->cancel)
			fail(mig, "%s", w->ch.err[0] ? w->ch.err : strerror(-w->rc));
	}
	__atomic_add_fetch(&mig->pages_sent, pages, __ATOMIC_RELAXED);
	__atomic_add_fetch(&mig->zero_pages, zero, __ATOMIC_RELAXED);
	__atomic_add_fetch(&mig->compressed_pages, compressed, __ATOMIC_RELAXED);
	return mig->failed || mig->cancel ? -1 : 0;
}

/* What every live section still has to send (bytes). */
static uint64_t live_pending(struct migration *mig)
{
	uint64_t total = 0;
	for (int i = 0; i < mig->nlive; i++)
		total += mig->live_ops[i]->live->pending(&mig->live[i]);
	return total;
}

/* End of a pass in every live section; returns what the next pass holds. */
static int live_harvest(struct migration *mig, uint64_t *pending)
{
	char err[256];
	for (int i = 0; i < mig->nlive; i++) {
		int rc = mig->live_ops[i]->live->harvest(&mig->live[i], err, sizeof(err));
		if (rc) {
			fail(mig, "%s: %s", mig->live_ops[i]->name, err);
			return rc;
		}
	}
	*pending = live_pending(mig);
	return 0;
}

static int live_setup(struct migration *mig)
{
	char err[256];
	for (int i = 0; i < mig->nlive; i++) {
		mig->live[i] = (struct live_source){ .vm = mig->vm, .tracing = true, .compress = mig->p.compress };
		int rc = mig->live_ops[i]->live->setup(&mig->live[i], err, sizeof(err));
		if (rc) {
			fail(mig, "%s: %s", mig->live_ops[i]->name, err);
			return rc;
		}
	}
	return 0;
}

static void live_cleanup(struct migration *mig)
{
	for (int i = 0; i < mig->nlive; i++)
		mig->live_ops[i]->live->cleanup(&mig->live[i]);
	mig->nlive = 0;
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
	/* The live sections, in the order that numbers them in LIVE frames. */
	json_t *live = json_array();
	mig->nlive = state_live_sections(mig->live_ops, LIVE_SECTIONS_MAX);
	for (int i = 0; i < mig->nlive; i++)
		json_array_append_new(live, json_pack("{s:s, s:I}", "name", mig->live_ops[i]->name, "version",
						      (json_int_t)mig->live_ops[i]->version));
	msg = json_pack("{s:o, s:o, s:o, s:i, s:i}", "config", vm_config_to_json(&mig->vm->cfg), "cpuid", cpuid, "live",
			live, "protocol", WIRE_PROTOCOL_VERSION, "state_format", STATE_FORMAT_VERSION);
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
	uint64_t to_send = live_pending(mig), prev_sent = UINT64_MAX;

	for (mig->phase = -1;; mig->phase++) {
		uint64_t t0 = now_ns(), b0 = mig->bytes_sent, p0 = mig->pages_sent, z0 = mig->zero_pages, dirty;
		pthread_mutex_lock(&mig->lock);
		mig->phase_bytes = to_send;
		mig->phase_sent = 0;
		pthread_mutex_unlock(&mig->lock);
		if (send_phase(mig, false) || live_harvest(mig, &dirty))
			return -1;
		struct phase_stats ps = { .phase = mig->phase, .sent = to_send, .prev_sent = prev_sent, .dirty = dirty,
					  .seconds = MAX((now_ns() - t0) / 1e9, 1e-6),
					  .wire_bytes = (double)(mig->bytes_sent - b0) };
		double tx = ps.wire_bytes / ps.seconds, dr = (double)dirty / ps.seconds;
		double predicted_ms = converge_predict_ms(dirty, tx);
		pthread_mutex_lock(&mig->lock);
		json_array_append_new(mig->phases, phase_json(mig->phase, mig->pages_sent - p0, mig->zero_pages - z0,
							      mig->bytes_sent - b0, ps.seconds * 1000, dr, tx));
		mig->transmit_rate = tx;
		mig->dirty_rate = dr;
		mig->predicted_stun_ms = predicted_ms;
		pthread_mutex_unlock(&mig->lock);

		enum converge_decision d = converge_decide(&ps, predicted_ms, mig->p.switchover_goal_ms);
		if (d == CONVERGE_SWITCHOVER)
			return 0;
		if (mig->p.timeout_s && now_ns() - mig->start_ns > mig->p.timeout_s * 1000000000ULL) {
			fail(mig, "did not converge within %llu s (dirty rate %.1f MB/s, transmit rate %.1f MB/s, %llu pages left%s)",
			     (unsigned long long)mig->p.timeout_s, dr / 1e6, tx / 1e6,
			     (unsigned long long)(dirty / GUEST_PAGE_SIZE), mig->p.sdps == SDPS_OFF ? "; SDPS is off" : "");
			return -1;
		}
		if (d == CONVERGE_GIVE_UP) {
			fail(mig, "did not converge after %d phases", MIGRATION_PHASES_MAX);
			return -1;
		}
		enum sdps_progress progress = converge_progress(&ps);
		if (converge_sdps_acts(mig->p.sdps, mig->phase, progress, mig->sdps.level)) {
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
	if (live_harvest(mig, &dirty))
		return -1;
	mig->phase++;
	pthread_mutex_lock(&mig->lock);
	mig->phase_bytes = dirty;
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
	int connected = connect_streams(mig, count);
	/* The streams' keys are derived: the one-time key is not needed again. */
	explicit_bzero(mig->p.key, sizeof(mig->p.key));
	if (connected)
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
	if (live_setup(mig) || precopy(mig))
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
	live_cleanup(mig);
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
	return NULL;
}

/* ---- API ---- */

static json_t *migration_json(struct migration *mig)
{
	pthread_mutex_lock(&mig->lock);
	uint64_t end = mig->end_ns ? mig->end_ns : now_ns();
	double stun_ms = mig->stun_end_ns ? (mig->stun_end_ns - mig->stun_start_ns) / 1e6 : 0;
	uint64_t remaining = (mig->phase_bytes > mig->phase_sent ? mig->phase_bytes - mig->phase_sent : 0) / GUEST_PAGE_SIZE;
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
	json_object_set_new(j, "phase_pages", json_integer((json_int_t)(mig->phase_bytes / GUEST_PAGE_SIZE)));
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
	return migration_active(m->migration);
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
	/* Old finished migrations are kept: status readers may still hold them. */
	m->migration = mig;
	pthread_mutex_unlock(&migration_ptr_lock);
	if (pthread_create(&mig->thread, NULL, migration_thread, mig)) {
		pthread_mutex_lock(&mig->lock);
		mig->status = "failed";
		mig->stage = "failed";
		snprintf(mig->error, sizeof(mig->error), "cannot start the migration thread");
		mig->resumed_source = true;
		pthread_mutex_unlock(&mig->lock);
		monitor_op_end(m);
		*resp = http_error("cannot start the migration thread");
		return 500;
	}
	pthread_detach(mig->thread);
	*resp = migration_json(mig);
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
	struct migration *mig = m->migration;
	if (!migration_active(mig)) {
		*resp = http_error("no migration is in progress");
		return 409;
	}
	if (!strcmp(mig->stage, "released")) {
		*resp = http_error("too late to cancel: the destination already owns the VM");
		return 409;
	}
	cancel_streams(mig);
	for (int i = 0; i < 3000 && migration_active(mig); i++)
		sleep_ns(1000000);
	*resp = migration_json(mig);
	return 200;
}

void migrate_cancel(struct monitor *m, const char *why)
{
	struct migration *mig = m->migration;
	if (!migration_active(mig))
		return;
	pthread_mutex_lock(&mig->lock);
	if (!mig->stop_reason[0])
		snprintf(mig->stop_reason, sizeof(mig->stop_reason), "%s", why && *why ? why : "the monitor is stopping");
	pthread_mutex_unlock(&mig->lock);
	if (strcmp(mig->stage, "released"))
		cancel_streams(mig);
	for (int i = 0; i < 5000 && migration_active(mig); i++)
		sleep_ns(1000000);
}
