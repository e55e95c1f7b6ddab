/* DRS scores and recommendations (see drs.h, docs/drs.md).
 *
 * A VM's score is what it gets of what it wants on its host: CPU shared
 * max-min fair among the host's VMs, memory short for all alike when the
 * host is over-committed. The cluster score is the mean of the VM scores.
 * A pass first places the VMs that must leave their host (maintenance, a
 * must rule, a broken VM-VM rule), then moves VMs greedily while a move's gain in score points
 * beats its cost (the memory it copies) by the threshold's margin; between
 * moves of equal gain (within a point: demand is measured and wobbles) the
 * one the last pass recommended wins, then the destination left with more
 * spare CPU. Every
 * candidate is evaluated on a working copy of the placement, so each
 * recommendation sees the ones before it. */
#include "center/drs.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define GIB (1024.0 * 1024.0 * 1024.0)

/* Max-min fair grant of cap CPUs to the n demands d[]: writes grant[]. */
static void water_fill(const double *d, int n, double cap, double *grant)
{
	double left = cap;
	int open = 0;
	for (int k = 0; k < n; k++) {
		grant[k] = -1; /* not yet decided */
		open += d[k] > 0;
		if (d[k] <= 0)
			grant[k] = 0;
	}
	while (open > 0) {
		double level = left > 0 ? left / open : 0;
		bool any = false;
		for (int k = 0; k < n; k++)
			if (grant[k] < 0 && d[k] <= level) {
				grant[k] = d[k];
				left -= d[k];
				open--;
				any = true;
			}
		if (!any) { /* every open demand exceeds an equal share: they split what is left */
			for (int k = 0; k < n; k++)
				if (grant[k] < 0)
					grant[k] = level;
			break;
		}
	}
}

/* Sum of the scores of the VMs placed on host hi (place[]); with scores,
 * each such VM's score too. */
static double host_points(const struct drs_host *h, int hi, const struct drs_vm *vms, int nv, const int *place,
			  double *scores)
{
	double *d = malloc(sizeof(double) * 2 * (size_t)(nv ? nv : 1));
	int *idx = malloc(sizeof(int) * (size_t)(nv ? nv : 1));
	double mem = 0, points = 0;
	int n = 0;
	if (!d || !idx) {
		free(d);
		free(idx);
		return 0;
	}
	for (int i = 0; i < nv; i++)
		if (place[i] == hi) {
			idx[n] = i;
			d[n++] = vms[i].cpu_demand;
			mem += (double)vms[i].mem_demand;
		}
	double *grant = d + n;
	water_fill(d, n, h->cpus, grant);
	double mem_share = mem > (double)h->memory ? (double)h->memory / mem : 1;
	for (int k = 0; k < n; k++) {
		double cpu_share = d[k] > 0 ? grant[k] / d[k] : 1;
		double s = 100 * cpu_share * mem_share;
		points += s;
		if (scores)
			scores[idx[k]] = s;
	}
	free(d);
	free(idx);
	return points;
}

static double cluster_points(const struct drs_host *hosts, int nh, const struct drs_vm *vms, int nv, const int *place)
{
	double p = 0;
	for (int j = 0; j < nh; j++)
		p += host_points(&hosts[j], j, vms, nv, place, NULL);
	return p;
}

double drs_scores(const struct drs_host *hosts, int nh, const struct drs_vm *vms, int nv, double *scores)
{
	int *place = malloc(sizeof(int) * (size_t)(nv ? nv : 1));
	double total = 0;
	if (!place)
		return 0;
	for (int i = 0; i < nv; i++) {
		place[i] = vms[i].host;
		if (scores)
			scores[i] = 0; /* a VM on no known host gets nothing */
	}
	for (int j = 0; j < nh; j++)
		total += host_points(&hosts[j], j, vms, nv, place, scores);
	free(place);
	return nv ? total / nv : 100;
}

int drs_bucket(double score)
{
	int b = (int)(score / (100.0 / DRS_BUCKETS));
	return b < 0 ? 0 : b >= DRS_BUCKETS ? DRS_BUCKETS - 1 : b;
}

const char *drs_bucket_label(int bucket)
{
	static const char *labels[DRS_BUCKETS] = { "0-20%", "20-40%", "40-60%", "60-80%", "80-100%" };
	return bucket >= 0 && bucket < DRS_BUCKETS ? labels[bucket] : "?";
}

double drs_min_gain(int threshold)
{
	/* points a move must gain beyond its cost; 100 points = one VM from 0% to 100% */
	static const double gain[] = { INFINITY, INFINITY, 40, 20, 10, 2 };
	return threshold >= DRS_THRESHOLD_MIN && threshold <= DRS_THRESHOLD_MAX ? gain[threshold] : INFINITY;
}

const char *drs_reason_name(enum drs_reason r)
{
	switch (r) {
	case DRS_REASON_FAIRNESS_CPU: return "fairness-cpu";
	case DRS_REASON_FAIRNESS_MEMORY: return "fairness-memory";
	case DRS_REASON_MAINTENANCE: return "maintenance";
	case DRS_REASON_RULE: return "rule-violation";
	}
	return "?";
}

static bool may_host(const struct drs_host *hosts, const struct drs_vm *v, int j)
{
	return j >= 0 && j < DRS_HOSTS_MAX && hosts[j].accepts && !hosts[j].evacuate && (v->allowed >> j & 1);
}

static bool preferred(const struct drs_vm *v, int j)
{
	return !v->preferred || (v->preferred >> j & 1);
}

/* Whether VM i may be on host j as far as VM-VM rules go, the others where
 * place[] has them: no member of an anti-affinity group of i there, and
 * every member of an affinity group of i there (a member on a host being
 * evacuated will follow, so it does not count). */
static bool fits_rules(const struct drs_host *hosts, int nh, const struct drs_vm *vms, int nv, const int *place, int i, int j)
{
	for (int k = 0; k < nv; k++) {
		if (k == i)
			continue;
		if ((vms[i].apart & vms[k].apart) && place[k] == j)
			return false;
		if ((vms[i].together & vms[k].together) && place[k] != j &&
		    !(place[k] >= 0 && place[k] < nh && hosts[place[k]].evacuate))
			return false;
	}
	return true;
}

/* VM i breaks a VM-VM rule where it is, with a VM before it (so that of two
 * VMs that break a rule together only the later one is moved). */
static bool breaks_rules(const struct drs_host *hosts, int nh, const struct drs_vm *vms, const int *place, int i)
{
	for (int k = 0; k < i; k++) {
		if ((vms[i].apart & vms[k].apart) && place[k] == place[i])
			return true;
		if ((vms[i].together & vms[k].together) && place[k] != place[i] &&
		    !(place[k] >= 0 && place[k] < nh && hosts[place[k]].evacuate))
			return true;
	}
	return false;
}

/* The cluster's points with VM i moved to host j (place[] is restored). */
static double points_if_moved(const struct drs_host *hosts, int nh, const struct drs_vm *vms, int nv, int *place,
			      int i, int j, double now)
{
	int from = place[i];
	double before = (from >= 0 && from < nh ? host_points(&hosts[from], from, vms, nv, place, NULL) : 0) +
			host_points(&hosts[j], j, vms, nv, place, NULL);
	place[i] = j;
	double after = (from >= 0 && from < nh ? host_points(&hosts[from], from, vms, nv, place, NULL) : 0) +
		       host_points(&hosts[j], j, vms, nv, place, NULL);
	place[i] = from;
	return now - before + after;
}

double drs_vm_score_on(const struct drs_host *hosts, int nh, const struct drs_vm *vms, int nv, int i, int j)
{
	int *place = malloc(sizeof(int) * (size_t)(nv ? nv : 1));
	double *scores = malloc(sizeof(double) * (size_t)(nv ? nv : 1));
	double s = 0;
	if (place && scores && i >= 0 && i < nv && j >= 0 && j < nh) {
		for (int k = 0; k < nv; k++)
			place[k] = vms[k].host;
		place[i] = j;
		host_points(&hosts[j], j, vms, nv, place, scores);
		s = scores[i];
	}
	free(place);
	free(scores);
	return s;
}

/* CPUs host j would have to spare with VM i there too (place[] as it is):
 * between moves of equal gain, the one that leaves more headroom wins, so
 * that VMs spread instead of filling one host to the brim. */
static double headroom_with(const struct drs_host *hosts, int j, const struct drs_vm *vms, int nv, const int *place, int i)
{
	double load = vms[i].cpu_demand;
	for (int k = 0; k < nv; k++)
		if (place[k] == j && k != i)
			load += vms[k].cpu_demand;
	return hosts[j].cpus - load;
}

/* Whether a candidate move (gain, VM i to host j, room) beats the best so
 * far: a clearly larger gain, or an equal one (within DRS_TIE_POINTS) of a
 * VM that is not manual, or that the last pass recommended too, or that
 * leaves more spare CPU. */
static bool better_move(double gain, int i, int j, double room, double best_gain, int best_i, int best_j, double best_room,
			const struct drs_vm *vms)
{
	if (best_i < 0 || gain > best_gain + DRS_TIE_POINTS)
		return true;
	if (gain < best_gain - DRS_TIE_POINTS)
		return false;
	if (vms[i].manual != vms[best_i].manual) /* a move DRS carries out itself before one that waits for a person */
		return !vms[i].manual;
	bool hinted = vms[i].hint == j, best_hinted = vms[best_i].hint == best_j;
	if (hinted != best_hinted)
		return hinted;
	return room > best_room + 1e-9;
}

static bool fits_devices(const struct drs_params *p, int i, int j, const int *place)
{
	return !p->fits || p->fits(p->fits_ctx, i, j, place);
}

static double move_cost(const struct drs_params *p, const struct drs_vm *v)
{
	return p->cost_points_per_gib * (double)v->mem_move / GIB;
}

/* Why a balancing move leaves host j: the resource it is shorter of. */
static enum drs_reason fairness_reason(const struct drs_host *h, int j, const struct drs_vm *vms, int nv, const int *place)
{
	double cpu = 0, mem = 0;
	for (int i = 0; i < nv; i++)
		if (place[i] == j) {
			cpu += vms[i].cpu_demand;
			mem += (double)vms[i].mem_demand;
		}
	double cpu_ratio = h->cpus > 0 ? cpu / h->cpus : INFINITY;
	double mem_ratio = h->memory ? mem / (double)h->memory : INFINITY;
	return cpu_ratio >= mem_ratio ? DRS_REASON_FAIRNESS_CPU : DRS_REASON_FAIRNESS_MEMORY;
}

int drs_recommend(const struct drs_host *hosts, int nh, const struct drs_vm *vms, int nv,
		  const struct drs_params *p, struct drs_rec *out, int max)
{
	int *place = malloc(sizeof(int) * (size_t)(nv ? nv : 1));
	bool *moved = calloc((size_t)(nv ? nv : 1), sizeof(bool));
	int n = 0;
	if (!place || !moved || nh > DRS_HOSTS_MAX)
		goto out;
	for (int i = 0; i < nv; i++)
		place[i] = vms[i].host;
	double now = cluster_points(hosts, nh, vms, nv, place);

	/* mandatory moves: an evacuating host, a host a must rule forbids */
	for (int i = 0; i < nv && n < max; i++) {
		int from = place[i];
		bool evacuate = from >= 0 && from < nh && hosts[from].evacuate;
		bool forbidden = from < 0 || from >= DRS_HOSTS_MAX || !(vms[i].allowed >> from & 1) ||
				 breaks_rules(hosts, nh, vms, place, i);
		if ((!evacuate && !forbidden) || vms[i].locked)
			continue;
		int best = -1;
		double best_points = -INFINITY, best_room = -INFINITY;
		/* a host its should rules prefer if one qualifies, else any allowed */
		for (int tier = 0; tier < 2 && best < 0; tier++)
			for (int j = 0; j < nh; j++) {
				if (j == from || !may_host(hosts, &vms[i], j) || !fits_rules(hosts, nh, vms, nv, place, i, j) ||
				    (!tier && !preferred(&vms[i], j)) || !fits_devices(p, i, j, place))
					continue;
				double pts = points_if_moved(hosts, nh, vms, nv, place, i, j, now);
				double room = headroom_with(hosts, j, vms, nv, place, i);
				if (better_move(pts, i, j, room, best_points, best < 0 ? -1 : i, best, best_room, vms)) {
					best_points = pts;
					best_room = room;
					best = j;
				}
			}
		struct drs_rec *r = &out[n++];
		*r = (struct drs_rec){ .vm = i, .from = from, .to = best,
				       .reason = evacuate ? DRS_REASON_MAINTENANCE : DRS_REASON_RULE,
				       .cost = move_cost(p, &vms[i]), .cluster_before = nv ? now / nv : 100 };
		if (best >= 0) {
			r->gain = best_points - now;
			place[i] = best;
			now = best_points;
		}
		r->cluster_after = nv ? now / nv : 100;
		moved[i] = true;
	}

	/* balancing: the best net gain first, while it clears the threshold's margin */
	double min_gain = drs_min_gain(p->threshold);
	while (n < max && !isinf(min_gain)) {
		int bi = -1, bj = -1;
		double best_net = -INFINITY, best_points = 0, best_room = -INFINITY;
		for (int i = 0; i < nv; i++) {
			if (moved[i] || !vms[i].movable || vms[i].locked || place[i] < 0 || place[i] >= nh)
				continue;
			double cost = move_cost(p, &vms[i]);
			for (int j = 0; j < nh; j++) {
				if (j == place[i] || !may_host(hosts, &vms[i], j) || !preferred(&vms[i], j) ||
				    !fits_rules(hosts, nh, vms, nv, place, i, j) || !fits_devices(p, i, j, place))
					continue;
				double pts = points_if_moved(hosts, nh, vms, nv, place, i, j, now);
				double net = pts - now - cost, room = headroom_with(hosts, j, vms, nv, place, i);
				if (better_move(net, i, j, room, best_net, bi, bj, best_room, vms)) {
					best_net = net;
					best_points = pts;
					best_room = room;
					bi = i;
					bj = j;
				}
			}
		}
		if (bi < 0 || best_net < min_gain)
			break;
		int from = place[bi];
		struct drs_rec *r = &out[n++];
		*r = (struct drs_rec){ .vm = bi, .from = from, .to = bj,
				       .reason = fairness_reason(&hosts[from], from, vms, nv, place),
				       .gain = best_points - now, .cost = move_cost(p, &vms[bi]),
				       .cluster_before = now / nv };
		place[bi] = bj;
		now = best_points;
		r->cluster_after = now / nv;
		moved[bi] = true;
	}
out:
	free(place);
	free(moved);
	return n;
}
