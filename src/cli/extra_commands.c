/* Commands of the host agent and controller roles, registered here so that
 * main.c does not change when a role adds a command. main.c looks up its
 * own table first (the monitor's `vm run|status|pause|...`), then this one. */
#include "cli/cli.h"
#include <stddef.h>

int cmd_host_serve(int argc, char **argv);
int cmd_host_add(int argc, char **argv);
int cmd_host_list(int argc, char **argv);
int cmd_host_show(int argc, char **argv);
int cmd_host_remove(int argc, char **argv);
int cmd_host_netstats(int argc, char **argv);
int cmd_host_netcheck(int argc, char **argv);
int cmd_center_serve(int argc, char **argv);
int cmd_cluster_create(int argc, char **argv);
int cmd_cluster_list(int argc, char **argv);
int cmd_cluster_evc(int argc, char **argv);
int cmd_cluster_drs(int argc, char **argv);
int cmd_host_maintenance(int argc, char **argv);
int cmd_rule_create(int argc, char **argv);
int cmd_rule_list(int argc, char **argv);
int cmd_rule_delete(int argc, char **argv);
int cmd_group_set(int argc, char **argv);
int cmd_group_list(int argc, char **argv);
int cmd_group_delete(int argc, char **argv);
int cmd_cluster_set(int argc, char **argv);
int cmd_drs_apply(int argc, char **argv);
int cmd_task_list(int argc, char **argv);
int cmd_task_show(int argc, char **argv);
int cmd_task_watch(int argc, char **argv);
int cmd_vmc_create(int argc, char **argv);
int cmd_vmc_start(int argc, char **argv);
int cmd_vmc_stop(int argc, char **argv);
int cmd_vmc_suspend(int argc, char **argv);
int cmd_vmc_move_disk(int argc, char **argv);
int cmd_vmc_list(int argc, char **argv);
int cmd_vmc_show(int argc, char **argv);
int cmd_vmc_migrate(int argc, char **argv);
int cmd_vmc_set(int argc, char **argv);
int cmd_vmc_delete(int argc, char **argv);

const struct cli_command cli_extra_commands[] = {
	{ "host", "serve", cmd_host_serve, "run the host agent (hostd) on this host" },
	{ "host", "add", cmd_host_add, "add a host to the controller's inventory" },
	{ "host", "list", cmd_host_list, "list the hosts in the inventory" },
	{ "host", "show", cmd_host_show, "show a host's facts and VMs" },
	{ "host", "remove", cmd_host_remove, "remove a host from the inventory" },
	{ "host", "netstats", cmd_host_netstats, "NIC counters of a host's VMs (from its agent)" },
	{ "host", "maintenance", cmd_host_maintenance, "enter or exit maintenance mode (the host's VMs move away live), or show it" },
	{ "host", "netcheck", cmd_host_netcheck, "check the network between two hosts (reachability, RTT, MTU, throughput)" },
	{ "center", "serve", cmd_center_serve, "run the controller (inventory, tasks, EVC)" },
	{ "cluster", "create", cmd_cluster_create, "create a cluster with an EVC baseline" },
	{ "cluster", "list", cmd_cluster_list, "list clusters" },
	{ "cluster", "evc", cmd_cluster_evc, "show or set a cluster's EVC baseline" },
	{ "cluster", "drs", cmd_cluster_drs, "VM DRS scores, the cluster score and DRS recommendations (--run: a pass now)" },
	{ "cluster", "set", cmd_cluster_set, "set a cluster's DRS automation level and migration threshold" },
	{ "drs", "apply", cmd_drs_apply, "carry out a DRS recommendation (a migration task)" },
	{ "rule", "create", cmd_rule_create, "create a DRS rule (VM-VM affinity/anti-affinity, VM-host must/should)" },
	{ "rule", "list", cmd_rule_list, "list DRS rules" },
	{ "rule", "delete", cmd_rule_delete, "delete a DRS rule" },
	{ "group", "set", cmd_group_set, "create a VM or host group for DRS rules, or give it new members" },
	{ "group", "list", cmd_group_list, "list VM and host groups" },
	{ "group", "delete", cmd_group_delete, "delete a group no rule names" },
	{ "task", "list", cmd_task_list, "list recent tasks" },
	{ "task", "show", cmd_task_show, "show a task with its result" },
	{ "task", "watch", cmd_task_watch, "follow a task until it ends" },
	{ "vm", "create", cmd_vmc_create, "create a VM in the inventory (powered off)" },
	{ "vm", "start", cmd_vmc_start, "power a VM on (placement picks the host) or resume a suspended one" },
	{ "vm", "stop", cmd_vmc_stop, "power a VM off" },
	{ "vm", "suspend", cmd_vmc_suspend, "suspend a VM: memory and state to a file on its host (start resumes it)" },
	{ "vm", "list", cmd_vmc_list, "list VMs with their state and host" },
	{ "vm", "show", cmd_vmc_show, "show a VM (host, state, monitor API socket)" },
	{ "vm", "migrate", cmd_vmc_migrate, "migrate a VM to another host (live or cold; --with-storage copies its disks)" },
	{ "vm", "move-disk", cmd_vmc_move_disk, "move a running VM's disk to another datastore of its host (storage migration)" },
	{ "vm", "set", cmd_vmc_set, "change a powered-off VM's memory, vCPUs or EVC level" },
	{ "vm", "delete", cmd_vmc_delete, "delete a powered-off VM" },
	{ NULL, NULL, NULL, NULL },
};
