/* virtio.h: a polling driver core for virtio 1.x PCI devices (the modern
 * interface only): the vendor capabilities, the init sequence, split
 * virtqueues in guest memory, notification through the notify capability.
 * No interrupts: every MSI-X vector is VIRTIO_MSI_NO_VECTOR and the driver
 * polls the used rings. */
#ifndef GLIDE_VGUEST_VIRTIO_H
#define GLIDE_VGUEST_VIRTIO_H
#include <stdbool.h>
#include <stdint.h>

#include "pci.h"

#define VIRTIO_PCI_VENDOR        0x1af4
#define VIRTIO_F_VERSION_1       32
#define VIRTIO_STATUS_ACKNOWLEDGE 1
#define VIRTIO_STATUS_DRIVER      2
#define VIRTIO_STATUS_DRIVER_OK   4
#define VIRTIO_STATUS_FEATURES_OK 8
#define VIRTIO_STATUS_NEEDS_RESET 64
#define VIRTIO_STATUS_FAILED      128

#define VIRTQ_DESC_F_NEXT   1
#define VIRTQ_DESC_F_WRITE  2
#define VIRTQ_SIZE_MAX      256 /* the largest ring the guest allocates */

struct virtq_desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags;
	uint16_t next;
};

struct virtq_avail {
	uint16_t flags;
	uint16_t idx;
	uint16_t ring[VIRTQ_SIZE_MAX];
	uint16_t used_event;
};

struct virtq_used_elem {
	uint32_t id;
	uint32_t len;
};

struct virtq_used {
	uint16_t flags;
	uint16_t idx;
	struct virtq_used_elem ring[VIRTQ_SIZE_MAX];
	uint16_t avail_event;
};

/* The memory of one split virtqueue (one static object per queue). */
struct virtq_mem {
	struct virtq_desc desc[VIRTQ_SIZE_MAX];
	struct virtq_avail avail __attribute__((aligned(4)));
	struct virtq_used used __attribute__((aligned(4096)));
} __attribute__((aligned(4096)));

struct virtio_dev;

struct virtq {
	struct virtio_dev *vd;
	struct virtq_mem *mem;
	struct virtq_desc *desc;  /* mem->desc, for the drivers */
	uint16_t index, size;
	uint16_t avail_idx;       /* next avail slot, published by virtq_kick */
	uint16_t used_idx;        /* next used entry to take */
	uint16_t published;       /* avail idx the device has seen */
	uintptr_t notify;         /* this queue's notify address */
	uint64_t kicks;           /* notifications written */
};

struct virtio_dev {
	struct pci_dev pci;
	uintptr_t common, isr, device, notify;
	uint32_t device_len, notify_len, notify_mul;
	uint64_t offered, features;
};

/* Finds the capabilities, sets up the BARs (pci_setup_bars) and maps them.
 * Returns 0, or -1 with a message printed. */
int virtio_open(struct virtio_dev *vd, const struct pci_dev *pd, bool assign_bars);
/* Reset, then ACKNOWLEDGE and DRIVER; reads the offered features into
 * vd->offered. Returns 0, or -1 with a message printed. */
int virtio_start(struct virtio_dev *vd);
/* Accepts VERSION_1 and the bits of wanted the device offers, then
 * FEATURES_OK and its check. Returns 0; -1 when VERSION_1 or a required bit
 * is not offered, -2 when the device clears FEATURES_OK (the device is left
 * FAILED either way, a message printed). */
int virtio_set_features(struct virtio_dev *vd, uint64_t wanted, uint64_t required);
/* Sets up queue index with at most want entries (a power of two no larger
 * than the device's maximum). Returns 0, or -1 with a message printed. */
int virtq_setup(struct virtio_dev *vd, struct virtq *q, uint16_t index, uint16_t want, struct virtq_mem *mem);
void virtio_driver_ok(struct virtio_dev *vd);
uint8_t virtio_status(const struct virtio_dev *vd);
void virtio_set_failed(struct virtio_dev *vd);

/* Device config space, read under config_generation (consistent values). */
void virtio_read_config(const struct virtio_dev *vd, uint32_t off, void *buf, uint32_t len);
static inline bool virtio_has(const struct virtio_dev *vd, unsigned bit) { return (vd->features >> bit) & 1; }

/* Puts a descriptor chain's head in the avail ring (not yet visible). */
void virtq_push(struct virtq *q, uint16_t head);
/* Publishes the pushed heads and notifies the device unless it asked not
 * to (VIRTQ_USED_F_NO_NOTIFY). */
void virtq_kick(struct virtq *q);
/* Takes the next used entry: true with its id and written length. */
bool virtq_pop(struct virtq *q, uint32_t *id, uint32_t *len);
#endif
