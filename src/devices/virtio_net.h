/* virtio-net's interface to the rest of glide: statistics per NIC, and
 * the announcement after a switchover (virtio_net.c). */
#ifndef GLIDE_DEVICES_VIRTIO_NET_H
#define GLIDE_DEVICES_VIRTIO_NET_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "vmm/vm.h"

struct vm;

/* Frames kept from the tap while the VM is stopped (state section). */
#define NET_HELD_FRAMES_MAX 256
#define NET_HELD_BYTES_MAX (16u << 20) /* room for 256 frames of the largest size */

struct net_stats {
	uint64_t rx_frames, rx_bytes, rx_dropped, rx_errors;
	uint64_t tx_frames, tx_bytes, tx_dropped;
	uint64_t tx_forged;          /* dropped: source MAC not the NIC's */
	uint64_t tx_throttled;       /* times the NIC's rate held transmission back */
	uint64_t rx_held;            /* frames kept while the VM was stopped */
	uint64_t rx_held_delivered;  /* ... and delivered once it ran again */
	uint64_t rx_forwarded;       /* frames the source forwarded after its checkpoint (destination) */
	uint64_t tx_forwarded;       /* frames forwarded to the destination (source) */
	uint64_t rx_stale;           /* frames dropped from the tap when the state was loaded */
	uint64_t announces;          /* RARP frames sent after a switchover */
	uint64_t guest_announces;    /* announcements the guest acknowledged */
	uint64_t rx_filtered;        /* dropped by the port: not for this NIC (promiscuous, MAC changes rejected) */
	uint64_t mac_changes;        /* MACs the guest set (CTRL_MAC_ADDR_SET) */
};

/* A NIC's port security and what its guest set (devices_status_json). */
struct net_security {
	uint8_t effective_mac[6];
	bool accept_forged, accept_mac_changes, accept_promiscuous;
	bool guest_promiscuous;
};

/* Announcing a VM's MACs after a switchover, as QEMU's announce-self:
 * `rounds` RARP rounds, the first at once, the next after initial_ms, each
 * gap step_ms longer than the one before, at most max_ms. rounds 0: off. */
struct net_announce {
	int rounds;
	int initial_ms, step_ms, max_ms;
};
#define NET_ANNOUNCE_DEFAULT { .rounds = 5, .initial_ms = 50, .step_ms = 100, .max_ms = 550 }
/* "ROUNDS[,INITIAL_MS[,STEP_MS[,MAX_MS]]]" (--announce). */
int net_announce_parse(const char *s, struct net_announce *a, char *err, size_t errlen);
/* Starts the rounds on a thread of their own (nothing when the VM has no NIC). */
void net_announce_start(struct vm *vm, const struct net_announce *a);
/* Waits for the rounds to end (vm_destroy calls it through devices_destroy). */
void net_announce_wait(void);

/* One announcement round for every NIC: a RARP frame from its MAC, and in
 * round 0 a GUEST_ANNOUNCE request to guests that negotiated it. Returns
 * frames sent. */
int virtio_net_announce(struct vm *vm, int round);
/* After the switchover (migrate/source.c, dest.c): frames that reach the
 * source's taps once its state is saved are forwarded to the destination,
 * which hands them to the guest. virtio_net_forward_fds: the taps of the
 * source's NICs (-1 where there is none), returns how many. */
int virtio_net_forward_fds(struct vm *vm, int fds[VM_MAX_NICS]);
/* Reads one frame from NIC i's tap into buf if it is addressed to the
 * NIC's MAC (unicast: the switch floods the rest to the destination too).
 * Returns its length, 0 for a frame skipped, -EAGAIN when none waits. */
int virtio_net_forward_read(struct vm *vm, int i, uint8_t *buf, size_t len);
/* Queues a forwarded frame for the guest (delivered before newer ones). */
int virtio_net_inject(struct vm *vm, int i, const uint8_t *frame, size_t len);
#define NET_FORWARD_FRAME_MAX 65550

/* A capture of NIC i's frames, both directions (what the guest receives
 * and what it sends, forged frames included), into a pcap file, like
 * pktcap-uw on a vSwitch port; it ends after `count` frames or when stopped.
 * One capture per NIC at a time. */
#define NET_CAPTURE_MAX_FRAMES 1000000
int virtio_net_capture_start(struct vm *vm, int i, const char *path, uint64_t count, char *err, size_t errlen);
/* Frames written so far and whether it still runs; `stop` ends it now. -ENOENT: no such NIC. */
int virtio_net_capture_status(struct vm *vm, int i, bool stop, uint64_t *written, bool *active);

/* NIC i's counters, MAC and host interface name; -ENOENT when there is none. */
int virtio_net_stats(struct vm *vm, int i, struct net_stats *out, uint8_t mac[6], char *ifname, size_t iflen);
int virtio_net_security(struct vm *vm, int i, struct net_security *out);
#endif
