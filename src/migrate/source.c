/* The source side of a live migration, in the order of seed 002, read
 * top to bottom from migration_thread():
 *
 *  1. connect: open N authenticated streams to the destination (N chosen by
 *     a short throughput probe when "auto"; streams.c), send the VM
 *     configuration, CPUID and the list of live sections, and wait for the
 *     destination to accept them (prepare).
 *  2. trace: every live section starts tracing (RAM: dirty logging with
 *     manual protect, no stall).
 *  3. pre-copy: phase -1 sends everything the live sections hold, phases
 *     0..n what changed during the previous phase. Every stream has its own
 *     helper thread (streams.c) that runs each live section on its channel
 *     (RAM, ram.c: re-protect a 2 MiB chunk, read its dirty pages, send
 *     them, zero pages as markers; a chunk always travels on one stream).
 *  4. converge: after each phase, predict the switchover time from the
 *     measured transmit rate and what the live sections still hold; stop
 *     when it fits the switchover goal (converge.c); fail cleanly at the
 *     timeout.
 *  5. SDPS: when a phase makes too little progress, throttle the vCPUs.
 *  6. switchover: stun, send the last dirty pages and the checkpoint, wait
 *     for RESTORED, send GO (the commit point), wait for RUNNING.
 *  7. anything going wrong before RESTORED: resume the source as it was.
 *     Its memory is only ever read. */
#include "migrate/migration.h"
#include "migrate/prefault.h"
#include "state/state.h"
#include "devices/virtio_dev.h"
#include "devices/virtio_net.h"
#include <poll.h>
#include "vmm/config.h"
#include "common/util.h"
#include <errno.h>
#include <limits.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

/* Guards monitor.migration and every migration's reference count. A
 * migration is freed when its last holder lets go: the monitor (until the
 * next migration replaces it), its thread, and API calls reading it. */
static pthread_mutex_t migration_ptr_lock = PTHREAD_MUTEX_INITIALIZER;

static void migration_free(struct migration *mig)
{
	json_decref(mig->phases);
	json_decref(mig->adapt_log);
	json_decref(mig->stun_retry_log);
	pthread_mutex_destroy(&mig->lock);
	pthread_cond_destroy(&mig->resolved);
	pthread_mutex_destroy(&mig->rl.lock);
	for (int i = 0; i < WIRE_MAX_STREAMS; i++)
		fair_lock_destroy(&mig->stream_lock[i]);
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

static void set_stage(struct migration *mig, const char *stage);
static int send_config(struct migration *mig);
static int live_setup(struct migration *mig);
static int precopy(struct migration *mig, bool again);
#define SWITCHOVER_AGAIN 1 /* a burst: the VM runs again for another phase */
static int switchover(struct migration *mig);
static void forward_frames(struct migration *mig);
static int send_digest(struct migration *mig);
static int in_doubt(struct migration *mig, const char *why);
static int stun_given_up(struct migration *mig, uint64_t pending, double sdps_level);
static int check_verified(struct migration *mig, const struct wire_frame *restored);
static void live_cleanup(struct migration *mig);
static void read_destination_reason(struct migration *mig);
static uint64_t live_pending(struct migration *mig);
static int live_harvest(struct migration *mig, uint64_t *pending);
static json_t *phase_json(int number, uint64_t pages, uint64_t zero, uint64_t bytes, double ms, double dirty_rate,
			  double transmit_rate);

/* ---- after the switchover: frames still coming to our taps ---- */

#define FORWARD_MAX_MS 1000   /* the whole forwarding phase, at most */
#define FORWARD_QUIET_MS 100  /* ends once no frame came for this long */

/* Frames addressed to the VM that reached this host's taps after the
 * checkpoint (the switch had not yet learned the VM's new port) go to the
 * destination instead of being lost. Best effort: the VM runs there
 * already, a failure here only ends the forwarding. */
static void forward_frames(struct migration *mig)
{
	int fds[VM_MAX_NICS];
	struct pollfd pfd[VM_MAX_NICS];
	int idx[VM_MAX_NICS], n = 0;
	uint8_t buf[4 + NET_FORWARD_FRAME_MAX];
	char err[256];

	virtio_net_forward_fds(mig->vm, fds);
	for (int i = 0; i < VM_MAX_NICS; i++)
		if (fds[i] >= 0) {
			pfd[n] = (struct pollfd){ .fd = fds[i], .events = POLLIN };
			idx[n++] = i;
		}
	uint64_t start = now_ns(), last = start;
	bool ok = true;
	while (ok && n && now_ns() - start < FORWARD_MAX_MS * 1000000ULL && now_ns() - last < FORWARD_QUIET_MS * 1000000ULL) {
		/* queue 0 wakes the loop; a multi-queue NIC's other queues are read every 10 ms too */
		poll(pfd, (nfds_t)n, 10);
		for (int k = 0; ok && k < n; k++) {
			for (int burst = 0; ok && burst < 256; burst++) {
				int len = virtio_net_forward_read(mig->vm, idx[k], buf + 4, NET_FORWARD_FRAME_MAX);
				if (len == -EAGAIN || len < 0)
					break;
				if (len == 0)
					continue;
				uint32_t nic = (uint32_t)idx[k];
				memcpy(buf, &nic, 4);
				ok = wire_send_copy(&mig->streams[0], FRAME_NET, buf, (uint32_t)len + 4, err, sizeof(err)) == 0;
				mig->net_forwarded++;
				last = now_ns();
			}
		}
	}
	if (ok)
		ok = wire_send(&mig->streams[0], FRAME_NET_END, 0, err, sizeof(err)) == 0;
	glide_log("migrate", "forwarded %llu frame(s) that reached this host after the checkpoint%s%s",
		  (unsigned long long)mig->net_forwarded, ok ? "" : "; stopped: ", ok ? "" : err);
}

/* ---- the migration, start to end ---- */

static void *migration_thread(void *arg)
{
	struct migration *mig = arg;
	struct vm *vm = mig->vm;
	bool was_paused = mig->source_was_paused;
	int count = mig->p.streams ? mig->p.streams : streams_auto_count(mig);
	bool committed = false;

	glide_log("migrate", "migrating to %s (%d address%s, streams %s, goal %llu ms, bandwidth %s, sdps %d, encrypt %d)",
		  mig->p.addrs[0], mig->p.naddrs, mig->p.naddrs > 1 ? "es" : "",
		  mig->p.streams ? "fixed" : "auto", (unsigned long long)mig->p.switchover_goal_ms,
		  mig->p.max_bandwidth ? "capped" : "unlimited", mig->p.sdps, mig->p.encrypt);
	set_stage(mig, "connecting");
	int connected = streams_connect(mig, count);
	/* The streams' keys are derived: the one-time key is not needed again. */
	explicit_bzero(mig->p.key, sizeof(mig->p.key));
	if (connected)
		goto out;
	if (!mig->p.streams && count > 1 && !mig->adaptive) {
		int n = streams_choose(mig, count);
		if (n < 0) {
			migration_fail(mig, "stream probe failed: connection lost");
			goto out;
		}
		/* Streams beyond n are done: they end with FINAL right away. */
		char err[256];
		for (int i = n; i < mig->nstreams; i++) {
			if (wire_send(&mig->streams[i], FRAME_FINAL, 0, err, sizeof(err))) {
				migration_fail(mig, "%s", err);
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
	if (live_setup(mig) || precopy(mig, false))
		goto out;
	int sw;
	while ((sw = switchover(mig)) == SWITCHOVER_AGAIN) {
		set_stage(mig, "precopy");
		if (precopy(mig, true))
			goto out;
	}
	committed = sw == 0;
	if (committed && mig->dest_forward)
		forward_frames(mig);
out:
	sdps_stop(&mig->sdps);
	/* The sections stop first: a disk's mirror may be sending on a stream
	 * (it returns within the stall timeout); none may once they are closed. */
	live_cleanup(mig);
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
	bool stopping = mig->stop_reason[0] || vm->quit, resumed = false;
	if (!committed && !stopping) {
		/* Disks handed over at GO come back before the VM writes again. */
		char lock_err[256];
		if (virtio_blk_acquire_locks(vm, lock_err, sizeof(lock_err))) {
			glide_log("migrate", "%s; the VM stays paused here: it cannot write to its disk safely", lock_err);
			was_paused = true;
			vm_pause(vm);
		}
		const char *fault = getenv("GLIDE_TEST_FAULT");
		if (fault && !strcmp(fault, "slow-resume")) /* tests: the outcome must wait for the resume */
			sleep_ns(500000000ULL);
		if (!was_paused)
			vm_resume(vm);
		resumed = true;
	}
	/* The outcome is published whole: a reader that sees "failed" also
	 * sees that the source runs again (it once saw source_resumed false). */
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
		if (resumed)
			mig->resumed_source = true;
	}
	pthread_mutex_unlock(&mig->lock);
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
		glide_log("migrate", "%s: %s; the VM keeps %s here", mig->status, mig->error, was_paused ? "paused" : "running");
	}
	/* Only now may another long operation (or a pause/resume) start. */
	monitor_op_end(mig->mon);
	migration_put(mig);
	return NULL;
}

/* ---- 1. prepare: the destination accepts the VM ---- */

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
	const struct state_section_ops *all[LIVE_SECTIONS_MAX];
	int nall = state_live_sections(all, LIVE_SECTIONS_MAX);
	mig->nlive = 0;
	for (int i = 0; i < nall; i++)
		if (!all[i]->live->needed || all[i]->live->needed(mig->p.disk_copy))
			mig->live_ops[mig->nlive++] = all[i];
	for (int i = 0; i < mig->nlive; i++)
		json_array_append_new(live, json_pack("{s:s, s:I}", "name", mig->live_ops[i]->name, "version",
						      (json_int_t)mig->live_ops[i]->version));
	msg = json_pack("{s:o, s:o, s:o, s:i, s:i}", "config", vm_config_to_json(&mig->vm->cfg), "cpuid", cpuid, "live",
			live, "protocol", WIRE_PROTOCOL_VERSION, "state_format", STATE_FORMAT_VERSION);
	if (mig->p.verify)
		json_object_set_new(msg, "verify", json_true());
	if (mig->p.disk_copy) {
		json_t *copies = json_array();
		for (int i = 0; i < VM_MAX_DISKS; i++)
			if (mig->p.disk_copy & (1u << i))
				json_array_append_new(copies, json_pack("{s:i, s:s}", "index", i, "path", mig->p.disk_to[i]));
		json_object_set_new(msg, "disk_copy", copies);
	}
	/* which 2 MiB chunks of RAM the guest ever touched: the destination
	 * makes them present before their pages arrive (prefault.c) */
	uint64_t resident = 0;
	char *map = prefault_map_build(&mig->vm->mem, &resident);
	if (map)
		json_object_set_new(msg, "resident", json_pack("{s:I, s:s}", "chunk_bytes", (json_int_t)PREFAULT_CHUNK_BYTES,
								"map", map));
	free(map);
	text = json_dumps(msg, JSON_COMPACT);
	json_decref(msg);
	rc = wire_send_copy(s0, FRAME_CONFIG, text, (uint32_t)strlen(text), err, sizeof(err));
	free(text);
	if (!rc)
		rc = wire_recv(s0, &f, err, sizeof(err));
	if (rc) {
		migration_fail(mig, "destination: %s", err);
		return rc;
	}
	if (f.type != FRAME_CONFIG_OK) {
		json_t *j = json_loadb((char *)f.payload, f.len, 0, NULL);
		json_t *e = j ? json_object_get(j, "error") : NULL;
		migration_fail(mig, "destination refused the VM: %s", json_is_string(e) ? json_string_value(e) : "unknown reason");
		json_decref(j);
		return -EPROTO;
	}
	if (mig->p.verify) {
		json_t *j = json_loadb((char *)f.payload, f.len, 0, NULL);
		bool can = json_is_true(json_object_get(j, "verify"));
		json_decref(j);
		if (!can) {
			migration_fail(mig, "the destination cannot verify memory (an older glide): migrate without --verify");
			return -EPROTONOSUPPORT;
		}
	}
	return 0;
}

/* ---- 2. trace, 3-5. pre-copy, converge, SDPS ---- */

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
			migration_fail(mig, "%s: %s", mig->live_ops[i]->name, err);
			return rc;
		}
	}
	*pending = live_pending(mig);
	return 0;
}

/* What is left to send, for a message: "7937 pages left" with RAM alone
 * (the unit everyone knows), else per live section ("32.1 MiB left: ram
 * 0.1 MiB, disk 32.0 MiB"): a disk's blocks are no pages. */
static void describe_pending(struct migration *mig, uint64_t total, char *buf, size_t len)
{
	if (mig->nlive <= 1) {
		snprintf(buf, len, "%llu pages left", (unsigned long long)(total / GUEST_PAGE_SIZE));
		return;
	}
	size_t n = (size_t)snprintf(buf, len, "%.1f MiB left:", total / 1048576.0);
	for (int i = 0; i < mig->nlive && n < len; i++)
		n += (size_t)snprintf(buf + n, len - n, "%s %s %.1f MiB", i ? "," : "", mig->live_ops[i]->name,
				      mig->live_ops[i]->live->pending(&mig->live[i]) / 1048576.0);
}

static void live_link_fail(struct live_link *l, const char *section, const char *why)
{
	migration_fail(l->owner, "%s: %s", section, why);
}

static int live_setup(struct migration *mig)
{
	char err[256];
	mig->link = (struct live_link){ .streams = mig->streams, .locks = mig->stream_lock, .count = mig->nstreams,
					.rl = &mig->rl, .cancel = &mig->cancel, .failed = &mig->failed,
					.wire_bytes = &mig->bytes_sent, .fail = live_link_fail, .owner = mig };
	for (int i = 0; i < mig->nlive; i++) {
		mig->live[i] = (struct live_source){ .vm = mig->vm, .link = &mig->link, .id = (uint32_t)i, .tracing = true,
						     .compress = mig->p.compress, .disk_copy = mig->p.disk_copy };
		int rc = mig->live_ops[i]->live->setup(&mig->live[i], err, sizeof(err));
		if (rc) {
			migration_fail(mig, "%s: %s", mig->live_ops[i]->name, err);
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

/* Waits until the bandwidth cap has let go of what was sent. rate_limit
 * lets a frame start at once and makes the next one wait for its time, so
 * a pass's last frames go out on credit. A phase ends only once that time
 * is over: its transmit rate is then the cap's (without this, a phase of
 * one 1 MiB disk frame at 2 MiB/s took 78 ms and measured 6.1 MB/s), its
 * dirty set includes that time, and the final pass does not pay the
 * credit inside the stun (which took 532 ms against a goal of 500 ms and
 * a predicted 88 ms). */
static void wait_cap_credit(struct migration *mig)
{
	struct rate_limiter *r = &mig->rl;
	/* what was sent until now: a mirror's writes sent meanwhile are the next phase's */
	pthread_mutex_lock(&r->lock);
	uint64_t until = r->next_ns;
	pthread_mutex_unlock(&r->lock);
	while (r->bytes_per_s && !mig->cancel && !mig->failed) {
		uint64_t now = now_ns();
		if (until <= now)
			break;
		sleep_ns(MIN(until - now, 10000000ULL)); /* a cancel is seen within 10 ms */
	}
}

/* Phases until the rest fits the switchover goal; again: after a stun
 * given up for a burst, the phases go on from the last one. */
static int precopy(struct migration *mig, bool again)
{
	uint64_t to_send = live_pending(mig), prev_sent = UINT64_MAX;

	for (mig->phase = again ? mig->phase + 1 : -1;; mig->phase++) {
		uint64_t t0 = now_ns(), b0 = mig->bytes_sent, p0 = mig->pages_sent, z0 = mig->zero_pages, dirty;
		pthread_mutex_lock(&mig->lock);
		mig->phase_bytes = to_send;
		mig->phase_sent = 0;
		pthread_mutex_unlock(&mig->lock);
		if (streams_send_pass(mig, false))
			return -1;
		if (mig->adaptive && streams_adapt_done(mig)) /* pass -1 chose the count */
			return -1;
		wait_cap_credit(mig);
		if (mig->cancel || live_harvest(mig, &dirty))
			return -1;
		struct phase_stats ps = { .phase = mig->phase, .sent = to_send, .prev_sent = prev_sent, .dirty = dirty,
					  .seconds = MAX((now_ns() - t0) / 1e9, 1e-6),
					  .wire_bytes = (double)(mig->bytes_sent - b0) };
		double tx = ps.wire_bytes / ps.seconds, dr = (double)dirty / ps.seconds;
		if (ps.wire_bytes >= mig->link_rate_bytes) {
			mig->link_rate_bytes = ps.wire_bytes;
			mig->link_rate = tx;
		}
		double predicted_ms = converge_predict_ms(dirty, MAX(tx, mig->link_rate));
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
			char left[160];
			describe_pending(mig, dirty, left, sizeof(left));
			migration_fail(mig, "did not converge within %llu s (dirty rate %.1f MB/s, transmit rate %.1f MB/s, %s%s)",
			     (unsigned long long)mig->p.timeout_s, dr / 1e6, tx / 1e6, left,
			     mig->p.sdps == SDPS_OFF ? "; SDPS is off" : "");
			return -1;
		}
		if (d == CONVERGE_GIVE_UP) {
			migration_fail(mig, "did not converge after %d phases", MIGRATION_PHASES_MAX);
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

/* ---- 6. switchover ---- */

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
	/* SDPS goes on until the VM is paused: the guest must not dirty at
	 * full speed while the stun waits for the cap (its sleeps end at once
	 * when the pause comes). */
	double sdps_level = mig->sdps.level;
	/* A disk's mirror may have taken the cap's time ahead (disk.c): from
	 * now on it waits in line, and the stun starts once that time is over,
	 * so that the final pass does not wait for it inside the stun. */
	pthread_mutex_lock(&mig->rl.lock);
	mig->rl.in_line = true;
	pthread_mutex_unlock(&mig->rl.lock);
	wait_cap_credit(mig);
	const char *fault = getenv("GLIDE_TEST_FAULT");
	if (fault && !strcmp(fault, "stun-burst") && !mig->stun_retries)
		sleep_ns(300000000ULL); /* tests: the guest dirties on after the decision, a burst */
	mig->stun_start_ns = now_ns();
	if (vm_pause(mig->vm)) {
		migration_fail(mig, "the VM shut down during migration");
		return -1;
	}
	sdps_stop(&mig->sdps);
	/* A point in guest time inside the stun, so that a guest's own trace
	 * (the test guests' heartbeat gap) can be matched to this switchover. */
	if (vm_guest_tsc(mig->vm, &mig->stun_guest_tsc))
		mig->stun_guest_tsc = 0;
	t0 = now_ns(), b0 = mig->bytes_sent, p0 = mig->pages_sent, z0 = mig->zero_pages;
	if (live_harvest(mig, &dirty))
		return -1;
	/* The goal is a budget: a burst since the deciding phase that would
	 * overshoot it is sent while the VM runs, not inside the stun. */
	if (!mig->source_was_paused &&
	    converge_stun_overshoots(dirty, MAX(mig->transmit_rate, mig->link_rate), mig->p.switchover_goal_ms,
				     mig->stun_retries))
		return stun_given_up(mig, dirty, sdps_level);
	mig->phase++;
	pthread_mutex_lock(&mig->lock);
	mig->phase_bytes = dirty;
	mig->phase_sent = 0;
	pthread_mutex_unlock(&mig->lock);
	if (streams_send_pass(mig, true))
		return -1;
	rc = state_save_all(mig->vm, &w, true);
	if (rc || blob.failed || blob.len > WIRE_FRAME_MAX_PAYLOAD) {
		migration_fail(mig, "capturing the VM state failed: %s", rc ? strerror(-rc) : "too large");
		sbuf_free(&blob);
		return -1;
	}
	rc = wire_send_copy(s0, FRAME_STATE, blob.data, (uint32_t)blob.len, err, sizeof(err));
	__atomic_add_fetch(&mig->bytes_sent, blob.len, __ATOMIC_RELAXED);
	sbuf_free(&blob);
	if (!rc && mig->p.verify && send_digest(mig))
		return -1;
	double secs = MAX((now_ns() - t0) / 1e9, 1e-6);
	pthread_mutex_lock(&mig->lock);
	json_array_append_new(mig->phases, phase_json(mig->phase, mig->pages_sent - p0, mig->zero_pages - z0,
						      mig->bytes_sent - b0, secs * 1000, 0,
						      (double)(mig->bytes_sent - b0) / secs));
	pthread_mutex_unlock(&mig->lock);
	if (!rc)
		rc = wire_recv(s0, &f, err, sizeof(err));
	if (rc) {
		migration_fail(mig, "switchover: %s", err);
		return -1;
	}
	if (f.type != FRAME_RESTORED) {
		json_t *j = json_loadb((char *)f.payload, f.len, 0, NULL);
		json_t *e = j ? json_object_get(j, "error") : NULL;
		migration_fail(mig, "destination could not restore the VM: %s", json_is_string(e) ? json_string_value(e) : wire_frame_name(f.type));
		json_decref(j);
		return -1;
	}
	if (mig->p.verify && check_verified(mig, &f))
		return -1;
	/* Commit point: from here the destination owns the VM. GO says whether
	 * it runs or stays paused, as it was here before the migration. */
	char go[32];
	int golen = snprintf(go, sizeof(go), "{\"paused\":%s}", mig->source_was_paused ? "true" : "false");
	pthread_mutex_lock(&mig->lock);
	mig->stage = "released";
	pthread_mutex_unlock(&mig->lock);
	/* From the first byte of GO on, the destination may run the VM: the
	 * source may resume only when it knows the destination does not. Its
	 * shared writable disks are flushed and their locks let go for the
	 * destination; a copied disk keeps both (the destination has its own
	 * file: a flush here would only lengthen the stun). */
	virtio_blk_release_locks(mig->vm, mig->p.disk_copy);
	rc = wire_send_copy(s0, FRAME_GO, go, (uint32_t)golen, err, sizeof(err));
	if (rc)
		return in_doubt(mig, err);
	mig->resumed_source = false;
	rc = wire_recv(s0, &f, err, sizeof(err));
	if (!rc && f.type == FRAME_ABORT) {
		/* the destination discards the VM: GO failed its check, or it could not start the VM */
		json_t *j = json_loadb((char *)f.payload, f.len, 0, NULL);
		json_t *e = j ? json_object_get(j, "error") : NULL;
		migration_fail(mig, "the destination discarded the VM after GO: %s",
			       json_is_string(e) ? json_string_value(e) : "no reason");
		json_decref(j);
		return -1;
	}
	if (rc || f.type != FRAME_RUNNING)
		return in_doubt(mig, rc ? err : "the destination answered GO with a frame other than RUNNING");
	json_t *j = json_loadb((char *)f.payload, f.len, 0, NULL);
	mig->dest_restore_ms = j ? json_real_value(json_object_get(j, "restore_ms")) : 0;
	mig->dest_forward = j && json_is_true(json_object_get(j, "forward"));
	json_decref(j);
	mig->stun_end_ns = now_ns();
	return 0;
}

/* At the stun, the pending set would overshoot the goal: the VM runs on
 * (SDPS as it was), and the migration goes back to pre-copy. What was
 * harvested stays pending for the next phase. */
static int stun_given_up(struct migration *mig, uint64_t pending, double sdps_level)
{
	double predicted = converge_predict_ms(pending, MAX(mig->transmit_rate, mig->link_rate));
	pthread_mutex_lock(&mig->rl.lock);
	mig->rl.in_line = false;
	pthread_mutex_unlock(&mig->rl.lock);
	vm_resume(mig->vm);
	double paused_ms = (now_ns() - mig->stun_start_ns) / 1e6;
	sdps_set_level(&mig->sdps, sdps_level);
	pthread_mutex_lock(&mig->lock);
	mig->stun_retries++;
	mig->stun_start_ns = 0;
	mig->predicted_stun_ms = predicted;
	json_array_append_new(mig->stun_retry_log, json_pack("{s:i, s:I, s:f, s:f}", "after_phase", mig->phase,
							     "pending_bytes", (json_int_t)pending, "predicted_ms", predicted,
							     "paused_ms", paused_ms));
	pthread_mutex_unlock(&mig->lock);
	glide_log("migrate", "switchover: %.1f MB pending would take %.1f ms, over the %llu ms goal: the VM runs on "
		  "for another phase (paused %.2f ms; retry %d of %d)", pending / 1e6, predicted,
		  (unsigned long long)mig->p.switchover_goal_ms, paused_ms, mig->stun_retries, STUN_RETRIES_MAX);
	return SWITCHOVER_AGAIN;
}

/* GO went out (or may have), RUNNING did not come back: the destination
 * either runs the VM (it got GO) or never will (it did not, and discards
 * its copy once its own wait for GO fails). Only someone who can see the
 * destination can tell which, so the VM stays paused here, neither
 * resumed nor released, until POST /v1/migration/resolve says where it
 * lives: "there" (the destination runs it: release) or "here" (the
 * destination is gone: resume). `glide migrate resolve` and the
 * controller decide it from the destination's state. Returns 0 for
 * "there" (committed), -1 for "here" or when the monitor stops. */
static int in_doubt(struct migration *mig, const char *why)
{
	struct vm *vm = mig->vm;
	char reason[256];

	snprintf(reason, sizeof(reason), "%s", why);
	pthread_mutex_lock(&mig->lock);
	mig->status = "in-doubt";
	mig->stage = "in-doubt";
	snprintf(mig->error, sizeof(mig->error), "in doubt after GO: %s; the VM is paused here until `glide migrate "
		 "resolve` says whether the destination runs it", reason);
	pthread_mutex_unlock(&mig->lock);
	glide_log("migrate", "IN DOUBT: GO was sent but RUNNING did not come back (%s); the VM stays paused here until "
		  "resolved (glide migrate resolve)", reason);
	pthread_mutex_lock(&mig->lock);
	while (!mig->keep && !mig->stop_reason[0] && !vm->quit) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 100000000;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		pthread_cond_timedwait(&mig->resolved, &mig->lock, &ts);
	}
	const char *keep = mig->keep;
	mig->status = "running"; /* until the migration thread settles it */
	pthread_mutex_unlock(&mig->lock);
	if (keep && !strcmp(keep, "there")) {
		glide_log("migrate", "resolved: the destination runs the VM; releasing it here");
		pthread_mutex_lock(&mig->lock);
		snprintf(mig->error, sizeof(mig->error), "%s", "");
		pthread_mutex_unlock(&mig->lock);
		mig->resumed_source = false;
		mig->stun_end_ns = now_ns();
		mig->resolved_in_doubt = true;
		return 0;
	}
	pthread_mutex_lock(&mig->lock);
	snprintf(mig->error, sizeof(mig->error), "in doubt after GO (%s); %s", reason,
		 keep ? "resolved: the destination does not run the VM, it stays here" : "the monitor is stopping");
	pthread_mutex_unlock(&mig->lock);
	mig->failed = true;
	return -1;
}

/* --verify, while stunned: a digest of all RAM as it is now (it cannot
 * change until GO or a resume), sent after STATE. The destination hashes
 * its copy meanwhile and compares before it answers RESTORED. */
static int send_digest(struct migration *mig)
{
	struct ram_digest d;
	char err[512];
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);

	if (ram_digest_compute(&mig->vm->mem, (int)MAX(cpus, 1L), &d)) {
		migration_fail(mig, "verify: out of memory for the RAM digest");
		return -1;
	}
	uint64_t len = ram_digest_wire_bytes(&d);
	if (len > WIRE_FRAME_MAX_PAYLOAD) {
		migration_fail(mig, "verify: the RAM digest (%llu bytes) does not fit a frame", (unsigned long long)len);
		ram_digest_free(&d);
		return -1;
	}
	ram_digest_to_wire(&d, wire_tx_payload(&mig->streams[0]));
	pthread_mutex_lock(&mig->lock);
	ram_digest_hex(&d, mig->digest);
	mig->verify_source_ms = d.ms;
	mig->verify_chunks = d.nchunks;
	mig->verify_read_chunks = d.read_chunks;
	pthread_mutex_unlock(&mig->lock);
	ram_digest_free(&d);
	glide_log("migrate", "verify: RAM digest %s in %.1f ms (%llu of %llu chunks read)", mig->digest,
		  mig->verify_source_ms, (unsigned long long)mig->verify_read_chunks,
		  (unsigned long long)mig->verify_chunks);
	if (wire_send(&mig->streams[0], FRAME_VERIFY, (uint32_t)len, err, sizeof(err))) {
		migration_fail(mig, "switchover: %s", err);
		return -1;
	}
	__atomic_add_fetch(&mig->bytes_sent, len, __ATOMIC_RELAXED);
	/* each copied disk as the final pass left it (the destination hashes its
	 * copy meanwhile and says its digest in RESTORED) */
	uint64_t t0 = now_ns();
	for (int i = 0; i < VM_MAX_DISKS; i++) {
		int fd;
		uint64_t bytes, read = 0;
		double ms;
		if (!(mig->p.disk_copy & (1u << i)))
			continue;
		int rc = virtio_blk_file(mig->vm, i, &fd, &bytes, NULL, 0);
		if (!rc)
			rc = disk_digest_compute(fd, bytes, mig->disk_digest[i], &ms, &read);
		if (rc) {
			migration_fail(mig, "verify: disk %d's digest: %s", i, strerror(-rc));
			return -1;
		}
		glide_log("migrate", "verify: disk %d digest %s in %.1f ms (%llu bytes read)", i, mig->disk_digest[i], ms,
			  (unsigned long long)read);
	}
	pthread_mutex_lock(&mig->lock);
	mig->disk_digest_ms = (now_ns() - t0) / 1e6;
	pthread_mutex_unlock(&mig->lock);
	return 0;
}

/* RESTORED says {"verify": {"digest": ..., "ms": ...}}: the destination's
 * digest, which it found equal to ours. Checked here too. */
static int check_verified(struct migration *mig, const struct wire_frame *restored)
{
	json_t *j = json_loadb((char *)restored->payload, restored->len, 0, NULL);
	json_t *v = json_object_get(j, "verify");
	const char *digest = json_string_value(json_object_get(v, "digest"));
	bool same = digest && !strcmp(digest, mig->digest);

	/* each copied disk: the destination's digest of its copy, {index, digest} in "disks" */
	int bad_disk = -1;
	const char *theirs = NULL;
	for (int i = 0; same && i < VM_MAX_DISKS; i++) {
		if (!(mig->p.disk_copy & (1u << i)))
			continue;
		size_t k;
		json_t *e;
		theirs = NULL;
		json_array_foreach(json_object_get(v, "disks"), k, e)
			if (json_integer_value(json_object_get(e, "index")) == i)
				theirs = json_string_value(json_object_get(e, "digest"));
		if (!theirs || strcmp(theirs, mig->disk_digest[i]))
			bad_disk = i;
		if (bad_disk >= 0)
			break;
	}
	pthread_mutex_lock(&mig->lock);
	mig->verified = same && bad_disk < 0;
	mig->disks_verified = mig->p.disk_copy && same && bad_disk < 0;
	mig->verify_dest_ms = json_real_value(json_object_get(v, "ms"));
	pthread_mutex_unlock(&mig->lock);
	if (!same)
		migration_fail(mig, "verify: the destination's RAM digest %s is not ours (%s)", digest ? digest : "(none)",
			       mig->digest);
	else if (bad_disk >= 0)
		migration_fail(mig, "verify: disk %d's copy on the destination differs from the source (its digest %s, ours %s)",
			       bad_disk, theirs ? theirs : "(none: an older glide)", mig->disk_digest[bad_disk]);
	json_decref(j);
	return same && bad_disk < 0 ? 0 : -1;
}

/* ---- 7. failure, progress ---- */

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

static void set_stage(struct migration *mig, const char *stage)
{
	pthread_mutex_lock(&mig->lock);
	mig->stage = stage;
	pthread_mutex_unlock(&mig->lock);
}

void migration_fail(struct migration *mig, const char *fmt, ...)
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

static json_t *phase_json(int number, uint64_t pages, uint64_t zero, uint64_t bytes, double ms, double dirty_rate,
			  double transmit_rate)
{
	return json_pack("{s:i, s:I, s:I, s:I, s:f, s:f, s:f}", "number", number, "pages", (json_int_t)pages,
			 "zero_pages", (json_int_t)zero, "bytes", (json_int_t)bytes, "duration_ms", ms, "dirty_rate",
			 dirty_rate, "transmit_rate", transmit_rate);
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
	if (mig->adapt_log) /* "auto" found its stream count in pass -1: what each count did */
		json_object_set_new(j, "streams_tried", json_deep_copy(mig->adapt_log));
	json_object_set_new(j, "stall_timeout_s", json_real(mig->p.stall_timeout_ms / 1e3));
	json_object_set_new(j, "sdps", json_pack("{s:s, s:f, s:f, s:f, s:f, s:f, s:I}", "mode",
						 mig->p.sdps == SDPS_OFF ? "off" : mig->p.sdps == SDPS_ALWAYS ? "always" : "dynamic",
						 "level", mig->sdps.level, "max_level", mig->sdps.max_level,
						 "guest_time_ms", sdps_guest_time_ns(&mig->sdps) / 1e6,
						 "longest_stall_ms", sdps_longest_stall_ns(&mig->sdps) / 1e6,
						 "achieved_level", sdps_achieved_level(&mig->sdps),
						 "late_kicks", (json_int_t)sdps_late_kicks(&mig->sdps)));
	json_object_set_new(j, "iteration", json_integer(mig->phase + 1));
	/* stuns given up because a burst would have overshot the goal */
	json_object_set_new(j, "stun_retries", json_deep_copy(mig->stun_retry_log));
	json_object_set_new(j, "phase_pages", json_integer((json_int_t)(mig->phase_bytes / GUEST_PAGE_SIZE)));
	json_object_set_new(j, "compress", json_string(mig->p.compress ? "lz4" : "off"));
	if (mig->resolved_in_doubt)
		json_object_set_new(j, "in_doubt_resolved", json_true());
	if (mig->p.verify) {
		json_object_set_new(j, "verified", json_boolean(mig->verified));
		json_object_set_new(j, "verify", json_pack("{s:s, s:I, s:I, s:f, s:f}", "digest", mig->digest, "chunks",
							   (json_int_t)mig->verify_chunks, "chunks_read",
							   (json_int_t)mig->verify_read_chunks, "source_ms",
							   mig->verify_source_ms, "destination_ms", mig->verify_dest_ms));
		if (mig->p.disk_copy) {
			json_t *disks = json_array();
			for (int i = 0; i < VM_MAX_DISKS; i++)
				if (mig->p.disk_copy & (1u << i))
					json_array_append_new(disks, json_pack("{s:i, s:s}", "index", i, "digest", mig->disk_digest[i]));
			json_t *vj = json_object_get(j, "verify");
			json_object_set_new(vj, "disks", disks);
			json_object_set_new(vj, "disks_verified", json_boolean(mig->disks_verified));
			json_object_set_new(vj, "disks_source_ms", json_real(mig->disk_digest_ms));
		}
	}
	json_object_set_new(j, "compressed_pages", json_integer((json_int_t)mig->compressed_pages));
	if (mig->p.disk_copy) {
		json_t *to = json_array();
		for (int i = 0; i < VM_MAX_DISKS; i++)
			if (mig->p.disk_copy & (1u << i))
				json_array_append_new(to, json_pack("{s:i, s:s}", "index", i, "path", mig->p.disk_to[i]));
		/* blocks_sent: by the bulk copy; mirrored: guest writes sent at
		 * once, waited for, and what the waits cost the guest */
		struct live_link *l = &mig->link;
		uint64_t n = __atomic_load_n(&l->mirrored_writes, __ATOMIC_RELAXED);
		json_object_set_new(j, "disk_copy", json_pack("{s:o, s:I, s:I, s:I, s:I, s:f, s:f, s:f}", "disks", to,
			"blocks_sent", (json_int_t)mig->disk_blocks, "zero_blocks", (json_int_t)mig->disk_zero_blocks,
			"mirrored_writes", (json_int_t)n, "mirrored_blocks",
			(json_int_t)__atomic_load_n(&l->mirrored_blocks, __ATOMIC_RELAXED), "mirror_wait_avg_ms",
			n ? __atomic_load_n(&l->mirror_wait_ns, __ATOMIC_RELAXED) / 1e6 / (double)n : 0.0,
			"mirror_wait_max_ms", __atomic_load_n(&l->mirror_wait_max_ns, __ATOMIC_RELAXED) / 1e6,
			"mirror_queue_max_ms", __atomic_load_n(&l->mirror_queue_max_ns, __ATOMIC_RELAXED) / 1e6));
	}
	json_object_set_new(j, "switchover_goal_ms", json_integer((json_int_t)mig->p.switchover_goal_ms));
	json_object_set_new(j, "max_bandwidth", json_integer((json_int_t)mig->p.max_bandwidth));
	if (mig->dest_restore_ms)
		json_object_set_new(j, "dest_restore_ms", json_real(mig->dest_restore_ms));
	if (mig->dest_forward)
		json_object_set_new(j, "net_forwarded", json_integer((json_int_t)mig->net_forwarded));
	if (mig->stun_end_ns && mig->stun_guest_tsc)
		json_object_set_new(j, "stun_guest_tsc", json_integer((json_int_t)mig->stun_guest_tsc));
	if (mig->error[0])
		json_object_set_new(j, "error", json_string(mig->error));
	json_object_set_new(j, "source_resumed", json_boolean(mig->resumed_source));
	pthread_mutex_unlock(&mig->lock);
	return j;
}

static bool migration_active(struct migration *mig)
{
	return mig && (!strcmp(mig->status, "running") || !strcmp(mig->status, "in-doubt"));
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
	char key_file[PATH_MAX];
	if (migration_request_parse(req->body, &mig->p, key_file, sizeof(key_file), err, sizeof(err)) ||
	    read_key_file(key_file, mig->p.key, err, sizeof(err))) {
		explicit_bzero(mig, sizeof(*mig));
		free(mig);
		*resp = http_error("%s", err);
		return 400;
	}
	for (int i = 0; i < VM_MAX_DISKS; i++)
		if ((mig->p.disk_copy & (1u << i)) && i >= m->vm.cfg.ndisks) {
			explicit_bzero(mig, sizeof(*mig));
			free(mig);
			*resp = http_error("\"disk_to\" names disk %d; the VM has %d disk(s)", i, m->vm.cfg.ndisks);
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
	mig->stun_retry_log = json_array();
	mig->start_ns = now_ns();
	pthread_mutex_init(&mig->lock, NULL);
	pthread_cond_init(&mig->resolved, NULL);
	pthread_mutex_init(&mig->rl.lock, NULL);
	mig->rl.bytes_per_s = mig->p.max_bandwidth;
	for (int i = 0; i < WIRE_MAX_STREAMS; i++) {
		mig->streams[i].fd = -1;
		fair_lock_init(&mig->stream_lock[i]);
	}
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
	uint64_t want = 0;
	int rc = http_query_uint(req, "id", 1, INT_MAX, &want);
	if (rc == -EINVAL) {
		*resp = http_error("?id= must be a migration id (1, 2, ...), got '%.40s'", http_query(req, "id"));
		return 400;
	}
	pthread_mutex_lock(&migration_ptr_lock);
	struct migration *mig = m->migration;
	if (!mig) {
		pthread_mutex_unlock(&migration_ptr_lock);
		*resp = http_error("no migration has been started on this VM");
		return 404;
	}
	if (rc == 0 && want != (uint64_t)mig->id) {
		pthread_mutex_unlock(&migration_ptr_lock);
		*resp = http_error("migration %llu is not this VM's latest migration (that is %d)", (unsigned long long)want,
				   mig->id);
		return 404;
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
	if (!strcmp(mig->stage, "in-doubt")) {
		migration_put(mig);
		*resp = http_error("the migration is in doubt (GO was sent): resolve it with `glide migrate resolve`, "
				   "which looks at the destination");
		return 409;
	}
	cancel_streams(mig);
	for (int i = 0; i < 3000 && migration_active(mig); i++)
		sleep_ns(1000000);
	*resp = migration_json(mig);
	migration_put(mig);
	return 200;
}

/* POST /v1/migration/resolve {"keep": "here"|"there"}: settles an in-doubt
 * switchover. "there" only when the destination runs the VM, "here" only
 * when it does not and never will (its process is gone, or its migration
 * failed): the caller looked. */
int migrate_api_resolve(void *ctx, const struct http_request *req, json_t **resp)
{
	struct monitor *m = ctx;
	const char *keep = json_string_value(json_object_get(req->body, "keep"));
	const char *k = keep && !strcmp(keep, "here") ? "here" : keep && !strcmp(keep, "there") ? "there" : NULL;

	if (!k) {
		*resp = http_error("resolve needs {\"keep\": \"here\"} (the destination does not run the VM) or "
				   "{\"keep\": \"there\"} (it does)");
		return 400;
	}
	struct migration *mig = migration_get(m);
	if (mig)
		pthread_mutex_lock(&mig->lock);
	if (!mig || strcmp(mig->stage, "in-doubt")) {
		*resp = mig ? http_error("no migration is in doubt here (the latest one is %s)", mig->status)
			    : http_error("no migration is in doubt here (there was none)");
		if (mig)
			pthread_mutex_unlock(&mig->lock);
		migration_put(mig);
		return 409;
	}
	mig->keep = k;
	pthread_cond_broadcast(&mig->resolved);
	pthread_mutex_unlock(&mig->lock);
	glide_log("migrate", "in-doubt migration %d resolved through the API: keep the VM %s", mig->id, k);
	for (int i = 0; i < 5000 && migration_active(mig); i++)
		sleep_ns(1000000);
	pthread_mutex_lock(&migration_ptr_lock);
	*resp = migration_json(mig);
	if (!migration_active(mig)) /* this answer delivers the result: a released monitor may exit */
		mig->result_served = true;
	pthread_mutex_unlock(&migration_ptr_lock);
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
