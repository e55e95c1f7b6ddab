/* A NIC's port on this host, built with the host networking library
 * (hostnet/hostnet.h): tap=NAME opens that tap (an administrator's, or a
 * new one), bridge=BR makes a tap of the monitor's own and makes it a port
 * of BR (an access port of the NIC's VLAN when vlan= is given), and rate=
 * shapes what goes to the VM with tbf on the tap; what the VM sends is
 * paced by the NIC's token bucket (virtio_net.c). */
#ifndef GLIDE_DEVICES_NET_PORT_H
#define GLIDE_DEVICES_NET_PORT_H
#include <stdbool.h>
#include <stddef.h>
#include "hostnet/hostnet.h"

struct nic_spec;

struct net_port {
	int fd;                   /* the tap's queue, non-blocking (tap.fds[0]) */
	char ifname[16];
	struct hostnet_tap tap;
};

/* 0, or -errno with a one-line err ("bridge br9 does not exist", ...). */
int net_port_open(struct net_port *p, const struct nic_spec *spec, char *err, size_t errlen);
/* Closes the tap (one the monitor created goes away with it). */
void net_port_close(struct net_port *p);
#endif
