/* Unit test: DRS scores, buckets and recommendations (src/center/drs.c),
 * every figure checked by hand in the comments. */
#include "center/drs.h"
#include <math.h>
#include <stdio.h>
#include <string.h>

#define GIB (1ULL << 30)
#define MIB (1ULL << 20)
#define ALL ((1ULL << 3) - 1) /* hosts 0, 1, 2 */
static int failures;

#define CHECK(name, cond, ...)                                        \
	do {                                                          \
		if (cond) {                                           \
			printf("PASS drs: %s\n", name);               \
		} else {                                              \
			printf("FAIL drs: %s: ", name);               \
			printf(__VA_ARGS__);                          \
			printf("\n");                                 \
			failures++;                                   \
		}                                                     \
	} while (0)

static bool near(double a, double b) { return fabs(a - b) < 1e-6; }

static struct drs_host host(const char *name, double cpus, uint64_t mem)
{
	return (struct drs_host){ .name = name, .cpus = cpus, .memory = mem, .accepts = true };
}

static struct drs_vm vm(const char *name, int h, double cpu, uint64_t mem)
{
	return (struct drs_vm){ .name = name, .host = h, .cpu_demand = cpu, .mem_demand = mem, .mem_move = mem,
				.movable = true, .allowed = ALL, .hint = -1 };
}

static void scores(void)
{
	double s[4];
	/* 2 CPUs, demands 0.5, 1.0, 1.5: equal share 2/3; 0.5 fits and gets all,
	 * the 1.5 CPUs left split 0.75 / 0.75: scores 100, 75, 50, mean 75 */
	struct drs_host h[1] = { host("a", 2, 16 * GIB) };
	struct drs_vm v[3] = { vm("x", 0, 0.5, GIB), vm("y", 0, 1.0, GIB), vm("z", 0, 1.5, GIB) };
	double c = drs_scores(h, 1, v, 3, s);
	CHECK("CPU is shared max-min fair: 0.5/1.0/1.5 CPUs wanted of 2 give 100, 75, 50 (cluster 75)",
	      near(s[0], 100) && near(s[1], 75) && near(s[2], 50) && near(c, 75), "%g %g %g cluster %g", s[0], s[1],
	      s[2], c);
	/* memory: 3 + 3 GiB wanted of 4 GiB: each gets 2/3; CPU fits */
	struct drs_vm m[2] = { vm("p", 0, 0.5, 3 * GIB), vm("q", 0, 0.5, 3 * GIB) };
	h[0].memory = 4 * GIB;
	c = drs_scores(h, 1, m, 2, s);
	CHECK("memory over-committed 6 GiB of 4: both VMs score 66.7", near(s[0], 200.0 / 3) && near(c, 200.0 / 3),
	      "%g cluster %g", s[0], c);
	/* both short: 3 CPUs wanted of 2 (0.5 + 2.5: the 0.5 fits, the other gets 1.5 of 2.5 = 0.6), memory 2/3 */
	m[1].cpu_demand = 2.5;
	c = drs_scores(h, 1, m, 2, s);
	CHECK("CPU and memory short together multiply: 100 x 2/3 and 60 x 2/3",
	      near(s[0], 200.0 / 3) && near(s[1], 40), "%g %g", s[0], s[1]);
	/* an idle VM wants nothing and gets all of it */
	struct drs_vm idle[1] = { vm("i", 0, 0, 0) };
	c = drs_scores(h, 1, idle, 1, s);
	CHECK("an idle VM scores 100", near(s[0], 100) && near(c, 100), "%g", s[0]);
	CHECK("a cluster without VMs scores 100", near(drs_scores(h, 1, NULL, 0, NULL), 100), "-");
	/* what-if: z (1.5 CPUs) alone on an empty 2-CPU host would get all it wants */
	struct drs_host h2[2] = { host("a", 2, 16 * GIB), host("b", 2, 16 * GIB) };
	double on_b = drs_vm_score_on(h2, 2, v, 3, 2, 1), on_a = drs_vm_score_on(h2, 2, v, 3, 2, 0);
	CHECK("what-if: z scores 100 alone on b and 50 where it is", near(on_b, 100) && near(on_a, 50), "%g %g", on_b, on_a);
}

static void buckets(void)
{
	CHECK("buckets: 0 and 19.9 in 0-20%, 20 in 20-40%, 80 and 100 in 80-100%",
	      drs_bucket(0) == 0 && drs_bucket(19.9) == 0 && drs_bucket(20) == 1 && drs_bucket(80) == 4 &&
	      drs_bucket(100) == 4 && !strcmp(drs_bucket_label(drs_bucket(55)), "40-60%"),
	      "%d %d %d %d %d", drs_bucket(0), drs_bucket(19.9), drs_bucket(20), drs_bucket(80), drs_bucket(100));
	CHECK("threshold margins: 1 only mandatory, 3 needs 20 points, 5 needs 2",
	      isinf(drs_min_gain(1)) && near(drs_min_gain(3), 20) && near(drs_min_gain(5), 2) && isinf(drs_min_gain(6)),
	      "%g %g %g", drs_min_gain(1), drs_min_gain(3), drs_min_gain(5));
}

static void spread(void)
{
	/* Three hosts of 2 CPUs, six VMs of 1 CPU (256 MiB) all on host a: each
	 * gets 1/3, cluster 33.3. Every good move gains 100 points (cost 0.5):
	 * a VM to b (a: 5 x 40 = 200, b: 100: 300 from 200); another to b or c
	 * (400 either way: c keeps 1 CPU spare, b none: c); then b or c again
	 * (500, no CPU spare either way: the first host, b); then c (to b would
	 * gain 0: 3 VMs on 2 CPUs): 2 + 2 + 2, every VM 100. */
	struct drs_host h[3] = { host("a", 2, 16 * GIB), host("b", 2, 16 * GIB), host("c", 2, 16 * GIB) };
	struct drs_vm v[6];
	for (int i = 0; i < 6; i++)
		v[i] = vm("v", 0, 1.0, 256 * MIB);
	struct drs_params p = { .threshold = 3, .cost_points_per_gib = DRS_COST_POINTS_PER_GIB };
	struct drs_rec r[8];
	double before = drs_scores(h, 3, v, 6, NULL);
	int n = drs_recommend(h, 3, v, 6, &p, r, 8);
	CHECK("six 1-CPU VMs on one 2-CPU host score 33.3", near(before, 100.0 / 3), "%g", before);
	CHECK("DRS spreads them in 4 moves: v0->b, v1->c (equal gain, more spare CPU), v2->b, v3->c",
	      n == 4 && r[0].vm == 0 && r[0].to == 1 && r[1].vm == 1 && r[1].to == 2 && r[2].vm == 2 && r[2].to == 1 &&
	      r[3].vm == 3 && r[3].to == 2, "%d recommendations, first %d->%d", n, n ? r[0].vm : -1, n ? r[0].to : -1);
	CHECK("each move gains 100 points at a cost of 0.5, for CPU fairness",
	      n == 4 && near(r[0].gain, 100) && near(r[3].gain, 100) && near(r[0].cost, 0.5) &&
	      r[0].reason == DRS_REASON_FAIRNESS_CPU && !strcmp(drs_reason_name(r[0].reason), "fairness-cpu"),
	      "gain %g cost %g reason %d", n ? r[0].gain : 0, n ? r[0].cost : 0, n ? (int)r[0].reason : -1);
	CHECK("the cluster score goes 33.3 -> 50 -> 66.7 -> 83.3 -> 100",
	      n == 4 && near(r[0].cluster_before, 100.0 / 3) && near(r[0].cluster_after, 50) &&
	      near(r[1].cluster_after, 200.0 / 3) && near(r[2].cluster_after, 250.0 / 3) && near(r[3].cluster_after, 100),
	      "%g %g %g %g", n > 0 ? r[0].cluster_after : 0, n > 1 ? r[1].cluster_after : 0,
	      n > 2 ? r[2].cluster_after : 0, n > 3 ? r[3].cluster_after : 0);
	CHECK("the input placement is left as it was", v[0].host == 0 && v[3].host == 0, "-");
	/* the placement DRS reached is stable: no flip-flop */
	for (int k = 0; k < n; k++)
		v[r[k].vm].host = r[k].to;
	int again = drs_recommend(h, 3, v, 6, &p, r, 8);
	CHECK("after the moves a second pass recommends nothing (no flip-flop)", again == 0, "%d", again);
	/* threshold 1: mandatory moves only */
	for (int i = 0; i < 6; i++)
		v[i].host = 0;
	p.threshold = 1;
	n = drs_recommend(h, 3, v, 6, &p, r, 8);
	CHECK("threshold 1 recommends no balancing move", n == 0, "%d", n);
	/* cost-benefit: 64 GiB VMs cost 128 points a move, more than the 100 gained */
	p.threshold = 5;
	for (int i = 0; i < 6; i++)
		v[i].mem_move = 64 * GIB;
	n = drs_recommend(h, 3, v, 6, &p, r, 8);
	CHECK("a move whose cost (128 points for 64 GiB) exceeds its gain (100) is not recommended", n == 0, "%d", n);
	/* not movable (cooldown, lock) and not allowed elsewhere: nothing */
	for (int i = 0; i < 6; i++) {
		v[i].mem_move = 256 * MIB;
		v[i].movable = i != 0;
		v[i].allowed = i == 1 ? 1 : ALL;
	}
	n = drs_recommend(h, 3, v, 6, &p, r, 8);
	bool skipped = true;
	for (int k = 0; k < n; k++)
		skipped &= r[k].vm != 0 && r[k].vm != 1;
	CHECK("a VM in cooldown and a VM allowed only on its host are never moved", n == 4 && skipped, "%d", n);
	CHECK("max bounds the recommendations", drs_recommend(h, 3, v, 6, &p, r, 2) == 2, "-");
	/* stability: measured demands wobble; gains within a point are equal, and the move the last
	 * pass recommended wins among equals. a holds v0-v4 (5 CPUs wanted of 2), b nothing, c v5.
	 * Every move off a gains about 100 points; b would keep the most spare CPU (1.01 with v4,
	 * the smallest), but the last pass sent v4 to c */
	for (int i = 0; i < 6; i++) {
		v[i] = vm("v", 0, 1.0, 256 * MIB);
		v[i].host = i < 4 ? 0 : 1 + (i == 5);
	}
	v[2].cpu_demand = 1.01;
	v[4].host = 0;
	v[4].cpu_demand = 0.99;
	v[4].hint = 2;
	p.threshold = 3;
	n = drs_recommend(h, 3, v, 6, &p, r, 1);
	CHECK("of gains within a point, the move the last pass recommended (v4 to c) comes first, not the roomiest", n == 1 && r[0].vm == 4 &&
	      r[0].to == 2, "%d: %d->%d", n, n ? r[0].vm : -1, n ? r[0].to : -1);
	v[4].hint = -1;
	n = drs_recommend(h, 3, v, 6, &p, r, 1);
	CHECK("without the hint, the move that keeps the most spare CPU (v4 to b) comes first",
	      n == 1 && r[0].vm == 4 && r[0].to == 1, "%d: %d->%d", n, n ? r[0].vm : -1, n ? r[0].to : -1);
}

static void mandatory(void)
{
	/* a (evacuating) holds v0, v1; b holds v2, v3; c is empty; 2 CPUs each,
	 * 1 CPU per VM. v0 to b: b has 3 on 2 CPUs (200) + a 100 = 300 < 400
	 * to c; v1 then to c as well: a, b, c = 0, 200, 200. */
	struct drs_host h[3] = { host("a", 2, 16 * GIB), host("b", 2, 16 * GIB), host("c", 2, 16 * GIB) };
	h[0].evacuate = true;
	h[0].accepts = false;
	struct drs_vm v[4] = { vm("v0", 0, 1, GIB), vm("v1", 0, 1, GIB), vm("v2", 1, 1, GIB), vm("v3", 1, 1, GIB) };
	struct drs_params p = { .threshold = 1, .cost_points_per_gib = DRS_COST_POINTS_PER_GIB };
	struct drs_rec r[8];
	int n = drs_recommend(h, 3, v, 4, &p, r, 8);
	CHECK("maintenance: both VMs of the evacuating host go to the empty host, even at threshold 1",
	      n == 2 && r[0].vm == 0 && r[0].to == 2 && r[1].vm == 1 && r[1].to == 2 &&
	      r[0].reason == DRS_REASON_MAINTENANCE, "%d: %d->%d %d->%d", n, n > 0 ? r[0].vm : -1, n > 0 ? r[0].to : -1,
	      n > 1 ? r[1].vm : -1, n > 1 ? r[1].to : -1);
	/* a must rule: v2 allowed only on c; v3 allowed only on a, which takes no VM: blocked */
	h[0].evacuate = false;
	v[0].host = v[1].host = 2;
	v[2].allowed = 1 << 2;
	v[3].allowed = 1 << 0;
	n = drs_recommend(h, 3, v, 4, &p, r, 8);
	CHECK("a must rule moves v2 to c; v3, allowed only on a host that takes no VM, is reported blocked",
	      n == 2 && r[0].vm == 2 && r[0].to == 2 && r[0].reason == DRS_REASON_RULE && r[1].vm == 3 && r[1].to == -1 &&
	      !strcmp(drs_reason_name(r[1].reason), "rule-violation"), "%d", n);
	CHECK("more than DRS_HOSTS_MAX hosts are refused", drs_recommend(h, DRS_HOSTS_MAX + 1, v, 4, &p, r, 8) == 0, "-");
	/* a VM a task holds (a migration under way) gets no recommendation, even a mandatory one;
	 * one in cooldown (not movable) still leaves an evacuating host */
	v[2].locked = true;
	v[3].allowed = ALL;
	v[3].movable = false;
	h[1].evacuate = true;
	h[1].accepts = false;
	h[0].accepts = true;
	n = drs_recommend(h, 3, v, 4, &p, r, 8);
	CHECK("evacuation: a locked VM is left alone, a VM in cooldown still leaves",
	      n == 1 && r[0].vm == 3 && r[0].reason == DRS_REASON_MAINTENANCE && r[0].to >= 0, "%d", n);
}

static void memory_reason(void)
{
	/* 2 hosts of 8 CPUs, 4 GiB each; three VMs of 2 GiB wanted on a (6 of 4:
	 * 66.7 each, 200); one to b: a 2 x 100, b 100 = 300: fairness-memory */
	struct drs_host h[2] = { host("a", 8, 4 * GIB), host("b", 8, 4 * GIB) };
	struct drs_vm v[3] = { vm("m0", 0, 0.1, 2 * GIB), vm("m1", 0, 0.1, 2 * GIB), vm("m2", 0, 0.1, 2 * GIB) };
	struct drs_params p = { .threshold = 3, .cost_points_per_gib = DRS_COST_POINTS_PER_GIB };
	struct drs_rec r[4];
	int n = drs_recommend(h, 2, v, 3, &p, r, 4);
	CHECK("memory over-commit: one VM moves for memory fairness, gaining 100 points at a cost of 4",
	      n == 1 && r[0].reason == DRS_REASON_FAIRNESS_MEMORY && near(r[0].gain, 100) && near(r[0].cost, 4),
	      "%d reason %d gain %g", n, n ? (int)r[0].reason : -1, n ? r[0].gain : 0);
}

static void rules(void)
{
	struct drs_host h[3] = { host("a", 4, 16 * GIB), host("b", 4, 16 * GIB), host("c", 4, 16 * GIB) };
	struct drs_params p = { .threshold = 3, .cost_points_per_gib = DRS_COST_POINTS_PER_GIB };
	struct drs_rec r[8];
	/* anti-affinity: x and y (group 0) on a: y, the later, must leave (to b: the first of equal ones) */
	struct drs_vm v[4] = { vm("x", 0, 0.5, GIB), vm("y", 0, 0.5, GIB), vm("u", 1, 0.5, GIB), vm("w", 2, 0.5, GIB) };
	v[0].apart = v[1].apart = 1;
	int n = drs_recommend(h, 3, v, 2, &p, r, 8);
	CHECK("anti-affinity broken: the later VM moves away, for the rule", n == 1 && r[0].vm == 1 && r[0].to != 0 &&
	      r[0].reason == DRS_REASON_RULE, "%d", n);
	/* anti-affinity in balancing: y and z (1 CPU each) share 1-CPU host a (50% each); b has 4 CPUs
	 * and x. Either could move to b for 100 points, but y may not join x: z moves */
	struct drs_host h1[2] = { host("a", 1, 16 * GIB), host("b", 4, 16 * GIB) };
	struct drs_vm s3[3] = { vm("x", 1, 1, GIB), vm("y", 0, 1, GIB), vm("z", 0, 1, GIB) };
	s3[0].apart = s3[1].apart = 1;
	n = drs_recommend(h1, 2, s3, 3, &p, r, 8);
	CHECK("anti-affinity holds in balancing: z, not y (the first of equals), joins x on b",
	      n == 1 && r[0].vm == 2 && r[0].to == 1, "%d: %d->%d", n, n ? r[0].vm : -1, n ? r[0].to : -1);
	s3[0].apart = s3[1].apart = 0;
	n = drs_recommend(h1, 2, s3, 3, &p, r, 8);
	CHECK("without the rule y, the first of equals, is the one that moves", n == 1 && r[0].vm == 1, "%d", n);
	/* affinity: u (on b) and w (on c) in group 0: w, the later, joins u on b */
	v[2].together = v[3].together = 1;
	v[0].apart = v[1].apart = 0;
	v[1].host = 1;
	n = drs_recommend(h, 3, v, 4, &p, r, 8);
	CHECK("affinity broken: the later VM joins the other on its host", n == 1 && r[0].vm == 3 && r[0].to == 1 &&
	      r[0].reason == DRS_REASON_RULE, "%d: %d->%d", n, n ? r[0].vm : -1, n ? r[0].to : -1);
	/* affinity in an evacuation: u and w together on b, which is evacuated: both go to the same host */
	v[3].host = 1;
	h[1].evacuate = true;
	h[1].accepts = false;
	n = drs_recommend(h, 3, v, 4, &p, r, 8);
	bool same = n == 3 && r[1].vm == 2 && r[2].vm == 3 && r[1].to == r[2].to && r[1].to >= 0;
	CHECK("affinity in an evacuation: both members go to one host", same, "%d: %d->%d, %d->%d", n, n > 1 ? r[1].vm : -1,
	      n > 1 ? r[1].to : -1, n > 2 ? r[2].vm : -1, n > 2 ? r[2].to : -1);
}

/* Of equal moves, one DRS applies itself (a VM that is not manual) goes
 * first, before the last pass's hint: two VMs of 1 CPU on a 1-CPU host,
 * another empty 1-CPU host; moving either gains the same (50+50 -> 100+100). */
static void manual_vms(void)
{
	struct drs_host h[2] = { host("h0", 1, GIB), host("h1", 1, GIB) };
	struct drs_vm v[2] = { vm("a", 0, 1, 0), vm("b", 0, 1, 0) };
	struct drs_params p = { .threshold = 3, .cost_points_per_gib = DRS_COST_POINTS_PER_GIB };
	struct drs_rec r[4];
	v[0].manual = true;
	v[0].hint = 1; /* the last pass recommended a -> h1 */
	int n = drs_recommend(h, 2, v, 2, &p, r, 4);
	CHECK("of equal moves, the VM DRS may move itself goes first (before the hint of a manual one)",
	      n == 1 && r[0].vm == 1 && r[0].to == 1, "n=%d vm=%d to=%d", n, n ? r[0].vm : -1, n ? r[0].to : -1);
	v[0].manual = false;
	n = drs_recommend(h, 2, v, 2, &p, r, 4);
	CHECK("both automatic: the hint decides", n == 1 && r[0].vm == 0, "n=%d vm=%d", n, n ? r[0].vm : -1);
}

int main(void)
{
	manual_vms();
	scores();
	buckets();
	spread();
	mandatory();
	memory_reason();
	rules();
	printf("unit_drs: %d failures\n", failures);
	return failures != 0;
}
