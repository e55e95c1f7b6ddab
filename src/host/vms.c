/* The VMs of one host: each has a directory DATA/vms/NAME holding vm.json
 * (configuration and boot source), the monitor's pid file, API socket, log
 * and serial output. Monitors run in their own session, so they outlive the
 * agent; a restarted agent re-adopts every monitor whose pid is still a
 * `glide vm run` and whose API answers. A supervisor thread follows each
 * monitor's state through its API and notices when it exits: a VM that
 * migrated away (or an incoming one that never arrived) is forgotten, any
 * other becomes powered off with its configuration kept. */
#include "host/host.h"
#include "api/http.h"
#include "vmm/config.h"
#include "common/util.h"
#include <dirent.h>
#include <openssl/evp.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct host_vm *host_vm_find(struct host_agent *a, const char *name)
{
	for (struct host_vm *v = a->vms; v; v = v->next)
		if (!v->removed && !strcmp(v->name, name))
			return v;
	return NULL;
}

void host_vm_hold(struct host_vm *v)
{
	v->users++;
}

void host_vm_release(struct host_agent *a, struct host_vm *v)
{
	pthread_mutex_lock(&a->lock);
	v->users--;
	pthread_mutex_unlock(&a->lock);
}

int host_vm_sweep(struct host_agent *a)
{
	int freed = 0;
	for (struct host_vm **p = &a->vms; *p;) {
		struct host_vm *v = *p;
		if (!v->removed || v->users > 0) {
			p = &v->next;
			continue;
		}
		*p = v->next;
		json_decref(v->record);
		json_decref(v->monitor);
		free(v);
		freed++;
	}
	return freed;
}

int host_vm_records(struct host_agent *a)
{
	int n = 0;
	for (struct host_vm *v = a->vms; v; v = v->next)
		n++;
	return n;
}

static void path_in(struct host_vm *v, const char *file, char *out, size_t len)
{
	snprintf(out, len, "%s/%s", v->dir, file);
}

int host_vm_save(struct host_vm *v)
{
	char path[PATH_MAX], tmp[PATH_MAX + 8];
	path_in(v, "vm.json", path, sizeof(path));
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	if (json_dump_file(v->record, tmp, JSON_INDENT(2) | JSON_SORT_KEYS))
		return -EIO;
	return rename(tmp, path) ? -errno : 0;
}

static struct host_vm *vm_alloc(struct host_agent *a, const char *name)
{
	struct host_vm *v = calloc(1, sizeof(*v));
	if (!v)
		return NULL;
	snprintf(v->name, sizeof(v->name), "%s", name);
	snprintf(v->dir, sizeof(v->dir), "%s/vms/%s", a->data_dir, name);
	snprintf(v->api, sizeof(v->api), "%s/api.sock", v->dir);
	snprintf(v->state, sizeof(v->state), "off");
	v->next = a->vms;
	a->vms = v;
	return v;
}

struct host_vm *host_vm_new(struct host_agent *a, const char *name, json_t *record, char *err, size_t errlen)
{
	struct vm_config cfg;
	struct host_vm *v;

	if (!name_valid(name, err, errlen))
		return NULL;
	if (host_vm_find(a, name)) {
		errf(err, errlen, "a VM named %s already exists on this host", name);
		return NULL;
	}
	if (vm_config_from_json(json_object_get(record, "config"), &cfg, err, errlen))
		return NULL;
	if (strlen(a->data_dir) + strlen(name) + 20 > 107) {
		errf(err, errlen, "VM name '%s' is too long for this host's socket paths (data directory %s)", name, a->data_dir);
		return NULL;
	}
	v = vm_alloc(a, name);
	if (!v) {
		errf(err, errlen, "out of memory");
		return NULL;
	}
	v->record = json_incref(record);
	if (mkdir(v->dir, 0700) && errno != EEXIST) {
		errf(err, errlen, "cannot create %s: %s", v->dir, strerror(errno));
		v->removed = true;
		return NULL;
	}
	if (host_vm_save(v)) {
		errf(err, errlen, "cannot write %s/vm.json", v->dir);
		v->removed = true;
		return NULL;
	}
	return v;
}

static void remove_dir(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	char p[PATH_MAX + 300];
	if (!d)
		return;
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
			snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
			unlink(p);
		}
	closedir(d);
	rmdir(dir);
}

void host_vm_forget(struct host_agent *a, struct host_vm *v)
{
	glide_log("host", "forgetting VM %s (%s)", v->name, v->state);
	if (json_object_get(v->record, "incoming")) {
		/* keep a failed arrival's logs for diagnosis (ignored at load: starts with '.') */
		char keep[1400];
		snprintf(keep, sizeof(keep), "%s/vms/.failed-%s-%llu", a->data_dir, v->name, (unsigned long long)(realtime_ns() / 1000000));
		if (rename(v->dir, keep) == 0) {
			v->removed = true;
			return;
		}
	}
	remove_dir(v->dir);
	v->removed = true;
	v->pid = 0;
}

bool host_pid_is_monitor(pid_t pid)
{
	char path[64], buf[256];
	ssize_t n;
	int fd;

	if (pid <= 0 || kill(pid, 0))
		return false;
	snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return false;
	buf[n] = 0;
	/* argv[1] == "vm", argv[2] == "run" */
	size_t l0 = strnlen(buf, (size_t)n);
	if (l0 + 7 > (size_t)n)
		return false;
	return !memcmp(buf + l0 + 1, "vm\0run\0", 7);
}

static void write_pid(struct host_vm *v)
{
	char path[PATH_MAX + 8], text[32];
	path_in(v, "pid", path, sizeof(path));
	FILE *f = fopen(path, "w");
	if (f) {
		snprintf(text, sizeof(text), "%d\n", (int)v->pid);
		fputs(text, f);
		fclose(f);
	}
}

static void clear_pid(struct host_vm *v)
{
	char path[PATH_MAX + 8];
	path_in(v, "pid", path, sizeof(path));
	unlink(path);
	v->pid = 0;
}

/* The monitor's command line, first in its log (as libvirt keeps QEMU's):
 * which --nic and --disk a VM got on this host. It names the key file,
 * never the key. */
static void log_command(const char *log, char *const argv[])
{
	FILE *f = fopen(log, "ae");
	if (!f)
		return;
	fprintf(f, "host agent starts:");
	for (int i = 0; argv[i]; i++)
		fprintf(f, " %s", argv[i]);
	fputc('\n', f);
	fclose(f);
}

int host_vm_spawn(struct host_agent *a, struct host_vm *v, char *const extra[], char *err, size_t errlen)
{
	char log[PATH_MAX + 16], serial[PATH_MAX + 16], out[PATH_MAX + 16];
	char *argv[64];
	int n = 0, ofd;
	pid_t pid;

	path_in(v, "monitor.log", log, sizeof(log));
	path_in(v, "serial.log", serial, sizeof(serial));
	path_in(v, "monitor.out", out, sizeof(out));
	argv[n++] = a->self_exe;
	argv[n++] = "vm";
	argv[n++] = "run";
	argv[n++] = "--api";
	argv[n++] = v->api;
	argv[n++] = "--log";
	argv[n++] = log;
	argv[n++] = "--serial";
	argv[n++] = serial;
	for (int i = 0; extra[i] && n < 62; i++)
		argv[n++] = extra[i];
	argv[n] = NULL;
	log_command(log, argv);
	ofd = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (ofd < 0) {
		errf(err, errlen, "cannot create %s: %s", out, strerror(errno));
		return -errno;
	}
	unlink(v->api);
	pid = fork();
	if (pid < 0) {
		close(ofd);
		errf(err, errlen, "cannot start a VM monitor: %s", strerror(errno));
		return -errno;
	}
	if (pid == 0) {
		int nul = open("/dev/null", O_RDONLY);
		sigset_t none;
		setsid();
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		signal(SIGCHLD, SIG_DFL);
		signal(SIGPIPE, SIG_DFL);
		dup2(nul, 0);
		dup2(ofd, 1);
		dup2(ofd, 2);
		execv(a->self_exe, argv);
		_exit(127);
	}
	close(ofd);
	v->pid = pid;
	v->last_error[0] = 0;
	write_pid(v);
	return 0;
}

/* Last non-empty line of monitor.out: the monitor's one-line error. */
static void monitor_error(struct host_vm *v, char *out, size_t len)
{
	char path[PATH_MAX + 16];
	int rc;
	size_t n;
	path_in(v, "monitor.out", path, sizeof(path));
	char *text = read_file_limited(path, 1 << 16, &n, &rc);
	out[0] = 0;
	if (!text)
		return;
	while (n && (text[n - 1] == '\n' || text[n - 1] == ' '))
		text[--n] = 0;
	char *last = strrchr(text, '\n');
	snprintf(out, len, "%s", last ? last + 1 : text);
	free(text);
}

void host_vm_start_failed(struct host_vm *v, pid_t pid, const char *why)
{
	snprintf(v->last_error, sizeof(v->last_error), "%s", why);
	if (v->removed || v->pid != pid || kill(pid, 0) == 0)
		return; /* still running (it did not answer in time): the supervisor follows it */
	clear_pid(v);
	snprintf(v->state, sizeof(v->state), "off");
	json_decref(v->monitor);
	v->monitor = NULL;
}

int host_vm_wait_api(struct host_vm *v, pid_t pid, int timeout_ms, char *err, size_t errlen)
{
	struct http_client_opts co = { .target = v->api, .timeout_ms = 2000 };
	uint64_t end = now_ns() + (uint64_t)timeout_ms * 1000000;
	char e[256];

	while (now_ns() < end) {
		json_t *r = NULL;
		long st;
		if (access(v->api, F_OK) == 0 && http_call(&co, "GET", "/v1/vm", NULL, &r, &st, e, sizeof(e)) == 0 &&
		    st == 200) {
			json_decref(r);
			return 0;
		}
		json_decref(r);
		if (kill(pid, 0)) {
			char why[256];
			monitor_error(v, why, sizeof(why));
			errf(err, errlen, "the VM monitor exited: %s", why[0] ? why : "no message");
			return -ECHILD;
		}
		sleep_ns(20000000);
	}
	errf(err, errlen, "the VM monitor did not answer on %s within %d ms", v->api, timeout_ms);
	return -ETIMEDOUT;
}

int host_vm_monitor_state(const char *api, char *state, size_t len, char *err, size_t errlen)
{
	struct http_client_opts co = { .target = api, .timeout_ms = 2000 };
	json_t *r = NULL;
	long st;
	char e[256];
	int rc = http_call(&co, "GET", "/v1/vm", NULL, &r, &st, e, sizeof(e));
	const char *s = json_string_value(json_object_get(r, "state"));
	if (!rc && st == 200 && s) {
		snprintf(state, len, "%s", !strcmp(s, "masked") ? "incoming" : s);
	} else {
		errf(err, errlen, "its monitor does not answer: %s", rc || st != 200 ? e : "no state");
		rc = rc ? rc : -EPROTO;
	}
	json_decref(r);
	return rc;
}

static void boot_args(json_t *boot, char **args, int *n, char *err, size_t errlen)
{
	const char *kind = json_string_value(json_object_get(boot, "kind"));
	const char *path = json_string_value(json_object_get(boot, "path"));
	if (!kind || !path)
		return;
	if (!strcmp(kind, "boot") || !strcmp(kind, "elf") || !strcmp(kind, "kernel")) {
		args[(*n)++] = !strcmp(kind, "boot") ? "--boot" : !strcmp(kind, "elf") ? "--elf" : "--kernel";
		args[(*n)++] = (char *)path;
	}
	const char *initrd = json_string_value(json_object_get(boot, "initrd"));
	const char *cmdline = json_string_value(json_object_get(boot, "cmdline"));
	if (initrd) {
		args[(*n)++] = "--initrd";
		args[(*n)++] = (char *)initrd;
	}
	if (cmdline) {
		args[(*n)++] = "--cmdline";
		args[(*n)++] = (char *)cmdline;
	}
}

/* The monitor options of v's NICs and disks on this host (*out malloc'd):
 * 0, or -errno with err set when a network is missing here or a disk cannot
 * be seen, before anything is started. */
static int attach_args_of(struct host_agent *a, struct host_vm *v, struct attach_args **out, char *err, size_t errlen)
{
	struct attach at;
	char why[512];
	struct stat st;
	int rc;

	*out = NULL;
	if (attach_parse(json_object_get(v->record, "nics"), json_object_get(v->record, "disks"), true, &at, why, sizeof(why))) {
		errf(err, errlen, "VM %s has invalid NICs or disks in its record: %s", v->name, why);
		return -EINVAL;
	}
	for (int i = 0; i < at.ndisks; i++)
		if (stat(at.disks[i].path, &st)) {
			rc = -errno;
			errf(err, errlen, "disk %d of VM %s: host %s cannot see %s: %s", i, v->name, a->name, at.disks[i].path,
			     strerror(errno));
			return rc;
		}
	*out = malloc(sizeof(**out));
	if (!*out) {
		errf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	rc = attach_monitor_args(&at, a->networks, a->nnetworks, a->name, *out, err, errlen);
	if (rc) {
		free(*out);
		*out = NULL;
	}
	return rc;
}

int host_vm_attach_check(struct host_agent *a, const struct attach *at, const char *self, char *err, size_t errlen)
{
	for (int i = 0; i < at->nnics; i++) {
		if (attach_network_find(a->networks, a->nnetworks, at->nics[i].network))
			continue;
		char names[512] = "";
		size_t used = 0;
		for (int k = 0; k < a->nnetworks && used < sizeof(names); k++)
			used += (size_t)snprintf(names + used, sizeof(names) - used, "%s%s", k ? ", " : "", a->networks[k].name);
		errf(err, errlen, "host %s lacks network '%s' used by NIC %d (its networks: %s)", a->name, at->nics[i].network, i,
		     a->nnetworks ? names : "none; start the agent with --network NAME=bridge:BR");
		return -ENOENT;
	}
	for (struct host_vm *v = a->vms; v; v = v->next) {
		struct attach other;
		if (v->removed || (self && !strcmp(v->name, self)) ||
		    attach_parse(json_object_get(v->record, "nics"), NULL, false, &other, NULL, 0))
			continue;
		for (int i = 0; i < at->nnics; i++)
			for (int k = 0; k < other.nnics; k++)
				if (at->nics[i].has_mac && other.nics[k].has_mac && !memcmp(at->nics[i].mac, other.nics[k].mac, 6)) {
					char m[ATTACH_MAC_LEN + 1];
					errf(err, errlen, "MAC %s of NIC %d is already used by VM %s (NIC %d) on host %s",
					     attach_mac_text(at->nics[i].mac, m), i, v->name, k, a->name);
					return -EEXIST;
				}
	}
	return 0;
}

int host_vm_start(struct host_agent *a, struct host_vm *v, char *err, size_t errlen)
{
	struct vm_config cfg;
	struct attach_args *dev;
	char mem[32], vcpus[16], mask[256];
	char *args[64];
	int n = 0;
	bool masked = false;

	if (v->pid) {
		errf(err, errlen, "VM %s already has a running monitor (pid %d)", v->name, (int)v->pid);
		return -EBUSY;
	}
	if (v->copying) {
		errf(err, errlen, "VM %s's files are being copied to another host; it starts when the copy ended", v->name);
		return -EBUSY;
	}
	if (vm_config_from_json(json_object_get(v->record, "config"), &cfg, err, errlen))
		return -EINVAL;
	json_t *boot = json_object_get(v->record, "boot");
	if (!json_is_string(json_object_get(boot, "path"))) {
		errf(err, errlen, "VM %s has no boot source (give --boot, --elf or --kernel when creating it)", v->name);
		return -EINVAL;
	}
	uint64_t free_b = host_memory_free(a);
	if (cfg.memory_bytes > free_b) {
		char need[32], have[32];
		errf(err, errlen, "host %s has %s free for VMs, VM %s needs %s", a->name, format_size(free_b, have, sizeof(have)),
		     v->name, format_size(cfg.memory_bytes, need, sizeof(need)));
		return -ENOMEM;
	}
	if (host_hardware_check(a, v->name, json_object_get(v->record, "hardware"), err, errlen))
		return -ENOSPC;
	int rc = attach_args_of(a, v, &dev, err, errlen);
	if (rc)
		return rc;
	const char *resume = host_vm_suspended(v);
	args[n++] = "--name";
	args[n++] = v->name;
	if (resume) { /* the snapshot holds the configuration, memory and devices' state */
		args[n++] = "--restore";
		args[n++] = (char *)resume;
	} else {
		snprintf(mem, sizeof(mem), "%llu", (unsigned long long)cfg.memory_bytes);
		snprintf(vcpus, sizeof(vcpus), "%d", cfg.vcpus);
		for (int r = 0; r < EVC_REGS; r++)
			masked |= cfg.cpuid_mask[r] != 0xffffffffu;
		evc_regs_to_arg(cfg.cpuid_mask, mask, sizeof(mask));
		args[n++] = "--memory";
		args[n++] = mem;
		args[n++] = "--vcpus";
		args[n++] = vcpus;
		if (masked) {
			args[n++] = "--cpuid-mask";
			args[n++] = mask;
		}
		boot_args(boot, args, &n, err, errlen);
	}
	for (int i = 0; i < dev->argc; i++)
		args[n++] = dev->argv[i];
	args[n] = NULL;
	rc = host_vm_spawn(a, v, args, err, errlen);
	free(dev);
	if (!rc)
		snprintf(v->state, sizeof(v->state), "starting");
	return rc;
}

static bool wait_exit(pid_t pid, int ms)
{
	for (int i = 0; i < ms / 20; i++) {
		if (kill(pid, 0))
			return true;
		sleep_ns(20000000);
	}
	return kill(pid, 0) != 0;
}

/* Waits (the lock released meanwhile) for a monitor that was asked to
 * exit, then SIGTERM, then SIGKILL; the VM is off afterwards unless another
 * monitor took its place. Called and returns with a->lock held. */
static void monitor_ended(struct host_agent *a, struct host_vm *v, pid_t pid, const char *why)
{
	pthread_mutex_unlock(&a->lock);
	if (!wait_exit(pid, HOST_MONITOR_STOP_TIMEOUT_MS)) {
		glide_log("host", "VM %s: monitor %d %s; sending SIGTERM", v->name, (int)pid, why);
		kill(pid, SIGTERM);
		if (!wait_exit(pid, 3000)) {
			kill(pid, SIGKILL);
			wait_exit(pid, 2000);
		}
	}
	pthread_mutex_lock(&a->lock);
	if (v->pid == pid) {
		clear_pid(v);
		snprintf(v->state, sizeof(v->state), "off");
		json_decref(v->monitor);
		v->monitor = NULL;
	}
}

int host_vm_stop(struct host_agent *a, struct host_vm *v, char *err, size_t errlen)
{
	struct http_client_opts co = { .target = v->api, .timeout_ms = 5000 };
	json_t *r = NULL;
	long st;
	char e[256];
	pid_t pid;

	pthread_mutex_lock(&a->lock);
	pid = v->pid;
	if (pid)
		snprintf(v->state, sizeof(v->state), "stopping");
	pthread_mutex_unlock(&a->lock);
	if (!pid)
		return 0;
	http_call(&co, "POST", "/v1/vm/shutdown", NULL, &r, &st, e, sizeof(e));
	json_decref(r);
	pthread_mutex_lock(&a->lock);
	monitor_ended(a, v, pid, "ignored shutdown");
	pthread_mutex_unlock(&a->lock);
	return 0;
}

/* Suspend: the snapshot goes beside the VM's first disk when a datastore
 * of this host holds it (DATASTORE/NAME.suspend), else into the VM's
 * directory. */
static void suspend_path(struct host_agent *a, struct host_vm *v, char *out, size_t len)
{
	const char *disk = json_string_value(json_object_get(json_array_get(json_object_get(v->record, "disks"), 0), "path"));
	char real[PATH_MAX];
	const struct host_datastore *ds = disk && realpath(disk, real) ? host_datastore_holding(a, real) : NULL;
	if (ds && strlen(ds->path) + strlen(v->name) + 10 < len)
		snprintf(out, len, "%.*s/%s.suspend", (int)(len - VM_NAME_MAX - 10), ds->path, v->name);
	else
		path_in(v, "suspend.snap", out, len);
}

const char *host_vm_suspended(struct host_vm *v)
{
	return json_string_value(json_object_get(json_object_get(v->record, "suspended"), "path"));
}

void host_vm_suspend_drop(struct host_vm *v, const char *why)
{
	const char *path = host_vm_suspended(v);
	if (!path)
		return;
	if (unlink(path) && errno != ENOENT)
		glide_log("host", "VM %s: cannot remove its suspended state %s: %s", v->name, path, strerror(errno));
	else
		glide_log("host", "VM %s: suspended state %s removed (%s)", v->name, path, why);
	json_object_del(v->record, "suspended");
	host_vm_save(v);
}

int host_vm_suspend(struct host_agent *a, struct host_vm *v, json_t **resp)
{
	char path[PATH_MAX], api[sizeof(v->api)], prior[16], err[512];
	pthread_mutex_lock(&a->lock);
	if (!v->pid || v->migrating || json_object_get(v->record, "incoming") ||
	    (strcmp(v->state, "running") && strcmp(v->state, "paused"))) {
		*resp = http_error("VM %s is %s on host %s; only a running or paused VM can be suspended", v->name,
				   v->migrating ? "migrating" : v->state, a->name);
		pthread_mutex_unlock(&a->lock);
		return 409;
	}
	pid_t pid = v->pid;
	suspend_path(a, v, path, sizeof(path));
	snprintf(api, sizeof(api), "%s", v->api);
	snprintf(prior, sizeof(prior), "%s", v->state);
	snprintf(v->state, sizeof(v->state), "stopping"); /* the supervisor leaves it alone meanwhile */
	pthread_mutex_unlock(&a->lock);

	struct http_client_opts co = { .target = api, .timeout_ms = 120000 };
	json_t *body = json_pack("{s:s, s:b}", "path", path, "exit", 1), *r = NULL;
	long status = 0;
	int rc = http_call(&co, "POST", "/v1/vm/snapshot", body, &r, &status, err, sizeof(err));
	json_decref(body);
	if (rc || status != 200) {
		pthread_mutex_lock(&a->lock);
		if (v->pid == pid && !strcmp(v->state, "stopping"))
			snprintf(v->state, sizeof(v->state), "%s", prior);
		pthread_mutex_unlock(&a->lock);
		*resp = http_error("VM %s could not be suspended on host %s: %s; it %s", v->name, a->name,
				   rc ? err : json_string_value(json_object_get(r, "error")) ?: "the monitor refused",
				   rc ? "may still run (its monitor did not answer)" : "keeps running");
		json_decref(r);
		return rc ? 502 : 500;
	}
	pthread_mutex_lock(&a->lock);
	json_object_set_new(v->record, "suspended", json_pack("{s:s, s:I}", "path", path, "at_ms", (json_int_t)(realtime_ns() / 1000000)));
	host_vm_save(v);
	pthread_mutex_unlock(&a->lock);
	pthread_mutex_lock(&a->lock);
	monitor_ended(a, v, pid, "did not exit after its suspend"); /* its state is written: nothing more to lose */
	*resp = host_vm_json(v);
	json_object_set_new(*resp, "suspend", json_pack("{s:s, s:O*, s:O*}", "path", path, "pause_ms", json_object_get(r, "pause_ms"),
						       "write_ms", json_object_get(r, "write_ms")));
	pthread_mutex_unlock(&a->lock);
	json_decref(r);
	glide_log("host", "VM %s suspended to %s", v->name, path);
	return 200;
}

json_t *host_vm_json(struct host_vm *v)
{
	json_t *cfg = json_object_get(v->record, "config");
	const char *state = !v->pid && host_vm_suspended(v) ? "suspended" : v->state;
	json_t *j = json_pack("{s:s, s:s, s:O, s:O, s:O*, s:O*, s:O*, s:O*}", "name", v->name, "state", state,
			      "memory", json_object_get(cfg, "memory"), "vcpus", json_object_get(cfg, "vcpus"),
			      "config", cfg, "boot", json_object_get(v->record, "boot"),
			      "nics", json_object_get(v->record, "nics"), "disks", json_object_get(v->record, "disks"));
	if (!j)
		return json_pack("{s:s, s:s}", "name", v->name, "state", state);
	if (host_vm_suspended(v))
		json_object_set(j, "suspended", json_object_get(v->record, "suspended"));
	if (v->pid) {
		json_object_set_new(j, "pid", json_integer(v->pid));
		json_object_set_new(j, "api", json_string(v->api));
	}
	if (v->monitor) {
		json_object_set(j, "uptime_ms", json_object_get(v->monitor, "uptime_ms"));
		json_object_set(j, "monitor_config", json_object_get(v->monitor, "config"));
	}
	if (json_array_size(json_object_get(v->record, "hardware")))
		json_object_set(j, "hardware", json_object_get(v->record, "hardware"));
	if (v->last_error[0])
		json_object_set_new(j, "last_error", json_string(v->last_error));
	return j;
}

void host_vm_load_all(struct host_agent *a)
{
	char dir[PATH_MAX + 8];
	DIR *d;
	struct dirent *e;

	snprintf(dir, sizeof(dir), "%s/vms", a->data_dir);
	d = opendir(dir);
	if (!d)
		return;
	while ((e = readdir(d))) {
		char p[PATH_MAX * 2];
		json_error_t je;
		int rc;
		if (!name_valid(e->d_name, NULL, 0))
			continue;
		snprintf(p, sizeof(p), "%s/%s/vm.json", dir, e->d_name);
		json_t *rec = json_load_file(p, 0, &je);
		struct host_vm *v = rec ? vm_alloc(a, e->d_name) : NULL;
		if (!v) {
			glide_log("host", "ignoring %s/%s: no readable vm.json", dir, e->d_name);
			json_decref(rec);
			continue;
		}
		v->record = rec;
		snprintf(p, sizeof(p), "%s/%s/pid", dir, e->d_name);
		char *pidtext = read_file_limited(p, 64, NULL, &rc);
		pid_t pid = pidtext ? (pid_t)atoi(pidtext) : 0;
		free(pidtext);
		char why[256];
		char now[16];
		if (pid && host_pid_is_monitor(pid) && host_vm_wait_api(v, pid, 3000, why, sizeof(why)) == 0) {
			v->pid = pid;
			/* an incoming monitor may still wait masked: say what it does */
			bool masked = json_is_true(json_object_get(rec, "incoming")) &&
				      (host_vm_monitor_state(v->api, now, sizeof(now), why, sizeof(why)) || !strcmp(now, "incoming"));
			snprintf(v->state, sizeof(v->state), "%s", masked ? "incoming" : "running");
			glide_log("host", "re-adopted VM %s (monitor pid %d)", v->name, (int)pid);
		} else if (json_is_true(json_object_get(rec, "incoming"))) {
			/* an incoming VM whose monitor is gone never arrived here */
			host_vm_forget(a, v);
		} else {
			if (pid)
				clear_pid(v);
			glide_log("host", "VM %s is powered off", v->name);
		}
	}
	closedir(d);
}

/* One supervision pass: poll every monitor's API, notice exits. */
/* A disk that moved while its monitor ran (move-disk): the monitor names the
 * new file; the record takes it, and the old file, when it lies in one of
 * this host's datastores, is removed (a->lock held). */
static void follow_moved_disks(struct host_agent *a, struct host_vm *v, json_t *st)
{
	json_t *rec = json_object_get(v->record, "disks"), *d;
	bool changed = false;
	size_t i;
	json_array_foreach(json_object_get(st, "disks"), i, d) {
		json_t *r = json_array_get(rec, (size_t)json_integer_value(json_object_get(d, "index")));
		const char *now = json_string_value(json_object_get(d, "path")), *was = json_string_value(json_object_get(r, "path"));
		char old[PATH_MAX], real_old[PATH_MAX], real_now[PATH_MAX];
		if (!now || !was || !strcmp(now, was))
			continue;
		snprintf(old, sizeof(old), "%s", was);
		json_object_set_new(r, "path", json_string(now));
		changed = true;
		glide_log("host", "VM %s: disk %lld moved from %s to %s", v->name, json_integer_value(json_object_get(d, "index")), old, now);
		if (realpath(old, real_old) && realpath(now, real_now) && strcmp(real_old, real_now) &&
		    host_datastore_holding(a, real_old)) {
			if (unlink(real_old))
				glide_log("host", "VM %s: cannot remove the old disk file %s: %s", v->name, real_old, strerror(errno));
			else
				glide_log("host", "VM %s: removed the old disk file %s", v->name, real_old);
		}
	}
	if (changed)
		host_vm_save(v);
}

static void supervise_once(struct host_agent *a)
{
	struct item { struct host_vm *v; pid_t pid; } items[256];
	int n = 0;

	pthread_mutex_lock(&a->lock);
	host_vm_sweep(a);
	for (struct host_vm *v = a->vms; v && n < 256; v = v->next)
		if (!v->removed && v->pid) {
			host_vm_hold(v);
			items[n++] = (struct item){ v, v->pid };
		}
	pthread_mutex_unlock(&a->lock);
	for (int i = 0; i < n; i++) {
		struct host_vm *v = items[i].v;
		bool alive = kill(items[i].pid, 0) == 0;
		uint64_t run_ns = 0, ready_ns = 0;
		int vcpus = alive ? demand_read(items[i].pid, &run_ns, &ready_ns) : -1;
		uint64_t read_at = now_ns();
		json_t *st = NULL;
		pthread_mutex_lock(&a->lock);
		/* A monitor in the middle of a migration is left alone (liveness only):
		 * its API belongs to the migration until it ends. An arriving VM is
		 * confirmed by the controller (POST .../arrived). */
		bool incoming = json_object_get(v->record, "incoming") != NULL || v->migrating;
		pthread_mutex_unlock(&a->lock);
		if (alive && !incoming) {
			struct http_client_opts co = { .target = v->api, .timeout_ms = 2000 };
			long status;
			char e[256];
			if (http_call(&co, "GET", "/v1/vm", NULL, &st, &status, e, sizeof(e)) || status != 200) {
				json_decref(st);
				st = NULL;
			}
		}
		pthread_mutex_lock(&a->lock);
		v->users--; /* held until here: the lock is kept to the end of this VM's turn */
		if (v->removed || v->pid != items[i].pid) {
			pthread_mutex_unlock(&a->lock);
			json_decref(st);
			continue;
		}
		if (alive && vcpus > 0)
			demand_update(&v->demand, vcpus, run_ns, ready_ns, read_at);
		if (alive && st) {
			const char *s = json_string_value(json_object_get(st, "state"));
			if (s && strcmp(v->state, "stopping")) {
				snprintf(v->state, sizeof(v->state), "%s", !strcmp(s, "masked") ? "incoming" : s);
				if (json_object_get(v->record, "incoming") && strcmp(v->state, "incoming")) {
					/* arrived: from now on it is an ordinary VM of this host */
					json_object_del(v->record, "incoming");
					json_object_set(v->record, "config", json_object_get(st, "config"));
					host_vm_save(v);
					glide_log("host", "VM %s arrived and runs here", v->name);
				}
			}
			json_decref(v->monitor);
			v->monitor = st;
			follow_moved_disks(a, v, st);
		} else if (!alive) {
			json_decref(st);
			if (!strcmp(v->state, "migrated") || json_object_get(v->record, "incoming")) {
				v->pid = 0;
				host_vm_forget(a, v);
			} else {
				char why[256];
				monitor_error(v, why, sizeof(why));
				if (strcmp(v->state, "stopping"))
					snprintf(v->last_error, sizeof(v->last_error), "monitor exited: %s", why);
				glide_log("host", "VM %s: monitor %d exited (%s)", v->name, (int)items[i].pid, why);
				clear_pid(v);
				memset(&v->demand, 0, sizeof(v->demand));
				snprintf(v->state, sizeof(v->state), "off");
				json_decref(v->monitor);
				v->monitor = NULL;
			}
		} else {
			json_decref(st);
		}
		pthread_mutex_unlock(&a->lock);
	}
}

void *host_vm_supervise(void *agent)
{
	struct host_agent *a = agent;
	while (!a->quit) {
		supervise_once(a);
		sleep_ns((uint64_t)HOST_SUPERVISE_INTERVAL_MS * 1000000);
	}
	return NULL;
}

/* A VM of this host that runs or is paused here: its monitor's API socket,
 * its directory, its state and (a copy of) its NICs. 0, or an HTTP status
 * with *resp set (404 no such VM, 409 not running here: "only a running or
 * paused VM has " what). */
static int live_vm(struct host_agent *a, const char *name, const char *what, char api[sizeof(((struct host_vm *)0)->api)],
		   char dir[sizeof(((struct host_vm *)0)->dir)], char state[16], json_t **nics, json_t **resp)
{
	pthread_mutex_lock(&a->lock);
	struct host_vm *v = host_vm_find(a, name);
	if (!v) {
		pthread_mutex_unlock(&a->lock);
		*resp = http_error("no VM named %s on host %s", name, a->name);
		return 404;
	}
	if (!v->pid || json_object_get(v->record, "incoming") || (strcmp(v->state, "running") && strcmp(v->state, "paused"))) {
		*resp = http_error("VM %s is %s on host %s; only a running or paused VM has %s", name, v->state, a->name, what);
		pthread_mutex_unlock(&a->lock);
		return 409;
	}
	snprintf(api, sizeof(v->api), "%s", v->api);
	snprintf(dir, sizeof(v->dir), "%s", v->dir);
	snprintf(state, 16, "%s", v->state);
	if (nics)
		*nics = json_deep_copy(json_object_get(v->record, "nics"));
	pthread_mutex_unlock(&a->lock);
	return 0;
}

int host_vm_netstats(struct host_agent *a, const char *name, json_t **resp)
{
	char api[sizeof(((struct host_vm *)0)->api)], dir[sizeof(((struct host_vm *)0)->dir)], state[16], e[256];
	json_t *nics, *st = NULL;
	long status;
	int rc = live_vm(a, name, "NIC counters", api, dir, state, &nics, resp);
	if (rc)
		return rc;

	struct http_client_opts co = { .target = api, .timeout_ms = 2000 };
	if (http_call(&co, "GET", "/v1/vm", NULL, &st, &status, e, sizeof(e)) || status != 200) {
		json_decref(st);
		json_decref(nics);
		*resp = http_error("cannot read VM %s's counters from its monitor on host %s: %s", name, a->name, e);
		return 502;
	}
	/* the monitor's counters, NIC by NIC, with where each NIC is attached on this host */
	json_t *list = json_array(), *n;
	size_t i;
	json_array_foreach(json_object_get(st, "nics"), i, n) {
		if (!json_is_object(n))
			continue;
		json_t *row = json_deep_copy(n);
		json_t *idx = json_object_get(n, "index");
		json_t *rec = json_is_integer(idx) ? json_array_get(nics, (size_t)json_integer_value(idx)) : NULL;
		const char *net = json_string_value(json_object_get(rec, "network"));
		const struct attach_network *hn = net ? attach_network_find(a->networks, a->nnetworks, net) : NULL;
		json_object_set_new(row, "network", net ? json_string(net) : json_null());
		if (hn) {
			json_object_set_new(row, "bridge", json_string(hn->bridge));
			json_object_set_new(row, "vlan", hn->vlan ? json_integer(hn->vlan) : json_null());
		}
		json_array_append_new(list, row);
	}
	const char *ms = json_string_value(json_object_get(st, "state"));
	*resp = json_pack("{s:s, s:s, s:s, s:o}", "name", name, "host", a->name, "state", ms ? ms : state, "nics", list);
	json_decref(st);
	json_decref(nics);
	return 200;
}

/* Reads a whole file of at most max bytes: 0, -EFBIG, or -errno. */
static int read_small_file(const char *path, size_t max, uint8_t **data, size_t *len)
{
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC), rc = 0;
	*data = NULL;
	*len = 0;
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0)
		rc = -errno;
	else if ((uint64_t)st.st_size > max)
		rc = -EFBIG;
	else if (!(*data = malloc((size_t)st.st_size + 1)))
		rc = -ENOMEM;
	else if (read_full(fd, *data, (size_t)st.st_size))
		rc = -EIO;
	else
		*len = (size_t)st.st_size;
	close(fd);
	if (rc) {
		free(*data);
		*data = NULL;
	}
	return rc;
}

int host_vm_capture(struct host_agent *a, const char *name, json_t *body, json_t **resp)
{
	char api[sizeof(((struct host_vm *)0)->api)], dir[sizeof(((struct host_vm *)0)->dir)], state[16], err[512], e[256];
	char path[sizeof(dir) + 32];
	struct host_capture_request r;
	json_t *mresp = NULL;
	long status = 0;

	if (host_capture_request_parse(body, &r, err, sizeof(err))) {
		*resp = http_error("%s", err);
		return 400;
	}
	int rc = live_vm(a, name, "NICs to capture", api, dir, state, NULL, resp);
	if (rc)
		return rc;
	/* the pcap goes to a file of the VM's directory (the monitor writes it), comes back in the answer */
	snprintf(path, sizeof(path), "%s/capture.XXXXXX", dir);
	int fd = mkstemp(path);
	if (fd < 0) {
		*resp = http_error("cannot create a capture file in %s: %s", dir, strerror(errno));
		return 500;
	}
	close(fd);
	struct http_client_opts co = { .target = api, .timeout_ms = 5000 };
	json_t *start = json_pack("{s:s, s:i, s:I}", "path", path, "nic", r.nic, "count", (json_int_t)r.count);
	rc = http_call(&co, "POST", "/v1/vm/capture", start, &mresp, &status, e, sizeof(e));
	json_decref(start);
	if (rc || status != 200) {
		unlink(path);
		*resp = http_error("VM %s on host %s: %s", name, a->name, rc ? "its monitor does not answer" : e);
		json_decref(mresp);
		return rc ? 502 : (int)status;
	}
	json_decref(mresp);
	char query[48];
	snprintf(query, sizeof(query), "/v1/vm/capture?nic=%d", r.nic);
	for (uint64_t until = now_ns() + (uint64_t)(r.seconds * 1e9); now_ns() < until;) {
		mresp = NULL;
		if (http_call(&co, "GET", query, NULL, &mresp, &status, e, sizeof(e)) || status != 200 ||
		    !json_is_true(json_object_get(mresp, "active"))) {
			json_decref(mresp);
			break;
		}
		json_decref(mresp);
		sleep_ns(100000000);
	}
	mresp = NULL;
	json_t *stop = json_pack("{s:i}", "nic", r.nic);
	rc = http_call(&co, "POST", "/v1/vm/capture/stop", stop, &mresp, &status, e, sizeof(e));
	json_decref(stop);
	json_int_t frames = json_integer_value(json_object_get(mresp, "written"));
	json_decref(mresp);
	uint8_t *pcap = NULL;
	size_t len = 0;
	int frc = rc || status != 200 ? -EIO : read_small_file(path, HOST_CAPTURE_BYTES_MAX, &pcap, &len);
	unlink(path);
	if (frc) {
		*resp = http_error("VM %s on host %s: the capture could not be read back: %s", name, a->name,
				   frc == -EFBIG ? "larger than 64 MiB (ask for fewer frames)" : rc || status != 200 ? e : strerror(-frc));
		return frc == -EFBIG ? 413 : 502;
	}
	char *b64 = malloc(4 * ((len + 2) / 3) + 1);
	if (!b64) {
		free(pcap);
		*resp = http_error("out of memory");
		return 500;
	}
	EVP_EncodeBlock((unsigned char *)b64, pcap, (int)len);
	free(pcap);
	*resp = json_pack("{s:s, s:s, s:i, s:I, s:I, s:s}", "name", name, "host", a->name, "nic", r.nic, "frames", frames,
			  "bytes", (json_int_t)len, "pcap_base64", b64);
	free(b64);
	glide_log("host", "VM %s: captured %lld frame(s) of NIC %d", name, (long long)frames, r.nic);
	return 200;
}
