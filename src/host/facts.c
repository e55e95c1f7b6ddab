/* Host facts: what the controller needs to place a VM here and to decide
 * whether a VM may migrate here. The CPU part is KVM_GET_SUPPORTED_CPUID
 * reduced to the seven EVC registers (optionally narrowed with
 * `--cpuid-mask`, which simulates an older CPU), the memory part comes from
 * /proc/meminfo minus what this host's VMs are promised. The networks are
 * the agent's --network port groups, the interfaces its addresses per
 * service (management, migration, provisioning). */
#include "host/host.h"
#include "devices/devices.h"
#include "migrate/wire.h"
#include "common/hardware.h"
#include "common/util.h"
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/statvfs.h>
#include <unistd.h>

#define CPUID_ENTRIES_MAX 256

static void read_cpuinfo(struct host_agent *a)
{
	FILE *f = fopen("/proc/cpuinfo", "r");
	char line[512];

	snprintf(a->cpu_vendor, sizeof(a->cpu_vendor), "unknown");
	snprintf(a->cpu_model, sizeof(a->cpu_model), "unknown");
	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		char *colon = strchr(line, ':');
		if (!colon)
			continue;
		char *val = colon + 1;
		while (*val == ' ')
			val++;
		val[strcspn(val, "\n")] = 0;
		if (!strncmp(line, "vendor_id", 9))
			snprintf(a->cpu_vendor, sizeof(a->cpu_vendor), "%s", val);
		else if (!strncmp(line, "model name", 10)) {
			snprintf(a->cpu_model, sizeof(a->cpu_model), "%s", val);
			break;
		}
	}
	fclose(f);
}

int host_facts_probe(struct host_agent *a, char *err, size_t errlen)
{
	struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + CPUID_ENTRIES_MAX * sizeof(struct kvm_cpuid_entry2));
	uint32_t regs[EVC_REGS] = { 0 };
	int fd, rc = 0;

	read_cpuinfo(a);
	if (!c)
		return -ENOMEM;
	fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		rc = -errno;
		errf(err, errlen, "cannot open /dev/kvm: %s (the host agent needs KVM; run as root or join the kvm group)",
		     strerror(errno));
		goto out;
	}
	c->nent = CPUID_ENTRIES_MAX;
	if (ioctl(fd, KVM_GET_SUPPORTED_CPUID, c) < 0) {
		rc = -errno;
		errf(err, errlen, "KVM_GET_SUPPORTED_CPUID failed: %s", strerror(errno));
		close(fd);
		goto out;
	}
	close(fd);
	for (uint32_t i = 0; i < c->nent; i++) {
		struct kvm_cpuid_entry2 *e = &c->entries[i];
		if (e->function == 1) {
			regs[0] = e->ecx;
			regs[1] = e->edx;
		} else if (e->function == 7 && e->index == 0) {
			regs[2] = e->ebx;
			regs[3] = e->ecx;
			regs[4] = e->edx;
		} else if (e->function == 0x80000001) {
			regs[5] = e->ecx;
			regs[6] = e->edx;
		}
	}
	for (int r = 0; r < EVC_REGS; r++)
		a->cpu_regs[r] &= regs[r];
out:
	free(c);
	return rc;
}

static uint64_t meminfo(const char *key)
{
	FILE *f = fopen("/proc/meminfo", "r");
	char line[256];
	size_t n = strlen(key);
	uint64_t kb = 0;

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, key, n) && line[n] == ':') {
			kb = strtoull(line + n + 1, NULL, 10);
			break;
		}
	fclose(f);
	return kb * 1024;
}

/* Memory promised to VMs that have a monitor (running, paused, incoming). Caller holds a->lock. */
static uint64_t committed(struct host_agent *a)
{
	uint64_t sum = 0;
	for (struct host_vm *v = a->vms; v; v = v->next) {
		if (v->removed || !v->pid)
			continue;
		json_t *m = json_object_get(json_object_get(v->record, "config"), "memory");
		sum += json_is_integer(m) ? (uint64_t)json_integer_value(m) : 0;
	}
	return sum;
}

uint64_t host_memory_free(struct host_agent *a)
{
	uint64_t total = a->memory_limit ? a->memory_limit : meminfo("MemTotal");
	uint64_t used = committed(a), avail = meminfo("MemAvailable");
	uint64_t room = total > used ? total - used : 0;
	return MIN(room, avail);
}
/* The VMs that hold assignable devices here (those with a monitor), other
 * than `except`, then `except` with `requests`: n holders in out. */
static size_t hardware_holders(struct host_agent *a, const char *except, json_t *requests, struct hw_holder *out, size_t max)
{
	size_t n = 0;
	for (struct host_vm *v = a->vms; v && n + 1 < max; v = v->next)
		if (!v->removed && v->pid && json_array_size(json_object_get(v->record, "hardware")) &&
		    (!except || strcmp(v->name, except)))
			out[n++] = (struct hw_holder){ v->name, json_object_get(v->record, "hardware") };
	if (except && requests)
		out[n++] = (struct hw_holder){ except, requests };
	return n;
}

#define HOLDERS_MAX 1024

int host_hardware_check(struct host_agent *a, const char *name, json_t *requests, char *err, size_t errlen)
{
	static struct hw_holder holders[HOLDERS_MAX]; /* under a->lock */
	char why[512];

	if (!json_array_size(requests))
		return 0;
	size_t n = hardware_holders(a, name, requests, holders, HOLDERS_MAX);
	if (hw_fit(a->hardware, holders, n, NULL, why, sizeof(why))) {
		errf(err, errlen, "host %s cannot give VM %s its assignable devices: %s (`--device` of the host agent)", a->name, name,
		     why);
		return -ENOSPC;
	}
	return 0;
}

/* The host's assignable devices, each with how many are in use. */
static json_t *hardware_json(struct host_agent *a)
{
	static struct hw_holder holders[HOLDERS_MAX];
	int used[HW_KINDS_MAX] = { 0 };
	char why[512];
	size_t i, n = hardware_holders(a, NULL, NULL, holders, HOLDERS_MAX);
	json_t *out = json_array(), *d;

	if (hw_fit(a->hardware, holders, n, used, why, sizeof(why)))
		glide_log("host", "assignable devices: the VMs holding them do not all fit: %s", why);
	json_array_foreach(a->hardware, i, d) {
		json_t *o = json_deep_copy(d);
		json_object_set_new(o, "in_use", json_integer(i < HW_KINDS_MAX ? used[i] : 0));
		json_array_append_new(out, o);
	}
	return out;
}

/* The devices this host's VMs get: the registered device types. */
static json_t *device_list(void)
{
	const struct device_type *t[DEVICE_TYPES_MAX];
	int n = device_types(t, DEVICE_TYPES_MAX);
	json_t *list = json_array();
	for (int i = 0; i < n; i++)
		json_array_append_new(list, json_string(t[i]->name));
	return list;
}


static json_t *service_json(struct host_agent *a, const char *service)
{
	const char(*addrs)[64];
	json_t *list = json_array();
	for (int i = 0, n = host_service_addresses(a, service, &addrs); i < n; i++)
		json_array_append_new(list, json_string(addrs[i]));
	return list;
}

json_t *host_datastore_json(const struct host_datastore *d)
{
	struct statvfs sv;
	json_t *j = json_pack("{s:s, s:s}", "name", d->name, "path", d->path);
	if (statvfs(d->path, &sv)) {
		json_object_set_new(j, "error", json_string(strerror(errno)));
		return j;
	}
	json_object_set_new(j, "total", json_integer((json_int_t)((uint64_t)sv.f_blocks * sv.f_frsize)));
	json_object_set_new(j, "free", json_integer((json_int_t)((uint64_t)sv.f_bavail * sv.f_frsize)));
	return j;
}

const struct host_datastore *host_datastore_find(const struct host_agent *a, const char *name)
{
	for (int i = 0; name && i < a->ndatastores; i++)
		if (!strcmp(a->datastores[i].name, name))
			return &a->datastores[i];
	return NULL;
}

const struct host_datastore *host_datastore_holding(const struct host_agent *a, const char *path)
{
	for (int i = 0; path && i < a->ndatastores; i++) {
		size_t n = strlen(a->datastores[i].path);
		if (!strncmp(path, a->datastores[i].path, n) && path[n] == '/' && !strstr(path + n, "/../"))
			return &a->datastores[i];
	}
	return NULL;
}

/* CPUs offered to VMs: --cpus, else the online CPUs. */
static double host_cpus(const struct host_agent *a)
{
	return a->cpus > 0 ? a->cpus : (double)sysconf(_SC_NPROCESSORS_ONLN);
}

static json_t *capacity_json(struct host_agent *a)
{
	return json_pack("{s:f, s:I, s:b, s:b}", "cpus", host_cpus(a),
			 "memory", (json_int_t)(a->memory_limit ? a->memory_limit : meminfo("MemTotal")),
			 "cpus_declared", a->cpus > 0, "memory_declared", a->memory_limit != 0);
}

json_t *host_demand_json(struct host_agent *a)
{
	json_t *vms = json_array();
	double cpu = 0;
	uint64_t mem = 0;
	for (struct host_vm *v = a->vms; v; v = v->next) {
		if (v->removed || !v->pid || json_object_get(v->record, "incoming"))
			continue;
		json_t *m = json_object_get(json_object_get(v->record, "config"), "memory");
		uint64_t size = json_is_integer(m) ? (uint64_t)json_integer_value(m) : 0;
		json_t *j = json_pack("{s:s, s:s, s:i, s:I, s:f, s:f}", "name", v->name, "state", v->state,
				      "vcpus", v->demand.vcpus, "memory", (json_int_t)size,
				      "run_s", v->demand.run_ns / 1e9, "ready_s", v->demand.ready_ns / 1e9);
		/* null until a full window was measured */
		json_object_set_new(j, "cpu_demand", v->demand.valid ? json_real(v->demand.cpus) : json_null());
		json_object_set_new(j, "ready_pct", v->demand.valid ? json_real(100 * v->demand.ready_frac) : json_null());
		json_array_append_new(vms, j);
		cpu += v->demand.valid ? v->demand.cpus : 0;
		mem += size;
	}
	return json_pack("{s:s, s:o, s:i, s:f, s:I, s:o}", "host", a->name, "capacity", capacity_json(a),
			 "window_ms", HOST_DEMAND_WINDOW_MS, "cpu_demand", cpu, "memory_demand", (json_int_t)mem, "vms", vms);
}

json_t *host_facts_json(struct host_agent *a)
{
	const struct evc_level *max = evc_host_max_level(a->cpu_regs);
	json_t *levels = json_array(), *addrs = json_array(), *vms = json_array(), *nets = json_array(), *stores = json_array();
	uint64_t total = meminfo("MemTotal");
	int running = 0, migrating = 0;

	for (int i = 0; evc_level_at(i); i++)
		if (evc_host_meets(a->cpu_regs, evc_level_at(i)->mask))
			json_array_append_new(levels, json_string(evc_level_at(i)->name));
	for (int i = 0; i < a->nmigration_hosts; i++)
		json_array_append_new(addrs, json_string(a->migration_hosts[i]));
	for (int i = 0; i < a->nnetworks; i++)
		json_array_append_new(nets, attach_network_json(&a->networks[i]));
	for (int i = 0; i < a->ndatastores; i++)
		json_array_append_new(stores, host_datastore_json(&a->datastores[i]));
	for (struct host_vm *v = a->vms; v; v = v->next) {
		if (v->removed)
			continue;
		json_array_append_new(vms, host_vm_json(v));
		running += v->pid && strcmp(v->state, "incoming") != 0;
		migrating += !strcmp(v->state, "incoming");
	}
	json_t *f = json_pack("{s:s, s:i, s:i, s:{s:s, s:s, s:i, s:o, s:o, s:s?, s:o}, s:{s:I, s:I, s:I, s:I, s:I},"
			 " s:o, s:i, s:o, s:o, s:o, s:o, s:i, s:i, s:{s:o, s:o, s:o}, s:i}",
			 "name", a->name, "api_version", HOST_API_VERSION, "migration_protocol", WIRE_PROTOCOL_VERSION,
			 "cpu", "vendor", a->cpu_vendor, "model", a->cpu_model, "count", (int)sysconf(_SC_NPROCESSORS_ONLN),
			 "cpuid", evc_regs_to_json(a->cpu_regs), "features", evc_feature_list(a->cpu_regs),
			 "evc_max_level", max ? max->name : NULL, "evc_levels", levels,
			 "memory", "total", (json_int_t)total, "available", (json_int_t)meminfo("MemAvailable"),
			 "for_vms", (json_int_t)(a->memory_limit ? a->memory_limit : total),
			 "committed", (json_int_t)committed(a), "free", (json_int_t)host_memory_free(a),
			 "migration_addresses", addrs, "migration_streams_max", WIRE_MAX_STREAMS,
			 "devices", device_list(), "networks", nets, "datastores", stores, "vms", vms,
			 "vms_running", running, "migrations_incoming", migrating,
			 "interfaces", "management", service_json(a, "management"), "migration", service_json(a, "migration"),
			 "provisioning", service_json(a, "provisioning"),
			 "vm_records", host_vm_records(a)); /* in memory, forgotten ones until the supervisor frees them */
	json_object_set_new(f, "capacity", capacity_json(a));
	json_object_set_new(f, "hardware", hardware_json(a));
	return f;
}
