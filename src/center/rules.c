/* DRS rules (issue 15), as vSphere has them: VM-VM affinity (keep the VMs
 * on one host) and anti-affinity (never two on one host), and VM-host
 * rules: must run on / must not run on a set of hosts (never broken by
 * placement, balancing or evacuation) and should run on / should not run
 * on (balancing keeps to them; an evacuation prefers them). Rules are kept
 * per cluster in creation order; a rule that contradicts an older one (an
 * anti-affinity rule over two VMs an older affinity rule keeps together,
 * a VM-host rule that leaves a VM no host with the older ones) is reported
 * as a conflict and ignored: the older wins. A rule names its VMs and
 * hosts directly or by a named group (vSphere's VM and host groups), whose
 * members are read at each use. */
#include "center/center.h"
#include "center/drs.h"
#include "center/rules.h"
#include "api/http.h"
#include <errno.h>
#include <stdlib.h>
#include <string.h>

static const char *const kinds[] = { "affinity", "anti-affinity", "must-run-on", "must-not-run-on", "should-run-on",
				     "should-not-run-on" };

static const char *str(json_t *o, const char *k) { return json_string_value(json_object_get(o, k)); }

static int kind_index(const char *k)
{
	for (size_t i = 0; k && i < sizeof(kinds) / sizeof(kinds[0]); i++)
		if (!strcmp(k, kinds[i]))
			return (int)i;
	return -1;
}

static bool vm_host_kind(int k) { return k >= RULE_MUST_RUN_ON; }

static json_t *names(json_t *row, const char *column)
{
	json_t *a = json_loads(str(row, column) ? str(row, column) : "[]", 0, NULL);
	return json_is_array(a) ? a : (json_decref(a), json_array());
}

static bool has(json_t *list, const char *name)
{
	size_t i;
	json_t *v;
	json_array_foreach(list, i, v)
		if (json_is_string(v) && !strcmp(json_string_value(v), name))
			return true;
	return false;
}

/* The hosts of the snapshot named in list, as a bit mask. */
static uint64_t host_mask(json_t *list, const struct drs_host *hosts, int nh)
{
	uint64_t m = 0;
	for (int j = 0; j < nh && j < DRS_HOSTS_MAX; j++)
		if (has(list, hosts[j].name))
			m |= 1ULL << j;
	return m;
}

json_t *rules_apply(json_t *rules, const struct drs_host *hosts, int nh, struct drs_vm *vms, int nv)
{
	json_t *conflicts = json_array();
	uint64_t *must = malloc(sizeof(uint64_t) * (size_t)(nv ? nv : 1)), *should = malloc(sizeof(uint64_t) * (size_t)(nv ? nv : 1));
	uint64_t all = nh >= 64 ? ~0ULL : (1ULL << nh) - 1;
	int group = 0;
	if (!must || !should) {
		free(must);
		free(should);
		return conflicts;
	}
	for (int i = 0; i < nv; i++) {
		must[i] = should[i] = all;
		vms[i].preferred = all;
	}
	size_t r;
	json_t *row;
	json_array_foreach(rules, r, row) {
		int k = kind_index(str(row, "kind"));
		json_t *vl = names(row, "vms"), *hl = names(row, "hosts");
		char why[512] = "";
		if (k < 0) {
			snprintf(why, sizeof(why), "unknown kind %s", str(row, "kind") ? str(row, "kind") : "?");
		} else if (vm_host_kind(k)) {
			uint64_t m = host_mask(hl, hosts, nh);
			if (k == RULE_MUST_NOT_RUN_ON || k == RULE_SHOULD_NOT_RUN_ON)
				m = all & ~m;
			uint64_t *acc = k <= RULE_MUST_NOT_RUN_ON ? must : should;
			for (int i = 0; i < nv && !why[0]; i++)
				if (has(vl, vms[i].name) && !(acc[i] & m))
					snprintf(why, sizeof(why), "with the older rules it leaves VM %s no host", vms[i].name);
			for (int i = 0; i < nv && !why[0]; i++)
				if (has(vl, vms[i].name))
					acc[i] &= m;
		} else if (group >= 64) {
			snprintf(why, sizeof(why), "more than 64 VM-VM rules in the cluster");
		} else {
			/* two of its VMs held by an older rule of the opposite kind */
			for (int a = 0; a < nv && !why[0]; a++)
				for (int b = a + 1; b < nv && !why[0]; b++)
					if (has(vl, vms[a].name) && has(vl, vms[b].name) &&
					    (k == RULE_AFFINITY ? (vms[a].apart & vms[b].apart) : (vms[a].together & vms[b].together)))
						snprintf(why, sizeof(why), "an older rule keeps %s and %s %s", vms[a].name, vms[b].name,
							 k == RULE_AFFINITY ? "apart" : "together");
			for (int i = 0; i < nv && !why[0]; i++)
				if (has(vl, vms[i].name))
					*(k == RULE_AFFINITY ? &vms[i].together : &vms[i].apart) |= 1ULL << group;
			group += !why[0];
		}
		if (why[0])
			json_array_append_new(conflicts, json_pack("{s:s, s:s}", "rule", str(row, "name"), "conflict", why));
		json_decref(vl);
		json_decref(hl);
	}
	for (int i = 0; i < nv; i++) {
		vms[i].allowed &= must[i];
		vms[i].preferred = should[i];
	}
	free(must);
	free(should);
	return conflicts;
}

bool rules_forbid(json_t *rules, const char *vm, const char *host, json_t *running, char *why, size_t len)
{
	size_t r;
	json_t *row;
	json_array_foreach(rules, r, row) {
		int k = kind_index(str(row, "kind"));
		json_t *vl = names(row, "vms"), *hl = names(row, "hosts");
		bool hit = false;
		if (has(vl, vm)) {
			if (k == RULE_MUST_RUN_ON || k == RULE_MUST_NOT_RUN_ON) {
				hit = has(hl, host) != (k == RULE_MUST_RUN_ON);
				if (hit)
					snprintf(why, len, "rule %s: VM %s %s", str(row, "name"), vm,
						 k == RULE_MUST_RUN_ON ? "must run on other hosts" : "must not run here");
			} else if (k == RULE_AFFINITY || k == RULE_ANTI_AFFINITY) {
				size_t i;
				json_t *other;
				json_array_foreach(vl, i, other) {
					const char *o = json_string_value(other), *at = o ? str(running, o) : NULL;
					if (!o || !strcmp(o, vm) || !at)
						continue;
					if ((k == RULE_ANTI_AFFINITY) == !strcmp(at, host)) {
						snprintf(why, len, "rule %s: VM %s runs on %s", str(row, "name"), o, at);
						hit = true;
						break;
					}
				}
			}
		}
		json_decref(vl);
		json_decref(hl);
		if (hit)
			return true;
	}
	return false;
}

/* ---- the API: POST /v1/rules, GET /v1/rules[?cluster=C], DELETE /v1/rules/NAME ---- */

static int name_list(json_t *v, const char *key, size_t min, char *err, size_t errlen)
{
	size_t i;
	json_t *n;
	if (!json_is_array(v) || json_array_size(v) < min || json_array_size(v) > 256) {
		errf(err, errlen, "\"%s\" must be a list of %zu to 256 names", key, min);
		return -EINVAL;
	}
	json_array_foreach(v, i, n)
		if (!json_is_string(n) || !name_valid(json_string_value(n), err, errlen)) {
			if (!json_is_string(n))
				errf(err, errlen, "\"%s\" must hold names (strings)", key);
			return -EINVAL;
		}
	return 0;
}

int rules_request_parse(json_t *body, struct rule_request *r, char *err, size_t errlen)
{
	memset(r, 0, sizeof(*r));
	if (!json_is_object(body)) {
		errf(err, errlen, "a rule is a JSON object {name, cluster, kind, vms, hosts}");
		return -EINVAL;
	}
	r->name = str(body, "name");
	r->cluster = str(body, "cluster");
	r->kind = kind_index(str(body, "kind"));
	r->vms = json_object_get(body, "vms");
	r->hosts = json_object_get(body, "hosts");
	r->vm_group = str(body, "vm_group");
	r->host_group = str(body, "host_group");
	json_t *vg = json_object_get(body, "vm_group"), *hg = json_object_get(body, "host_group");
	if ((vg && !json_is_null(vg) && !r->vm_group) || (hg && !json_is_null(hg) && !r->host_group) ||
	    (r->vm_group && r->vms) || (r->host_group && r->hosts)) {
		errf(err, errlen, "a rule names its VMs by \"vms\" (a list) or \"vm_group\" (a group's name), its hosts by \"hosts\" "
				  "or \"host_group\", not both");
		return -EINVAL;
	}
	if ((r->vm_group && !name_valid(r->vm_group, err, errlen)) || (r->host_group && !name_valid(r->host_group, err, errlen)))
		return -EINVAL;
	if (!r->name || !name_valid(r->name, err, errlen)) {
		if (!r->name)
			errf(err, errlen, "a rule needs a \"name\"");
		return -EINVAL;
	}
	if (r->cluster && !name_valid(r->cluster, err, errlen))
		return -EINVAL;
	if (r->kind < 0) {
		errf(err, errlen, "rule kind: give affinity, anti-affinity, must-run-on, must-not-run-on, should-run-on or "
				  "should-not-run-on");
		return -EINVAL;
	}
	if (!r->vm_group && name_list(r->vms, "vms", vm_host_kind(r->kind) ? 1 : 2, err, errlen))
		return -EINVAL;
	if (vm_host_kind(r->kind) ? !r->host_group && name_list(r->hosts, "hosts", 1, err, errlen)
				  : r->host_group || (r->hosts && !(json_is_array(r->hosts) && !json_array_size(r->hosts)))) {
		if (!vm_host_kind(r->kind))
			errf(err, errlen, "a VM-VM rule (%s) names no hosts", kinds[r->kind]);
		return -EINVAL;
	}
	return 0;
}

static bool group_unusable(struct center *c, const char *name, const char *kind, json_t *cl, json_t **resp);

int rules_post(struct center *c, json_t *body, json_t **resp)
{
	struct rule_request r;
	char err[512];
	if (rules_request_parse(body, &r, err, sizeof(err))) {
		*resp = http_error("%s", err);
		return 400;
	}
	pthread_mutex_lock(&c->lock);
	int64_t cid = !r.cluster || !strcmp(r.cluster, DEFAULT_CLUSTER) ? inv_default_cluster(c) : 0;
	json_t *cl = cid ? inv_cluster_by_id(c, cid) : inv_cluster(c, r.cluster);
	json_t *old = inv_rule(c, r.name);
	int st = 201;
	if (!cl) {
		*resp = http_error("no cluster named %s (see `glide cluster list`)", r.cluster);
		st = 404;
	} else if (old) {
		*resp = http_error("a rule named %s exists (delete it first)", r.name);
		st = 409;
	} else if ((r.vm_group && group_unusable(c, r.vm_group, "vm", cl, resp)) ||
		   (r.host_group && group_unusable(c, r.host_group, "host", cl, resp))) {
		st = 409;
	} else {
		/* a group is stored as ["@NAME"]: its members are read at each use, so changing them changes the rule */
		json_t *vms = r.vm_group ? json_pack("[s+]", "@", r.vm_group) : json_incref(r.vms);
		json_t *hosts = r.host_group ? json_pack("[s+]", "@", r.host_group) : r.hosts ? json_incref(r.hosts) : json_array();
		if (inv_rule_insert(c, r.name, json_integer_value(json_object_get(cl, "id")), kinds[r.kind], vms, hosts)) {
			*resp = http_error("cannot store the rule: %s", inv_error(c));
			st = 500;
		} else {
			*resp = json_pack("{s:s, s:s, s:s, s:O, s:O}", "name", r.name, "cluster", str(cl, "name"), "kind",
					  kinds[r.kind], "vms", vms, "hosts", hosts);
			glide_log("center", "rule %s (%s) created in cluster %s", r.name, kinds[r.kind], str(cl, "name"));
		}
		json_decref(vms);
		json_decref(hosts);
	}
	pthread_mutex_unlock(&c->lock);
	json_decref(cl);
	json_decref(old);
	return st;
}

int rules_delete(struct center *c, const char *name, json_t **resp)
{
	pthread_mutex_lock(&c->lock);
	json_t *old = inv_rule(c, name);
	int st = 200;
	if (!old) {
		*resp = http_error("no rule named %s (see `glide rule list`)", name);
		st = 404;
	} else if (inv_rule_delete(c, name)) {
		*resp = http_error("cannot delete the rule: %s", inv_error(c));
		st = 500;
	} else {
		*resp = json_pack("{s:s}", "deleted", name);
	}
	pthread_mutex_unlock(&c->lock);
	json_decref(old);
	return st;
}

/* The rows fetch gives for cluster (NULL: every cluster), or NULL with err when there is no such cluster. */
static json_t *cluster_rows(struct center *c, const char *cluster, json_t *(*fetch)(struct center *c, int64_t cluster_id),
			    char *err, size_t errlen)
{
	pthread_mutex_lock(&c->lock);
	int64_t cid = 0;
	if (cluster) {
		json_t *cl = inv_cluster(c, cluster);
		cid = cl ? json_integer_value(json_object_get(cl, "id")) : -1;
		json_decref(cl);
	}
	json_t *rows = cid >= 0 ? fetch(c, cid) : NULL;
	pthread_mutex_unlock(&c->lock);
	if (!rows)
		errf(err, errlen, "no cluster named %s (see `glide cluster list`)", cluster);
	return rows;
}

json_t *rules_list(struct center *c, const char *cluster, char *err, size_t errlen)
{
	json_t *rows = cluster_rows(c, cluster, inv_rules, err, errlen);
	if (!rows)
		return NULL;
	json_t *list = json_array();
	size_t i;
	json_t *row;
	json_array_foreach(rows, i, row) {
		json_t *o = json_pack("{s:O, s:O, s:O, s:o, s:o, s:O}", "name", json_object_get(row, "name"),
				      "cluster", json_object_get(row, "cluster"), "kind", json_object_get(row, "kind"),
				      "vms", names(row, "vms"), "hosts", names(row, "hosts"),
				      "created_at", json_object_get(row, "created_at"));
		if (json_object_get(row, "vm_group"))
			json_object_set(o, "vm_group", json_object_get(row, "vm_group"));
		if (json_object_get(row, "host_group"))
			json_object_set(o, "host_group", json_object_get(row, "host_group"));
		json_array_append_new(list, o);
	}
	json_decref(rows);
	return list;
}

/* ---- groups: POST /v1/groups, GET /v1/groups[?cluster=C], DELETE /v1/groups/NAME ---- */

/* A rule may name group `name` when it exists in the rule's cluster with the right kind (caller holds c->lock). */
static bool group_unusable(struct center *c, const char *name, const char *kind, json_t *cl, json_t **resp)
{
	json_t *g = inv_group(c, name);
	bool bad = true;
	if (!g)
		*resp = http_error("no group named %s (create it with `glide group create %s --%s ...`)", name, name,
				   !strcmp(kind, "vm") ? "vms" : "hosts");
	else if (strcmp(str(g, "kind"), kind))
		*resp = http_error("group %s is a %s group, the rule needs a %s group here", name, str(g, "kind"), kind);
	else if (!json_equal(json_object_get(g, "cluster_id"), json_object_get(cl, "id")))
		*resp = http_error("group %s belongs to cluster %s, the rule to %s", name, str(g, "cluster"), str(cl, "name"));
	else
		bad = false;
	json_decref(g);
	return bad;
}

int groups_post(struct center *c, json_t *body, json_t **resp)
{
	char err[512];
	const char *name = str(body, "name"), *cluster = str(body, "cluster"), *kind = str(body, "kind");
	json_t *members = json_object_get(body, "members");
	if (!json_is_object(body) || !name || !name_valid(name, err, sizeof(err)) || (cluster && !name_valid(cluster, err, sizeof(err))) ||
	    !kind || (strcmp(kind, "vm") && strcmp(kind, "host")) || name_list(members, "members", 1, err, sizeof(err))) {
		if (!json_is_object(body) || !name || !kind || (strcmp(kind, "vm") && strcmp(kind, "host")))
			snprintf(err, sizeof(err), "a group is {\"name\", \"kind\": \"vm\" or \"host\", \"members\": [names], \"cluster\"}");
		*resp = http_error("%s", err);
		return 400;
	}
	pthread_mutex_lock(&c->lock);
	int64_t cid = !cluster || !strcmp(cluster, DEFAULT_CLUSTER) ? inv_default_cluster(c) : 0;
	json_t *cl = cid ? inv_cluster_by_id(c, cid) : inv_cluster(c, cluster), *old = inv_group(c, name);
	int st = 200;
	if (!cl) {
		*resp = http_error("no cluster named %s (see `glide cluster list`)", cluster);
		st = 404;
	} else if (old && (strcmp(str(old, "kind"), kind) || !json_equal(json_object_get(old, "cluster_id"), json_object_get(cl, "id")))) {
		*resp = http_error("group %s exists as a %s group of cluster %s", name, str(old, "kind"), str(old, "cluster"));
		st = 409;
	} else if (inv_group_put(c, name, json_integer_value(json_object_get(cl, "id")), kind, members)) {
		*resp = http_error("cannot store the group: %s", inv_error(c));
		st = 500;
	} else {
		*resp = json_pack("{s:s, s:s, s:s, s:O}", "name", name, "cluster", str(cl, "name"), "kind", kind, "members", members);
		glide_log("center", "%s group %s %s in cluster %s (%zu members)", kind, name, old ? "changed" : "created", str(cl, "name"),
			  json_array_size(members));
		st = old ? 200 : 201;
	}
	pthread_mutex_unlock(&c->lock);
	json_decref(cl);
	json_decref(old);
	return st;
}

int groups_delete(struct center *c, const char *name, json_t **resp)
{
	pthread_mutex_lock(&c->lock);
	json_t *g = inv_group(c, name), *users = g ? inv_rules_naming_group(c, name) : NULL;
	int st = 200;
	if (!g) {
		*resp = http_error("no group named %s (see `glide group list`)", name);
		st = 404;
	} else if (json_array_size(users)) {
		*resp = http_error("group %s is named by rule %s (delete the rule first)", name, str(json_array_get(users, 0), "name"));
		st = 409;
	} else if (inv_group_delete(c, name)) {
		*resp = http_error("cannot delete the group: %s", inv_error(c));
		st = 500;
	} else {
		*resp = json_pack("{s:s}", "deleted", name);
	}
	pthread_mutex_unlock(&c->lock);
	json_decref(g);
	json_decref(users);
	return st;
}

json_t *groups_list(struct center *c, const char *cluster, char *err, size_t errlen)
{
	json_t *rows = cluster_rows(c, cluster, inv_groups, err, errlen);
	if (!rows)
		return NULL;
	json_t *list = json_array();
	size_t i;
	json_t *row;
	json_array_foreach(rows, i, row)
		json_array_append_new(list, json_pack("{s:O, s:O, s:O, s:o, s:O}", "name", json_object_get(row, "name"), "cluster",
						      json_object_get(row, "cluster"), "kind", json_object_get(row, "kind"),
						      "members", names(row, "members"), "created_at", json_object_get(row, "created_at")));
	json_decref(rows);
	return list;
}
