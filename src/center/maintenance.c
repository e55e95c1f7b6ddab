/* Maintenance mode (issue 15). A host entering maintenance takes no new VM
 * (placement skips it, a migration to it is refused) and is emptied: every
 * second, while VMs still run there, a DRS pass over its cluster recommends
 * a destination for each (reason "maintenance", the allowed host that
 * leaves the best cluster score), and those moves are carried out whatever
 * the cluster's automation level, as migration tasks, which queue within
 * the per-host limit. With --evacuate-powered-off the VMs registered there
 * but not running move too (cold). The host is "in" maintenance once
 * nothing is left; until then it stays "entering", and its reason names
 * what blocks (a VM no other host is allowed to take, with each host's
 * reasons). A timeout, when given, ends the attempt: the host takes VMs
 * again ("timed-out", with the reason). Leaving (exit) is immediate. */
#include "center/center.h"
#include "center/drs.h"
#include "api/http.h"
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define MAINTENANCE_TIMEOUT_S_MAX 604800

static const char *str(json_t *o, const char *k) { return json_string_value(json_object_get(o, k)); }

static bool running_state(const char *ps)
{
	return ps && (!strcmp(ps, "running") || !strcmp(ps, "paused") || !strcmp(ps, "unknown"));
}

bool maintenance_blocks(struct center *c, int64_t host_id, char *why, size_t len)
{
	json_t *m = inv_host_maintenance(c, host_id);
	const char *st = m ? str(m, "state") : NULL;
	bool blocks = st && (!strcmp(st, "entering") || !strcmp(st, "in"));
	if (blocks && why)
		snprintf(why, len, "%s maintenance mode", !strcmp(st, "in") ? "is in" : "is entering");
	json_decref(m);
	return blocks;
}

json_t *maintenance_view(struct center *c, json_t *host)
{
	int64_t hid = json_integer_value(json_object_get(host, "id"));
	json_t *m = inv_host_maintenance(c, hid), *vms = inv_vms_on_host(c, hid), *left = json_array(), *off = json_array();
	size_t i;
	json_t *v;
	json_array_foreach(vms, i, v)
		json_array_append_new(running_state(str(v, "power_state")) ? left : off, json_string(str(v, "name")));
	json_decref(vms);
	json_t *view = json_pack("{s:s, s:s, s:o, s:o}", "host", str(host, "name"), "state", m ? str(m, "state") : "none",
				 "vms_running", left, "vms_powered_off", off);
	if (m) {
		json_object_set(view, "since", json_object_get(m, "started_at"));
		json_object_set_new(view, "evacuate_powered_off", json_boolean(json_integer_value(json_object_get(m, "evacuate_powered_off"))));
		json_object_set(view, "timeout_s", json_object_get(m, "timeout_s"));
		json_object_set(view, "reason", json_object_get(m, "reason"));
	}
	json_decref(m);
	return view;
}

int maintenance_post(struct center *c, const char *name, json_t *body, json_t **resp)
{
	json_t *action = json_object_get(body, "action"), *evac = json_object_get(body, "evacuate_powered_off");
	json_t *timeout = json_object_get(body, "timeout_s");
	const char *a = json_string_value(action);
	if (!body || !json_is_object(body) || !a || (strcmp(a, "enter") && strcmp(a, "exit"))) {
		*resp = http_error("give {\"action\": \"enter\" or \"exit\"} (and for enter, optionally \"evacuate_powered_off\": "
				   "true, \"timeout_s\": seconds)");
		return 400;
	}
	if ((evac && !json_is_boolean(evac)) ||
	    (timeout && (!json_is_integer(timeout) || json_integer_value(timeout) < 0 ||
			 json_integer_value(timeout) > MAINTENANCE_TIMEOUT_S_MAX))) {
		*resp = http_error("\"evacuate_powered_off\" must be true or false, \"timeout_s\" seconds from 0 (none) to %d",
				   MAINTENANCE_TIMEOUT_S_MAX);
		return 400;
	}
	pthread_mutex_lock(&c->lock);
	json_t *h = inv_host(c, name);
	if (!h) {
		pthread_mutex_unlock(&c->lock);
		*resp = http_error("no host named %s (see `glide host list`)", name);
		return 404;
	}
	int64_t hid = json_integer_value(json_object_get(h, "id"));
	bool blocks = maintenance_blocks(c, hid, NULL, 0);
	int rc = 0;
	if (!strcmp(a, "exit")) {
		if (blocks) {
			rc = inv_host_set_maintenance(c, hid, NULL, false, 0, 0, NULL);
			glide_log("center", "host %s left maintenance mode: it takes VMs again", str(h, "name"));
		}
	} else if (!blocks) {
		rc = inv_host_set_maintenance(c, hid, "entering", json_is_true(evac), timeout ? json_integer_value(timeout) : 0,
					      inv_now_ms(), "starting");
		glide_log("center", "host %s entering maintenance mode%s", str(h, "name"),
			  json_is_true(evac) ? " (powered-off VMs move too)" : "");
	}
	if (rc) {
		pthread_mutex_unlock(&c->lock);
		json_decref(h);
		*resp = http_error("cannot record the maintenance state: %s", inv_error(c));
		return 500;
	}
	*resp = maintenance_view(c, h);
	pthread_mutex_unlock(&c->lock);
	json_decref(h);
	return 200;
}

/* A powered-off VM of an entering host, to another host (cold move): the
 * first connected host of its cluster that takes VMs and passes the
 * compatibility check. Appends why not to blocked. */
static void move_powered_off(struct center *c, json_t *vm, json_t *from, json_t *blocked)
{
	pthread_mutex_lock(&c->lock);
	json_t *hosts = inv_hosts_in_cluster(c, json_integer_value(json_object_get(vm, "cluster_id")));
	size_t i;
	json_t *h;
	json_array_foreach(hosts, i, h)
		json_object_set_new(h, "blocked", json_boolean(maintenance_blocks(c, json_integer_value(json_object_get(h, "id")), NULL, 0)));
	pthread_mutex_unlock(&c->lock);
	json_t *reasons = json_object();
	const char *to = NULL;
	char serr[256];
	json_t *src_facts = host_facts(from, serr, sizeof(serr)); /* the VM sees its host's CPU, as a cold move checks */
	json_t *disks = inv_vm_array(vm, "disks"); /* shared: the destination must see them */
	json_t *src_paths = json_array_size(disks) ? host_paths(from, disks) : NULL;
	json_array_foreach(hosts, i, h) {
		char err[256];
		if (json_equal(json_object_get(h, "id"), json_object_get(from, "id")) || json_is_true(json_object_get(h, "blocked")))
			continue;
		json_t *f = host_facts(h, err, sizeof(err));
		json_t *dst_paths = f && json_array_size(disks) ? host_paths(h, disks) : NULL;
		json_t *why = f ? compat_check(vm, src_facts, f, h, str(from, "name"), src_paths, dst_paths, false, NULL)
				: json_pack("[s]", err);
		json_decref(dst_paths);
		json_decref(f);
		if (!json_array_size(why)) {
			json_decref(why);
			to = str(h, "name");
			break;
		}
		json_object_set_new(reasons, str(h, "name"), why);
	}
	if (to) {
		struct center_migrate_request rq = { .to = to };
		json_t *params = json_object(), *resp = NULL;
		int st = migrate_task_start(c, str(vm, "name"), &rq, params, &resp);
		if (st != 202)
			json_array_append_new(blocked, json_sprintf("%s (powered off) could not move to %s: %s", str(vm, "name"), to,
								    str(resp, "error") ? str(resp, "error") : "?"));
		else
			glide_log("center", "maintenance of %s: powered-off VM %s moves to %s (task %lld)", str(from, "name"),
				  str(vm, "name"), to, json_integer_value(json_object_get(resp, "task")));
		json_decref(params);
		json_decref(resp);
	} else {
		char *list = json_dumps(reasons, JSON_COMPACT);
		json_array_append_new(blocked, json_sprintf("%s (powered off): no other host takes it: %s", str(vm, "name"),
							    list ? list : "{}"));
		free(list);
	}
	json_decref(reasons);
	json_decref(hosts);
	json_decref(src_facts);
	json_decref(src_paths);
	json_decref(disks);
}

static void tick_host(struct center *c, json_t *m)
{
	int64_t hid = json_integer_value(json_object_get(m, "host_id"));
	const char *hname = str(m, "host");
	bool evac_off = json_integer_value(json_object_get(m, "evacuate_powered_off")) != 0;
	int64_t timeout = json_integer_value(json_object_get(m, "timeout_s"));
	pthread_mutex_lock(&c->lock);
	json_t *host = inv_host_by_id(c, hid), *vms = inv_vms_on_host(c, hid);
	json_t *cl = inv_cluster_by_id(c, json_integer_value(json_object_get(m, "cluster_id")));
	pthread_mutex_unlock(&c->lock);
	int running = 0, moving = 0, off = 0;
	size_t i;
	json_t *v, *blocked = json_array();
	json_array_foreach(vms, i, v) {
		bool locked = json_is_integer(json_object_get(v, "locked_by"));
		if (running_state(str(v, "power_state"))) {
			running++;
			moving += locked;
		} else if (evac_off) {
			off++;
			if (!locked)
				move_powered_off(c, v, host, blocked);
			else
				moving++;
		}
	}
	if (running > moving && cl) { /* VMs that still run there and are not moving yet: a DRS pass carries them off */
		char err[256];
		json_t *view = drs_cluster_pass(c, str(cl, "name"), 0, err, sizeof(err));
		json_t *r;
		json_array_foreach(json_object_get(view, "recommendations"), i, r)
			if (!strcmp(str(r, "from") ? str(r, "from") : "", hname) && json_object_get(r, "blocked"))
				json_array_append_new(blocked, json_sprintf("%s: %s", str(r, "vm"), str(r, "blocked")));
		if (!view)
			json_array_append_new(blocked, json_sprintf("DRS pass: %s", err));
		json_decref(view);
	}
	char reason[3000];
	size_t used = 0;
	if (running + off == 0) {
		pthread_mutex_lock(&c->lock);
		inv_host_set_maintenance(c, hid, "in", evac_off, timeout, json_integer_value(json_object_get(m, "started_at")), NULL);
		pthread_mutex_unlock(&c->lock);
		glide_log("center", "host %s is in maintenance mode: no VM runs there%s", hname,
			  evac_off ? " and none is registered there" : "");
	} else {
		used += (size_t)snprintf(reason, sizeof(reason), "%d VM%s to move (%d moving)", running + off,
					 running + off == 1 ? "" : "s", moving);
		json_array_foreach(blocked, i, v)
			if (used < sizeof(reason))
				used += (size_t)snprintf(reason + used, sizeof(reason) - used, "; blocked: %s", json_string_value(v));
		bool late = timeout && inv_now_ms() - json_integer_value(json_object_get(m, "started_at")) > timeout * 1000;
		pthread_mutex_lock(&c->lock);
		json_t *now = inv_host_maintenance(c, hid); /* it may have been left meanwhile */
		if (now && !strcmp(str(now, "state"), "entering"))
			inv_host_set_maintenance(c, hid, late ? "timed-out" : "entering", evac_off, timeout,
						 json_integer_value(json_object_get(m, "started_at")), reason);
		pthread_mutex_unlock(&c->lock);
		if (late && now)
			glide_log("center", "host %s did not enter maintenance mode within %lld s: %s; it takes VMs again", hname,
				  (long long)timeout, reason);
		json_decref(now);
	}
	json_decref(blocked);
	json_decref(host);
	json_decref(vms);
	json_decref(cl);
}

void maintenance_tick(struct center *c)
{
	pthread_mutex_lock(&c->lock);
	json_t *rows = inv_maintenance_all(c);
	pthread_mutex_unlock(&c->lock);
	size_t i;
	json_t *m;
	json_array_foreach(rows, i, m)
		if (!strcmp(str(m, "state"), "entering") && !c->quit)
			tick_host(c, m);
	json_decref(rows);
}
