/* Linux bridges as VM switches: check that a bridge is there and is one,
 * create and delete bridges, make a tap a port of one, and VLANs.
 *
 * The VLAN model is the access port of a physical switch: the bridge has
 * VLAN filtering on, and each VM's tap is in exactly one VLAN, as its PVID
 * (untagged frames from the VM join it) and untagged (frames leave towards
 * the VM without a tag). A new port starts in the bridge's default VLAN 1;
 * making it an access port of another VLAN removes VLAN 1 and any other,
 * so ports in different VLANs never see each other's frames.
 *
 * libnl-3.7 has no call for bridge VLANs or IFLA_BR_VLAN_FILTERING, so
 * those messages are written here with its nlmsg API, as iproute2's
 * `bridge vlan` and `ip link ... type bridge vlan_filtering` send them:
 * RTM_SETLINK/RTM_DELLINK with family AF_BRIDGE and IFLA_AF_SPEC holding
 * IFLA_BRIDGE_VLAN_INFO entries; RTM_NEWLINK with IFLA_LINKINFO/
 * IFLA_INFO_DATA/IFLA_BR_VLAN_FILTERING; a dump of RTM_GETLINK in
 * AF_BRIDGE with RTEXT_FILTER_BRVLAN to read a port's VLANs back. */
#include "hostnet/hostnet.h"
#include "hostnet/nl.h"
#include "common/util.h"
#include <errno.h>
#include <string.h>
#include <linux/if_bridge.h>
#include <linux/if_link.h>
#include <linux/rtnetlink.h>
#include <netlink/handlers.h>
#include <netlink/route/link/bridge.h>

#define BRIDGE_KIND "bridge"
#define VLAN_RANGES_PER_MSG 128 /* two attributes of 8 bytes each: well inside one page */
#define NO_VLAN_FILTERING_HINT "this kernel has no bridge VLAN filtering (CONFIG_BRIDGE_VLAN_FILTERING)"

/* "bridge X does not exist", "X is not a bridge (...)", or 0 with the link. */
static int bridge_get(struct hnl *nl, const char *bridge, struct rtnl_link **link, char *err, size_t errlen)
{
	const char *kind;
	int rc = hnl_link_get(nl, "bridge", bridge, link, err, errlen);
	if (rc)
		return rc;
	kind = rtnl_link_get_type(*link);
	if (!kind || strcmp(kind, BRIDGE_KIND)) {
		if (kind)
			errf(err, errlen, "%s is not a bridge (it is a device of kind %s)", bridge, kind);
		else
			errf(err, errlen, "%s is not a bridge (it is a device of no kind, like a physical NIC)", bridge);
		rtnl_link_put(*link);
		*link = NULL;
		return -EINVAL;
	}
	return 0;
}

int hostnet_bridge_check(const char *bridge, int *ifindex, char *err, size_t errlen)
{
	struct rtnl_link *link;
	struct hnl nl;
	int rc = hnl_open(&nl, err, errlen);
	if (rc)
		return rc;
	rc = bridge_get(&nl, bridge, &link, err, errlen);
	if (!rc) {
		if (ifindex)
			*ifindex = rtnl_link_get_ifindex(link);
		rtnl_link_put(link);
	}
	hnl_close(&nl);
	return rc;
}

int hostnet_bridge_create(const char *bridge, char *err, size_t errlen)
{
	struct rtnl_link *link;
	struct hnl nl;
	char why[256];
	int rc = hostnet_ifname_check(bridge, false, err, errlen);
	if (rc)
		return rc;
	rc = hnl_open(&nl, err, errlen);
	if (rc)
		return rc;
	link = rtnl_link_bridge_alloc();
	if (!link) {
		hnl_close(&nl);
		errf(err, errlen, "creating bridge %s: out of memory", bridge);
		return -ENOMEM;
	}
	rtnl_link_set_name(link, bridge);
	hnl_reset(&nl);
	rc = hnl_errno(&nl, rtnl_link_add(nl.sk, link, NLM_F_CREATE | NLM_F_EXCL));
	if (rc == -EEXIST)
		errf(err, errlen, "creating bridge %s: an interface named %s already exists", bridge, bridge);
	else if (rc)
		errf(err, errlen, "creating bridge %s: %s", bridge, hnl_why(&nl, rc, why, sizeof(why)));
	rtnl_link_put(link);
	hnl_close(&nl);
	return rc;
}

int hostnet_bridge_delete(const char *bridge, char *err, size_t errlen)
{
	struct rtnl_link *link;
	struct hnl nl;
	char why[256];
	int rc = hnl_open(&nl, err, errlen);
	if (rc)
		return rc;
	rc = bridge_get(&nl, bridge, &link, err, errlen);
	if (!rc) {
		hnl_reset(&nl);
		rc = hnl_errno(&nl, rtnl_link_delete(nl.sk, link));
		if (rc)
			errf(err, errlen, "deleting bridge %s: %s", bridge, hnl_why(&nl, rc, why, sizeof(why)));
		rtnl_link_put(link);
	}
	hnl_close(&nl);
	return rc;
}

/* Sets port's master to master_ifindex (0: none) and reads it back. */
static int set_master(struct hnl *nl, struct rtnl_link *port, int master_ifindex, int *now)
{
	struct rtnl_link *changes = rtnl_link_alloc(), *after = NULL;
	int rc;

	if (!changes)
		return -ENOMEM;
	rtnl_link_set_master(changes, master_ifindex);
	hnl_reset(nl);
	rc = hnl_errno(nl, rtnl_link_change(nl->sk, port, changes, 0));
	rtnl_link_put(changes);
	if (rc)
		return rc;
	hnl_reset(nl);
	rc = hnl_errno(nl, rtnl_link_get_kernel(nl->sk, rtnl_link_get_ifindex(port), NULL, &after));
	if (rc)
		return rc;
	*now = rtnl_link_get_master(after);
	rtnl_link_put(after);
	return 0;
}

int hostnet_bridge_attach(const char *bridge, const char *port, char *err, size_t errlen)
{
	struct rtnl_link *br = NULL, *p = NULL;
	struct hnl nl;
	char why[256];
	int rc, master = 0;

	rc = hnl_open(&nl, err, errlen);
	if (rc)
		return rc;
	rc = bridge_get(&nl, bridge, &br, err, errlen);
	if (rc)
		goto out;
	rc = hnl_link_get(&nl, "port", port, &p, err, errlen);
	if (rc)
		goto out;
	if (rtnl_link_get_ifindex(p) == rtnl_link_get_ifindex(br)) {
		errf(err, errlen, "bridge %s cannot be a port of itself", bridge);
		rc = -EINVAL;
		goto out;
	}
	rc = set_master(&nl, p, rtnl_link_get_ifindex(br), &master);
	if (rc) {
		errf(err, errlen, "attaching %s to bridge %s: %s", port, bridge, hnl_why(&nl, rc, why, sizeof(why)));
		goto out;
	}
	if (master != rtnl_link_get_ifindex(br)) {
		errf(err, errlen, "attaching %s to bridge %s: the kernel accepted it but %s has master ifindex %d", port,
		     bridge, port, master);
		rc = -EIO;
	}
out:
	if (p)
		rtnl_link_put(p);
	if (br)
		rtnl_link_put(br);
	hnl_close(&nl);
	return rc;
}

int hostnet_bridge_detach(const char *port, char *err, size_t errlen)
{
	struct rtnl_link *p;
	struct hnl nl;
	char why[256];
	int rc, master = 0;

	rc = hnl_open(&nl, err, errlen);
	if (rc)
		return rc;
	rc = hnl_link_get(&nl, "port", port, &p, err, errlen);
	if (rc)
		goto out_nl;
	if (rtnl_link_get_master(p) == 0)
		goto out; /* not in a bridge: nothing to do */
	rc = set_master(&nl, p, 0, &master);
	if (rc)
		errf(err, errlen, "detaching %s from its bridge: %s", port, hnl_why(&nl, rc, why, sizeof(why)));
	else if (master != 0) {
		errf(err, errlen, "detaching %s from its bridge: it still has master ifindex %d", port, master);
		rc = -EIO;
	}
out:
	rtnl_link_put(p);
out_nl:
	hnl_close(&nl);
	return rc;
}

/* ---- VLAN filtering on the bridge ---- */

int hostnet_bridge_set_vlan_filtering(const char *bridge, bool on, char *err, size_t errlen)
{
	struct ifinfomsg ifi = { .ifi_family = AF_UNSPEC };
	struct nlattr *info, *data;
	struct rtnl_link *br;
	struct nl_msg *msg;
	struct hnl nl;
	char why[256];
	int rc = hnl_open(&nl, err, errlen);
	if (rc)
		return rc;
	rc = bridge_get(&nl, bridge, &br, err, errlen);
	if (rc)
		goto out;
	ifi.ifi_index = rtnl_link_get_ifindex(br);
	rtnl_link_put(br);
	msg = nlmsg_alloc_simple(RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK);
	if (!msg || nlmsg_append(msg, &ifi, sizeof(ifi), NLMSG_ALIGNTO) < 0 ||
	    !(info = nla_nest_start(msg, IFLA_LINKINFO)) || nla_put_string(msg, IFLA_INFO_KIND, BRIDGE_KIND) < 0 ||
	    !(data = nla_nest_start(msg, IFLA_INFO_DATA)) || nla_put_u8(msg, IFLA_BR_VLAN_FILTERING, on) < 0) {
		nlmsg_free(msg);
		errf(err, errlen, "bridge %s: building the netlink message: out of memory", bridge);
		rc = -ENOMEM;
		goto out;
	}
	nla_nest_end(msg, data);
	nla_nest_end(msg, info);
	rc = hnl_request(&nl, msg);
	if (rc == -EOPNOTSUPP && on)
		errf(err, errlen, "turning on VLAN filtering on bridge %s: %s", bridge, NO_VLAN_FILTERING_HINT);
	else if (rc)
		errf(err, errlen, "turning %s VLAN filtering on bridge %s: %s", on ? "on" : "off", bridge,
		     hnl_why(&nl, rc, why, sizeof(why)));
out:
	hnl_close(&nl);
	return rc;
}

static int parse_vlan_filtering(struct nlattr **tb, void *arg)
{
	struct nlattr *li[IFLA_INFO_MAX + 1], *bd[IFLA_BR_MAX + 1];
	bool *on = arg;

	*on = false; /* a kernel without VLAN filtering does not report the attribute */
	if (tb[IFLA_LINKINFO] && nla_parse_nested(li, IFLA_INFO_MAX, tb[IFLA_LINKINFO], NULL) == 0 &&
	    li[IFLA_INFO_DATA] && nla_parse_nested(bd, IFLA_BR_MAX, li[IFLA_INFO_DATA], NULL) == 0 &&
	    bd[IFLA_BR_VLAN_FILTERING] && nla_len(bd[IFLA_BR_VLAN_FILTERING]) >= 1)
		*on = nla_get_u8(bd[IFLA_BR_VLAN_FILTERING]);
	return 0;
}

int hostnet_bridge_get_vlan_filtering(const char *bridge, bool *on, char *err, size_t errlen)
{
	struct rtnl_link *br;
	struct hnl nl;
	char why[256];
	int rc = hnl_open(&nl, err, errlen);
	if (rc)
		return rc;
	rc = bridge_get(&nl, bridge, &br, err, errlen);
	if (!rc) {
		rc = hnl_getlink_raw(&nl, rtnl_link_get_ifindex(br), parse_vlan_filtering, on);
		if (rc)
			errf(err, errlen, "reading bridge %s: %s", bridge, hnl_why(&nl, rc, why, sizeof(why)));
		rtnl_link_put(br);
	}
	hnl_close(&nl);
	return rc;
}

/* ---- a port's VLANs ---- */

struct vlan_dump {
	int ifindex;
	struct hostnet_port_vlans *out;
	bool seen;
	int rc;
};

static void vlan_set(struct hostnet_port_vlans *v, unsigned vid, uint16_t flags)
{
	if (vid >= 4096 || hostnet_vlan_has(v->member, vid))
		return;
	v->member[vid / 64] |= 1ULL << (vid % 64);
	v->count++;
	if (flags & BRIDGE_VLAN_INFO_UNTAGGED)
		v->untagged[vid / 64] |= 1ULL << (vid % 64);
	if (flags & BRIDGE_VLAN_INFO_PVID)
		v->pvid = (uint16_t)vid;
}

static int vlan_dump_valid(struct nl_msg *msg, void *arg)
{
	struct vlan_dump *d = arg;
	struct nlmsghdr *h = nlmsg_hdr(msg);
	struct nlattr *tb[IFLA_MAX + 1], *a;
	struct ifinfomsg *ifi;
	unsigned range_start = 0;
	int rem;

	if (h->nlmsg_type != RTM_NEWLINK || !nlmsg_valid_hdr(h, sizeof(*ifi)))
		return NL_SKIP;
	ifi = nlmsg_data(h);
	if (ifi->ifi_index != d->ifindex || nlmsg_parse(h, sizeof(*ifi), tb, IFLA_MAX, NULL) < 0)
		return NL_SKIP;
	d->seen = true;
	if (tb[IFLA_MASTER] && nla_len(tb[IFLA_MASTER]) >= 4)
		d->out->master_ifindex = (int)nla_get_u32(tb[IFLA_MASTER]);
	if (!tb[IFLA_AF_SPEC])
		return NL_OK;
	nla_for_each_nested(a, tb[IFLA_AF_SPEC], rem) {
		const struct bridge_vlan_info *vi;
		if (nla_type(a) != IFLA_BRIDGE_VLAN_INFO || nla_len(a) < (int)sizeof(*vi))
			continue;
		vi = nla_data(a);
		if (vi->flags & BRIDGE_VLAN_INFO_RANGE_BEGIN) {
			range_start = vi->vid;
			continue;
		}
		if ((vi->flags & BRIDGE_VLAN_INFO_RANGE_END) && range_start && range_start <= vi->vid) {
			for (unsigned v = range_start; v <= vi->vid; v++)
				vlan_set(d->out, v, vi->flags);
			range_start = 0;
			continue;
		}
		vlan_set(d->out, vi->vid, vi->flags);
	}
	return NL_OK;
}

/* Fills v from a dump of the bridge ports' VLANs; -ENOTCONN when the
 * ifindex is no bridge port. */
static int port_vlans_read(struct hnl *nl, int ifindex, struct hostnet_port_vlans *v)
{
	struct vlan_dump d = { .ifindex = ifindex, .out = v };
	struct ifinfomsg ifi = { .ifi_family = AF_BRIDGE };
	struct nl_msg *msg;
	int rc;

	memset(v, 0, sizeof(*v));
	msg = nlmsg_alloc_simple(RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP);
	if (!msg || nlmsg_append(msg, &ifi, sizeof(ifi), NLMSG_ALIGNTO) < 0 ||
	    nla_put_u32(msg, IFLA_EXT_MASK, RTEXT_FILTER_BRVLAN) < 0) {
		nlmsg_free(msg);
		return -ENOMEM;
	}
	rc = hnl_send_recv(nl, msg, vlan_dump_valid, &d);
	if (rc)
		return rc;
	return d.seen ? 0 : -ENOTCONN;
}

/* A port of a bridge: its link; err says why not. */
static int port_get(struct hnl *nl, const char *port, struct rtnl_link **p, char *err, size_t errlen)
{
	struct rtnl_link *master = NULL;
	const char *kind;
	int rc = hnl_link_get(nl, "port", port, p, err, errlen);
	if (rc)
		return rc;
	if (rtnl_link_get_master(*p) == 0) {
		errf(err, errlen, "%s is not a port of any bridge (attach it first)", port);
		rc = -ENOTCONN;
		goto fail;
	}
	hnl_reset(nl);
	rc = hnl_errno(nl, rtnl_link_get_kernel(nl->sk, rtnl_link_get_master(*p), NULL, &master));
	if (rc) {
		errf(err, errlen, "%s: looking up its master (ifindex %d): %s", port, rtnl_link_get_master(*p),
		     hostnet_strerror(rc));
		goto fail;
	}
	kind = rtnl_link_get_type(master);
	if (!kind || strcmp(kind, BRIDGE_KIND)) {
		errf(err, errlen, "%s is a port of %s, which is not a bridge (it is a device of kind %s)", port,
		     rtnl_link_get_name(master), kind ? kind : "none");
		rc = -EINVAL;
	}
	rtnl_link_put(master);
	if (!rc)
		return 0;
fail:
	rtnl_link_put(*p);
	*p = NULL;
	return rc;
}

int hostnet_bridge_port_vlans(const char *port, struct hostnet_port_vlans *vlans, char *err, size_t errlen)
{
	struct rtnl_link *p;
	struct hnl nl;
	char why[256];
	int rc = hnl_open(&nl, err, errlen);
	if (rc)
		return rc;
	rc = port_get(&nl, port, &p, err, errlen);
	if (!rc) {
		rc = port_vlans_read(&nl, rtnl_link_get_ifindex(p), vlans);
		if (rc == -ENOTCONN)
			errf(err, errlen, "%s is not a port of a bridge", port);
		else if (rc)
			errf(err, errlen, "reading the VLANs of %s: %s", port, hnl_why(&nl, rc, why, sizeof(why)));
		rtnl_link_put(p);
	}
	hnl_close(&nl);
	return rc;
}

/* RTM_SETLINK (add) or RTM_DELLINK (remove) in AF_BRIDGE for ifindex with
 * the VLAN entries [first[i], last[i]] and flags. */
static int vlan_request(struct hnl *nl, int type, int ifindex, const uint16_t *first, const uint16_t *last,
			unsigned n, uint16_t flags)
{
	struct ifinfomsg ifi = { .ifi_family = AF_BRIDGE, .ifi_index = ifindex };
	struct nlattr *spec;
	struct nl_msg *msg = nlmsg_alloc_simple(type, NLM_F_REQUEST | NLM_F_ACK);

	if (!msg || nlmsg_append(msg, &ifi, sizeof(ifi), NLMSG_ALIGNTO) < 0 ||
	    !(spec = nla_nest_start(msg, IFLA_AF_SPEC)))
		goto nomem;
	for (unsigned i = 0; i < n; i++) {
		struct bridge_vlan_info vi = { .flags = flags, .vid = first[i] };
		if (first[i] != last[i]) {
			vi.flags |= BRIDGE_VLAN_INFO_RANGE_BEGIN;
			if (nla_put(msg, IFLA_BRIDGE_VLAN_INFO, sizeof(vi), &vi) < 0)
				goto nomem;
			vi.flags = (uint16_t)(flags | BRIDGE_VLAN_INFO_RANGE_END);
			vi.vid = last[i];
		}
		if (nla_put(msg, IFLA_BRIDGE_VLAN_INFO, sizeof(vi), &vi) < 0)
			goto nomem;
	}
	nla_nest_end(msg, spec);
	return hnl_request(nl, msg);
nomem:
	nlmsg_free(msg);
	return -ENOMEM;
}

/* Removes every VLAN of v but keep from the port, in runs. */
static int vlans_remove_others(struct hnl *nl, int ifindex, const struct hostnet_port_vlans *v, unsigned keep)
{
	uint16_t first[VLAN_RANGES_PER_MSG], last[VLAN_RANGES_PER_MSG];
	unsigned n = 0;
	int rc;

	for (unsigned vid = 1; vid < 4096; vid++) {
		if (vid == keep || !hostnet_vlan_has(v->member, vid))
			continue;
		if (n && last[n - 1] == vid - 1) {
			last[n - 1] = (uint16_t)vid;
			continue;
		}
		if (n == VLAN_RANGES_PER_MSG) {
			rc = vlan_request(nl, RTM_DELLINK, ifindex, first, last, n, 0);
			if (rc)
				return rc;
			n = 0;
		}
		first[n] = last[n] = (uint16_t)vid;
		n++;
	}
	return n ? vlan_request(nl, RTM_DELLINK, ifindex, first, last, n, 0) : 0;
}

int hostnet_bridge_port_set_access_vlan(const char *port, unsigned vid, char *err, size_t errlen)
{
	struct hostnet_port_vlans v;
	struct rtnl_link *p;
	uint16_t one;
	struct hnl nl;
	char why[256];
	int rc, ifindex;

	if (vid < HOSTNET_VLAN_MIN || vid > HOSTNET_VLAN_MAX) {
		errf(err, errlen, "VLAN %u for port %s is out of range (%d-%d)", vid, port ? port : "?", HOSTNET_VLAN_MIN,
		     HOSTNET_VLAN_MAX);
		return -EINVAL;
	}
	rc = hnl_open(&nl, err, errlen);
	if (rc)
		return rc;
	rc = port_get(&nl, port, &p, err, errlen);
	if (rc)
		goto out;
	ifindex = rtnl_link_get_ifindex(p);
	rtnl_link_put(p);
	one = (uint16_t)vid;
	rc = vlan_request(&nl, RTM_SETLINK, ifindex, &one, &one, 1, BRIDGE_VLAN_INFO_PVID | BRIDGE_VLAN_INFO_UNTAGGED);
	if (rc) {
		if (rc == -EOPNOTSUPP)
			errf(err, errlen, "putting %s in VLAN %u: %s", port, vid, NO_VLAN_FILTERING_HINT);
		else
			errf(err, errlen, "putting %s in VLAN %u: %s", port, vid, hnl_why(&nl, rc, why, sizeof(why)));
		goto out;
	}
	rc = port_vlans_read(&nl, ifindex, &v);
	if (!rc)
		rc = vlans_remove_others(&nl, ifindex, &v, vid);
	if (rc)
		errf(err, errlen, "removing the other VLANs of %s (now in VLAN %u): %s", port, vid,
		     hnl_why(&nl, rc, why, sizeof(why)));
out:
	hnl_close(&nl);
	return rc;
}
