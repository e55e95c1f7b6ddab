/* virtio.c: virtio 1.x over PCI for the polling test guests (spec 4.1,
 * "Virtio Over PCI Bus", and 2.7, split virtqueues).
 *
 * The device is found through its vendor capabilities (id 0x09): common,
 * notify, ISR and device config, each the first of its type in the list,
 * in a memory BAR. The init sequence is the spec's 3.1.1 order. Every
 * 64-bit field of the common config is written as two 32-bit halves, low
 * then high. Each queue gets its own static memory; the driver keeps one
 * request per descriptor chain and reuses descriptors itself (virtq_push
 * takes a ready head). No interrupts: MSI-X vectors are NO_VECTOR and MSI-X
 * stays disabled. */
#include "virtio.h"
#include "rt.h"

#define PCI_CAP_ID_VNDR          0x09
#define VIRTIO_PCI_CAP_COMMON    1
#define VIRTIO_PCI_CAP_NOTIFY    2
#define VIRTIO_PCI_CAP_ISR       3
#define VIRTIO_PCI_CAP_DEVICE    4
#define VIRTIO_MSI_NO_VECTOR     0xffff
#define VIRTQ_USED_F_NO_NOTIFY   1

/* struct virtio_pci_common_cfg */
#define COMMON_DFSELECT      0x00
#define COMMON_DF            0x04
#define COMMON_GFSELECT      0x08
#define COMMON_GF            0x0c
#define COMMON_MSIX          0x10
#define COMMON_NUMQ          0x12
#define COMMON_STATUS        0x14
#define COMMON_CFGGENERATION 0x15
#define COMMON_Q_SELECT      0x16
#define COMMON_Q_SIZE        0x18
#define COMMON_Q_MSIX        0x1a
#define COMMON_Q_ENABLE      0x1c
#define COMMON_Q_NOFF        0x1e
#define COMMON_Q_DESCLO      0x20
#define COMMON_Q_DESCHI      0x24
#define COMMON_Q_AVAILLO     0x28
#define COMMON_Q_AVAILHI     0x2c
#define COMMON_Q_USEDLO      0x30
#define COMMON_Q_USEDHI      0x34
#define COMMON_CFG_MIN_LEN   0x38

#define RESET_TIMEOUT_TSC    (1ULL << 33) /* a few seconds at any TSC rate seen */

struct virtio_cap {
	bool found;
	uint8_t bar;
	uint32_t offset, length, notify_mul;
};

static const char *const cap_names[] = { "", "common", "notify", "ISR", "device" };

static int virtio_find_caps(const struct pci_dev *pd, struct virtio_cap caps[5])
{
	for (uint8_t off = pci_next_cap(pd, 0, PCI_CAP_ID_VNDR); off; off = pci_next_cap(pd, off, PCI_CAP_ID_VNDR)) {
		uint32_t head = pci_read32(pd, off);
		uint8_t type = (uint8_t)(head >> 24), bar = pci_read8(pd, (uint8_t)(off + 4));

		if (type < VIRTIO_PCI_CAP_COMMON || type > VIRTIO_PCI_CAP_DEVICE || caps[type].found || bar >= PCI_BARS)
			continue;
		caps[type] = (struct virtio_cap){
			.found = true,
			.bar = bar,
			.offset = pci_read32(pd, (uint8_t)(off + 8)),
			.length = pci_read32(pd, (uint8_t)(off + 12)),
		};
		if (type == VIRTIO_PCI_CAP_NOTIFY)
			caps[type].notify_mul = pci_read32(pd, (uint8_t)(off + 16));
	}
	for (int t = VIRTIO_PCI_CAP_COMMON; t <= VIRTIO_PCI_CAP_DEVICE; t++) {
		if (!caps[t].found) {
			con_printf("%s: error: %02x:%02x.%x has no virtio %s capability (not a virtio 1.x device)\n",
				   vguest_name, pd->bus, pd->dev, pd->fn, cap_names[t]);
			return -1;
		}
	}
	if (caps[VIRTIO_PCI_CAP_COMMON].length < COMMON_CFG_MIN_LEN) {
		con_printf("%s: error: the common config is %u bytes, at least %u expected\n", vguest_name,
			   caps[VIRTIO_PCI_CAP_COMMON].length, COMMON_CFG_MIN_LEN);
		return -1;
	}
	return 0;
}

int virtio_open(struct virtio_dev *vd, const struct pci_dev *pd, bool assign_bars)
{
	struct virtio_cap caps[5] = { { 0 } };
	uintptr_t *where[5] = { NULL, &vd->common, &vd->notify, &vd->isr, &vd->device };
	unsigned needed = 0;

	*vd = (struct virtio_dev){ .pci = *pd };
	if (virtio_find_caps(pd, caps))
		return -1;
	for (int t = VIRTIO_PCI_CAP_COMMON; t <= VIRTIO_PCI_CAP_DEVICE; t++)
		needed |= 1u << caps[t].bar;
	if (pci_setup_bars(&vd->pci, needed, assign_bars))
		return -1;
	for (int t = VIRTIO_PCI_CAP_COMMON; t <= VIRTIO_PCI_CAP_DEVICE; t++) {
		const struct pci_bar *b = &vd->pci.bar[caps[t].bar];
		uint64_t a = b->addr + caps[t].offset;

		if (b->io || b->upper || !b->addr) {
			con_printf("%s: error: the %s capability is in BAR %u, not a usable memory BAR\n", vguest_name,
				   cap_names[t], caps[t].bar);
			return -1;
		}
		if (rt_map_mmio(a, caps[t].length)) {
			con_printf("%s: error: cannot map the %s capability at 0x%llx\n", vguest_name, cap_names[t],
				   (unsigned long long)a);
			return -1;
		}
		*where[t] = (uintptr_t)a;
	}
	for (int i = 0; i < PCI_BARS; i++)
		if (needed & (1u << i))
			con_printf("%s: BAR %d at 0x%llx%s\n", vguest_name, i, (unsigned long long)vd->pci.bar[i].addr,
				   vd->pci.bar[i].is64 ? " (64-bit)" : "");
	vd->device_len = caps[VIRTIO_PCI_CAP_DEVICE].length;
	vd->notify_len = caps[VIRTIO_PCI_CAP_NOTIFY].length;
	vd->notify_mul = caps[VIRTIO_PCI_CAP_NOTIFY].notify_mul;
	return 0;
}

uint8_t virtio_status(const struct virtio_dev *vd)
{
	return mmio_read8(vd->common + COMMON_STATUS);
}

static void virtio_set_status(struct virtio_dev *vd, uint8_t bits)
{
	mmio_write8(vd->common + COMMON_STATUS, virtio_status(vd) | bits);
}

void virtio_set_failed(struct virtio_dev *vd)
{
	virtio_set_status(vd, VIRTIO_STATUS_FAILED);
}

static void write64(uintptr_t lo, uint64_t v)
{
	mmio_write32(lo, (uint32_t)v);
	mmio_write32(lo + 4, (uint32_t)(v >> 32));
}

int virtio_start(struct virtio_dev *vd)
{
	uint64_t start = rdtsc();

	mmio_write8(vd->common + COMMON_STATUS, 0);
	while (virtio_status(vd)) {
		if (rdtsc() - start > RESET_TIMEOUT_TSC) {
			con_printf("%s: error: the device does not finish its reset (status 0x%x)\n", vguest_name,
				   virtio_status(vd));
			return -1;
		}
		cpu_relax();
	}
	virtio_set_status(vd, VIRTIO_STATUS_ACKNOWLEDGE);
	virtio_set_status(vd, VIRTIO_STATUS_DRIVER);
	vd->offered = 0;
	for (uint32_t half = 0; half < 2; half++) {
		mmio_write32(vd->common + COMMON_DFSELECT, half);
		vd->offered |= (uint64_t)mmio_read32(vd->common + COMMON_DF) << (32 * half);
	}
	return 0;
}

int virtio_set_features(struct virtio_dev *vd, uint64_t wanted, uint64_t required)
{
	required |= 1ULL << VIRTIO_F_VERSION_1;
	if ((vd->offered & required) != required) {
		con_printf("%s: error: the device lacks required features 0x%llx (offers 0x%llx)\n", vguest_name,
			   (unsigned long long)(required & ~vd->offered), (unsigned long long)vd->offered);
		virtio_set_failed(vd);
		return -1;
	}
	vd->features = vd->offered & (wanted | required);
	for (uint32_t half = 0; half < 2; half++) {
		mmio_write32(vd->common + COMMON_GFSELECT, half);
		mmio_write32(vd->common + COMMON_GF, (uint32_t)(vd->features >> (32 * half)));
	}
	virtio_set_status(vd, VIRTIO_STATUS_FEATURES_OK);
	if (!(virtio_status(vd) & VIRTIO_STATUS_FEATURES_OK)) {
		con_printf("%s: error: the device refused FEATURES_OK (features 0x%llx of offered 0x%llx)\n",
			   vguest_name, (unsigned long long)vd->features, (unsigned long long)vd->offered);
		virtio_set_failed(vd);
		return -2;
	}
	mmio_write16(vd->common + COMMON_MSIX, VIRTIO_MSI_NO_VECTOR);
	return 0;
}

int virtq_setup(struct virtio_dev *vd, struct virtq *q, uint16_t index, uint16_t want, struct virtq_mem *mem)
{
	uint16_t max, size = 1, noff;
	uint64_t notify_off;

	if (index >= mmio_read16(vd->common + COMMON_NUMQ)) {
		con_printf("%s: error: the device has %u queues, queue %u needed\n", vguest_name,
			   mmio_read16(vd->common + COMMON_NUMQ), index);
		return -1;
	}
	mmio_write16(vd->common + COMMON_Q_SELECT, index);
	max = mmio_read16(vd->common + COMMON_Q_SIZE);
	if (!max) {
		con_printf("%s: error: queue %u is not available (size 0)\n", vguest_name, index);
		return -1;
	}
	/* the largest power of two within want, the device's maximum and ours */
	while (size < VIRTQ_SIZE_MAX && size * 2 <= want && size * 2 <= max)
		size *= 2;
	noff = mmio_read16(vd->common + COMMON_Q_NOFF);
	notify_off = (uint64_t)noff * vd->notify_mul;
	if (notify_off + 2 > vd->notify_len) {
		con_printf("%s: error: queue %u's notify offset 0x%llx lies outside the notify region (0x%x bytes)\n",
			   vguest_name, index, (unsigned long long)notify_off, vd->notify_len);
		return -1;
	}
	memset(mem, 0, sizeof(*mem));
	*q = (struct virtq){
		.vd = vd,
		.mem = mem,
		.desc = mem->desc,
		.index = index,
		.size = size,
		.notify = vd->notify + (uintptr_t)notify_off,
	};
	mmio_write16(vd->common + COMMON_Q_SIZE, size);
	mmio_write16(vd->common + COMMON_Q_MSIX, VIRTIO_MSI_NO_VECTOR);
	write64(vd->common + COMMON_Q_DESCLO, (uintptr_t)mem->desc);
	write64(vd->common + COMMON_Q_AVAILLO, (uintptr_t)&mem->avail);
	write64(vd->common + COMMON_Q_USEDLO, (uintptr_t)&mem->used);
	mmio_write16(vd->common + COMMON_Q_ENABLE, 1);
	return 0;
}

void virtio_driver_ok(struct virtio_dev *vd)
{
	virtio_set_status(vd, VIRTIO_STATUS_DRIVER_OK);
}

void virtio_read_config(const struct virtio_dev *vd, uint32_t off, void *buf, uint32_t len)
{
	uint8_t *out = buf, gen;

	do {
		gen = mmio_read8(vd->common + COMMON_CFGGENERATION);
		for (uint32_t i = 0; i < len; i++)
			out[i] = off + i < vd->device_len ? mmio_read8(vd->device + off + i) : 0;
	} while (gen != mmio_read8(vd->common + COMMON_CFGGENERATION));
}

void virtq_push(struct virtq *q, uint16_t head)
{
	volatile uint16_t *slot = &q->mem->avail.ring[q->avail_idx & (q->size - 1)];

	*slot = head;
	q->avail_idx++;
}

void virtq_kick(struct virtq *q)
{
	volatile struct virtq_avail *avail = &q->mem->avail;
	volatile struct virtq_used *used = &q->mem->used;

	if (q->published == q->avail_idx)
		return;
	barrier(); /* ring entries (and descriptors) before the index */
	avail->idx = q->avail_idx;
	q->published = q->avail_idx;
	mb(); /* the index is visible before the device's flag is read */
	if (!(used->flags & VIRTQ_USED_F_NO_NOTIFY)) {
		mmio_write16(q->notify, q->index);
		q->kicks++;
	}
}

bool virtq_pop(struct virtq *q, uint32_t *id, uint32_t *len)
{
	volatile struct virtq_used *used = &q->mem->used;
	volatile struct virtq_used_elem *e;

	if (used->idx == q->used_idx)
		return false;
	barrier(); /* the index before the entry */
	e = &used->ring[q->used_idx & (q->size - 1)];
	*id = e->id;
	*len = e->len;
	q->used_idx++;
	return true;
}
