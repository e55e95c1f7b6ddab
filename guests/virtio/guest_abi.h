/* guest_abi.h: what the virtio test guests (netecho, diskab) share with the
 * host side: the config block that tools/guestcfg patches in the ELF file,
 * the stats record and the heartbeat record that host tests read with
 * `glide vm memsave` (or QEMU pmemsave), and the debug-exit codes. Included
 * by the guests (freestanding) and by tools/guestcfg.c; docs/guests.md
 * describes the same layouts. Everything is little-endian. */
#ifndef GLIDE_GUEST_ABI_H
#define GLIDE_GUEST_ABI_H

/* Which guest a config block or stats record belongs to. */
#define VGUEST_NETECHO 1
#define VGUEST_DISKAB  2

/* Values written to the debug-exit port 0xf4; glide and QEMU's
 * isa-debug-exit exit with status (value << 1) | 1. */
#define VGUEST_EXIT_NO_DEVICE   0x20 /* status 65: no matching PCI device on bus 0 */
#define VGUEST_EXIT_FEATURES    0x21 /* status 67: FEATURES_OK refused, or a required feature missing */
#define VGUEST_EXIT_DEVICE      0x22 /* status 69: unusable device (capabilities, BARs, queues) */
#define VGUEST_EXIT_IO          0x23 /* status 71: a request failed (diskab) */
#define VGUEST_EXIT_FAULT       0x24 /* status 73: CPU exception */
#define VGUEST_EXIT_CONFIG      0x25 /* status 75: bad config block */
#ifndef __ASSEMBLER__
#include <stdint.h>

/* Config block: found in the ELF file by its magic (exactly once). */
#define VGUEST_CONFIG_MAGIC     "GLIDEVCF"
#define VGUEST_CONFIG_MAGIC_LEN 8
#define VGUEST_CONFIG_VERSION   1
#define VGUEST_CFG_ASSIGN_BARS  0x01 /* flags: ignore the platform's BAR addresses, assign them itself */

struct vguest_config {
	char magic[VGUEST_CONFIG_MAGIC_LEN]; /* 0x00 "GLIDEVCF" */
	uint16_t version;                    /* 0x08 VGUEST_CONFIG_VERSION */
	uint16_t size;                       /* 0x0a sizeof(struct vguest_config) */
	uint8_t guest;                       /* 0x0c VGUEST_NETECHO or VGUEST_DISKAB */
	uint8_t flags;                       /* 0x0d VGUEST_CFG_* */
	uint16_t queue_depth;                /* 0x0e diskab: writes in flight at once, 1..16 (0 = 1) */
	uint8_t ipv4[4];                     /* 0x10 netecho: address, in wire order (10.77.0.2 = 0a 4d 00 02) */
	uint8_t prefix_len;                  /* 0x14 netecho: 1..32 */
	uint8_t reserved1;                   /* 0x15 */
	uint16_t udp_echo_port;              /* 0x16 netecho: UDP echo port (7) */
	uint32_t flush_every;                /* 0x18 diskab: flush after every N writes, 0 = never */
	uint32_t block_size;                 /* 0x1c diskab: bytes per A-B block, power of two, 512..1 MiB */
} __attribute__((packed));

_Static_assert(sizeof(struct vguest_config) == 32, "config block layout");

#define VGUEST_BLOCK_SIZE_MIN 512u
#define VGUEST_QUEUE_DEPTH_MAX 16u
#define VGUEST_BLOCK_SIZE_MAX (1u << 20)

/* Heartbeat record of vCPU 0 (docs/guests.md, read by tools/hbread). */
#define VGUEST_HB_ADDR      0x8000ULL
#define VGUEST_HB_MAGIC     0x3142484544494c47ULL /* "GLIDEHB1" */
#define VGUEST_HB_MODE_NETECHO 3
#define VGUEST_HB_MODE_DISKAB  4
#define VGUEST_HB_MODE_PIO     5
#define VGUEST_HB_MODE_TOUCH   6
#define VGUEST_HB_MODE_ABGAP   7

/* The abgap guest's A-B range: from 16 MiB, half the RAM (its size rounded
 * up to VGUEST_ABGAP_ROUND, so that firmware's reservations at the top do
 * not change it), VGUEST_ABGAP_MAX at most. */
#define VGUEST_ABGAP_START (16ULL << 20)
#define VGUEST_ABGAP_ROUND (64ULL << 20)
#define VGUEST_ABGAP_MAX   (2ULL << 30)

/* The touch guest's fill: the 8-byte word at guest-physical address a
 * (16 MiB and up) holds touch_word(a), an odd multiplicative hash that no
 * two words share and that does not compress. */
static inline uint64_t touch_word(uint64_t a)
{
	return (a ^ 0x676c6964652d7475ULL) * 0x9e3779b97f4a7c15ULL;
}
#define VGUEST_TOUCH_START (16ULL << 20)

struct vguest_hb_record {
	uint64_t magic;
	uint64_t iterations;
	uint64_t last_tsc;
	uint64_t max_gap_tsc;
	uint64_t max_gap_end_tsc;
	uint64_t started_tsc;
	uint32_t index;
	uint32_t count;
	uint32_t mode;
	uint32_t reserved;
};

_Static_assert(sizeof(struct vguest_hb_record) == 64, "heartbeat record layout");

/* Gap log of vCPU 0 (docs/guests.md): the latest gaps of at least
 * min_gap_tsc between two loop iterations, so that a tool can find the
 * one a migration's stun made even when a longer one came before it. The
 * guest writes entry count % VGUEST_GAPLOG_ENTRIES, then count. */
#define VGUEST_GAPLOG_ADDR    0x9100ULL
#define VGUEST_GAPLOG_MAGIC   0x314c474544494c47ULL /* "GLIDEGL1" */
#define VGUEST_GAPLOG_ENTRIES 64u
#define VGUEST_GAPLOG_MIN_TSC (1ULL << 20) /* 0.2-0.5 ms at 2-5 GHz */

struct vguest_gap_log {
	uint64_t magic;
	uint64_t min_gap_tsc;
	uint64_t count;    /* gaps logged since the start; the latest ENTRIES are kept */
	uint64_t reserved;
	struct {
		uint64_t gap_tsc, end_tsc;
	} entry[VGUEST_GAPLOG_ENTRIES];
};

_Static_assert(sizeof(struct vguest_gap_log) == 32 + 16 * VGUEST_GAPLOG_ENTRIES, "gap log layout");

/* Stats record: one 128-byte record at a fixed guest-physical address. */
#define VGUEST_STATS_ADDR  0x9000ULL
#define VGUEST_STATS_MAGIC 0x3153564544494c47ULL /* "GLIDEVS1" */
#define VGUEST_STATS_SIZE  128

struct vguest_stats_head {
	uint64_t magic;    /* 0x00 VGUEST_STATS_MAGIC, written once the device is ready */
	uint32_t guest;    /* 0x08 VGUEST_NETECHO or VGUEST_DISKAB */
	uint32_t size;     /* 0x0c VGUEST_STATS_SIZE */
	uint64_t features; /* 0x10 feature bits negotiated with the device */
	uint32_t pci_bdf;  /* 0x18 bus << 8 | device << 3 | function */
	uint32_t reserved; /* 0x1c */
};

struct vguest_net_stats {
	struct vguest_stats_head head;
	uint64_t rx_frames;  /* 0x20 frames received */
	uint64_t arp;        /* 0x28 ARP requests for our address answered */
	uint64_t icmp;       /* 0x30 ICMP echo requests answered */
	uint64_t udp;        /* 0x38 UDP datagrams echoed */
	uint64_t tx_frames;  /* 0x40 frames queued for sending (replies and announcements) */
	uint64_t dropped;    /* 0x48 frames received and not answered */
	uint64_t tx_dropped; /* 0x50 replies not sent: no free transmit buffer */
	uint64_t announces;  /* 0x58 announcements (gratuitous ARP sent, ANNOUNCE_ACK accepted) */
	uint8_t mac[6];      /* 0x60 */
	uint8_t prefix_len;  /* 0x66 */
	uint8_t reserved1;   /* 0x67 */
	uint8_t ipv4[4];     /* 0x68 */
	uint8_t pad[VGUEST_STATS_SIZE - 0x6c];
};

struct vguest_blk_stats {
	struct vguest_stats_head head;
	uint64_t writes;      /* 0x20 block writes completed */
	uint64_t pass;        /* 0x28 value being written (pass number, from 1) */
	uint64_t next_block;  /* 0x30 block the next write goes to */
	uint64_t blocks;      /* 0x38 blocks on the disk */
	uint64_t flushes;     /* 0x40 flushes completed */
	uint64_t capacity;    /* 0x48 disk capacity, 512-byte sectors */
	uint32_t block_size;  /* 0x50 bytes per block */
	uint32_t write_size;  /* 0x54 bytes written at each block's start */
	uint64_t errors;      /* 0x58 requests that failed (the guest stops at the first) */
	uint8_t pad[VGUEST_STATS_SIZE - 0x60];
};

_Static_assert(sizeof(struct vguest_net_stats) == VGUEST_STATS_SIZE, "netecho stats layout");
_Static_assert(sizeof(struct vguest_blk_stats) == VGUEST_STATS_SIZE, "diskab stats layout");

#endif /* __ASSEMBLER__ */
#endif
