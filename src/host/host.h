/* The host agent (hostd role): one daemon per host that runs VM monitor
 * processes, keeps their configuration on disk, reports host facts and
 * carries out its half of a migration spec. Internal interfaces shared by
 * agent.c (daemon and API), facts.c, vms.c and migration.c. */
#ifndef GLIDE_HOST_HOST_H
#define GLIDE_HOST_HOST_H
#include <jansson.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include "host/netcheck.h"
#include <stdint.h>
#include <sys/types.h>
#include "host/attach.h"
#include "host/demand.h"
#include "vmm/evc.h"
#include "vmm/vm.h"

#define HOST_SUPERVISE_INTERVAL_MS 300
#define HOST_MONITOR_START_TIMEOUT_MS 20000
#define HOST_MONITOR_STOP_TIMEOUT_MS 10000
#define HOST_API_VERSION 1
#define HOST_DATASTORES_MAX 8

/* A directory this host offers for VM files (--datastore NAME=DIR): disks
 * copied here by a shared-nothing migration, and the files of VMs whose
 * disks lie in it are this host's to remove once the VM moved away. */
struct host_datastore {
	char name[64];
	char path[PATH_MAX]; /* absolute, symlinks resolved */
};

/* One VM this host knows: powered off (configuration only) or with a monitor. */
struct host_vm {
	char name[VM_NAME_MAX];
	char dir[1200];            /* DATA/vms/NAME */
	char api[1300];            /* DATA/vms/NAME/api.sock: the monitor's API socket */
	json_t *record;            /* {"config": vm_config, "boot": {...}, "devices": [...], "nics": [...],
	                            *  "disks": [...]} as kept in vm.json (nics, disks: attach.h) */
	pid_t pid;                 /* monitor process, 0 when none */
	char state[16];            /* off, starting, running, paused, incoming, migrated, stopping */
	json_t *monitor;           /* last GET /v1/vm answer (NULL when none) */
	char last_error[600];
	bool removed;              /* forgotten; freed by the supervisor once no request uses it */
	int users;                 /* requests (and the supervisor) using it with a->lock released */
	bool migrating;            /* an outgoing migration runs: its monitor is not polled */
	bool copying;              /* its files are being sent (copy.c): it does not start meanwhile */
	struct vm_demand demand;   /* CPU demand of its monitor's vCPU threads (demand.c), kept by the supervisor */
	struct host_vm *next;
};

struct host_agent {
	char data_dir[1024];
	char name[64];
	char listen[128];
	char migration_hosts[8][64]; /* addresses the incoming monitors listen on */
	int nmigration_hosts;
	/* interfaces tagged by service: management (the host part of --listen),
	 * migration (the above) and provisioning (cold moves, disk copies) */
	char management_hosts[1][64];
	int nmanagement_hosts;
	char provisioning_hosts[8][64];
	int nprovisioning_hosts;
	uint32_t cpu_regs[EVC_REGS]; /* KVM_GET_SUPPORTED_CPUID, narrowed by --cpuid-mask */
	char cpu_vendor[32], cpu_model[128];
	uint64_t memory_limit;       /* bytes offered to VMs (0: all of MemTotal) */
	double cpus;                 /* CPUs offered to VMs (--cpus; 0: the online CPUs) */
	struct attach_network networks[ATTACH_NETWORKS_MAX]; /* --network: fixed once the agent serves */
	int nnetworks;
	struct host_datastore datastores[HOST_DATASTORES_MAX]; /* --datastore: fixed once the agent serves */
	int ndatastores;
	json_t *hardware;            /* --device: assignable devices by attributes (hardware.h), an array */
	char self_exe[PATH_MAX];
	pthread_mutex_t lock;        /* guards the VM list and the copies */
	struct host_vm *vms;
	struct copy_job *copies;     /* files being sent or received (copy.c) */
	volatile bool quit;
};

/* facts.c */
int host_facts_probe(struct host_agent *a, char *err, size_t errlen);
json_t *host_facts_json(struct host_agent *a);
/* GET /v1/demand (caller holds a->lock): capacity and every running VM's
 * demand (demand.c), for DRS. */
json_t *host_demand_json(struct host_agent *a);
uint64_t host_memory_free(struct host_agent *a);
/* Whether VM `name` may hold the assignable devices it asks for (requests,
 * NULL: none) here, beside the VMs that hold theirs (every VM with a
 * monitor, incoming ones included): 0, or -ENOSPC with err naming the
 * device that is missing or in use. Caller holds a->lock. */
int host_hardware_check(struct host_agent *a, const char *name, json_t *requests, char *err, size_t errlen);
/* {name, path, total, free} of a datastore, sizes in bytes (statvfs, now). */
json_t *host_datastore_json(const struct host_datastore *d);
/* The datastore named name, or NULL. */
const struct host_datastore *host_datastore_find(const struct host_agent *a, const char *name);
/* The datastore whose directory holds path (directly or below), or NULL. */
const struct host_datastore *host_datastore_holding(const struct host_agent *a, const char *path);

/* vms.c (the caller holds a->lock unless noted) */
struct host_vm *host_vm_find(struct host_agent *a, const char *name);
/* A request that keeps using v after releasing a->lock holds it (lock held)
 * and releases it (lock not held) when done; a forgotten VM's memory goes
 * once nobody holds it (host_vm_sweep, from the supervisor). */
void host_vm_hold(struct host_vm *v);
void host_vm_release(struct host_agent *a, struct host_vm *v);
int host_vm_sweep(struct host_agent *a);   /* frees forgotten, unused VMs; how many */
int host_vm_records(struct host_agent *a); /* VMs in memory, forgotten ones not yet freed included */
struct host_vm *host_vm_new(struct host_agent *a, const char *name, json_t *record, char *err, size_t errlen);
int host_vm_save(struct host_vm *v);
void host_vm_forget(struct host_agent *a, struct host_vm *v); /* deletes its directory */
int host_vm_start(struct host_agent *a, struct host_vm *v, char *err, size_t errlen);
/* Spawns `glide vm run` with extra arguments (NULL-terminated) and records the pid. */
int host_vm_spawn(struct host_agent *a, struct host_vm *v, char *const extra[], char *err, size_t errlen);
int host_vm_stop(struct host_agent *a, struct host_vm *v, char *err, size_t errlen); /* called unlocked */
/* Suspend (called unlocked, v held): the monitor writes the VM's memory and
 * state to a snapshot (beside its first disk in a datastore, else in its
 * directory), flushes its disks and exits; the record keeps "suspended"
 * {path, at_ms} and the VM shows as "suspended". The next start resumes
 * it from there (--restore). An HTTP status with *resp set. */
int host_vm_suspend(struct host_agent *a, struct host_vm *v, json_t **resp);
const char *host_vm_suspended(struct host_vm *v); /* the snapshot's path, or NULL when not suspended */
/* The suspended state is no longer needed (resumed) or wanted (powered off,
 * deleted): removes the file and the record's mark (a->lock held). */
void host_vm_suspend_drop(struct host_vm *v, const char *why);
/* A start whose monitor did not answer: last_error = why, and when the
 * monitor already exited the VM is off again at once (not only at the
 * supervisor's next pass), so that it can be started again. */
void host_vm_start_failed(struct host_vm *v, pid_t pid, const char *why);
/* Waits (unlocked) until the monitor's API answers or the process dies. */
int host_vm_wait_api(struct host_vm *v, pid_t pid, int timeout_ms, char *err, size_t errlen);
void host_vm_load_all(struct host_agent *a);
void *host_vm_supervise(void *agent);
json_t *host_vm_json(struct host_vm *v);
/* Whether a VM with these NICs may live here: every NIC's network exists on
 * this host (else -ENOENT, err names it) and no other VM of this host
 * (other than `self`, NULL for none) has one of its MACs (else -EEXIST). */
int host_vm_attach_check(struct host_agent *a, const struct attach *at, const char *self, char *err, size_t errlen);
/* Fresh NIC counters of one VM's monitor ({name, host, state, nics: [...]},
 * each NIC with its network, bridge and VLAN on this host), called unlocked:
 * an HTTP status with *resp set. */
int host_vm_netstats(struct host_agent *a, const char *name, json_t **resp);
/* POST /v1/vms/NAME/capture: frames of one NIC of a running VM, as a pcap
 * file in the answer ("pcap_base64"), like pktcap-uw on a vSwitch port. */
int host_vm_capture(struct host_agent *a, const char *name, json_t *body, json_t **resp);
/* What a monitor says it does now (GET /v1/vm "state": running, paused,
 * incoming, migrated, ...), read fresh from its API socket (called unlocked).
 * 0, or -errno with err set when it does not answer. */
int host_vm_monitor_state(const char *api, char *state, size_t len, char *err, size_t errlen);
bool host_pid_is_monitor(pid_t pid);

/* copy.c: a powered-off or suspended VM's files between hosts (cold moves) */
#define HOST_COPY_FILES_MAX (VM_MAX_DISKS + 1)
struct copy_job;
int host_copy_receive(struct host_agent *a, json_t *body, json_t **resp);       /* POST /v1/receive */
int host_copy_send(struct host_agent *a, const char *name, json_t *body, json_t **resp); /* POST /v1/vms/NAME/send */
int host_copy_status(struct host_agent *a, const char *name, bool receive, json_t **resp); /* GET of either */
/* DELETE /v1/receive/NAME[?keep=1]: forget a receipt; its files are removed
 * unless keep (only once all arrived, for the VM registered with them). */
int host_copy_forget(struct host_agent *a, const char *name, bool keep, json_t **resp);
/* The receiving end's parser, apart from the socket (fuzzed: fuzz_copy):
 * one FILE_DATA or FILE_END frame for n targets, checked whole before
 * anything is written; FILE_END flushes the file and compares the sender's
 * digest with one of what the file now holds, then marks it ended. 0, or
 * -errno with err set; *moved grows by the data bytes written. */
struct copy_target {
	int fd;
	uint64_t size;
	bool ended;
	const char *path;
};
int copy_receive_frame(struct copy_target *t, int n, uint32_t type, const uint8_t *p, uint32_t len, uint64_t *moved,
		       volatile bool *cancel, char *err, size_t errlen);

/* migration.c */
int host_migration_incoming(struct host_agent *a, json_t *spec, json_t **resp);
int host_migration_start(struct host_agent *a, const char *name, json_t *spec, json_t **resp);
int host_migration_relay(struct host_agent *a, const char *name, const char *method, const char *path, json_t *body,
			 json_t **resp);

/* requests.c: the API's requests, parsed and checked without acting (0, or
 * -EINVAL with err set). JSON members are borrowed from the body. */
#define HOST_KEY_HEX_LEN 64
bool host_key_valid(const char *key); /* a one-time migration key: 64 hex digits */
/* /v1/vms/NAME[/ACTION]: NAME valid, ACTION ("" when none) not empty after
 * a '/' and shorter than alen (else -ENOENT: no such endpoint). */
int host_vm_path_parse(const char *path, char name[VM_NAME_MAX], char *action, size_t alen, char *err, size_t errlen);
struct host_vm_request {          /* POST /v1/vms {name, config, boot, devices, nics, disks, start, suspended} */
	const char *name;
	const char *suspended;        /* {"suspended": {"path": P}}: it arrives suspended, its state in P (a file
	                               * in one of this host's datastores, checked by the caller); NULL: none */
	json_t *config, *boot, *devices; /* boot and devices NULL when absent or null */
	json_t *hardware;             /* assignable devices it asks for (hardware.h), NULL when none */
	struct vm_config cfg;
	struct attach at;             /* NICs (MACs optional) and disks */
	bool start;
};
int host_vm_request_parse(json_t *body, struct host_vm_request *r, char *err, size_t errlen);
struct host_config_request {      /* POST /v1/vms/NAME/config {config, boot, nics, disks, hardware} */
	json_t *config, *boot;        /* boot NULL: unchanged */
	struct vm_config cfg;
	bool have_nics, have_disks;   /* absent: unchanged */
	struct attach at;             /* the new NICs (MACs optional) and disks */
	bool have_hardware;           /* absent: unchanged */
	json_t *hardware;             /* the assignable devices it asks for, NULL: none */
};
int host_config_request_parse(json_t *body, struct host_config_request *r, char *err, size_t errlen);
struct host_incoming_request {    /* POST /v1/incoming {name, config, boot, devices, nics, disks, key, cpuid,
                                   *  datastore, copy_bytes} */
	const char *name, *key;
	json_t *config, *boot, *devices;
	json_t *hardware;             /* assignable devices it asks for (hardware.h), NULL when none */
	struct vm_config cfg;
	struct attach at;             /* the VM's NICs (with their MACs) and disks; they must agree with the
	                               * device shape in config when it has one */
	bool have_cpuid;
	uint32_t cpuid[EVC_REGS];     /* the CPU features the VM sees (when have_cpuid) */
	const char *datastore;        /* NULL: the disks are shared; else every disk arrives as a copy
	                               * (shared-nothing) in this datastore of the destination */
	uint64_t copy_bytes;          /* what the copies take at least (the source files' allocated bytes) */
};
int host_incoming_request_parse(json_t *spec, struct host_incoming_request *r, char *err, size_t errlen);
struct host_receive_request {     /* POST /v1/receive {name, key, datastore, copy_bytes, files: [{kind, size}]} */
	const char *name, *key, *datastore;
	uint64_t copy_bytes;
	int nfiles;
	struct {
		bool suspend;             /* kind "suspend": the VM's suspended state (last, at most one) */
		int disk;                 /* kind "disk": its index (the disks come first, in order) */
		uint64_t size;
	} files[HOST_COPY_FILES_MAX];
};
int host_receive_request_parse(json_t *body, struct host_receive_request *r, char *err, size_t errlen);
/* GET /v1/paths?path=P: P absolute (attach_path_valid). */
struct http_request;
int host_path_query_parse(const struct http_request *req, const char **path, char *err, size_t errlen);
struct host_migrate_request {     /* POST /v1/vms/NAME/migrate {to, key, options...} */
	const char *to, *key;
	int naddrs;                   /* addresses in to */
};
/* Also checks the options with the monitor's own rules (migration_options_parse). */
int host_migrate_request_parse(json_t *spec, struct host_migrate_request *r, char *err, size_t errlen);
#define HOST_CAPTURE_SECONDS_MAX 60       /* one request holds its connection that long at most */
#define HOST_CAPTURE_FRAMES_MAX 100000
#define HOST_CAPTURE_BYTES_MAX (64u << 20) /* of pcap returned in one answer */
struct host_capture_request {     /* POST /v1/vms/NAME/capture {nic, count, seconds}, each optional */
	int nic;                      /* 0 */
	long count;                   /* 1000 */
	double seconds;               /* 10 */
};
int host_capture_request_parse(json_t *body, struct host_capture_request *r, char *err, size_t errlen);

/* The addresses of a service ("management", "migration", "provisioning"):
 * their count (0: none), -1 for an unknown service. */
int host_service_addresses(struct host_agent *a, const char *service, const char (**addrs)[64]);
#define HOST_SERVICES "management, migration or provisioning"

/* POST /v1/netcheck/listen {token, service} and POST /v1/netcheck/run
 * {token, service, to: ["HOST:PORT", ...], seconds}: service defaults to
 * migration, seconds to NETCHECK_SECONDS_DEFAULT. */
#define HOST_NETCHECK_ENDPOINTS_MAX 8
struct host_netcheck_request {
	uint8_t token[NETCHECK_TOKEN_LEN];
	const char *service;
	int nto;
	char to_host[HOST_NETCHECK_ENDPOINTS_MAX][64];
	int to_port[HOST_NETCHECK_ENDPOINTS_MAX];
	double seconds;
};
int host_netcheck_request_parse(json_t *body, bool run, struct host_netcheck_request *r, char *err, size_t errlen);

/* agent.c */
int host_serve_main(int argc, char **argv);
#endif
