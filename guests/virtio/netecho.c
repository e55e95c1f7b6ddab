/* netecho: a ring-3 test guest that drives a virtio-net device (virtio 1.x
 * PCI) by polling and answers on its IPv4 address (config block, default
 * 10.77.0.2/24): ARP requests for the address, ICMP echo requests (same
 * payload back) and UDP datagrams to the echo port (7). Replies go to the
 * sender's MAC address: no ARP cache, no routing.
 *
 * Features: VERSION_1 is required; MAC, STATUS, CTRL_VQ and GUEST_ANNOUNCE
 * are taken when offered (no offloads, no mergeable buffers: 64 receive
 * buffers of 2 KiB stay posted). With GUEST_ANNOUNCE the device status is
 * read about every millisecond; on VIRTIO_NET_S_ANNOUNCE the guest sends a
 * gratuitous ARP and acks with VIRTIO_NET_CTRL_ANNOUNCE_ACK on the control
 * queue (what a migrated guest does so switches learn where it went).
 *
 * The poll loop is the heartbeat loop (mode 3): every iteration reads the
 * TSC, so a migration's stun shows up as the record's largest gap. Counters
 * live in the stats record at VGUEST_STATS_ADDR (guest_abi.h,
 * docs/guests.md). */
#include "rt.h"
#include "virtio.h"

#define VIRTIO_NET_DEVICE_MODERN       0x1041
#define VIRTIO_NET_DEVICE_TRANSITIONAL 0x1000
#define VIRTIO_NET_F_MAC               5
#define VIRTIO_NET_F_STATUS            16
#define VIRTIO_NET_F_CTRL_VQ           17
#define VIRTIO_NET_F_GUEST_ANNOUNCE    21
#define VIRTIO_NET_S_ANNOUNCE          2
#define VIRTIO_NET_CTRL_ANNOUNCE       3
#define VIRTIO_NET_CTRL_ANNOUNCE_ACK   0
#define VIRTIO_NET_OK                  0
#define NET_CONFIG_MAC                 0
#define NET_CONFIG_STATUS              6
#define NET_HDR_LEN                    12 /* struct virtio_net_hdr with VERSION_1 */

#define QUEUE_RX     0
#define QUEUE_TX     1
#define QUEUE_CTRL   2
#define RX_BUFS      64
#define TX_BUFS      64
#define CTRL_QUEUE_SIZE 8
#define BUF_SIZE     2048
#define RX_BATCH     32
#define STATUS_POLL_TSC (1ULL << 21) /* about 1 ms at 2-3 GHz: one MMIO exit per poll */

#define ETH_ALEN       6
#define ETH_HLEN       14
#define ETH_FRAME_MIN  60
#define ETH_FRAME_MAX  1514
#define ETHERTYPE_IPV4 0x0800
#define ETHERTYPE_ARP  0x0806
#define ARP_LEN        28
#define ARP_REQUEST    1
#define ARP_REPLY      2
#define IPV4_HLEN      20
#define IPV4_TTL       64
#define IPPROTO_ICMP   1
#define IPPROTO_UDP    17
#define ICMP_ECHO_REPLY   0
#define ICMP_ECHO_REQUEST 8
#define ICMP_HLEN      8
#define UDP_HLEN       8

const char vguest_name[] = "netecho";

volatile struct vguest_config vguest_config = {
	.magic = VGUEST_CONFIG_MAGIC,
	.version = VGUEST_CONFIG_VERSION,
	.size = sizeof(struct vguest_config),
	.guest = VGUEST_NETECHO,
	.ipv4 = { 10, 77, 0, 2 },
	.prefix_len = 24,
	.udp_echo_port = 7,
};

static const uint8_t mac_broadcast[ETH_ALEN] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
/* Without VIRTIO_NET_F_MAC: a locally administered address */
static const uint8_t mac_fallback[ETH_ALEN] = { 0x02, 0x67, 0x6c, 0x64, 0x00, 0x02 };

static struct virtio_dev vd;
static struct virtq rxq, txq, ctrlq;
static struct virtq_mem rxq_mem, txq_mem, ctrlq_mem;
static uint8_t rx_bufs[RX_BUFS][BUF_SIZE] __attribute__((aligned(4096)));
static uint8_t tx_bufs[TX_BUFS][BUF_SIZE] __attribute__((aligned(4096)));
static uint16_t tx_free[TX_BUFS];
static unsigned rx_posted, tx_count, tx_nfree;
static uint8_t ctrl_cmd[2];
static volatile uint8_t ctrl_ack;
static bool ctrl_busy, announce;

static uint8_t my_mac[ETH_ALEN], my_ip[4];
static uint16_t echo_port, ip_id;

static volatile struct vguest_net_stats *const stats = (volatile struct vguest_net_stats *)(uintptr_t)VGUEST_STATS_ADDR;

static uint32_t csum_add(uint32_t sum, const uint8_t *p, uint32_t n)
{
	for (; n > 1; p += 2, n -= 2)
		sum += get_be16(p);
	if (n)
		sum += (uint32_t)p[0] << 8;
	return sum;
}

static uint16_t csum_fold(uint32_t sum)
{
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)~sum;
}

static void tx_reclaim(void)
{
	uint32_t id, len;

	while (virtq_pop(&txq, &id, &len))
		if (id < tx_count && tx_nfree < tx_count)
			tx_free[tx_nfree++] = (uint16_t)id;
}

/* The frame area of a free transmit buffer (after the virtio-net header),
 * or NULL (counted in tx_dropped) when all are in flight. */
static uint8_t *tx_begin(void)
{
	if (!tx_nfree)
		tx_reclaim();
	if (!tx_nfree) {
		stats->tx_dropped++;
		return NULL;
	}
	return tx_bufs[tx_free[tx_nfree - 1]] + NET_HDR_LEN;
}

/* Queues the frame written at tx_begin's buffer (sent at the next kick). */
static void tx_commit(uint32_t frame_len)
{
	uint16_t id = tx_free[--tx_nfree];
	uint8_t *buf = tx_bufs[id];

	if (frame_len < ETH_FRAME_MIN) {
		memset(buf + NET_HDR_LEN + frame_len, 0, ETH_FRAME_MIN - frame_len);
		frame_len = ETH_FRAME_MIN;
	}
	memset(buf, 0, NET_HDR_LEN); /* no checksum offload, no GSO */
	txq.desc[id] = (struct virtq_desc){ .addr = (uintptr_t)buf, .len = NET_HDR_LEN + frame_len };
	virtq_push(&txq, id);
	stats->tx_frames++;
}

static void eth_header(uint8_t *f, const uint8_t *dst, uint16_t type)
{
	memcpy(f, dst, ETH_ALEN);
	memcpy(f + ETH_ALEN, my_mac, ETH_ALEN);
	put_be16(f + 12, type);
}

/* An ARP packet from us: a reply to (tha, tpa), or with tha 0 and tpa ours a gratuitous request. */
static bool arp_send(const uint8_t *eth_dst, uint16_t op, const uint8_t *tha, const uint8_t *tpa)
{
	uint8_t *f = tx_begin(), *a;

	if (!f)
		return false;
	eth_header(f, eth_dst, ETHERTYPE_ARP);
	a = f + ETH_HLEN;
	put_be16(a, 1); /* Ethernet */
	put_be16(a + 2, ETHERTYPE_IPV4);
	a[4] = ETH_ALEN;
	a[5] = 4;
	put_be16(a + 6, op);
	memcpy(a + 8, my_mac, ETH_ALEN);
	memcpy(a + 14, my_ip, 4);
	memcpy(a + 18, tha, ETH_ALEN);
	memcpy(a + 24, tpa, 4);
	tx_commit(ETH_HLEN + ARP_LEN);
	return true;
}

static bool arp_receive(const uint8_t *f, uint32_t len)
{
	const uint8_t *a = f + ETH_HLEN;

	if (len < ETH_HLEN + ARP_LEN || get_be16(a) != 1 || get_be16(a + 2) != ETHERTYPE_IPV4 || a[4] != ETH_ALEN ||
	    a[5] != 4 || get_be16(a + 6) != ARP_REQUEST || memcmp(a + 24, my_ip, 4))
		return false;
	if (arp_send(a + 8, ARP_REPLY, a + 8, a + 14))
		stats->arp++;
	return true;
}

static void ipv4_header(uint8_t *h, uint8_t proto, const uint8_t *dst, uint16_t total)
{
	h[0] = 0x45; /* version 4, 20 bytes */
	h[1] = 0;
	put_be16(h + 2, total);
	put_be16(h + 4, ip_id++);
	put_be16(h + 6, 0);
	h[8] = IPV4_TTL;
	h[9] = proto;
	put_be16(h + 10, 0);
	memcpy(h + 12, my_ip, 4);
	memcpy(h + 16, dst, 4);
	put_be16(h + 10, csum_fold(csum_add(0, h, IPV4_HLEN)));
}

static bool icmp_receive(const uint8_t *f, const uint8_t *ip, const uint8_t *p, uint32_t plen)
{
	uint8_t *o, *icmp;

	if (plen < ICMP_HLEN || p[0] != ICMP_ECHO_REQUEST || p[1] != 0 || csum_fold(csum_add(0, p, plen)))
		return false;
	o = tx_begin();
	if (!o)
		return true;
	eth_header(o, f + ETH_ALEN, ETHERTYPE_IPV4);
	ipv4_header(o + ETH_HLEN, IPPROTO_ICMP, ip + 12, (uint16_t)(IPV4_HLEN + plen));
	icmp = o + ETH_HLEN + IPV4_HLEN;
	memcpy(icmp, p, plen); /* identifier, sequence number and data unchanged */
	icmp[0] = ICMP_ECHO_REPLY;
	put_be16(icmp + 2, 0);
	put_be16(icmp + 2, csum_fold(csum_add(0, icmp, plen)));
	tx_commit(ETH_HLEN + IPV4_HLEN + plen);
	stats->icmp++;
	return true;
}

static bool udp_receive(const uint8_t *f, const uint8_t *ip, const uint8_t *p, uint32_t plen)
{
	uint16_t ulen;
	uint32_t sum;
	uint8_t *o, *udp;

	if (plen < UDP_HLEN || get_be16(p + 2) != echo_port)
		return false;
	ulen = get_be16(p + 4);
	if (ulen < UDP_HLEN || ulen > plen)
		return false;
	o = tx_begin();
	if (!o)
		return true;
	eth_header(o, f + ETH_ALEN, ETHERTYPE_IPV4);
	ipv4_header(o + ETH_HLEN, IPPROTO_UDP, ip + 12, (uint16_t)(IPV4_HLEN + ulen));
	udp = o + ETH_HLEN + IPV4_HLEN;
	memcpy(udp, p, ulen);
	put_be16(udp, echo_port);
	put_be16(udp + 2, get_be16(p)); /* back to the sender's port */
	put_be16(udp + 6, 0);
	sum = csum_add(0, my_ip, 4);
	sum = csum_add(sum, ip + 12, 4);
	sum += IPPROTO_UDP + ulen;
	sum = csum_fold(csum_add(sum, udp, ulen));
	put_be16(udp + 6, sum ? (uint16_t)sum : 0xffff);
	tx_commit(ETH_HLEN + IPV4_HLEN + ulen);
	stats->udp++;
	return true;
}

static bool ipv4_receive(const uint8_t *f, uint32_t len)
{
	const uint8_t *h = f + ETH_HLEN;
	uint32_t avail = len - ETH_HLEN, ihl, total;

	if (avail < IPV4_HLEN || (h[0] >> 4) != 4)
		return false;
	ihl = (h[0] & 15) * 4u;
	total = get_be16(h + 2);
	if (ihl < IPV4_HLEN || total < ihl || total > avail)
		return false;
	if ((get_be16(h + 6) & 0x3fff) || memcmp(h + 16, my_ip, 4) || csum_fold(csum_add(0, h, ihl)))
		return false; /* a fragment, not for us, or a bad header checksum */
	if (h[9] == IPPROTO_ICMP)
		return icmp_receive(f, h, h + ihl, total - ihl);
	if (h[9] == IPPROTO_UDP)
		return udp_receive(f, h, h + ihl, total - ihl);
	return false;
}

static void net_receive(const uint8_t *f, uint32_t len)
{
	bool answered = false;

	stats->rx_frames++;
	if (len >= ETH_HLEN && len <= ETH_FRAME_MAX &&
	    (!memcmp(f, my_mac, ETH_ALEN) || !memcmp(f, mac_broadcast, ETH_ALEN))) {
		switch (get_be16(f + 12)) {
		case ETHERTYPE_ARP:
			answered = arp_receive(f, len);
			break;
		case ETHERTYPE_IPV4:
			answered = ipv4_receive(f, len);
			break;
		}
	}
	if (!answered)
		stats->dropped++;
}

static void net_poll_rx(void)
{
	uint32_t id, len;

	for (int n = 0; n < RX_BATCH && virtq_pop(&rxq, &id, &len); n++) {
		if (id >= rx_posted)
			continue; /* not a buffer of ours: ignore it */
		if (len >= NET_HDR_LEN && len <= BUF_SIZE) {
			net_receive(rx_bufs[id] + NET_HDR_LEN, len - NET_HDR_LEN);
		} else {
			stats->rx_frames++;
			stats->dropped++;
		}
		virtq_push(&rxq, (uint16_t)id);
	}
	virtq_kick(&rxq);
	virtq_kick(&txq);
}

/* ANNOUNCE: a gratuitous ARP, then ANNOUNCE_ACK on the control queue (the
 * device clears the status bit when it takes the ack). */
static void net_check_announce(void)
{
	uint16_t status;

	virtio_read_config(&vd, NET_CONFIG_STATUS, &status, sizeof(status));
	if (!(status & VIRTIO_NET_S_ANNOUNCE))
		return;
	if (!arp_send(mac_broadcast, ARP_REQUEST, (const uint8_t[ETH_ALEN]){ 0 }, my_ip))
		return; /* no transmit buffer: try again at the next poll */
	virtq_kick(&txq);
	ctrl_cmd[0] = VIRTIO_NET_CTRL_ANNOUNCE;
	ctrl_cmd[1] = VIRTIO_NET_CTRL_ANNOUNCE_ACK;
	ctrl_ack = 0xff;
	virtq_push(&ctrlq, 0);
	virtq_kick(&ctrlq);
	ctrl_busy = true;
}

static void net_poll_ctrl(void)
{
	uint32_t id, len;

	if (!virtq_pop(&ctrlq, &id, &len))
		return;
	ctrl_busy = false;
	if (ctrl_ack == VIRTIO_NET_OK)
		stats->announces++;
	else
		con_printf("netecho: the device answered ANNOUNCE_ACK with %u\n", ctrl_ack);
}

static void net_setup_queues(void)
{
	if (virtq_setup(&vd, &rxq, QUEUE_RX, RX_BUFS, &rxq_mem) || virtq_setup(&vd, &txq, QUEUE_TX, TX_BUFS, &txq_mem) ||
	    (virtio_has(&vd, VIRTIO_NET_F_CTRL_VQ) && virtq_setup(&vd, &ctrlq, QUEUE_CTRL, CTRL_QUEUE_SIZE, &ctrlq_mem))) {
		virtio_set_failed(&vd);
		vguest_exit(VGUEST_EXIT_DEVICE);
	}
	rx_posted = rxq.size < RX_BUFS ? rxq.size : RX_BUFS;
	for (unsigned i = 0; i < rx_posted; i++) {
		rxq.desc[i] = (struct virtq_desc){ .addr = (uintptr_t)rx_bufs[i], .len = BUF_SIZE, .flags = VIRTQ_DESC_F_WRITE };
		virtq_push(&rxq, (uint16_t)i);
	}
	tx_count = txq.size < TX_BUFS ? txq.size : TX_BUFS;
	for (unsigned i = 0; i < tx_count; i++)
		tx_free[tx_nfree++] = (uint16_t)i;
	if (virtio_has(&vd, VIRTIO_NET_F_CTRL_VQ)) {
		ctrlq.desc[0] = (struct virtq_desc){ .addr = (uintptr_t)ctrl_cmd, .len = sizeof(ctrl_cmd),
						     .flags = VIRTQ_DESC_F_NEXT, .next = 1 };
		ctrlq.desc[1] = (struct virtq_desc){ .addr = (uintptr_t)&ctrl_ack, .len = 1, .flags = VIRTQ_DESC_F_WRITE };
	}
}

static void net_check_config(void)
{
	volatile struct vguest_config *c = &vguest_config;

	if (c->version != VGUEST_CONFIG_VERSION || c->size != sizeof(*c) || c->guest != VGUEST_NETECHO ||
	    c->prefix_len < 1 || c->prefix_len > 32 || !c->udp_echo_port)
		vguest_fail(VGUEST_EXIT_CONFIG, "bad config block (version %u, size %u, guest %u, prefix /%u, port %u)",
			    c->version, c->size, c->guest, c->prefix_len, c->udp_echo_port);
	for (int i = 0; i < 4; i++)
		my_ip[i] = c->ipv4[i];
	echo_port = c->udp_echo_port;
}

void vguest_main(void) __attribute__((noreturn));
void vguest_main(void)
{
	static const uint16_t ids[] = { VIRTIO_NET_DEVICE_MODERN, VIRTIO_NET_DEVICE_TRANSITIONAL };
	uint64_t wanted, next_status_poll = 0;
	struct pci_dev pd;
	int rc;

	rt_init();
	net_check_config();
	con_printf("netecho: starting: %u.%u.%u.%u/%u, UDP echo port %u\n", my_ip[0], my_ip[1], my_ip[2], my_ip[3],
		   vguest_config.prefix_len, echo_port);
	if (!pci_find(VIRTIO_PCI_VENDOR, ids, 2, &pd))
		vguest_fail(VGUEST_EXIT_NO_DEVICE,
			    "no virtio-net PCI device on bus 0 (vendor 0x1af4, device 0x1041 or 0x1000)");
	con_printf("netecho: virtio-net %04x at %02x:%02x.%x\n", pd.device, pd.bus, pd.dev, pd.fn);
	if (virtio_open(&vd, &pd, vguest_config.flags & VGUEST_CFG_ASSIGN_BARS) || virtio_start(&vd))
		vguest_exit(VGUEST_EXIT_DEVICE);

	wanted = 1ULL << VIRTIO_NET_F_MAC | 1ULL << VIRTIO_NET_F_STATUS | 1ULL << VIRTIO_NET_F_CTRL_VQ;
	/* the announcement needs the status field and the control queue */
	if ((vd.offered >> VIRTIO_NET_F_STATUS & 1) && (vd.offered >> VIRTIO_NET_F_CTRL_VQ & 1))
		wanted |= 1ULL << VIRTIO_NET_F_GUEST_ANNOUNCE;
	rc = virtio_set_features(&vd, wanted, 0);
	if (rc)
		vguest_exit(VGUEST_EXIT_FEATURES);
	announce = virtio_has(&vd, VIRTIO_NET_F_GUEST_ANNOUNCE);
	net_setup_queues();
	if (virtio_has(&vd, VIRTIO_NET_F_MAC))
		virtio_read_config(&vd, NET_CONFIG_MAC, my_mac, ETH_ALEN);
	else
		memcpy(my_mac, mac_fallback, ETH_ALEN);
	virtio_driver_ok(&vd);
	virtq_kick(&rxq);

	memset((void *)stats, 0, sizeof(*stats));
	stats->head.guest = VGUEST_NETECHO;
	stats->head.size = VGUEST_STATS_SIZE;
	stats->head.features = vd.features;
	stats->head.pci_bdf = (uint32_t)pd.bus << 8 | (uint32_t)pd.dev << 3 | pd.fn;
	for (int i = 0; i < ETH_ALEN; i++)
		stats->mac[i] = my_mac[i];
	for (int i = 0; i < 4; i++)
		stats->ipv4[i] = my_ip[i];
	stats->prefix_len = vguest_config.prefix_len;
	barrier();
	stats->head.magic = VGUEST_STATS_MAGIC;

	con_printf("netecho: mac %02x:%02x:%02x:%02x:%02x:%02x%s, features 0x%llx, %u receive buffers, "
		   "%u transmit buffers, %s\n",
		   my_mac[0], my_mac[1], my_mac[2], my_mac[3], my_mac[4], my_mac[5],
		   virtio_has(&vd, VIRTIO_NET_F_MAC) ? "" : " (the device has none)", (unsigned long long)vd.features,
		   rx_posted, tx_count, announce ? "announces on request" : "no announcements");
	hb_start(VGUEST_HB_MODE_NETECHO);
	con_puts("glide-guest netecho\n");
	for (;;) {
		uint64_t now = hb_poll();

		hb_count();
		net_poll_rx();
		if (tx_nfree < tx_count)
			tx_reclaim();
		if (ctrl_busy)
			net_poll_ctrl();
		else if (announce && (int64_t)(now - next_status_poll) >= 0) {
			net_check_announce();
			next_status_poll = now + STATUS_POLL_TSC;
		}
	}
}
