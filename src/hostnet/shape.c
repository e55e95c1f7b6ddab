/* Rate shaping of the traffic towards a VM: a tbf (token bucket filter)
 * qdisc at the root of the VM's tap, built with libnl's rtnl_qdisc and
 * rtnl_qdisc_tbf_* calls (RTM_NEWQDISC with NLM_F_CREATE|NLM_F_REPLACE,
 * which installs it or changes one already there).
 *
 * The tap's transmit side is what the host sends to the VM, so a root qdisc
 * on it holds frames back before the device model ever sees them. The
 * other direction, VM -> host, cannot be shaped on the tap without an
 * ingress policer that drops; the device model paces its own transmit
 * queue with struct token_bucket instead (token_bucket.c). */
#include "hostnet/hostnet.h"
#include "hostnet/nl.h"
#include "common/util.h"
#include <errno.h>
#include <string.h>
#include <linux/pkt_sched.h>
#include <netlink/route/qdisc.h>
#include <netlink/route/qdisc/tbf.h>
#include <netlink/route/tc.h>

#define TBF_KIND "tbf"
#define ETH_HEADER_BYTES 14

int hostnet_shape_set(const char *name, const struct hostnet_tbf *tbf, char *err, size_t errlen)
{
	uint32_t latency = tbf->latency_us ? tbf->latency_us : HOSTNET_TBF_LATENCY_US_DEFAULT;
	struct rtnl_qdisc *q = NULL;
	struct rtnl_link *link;
	struct hnl nl;
	char why[256];
	int rc;

	if (tbf->rate == 0 || tbf->rate > HOSTNET_TBF_RATE_MAX) {
		errf(err, errlen, "rate for %s: %llu bytes/s is out of range (1-%llu)", name,
		     (unsigned long long)tbf->rate, HOSTNET_TBF_RATE_MAX);
		return -ERANGE;
	}
	if (latency > 10000000) {
		errf(err, errlen, "latency for %s: %u us is more than 10 s", name, latency);
		return -ERANGE;
	}
	rc = hnl_open(&nl, err, errlen);
	if (rc)
		return rc;
	rc = hnl_link_get(&nl, "interface", name, &link, err, errlen);
	if (rc)
		goto out_nl;
	if (tbf->burst < rtnl_link_get_mtu(link) + ETH_HEADER_BYTES || tbf->burst > INT32_MAX) {
		errf(err, errlen, "burst for %s: %u bytes; it must hold one full frame (MTU %u + %d) and be below 2 GiB",
		     name, tbf->burst, rtnl_link_get_mtu(link), ETH_HEADER_BYTES);
		rc = -ERANGE;
		goto out;
	}
	if (tbf->rate * latency / 1000000 + tbf->burst > INT32_MAX) { /* libnl keeps the limit in an int */
		errf(err, errlen, "shaping %s: a queue of %llu bytes/s x %u us + %u bytes is 2 GiB or more; lower the latency",
		     name, (unsigned long long)tbf->rate, latency, tbf->burst);
		rc = -ERANGE;
		goto out;
	}
	q = rtnl_qdisc_alloc();
	if (!q) {
		rc = -ENOMEM;
		errf(err, errlen, "shaping %s: out of memory", name);
		goto out;
	}
	rtnl_tc_set_link(TC_CAST(q), link); /* ifindex, and the MTU for the rate table */
	rtnl_tc_set_parent(TC_CAST(q), TC_H_ROOT);
	rc = rtnl_tc_set_kind(TC_CAST(q), TBF_KIND);
	if (rc < 0) {
		errf(err, errlen, "shaping %s: libnl has no tbf module (%s)", name, nl_geterror(rc));
		rc = -EOPNOTSUPP;
		goto out;
	}
	rtnl_qdisc_tbf_set_rate(q, (int)tbf->rate, (int)tbf->burst, 0);
	if (rtnl_qdisc_tbf_set_limit_by_latency(q, (int)latency) < 0) {
		errf(err, errlen, "shaping %s: cannot compute the queue limit", name);
		rc = -EINVAL;
		goto out;
	}
	hnl_reset(&nl);
	rc = hnl_errno(&nl, rtnl_qdisc_add(nl.sk, q, NLM_F_CREATE | NLM_F_REPLACE));
	if (rc == -ENOENT || rc == -EOPNOTSUPP)
		errf(err, errlen, "shaping %s: %s (is CONFIG_NET_SCH_TBF in this kernel?)", name,
		     hnl_why(&nl, rc, why, sizeof(why)));
	else if (rc)
		errf(err, errlen, "shaping %s: %s", name, hnl_why(&nl, rc, why, sizeof(why)));
out:
	if (q)
		rtnl_qdisc_put(q);
	rtnl_link_put(link);
out_nl:
	hnl_close(&nl);
	return rc;
}

/* The root qdisc of ifindex from a fresh dump; NULL when the kernel has none to report. */
static int root_qdisc(struct hnl *nl, int ifindex, struct rtnl_qdisc **q)
{
	struct nl_cache *cache;
	int rc;

	*q = NULL;
	hnl_reset(nl);
	rc = hnl_errno(nl, rtnl_qdisc_alloc_cache(nl->sk, &cache));
	if (rc)
		return rc;
	*q = rtnl_qdisc_get_by_parent(cache, ifindex, TC_H_ROOT);
	nl_cache_free(cache);
	return 0;
}

int hostnet_shape_get(const char *name, struct hostnet_tbf *tbf, bool *present, char *err, size_t errlen)
{
	struct rtnl_qdisc *q;
	struct hnl nl;
	char why[256];
	const char *kind;
	int rc, ifindex;

	*present = false;
	memset(tbf, 0, sizeof(*tbf));
	rc = hostnet_link_ifindex(name, &ifindex, err, errlen);
	if (rc)
		return rc;
	rc = hnl_open(&nl, err, errlen);
	if (rc)
		return rc;
	rc = root_qdisc(&nl, ifindex, &q);
	if (rc) {
		errf(err, errlen, "reading the qdiscs of %s: %s", name, hnl_why(&nl, rc, why, sizeof(why)));
		goto out;
	}
	kind = q ? rtnl_tc_get_kind(TC_CAST(q)) : NULL;
	if (kind && !strcmp(kind, TBF_KIND)) {
		int rate = rtnl_qdisc_tbf_get_rate(q), bucket = rtnl_qdisc_tbf_get_rate_bucket(q),
		    limit = rtnl_qdisc_tbf_get_limit(q);
		*present = true;
		tbf->rate = rate > 0 ? (uint64_t)rate : 0;
		tbf->burst = bucket > 0 ? (uint32_t)bucket : 0;
		tbf->limit = limit > 0 ? (uint32_t)limit : 0;
		if (tbf->rate && tbf->limit > tbf->burst) /* the latency the limit stands for */
			tbf->latency_us = (uint32_t)((uint64_t)(tbf->limit - tbf->burst) * 1000000 / tbf->rate);
	}
	if (q)
		rtnl_qdisc_put(q);
out:
	hnl_close(&nl);
	return rc;
}

int hostnet_shape_clear(const char *name, char *err, size_t errlen)
{
	struct rtnl_qdisc *q;
	struct hnl nl;
	char why[256];
	int rc, ifindex;

	rc = hostnet_link_ifindex(name, &ifindex, err, errlen);
	if (rc)
		return rc;
	rc = hnl_open(&nl, err, errlen);
	if (rc)
		return rc;
	q = rtnl_qdisc_alloc();
	if (!q) {
		errf(err, errlen, "unshaping %s: out of memory", name);
		rc = -ENOMEM;
		goto out;
	}
	rtnl_tc_set_ifindex(TC_CAST(q), ifindex);
	rtnl_tc_set_parent(TC_CAST(q), TC_H_ROOT);
	hnl_reset(&nl);
	rc = hnl_errno(&nl, rtnl_qdisc_delete(nl.sk, q));
	if (rc == -ENOENT) /* only the default qdisc, which has no handle to delete */
		rc = 0;
	if (rc)
		errf(err, errlen, "unshaping %s: %s", name, hnl_why(&nl, rc, why, sizeof(why)));
	rtnl_qdisc_put(q);
out:
	hnl_close(&nl);
	return rc;
}
