/* Power-on placement and the CPU baseline a VM gets (EVC).
 *
 * A VM's level is its own (per-VM EVC) or else its cluster's: "none" (the
 * host's full CPU), a named level, or "intersection" (the features every
 * host of the cluster has). At power-on the level becomes a CPUID mask in
 * the VM's configuration, so the VM keeps seeing exactly those features
 * wherever it migrates. Placement picks, among the cluster's responding
 * hosts with enough free memory that meet the mask and have every network
 * the VM's NICs use and see every one of its disks, the VM's current host
 * if it qualifies, else the one with the most free memory; when none
 * qualifies the answer lists every host with its reason. */
#include "center/center.h"
#include "center/rules.h"
#include "api/http.h"
#include "common/util.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int placement_level_mask(struct center *c, int64_t cluster_id, const char *level, uint32_t mask[EVC_REGS], char *err,
			 size_t errlen)
{
	for (int r = 0; r < EVC_REGS; r++)
		mask[r] = 0xffffffffu;
	if (!level || !*level || !strcmp(level, EVC_NONE))
		return 0;
	const struct evc_level *l = evc_level_find(level);
	if (l) {
		memcpy(mask, l->mask, sizeof(l->mask));
		return 0;
	}
	if (strcmp(level, EVC_INTERSECTION)) {
		errf(err, errlen, "unknown EVC level '%s' (levels: none, intersection, x86-64-v1..v4)", level);
		return -EINVAL;
	}
	json_t *facts = inv_cluster_facts(c, cluster_id);
	evc_intersection(facts, mask);
	json_decref(facts);
	return 0;
}

const char *placement_vm_level(struct center *c, json_t *vm)
{
	static __thread char level[32];
	const char *own = json_string_value(json_object_get(vm, "evc_level"));
	if (own && *own) {
		snprintf(level, sizeof(level), "%s", own);
		return level;
	}
	json_t *cl = inv_cluster_by_id(c, json_integer_value(json_object_get(vm, "cluster_id")));
	snprintf(level, sizeof(level), "%s", cl ? json_string_value(json_object_get(cl, "evc_level")) : EVC_NONE);
	json_decref(cl);
	return level;
}

static void unlock_vm(struct center *c, json_t *vm)
{
	inv_vm_unlock(c, json_integer_value(json_object_get(vm, "id")));
}

/* Locks the VM for a new task; 0 or an HTTP status with *resp set. Caller holds c->lock. */
static int lock_vm(struct center *c, json_t *vm, const char *kind, int64_t *task, json_t **resp)
{
	if (json_is_integer(json_object_get(vm, "locked_by"))) {
		long long t = json_integer_value(json_object_get(vm, "locked_by"));
		*resp = json_pack("{s:s, s:I}", "error", "", "task", (json_int_t)t);
		json_object_set_new(*resp, "error", json_sprintf("VM %s is locked by task %lld, which is still running; wait "
								 "for it with `glide task watch %lld`",
								 json_string_value(json_object_get(vm, "name")), t, t));
		return 409;
	}
	*task = task_create(c, kind, vm, NULL, NULL, "running");
	inv_vm_lock(c, json_integer_value(json_object_get(vm, "id")), *task);
	return 0;
}

int placement_choose(const struct placement_host *hosts, size_t n, uint64_t need, const char *level,
		     const uint32_t mask[EVC_REGS], json_t *reasons)
{
	int chosen = -1;
	uint64_t best_free = 0;

	for (size_t i = 0; i < n; i++) {
		const struct placement_host *h = &hosts[i];
		char missing[512];
		if (!h->facts) {
			json_array_append_new(reasons, json_sprintf("%s: %s", h->name, h->error));
		} else if (h->free < need) {
			char a[32], b[32];
			json_array_append_new(reasons, json_sprintf("%s: %s free, the VM needs %s", h->name,
								    format_size(h->free, a, sizeof(a)), format_size(need, b, sizeof(b))));
		} else if (strcmp(level, EVC_NONE) && h->have_regs && evc_missing(mask, h->regs, missing, sizeof(missing))) {
			json_array_append_new(reasons, json_sprintf("%s: lacks %s (EVC level %s)", h->name, missing, level));
		} else if (h->lacks[0]) {
			json_array_append_new(reasons, json_sprintf("%s: %s", h->name, h->lacks));
		} else if (h->have_score && chosen >= 0 && hosts[chosen].have_score) {
			if (h->score > hosts[chosen].score + 1e-6 || (h->score > hosts[chosen].score - 1e-6 && h->free > best_free)) {
				chosen = (int)i;
				best_free = h->free;
			}
		} else if (chosen < 0 || h->home || (h->free > best_free && !hosts[chosen].home)) {
			chosen = (int)i;
			best_free = h->free;
		}
	}
	return chosen;
}

/* A suspended VM resumes where its memory file is: on its host, with the
 * configuration it had (the snapshot holds it). Called unlocked. */
static int resume_suspended(struct center *c, json_t *vm, const char *want_host, json_t **resp)
{
	const char *name = json_string_value(json_object_get(vm, "name"));
	char err[512], path[160], msg[800];
	int64_t task = 0;
	int status;

	pthread_mutex_lock(&c->lock);
	json_t *host = json_is_integer(json_object_get(vm, "host_id"))
			       ? inv_host_by_id(c, json_integer_value(json_object_get(vm, "host_id"))) : NULL;
	json_t *want = want_host ? inv_host(c, want_host) : NULL;
	if (!host || (want_host && !json_equal(json_object_get(want, "id"), json_object_get(host, "id")))) {
		pthread_mutex_unlock(&c->lock);
		*resp = host ? http_error("VM %s is suspended on host %s (its memory is in a file there): start it there, or power "
					  "it off to discard the suspended state", name, json_string_value(json_object_get(host, "name")))
			     : http_error("VM %s is suspended but has no host in the inventory", name);
		json_decref(host);
		json_decref(want);
		return 409;
	}
	json_decref(want);
	if ((status = lock_vm(c, vm, "power-on", &task, resp))) {
		pthread_mutex_unlock(&c->lock);
		json_decref(host);
		return status;
	}
	pthread_mutex_unlock(&c->lock);
	json_t *r = NULL;
	http_path(path, sizeof(path), "/v1/vms/", name, "/start");
	int st = host_call(host, "POST", path, NULL, &r, 60000, err, sizeof(err));
	pthread_mutex_lock(&c->lock);
	if (st == 200) {
		inv_vm_set_location(c, json_integer_value(json_object_get(vm, "id")), json_integer_value(json_object_get(host, "id")),
				    json_string_value(json_object_get(r, "api")), "running");
		snprintf(msg, sizeof(msg), "VM %s resumed on host %s from its suspended state", name,
			 json_string_value(json_object_get(host, "name")));
		task_finish(c, task, true, msg, NULL);
		json_t *fresh = inv_vm(c, name);
		*resp = inv_vm_json(c, fresh);
		json_decref(fresh);
		json_object_set_new(*resp, "task", json_integer(task));
		status = 200;
	} else {
		snprintf(msg, sizeof(msg), "host %s could not resume VM %s: %s; its suspended state is kept",
			 json_string_value(json_object_get(host, "name")), name, err);
		task_finish(c, task, false, msg, NULL);
		*resp = json_pack("{s:s, s:I}", "error", msg, "task", (json_int_t)task);
		status = 502;
	}
	unlock_vm(c, vm);
	pthread_mutex_unlock(&c->lock);
	json_decref(r);
	json_decref(host);
	return status;
}

int placement_suspend(struct center *c, const char *name, json_t **resp)
{
	char err[512], path[160], msg[800];
	int64_t task = 0;
	int status;

	pthread_mutex_lock(&c->lock);
	json_t *vm = inv_vm(c, name);
	if (!vm) {
		pthread_mutex_unlock(&c->lock);
		*resp = http_error("no VM named %s (see `glide vm list`)", name);
		return 404;
	}
	const char *ps = json_string_value(json_object_get(vm, "power_state"));
	json_t *host = json_is_integer(json_object_get(vm, "host_id"))
			       ? inv_host_by_id(c, json_integer_value(json_object_get(vm, "host_id"))) : NULL;
	if ((strcmp(ps, "running") && strcmp(ps, "paused")) || !host) {
		*resp = http_error("VM %s is %s; only a running or paused VM can be suspended", name, ps);
		pthread_mutex_unlock(&c->lock);
		json_decref(host);
		json_decref(vm);
		return 409;
	}
	if ((status = lock_vm(c, vm, "suspend", &task, resp))) {
		pthread_mutex_unlock(&c->lock);
		json_decref(host);
		json_decref(vm);
		return status;
	}
	pthread_mutex_unlock(&c->lock);
	json_t *r = NULL;
	http_path(path, sizeof(path), "/v1/vms/", name, "/suspend");
	int st = host_call(host, "POST", path, NULL, &r, 150000, err, sizeof(err));
	pthread_mutex_lock(&c->lock);
	if (st == 200) {
		json_t *sus = json_object_get(r, "suspend");
		inv_vm_set_location(c, json_integer_value(json_object_get(vm, "id")), json_integer_value(json_object_get(host, "id")),
				    NULL, "suspended");
		snprintf(msg, sizeof(msg), "VM %s suspended on host %s to %s (paused %.1f ms, written in %.1f ms)", name,
			 json_string_value(json_object_get(host, "name")), json_string_value(json_object_get(sus, "path")),
			 json_number_value(json_object_get(sus, "pause_ms")), json_number_value(json_object_get(sus, "write_ms")));
		task_finish(c, task, true, msg, json_pack("{s:O*}", "suspend", sus));
		json_t *fresh = inv_vm(c, name);
		*resp = inv_vm_json(c, fresh);
		json_decref(fresh);
		json_object_set_new(*resp, "task", json_integer(task));
		json_object_set(*resp, "suspend", sus);
		status = 200;
	} else {
		snprintf(msg, sizeof(msg), "cannot suspend VM %s: %s", name, err);
		task_finish(c, task, false, msg, NULL);
		*resp = json_pack("{s:s, s:I}", "error", msg, "task", (json_int_t)task);
		status = st == 409 ? 409 : 502;
	}
	unlock_vm(c, vm);
	pthread_mutex_unlock(&c->lock);
	json_decref(r);
	json_decref(host);
	json_decref(vm);
	return status;
}

int placement_power_on(struct center *c, const char *name, const char *want_host, json_t **resp)
{
	char err[512], mem_s[32], automation[16];
	json_t *placed_by = NULL; /* {by: drs, automation, cluster_score_on, host} when DRS placed it */
	uint32_t mask[EVC_REGS];
	int64_t task = 0;
	int status;

	pthread_mutex_lock(&c->lock);
	json_t *vm = inv_vm(c, name);
	if (!vm) {
		pthread_mutex_unlock(&c->lock);
		*resp = json_sprintf("no VM named %s (see `glide vm list`)", name);
		*resp = json_pack("{s:o}", "error", *resp);
		return 404;
	}
	const char *ps = json_string_value(json_object_get(vm, "power_state"));
	if (!strcmp(ps, "suspended")) {
		pthread_mutex_unlock(&c->lock);
		status = resume_suspended(c, vm, want_host, resp);
		json_decref(vm);
		return status;
	}
	if (strcmp(ps, "off")) {
		pthread_mutex_unlock(&c->lock);
		*resp = json_pack("{s:o}", "error", json_sprintf("VM %s is already %s", name, ps));
		json_decref(vm);
		return 409;
	}
	if ((status = lock_vm(c, vm, "power-on", &task, resp))) {
		pthread_mutex_unlock(&c->lock);
		json_decref(vm);
		return status;
	}
	int64_t cluster_id = json_integer_value(json_object_get(vm, "cluster_id"));
	const char *level = placement_vm_level(c, vm);
	char level_copy[32];
	snprintf(level_copy, sizeof(level_copy), "%s", level);
	placement_level_mask(c, cluster_id, level_copy, mask, err, sizeof(err));
	json_t *hosts = want_host ? inv_hosts_named(c, want_host) : inv_hosts_in_cluster(c, cluster_id);
	/* DRS rules: must rules and VM-VM rules against where the cluster's VMs run */
	json_t *rules = inv_rules(c, cluster_id), *running = json_object(), *cvms = inv_vms_in_cluster(c, cluster_id), *cv;
	size_t ci;
	json_array_foreach(cvms, ci, cv) {
		json_t *at = json_is_integer(json_object_get(cv, "host_id")) &&
				     !strcmp(json_string_value(json_object_get(cv, "power_state")) ?: "", "running")
			     ? inv_host_by_id(c, json_integer_value(json_object_get(cv, "host_id"))) : NULL;
		if (at)
			json_object_set(running, json_string_value(json_object_get(cv, "name")), json_object_get(at, "name"));
		json_decref(at);
	}
	json_decref(cvms);
	/* DRS places it when its automation level (its own, else the cluster's) is partial or full */
	json_t *drs = inv_cluster_drs(c, cluster_id), *cl = inv_cluster_by_id(c, cluster_id);
	snprintf(automation, sizeof(automation), "%s", json_string_value(json_object_get(vm, "drs_automation"))
					 ?: json_string_value(json_object_get(drs, "mode")) ?: "manual");
	bool drs_places = !want_host && cl && (!strcmp(automation, "partial") || !strcmp(automation, "full"));
	char cluster_name[NAME_LEN_MAX + 1];
	snprintf(cluster_name, sizeof(cluster_name), "%s", json_string_value(json_object_get(cl, "name")) ?: "");
	json_decref(drs);
	json_decref(cl);
	pthread_mutex_unlock(&c->lock);

	json_t *config = json_loads(json_string_value(json_object_get(vm, "config")), 0, NULL);
	json_t *nics = inv_vm_array(vm, "nics"), *disks = inv_vm_array(vm, "disks"), *hardware = inv_vm_array(vm, "hardware");
	uint64_t need = (uint64_t)json_integer_value(json_object_get(config, "memory"));
	json_t *reasons = json_array(), *chosen = NULL;
	size_t i, n = json_array_size(hosts);
	json_t *h;
	struct placement_host *cand = calloc(n ? n : 1, sizeof(*cand));
	if (!cand) {
		json_array_append_new(reasons, json_string("out of memory"));
		n = 0;
	}
	for (i = 0; i < n; i++) {
		h = json_array_get(hosts, i);
		struct placement_host *p = &cand[i];
		p->name = json_string_value(json_object_get(h, "name"));
		p->home = json_equal(json_object_get(h, "id"), json_object_get(vm, "host_id"));
		char why[64];
		pthread_mutex_lock(&c->lock);
		bool maint = maintenance_blocks(c, json_integer_value(json_object_get(h, "id")), why, sizeof(why));
		pthread_mutex_unlock(&c->lock);
		if (maint) { /* takes no VM: placement_choose sees a host without facts and says why */
			snprintf(p->error, sizeof(p->error), "%s", why);
			continue;
		}
		if (rules_forbid(rules, name, p->name, running, p->error, sizeof(p->error)))
			continue;
		json_t *f = host_facts(h, p->error, sizeof(p->error));
		if (!f)
			continue;
		p->facts = true;
		p->free = (uint64_t)json_integer_value(json_object_get(json_object_get(f, "memory"), "free"));
		p->have_regs = host_facts_regs(f, p->regs);
		/* its networks (facts) and what it sees of the VM's disks (GET /v1/paths) */
		json_t *paths = json_array_size(disks) ? host_paths(h, disks) : NULL, *lacks = json_array(), *l;
		compat_attachments(nics, disks, f, paths, NULL, p->name, NULL, lacks);
		compat_hardware(hardware, name, f, p->name, lacks);
		size_t k, used = 0;
		json_array_foreach(lacks, k, l)
			if (used < sizeof(p->lacks))
				used += (size_t)snprintf(p->lacks + used, sizeof(p->lacks) - used, "%s%s", k ? "; " : "",
							 json_string_value(l));
		json_decref(lacks);
		json_decref(paths);
		json_decref(f);
	}
	json_decref(rules);
	json_decref(running);
	if (drs_places && n) {
		double vcpus = (double)json_integer_value(json_object_get(config, "vcpus"));
		if (drs_place_scores(c, cluster_name, vcpus > 0 ? vcpus : 1, need, cand, n, err, sizeof(err)) == 0) {
			placed_by = json_pack("{s:s, s:s, s:o}", "by", "drs", "automation", automation, "cluster_score_on", json_object());
			for (i = 0; i < n; i++)
				if (cand[i].have_score)
					json_object_set_new(json_object_get(placed_by, "cluster_score_on"), cand[i].name, json_real(cand[i].score));
		} else {
			glide_log("center", "DRS placement of %s: %s; placed by free memory", name, err);
		}
	}
	int pick = placement_choose(cand, n, need, level_copy, mask, reasons);
	if (pick >= 0)
		chosen = json_array_get(hosts, (size_t)pick);
	if (pick >= 0 && placed_by)
		json_object_set_new(placed_by, "host", json_string(cand[pick].name));
	free(cand);
	json_t *cfg_new = json_deep_copy(config);
	json_object_set_new(cfg_new, "cpuid_mask", evc_regs_to_json(mask));
	json_object_set_new(cfg_new, "evc_level", json_string(level_copy));
	json_object_set_new(cfg_new, "name", json_string(name));
	json_t *boot = json_loads(json_string_value(json_object_get(vm, "boot")), 0, NULL);
	json_t *devices = json_loads(json_string_value(json_object_get(vm, "devices")), 0, NULL);
	json_t *r = NULL;
	char path[160], msg[1024] = "";
	status = 0;

	if (!chosen) {
		char *list = json_dumps(reasons, JSON_COMPACT);
		snprintf(msg, sizeof(msg), "no host can power on VM %s (needs %s%s%s): %s", name,
			 format_size(need, mem_s, sizeof(mem_s)), strcmp(level_copy, EVC_NONE) ? ", EVC " : "",
			 strcmp(level_copy, EVC_NONE) ? level_copy : "", json_array_size(hosts) ? list : "the cluster has no hosts (add one with `glide host add`)");
		free(list);
		status = 409;
		goto done;
	}
	/* a powered-off VM registered on another host moves here (cold) */
	if (json_is_integer(json_object_get(vm, "host_id")) && !json_equal(json_object_get(vm, "host_id"), json_object_get(chosen, "id"))) {
		json_t *old = NULL;
		pthread_mutex_lock(&c->lock);
		old = inv_host_by_id(c, json_integer_value(json_object_get(vm, "host_id")));
		pthread_mutex_unlock(&c->lock);
		http_path(path, sizeof(path), "/v1/vms/", name, NULL);
		if (old)
			host_call(old, "DELETE", path, NULL, NULL, 0, err, sizeof(err));
		json_decref(old);
	}
	http_path(path, sizeof(path), "/v1/vms/", name, NULL);
	int st = host_call(chosen, "GET", path, NULL, &r, 0, err, sizeof(err));
	json_decref(r);
	r = NULL;
	if (st == 200) {
		http_path(path, sizeof(path), "/v1/vms/", name, "/config");
		json_t *body = json_pack("{s:O, s:O, s:O, s:O, s:o}", "config", cfg_new, "boot", boot, "nics", nics, "disks", disks,
					 "hardware", inv_vm_array(vm, "hardware"));
		st = host_call(chosen, "POST", path, body, &r, 0, err, sizeof(err));
		json_decref(body);
		json_decref(r);
		r = NULL;
		http_path(path, sizeof(path), "/v1/vms/", name, "/start");
		if (st == 200)
			st = host_call(chosen, "POST", path, NULL, &r, 30000, err, sizeof(err));
	} else {
		json_t *body = json_pack("{s:s, s:O, s:O, s:O, s:O, s:O, s:o, s:b}", "name", name, "config", cfg_new, "boot", boot,
					 "devices", devices, "nics", nics, "disks", disks, "hardware", inv_vm_array(vm, "hardware"),
					 "start", 1);
		st = host_call(chosen, "POST", "/v1/vms", body, &r, 30000, err, sizeof(err));
		json_decref(body);
	}
	if (st != 200 && st != 201) {
		snprintf(msg, sizeof(msg), "host %s could not start VM %s: %s", json_string_value(json_object_get(chosen, "name")), name, err);
		status = 502;
		goto done;
	}
	pthread_mutex_lock(&c->lock);
	inv_vm_set_powered_on(c, json_integer_value(json_object_get(vm, "id")), json_integer_value(json_object_get(chosen, "id")),
			      json_string_value(json_object_get(r, "api")), cfg_new);
	pthread_mutex_unlock(&c->lock);
	if (placed_by)
		snprintf(msg, sizeof(msg), "VM %s powered on on host %s (EVC %s), placed by DRS (automation %s): cluster score %.0f%% "
			 "with it there", name, json_string_value(json_object_get(chosen, "name")), level_copy, automation,
			 json_number_value(json_object_get(json_object_get(placed_by, "cluster_score_on"),
							   json_string_value(json_object_get(chosen, "name")))));
	else
		snprintf(msg, sizeof(msg), "VM %s powered on on host %s (EVC %s)", name, json_string_value(json_object_get(chosen, "name")),
			 level_copy);
	status = 200;
done:
	pthread_mutex_lock(&c->lock);
	json_t *result = status == 200 ? NULL : json_pack("{s:O}", "reasons", reasons);
	task_finish(c, task, status == 200, msg, result); /* task_finish copies it */
	json_decref(result);
	unlock_vm(c, vm);
	if (status == 200) {
		json_t *fresh = inv_vm(c, name);
		*resp = inv_vm_json(c, fresh);
		json_decref(fresh);
		json_object_set_new(*resp, "task", json_integer(task));
		if (placed_by)
			json_object_set(*resp, "placement", placed_by);
	} else {
		*resp = json_pack("{s:s, s:O, s:I}", "error", msg, "reasons", reasons, "task", (json_int_t)task);
	}
	json_decref(placed_by);
	pthread_mutex_unlock(&c->lock);
	json_decref(r);
	json_decref(vm);
	json_decref(hosts);
	json_decref(config);
	json_decref(cfg_new);
	json_decref(boot);
	json_decref(devices);
	json_decref(nics);
	json_decref(hardware);
	json_decref(disks);
	json_decref(reasons);
	return status;
}

int placement_power_off(struct center *c, const char *name, json_t **resp)
{
	char err[512], path[160];
	int64_t task = 0;
	int status;

	pthread_mutex_lock(&c->lock);
	json_t *vm = inv_vm(c, name);
	if (!vm) {
		pthread_mutex_unlock(&c->lock);
		*resp = json_pack("{s:o}", "error", json_sprintf("no VM named %s (see `glide vm list`)", name));
		return 404;
	}
	if ((status = lock_vm(c, vm, "power-off", &task, resp))) {
		pthread_mutex_unlock(&c->lock);
		json_decref(vm);
		return status;
	}
	json_t *host = json_is_integer(json_object_get(vm, "host_id"))
			       ? inv_host_by_id(c, json_integer_value(json_object_get(vm, "host_id"))) : NULL;
	pthread_mutex_unlock(&c->lock);
	int st = 200;
	if (host && strcmp(json_string_value(json_object_get(vm, "power_state")), "off")) {
		json_t *r = NULL;
		http_path(path, sizeof(path), "/v1/vms/", name, "/stop");
		st = host_call(host, "POST", path, NULL, &r, 30000, err, sizeof(err));
		json_decref(r);
	}
	pthread_mutex_lock(&c->lock);
	if (st == 200 || st == 404) {
		inv_vm_set_off(c, json_integer_value(json_object_get(vm, "id")), 0);
		task_finish(c, task, true, "powered off", NULL);
		status = 200;
	} else {
		char msg[700];
		snprintf(msg, sizeof(msg), "cannot power off VM %s: %s", name, err);
		task_finish(c, task, false, msg, NULL);
		*resp = json_pack("{s:s}", "error", msg);
		status = 502;
	}
	unlock_vm(c, vm);
	if (status == 200) {
		json_t *fresh = inv_vm(c, name);
		*resp = inv_vm_json(c, fresh);
		json_decref(fresh);
	}
	pthread_mutex_unlock(&c->lock);
	json_decref(host);
	json_decref(vm);
	return status;
}
