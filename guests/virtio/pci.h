/* pci.h: PCI configuration space through ports 0xCF8/0xCFC (mechanism #1)
 * from ring 3, the scan of bus 0, and memory BARs: the platform's addresses,
 * or addresses the guest assigns itself in 0xC0000000-0xDFFFFFFF. */
#ifndef GLIDE_VGUEST_PCI_H
#define GLIDE_VGUEST_PCI_H
#include <stdbool.h>
#include <stdint.h>

#define PCI_BARS 6

struct pci_bar {
	uint64_t addr;  /* 0: unassigned */
	uint64_t size;  /* known only once sized (when the guest assigns BARs) */
	bool io;        /* an I/O BAR (unusable for virtio capabilities here) */
	bool is64;      /* a 64-bit memory BAR (takes this slot and the next) */
	bool upper;     /* the upper half of the previous 64-bit BAR */
};

struct pci_dev {
	uint8_t bus, dev, fn;
	uint16_t vendor, device;
	struct pci_bar bar[PCI_BARS];
};

/* Configuration space of d, at byte offset off (naturally aligned). */
uint8_t pci_read8(const struct pci_dev *d, uint8_t off);
uint16_t pci_read16(const struct pci_dev *d, uint8_t off);
uint32_t pci_read32(const struct pci_dev *d, uint8_t off);
void pci_write16(const struct pci_dev *d, uint8_t off, uint16_t v);
void pci_write32(const struct pci_dev *d, uint8_t off, uint32_t v);

/* Scans bus 0 (every function of multi-function devices) for vendor and one
 * of the device ids, in order of preference: the first id found wins. */
bool pci_find(uint16_t vendor, const uint16_t *ids, int nids, struct pci_dev *out);

/* Reads the BARs into d->bar. When a BAR the caller needs (bit i of
 * needed_mask = BAR i) is unassigned, or with force, sizes the device's
 * memory BARs and assigns the unassigned ones (with force all of them) from
 * 0xC0000000 up, above the device's other BARs there. Enables memory decode
 * and bus mastering. Returns 0, or -1 with a message printed. */
int pci_setup_bars(struct pci_dev *d, unsigned needed_mask, bool force);

/* The standard capability list: the offset of the first capability with
 * id at or after offset `from` (0 = the start), or 0 when none is left. */
uint8_t pci_next_cap(const struct pci_dev *d, uint8_t from, uint8_t id);
#endif
