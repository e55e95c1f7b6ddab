/* A NIC's port on this host (net_port.h): the tap, its bridge and VLAN,
 * and the tbf that shapes traffic to the VM. */
#include "devices/net_port.h"
#include "devices/devices.h"
#include "common/util.h"
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

/* Frames for the VM wait in the tap's queue while the guest takes none (a
 * stalled vCPU, a stun): 500 by default for a tap, 1.5 frames/ms of ping
 * and echo overflow it in a third of a second. */
#define NET_PORT_QUEUE_LEN 4096

static void set_queue_len(const char *ifname, int len)
{
	struct ifreq ifr;
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (s < 0)
		return;
	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", ifname);
	ifr.ifr_qlen = len;
	if (ioctl(s, SIOCSIFTXQLEN, &ifr) < 0) /* best effort: the tap works with its default */
		glide_log("net", "%s: cannot set its queue to %d frames: %s", ifname, len, strerror(errno));
	close(s);
}

int net_port_open(struct net_port *p, const struct nic_spec *spec, char *err, size_t errlen)
{
	struct hostnet_tap_config cfg = { 0 };
	int ifindex, rc;

	memset(p, 0, sizeof(*p));
	p->fd = -1;
	for (int i = 0; i < HOSTNET_TAP_QUEUES_MAX; i++)
		p->tap.fds[i] = -1;
	if (spec->bridge[0]) {
		rc = hostnet_bridge_check(spec->bridge, NULL, err, errlen);
		if (rc)
			return rc;
		cfg.name = HOSTNET_TAP_TEMPLATE; /* a tap of our own, deleted with the monitor */
	} else {
		cfg.name = spec->tap;
		/* An administrator's tap stays when we close it; a new one goes. */
		cfg.existing = hostnet_link_ifindex(spec->tap, &ifindex, NULL, 0) == 0;
	}
	cfg.queues = spec->queues > 1 ? (unsigned)spec->queues : 1;
	rc = hostnet_tap_open(&p->tap, &cfg, err, errlen);
	if (rc)
		return rc;
	p->fd = p->tap.fds[0];
	snprintf(p->ifname, sizeof(p->ifname), "%s", p->tap.name);
	set_queue_len(p->ifname, NET_PORT_QUEUE_LEN);
	if (spec->bridge[0]) {
		if (spec->vlan) {
			bool on = false;
			rc = hostnet_bridge_get_vlan_filtering(spec->bridge, &on, err, errlen);
			if (!rc && !on)
				rc = hostnet_bridge_set_vlan_filtering(spec->bridge, true, err, errlen);
			if (rc)
				goto fail;
		}
		rc = hostnet_bridge_attach(spec->bridge, p->ifname, err, errlen);
		if (!rc && spec->vlan)
			rc = hostnet_bridge_port_set_access_vlan(p->ifname, (unsigned)spec->vlan, err, errlen);
		if (rc)
			goto fail;
	}
	if (spec->rate) {
		struct hostnet_tbf tbf = { .rate = spec->rate, .burst = (uint32_t)MAX(spec->rate / 100, 16384),
					   .latency_us = 50000 };
		rc = hostnet_shape_set(p->ifname, &tbf, err, errlen);
		if (rc)
			goto fail;
	}
	return 0;
fail:
	net_port_close(p);
	return rc;
}

void net_port_close(struct net_port *p)
{
	hostnet_tap_close(&p->tap);
	p->fd = -1;
}
