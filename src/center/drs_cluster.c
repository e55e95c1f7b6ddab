/* A cluster's DRS view (GET /v1/clusters/NAME/drs): the snapshot DRS works
 * on, taken from the inventory (hosts, where each VM runs) and from every
 * connected host agent's demand report (GET /v1/demand: capacity, each
 * VM's CPU demand), the allowed hosts of each VM from the compatibility
 * check a migration would run, then the VM DRS scores (on their host and
 * on every other allowed host), the cluster score, its buckets and the
 * recommendations of one DRS pass (drs.c). A pass keeps its
 * recommendations in the inventory and, in automation level full, applies
 * them (migration tasks); a VM DRS moved is not moved again within the
 * cooldown. */
#include "center/center.h"
#include "center/drs.h"
#include "center/rules.h"
#include "api/http.h"
#include "common/hardware.h"
#include "common/util.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define DRS_DEMAND_TIMEOUT_MS 3000
#define DRS_RECOMMENDATIONS_MAX 64

static const char *str(json_t *o, const char *k) { return json_string_value(json_object_get(o, k)); }

static json_t *row_json(json_t *row, const char *column)
{
	const char *t = str(row, column);
	return t ? json_loads(t, JSON_DECODE_ANY, NULL) : NULL;
}

/* The demand entry of VM name in a host's report, or NULL. */
static json_t *vm_demand(json_t *report, const char *name)
{
	size_t i;
	json_t *v;
	json_array_foreach(json_object_get(report, "vms"), i, v)
		if (!strcmp(str(v, "name") ? str(v, "name") : "", name))
			return v;
	return NULL;
}

/* Assignable devices in a DRS pass: VM i may join host j when every device
 * it asks for matches a free one there, beside the devices the VMs the pass
 * has put there hold, and those VMs outside the snapshot hold (an incoming
 * one, as the host's facts list them). */
struct devices_ctx {
	const struct drs_vm *vms;
	int nv;
	json_t **hw;             /* per VM: its requests */
	json_t **facts;          /* per host */
};

static bool devices_fit(void *ctx, int i, int j, const int *place)
{
	struct devices_ctx *d = ctx;
	json_t *f = d->facts[j], *v;
	size_t k, n = 0;

	if (!json_array_size(d->hw[i]))
		return true;
	struct hw_holder *holders = calloc(json_array_size(json_object_get(f, "vms")) + (size_t)d->nv + 1, sizeof(*holders));
	if (!holders)
		return false;
	json_array_foreach(json_object_get(f, "vms"), k, v) {
		const char *name = str(v, "name");
		bool in_snapshot = false;
		for (int m = 0; m < d->nv && name; m++)
			in_snapshot |= !strcmp(d->vms[m].name, name);
		if (name && !in_snapshot && json_is_integer(json_object_get(v, "pid")) && json_array_size(json_object_get(v, "hardware")))
			holders[n++] = (struct hw_holder){ name, json_object_get(v, "hardware") };
	}
	for (int m = 0; m < d->nv; m++)
		if (m != i && place[m] == j && json_array_size(d->hw[m]))
			holders[n++] = (struct hw_holder){ d->vms[m].name, d->hw[m] };
	holders[n++] = (struct hw_holder){ d->vms[i].name, d->hw[i] };
	char why[256];
	json_t *have = json_object_get(f, "hardware");
	bool fits = hw_fit(json_is_array(have) ? have : NULL, holders, n, NULL, why, sizeof(why)) == 0;
	free(holders);
	return fits;
}

/* Why no host takes a VM that must move: per other host, the compatibility
 * reasons, or why the host takes no VM now. */
static json_t *blocked_reason(const struct drs_host *hosts, int nh, const struct drs_vm *v, json_t *not_allowed)
{
	char buf[2048];
	size_t used = (size_t)snprintf(buf, sizeof(buf), "no other host takes it:");
	int others = 0;
	for (int j = 0; j < nh && used < sizeof(buf); j++) {
		if (j == v->host)
			continue;
		others++;
		json_t *why = json_object_get(not_allowed, hosts[j].name);
		char *list = why ? json_dumps(why, JSON_COMPACT) : NULL;
		used += (size_t)snprintf(buf + used, sizeof(buf) - used, " %s: %s;", hosts[j].name,
					 list ? list : hosts[j].evacuate ? "in maintenance" : !hosts[j].accepts ? "does not answer"
					 : "a rule forbids it");
		free(list);
	}
	if (!others)
		snprintf(buf + used, sizeof(buf) - used, " the cluster has no other host");
	return json_string(buf);
}

json_t *drs_cluster_view(struct center *c, const char *cluster, int threshold, char *err, size_t errlen)
{
	pthread_mutex_lock(&c->lock);
	json_t *cl = inv_cluster(c, cluster);
	if (!cl) {
		pthread_mutex_unlock(&c->lock);
		errf(err, errlen, "no cluster named %s (see `glide cluster list`)", cluster);
		return NULL;
	}
	int64_t cid = json_integer_value(json_object_get(cl, "id"));
	json_t *hrows = inv_hosts_in_cluster(c, cid), *vrows = inv_vms_in_cluster(c, cid);
	json_t *settings = inv_cluster_drs(c, cid), *rules = inv_rules(c, cid), *pending = inv_drs_recs(c, cid);
	size_t vi;
	json_t *vr;
	int64_t now_ms = inv_now_ms();
	json_array_foreach(vrows, vi, vr) { /* in cooldown: DRS moved it less than drs_cooldown_s ago */
		int64_t moved = inv_drs_moved_at(c, json_integer_value(json_object_get(vr, "id")));
		json_object_set_new(vr, "drs_cooldown", json_boolean(moved && now_ms - moved < (int64_t)c->drs_cooldown_s * 1000));
	}
	json_array_foreach(hrows, vi, vr) { /* a host in or entering maintenance takes no VM; entering: empty it */
		json_t *m = inv_host_maintenance(c, json_integer_value(json_object_get(vr, "id")));
		if (maintenance_blocks(c, json_integer_value(json_object_get(vr, "id")), NULL, 0))
			json_object_set(vr, "maintenance", json_object_get(m, "state"));
		json_decref(m);
	}
	json_decref(cl);
	pthread_mutex_unlock(&c->lock);
	if (!threshold)
		threshold = (int)json_integer_value(json_object_get(settings, "threshold"));
	if (threshold < DRS_THRESHOLD_MIN || threshold > DRS_THRESHOLD_MAX)
		threshold = DRS_THRESHOLD_DEFAULT;

	size_t nh = json_array_size(hrows), nvr = json_array_size(vrows);
	if (nh > DRS_HOSTS_MAX) {
		errf(err, errlen, "cluster %s has %zu hosts; DRS takes at most %d", cluster, nh, DRS_HOSTS_MAX);
		json_decref(hrows);
		json_decref(vrows);
		json_decref(settings);
		json_decref(rules);
		json_decref(pending);
		return NULL;
	}
	struct drs_host hosts[DRS_HOSTS_MAX];
	json_t *reports[DRS_HOSTS_MAX], *facts[DRS_HOSTS_MAX];
	json_t *host_out = json_array();
	for (size_t j = 0; j < nh; j++) {
		json_t *h = json_array_get(hrows, j);
		char e[256] = "";
		reports[j] = NULL;
		facts[j] = row_json(h, "facts");
		if (!strcmp(str(h, "state") ? str(h, "state") : "", "connected")) {
			int st = host_call(h, "GET", "/v1/demand", NULL, &reports[j], DRS_DEMAND_TIMEOUT_MS, e, sizeof(e));
			if (st != 200) {
				if (st > 0)
					snprintf(e, sizeof(e), "GET /v1/demand answered %d", st);
				json_decref(reports[j]);
				reports[j] = NULL;
			}
		} else {
			snprintf(e, sizeof(e), "host is %s", str(h, "state") ? str(h, "state") : "unknown");
		}
		json_t *cap = json_object_get(reports[j], "capacity");
		const char *maint = str(h, "maintenance");
		hosts[j] = (struct drs_host){ .name = str(h, "name"), .cpus = json_number_value(json_object_get(cap, "cpus")),
					      .memory = (uint64_t)json_integer_value(json_object_get(cap, "memory")),
					      .accepts = reports[j] != NULL && !maint, .evacuate = maint != NULL };
		json_t *ho = json_pack("{s:s, s:f, s:I, s:b, s:s?}", "name", hosts[j].name, "cpus", hosts[j].cpus,
				       "memory", (json_int_t)hosts[j].memory, "accepts", hosts[j].accepts, "maintenance", maint);
		if (!reports[j])
			json_object_set_new(ho, "error", json_string(e));
		json_array_append_new(host_out, ho);
	}

	/* the VMs DRS sees: those running on a host of the cluster */
	struct drs_vm *vms = calloc(nvr ? nvr : 1, sizeof(*vms));
	json_t **not_allowed = calloc(nvr ? nvr : 1, sizeof(*not_allowed)); /* per VM: host -> compatibility reasons */
	const char **automation = calloc(nvr ? nvr : 1, sizeof(*automation));
	int nv = 0;
	for (size_t i = 0; vms && not_allowed && automation && i < nvr; i++) {
		json_t *v = json_array_get(vrows, i);
		if (strcmp(str(v, "power_state") ? str(v, "power_state") : "", "running"))
			continue;
		int64_t hid = json_integer_value(json_object_get(v, "host_id"));
		int at = -1;
		for (size_t j = 0; j < nh; j++)
			if (json_integer_value(json_object_get(json_array_get(hrows, j), "id")) == hid)
				at = (int)j;
		if (at < 0)
			continue;
		json_t *config = row_json(v, "config");
		uint64_t mem = (uint64_t)json_integer_value(json_object_get(config, "memory"));
		json_decref(config);
		json_t *d = vm_demand(reports[at], str(v, "name"));
		json_t *cpu = json_object_get(d, "cpu_demand");
		/* its own automation level, else the cluster's; disabled: DRS never moves it */
		automation[nv] = str(v, "drs_automation") ? str(v, "drs_automation") : str(settings, "mode");
		bool disabled = !strcmp(automation[nv] ?: "", "disabled");
		vms[nv] = (struct drs_vm){ .name = str(v, "name"), .host = at,
					   .cpu_demand = json_is_number(cpu) ? json_number_value(cpu) : 0,
					   .mem_demand = mem, .mem_move = mem,
					   .movable = !json_is_true(json_object_get(v, "drs_cooldown")) && !disabled,
					   .locked = json_is_integer(json_object_get(v, "locked_by")),
					   .allowed = 1ULL << at, .hint = -1,
					   .manual = strcmp(automation[nv] ?: "", "full") != 0 };
		for (size_t k = 0; k < json_array_size(pending); k++) { /* the last pass's recommendation for it */
			json_t *p = json_array_get(pending, k);
			if (!strcmp(str(p, "state"), "pending") && !strcmp(str(p, "vm"), vms[nv].name) && str(p, "destination"))
				for (size_t j = 0; j < nh; j++)
					if (!strcmp(str(p, "destination"), hosts[j].name))
						vms[nv].hint = (int)j;
		}
		not_allowed[nv] = json_object();
		/* other hosts: the compatibility check of a live migration */
		json_t *disks = inv_vm_array(v, "disks");
		json_t *src_paths = json_array_size(disks) ? host_paths(json_array_get(hrows, at), disks) : NULL;
		for (size_t j = 0; j < nh && !disabled; j++) {
			if ((int)j == at || !reports[j] || !facts[j])
				continue;
			json_t *dst_paths = json_array_size(disks) ? host_paths(json_array_get(hrows, j), disks) : NULL;
			json_t *why = compat_check(v, facts[at], facts[j], json_array_get(hrows, j), hosts[at].name, src_paths,
						   dst_paths, true, NULL);
			if (!json_array_size(why))
				vms[nv].allowed |= 1ULL << j;
			else
				json_object_set(not_allowed[nv], hosts[j].name, why);
			json_decref(why);
			json_decref(dst_paths);
		}
		json_decref(src_paths);
		json_decref(disks);
		nv++;
	}

	json_t *conflicts = rules_apply(rules, hosts, (int)nh, vms, nv);
	double *scores = calloc(nv ? nv : 1, sizeof(double));
	struct drs_rec *recs = calloc(DRS_RECOMMENDATIONS_MAX, sizeof(*recs));
	json_t **hw = calloc(nv ? nv : 1, sizeof(*hw));
	for (int i = 0; hw && i < nv; i++)
		for (size_t k = 0; k < nvr; k++)
			if (!strcmp(str(json_array_get(vrows, k), "name") ?: "", vms[i].name))
				hw[i] = inv_vm_array(json_array_get(vrows, k), "hardware");
	struct devices_ctx dctx = { .vms = vms, .nv = nv, .hw = hw, .facts = facts };
	struct drs_params p = { .threshold = threshold, .cost_points_per_gib = DRS_COST_POINTS_PER_GIB,
				.fits = hw ? devices_fit : NULL, .fits_ctx = &dctx };
	double cluster_score = scores ? drs_scores(hosts, (int)nh, vms, nv, scores) : 0;
	int nrec = recs ? drs_recommend(hosts, (int)nh, vms, nv, &p, recs, DRS_RECOMMENDATIONS_MAX) : 0;

	int counts[DRS_BUCKETS] = { 0 };
	json_t *vm_out = json_array();
	for (int i = 0; i < nv && scores; i++) {
		json_t *d = vm_demand(reports[vms[i].host], vms[i].name), *elsewhere = json_object();
		for (size_t j = 0; j < nh; j++)
			if ((int)j != vms[i].host && (vms[i].allowed >> j & 1))
				json_object_set_new(elsewhere, hosts[j].name,
						    json_real(drs_vm_score_on(hosts, (int)nh, vms, nv, i, (int)j)));
		counts[drs_bucket(scores[i])]++;
		json_t *o = json_pack("{s:s, s:s, s:f, s:I, s:f, s:s, s:o, s:b}", "name", vms[i].name, "host",
				      hosts[vms[i].host].name, "cpu_demand", vms[i].cpu_demand, "memory",
				      (json_int_t)vms[i].mem_demand, "score", scores[i], "bucket",
				      drs_bucket_label(drs_bucket(scores[i])), "score_on", elsewhere, "movable", vms[i].movable);
		json_object_set(o, "ready_pct", json_object_get(d, "ready_pct") ? json_object_get(d, "ready_pct") : json_null());
		json_object_set_new(o, "locked", json_boolean(vms[i].locked));
		json_object_set_new(o, "automation", json_string(automation[i] ?: "manual"));
		json_object_set(o, "not_allowed", not_allowed[i]);
		if (hw && json_array_size(hw[i]))
			json_object_set(o, "hardware", hw[i]);
		json_array_append_new(vm_out, o);
	}
	json_t *buckets = json_object();
	for (int b = 0; b < DRS_BUCKETS; b++)
		json_object_set_new(buckets, drs_bucket_label(b), json_integer(counts[b]));
	json_t *rec_out = json_array();
	for (int k = 0; k < nrec; k++) {
		struct drs_rec *r = &recs[k];
		json_t *o = json_pack("{s:s, s:s, s:s?, s:s, s:f, s:f, s:f, s:f}", "vm", vms[r->vm].name, "from",
				      hosts[r->from].name, "to", r->to >= 0 ? hosts[r->to].name : NULL, "reason",
				      drs_reason_name(r->reason), "gain", r->gain, "cost", r->cost, "cluster_before",
				      r->cluster_before, "cluster_after", r->cluster_after);
		json_object_set_new(o, "automation", json_string(automation[r->vm] ?: "manual"));
		if (r->to < 0 && !strcmp(automation[r->vm] ?: "", "disabled"))
			json_object_set_new(o, "blocked", json_sprintf("DRS automation is disabled for it (`glide vm set %s "
								       "--drs-automation default`, or move it by hand)", vms[r->vm].name));
		else if (r->to < 0)
			json_object_set_new(o, "blocked", blocked_reason(hosts, (int)nh, &vms[r->vm], not_allowed[r->vm]));
		json_array_append_new(rec_out, o);
	}
	json_t *view = json_pack("{s:s, s:O, s:i, s:f, s:f, s:s, s:o, s:o, s:o, s:o}", "cluster", cluster,
				 "mode", json_object_get(settings, "mode"), "threshold", threshold,
				 "min_gain", isinf(drs_min_gain(threshold)) ? -1 : drs_min_gain(threshold),
				 "score", cluster_score, "bucket", drs_bucket_label(drs_bucket(cluster_score)),
				 "buckets", buckets, "hosts", host_out, "vms", vm_out, "recommendations", rec_out);
	json_object_set_new(view, "rule_conflicts", conflicts);
	for (size_t j = 0; j < nh; j++) {
		json_decref(reports[j]);
		json_decref(facts[j]);
	}
	for (int i = 0; i < nv; i++) {
		json_decref(not_allowed[i]);
		json_decref(hw ? hw[i] : NULL);
	}
	free(hw);
	free(automation);
	free(not_allowed);
	free(scores);
	free(recs);
	free(vms);
	json_decref(hrows);
	json_decref(vrows);
	json_decref(settings);
	json_decref(rules);
	json_decref(pending);
	return view;
}

int drs_place_scores(struct center *c, const char *cluster, double cpu, uint64_t mem, struct placement_host *cand, size_t n,
		     char *err, size_t errlen)
{
	json_t *view = drs_cluster_view(c, cluster, DRS_THRESHOLD_MIN, err, errlen), *hl, *vl;
	if (!view)
		return -1;
	hl = json_object_get(view, "hosts");
	vl = json_object_get(view, "vms");
	size_t nh = json_array_size(hl), nv = json_array_size(vl);
	struct drs_host *hosts = calloc(nh + 1, sizeof(*hosts));
	struct drs_vm *vms = calloc(nv + 1, sizeof(*vms));
	double *scores = calloc(nv + 1, sizeof(*scores));
	int rc = -1;
	if (!hosts || !vms || !scores) {
		errf(err, errlen, "out of memory");
		goto out;
	}
	for (size_t j = 0; j < nh; j++) {
		json_t *h = json_array_get(hl, j);
		hosts[j] = (struct drs_host){ .name = str(h, "name"), .cpus = json_number_value(json_object_get(h, "cpus")),
					      .memory = (uint64_t)json_integer_value(json_object_get(h, "memory")), .accepts = true };
	}
	for (size_t i = 0; i < nv; i++) {
		json_t *v = json_array_get(vl, i);
		vms[i] = (struct drs_vm){ .name = str(v, "name"), .host = -1,
					  .cpu_demand = json_number_value(json_object_get(v, "cpu_demand")),
					  .mem_demand = (uint64_t)json_integer_value(json_object_get(v, "memory")), .hint = -1 };
		for (size_t j = 0; j < nh; j++)
			if (!strcmp(str(v, "host") ?: "", hosts[j].name ?: ""))
				vms[i].host = (int)j;
	}
	/* the new VM: its vCPUs all busy (nothing measured yet) and its memory */
	vms[nv] = (struct drs_vm){ .name = "(new)", .cpu_demand = cpu, .mem_demand = mem, .hint = -1 };
	for (size_t k = 0; k < n; k++) {
		cand[k].have_score = false;
		for (size_t j = 0; j < nh && cand[k].facts; j++)
			if (!strcmp(cand[k].name, hosts[j].name ?: "") && hosts[j].cpus > 0) {
				vms[nv].host = (int)j;
				cand[k].score = drs_scores(hosts, (int)nh, vms, (int)nv + 1, scores);
				cand[k].have_score = true;
			}
	}
	rc = 0;
out:
	free(hosts);
	free(vms);
	free(scores);
	json_decref(view);
	return rc;
}

int drs_apply(struct center *c, int64_t id, json_t **resp)
{
	pthread_mutex_lock(&c->lock);
	json_t *r = inv_drs_rec(c, id);
	pthread_mutex_unlock(&c->lock);
	if (!r) {
		*resp = http_error("no DRS recommendation %lld (see `glide cluster drs --run`)", (long long)id);
		return 404;
	}
	const char *state = str(r, "state"), *to = str(r, "destination"), *vm = str(r, "vm");
	if (strcmp(state, "pending") || !to) {
		*resp = http_error("DRS recommendation %lld is %s%s: only a pending one with a destination can be applied",
				   (long long)id, state, to ? "" : " and has no destination");
		json_decref(r);
		return 409;
	}
	struct center_migrate_request rq = { .to = to };
	json_t *params = json_object();
	int st = migrate_task_start(c, vm, &rq, params, resp);
	json_decref(params);
	pthread_mutex_lock(&c->lock);
	if (st == 202) {
		int64_t task = json_integer_value(json_object_get(*resp, "task"));
		json_t *v = inv_vm(c, vm);
		if (v)
			inv_drs_set_moved(c, json_integer_value(json_object_get(v, "id")), inv_now_ms());
		json_decref(v);
		inv_drs_rec_set_state(c, id, "applied", task);
		glide_log("center", "DRS: recommendation %lld applied: %s from %s to %s (%s), task %lld", (long long)id, vm,
			  str(r, "source"), to, str(r, "reason"), (long long)task);
	} else {
		inv_drs_rec_set_state(c, id, "failed", 0);
		glide_log("center", "DRS: recommendation %lld (%s to %s) not applied: %s", (long long)id, vm, to,
			  json_string_value(json_object_get(*resp, "error")));
	}
	pthread_mutex_unlock(&c->lock);
	json_decref(r);
	return st;
}

json_t *drs_cluster_pass(struct center *c, const char *cluster, int threshold, char *err, size_t errlen)
{
	/* moves off a host entering maintenance are carried out whatever the automation level */
	json_t *view = drs_cluster_view(c, cluster, threshold, err, errlen);
	if (!view)
		return NULL;
	json_t *recs = json_object_get(view, "recommendations");
	pthread_mutex_lock(&c->lock);
	json_t *cl = inv_cluster(c, cluster);
	if (cl)
		inv_drs_recs_replace(c, json_integer_value(json_object_get(cl, "id")), recs);
	json_decref(cl);
	pthread_mutex_unlock(&c->lock);
	size_t i;
	json_t *r;
	json_array_foreach(recs, i, r) { /* applied: the VM's automation level (its own or the cluster's) is full */
		if (!json_is_string(json_object_get(r, "to")) ||
		    (strcmp(str(r, "automation"), "full") && strcmp(str(r, "reason"), drs_reason_name(DRS_REASON_MAINTENANCE))))
			continue;
		json_t *resp = NULL;
		int st = drs_apply(c, json_integer_value(json_object_get(r, "id")), &resp);
		if (st == 202)
			json_object_set(r, "task", json_object_get(resp, "task"));
		else
			json_object_set(r, "not_applied", json_object_get(resp, "error"));
		json_decref(resp);
	}
	return view;
}

void *drs_thread(void *center)
{
	struct center *c = center;
	uint64_t next = now_ns() + (uint64_t)c->drs_interval_s * 1000000000ULL, next_maintenance = 0;
	while (!c->quit) {
		sleep_ns(200000000ULL);
		if (now_ns() >= next_maintenance) { /* hosts entering maintenance: every second */
			maintenance_tick(c);
			next_maintenance = now_ns() + 1000000000ULL;
		}
		if (now_ns() < next)
			continue;
		next = now_ns() + (uint64_t)c->drs_interval_s * 1000000000ULL;
		pthread_mutex_lock(&c->lock);
		json_t *cls = inv_clusters_with_counts(c);
		pthread_mutex_unlock(&c->lock);
		size_t i;
		json_t *cl;
		json_array_foreach(cls, i, cl) {
			char err[256];
			if (!json_integer_value(json_object_get(cl, "vms")) || c->quit)
				continue;
			json_t *view = drs_cluster_pass(c, str(cl, "name"), 0, err, sizeof(err));
			size_t n = json_array_size(json_object_get(view, "recommendations"));
			if (view && n)
				glide_log("center", "DRS pass over cluster %s (%s, threshold %lld): score %.0f%%, %zu recommendation%s",
					  str(cl, "name"), str(view, "mode"), json_integer_value(json_object_get(view, "threshold")),
					  json_number_value(json_object_get(view, "score")), n, n == 1 ? "" : "s");
			json_decref(view);
		}
		json_decref(cls);
	}
	return NULL;
}
