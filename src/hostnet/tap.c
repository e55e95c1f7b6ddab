/* Tap devices for VM NICs: the tun driver (/dev/net/tun) for the queues,
 * netlink for the link around them.
 *
 * A tap is opened with IFF_TAP | IFF_NO_PI | IFF_VNET_HDR and a 12-byte
 * vnet header (struct virtio_net_hdr_v1), so the device model passes the
 * guest's virtio-net header through unchanged. With more than one queue
 * each queue is its own file descriptor on the same IFF_MULTI_QUEUE tap.
 * No offload is enabled at open: which TUNSETOFFLOAD bits the kernel
 * accepts is probed one by one and reported, and the device model enables
 * what the guest negotiated with hostnet_tap_set_offload.
 *
 * A tap created here is not persistent: it lives as long as its file
 * descriptors, so a monitor that dies takes its taps with it. Creating
 * uses IFF_TUN_EXCL, which makes "that name is taken" atomic. A tap an
 * administrator made ("tap=NAME") is only attached to and left as found. */
#include "hostnet/hostnet.h"
#include "hostnet/nl.h"
#include "common/util.h"
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>
#include <linux/if_link.h>
#include <linux/if_tun.h>

#define TUN_DEVICE "/dev/net/tun"

static const struct {
	unsigned bit;
	const char *name;
} offload_names[] = {
	{ TUN_F_CSUM, "csum" }, { TUN_F_TSO4, "tso4" }, { TUN_F_TSO6, "tso6" }, { TUN_F_TSO_ECN, "tso_ecn" },
	{ TUN_F_UFO, "ufo" },   { TUN_F_USO4, "uso4" }, { TUN_F_USO6, "uso6" },
};

const char *hostnet_tap_offloads_str(unsigned offloads, char *buf, size_t len)
{
	size_t n = 0;
	if (!len)
		return buf;
	buf[0] = 0;
	for (size_t i = 0; i < ARRAY_SIZE(offload_names); i++)
		if ((offloads & offload_names[i].bit) && n < len)
			n += (size_t)snprintf(buf + n, len - n, "%s%s", n ? " " : "", offload_names[i].name);
	if (!n)
		snprintf(buf, len, "none");
	return buf;
}

/* Which offload bits the kernel takes. tun accepts each only with csum,
 * tso_ecn only with a TSO bit, and uso4 and uso6 only together. */
static unsigned probe_offloads(int fd)
{
	static const struct {
		unsigned bit, with;
	} probes[] = {
		{ TUN_F_TSO4, 0 }, { TUN_F_TSO6, 0 }, { TUN_F_TSO_ECN, TUN_F_TSO4 }, { TUN_F_UFO, 0 },
		{ TUN_F_USO4, TUN_F_USO6 }, { TUN_F_USO6, TUN_F_USO4 },
	};
	unsigned ok = 0;

	if (ioctl(fd, TUNSETOFFLOAD, TUN_F_CSUM) == 0)
		ok |= TUN_F_CSUM;
	for (size_t i = 0; ok && i < ARRAY_SIZE(probes); i++)
		if (ioctl(fd, TUNSETOFFLOAD, TUN_F_CSUM | probes[i].bit | probes[i].with) == 0)
			ok |= probes[i].bit;
	ioctl(fd, TUNSETOFFLOAD, 0);
	return ok;
}

struct tun_info {
	bool seen;
	int type;  /* IFF_TAP or IFF_TUN; 0 when the kernel did not say */
	bool multi_queue;
};

static int parse_tun_info(struct nlattr **tb, void *arg)
{
	struct tun_info *ti = arg;
	struct nlattr *li[IFLA_INFO_MAX + 1], *td[IFLA_TUN_MAX + 1];

	ti->seen = true;
	if (!tb[IFLA_LINKINFO] || nla_parse_nested(li, IFLA_INFO_MAX, tb[IFLA_LINKINFO], NULL) < 0 ||
	    !li[IFLA_INFO_DATA] || nla_parse_nested(td, IFLA_TUN_MAX, li[IFLA_INFO_DATA], NULL) < 0)
		return 0;
	if (td[IFLA_TUN_TYPE] && nla_len(td[IFLA_TUN_TYPE]) >= 1)
		ti->type = nla_get_u8(td[IFLA_TUN_TYPE]);
	if (td[IFLA_TUN_MULTI_QUEUE] && nla_len(td[IFLA_TUN_MULTI_QUEUE]) >= 1)
		ti->multi_queue = nla_get_u8(td[IFLA_TUN_MULTI_QUEUE]);
	return 0;
}

/* The administrator's tap: it exists, is a tap, and how it was made. */
static int check_existing(struct hnl *nl, const char *name, struct tun_info *ti, char *err, size_t errlen)
{
	struct rtnl_link *link;
	const char *kind;
	char why[256];
	int rc = hnl_link_get(nl, "tap", name, &link, err, errlen);
	if (rc)
		return rc;
	kind = rtnl_link_get_type(link);
	if (!kind || strcmp(kind, "tun")) {
		errf(err, errlen, "%s is not a tap (it is %s%s)", name, kind ? "a device of kind " : "a device of no kind",
		     kind ? kind : "");
		rtnl_link_put(link);
		return -EINVAL;
	}
	rc = hnl_getlink_raw(nl, rtnl_link_get_ifindex(link), parse_tun_info, ti);
	rtnl_link_put(link);
	if (rc) {
		errf(err, errlen, "reading tap %s: %s", name, hnl_why(nl, rc, why, sizeof(why)));
		return rc;
	}
	if (ti->type == IFF_TUN) {
		errf(err, errlen, "%s is a tun device (layer 3), not a tap", name);
		return -EINVAL;
	}
	return 0;
}

/* The message for a failed TUNSETIFF. */
static void setiff_error(int rc, const struct hostnet_tap_config *cfg, const char *name, unsigned queue, char *err,
			 size_t errlen)
{
	const char *verb = cfg->existing ? "opening" : "creating";
	if (rc == -EBUSY && !cfg->existing && queue == 0)
		errf(err, errlen, "creating tap %s: an interface named %s already exists (tap=%s uses an existing tap)",
		     name, name, name);
	else if (rc == -EBUSY)
		errf(err, errlen, "opening tap %s: it is in use by another process", name);
	else if (rc == -EPERM && cfg->existing)
		errf(err, errlen, "opening tap %s: permission denied (needs CAP_NET_ADMIN or to be the tap's owner or group)",
		     name);
	else if (rc == -EINVAL && cfg->existing)
		errf(err, errlen, "opening tap %s: the kernel refused its flags (a tun device, or multi_queue differs)",
		     name);
	else
		errf(err, errlen, "%s tap %s%s: %s", verb, name, queue ? " (another queue)" : "", hostnet_strerror(rc));
}

static void tap_reset(struct hostnet_tap *tap)
{
	memset(tap, 0, sizeof(*tap));
	for (unsigned i = 0; i < HOSTNET_TAP_QUEUES_MAX; i++)
		tap->fds[i] = -1;
}

/* One queue: a file descriptor on /dev/net/tun attached to the tap. */
static int open_queue(struct hostnet_tap *tap, const struct hostnet_tap_config *cfg, const char *name, unsigned q,
		      char *err, size_t errlen)
{
	struct ifreq ifr = { 0 };
	int hdr = HOSTNET_VNET_HDR_BYTES;
	int fd = open(TUN_DEVICE, O_RDWR | O_NONBLOCK | O_CLOEXEC);

	if (fd < 0) {
		int rc = -errno;
		if (rc == -ENOENT || rc == -ENODEV)
			errf(err, errlen, "cannot open %s: %s (is the tun driver loaded?)", TUN_DEVICE, strerror(-rc));
		else
			errf(err, errlen, "cannot open %s: %s", TUN_DEVICE, hostnet_strerror(rc));
		return rc;
	}
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
	if (tap->multi_queue)
		ifr.ifr_flags |= IFF_MULTI_QUEUE;
	if (!cfg->existing && q == 0)
		ifr.ifr_flags |= IFF_TUN_EXCL;
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
	if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
		int rc = -errno;
		setiff_error(rc, cfg, name, q, err, errlen);
		close(fd);
		if (rc == -EBUSY && !cfg->existing && q == 0)
			rc = -EEXIST; /* IFF_TUN_EXCL: the name is taken */
		return rc;
	}
	tap->fds[q] = fd;
	tap->nqueues = q + 1;
	if (q == 0) {
		snprintf(tap->name, sizeof(tap->name), "%s", ifr.ifr_name);
		tap->created = !cfg->existing;
		if (ioctl(fd, TUNSETVNETHDRSZ, &hdr) < 0) {
			int rc = -errno;
			errf(err, errlen, "tap %s: setting a %d-byte vnet header: %s", tap->name, hdr, hostnet_strerror(rc));
			return rc;
		}
		tap->offloads = probe_offloads(fd);
	}
	return 0;
}

int hostnet_tap_open(struct hostnet_tap *tap, const struct hostnet_tap_config *cfg, char *err, size_t errlen)
{
	const char *name = cfg->name && *cfg->name ? cfg->name : HOSTNET_TAP_TEMPLATE;
	unsigned queues = cfg->queues ? cfg->queues : 1;
	struct tun_info ti = { 0 };
	struct hnl nl;
	int rc;

	tap_reset(tap);
	rc = hostnet_ifname_check(name, !cfg->existing, err, errlen);
	if (rc)
		return rc;
	if (queues > HOSTNET_TAP_QUEUES_MAX) {
		errf(err, errlen, "tap %s: %u queues asked, at most %d", name, queues, HOSTNET_TAP_QUEUES_MAX);
		return -EINVAL;
	}
	rc = hnl_open(&nl, err, errlen);
	if (rc)
		return rc;
	tap->multi_queue = queues > 1;
	if (cfg->existing) {
		rc = check_existing(&nl, name, &ti, err, errlen);
		if (rc)
			goto fail;
		if (queues > 1 && !ti.multi_queue) {
			errf(err, errlen, "tap %s has one queue (made without multi_queue); %u queues need 'ip tuntap add %s mode tap multi_queue'",
			     name, queues, name);
			rc = -EINVAL;
			goto fail;
		}
		tap->multi_queue = ti.multi_queue; /* the flag must match how it was made */
	}
	for (unsigned q = 0; q < queues; q++) {
		rc = open_queue(tap, cfg, q ? tap->name : name, q, err, errlen);
		if (rc)
			goto fail;
	}
	hnl_close(&nl);
	rc = hostnet_link_ifindex(tap->name, &tap->ifindex, err, errlen);
	if (!rc)
		rc = hostnet_link_set_up(tap->name, true, err, errlen);
	if (rc) {
		hostnet_tap_close(tap);
		return rc;
	}
	return 0;
fail:
	hnl_close(&nl);
	hostnet_tap_close(tap);
	return rc;
}

int hostnet_tap_queue_attach(struct hostnet_tap *tap, unsigned q, bool on, char *err, size_t errlen)
{
	struct ifreq ifr = { .ifr_flags = on ? IFF_ATTACH_QUEUE : IFF_DETACH_QUEUE };
	if (q >= tap->nqueues || tap->fds[q] < 0 || !tap->multi_queue) {
		errf(err, errlen, "tap %s has no queue %u to %s", tap->name, q, on ? "attach" : "detach");
		return -EINVAL;
	}
	if (ioctl(tap->fds[q], TUNSETQUEUE, &ifr) < 0 && !(errno == EINVAL && on)) { /* EINVAL: attached already */
		int rc = -errno;
		errf(err, errlen, "tap %s: %s queue %u: %s", tap->name, on ? "attaching" : "detaching", q, hostnet_strerror(rc));
		return rc;
	}
	return 0;
}

int hostnet_tap_set_offload(struct hostnet_tap *tap, unsigned flags, char *err, size_t errlen)
{
	char want[64], have[64];

	if (tap->nqueues == 0 || tap->fds[0] < 0) {
		errf(err, errlen, "tap %s is not open", tap->name);
		return -EBADF;
	}
	if (flags & ~tap->offloads) {
		errf(err, errlen, "tap %s: offloads '%s' asked, the kernel takes only '%s'", tap->name,
		     hostnet_tap_offloads_str(flags, want, sizeof(want)),
		     hostnet_tap_offloads_str(tap->offloads, have, sizeof(have)));
		return -EOPNOTSUPP;
	}
	if (ioctl(tap->fds[0], TUNSETOFFLOAD, flags) < 0) {
		int rc = -errno;
		errf(err, errlen, "tap %s: TUNSETOFFLOAD %s: %s", tap->name, hostnet_tap_offloads_str(flags, want, sizeof(want)),
		     hostnet_strerror(rc));
		return rc;
	}
	return 0;
}

void hostnet_tap_close(struct hostnet_tap *tap)
{
	for (unsigned i = 0; i < HOSTNET_TAP_QUEUES_MAX; i++) {
		if (tap->fds[i] < 0)
			continue;
		if (tap->created && i == 0)
			ioctl(tap->fds[i], TUNSETPERSIST, 0); /* in case someone made it persistent */
		close(tap->fds[i]);
		tap->fds[i] = -1;
	}
	tap->nqueues = 0;
}

int hostnet_tap_spec_parse(const char *spec, struct hostnet_tap_config *cfg, char name_buf[IFNAMSIZ], char *err,
			   size_t errlen)
{
	int rc;

	if (!spec || strncmp(spec, "tap=", 4)) {
		errf(err, errlen, "invalid tap '%.40s': expected tap=NAME, the name of an existing tap", spec ? spec : "");
		return -EINVAL;
	}
	rc = hostnet_ifname_check(spec + 4, false, err, errlen);
	if (rc)
		return rc;
	memset(cfg, 0, sizeof(*cfg));
	snprintf(name_buf, IFNAMSIZ, "%s", spec + 4);
	cfg->name = name_buf;
	cfg->existing = true;
	cfg->queues = 1;
	return 0;
}
