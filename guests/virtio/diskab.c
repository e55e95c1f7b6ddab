/* diskab: a ring-3 test guest that writes the A-B pattern on a virtio-blk
 * disk (virtio 1.x PCI, polled): an 8-byte little-endian counter at the
 * start of every block (4 KiB by default, config block), block after block,
 * forever. Pass p writes the value p (from 1) to blocks 0, 1, ..., N-1,
 * then pass p + 1 starts at block 0; the counter is a u64 and never wraps.
 *
 * Up to queue_depth writes (config block, 1 by default, at most 16) are in
 * flight at once, to consecutive blocks; a new one starts when one
 * completes, in any order. A VMM completes every request in flight before
 * it stops a VM (a checkpoint has none), so a disk taken from a stopped VM
 * holds one value everywhere except that a prefix may hold the next value:
 * every block equals the one before it except at most one place where it
 * steps down by one (`abcheck --disk`). With more than one in flight, a
 * VMM that stopped with requests unfinished shows up as a hole (a block
 * left behind inside the prefix) or as a guest waiting forever. The image
 * must start zero-filled (or hold one value everywhere below the first
 * pass's value).
 *
 * Each write is one VIRTIO_BLK_T_OUT request of the device's logical block
 * size (512 bytes unless VIRTIO_BLK_F_BLK_SIZE says more) at the block's
 * start: the counter, then the block index (u64), then zeros. With
 * VIRTIO_BLK_F_FLUSH the guest flushes after every `flush_every` writes
 * (once the writes in flight completed).
 * Every write completed is one heartbeat iteration (mode 4); the polls while
 * waiting count for the gap. Counters live in the stats record at
 * VGUEST_STATS_ADDR (guest_abi.h, docs/guests.md). */
#include "rt.h"
#include "virtio.h"

#define VIRTIO_BLK_DEVICE_MODERN       0x1042
#define VIRTIO_BLK_DEVICE_TRANSITIONAL 0x1001
#define VIRTIO_BLK_F_RO                5
#define VIRTIO_BLK_F_BLK_SIZE          6
#define VIRTIO_BLK_F_FLUSH             9
#define VIRTIO_BLK_T_OUT               1
#define VIRTIO_BLK_T_FLUSH             4
#define VIRTIO_BLK_S_OK                0
#define BLK_CONFIG_CAPACITY            0
#define BLK_CONFIG_BLK_SIZE            20
#define SECTOR_SIZE                    512
#define WRITE_SIZE_MAX                 4096

#define QUEUE_REQUESTS  0
#define REQ_QUEUE_SIZE  64
#define DEPTH_MAX       VGUEST_QUEUE_DEPTH_MAX
#define DESC_FLUSH      0 /* flush: header, status */
#define DESC_WRITE(s)   (2 + 3 * (s)) /* write slot s: header, data, status */
#define SLOW_REQUEST_TSC (1ULL << 35) /* 10-20 s: say once that a request is slow */

_Static_assert(DESC_WRITE(DEPTH_MAX) <= REQ_QUEUE_SIZE, "descriptors for every slot");

struct blk_req_header {
	uint32_t type;
	uint32_t reserved;
	uint64_t sector;
};

const char vguest_name[] = "diskab";

volatile struct vguest_config vguest_config = {
	.magic = VGUEST_CONFIG_MAGIC,
	.version = VGUEST_CONFIG_VERSION,
	.size = sizeof(struct vguest_config),
	.guest = VGUEST_DISKAB,
	.flush_every = 256,
	.block_size = 4096,
	.queue_depth = 1,
};

static struct virtio_dev vd;
static struct virtq rq;
static struct virtq_mem rq_mem;
static struct blk_req_header write_header[DEPTH_MAX], flush_header;
static uint8_t write_data[DEPTH_MAX][WRITE_SIZE_MAX] __attribute__((aligned(4096)));
static volatile uint8_t write_status[DEPTH_MAX], flush_status;
static uint64_t slot_block[DEPTH_MAX];  /* the block a slot's write goes to */
static uint8_t free_slot[DEPTH_MAX];    /* a stack of idle slots */
static unsigned nfree, in_flight;

static volatile struct vguest_blk_stats *const stats = (volatile struct vguest_blk_stats *)(uintptr_t)VGUEST_STATS_ADDR;

/* Polls until the device completes a request, then accounts for it: a
 * write's slot becomes idle (one heartbeat iteration), a flush is counted. */
static void blk_complete_one(void)
{
	uint64_t start = rdtsc();
	bool slow = false;
	uint32_t id, len;

	while (!virtq_pop(&rq, &id, &len)) {
		uint64_t now = hb_poll();

		if (!slow && now - start > SLOW_REQUEST_TSC) {
			con_printf("diskab: %u request(s) in flight, none completed after %llu TSC cycles, still waiting\n",
				   in_flight, SLOW_REQUEST_TSC);
			slow = true;
		}
	}
	in_flight--;
	if (id == DESC_FLUSH) {
		if (flush_status != VIRTIO_BLK_S_OK) {
			stats->errors++;
			vguest_fail(VGUEST_EXIT_IO, "flush failed: status %u", flush_status);
		}
		stats->flushes++;
		return;
	}
	uint32_t slot = (id - DESC_WRITE(0)) / 3;
	if (id < DESC_WRITE(0) || (id - DESC_WRITE(0)) % 3 || slot >= DEPTH_MAX) {
		stats->errors++;
		vguest_fail(VGUEST_EXIT_DEVICE, "the device completed descriptor %u, not the head of a request", id);
	}
	for (unsigned i = 0; i < nfree; i++)
		if (free_slot[i] == slot) {
			stats->errors++;
			vguest_fail(VGUEST_EXIT_DEVICE, "the device completed descriptor %u twice", id);
		}
	if (write_status[slot] != VIRTIO_BLK_S_OK) {
		stats->errors++;
		vguest_fail(VGUEST_EXIT_IO, "write at block %llu failed: status %u", (unsigned long long)slot_block[slot],
			    write_status[slot]);
	}
	free_slot[nfree++] = (uint8_t)slot;
	hb_count();
	stats->writes++;
}

static void blk_submit(uint16_t head, volatile uint8_t *status)
{
	*status = 0xff;
	in_flight++;
	virtq_push(&rq, head);
	virtq_kick(&rq);
}

static uint32_t blk_write_size(uint32_t block_size)
{
	uint32_t blk_size;

	if (!virtio_has(&vd, VIRTIO_BLK_F_BLK_SIZE))
		return SECTOR_SIZE;
	virtio_read_config(&vd, BLK_CONFIG_BLK_SIZE, &blk_size, sizeof(blk_size));
	if (blk_size < SECTOR_SIZE || blk_size > WRITE_SIZE_MAX || (blk_size & (blk_size - 1)) || blk_size > block_size) {
		virtio_set_failed(&vd);
		vguest_fail(VGUEST_EXIT_DEVICE, "logical block size %u unusable (512..%u, a power of two, at most the "
			    "block size %u)", blk_size, WRITE_SIZE_MAX, block_size);
	}
	return blk_size;
}

static void blk_setup_queue(uint32_t write_size, uint32_t depth)
{
	if (virtq_setup(&vd, &rq, QUEUE_REQUESTS, REQ_QUEUE_SIZE, &rq_mem)) {
		virtio_set_failed(&vd);
		vguest_exit(VGUEST_EXIT_DEVICE);
	}
	if (rq.size < DESC_WRITE(depth)) {
		virtio_set_failed(&vd);
		vguest_fail(VGUEST_EXIT_DEVICE, "request queue of %u entries, %u needed for %u writes in flight", rq.size,
			    DESC_WRITE(depth), depth);
	}
	flush_header.type = VIRTIO_BLK_T_FLUSH;
	rq.desc[DESC_FLUSH] = (struct virtq_desc){ .addr = (uintptr_t)&flush_header, .len = sizeof(flush_header),
						   .flags = VIRTQ_DESC_F_NEXT, .next = DESC_FLUSH + 1 };
	rq.desc[DESC_FLUSH + 1] = (struct virtq_desc){ .addr = (uintptr_t)&flush_status, .len = 1,
						       .flags = VIRTQ_DESC_F_WRITE };
	for (uint32_t s = 0; s < depth; s++) {
		uint16_t d = (uint16_t)DESC_WRITE(s);
		write_header[s].type = VIRTIO_BLK_T_OUT;
		rq.desc[d] = (struct virtq_desc){ .addr = (uintptr_t)&write_header[s], .len = sizeof(write_header[s]),
						  .flags = VIRTQ_DESC_F_NEXT, .next = (uint16_t)(d + 1) };
		rq.desc[d + 1] = (struct virtq_desc){ .addr = (uintptr_t)write_data[s], .len = write_size,
						      .flags = VIRTQ_DESC_F_NEXT, .next = (uint16_t)(d + 2) };
		rq.desc[d + 2] = (struct virtq_desc){ .addr = (uintptr_t)&write_status[s], .len = 1,
						      .flags = VIRTQ_DESC_F_WRITE };
		free_slot[nfree++] = (uint8_t)(depth - 1 - s);
	}
}

static void blk_check_config(void)
{
	volatile struct vguest_config *c = &vguest_config;

	if (c->version != VGUEST_CONFIG_VERSION || c->size != sizeof(*c) || c->guest != VGUEST_DISKAB ||
	    c->block_size < VGUEST_BLOCK_SIZE_MIN || c->block_size > VGUEST_BLOCK_SIZE_MAX ||
	    (c->block_size & (c->block_size - 1)) || c->queue_depth > DEPTH_MAX)
		vguest_fail(VGUEST_EXIT_CONFIG, "bad config block (version %u, size %u, guest %u, block size %u, "
			    "queue depth %u)", c->version, c->size, c->guest, c->block_size, c->queue_depth);
}

void vguest_main(void) __attribute__((noreturn));
void vguest_main(void)
{
	static const uint16_t ids[] = { VIRTIO_BLK_DEVICE_MODERN, VIRTIO_BLK_DEVICE_TRANSITIONAL };
	uint32_t block_size, write_size, flush_every, depth, since_flush = 0;
	uint64_t capacity, blocks, pass;
	struct pci_dev pd;
	bool flush;

	rt_init();
	blk_check_config();
	block_size = vguest_config.block_size;
	flush_every = vguest_config.flush_every;
	depth = vguest_config.queue_depth ? vguest_config.queue_depth : 1;
	con_printf("diskab: starting: blocks of %u bytes, flush every %u writes, %u in flight\n", block_size,
		   flush_every, depth);
	if (!pci_find(VIRTIO_PCI_VENDOR, ids, 2, &pd))
		vguest_fail(VGUEST_EXIT_NO_DEVICE,
			    "no virtio-blk PCI device on bus 0 (vendor 0x1af4, device 0x1042 or 0x1001)");
	con_printf("diskab: virtio-blk %04x at %02x:%02x.%x\n", pd.device, pd.bus, pd.dev, pd.fn);
	if (virtio_open(&vd, &pd, vguest_config.flags & VGUEST_CFG_ASSIGN_BARS) || virtio_start(&vd))
		vguest_exit(VGUEST_EXIT_DEVICE);
	if (vd.offered >> VIRTIO_BLK_F_RO & 1) {
		virtio_set_failed(&vd);
		vguest_fail(VGUEST_EXIT_DEVICE, "the disk is read-only (VIRTIO_BLK_F_RO)");
	}
	if (virtio_set_features(&vd, 1ULL << VIRTIO_BLK_F_BLK_SIZE | 1ULL << VIRTIO_BLK_F_FLUSH, 0))
		vguest_exit(VGUEST_EXIT_FEATURES);
	flush = virtio_has(&vd, VIRTIO_BLK_F_FLUSH) && flush_every;
	write_size = blk_write_size(block_size);
	virtio_read_config(&vd, BLK_CONFIG_CAPACITY, &capacity, sizeof(capacity));
	blocks = capacity / (block_size / SECTOR_SIZE);
	if (!blocks) {
		virtio_set_failed(&vd);
		vguest_fail(VGUEST_EXIT_DEVICE, "the disk has %llu sectors, less than one block of %u bytes",
			    (unsigned long long)capacity, block_size);
	}
	blk_setup_queue(write_size, depth);
	virtio_driver_ok(&vd);

	memset((void *)stats, 0, sizeof(*stats));
	stats->head.guest = VGUEST_DISKAB;
	stats->head.size = VGUEST_STATS_SIZE;
	stats->head.features = vd.features;
	stats->head.pci_bdf = (uint32_t)pd.bus << 8 | (uint32_t)pd.dev << 3 | pd.fn;
	stats->blocks = blocks;
	stats->capacity = capacity;
	stats->block_size = block_size;
	stats->write_size = write_size;
	stats->pass = 1;
	barrier();
	stats->head.magic = VGUEST_STATS_MAGIC;

	con_printf("diskab: %llu sectors, %llu blocks of %u bytes, writes of %u bytes, features 0x%llx, %s\n",
		   (unsigned long long)capacity, (unsigned long long)blocks, block_size, write_size,
		   (unsigned long long)vd.features, flush ? "flushes" : "no flushes");
	hb_start(VGUEST_HB_MODE_DISKAB);
	con_puts("glide-guest diskab\n");
	for (pass = 1;; pass++) {
		stats->pass = pass;
		for (uint64_t b = 0; b < blocks; b++) {
			uint64_t words[2] = { pass, b };

			if (in_flight == depth)
				blk_complete_one();
			uint8_t slot = free_slot[--nfree];
			memcpy(write_data[slot], words, sizeof(words));
			write_header[slot].sector = b * (block_size / SECTOR_SIZE);
			slot_block[slot] = b;
			blk_submit((uint16_t)DESC_WRITE(slot), &write_status[slot]);
			stats->next_block = b + 1 < blocks ? b + 1 : 0;
			if (flush && ++since_flush == flush_every) {
				while (in_flight)
					blk_complete_one();
				blk_submit(DESC_FLUSH, &flush_status);
				blk_complete_one();
				since_flush = 0;
			}
		}
	}
}
