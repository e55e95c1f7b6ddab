/* This host's half of a migration spec.
 *
 * Destination (POST /v1/incoming): check the VM fits (name free, memory,
 * CPU features it sees, a network here for every NIC, its MACs free, its
 * disks visible), pick a free port on every migration address, write the
 * one-time key to a 0600 file, start `glide vm run --incoming` on those
 * addresses with this host's --nic (the bridge of the network of the same
 * name) and --disk (the same shared path), and delete the key file as soon
 * as the monitor's API answers
 * (it reads the key first thing). The monitor then waits masked for the
 * source; if the migration fails it exits and the supervisor forgets it.
 *
 * Source (POST /v1/vms/NAME/migrate): the same key file dance around the
 * monitor's POST /v1/migration; progress is relayed from its API. The key
 * never reaches a log: it only exists in the request body, the short-lived
 * key file and memory that is wiped after use. */
#include "host/host.h"
#include "api/http.h"
#include "vmm/config.h"
#include "common/util.h"
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

/* Writes the key to DATA/keys/KEY.XXXXXX (mode 0600); returns 0 and the path. */
static int key_file_write(struct host_agent *a, const char *key, char *path, size_t len)
{
	char line[HOST_KEY_HEX_LEN + 2];
	snprintf(path, len, "%s/keys/key.XXXXXX", a->data_dir);
	int fd = mkstemp(path); /* mkstemp creates the file with mode 0600 */
	if (fd < 0)
		return -errno;
	snprintf(line, sizeof(line), "%s\n", key);
	int rc = write_full(fd, line, strlen(line));
	explicit_bzero(line, sizeof(line));
	close(fd);
	if (rc)
		unlink(path);
	return rc;
}

/* A free TCP port on host (bind to port 0, read it back). */
static int free_port(const char *host)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICHOST }, *ai;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	int fd, port = -1;

	if (getaddrinfo(host, "0", &hints, &ai))
		return -1;
	fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd >= 0 && bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && getsockname(fd, (struct sockaddr *)&ss, &sl) == 0)
		port = ss.ss_family == AF_INET ? ntohs(((struct sockaddr_in *)&ss)->sin_port)
					       : ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	if (fd >= 0)
		close(fd);
	freeaddrinfo(ai);
	return port;
}

static const char *str(json_t *o, const char *k)
{
	return json_string_value(json_object_get(o, k));
}

/* Whether datastore ds (NULL: not found) takes rq's disks as copies:
 * free space for rq->copy_bytes, no file at any copy's path. Fills paths.
 * 0, or an HTTP status with err set. */
static int datastore_takes(struct host_agent *a, const struct host_datastore *ds, const struct host_incoming_request *rq,
			   char (*paths)[ATTACH_PATH_MAX], char *err, size_t errlen)
{
	char have[32], need[32];
	if (!ds) {
		size_t used = (size_t)snprintf(err, errlen, "host %s has no datastore %s (", a->name, rq->datastore);
		for (int i = 0; i < a->ndatastores && used < errlen; i++)
			used += (size_t)snprintf(err + used, errlen - used, "%s%s", i ? ", " : "it has ", a->datastores[i].name);
		if (used < errlen)
			snprintf(err + used, errlen - used, "%s)", a->ndatastores ? "" : "it has none: start its agent with --datastore NAME=DIR");
		return 409;
	}
	json_t *info = host_datastore_json(ds);
	json_t *free_j = json_object_get(info, "free");
	uint64_t free_b = (uint64_t)json_integer_value(free_j);
	if (!free_j || free_b < rq->copy_bytes) {
		if (free_j)
			errf(err, errlen, "not enough space: datastore %s on host %s has %s free, the VM's disks need %s", ds->name, a->name,
			     format_size(free_b, have, sizeof(have)), format_size(rq->copy_bytes, need, sizeof(need)));
		else
			errf(err, errlen, "datastore %s on host %s (%s): %s", ds->name, a->name, ds->path,
			     json_string_value(json_object_get(info, "error")));
		json_decref(info);
		return 409;
	}
	json_decref(info);
	for (int i = 0; i < rq->at.ndisks; i++) {
		struct stat st;
		if ((size_t)snprintf(paths[i], ATTACH_PATH_MAX, "%.*s/%s-disk%d.img", (int)(ATTACH_PATH_MAX - VM_NAME_MAX - 16),
				     ds->path, rq->name, i) >= ATTACH_PATH_MAX) {
			errf(err, errlen, "datastore %s on host %s: its path is too long for a disk path", ds->name, a->name);
			return 409;
		}
		if (!lstat(paths[i], &st)) {
			errf(err, errlen, "datastore %s on host %s already has %s; a disk copy never overwrites a file", ds->name, a->name,
			     paths[i]);
			return 409;
		}
	}
	return 0;
}

int host_migration_incoming(struct host_agent *a, json_t *spec, json_t **resp)
{
	struct host_incoming_request rq;
	char err[512] = "", addrs[1024] = "", keypath[PATH_MAX];
	struct host_vm *v;
	pid_t pid;
	int rc;

	if (host_incoming_request_parse(spec, &rq, err, sizeof(err))) {
		*resp = http_error("%s", err);
		return 400;
	}
	const char *name = rq.name, *key = rq.key;
	struct vm_config cfg = rq.cfg;
	if (!a->nmigration_hosts) {
		*resp = http_error("host %s has no migration address (start it with --migration-address)", a->name);
		return 409;
	}
	pthread_mutex_lock(&a->lock);
	if (host_vm_find(a, name)) {
		pthread_mutex_unlock(&a->lock);
		*resp = http_error("a VM named %s already exists on host %s; remove it there first", name, a->name);
		return 409;
	}
	uint64_t free_b = host_memory_free(a);
	if (cfg.memory_bytes > free_b) {
		char need[32], have[32];
		pthread_mutex_unlock(&a->lock);
		*resp = http_error("not enough memory: host %s has %s free for VMs, VM %s needs %s", a->name,
				   format_size(free_b, have, sizeof(have)), name, format_size(cfg.memory_bytes, need, sizeof(need)));
		return 409;
	}
	if (host_hardware_check(a, name, rq.hardware, err, sizeof(err))) {
		pthread_mutex_unlock(&a->lock);
		*resp = http_error("%s", err);
		return 409;
	}
	if (rq.have_cpuid) {
		char missing[512];
		if (evc_missing(rq.cpuid, a->cpu_regs, missing, sizeof(missing))) {
			pthread_mutex_unlock(&a->lock);
			*resp = http_error("host %s lacks CPU features the VM uses: %s", a->name, missing);
			return 409;
		}
	}
	rc = host_vm_attach_check(a, &rq.at, NULL, err, sizeof(err));
	if (rc) {
		pthread_mutex_unlock(&a->lock);
		*resp = http_error("%s", err);
		return 409;
	}
	/* shared-nothing: each disk arrives as a copy, DATASTORE/NAME-diskN.img,
	 * which the monitor creates itself (--disk-dir) and removes if the
	 * migration fails; it gets no --disk for them */
	const struct host_datastore *ds = rq.datastore ? host_datastore_find(a, rq.datastore) : NULL;
	static char copy_paths[VM_MAX_DISKS][ATTACH_PATH_MAX]; /* under a->lock until the record holds them */
	struct attach margs = rq.at;
	if (rq.datastore) {
		int code = datastore_takes(a, ds, &rq, copy_paths, err, sizeof(err));
		if (code) {
			pthread_mutex_unlock(&a->lock);
			*resp = http_error("%s", err);
			return code;
		}
		for (int i = 0; i < rq.at.ndisks; i++)
			rq.at.disks[i].path = copy_paths[i];
		margs.ndisks = 0;
	}
	struct attach_args *dev = malloc(sizeof(*dev));
	if (!dev || attach_monitor_args(&margs, a->networks, a->nnetworks, a->name, dev, err, sizeof(err))) {
		pthread_mutex_unlock(&a->lock);
		*resp = http_error("%s", dev ? err : "out of memory");
		free(dev);
		return dev ? 409 : 500;
	}
	for (int i = 0; !ds && i < rq.at.ndisks; i++) {
		struct stat st;
		if (stat(rq.at.disks[i].path, &st)) {
			int e = errno;
			pthread_mutex_unlock(&a->lock);
			*resp = http_error("disk %d of VM %s: host %s cannot see %s: %s (the disks must be on storage both hosts share)",
					   i, name, a->name, rq.at.disks[i].path, strerror(e));
			free(dev);
			return 409;
		}
	}
	for (int i = 0; i < a->nmigration_hosts; i++) {
		int port = free_port(a->migration_hosts[i]);
		size_t used = strlen(addrs);
		if (port <= 0) {
			pthread_mutex_unlock(&a->lock);
			free(dev);
			*resp = http_error("no free port on migration address %s", a->migration_hosts[i]);
			return 500;
		}
		snprintf(addrs + used, sizeof(addrs) - used, "%s%s%s%s:%d", i ? "," : "",
			 strchr(a->migration_hosts[i], ':') ? "[" : "", a->migration_hosts[i],
			 strchr(a->migration_hosts[i], ':') ? "]" : "", port);
	}
	json_t *record = json_pack("{s:O, s:O*, s:O*, s:o, s:o, s:b}", "config", rq.config, "boot", rq.boot, "devices",
				   rq.devices, "nics", attach_nics_json(&rq.at), "disks", attach_disks_json(&rq.at), "incoming", 1);
	if (record && rq.hardware)
		json_object_set(record, "hardware", rq.hardware);
	json_t *disk_to = NULL;
	if (ds) {
		disk_to = json_array();
		for (int i = 0; i < rq.at.ndisks; i++)
			json_array_append_new(disk_to, json_string(rq.at.disks[i].path));
	}
	v = host_vm_new(a, name, record, err, sizeof(err));
	json_decref(record);
	if (!v) {
		pthread_mutex_unlock(&a->lock);
		json_decref(disk_to);
		free(dev);
		*resp = http_error("%s", err);
		return 409;
	}
	if ((rc = key_file_write(a, key, keypath, sizeof(keypath)))) {
		host_vm_forget(a, v);
		pthread_mutex_unlock(&a->lock);
		json_decref(disk_to);
		free(dev);
		*resp = http_error("cannot write the key file: %s", strerror(-rc));
		return 500;
	}
	/* the configuration comes from the stream and is checked there, the
	 * device shape against this host's --nic / --disk */
	char *args[4 + 2 * (VM_MAX_NICS + VM_MAX_DISKS) + 2 + 1] = { "--incoming", addrs, "--key-file", keypath };
	char disk_dir[PATH_MAX];
	int argc = 4;
	for (int i = 0; i < dev->argc; i++)
		args[argc++] = dev->argv[i];
	if (ds) {
		snprintf(disk_dir, sizeof(disk_dir), "%s", ds->path);
		args[argc++] = "--disk-dir";
		args[argc++] = disk_dir;
	}
	args[argc] = NULL;
	rc = host_vm_spawn(a, v, args, err, sizeof(err));
	free(dev);
	if (rc) {
		unlink(keypath);
		host_vm_forget(a, v);
		pthread_mutex_unlock(&a->lock);
		json_decref(disk_to);
		*resp = http_error("%s", err);
		return 500;
	}
	snprintf(v->state, sizeof(v->state), "incoming");
	pid = v->pid;
	host_vm_hold(v);
	pthread_mutex_unlock(&a->lock);

	rc = host_vm_wait_api(v, pid, HOST_MONITOR_START_TIMEOUT_MS, err, sizeof(err));
	unlink(keypath);
	if (rc) {
		pthread_mutex_lock(&a->lock);
		if (!v->removed)
			host_vm_forget(a, v);
		v->users--;
		pthread_mutex_unlock(&a->lock);
		json_decref(disk_to);
		*resp = http_error("cannot prepare the destination VM on %s: %s", a->name, err);
		return 500;
	}
	glide_log("host", "VM %s: destination prepared, waiting on %s", name, addrs);
	*resp = json_pack("{s:s, s:s, s:s, s:s, s:i, s:o*}", "name", name, "host", a->name, "addresses", addrs, "api", v->api,
			  "pid", (int)pid, "disk_to", disk_to);
	host_vm_release(a, v);
	return 201;
}

int host_migration_start(struct host_agent *a, const char *name, json_t *spec, json_t **resp)
{
	struct host_migrate_request rq;
	char keypath[PATH_MAX], api[PATH_MAX], err[512];
	json_t *body, *r = NULL;
	long status;
	int rc;

	if (host_migrate_request_parse(spec, &rq, err, sizeof(err))) {
		*resp = http_error("%s", err);
		return 400;
	}
	const char *key = rq.key;
	pthread_mutex_lock(&a->lock);
	struct host_vm *v = host_vm_find(a, name);
	if (!v || !v->pid || (strcmp(v->state, "running") && strcmp(v->state, "paused"))) {
		*resp = v ? http_error("VM %s is %s on host %s; only a running VM can be live-migrated", name, v->state, a->name)
			  : http_error("no VM named %s on host %s", name, a->name);
		pthread_mutex_unlock(&a->lock);
		return v ? 409 : 404;
	}
	snprintf(api, sizeof(api), "%s", v->api);
	rc = key_file_write(a, key, keypath, sizeof(keypath));
	if (rc) {
		pthread_mutex_unlock(&a->lock);
		*resp = http_error("cannot write the key file: %s", strerror(-rc));
		return 500;
	}
	host_vm_hold(v);
	pthread_mutex_unlock(&a->lock);
	body = json_deep_copy(spec);
	json_object_del(body, "key");
	json_object_set_new(body, "key_file", json_string(keypath));
	struct http_client_opts co = { .target = api, .timeout_ms = 30000 };
	/* the supervisor leaves this monitor alone until the migration ends */
	pthread_mutex_lock(&a->lock);
	v->migrating = true;
	pthread_mutex_unlock(&a->lock);
	rc = http_call(&co, "POST", "/v1/migration", body, &r, &status, err, sizeof(err));
	if (rc || status != 202) {
		pthread_mutex_lock(&a->lock);
		v->migrating = false;
		pthread_mutex_unlock(&a->lock);
	}
	unlink(keypath);
	json_decref(body);
	host_vm_release(a, v);
	if (rc) {
		json_decref(r);
		*resp = http_error("cannot reach VM %s's monitor: %s", name, err);
		return 502;
	}
	glide_log("host", "VM %s: migration to %s started (%ld)", name, str(spec, "to"), status);
	*resp = r;
	return (int)status;
}

int host_migration_relay(struct host_agent *a, const char *name, const char *method, const char *path, json_t *body,
			 json_t **resp)
{
	char api[PATH_MAX], err[512];
	long status;

	pthread_mutex_lock(&a->lock);
	struct host_vm *v = host_vm_find(a, name);
	if (!v || !v->pid) {
		*resp = v ? http_error("VM %s has no running monitor on host %s", name, a->name)
			  : http_error("no VM named %s on host %s", name, a->name);
		pthread_mutex_unlock(&a->lock);
		return v ? 409 : 404;
	}
	snprintf(api, sizeof(api), "%s", v->api);
	host_vm_hold(v);
	pthread_mutex_unlock(&a->lock);
	struct http_client_opts co = { .target = api, .timeout_ms = 10000 };
	json_t *r = NULL;
	if (http_call(&co, method, path, body, &r, &status, err, sizeof(err))) {
		host_vm_release(a, v);
		json_decref(r);
		*resp = http_error("cannot reach VM %s's monitor: %s", name, err);
		return 502;
	}
	const char *ms = json_string_value(json_object_get(r, "status"));
	if (ms && strcmp(ms, "running") && strcmp(ms, "in-doubt")) { /* in doubt: still hands off */
		pthread_mutex_lock(&a->lock);
		if (!v->removed) {
			v->migrating = false;
			if (!strcmp(ms, "completed"))
				snprintf(v->state, sizeof(v->state), "migrated");
		}
		pthread_mutex_unlock(&a->lock);
	}
	host_vm_release(a, v);
	*resp = r;
	return (int)status;
}
