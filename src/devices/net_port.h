/* A NIC's port on this host: the tap device a virtio-net reads and
 * writes (opened with the virtio-net header), plus the NIC's transmit
 * rate limit. */
#ifndef GLIDE_DEVICES_NET_PORT_H
#define GLIDE_DEVICES_NET_PORT_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct nic_spec;

struct net_port {
	int fd;                /* the tap queue, non-blocking */
	char ifname[16];
	bool created;          /* the monitor created the tap (deleted on close) */
};

/* Opens the spec's tap (tap=NAME: an existing one or a new one) or, for
 * bridge=BR, a new tap attached to BR (VLAN, rate). 0, or -errno with a
 * one-line err. */
int net_port_open(struct net_port *p, const struct nic_spec *spec, char *err, size_t errlen);
void net_port_close(struct net_port *p);

/* Token bucket for frames from the VM: rate bytes/s, burst bytes. */
struct net_bucket {
	uint64_t rate, burst;
	uint64_t tokens;
	uint64_t last_ns;
};
void net_bucket_init(struct net_bucket *b, uint64_t rate, uint64_t burst, uint64_t now_ns);
/* Takes `bytes` tokens if there are that many (after refilling for the time since the last call). */
bool net_bucket_take(struct net_bucket *b, uint64_t bytes, uint64_t now_ns);
#endif
