/* virtio 1.x devices over PCI (modern transport only): the PCI function
 * with its vendor capabilities in BAR 0 and MSI-X in BAR 1, split
 * virtqueues read and written in guest memory, queue notifications through
 * KVM ioeventfds, and one event thread per device that runs the device's
 * queue handlers and backend I/O. A device (virtio_net.c, virtio_blk.c)
 * fills in virtio_dev_ops; everything else lives in virtio.c.
 *
 * BAR 0 layout (16 KiB):  0x0000 common configuration
 *                         0x1000 ISR status (1 byte, read clears)
 *                         0x2000 device-specific configuration
 *                         0x3000 notifications: queue q at 0x3000 + 4 * q
 * BAR 1 (4 KiB):          MSI-X table at 0, PBA at 0x800
 *
 * Pausing: the event thread stops taking events when the VM pauses (vm.h
 * device hooks) after the device's quiesce hook ran (a block device waits
 * for its requests in flight); the state is saved while it is stopped, so a
 * checkpoint never has half-processed descriptors. */
#ifndef GLIDE_DEVICES_VIRTIO_H
#define GLIDE_DEVICES_VIRTIO_H
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>
#include "devices/pci.h"

#define VIRTIO_PCI_VENDOR 0x1af4
#define VIRTIO_PCI_DEVICE_BASE 0x1040 /* + virtio device type */
#define VIRTIO_ID_NET 1
#define VIRTIO_ID_BLOCK 2

#define VIRTIO_F_RING_INDIRECT_DESC 28
#define VIRTIO_F_RING_EVENT_IDX 29
#define VIRTIO_F_VERSION_1 32

#define VIRTIO_STATUS_ACKNOWLEDGE 1
#define VIRTIO_STATUS_DRIVER 2
#define VIRTIO_STATUS_DRIVER_OK 4
#define VIRTIO_STATUS_FEATURES_OK 8
#define VIRTIO_STATUS_NEEDS_RESET 64
#define VIRTIO_STATUS_FAILED 128

#define VIRTIO_MSI_NO_VECTOR 0xffff
#define VIRTIO_QUEUES_MAX 17 /* virtio-net: 8 queue pairs and its control queue */
#define VIRTIO_QUEUE_SIZE_MAX 256
#define VIRTIO_CHAIN_MAX 64        /* descriptors followed in one chain (indirect included) */

#define VIRTIO_BAR0_SIZE 0x4000
#define VIRTIO_COMMON_OFFSET 0x0000
#define VIRTIO_ISR_OFFSET 0x1000
#define VIRTIO_DEVICE_CFG_OFFSET 0x2000
#define VIRTIO_NOTIFY_OFFSET 0x3000
#define VIRTIO_NOTIFY_MULTIPLIER 4
#define VIRTIO_MSIX_BAR 1
#define VIRTIO_BAR1_SIZE 0x1000

struct vm;
struct virtio_dev;

/* One split virtqueue as the driver configured it, and the device's place in it. */
struct virtq {
	uint16_t size;            /* entries (power of two), set by the driver, at most max_size */
	uint16_t max_size;
	bool enabled;             /* queue_enable written 1 */
	uint16_t msix_vector;
	uint64_t desc_gpa, avail_gpa, used_gpa;
	uint16_t last_avail;      /* next avail entry the device will take */
	uint16_t used_idx;        /* the used ring's idx as the device last wrote it */
	uint16_t signalled_used;  /* used_idx at the last interrupt check (EVENT_IDX) */
	int kick_fd;              /* ioeventfd for this queue's notify address */
};

/* A descriptor chain taken from a queue: iov[0 .. nout) are device-readable,
 * iov[nout .. nout+nin) device-writable. gpa[] says where each lies (for
 * dirty tracking of what the device writes). */
struct virtq_chain {
	uint16_t head;
	int nout, nin;
	struct iovec iov[VIRTIO_CHAIN_MAX];
	uint64_t gpa[VIRTIO_CHAIN_MAX];
	uint64_t in_bytes;        /* sum of the writable buffers */
};

struct virtio_dev_ops {
	/* Device configuration space (BAR 0 + 0x2000), device lock held. */
	void (*config_access)(struct virtio_dev *vd, uint64_t offset, bool is_write, uint8_t *data, int len);
	/* Queue q was notified (or must be looked at again): runs on the event thread. */
	void (*queue_notify)(struct virtio_dev *vd, int q);
	/* The backend's fd (registered with virtio_watch_fd) is readable: event thread. */
	void (*backend_ready)(struct virtio_dev *vd, int fd);
	/* The driver wrote DRIVER_OK (after negotiating features), device lock held. */
	void (*driver_ok)(struct virtio_dev *vd);
	/* Device reset by the driver: forget everything queue-related. Event thread stopped, lock held. */
	void (*reset)(struct virtio_dev *vd);
	/* Before the event thread stops for a pause: finish what is in flight
	 * (run lock held, so no event is handled meanwhile). */
	void (*quiesce)(struct virtio_dev *vd);
	/* Device-specific state (the transport part is saved by virtio.c). */
	void (*save)(struct virtio_dev *vd, struct state_buf *b);
	int (*load)(struct virtio_dev *vd, struct state_cursor *c, char *err, size_t errlen);
	void (*destroy)(struct virtio_dev *vd);
};

struct virtio_dev {
	struct pci_dev pci;
	struct vm *vm;
	uint16_t device_type;
	const struct virtio_dev_ops *ops;
	void *opaque;
	/* transport state (pci.lock protects it) */
	uint64_t device_features, driver_features;
	/* Offered features a restore may find missing from the state (a source
	 * that did not offer them, e.g. an older glide): the device then offers
	 * what the source did. Any other difference refuses the state. Set by
	 * the device after virtio_dev_create. */
	uint64_t optional_features;
	uint32_t device_feature_select, driver_feature_select;
	uint8_t status;
	uint8_t isr;
	uint8_t config_generation;
	uint16_t config_msix_vector;
	uint16_t queue_select;
	int nqueues;
	struct virtq vq[VIRTIO_QUEUES_MAX];
	uint32_t config_len;      /* bytes of device configuration */
	uint64_t notify_gpa;      /* BAR 0 address the ioeventfds are registered at (0: none) */
	bool reset_pending;       /* the driver wrote status 0; the event thread resets */
	/* event thread */
	pthread_t thread;
	bool thread_started;
	int epoll_fd, wake_fd;
	pthread_mutex_t run_lock; /* held by the event thread while it handles an event */
	pthread_cond_t run_cond;
	bool paused, stop;
	int instance;             /* per type: 0, 1, ... (state section instance) */
};

/* Sets up the transport for a device of `type` with `nqueues` queues of at
 * most queue_size entries and config_len bytes of device configuration,
 * offering `features` (VERSION_1 is added). Then pci_dev_add, ioeventfds
 * and the event thread. 0, or -errno with err set. */
int virtio_dev_create(struct vm *vm, struct virtio_dev *vd, const char *name, uint16_t type, int nqueues,
		      uint16_t queue_size, uint32_t config_len, uint64_t features, const struct virtio_dev_ops *ops,
		      char *err, size_t errlen);
/* Watches a backend fd for input on the event thread (backend_ready). */
int virtio_watch_fd(struct virtio_dev *vd, int fd);
/* Stops the event thread, then lets the device free its backend (ops->destroy), then frees what the transport holds. */
void virtio_dev_destroy(struct virtio_dev *vd);
bool virtio_has_feature(const struct virtio_dev *vd, int bit); /* negotiated */
bool virtio_queue_ready(const struct virtio_dev *vd, int q);   /* DRIVER_OK and queue enabled */
bool virtio_driver_ok(const struct virtio_dev *vd);            /* DRIVER_OK, not NEEDS_RESET */

/* Takes the next available chain of queue q: 1 when one was taken, 0 when
 * the queue is empty, -EINVAL when the driver wrote a malformed chain (the
 * device is then marked NEEDS_RESET). Event thread only. */
int virtq_pop(struct virtio_dev *vd, int q, struct virtq_chain *c);
/* Puts a chain back unconsumed (it will be popped again). */
void virtq_unpop(struct virtio_dev *vd, int q);
/* Returns a chain to the driver, `written` bytes written into its
 * writable buffers (marked dirty for migration). */
void virtq_push(struct virtio_dev *vd, int q, const struct virtq_chain *c, uint32_t written);
/* Interrupts the driver for queue q if it wants one (EVENT_IDX / NO_INTERRUPT). */
void virtq_notify(struct virtio_dev *vd, int q);
/* Signals a configuration change (config generation, ISR bit 1, vector). */
void virtio_config_changed(struct virtio_dev *vd);
/* Copies bytes into / out of a chain's writable / readable buffers, from
 * offset `off` within that side; returns bytes copied. */
size_t virtq_chain_to_guest(struct virtio_dev *vd, const struct virtq_chain *c, size_t off, const void *src, size_t len);
size_t virtq_chain_from_guest(const struct virtq_chain *c, size_t off, void *dst, size_t len);

/* Transport state in / out of a device's state section (virtio.c);
 * devices call these from their section hooks around their own part. */
void virtio_dev_save(struct virtio_dev *vd, struct state_buf *b);
int virtio_dev_load(struct virtio_dev *vd, struct state_cursor *c, char *err, size_t errlen);
#endif
