/* DRS rules (rules.c): VM-VM affinity and anti-affinity, VM-host must and
 * should run-on / not-run-on. */
#ifndef GLIDE_CENTER_RULES_H
#define GLIDE_CENTER_RULES_H
#include <jansson.h>
#include <stdbool.h>
#include "center/drs.h"

enum rule_kind {
	RULE_AFFINITY, RULE_ANTI_AFFINITY,          /* VM-VM */
	RULE_MUST_RUN_ON, RULE_MUST_NOT_RUN_ON,     /* VM-host, never broken */
	RULE_SHOULD_RUN_ON, RULE_SHOULD_NOT_RUN_ON, /* VM-host, kept by balancing */
};

struct center;
struct rule_request { /* POST /v1/rules {name, cluster, kind, vms | vm_group, hosts | host_group} */
	const char *name, *cluster; /* cluster NULL: the default */
	int kind;                   /* enum rule_kind */
	json_t *vms, *hosts;        /* borrowed: arrays of names (hosts only for VM-host rules) */
	const char *vm_group, *host_group; /* or a group's name instead (then vms, hosts NULL) */
};
int rules_request_parse(json_t *body, struct rule_request *r, char *err, size_t errlen);

/* Puts a cluster's rules (inventory rows, oldest first) into a DRS snapshot:
 * must rules narrow each VM's allowed hosts, should rules set its
 * preferred ones, VM-VM rules its group bits (together, apart). Returns
 * the rules ignored as conflicting with older ones: [{rule, conflict}]. */
json_t *rules_apply(json_t *rules, const struct drs_host *hosts, int nh, struct drs_vm *vms, int nv);
/* Whether a must rule or a VM-VM rule forbids VM vm on host host, with
 * running {VM name: host name} of the cluster's running VMs; why says which
 * rule. For placement at power-on. */
bool rules_forbid(json_t *rules, const char *vm, const char *host, json_t *running, char *why, size_t len);

int rules_post(struct center *c, json_t *body, json_t **resp);
int rules_delete(struct center *c, const char *name, json_t **resp);
/* [{name, cluster, kind, vms, hosts, created_at}] of one cluster (NULL: all), or NULL with err. */
json_t *rules_list(struct center *c, const char *cluster, char *err, size_t errlen);
/* Named VM and host groups: POST /v1/groups {name, cluster, kind: vm|host,
 * members} creates one or gives it new members; a group a rule names
 * cannot be deleted. */
int groups_post(struct center *c, json_t *body, json_t **resp);
int groups_delete(struct center *c, const char *name, json_t **resp);
json_t *groups_list(struct center *c, const char *cluster, char *err, size_t errlen); /* or NULL with err */
#endif
