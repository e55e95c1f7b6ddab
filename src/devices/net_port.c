/* A NIC's tap device (net_port.h): opened multi-purpose with IFF_VNET_HDR
 * and a 12-byte header (struct virtio_net_hdr_v1, the layout the guest
 * uses), non-blocking, brought up; and the transmit token bucket. */
#include "devices/net_port.h"
#include "devices/devices.h"
#include "common/util.h"
#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

static int link_up(const char *ifname)
{
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	struct ifreq ifr;
	int rc = 0;
	if (s < 0)
		return -errno;
	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", ifname);
	if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0 || (ifr.ifr_flags |= IFF_UP, ioctl(s, SIOCSIFFLAGS, &ifr) < 0))
		rc = -errno;
	close(s);
	return rc;
}

int net_port_open(struct net_port *p, const struct nic_spec *spec, char *err, size_t errlen)
{
	struct ifreq ifr;
	int hdr = 12;

	memset(p, 0, sizeof(*p));
	p->fd = -1;
	if (spec->bridge[0]) {
		errf(err, errlen, "--nic bridge=%s: bridge ports need the host networking library (not built in)",
		     spec->bridge);
		return -ENOTSUP;
	}
	p->fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
	if (p->fd < 0) {
		int e = errno;
		errf(err, errlen, "cannot open /dev/net/tun: %s", strerror(e));
		return -e;
	}
	memset(&ifr, 0, sizeof(ifr));
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", spec->tap);
	if (ioctl(p->fd, TUNSETIFF, &ifr) < 0) {
		int e = errno;
		errf(err, errlen, "tap %s: %s%s", spec->tap, strerror(e),
		     e == EPERM ? " (creating or opening a tap needs CAP_NET_ADMIN, or a tap owned by this user)"
		     : e == EBUSY ? " (another process has it open)" : e == EINVAL ? " (it exists but is not a tap with these flags)" : "");
		close(p->fd);
		p->fd = -1;
		return -e;
	}
	snprintf(p->ifname, sizeof(p->ifname), "%s", ifr.ifr_name);
	if (ioctl(p->fd, TUNSETVNETHDRSZ, &hdr) < 0) {
		int e = errno;
		errf(err, errlen, "tap %s: cannot set the virtio-net header size: %s", p->ifname, strerror(e));
		net_port_close(p);
		return -e;
	}
	int rc = link_up(p->ifname);
	if (rc) {
		errf(err, errlen, "tap %s: cannot bring it up: %s", p->ifname, strerror(-rc));
		net_port_close(p);
		return rc;
	}
	return 0;
}

void net_port_close(struct net_port *p)
{
	if (p->fd >= 0)
		close(p->fd); /* a non-persistent tap goes away with its last fd */
	p->fd = -1;
}

void net_bucket_init(struct net_bucket *b, uint64_t rate, uint64_t burst, uint64_t now)
{
	b->rate = rate;
	b->burst = burst;
	b->tokens = burst;
	b->last_ns = now;
}

bool net_bucket_take(struct net_bucket *b, uint64_t bytes, uint64_t now)
{
	if (now > b->last_ns) {
		unsigned __int128 add = (unsigned __int128)(now - b->last_ns) * b->rate / 1000000000u;
		b->tokens = add >= b->burst - b->tokens ? b->burst : b->tokens + (uint64_t)add;
		b->last_ns = now;
	}
	if (b->tokens < bytes && b->tokens < b->burst)
		return false;
	b->tokens = b->tokens >= bytes ? b->tokens - bytes : 0; /* a frame larger than the burst still goes when full */
	return true;
}
