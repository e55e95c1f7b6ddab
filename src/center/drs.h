/* DRS (distributed resource scheduling): VM DRS scores, the cluster score
 * and balancing recommendations, as pure functions over a snapshot of one
 * cluster (hosts with their capacity, VMs with their demand). No I/O: the
 * controller fills the snapshot from its inventory and the host agents'
 * demand reports; unit_drs checks the numbers by hand. docs/drs.md gives
 * the formulas. */
#ifndef GLIDE_CENTER_DRS_H
#define GLIDE_CENTER_DRS_H
#include <stdbool.h>
#include <stdint.h>

#define DRS_HOSTS_MAX 64            /* hosts of a cluster one snapshot holds (compatibility is a bit mask) */
#define DRS_THRESHOLD_MIN 1
#define DRS_THRESHOLD_MAX 5
#define DRS_THRESHOLD_DEFAULT 3
#define DRS_COST_POINTS_PER_GIB 2.0 /* a move's cost: score points per GiB of memory it copies */
#define DRS_BUCKETS 5               /* 0-20%, 20-40%, 40-60%, 60-80%, 80-100% */
#define DRS_TIE_POINTS 1.0          /* moves whose gains differ by less are equal (demand is measured, it wobbles) */

struct drs_host {
	const char *name;
	double cpus;             /* capacity: CPUs for VMs */
	uint64_t memory;         /* capacity: bytes for VMs */
	bool accepts;            /* may receive VMs (connected, not entering or in maintenance) */
	bool evacuate;           /* entering maintenance: every VM must leave */
};

struct drs_vm {
	const char *name;
	int host;                /* index of the host it runs on */
	double cpu_demand;       /* CPUs it wants: (run + ready time) per second */
	uint64_t mem_demand;     /* bytes it wants */
	uint64_t mem_move;       /* bytes a move copies (its memory size) */
	bool movable;            /* balancing may move it (not in cooldown, automation not disabled) */
	bool locked;             /* a task holds it (a migration under way): no move at all */
	uint64_t allowed;        /* hosts it may run on: bit i = hosts[i] (compatibility and VM-host must rules) */
	uint64_t preferred;      /* hosts VM-host should rules keep it on: balancing moves it only there (0: all) */
	uint64_t apart;          /* VM-VM anti-affinity groups it is in (bit g: group g): never on one host with another member */
	uint64_t together;       /* VM-VM affinity groups it is in: always on one host with the other members */
	int hint;                /* host a pending recommendation of the last pass sends it to, -1: none (stability) */
	bool manual;             /* its moves are only recommended (its automation level is manual or partial where
	                          * others' are full): of equal moves, one DRS applies itself goes first */
};

enum drs_reason {
	DRS_REASON_FAIRNESS_CPU,     /* its host's CPU is over-committed */
	DRS_REASON_FAIRNESS_MEMORY,  /* its host's memory is over-committed */
	DRS_REASON_MAINTENANCE,      /* its host is entering maintenance mode */
	DRS_REASON_RULE,             /* it breaks a rule: a host a must rule forbids, or a VM-VM rule */
};

struct drs_rec {
	int vm, from, to;        /* to == -1: mandatory, but no host qualifies (blocked) */
	enum drs_reason reason;
	double gain;             /* sum of the VM scores' change, in points (100 = one VM from 0% to 100%) */
	double cost;             /* the move's cost in the same points */
	double cluster_before, cluster_after; /* cluster score (%) before and after this move */
};

struct drs_params {
	int threshold;           /* 1 (mandatory moves only) .. 5 (aggressive) */
	double cost_points_per_gib;
	/* Optional (NULL: always): whether VM i may join host j with the
	 * cluster's VMs where place[] puts them, for what the snapshot does not
	 * model (assignable devices: a free matching one for each it asks for). */
	bool (*fits)(void *ctx, int i, int j, const int *place);
	void *fits_ctx;
};

/* A VM's DRS score (%) is its execution efficiency on its host: 100 x the
 * share of its CPU demand it gets x the share of its memory demand it gets.
 * CPU is shared max-min fair (water-filling: a VM that wants less than an
 * equal share gets all it wants, the others split the rest equally), as
 * the host's scheduler shares it among vCPU threads; memory, when the
 * host's VMs want more than it has, is short for all of them alike
 * (share = capacity / demand). drs_scores gives every VM's score
 * (scores[nv]) and returns the cluster score, their mean (100 with no VM). */
double drs_scores(const struct drs_host *hosts, int nh, const struct drs_vm *vms, int nv, double *scores);
/* VM i's score if it ran on host j instead (the other VMs where they are). */
double drs_vm_score_on(const struct drs_host *hosts, int nh, const struct drs_vm *vms, int nv, int i, int j);
/* The bucket (0 .. DRS_BUCKETS-1) of a score, and its label ("0-20%"). */
int drs_bucket(double score);
const char *drs_bucket_label(int bucket);
/* The least gain (points) a balancing move needs at a threshold, beyond its
 * cost: infinite at 1 (only mandatory moves). */
double drs_min_gain(int threshold);
const char *drs_reason_name(enum drs_reason r);
/* Up to max recommendations for one DRS pass, in order: mandatory moves
 * first (VMs on an evacuating host, VMs on a host not in `allowed`, the
 * later VM of two that break a VM-VM rule), to the
 * allowed, accepting host that leaves the best cluster score (to = -1 when
 * none qualifies); then, greedily, the balancing move with the largest net
 * gain (gain - cost) while that is at least drs_min_gain(threshold). Gains
 * within DRS_TIE_POINTS are equal; of equal ones, a VM that is not manual
 * wins, then the move the last pass recommended (hint), then the
 * destination that keeps more spare CPU, then the first. Each
 * recommendation is applied to the snapshot before the next is chosen, and
 * a VM is moved at most once per pass. vms[].host is left as it was.
 * Returns the number of recommendations. */
int drs_recommend(const struct drs_host *hosts, int nh, const struct drs_vm *vms, int nv,
		  const struct drs_params *p, struct drs_rec *out, int max);
#endif
