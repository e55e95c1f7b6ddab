/* Migration tasks (`glide vm migrate VM --to HOST`), seed 002 end to end
 * from the controller's seat:
 *   1. check compatibility with fresh facts from both hosts; refuse with
 *      every reason before anything moves (the refusal is a failed task);
 *   2. lock the VM's configuration (vms.locked_by) for the task's life;
 *   3. wait for a slot: at most N concurrent migrations per host;
 *   4. build the migration spec with a one-time 256-bit key: the
 *      destination agent prepares the masked VM and says where it listens,
 *      the source agent starts the migration in the VM's monitor;
 *   5. follow progress into the task; if the destination host stops
 *      answering, cancel (the source keeps the VM, nothing is lost);
 *   6. on success the inventory moves the VM; on failure the destination's
 *      prepared VM is discarded and the VM stays where it was.
 * A powered-off VM moves cold: its configuration is registered on the
 * destination and removed from the source; with --with-storage (also a
 * suspended VM) its files are copied first (run_cold_storage).
 *
 * With storage (`--with-storage [--datastore NAME]`, shared-nothing): the
 * compatibility check wants the source to see each disk and the
 * destination's datastore to have the space for their allocated bytes; the
 * destination's agent names the copies (DATASTORE/VM-diskN.img) and its
 * monitor creates them; the source's monitor copies each disk along with
 * memory (the "disk" live section). On success the inventory takes the new
 * paths and the source's agent removes the old files that lie in one of
 * its datastores (others are kept and listed); on failure the destination's
 * monitor removes its partial copies and the VM runs on its own disks. */
#include "center/center.h"
#include "api/http.h"
#include "common/util.h"
#include <errno.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct migrate_job {
	struct center *c;
	int64_t task;
	json_t *vm, *src, *dst;   /* inventory rows */
	json_t *params;           /* migration options, checked (center_migrate_request_parse) */
	json_t *src_facts;
	json_t *netcheck;         /* the network check this migration ran (a new host pair), or NULL */
	json_t *network;          /* {service, addresses}: the interfaces the move used */
	bool live;
	bool with_storage;        /* the disks are copied (shared-nothing) */
	struct compat_storage storage; /* with_storage: the datastore chosen, the bytes needed */
	char datastore[64];       /* with_storage: the one asked for ("" none) */
	json_t *disk_to;          /* with_storage: the copies' paths on the destination */
};


static const char *s(json_t *o, const char *k)
{
	const char *v = json_string_value(json_object_get(o, k));
	return v ? v : "";
}

static void job_free(struct migrate_job *j)
{
	json_decref(j->vm);
	json_decref(j->src);
	json_decref(j->dst);
	json_decref(j->params);
	json_decref(j->src_facts);
	json_decref(j->netcheck);
	json_decref(j->network);
	json_decref(j->disk_to);
	free(j);
}

static double progress_of(json_t *st, uint64_t memory)
{
	const char *stage = s(st, "stage");
	double phase = json_number_value(json_object_get(st, "phase"));
	double rem = json_number_value(json_object_get(st, "remaining_pages"));
	double pp = json_number_value(json_object_get(st, "phase_pages"));
	if (!strcmp(stage, "switchover") || !strcmp(stage, "released"))
		return 0.97;
	if (phase < 0)
		return 0.05 + 0.75 * (pp > 0 ? 1.0 - rem / pp : 0);
	return MIN(0.95, 0.8 + (phase + 1) * 0.015);
}

static void finish(struct migrate_job *j, bool ok, const char *msg, json_t *result)
{
	struct center *c = j->c;
	if (!result && (j->netcheck || j->network))
		result = json_object();
	if (j->netcheck && json_is_object(result))
		json_object_set(result, "netcheck", j->netcheck);
	if (j->network && json_is_object(result))
		json_object_set(result, "network", j->network);
	pthread_mutex_lock(&c->lock);
	task_finish(c, j->task, ok, msg, result);
	inv_vm_unlock_task(c, json_integer_value(json_object_get(j->vm, "id")), j->task);
	pthread_mutex_unlock(&c->lock);
	json_decref(result);
}

/* Where a VM is, as one host's agent sees it: what its monitor says now. */
enum where { WHERE_RUNS, WHERE_MASKED, WHERE_GONE, WHERE_UNKNOWN, WHERE_DISCARDED };

static enum where vm_on(json_t *host, const char *name, char *state, size_t slen, char *why, size_t wlen)
{
	char path[192];
	json_t *r = NULL;
	enum where w = WHERE_UNKNOWN;
	state[0] = 0;
	http_path(path, sizeof(path), "/v1/vms/", name, "?monitor=1");
	int code = host_call(host, "GET", path, NULL, &r, 5000, why, wlen);
	if (code == 404) {
		snprintf(state, slen, "absent");
		w = WHERE_GONE;
	} else if (code == 200) {
		const char *ms = json_string_value(json_object_get(r, "monitor_state"));
		if (!ms) {
			errf(why, wlen, "host %s: %s", s(host, "name"),
			     s(r, "monitor_error")[0] ? s(r, "monitor_error") : "its agent does not report the monitor's state");
		} else {
			snprintf(state, slen, "%s", !strcmp(ms, "none") ? "off" : ms);
			if (!strcmp(ms, "running") || !strcmp(ms, "paused"))
				w = WHERE_RUNS;
			else if (!strcmp(ms, "incoming"))
				w = WHERE_MASKED;
			else if (!strcmp(ms, "none") || !strcmp(ms, "migrated") || !strcmp(ms, "shutdown"))
				w = WHERE_GONE;
			else
				errf(why, wlen, "host %s: its monitor is %s", s(host, "name"), ms);
		}
	}
	json_decref(r);
	return w;
}

/* Discards the destination's prepared VM; the agent only discards one that
 * still waits masked (incoming) and refuses one that runs. 0 when discarded. */
static int discard_destination(struct migrate_job *j, char *err, size_t errlen)
{
	char path[160];
	http_path(path, sizeof(path), "/v1/vms/", s(j->vm, "name"), NULL);
	int code = host_call(j->dst, "DELETE", path, NULL, NULL, 0, err, errlen);
	return code == 200 || code == 404 ? 0 : -1;
}

/* The VM runs on the destination: record it there (host, monitor API
 * socket, state) before the task says succeeded, confirm the arrival and let
 * the source forget it. note: why success was established another way. */
static void arrived(struct migrate_job *j, json_t *st, const char *dst_api_hint, const char *note)
{
	struct center *c = j->c;
	const char *name = s(j->vm, "name"), *sname = s(j->src, "name"), *dname = s(j->dst, "name");
	char path[160], err[512], msg[1600], dst_api[512], state[16] = "running";
	json_t *arr = NULL;

	snprintf(dst_api, sizeof(dst_api), "%s", dst_api_hint ? dst_api_hint : "");
	http_path(path, sizeof(path), "/v1/vms/", name, "/arrived");
	if (host_call(j->dst, "POST", path, NULL, &arr, 0, err, sizeof(err)) == 200) {
		if (json_string_length(json_object_get(arr, "api")))
			snprintf(dst_api, sizeof(dst_api), "%s", s(arr, "api"));
		if (!strcmp(s(arr, "state"), "paused"))
			snprintf(state, sizeof(state), "paused");
	}
	json_decref(arr);
	json_t *moved_disks = NULL;
	if (j->disk_to) { /* the VM now runs on the copies */
		moved_disks = inv_vm_array(j->vm, "disks");
		size_t i;
		json_t *d;
		json_array_foreach(moved_disks, i, d)
			json_object_set(d, "path", json_array_get(j->disk_to, i));
	}
	pthread_mutex_lock(&c->lock);
	inv_vm_set_location(c, json_integer_value(json_object_get(j->vm, "id")), json_integer_value(json_object_get(j->dst, "id")),
			    dst_api[0] ? dst_api : NULL, state);
	if (moved_disks)
		inv_vm_set_disks(c, json_integer_value(json_object_get(j->vm, "id")), moved_disks);
	pthread_mutex_unlock(&c->lock);
	/* the source monitor exits by itself; its agent forgets the VM (and,
	 * after a copy that completed as such, removes the old files it keeps
	 * in its datastores: not when success was established another way) */
	json_t *forgot = NULL;
	http_path(path, sizeof(path), "/v1/vms/", name, j->disk_to && !note ? "?disks=remove" : NULL);
	host_call(j->src, "DELETE", path, NULL, &forgot, 0, err, sizeof(err));
	json_t *result = st ? json_deep_copy(st) : json_object();
	if (j->disk_to) {
		json_object_set_new(result, "storage", json_pack("{s:s, s:O, s:o, s:O*, s:O*}", "datastore", j->storage.chosen,
								 "disks_to", j->disk_to, "disks", moved_disks,
								 "source_disks_removed", json_object_get(forgot, "disks_removed"),
								 "source_disks_kept", json_object_get(forgot, "disks_kept")));
	}
	json_decref(forgot);
	json_object_set_new(result, "source", json_string(sname));
	json_object_set_new(result, "destination", json_string(dname));
	if (note) {
		json_object_set_new(result, "note", json_string(note));
		snprintf(msg, sizeof(msg), "VM %s migrated from %s to %s (%s)", name, sname, dname, note);
	} else {
		snprintf(msg, sizeof(msg), "VM %s migrated from %s to %s in %.0f ms (stun %.2f ms%s)", name, sname, dname,
			 json_number_value(json_object_get(st, "total_ms")), json_number_value(json_object_get(st, "stun_ms")),
			 json_is_true(json_object_get(st, "verified")) ? ", memory verified" : "");
	}
	finish(j, true, msg, result);
}

/* A powered-off or suspended VM with its files (--with-storage): the
 * destination's agent receives them into its datastore, the source's agent
 * sends them over the provisioning network (host/copy.c: one connection,
 * the migration handshake and encryption, a digest per file checked by the
 * receiver on what it wrote); then the destination registers the VM with
 * the copies and the source forgets it and removes the old files that lie
 * in its datastores. Until the registration nothing changed on the source. */
static void run_cold_storage(struct migrate_job *j)
{
	struct center *c = j->c;
	const char *name = s(j->vm, "name"), *sname = s(j->src, "name"), *dname = s(j->dst, "name");
	char err[512], e2[512], msg[1400], path[192], rpath[192], key[65];
	uint8_t raw[32];
	bool suspended = !strcmp(s(j->vm, "power_state"), "suspended");
	json_t *disks = inv_vm_array(j->vm, "disks"), *list = json_deep_copy(disks), *files = json_array(), *r = NULL;
	json_t *paths = NULL, *st = NULL, *rcpt = NULL, *new_disks = NULL, *forgot = NULL;
	size_t nd = json_array_size(disks), i;
	uint64_t t0 = now_ns();
	bool received = false;
	json_t *hosts = json_pack("{s:s, s:s}", "source", sname, "destination", dname);
	pthread_mutex_lock(&c->lock);
	task_update(c, j->task, "prepare", 0.02, hosts);
	pthread_mutex_unlock(&c->lock);
	json_decref(hosts);
	http_path(rpath, sizeof(rpath), "/v1/receive/", name, NULL);

	/* the files, as the source sees them: the disks, then the suspended state */
	if (suspended) {
		http_path(path, sizeof(path), "/v1/vms/", name, NULL);
		const char *sp = NULL;
		if (host_call(j->src, "GET", path, NULL, &r, 5000, err, sizeof(err)) == 200)
			sp = json_string_value(json_object_get(json_object_get(r, "suspended"), "path"));
		if (!sp) {
			snprintf(msg, sizeof(msg), "cold migration of %s: host %s does not hold its suspended state (%s)", name, sname,
				 err[0] ? err : "not suspended there");
			finish(j, false, msg, NULL);
			goto out;
		}
		json_array_append_new(list, json_pack("{s:s}", "path", sp));
		json_decref(r);
		r = NULL;
	}
	paths = host_paths(j->src, list);
	json_t *d;
	json_array_foreach(list, i, d) {
		json_t *info = json_object_get(paths, s(d, "path"));
		if (!json_is_integer(json_object_get(info, "size"))) {
			snprintf(msg, sizeof(msg), "cold migration of %s: host %s cannot read %s: %s", name, sname, s(d, "path"),
				 s(info, "error")[0] ? s(info, "error") : "no size");
			finish(j, false, msg, NULL);
			goto out;
		}
		json_array_append_new(files, json_pack("{s:s, s:O}", "kind", i < nd ? "disk" : "suspend", "size", json_object_get(info, "size")));
	}
	if (RAND_bytes(raw, sizeof(raw)) != 1) {
		finish(j, false, "cannot generate the one-time copy key", NULL);
		goto out;
	}
	hex_encode(raw, 32, key);
	explicit_bzero(raw, sizeof(raw));
	json_t *rq = json_pack("{s:s, s:s, s:s, s:I, s:O}", "name", name, "key", key, "datastore", j->storage.chosen, "copy_bytes",
			       (json_int_t)j->storage.need, "files", files);
	int code = host_call(j->dst, "POST", "/v1/receive", rq, &r, 30000, err, sizeof(err));
	json_object_set_new(rq, "key", json_string(""));
	json_decref(rq);
	if (code != 201) {
		explicit_bzero(key, sizeof(key));
		snprintf(msg, sizeof(msg), "cold migration of %s refused by destination %s: %s; nothing moved", name, dname, err);
		finish(j, false, msg, NULL);
		goto out;
	}
	char address[200];
	snprintf(address, sizeof(address), "%s", s(r, "address"));
	json_t *to_paths = json_incref(json_object_get(r, "paths"));
	json_decref(r);
	r = NULL;
	j->network = json_pack("{s:s, s:s}", "service", "provisioning", "addresses", address);
	json_t *send = json_pack("{s:s, s:s}", "to", address, "key", key);
	http_path(path, sizeof(path), "/v1/vms/", name, "/send");
	code = host_call(j->src, "POST", path, send, &r, 30000, err, sizeof(err));
	json_object_set_new(send, "key", json_string(""));
	json_decref(send);
	explicit_bzero(key, sizeof(key));
	json_decref(r);
	r = NULL;
	if (code != 202) {
		snprintf(msg, sizeof(msg), "cold migration of %s: host %s could not send its files: %s; nothing moved", name, sname, err);
		json_decref(to_paths);
		goto undo;
	}
	glide_log("center", "task %lld: copying %s's %zu file(s) from %s to %s (%s)", (long long)j->task, name, json_array_size(files),
		  sname, dname, address);
	/* follow the copy on both ends */
	uint64_t src_ok = now_ns();
	for (;;) {
		sleep_ns((uint64_t)CENTER_POLL_INTERVAL_MS * 1000000);
		json_t *now = NULL;
		if (host_call(j->src, "GET", path, NULL, &now, 5000, err, sizeof(err)) == 200) {
			src_ok = now_ns();
			json_decref(st);
			st = now;
			double total = json_number_value(json_object_get(st, "total"));
			double done = json_number_value(json_object_get(st, "bytes"));
			json_t *detail = json_pack("{s:s, s:s, s:O, s:O}", "source", sname, "destination", dname, "bytes",
						   json_object_get(st, "bytes"), "total", json_object_get(st, "total"));
			pthread_mutex_lock(&c->lock);
			task_update(c, j->task, "copy", 0.05 + 0.9 * (total > 0 ? MIN(1.0, done / total) : 0), detail);
			pthread_mutex_unlock(&c->lock);
			json_decref(detail);
			if (strcmp(s(st, "state"), "running"))
				break;
		} else {
			json_decref(now);
			if (now_ns() - src_ok > (uint64_t)CENTER_SOURCE_LOST_MS * 1000000) {
				snprintf(err, sizeof(err), "lost contact with the source host %s", sname);
				break;
			}
		}
		json_t *rr = NULL;
		if (host_call(j->dst, "GET", rpath, NULL, &rr, 5000, e2, sizeof(e2)) == 200 && !strcmp(s(rr, "state"), "failed")) {
			snprintf(err, sizeof(err), "the destination failed: %s", s(rr, "error"));
			json_decref(rr);
			json_decref(st);
			st = NULL;
			break;
		}
		json_decref(rr);
	}
	/* the sender is done once the receiver said every digest matched */
	if (st && !strcmp(s(st, "state"), "done")) {
		for (int k = 0; k < 50 && !received; k++) {
			json_decref(rcpt);
			rcpt = NULL;
			if (host_call(j->dst, "GET", rpath, NULL, &rcpt, 5000, e2, sizeof(e2)) == 200 && strcmp(s(rcpt, "state"), "running"))
				break;
			sleep_ns(100000000);
		}
		received = rcpt && !strcmp(s(rcpt, "state"), "done");
		if (!received)
			snprintf(err, sizeof(err), "the destination did not confirm the copy: %.400s", rcpt ? s(rcpt, "error") : e2);
	} else if (st) {
		snprintf(err, sizeof(err), "%s", s(st, "error"));
	}
	if (!received) {
		snprintf(msg, sizeof(msg), "cold migration of %s to %s failed while copying its files: %s; it stays on %s, its files "
			 "unchanged", name, dname, err, sname);
		json_decref(to_paths);
		goto undo;
	}
	/* register it on the destination with the copies */
	new_disks = json_deep_copy(disks);
	json_array_foreach(new_disks, i, d)
		json_object_set(d, "path", json_array_get(to_paths, i));
	json_t *body = json_pack("{s:s, s:o, s:o, s:o, s:o, s:O, s:b}", "name", name, "config", json_loads(s(j->vm, "config"), 0, NULL),
				 "boot", json_loads(s(j->vm, "boot"), 0, NULL), "devices", json_loads(s(j->vm, "devices"), 0, NULL),
				 "nics", inv_vm_array(j->vm, "nics"), "disks", new_disks, "start", 0);
	json_object_set_new(body, "hardware", inv_vm_array(j->vm, "hardware"));
	if (suspended)
		json_object_set_new(body, "suspended", json_pack("{s:O}", "path", json_array_get(to_paths, nd)));
	code = host_call(j->dst, "POST", "/v1/vms", body, NULL, 0, err, sizeof(err));
	json_decref(body);
	if (code != 201) {
		snprintf(msg, sizeof(msg), "cold migration of %s: host %s could not register it with the copies: %s; it stays on %s", name,
			 dname, err, sname);
		json_decref(to_paths);
		goto undo;
	}
	char kpath[200];
	snprintf(kpath, sizeof(kpath), "%s?keep=1", rpath);
	host_call(j->dst, "DELETE", kpath, NULL, NULL, 0, e2, sizeof(e2));
	http_path(path, sizeof(path), "/v1/vms/", name, "?disks=remove");
	host_call(j->src, "DELETE", path, NULL, &forgot, 0, e2, sizeof(e2));
	pthread_mutex_lock(&c->lock);
	inv_vm_set_host(c, json_integer_value(json_object_get(j->vm, "id")), json_integer_value(json_object_get(j->dst, "id")));
	inv_vm_set_disks(c, json_integer_value(json_object_get(j->vm, "id")), new_disks);
	pthread_mutex_unlock(&c->lock);
	double ms = (now_ns() - t0) / 1e6;
	snprintf(msg, sizeof(msg), "VM %s (%s) moved with its files from %s to %s in %.0f ms: %lld bytes copied, every file's digest "
		 "verified by the destination", name, suspended ? "suspended" : "powered off", sname, dname, ms,
		 (long long)json_integer_value(json_object_get(st, "bytes")));
	json_t *result = json_pack("{s:s, s:s, s:s, s:f, s:{s:s, s:O, s:O, s:O*, s:O, s:O, s:b, s:O*, s:O*}}", "kind", "cold",
				   "source", sname, "destination", dname, "total_ms", ms, "storage", "datastore", j->storage.chosen,
				   "disks_to", new_disks, "paths_to", to_paths, "suspended_to",
				   suspended ? json_array_get(to_paths, nd) : NULL, "bytes", json_object_get(st, "bytes"), "encrypted",
				   json_object_get(st, "encrypted"), "digests_verified", 1, "source_disks_removed",
				   json_object_get(forgot, "disks_removed"), "source_disks_kept", json_object_get(forgot, "disks_kept"));
	json_decref(to_paths);
	finish(j, true, msg, result);
	goto out;
undo:
	host_call(j->dst, "DELETE", rpath, NULL, NULL, 0, e2, sizeof(e2));
	finish(j, false, msg, NULL);
out:
	json_decref(disks);
	json_decref(list);
	json_decref(files);
	json_decref(paths);
	json_decref(st);
	json_decref(rcpt);
	json_decref(new_disks);
	json_decref(forgot);
	json_decref(r);
}

static void run_cold(struct migrate_job *j)
{
	char path[160], err[512], msg[1024];
	const char *name = s(j->vm, "name");
	json_t *body = json_pack("{s:s, s:o, s:o, s:o, s:o, s:o, s:b}", "name", name,
				 "config", json_loads(s(j->vm, "config"), 0, NULL), "boot", json_loads(s(j->vm, "boot"), 0, NULL),
				 "devices", json_loads(s(j->vm, "devices"), 0, NULL), "nics", inv_vm_array(j->vm, "nics"),
				 "disks", inv_vm_array(j->vm, "disks"), "start", 0);
	json_object_set_new(body, "hardware", inv_vm_array(j->vm, "hardware"));
	int st = host_call(j->dst, "POST", "/v1/vms", body, NULL, 0, err, sizeof(err));
	json_decref(body);
	if (st != 201) {
		snprintf(msg, sizeof(msg), "cold migration of %s failed: host %s could not register it: %s", name, s(j->dst, "name"), err);
		finish(j, false, msg, NULL);
		return;
	}
	if (j->src) {
		http_path(path, sizeof(path), "/v1/vms/", name, NULL);
		host_call(j->src, "DELETE", path, NULL, NULL, 0, err, sizeof(err));
	}
	pthread_mutex_lock(&j->c->lock);
	inv_vm_set_host(j->c, json_integer_value(json_object_get(j->vm, "id")), json_integer_value(json_object_get(j->dst, "id")));
	pthread_mutex_unlock(&j->c->lock);
	snprintf(msg, sizeof(msg), "VM %s (powered off) moved from %s to %s", name, j->src ? s(j->src, "name") : "(none)", s(j->dst, "name"));
	/* only the configuration moves, through the agents' APIs: the disks
	 * are on storage both hosts share */
	j->network = json_pack("{s:s, s:s}", "service", "management", "why", "a cold move of a VM on shared storage sends only its configuration");
	finish(j, true, msg, json_pack("{s:s, s:s?, s:s}", "kind", "cold", "source", j->src ? s(j->src, "name") : NULL,
				      "destination", s(j->dst, "name")));
}

/* The source sent GO and RUNNING never came back: the destination either
 * runs the VM (it got GO) or will discard it once its own wait for GO
 * fails. Look at the destination until one is true, then tell the source
 * (POST .../migration/resolve): "there" releases its paused copy, "here"
 * resumes it. Returns the source's status afterwards (st, or a newer one).
 * Gives up after CENTER_IN_DOUBT_MS with the migration still in doubt:
 * then nothing is changed and the task says so. */
static json_t *resolve_in_doubt(struct migrate_job *j, json_t *st, const char *status_path)
{
	const char *name = s(j->vm, "name");
	char dstate[32], dwhy[300], err[512], path[192];
	uint64_t end = now_ns() + (uint64_t)CENTER_IN_DOUBT_MS * 1000000;

	glide_log("center", "task %lld: %s is in doubt (%s); looking at the destination %s", (long long)j->task, name,
		  s(st, "error"), s(j->dst, "name"));
	while (now_ns() < end) {
		enum where dw = vm_on(j->dst, name, dstate, sizeof(dstate), dwhy, sizeof(dwhy));
		/* a destination VM that shut down may have run after GO: not "gone", left to a person */
		const char *keep = dw == WHERE_RUNS ? "there" : dw == WHERE_GONE && strcmp(dstate, "shutdown") ? "here" : NULL;
		if (!keep) { /* still waiting for GO (masked), or not readable now */
			sleep_ns((uint64_t)CENTER_POLL_INTERVAL_MS * 1000000);
			continue;
		}
		json_t *body = json_pack("{s:s}", "keep", keep), *r = NULL;
		http_path(path, sizeof(path), "/v1/vms/", name, "/migration/resolve");
		int code = host_call(j->src, "POST", path, body, &r, 15000, err, sizeof(err));
		json_decref(body);
		glide_log("center", "task %lld: the destination's monitor is %s: resolved, keep the VM %s (%d%s%s)",
			  (long long)j->task, dstate[0] ? dstate : "gone", keep, code, code == 200 ? "" : ": ",
			  code == 200 ? "" : err);
		if (code == 200 && json_is_string(json_object_get(r, "status"))) {
			json_decref(st);
			return r;
		}
		json_decref(r);
		break;
	}
	json_t *now = NULL;
	if (host_call(j->src, "GET", status_path, NULL, &now, 5000, err, sizeof(err)) == 200 &&
	    json_is_string(json_object_get(now, "status"))) {
		json_decref(st);
		return now;
	}
	json_decref(now);
	return st;
}

static void run_live(struct migrate_job *j)
{
	struct center *c = j->c;
	const char *name = s(j->vm, "name"), *sname = s(j->src, "name"), *dname = s(j->dst, "name");
	char err[512], msg[1400], path[160], key[65];
	uint8_t raw[32];
	json_t *r = NULL, *st = NULL;
	int code;

	/* the spec: one-time key, configuration, the CPU features the VM sees */
	if (RAND_bytes(raw, sizeof(raw)) != 1) {
		finish(j, false, "cannot generate the one-time migration key", NULL);
		return;
	}
	hex_encode(raw, 32, key);
	explicit_bzero(raw, sizeof(raw));
	json_t *config = json_loads(s(j->vm, "config"), 0, NULL);
	uint32_t mask[EVC_REGS], src_regs[EVC_REGS];
	evc_regs_from_json(json_object_get(config, "cpuid_mask"), mask);
	if (host_facts_regs(j->src_facts, src_regs))
		for (int i = 0; i < EVC_REGS; i++)
			mask[i] &= src_regs[i];
	json_t *hosts = json_pack("{s:s, s:s}", "source", sname, "destination", dname);
	pthread_mutex_lock(&c->lock);
	task_update(c, j->task, "prepare", 0.02, hosts);
	pthread_mutex_unlock(&c->lock);
	json_decref(hosts);
	/* the destination starts its monitor with its own --nic (its network of
	 * each NIC's name) and --disk (the same shared path) */
	json_t *spec = json_pack("{s:s, s:O, s:o, s:o, s:o, s:o, s:s, s:o}", "name", name, "config", config,
				 "boot", json_loads(s(j->vm, "boot"), 0, NULL), "devices", json_loads(s(j->vm, "devices"), 0, NULL),
				 "nics", inv_vm_array(j->vm, "nics"), "disks", inv_vm_array(j->vm, "disks"),
				 "key", key, "cpuid", evc_regs_to_json(mask));
	json_object_set_new(spec, "hardware", inv_vm_array(j->vm, "hardware"));
	if (j->with_storage) {
		json_object_set_new(spec, "datastore", json_string(j->storage.chosen));
		json_object_set_new(spec, "copy_bytes", json_integer((json_int_t)j->storage.need));
	}
	code = host_call(j->dst, "POST", "/v1/incoming", spec, &r, 30000, err, sizeof(err));
	json_object_set_new(spec, "key", json_string("")); /* jansson keeps its own copy; drop it now */
	json_decref(spec);
	json_decref(config);
	if (code != 201) {
		explicit_bzero(key, sizeof(key));
		snprintf(msg, sizeof(msg), "migration of %s refused by destination %s: %s; the VM keeps running on %s", name, dname, err, sname);
		finish(j, false, msg, NULL);
		json_decref(r);
		return;
	}
	char addresses[512], dst_api[512];
	snprintf(addresses, sizeof(addresses), "%s", s(r, "addresses"));
	j->network = json_pack("{s:s, s:s}", "service", "migration", "addresses", addresses);
	snprintf(dst_api, sizeof(dst_api), "%s", s(r, "api"));
	if (j->with_storage) {
		json_t *to = json_object_get(r, "disk_to");
		json_t *disks = inv_vm_array(j->vm, "disks");
		if (!json_is_array(to) || json_array_size(to) != json_array_size(disks)) {
			char e2[512];
			json_decref(disks);
			json_decref(r);
			explicit_bzero(key, sizeof(key));
			discard_destination(j, e2, sizeof(e2));
			snprintf(msg, sizeof(msg), "migration of %s: destination %s did not say where the disk copies go (its agent "
				 "predates --with-storage?); the VM keeps running on %s", name, dname, sname);
			finish(j, false, msg, NULL);
			return;
		}
		json_decref(disks);
		j->disk_to = json_incref(to);
	}
	json_decref(r);
	r = NULL;

	json_t *start = json_deep_copy(j->params);
	json_object_set_new(start, "to", json_string(addresses));
	json_object_set_new(start, "key", json_string(key));
	if (j->disk_to)
		json_object_set(start, "disk_to", j->disk_to);
	http_path(path, sizeof(path), "/v1/vms/", name, "/migrate");
	code = host_call(j->src, "POST", path, start, &r, 30000, err, sizeof(err));
	json_object_set_new(start, "key", json_string(""));
	json_decref(start);
	explicit_bzero(key, sizeof(key));
	/* the monitor numbers its migrations: a status with another id is not this one's */
	json_int_t mig_id = json_is_integer(json_object_get(r, "id")) ? json_integer_value(json_object_get(r, "id")) : -1;
	json_decref(r);
	r = NULL;
	if (code != 202) {
		char e2[512];
		discard_destination(j, e2, sizeof(e2));
		snprintf(msg, sizeof(msg), "migration of %s could not start on source %s: %s; the VM keeps running there", name, sname, err);
		finish(j, false, msg, NULL);
		return;
	}
	glide_log("center", "task %lld: migrating %s from %s to %s via %s", (long long)j->task, name, sname, dname, addresses);

	/* follow it */
	json_t *cfg2 = json_loads(s(j->vm, "config"), 0, NULL);
	uint64_t memory = (uint64_t)json_integer_value(json_object_get(cfg2, "memory"));
	json_decref(cfg2);
	uint64_t dst_ok = now_ns(), src_ok = now_ns(), src_unread_since = 0;
	bool cancelled = false, dst_runs = false;
	char cancel_reason[700] = "", unread[700] = "";
	http_path(path, sizeof(path), "/v1/vms/", name, "/migration");
	for (;;) {
		sleep_ns((uint64_t)CENTER_POLL_INTERVAL_MS * 1000000);
		json_t *now = NULL;
		code = host_call(j->src, "GET", path, NULL, &now, 5000, err, sizeof(err));
		json_t *id = json_object_get(now, "id");
		bool ours = code == 200 && json_is_string(json_object_get(now, "status")) &&
			    (mig_id < 0 || !json_is_integer(id) || json_integer_value(id) == mig_id);
		if (ours) {
			src_ok = now_ns();
			src_unread_since = 0;
			unread[0] = 0;
			json_decref(st);
			st = now;
			if (strcmp(s(st, "status"), "running"))
				break;
		} else {
			/* The source's status cannot be read: its agent does not answer
			 * (code < 0), or it answers that the VM's monitor is gone, has no
			 * migration or reports another one. A monitor whose migration
			 * completed exits: the VM may already run on the destination. */
			if (code == 200)
				snprintf(unread, sizeof(unread), "the source monitor on %s reports another migration (id %lld, this one is %lld)",
					 sname, (long long)json_integer_value(id), (long long)mig_id);
			else if (code < 0)
				snprintf(unread, sizeof(unread), "lost contact with the source host %s: %s", sname, err);
			else
				snprintf(unread, sizeof(unread), "the source host %s cannot read the migration's status from the VM's monitor: %s",
					 sname, err);
			json_decref(now);
			char dstate[32], dwhy[300];
			if (vm_on(j->dst, name, dstate, sizeof(dstate), dwhy, sizeof(dwhy)) == WHERE_RUNS) {
				dst_runs = true;
				break;
			}
			if (code >= 0 && !src_unread_since)
				src_unread_since = now_ns();
			if (code >= 0 && now_ns() - src_unread_since > (uint64_t)CENTER_SOURCE_GONE_MS * 1000000)
				break;
			if (now_ns() - src_ok > (uint64_t)CENTER_SOURCE_LOST_MS * 1000000)
				break;
		}
		/* is the destination host still there? */
		char e2[512], vpath[160];
		json_t *dr = NULL;
		http_path(vpath, sizeof(vpath), "/v1/vms/", name, NULL);
		int dc = host_call(j->dst, "GET", vpath, NULL, &dr, 1000, e2, sizeof(e2));
		json_decref(dr);
		if (dc == 200)
			dst_ok = now_ns();
		else if (!cancelled && now_ns() - dst_ok > (uint64_t)CENTER_DEST_LOST_MS * 1000000) {
			json_t *cr = NULL;
			snprintf(cancel_reason, sizeof(cancel_reason), "lost contact with the destination host %s (%s)", dname, e2);
			glide_log("center", "task %lld: %s; cancelling", (long long)j->task, cancel_reason);
			char cpath[192];
			http_path(cpath, sizeof(cpath), "/v1/vms/", name, "/migration/cancel");
			host_call(j->src, "POST", cpath, NULL, &cr, 10000, e2, sizeof(e2));
			json_decref(cr);
			cancelled = true;
		}
		if (st) {
			json_t *detail = json_pack("{s:s, s:s, s:O, s:O, s:O, s:O, s:O, s:O, s:O, s:O}", "source", sname,
						   "destination", dname, "stage", json_object_get(st, "stage"), "phase",
						   json_object_get(st, "phase"), "bytes_sent", json_object_get(st, "bytes_sent"),
						   "remaining_pages", json_object_get(st, "remaining_pages"), "transmit_rate",
						   json_object_get(st, "transmit_rate"), "dirty_rate", json_object_get(st, "dirty_rate"),
						   "predicted_stun_ms", json_object_get(st, "predicted_stun_ms"), "sdps",
						   json_object_get(st, "sdps"));
			pthread_mutex_lock(&c->lock);
			task_update(c, j->task, s(st, "stage")[0] ? s(st, "stage") : "precopy", progress_of(st, memory), detail);
			pthread_mutex_unlock(&c->lock);
			json_decref(detail);
		}
	}
	if (st && !unread[0] && !strcmp(s(st, "status"), "in-doubt"))
		st = resolve_in_doubt(j, st, path);
	/* the source's final word, when it could be read */
	const char *status = st && !unread[0] && strcmp(s(st, "status"), "running") ? s(st, "status") : NULL;
	if (status && !strcmp(status, "completed")) {
		arrived(j, st, dst_api, NULL);
		json_decref(st);
		return;
	}
	/* Failed, cancelled, or not readable: before anything is discarded, ask
	 * both hosts what their monitors do. A VM that runs is never discarded. */
	char why[1000], dstate[32] = "", dwhy[300] = "", sstate[32] = "", swhy[300] = "";
	snprintf(why, sizeof(why), "%s", status ? (cancel_reason[0] ? cancel_reason : s(st, "error")) : unread[0] ? unread : err);
	enum where dw = dst_runs ? WHERE_RUNS : vm_on(j->dst, name, dstate, sizeof(dstate), dwhy, sizeof(dwhy));
	enum where sw = vm_on(j->src, name, sstate, sizeof(sstate), swhy, sizeof(swhy));
	if (dw == WHERE_MASKED && discard_destination(j, dwhy, sizeof(dwhy)))
		dw = vm_on(j->dst, name, dstate, sizeof(dstate), dwhy, sizeof(dwhy)); /* it may have started meanwhile */
	else if (dw == WHERE_MASKED)
		dw = WHERE_DISCARDED;
	json_t *result = st ? json_deep_copy(st) : json_object();
	json_object_set_new(result, "source", json_string(sname));
	json_object_set_new(result, "destination", json_string(dname));
	if (dw == WHERE_RUNS && sw != WHERE_RUNS) {
		char note[1200];
		if (status)
			snprintf(note, sizeof(note), "the destination runs the VM although the source reported the migration %s: %s",
				 status, why);
		else
			snprintf(note, sizeof(note), "the destination runs the VM; the source's final status could not be read: %s", why);
		json_decref(result);
		arrived(j, status ? st : NULL, dst_api, note);
		json_decref(st);
		return;
	}
	const char *verb = status ? status : "could not be followed";
	if (dw == WHERE_RUNS) /* both: a monitor bug; stop neither */
		snprintf(msg, sizeof(msg), "migration of %s to %s %s: %s; the VM runs on both %s (%s) and %s (%s): neither was stopped, "
			 "check them and stop one", name, dname, verb, why, sname, sstate, dname, dstate);
	else if (sw == WHERE_RUNS)
		snprintf(msg, sizeof(msg), "migration of %s to %s %s: %s; the VM keeps running on %s%s%s", name, dname, verb, why, sname,
			 dw == WHERE_UNKNOWN ? "; " : "", dw == WHERE_UNKNOWN ? dwhy : "");
	else if (sw == WHERE_UNKNOWN && dw == WHERE_UNKNOWN)
		snprintf(msg, sizeof(msg), "migration of %s to %s %s: %s; the VM's location could not be determined (%s: %s; %s: %s): "
			 "neither host was changed, check both", name, dname, verb, why, sname, swhy, dname, dwhy);
	else
		snprintf(msg, sizeof(msg), "migration of %s to %s %s: %s; the VM does not run on %s (%s) and %s (%s)", name, dname, verb,
			 why, sname, sw == WHERE_UNKNOWN ? swhy : sstate, dname,
			 dw == WHERE_DISCARDED ? "its masked copy was discarded" : dw == WHERE_UNKNOWN ? dwhy : dstate[0] ? dstate : "absent");
	finish(j, false, msg, result);
	json_decref(st);
}

static void *migrate_thread(void *arg)
{
	struct migrate_job *j = arg;
	struct center *c = j->c;
	const char *sname = j->src ? s(j->src, "name") : NULL, *dname = s(j->dst, "name");
	int64_t task = j->task;

	/* its cost within the budget of both hosts, in turn */
	budget_acquire(c, task, sname, dname, j->with_storage ? BUDGET_COST_STORAGE : BUDGET_COST_MOVE);
	pthread_mutex_lock(&c->lock);
	task_update(c, task, "starting", 0.01, NULL);
	inv_task_started(c, task); /* started_at: when it took its share of the budget, not when it queued */
	pthread_mutex_unlock(&c->lock);
	if (j->live)
		run_live(j);
	else if (j->with_storage)
		run_cold_storage(j);
	else
		run_cold(j);
	job_free(j);
	budget_release(c, task);
	return NULL;
}

int migrate_task_start(struct center *c, const char *name, const struct center_migrate_request *rq, json_t *params,
		       json_t **resp)
{
	char err[512], msg[2048];
	const char *to = rq->to;
	struct migrate_job *j = calloc(1, sizeof(*j));

	if (!j)
		return 500;
	j->c = c;
	j->with_storage = rq->with_storage;
	snprintf(j->datastore, sizeof(j->datastore), "%s", rq->datastore ? rq->datastore : "");
	j->storage.datastore = j->datastore[0] ? j->datastore : NULL;
	pthread_mutex_lock(&c->lock);
	j->vm = inv_vm(c, name);
	j->dst = inv_host(c, to);
	if (j->vm && json_is_integer(json_object_get(j->vm, "host_id")))
		j->src = inv_host_by_id(c, json_integer_value(json_object_get(j->vm, "host_id")));
	pthread_mutex_unlock(&c->lock);
	if (!j->vm) {
		*resp = http_error("no VM named %s (see `glide vm list`)", name);
		job_free(j);
		return 404;
	}
	if (!j->dst) {
		*resp = http_error("no host named %s (see `glide host list`)", to);
		job_free(j);
		return 404;
	}
	if (json_is_integer(json_object_get(j->vm, "locked_by"))) {
		long long t = json_integer_value(json_object_get(j->vm, "locked_by"));
		*resp = http_error("VM %s is locked by task %lld, which is still running (its configuration cannot change and it "
				 "cannot move until that task ends); wait with `glide task watch %lld`", name, t, t);
		json_object_set_new(*resp, "task", json_integer(t));
		job_free(j);
		return 409;
	}
	char maint[64];
	pthread_mutex_lock(&c->lock);
	bool in_maintenance = maintenance_blocks(c, json_integer_value(json_object_get(j->dst, "id")), maint, sizeof(maint));
	pthread_mutex_unlock(&c->lock);
	if (in_maintenance) {
		*resp = http_error("host %s %s: it takes no VMs (`glide host maintenance exit %s`)", to, maint, to);
		job_free(j);
		return 409;
	}
	if (j->src && json_equal(json_object_get(j->src, "id"), json_object_get(j->dst, "id"))) {
		*resp = http_error("VM %s already is on host %s", name, to);
		job_free(j);
		return 409;
	}
	const char *ps = s(j->vm, "power_state");
	bool suspended = !strcmp(ps, "suspended");
	j->live = !strcmp(ps, "running") || !strcmp(ps, "paused");
	if (!j->live && strcmp(ps, "off") && !suspended) {
		*resp = http_error("VM %s is %s; migrate it when it is running, suspended or powered off", name, ps);
		job_free(j);
		return 409;
	}
	if (suspended && !j->with_storage) {
		*resp = http_error("VM %s is suspended: its suspended state moves only with its files (add --with-storage)", name);
		job_free(j);
		return 409;
	}
	if (j->live && !j->src) {
		*resp = http_error("VM %s has no host in the inventory; wait for the controller to find it", name);
		job_free(j);
		return 409;
	}
	if (j->with_storage) {
		json_t *disks = inv_vm_array(j->vm, "disks");
		size_t nd = json_array_size(disks);
		json_decref(disks);
		if (!j->src) {
			*resp = http_error("VM %s is on no host: it has no files to copy", name);
			job_free(j);
			return 409;
		}
		if (suspended) { /* its suspended state travels too: at most its memory */
			json_t *cfg = json_loads(s(j->vm, "config"), 0, NULL);
			j->storage.extra = (uint64_t)json_integer_value(json_object_get(cfg, "memory"));
			json_decref(cfg);
		}
		if (!nd && !suspended) {
			*resp = http_error("VM %s has no disk to copy; migrate it without --with-storage", name);
			job_free(j);
			return 409;
		}
	}
	/* compatibility, with fresh facts from both hosts */
	json_t *dst_facts = host_facts(j->dst, err, sizeof(err)), *reasons;
	if (!dst_facts) {
		reasons = json_pack("[s]", err);
	} else {
		j->src_facts = j->src ? host_facts(j->src, err, sizeof(err)) : NULL;
		if (j->live && !j->src_facts) {
			reasons = json_pack("[s]", err);
		} else {
			/* shared storage: the destination must see each disk, the same
			 * size as the source; copied: the source sees them, the
			 * destination has the space */
			json_t *disks = inv_vm_array(j->vm, "disks");
			json_t *dst_paths = j->with_storage ? NULL : host_paths(j->dst, disks);
			json_t *src_paths = j->src_facts ? host_paths(j->src, disks) : NULL;
			reasons = compat_check(j->vm, j->src_facts, dst_facts, j->dst, j->src ? s(j->src, "name") : NULL, src_paths,
					       dst_paths, j->live, j->with_storage ? &j->storage : NULL);
			json_decref(disks);
			json_decref(dst_paths);
			json_decref(src_paths);
		}
	}
	json_decref(dst_facts);
	j->params = json_incref(params);
	/* a host pair never checked (or unreachable when last checked): check
	 * the network between their migration interfaces now */
	if (j->live && !json_array_size(reasons)) {
		pthread_mutex_lock(&c->lock);
		json_t *known = inv_netcheck(c, json_integer_value(json_object_get(j->src, "id")),
					     json_integer_value(json_object_get(j->dst, "id")), "migration");
		pthread_mutex_unlock(&c->lock);
		if (!known || !json_integer_value(json_object_get(known, "reachable"))) {
			j->netcheck = center_netcheck(c, j->src, j->dst, "migration", CENTER_NETCHECK_MIGRATE_SECONDS, err, sizeof(err));
			if (!j->netcheck) {
				glide_log("center", "migration of %s: no network check (%s); going on", name, err);
			} else if (!json_is_true(json_object_get(j->netcheck, "reachable"))) {
				char sum[600];
				center_netcheck_summary(j->netcheck, sum, sizeof(sum));
				json_array_append_new(reasons, json_sprintf("network: host %s cannot reach host %s's migration "
									    "interface: %s", s(j->src, "name"), to, sum));
			}
		}
		json_decref(known);
	}

	pthread_mutex_lock(&c->lock);
	json_t *again = inv_vm(c, name);
	if (json_is_integer(json_object_get(again, "locked_by"))) {
		long long t = json_integer_value(json_object_get(again, "locked_by"));
		pthread_mutex_unlock(&c->lock);
		*resp = http_error("VM %s is locked by task %lld, which is still running; wait with `glide task watch %lld`", name, t, t);
		json_decref(again);
		json_decref(reasons);
		job_free(j);
		return 409;
	}
	json_decref(again);
	j->task = task_create(c, "migrate", j->vm, j->src ? s(j->src, "name") : NULL, s(j->dst, "name"), "running");
	if (json_array_size(reasons)) {
		size_t used = 0, i;
		json_t *r;
		used += (size_t)snprintf(msg, sizeof(msg), "migration of %s to %s refused: ", name, to);
		json_array_foreach(reasons, i, r)
			if (used < sizeof(msg))
				used += (size_t)snprintf(msg + used, sizeof(msg) - used, "%s%s", i ? "; " : "", json_string_value(r));
		json_t *result = json_pack("{s:O, s:b}", "reasons", reasons, "refused", 1);
		if (j->netcheck)
			json_object_set(result, "netcheck", j->netcheck);
		task_finish(c, j->task, false, msg, result); /* task_finish copies it */
		json_decref(result);
		pthread_mutex_unlock(&c->lock);
		*resp = json_pack("{s:s, s:O, s:I}", "error", msg, "reasons", reasons, "task", (json_int_t)j->task);
		json_decref(reasons);
		job_free(j);
		return 409;
	}
	json_decref(reasons);
	inv_vm_lock(c, json_integer_value(json_object_get(j->vm, "id")), j->task);
	task_update(c, j->task, "queued", 0, NULL);
	int64_t task = j->task;
	bool live = j->live, with_storage = j->with_storage;
	pthread_mutex_unlock(&c->lock);
	pthread_t t;
	if (pthread_create(&t, NULL, migrate_thread, j)) {
		finish(j, false, "cannot start the migration thread", NULL);
		job_free(j);
		*resp = http_error("cannot start the migration thread");
		return 500;
	}
	pthread_detach(t);
	*resp = json_pack("{s:I, s:s, s:s}", "task", (json_int_t)task, "kind",
			  live ? (with_storage ? "live+storage" : "live") : (with_storage ? "cold+storage" : "cold"),
			  "state", "running");
	return 202;
}
