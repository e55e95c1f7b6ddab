/* The controller (vCenter role): inventory in SQLite, long-running tasks,
 * compatibility checks, placement, EVC and migration orchestration.
 * Internal interfaces shared by the files of src/center/. */
#ifndef GLIDE_CENTER_CENTER_H
#define GLIDE_CENTER_CENTER_H
#include <jansson.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdint.h>
#include "host/attach.h"
#include "vmm/evc.h"
#include "common/util.h"

#define CENTER_SCHEMA_VERSION 2   /* 2: vms.nics, vms.disks */
#define CENTER_MAX_MIGRATIONS_PER_HOST_DEFAULT 8
#define CENTER_MAX_MIGRATIONS_PER_HOST_MAX 1024
#define CENTER_RECONCILE_INTERVAL_MS 1000
#define CENTER_POLL_INTERVAL_MS 200
#define CENTER_HOST_TIMEOUT_MS 5000
#define CENTER_DEST_LOST_MS 1500   /* destination silent this long: cancel the migration */
#define CENTER_SOURCE_LOST_MS 30000  /* source host silent this long: stop following */
#define CENTER_SOURCE_GONE_MS 5000   /* source answers but cannot read the status: ask both hosts */
#define CENTER_IN_DOUBT_MS 600000    /* an in-doubt switchover: how long to watch the destination settle */
#define DEFAULT_CLUSTER "default"

#define CENTER_DRS_INTERVAL_S_DEFAULT 60
#define CENTER_DRS_COOLDOWN_S_DEFAULT 300

struct center {
	sqlite3 *db;
	pthread_mutex_t lock;        /* one user of the database at a time */
	int max_migrations_per_host;
	int drs_interval_s;          /* a DRS pass over every cluster this often (--drs-interval) */
	int drs_cooldown_s;          /* a VM DRS moved stays put this long (--drs-cooldown) */
	struct budget_entry *budget; /* migrations holding or waiting for their cost (budget.c), in arrival order */
	volatile bool quit;
};

/* inventory.c: every SQL statement of the controller (see inventory.h) */
#include "center/inventory.h"

/* tasks.c (caller holds c->lock) */
int64_t task_create(struct center *c, const char *kind, json_t *vm_row, const char *src, const char *dst, const char *state);
void task_update(struct center *c, int64_t id, const char *stage, double progress, json_t *detail);
void task_finish(struct center *c, int64_t id, bool ok, const char *message, json_t *result);
json_t *task_json(struct center *c, int64_t id);
json_t *task_list(struct center *c, int limit);

/* hosts.c: calls to host agents (no lock needed) */
int host_call(json_t *host_row, const char *method, const char *path, json_t *body, json_t **resp, long timeout_ms,
	      char *err, size_t errlen); /* returns the HTTP status, or -errno with err set */
json_t *host_facts(json_t *host_row, char *err, size_t errlen);
/* What the host sees at each path of disks (a VM's "disks" array): an
 * object path -> GET /v1/paths answer, or {"error"} when the host cannot
 * say (it does not answer, or its agent is too old to know the call). */
json_t *host_paths(json_t *host_row, json_t *disks);
bool host_facts_regs(json_t *facts, uint32_t regs[EVC_REGS]);

/* evc (placement.c) */
/* The mask a VM gets at power-on for `level` ("none", "intersection" or a named level) in cluster_id. */
int placement_level_mask(struct center *c, int64_t cluster_id, const char *level, uint32_t mask[EVC_REGS],
			 char *err, size_t errlen);
const char *placement_vm_level(struct center *c, json_t *vm_row); /* per-VM level or the cluster's */
int placement_power_on(struct center *c, const char *vm, const char *want_host, json_t **resp);
/* A candidate host for power-on as the placement rule sees it. */
struct placement_host {
	const char *name;
	bool home;                 /* the VM is registered on this host */
	bool facts;                /* its facts were read; if not, error says why */
	char error[512];
	uint64_t free;             /* memory.free of its facts (bytes) */
	bool have_regs;            /* its facts have a valid cpu.cpuid */
	uint32_t regs[EVC_REGS];   /* that cpu.cpuid */
	char lacks[512];           /* networks or disks of the VM it lacks (compat_attachments), "" when none */
	bool have_score;           /* DRS placement (automation partial or full): score is set */
	double score;              /* the cluster's DRS score (%) with the VM placed here */
};
/* The power-on rule, without I/O: a host qualifies when its facts were read,
 * it has `need` bytes free, (unless level is "none") it lacks no named
 * feature of `mask` (a host whose facts have no cpu.cpuid is not checked)
 * and it lacks none of the VM's networks and disks (lacks empty).
 * Among those, with DRS scores (have_score) the highest score wins (the
 * most free memory of equals); without, the VM's home host wins, else the
 * most free memory (the first of equals). Returns the chosen index or -1; appends the reason of every
 * host that does not qualify ("NAME: why") to the JSON array `reasons`. */
int placement_choose(const struct placement_host *hosts, size_t n, uint64_t need, const char *level,
		     const uint32_t mask[EVC_REGS], json_t *reasons);
int placement_power_off(struct center *c, const char *vm, json_t **resp);
/* Suspend: the VM's host writes its memory and state to a file and stops its
 * monitor; power_state "suspended", and the next power-on resumes it there. */
int placement_suspend(struct center *c, const char *vm, json_t **resp);

/* compat.c: every reason the VM cannot move from host sname (facts
 * src_facts; both NULL when it has none) to dst_row (empty array:
 * compatible). src_paths, dst_paths: host_paths() of the VM's disks on each
 * host (src_paths may be NULL). storage: NULL when the disks are shared
 * (the destination must see them), else the disks are copied (dst_paths is
 * not looked at) and the destination needs a datastore with the space. */
struct compat_storage {
	const char *datastore;   /* asked for, or NULL: the destination's first */
	char chosen[64];         /* out: the datastore that takes the copies */
	uint64_t extra;          /* bytes beyond the disks (a suspended VM's state: its memory size) */
	uint64_t need;           /* out: bytes the copies take (the source files' allocated bytes + extra) */
};
json_t *compat_check(json_t *vm_row, json_t *src_facts, json_t *dst_facts, json_t *dst_row, const char *sname,
		     json_t *src_paths, json_t *dst_paths, bool live, struct compat_storage *storage);
/* The VM's NICs whose network host dname lacks (by name, in dst_facts
 * "networks") and its disks the host cannot see (dst_paths, as
 * host_paths() gives it; a size that differs from src_paths' says it is not
 * the same shared file): one reason each, appended to reasons. Returns
 * how many. No I/O. */
int compat_attachments(json_t *nics, json_t *disks, json_t *dst_facts, json_t *dst_paths, json_t *src_paths,
		       const char *dname, const char *sname, json_t *reasons);

/* The assignable devices VM vm asks for (requests) against host hname's
 * facts (its "hardware" and the VMs holding theirs): one reason appended
 * naming the device that is missing or in use, or none. Returns how many. */
int compat_hardware(json_t *requests, const char *vm, json_t *facts, const char *hname, json_t *reasons);

/* budget.c: the migration cost budget of each host (vCenter's model): a
 * live or cold move costs BUDGET_COST_MOVE on its source and destination,
 * one that copies disks BUDGET_COST_STORAGE; a host's budget is its
 * cluster's max_migrations_per_host, else the controller's. */
#define BUDGET_COST_MOVE 1
#define BUDGET_COST_STORAGE 4
struct budget_entry {
	int64_t task;
	char hosts[2][NAME_LEN_MAX + 1]; /* its source and destination (one host: a disk move) */
	int nhosts;
	int cost;
	bool running;                /* holds its cost; else waits */
	struct budget_entry *next;
};
/* Waits (without c->lock) until task's cost fits on src and dst (either
 * may be NULL) and no earlier waiting task shares one of them; meanwhile
 * the task's stage is "queued: Nth in line for host H (...)". */
void budget_acquire(struct center *c, int64_t task, const char *src, const char *dst, int cost);
void budget_release(struct center *c, int64_t task); /* without c->lock */
/* Pure parts (unit_budget): the cost in use on host by running entries,
 * and for waiting entry e of list: 0 when it may start now, else its place
 * in the line (1: first) and *blocking_host the index in e->hosts of the
 * host it waits for. */
int budget_in_use(const struct budget_entry *list, const char *host, int budget);
int budget_decide(const struct budget_entry *list, const struct budget_entry *e, int (*budget_of)(void *ctx, const char *host),
		  void *ctx, int *blocking_host);

/* move_disk.c: POST /v1/vms/NAME/move-disk {datastore, disk}: a running
 * VM's disk to another datastore of its host, as a task (202 {task}). */
int move_disk_task_start(struct center *c, const char *vm, json_t *body, json_t **resp);

/* migrate_task.c */
struct center_migrate_request;
/* A migration of VM vm to host `to` with params (checked migration options,
 * kept by the task). */
int migrate_task_start(struct center *c, const char *vm, const struct center_migrate_request *rq, json_t *params,
		       json_t **resp);

/* reconcile.c */
void reconcile_once(struct center *c);
void *reconcile_thread(void *center);

/* requests.c: the API's requests, parsed and checked without acting (0, or
 * -EINVAL with err set). Strings and JSON members are borrowed from the body. */
#define CENTER_ADDRESS_MAX 120     /* HOST:PORT of a host agent */
#define CENTER_TOKEN_MAX 4095      /* a token file's first line */
#define CENTER_TASKS_LIMIT_DEFAULT 50
#define CENTER_TASKS_LIMIT_MAX 10000
bool center_address_valid(const char *s);   /* HOST:PORT, [V6]:PORT: letters, digits, . - : [ ] */
bool center_level_valid(const char *level); /* none, intersection or a named EVC level */
/* path is PREFIX NAME [/ACTION]: NAME a valid name (with or_address, or a
 * host address) shorter than nlen, ACTION ("" when none) not empty after a
 * '/' and shorter than alen (else -ENOENT: no such endpoint). */
int center_path_parse(const char *path, const char *prefix, bool or_address, char *name, size_t nlen, char *action,
		      size_t alen, char *err, size_t errlen);
int center_task_id_parse(const char *path, int64_t *id); /* /v1/tasks/ID, ID 1, 2, ... */
/* GET /v1/tasks[?limit=N]: N 1..CENTER_TASKS_LIMIT_MAX, default CENTER_TASKS_LIMIT_DEFAULT. */
struct http_request;
int center_tasks_limit_parse(const struct http_request *req, int *limit, char *err, size_t errlen);
struct center_cluster_request {    /* POST /v1/clusters {name, evc, max_migrations_per_host} */
	const char *name, *evc;         /* evc "none" when not given */
	bool have_max_migrations;
	int64_t max_migrations;         /* 1..CENTER_MAX_MIGRATIONS_PER_HOST_MAX */
};
int center_cluster_request_parse(json_t *body, struct center_cluster_request *r, char *err, size_t errlen);
/* max_migrations_per_host of a body (NULL or null: not given, *have false). */
int center_limit_parse(json_t *value, bool *have, int64_t *limit, char *err, size_t errlen);
/* POST /v1/clusters/NAME/evc {level} */
int center_evc_request_parse(json_t *body, const char **level, char *err, size_t errlen);
struct center_host_request {       /* POST /v1/hosts {address, token, name, cluster} */
	const char *address, *token, *name, *cluster; /* cluster NULL: the default */
	char default_name[NAME_LEN_MAX + 1]; /* name when none is given: the address with ':' made '-' */
};
int center_host_request_parse(json_t *body, struct center_host_request *r, char *err, size_t errlen);
struct center_vm_request {         /* POST /v1/vms {name, memory, vcpus, boot, cluster, evc, devices, nics, disks,
                                   *  hardware} */
	const char *name, *cluster, *evc; /* cluster, evc NULL when not given */
	uint64_t memory;
	int vcpus;                      /* 1 when not given */
	json_t *boot, *devices;         /* devices NULL when not given */
	json_t *hardware;               /* assignable devices it asks for (hardware.h), NULL when none */
	struct attach at;               /* NICs (MACs optional) and disks (attach.h) */
};
int center_vm_request_parse(json_t *body, struct center_vm_request *r, char *err, size_t errlen);
struct center_config_request {     /* POST /v1/vms/NAME/config {memory, vcpus, evc} */
	json_t *memory, *vcpus;         /* NULL: unchanged */
	const char *evc;                /* NULL: unchanged; "cluster": follow the cluster */
};
int center_config_request_parse(json_t *body, struct center_config_request *r, char *err, size_t errlen);
/* POST /v1/vms/NAME/start {host}: *host NULL when placement picks one. */
int center_start_request_parse(json_t *body, const char **host, char *err, size_t errlen);
struct center_migrate_request {    /* POST /v1/vms/NAME/migrate {to, with_storage, datastore, options...} */
	const char *to;                 /* a host name or address */
	bool with_storage;              /* copy the disks too (shared-nothing) */
	const char *datastore;          /* with_storage: the destination's datastore (NULL: its first) */
};
/* Also checks the options with the monitor's own rules (migration_options_parse). */
int center_migrate_request_parse(json_t *body, struct center_migrate_request *r, char *err, size_t errlen);
/* The migration options of a checked body, for the source's agent (new reference). */
json_t *center_migration_params(json_t *body);

struct center_netcheck_request { /* POST /v1/netcheck {source, destination, service, seconds} */
	const char *source, *destination; /* host names or addresses */
	const char *service;              /* management, migration (default) or provisioning */
	double seconds;                   /* of the throughput stream, 0.1-10 (default 1) */
};
int center_netcheck_request_parse(json_t *body, struct center_netcheck_request *r, char *err, size_t errlen);

/* POST /v1/clusters/NAME/drs {mode, threshold, run}: mode NULL, threshold 0
 * when not given (else manual|partial|full, 1..5). */
int center_drs_request_parse(json_t *body, const char **mode, int *threshold, bool *run, char *err, size_t errlen);
/* /v1/drs/ID/apply, ID 1, 2, ... */
int center_drs_apply_path_parse(const char *path, int64_t *id);

/* netcheck.c: runs a check from src to dst (host rows) over service and
 * keeps it in the inventory; the record {source, destination, service, ok,
 * reachable, results[], checked_at} or NULL with err set (a host cannot
 * serve or run one). Called without c->lock. */
#define CENTER_NETCHECK_MIGRATE_SECONDS 0.5 /* the throughput part when a migration checks a new pair */
json_t *center_netcheck(struct center *c, json_t *src, json_t *dst, const char *service, double seconds, char *err,
			size_t errlen);
void center_netcheck_summary(json_t *rec, char *out, size_t len);

/* drs_cluster.c: GET /v1/clusters/NAME/drs: the DRS view of a cluster (its
 * hosts' capacity, every running VM's demand and DRS score, here and on
 * each other allowed host, the cluster score and its buckets, and one DRS
 * pass's recommendations at threshold 1..5). Called without c->lock; NULL
 * with err set when there is no such cluster. */
json_t *drs_cluster_view(struct center *c, const char *cluster, int threshold, char *err, size_t errlen);
/* One DRS pass over a cluster (threshold 0: the cluster's): the view, whose
 * recommendations are kept (each gets an "id") in place of the pending
 * ones of the last pass; in automation level full, each with a destination
 * is applied at once (a migration task; "task" in it). NULL with err set
 * when there is no such cluster. Called without c->lock. */
json_t *drs_cluster_pass(struct center *c, const char *cluster, int threshold, char *err, size_t errlen);
/* DRS initial placement: for each candidate with facts, the cluster score
 * (%) if a VM wanting `cpu` CPUs and `mem` bytes ran there, beside the
 * cluster's VMs and their measured demand (have_score, score). Called
 * without c->lock; -1 with err set when the cluster cannot be viewed. */
int drs_place_scores(struct center *c, const char *cluster, double cpu, uint64_t mem, struct placement_host *cand, size_t n,
		     char *err, size_t errlen);
/* Applies recommendation id: a migration task (the 202 answer of
 * migrate_task_start), or an error status with *resp. */
int drs_apply(struct center *c, int64_t id, json_t **resp);
/* The periodic pass over every cluster (a thread; every c->drs_interval_s),
 * and every second the hosts entering maintenance. */
void *drs_thread(void *center);

/* maintenance.c: maintenance mode. maintenance_blocks: the host is entering
 * or in maintenance (it takes no VM; why: "is entering maintenance mode");
 * maintenance_view: {host, state (none, entering, in, timed-out), since,
 * evacuate_powered_off, timeout_s, reason, vms_running, vms_powered_off}
 * (both: caller holds c->lock); maintenance_post: POST
 * /v1/hosts/NAME/maintenance {action: enter|exit, evacuate_powered_off,
 * timeout_s}; maintenance_tick: one step for every entering host (without
 * c->lock). */
bool maintenance_blocks(struct center *c, int64_t host_id, char *why, size_t len);
json_t *maintenance_view(struct center *c, json_t *host_row);
int maintenance_post(struct center *c, const char *host, json_t *body, json_t **resp);
void maintenance_tick(struct center *c);

/* server.c */
int center_serve_main(int argc, char **argv);
#endif
