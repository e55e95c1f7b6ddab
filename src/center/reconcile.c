/* Keeping the inventory true: the hosts are the truth about VMs. Every
 * second (and right after a restart) the controller asks each host for its
 * facts and VMs, marks hosts connected or not, and for every VM not locked
 * by a running task records where it really runs. A VM reported running or
 * paused by a host is there; one that a host only holds as "incoming" or
 * "migrated" is in transit and the running copy wins; a VM no host runs is
 * powered off (kept registered where its configuration is), or suspended
 * where a host keeps its suspended state. This is also
 * how a migration that finished while the controller was down is found. */
#include "center/center.h"
#include "api/http.h"
#include "common/util.h"
#include <stdio.h>
#include <string.h>

static bool is_live(const char *st)
{
	return st && (!strcmp(st, "running") || !strcmp(st, "paused") || !strcmp(st, "starting"));
}

void reconcile_once(struct center *c)
{
	int64_t started = inv_now_ms(); /* VMs changed after this are newer than what we read */
	pthread_mutex_lock(&c->lock);
	json_t *hosts = inv_hosts(c);
	pthread_mutex_unlock(&c->lock);
	json_t *seen = json_object(); /* vm name -> {host_id, state, api, off_host} */
	json_t *down = json_object(); /* host ids that did not answer */
	size_t i;
	json_t *h;

	json_array_foreach(hosts, i, h) {
		char err[512], id[32];
		json_t *facts = host_facts(h, err, sizeof(err));
		snprintf(id, sizeof(id), "%lld", json_integer_value(json_object_get(h, "id")));
		pthread_mutex_lock(&c->lock);
		if (!facts) {
			inv_host_set_disconnected(c, json_integer_value(json_object_get(h, "id")));
			json_object_set_new(down, id, json_true());
		} else {
			inv_host_set_connected(c, json_integer_value(json_object_get(h, "id")), facts);
		}
		pthread_mutex_unlock(&c->lock);
		size_t k;
		json_t *v;
		json_array_foreach(json_object_get(facts, "vms"), k, v) {
			const char *name = json_string_value(json_object_get(v, "name"));
			const char *st = json_string_value(json_object_get(v, "state"));
			if (!name || !st)
				continue;
			json_t *cur = json_object_get(seen, name);
			if (!cur) {
				cur = json_object();
				json_object_set_new(seen, name, cur);
			}
			if (is_live(st)) {
				json_object_set(cur, "host_id", json_object_get(h, "id"));
				json_object_set_new(cur, "state", json_string(!strcmp(st, "starting") ? "running" : st));
				json_object_set(cur, "api", json_object_get(v, "api"));
				json_object_set_new(cur, "live_count", json_integer(json_integer_value(json_object_get(cur, "live_count")) + 1));
			} else if (!strcmp(st, "suspended")) {
				json_object_set(cur, "suspended_host", json_object_get(h, "id"));
			} else if (!strcmp(st, "off") || !strcmp(st, "stopping")) {
				json_object_set(cur, "off_host", json_object_get(h, "id"));
			} else {
				json_object_set_new(cur, "in_transit", json_true());
				if (!strcmp(st, "incoming"))
					json_object_set(cur, "incoming_host", h);
			}
		}
		json_decref(facts);
	}
	/* An arrival nobody confirmed (the controller restarted during the
	 * migration): once no host runs the VM any more and one holds it as
	 * incoming, the source has released it, so the destination owns it. */
	const char *vname;
	json_t *cur;
	json_object_foreach(seen, vname, cur) {
		json_t *ih = json_object_get(cur, "incoming_host");
		if (ih && !json_object_get(cur, "state")) {
			pthread_mutex_lock(&c->lock);
			json_t *row = inv_vm(c, vname);
			bool locked = json_is_integer(json_object_get(row, "locked_by"));
			pthread_mutex_unlock(&c->lock);
			json_decref(row);
			if (!locked) {
				char path[160], err[256];
				http_path(path, sizeof(path), "/v1/vms/", vname, "/arrived");
				if (host_call(ih, "POST", path, NULL, NULL, 0, err, sizeof(err)) == 200) {
					glide_log("center", "VM %s: arrival on host %s confirmed", vname, json_string_value(json_object_get(ih, "name")));
					json_object_set(cur, "host_id", json_object_get(ih, "id"));
					json_object_set_new(cur, "state", json_string("running"));
					json_object_set_new(cur, "api", json_null());
				}
			}
		}
	}
	pthread_mutex_lock(&c->lock);
	json_t *vms = inv_vms_unlocked_before(c, started);
	json_t *vm;
	json_array_foreach(vms, i, vm) {
		const char *name = json_string_value(json_object_get(vm, "name"));
		json_t *cur = json_object_get(seen, name);
		char hid[32];
		snprintf(hid, sizeof(hid), "%lld", json_integer_value(json_object_get(vm, "host_id")));
		if (cur && json_object_get(cur, "state")) {
			if (json_integer_value(json_object_get(cur, "live_count")) > 1)
				glide_log("center", "VM %s is reported running on %lld hosts", name,
					  json_integer_value(json_object_get(cur, "live_count")));
			if (!json_equal(json_object_get(vm, "host_id"), json_object_get(cur, "host_id")) ||
			    !json_equal(json_object_get(vm, "power_state"), json_object_get(cur, "state")) ||
			    !json_equal(json_object_get(vm, "api"), json_object_get(cur, "api"))) {
				glide_log("center", "VM %s: the hosts say %s on host %lld", name, json_string_value(json_object_get(cur, "state")),
					  json_integer_value(json_object_get(cur, "host_id")));
				inv_vm_set_location(c, json_integer_value(json_object_get(vm, "id")),
						    json_integer_value(json_object_get(cur, "host_id")),
						    json_string_value(json_object_get(cur, "api")),
						    json_string_value(json_object_get(cur, "state")));
			}
		} else if (json_object_get(down, hid)) {
			if (strcmp(json_string_value(json_object_get(vm, "power_state")), "unknown"))
				inv_vm_set_unknown(c, json_integer_value(json_object_get(vm, "id")));
		} else if (cur && json_object_get(cur, "in_transit")) {
			/* only a masked or released copy exists: leave the record as it is */
		} else if (cur && json_object_get(cur, "suspended_host")) {
			if (strcmp(json_string_value(json_object_get(vm, "power_state")), "suspended") ||
			    !json_equal(json_object_get(vm, "host_id"), json_object_get(cur, "suspended_host")))
				inv_vm_set_location(c, json_integer_value(json_object_get(vm, "id")),
						    json_integer_value(json_object_get(cur, "suspended_host")), NULL, "suspended");
		} else if (strcmp(json_string_value(json_object_get(vm, "power_state")), "off") ||
			   (cur && json_object_get(cur, "off_host") &&
			    !json_equal(json_object_get(cur, "off_host"), json_object_get(vm, "host_id")))) {
			json_t *off_host = cur ? json_object_get(cur, "off_host") : NULL;
			inv_vm_set_off(c, json_integer_value(json_object_get(vm, "id")), json_integer_value(off_host));
		}
	}
	pthread_mutex_unlock(&c->lock);
	json_decref(vms);
	json_decref(seen);
	json_decref(down);
	json_decref(hosts);
}

void *reconcile_thread(void *center)
{
	struct center *c = center;
	while (!c->quit) {
		reconcile_once(c);
		for (int i = 0; i < CENTER_RECONCILE_INTERVAL_MS / 50 && !c->quit; i++)
			sleep_ns(50000000);
	}
	return NULL;
}
