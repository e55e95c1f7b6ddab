/* The virtio 1.x PCI transport and split virtqueues (virtio.h): the common
 * configuration registers, feature negotiation, queue set-up, ISR and
 * MSI-X/INTx interrupts, ioeventfd notifications that follow the BAR, the
 * per-device event thread that pauses with the VM, and the transport part
 * of a device's saved state. Every descriptor chain the driver hands over
 * is bounds-checked against guest RAM before the device sees it. */
#include "devices/virtio.h"
#include "devices/devices.h"
#include "state/state.h"
#include "common/util.h"
#include "vmm/vm.h"
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <unistd.h>

#define VIRTIO_PCI_CAP_COMMON_CFG 1
#define VIRTIO_PCI_CAP_NOTIFY_CFG 2
#define VIRTIO_PCI_CAP_ISR_CFG 3
#define VIRTIO_PCI_CAP_DEVICE_CFG 4
#define VIRTIO_PCI_CAP_PCI_CFG 5
#define VIRTIO_COMMON_CFG_LEN 0x38
#define VIRTIO_PCI_CLASS_NET 0x020000
#define VIRTIO_PCI_CLASS_STORAGE 0x010000
#define VIRTIO_PCI_CLASS_OTHER 0xff0000

#define VIRTQ_DESC_F_NEXT 1
#define VIRTQ_DESC_F_WRITE 2
#define VIRTQ_DESC_F_INDIRECT 4
#define VIRTQ_AVAIL_F_NO_INTERRUPT 1
#define EVENT_WAKE UINT64_MAX
#define EVENT_BACKEND (1ULL << 32)

struct virtq_desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags, next;
};

static inline uint16_t status_load(const struct virtio_dev *vd)
{
	return __atomic_load_n(&vd->status, __ATOMIC_ACQUIRE);
}

bool virtio_has_feature(const struct virtio_dev *vd, int bit)
{
	return (vd->driver_features >> bit) & 1;
}

bool virtio_driver_ok(const struct virtio_dev *vd)
{
	uint8_t st = status_load(vd);
	return (st & VIRTIO_STATUS_DRIVER_OK) && !(st & VIRTIO_STATUS_NEEDS_RESET);
}

bool virtio_queue_ready(const struct virtio_dev *vd, int q)
{
	return q >= 0 && q < vd->nqueues && (status_load(vd) & VIRTIO_STATUS_DRIVER_OK) &&
	       !(status_load(vd) & VIRTIO_STATUS_NEEDS_RESET) && __atomic_load_n(&vd->vq[q].enabled, __ATOMIC_ACQUIRE);
}

/* ---- guest memory ---- */

static void *gpa_ptr(struct virtio_dev *vd, uint64_t gpa, uint64_t len)
{
	return guest_memory_ptr(&vd->vm->mem, gpa, len);
}

static void mark_dirty(struct virtio_dev *vd, uint64_t gpa, uint64_t len)
{
	vm_mark_dirty(vd->vm, gpa, len);
}

static void raise_interrupt(struct virtio_dev *vd, uint16_t vector, uint8_t isr_bit);

/* The driver broke the rules: the device stops using its queues until reset. */
static void virtio_broken(struct virtio_dev *vd, const char *why, int q)
{
	if (!(status_load(vd) & VIRTIO_STATUS_NEEDS_RESET))
		glide_log("virtio", "%s: queue %d: %s: device needs reset", vd->pci.name, q, why);
	/* The generation moves first: a driver that sees NEEDS_RESET sees the
	 * new generation too (the other order let it read the old one). */
	__atomic_add_fetch(&vd->config_generation, 1, __ATOMIC_SEQ_CST);
	__atomic_or_fetch(&vd->status, VIRTIO_STATUS_NEEDS_RESET, __ATOMIC_SEQ_CST);
	raise_interrupt(vd, vd->config_msix_vector, 2);
}

/* ---- virtqueues ---- */

static int chain_add(struct virtio_dev *vd, struct virtq_chain *c, const struct virtq_desc *d, int q)
{
	int n = c->nout + c->nin;
	if (n >= VIRTIO_CHAIN_MAX) {
		virtio_broken(vd, "descriptor chain too long", q);
		return -EINVAL;
	}
	void *p = d->len ? gpa_ptr(vd, d->addr, d->len) : NULL;
	if (d->len && !p) {
		virtio_broken(vd, "buffer outside guest RAM", q);
		return -EINVAL;
	}
	if (d->flags & VIRTQ_DESC_F_WRITE) {
		c->nin++;
		c->in_bytes += d->len;
	} else {
		if (c->nin) {
			virtio_broken(vd, "readable buffer after a writable one", q);
			return -EINVAL;
		}
		c->nout++;
	}
	c->iov[n].iov_base = p;
	c->iov[n].iov_len = d->len;
	c->gpa[n] = d->addr;
	return 0;
}

static int read_indirect(struct virtio_dev *vd, struct virtq_chain *c, const struct virtq_desc *ind, int q)
{
	if (ind->len == 0 || ind->len % sizeof(struct virtq_desc) || ind->len / sizeof(struct virtq_desc) > VIRTIO_CHAIN_MAX) {
		virtio_broken(vd, "bad indirect descriptor table length", q);
		return -EINVAL;
	}
	const struct virtq_desc *t = gpa_ptr(vd, ind->addr, ind->len);
	if (!t) {
		virtio_broken(vd, "indirect table outside guest RAM", q);
		return -EINVAL;
	}
	unsigned n = ind->len / sizeof(struct virtq_desc), i = 0, steps = 0;
	for (;;) {
		struct virtq_desc d;
		memcpy(&d, &t[i], sizeof(d));
		if (d.flags & VIRTQ_DESC_F_INDIRECT) {
			virtio_broken(vd, "nested indirect descriptor", q);
			return -EINVAL;
		}
		if (chain_add(vd, c, &d, q))
			return -EINVAL;
		if (!(d.flags & VIRTQ_DESC_F_NEXT))
			return 0;
		if (d.next >= n || ++steps >= n) {
			virtio_broken(vd, "indirect chain loops or leaves its table", q);
			return -EINVAL;
		}
		i = d.next;
	}
}

int virtq_pop(struct virtio_dev *vd, int q, struct virtq_chain *c)
{
	struct virtq *vq = &vd->vq[q];
	if (!virtio_queue_ready(vd, q))
		return 0;
	uint16_t size = vq->size;
	volatile uint16_t *avail = gpa_ptr(vd, vq->avail_gpa, 6 + 2ULL * size);
	const struct virtq_desc *desc = gpa_ptr(vd, vq->desc_gpa, 16ULL * size);
	/* The used ring too: a chain taken is a request carried out (a disk
	 * write), which must not happen when it can never be returned. */
	const void *used = gpa_ptr(vd, vq->used_gpa, 6 + 8ULL * size);
	if (!avail || !desc || !used) {
		virtio_broken(vd, "ring outside guest RAM", q);
		return -EINVAL;
	}
	uint16_t avail_idx = __atomic_load_n(&avail[1], __ATOMIC_ACQUIRE);
	if (avail_idx == vq->last_avail)
		return 0;
	if ((uint16_t)(avail_idx - vq->last_avail) > size) {
		virtio_broken(vd, "available index ran ahead of the ring", q);
		return -EINVAL;
	}
	uint16_t head = avail[2 + vq->last_avail % size];
	if (head >= size) {
		virtio_broken(vd, "head descriptor out of range", q);
		return -EINVAL;
	}
	c->nout = c->nin = 0; /* iov[] and gpa[] are filled as far as they are used */
	c->in_bytes = 0;
	c->head = head;
	unsigned i = head, steps = 0;
	for (;;) {
		struct virtq_desc d;
		memcpy(&d, (const void *)&desc[i], sizeof(d));
		if (d.flags & VIRTQ_DESC_F_INDIRECT) {
			if (!virtio_has_feature(vd, VIRTIO_F_RING_INDIRECT_DESC) || (d.flags & VIRTQ_DESC_F_NEXT) || c->nout + c->nin) {
				virtio_broken(vd, "indirect descriptor not allowed here", q);
				return -EINVAL;
			}
			if (read_indirect(vd, c, &d, q))
				return -EINVAL;
			break;
		}
		if (chain_add(vd, c, &d, q))
			return -EINVAL;
		if (!(d.flags & VIRTQ_DESC_F_NEXT))
			break;
		if (d.next >= size || ++steps >= size) {
			virtio_broken(vd, "descriptor chain loops or leaves the table", q);
			return -EINVAL;
		}
		i = d.next;
	}
	vq->last_avail++;
	if (virtio_has_feature(vd, VIRTIO_F_RING_EVENT_IDX)) {
		/* avail_event: notify me when you go past what I have taken */
		uint16_t *ev = gpa_ptr(vd, vq->used_gpa + 4 + 8ULL * size, 2);
		if (ev) {
			__atomic_store_n(ev, vq->last_avail, __ATOMIC_RELEASE);
			mark_dirty(vd, vq->used_gpa + 4 + 8ULL * size, 2);
		}
	}
	return 1;
}

void virtq_unpop(struct virtio_dev *vd, int q)
{
	vd->vq[q].last_avail--;
}

void virtq_push(struct virtio_dev *vd, int q, const struct virtq_chain *c, uint32_t written)
{
	struct virtq *vq = &vd->vq[q];
	uint16_t size = vq->size;
	uint8_t *used = gpa_ptr(vd, vq->used_gpa, 6 + 8ULL * size);
	if (!used) {
		virtio_broken(vd, "used ring outside guest RAM", q);
		return;
	}
	/* What the device wrote into the chain's buffers is guest memory the migration must send again. */
	uint64_t left = written;
	for (int i = c->nout; i < c->nout + c->nin && left; i++) {
		uint64_t n = MIN(left, (uint64_t)c->iov[i].iov_len);
		mark_dirty(vd, c->gpa[i], n);
		left -= n;
	}
	unsigned slot = vq->used_idx % size;
	uint32_t elem[2] = { c->head, written };
	memcpy(used + 4 + 8 * slot, elem, sizeof(elem));
	vq->used_idx++;
	__atomic_store_n((uint16_t *)(used + 2), vq->used_idx, __ATOMIC_RELEASE);
	mark_dirty(vd, vq->used_gpa, 4);
	mark_dirty(vd, vq->used_gpa + 4 + 8ULL * slot, 8);
}

static void raise_interrupt(struct virtio_dev *vd, uint16_t vector, uint8_t isr_bit)
{
	if (pci_msix_enabled(&vd->pci)) {
		if (vector != VIRTIO_MSI_NO_VECTOR)
			pci_msix_notify(&vd->pci, vector);
		return;
	}
	__atomic_or_fetch(&vd->isr, isr_bit, __ATOMIC_SEQ_CST);
	pci_intx_set(&vd->pci, 1);
}

void virtq_notify(struct virtio_dev *vd, int q)
{
	struct virtq *vq = &vd->vq[q];
	uint16_t size = vq->size;
	const volatile uint16_t *avail = gpa_ptr(vd, vq->avail_gpa, 6 + 2ULL * size);
	if (!avail)
		return;
	__atomic_thread_fence(__ATOMIC_SEQ_CST); /* used idx visible before we read the driver's wishes */
	uint16_t old = vq->signalled_used, now = vq->used_idx;
	if (virtio_has_feature(vd, VIRTIO_F_RING_EVENT_IDX)) {
		/* Interrupt if used_event lies among the entries used since the last
		 * check (not since the last interrupt: after 2^16 entries without one
		 * that window wraps and the entry the driver waits for is missed). */
		uint16_t event = avail[2 + size];
		vq->signalled_used = now;
		if ((uint16_t)(now - event - 1) >= (uint16_t)(now - old))
			return;
	} else if (avail[0] & VIRTQ_AVAIL_F_NO_INTERRUPT) {
		return;
	}
	raise_interrupt(vd, vq->msix_vector, 1);
}

void virtio_config_changed(struct virtio_dev *vd)
{
	__atomic_add_fetch(&vd->config_generation, 1, __ATOMIC_SEQ_CST);
	raise_interrupt(vd, vd->config_msix_vector, 2);
}

size_t virtq_chain_to_guest(struct virtio_dev *vd, const struct virtq_chain *c, size_t off, const void *src, size_t len)
{
	size_t done = 0;
	for (int i = c->nout; i < c->nout + c->nin && done < len; i++) {
		size_t l = c->iov[i].iov_len;
		if (off >= l) {
			off -= l;
			continue;
		}
		size_t n = MIN(l - off, len - done);
		memcpy((uint8_t *)c->iov[i].iov_base + off, (const uint8_t *)src + done, n);
		mark_dirty(vd, c->gpa[i] + off, n);
		done += n;
		off = 0;
	}
	return done;
}

size_t virtq_chain_from_guest(const struct virtq_chain *c, size_t off, void *dst, size_t len)
{
	size_t done = 0;
	for (int i = 0; i < c->nout && done < len; i++) {
		size_t l = c->iov[i].iov_len;
		if (off >= l) {
			off -= l;
			continue;
		}
		size_t n = MIN(l - off, len - done);
		memcpy((uint8_t *)dst + done, (const uint8_t *)c->iov[i].iov_base + off, n);
		done += n;
		off = 0;
	}
	return done;
}

/* ---- notifications ---- */

static int ioeventfd_set(struct virtio_dev *vd, int q, uint64_t bar_gpa, bool assign)
{
	struct kvm_ioeventfd io = {
		.addr = bar_gpa + VIRTIO_NOTIFY_OFFSET + (uint64_t)VIRTIO_NOTIFY_MULTIPLIER * (uint64_t)q,
		.len = 0, /* any access size */
		.fd = vd->vq[q].kick_fd,
		.flags = assign ? 0 : KVM_IOEVENTFD_FLAG_DEASSIGN,
	};
	if (ioctl(vd->vm->vm_fd, KVM_IOEVENTFD, &io) < 0) {
		int e = errno;
		glide_log("virtio", "%s: %s ioeventfd for queue %d at 0x%llx: %s", vd->pci.name,
			  assign ? "cannot register" : "cannot remove", q, (unsigned long long)io.addr, strerror(e));
		return -e;
	}
	return 0;
}

static void virtio_bar_mapped(struct pci_dev *d, int bar, uint64_t gpa)
{
	struct virtio_dev *vd = (struct virtio_dev *)d;
	if (bar != 0)
		return;
	for (int q = 0; q < vd->nqueues; q++) {
		if (vd->notify_gpa)
			ioeventfd_set(vd, q, vd->notify_gpa, false);
		if (gpa)
			ioeventfd_set(vd, q, gpa, true);
	}
	vd->notify_gpa = gpa;
}

/* ---- common configuration ---- */

static uint64_t field_get(const void *p, int size)
{
	uint64_t v = 0;
	memcpy(&v, p, (size_t)size);
	return v;
}

static void virtio_reset_locked(struct virtio_dev *vd)
{
	if (vd->ops->reset)
		vd->ops->reset(vd);
	vd->driver_features = 0;
	vd->device_feature_select = vd->driver_feature_select = 0;
	vd->isr = 0;
	vd->config_msix_vector = VIRTIO_MSI_NO_VECTOR;
	vd->queue_select = 0;
	for (int q = 0; q < vd->nqueues; q++) {
		struct virtq *vq = &vd->vq[q];
		vq->size = vq->max_size;
		vq->enabled = false;
		vq->msix_vector = VIRTIO_MSI_NO_VECTOR;
		vq->desc_gpa = vq->avail_gpa = vq->used_gpa = 0;
		vq->last_avail = vq->used_idx = vq->signalled_used = 0;
	}
	__atomic_store_n(&vd->status, 0, __ATOMIC_RELEASE);
}

static void common_read(struct virtio_dev *vd, unsigned off, uint8_t *data, int len)
{
	uint8_t regs[VIRTIO_COMMON_CFG_LEN];
	memset(regs, 0, sizeof(regs));
	uint32_t v32 = vd->device_feature_select;
	memcpy(regs + 0x00, &v32, 4);
	v32 = vd->device_feature_select < 2 ? (uint32_t)(vd->device_features >> (32 * vd->device_feature_select)) : 0;
	memcpy(regs + 0x04, &v32, 4);
	v32 = vd->driver_feature_select;
	memcpy(regs + 0x08, &v32, 4);
	v32 = vd->driver_feature_select < 2 ? (uint32_t)(vd->driver_features >> (32 * vd->driver_feature_select)) : 0;
	memcpy(regs + 0x0c, &v32, 4);
	memcpy(regs + 0x10, &vd->config_msix_vector, 2);
	uint16_t v16 = (uint16_t)vd->nqueues;
	memcpy(regs + 0x12, &v16, 2);
	regs[0x14] = __atomic_load_n(&vd->reset_pending, __ATOMIC_ACQUIRE) && !status_load(vd) ? VIRTIO_STATUS_ACKNOWLEDGE
											       : status_load(vd);
	regs[0x15] = __atomic_load_n(&vd->config_generation, __ATOMIC_SEQ_CST);
	memcpy(regs + 0x16, &vd->queue_select, 2);
	if (vd->queue_select < vd->nqueues) {
		struct virtq *vq = &vd->vq[vd->queue_select];
		memcpy(regs + 0x18, &vq->size, 2);
		memcpy(regs + 0x1a, &vq->msix_vector, 2);
		v16 = vq->enabled;
		memcpy(regs + 0x1c, &v16, 2);
		v16 = vd->queue_select; /* queue_notify_off */
		memcpy(regs + 0x1e, &v16, 2);
		memcpy(regs + 0x20, &vq->desc_gpa, 8);
		memcpy(regs + 0x28, &vq->avail_gpa, 8);
		memcpy(regs + 0x30, &vq->used_gpa, 8);
	}
	for (int i = 0; i < len; i++)
		data[i] = off + i < sizeof(regs) ? regs[off + i] : 0;
}

static void wake(struct virtio_dev *vd)
{
	uint64_t one = 1;
	if (write(vd->wake_fd, &one, sizeof(one)) < 0) {
	}
}

static void set_status(struct virtio_dev *vd, uint8_t v)
{
	uint8_t old = status_load(vd);
	if (v == 0) {
		/* The event thread resets (it may be inside a queue); the status
		 * reads back non-zero until it has, as the driver expects. */
		if (old) {
			__atomic_store_n(&vd->reset_pending, true, __ATOMIC_RELEASE);
			wake(vd);
		}
		return;
	}
	if ((v & VIRTIO_STATUS_FEATURES_OK) && !(old & VIRTIO_STATUS_FEATURES_OK)) {
		/* Accept only features we offered, and only a VERSION_1 driver (no legacy interface here). */
		if ((vd->driver_features & ~vd->device_features) || !virtio_has_feature(vd, VIRTIO_F_VERSION_1))
			v &= (uint8_t)~VIRTIO_STATUS_FEATURES_OK;
	}
	__atomic_store_n(&vd->status, (uint8_t)(v | (old & VIRTIO_STATUS_NEEDS_RESET)), __ATOMIC_RELEASE);
	if ((v & VIRTIO_STATUS_DRIVER_OK) && !(old & VIRTIO_STATUS_DRIVER_OK)) {
		if (vd->ops->driver_ok)
			vd->ops->driver_ok(vd);
		wake(vd); /* look at the queues once */
	}
}

static void common_write(struct virtio_dev *vd, unsigned off, const uint8_t *data, int len)
{
	uint64_t v = field_get(data, len);
	struct virtq *vq = vd->queue_select < vd->nqueues ? &vd->vq[vd->queue_select] : NULL;
	bool before_ok = !(status_load(vd) & VIRTIO_STATUS_DRIVER_OK);

	switch (off) {
	case 0x00: vd->device_feature_select = (uint32_t)v; break;
	case 0x08: vd->driver_feature_select = (uint32_t)v; break;
	case 0x0c:
		if (vd->driver_feature_select < 2 && !(status_load(vd) & VIRTIO_STATUS_FEATURES_OK)) {
			unsigned shift = 32 * vd->driver_feature_select;
			vd->driver_features = (vd->driver_features & ~(0xffffffffULL << shift)) | ((v & 0xffffffffULL) << shift);
		}
		break;
	case 0x10: /* like queue_msix_vector: a vector the table lacks reads back NO_VECTOR */
		vd->config_msix_vector = (uint16_t)v < vd->pci.msix_vectors ? (uint16_t)v : VIRTIO_MSI_NO_VECTOR;
		break;
	case 0x14: set_status(vd, (uint8_t)v); break;
	case 0x16: vd->queue_select = (uint16_t)v; break;
	case 0x18:
		if (vq && before_ok && v && v <= vq->max_size && !((v - 1) & v))
			vq->size = (uint16_t)v;
		break;
	case 0x1a:
		if (vq)
			vq->msix_vector = (uint16_t)v < vd->pci.msix_vectors ? (uint16_t)v : VIRTIO_MSI_NO_VECTOR;
		break;
	case 0x1c:
		if (vq && before_ok && v == 1)
			__atomic_store_n(&vq->enabled, true, __ATOMIC_RELEASE);
		break;
	case 0x20: case 0x24: case 0x28: case 0x2c: case 0x30: case 0x34:
		if (vq && before_ok) {
			uint64_t *f = off < 0x28 ? &vq->desc_gpa : off < 0x30 ? &vq->avail_gpa : &vq->used_gpa;
			unsigned shift = (off & 4) ? 32 : 0;
			uint64_t mask = len == 8 ? ~0ULL : 0xffffffffULL << shift;
			*f = (*f & ~mask) | ((v << (len == 8 ? 0 : shift)) & mask);
		}
		break;
	default:
		break; /* read-only registers */
	}
}

static void notify_queue(struct virtio_dev *vd, uint64_t off)
{
	uint64_t q = off / VIRTIO_NOTIFY_MULTIPLIER, one = 1;
	if (q < (uint64_t)vd->nqueues && write(vd->vq[q].kick_fd, &one, sizeof(one)) < 0) {
	}
}

static void virtio_bar_access(struct pci_dev *d, int bar, uint64_t off, bool is_write, uint8_t *data, int len)
{
	struct virtio_dev *vd = (struct virtio_dev *)d;
	if (bar != 0) {
		if (!is_write)
			memset(data, 0, len);
		return;
	}
	if (off < VIRTIO_COMMON_OFFSET + VIRTIO_COMMON_CFG_LEN) {
		if (is_write)
			common_write(vd, (unsigned)off, data, len);
		else
			common_read(vd, (unsigned)off, data, len);
	} else if (off == VIRTIO_ISR_OFFSET) {
		if (!is_write) {
			memset(data, 0, len);
			data[0] = __atomic_exchange_n(&vd->isr, 0, __ATOMIC_SEQ_CST);
			pci_intx_set(d, 0); /* the condition is gone, whether or not MSI-X hid it */
		}
	} else if (off >= VIRTIO_DEVICE_CFG_OFFSET && off < VIRTIO_DEVICE_CFG_OFFSET + vd->config_len) {
		uint64_t o = off - VIRTIO_DEVICE_CFG_OFFSET;
		if (o + (uint64_t)len > vd->config_len) {
			if (!is_write)
				memset(data, 0, len);
		} else if (vd->ops->config_access) {
			vd->ops->config_access(vd, o, is_write, data, len);
		}
	} else if (off >= VIRTIO_NOTIFY_OFFSET && off < VIRTIO_NOTIFY_OFFSET + 0x1000) {
		if (is_write)
			notify_queue(vd, off - VIRTIO_NOTIFY_OFFSET); /* an access KVM did not catch (BAR just moved) */
		else
			memset(data, 0, len);
	} else if (!is_write) {
		memset(data, 0, len);
	}
}

static const struct pci_dev_ops virtio_pci_ops = {
	.bar_access = virtio_bar_access,
	.bar_mapped = virtio_bar_mapped,
};

/* ---- the event thread ---- */

static void handle_event(struct virtio_dev *vd, uint64_t ev)
{
	uint64_t count;
	if (ev == EVENT_WAKE) {
		if (read(vd->wake_fd, &count, sizeof(count)) < 0) {
		}
		if (__atomic_load_n(&vd->reset_pending, __ATOMIC_ACQUIRE)) {
			pthread_mutex_lock(&vd->pci.lock);
			virtio_reset_locked(vd);
			__atomic_store_n(&vd->reset_pending, false, __ATOMIC_RELEASE);
			pthread_mutex_unlock(&vd->pci.lock);
			pci_intx_set(&vd->pci, 0);
			return;
		}
		for (int q = 0; q < vd->nqueues; q++)
			if (virtio_queue_ready(vd, q) && vd->ops->queue_notify)
				vd->ops->queue_notify(vd, q);
	} else if (ev & EVENT_BACKEND) {
		if (vd->ops->backend_ready)
			vd->ops->backend_ready(vd, (int)(ev & 0xffffffff));
	} else if (ev < (uint64_t)vd->nqueues) {
		if (read(vd->vq[ev].kick_fd, &count, sizeof(count)) < 0) {
		}
		if (virtio_queue_ready(vd, (int)ev) && vd->ops->queue_notify)
			vd->ops->queue_notify(vd, (int)ev);
	}
}

static void *event_thread(void *arg)
{
	struct virtio_dev *vd = arg;
	char name[16];
	snprintf(name, sizeof(name), "%s", vd->pci.name);
	pthread_setname_np(pthread_self(), name);
	for (;;) {
		struct epoll_event evs[16];
		int n = epoll_wait(vd->epoll_fd, evs, 16, -1);
		if (n < 0 && errno != EINTR)
			break;
		pthread_mutex_lock(&vd->run_lock);
		while (vd->paused && !vd->stop)
			pthread_cond_wait(&vd->run_cond, &vd->run_lock);
		if (vd->stop) {
			pthread_mutex_unlock(&vd->run_lock);
			break;
		}
		for (int i = 0; i < n; i++)
			handle_event(vd, evs[i].data.u64);
		pthread_mutex_unlock(&vd->run_lock);
	}
	return NULL;
}

/* VM pause hooks (vm.h): stop taking events / start again. */
static void virtio_pause(void *opaque)
{
	struct virtio_dev *vd = opaque;
	pthread_mutex_lock(&vd->run_lock); /* waits for the event being handled */
	/* in the same hold as paused: no event can start a request in between */
	if (vd->ops->quiesce && !vd->paused)
		vd->ops->quiesce(vd);
	vd->paused = true;
	pthread_mutex_unlock(&vd->run_lock);
}

static void virtio_resume(void *opaque)
{
	struct virtio_dev *vd = opaque;
	pthread_mutex_lock(&vd->run_lock);
	vd->paused = false;
	pthread_cond_broadcast(&vd->run_cond);
	pthread_mutex_unlock(&vd->run_lock);
	/* Notifications consumed before a checkpoint and not yet handled: look again. */
	wake(vd);
}

int virtio_watch_fd(struct virtio_dev *vd, int fd)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.u64 = EVENT_BACKEND | (uint32_t)fd };
	if (epoll_ctl(vd->epoll_fd, EPOLL_CTL_ADD, fd, &ev) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

/* ---- creation ---- */

static uint8_t add_vendor_cap(struct virtio_dev *vd, uint8_t type, uint8_t bar, uint32_t offset, uint32_t length,
			      uint8_t extra)
{
	uint8_t cap = pci_dev_add_cap(&vd->pci, PCI_CAP_ID_VNDR, (uint8_t)(16 + extra));
	if (!cap)
		return 0;
	uint8_t *c = vd->pci.config + cap;
	c[2] = (uint8_t)(16 + extra);
	c[3] = type;
	c[4] = bar;
	memcpy(c + 8, &offset, 4);
	memcpy(c + 12, &length, 4);
	return cap;
}

int virtio_dev_create(struct vm *vm, struct virtio_dev *vd, const char *name, uint16_t type, int nqueues,
		      uint16_t queue_size, uint32_t config_len, uint64_t features, const struct virtio_dev_ops *ops,
		      char *err, size_t errlen)
{
	uint32_t class_code = type == VIRTIO_ID_NET ? VIRTIO_PCI_CLASS_NET
			      : type == VIRTIO_ID_BLOCK ? VIRTIO_PCI_CLASS_STORAGE : VIRTIO_PCI_CLASS_OTHER;
	int rc;

	/* Whatever fails below, virtio_dev_destroy must find no fd it does not own
	 * (a calloc'ed device has 0 there: stdin) and the device's own destroy hook. */
	vd->ops = ops;
	vd->epoll_fd = vd->wake_fd = -1;
	for (int q = 0; q < VIRTIO_QUEUES_MAX; q++)
		vd->vq[q].kick_fd = -1;
	if (nqueues < 1 || nqueues > VIRTIO_QUEUES_MAX || !queue_size || queue_size > VIRTIO_QUEUE_SIZE_MAX ||
	    ((queue_size - 1) & queue_size) || config_len > 0x1000) {
		errf(err, errlen, "%s: bad virtio device geometry", name);
		return -EINVAL;
	}
	vd->vm = vm;
	vd->device_type = type;
	vd->nqueues = nqueues;
	vd->config_len = config_len;
	vd->device_features = features | (1ULL << VIRTIO_F_VERSION_1);
	vd->paused = true; /* until the VM runs */
	pthread_mutex_init(&vd->run_lock, NULL);
	pthread_cond_init(&vd->run_cond, NULL);
	for (int q = 0; q < VIRTIO_QUEUES_MAX; q++)
		vd->vq[q].max_size = queue_size;
	virtio_reset_locked(vd);

	pci_dev_init(&vd->pci, name, VIRTIO_PCI_VENDOR, (uint16_t)(VIRTIO_PCI_DEVICE_BASE + type), 1, class_code,
		     VIRTIO_PCI_VENDOR, (uint16_t)(VIRTIO_PCI_DEVICE_BASE + type));
	vd->pci.ops = &virtio_pci_ops;
	vd->pci.opaque = vd;
	pci_dev_set_bar(&vd->pci, 0, VIRTIO_BAR0_SIZE, false);
	pci_dev_set_bar(&vd->pci, VIRTIO_MSIX_BAR, VIRTIO_BAR1_SIZE, false);
	if (!add_vendor_cap(vd, VIRTIO_PCI_CAP_COMMON_CFG, 0, VIRTIO_COMMON_OFFSET, VIRTIO_COMMON_CFG_LEN, 0) ||
	    !add_vendor_cap(vd, VIRTIO_PCI_CAP_ISR_CFG, 0, VIRTIO_ISR_OFFSET, 1, 0) ||
	    (config_len && !add_vendor_cap(vd, VIRTIO_PCI_CAP_DEVICE_CFG, 0, VIRTIO_DEVICE_CFG_OFFSET, config_len, 0))) {
		errf(err, errlen, "%s: PCI capabilities do not fit", name);
		return -ENOSPC;
	}
	uint8_t ncap = add_vendor_cap(vd, VIRTIO_PCI_CAP_NOTIFY_CFG, 0, VIRTIO_NOTIFY_OFFSET,
				      (uint32_t)(VIRTIO_NOTIFY_MULTIPLIER * nqueues), 4);
	if (!ncap) {
		errf(err, errlen, "%s: PCI capabilities do not fit", name);
		return -ENOSPC;
	}
	uint32_t mult = VIRTIO_NOTIFY_MULTIPLIER;
	memcpy(vd->pci.config + ncap + 16, &mult, 4);
	rc = pci_msix_init(&vd->pci, nqueues + 1, VIRTIO_MSIX_BAR, 0, 0x800);
	if (rc) {
		errf(err, errlen, "%s: MSI-X set-up failed", name);
		return rc;
	}
	/* virtio 1.x 4.1.4.9: the device MUST present a PCI configuration access
	 * capability (firmware uses it to reach BARs it has not mapped). Last, so
	 * that the other capabilities keep their offsets. */
	uint8_t wcap = add_vendor_cap(vd, VIRTIO_PCI_CAP_PCI_CFG, 0, 0, 0, 4);
	if (!wcap) {
		errf(err, errlen, "%s: PCI capabilities do not fit", name);
		return -ENOSPC;
	}
	pci_dev_set_cfg_window(&vd->pci, wcap);

	vd->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
	vd->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (vd->epoll_fd < 0 || vd->wake_fd < 0) {
		errf(err, errlen, "%s: %s", name, strerror(errno));
		return -errno;
	}
	struct epoll_event ev = { .events = EPOLLIN, .data.u64 = EVENT_WAKE };
	epoll_ctl(vd->epoll_fd, EPOLL_CTL_ADD, vd->wake_fd, &ev);
	for (int q = 0; q < nqueues; q++) {
		vd->vq[q].kick_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (vd->vq[q].kick_fd < 0) {
			errf(err, errlen, "%s: eventfd: %s", name, strerror(errno));
			return -errno;
		}
		ev = (struct epoll_event){ .events = EPOLLIN, .data.u64 = (uint64_t)q };
		epoll_ctl(vd->epoll_fd, EPOLL_CTL_ADD, vd->vq[q].kick_fd, &ev);
	}
	rc = pci_dev_add(vm, &vd->pci, err, errlen);
	if (rc)
		return rc;
	rc = vm_add_pause_hook(vm, virtio_pause, virtio_resume, vd);
	if (rc) {
		errf(err, errlen, "%s: too many devices", name);
		return rc;
	}
	rc = pthread_create(&vd->thread, NULL, event_thread, vd);
	if (rc) {
		errf(err, errlen, "%s: cannot start its thread: %s", name, strerror(rc));
		return -rc;
	}
	vd->thread_started = true;
	return 0;
}

void virtio_dev_destroy(struct virtio_dev *vd)
{
	/* The thread first: a VM that shut down still has its devices running
	 * (vm_wait_exit does not pause them), and a request being served must
	 * not find its disk fd closed -- or reused by another open -- or its
	 * held frames freed under it. */
	if (vd->thread_started) {
		pthread_mutex_lock(&vd->run_lock);
		vd->stop = true;
		pthread_cond_broadcast(&vd->run_cond);
		pthread_mutex_unlock(&vd->run_lock);
		wake(vd);
		pthread_join(vd->thread, NULL);
		vd->thread_started = false;
	}
	if (vd->ops && vd->ops->destroy)
		vd->ops->destroy(vd);
	pci_dev_remove(&vd->pci); /* the bus outlives the device: it must not keep a pointer to it */
	for (int q = 0; q < VIRTIO_QUEUES_MAX; q++)
		if (vd->vq[q].kick_fd >= 0)
			close(vd->vq[q].kick_fd);
	if (vd->wake_fd >= 0)
		close(vd->wake_fd);
	if (vd->epoll_fd >= 0)
		close(vd->epoll_fd);
}

/* ---- state ---- */

#define VIRTIO_STATE_MAGIC 0x56495254u /* "VIRT" */

void virtio_dev_save(struct virtio_dev *vd, struct state_buf *b)
{
	pci_dev_save(&vd->pci, b);
	pthread_mutex_lock(&vd->pci.lock);
	sbuf_u32(b, VIRTIO_STATE_MAGIC);
	sbuf_u64(b, vd->device_features);
	sbuf_u64(b, vd->driver_features);
	sbuf_u32(b, vd->device_feature_select);
	sbuf_u32(b, vd->driver_feature_select);
	/* A reset the driver asked for and the event thread has not done yet is
	 * state too: without it the destination would read the old status
	 * forever while its driver waits for 0. */
	sbuf_u32(b, (uint32_t)status_load(vd) | (uint32_t)vd->isr << 8 | (uint32_t)vd->config_generation << 16 |
			    (uint32_t)__atomic_load_n(&vd->reset_pending, __ATOMIC_ACQUIRE) << 24);
	sbuf_u32(b, (uint32_t)vd->config_msix_vector | (uint32_t)vd->queue_select << 16);
	sbuf_u32(b, (uint32_t)vd->nqueues);
	for (int q = 0; q < vd->nqueues; q++) {
		struct virtq *vq = &vd->vq[q];
		sbuf_u32(b, (uint32_t)vq->size | (uint32_t)vq->enabled << 16);
		sbuf_u32(b, vq->msix_vector);
		sbuf_u64(b, vq->desc_gpa);
		sbuf_u64(b, vq->avail_gpa);
		sbuf_u64(b, vq->used_gpa);
		sbuf_u32(b, (uint32_t)vq->last_avail | (uint32_t)vq->used_idx << 16);
		sbuf_u32(b, vq->signalled_used);
	}
	pthread_mutex_unlock(&vd->pci.lock);
}

int virtio_dev_load(struct virtio_dev *vd, struct state_cursor *c, char *err, size_t errlen)
{
	int rc = pci_dev_load(&vd->pci, c, err, errlen);
	if (rc)
		return rc;
	uint32_t magic = scur_u32(c);
	uint64_t dev_features = scur_u64(c), drv_features = scur_u64(c);
	uint32_t dsel = scur_u32(c), gsel = scur_u32(c), st = scur_u32(c), vec = scur_u32(c), nq = scur_u32(c);
	if (c->failed || magic != VIRTIO_STATE_MAGIC || (st >> 25)) {
		errf(err, errlen, "%s: virtio state truncated or malformed", vd->pci.name);
		return -EINVAL;
	}
	if ((dev_features | vd->optional_features) != (vd->device_features | vd->optional_features) ||
	    (dev_features & ~vd->device_features)) {
		errf(err, errlen, "%s: the source offered features 0x%llx, this device offers 0x%llx", vd->pci.name,
		     (unsigned long long)dev_features, (unsigned long long)vd->device_features);
		return -EINVAL;
	}
	if (drv_features & ~vd->device_features || nq != (uint32_t)vd->nqueues) {
		errf(err, errlen, "%s: virtio state does not fit this device (%u queues, here %d)", vd->pci.name, nq,
		     vd->nqueues);
		return -EINVAL;
	}
	struct virtq vqs[VIRTIO_QUEUES_MAX];
	for (uint32_t q = 0; q < nq; q++) {
		uint32_t a = scur_u32(c);
		vqs[q].size = (uint16_t)a;
		vqs[q].enabled = (a >> 16) & 1;
		vqs[q].msix_vector = (uint16_t)scur_u32(c);
		vqs[q].desc_gpa = scur_u64(c);
		vqs[q].avail_gpa = scur_u64(c);
		vqs[q].used_gpa = scur_u64(c);
		a = scur_u32(c);
		vqs[q].last_avail = (uint16_t)a;
		vqs[q].used_idx = (uint16_t)(a >> 16);
		vqs[q].signalled_used = (uint16_t)scur_u32(c);
		if (!vqs[q].size || vqs[q].size > vd->vq[q].max_size || ((vqs[q].size - 1) & vqs[q].size)) {
			errf(err, errlen, "%s: queue %u has a bad size %u", vd->pci.name, q, vqs[q].size);
			return -EINVAL;
		}
	}
	if (c->failed) {
		errf(err, errlen, "%s: virtio state truncated", vd->pci.name);
		return -EINVAL;
	}
	pthread_mutex_lock(&vd->pci.lock);
	vd->device_features = dev_features; /* the same, or without optional ones the source did not offer */
	vd->driver_features = drv_features;
	vd->device_feature_select = dsel;
	vd->driver_feature_select = gsel;
	__atomic_store_n(&vd->status, (uint8_t)st, __ATOMIC_RELEASE);
	vd->isr = (uint8_t)(st >> 8);
	vd->config_generation = (uint8_t)(st >> 16);
	__atomic_store_n(&vd->reset_pending, (st >> 24) & 1, __ATOMIC_RELEASE); /* done when the VM runs */
	vd->config_msix_vector = (uint16_t)vec;
	vd->queue_select = (uint16_t)(vec >> 16);
	for (uint32_t q = 0; q < nq; q++) {
		struct virtq *vq = &vd->vq[q];
		vq->size = vqs[q].size;
		vq->enabled = vqs[q].enabled;
		vq->msix_vector = vqs[q].msix_vector;
		vq->desc_gpa = vqs[q].desc_gpa;
		vq->avail_gpa = vqs[q].avail_gpa;
		vq->used_gpa = vqs[q].used_gpa;
		vq->last_avail = vqs[q].last_avail;
		vq->used_idx = vqs[q].used_idx;
		vq->signalled_used = vqs[q].signalled_used;
	}
	pthread_mutex_unlock(&vd->pci.lock);
	return 0;
}
