/* `glide center serve`: the controller daemon and its HTTP+JSON API (TCP
 * with a bearer token). Opens the inventory, fails the tasks a previous run
 * left unfinished, starts the reconciler that reads the real VM state back
 * from the hosts, then serves:
 *
 *   GET  /v1/center                          summary
 *   GET  /v1/clusters     POST /v1/clusters  {name, evc, max_migrations_per_host}
 *   GET  /v1/clusters/NAME/evc               hosts' max levels, VMs' levels
 *   GET  /v1/clusters/NAME/drs[?threshold=N] VM DRS scores, cluster score, recommendations (drs_cluster.c)
 *   POST /v1/clusters/NAME/drs               {mode, threshold, run}: DRS settings; run: a pass now
 *   POST /v1/drs/ID/apply                    carry out a DRS recommendation
 *   GET|POST /v1/hosts/NAME/maintenance      maintenance mode: state; {action: enter|exit, ...} (maintenance.c)
 *   GET  /v1/rules[?cluster=C]  POST /v1/rules {name, cluster, kind, vms|vm_group, hosts|host_group}
 *   DELETE /v1/rules/NAME (rules.c)
 *   GET  /v1/groups[?cluster=C] POST /v1/groups {name, cluster, kind, members}  DELETE /v1/groups/NAME (rules.c)
 *   POST /v1/clusters/NAME/evc               {level}: change the baseline
 *   POST /v1/clusters/NAME/limits            {max_migrations_per_host}: each host's migration cost budget
 *   GET  /v1/hosts        POST /v1/hosts     {address, token, name, cluster}
 *   GET  /v1/hosts/NAME   DELETE /v1/hosts/NAME
 *   GET  /v1/vms          POST /v1/vms       {name, memory, vcpus, boot, cluster, evc}
 *   GET  /v1/vms/NAME     DELETE /v1/vms/NAME
 *   POST /v1/vms/NAME/start|stop|suspend|migrate|move-disk|config|capture
 *   POST /v1/netcheck {source, destination, service, seconds}: check now
 *   GET  /v1/netcheck                        the last check of each host pair
 *   GET  /v1/tasks        GET /v1/tasks/ID */
#include "center/center.h"
#include "center/drs.h"
#include "center/rules.h"
#include "api/http.h"
#include "api/daemon.h"
#include "host/host.h"
#include "vmm/config.h"
#include "common/util.h"
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct center center;


/* "PREFIX NAME[/ACTION]": true, or false with the status to answer in
 * *status (400 with *resp set, or 0: no such endpoint). */
static bool split(const struct http_request *req, const char *prefix, bool or_address, char *name, size_t nlen,
		  char *action, size_t alen, json_t **resp, int *status)
{
	char err[512];
	int rc = center_path_parse(req->path, prefix, or_address, name, nlen, action, alen, err, sizeof(err));
	*status = 0;
	if (!rc)
		return true;
	if (rc != -ENOENT) {
		*resp = http_error("%s", err);
		*status = 400;
	}
	return false;
}

/* A request body refused by its parser: 400 with the reason. */
static int bad_request(const char *err, json_t **resp)
{
	*resp = http_error("%s", err);
	return 400;
}

static json_t *host_view(json_t *row)
{
	json_t *h = json_deep_copy(row);
	json_object_del(h, "token");
	const char *f = json_string_value(json_object_get(h, "facts"));
	json_t *facts = f ? json_loads(f, 0, NULL) : NULL;
	json_object_set_new(h, "facts", facts ? facts : json_null());
	if (facts) {
		json_t *cpu = json_object_get(facts, "cpu");
		json_object_set(h, "evc_max_level", json_object_get(cpu, "evc_max_level"));
		json_object_set(h, "memory_free", json_object_get(json_object_get(facts, "memory"), "free"));
		json_object_set(h, "vms_running", json_object_get(facts, "vms_running"));
	}
	return h;
}

static int api_center(void *ctx, const struct http_request *req, json_t **resp)
{
	struct center *c = ctx;
	pthread_mutex_lock(&c->lock);
	json_t *r = inv_counts(c);
	pthread_mutex_unlock(&c->lock);
	json_object_set_new(r, "max_migrations_per_host", json_integer(c->max_migrations_per_host));
	*resp = r;
	return 200;
}

/* ---- clusters and EVC ---- */

static int api_clusters(void *ctx, const struct http_request *req, json_t **resp)
{
	struct center *c = ctx;
	pthread_mutex_lock(&c->lock);
	inv_default_cluster(c);
	json_t *rows = inv_clusters_with_counts(c);
	pthread_mutex_unlock(&c->lock);
	*resp = json_pack("{s:o}", "clusters", rows);
	return 200;
}

static int api_cluster_create(void *ctx, const struct http_request *req, json_t **resp)
{
	struct center *c = ctx;
	struct center_cluster_request r;
	char err[512];
	if (center_cluster_request_parse(req->body, &r, err, sizeof(err)))
		return bad_request(err, resp);
	pthread_mutex_lock(&c->lock);
	json_t *old = inv_cluster(c, r.name);
	if (old) {
		json_decref(old);
		pthread_mutex_unlock(&c->lock);
		*resp = http_error("cluster %s already exists", r.name);
		return 409;
	}
	inv_cluster_insert(c, r.name, r.evc, r.have_max_migrations ? &r.max_migrations : NULL);
	*resp = inv_cluster(c, r.name);
	pthread_mutex_unlock(&c->lock);
	return 201;
}

static json_t *evc_view(struct center *c, json_t *cl)
{
	json_t *hosts = inv_hosts_in_cluster(c, json_integer_value(json_object_get(cl, "id")));
	json_t *vms = inv_vms_in_cluster(c, json_integer_value(json_object_get(cl, "id")));
	const char *level = json_string_value(json_object_get(cl, "evc_level"));
	uint32_t mask[EVC_REGS];
	char err[256];
	placement_level_mask(c, json_integer_value(json_object_get(cl, "id")), level, mask, err, sizeof(err));
	json_t *hv = json_array(), *vv = json_array();
	size_t i;
	json_t *h;
	json_array_foreach(hosts, i, h) {
		json_t *f = json_loads(json_string_value(json_object_get(h, "facts")) ? json_string_value(json_object_get(h, "facts")) : "null", JSON_DECODE_ANY, NULL);
		uint32_t regs[EVC_REGS];
		bool have = host_facts_regs(f, regs);
		char missing[512] = "";
		if (have && strcmp(level, EVC_NONE))
			evc_missing(mask, regs, missing, sizeof(missing));
		json_array_append_new(hv, json_pack("{s:O, s:O, s:O*, s:O*, s:b, s:s*}", "name", json_object_get(h, "name"),
						    "state", json_object_get(h, "state"),
						    "max_level", json_object_get(json_object_get(f, "cpu"), "evc_max_level"),
						    "levels", json_object_get(json_object_get(f, "cpu"), "evc_levels"),
						    "meets_baseline", have && !missing[0], "missing", missing[0] ? missing : NULL));
		json_decref(f);
	}
	json_array_foreach(vms, i, h) {
		json_t *cfg = json_loads(json_string_value(json_object_get(h, "config")), 0, NULL);
		const char *running_level = json_string_value(json_object_get(cfg, "evc_level"));
		json_array_append_new(vv, json_pack("{s:O, s:O, s:s, s:s?}", "name", json_object_get(h, "name"), "state",
						    json_object_get(h, "power_state"),
						    "level", json_is_string(json_object_get(h, "evc_level")) ? json_string_value(json_object_get(h, "evc_level")) : level,
						    "powered_on_level", running_level && *running_level ? running_level : NULL));
		json_decref(cfg);
	}
	json_t *r = json_pack("{s:O, s:s, s:o, s:o, s:o, s:o}", "cluster", json_object_get(cl, "name"), "baseline", level,
			      "baseline_mask", evc_regs_to_json(mask), "baseline_features", evc_feature_list(mask), "hosts", hv, "vms", vv);
	json_t *levels = json_array();
	for (int k = 0; evc_level_at(k); k++)
		json_array_append_new(levels, json_pack("{s:s, s:s}", "name", evc_level_at(k)->name, "summary", evc_level_at(k)->summary));
	json_object_set_new(r, "levels", levels);
	json_decref(hosts);
	json_decref(vms);
	return r;
}

/* The row of cluster name (the default one is made on first use), or NULL
 * with *resp the 404 answer. Caller holds c->lock. */
static json_t *cluster_locked(struct center *c, const char *name, json_t **resp)
{
	if (!strcmp(name, DEFAULT_CLUSTER))
		inv_default_cluster(c);
	json_t *cl = inv_cluster(c, name);
	if (!cl)
		*resp = http_error("no cluster named %s (see `glide cluster list`)", name);
	return cl;
}

static int api_cluster_get(void *ctx, const struct http_request *req, json_t **resp)
{
	struct center *c = ctx;
	char name[128], action[64];
	int status;
	if (!split(req, "/v1/clusters/", false, name, sizeof(name), action, sizeof(action), resp, &status))
		return status;
	if (!strcmp(action, "drs")) { /* asks every host for its demand: not under the lock */
		char err[512];
		uint64_t threshold = DRS_THRESHOLD_DEFAULT;
		if (http_query_uint(req, "threshold", DRS_THRESHOLD_MIN, DRS_THRESHOLD_MAX, &threshold) == -EINVAL)
			return bad_request("?threshold= must be a DRS migration threshold, 1 (mandatory moves only) .. 5", resp);
		if (!strcmp(name, DEFAULT_CLUSTER)) {
			pthread_mutex_lock(&c->lock);
			inv_default_cluster(c);
			pthread_mutex_unlock(&c->lock);
		}
		*resp = drs_cluster_view(c, name, http_query(req, "threshold") ? (int)threshold : 0, err,
					 sizeof(err));
		if (!*resp) {
			*resp = http_error("%s", err);
			return 404;
		}
		pthread_mutex_lock(&c->lock);
		json_t *cl = inv_cluster(c, name);
		json_object_set_new(*resp, "last_pass", cl ? inv_drs_recs(c, json_integer_value(json_object_get(cl, "id"))) : json_array());
		json_decref(cl);
		pthread_mutex_unlock(&c->lock);
		return 200;
	}
	if (*action && strcmp(action, "evc"))
		return 0;
	pthread_mutex_lock(&c->lock);
	json_t *cl = cluster_locked(c, name, resp);
	if (!cl) {
		pthread_mutex_unlock(&c->lock);
		return 404;
	}
	*resp = !strcmp(action, "evc") ? evc_view(c, cl) : json_incref(cl);
	json_decref(cl);
	pthread_mutex_unlock(&c->lock);
	return 200;
}

/* POST /v1/clusters/NAME/drs {mode, threshold, run}: sets the cluster's DRS
 * automation level and threshold (either or both), and with run a DRS pass
 * now (its view, recommendations with their ids; applied in level full). */
static int cluster_drs_post(struct center *c, const char *name, json_t *body, json_t **resp)
{
	char err[512];
	const char *mode;
	int threshold;
	bool run;
	if (center_drs_request_parse(body, &mode, &threshold, &run, err, sizeof(err)))
		return bad_request(err, resp);
	pthread_mutex_lock(&c->lock);
	json_t *cl = cluster_locked(c, name, resp);
	if (!cl) {
		pthread_mutex_unlock(&c->lock);
		return 404;
	}
	int64_t cid = json_integer_value(json_object_get(cl, "id"));
	json_decref(cl);
	json_t *now = inv_cluster_drs(c, cid);
	if (mode || threshold) {
		if (inv_cluster_set_drs(c, cid, mode ? mode : json_string_value(json_object_get(now, "mode")),
					threshold ? threshold : (int)json_integer_value(json_object_get(now, "threshold")))) {
			pthread_mutex_unlock(&c->lock);
			json_decref(now);
			*resp = http_error("cannot store the DRS settings: %s", inv_error(c));
			return 500;
		}
		glide_log("center", "cluster %s: DRS %s, threshold %d", name,
			  mode ? mode : json_string_value(json_object_get(now, "mode")),
			  threshold ? threshold : (int)json_integer_value(json_object_get(now, "threshold")));
		json_decref(now);
		now = inv_cluster_drs(c, cid);
	}
	pthread_mutex_unlock(&c->lock);
	if (!run) {
		json_object_set_new(now, "cluster", json_string(name));
		*resp = now;
		return 200;
	}
	json_decref(now);
	*resp = drs_cluster_pass(c, name, 0, err, sizeof(err));
	if (!*resp) {
		*resp = http_error("%s", err);
		return 404;
	}
	return 200;
}

/* POST /v1/clusters/NAME/limits {max_migrations_per_host}: the budget of
 * migration cost of each of its hosts (budget.c), null: the controller's. */
static int cluster_limits_post(struct center *c, const char *name, json_t *body, json_t **resp)
{
	char err[512];
	bool have;
	int64_t limit;
	if (!json_is_object(body) || !json_object_get(body, "max_migrations_per_host") ||
	    center_limit_parse(json_object_get(body, "max_migrations_per_host"), &have, &limit, err, sizeof(err)))
		return bad_request(json_is_object(body) && json_object_get(body, "max_migrations_per_host") ? err
				   : "give {\"max_migrations_per_host\": N or null}", resp);
	pthread_mutex_lock(&c->lock);
	json_t *cl = cluster_locked(c, name, resp);
	if (!cl) {
		pthread_mutex_unlock(&c->lock);
		return 404;
	}
	int rc = inv_cluster_set_limit(c, json_integer_value(json_object_get(cl, "id")), have ? &limit : NULL);
	json_decref(cl);
	pthread_mutex_unlock(&c->lock);
	if (rc) {
		*resp = http_error("cannot store the limit: %s", inv_error(c));
		return 500;
	}
	glide_log("center", "cluster %s: migration cost budget per host %s", name, have ? "set" : "the controller's");
	*resp = json_pack("{s:s, s:o, s:i}", "cluster", name, "max_migrations_per_host", have ? json_integer(limit) : json_null(),
			  "controller_default", c->max_migrations_per_host);
	return 200;
}

static int api_rules(void *ctx, const struct http_request *req, json_t **resp)
{
	struct center *c = ctx;
	char err[512];
	const char *cluster = http_query(req, "cluster");
	json_t *list = rules_list(c, cluster, err, sizeof(err));
	if (!list) {
		*resp = http_error("%s", err);
		return 404;
	}
	*resp = json_pack("{s:o}", "rules", list);
	return 200;
}

static int api_rule_create(void *ctx, const struct http_request *req, json_t **resp)
{
	return rules_post(ctx, req->body, resp);
}

static int api_rule_delete(void *ctx, const struct http_request *req, json_t **resp)
{
	char name[128], action[64];
	int status;
	if (!split(req, "/v1/rules/", false, name, sizeof(name), action, sizeof(action), resp, &status))
		return status;
	if (action[0])
		return 0;
	return rules_delete(ctx, name, resp);
}

static int api_groups(void *ctx, const struct http_request *req, json_t **resp)
{
	char err[512];
	json_t *list = groups_list(ctx, http_query(req, "cluster"), err, sizeof(err));
	if (!list) {
		*resp = http_error("%s", err);
		return 404;
	}
	*resp = json_pack("{s:o}", "groups", list);
	return 200;
}

static int api_group_post(void *ctx, const struct http_request *req, json_t **resp)
{
	return groups_post(ctx, req->body, resp);
}

static int api_group_delete(void *ctx, const struct http_request *req, json_t **resp)
{
	char name[128], action[64];
	int status;
	if (!split(req, "/v1/groups/", false, name, sizeof(name), action, sizeof(action), resp, &status))
		return status;
	if (action[0])
		return 0;
	return groups_delete(ctx, name, resp);
}

/* POST /v1/drs/ID/apply: carry out a pending recommendation. */
static int api_drs_post(void *ctx, const struct http_request *req, json_t **resp)
{
	struct center *c = ctx;
	int64_t id;
	if (center_drs_apply_path_parse(req->path, &id))
		return 0;
	return drs_apply(c, id, resp);
}

static int api_cluster_post(void *ctx, const struct http_request *req, json_t **resp)
{
	struct center *c = ctx;
	char name[128], action[64], err[512];
	const char *level;
	int status;
	if (!split(req, "/v1/clusters/", false, name, sizeof(name), action, sizeof(action), resp, &status))
		return status;
	if (!strcmp(action, "drs"))
		return cluster_drs_post(c, name, req->body, resp);
	if (!strcmp(action, "limits"))
		return cluster_limits_post(c, name, req->body, resp);
	if (strcmp(action, "evc"))
		return 0;
	if (center_evc_request_parse(req->body, &level, err, sizeof(err)))
		return bad_request(err, resp);
	pthread_mutex_lock(&c->lock);
	json_t *cl = inv_cluster(c, name);
	if (!cl) {
		pthread_mutex_unlock(&c->lock);
		*resp = http_error("no cluster named %s", name);
		return 404;
	}
	int64_t cid = json_integer_value(json_object_get(cl, "id"));
	uint32_t mask[EVC_REGS];
	char problems[2048] = "";
	size_t used = 0;
	placement_level_mask(c, cid, level, mask, err, sizeof(err));
	json_t *hosts = inv_hosts_in_cluster(c, cid);
	size_t i;
	json_t *h;
	json_array_foreach(hosts, i, h) {
		json_t *f = json_loads(json_string_value(json_object_get(h, "facts")) ? json_string_value(json_object_get(h, "facts")) : "null", JSON_DECODE_ANY, NULL);
		uint32_t regs[EVC_REGS];
		char missing[512];
		if (strcmp(level, EVC_NONE) && host_facts_regs(f, regs) && evc_missing(mask, regs, missing, sizeof(missing)))
			used += (size_t)snprintf(problems + used, used < sizeof(problems) ? sizeof(problems) - used : 0,
						 "%shost %s lacks %s", used ? "; " : "", json_string_value(json_object_get(h, "name")), missing);
		json_decref(f);
	}
	/* lowering the baseline under powered-on VMs would take features away from running guests */
	json_t *vms = inv_vms_on_cluster_level(c, cid);
	json_array_foreach(vms, i, h) {
		json_t *cfg = json_loads(json_string_value(json_object_get(h, "config")), 0, NULL);
		uint32_t vm_mask[EVC_REGS];
		char missing[512];
		evc_regs_from_json(json_object_get(cfg, "cpuid_mask"), vm_mask);
		if (evc_missing(vm_mask, mask, missing, sizeof(missing)))
			used += (size_t)snprintf(problems + used, used < sizeof(problems) ? sizeof(problems) - used : 0,
						 "%spowered-on VM %s uses %s (power it off first)", used ? "; " : "",
						 json_string_value(json_object_get(h, "name")), missing);
		json_decref(cfg);
	}
	json_decref(vms);
	json_decref(hosts);
	if (problems[0]) {
		pthread_mutex_unlock(&c->lock);
		json_decref(cl);
		*resp = http_error("cannot set EVC level %s on cluster %s: %s", level, name, problems);
		return 409;
	}
	inv_cluster_set_evc(c, cid, level);
	json_decref(cl);
	cl = inv_cluster(c, name);
	*resp = evc_view(c, cl);
	json_decref(cl);
	pthread_mutex_unlock(&c->lock);
	return 200;
}

/* ---- hosts ---- */

static int api_hosts(void *ctx, const struct http_request *req, json_t **resp)
{
	struct center *c = ctx;
	pthread_mutex_lock(&c->lock);
	json_t *rows = inv_hosts_with_cluster(c);
	pthread_mutex_unlock(&c->lock);
	json_t *list = json_array();
	size_t i;
	json_t *r;
	json_array_foreach(rows, i, r) {
		json_t *v = host_view(r);
		json_object_del(v, "facts");
		json_array_append_new(list, v);
	}
	json_decref(rows);
	*resp = json_pack("{s:o}", "hosts", list);
	return 200;
}

static int api_host_add(void *ctx, const struct http_request *req, json_t **resp)
{
	struct center *c = ctx;
	struct center_host_request r;
	char err[512];
	if (center_host_request_parse(req->body, &r, err, sizeof(err)))
		return bad_request(err, resp);
	const char *addr = r.address, *token = r.token, *name = r.name, *cluster = r.cluster;
	json_t *probe = json_pack("{s:s, s:s, s:s}", "name", name, "address", addr, "token", token);
	json_t *facts = host_facts(probe, err, sizeof(err));
	json_decref(probe);
	if (!facts) {
		*resp = http_error("cannot add host %s: %s", addr, err);
		return 502;
	}
	pthread_mutex_lock(&c->lock);
	int64_t cid;
	json_t *cl;
	if (!cluster || !strcmp(cluster, DEFAULT_CLUSTER)) {
		cid = inv_default_cluster(c);
		cl = inv_cluster(c, DEFAULT_CLUSTER);
	} else {
		cl = inv_cluster(c, cluster);
		if (!cl) {
			pthread_mutex_unlock(&c->lock);
			json_decref(facts);
			*resp = http_error("no cluster named %s (create it with `glide cluster create %s`)", cluster, cluster);
			return 404;
		}
		cid = json_integer_value(json_object_get(cl, "id"));
	}
	const char *level = json_string_value(json_object_get(cl, "evc_level"));
	const struct evc_level *l = evc_level_find(level);
	uint32_t regs[EVC_REGS];
	char missing[512];
	if (l && host_facts_regs(facts, regs) && evc_missing(l->mask, regs, missing, sizeof(missing))) {
		const char *max = json_string_value(json_object_get(json_object_get(facts, "cpu"), "evc_max_level"));
		pthread_mutex_unlock(&c->lock);
		*resp = http_error("host %s cannot join cluster %s: its CPU lacks %s, required by the cluster's EVC baseline %s "
				   "(the host's maximum level is %s); lower the cluster's baseline or use another host",
				   name, json_string_value(json_object_get(cl, "name")), missing, level, max ? max : "none");
		json_decref(cl);
		json_decref(facts);
		return 409;
	}
	json_t *dup = inv_host(c, name);
	if (!dup)
		dup = inv_host(c, addr);
	if (dup) {
		pthread_mutex_unlock(&c->lock);
		*resp = http_error("host %s is already in the inventory as %s (remove it first with `glide host remove %s`)", addr,
				   json_string_value(json_object_get(dup, "name")), json_string_value(json_object_get(dup, "name")));
		json_decref(dup);
		json_decref(cl);
		json_decref(facts);
		return 409;
	}
	inv_host_insert(c, name, addr, token, cid, facts);
	json_t *row = inv_host(c, name);
	*resp = host_view(row);
	json_decref(row);
	json_decref(cl);
	pthread_mutex_unlock(&c->lock);
	json_decref(facts);
	glide_log("center", "host %s (%s) added", name, addr);
	return 201;
}

static int api_host_get(void *ctx, const struct http_request *req, json_t **resp)
{
	struct center *c = ctx;
	char name[128], action[64], err[512];
	int status;
	if (!split(req, "/v1/hosts/", true, name, sizeof(name), action, sizeof(action), resp, &status))
		return status;
	if (action[0] && strcmp(action, "maintenance"))
		return 0;
	pthread_mutex_lock(&c->lock);
	json_t *row = inv_host(c, name);
	if (row && action[0]) {
		*resp = maintenance_view(c, row);
		pthread_mutex_unlock(&c->lock);
		json_decref(row);
		return 200;
	}
	json_t *maint = row ? maintenance_view(c, row) : NULL;
	pthread_mutex_unlock(&c->lock);
	if (!row) {
		*resp = http_error("no host named %s (see `glide host list`)", name);
		return 404;
	}
	json_t *facts = host_facts(row, err, sizeof(err));
	*resp = host_view(row);
	if (facts)
		json_object_set_new(*resp, "facts", facts);
	else
		json_object_set_new(*resp, "error", json_string(err));
	json_object_set_new(*resp, "state", json_string(facts ? "connected" : "disconnected"));
	json_object_set_new(*resp, "maintenance", maint);
	json_decref(row);
	return 200;
}

/* POST /v1/hosts/NAME/maintenance {action, evacuate_powered_off, timeout_s} */
static int api_host_post(void *ctx, const struct http_request *req, json_t **resp)
{
	struct center *c = ctx;
	char name[128], action[64];
	int status;
	if (!split(req, "/v1/hosts/", true, name, sizeof(name), action, sizeof(action), resp, &status))
		return status;
	if (strcmp(action, "maintenance"))
		return 0;
	return maintenance_post(c, name, req->body, resp);
}

static int api_host_delete(void *ctx, const struct http_request *req, json_t **resp)
{
	struct center *c = ctx;
	char name[128], action[64];
	int status;
	if (!split(req, "/v1/hosts/", true, name, sizeof(name), action, sizeof(action), resp, &status))
		return status;
	if (action[0])
		return 0;
	pthread_mutex_lock(&c->lock);
	json_t *row = inv_host(c, name);
	if (!row) {
		pthread_mutex_unlock(&c->lock);
		*resp = http_error("no host named %s", name);
		return 404;
	}
	char *names = inv_host_busy_vms(c, json_integer_value(json_object_get(row, "id")));
	if (names) {
		*resp = http_error("host %s still runs VMs (%s); migrate them away or stop them first", name, names);
		pthread_mutex_unlock(&c->lock);
		free(names);
		json_decref(row);
		return 409;
	}
	inv_host_delete(c, json_integer_value(json_object_get(row, "id")));
	pthread_mutex_unlock(&c->lock);
	json_decref(row);
	*resp = json_pack("{s:s, s:b}", "name", name, "removed", 1);
	return 200;
}

/* ---- VMs ---- */

static int api_vms(void *ctx, const struct http_request *req, json_t **resp)
{
	struct center *c = ctx;
	pthread_mutex_lock(&c->lock);
	json_t *rows = inv_vms(c), *list = json_array();
	size_t i;
	json_t *r;
	json_array_foreach(rows, i, r)
		json_array_append_new(list, inv_vm_json(c, r));
	pthread_mutex_unlock(&c->lock);
	json_decref(rows);
	*resp = json_pack("{s:o}", "vms", list);
	return 200;
}

static int check_vm_level(struct center *c, int64_t cid, const char *evc, char *err, size_t errlen)
{
	if (!evc)
		return 0;
	if (!center_level_valid(evc)) {
		errf(err, errlen, "unknown EVC level '%s' (levels: none, intersection, x86-64-v1..v4)", evc);
		return -EINVAL;
	}
	json_t *cl = inv_cluster_by_id(c, cid);
	const struct evc_level *cl_level = evc_level_find(json_string_value(json_object_get(cl, "evc_level")));
	const struct evc_level *vm_level = evc_level_find(evc);
	char missing[512];
	int rc = 0;
	if (cl_level && (!vm_level || evc_missing(vm_level->mask, cl_level->mask, missing, sizeof(missing)))) {
		errf(err, errlen, "per-VM EVC level %s is above cluster %s's baseline %s; choose %s or lower", evc,
		     json_string_value(json_object_get(cl, "name")), cl_level->name, cl_level->name);
		rc = -EINVAL;
	}
	json_decref(cl);
	return rc;
}

/* A new VM's MACs, unique in the inventory (caller holds c->lock): one
 * given that another VM has is refused (409); a NIC without one gets a
 * random locally administered one no VM has, kept for the VM's life. */
static int vm_macs(struct center *c, struct attach *at, char *err, size_t errlen)
{
	char m[ATTACH_MAC_LEN + 1];
	for (int i = 0; i < at->nnics; i++) {
		if (!at->nics[i].has_mac)
			continue;
		json_t *owner = inv_vm_with_mac(c, attach_mac_text(at->nics[i].mac, m));
		if (owner) {
			errf(err, errlen, "MAC %s of NIC %d is already used by VM %s (NIC %lld); give another mac= or none to get a "
				     "generated one", m, i, json_string_value(json_object_get(owner, "name")),
			     (long long)json_integer_value(json_object_get(owner, "nic")));
			json_decref(owner);
			return 409;
		}
	}
	for (int i = 0; i < at->nnics; i++) {
		for (int tries = 0; !at->nics[i].has_mac && tries < 16; tries++) {
			if (attach_fill_macs(at)) /* fills this one (and any later one without) */
				break;
			for (int k = i; k < at->nnics; k++) {
				json_t *owner = inv_vm_with_mac(c, attach_mac_text(at->nics[k].mac, m));
				if (owner) /* taken (a 1 in 2^46 chance): draw again */
					at->nics[k].has_mac = false;
				json_decref(owner);
			}
		}
		if (!at->nics[i].has_mac) {
			errf(err, errlen, "cannot generate a MAC address for NIC %d", i);
			return 500;
		}
	}
	return 0;
}

static int api_vm_create(void *ctx, const struct http_request *req, json_t **resp)
{
	struct center *c = ctx;
	struct center_vm_request r;
	char err[512] = "";
	if (center_vm_request_parse(req->body, &r, err, sizeof(err)))
		return bad_request(err, resp);
	const char *name = r.name, *cluster = r.cluster, *evc = r.evc;
	json_t *boot = r.boot;
	json_t *config = json_pack("{s:s, s:I, s:i}", "name", name, "memory", (json_int_t)r.memory, "vcpus", r.vcpus);
	if (!config) {
		*resp = http_error("out of memory");
		return 500;
	}
	pthread_mutex_lock(&c->lock);
	int64_t cid;
	if (cluster && strcmp(cluster, DEFAULT_CLUSTER)) {
		json_t *cl = inv_cluster(c, cluster);
		if (!cl) {
			pthread_mutex_unlock(&c->lock);
			json_decref(config);
			*resp = http_error("no cluster named %s (create it with `glide cluster create %s`)", cluster, cluster);
			return 404;
		}
		cid = json_integer_value(json_object_get(cl, "id"));
		json_decref(cl);
	} else {
		cid = inv_default_cluster(c);
	}
	json_t *old = inv_vm(c, name);
	if (old || check_vm_level(c, cid, evc, err, sizeof(err))) {
		pthread_mutex_unlock(&c->lock);
		json_decref(config);
		*resp = old ? http_error("a VM named %s already exists (see `glide vm show %s`)", name, name) : http_error("%s", err);
		json_decref(old);
		return old ? 409 : 400;
	}
	int status = vm_macs(c, &r.at, err, sizeof(err));
	if (status) {
		pthread_mutex_unlock(&c->lock);
		json_decref(config);
		*resp = http_error("%s", err);
		return status;
	}
	json_t *nics = attach_nics_json(&r.at), *disks = attach_disks_json(&r.at);
	int irc = inv_vm_insert(c, name, cid, config, boot, r.devices, evc, nics, disks, r.hardware);
	json_decref(nics);
	json_decref(disks);
	if (irc) {
		pthread_mutex_unlock(&c->lock);
		json_decref(config);
		*resp = http_error("VM %s could not be stored: %s", name, inv_error(c));
		return 500;
	}
	json_t *row = inv_vm(c, name);
	*resp = inv_vm_json(c, row);
	pthread_mutex_unlock(&c->lock);
	json_decref(row);
	json_decref(config);
	return 201;
}

static int api_vm_get(void *ctx, const struct http_request *req, json_t **resp)
{
	struct center *c = ctx;
	char name[128], action[64];
	int status;
	if (!split(req, "/v1/vms/", false, name, sizeof(name), action, sizeof(action), resp, &status))
		return status;
	if (action[0])
		return 0;
	pthread_mutex_lock(&c->lock);
	json_t *row = inv_vm(c, name);
	*resp = row ? inv_vm_json(c, row) : http_error("no VM named %s (see `glide vm list`)", name);
	pthread_mutex_unlock(&c->lock);
	json_decref(row);
	return row ? 200 : 404;
}

static int vm_config_change(struct center *c, const char *name, json_t *body, json_t **resp)
{
	struct center_config_request rq;
	char err[512];
	if (center_config_request_parse(body, &rq, err, sizeof(err)))
		return bad_request(err, resp);
	pthread_mutex_lock(&c->lock);
	json_t *row = inv_vm(c, name);
	if (!row) {
		pthread_mutex_unlock(&c->lock);
		*resp = http_error("no VM named %s", name);
		return 404;
	}
	int status = 200;
	if (json_is_integer(json_object_get(row, "locked_by"))) {
		long long t = json_integer_value(json_object_get(row, "locked_by"));
		*resp = http_error("VM %s's configuration is locked by task %lld, which is still running; wait with `glide task watch %lld`", name, t, t);
		status = 409;
	} else if (strcmp(json_string_value(json_object_get(row, "power_state")), "off")) {
		*resp = http_error("VM %s is %s; power it off (`glide vm stop %s`) before changing its configuration", name,
				   json_string_value(json_object_get(row, "power_state")), name);
		status = 409;
	} else {
		json_t *cfg = json_loads(json_string_value(json_object_get(row, "config")), 0, NULL);
		struct vm_config parsed;
		if (rq.memory)
			json_object_set(cfg, "memory", rq.memory);
		if (rq.vcpus)
			json_object_set(cfg, "vcpus", rq.vcpus);
		const char *evc = rq.evc;
		if (vm_config_from_json(cfg, &parsed, err, sizeof(err)) ||
		    (evc && strcmp(evc, "cluster") && check_vm_level(c, json_integer_value(json_object_get(row, "cluster_id")), evc, err, sizeof(err)))) {
			*resp = http_error("%s", err);
			status = 400;
		} else {
			int64_t task = task_create(c, "reconfigure", row, NULL, NULL, "running");
			inv_vm_set_config(c, json_integer_value(json_object_get(row, "id")), cfg, evc != NULL,
					  evc && strcmp(evc, "cluster") ? evc : NULL);
			task_finish(c, task, true, "configuration changed", NULL);
			json_t *fresh = inv_vm(c, name);
			*resp = inv_vm_json(c, fresh);
			json_decref(fresh);
		}
		json_decref(cfg);
	}
	pthread_mutex_unlock(&c->lock);
	json_decref(row);
	return status;
}

/* POST /v1/vms/NAME/capture {nic, count, seconds}: the agent of the VM's
 * host captures (host_vm_capture); its answer, pcap included, comes back. */
static int vm_capture(struct center *c, const char *name, json_t *body, json_t **resp)
{
	struct host_capture_request r;
	char err[512], path[192];

	if (host_capture_request_parse(body, &r, err, sizeof(err)))
		return bad_request(err, resp);
	pthread_mutex_lock(&c->lock);
	json_t *row = inv_vm(c, name);
	json_t *host = row && json_is_integer(json_object_get(row, "host_id"))
			       ? inv_host_by_id(c, json_integer_value(json_object_get(row, "host_id")))
			       : NULL;
	pthread_mutex_unlock(&c->lock);
	const char *power = row ? json_string_value(json_object_get(row, "power_state")) : NULL;
	int status = 0;
	if (!row) {
		*resp = http_error("no VM named %s", name);
		status = 404;
	} else if (!host || !power || !strcmp(power, "off")) {
		*resp = http_error("VM %s is %s; only a running VM's NICs can be captured", name, power ? power : "nowhere");
		status = 409;
	}
	if (!status) {
		http_path(path, sizeof(path), "/v1/vms/", name, "/capture");
		status = host_call(host, "POST", path, body, resp, (long)(r.seconds * 1000) + 15000, err, sizeof(err));
		if (status < 0) {
			*resp = http_error("%s", err);
			status = 502;
		}
	}
	json_decref(host);
	json_decref(row);
	return status;
}

/* POST /v1/vms/NAME/drs {automation}: the VM's own DRS automation level
 * (manual, partial, full or disabled), or "default": its cluster's. */
static int vm_drs_post(struct center *c, const char *name, json_t *body, json_t **resp)
{
	const char *a = json_string_value(json_object_get(body, "automation"));
	if (!a || (strcmp(a, "manual") && strcmp(a, "partial") && strcmp(a, "full") && strcmp(a, "disabled") && strcmp(a, "default")))
		return bad_request("give {\"automation\": manual (recommend), partial (place at power-on, recommend moves), full "
				   "(apply), disabled (DRS leaves the VM alone) or default (the cluster's level)}", resp);
	pthread_mutex_lock(&c->lock);
	json_t *row = inv_vm(c, name);
	if (!row) {
		pthread_mutex_unlock(&c->lock);
		*resp = http_error("no VM named %s (see `glide vm list`)", name);
		return 404;
	}
	int rc = inv_vm_set_drs_automation(c, json_integer_value(json_object_get(row, "id")), strcmp(a, "default") ? a : NULL);
	json_decref(row);
	row = rc ? NULL : inv_vm(c, name);
	*resp = row ? inv_vm_json(c, row) : http_error("cannot store the DRS automation level: %s", inv_error(c));
	pthread_mutex_unlock(&c->lock);
	json_decref(row);
	if (!rc)
		glide_log("center", "VM %s: DRS automation %s", name, a);
	return rc ? 500 : 200;
}

static int api_vm_post(void *ctx, const struct http_request *req, json_t **resp)
{
	struct center *c = ctx;
	char name[128], action[64];
	int status;
	if (!split(req, "/v1/vms/", false, name, sizeof(name), action, sizeof(action), resp, &status))
		return status;
	char err[512];
	if (!strcmp(action, "start")) {
		const char *host;
		if (center_start_request_parse(req->body, &host, err, sizeof(err)))
			return bad_request(err, resp);
		return placement_power_on(c, name, host, resp);
	}
	if (!strcmp(action, "stop"))
		return placement_power_off(c, name, resp);
	if (!strcmp(action, "suspend"))
		return placement_suspend(c, name, resp);
	if (!strcmp(action, "move-disk"))
		return move_disk_task_start(c, name, req->body, resp);
	if (!strcmp(action, "migrate")) {
		struct center_migrate_request r;
		if (center_migrate_request_parse(req->body, &r, err, sizeof(err)))
			return bad_request(err, resp);
		json_t *params = center_migration_params(req->body);
		status = migrate_task_start(c, name, &r, params, resp);
		json_decref(params);
		return status;
	}
	if (!strcmp(action, "config"))
		return vm_config_change(c, name, req->body, resp);
	if (!strcmp(action, "drs"))
		return vm_drs_post(c, name, req->body, resp);
	if (!strcmp(action, "capture"))
		return vm_capture(c, name, req->body, resp);
	return 0;
}

static int api_vm_delete(void *ctx, const struct http_request *req, json_t **resp)
{
	struct center *c = ctx;
	char name[128], action[64], err[512], path[192];
	int status;
	if (!split(req, "/v1/vms/", false, name, sizeof(name), action, sizeof(action), resp, &status))
		return status;
	if (action[0])
		return 0;
	pthread_mutex_lock(&c->lock);
	json_t *row = inv_vm(c, name);
	if (!row || strcmp(json_string_value(json_object_get(row, "power_state")), "off") ||
	    json_is_integer(json_object_get(row, "locked_by"))) {
		pthread_mutex_unlock(&c->lock);
		*resp = row ? http_error("VM %s must be powered off and not in a task to be deleted", name)
			    : http_error("no VM named %s", name);
		json_decref(row);
		return row ? 409 : 404;
	}
	json_t *host = json_is_integer(json_object_get(row, "host_id")) ? inv_host_by_id(c, json_integer_value(json_object_get(row, "host_id"))) : NULL;
	inv_vm_delete(c, json_integer_value(json_object_get(row, "id")));
	pthread_mutex_unlock(&c->lock);
	if (host) {
		http_path(path, sizeof(path), "/v1/vms/", name, NULL);
		host_call(host, "DELETE", path, NULL, NULL, 0, err, sizeof(err));
	}
	json_decref(host);
	json_decref(row);
	*resp = json_pack("{s:s, s:b}", "name", name, "deleted", 1);
	return 200;
}

/* ---- network checks ---- */

/* Runs a check between two hosts now (a few seconds) and keeps it. */
static int api_netcheck_run(void *ctx, const struct http_request *req, json_t **resp)
{
	struct center *c = ctx;
	struct center_netcheck_request r;
	char err[700];
	if (center_netcheck_request_parse(req->body, &r, err, sizeof(err)))
		return bad_request(err, resp);
	pthread_mutex_lock(&c->lock);
	json_t *src = inv_host(c, r.source), *dst = inv_host(c, r.destination);
	pthread_mutex_unlock(&c->lock);
	int status = 200;
	if (!src || !dst) {
		*resp = http_error("no host named %s (see `glide host list`)", !src ? r.source : r.destination);
		status = 404;
	} else if (json_equal(json_object_get(src, "id"), json_object_get(dst, "id"))) {
		*resp = http_error("a network check needs two different hosts");
		status = 400;
	} else if (!(*resp = center_netcheck(c, src, dst, r.service, r.seconds, err, sizeof(err)))) {
		*resp = http_error("%s", err);
		status = 502;
	}
	json_decref(src);
	json_decref(dst);
	return status;
}

/* The last check of every host pair and service, newest first. */
static int api_netchecks(void *ctx, const struct http_request *req, json_t **resp)
{
	struct center *c = ctx;
	pthread_mutex_lock(&c->lock);
	json_t *rows = inv_netchecks(c), *list = json_array(), *r;
	pthread_mutex_unlock(&c->lock);
	size_t i;
	json_array_foreach(rows, i, r) {
		json_t *rec = json_loads(json_string_value(json_object_get(r, "result")), 0, NULL);
		if (rec)
			json_array_append_new(list, rec);
	}
	json_decref(rows);
	*resp = json_pack("{s:o}", "netchecks", list);
	return 200;
}

/* ---- tasks ---- */

static int api_tasks(void *ctx, const struct http_request *req, json_t **resp)
{
	struct center *c = ctx;
	char err[128];
	int limit;
	if (center_tasks_limit_parse(req, &limit, err, sizeof(err)))
		return bad_request(err, resp);
	pthread_mutex_lock(&c->lock);
	*resp = json_pack("{s:o}", "tasks", task_list(c, limit));
	pthread_mutex_unlock(&c->lock);
	return 200;
}

static int api_task_get(void *ctx, const struct http_request *req, json_t **resp)
{
	struct center *c = ctx;
	const char *id = req->path + strlen("/v1/tasks/");
	int64_t n;
	if (!*id || strchr(id, '/'))
		return 0;
	json_t *t = NULL;
	if (!center_task_id_parse(req->path, &n)) {
		pthread_mutex_lock(&c->lock);
		t = task_json(c, n);
		pthread_mutex_unlock(&c->lock);
	}
	*resp = t ? t : http_error("no task %.40s (see `glide task list`)", id);
	return t ? 200 : 404;
}

static const struct http_route routes[] = {
	{ "GET", "/v1/center", api_center },
	{ "GET", "/v1/clusters", api_clusters },
	{ "POST", "/v1/clusters", api_cluster_create },
	{ "GET", "/v1/clusters/*", api_cluster_get },
	{ "POST", "/v1/clusters/*", api_cluster_post },
	{ "GET", "/v1/hosts", api_hosts },
	{ "POST", "/v1/hosts", api_host_add },
	{ "GET", "/v1/hosts/*", api_host_get },
	{ "POST", "/v1/hosts/*", api_host_post },
	{ "DELETE", "/v1/hosts/*", api_host_delete },
	{ "GET", "/v1/vms", api_vms },
	{ "POST", "/v1/vms", api_vm_create },
	{ "GET", "/v1/vms/*", api_vm_get },
	{ "POST", "/v1/vms/*", api_vm_post },
	{ "DELETE", "/v1/vms/*", api_vm_delete },
	{ "POST", "/v1/netcheck", api_netcheck_run },
	{ "GET", "/v1/netcheck", api_netchecks },
	{ "POST", "/v1/drs/*", api_drs_post },
	{ "GET", "/v1/rules", api_rules },
	{ "POST", "/v1/rules", api_rule_create },
	{ "DELETE", "/v1/rules/*", api_rule_delete },
	{ "GET", "/v1/groups", api_groups },
	{ "POST", "/v1/groups", api_group_post },
	{ "DELETE", "/v1/groups/*", api_group_delete },
	{ "GET", "/v1/tasks", api_tasks },
	{ "GET", "/v1/tasks/*", api_task_get },
	{ NULL, NULL, NULL },
};

static void usage(FILE *out)
{
	fprintf(out, "usage: glide center serve --db FILE --listen HOST:PORT --token-file F\n"
		     "                          [--max-migrations-per-host N] [--drs-interval S] [--drs-cooldown S]\n"
		     "                          [--tls-cert PEM --tls-key PEM] [--log FILE]\n");
}

int center_serve_main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "db", required_argument, 0, 'd' },        { "listen", required_argument, 0, 'l' },
		{ "token-file", required_argument, 0, 't' }, { "max-migrations-per-host", required_argument, 0, 'm' },
		{ "tls-cert", required_argument, 0, 'C' },  { "tls-key", required_argument, 0, 'K' },
		{ "log", required_argument, 0, 'L' },       { "help", no_argument, 0, 'h' },
		{ "drs-interval", required_argument, 0, 'i' }, { "drs-cooldown", required_argument, 0, 'o' },
		{ 0, 0, 0, 0 },
	};
	struct center *c = &center;
	const char *db = NULL, *listen = NULL, *token_file = NULL, *tls_cert = NULL, *tls_key = NULL;
	char err[512];
	int opt;

	c->max_migrations_per_host = CENTER_MAX_MIGRATIONS_PER_HOST_DEFAULT;
	c->drs_interval_s = CENTER_DRS_INTERVAL_S_DEFAULT;
	c->drs_cooldown_s = CENTER_DRS_COOLDOWN_S_DEFAULT;
	pthread_mutex_init(&c->lock, NULL);
	optind = 1;
	while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (opt) {
		case 'd': db = optarg; break;
		case 'l': listen = optarg; break;
		case 't': token_file = optarg; break;
		case 'm':
			c->max_migrations_per_host = atoi(optarg);
			if (c->max_migrations_per_host < 1) {
				fprintf(stderr, "glide: --max-migrations-per-host must be at least 1\n");
				return 1;
			}
			break;
		case 'C': tls_cert = optarg; break;
		case 'K': tls_key = optarg; break;
		case 'L':
			if (glide_log_to(optarg))
				return 1;
			break;
		case 'i':
		case 'o': {
			uint64_t v;
			if (http_parse_uint(optarg, opt == 'i' ? 1 : 0, 86400, &v)) {
				fprintf(stderr, "glide: --drs-%s '%s': give seconds, %d..86400\n", opt == 'i' ? "interval" : "cooldown",
					optarg, opt == 'i' ? 1 : 0);
				return 1;
			}
			*(opt == 'i' ? &c->drs_interval_s : &c->drs_cooldown_s) = (int)v;
			break;
		}
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 1;
		}
	}
	if (!db || !listen || !token_file) {
		fprintf(stderr, "glide: --db, --listen and --token-file are required\n");
		usage(stderr);
		return 1;
	}
	struct daemon d;
	if (daemon_begin(&d, "center", token_file))
		return 1;
	if (inv_open(c, db, err, sizeof(err))) {
		fprintf(stderr, "glide: %s\n", err);
		daemon_end(&d);
		return 1;
	}
	pthread_mutex_lock(&c->lock);
	inv_default_cluster(c);
	inv_recover(c);
	pthread_mutex_unlock(&c->lock);
	reconcile_once(c);
	struct http_server_opts so = { .tcp_listen = listen, .tls_cert = tls_cert, .tls_key = tls_key };
	if (daemon_serve(&d, &so, routes, c)) {
		daemon_end(&d);
		sqlite3_close(c->db);
		return 1;
	}
	glide_log("center", "controller serving on %s, inventory %s, at most %d migrations per host, DRS every %d s "
		  "(cooldown %d s)", listen, db, c->max_migrations_per_host, c->drs_interval_s, c->drs_cooldown_s);
	pthread_t drs;
	bool drs_started = pthread_create(&drs, NULL, drs_thread, c) == 0;
	if (!drs_started)
		glide_log("center", "cannot start the DRS thread: no periodic DRS passes");
	int rc = daemon_run(&d, reconcile_thread, c, &c->quit, "");
	c->quit = true;
	if (drs_started)
		pthread_join(drs, NULL);
	sqlite3_close(c->db);
	return rc;
}
