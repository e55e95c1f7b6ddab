/* Unit test: assignable hardware (src/common/hardware.c): device and
 * request specs, their checks, and the matching of requests to a host's
 * devices, including the case a greedy match gets wrong and the messages
 * that name the missing device. Also the DRS pass's use of it: a move
 * only to a host with a free matching device (drs_recommend's fits). */
#include "common/hardware.h"
#include "center/drs.h"
#include <errno.h>
#include <stdio.h>
#include <string.h>

static int failures;

#define CHECK(name, cond, ...)                                        \
	do {                                                          \
		if (cond) {                                           \
			printf("PASS hardware: %s\n", name);          \
		} else {                                              \
			printf("FAIL hardware: %s: ", name);          \
			printf(__VA_ARGS__);                          \
			printf("\n");                                 \
			failures++;                                   \
		}                                                     \
	} while (0)

static void specs(void)
{
	char err[256] = "", d[200];
	json_t *o = hw_spec_parse("class=gpu,vendor=acme,model=x1,count=2", true, err, sizeof(err));
	CHECK("a host's device spec", o && json_integer_value(json_object_get(o, "count")) == 2 &&
	      !strcmp(hw_describe(o, d, sizeof(d)), "class=gpu,vendor=acme,model=x1"), "%s", o ? d : err);
	json_decref(o);
	o = hw_spec_parse("class=fpga", true, err, sizeof(err));
	CHECK("count defaults to 1", o && json_integer_value(json_object_get(o, "count")) == 1, "%s", err);
	json_decref(o);
	o = hw_spec_parse("vendor=acme", true, err, sizeof(err));
	CHECK("a host's device needs a class", !o && strstr(err, "needs a class"), "%s", err);
	json_decref(o);
	o = hw_spec_parse("class=gpu,count=2", false, err, sizeof(err));
	CHECK("a VM's request has no count", !o && strstr(err, "unknown device attribute 'count'"), "%s", err);
	json_decref(o);
	o = hw_spec_parse("class=gpu,count=65", true, err, sizeof(err));
	CHECK("count is bounded", !o && strstr(err, "1..64"), "%s", err);
	json_decref(o);
	o = hw_spec_parse("class=g p u", false, err, sizeof(err));
	CHECK("values are checked", !o && strstr(err, "must be"), "%s", err);
	json_decref(o);
	o = hw_spec_parse("class=gpu,class=nic", false, err, sizeof(err));
	CHECK("an attribute given twice is refused", !o && strstr(err, "twice"), "%s", err);
	json_decref(o);
	o = hw_spec_parse("gpu", false, err, sizeof(err));
	CHECK("not KEY=VALUE is refused", !o && strstr(err, "not KEY=VALUE"), "%s", err);
	json_decref(o);
	json_t *l = json_loads("[{\"class\": \"gpu\"}, {\"colour\": \"red\"}]", 0, NULL);
	CHECK("a list names its bad entry", hw_list_check(l, false, err, sizeof(err)) && strstr(err, "hardware 1: unknown"),
	      "%s", err);
	json_decref(l);
	l = json_loads("[{}]", 0, NULL);
	CHECK("an empty request is refused", hw_list_check(l, false, err, sizeof(err)) && strstr(err, "at least one"), "%s", err);
	json_decref(l);
	l = json_loads("{\"class\": \"gpu\"}", 0, NULL);
	CHECK("a list must be an array", hw_list_check(l, false, err, sizeof(err)), "accepted");
	json_decref(l);
	l = json_loads("[{\"class\":\"a\"},{\"class\":\"a\"},{\"class\":\"a\"},{\"class\":\"a\"},{\"class\":\"a\"},"
		       "{\"class\":\"a\"},{\"class\":\"a\"},{\"class\":\"a\"},{\"class\":\"a\"}]", 0, NULL);
	CHECK("at most 8 requests per VM", hw_list_check(l, false, err, sizeof(err)) && strstr(err, "at most 8"), "%s", err);
	json_decref(l);
}

static void matching(void)
{
	char why[300];
	int used[4];
	/* one x1 GPU and one x2 GPU */
	json_t *host = json_loads("[{\"class\":\"gpu\",\"model\":\"x1\",\"count\":1},{\"class\":\"gpu\",\"model\":\"x2\",\"count\":1}]",
				  0, NULL);
	json_t *any = json_loads("[{\"class\":\"gpu\"}]", 0, NULL), *x1 = json_loads("[{\"class\":\"gpu\",\"model\":\"x1\"}]", 0, NULL);
	json_t *nic = json_loads("[{\"class\":\"nic\"}]", 0, NULL);
	/* a greedy match gives "any" the x1 (the first kind), then x1 finds none */
	struct hw_holder h[3] = { { "a", any }, { "b", x1 }, { "c", any } };
	CHECK("any GPU then an x1: the any-GPU request moves to the x2", hw_fit(host, h, 2, used, why, sizeof(why)) == 0 &&
	      used[0] == 1 && used[1] == 1, "%s (used %d %d)", why, used[0], used[1]);
	CHECK("a third GPU does not fit; the message names the users",
	      hw_fit(host, h, 3, NULL, why, sizeof(why)) == -ENOSPC &&
	      !strcmp(why, "no free class=gpu device: the host has 2, in use by a, b"), "%s", why);
	struct hw_holder n1[1] = { { "n", nic } };
	CHECK("a class the host lacks", hw_fit(host, n1, 1, NULL, why, sizeof(why)) == -ENOSPC &&
	      !strcmp(why, "no class=nic device on this host"), "%s", why);
	CHECK("no devices at all", hw_fit(NULL, n1, 1, NULL, why, sizeof(why)) == -ENOSPC &&
	      !strcmp(why, "no class=nic device on this host"), "%s", why);
	struct hw_holder none[2] = { { "p", NULL }, { "q", json_array() } };
	CHECK("VMs that ask for nothing always fit", hw_fit(NULL, none, 2, NULL, why, sizeof(why)) == 0, "%s", why);
	json_decref(none[1].requests);
	json_t *dev = json_loads("{\"class\":\"gpu\",\"vendor\":\"acme\",\"model\":\"x1\"}", 0, NULL);
	json_t *rq = json_loads("{\"vendor\":\"acme\"}", 0, NULL), *rq2 = json_loads("{\"vendor\":\"other\"}", 0, NULL);
	CHECK("a request matches on the attributes it names", hw_matches(rq, dev) && !hw_matches(rq2, dev), "mismatch");
	json_decref(dev);
	json_decref(rq);
	json_decref(rq2);
	json_decref(host);
	json_decref(any);
	json_decref(x1);
	json_decref(nic);
}

/* DRS: g0 and g1 ask for a GPU; host 1 has one, host 2 none, host 0 two. */
static json_t *gpu_req, *host_devs[3];
static const int wants_gpu[3] = { 1, 1, 0 };

static bool fits(void *ctx, int i, int j, const int *place)
{
	struct hw_holder h[4];
	size_t n = 0;
	for (int k = 0; k < 3; k++)
		if (k != i && place[k] == j && wants_gpu[k])
			h[n++] = (struct hw_holder){ "vm", gpu_req };
	if (wants_gpu[i])
		h[n++] = (struct hw_holder){ "vm", gpu_req };
	return hw_fit(host_devs[j], h, n, NULL, NULL, 0) == 0;
}

static void drs(void)
{
	gpu_req = json_loads("[{\"class\":\"gpu\"}]", 0, NULL);
	host_devs[0] = json_loads("[{\"class\":\"gpu\",\"count\":2}]", 0, NULL);
	host_devs[1] = json_loads("[{\"class\":\"gpu\",\"count\":1}]", 0, NULL);
	host_devs[2] = json_array();
	struct drs_host hosts[3];
	for (int j = 0; j < 3; j++)
		hosts[j] = (struct drs_host){ .name = j == 0 ? "h0" : j == 1 ? "h1" : "h2", .cpus = 1, .memory = 1ULL << 32,
					      .accepts = true, .evacuate = j == 0 };
	struct drs_vm vms[3];
	for (int i = 0; i < 3; i++)
		vms[i] = (struct drs_vm){ .name = i == 0 ? "g0" : i == 1 ? "g1" : "p", .host = 0, .cpu_demand = 1,
					  .mem_demand = 1 << 20, .mem_move = 1 << 20, .movable = true, .allowed = 7, .hint = -1 };
	struct drs_params p = { .threshold = 3, .cost_points_per_gib = 2, .fits = fits };
	struct drs_rec r[8];
	/* evacuating h0: g0 takes h1's GPU; g1 finds no free GPU (h2 has none) and is blocked; p goes to h2 */
	int n = drs_recommend(hosts, 3, vms, 3, &p, r, 8);
	CHECK("evacuation: one GPU VM to the host with the free GPU, the other blocked, the plain VM anywhere",
	      n == 3 && r[0].vm == 0 && r[0].to == 1 && r[1].vm == 1 && r[1].to == -1 && r[2].vm == 2 && r[2].to == 2,
	      "n=%d: %d->%d %d->%d %d->%d", n, r[0].vm, r[0].to, n > 1 ? r[1].vm : -1, n > 1 ? r[1].to : -1,
	      n > 2 ? r[2].vm : -1, n > 2 ? r[2].to : -1);
	/* without the check both would go to h1 (the better score) */
	p.fits = NULL;
	n = drs_recommend(hosts, 3, vms, 3, &p, r, 8);
	CHECK("without devices in the way, g1 has a destination", n == 3 && r[1].to >= 0, "n=%d to=%d", n, n > 1 ? r[1].to : -9);
	for (int j = 0; j < 3; j++)
		json_decref(host_devs[j]);
	json_decref(gpu_req);
}

int main(void)
{
	specs();
	matching();
	drs();
	printf("unit_hardware: %d failures\n", failures);
	return failures != 0;
}
