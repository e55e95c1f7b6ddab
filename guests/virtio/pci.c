/* pci.c: PCI configuration mechanism #1 (ports 0xCF8/0xCFC) from ring 3,
 * the bus-0 scan and memory BAR setup for the virtio test guests.
 *
 * The guest uses the BAR addresses the platform assigned (glide puts 32-bit
 * BARs in 0xC0000000-0xDFFFFFFF, SeaBIOS where it likes). Only when a BAR
 * the guest needs is unassigned, or the config block says so
 * (VGUEST_CFG_ASSIGN_BARS), it sizes the memory BARs the usual way (decode
 * off, write all ones, read the mask back) and assigns them itself from
 * 0xC0000000 up, naturally aligned, assuming no other device decodes there.
 * Every configuration access is a port I/O exit: a bus scan costs about 70
 * of them. */
#include "pci.h"
#include "rt.h"

#define PCI_CONFIG_ADDR   0xcf8
#define PCI_CONFIG_DATA   0xcfc
#define PCI_ENABLE        0x80000000u
#define PCI_VENDOR_ID     0x00
#define PCI_DEVICE_ID     0x02
#define PCI_COMMAND       0x04
#define PCI_STATUS        0x06
#define PCI_HEADER_TYPE   0x0e
#define PCI_BAR0          0x10
#define PCI_CAP_PTR       0x34
#define PCI_COMMAND_MEMORY 0x0002
#define PCI_COMMAND_MASTER 0x0004
#define PCI_STATUS_CAP_LIST 0x0010
#define PCI_HEADER_MULTIFUNCTION 0x80
#define PCI_BAR_IO        0x1
#define PCI_BAR_TYPE_MASK 0x6
#define PCI_BAR_TYPE_64   0x4
#define PCI_BAR_MEM_MASK  0xfffffff0u
#define PCI_CAPS_MAX      48 /* a loop guard: 192 bytes hold at most 48 capabilities */

#define ASSIGN_START      0xc0000000ULL
#define ASSIGN_END        0xe0000000ULL

static uint32_t pci_address(const struct pci_dev *d, uint8_t off)
{
	return PCI_ENABLE | (uint32_t)d->bus << 16 | (uint32_t)d->dev << 11 | (uint32_t)d->fn << 8 | (off & 0xfc);
}

uint8_t pci_read8(const struct pci_dev *d, uint8_t off)
{
	outl(PCI_CONFIG_ADDR, pci_address(d, off));
	return inb(PCI_CONFIG_DATA + (off & 3));
}

uint16_t pci_read16(const struct pci_dev *d, uint8_t off)
{
	outl(PCI_CONFIG_ADDR, pci_address(d, off));
	return inw(PCI_CONFIG_DATA + (off & 2));
}

uint32_t pci_read32(const struct pci_dev *d, uint8_t off)
{
	outl(PCI_CONFIG_ADDR, pci_address(d, off));
	return inl(PCI_CONFIG_DATA);
}

void pci_write16(const struct pci_dev *d, uint8_t off, uint16_t v)
{
	outl(PCI_CONFIG_ADDR, pci_address(d, off));
	outw(PCI_CONFIG_DATA + (off & 2), v);
}

void pci_write32(const struct pci_dev *d, uint8_t off, uint32_t v)
{
	outl(PCI_CONFIG_ADDR, pci_address(d, off));
	outl(PCI_CONFIG_DATA, v);
}

bool pci_find(uint16_t vendor, const uint16_t *ids, int nids, struct pci_dev *out)
{
	struct pci_dev found[8];
	int best = nids;

	for (uint8_t dev = 0; dev < 32; dev++) {
		for (uint8_t fn = 0; fn < 8; fn++) {
			struct pci_dev d = { .bus = 0, .dev = dev, .fn = fn };
			uint32_t id = pci_read32(&d, PCI_VENDOR_ID);

			if ((id & 0xffff) == 0xffff) {
				if (fn == 0)
					break; /* no device */
				continue;
			}
			d.vendor = (uint16_t)id;
			d.device = (uint16_t)(id >> 16);
			for (int i = 0; i < nids && i < best && i < 8; i++) {
				if (d.vendor == vendor && d.device == ids[i]) {
					found[i] = d;
					best = i;
				}
			}
			if (fn == 0 && !(pci_read8(&d, PCI_HEADER_TYPE) & PCI_HEADER_MULTIFUNCTION))
				break;
		}
	}
	if (best == nids)
		return false;
	*out = found[best];
	return true;
}

/* BAR i's size mask, read with all ones written (decode must be off). */
static uint64_t pci_bar_size(const struct pci_dev *d, int i)
{
	uint8_t off = (uint8_t)(PCI_BAR0 + 4 * i);
	uint32_t lo = pci_read32(d, off), hi = 0, mlo, mhi = 0xffffffffu;

	pci_write32(d, off, 0xffffffffu);
	mlo = pci_read32(d, off) & PCI_BAR_MEM_MASK;
	pci_write32(d, off, lo);
	if (d->bar[i].is64) {
		hi = pci_read32(d, off + 4);
		pci_write32(d, off + 4, 0xffffffffu);
		mhi = pci_read32(d, off + 4);
		pci_write32(d, off + 4, hi);
	}
	if (!mlo && !(d->bar[i].is64 && mhi))
		return 0; /* not implemented */
	return ~((uint64_t)mhi << 32 | mlo) + 1;
}

static void pci_read_bars(struct pci_dev *d)
{
	for (int i = 0; i < PCI_BARS; i++) {
		uint32_t lo = pci_read32(d, (uint8_t)(PCI_BAR0 + 4 * i));
		struct pci_bar *b = &d->bar[i];

		*b = (struct pci_bar){ 0 };
		if (lo & PCI_BAR_IO) {
			b->io = true;
			b->addr = lo & ~3u;
			continue;
		}
		b->addr = lo & PCI_BAR_MEM_MASK;
		if ((lo & PCI_BAR_TYPE_MASK) == PCI_BAR_TYPE_64 && i + 1 < PCI_BARS) {
			b->is64 = true;
			b->addr |= (uint64_t)pci_read32(d, (uint8_t)(PCI_BAR0 + 4 * (i + 1))) << 32;
			d->bar[++i] = (struct pci_bar){ .upper = true };
		}
	}
}

static int pci_assign_bars(struct pci_dev *d, bool force)
{
	uint16_t cmd = pci_read16(d, PCI_COMMAND);
	uint64_t next = ASSIGN_START;

	pci_write16(d, PCI_COMMAND, cmd & ~(PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER));
	for (int i = 0; i < PCI_BARS; i++) {
		struct pci_bar *b = &d->bar[i];

		if (b->io || b->upper)
			continue;
		b->size = pci_bar_size(d, i);
		if (force)
			b->addr = 0;
		/* keep clear of BARs of this device already in the window */
		if (b->addr >= ASSIGN_START && b->addr < ASSIGN_END && b->addr + b->size > next)
			next = b->addr + b->size;
	}
	for (int i = 0; i < PCI_BARS; i++) {
		struct pci_bar *b = &d->bar[i];
		uint8_t off = (uint8_t)(PCI_BAR0 + 4 * i);

		if (b->io || b->upper || b->addr || !b->size)
			continue;
		if (b->size & (b->size - 1)) {
			con_printf("%s: error: BAR %d of %02x:%02x.%x has size 0x%llx, not a power of two\n",
				   vguest_name, i, d->bus, d->dev, d->fn, (unsigned long long)b->size);
			return -1;
		}
		next = (next + b->size - 1) & ~(b->size - 1);
		if (next + b->size > ASSIGN_END) {
			con_printf("%s: error: BAR %d (0x%llx bytes) does not fit below 0x%llx\n", vguest_name, i,
				   (unsigned long long)b->size, ASSIGN_END);
			return -1;
		}
		b->addr = next;
		next += b->size;
		pci_write32(d, off, (uint32_t)b->addr);
		if (b->is64)
			pci_write32(d, off + 4, 0);
		con_printf("%s: assigned BAR %d of %02x:%02x.%x: 0x%llx, 0x%llx bytes\n", vguest_name, i, d->bus,
			   d->dev, d->fn, (unsigned long long)b->addr, (unsigned long long)b->size);
	}
	pci_write16(d, PCI_COMMAND, cmd);
	return 0;
}

int pci_setup_bars(struct pci_dev *d, unsigned needed_mask, bool force)
{
	bool assign = force;
	uint16_t cmd;

	pci_read_bars(d);
	for (int i = 0; i < PCI_BARS; i++)
		if ((needed_mask & (1u << i)) && !d->bar[i].io && !d->bar[i].addr)
			assign = true;
	if (assign && pci_assign_bars(d, force))
		return -1;
	cmd = pci_read16(d, PCI_COMMAND);
	if ((cmd & (PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER)) != (PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER))
		pci_write16(d, PCI_COMMAND, cmd | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
	return 0;
}

uint8_t pci_next_cap(const struct pci_dev *d, uint8_t from, uint8_t id)
{
	uint8_t off;

	if (!from) {
		if (!(pci_read16(d, PCI_STATUS) & PCI_STATUS_CAP_LIST))
			return 0;
		off = pci_read8(d, PCI_CAP_PTR) & 0xfc;
	} else {
		off = pci_read8(d, (uint8_t)(from + 1)) & 0xfc;
	}
	for (int n = 0; off && n < PCI_CAPS_MAX; n++) {
		uint32_t head = pci_read32(d, off);

		if ((head & 0xff) == id)
			return off;
		off = (uint8_t)(head >> 8) & 0xfc;
	}
	return 0;
}
