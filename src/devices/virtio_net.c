/* virtio-net: a NIC backed by a tap device (with the virtio-net header on
 * the tap: frames the guest sends go from its buffers to the tap without a
 * copy). Queues: receive, transmit, control (receive filter, the guest's
 * MAC, announce acknowledgement, queue pairs); with queues=N, N receive and
 * transmit pairs (MQ), each on its own queue of a multi-queue tap, the
 * pairs the driver does not use detached from the tap.
 * Port security as a vSwitch port group's, each rejecting unless the NIC's
 * spec accepts: frames sent from a source MAC other than the NIC's
 * effective one are dropped (forged transmits); while the guest has set a
 * MAC of its own (CTRL_MAC_ADDR) all inbound frames are dropped (MAC
 * changes); frames for other unicast MACs reach the guest only when it
 * asked for promiscuous mode (CTRL_RX) or listed them (CTRL_MAC table), and
 * promiscuous is accepted. Every frame from the tap lands in a bounce
 * buffer first, so a guest never sees a byte of one it must not get.
 * Frames that reach the tap while the VM is stopped are kept (bounded) in
 * the "virtio-net" state section, so a migration or a snapshot delivers
 * them to the guest when it runs again instead of losing them. After a migration the destination
 * announces the MAC (RARP, several rounds) and asks a guest that
 * negotiated GUEST_ANNOUNCE to announce itself.
 * Offloads, as the tap offers them: the guest may send frames with a
 * partial checksum and TCP segmentation left to the host (CSUM,
 * HOST_TSO4/6/ECN: the vnet header goes to the tap as the guest wrote it),
 * and may take them (GUEST_CSUM, GUEST_TSO4/6/ECN: once the driver
 * negotiated them, TUNSETOFFLOAD lets the tap hand over such frames, up to
 * 64 KiB, which go to a receive buffer chain large enough or are dropped). */
#include "devices/devices.h"
#include "devices/virtio.h"
#include "devices/virtio_dev.h"
#include "devices/virtio_net.h"
#include "devices/net_port.h"
#include "state/state.h"
#include "common/util.h"
#include "vmm/vm.h"
#include <errno.h>
#include <linux/if_tun.h>
#include <pcap/pcap.h>
#include <sys/time.h>
#include <pthread.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <time.h>
#include <sys/uio.h>
#include <unistd.h>

#define VIRTIO_NET_F_CSUM 0        /* the device takes frames with a partial checksum */
#define VIRTIO_NET_F_GUEST_CSUM 1  /* the driver takes them */
#define VIRTIO_NET_F_GUEST_TSO4 7  /* the driver takes TCP segmentation work (GSO frames) */
#define VIRTIO_NET_F_GUEST_TSO6 8
#define VIRTIO_NET_F_GUEST_ECN 9
#define VIRTIO_NET_F_HOST_TSO4 11  /* the device takes them */
#define VIRTIO_NET_F_HOST_TSO6 12
#define VIRTIO_NET_F_HOST_ECN 13
#define VIRTIO_NET_F_MAC 5
#define VIRTIO_NET_F_STATUS 16
#define VIRTIO_NET_F_CTRL_VQ 17
#define VIRTIO_NET_F_CTRL_RX 18
#define VIRTIO_NET_F_GUEST_ANNOUNCE 21
#define VIRTIO_NET_F_CTRL_MAC_ADDR 23
#define VIRTIO_NET_S_LINK_UP 1
#define VIRTIO_NET_S_ANNOUNCE 2
#define VIRTIO_NET_CTRL_RX 0
#define VIRTIO_NET_CTRL_RX_PROMISC 0
#define VIRTIO_NET_CTRL_RX_ALLMULTI 1
#define VIRTIO_NET_CTRL_MAC 1
#define VIRTIO_NET_CTRL_MAC_TABLE_SET 0
#define VIRTIO_NET_CTRL_MAC_ADDR_SET 1
#define VIRTIO_NET_CTRL_ANNOUNCE 3
#define VIRTIO_NET_CTRL_ANNOUNCE_ACK 0
#define VIRTIO_NET_OK 0
#define VIRTIO_NET_ERR 1

#define VIRTIO_NET_F_MQ 22
#define VIRTIO_NET_CTRL_MQ 4
#define VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET 0
/* Queues: receive and transmit of each pair k, then control. */
#define NET_PAIRS_MAX 8
#define NET_RXQ(k) (2 * (k))
#define NET_TXQ(k) (2 * (k) + 1)
/* the control queue follows the pairs the device has when the driver took
 * MQ, else it is queue 2 (virtio 1.x, 5.1.2) */
#define NET_CTRLQ(n) (virtio_has_feature(&(n)->vd, VIRTIO_NET_F_MQ) ? 2 * (n)->npairs : 2)
#define NET_QUEUE_SIZE 256
#define NET_CONFIG_LEN 10
#define NET_HDR_LEN 12          /* struct virtio_net_hdr_v1 */
#define NET_FRAME_MAX (NET_HDR_LEN + 18 + 65535) /* header + the largest (GSO) frame: Ethernet, VLAN tag, 64 KiB of IP */
#define NET_READ_MAX (NET_FRAME_MAX + 1) /* a read that fills this was cut short: the frame is dropped */
#define ETH_HLEN 14
#define NET_UNI_MAX 32          /* unicast MACs of the guest's filter table; more: as promiscuous */
#define NET_CTRL_MAX 2048       /* bytes of a control command read */

struct held_frame {
	uint32_t len;
	uint8_t *data;          /* header + frame, as read from the tap */
};

struct virtio_net {
	struct virtio_dev vd;   /* first: freed as a virtio_dev */
	int index;
	char name[24];
	struct net_port port; /* tap (and bridge, VLAN, rate) */
	unsigned offloads_on;   /* TUN_F_* bits enabled on the tap (what the driver takes) */
	uint8_t mac[6];
	uint16_t status;
	int npairs;             /* queue pairs (--nic queues=), each on its own tap queue */
	int active_pairs;       /* what the driver uses (VQ_PAIRS_SET; 1 without MQ); the others' tap queues are detached */
	bool tap_watched[NET_PAIRS_MAX];
	/* frames read from the tap while the VM was stopped, delivered first */
	pthread_mutex_t held_lock; /* the event thread takes, a forwarder (destination) adds */
	struct held_frame held[NET_HELD_FRAMES_MAX];
	int nheld;
	uint64_t held_bytes;
	struct net_stats stats;
	struct token_bucket tx_bucket; /* --nic rate: frames from the VM */
	/* capture (virtio_net_capture_start) */
	pthread_mutex_t cap_lock;
	bool cap_active;
	pcap_t *cap_pcap;
	pcap_dumper_t *cap_dump;
	uint64_t cap_left, cap_written;
	uint8_t *cap_buf;
	int tx_timer_fd;        /* wakes the transmit path when the bucket has tokens again */
	/* port security (nic_spec) and the receive filter the guest set; the
	 * event thread alone uses them while the VM runs */
	bool accept_forged, accept_mac_changes, accept_promiscuous;
	uint8_t eff_mac[6];     /* the guest's MAC: the configured one until it sets another */
	bool rx_promisc;        /* the guest asked for promiscuous mode (CTRL_RX) */
	bool rx_allmulti;       /* ... for all multicast (delivered anyway: kept for the state) */
	bool uni_overflow;      /* its unicast table was longer than NET_UNI_MAX */
	int nuni;
	uint8_t uni[NET_UNI_MAX][6];
	uint8_t *rx_buf;        /* one frame from the tap, checked before the guest gets it */
};

static struct virtio_net *net_of(struct virtio_dev *vd)
{
	return (struct virtio_net *)vd;
}

static void net_config_access(struct virtio_dev *vd, uint64_t off, bool is_write, uint8_t *data, int len)
{
	struct virtio_net *n = net_of(vd);
	uint8_t cfg[NET_CONFIG_LEN];
	if (is_write)
		return; /* read-only in virtio 1.x: a driver sets its MAC with CTRL_MAC_ADDR_SET */
	memcpy(cfg, n->eff_mac, 6);
	uint16_t st = __atomic_load_n(&n->status, __ATOMIC_ACQUIRE);
	memcpy(cfg + 6, &st, 2);
	uint16_t pairs = (uint16_t)n->npairs;
	memcpy(cfg + 8, &pairs, 2);
	memcpy(data, cfg + off, (size_t)len);
}

/* The tap queue of pair k. */
static int qfd(const struct virtio_net *n, int k)
{
	return n->port.tap.fds[k];
}

static void watch_tap(struct virtio_net *n, int k, bool on)
{
	if (n->tap_watched[k] == on)
		return;
	struct epoll_event ev = { .events = on ? EPOLLIN : 0, .data.u64 = (1ULL << 32) | (uint32_t)qfd(n, k) };
	if (epoll_ctl(n->vd.epoll_fd, EPOLL_CTL_MOD, qfd(n, k), &ev) == 0)
		n->tap_watched[k] = on;
}

/* The driver uses `pairs` queue pairs: the tap spreads frames over their
 * queues only, the others are detached and not watched. */
static void set_active_pairs(struct virtio_net *n, int pairs)
{
	char err[256];
	for (int k = 1; k < n->npairs; k++) {
		if (k >= pairs)
			watch_tap(n, k, false);
		if (hostnet_tap_queue_attach(&n->port.tap, (unsigned)k, k < pairs, err, sizeof(err)))
			glide_log("vm", "%s: %s", n->name, err);
	}
	n->active_pairs = pairs;
}

static void capture_end_locked(struct virtio_net *n)
{
	if (n->cap_dump)
		pcap_dump_close(n->cap_dump);
	if (n->cap_pcap)
		pcap_close(n->cap_pcap);
	n->cap_dump = NULL;
	n->cap_pcap = NULL;
	free(n->cap_buf);
	n->cap_buf = NULL;
	__atomic_store_n(&n->cap_active, false, __ATOMIC_RELEASE);
}

/* Writes one frame (the bytes after the virtio-net header of iov) to the capture, if one runs. */
static void capture(struct virtio_net *n, const struct iovec *iov, int cnt, size_t total)
{
	if (!__atomic_load_n(&n->cap_active, __ATOMIC_ACQUIRE) || total <= NET_HDR_LEN)
		return;
	pthread_mutex_lock(&n->cap_lock);
	if (n->cap_dump) {
		size_t len = 0, skip = NET_HDR_LEN, want = MIN(total - NET_HDR_LEN, (size_t)NET_FRAME_MAX);
		for (int i = 0; i < cnt && len < want; i++) {
			size_t l = iov[i].iov_len;
			if (skip >= l) {
				skip -= l;
				continue;
			}
			size_t take = MIN(l - skip, want - len);
			memcpy(n->cap_buf + len, (const uint8_t *)iov[i].iov_base + skip, take);
			len += take;
			skip = 0;
		}
		struct pcap_pkthdr h = { .caplen = (bpf_u_int32)len, .len = (bpf_u_int32)len };
		gettimeofday(&h.ts, NULL);
		pcap_dump((u_char *)n->cap_dump, &h, n->cap_buf);
		n->cap_written++;
		if (--n->cap_left == 0)
			capture_end_locked(n);
	}
	pthread_mutex_unlock(&n->cap_lock);
}

/* Does the port let this frame (from its Ethernet header) reach the guest? */
static bool rx_allowed(const struct virtio_net *n, const uint8_t *eth, size_t len)
{
	if (len < ETH_HLEN)
		return false;
	if (!n->accept_mac_changes && memcmp(n->eff_mac, n->mac, 6))
		return false; /* the guest runs a MAC of its own: nothing comes in until it goes back */
	if (eth[0] & 1)
		return true; /* broadcast and multicast */
	if (!memcmp(eth, n->eff_mac, 6))
		return true;
	if (!n->accept_promiscuous)
		return false;
	if (n->rx_promisc || n->uni_overflow || !virtio_has_feature(&n->vd, VIRTIO_NET_F_CTRL_RX))
		return true; /* a driver without CTRL_RX gets what the port sees, as on a plain bridge */
	for (int i = 0; i < n->nuni; i++)
		if (!memcmp(eth, n->uni[i], 6))
			return true;
	return false;
}

/* Copies one held frame into the next receive buffer of pair k. 1 done, 0 no buffer, -1 dropped. */
static int deliver_held(struct virtio_net *n, int k)
{
	struct virtq_chain c;
	int r = virtq_pop(&n->vd, NET_RXQ(k), &c);
	if (r <= 0)
		return 0;
	struct held_frame *f = &n->held[0];
	size_t copied = 0;
	if (!rx_allowed(n, f->data + NET_HDR_LEN, f->len - NET_HDR_LEN)) {
		virtq_unpop(&n->vd, NET_RXQ(k));
		n->stats.rx_filtered++;
	} else if (c.in_bytes >= f->len) {
		copied = virtq_chain_to_guest(&n->vd, &c, 0, f->data, f->len);
		capture(n, &(struct iovec){ f->data, f->len }, 1, f->len);
		uint16_t one = 1;
		virtq_chain_to_guest(&n->vd, &c, 10, &one, 2); /* num_buffers */
		n->stats.rx_frames++;
		n->stats.rx_bytes += f->len - NET_HDR_LEN;
		n->stats.rx_held_delivered++;
		virtq_push(&n->vd, NET_RXQ(k), &c, (uint32_t)copied);
	} else {
		n->stats.rx_dropped++;
		virtq_push(&n->vd, NET_RXQ(k), &c, 0);
	}
	n->held_bytes -= f->len;
	free(f->data);
	memmove(&n->held[0], &n->held[1], (size_t)(n->nheld - 1) * sizeof(n->held[0]));
	n->nheld--;
	return copied ? 1 : -1;
}

/* Moves frames from pair k's tap queue (and held ones first) into its
 * receive buffers until either runs out; stops watching the queue while the
 * guest has no buffers there. */
static void net_receive(struct virtio_net *n, int k)
{
	bool pushed = false;
	pthread_mutex_lock(&n->held_lock);
	while (n->nheld) {
		int r = deliver_held(n, k);
		if (r == 0) {
			pthread_mutex_unlock(&n->held_lock);
			watch_tap(n, k, false);
			goto out;
		}
		pushed = true;
	}
	pthread_mutex_unlock(&n->held_lock);
	for (int budget = 0; budget < NET_QUEUE_SIZE; budget++) {
		struct virtq_chain c;
		int r = virtq_pop(&n->vd, NET_RXQ(k), &c);
		if (r <= 0) {
			watch_tap(n, k, false); /* until the driver adds buffers */
			goto out;
		}
		if (c.in_bytes < NET_HDR_LEN + ETH_HLEN) {
			virtq_push(&n->vd, NET_RXQ(k), &c, 0);
			pushed = true;
			continue;
		}
		ssize_t got = read(qfd(n, k), n->rx_buf, NET_READ_MAX);
		if (got < 0) {
			virtq_unpop(&n->vd, NET_RXQ(k));
			if (errno != EAGAIN && errno != EINTR)
				n->stats.rx_errors++;
			watch_tap(n, k, true);
			goto out;
		}
		if (got > NET_FRAME_MAX) {
			virtq_unpop(&n->vd, NET_RXQ(k));
			n->stats.rx_dropped++; /* larger than any frame should be */
			continue;
		}
		if (got <= NET_HDR_LEN || !rx_allowed(n, n->rx_buf + NET_HDR_LEN, (size_t)got - NET_HDR_LEN)) {
			virtq_unpop(&n->vd, NET_RXQ(k)); /* the buffer stays the guest's, untouched */
			n->stats.rx_filtered++;
			continue;
		}
		if ((uint64_t)got > c.in_bytes) {
			virtq_unpop(&n->vd, NET_RXQ(k));
			n->stats.rx_dropped++; /* larger than the guest's buffer */
			continue;
		}
		n->rx_buf[10] = 1, n->rx_buf[11] = 0; /* num_buffers: one buffer per frame */
		virtq_chain_to_guest(&n->vd, &c, 0, n->rx_buf, (size_t)got);
		capture(n, &(struct iovec){ n->rx_buf, (size_t)got }, 1, (size_t)got);
		virtq_push(&n->vd, NET_RXQ(k), &c, (uint32_t)got);
		pushed = true;
		n->stats.rx_frames++;
		n->stats.rx_bytes += (uint64_t)got > NET_HDR_LEN ? (uint64_t)got - NET_HDR_LEN : 0;
	}
	watch_tap(n, k, true);
out:
	if (pushed)
		virtq_notify(&n->vd, NET_RXQ(k));
}

static void net_transmit(struct virtio_net *n, int k)
{
	bool pushed = false;
	uint64_t wait_ns = 0;
	for (int budget = 0; budget < NET_QUEUE_SIZE; budget++) {
		struct virtq_chain c;
		int r = virtq_pop(&n->vd, NET_TXQ(k), &c);
		if (r <= 0)
			break;
		size_t len = 0;
		for (int i = 0; i < c.nout; i++)
			len += c.iov[i].iov_len;
		uint8_t src[6];
		capture(n, c.iov, c.nout, len);
		if (len < NET_HDR_LEN + ETH_HLEN || virtq_chain_from_guest(&c, NET_HDR_LEN + 6, src, 6) != 6) {
			n->stats.tx_dropped++;
		} else if (!n->accept_forged && memcmp(src, n->eff_mac, 6)) {
			n->stats.tx_forged++; /* forged transmit: not the NIC's MAC */
		} else if (n->tx_bucket.rate && !tb_allow(&n->tx_bucket, len - NET_HDR_LEN, now_ns(), &wait_ns)) {
			/* over the NIC's rate: the frame stays in the ring until the bucket has tokens again */
			virtq_unpop(&n->vd, NET_TXQ(k));
			n->stats.tx_throttled++;
			struct itimerspec its = { .it_value = { .tv_sec = (time_t)(wait_ns / 1000000000ULL),
								.tv_nsec = (long)(wait_ns % 1000000000ULL) } };
			if (!its.it_value.tv_sec && !its.it_value.tv_nsec)
				its.it_value.tv_nsec = 1000;
			timerfd_settime(n->tx_timer_fd, 0, &its, NULL);
			break;
		} else if (writev(qfd(n, k), c.iov, c.nout) < 0) {
			n->stats.tx_dropped++;
		} else {
			n->stats.tx_frames++;
			n->stats.tx_bytes += len - NET_HDR_LEN;
		}
		virtq_push(&n->vd, NET_TXQ(k), &c, 0);
		pushed = true;
	}
	if (pushed)
		virtq_notify(&n->vd, NET_TXQ(k));
}

/* VIRTIO_NET_CTRL_MAC_TABLE_SET: two tables, unicast then multicast, each
 * a le32 count and that many MACs. The unicast one is kept (multicast
 * frames are all delivered). OK or ERR. */
static uint8_t ctrl_mac_table(struct virtio_net *n, const uint8_t *d, size_t len)
{
	uint32_t nu, nm;
	if (len < 4)
		return VIRTIO_NET_ERR;
	memcpy(&nu, d, 4);
	if (nu > (len - 4) / 6)
		return VIRTIO_NET_ERR;
	size_t off = 4 + (size_t)nu * 6;
	if (len - off < 4)
		return VIRTIO_NET_ERR;
	memcpy(&nm, d + off, 4);
	if (nm > (len - off - 4) / 6 || len != off + 4 + (size_t)nm * 6)
		return VIRTIO_NET_ERR;
	n->uni_overflow = nu > NET_UNI_MAX;
	n->nuni = n->uni_overflow ? 0 : (int)nu;
	for (int i = 0; i < n->nuni; i++)
		memcpy(n->uni[i], d + 4 + (size_t)i * 6, 6);
	return VIRTIO_NET_OK;
}

/* One control command (class, command, data): VIRTIO_NET_OK or ERR. */
static uint8_t net_control_command(struct virtio_net *n, uint8_t cls, uint8_t cmd, const uint8_t *d, size_t len)
{
	if (cls == VIRTIO_NET_CTRL_ANNOUNCE && cmd == VIRTIO_NET_CTRL_ANNOUNCE_ACK && !len &&
	    virtio_has_feature(&n->vd, VIRTIO_NET_F_GUEST_ANNOUNCE)) {
		__atomic_and_fetch(&n->status, (uint16_t)~VIRTIO_NET_S_ANNOUNCE, __ATOMIC_RELEASE);
		n->stats.guest_announces++;
		return VIRTIO_NET_OK;
	}
	if (cls == VIRTIO_NET_CTRL_RX && virtio_has_feature(&n->vd, VIRTIO_NET_F_CTRL_RX) && len == 1 && d[0] <= 1 &&
	    (cmd == VIRTIO_NET_CTRL_RX_PROMISC || cmd == VIRTIO_NET_CTRL_RX_ALLMULTI)) {
		/* acknowledged either way: the port decides what promiscuous mode shows */
		*(cmd == VIRTIO_NET_CTRL_RX_PROMISC ? &n->rx_promisc : &n->rx_allmulti) = d[0];
		return VIRTIO_NET_OK;
	}
	if (cls == VIRTIO_NET_CTRL_MAC && cmd == VIRTIO_NET_CTRL_MAC_TABLE_SET &&
	    virtio_has_feature(&n->vd, VIRTIO_NET_F_CTRL_RX))
		return ctrl_mac_table(n, d, len);
	if (cls == VIRTIO_NET_CTRL_MQ && cmd == VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET && len == 2 &&
	    virtio_has_feature(&n->vd, VIRTIO_NET_F_MQ)) {
		uint16_t pairs;
		memcpy(&pairs, d, 2);
		if (pairs < 1 || pairs > n->npairs)
			return VIRTIO_NET_ERR;
		set_active_pairs(n, pairs);
		for (int k = 0; k < pairs; k++) {
			if (virtio_queue_ready(&n->vd, NET_RXQ(k)))
				watch_tap(n, k, true);
			if (virtio_queue_ready(&n->vd, NET_TXQ(k)))
				net_transmit(n, k); /* what the driver queued before: sent now */
		}
		return VIRTIO_NET_OK;
	}
	if (cls == VIRTIO_NET_CTRL_MAC && cmd == VIRTIO_NET_CTRL_MAC_ADDR_SET && len == 6 && !(d[0] & 1) &&
	    virtio_has_feature(&n->vd, VIRTIO_NET_F_CTRL_MAC_ADDR)) {
		if (memcmp(d, n->eff_mac, 6)) {
			memcpy(n->eff_mac, d, 6);
			n->stats.mac_changes++;
		}
		return VIRTIO_NET_OK;
	}
	return VIRTIO_NET_ERR;
}

static void net_control(struct virtio_net *n)
{
	struct virtq_chain c;
	bool pushed = false;
	uint8_t cmd[NET_CTRL_MAX];
	while (virtq_pop(&n->vd, NET_CTRLQ(n), &c) > 0) {
		uint8_t ack = VIRTIO_NET_ERR;
		size_t out = 0;
		for (int i = 0; i < c.nout; i++)
			out += c.iov[i].iov_len;
		if (out >= 2 && out <= sizeof(cmd) && virtq_chain_from_guest(&c, 0, cmd, out) == out)
			ack = net_control_command(n, cmd[0], cmd[1], cmd + 2, out - 2);
		uint32_t w = c.in_bytes ? (uint32_t)virtq_chain_to_guest(&n->vd, &c, c.in_bytes - 1, &ack, 1) : 0;
		virtq_push(&n->vd, NET_CTRLQ(n), &c, w);
		pushed = true;
	}
	if (pushed)
		virtq_notify(&n->vd, NET_CTRLQ(n));
}

static void net_queue_notify(struct virtio_dev *vd, int q)
{
	struct virtio_net *n = net_of(vd);
	if (q == NET_CTRLQ(n))
		net_control(n);
	else if (q >= 0 && q / 2 < n->active_pairs)
		(q & 1) ? net_transmit(n, q / 2) : net_receive(n, q / 2);
}

static void net_backend_ready(struct virtio_dev *vd, int fd)
{
	struct virtio_net *n = net_of(vd);
	if (fd == n->tx_timer_fd) {
		uint64_t expirations;
		if (read(fd, &expirations, sizeof(expirations)) < 0) {
		}
		for (int k = 0; k < n->active_pairs; k++)
			if (virtio_queue_ready(vd, NET_TXQ(k)))
				net_transmit(n, k);
		return;
	}
	for (int k = 0; k < n->active_pairs; k++)
		if (fd == qfd(n, k))
			net_receive(n, k);
}

/* The TUN_F_* offloads the driver's features ask of the tap: what the
 * guest takes (GUEST_*), each only with the checksum offload it needs. */
static unsigned guest_offloads(struct virtio_dev *vd)
{
	unsigned f = 0;
	if (!virtio_has_feature(vd, VIRTIO_NET_F_GUEST_CSUM))
		return 0;
	f |= TUN_F_CSUM;
	if (virtio_has_feature(vd, VIRTIO_NET_F_GUEST_TSO4))
		f |= TUN_F_TSO4;
	if (virtio_has_feature(vd, VIRTIO_NET_F_GUEST_TSO6))
		f |= TUN_F_TSO6;
	if ((f & (TUN_F_TSO4 | TUN_F_TSO6)) && virtio_has_feature(vd, VIRTIO_NET_F_GUEST_ECN))
		f |= TUN_F_TSO_ECN;
	return f;
}

static void net_set_offloads(struct virtio_net *n, unsigned flags)
{
	char err[256];
	flags &= n->port.tap.offloads;
	if (flags == n->offloads_on)
		return;
	if (hostnet_tap_set_offload(&n->port.tap, flags, err, sizeof(err)))
		glide_log("vm", "%s: %s", n->name, err); /* the tap then hands over whole, checksummed frames */
	else
		n->offloads_on = flags;
}

static void net_driver_ok(struct virtio_dev *vd)
{
	struct virtio_net *n = net_of(vd);
	net_set_offloads(n, guest_offloads(vd));
	/* Receive from now on (event thread: it runs on the next wake), on the
	 * pairs the driver uses: one until it sets more (MQ) */
	set_active_pairs(n, virtio_has_feature(vd, VIRTIO_NET_F_MQ) ? n->active_pairs : 1);
	for (int k = 0; k < n->active_pairs; k++) {
		n->tap_watched[k] = false;
		watch_tap(n, k, true);
	}
}

static void net_reset(struct virtio_dev *vd)
{
	struct virtio_net *n = net_of(vd);
	for (int k = 0; k < n->npairs; k++)
		watch_tap(n, k, false);
	set_active_pairs(n, 1); /* a driver starts on one pair */
	net_set_offloads(n, 0); /* a driver that comes next may take only whole frames */
	__atomic_store_n(&n->status, VIRTIO_NET_S_LINK_UP, __ATOMIC_RELEASE);
	/* a reset device has the configured MAC and no filter of the driver's */
	memcpy(n->eff_mac, n->mac, 6);
	n->rx_promisc = n->rx_allmulti = n->uni_overflow = false;
	n->nuni = 0;
	/* A reset driver starts afresh: frames held for the one before are dropped. */
	pthread_mutex_lock(&n->held_lock);
	for (int f = 0; f < n->nheld; f++)
		free(n->held[f].data);
	n->stats.rx_dropped += (uint64_t)n->nheld;
	n->nheld = 0;
	n->held_bytes = 0;
	pthread_mutex_unlock(&n->held_lock);
}

/* Reads what waits in the tap into the held list (VM stopped: the
 * guest cannot take it now). Bounded in frames and bytes. */
static void net_hold_pending(struct virtio_net *n)
{
	uint8_t *buf = NULL;
	int k = 0;
	pthread_mutex_lock(&n->held_lock);
	while (k < n->npairs && n->nheld < NET_HELD_FRAMES_MAX && n->held_bytes + NET_FRAME_MAX <= NET_HELD_BYTES_MAX) {
		if (!buf && !(buf = malloc(NET_READ_MAX)))
			break;
		ssize_t got = read(qfd(n, k), buf, NET_READ_MAX);
		if (got <= NET_HDR_LEN) {
			k++; /* this queue is empty (or detached): the next one */
			continue;
		}
		if (got > NET_FRAME_MAX) {
			n->stats.rx_dropped++;
			continue;
		}
		uint8_t *data = realloc(buf, (size_t)got);
		if (!data)
			break;
		buf = NULL;
		data[10] = 1, data[11] = 0; /* num_buffers (older kernels leave these two bytes unwritten) */
		n->held[n->nheld++] = (struct held_frame){ (uint32_t)got, data };
		n->held_bytes += (uint64_t)got;
		n->stats.rx_held++;
	}
	pthread_mutex_unlock(&n->held_lock);
	free(buf);
}

static void net_quiesce(struct virtio_dev *vd)
{
	/* nothing in flight: frames are handled whole on the event thread */
}

/* ---- state ---- */

static bool net_present(struct vm *vm, int i)
{
	return vm->nics[i] != NULL;
}

static int net_save(struct vm *vm, int i, struct state_buf *out)
{
	struct virtio_net *n = (struct virtio_net *)vm->nics[i];
	if (!n)
		return -ENOENT;
	/* The VM is paused and the event thread with it: safe to read the tap here. */
	net_hold_pending(n);
	virtio_dev_save(&n->vd, out);
	sbuf_put(out, n->mac, 6);
	sbuf_u32(out, __atomic_load_n(&n->status, __ATOMIC_ACQUIRE));
	/* version 2: the guest's MAC and receive filter */
	sbuf_put(out, n->eff_mac, 6);
	sbuf_u32(out, (uint32_t)n->rx_promisc | (uint32_t)n->rx_allmulti << 1 | (uint32_t)n->uni_overflow << 2);
	sbuf_u32(out, (uint32_t)n->nuni);
	sbuf_put(out, n->uni, (size_t)n->nuni * 6);
	sbuf_u32(out, (uint32_t)n->active_pairs); /* version 3 */
	sbuf_u32(out, (uint32_t)n->nheld);
	for (int f = 0; f < n->nheld; f++) {
		sbuf_u32(out, n->held[f].len);
		sbuf_put(out, n->held[f].data, n->held[f].len);
	}
	return 0;
}

static int net_load(struct vm *vm, int i, uint32_t version, const uint8_t *data, size_t len, char *err, size_t errlen)
{
	struct virtio_net *n = (struct virtio_net *)vm->nics[i];
	struct state_cursor c = { data, len, false };
	uint8_t mac[6];
	char a[18], b[18];

	if (!n) {
		errf(err, errlen, "the state has NIC %d, this VM has no such NIC", i);
		return -EINVAL;
	}
	int rc = virtio_dev_load(&n->vd, &c, err, errlen);
	if (rc)
		return rc;
	scur_get(&c, mac, 6);
	uint32_t status = scur_u32(&c);
	uint8_t eff_mac[6], uni[NET_UNI_MAX][6];
	uint32_t rx_flags = 0, nuni = 0;
	memcpy(eff_mac, mac, 6);
	if (version >= 2) {
		scur_get(&c, eff_mac, 6);
		rx_flags = scur_u32(&c);
		nuni = scur_u32(&c);
		if (!c.failed && (nuni > NET_UNI_MAX || (rx_flags & ~7u) || (eff_mac[0] & 1))) {
			errf(err, errlen, "virtio-net %d: receive filter malformed", i);
			return -EINVAL;
		}
		if (!c.failed)
			scur_get(&c, uni, nuni * 6);
	}
	uint32_t active = version >= 3 ? scur_u32(&c) : 1;
	if (!c.failed && (active < 1 || active > (uint32_t)n->npairs)) {
		errf(err, errlen, "virtio-net %d: the state uses %u queue pairs, this NIC has %d", i, active, n->npairs);
		return -EINVAL;
	}
	uint32_t nheld = scur_u32(&c);
	if (c.failed || nheld > NET_HELD_FRAMES_MAX || (status & ~3u)) {
		errf(err, errlen, "virtio-net %d: state truncated or malformed", i);
		return -EINVAL;
	}
	if (memcmp(mac, n->mac, 6)) {
		errf(err, errlen, "virtio-net %d: the state's MAC %s is not this NIC's %s", i, hostnet_mac_format(mac, a),
		     hostnet_mac_format(n->mac, b));
		return -EINVAL;
	}
	struct held_frame held[NET_HELD_FRAMES_MAX];
	uint64_t bytes = 0;
	uint32_t got = 0;
	for (; got < nheld; got++) {
		uint32_t flen = scur_u32(&c);
		if (c.failed || flen <= NET_HDR_LEN || flen > NET_FRAME_MAX || flen > c.left ||
		    bytes + flen > NET_HELD_BYTES_MAX)
			break;
		held[got].len = flen;
		held[got].data = malloc(flen);
		if (!held[got].data || !scur_get(&c, held[got].data, flen)) {
			free(held[got].data);
			break;
		}
		bytes += flen;
	}
	if (got != nheld || c.left) {
		for (uint32_t f = 0; f < got; f++)
			free(held[f].data);
		errf(err, errlen, "virtio-net %d: held frames truncated or malformed", i);
		return -EINVAL;
	}
	/* What waits in this host's tap arrived while the VM ran elsewhere
	 * (floods seen there too): the guest gets the held frames instead. */
	uint8_t stale[NET_HDR_LEN + ETH_HLEN];
	for (int q = 0; q < n->npairs; q++)
		for (int k = 0; k < 4096 && read(qfd(n, q), stale, sizeof(stale)) >= 0; k++)
			n->stats.rx_stale++;
	pthread_mutex_lock(&n->held_lock);
	for (int f = 0; f < n->nheld; f++)
		free(n->held[f].data);
	memcpy(n->held, held, got * sizeof(held[0]));
	n->nheld = (int)got;
	n->held_bytes = bytes;
	pthread_mutex_unlock(&n->held_lock);
	__atomic_store_n(&n->status, (uint16_t)status, __ATOMIC_RELEASE);
	memcpy(n->eff_mac, eff_mac, 6);
	n->rx_promisc = rx_flags & 1;
	n->rx_allmulti = rx_flags >> 1 & 1;
	n->uni_overflow = rx_flags >> 2 & 1;
	n->nuni = (int)nuni;
	memcpy(n->uni, uni, nuni * 6);
	n->active_pairs = (int)active;
	if (virtio_driver_ok(&n->vd))
		net_driver_ok(&n->vd);
	else
		set_active_pairs(n, 1);
	return 0;
}

static const struct state_section_ops net_section = {
	.name = "virtio-net", .version = 3, .order = 50, .instances = VM_MAX_NICS, .present = net_present,
	.save = net_save, .load = net_load,
};

static void net_destroy(struct virtio_dev *vd)
{
	struct virtio_net *n = net_of(vd);
	pthread_mutex_lock(&n->cap_lock);
	capture_end_locked(n);
	pthread_mutex_unlock(&n->cap_lock);
	for (int f = 0; f < n->nheld; f++)
		free(n->held[f].data);
	n->nheld = 0;
	net_port_close(&n->port);
	if (n->tx_timer_fd >= 0)
		close(n->tx_timer_fd);
	n->tx_timer_fd = -1;
	free(n->rx_buf);
	n->rx_buf = NULL;
}

/* The offload features a NIC offers on a tap that takes `tap` (TUN_F_*):
 * the guest's partial checksums and GSO frames go to the tap as they are
 * (a tap with a vnet header takes them from a writer always); the guest
 * is offered each kind of frame the tap can hand over. */
static uint64_t net_offload_features(unsigned tap)
{
	uint64_t f = 1ULL << VIRTIO_NET_F_CSUM | 1ULL << VIRTIO_NET_F_HOST_TSO4 | 1ULL << VIRTIO_NET_F_HOST_TSO6 |
		     1ULL << VIRTIO_NET_F_HOST_ECN;
	if (tap & TUN_F_CSUM) {
		f |= 1ULL << VIRTIO_NET_F_GUEST_CSUM;
		if (tap & TUN_F_TSO4)
			f |= 1ULL << VIRTIO_NET_F_GUEST_TSO4;
		if (tap & TUN_F_TSO6)
			f |= 1ULL << VIRTIO_NET_F_GUEST_TSO6;
		if ((tap & TUN_F_TSO_ECN) && (tap & (TUN_F_TSO4 | TUN_F_TSO6)))
			f |= 1ULL << VIRTIO_NET_F_GUEST_ECN;
	}
	return f;
}

static const struct virtio_dev_ops net_ops = {
	.config_access = net_config_access,
	.queue_notify = net_queue_notify,
	.backend_ready = net_backend_ready,
	.driver_ok = net_driver_ok,
	.reset = net_reset,
	.quiesce = net_quiesce,
	.destroy = net_destroy,
};

int virtio_net_create(struct vm *vm, int index, const struct nic_spec *spec, const uint8_t mac[6], char *err,
		      size_t errlen)
{
	struct virtio_net *n = calloc(1, sizeof(*n));
	int rc;

	if (!n)
		return -ENOMEM;
	n->index = index;
	n->port.fd = -1;
	pthread_mutex_init(&n->held_lock, NULL);
	pthread_mutex_init(&n->cap_lock, NULL);
	memcpy(n->mac, mac, 6);
	memcpy(n->eff_mac, mac, 6);
	n->accept_forged = spec->accept_forged;
	n->accept_mac_changes = spec->accept_mac_changes;
	n->accept_promiscuous = spec->accept_promiscuous;
	n->status = VIRTIO_NET_S_LINK_UP;
	n->npairs = spec->queues > 1 ? MIN(spec->queues, NET_PAIRS_MAX) : 1;
	n->active_pairs = 1;
	n->rx_buf = malloc(NET_READ_MAX);
	rc = n->rx_buf ? net_port_open(&n->port, spec, err, errlen) : -ENOMEM;
	if (rc) {
		free(n->rx_buf);
		free(n);
		return rc;
	}
	n->tx_timer_fd = -1;
	if (spec->rate) {
		/* A burst of 20 ms at the rate, at least a 64 KiB frame. */
		rc = tb_init(&n->tx_bucket, spec->rate, MIN(MAX(spec->rate / 50, 65536), TB_BURST_MAX), now_ns());
		n->tx_timer_fd = rc ? -1 : timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
		if (rc || n->tx_timer_fd < 0) {
			errf(err, errlen, "--nic rate=%llu: %s", (unsigned long long)spec->rate,
			     rc ? "out of range" : strerror(errno));
			net_port_close(&n->port);
			free(n->rx_buf);
			free(n);
			return rc ? rc : -EIO;
		}
	}
	snprintf(n->name, sizeof(n->name), "virtio-net%d", index);
	n->vd.instance = index;
	uint64_t features = 1ULL << VIRTIO_NET_F_MAC | 1ULL << VIRTIO_NET_F_STATUS | 1ULL << VIRTIO_NET_F_CTRL_VQ |
			    1ULL << VIRTIO_NET_F_CTRL_RX | 1ULL << VIRTIO_NET_F_CTRL_MAC_ADDR |
			    1ULL << VIRTIO_NET_F_GUEST_ANNOUNCE | 1ULL << VIRTIO_F_RING_INDIRECT_DESC |
			    1ULL << VIRTIO_F_RING_EVENT_IDX;
	features |= net_offload_features(n->port.tap.offloads);
	if (n->npairs > 1)
		features |= 1ULL << VIRTIO_NET_F_MQ;
	rc = virtio_dev_create(vm, &n->vd, n->name, VIRTIO_ID_NET, 2 * n->npairs + 1, NET_QUEUE_SIZE, NET_CONFIG_LEN, features,
			       &net_ops, err, errlen);
	vm->nics[index] = &n->vd; /* destroyed with the VM, also after a failure here */
	n->vd.optional_features = net_offload_features(~0u); /* a state from before offloads restores without them */
	if (!rc) {
		for (int k = 0; !rc && k < n->npairs; k++) {
			struct epoll_event ev = { .events = 0, .data.u64 = (1ULL << 32) | (uint32_t)qfd(n, k) };
			if (epoll_ctl(n->vd.epoll_fd, EPOLL_CTL_ADD, qfd(n, k), &ev) < 0) {
				errf(err, errlen, "%s: epoll: %s", n->name, strerror(errno));
				rc = -errno;
			}
		}
		if (!rc)
			set_active_pairs(n, 1); /* until a driver sets more */
		if (rc) {
		} else if (n->tx_timer_fd >= 0 && virtio_watch_fd(&n->vd, n->tx_timer_fd)) {
			errf(err, errlen, "%s: epoll: %s", n->name, strerror(errno));
			rc = -EIO;
		}
	}
	return rc;
}

/* ---- after a switchover ---- */

/* A RARP "reverse request" from the NIC's MAC, as vMotion and QEMU send
 * to make switches learn the VM's new port. */
static size_t build_rarp(const uint8_t mac[6], uint8_t *f)
{
	memset(f, 0, NET_HDR_LEN + 60);
	uint8_t *e = f + NET_HDR_LEN;
	memset(e, 0xff, 6);
	memcpy(e + 6, mac, 6);
	e[12] = 0x80, e[13] = 0x35;          /* ETH_P_RARP */
	e[14] = 0, e[15] = 1;                /* hardware: Ethernet */
	e[16] = 0x08, e[17] = 0x00;          /* protocol: IPv4 */
	e[18] = 6, e[19] = 4;
	e[20] = 0, e[21] = 3;                /* reverse request */
	memcpy(e + 22, mac, 6);
	memcpy(e + 32, mac, 6);
	return NET_HDR_LEN + 60;
}

int virtio_net_announce(struct vm *vm, int round)
{
	int sent = 0;
	for (int i = 0; i < VM_MAX_NICS; i++) {
		struct virtio_net *n = (struct virtio_net *)vm->nics[i];
		if (!n)
			continue;
		uint8_t frame[NET_HDR_LEN + 60];
		size_t len = build_rarp(n->eff_mac, frame);
		if (write(n->port.fd, frame, len) == (ssize_t)len) {
			__atomic_add_fetch(&n->stats.announces, 1, __ATOMIC_RELAXED);
			sent++;
		}
		if (round == 0 && virtio_has_feature(&n->vd, VIRTIO_NET_F_GUEST_ANNOUNCE) &&
		    virtio_has_feature(&n->vd, VIRTIO_NET_F_CTRL_VQ) && virtio_driver_ok(&n->vd)) {
			__atomic_or_fetch(&n->status, VIRTIO_NET_S_ANNOUNCE, __ATOMIC_RELEASE);
			virtio_config_changed(&n->vd);
		}
	}
	return sent;
}

static struct {
	pthread_mutex_t lock;
	pthread_t thread;
	bool running;
	struct vm *vm;
	struct net_announce a;
} announcer = { .lock = PTHREAD_MUTEX_INITIALIZER };

static void *announce_thread(void *arg)
{
	uint64_t gap = (uint64_t)announcer.a.initial_ms;
	for (int round = 0; round < announcer.a.rounds; round++) {
		if (round) {
			sleep_ns(gap * 1000000);
			gap = MIN(gap + (uint64_t)announcer.a.step_ms, (uint64_t)announcer.a.max_ms);
		}
		if (__atomic_load_n(&announcer.vm->quit, __ATOMIC_RELAXED))
			break;
		virtio_net_announce(announcer.vm, round);
	}
	return NULL;
}

void net_announce_start(struct vm *vm, const struct net_announce *a)
{
	bool any = false;
	for (int i = 0; i < VM_MAX_NICS; i++)
		any |= vm->nics[i] != NULL;
	if (!any || a->rounds <= 0)
		return;
	net_announce_wait();
	pthread_mutex_lock(&announcer.lock);
	announcer.vm = vm;
	announcer.a = *a;
	announcer.running = pthread_create(&announcer.thread, NULL, announce_thread, NULL) == 0;
	pthread_mutex_unlock(&announcer.lock);
}

void net_announce_wait(void)
{
	pthread_mutex_lock(&announcer.lock);
	if (announcer.running)
		pthread_join(announcer.thread, NULL);
	announcer.running = false;
	pthread_mutex_unlock(&announcer.lock);
}

int net_announce_parse(const char *s, struct net_announce *a, char *err, size_t errlen)
{
	long v[4] = { 5, 50, 100, 550 };
	const char *p = s;
	int n = 0;
	while (n < 4) {
		char *end;
		v[n] = strtol(p, &end, 10);
		if (end == p || v[n] < 0 || v[n] > (n == 0 ? 100 : 60000))
			break;
		n++;
		if (*end == '\0') {
			p = end;
			break;
		}
		if (*end != ',')
			break;
		p = end + 1;
	}
	if (!n || *p) {
		errf(err, errlen, "--announce %s: expected ROUNDS[,INITIAL_MS[,STEP_MS[,MAX_MS]]] (rounds 0-100, times 0-60000)", s);
		return -EINVAL;
	}
	*a = (struct net_announce){ (int)v[0], (int)v[1], (int)v[2], (int)MAX(v[3], v[1]) };
	return 0;
}

int virtio_net_forward_fds(struct vm *vm, int fds[VM_MAX_NICS])
{
	int count = 0;
	for (int i = 0; i < VM_MAX_NICS; i++) {
		struct virtio_net *n = (struct virtio_net *)vm->nics[i];
		fds[i] = n ? n->port.fd : -1;
		count += n != NULL;
	}
	return count;
}

int virtio_net_forward_read(struct vm *vm, int i, uint8_t *buf, size_t len)
{
	struct virtio_net *n = i >= 0 && i < VM_MAX_NICS ? (struct virtio_net *)vm->nics[i] : NULL;
	if (!n)
		return -ENOENT;
	ssize_t got = -1;
	for (int k = 0; k < n->npairs && got < 0; k++) /* a frame from any queue of the tap */
		got = read(qfd(n, k), buf, len);
	if (got < 0)
		return errno == EAGAIN || errno == EINTR ? -EAGAIN : -errno;
	if (got < NET_HDR_LEN + ETH_HLEN || memcmp(buf + NET_HDR_LEN, n->eff_mac, 6))
		return 0; /* not for this NIC alone: the destination's port gets floods itself */
	n->stats.tx_forwarded++;
	return (int)got;
}

int virtio_net_inject(struct vm *vm, int i, const uint8_t *frame, size_t len)
{
	struct virtio_net *n = i >= 0 && i < VM_MAX_NICS ? (struct virtio_net *)vm->nics[i] : NULL;
	if (!n)
		return -ENOENT;
	if (len <= NET_HDR_LEN || len > NET_FRAME_MAX)
		return -EINVAL;
	pthread_mutex_lock(&n->held_lock);
	int rc = 0;
	if (n->nheld >= NET_HELD_FRAMES_MAX || n->held_bytes + len > NET_HELD_BYTES_MAX) {
		n->stats.rx_dropped++;
		rc = -ENOBUFS;
	} else {
		uint8_t *data = malloc(len);
		if (!data) {
			rc = -ENOMEM;
		} else {
			memcpy(data, frame, len);
			n->held[n->nheld++] = (struct held_frame){ (uint32_t)len, data };
			n->held_bytes += len;
			n->stats.rx_forwarded++;
		}
	}
	pthread_mutex_unlock(&n->held_lock);
	uint64_t one = 1;
	if (!rc && write(n->vd.wake_fd, &one, sizeof(one)) < 0) { /* the event thread delivers it */
	}
	return rc;
}

int virtio_net_capture_start(struct vm *vm, int i, const char *path, uint64_t count, char *err, size_t errlen)
{
	struct virtio_net *n = i >= 0 && i < VM_MAX_NICS ? (struct virtio_net *)vm->nics[i] : NULL;
	int rc = 0;
	if (!n) {
		errf(err, errlen, "this VM has no NIC %d", i);
		return -ENOENT;
	}
	if (count < 1 || count > NET_CAPTURE_MAX_FRAMES) {
		errf(err, errlen, "capture: count must be 1 to %d frames", NET_CAPTURE_MAX_FRAMES);
		return -EINVAL;
	}
	pthread_mutex_lock(&n->cap_lock);
	if (n->cap_dump) {
		errf(err, errlen, "NIC %d is being captured already (%llu frames so far)", i, (unsigned long long)n->cap_written);
		rc = -EBUSY;
		goto out;
	}
	n->cap_pcap = pcap_open_dead(DLT_EN10MB, NET_FRAME_MAX);
	n->cap_buf = malloc(NET_FRAME_MAX);
	if (!n->cap_pcap || !n->cap_buf) {
		errf(err, errlen, "capture: out of memory");
		capture_end_locked(n);
		rc = -ENOMEM;
		goto out;
	}
	n->cap_dump = pcap_dump_open(n->cap_pcap, path);
	if (!n->cap_dump) {
		errf(err, errlen, "capture: %s", pcap_geterr(n->cap_pcap));
		capture_end_locked(n);
		rc = -EIO;
		goto out;
	}
	n->cap_left = count;
	n->cap_written = 0;
	__atomic_store_n(&n->cap_active, true, __ATOMIC_RELEASE);
out:
	pthread_mutex_unlock(&n->cap_lock);
	return rc;
}

int virtio_net_capture_status(struct vm *vm, int i, bool stop, uint64_t *written, bool *active)
{
	struct virtio_net *n = i >= 0 && i < VM_MAX_NICS ? (struct virtio_net *)vm->nics[i] : NULL;
	if (!n)
		return -ENOENT;
	pthread_mutex_lock(&n->cap_lock);
	if (stop && n->cap_dump)
		capture_end_locked(n);
	else if (n->cap_dump)
		pcap_dump_flush(n->cap_dump);
	*written = n->cap_written;
	*active = n->cap_dump != NULL;
	pthread_mutex_unlock(&n->cap_lock);
	return 0;
}

int virtio_net_stats(struct vm *vm, int i, struct net_stats *out, uint8_t mac[6], char *ifname, size_t iflen)
{
	struct virtio_net *n = i >= 0 && i < VM_MAX_NICS ? (struct virtio_net *)vm->nics[i] : NULL;
	if (!n)
		return -ENOENT;
	pthread_mutex_lock(&n->held_lock);
	*out = n->stats;
	pthread_mutex_unlock(&n->held_lock);
	memcpy(mac, n->mac, 6);
	snprintf(ifname, iflen, "%s", n->port.ifname);
	return 0;
}

int virtio_net_security(struct vm *vm, int i, struct net_security *out)
{
	struct virtio_net *n = i >= 0 && i < VM_MAX_NICS ? (struct virtio_net *)vm->nics[i] : NULL;
	if (!n)
		return -ENOENT;
	memcpy(out->effective_mac, n->eff_mac, 6);
	out->accept_forged = n->accept_forged;
	out->accept_mac_changes = n->accept_mac_changes;
	out->accept_promiscuous = n->accept_promiscuous;
	out->guest_promiscuous = n->rx_promisc;
	return 0;
}

__attribute__((constructor)) static void net_register(void)
{
	state_register(&net_section);
}
