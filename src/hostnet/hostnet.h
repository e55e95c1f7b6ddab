/* The host side of VM networking: MAC addresses, tap devices, Linux
 * bridges with VLAN access ports, rate shaping and port counters, all
 * through netlink (libnl-3, libnl-route-3) and the tun driver's ioctls;
 * nothing here runs ip, tc or brctl. docs/networking.md tells the model.
 *
 * Every function that can fail returns 0 or a negative errno and, when err
 * is given, writes one line into it that says what failed and why, e.g.
 * "bridge br-x does not exist" or "creating tap glide%d: permission denied
 * (needs CAP_NET_ADMIN)". Interface names are the kernel's: 1-15 bytes,
 * no '/', ':' or white space, not "." or "..".
 *
 * Directions are the host's: on a tap, "rx" is what the VM sent (frames
 * the device model wrote into the tap) and "tx" what the host sent to the
 * VM. A tbf qdisc on the tap shapes host -> VM; struct token_bucket is for
 * the device model's transmit path, VM -> host. */
#ifndef GLIDE_HOSTNET_HOSTNET_H
#define GLIDE_HOSTNET_HOSTNET_H
#include <net/if.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- interface names (link.c) ---- */

#define HOSTNET_IFNAME_MAX (IFNAMSIZ - 1) /* 15 bytes, the kernel's limit */

/* A valid interface name; with allow_template, one "%d" the kernel replaces
 * by a number (like "glide%d") is accepted too. -EINVAL or -ENAMETOOLONG. */
int hostnet_ifname_check(const char *name, bool allow_template, char *err, size_t errlen);

/* ---- MAC addresses (mac.c) ---- */

#define HOSTNET_MAC_BYTES 6
#define HOSTNET_MAC_STRLEN 18 /* "52:54:00:12:34:56" and its NUL */

/* Exactly six two-digit hex pairs separated by ':' (either case). Refuses,
 * saying why, what a VM NIC cannot use: a multicast address (bit 0x01 of
 * the first octet, which includes broadcast) and all zeros. -EINVAL. */
int hostnet_mac_parse(const char *s, uint8_t mac[HOSTNET_MAC_BYTES], char *err, size_t errlen);
/* Lower-case "52:54:00:12:34:56" into buf; returns buf. */
const char *hostnet_mac_format(const uint8_t mac[HOSTNET_MAC_BYTES], char buf[HOSTNET_MAC_STRLEN]);
/* A random locally administered unicast address (first octet: bit 0x02
 * set, bit 0x01 clear), from getrandom(). */
int hostnet_mac_generate(uint8_t mac[HOSTNET_MAC_BYTES], char *err, size_t errlen);

/* ---- links: ifindex, state, MTU, counters (link.c) ---- */

struct hostnet_link_info {
	int ifindex;
	int master_ifindex;  /* the bridge it is a port of, 0 for none */
	unsigned mtu;
	bool up;             /* administratively up (IFF_UP) */
	bool carrier;        /* IFF_LOWER_UP */
	char kind[16];       /* IFLA_INFO_KIND: "bridge", "tun", "veth", ...; "" for none */
	uint8_t mac[HOSTNET_MAC_BYTES];
};

struct hostnet_link_stats {
	uint64_t rx_packets, rx_bytes, rx_dropped, rx_errors;
	uint64_t tx_packets, tx_bytes, tx_dropped, tx_errors;
};

int hostnet_link_ifindex(const char *name, int *ifindex, char *err, size_t errlen);
int hostnet_link_get(const char *name, struct hostnet_link_info *info, char *err, size_t errlen);
int hostnet_link_set_up(const char *name, bool up, char *err, size_t errlen);
int hostnet_link_set_mtu(const char *name, unsigned mtu, char *err, size_t errlen);
int hostnet_link_stats(const char *name, struct hostnet_link_stats *stats, char *err, size_t errlen);

/* ---- tap devices (tap.c) ---- */

#define HOSTNET_TAP_QUEUES_MAX 16
#define HOSTNET_TAP_TEMPLATE "glide%d"
/* Every frame read from or written to a tap starts with a struct
 * virtio_net_hdr_v1 (flags, gso_type, hdr_len, gso_size, csum_start,
 * csum_offset, num_buffers): 12 bytes, little-endian. */
#define HOSTNET_VNET_HDR_BYTES 12

/* TUNSETOFFLOAD bits (linux/if_tun.h; USO since Linux 6.2). */
#ifndef TUN_F_USO4
#define TUN_F_USO4 0x20
#endif
#ifndef TUN_F_USO6
#define TUN_F_USO6 0x40
#endif

struct hostnet_tap_config {
	/* The tap's name; a template with "%d" (or NULL/"" for
	 * HOSTNET_TAP_TEMPLATE) lets the kernel pick a free number. */
	const char *name;
	/* Use a tap an administrator made (ip tuntap add NAME mode tap
	 * [multi_queue]) instead of creating one: it must exist and be a tap,
	 * and it stays when glide closes it. */
	bool existing;
	/* 0 or 1: one queue; 2..HOSTNET_TAP_QUEUES_MAX: IFF_MULTI_QUEUE with
	 * that many file descriptors. */
	unsigned queues;
};

struct hostnet_tap {
	char name[IFNAMSIZ];
	int ifindex;
	unsigned nqueues;
	int fds[HOSTNET_TAP_QUEUES_MAX]; /* non-blocking, close-on-exec; -1 when unused */
	bool created;                   /* made here: hostnet_tap_close deletes it */
	bool multi_queue;
	unsigned offloads;              /* TUN_F_* bits TUNSETOFFLOAD accepts; none is on */
};

/* Opens (creating unless cfg->existing) a tap with IFF_TAP | IFF_NO_PI |
 * IFF_VNET_HDR, a 12-byte vnet header, no offload enabled, and brings its
 * link up. Creating refuses a name any interface already has (-EEXIST).
 * On failure nothing is left behind and tap->fds are all -1. */
int hostnet_tap_open(struct hostnet_tap *tap, const struct hostnet_tap_config *cfg, char *err, size_t errlen);
/* Enables the TUN_F_* offloads in flags (a subset of tap->offloads; 0 turns
 * them all off), once the guest has negotiated them. */
int hostnet_tap_set_offload(struct hostnet_tap *tap, unsigned flags, char *err, size_t errlen);
/* Attaches (on) or detaches queue q of a multi-queue tap: the kernel
 * spreads frames for the VM over the attached queues only. 0 or -errno. */
int hostnet_tap_queue_attach(struct hostnet_tap *tap, unsigned q, bool on, char *err, size_t errlen);
/* Closes every queue; a tap made by hostnet_tap_open is deleted (persist
 * off, last close), an existing one is left as it was. Safe to call twice. */
void hostnet_tap_close(struct hostnet_tap *tap);
/* "tap=NAME": the configuration for an administrator's existing tap NAME.
 * name_buf receives the name (cfg->name points to it). -EINVAL otherwise. */
int hostnet_tap_spec_parse(const char *spec, struct hostnet_tap_config *cfg, char name_buf[IFNAMSIZ], char *err,
			   size_t errlen);
/* Human names of TUN_F_* bits, e.g. "csum tso4 tso6", into buf. */
const char *hostnet_tap_offloads_str(unsigned offloads, char *buf, size_t len);

/* ---- bridges and VLAN access ports (bridge.c) ---- */

#define HOSTNET_VLAN_MIN 1
#define HOSTNET_VLAN_MAX 4094
#define HOSTNET_VLAN_DEFAULT 1 /* the VLAN a new bridge port joins (bridge default_pvid) */

/* The VLANs of one bridge port, as the kernel reports them. */
struct hostnet_port_vlans {
	int master_ifindex;
	uint16_t pvid;       /* 0: none */
	unsigned count;      /* VLANs the port is a member of */
	uint64_t member[64]; /* bit v: member of VLAN v */
	uint64_t untagged[64];
};

static inline bool hostnet_vlan_has(const uint64_t *bits, unsigned vid)
{
	return vid < 4096 && (bits[vid / 64] >> (vid % 64)) & 1;
}

/* 0 when bridge exists and is a bridge (ifindex, if given, set); -ENODEV
 * "bridge br-x does not exist"; -EINVAL "eth0 is not a bridge (...)". */
int hostnet_bridge_check(const char *bridge, int *ifindex, char *err, size_t errlen);
/* A new bridge, down, STP off (for tests and for host agents that manage
 * their own); -EEXIST when the name is taken. */
int hostnet_bridge_create(const char *bridge, char *err, size_t errlen);
/* Deletes a bridge (refuses anything that is not one); its ports are released. */
int hostnet_bridge_delete(const char *bridge, char *err, size_t errlen);
/* Makes port (a tap) a port of bridge, or releases it from its bridge. */
int hostnet_bridge_attach(const char *bridge, const char *port, char *err, size_t errlen);
int hostnet_bridge_detach(const char *port, char *err, size_t errlen);
/* IFLA_BR_VLAN_FILTERING on the bridge. A kernel built without
 * CONFIG_BRIDGE_VLAN_FILTERING refuses with -EOPNOTSUPP (and reports off). */
int hostnet_bridge_set_vlan_filtering(const char *bridge, bool on, char *err, size_t errlen);
int hostnet_bridge_get_vlan_filtering(const char *bridge, bool *on, char *err, size_t errlen);
/* Makes port an access port of VLAN vid: vid becomes its PVID and egresses
 * untagged, and the port leaves every other VLAN (the default VLAN 1
 * included), so ports in different VLANs cannot reach each other. */
int hostnet_bridge_port_set_access_vlan(const char *port, unsigned vid, char *err, size_t errlen);
/* The port's VLANs as the bridge holds them (RTM_GETLINK, AF_BRIDGE, RTEXT_FILTER_BRVLAN). */
int hostnet_bridge_port_vlans(const char *port, struct hostnet_port_vlans *vlans, char *err, size_t errlen);

/* ---- rate shaping towards the VM (shape.c) ---- */

/* The kernel's tbf as libnl-3.7 builds it takes a 32-bit rate. */
#define HOSTNET_TBF_RATE_MAX 0x7fffffffULL /* bytes/s: about 17 Gbit/s */
#define HOSTNET_TBF_LATENCY_US_DEFAULT 50000

struct hostnet_tbf {
	uint64_t rate;        /* bytes per second, 1..HOSTNET_TBF_RATE_MAX */
	uint32_t burst;       /* bytes the bucket holds; at least the link's MTU + header */
	uint32_t latency_us;  /* how long a frame may wait in the queue; sets the limit */
	uint32_t limit;       /* queue limit in bytes: read back; computed from latency when set */
};

/* Puts a tbf qdisc at the root of link (the tap), replacing what was there. */
int hostnet_shape_set(const char *link, const struct hostnet_tbf *tbf, char *err, size_t errlen);
/* Reads the root tbf back; *present is false (and 0 returned) when the
 * root qdisc is not a tbf. */
int hostnet_shape_get(const char *link, struct hostnet_tbf *tbf, bool *present, char *err, size_t errlen);
/* Removes the root qdisc (back to the default); no qdisc is not an error. */
int hostnet_shape_clear(const char *link, char *err, size_t errlen);

/* ---- token bucket for frames from the VM (token_bucket.c) ---- */

#define TB_RATE_MAX 1000000000000ULL /* bytes/s */
#define TB_BURST_MAX (1ULL << 30)    /* bytes */

/* rate bytes per second, up to burst bytes at once. Credit is counted in
 * byte-nanoseconds per second (1 byte = 1e9) so that refills are exact in
 * integer arithmetic; it goes negative after a frame bigger than the burst. */
struct token_bucket {
	uint64_t rate;    /* bytes/s; 0 means unlimited */
	uint64_t burst;   /* bytes */
	int64_t tokens;   /* credit, in bytes * 1e9, at most burst * 1e9 */
	uint64_t last_ns; /* when tokens was last brought up to date */
};

/* A full bucket at now. -EINVAL for a rate above TB_RATE_MAX or a burst of
 * 0 or above TB_BURST_MAX (unless rate is 0). */
int tb_init(struct token_bucket *tb, uint64_t rate, uint64_t burst, uint64_t now);
/* May a frame of bytes go at now? If so its bytes are taken and true is
 * returned; if not, false, and *wait_ns (if given) says how long until it
 * can. A frame bigger than the burst goes when the bucket is full and
 * leaves it in debt, so the long-run rate still holds. A clock that steps
 * back adds nothing. */
bool tb_allow(struct token_bucket *tb, uint64_t bytes, uint64_t now, uint64_t *wait_ns);

#endif
