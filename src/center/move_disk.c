/* Storage migration tasks (`glide vm move-disk NAME --datastore DS
 * [--disk N]`): a running VM's disk moves to another datastore of its host
 * while it runs. The controller checks the datastore (it exists on the VM's
 * host and has the space for the disk's allocated bytes), locks the VM for
 * the task, asks the host's agent to start the move (its monitor mirrors
 * the guest's writes into the new file while it copies the rest, then
 * switches with the VM paused for a few milliseconds), follows the
 * progress into the task, and on success records the new path. The host's
 * agent removes the old file once its record follows; on failure the VM
 * stays on its old file and the new one is removed. */
#include "center/center.h"
#include "api/http.h"
#include "common/util.h"
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct move_job {
	struct center *c;
	int64_t task;
	json_t *vm, *host;
	int disk;
	char datastore[64];
	char from[4096];
};

static const char *s(json_t *o, const char *k)
{
	const char *v = json_string_value(json_object_get(o, k));
	return v ? v : "";
}

static void move_end(struct move_job *j, bool ok, const char *msg, json_t *result)
{
	pthread_mutex_lock(&j->c->lock);
	task_finish(j->c, j->task, ok, msg, result);
	inv_vm_unlock_task(j->c, json_integer_value(json_object_get(j->vm, "id")), j->task);
	pthread_mutex_unlock(&j->c->lock);
	json_decref(result);
	json_decref(j->vm);
	json_decref(j->host);
	free(j);
}

static void *move_run(struct move_job *j)
{
	struct center *c = j->c;
	const char *name = s(j->vm, "name"), *hname = s(j->host, "name");
	char path[192], err[512], msg[1400];
	json_t *r = NULL, *st = NULL;

	http_path(path, sizeof(path), "/v1/vms/", name, "/move-disk");
	json_t *body = json_pack("{s:i, s:s}", "disk", j->disk, "datastore", j->datastore);
	int code = host_call(j->host, "POST", path, body, &r, 30000, err, sizeof(err));
	json_decref(body);
	json_decref(r);
	r = NULL;
	if (code != 202) {
		snprintf(msg, sizeof(msg), "disk %d of VM %s cannot move to datastore %s on host %s: %s", j->disk, name, j->datastore,
			 hname, err);
		move_end(j, false, msg, NULL);
		return NULL;
	}
	uint64_t ok_at = now_ns();
	for (;;) {
		sleep_ns((uint64_t)CENTER_POLL_INTERVAL_MS * 1000000);
		json_t *now = NULL;
		if (host_call(j->host, "GET", path, NULL, &now, 5000, err, sizeof(err)) != 200) {
			json_decref(now);
			if (now_ns() - ok_at > (uint64_t)CENTER_SOURCE_LOST_MS * 1000000) {
				snprintf(msg, sizeof(msg), "disk %d of VM %s: lost contact with host %s during the move (%s); the VM "
					 "stays on whichever file its monitor uses, which the host's agent records", j->disk, name, hname, err);
				move_end(j, false, msg, NULL);
				json_decref(st);
				return NULL;
			}
			continue;
		}
		ok_at = now_ns();
		json_decref(st);
		st = now;
		double total = json_number_value(json_object_get(st, "copy_total"));
		double done = json_number_value(json_object_get(st, "bytes_copied")) + json_number_value(json_object_get(st, "zero_bytes_skipped"));
		pthread_mutex_lock(&c->lock);
		task_update(c, j->task, "copy", 0.02 + 0.95 * (total > 0 ? MIN(1.0, done / total) : 0), st);
		pthread_mutex_unlock(&c->lock);
		if (strcmp(s(st, "state"), "running"))
			break;
	}
	if (strcmp(s(st, "state"), "completed")) {
		snprintf(msg, sizeof(msg), "disk %d of VM %s could not move to datastore %s: %s; it stays on %.400s", j->disk, name,
			 j->datastore, s(st, "error"), j->from);
		move_end(j, false, msg, st);
		return NULL;
	}
	json_t *disks = inv_vm_array(j->vm, "disks");
	json_object_set(json_array_get(disks, (size_t)j->disk), "path", json_object_get(st, "to"));
	pthread_mutex_lock(&c->lock);
	inv_vm_set_disks(c, json_integer_value(json_object_get(j->vm, "id")), disks);
	pthread_mutex_unlock(&c->lock);
	json_decref(disks);
	snprintf(msg, sizeof(msg), "disk %d of VM %s moved to datastore %s on host %s (%s) in %.0f ms: %lld bytes copied, %lld guest "
		 "writes mirrored, the guest stalled %.2f ms at the switch", j->disk, name, j->datastore, hname, s(st, "to"),
		 json_number_value(json_object_get(st, "elapsed_ms")), json_integer_value(json_object_get(st, "bytes_copied")),
		 json_integer_value(json_object_get(st, "writes_mirrored")), json_number_value(json_object_get(st, "stall_ms")));
	move_end(j, true, msg, st);
	return NULL;
}

/* A disk copied between datastores of one host costs BUDGET_COST_STORAGE of its budget. */
static void *move_thread(void *arg)
{
	struct move_job *j = arg;
	struct center *c = j->c;
	int64_t task = j->task;
	char host[NAME_LEN_MAX + 1];

	snprintf(host, sizeof(host), "%s", s(j->host, "name"));
	budget_acquire(c, task, host, NULL, BUDGET_COST_STORAGE);
	pthread_mutex_lock(&c->lock);
	task_update(c, task, "starting", 0.01, NULL);
	inv_task_started(c, task);
	pthread_mutex_unlock(&c->lock);
	move_run(j);
	budget_release(c, task);
	return NULL;
}

int move_disk_task_start(struct center *c, const char *name, json_t *body, json_t **resp)
{
	json_t *disk = json_object_get(body, "disk");
	const char *ds = json_string_value(json_object_get(body, "datastore"));
	char err[512];
	if ((disk && (!json_is_integer(disk) || json_integer_value(disk) < 0 || json_integer_value(disk) >= VM_MAX_DISKS)) || !ds ||
	    !name_valid(ds, err, sizeof(err))) {
		*resp = http_error("a disk move needs {\"datastore\": NAME} (a datastore of the VM's host) and optionally {\"disk\": "
				   "INDEX}");
		return 400;
	}
	int di = disk ? (int)json_integer_value(disk) : 0;
	pthread_mutex_lock(&c->lock);
	json_t *vm = inv_vm(c, name);
	json_t *host = vm && json_is_integer(json_object_get(vm, "host_id"))
			       ? inv_host_by_id(c, json_integer_value(json_object_get(vm, "host_id"))) : NULL;
	pthread_mutex_unlock(&c->lock);
	int status = 0;
	json_t *disks = vm ? inv_vm_array(vm, "disks") : NULL;
	const char *from = json_string_value(json_object_get(json_array_get(disks, (size_t)di), "path"));
	if (!vm) {
		*resp = http_error("no VM named %s (see `glide vm list`)", name);
		status = 404;
	} else if (strcmp(s(vm, "power_state"), "running") && strcmp(s(vm, "power_state"), "paused")) {
		*resp = http_error("VM %s is %s; move-disk moves a running VM's disk (a powered-off or suspended VM's "
				   "disks move to another host with `glide vm migrate --with-storage`)", name, s(vm, "power_state"));
		status = 409;
	} else if (!host) {
		*resp = http_error("VM %s has no host in the inventory", name);
		status = 409;
	} else if (!from) {
		*resp = http_error("VM %s has no disk %d", name, di);
		status = 404;
	} else {
		/* the datastore and its space, from fresh facts */
		json_t *facts = host_facts(host, err, sizeof(err)), *e, *found = NULL;
		json_t *one = json_pack("[{s:s}]", "path", from);
		json_t *paths = facts ? host_paths(host, one) : NULL;
		json_t *info = json_object_get(paths, from);
		uint64_t need = (uint64_t)json_integer_value(json_object_get(info, json_is_integer(json_object_get(info, "allocated"))
											? "allocated" : "size"));
		size_t k;
		json_array_foreach(json_object_get(facts, "datastores"), k, e)
			if (!strcmp(s(e, "name"), ds))
				found = e;
		char a[32], b[32];
		if (!facts) {
			*resp = http_error("host %s does not answer: %s", s(host, "name"), err);
			status = 502;
		} else if (!found) {
			*resp = http_error("host %s has no datastore %s", s(host, "name"), ds);
			status = 409;
		} else if ((uint64_t)json_integer_value(json_object_get(found, "free")) < need) {
			*resp = http_error("datastore %s on host %s has %s free, disk %d of VM %s needs %s", ds, s(host, "name"),
					   format_size((uint64_t)json_integer_value(json_object_get(found, "free")), a, sizeof(a)), di,
					   name, format_size(need, b, sizeof(b)));
			status = 409;
		}
		json_decref(facts);
		json_decref(one);
		json_decref(paths);
	}
	if (status) {
		json_decref(disks);
		json_decref(vm);
		json_decref(host);
		return status;
	}
	struct move_job *j = calloc(1, sizeof(*j));
	if (!j) {
		json_decref(disks);
		json_decref(vm);
		json_decref(host);
		return 500;
	}
	j->c = c;
	j->vm = vm;
	j->host = host;
	j->disk = di;
	snprintf(j->datastore, sizeof(j->datastore), "%s", ds);
	snprintf(j->from, sizeof(j->from), "%s", from);
	json_decref(disks);
	pthread_mutex_lock(&c->lock);
	json_t *again = inv_vm(c, name);
	if (json_is_integer(json_object_get(again, "locked_by"))) {
		long long t = json_integer_value(json_object_get(again, "locked_by"));
		pthread_mutex_unlock(&c->lock);
		json_decref(again);
		*resp = http_error("VM %s is locked by task %lld, which is still running; wait with `glide task watch %lld`", name, t, t);
		json_decref(j->vm);
		json_decref(j->host);
		free(j);
		return 409;
	}
	json_decref(again);
	j->task = task_create(c, "move-disk", vm, s(host, "name"), s(host, "name"), "running");
	inv_vm_lock(c, json_integer_value(json_object_get(vm, "id")), j->task);
	int64_t task = j->task;
	pthread_mutex_unlock(&c->lock);
	pthread_t t;
	if (pthread_create(&t, NULL, move_thread, j)) {
		move_end(j, false, "cannot start the move thread", NULL);
		*resp = http_error("cannot start the move thread");
		return 500;
	}
	pthread_detach(t);
	*resp = json_pack("{s:I, s:s, s:s}", "task", (json_int_t)task, "kind", "move-disk", "state", "running");
	return 202;
}
