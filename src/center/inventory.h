/* The controller's inventory (inventory.c): every SQL statement of the
 * controller lives there, behind one named function per statement, grouped
 * by table. Rows come back as JSON objects (column name -> value; JSON text
 * columns such as config or facts stay strings); NULL or an empty array when
 * there are none. Updates return 0 or -1 (the SQL error is logged). Callers
 * hold c->lock. */
#ifndef GLIDE_CENTER_INVENTORY_H
#define GLIDE_CENTER_INVENTORY_H
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct center;

int inv_open(struct center *c, const char *path, char *err, size_t errlen);
const char *inv_error(struct center *c);
int64_t inv_now_ms(void);
void inv_recover(struct center *c); /* after a restart: fail interrupted tasks, release locks */
/* {clusters, hosts, vms, tasks_running}: the counts of GET /v1/center. */
json_t *inv_counts(struct center *c);

/* clusters */
json_t *inv_cluster(struct center *c, const char *name); /* the row or NULL */
json_t *inv_cluster_by_id(struct center *c, int64_t id);
/* The facts (parsed) of the cluster's hosts that have any, for the "intersection" level. */
json_t *inv_cluster_facts(struct center *c, int64_t cluster_id);
int64_t inv_default_cluster(struct center *c); /* its id; created when missing */
json_t *inv_clusters_with_counts(struct center *c); /* rows with their number of hosts and vms, in id order */
/* A new cluster; max_migrations_per_host NULL: none of its own. */
int inv_cluster_insert(struct center *c, const char *name, const char *evc_level, const int64_t *max_migrations_per_host);
int inv_cluster_set_evc(struct center *c, int64_t cluster_id, const char *evc_level);

/* hosts */
json_t *inv_host(struct center *c, const char *name_or_address); /* the row or NULL */
json_t *inv_hosts_named(struct center *c, const char *name_or_address); /* the same as an array of 0 or 1 rows */
json_t *inv_hosts_in_cluster(struct center *c, int64_t cluster_id); /* rows in id order */
json_t *inv_host_by_id(struct center *c, int64_t id);
json_t *inv_hosts(struct center *c); /* every host row */
json_t *inv_hosts_with_cluster(struct center *c); /* every host row with its cluster's name as "cluster", in id order */
/* A new host, connected, with its facts (stored as JSON text), seen and added now. */
int inv_host_insert(struct center *c, const char *name, const char *address, const char *token, int64_t cluster_id, json_t *facts);
/* "vm1, vm2": the VMs not powered off on the host (malloc'd), or NULL when none. */
char *inv_host_busy_vms(struct center *c, int64_t host_id);
/* Forgets a host: its VMs keep no host, then the host row goes. */
int inv_host_delete(struct center *c, int64_t host_id);
int inv_host_set_disconnected(struct center *c, int64_t host_id);
/* The host answered: connected, with these facts (stored as JSON text), seen now. */
int inv_host_set_connected(struct center *c, int64_t host_id, json_t *facts);

/* VMs */
json_t *inv_vm(struct center *c, const char *name);
json_t *inv_vm_json(struct center *c, json_t *vm_row); /* public view of a VM row */
/* A JSON array column of a VM row (nics, disks) as a new array; [] when it has none. */
json_t *inv_vm_array(json_t *vm_row, const char *column);
json_t *inv_vms(struct center *c); /* every VM row, in id order */
json_t *inv_vms_in_cluster(struct center *c, int64_t cluster_id); /* rows in id order */
/* name, config of the cluster's powered-on VMs that follow the cluster's EVC level (no level of their own). */
json_t *inv_vms_on_cluster_level(struct center *c, int64_t cluster_id);
/* A new VM, powered off; devices NULL or not an array: ["serial"]; evc_level NULL: the cluster's;
 * nics, disks: its NICs and disks (attach.h; NULL: none); hardware: the assignable devices it asks
 * for (hardware.h; NULL: none). VM rows carry "hardware" (that array as text, "[]" when none). */
int inv_vm_insert(struct center *c, const char *name, int64_t cluster_id, json_t *config, json_t *boot, json_t *devices,
		  const char *evc_level, json_t *nics, json_t *disks, json_t *hardware);
/* The VM (and its NIC index) that has MAC mac ("52:54:00:12:34:56", any case): {name, nic}, or NULL. */
json_t *inv_vm_with_mac(struct center *c, const char *mac);
/* New configuration; with set_evc also the per-VM EVC level (NULL: follow the cluster). */
int inv_vm_set_config(struct center *c, int64_t vm_id, json_t *config, bool set_evc, const char *evc_level);
int inv_vm_delete(struct center *c, int64_t vm_id);
/* id, name, host_id, power_state, api of the VMs no task locks, last changed before before_ms. */
json_t *inv_vms_unlocked_before(struct center *c, int64_t before_ms);
/* The VM runs (power_state) on host_id with its monitor's API socket api (NULL: none). */
int inv_vm_set_location(struct center *c, int64_t vm_id, int64_t host_id, const char *api, const char *power_state);
int inv_vm_set_unknown(struct center *c, int64_t vm_id); /* its host does not answer */
/* Powered off, no API socket; registered on host_id, or where it was when host_id is 0. */
int inv_vm_set_off(struct center *c, int64_t vm_id, int64_t host_id);
/* Registered (powered off) on host_id, no API socket: a cold migration's move. */
/* The VM's disks (the attach.h list): new paths after its disks were copied to another host. */
int inv_vm_set_disks(struct center *c, int64_t vm_id, json_t *disks);
int inv_vm_set_host(struct center *c, int64_t vm_id, int64_t host_id);
/* Power-on done: running on host_id (monitor API socket api) with the configuration it was started with. */
int inv_vm_set_powered_on(struct center *c, int64_t vm_id, int64_t host_id, const char *api, json_t *config);
/* The task lock (vms.locked_by); the caller checked under c->lock that the VM was unlocked. */
int inv_vm_lock(struct center *c, int64_t vm_id, int64_t task);
int inv_vm_unlock(struct center *c, int64_t vm_id); /* whichever task held it */
int inv_vm_unlock_task(struct center *c, int64_t vm_id, int64_t task); /* only if that task holds it */

/* tasks */
/* A new task row (stage = state); its id, or 0 when the insert failed. */
int64_t inv_task_insert(struct center *c, const char *kind, int64_t vm_id, const char *vm_name, const char *state,
			const char *src, const char *dst);
/* A queued or running task is running at stage with progress and detail (NULL: none); ended tasks stay as they are. */
int inv_task_update(struct center *c, int64_t id, const char *stage, double progress, json_t *detail);
/* Ends a task: succeeded (progress 1) or failed, with message and result (either may be NULL). */
int inv_task_finish(struct center *c, int64_t id, bool ok, const char *message, json_t *result);
/* A queued task got its turn: started_at is now (it was its creation). */
int inv_task_started(struct center *c, int64_t id);
json_t *inv_task(struct center *c, int64_t id); /* the row or NULL */
json_t *inv_tasks_recent(struct center *c, int limit); /* newest first */
/* netchecks: the last network check from one host to another over a service */
json_t *inv_netcheck(struct center *c, int64_t source_id, int64_t destination_id, const char *service); /* row or NULL */
json_t *inv_netchecks(struct center *c); /* every row with the hosts' names as source, destination; newest first */
int inv_netcheck_set(struct center *c, int64_t source_id, int64_t destination_id, const char *service, bool ok,
		     bool reachable, json_t *result);
/* DRS (caller holds c->lock): a cluster's {mode, threshold} (manual, 3
 * when never set); when DRS last moved a VM (ms, 0: never); the
 * recommendations of the latest pass (replace sets "id" in each of recs),
 * newest first, one by id, and a recommendation's state (pending,
 * applied, failed, superseded) with the task that carried it out. A new
 * pass keeps the id of a pending recommendation it makes again (same VM,
 * source, destination) and supersedes the other pending ones. */
json_t *inv_cluster_drs(struct center *c, int64_t cluster_id);
int inv_cluster_set_drs(struct center *c, int64_t cluster_id, const char *mode, int threshold);
/* A VM's own DRS automation level (manual, partial, full, disabled; NULL: the cluster's). */
int inv_vm_set_drs_automation(struct center *c, int64_t vm_id, const char *automation);
/* The cluster's per-host budget of migration cost (NULL: the controller's). */
int inv_cluster_set_limit(struct center *c, int64_t cluster_id, const int64_t *max_migrations_per_host);
int64_t inv_drs_moved_at(struct center *c, int64_t vm_id);
int inv_drs_set_moved(struct center *c, int64_t vm_id, int64_t at_ms);
int inv_drs_recs_replace(struct center *c, int64_t cluster_id, json_t *recs);
json_t *inv_drs_recs(struct center *c, int64_t cluster_id);
json_t *inv_drs_rec(struct center *c, int64_t id);
int inv_drs_rec_set_state(struct center *c, int64_t id, const char *state, int64_t task);
/* Maintenance mode (caller holds c->lock): a host's row {state (entering,
 * in), evacuate_powered_off, timeout_s, started_at, reason} or NULL when it
 * is not in maintenance; every such row with the host's name and cluster_id;
 * set (state NULL: the host leaves maintenance). */
json_t *inv_host_maintenance(struct center *c, int64_t host_id);
json_t *inv_maintenance_all(struct center *c);
int inv_host_set_maintenance(struct center *c, int64_t host_id, const char *state, bool evacuate_powered_off,
			     int64_t timeout_s, int64_t started_at, const char *reason);
json_t *inv_vms_on_host(struct center *c, int64_t host_id); /* every VM row registered on the host */
/* DRS rules (caller holds c->lock): a cluster's (0: every cluster's) rows
 * {id, name, cluster_id, cluster, kind, vms (JSON text), hosts (JSON text),
 * created_at} oldest first; add (vms, hosts: JSON arrays of names); delete;
 * one by name. */
json_t *inv_rules(struct center *c, int64_t cluster_id); /* a group a rule names is expanded (vm_group, host_group) */
/* Named VM and host groups (kind "vm" or "host"; members a JSON array of names). */
json_t *inv_group(struct center *c, const char *name);
json_t *inv_groups(struct center *c, int64_t cluster_id); /* 0: every cluster's */
int inv_group_put(struct center *c, const char *name, int64_t cluster_id, const char *kind, json_t *members); /* new, or new members */
int inv_group_delete(struct center *c, const char *name);
json_t *inv_rules_naming_group(struct center *c, const char *name); /* [{name}] */
int inv_rule_insert(struct center *c, const char *name, int64_t cluster_id, const char *kind, json_t *vms, json_t *hosts);
int inv_rule_delete(struct center *c, const char *name);
json_t *inv_rule(struct center *c, const char *name);
#endif
