/* Any network interface by name: its name rules, ifindex, state, MTU and
 * counters, read and changed with rtnl_link_get_kernel/rtnl_link_change.
 * Bridges and taps build on these (bridge.c, tap.c). */
#include "hostnet/hostnet.h"
#include "hostnet/nl.h"
#include "common/util.h"
#include <errno.h>
#include <string.h>
#include <linux/if.h>
#include <netlink/addr.h>

int hostnet_ifname_check(const char *name, bool allow_template, char *err, size_t errlen)
{
	const char *pct;
	size_t len;

	if (!name || !*name) {
		errf(err, errlen, "missing interface name");
		return -EINVAL;
	}
	len = strnlen(name, IFNAMSIZ + 1);
	if (len > HOSTNET_IFNAME_MAX) {
		errf(err, errlen, "interface name '%.*s...' is too long (at most %d characters)", HOSTNET_IFNAME_MAX, name,
		     HOSTNET_IFNAME_MAX);
		return -ENAMETOOLONG;
	}
	if (!strcmp(name, ".") || !strcmp(name, "..")) {
		errf(err, errlen, "'%s' is not a valid interface name", name);
		return -EINVAL;
	}
	for (const char *p = name; *p; p++) {
		unsigned char c = (unsigned char)*p;
		if (c <= ' ' || c >= 0x7f || c == '/' || c == ':') {
			errf(err, errlen, "invalid interface name '%s': no '/', ':', spaces or control characters", name);
			return -EINVAL;
		}
	}
	pct = strchr(name, '%');
	if (pct && (!allow_template || pct[1] != 'd' || strchr(pct + 2, '%'))) {
		errf(err, errlen, allow_template ? "invalid interface name '%s': a template has exactly one '%%d'"
						 : "invalid interface name '%s': '%%' is not allowed here",
		     name);
		return -EINVAL;
	}
	return 0;
}

/* Opens a socket and looks name up; on failure err is set and nothing is held. */
static int link_lookup(struct hnl *nl, const char *name, struct rtnl_link **link, char *err, size_t errlen)
{
	int rc = hnl_open(nl, err, errlen);
	if (rc)
		return rc;
	rc = hnl_link_get(nl, "interface", name, link, err, errlen);
	if (rc)
		hnl_close(nl);
	return rc;
}

int hostnet_link_ifindex(const char *name, int *ifindex, char *err, size_t errlen)
{
	struct rtnl_link *link;
	struct hnl nl;
	int rc = link_lookup(&nl, name, &link, err, errlen);
	if (rc)
		return rc;
	*ifindex = rtnl_link_get_ifindex(link);
	rtnl_link_put(link);
	hnl_close(&nl);
	return 0;
}

int hostnet_link_get(const char *name, struct hostnet_link_info *info, char *err, size_t errlen)
{
	struct rtnl_link *link;
	struct nl_addr *addr;
	const char *kind;
	struct hnl nl;
	int rc = link_lookup(&nl, name, &link, err, errlen);
	if (rc)
		return rc;
	memset(info, 0, sizeof(*info));
	info->ifindex = rtnl_link_get_ifindex(link);
	info->master_ifindex = rtnl_link_get_master(link);
	info->mtu = rtnl_link_get_mtu(link);
	info->up = rtnl_link_get_flags(link) & IFF_UP;
	info->carrier = rtnl_link_get_flags(link) & IFF_LOWER_UP;
	kind = rtnl_link_get_type(link);
	if (kind)
		snprintf(info->kind, sizeof(info->kind), "%s", kind);
	addr = rtnl_link_get_addr(link);
	if (addr && nl_addr_get_len(addr) == HOSTNET_MAC_BYTES)
		memcpy(info->mac, nl_addr_get_binary_addr(addr), HOSTNET_MAC_BYTES);
	rtnl_link_put(link);
	hnl_close(&nl);
	return 0;
}

/* Applies changes to the link called name; what says what for the message. */
static int link_change(const char *name, struct rtnl_link *changes, const char *what, char *err, size_t errlen)
{
	struct rtnl_link *link;
	struct hnl nl;
	char why[256];
	int rc = link_lookup(&nl, name, &link, err, errlen);
	if (rc)
		return rc;
	hnl_reset(&nl);
	rc = hnl_errno(&nl, rtnl_link_change(nl.sk, link, changes, 0));
	if (rc)
		errf(err, errlen, "%s of %s: %s", what, name, hnl_why(&nl, rc, why, sizeof(why)));
	rtnl_link_put(link);
	hnl_close(&nl);
	return rc;
}

int hostnet_link_set_up(const char *name, bool up, char *err, size_t errlen)
{
	struct rtnl_link *changes = rtnl_link_alloc();
	int rc;

	if (!changes) {
		errf(err, errlen, "bringing %s %s: out of memory", name, up ? "up" : "down");
		return -ENOMEM;
	}
	if (up)
		rtnl_link_set_flags(changes, IFF_UP);
	else
		rtnl_link_unset_flags(changes, IFF_UP);
	rc = link_change(name, changes, up ? "bringing up" : "bringing down", err, errlen);
	rtnl_link_put(changes);
	return rc;
}

int hostnet_link_set_mtu(const char *name, unsigned mtu, char *err, size_t errlen)
{
	struct rtnl_link *changes;
	char what[48];
	int rc;

	if (mtu < 68 || mtu > 65535) {
		errf(err, errlen, "MTU %u for %s is out of range (68-65535)", mtu, name);
		return -EINVAL;
	}
	changes = rtnl_link_alloc();
	if (!changes) {
		errf(err, errlen, "setting the MTU of %s: out of memory", name);
		return -ENOMEM;
	}
	rtnl_link_set_mtu(changes, mtu);
	snprintf(what, sizeof(what), "setting MTU %u", mtu);
	rc = link_change(name, changes, what, err, errlen);
	rtnl_link_put(changes);
	return rc;
}

int hostnet_link_stats(const char *name, struct hostnet_link_stats *st, char *err, size_t errlen)
{
	struct rtnl_link *link;
	struct hnl nl;
	int rc = link_lookup(&nl, name, &link, err, errlen);
	if (rc)
		return rc;
	st->rx_packets = rtnl_link_get_stat(link, RTNL_LINK_RX_PACKETS);
	st->rx_bytes = rtnl_link_get_stat(link, RTNL_LINK_RX_BYTES);
	st->rx_dropped = rtnl_link_get_stat(link, RTNL_LINK_RX_DROPPED);
	st->rx_errors = rtnl_link_get_stat(link, RTNL_LINK_RX_ERRORS);
	st->tx_packets = rtnl_link_get_stat(link, RTNL_LINK_TX_PACKETS);
	st->tx_bytes = rtnl_link_get_stat(link, RTNL_LINK_TX_BYTES);
	st->tx_dropped = rtnl_link_get_stat(link, RTNL_LINK_TX_DROPPED);
	st->tx_errors = rtnl_link_get_stat(link, RTNL_LINK_TX_ERRORS);
	rtnl_link_put(link);
	hnl_close(&nl);
	return 0;
}
