/* diskab: a ring-3 test guest that writes the A-B pattern on a virtio-blk
 * disk (virtio 1.x PCI, polled): an 8-byte little-endian counter at the
 * start of every block (4 KiB by default, config block), block after block,
 * forever. Pass p writes the value p (from 1) to blocks 0, 1, ..., N-1,
 * then pass p + 1 starts at block 0; the counter is a u64 and never wraps.
 *
 * One request is in flight at a time and the next starts only once the
 * device has completed the previous one, so a disk taken from a stopped VM
 * holds one value everywhere except that a prefix may hold the next value:
 * every block equals the one before it except at most one place where it
 * steps down by one (`abcheck --disk`). The image must start zero-filled
 * (or hold one value everywhere below the first pass's value).
 *
 * Each write is one VIRTIO_BLK_T_OUT request of the device's logical block
 * size (512 bytes unless VIRTIO_BLK_F_BLK_SIZE says more) at the block's
 * start: the counter, then the block index (u64), then zeros. With
 * VIRTIO_BLK_F_FLUSH the guest flushes after every `flush_every` writes.
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
#define REQ_QUEUE_SIZE  8
#define DESC_WRITE      0 /* write: header, data, status */
#define DESC_FLUSH      3 /* flush: header, status */
#define SLOW_REQUEST_TSC (1ULL << 35) /* 10-20 s: say once that a request is slow */

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
};

static struct virtio_dev vd;
static struct virtq rq;
static struct virtq_mem rq_mem;
static struct blk_req_header write_header, flush_header;
static uint8_t write_data[WRITE_SIZE_MAX] __attribute__((aligned(4096)));
static volatile uint8_t write_status, flush_status;

static volatile struct vguest_blk_stats *const stats = (volatile struct vguest_blk_stats *)(uintptr_t)VGUEST_STATS_ADDR;

/* Submits the chain at head and polls until the device completes it. */
static void blk_request(uint16_t head, volatile uint8_t *status, const char *what, uint64_t block)
{
	uint64_t start = rdtsc();
	bool slow = false;
	uint32_t id, len;

	*status = 0xff;
	virtq_push(&rq, head);
	virtq_kick(&rq);
	while (!virtq_pop(&rq, &id, &len)) {
		uint64_t now = hb_poll();

		if (!slow && now - start > SLOW_REQUEST_TSC) {
			con_printf("diskab: %s at block %llu not completed after %llu TSC cycles, still waiting\n", what,
				   (unsigned long long)block, SLOW_REQUEST_TSC);
			slow = true;
		}
	}
	if (id != head) {
		stats->errors++;
		vguest_fail(VGUEST_EXIT_DEVICE, "the device completed descriptor %u, %u was in flight", id, head);
	}
	if (*status != VIRTIO_BLK_S_OK) {
		stats->errors++;
		vguest_fail(VGUEST_EXIT_IO, "%s at block %llu failed: status %u", what, (unsigned long long)block,
			    *status);
	}
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

static void blk_setup_queue(uint32_t write_size)
{
	if (virtq_setup(&vd, &rq, QUEUE_REQUESTS, REQ_QUEUE_SIZE, &rq_mem)) {
		virtio_set_failed(&vd);
		vguest_exit(VGUEST_EXIT_DEVICE);
	}
	if (rq.size < DESC_FLUSH + 2) {
		virtio_set_failed(&vd);
		vguest_fail(VGUEST_EXIT_DEVICE, "request queue of %u entries, %u needed", rq.size, DESC_FLUSH + 2);
	}
	write_header.type = VIRTIO_BLK_T_OUT;
	flush_header.type = VIRTIO_BLK_T_FLUSH;
	rq.desc[DESC_WRITE] = (struct virtq_desc){ .addr = (uintptr_t)&write_header, .len = sizeof(write_header),
						   .flags = VIRTQ_DESC_F_NEXT, .next = DESC_WRITE + 1 };
	rq.desc[DESC_WRITE + 1] = (struct virtq_desc){ .addr = (uintptr_t)write_data, .len = write_size,
						       .flags = VIRTQ_DESC_F_NEXT, .next = DESC_WRITE + 2 };
	rq.desc[DESC_WRITE + 2] = (struct virtq_desc){ .addr = (uintptr_t)&write_status, .len = 1,
						       .flags = VIRTQ_DESC_F_WRITE };
	rq.desc[DESC_FLUSH] = (struct virtq_desc){ .addr = (uintptr_t)&flush_header, .len = sizeof(flush_header),
						   .flags = VIRTQ_DESC_F_NEXT, .next = DESC_FLUSH + 1 };
	rq.desc[DESC_FLUSH + 1] = (struct virtq_desc){ .addr = (uintptr_t)&flush_status, .len = 1,
						       .flags = VIRTQ_DESC_F_WRITE };
}

static void blk_check_config(void)
{
	volatile struct vguest_config *c = &vguest_config;

	if (c->version != VGUEST_CONFIG_VERSION || c->size != sizeof(*c) || c->guest != VGUEST_DISKAB ||
	    c->block_size < VGUEST_BLOCK_SIZE_MIN || c->block_size > VGUEST_BLOCK_SIZE_MAX ||
	    (c->block_size & (c->block_size - 1)))
		vguest_fail(VGUEST_EXIT_CONFIG, "bad config block (version %u, size %u, guest %u, block size %u)",
			    c->version, c->size, c->guest, c->block_size);
}

void vguest_main(void) __attribute__((noreturn));
void vguest_main(void)
{
	static const uint16_t ids[] = { VIRTIO_BLK_DEVICE_MODERN, VIRTIO_BLK_DEVICE_TRANSITIONAL };
	uint32_t block_size, write_size, flush_every, since_flush = 0;
	uint64_t capacity, blocks, pass;
	struct pci_dev pd;
	bool flush;

	rt_init();
	blk_check_config();
	block_size = vguest_config.block_size;
	flush_every = vguest_config.flush_every;
	con_printf("diskab: starting: blocks of %u bytes, flush every %u writes\n", block_size, flush_every);
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
	blk_setup_queue(write_size);
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

			memcpy(write_data, words, sizeof(words));
			write_header.sector = b * (block_size / SECTOR_SIZE);
			blk_request(DESC_WRITE, &write_status, "write", b);
			hb_count();
			stats->writes++;
			stats->next_block = b + 1 < blocks ? b + 1 : 0;
			if (flush && ++since_flush == flush_every) {
				blk_request(DESC_FLUSH, &flush_status, "flush", b);
				stats->flushes++;
				since_flush = 0;
			}
		}
	}
}
