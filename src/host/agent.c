/* `glide host serve`: the host agent daemon. Serves the host API on
 * DATA/host.sock (local, no token) and on TCP (bearer token, optional TLS),
 * re-adopts the VM monitors that kept running while it was down, and runs
 * the supervisor thread that follows them.
 *
 *   GET    /v1/host                       host facts (CPU, memory, addresses, networks, datastores, VMs)
 *   GET    /v1/paths?path=P               whether this host sees file P (a disk), its size, allocated bytes
 *   GET    /v1/vms                        VMs of this host
 *   POST   /v1/vms                        register a VM {name, config, boot, nics, disks, start}
 *   GET    /v1/vms/NAME                   one VM (with its monitor's API socket)
 *   GET    /v1/vms/NAME/netstats          its NICs' counters; GET /v1/netstats: every VM's
 *   POST   /v1/vms/NAME/capture           frames of one of its NICs, a pcap file in the answer
 *   POST   /v1/vms/NAME/start | /stop     power on (a suspended VM resumes) / off
 *   POST   /v1/vms/NAME/suspend           memory and state to a file, the monitor exits
 *   DELETE /v1/vms/NAME[?disks=remove]    forget a powered-off, migrated or incoming VM (and
 *                                         the old disk files of one that moved with copies)
 *   POST   /v1/incoming                   destination half of a migration spec
 *   POST   /v1/receive                    receive a cold VM's files (copy.c); GET /v1/receive/NAME:
 *                                         progress; DELETE /v1/receive/NAME[?keep=1]: forget it
 *   POST   /v1/vms/NAME/send              send a powered-off or suspended VM's files; GET: progress
 *   POST   /v1/vms/NAME/move-disk         {disk, datastore}: a running VM's disk to another datastore;
 *                                         GET: progress; POST .../move-disk/cancel
 *   POST   /v1/vms/NAME/migrate           source half: start the migration
 *   GET    /v1/vms/NAME/migration         relayed progress; POST .../migration/cancel and
 *                                         .../migration/resolve (an in-doubt switchover)
 *   POST   /v1/netcheck/listen            serve one network check on each address of a service
 *   POST   /v1/netcheck/run               run a network check against another host's (netcheck.h) */
#include "host/host.h"
#include "api/http.h"
#include "api/daemon.h"
#include "vmm/config.h"
#include "common/hardware.h"
#include "common/util.h"
#include <errno.h>
#include <dirent.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static struct host_agent agent;

static int api_host(void *ctx, const struct http_request *req, json_t **resp)
{
	struct host_agent *a = ctx;
	pthread_mutex_lock(&a->lock);
	*resp = host_facts_json(a);
	pthread_mutex_unlock(&a->lock);
	return 200;
}

static int api_demand(void *ctx, const struct http_request *req, json_t **resp)
{
	struct host_agent *a = ctx;
	pthread_mutex_lock(&a->lock);
	*resp = host_demand_json(a);
	pthread_mutex_unlock(&a->lock);
	return 200;
}

static int api_vms(void *ctx, const struct http_request *req, json_t **resp)
{
	struct host_agent *a = ctx;
	json_t *list = json_array();
	pthread_mutex_lock(&a->lock);
	for (struct host_vm *v = a->vms; v; v = v->next)
		if (!v->removed)
			json_array_append_new(list, host_vm_json(v));
	pthread_mutex_unlock(&a->lock);
	*resp = json_pack("{s:s, s:o}", "host", a->name, "vms", list);
	return 200;
}

/* Starts v's monitor and waits (unlocked) until its API answers. */
static int start_and_wait(struct host_agent *a, struct host_vm *v, json_t **resp, int ok_status)
{
	char err[512];
	pid_t pid;
	pthread_mutex_lock(&a->lock);
	if (host_vm_start(a, v, err, sizeof(err))) {
		pthread_mutex_unlock(&a->lock);
		*resp = http_error("%s", err);
		return 409;
	}
	pid = v->pid;
	pthread_mutex_unlock(&a->lock);
	if (host_vm_wait_api(v, pid, HOST_MONITOR_START_TIMEOUT_MS, err, sizeof(err))) {
		pthread_mutex_lock(&a->lock);
		host_vm_start_failed(v, pid, err);
		pthread_mutex_unlock(&a->lock);
		*resp = http_error("VM %s did not start on host %s: %s", v->name, a->name, err);
		return 500;
	}
	pthread_mutex_lock(&a->lock);
	if (v->pid == pid && !strcmp(v->state, "starting"))
		snprintf(v->state, sizeof(v->state), "running");
	if (v->pid == pid && host_vm_suspended(v)) /* its API answers only once the snapshot is loaded */
		host_vm_suspend_drop(v, "the VM resumed from it");
	*resp = host_vm_json(v);
	pthread_mutex_unlock(&a->lock);
	glide_log("host", "VM %s started (monitor pid %d)", v->name, (int)pid);
	return ok_status;
}

static int api_vm_create(void *ctx, const struct http_request *req, json_t **resp)
{
	struct host_agent *a = ctx;
	struct host_vm_request r;
	char err[512];

	if (host_vm_request_parse(req->body, &r, err, sizeof(err))) {
		*resp = http_error("%s", err);
		return 400;
	}
	/* a NIC without a MAC gets one now, kept in vm.json for the VM's life */
	if (attach_fill_macs(&r.at)) {
		*resp = http_error("cannot generate a MAC address");
		return 500;
	}
	pthread_mutex_lock(&a->lock);
	int rc = host_vm_attach_check(a, &r.at, r.name, err, sizeof(err));
	if (rc) {
		pthread_mutex_unlock(&a->lock);
		*resp = http_error("%s", err);
		return rc == -ENOENT ? 400 : 409;
	}
	char susp[PATH_MAX];
	struct stat sst;
	if (r.suspended && (!realpath(r.suspended, susp) || !host_datastore_holding(a, susp) || stat(susp, &sst) ||
			    !S_ISREG(sst.st_mode))) {
		pthread_mutex_unlock(&a->lock);
		*resp = http_error("\"suspended\": %s is not a file in a datastore of host %s", r.suspended, a->name);
		return 400;
	}
	json_t *cfg = json_deep_copy(r.config);
	json_object_set_new(cfg, "name", json_string(r.name));
	json_t *record = json_pack("{s:o, s:O*, s:O*, s:o, s:o}", "config", cfg, "boot", r.boot, "devices", r.devices, "nics",
				   attach_nics_json(&r.at), "disks", attach_disks_json(&r.at));
	if (r.hardware)
		json_object_set(record, "hardware", r.hardware);
	if (r.suspended)
		json_object_set_new(record, "suspended", json_pack("{s:s, s:I}", "path", susp, "at_ms",
								   (json_int_t)(realtime_ns() / 1000000)));
	struct host_vm *v = host_vm_new(a, r.name, record, err, sizeof(err));
	json_decref(record);
	if (!v) {
		pthread_mutex_unlock(&a->lock);
		*resp = http_error("%s", err);
		return 409;
	}
	host_vm_hold(v);
	pthread_mutex_unlock(&a->lock);
	glide_log("host", "VM %s registered", r.name);
	int status = 201;
	if (r.start) {
		status = start_and_wait(a, v, resp, 201);
	} else {
		pthread_mutex_lock(&a->lock);
		*resp = host_vm_json(v);
		pthread_mutex_unlock(&a->lock);
	}
	host_vm_release(a, v);
	return status;
}

/* /v1/vms/NAME[/ACTION]: 0, or the status to answer (*resp set; 0 for no such endpoint). */
static int vm_path(const struct http_request *req, char name[VM_NAME_MAX], char *action, size_t alen, json_t **resp,
		   int *status)
{
	char err[512];
	int rc = host_vm_path_parse(req->path, name, action, alen, err, sizeof(err));
	if (!rc)
		return 0;
	*status = 0;
	if (rc != -ENOENT) {
		*resp = http_error("%s", err);
		*status = 400;
	}
	return -1;
}

static int api_vm_get(void *ctx, const struct http_request *req, json_t **resp)
{
	struct host_agent *a = ctx;
	char name[VM_NAME_MAX], action[64];
	int status;
	if (vm_path(req, name, action, sizeof(action), resp, &status))
		return status;
	if (!strcmp(action, "migration"))
		return host_migration_relay(a, name, "GET", "/v1/migration", NULL, resp);
	if (!strcmp(action, "netstats"))
		return host_vm_netstats(a, name, resp);
	if (!strcmp(action, "send"))
		return host_copy_status(a, name, false, resp);
	if (!strcmp(action, "move-disk"))
		return host_migration_relay(a, name, "GET", "/v1/vm/disk-move", NULL, resp);
	if (action[0])
		return 0;
	const char *fresh = http_query(req, "monitor");
	char api[sizeof(((struct host_vm *)0)->api)] = "";
	pthread_mutex_lock(&a->lock);
	struct host_vm *v = host_vm_find(a, name);
	*resp = v ? host_vm_json(v) : http_error("no VM named %s on host %s", name, a->name);
	if (v && v->pid)
		snprintf(api, sizeof(api), "%s", v->api);
	pthread_mutex_unlock(&a->lock);
	if (v && fresh && !strcmp(fresh, "1")) {
		/* ?monitor=1: what the monitor itself says now (the controller asks
		 * when it must know whether an arriving VM already runs here) */
		char state[32], err[300];
		if (!api[0])
			json_object_set_new(*resp, "monitor_state", json_string("none"));
		else if (host_vm_monitor_state(api, state, sizeof(state), err, sizeof(err)))
			json_object_set_new(*resp, "monitor_error", json_string(err));
		else
			json_object_set_new(*resp, "monitor_state", json_string(state));
	}
	return v ? 200 : 404;
}

static int vm_action(struct host_agent *a, struct host_vm *v, const char *name, const char *action,
		     const struct http_request *req, json_t **resp);

/* POST /v1/vms/NAME/move-disk {disk, datastore}: a running VM's disk moves
 * to DATASTORE/NAME-diskN.img while it runs (the monitor's disk move); the
 * record follows when the monitor reports the new file (supervisor). */
static int move_disk(struct host_agent *a, const char *name, json_t *body, json_t **resp)
{
	json_t *disk = json_object_get(body, "disk");
	const char *dsname = json_string_value(json_object_get(body, "datastore"));
	char path[PATH_MAX], real[PATH_MAX];
	if ((disk && (!json_is_integer(disk) || json_integer_value(disk) < 0 || json_integer_value(disk) >= VM_MAX_DISKS)) ||
	    !dsname) {
		*resp = http_error("a disk move needs {\"datastore\": NAME} and optionally {\"disk\": INDEX}");
		return 400;
	}
	int i = disk ? (int)json_integer_value(disk) : 0;
	pthread_mutex_lock(&a->lock);
	struct host_vm *v = host_vm_find(a, name);
	const struct host_datastore *ds = host_datastore_find(a, dsname);
	const char *cur = v ? json_string_value(json_object_get(json_array_get(json_object_get(v->record, "disks"), (size_t)i), "path")) : NULL;
	int status = 0;
	if (!v) {
		*resp = http_error("no VM named %s on host %s", name, a->name);
		status = 404;
	} else if (!v->pid || (strcmp(v->state, "running") && strcmp(v->state, "paused"))) {
		*resp = http_error("VM %s is %s on host %s; move-disk moves a running VM's disk (a powered-off or "
				   "suspended VM's disks move to another host with `glide vm migrate --with-storage`)", name, v->state, a->name);
		status = 409;
	} else if (!cur) {
		*resp = http_error("VM %s has no disk %d", name, i);
		status = 404;
	} else if (!ds) {
		*resp = http_error("host %s has no datastore %s", a->name, dsname);
		status = 409;
	} else if (realpath(cur, real) && host_datastore_holding(a, real) == ds) {
		*resp = http_error("disk %d of VM %s already is on datastore %s (%s)", i, name, dsname, cur);
		status = 409;
	} else {
		snprintf(path, sizeof(path), "%.*s/%s-disk%d.img", (int)(sizeof(path) - VM_NAME_MAX - 16), ds->path, name, i);
	}
	pthread_mutex_unlock(&a->lock);
	if (status)
		return status;
	json_t *mb = json_pack("{s:i, s:s}", "disk", i, "path", path);
	status = host_migration_relay(a, name, "POST", "/v1/vm/disk-move", mb, resp);
	json_decref(mb);
	if (status == 202)
		glide_log("host", "VM %s: disk %d moving to datastore %s (%s)", name, i, dsname, path);
	return status;
}

static int api_vm_post(void *ctx, const struct http_request *req, json_t **resp)
{
	struct host_agent *a = ctx;
	char name[VM_NAME_MAX], action[64];
	int status;
	if (vm_path(req, name, action, sizeof(action), resp, &status))
		return status;
	if (!strcmp(action, "migrate"))
		return host_migration_start(a, name, req->body, resp);
	if (!strcmp(action, "migration/cancel"))
		return host_migration_relay(a, name, "POST", "/v1/migration/cancel", NULL, resp);
	if (!strcmp(action, "migration/resolve"))
		return host_migration_relay(a, name, "POST", "/v1/migration/resolve", req->body, resp);
	if (!strcmp(action, "capture"))
		return host_vm_capture(a, name, req->body, resp);
	if (!strcmp(action, "send"))
		return host_copy_send(a, name, req->body, resp);
	if (!strcmp(action, "move-disk"))
		return move_disk(a, name, req->body, resp);
	if (!strcmp(action, "move-disk/cancel"))
		return host_migration_relay(a, name, "POST", "/v1/vm/disk-move/cancel", NULL, resp);
	pthread_mutex_lock(&a->lock);
	struct host_vm *v = host_vm_find(a, name);
	if (v)
		host_vm_hold(v);
	pthread_mutex_unlock(&a->lock);
	if (!v) {
		*resp = http_error("no VM named %s on host %s", name, a->name);
		return 404;
	}
	status = vm_action(a, v, name, action, req, resp);
	host_vm_release(a, v);
	return status;
}

/* start, arrived, stop or config of a VM the caller holds (host_vm_hold). */
static int vm_action(struct host_agent *a, struct host_vm *v, const char *name, const char *action,
		     const struct http_request *req, json_t **resp)
{
	char err[512];
	if (!strcmp(action, "start"))
		return start_and_wait(a, v, resp, 200);
	if (!strcmp(action, "arrived")) { /* the controller saw the migration complete */
		pthread_mutex_lock(&a->lock);
		if (json_object_get(v->record, "incoming") && v->pid) {
			json_object_del(v->record, "incoming");
			snprintf(v->state, sizeof(v->state), "running");
			host_vm_save(v);
			glide_log("host", "VM %s arrived and runs here", v->name);
		}
		*resp = host_vm_json(v);
		pthread_mutex_unlock(&a->lock);
		return 200;
	}
	if (!strcmp(action, "suspend"))
		return host_vm_suspend(a, v, resp);
	if (!strcmp(action, "stop")) {
		if (!strcmp(v->state, "incoming") || !strcmp(v->state, "migrated")) {
			*resp = http_error("VM %s is %s on host %s and cannot be stopped here", name, v->state, a->name);
			return 409;
		}
		host_vm_stop(a, v, err, sizeof(err));
		pthread_mutex_lock(&a->lock);
		if (!v->pid) /* powering off a suspended VM discards its suspended state */
			host_vm_suspend_drop(v, "the VM was powered off");
		pthread_mutex_unlock(&a->lock);
		glide_log("host", "VM %s stopped", name);
		pthread_mutex_lock(&a->lock);
		*resp = host_vm_json(v);
		pthread_mutex_unlock(&a->lock);
		return 200;
	}
	if (!strcmp(action, "config")) { /* replace the configuration of a powered-off VM */
		struct host_config_request r;
		pthread_mutex_lock(&a->lock);
		bool suspended = !v->pid && host_vm_suspended(v);
		pthread_mutex_unlock(&a->lock);
		if (suspended) {
			*resp = http_error("VM %s is suspended on host %s: its configuration is in its suspended state; start it "
					   "(it resumes) or stop it (the suspended state is discarded) first", name, a->name);
			return 409;
		}
		if (host_config_request_parse(req->body, &r, err, sizeof(err))) {
			*resp = http_error("%s", err);
			return 400;
		}
		if (attach_fill_macs(&r.at)) {
			*resp = http_error("cannot generate a MAC address");
			return 500;
		}
		pthread_mutex_lock(&a->lock);
		if (v->pid) {
			pthread_mutex_unlock(&a->lock);
			*resp = http_error("VM %s is %s; power it off before changing its configuration", name, v->state);
			return 409;
		}
		int rc = r.have_nics ? host_vm_attach_check(a, &r.at, v->name, err, sizeof(err)) : 0;
		if (rc) {
			pthread_mutex_unlock(&a->lock);
			*resp = http_error("%s", err);
			return rc == -ENOENT ? 400 : 409;
		}
		json_t *cfg = json_deep_copy(r.config);
		json_object_set_new(cfg, "name", json_string(v->name));
		json_object_set_new(v->record, "config", cfg);
		if (r.boot)
			json_object_set(v->record, "boot", r.boot);
		if (r.have_hardware && r.hardware)
			json_object_set(v->record, "hardware", r.hardware);
		else if (r.have_hardware)
			json_object_del(v->record, "hardware");
		if (r.have_nics)
			json_object_set_new(v->record, "nics", attach_nics_json(&r.at));
		if (r.have_disks)
			json_object_set_new(v->record, "disks", attach_disks_json(&r.at));
		host_vm_save(v);
		*resp = host_vm_json(v);
		pthread_mutex_unlock(&a->lock);
		return 200;
	}
	return 0;
}

static int vm_delete(struct host_agent *a, struct host_vm *v, const char *name, bool forced, bool remove_disks, json_t **resp);

static int api_vm_delete(void *ctx, const struct http_request *req, json_t **resp)
{
	struct host_agent *a = ctx;
	char name[VM_NAME_MAX], action[64];
	const char *force = http_query(req, "force"), *disks = http_query(req, "disks");
	int status;
	if (vm_path(req, name, action, sizeof(action), resp, &status))
		return status;
	if (action[0])
		return 0;
	if (disks && strcmp(disks, "remove") && strcmp(disks, "keep")) {
		*resp = http_error("?disks= is remove or keep");
		return 400;
	}
	pthread_mutex_lock(&a->lock);
	struct host_vm *v = host_vm_find(a, name);
	if (!v) {
		pthread_mutex_unlock(&a->lock);
		*resp = http_error("no VM named %s on host %s", name, a->name);
		return 404;
	}
	host_vm_hold(v);
	status = vm_delete(a, v, name, force && !strcmp(force, "1"), disks && !strcmp(disks, "remove"), resp);
	host_vm_release(a, v);
	return status;
}

/* The disk files of a VM that moved away with its disks copied: those
 * inside a datastore of this host are removed, the others (a path the
 * user chose) are kept and listed. {disks_removed: [...], disks_kept: [...]} */
static json_t *remove_moved_disks(struct host_agent *a, json_t *disks)
{
	json_t *removed = json_array(), *kept = json_array(), *d;
	size_t i;
	json_array_foreach(disks, i, d) {
		const char *path = json_string_value(json_object_get(d, "path"));
		char real[PATH_MAX];
		if (!path)
			continue;
		if (realpath(path, real) && host_datastore_holding(a, real) && !unlink(real)) {
			glide_log("host", "removed %s: its VM moved away with a copy", real);
			json_array_append_new(removed, json_string(path));
		} else {
			json_array_append_new(kept, json_string(path));
		}
	}
	return json_pack("{s:o, s:o}", "disks_removed", removed, "disks_kept", kept);
}

/* DELETE of a VM the caller holds; called with a->lock held, returns with
 * it released. remove_disks (?disks=remove): the VM migrated away with its
 * disks copied (shared-nothing); its old files in this host's datastores go. */
static int vm_delete(struct host_agent *a, struct host_vm *v, const char *name, bool forced, bool remove_disks, json_t **resp)
{
	bool incoming = json_object_get(v->record, "incoming") != NULL;
	pid_t pid = v->pid;
	bool migrated = !strcmp(v->state, "migrated"); /* its monitor reported the migration completed */
	char api[sizeof(v->api)], state[32] = "", err[300] = "";
	snprintf(api, sizeof(api), "%s", v->api);
	json_t *disks = remove_disks ? json_deep_copy(json_object_get(v->record, "disks")) : NULL;
	pthread_mutex_unlock(&a->lock);
	if (remove_disks && !migrated && !pid) { /* powered off or suspended: its files were copied (a cold move) */
		pthread_mutex_lock(&a->lock);
		bool copying = v->copying;
		pthread_mutex_unlock(&a->lock);
		if (copying) {
			*resp = http_error("VM %s's files are being copied from host %s; they are not removed now", name, a->name);
			json_decref(disks);
			return 409;
		}
	} else if (remove_disks && !migrated) {
		char st[32] = "";
		if (!pid || kill(pid, 0) || host_vm_monitor_state(api, st, sizeof(st), err, sizeof(err)) || strcmp(st, "migrated")) {
			*resp = http_error("VM %s on host %s did not migrate away (its monitor is %s); its disks are not removed", name,
					   a->name, st[0] ? st : pid && !kill(pid, 0) ? "not answering" : "gone");
			json_decref(disks);
			return 409;
		}
		migrated = true;
	}
	/* Ask the monitor itself: an arriving VM may already run (the source
	 * released it), and a VM that migrated away needs no signal. Only a VM
	 * still waiting masked (incoming) is discarded; one that runs, or whose
	 * monitor does not say, is kept. */
	if (pid && !migrated && kill(pid, 0) == 0 && host_vm_monitor_state(api, state, sizeof(state), err, sizeof(err)))
		state[0] = 0;
	bool gone = !pid || migrated || kill(pid, 0) != 0 || !strcmp(state, "migrated") || !strcmp(state, "shutdown");
	if (!gone && !forced) {
		if (!strcmp(state, "running") || !strcmp(state, "paused")) {
			*resp = http_error("VM %s is %s on host %s%s; it is not discarded", name, state, a->name,
					   incoming ? " (it arrived here)" : "; stop it first");
			json_decref(disks);
			return 409;
		}
		if (!state[0]) {
			*resp = http_error("VM %s on host %s: %s; it is not discarded while it may be running", name, a->name, err);
			json_decref(disks);
			return 409;
		}
		if (!incoming && strcmp(state, "incoming")) {
			*resp = http_error("VM %s is %s on host %s; stop it first", name, state, a->name);
			json_decref(disks);
			return 409;
		}
	}
	pthread_mutex_lock(&a->lock);
	if (v->removed || v->pid != pid) {
		pthread_mutex_unlock(&a->lock);
		*resp = http_error("VM %s on host %s changed while it was being removed; try again", name, a->name);
		json_decref(disks);
		return 409;
	}
	if (!gone)
		kill(pid, SIGTERM); /* an incoming monitor discards its masked VM and exits */
	host_vm_suspend_drop(v, "the VM was deleted");
	host_vm_forget(a, v);
	pthread_mutex_unlock(&a->lock);
	*resp = json_pack("{s:s, s:b}", "name", name, "removed", 1);
	if (remove_disks)
		json_object_update_new(*resp, remove_moved_disks(a, disks));
	json_decref(disks);
	return 200;
}

static int api_incoming(void *ctx, const struct http_request *req, json_t **resp)
{
	return host_migration_incoming(ctx, req->body, resp);
}

static int api_receive(void *ctx, const struct http_request *req, json_t **resp)
{
	return host_copy_receive(ctx, req->body, resp);
}

/* GET or DELETE /v1/receive/NAME */
static int api_receipt(void *ctx, const struct http_request *req, json_t **resp)
{
	const char *name = req->path + strlen("/v1/receive/"), *keep = http_query(req, "keep");
	char err[256];
	if (!name_valid(name, err, sizeof(err))) {
		*resp = http_error("%s", err);
		return 400;
	}
	if (!strcmp(req->method, "GET"))
		return host_copy_status(ctx, name, true, resp);
	return host_copy_forget(ctx, name, keep && !strcmp(keep, "1"), resp);
}

/* Whether this host sees a file (the controller asks before it places or
 * moves a VM onto shared storage). */
static int api_paths(void *ctx, const struct http_request *req, json_t **resp)
{
	const char *path;
	char err[256];
	if (host_path_query_parse(req, &path, err, sizeof(err))) {
		*resp = http_error("%s", err);
		return 400;
	}
	*resp = attach_path_info(path);
	return 200;
}

/* Every VM's NIC counters ({host, vms: [{name, state, nics} or {name, error}]}). */
static int api_netstats(void *ctx, const struct http_request *req, json_t **resp)
{
	struct host_agent *a = ctx;
	json_t *names = json_array(), *list = json_array(), *n;
	size_t i;
	pthread_mutex_lock(&a->lock);
	for (struct host_vm *v = a->vms; v; v = v->next)
		if (!v->removed && v->pid && (!strcmp(v->state, "running") || !strcmp(v->state, "paused")) &&
		    !json_object_get(v->record, "incoming"))
			json_array_append_new(names, json_string(v->name));
	pthread_mutex_unlock(&a->lock);
	json_array_foreach(names, i, n) {
		json_t *one = NULL;
		int st = host_vm_netstats(a, json_string_value(n), &one);
		if (st == 404 || st == 409) { /* stopped or moved meanwhile */
			json_decref(one);
			continue;
		}
		if (st != 200)
			json_object_set(one, "name", n);
		json_array_append_new(list, one);
	}
	json_decref(names);
	*resp = json_pack("{s:s, s:o}", "host", a->name, "vms", list);
	return 200;
}

int host_service_addresses(struct host_agent *a, const char *service, const char (**addrs)[64])
{
	if (!strcmp(service, "management")) {
		*addrs = (const char(*)[64])a->management_hosts;
		return a->nmanagement_hosts;
	}
	if (!strcmp(service, "migration")) {
		*addrs = (const char(*)[64])a->migration_hosts;
		return a->nmigration_hosts;
	}
	if (!strcmp(service, "provisioning")) {
		*addrs = (const char(*)[64])a->provisioning_hosts;
		return a->nprovisioning_hosts;
	}
	return -1;
}

/* One network check server on each address of the service (their endpoints in the answer). */
static int api_netcheck_listen(void *ctx, const struct http_request *req, json_t **resp)
{
	struct host_agent *a = ctx;
	struct host_netcheck_request r;
	const char(*addrs)[64];
	char err[512], ep[96];

	if (host_netcheck_request_parse(req->body, false, &r, err, sizeof(err))) {
		*resp = http_error("%s", err);
		return 400;
	}
	int n = host_service_addresses(a, r.service, &addrs);
	if (n <= 0) {
		if (!strcmp(r.service, "management"))
			*resp = http_error("host %s has no management address (its agent listens on a wildcard address)", a->name);
		else
			*resp = http_error("host %s has no %s address (start its agent with --%s-address)", a->name, r.service,
					   r.service);
		explicit_bzero(&r, sizeof(r));
		return 409;
	}
	json_t *eps = json_array();
	for (int i = 0; i < n; i++) {
		int port, rc = netcheck_serve(addrs[i], r.token, NETCHECK_SERVER_LIFE_MS, &port, err, sizeof(err));
		if (rc) {
			/* the servers already started end unused at their deadline */
			json_decref(eps);
			explicit_bzero(&r, sizeof(r));
			*resp = http_error("host %s cannot serve a network check on %s: %s", a->name, addrs[i], err);
			return rc == -EBUSY ? 503 : 500;
		}
		netcheck_endpoint(ep, sizeof(ep), addrs[i], port);
		json_array_append_new(eps, json_string(ep));
	}
	*resp = json_pack("{s:s, s:s, s:o}", "host", a->name, "service", r.service, "endpoints", eps);
	explicit_bzero(&r, sizeof(r));
	return 201;
}

/* The local address a check to host goes from: this host's address of the
 * service with the same index, else its first of the same family, else
 * none (the route chooses). */
static const char *netcheck_from(const char (*addrs)[64], int n, int i, const char *host)
{
	bool v6 = strchr(host, ':') != NULL;
	if (n > 0 && (strchr(addrs[i % n], ':') != NULL) == v6)
		return addrs[i % n];
	for (int k = 0; k < n; k++)
		if ((strchr(addrs[k], ':') != NULL) == v6)
			return addrs[k];
	return NULL;
}

static int api_netcheck_run(void *ctx, const struct http_request *req, json_t **resp)
{
	struct host_agent *a = ctx;
	struct host_netcheck_request r;
	const char(*addrs)[64];
	char err[512];

	if (host_netcheck_request_parse(req->body, true, &r, err, sizeof(err))) {
		*resp = http_error("%s", err);
		return 400;
	}
	int n = host_service_addresses(a, r.service, &addrs);
	json_t *results = json_array();
	bool ok = true;
	for (int i = 0; i < r.nto; i++) {
		json_t *one = netcheck_run(netcheck_from(addrs, n, i, r.to_host[i]), r.to_host[i], r.to_port[i], r.token, r.seconds);
		ok &= json_is_true(json_object_get(one, "ok"));
		json_array_append_new(results, one);
	}
	*resp = json_pack("{s:s, s:s, s:b, s:o}", "host", a->name, "service", r.service, "ok", ok, "results", results);
	explicit_bzero(&r, sizeof(r));
	return 200;
}

static const struct http_route routes[] = {
	{ "GET", "/v1/host", api_host },
	{ "GET", "/v1/paths", api_paths },
	{ "GET", "/v1/netstats", api_netstats },
	{ "GET", "/v1/demand", api_demand },
	{ "GET", "/v1/vms", api_vms },
	{ "POST", "/v1/vms", api_vm_create },
	{ "GET", "/v1/vms/*", api_vm_get },
	{ "POST", "/v1/vms/*", api_vm_post },
	{ "DELETE", "/v1/vms/*", api_vm_delete },
	{ "POST", "/v1/incoming", api_incoming },
	{ "POST", "/v1/receive", api_receive },
	{ "GET", "/v1/receive/*", api_receipt },
	{ "DELETE", "/v1/receive/*", api_receipt },
	{ "POST", "/v1/netcheck/listen", api_netcheck_listen },
	{ "POST", "/v1/netcheck/run", api_netcheck_run },
	{ NULL, NULL, NULL },
};

static void usage(FILE *out)
{
	fprintf(out, "usage: glide host serve --data-dir DIR --listen HOST:PORT --token-file F\n"
		     "                        [--migration-address ADDR[,ADDR...]] [--provisioning-address ADDR[,ADDR...]]\n"
		     "                        [--name NAME]\n"
		     "                        [--memory SIZE] [--cpus N] [--cpuid-mask LEAF.REG=MASK,...]\n"
		     "                        [--network NAME=bridge:BR[,vlan=N][,rate=RATE][,forged-transmits=accept]\n"
		     "                                   [,mac-changes=accept][,promiscuous=accept]]... (at most %d)\n"
		     "                        [--datastore NAME=DIR]... (at most %d: where disks copied to this host go)\n"
		     "                        [--device class=C[,vendor=V][,model=M][,count=N]]... (at most %d kinds: assignable\n"
		     "                                   devices VMs ask for by attributes)\n"
		     "                        [--tls-cert PEM --tls-key PEM] [--log FILE]\n", ATTACH_NETWORKS_MAX, HOST_DATASTORES_MAX,
		HW_KINDS_MAX);
}

static int mkdir_p(const char *dir, mode_t mode)
{
	char tmp[PATH_MAX];
	snprintf(tmp, sizeof(tmp), "%s", dir);
	for (char *p = tmp + 1; *p; p++)
		if (*p == '/') {
			*p = 0;
			mkdir(tmp, 0755);
			*p = '/';
		}
	return mkdir(tmp, mode) && errno != EEXIST ? -errno : 0;
}

/* --network NAME=bridge:BR[,vlan=N][,rate=RATE]: parsed, unique, and BR a bridge of this host. */
static int network_option(struct host_agent *a, const char *arg)
{
	struct attach_network n;
	char err[512];
	if (a->nnetworks >= ATTACH_NETWORKS_MAX) {
		fprintf(stderr, "glide: at most %d --network\n", ATTACH_NETWORKS_MAX);
		return -1;
	}
	if (attach_network_parse(arg, &n, err, sizeof(err)) || attach_network_check_bridge(&n, err, sizeof(err))) {
		fprintf(stderr, "glide: %s\n", err);
		return -1;
	}
	if (attach_network_find(a->networks, a->nnetworks, n.name)) {
		fprintf(stderr, "glide: --network %s is given twice\n", n.name);
		return -1;
	}
	a->networks[a->nnetworks++] = n;
	return 0;
}

/* --datastore NAME=DIR: a valid, unique name; DIR an existing directory
 * (kept with symlinks resolved) that is no other datastore's. */
static int datastore_option(struct host_agent *a, const char *arg)
{
	char name[64], err[256], real[PATH_MAX];
	const char *eq = strchr(arg, '=');
	if (a->ndatastores >= HOST_DATASTORES_MAX) {
		fprintf(stderr, "glide: at most %d --datastore\n", HOST_DATASTORES_MAX);
		return -1;
	}
	if (!eq || eq == arg || (size_t)(eq - arg) >= sizeof(name) || !eq[1]) {
		fprintf(stderr, "glide: --datastore '%s': expected NAME=DIR\n", arg);
		return -1;
	}
	snprintf(name, sizeof(name), "%.*s", (int)(eq - arg), arg);
	if (!name_valid(name, err, sizeof(err))) {
		fprintf(stderr, "glide: --datastore name '%s': %s\n", name, err);
		return -1;
	}
	struct stat st;
	if (!realpath(eq + 1, real) || stat(real, &st) || !S_ISDIR(st.st_mode)) {
		fprintf(stderr, "glide: --datastore %s: %s is not a directory%s%s\n", name, eq + 1, errno ? ": " : "",
			errno ? strerror(errno) : "");
		return -1;
	}
	if (strlen(real) > ATTACH_PATH_MAX - 80) {
		fprintf(stderr, "glide: --datastore %s: the path %s is too long for disk paths\n", name, real);
		return -1;
	}
	for (int i = 0; i < a->ndatastores; i++)
		if (!strcmp(a->datastores[i].name, name) || !strcmp(a->datastores[i].path, real)) {
			fprintf(stderr, "glide: --datastore %s: %s already is datastore %s\n", name,
				!strcmp(a->datastores[i].name, name) ? "the name" : real, a->datastores[i].name);
			return -1;
		}
	snprintf(a->datastores[a->ndatastores].name, sizeof(a->datastores[0].name), "%s", name);
	snprintf(a->datastores[a->ndatastores].path, sizeof(a->datastores[0].path), "%s", real);
	a->ndatastores++;
	return 0;
}

/* "ADDR[,ADDR...]" (a port given with an address is dropped: it is chosen
 * per use; [v6] loses its brackets; 0.0.0.0 and :: are no address) into
 * out; returns the count. */
static int service_addresses(const char *arg, char (*out)[64], int max)
{
	char *list = strdup(arg), *save = NULL;
	int n = 0;
	for (char *t = list ? strtok_r(list, ",", &save) : NULL; t && n < max; t = strtok_r(NULL, ",", &save)) {
		char *colon = strrchr(t, ':');
		if (colon && !strchr(t, '[') && strchr(t, ':') == colon)
			*colon = 0;
		if (t[0] == '[') {
			t++;
			if (strchr(t, ']'))
				*strchr(t, ']') = 0;
		}
		if (*t && strcmp(t, "0.0.0.0") && strcmp(t, "::"))
			snprintf(out[n++], 64, "%s", t);
	}
	free(list);
	return n;
}

int host_serve_main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "data-dir", required_argument, 0, 'd' }, { "listen", required_argument, 0, 'l' },
		{ "token-file", required_argument, 0, 't' }, { "migration-address", required_argument, 0, 'm' },
		{ "name", required_argument, 0, 'n' },      { "memory-limit", required_argument, 0, 'M' },
		{ "cpuid-mask", required_argument, 0, 'c' }, { "tls-cert", required_argument, 0, 'C' },
		{ "tls-key", required_argument, 0, 'K' },   { "log", required_argument, 0, 'L' },
		{ "network", required_argument, 0, 'N' },   { "provisioning-address", required_argument, 0, 'P' },
		{ "datastore", required_argument, 0, 'D' }, { "cpus", required_argument, 0, 'u' },
		{ "memory", required_argument, 0, 'M' },    { "device", required_argument, 0, 'V' },
		{ "help", no_argument, 0, 'h' },
		{ 0, 0, 0, 0 },
	};
	struct host_agent *a = &agent;
	const char *data = NULL, *listen = NULL, *token_file = NULL, *maddrs = NULL, *paddrs = NULL, *tls_cert = NULL, *tls_key = NULL;
	char err[512], sock[PATH_MAX + 16], dir[PATH_MAX + 16];
	int opt;

	pthread_mutex_init(&a->lock, NULL);
	a->hardware = json_array();
	for (int r = 0; r < EVC_REGS; r++)
		a->cpu_regs[r] = 0xffffffffu;
	optind = 1;
	while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (opt) {
		case 'd': data = optarg; break;
		case 'l': listen = optarg; break;
		case 't': token_file = optarg; break;
		case 'm': maddrs = optarg; break;
		case 'P': paddrs = optarg; break;
		case 'n': snprintf(a->name, sizeof(a->name), "%s", optarg); break;
		case 'M':
			if (parse_size(optarg, &a->memory_limit) || !a->memory_limit) {
				fprintf(stderr, "glide: --memory '%s' is not a size (e.g. 8G)\n", optarg);
				return 1;
			}
			break;
		case 'u': {
			char *end;
			errno = 0;
			a->cpus = strtod(optarg, &end);
			if (errno || end == optarg || *end || !(a->cpus > 0) || a->cpus > 65536) {
				fprintf(stderr, "glide: --cpus '%s' is not a number of CPUs (e.g. 4 or 1.5)\n", optarg);
				return 1;
			}
			break;
		}
		case 'c':
			if (evc_regs_parse_arg(optarg, a->cpu_regs)) {
				fprintf(stderr, "glide: --cpuid-mask '%s': expected LEAF.REG=MASK[,...] (MASK hex or decimal) with LEAF.REG one of %s\n",
					optarg, cpuid_mask_reg_list());
				return 1;
			}
			break;
		case 'C': tls_cert = optarg; break;
		case 'K': tls_key = optarg; break;
		case 'L':
			if (glide_log_to(optarg))
				return 1;
			break;
		case 'N':
			if (network_option(a, optarg))
				return 1;
			break;
		case 'D':
			errno = 0;
			if (datastore_option(a, optarg))
				return 1;
			break;
		case 'V': {
			json_t *dev = hw_spec_parse(optarg, true, err, sizeof(err));
			if (!dev || json_array_size(a->hardware) >= HW_KINDS_MAX) {
				fprintf(stderr, "glide: --device '%s': %s\n", optarg, dev ? "too many device kinds" : err);
				json_decref(dev);
				return 1;
			}
			json_array_append_new(a->hardware, dev);
			break;
		}
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 1;
		}
	}
	if (!data || !listen || !token_file) {
		fprintf(stderr, "glide: --data-dir, --listen and --token-file are required\n");
		usage(stderr);
		return 1;
	}
	struct daemon d;
	if (daemon_begin(&d, "host", token_file))
		return 1;
	char real[PATH_MAX];
	if (!realpath(data, real) && (mkdir_p(data, 0700) || !realpath(data, real))) {
		fprintf(stderr, "glide: cannot create data directory %s: %s\n", data, strerror(errno));
		daemon_end(&d);
		return 1;
	}
	if (strlen(real) > 60) { /* DIR/vms/NAME/api.sock must fit a UNIX socket path (108 bytes) */
		fprintf(stderr, "glide: data directory path %s is too long for socket paths (keep it under 60 characters)\n", real);
		daemon_end(&d);
		return 1;
	}
	memcpy(a->data_dir, real, strlen(real) + 1);
	snprintf(dir, sizeof(dir), "%s/vms", a->data_dir);
	mkdir(dir, 0700);
	snprintf(dir, sizeof(dir), "%s/keys", a->data_dir);
	mkdir(dir, 0700);
	chmod(dir, 0700);
	/* stale one-time keys from a crash are useless and must not linger */
	char cmd[PATH_MAX + 64];
	snprintf(cmd, sizeof(cmd), "%s/keys", a->data_dir);
	{
		DIR *kd = opendir(cmd);
		struct dirent *e;
		while (kd && (e = readdir(kd)))
			if (e->d_name[0] != '.') {
				char p[PATH_MAX * 2];
				snprintf(p, sizeof(p), "%s/%s", cmd, e->d_name);
				unlink(p);
			}
		if (kd)
			closedir(kd);
	}
	snprintf(a->listen, sizeof(a->listen), "%s", listen);
	if (!a->name[0])
		snprintf(a->name, sizeof(a->name), "%s", listen);
	/* service addresses: management is the host part of --listen; migration
	 * and provisioning are given, or that same address */
	char mgmt[128];
	snprintf(mgmt, sizeof(mgmt), "%s", listen);
	if (strrchr(mgmt, ':'))
		*strrchr(mgmt, ':') = 0;
	a->nmanagement_hosts = service_addresses(mgmt, a->management_hosts, 1);
	a->nmigration_hosts = service_addresses(maddrs ? maddrs : mgmt, a->migration_hosts, 8);
	a->nprovisioning_hosts = service_addresses(paddrs ? paddrs : mgmt, a->provisioning_hosts, 8);
	ssize_t n = readlink("/proc/self/exe", a->self_exe, sizeof(a->self_exe) - 1);
	if (n <= 0) {
		fprintf(stderr, "glide: cannot find my own executable: %s\n", strerror(errno));
		daemon_end(&d);
		return 1;
	}
	a->self_exe[n] = 0;
	if (host_facts_probe(a, err, sizeof(err))) {
		fprintf(stderr, "glide: %s\n", err);
		daemon_end(&d);
		return 1;
	}
	signal(SIGCHLD, SIG_IGN); /* monitors are reaped automatically; liveness is kill(pid, 0) */
	host_vm_load_all(a);

	snprintf(sock, sizeof(sock), "%s/host.sock", a->data_dir);
	struct http_server_opts so = { .unix_path = sock, .tcp_listen = listen, .tls_cert = tls_cert, .tls_key = tls_key };
	if (daemon_serve(&d, &so, routes, a)) {
		daemon_end(&d);
		return 1;
	}
	const struct evc_level *max = evc_host_max_level(a->cpu_regs);
	glide_log("host", "host agent %s serving on %s and %s; CPU %s (EVC max %s), migration addresses %d, provisioning "
		  "addresses %d, networks %d, datastores %d", a->name, listen, sock, a->cpu_model, max ? max->name : "none",
		  a->nmigration_hosts, a->nprovisioning_hosts, a->nnetworks, a->ndatastores);
	return daemon_run(&d, host_vm_supervise, a, &a->quit, " the agent; VM monitors keep running");
}
