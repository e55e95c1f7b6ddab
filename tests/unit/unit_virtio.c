/* virtio 1.x conformance, driven from the host: this program is the guest
 * driver. It makes real KVM VMs (one vCPU halted in a two-byte real-mode
 * loop, so the machine runs and the devices' event threads run with it),
 * gives them virtio disks on temporary raw files (and, as root, NICs on
 * taps inside a network namespace of their own), and then does what a
 * guest's virtio-pci driver does, through the entry points a vCPU exit
 * uses: configuration space through the "pci-config" port device and
 * ECAM, BARs through pci_mmio(), virtqueues built in guest RAM, queue
 * notifications written to the notify area. Interrupts are observed where a
 * guest sees them: MSI-X in vCPU 0's LAPIC IRR (KVM_GET_LAPIC), INTx in the
 * ISR register and the PCI status register.
 *
 * Each check prints PASS/FAIL/SKIP for tests/run.sh; every wait is bounded. */
#include "devices/devices.h"
#include "devices/pci.h"
#include "devices/virtio.h"
#include "devices/virtio_dev.h"
#include "devices/virtio_net.h"
#include "state/state.h"
#include "vmm/vm.h"
#include "common/util.h"
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if_packet.h>
#include <linux/virtio_net.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int failures;
#define CHECK(name, cond, ...) do { \
		if (cond) printf("PASS %s\n", name); \
		else { printf("FAIL %s: ", name); printf(__VA_ARGS__); printf("\n"); failures++; } \
		fflush(stdout); \
	} while (0)
#define SKIP(name, ...) do { printf("SKIP %s: ", name); printf(__VA_ARGS__); printf("\n"); fflush(stdout); } while (0)

/* ---- the machine ---- */

#define MEM_BYTES (16ULL << 20)
#define GUEST_CODE 0x7c00
#define RING_BASE 0x100000ULL  /* queue rings: RING_STRIDE per (device, queue) */
#define RING_STRIDE 0x4000ULL  /* desc at +0, avail at +0x1000, used at +0x2000 */
#define BUF_BASE 0x400000ULL   /* buffers: BUF_STRIDE per (device, queue) */
#define BUF_STRIDE 0x80000ULL
#define OUTSIDE_RAM 0x80000000ULL /* neither RAM nor a BAR */
#define WAIT_MS 3000
#define MSI_VECTOR 0x45
#define MSI_VECTOR2 0x46
#define LAPIC_SVR 0xf0
#define LAPIC_IRR 0x200

#define DISK_BYTES (1ULL << 20)
#define DISK_RO_BYTES (64ULL << 10)
#define SECTOR 512

/* virtio and virtio-blk numbers the driver side uses */
#define COMMON_DFSELECT 0x00
#define COMMON_DF 0x04
#define COMMON_GFSELECT 0x08
#define COMMON_GF 0x0c
#define COMMON_MSIX 0x10
#define COMMON_NUMQ 0x12
#define COMMON_STATUS 0x14
#define COMMON_CFGGEN 0x15
#define COMMON_Q_SELECT 0x16
#define COMMON_Q_SIZE 0x18
#define COMMON_Q_MSIX 0x1a
#define COMMON_Q_ENABLE 0x1c
#define COMMON_Q_NOFF 0x1e
#define COMMON_Q_DESCLO 0x20
#define COMMON_Q_DESCHI 0x24
#define COMMON_Q_AVAILLO 0x28
#define COMMON_Q_AVAILHI 0x2c
#define COMMON_Q_USEDLO 0x30
#define COMMON_Q_USEDHI 0x34
#define CAP_COMMON 1
#define CAP_NOTIFY 2
#define CAP_ISR 3
#define CAP_DEVICE 4
#define CAP_PCI_CFG 5
#define DESC_F_NEXT 1
#define DESC_F_WRITE 2
#define DESC_F_INDIRECT 4
#define AVAIL_F_NO_INTERRUPT 1
#define F_INDIRECT (1ULL << 28)
#define F_EVENT_IDX (1ULL << 29)
#define F_VERSION_1 (1ULL << 32)
#define BLK_F_SEG_MAX (1ULL << 2)
#define BLK_F_RO (1ULL << 5)
#define BLK_F_BLK_SIZE (1ULL << 6)
#define BLK_F_FLUSH (1ULL << 9)
#define BLK_F_DISCARD (1ULL << 13)
#define BLK_F_WRITE_ZEROES (1ULL << 14)
#define BLK_F_MQ (1ULL << 12)
#define BLK_T_IN 0
#define BLK_T_OUT 1
#define BLK_T_FLUSH 4
#define BLK_T_GET_ID 8
#define BLK_T_DISCARD 11
#define BLK_T_WRITE_ZEROES 13
#define BLK_S_OK 0
#define BLK_S_IOERR 1
#define BLK_S_UNSUPP 2
#define NET_F_CSUM (1ULL << 0)
#define NET_F_GUEST_CSUM (1ULL << 1)
#define NET_F_GUEST_TSO4 (1ULL << 7)
#define NET_F_HOST_TSO4 (1ULL << 11)
#define NET_F_MQ (1ULL << 22)
#define NET_F_MAC (1ULL << 5)
#define NET_F_STATUS (1ULL << 16)
#define NET_F_CTRL_VQ (1ULL << 17)
#define NET_F_CTRL_RX (1ULL << 18)
#define NET_F_GUEST_ANNOUNCE (1ULL << 21)
#define NET_F_CTRL_MAC_ADDR (1ULL << 23)
#define NET_S_ANNOUNCE 2
#define NET_HDR_LEN 12

struct vq {
	uint16_t size;
	uint64_t desc, avail, used;  /* gpa */
	uint16_t next_desc;          /* descriptors are handed out round robin */
	uint16_t avail_idx;          /* the driver's next avail index */
	uint16_t last_used;          /* used entries the driver has taken */
	uint16_t notify_off;
	uint64_t buf, buf_next;      /* buffer area of this queue (a bump allocator that wraps) */
};

/* One virtio-pci function as its driver knows it. */
struct vdev {
	struct vm *vm;
	int slot;
	uint64_t bar0, bar1;
	uint64_t common, isr, devcfg, notify; /* gpa of each structure */
	uint32_t notify_mult, devcfg_len;
	uint8_t msix_cap;
	int nvec;
	uint64_t msix_table, msix_pba;
	int nq;
	struct vq q[5];
};

static struct vm *vm_new(void)
{
	struct vm *vm = calloc(1, sizeof(*vm));
	if (!vm) {
		perror("calloc");
		exit(1);
	}
	vm->kvm_fd = vm->vm_fd = vm->serial_fd = -1; /* vm_destroy before vm_create closes nothing */
	return vm;
}

/* A VM with the specs' devices and one vCPU that will halt at GUEST_CODE with
 * interrupts off (KVM keeps it in the kernel; MSIs stay in its IRR). */
static int vm_make(struct vm *vm, const char *name, struct vm_device_specs *specs, bool arriving, char *err,
		   size_t errlen)
{
	struct vm_create_args a = { 0 };
	cpuid_mask_all_ones(&a.cfg);
	a.cfg.memory_bytes = MEM_BYTES;
	a.cfg.vcpus = 1;
	snprintf(a.cfg.name, sizeof(a.cfg.name), "%s", name);
	if (devices_config_from_specs(&a.cfg, specs, err, errlen))
		return -1;
	if (vm_create(vm, &a, err, errlen))
		return -1;
	if (devices_init(vm, -1)) {
		errf(err, errlen, "devices_init failed");
		return -1;
	}
	vm->arriving = arriving;
	if (devices_create_virtio(vm, specs, err, errlen))
		return -1;
	uint8_t *code = guest_memory_ptr(&vm->mem, GUEST_CODE, 3);
	code[0] = 0xf4; /* hlt */
	code[1] = 0xeb; /* jmp $-1 */
	code[2] = 0xfd;
	struct boot_plan plan = { .mode = BOOT_MODE_REAL16, .entry = GUEST_CODE };
	if (vm_boot(vm, &plan, err, errlen))
		return -1;
	/* software-enable the LAPIC: a disabled one drops fixed interrupts */
	struct kvm_lapic_state l;
	if (ioctl(vm->vcpus[0].fd, KVM_GET_LAPIC, &l) < 0) {
		errf(err, errlen, "KVM_GET_LAPIC: %s", strerror(errno));
		return -1;
	}
	uint32_t svr = 0x1ff;
	memcpy(l.regs + LAPIC_SVR, &svr, 4);
	if (ioctl(vm->vcpus[0].fd, KVM_SET_LAPIC, &l) < 0) {
		errf(err, errlen, "KVM_SET_LAPIC: %s", strerror(errno));
		return -1;
	}
	return 0;
}

static void vm_end(struct vm *vm, bool started)
{
	if (!vm)
		return;
	if (started) {
		vm_request_exit(vm, 0, "test done");
		vm_wait_exit(vm);
	}
	vm_destroy(vm);
	free(vm);
}

static uint64_t ms_now(void)
{
	return now_ns() / 1000000;
}

static void sleep_us(unsigned us)
{
	struct timespec ts = { 0, (long)us * 1000 };
	nanosleep(&ts, NULL);
}

/* ---- configuration space: the port pair and ECAM ---- */

static struct device *port_device(struct vm *vm, const char *name)
{
	for (int i = 0; i < vm->ndevices; i++)
		if (!strcmp(vm->devices[i]->name, name))
			return vm->devices[i];
	return NULL;
}

static uint32_t cfg_rd(struct vm *vm, int slot, unsigned off, int len)
{
	struct device *d = port_device(vm, "pci-config");
	uint32_t addr = 0x80000000u | (uint32_t)slot << 11 | (off & 0xfc), v = 0;
	uint8_t data[4] = { 0 };
	d->io(vm, d, PCI_CONFIG_ADDRESS_PORT, true, (uint8_t *)&addr, 4);
	d->io(vm, d, (uint16_t)(PCI_CONFIG_DATA_PORT + (off & 3)), false, data, len);
	memcpy(&v, data, (size_t)len);
	return v;
}

static void cfg_wr(struct vm *vm, int slot, unsigned off, uint32_t v, int len)
{
	struct device *d = port_device(vm, "pci-config");
	uint32_t addr = 0x80000000u | (uint32_t)slot << 11 | (off & 0xfc);
	d->io(vm, d, PCI_CONFIG_ADDRESS_PORT, true, (uint8_t *)&addr, 4);
	d->io(vm, d, (uint16_t)(PCI_CONFIG_DATA_PORT + (off & 3)), true, (uint8_t *)&v, len);
}

/* MMIO as a vCPU exit does it: false when nothing decodes the address. */
static bool mmio_rd(struct vm *vm, uint64_t gpa, int len, uint64_t *v)
{
	uint8_t d[8] = { 0 };
	*v = 0;
	if (!pci_mmio(vm, gpa, false, d, len))
		return false;
	memcpy(v, d, (size_t)len);
	return true;
}

static uint64_t rd(struct vm *vm, uint64_t gpa, int len)
{
	uint64_t v;
	return mmio_rd(vm, gpa, len, &v) ? v : 0xdeadbeefdeadbeefULL;
}

static bool wr(struct vm *vm, uint64_t gpa, uint64_t v, int len)
{
	uint8_t d[8];
	memcpy(d, &v, (size_t)len);
	return pci_mmio(vm, gpa, true, d, len);
}

static uint32_t ecam_rd(struct vm *vm, int slot, unsigned off, int len)
{
	return (uint32_t)rd(vm, PCI_ECAM_BASE + ((uint64_t)slot << 15) + off, len);
}

/* Is a KVM ioeventfd registered for MMIO writes at gpa? KVM refuses a
 * second one for the same address with EEXIST. 1 yes, 0 no, <0 error. */
static int ioeventfd_at(struct vm *vm, uint64_t gpa)
{
	int fd = eventfd(0, EFD_CLOEXEC);
	struct kvm_ioeventfd io = { .addr = gpa, .len = 0, .fd = fd };
	int rc = ioctl(vm->vm_fd, KVM_IOEVENTFD, &io), e = errno;
	if (rc == 0) {
		io.flags = KVM_IOEVENTFD_FLAG_DEASSIGN;
		ioctl(vm->vm_fd, KVM_IOEVENTFD, &io);
	}
	close(fd);
	return rc == 0 ? 0 : e == EEXIST ? 1 : -e;
}

/* ---- finding and binding a function (what a PCI enumerator and virtio_pci_modern_probe do) ---- */

static int find_slot(struct vm *vm, uint16_t device_id, int nth)
{
	for (int s = 0; s < PCI_SLOTS; s++) {
		uint32_t id = cfg_rd(vm, s, 0, 4);
		if ((id & 0xffff) == VIRTIO_PCI_VENDOR && (id >> 16) == device_id && nth-- == 0)
			return s;
	}
	return -1;
}

struct cap_walk {
	int n;
	uint8_t off[16], id[16], type[16], bar[16];
	uint32_t offset[16], length[16];
	bool loop;
};

static void walk_caps(struct vm *vm, int slot, struct cap_walk *w)
{
	memset(w, 0, sizeof(*w));
	if (!(cfg_rd(vm, slot, PCI_STATUS, 2) & PCI_STATUS_CAP_LIST))
		return;
	unsigned off = cfg_rd(vm, slot, PCI_CAPABILITY_LIST, 1) & 0xfc;
	while (off && w->n < 16) {
		if (off < 0x40) {
			w->loop = true;
			return;
		}
		int i = w->n++;
		w->off[i] = (uint8_t)off;
		w->id[i] = (uint8_t)cfg_rd(vm, slot, off, 1);
		if (w->id[i] == PCI_CAP_ID_VNDR) {
			w->type[i] = (uint8_t)cfg_rd(vm, slot, off + 3, 1);
			w->bar[i] = (uint8_t)cfg_rd(vm, slot, off + 4, 1);
			w->offset[i] = cfg_rd(vm, slot, off + 8, 4);
			w->length[i] = cfg_rd(vm, slot, off + 12, 4);
		}
		off = cfg_rd(vm, slot, off + 1, 1) & 0xfc;
	}
	if (off)
		w->loop = true;
}

static int cap_find(const struct cap_walk *w, uint8_t id, uint8_t type)
{
	for (int i = 0; i < w->n; i++)
		if (w->id[i] == id && (id != PCI_CAP_ID_VNDR || w->type[i] == type))
			return i;
	return -1;
}

static uint64_t bar_gpa(struct vm *vm, int slot, int bar)
{
	return cfg_rd(vm, slot, PCI_BAR0 + 4 * (unsigned)bar, 4) & ~0xfULL;
}

/* Fills d from configuration space; the queues' memory from RING_BASE/BUF_BASE by `index`. */
static int vdev_bind(struct vdev *d, struct vm *vm, int slot, int index, int nq)
{
	struct cap_walk w;
	memset(d, 0, sizeof(*d));
	d->vm = vm;
	d->slot = slot;
	d->nq = nq;
	walk_caps(vm, slot, &w);
	int c = cap_find(&w, PCI_CAP_ID_VNDR, CAP_COMMON), n = cap_find(&w, PCI_CAP_ID_VNDR, CAP_NOTIFY),
	    i = cap_find(&w, PCI_CAP_ID_VNDR, CAP_ISR), dc = cap_find(&w, PCI_CAP_ID_VNDR, CAP_DEVICE),
	    m = cap_find(&w, PCI_CAP_ID_MSIX, 0);
	if (c < 0 || n < 0 || i < 0 || m < 0)
		return -1;
	d->bar0 = bar_gpa(vm, slot, 0);
	d->bar1 = bar_gpa(vm, slot, 1);
	d->common = bar_gpa(vm, slot, w.bar[c]) + w.offset[c];
	d->notify = bar_gpa(vm, slot, w.bar[n]) + w.offset[n];
	d->notify_mult = cfg_rd(vm, slot, w.off[n] + 16u, 4);
	d->isr = bar_gpa(vm, slot, w.bar[i]) + w.offset[i];
	if (dc >= 0) {
		d->devcfg = bar_gpa(vm, slot, w.bar[dc]) + w.offset[dc];
		d->devcfg_len = w.length[dc];
	}
	d->msix_cap = w.off[m];
	d->nvec = (int)(cfg_rd(vm, slot, d->msix_cap + 2u, 2) & 0x7ff) + 1;
	uint32_t t = cfg_rd(vm, slot, d->msix_cap + 4u, 4), p = cfg_rd(vm, slot, d->msix_cap + 8u, 4);
	d->msix_table = bar_gpa(vm, slot, (int)(t & 7)) + (t & ~7u);
	d->msix_pba = bar_gpa(vm, slot, (int)(p & 7)) + (p & ~7u);
	for (int q = 0; q < nq; q++) {
		d->q[q].desc = RING_BASE + (uint64_t)(index * 4 + q) * RING_STRIDE;
		d->q[q].avail = d->q[q].desc + 0x1000;
		d->q[q].used = d->q[q].desc + 0x2000;
		d->q[q].buf = d->q[q].buf_next = BUF_BASE + (uint64_t)(index * 4 + q) * BUF_STRIDE;
	}
	return 0;
}

static uint8_t status_rd(struct vdev *d)
{
	return (uint8_t)rd(d->vm, d->common + COMMON_STATUS, 1);
}

static void status_wr(struct vdev *d, uint8_t s)
{
	wr(d->vm, d->common + COMMON_STATUS, s, 1);
}

static bool wait_status_zero(struct vdev *d)
{
	for (uint64_t end = ms_now() + WAIT_MS; ms_now() < end;) {
		if (status_rd(d) == 0)
			return true;
		sleep_us(200);
	}
	return false;
}

/* Writes 0 and waits (bounded) until the device reads back 0, as Linux's vp_reset does. */
static bool vdev_reset(struct vdev *d)
{
	status_wr(d, 0);
	return wait_status_zero(d);
}

static uint64_t dev_features(struct vdev *d)
{
	wr(d->vm, d->common + COMMON_DFSELECT, 0, 4);
	uint64_t lo = rd(d->vm, d->common + COMMON_DF, 4);
	wr(d->vm, d->common + COMMON_DFSELECT, 1, 4);
	uint64_t hi = rd(d->vm, d->common + COMMON_DF, 4);
	return lo | hi << 32;
}

static void drv_features(struct vdev *d, uint64_t f)
{
	wr(d->vm, d->common + COMMON_GFSELECT, 0, 4);
	wr(d->vm, d->common + COMMON_GF, (uint32_t)f, 4);
	wr(d->vm, d->common + COMMON_GFSELECT, 1, 4);
	wr(d->vm, d->common + COMMON_GF, (uint32_t)(f >> 32), 4);
}

/* Reset, ACKNOWLEDGE, DRIVER, features, FEATURES_OK: true when the device kept FEATURES_OK. */
static bool vdev_negotiate(struct vdev *d, uint64_t features)
{
	if (!vdev_reset(d))
		return false;
	status_wr(d, VIRTIO_STATUS_ACKNOWLEDGE);
	status_wr(d, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	drv_features(d, features);
	status_wr(d, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK);
	return status_rd(d) & VIRTIO_STATUS_FEATURES_OK;
}

static void *gp(struct vdev *d, uint64_t gpa, uint64_t len)
{
	void *p = guest_memory_ptr(&d->vm->mem, gpa, len);
	if (!p) {
		fprintf(stderr, "test bug: 0x%llx+%llu is not RAM\n", (unsigned long long)gpa, (unsigned long long)len);
		exit(1);
	}
	return p;
}

/* Sets up queue q with `size` entries (0: the device's maximum) and MSI-X vector `vec`. */
static void vq_setup(struct vdev *d, int qi, uint16_t size, uint16_t vec)
{
	struct vq *q = &d->q[qi];
	wr(d->vm, d->common + COMMON_Q_SELECT, (uint64_t)qi, 2);
	uint16_t max = (uint16_t)rd(d->vm, d->common + COMMON_Q_SIZE, 2);
	q->size = size && size < max ? size : max;
	wr(d->vm, d->common + COMMON_Q_SIZE, q->size, 2);
	memset(gp(d, q->desc, 0x3000), 0, 0x3000);
	/* two 32-bit halves, as Linux's vp_iowrite64_twopart */
	wr(d->vm, d->common + COMMON_Q_DESCLO, (uint32_t)q->desc, 4);
	wr(d->vm, d->common + COMMON_Q_DESCHI, (uint32_t)(q->desc >> 32), 4);
	wr(d->vm, d->common + COMMON_Q_AVAILLO, (uint32_t)q->avail, 4);
	wr(d->vm, d->common + COMMON_Q_AVAILHI, (uint32_t)(q->avail >> 32), 4);
	wr(d->vm, d->common + COMMON_Q_USEDLO, (uint32_t)q->used, 4);
	wr(d->vm, d->common + COMMON_Q_USEDHI, (uint32_t)(q->used >> 32), 4);
	wr(d->vm, d->common + COMMON_Q_MSIX, vec, 2);
	q->notify_off = (uint16_t)rd(d->vm, d->common + COMMON_Q_NOFF, 2);
	q->next_desc = q->avail_idx = q->last_used = 0;
	q->buf_next = q->buf;
	wr(d->vm, d->common + COMMON_Q_ENABLE, 1, 2);
}

/* The whole start-up: negotiate, queues (size 0: maximum), DRIVER_OK. */
static bool vdev_start(struct vdev *d, uint64_t features, uint16_t qsize)
{
	if (!vdev_negotiate(d, features))
		return false;
	for (int q = 0; q < d->nq; q++)
		vq_setup(d, q, qsize, VIRTIO_MSI_NO_VECTOR);
	status_wr(d, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK |
			     VIRTIO_STATUS_DRIVER_OK);
	return status_rd(d) & VIRTIO_STATUS_DRIVER_OK;
}

static uint64_t buf_alloc(struct vdev *d, int qi, uint32_t len)
{
	struct vq *q = &d->q[qi];
	uint64_t n = ((uint64_t)len + 15) & ~15ULL;
	if (q->buf_next + n > q->buf + BUF_STRIDE)
		q->buf_next = q->buf;
	uint64_t a = q->buf_next;
	q->buf_next += n;
	return a;
}

struct seg {
	uint64_t gpa;
	uint32_t len;
	bool write;      /* device-writable */
};

struct desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags, next;
};

static uint16_t *avail_ring(struct vdev *d, int qi)
{
	return gp(d, d->q[qi].avail, 6 + 2ULL * d->q[qi].size);
}

static uint16_t used_idx(struct vdev *d, int qi)
{
	uint16_t *u = gp(d, d->q[qi].used, 4);
	return __atomic_load_n(&u[1], __ATOMIC_ACQUIRE);
}

/* Writes a chain into the descriptor table (no avail entry yet); returns its head. */
static uint16_t chain_write(struct vdev *d, int qi, const struct seg *s, int n)
{
	struct vq *q = &d->q[qi];
	struct desc *t = gp(d, q->desc, 16ULL * q->size);
	uint16_t head = q->next_desc;
	for (int i = 0; i < n; i++) {
		uint16_t idx = (uint16_t)((head + i) % q->size);
		t[idx].addr = s[i].gpa;
		t[idx].len = s[i].len;
		t[idx].flags = (uint16_t)((i < n - 1 ? DESC_F_NEXT : 0) | (s[i].write ? DESC_F_WRITE : 0));
		t[idx].next = (uint16_t)((idx + 1) % q->size);
	}
	q->next_desc = (uint16_t)((head + n) % q->size);
	return head;
}

static void avail_push(struct vdev *d, int qi, uint16_t head)
{
	struct vq *q = &d->q[qi];
	uint16_t *a = avail_ring(d, qi);
	a[2 + q->avail_idx % q->size] = head;
	q->avail_idx++;
	__atomic_store_n(&a[1], q->avail_idx, __ATOMIC_RELEASE);
}

static uint16_t vq_post(struct vdev *d, int qi, const struct seg *s, int n)
{
	uint16_t head = chain_write(d, qi, s, n);
	avail_push(d, qi, head);
	return head;
}

/* A queue notification as the guest writes it: the queue index to the notify address. */
static bool vq_kick(struct vdev *d, int qi)
{
	return wr(d->vm, d->notify + (uint64_t)d->q[qi].notify_off * d->notify_mult, (uint64_t)qi, 2);
}

/* Waits (bounded) until the used index reaches `want`. */
static bool vq_wait(struct vdev *d, int qi, uint16_t want, unsigned ms)
{
	for (uint64_t end = ms_now() + ms;;) {
		if (used_idx(d, qi) == want)
			return true;
		if (ms_now() >= end)
			return false;
		sleep_us(50);
	}
}

/* Takes the next used element: its id and len. */
static void vq_take(struct vdev *d, int qi, uint32_t *id, uint32_t *len)
{
	struct vq *q = &d->q[qi];
	uint32_t *u = gp(d, q->used + 4 + 8ULL * (q->last_used % q->size), 8);
	*id = u[0];
	*len = u[1];
	q->last_used++;
}

/* ---- virtio-blk requests ---- */

struct blk_hdr {
	uint32_t type, reserved;
	uint64_t sector;
};

struct blk_result {
	bool done;
	uint8_t status;
	uint32_t used_len;
	uint32_t id;
};

/* One request: header, data segments (dev_writes: device-writable), status
 * byte; posted, kicked, waited for. */
static struct blk_result blk_req_segs(struct vdev *d, uint32_t type, uint64_t sector, const struct seg *data, int ndata)
{
	struct blk_result r = { 0 };
	struct seg s[66];
	uint64_t h = buf_alloc(d, 0, sizeof(struct blk_hdr)), st = buf_alloc(d, 0, 1);
	struct blk_hdr *hp = gp(d, h, sizeof(*hp));
	hp->type = type;
	hp->reserved = 0;
	hp->sector = sector;
	*(uint8_t *)gp(d, st, 1) = 0xee;
	s[0] = (struct seg){ h, sizeof(struct blk_hdr), false };
	for (int i = 0; i < ndata; i++)
		s[1 + i] = data[i];
	s[1 + ndata] = (struct seg){ st, 1, true };
	uint16_t head = vq_post(d, 0, s, ndata + 2);
	uint16_t want = d->q[0].avail_idx;
	vq_kick(d, 0);
	if (!vq_wait(d, 0, want, WAIT_MS))
		return r;
	vq_take(d, 0, &r.id, &r.used_len);
	r.done = r.id == head;
	r.status = *(uint8_t *)gp(d, st, 1);
	return r;
}

static struct blk_result blk_req(struct vdev *d, uint32_t type, uint64_t sector, uint64_t data, uint32_t len,
				 bool dev_writes)
{
	struct seg s = { data, len, dev_writes };
	return blk_req_segs(d, type, sector, &s, len ? 1 : 0);
}

static void fill_pattern(uint8_t *p, size_t n, unsigned seed)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)(seed * 131 + i * 7 + (i >> 9));
}

static bool file_equals(const char *path, uint64_t off, const void *want, size_t n)
{
	uint8_t buf[16384];
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || n > sizeof(buf))
		return false;
	bool ok = pread(fd, buf, n, (off_t)off) == (ssize_t)n && !memcmp(buf, want, n);
	close(fd);
	return ok;
}

static bool file_is_zero(const char *path, uint64_t off, size_t n)
{
	static const uint8_t zero[16384];
	return file_equals(path, off, zero, n);
}

/* ---- interrupts ---- */

static bool isr_read(struct vdev *d, uint8_t *v)
{
	uint64_t x;
	bool ok = mmio_rd(d->vm, d->isr, 1, &x);
	*v = (uint8_t)x;
	return ok;
}

static bool intx_status(struct vdev *d)
{
	return cfg_rd(d->vm, d->slot, PCI_STATUS, 2) & PCI_STATUS_INTERRUPT;
}

/* The device raises its interrupt a moment after the used index moves (the
 * push comes first): an expected interrupt is waited for (bounded), an
 * unexpected one is given the same moment to show up. */
#define SETTLE_US 20000

static uint8_t isr_wait(struct vdev *d, uint8_t mask)
{
	uint8_t seen = 0, v;
	for (uint64_t end = ms_now() + WAIT_MS; !(seen & mask) && ms_now() < end;) {
		if (isr_read(d, &v))
			seen |= v;
		if (!(seen & mask))
			sleep_us(200);
	}
	return seen;
}

static uint8_t isr_quiet(struct vdev *d)
{
	uint8_t v = 0;
	sleep_us(SETTLE_US);
	isr_read(d, &v);
	return v;
}

static bool cond_wait(struct vdev *d)
{
	for (uint64_t end = ms_now() + WAIT_MS; ms_now() < end; sleep_us(200))
		if (intx_status(d))
			return true;
	return false;
}

/* vCPU 0's LAPIC IRR bit for `vec` (the VM is paused for the read: KVM_GET_LAPIC
 * waits for KVM_RUN otherwise). clear: take the bit away again. */
static int lapic_irr(struct vm *vm, int vec, bool clear)
{
	struct kvm_lapic_state l;
	int rc = vm_pause(vm);
	if (rc)
		return rc;
	rc = -1;
	if (ioctl(vm->vcpus[0].fd, KVM_GET_LAPIC, &l) == 0) {
		uint32_t irr;
		unsigned off = LAPIC_IRR + (unsigned)(vec / 32) * 16;
		memcpy(&irr, l.regs + off, 4);
		rc = (irr >> (vec % 32)) & 1;
		if (clear && rc) {
			irr &= ~(1u << (vec % 32));
			memcpy(l.regs + off, &irr, 4);
			if (ioctl(vm->vcpus[0].fd, KVM_SET_LAPIC, &l) < 0)
				rc = -1;
		}
	}
	vm_resume(vm);
	return rc;
}

/* MSI-X delivery goes through an irqfd: give KVM a moment to inject (and,
 * when nothing is expected, the same moment to show that nothing comes). */
static int lapic_irr_settled(struct vm *vm, int vec, bool want)
{
	int v = -1;
	if (!want) {
		sleep_us(50000);
		return lapic_irr(vm, vec, false);
	}
	for (int i = 0; i < 20; i++) {
		v = lapic_irr(vm, vec, false);
		if (v == (int)want)
			break;
		sleep_us(5000);
	}
	return v;
}

/* The same, and the bit is taken away afterwards (as if the guest had taken the interrupt). */
static int lapic_take(struct vm *vm, int vec, bool want)
{
	int v = lapic_irr_settled(vm, vec, want);
	if (v == 1)
		lapic_irr(vm, vec, true);
	return v;
}

/* The level of IOAPIC pin `gsi` as KVM sees it (its irr bit while the entry is masked). */
static int ioapic_pin(struct vm *vm, int gsi)
{
	struct kvm_irqchip c = { .chip_id = KVM_IRQCHIP_IOAPIC };
	if (ioctl(vm->vm_fd, KVM_GET_IRQCHIP, &c) < 0)
		return -1;
	return (int)((c.chip.ioapic.irr >> gsi) & 1);
}

static uint64_t pba_wait(struct vdev *d, uint64_t mask)
{
	uint64_t v = 0;
	for (uint64_t end = ms_now() + WAIT_MS; ms_now() < end; sleep_us(200))
		if ((v = rd(d->vm, d->msix_pba, 8)) & mask)
			break;
	return v;
}

static void msix_entry(struct vdev *d, int v, uint32_t addr, uint32_t data, bool masked)
{
	uint64_t e = d->msix_table + 16ULL * (uint64_t)v;
	wr(d->vm, e + 0, addr, 4);
	wr(d->vm, e + 4, 0, 4);
	wr(d->vm, e + 8, data, 4);
	wr(d->vm, e + 12, masked ? 1 : 0, 4);
}

static void msix_enable(struct vdev *d, bool on)
{
	uint32_t ctl = cfg_rd(d->vm, d->slot, d->msix_cap + 2u, 2);
	ctl = on ? (ctl | PCI_MSIX_FLAGS_ENABLE) : (ctl & ~(uint32_t)PCI_MSIX_FLAGS_ENABLE);
	cfg_wr(d->vm, d->slot, d->msix_cap + 2u, ctl, 2);
}

/* ---- the disk files ---- */

static char tmpdir[512];
static char disk_path[600], disk_ro_path[600];

static int make_file(const char *path, uint64_t bytes, unsigned seed)
{
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return -1;
	uint8_t buf[4096];
	for (uint64_t o = 0; o < bytes; o += sizeof(buf)) {
		fill_pattern(buf, sizeof(buf), seed + (unsigned)(o / sizeof(buf)));
		if (pwrite(fd, buf, sizeof(buf), (off_t)o) != (ssize_t)sizeof(buf)) {
			close(fd);
			return -1;
		}
	}
	close(fd);
	return 0;
}

/* ====================================================================== */
/* 1. PCI enumeration                                                      */

static void test_enumeration(struct vm *vm, int slot)
{
	char why[256] = "";
	uint32_t id = cfg_rd(vm, slot, 0, 4);
	CHECK("pci: virtio-blk answers with vendor 0x1af4 device 0x1042", id == (0x1042u << 16 | 0x1af4u), "id 0x%08x", id);
	uint32_t ecam = ecam_rd(vm, slot, 0, 4);
	CHECK("pci: ECAM reads the same ids as the config ports", ecam == id, "ECAM 0x%08x, ports 0x%08x", ecam, id);
	uint32_t rev_class = cfg_rd(vm, slot, PCI_REVISION_ID, 4);
	CHECK("pci: revision 1, class 01:00 (mass storage, SCSI-less)", (rev_class & 0xff) == 1 && (rev_class >> 16) == 0x0100,
	      "revision/class dword 0x%08x", rev_class);
	uint32_t subsys = cfg_rd(vm, slot, PCI_SUBSYSTEM_VENDOR_ID, 4);
	CHECK("pci: subsystem vendor 0x1af4, subsystem id >= 0x40", (subsys & 0xffff) == 0x1af4 && (subsys >> 16) >= 0x40,
	      "subsystem 0x%08x", subsys);
	uint32_t host = cfg_rd(vm, 0, 0, 4), hclass = cfg_rd(vm, 0, PCI_REVISION_ID, 4) >> 8;
	CHECK("pci: host bridge at slot 0, class 06:00", host != 0xffffffff && hclass == 0x060000, "id 0x%08x class 0x%06x",
	      host, hclass);
	uint32_t none = cfg_rd(vm, 31, 0, 4), fn1 = (uint32_t)rd(vm, PCI_ECAM_BASE + ((uint64_t)slot << 15) + (1 << 12), 4);
	CHECK("pci: an empty slot and function 1 read all ones", none == 0xffffffff && fn1 == 0xffffffff,
	      "slot 31 0x%08x, fn 1 0x%08x", none, fn1);

	struct cap_walk w;
	walk_caps(vm, slot, &w);
	int c = cap_find(&w, PCI_CAP_ID_VNDR, CAP_COMMON), n = cap_find(&w, PCI_CAP_ID_VNDR, CAP_NOTIFY),
	    i = cap_find(&w, PCI_CAP_ID_VNDR, CAP_ISR), dc = cap_find(&w, PCI_CAP_ID_VNDR, CAP_DEVICE),
	    m = cap_find(&w, PCI_CAP_ID_MSIX, 0);
	CHECK("pci: capability list walk ends and finds common, notify, ISR, device and MSI-X caps",
	      !w.loop && c >= 0 && n >= 0 && i >= 0 && dc >= 0 && m >= 0, "loop %d, %d caps, common %d notify %d isr %d device %d msix %d",
	      w.loop, w.n, c, n, i, dc, m);
	if (c < 0 || n < 0 || i < 0 || dc < 0 || m < 0)
		return;
	uint32_t bar0_size = 0x4000;
	why[0] = 0;
	for (int k = 0; k < w.n; k++) {
		if (w.id[k] != PCI_CAP_ID_VNDR)
			continue;
		uint8_t cap_len = (uint8_t)cfg_rd(vm, slot, w.off[k] + 2u, 1);
		if (w.bar[k] > 5 || cap_len < 16 || (uint64_t)w.offset[k] + w.length[k] > bar0_size ||
		    (w.type[k] == CAP_NOTIFY && cap_len < 20))
			snprintf(why + strlen(why), sizeof(why) - strlen(why), "cap %u at 0x%x: bar %u off 0x%x len 0x%x cap_len %u; ",
				 w.type[k], w.off[k], w.bar[k], w.offset[k], w.length[k], cap_len);
	}
	CHECK("pci: vendor capabilities lie inside their BAR with sane lengths", !why[0], "%s", why);
	CHECK("pci: common cfg >= 0x38 bytes, ISR >= 1, device cfg 60 bytes (blk), notify covers 1 queue",
	      w.length[c] >= 0x38 && w.length[i] >= 1 && w.length[dc] >= 60 && w.length[n] >= 2,
	      "common %u isr %u device %u notify %u", w.length[c], w.length[i], w.length[dc], w.length[n]);
	uint32_t mult = cfg_rd(vm, slot, w.off[n] + 16u, 4);
	CHECK("pci: notify_off_multiplier is even (4)", mult == 4, "multiplier %u", mult);
	int pcicfg = cap_find(&w, PCI_CAP_ID_VNDR, CAP_PCI_CFG);
	CHECK("pci: VIRTIO_PCI_CAP_PCI_CFG present (virtio 1.x 4.1.4.9: the device MUST present one)", pcicfg >= 0,
	      "no PCI configuration access capability");
	if (pcicfg >= 0) {
		/* the window works without the BAR being decoded: memory decoding off */
		unsigned wc = w.off[pcicfg];
		uint32_t cmd0 = cfg_rd(vm, slot, PCI_COMMAND, 2);
		cfg_wr(vm, slot, PCI_COMMAND, cmd0 & ~(uint32_t)PCI_COMMAND_MEMORY, 2);
		cfg_wr(vm, slot, wc + 4, 0, 1);        /* BAR 0 */
		cfg_wr(vm, slot, wc + 8, COMMON_NUMQ, 4);
		cfg_wr(vm, slot, wc + 12, 2, 4);
		uint32_t nq = cfg_rd(vm, slot, wc + 16, 4) & 0xffff;
		cfg_wr(vm, slot, wc + 8, COMMON_DFSELECT, 4);
		cfg_wr(vm, slot, wc + 12, 4, 4);
		cfg_wr(vm, slot, wc + 16, 1, 4);        /* device_feature_select = 1, through the window */
		cfg_wr(vm, slot, wc + 8, COMMON_DF, 4);
		uint32_t fhi = cfg_rd(vm, slot, wc + 16, 4);
		cfg_wr(vm, slot, wc + 4, 1, 1);        /* BAR 1: the MSI-X table, entry 0's vector control */
		cfg_wr(vm, slot, wc + 8, 12, 4);
		uint32_t vctl = cfg_rd(vm, slot, wc + 16, 4);
		cfg_wr(vm, slot, wc + 12, 3, 4);        /* a length the window does not do: nothing happens */
		cfg_wr(vm, slot, wc + 16, 0, 4);
		cfg_wr(vm, slot, PCI_COMMAND, cmd0, 2);
		uint32_t vctl2 = (uint32_t)rd(vm, bar_gpa(vm, slot, 1) + 12, 4);
		CHECK("pci: the PCI_CFG window reads and writes BAR 0 and the MSI-X table with decoding off",
		      nq == 1 && (fhi & 1) && vctl == 1 && vctl2 == 1, "num_queues %u, features 32-63 0x%x, vector 0 control %u then %u",
		      nq, fhi, vctl, vctl2);
	}
	uint32_t mctl = cfg_rd(vm, slot, w.off[m] + 2u, 2), mtab = cfg_rd(vm, slot, w.off[m] + 4u, 4),
		 mpba = cfg_rd(vm, slot, w.off[m] + 8u, 4);
	CHECK("pci: MSI-X: 2 vectors (config + 1 queue), table in BAR1 at 0, PBA in BAR1 at 0x800, off after reset",
	      (mctl & 0x7ff) == 1 && !(mctl & PCI_MSIX_FLAGS_ENABLE) && mtab == 1 && mpba == (0x800 | 1),
	      "control 0x%04x table 0x%08x pba 0x%08x", mctl, mtab, mpba);

	/* BAR sizing as firmware does it: decoding off, all ones, read the mask, restore */
	uint32_t cmd = cfg_rd(vm, slot, PCI_COMMAND, 2);
	CHECK("pci: memory decoding on at start (placed like firmware would)", cmd & PCI_COMMAND_MEMORY, "command 0x%04x", cmd);
	cfg_wr(vm, slot, PCI_COMMAND, cmd & ~(uint32_t)PCI_COMMAND_MEMORY, 2);
	uint32_t sizes[6];
	uint32_t orig[6];
	for (int b = 0; b < 6; b++) {
		orig[b] = cfg_rd(vm, slot, PCI_BAR0 + 4u * (unsigned)b, 4);
		cfg_wr(vm, slot, PCI_BAR0 + 4u * (unsigned)b, 0xffffffff, 4);
		sizes[b] = cfg_rd(vm, slot, PCI_BAR0 + 4u * (unsigned)b, 4);
		cfg_wr(vm, slot, PCI_BAR0 + 4u * (unsigned)b, orig[b], 4);
	}
	CHECK("pci: BAR sizing: BAR0 16 KiB, BAR1 4 KiB (32-bit memory), BAR2-5 unused",
	      sizes[0] == 0xffffc000 && sizes[1] == 0xfffff000 && !sizes[2] && !sizes[3] && !sizes[4] && !sizes[5],
	      "masks %08x %08x %08x %08x %08x %08x", sizes[0], sizes[1], sizes[2], sizes[3], sizes[4], sizes[5]);
	uint64_t b0 = orig[0] & ~0xfULL, v;
	CHECK("pci: BARs placed in the PCI MMIO window, aligned to their size",
	      b0 >= PCI_MMIO_BASE && b0 < PCI_MMIO_BASE + PCI_MMIO_SIZE && !(b0 & 0x3fff) && !((orig[1] & ~0xfu) & 0xfff),
	      "BAR0 0x%08x BAR1 0x%08x", orig[0], orig[1]);
	CHECK("pci: memory decoding off: BAR0 not decoded, notify ioeventfd removed",
	      !mmio_rd(vm, b0 + 0x14, 1, &v) && ioeventfd_at(vm, b0 + 0x3000) == 0, "decoded %d, ioeventfd %d",
	      mmio_rd(vm, b0 + 0x14, 1, &v), ioeventfd_at(vm, b0 + 0x3000));
	cfg_wr(vm, slot, PCI_COMMAND, cmd, 2);
	CHECK("pci: memory decoding on again: BAR0 answers, notify ioeventfd at BAR0+0x3000",
	      mmio_rd(vm, b0 + 0x12, 2, &v) && v == 1 && ioeventfd_at(vm, b0 + 0x3000) == 1, "num_queues read %llu, ioeventfd %d",
	      (unsigned long long)v, ioeventfd_at(vm, b0 + 0x3000));

	/* moving BAR0: the device answers at the new place only, and its ioeventfd follows */
	uint64_t moved = PCI_MMIO_BASE + 0x10000000ULL;
	cfg_wr(vm, slot, PCI_BAR0, (uint32_t)moved, 4);
	bool new_ok = mmio_rd(vm, moved + 0x12, 2, &v) && v == 1;
	bool old_gone = !mmio_rd(vm, b0 + 0x12, 2, &v);
	int ev_new = ioeventfd_at(vm, moved + 0x3000), ev_old = ioeventfd_at(vm, b0 + 0x3000);
	CHECK("pci: BAR0 moved: the device answers at the new address, not at the old one, the ioeventfd moved with it",
	      new_ok && old_gone && ev_new == 1 && ev_old == 0, "new %d old-gone %d ioeventfd new %d old %d", new_ok, old_gone,
	      ev_new, ev_old);
	cfg_wr(vm, slot, PCI_BAR0, orig[0], 4);
	CHECK("pci: BAR0 moved back", mmio_rd(vm, b0 + 0x12, 2, &v) && v == 1 && ioeventfd_at(vm, b0 + 0x3000) == 1,
	      "not decoded at 0x%llx again", (unsigned long long)b0);
	/* read-only header fields stay */
	cfg_wr(vm, slot, 0, 0x12345678, 4);
	cfg_wr(vm, slot, PCI_REVISION_ID, 0xffffffff, 4);
	CHECK("pci: ids, revision and class are read-only", cfg_rd(vm, slot, 0, 4) == id &&
	      cfg_rd(vm, slot, PCI_REVISION_ID, 4) == rev_class, "id 0x%08x rev/class 0x%08x", cfg_rd(vm, slot, 0, 4),
	      cfg_rd(vm, slot, PCI_REVISION_ID, 4));
}

/* ====================================================================== */
/* 2. feature negotiation and the common configuration                     */

static void test_features(struct vdev *d)
{
	uint64_t f = dev_features(d);
	CHECK("features: the device offers VERSION_1", f & F_VERSION_1, "device features 0x%llx", (unsigned long long)f);
	CHECK("features: blk offers FLUSH, BLK_SIZE, SEG_MAX, DISCARD, WRITE_ZEROES, EVENT_IDX, INDIRECT, not RO",
	      (f & (BLK_F_FLUSH | BLK_F_BLK_SIZE | BLK_F_SEG_MAX | BLK_F_DISCARD | BLK_F_WRITE_ZEROES | F_EVENT_IDX | F_INDIRECT)) ==
			      (BLK_F_FLUSH | BLK_F_BLK_SIZE | BLK_F_SEG_MAX | BLK_F_DISCARD | BLK_F_WRITE_ZEROES | F_EVENT_IDX | F_INDIRECT) &&
		      !(f & BLK_F_RO),
	      "device features 0x%llx", (unsigned long long)f);
	wr(d->vm, d->common + COMMON_DFSELECT, 2, 4);
	CHECK("features: device_feature reads 0 beyond bit 63", rd(d->vm, d->common + COMMON_DF, 4) == 0, "0x%llx",
	      (unsigned long long)rd(d->vm, d->common + COMMON_DF, 4));
	bool no_v1 = vdev_negotiate(d, f & ~F_VERSION_1);
	CHECK("features: FEATURES_OK refused without VERSION_1", !no_v1, "accepted 0x%llx", (unsigned long long)(f & ~F_VERSION_1));
	bool extra = vdev_negotiate(d, F_VERSION_1 | BLK_F_MQ);
	CHECK("features: FEATURES_OK refused for a feature not offered (MQ)", !extra, "accepted");
	bool high = vdev_negotiate(d, F_VERSION_1 | (1ULL << 40));
	CHECK("features: FEATURES_OK refused for a feature not offered (bit 40)", !high, "accepted");
	bool ok = vdev_negotiate(d, F_VERSION_1 | BLK_F_FLUSH);
	CHECK("features: FEATURES_OK kept for an offered subset", ok, "status 0x%02x", status_rd(d));
	drv_features(d, F_VERSION_1 | BLK_F_FLUSH | BLK_F_DISCARD);
	wr(d->vm, d->common + COMMON_GFSELECT, 0, 4);
	uint32_t lo = (uint32_t)rd(d->vm, d->common + COMMON_GF, 4);
	CHECK("features: driver features cannot change after FEATURES_OK", lo == (uint32_t)BLK_F_FLUSH, "low word 0x%x", lo);

	uint16_t nq = (uint16_t)rd(d->vm, d->common + COMMON_NUMQ, 2);
	wr(d->vm, d->common + COMMON_Q_SELECT, 0, 2);
	uint16_t qs = (uint16_t)rd(d->vm, d->common + COMMON_Q_SIZE, 2), qv = (uint16_t)rd(d->vm, d->common + COMMON_Q_MSIX, 2),
		 qe = (uint16_t)rd(d->vm, d->common + COMMON_Q_ENABLE, 2);
	CHECK("common: one queue; after reset queue 0 reads its maximum size, NO_VECTOR, not enabled",
	      nq == 1 && qs == 256 && qv == VIRTIO_MSI_NO_VECTOR && qe == 0, "num_queues %u size %u vector 0x%x enable %u", nq, qs,
	      qv, qe);
	wr(d->vm, d->common + COMMON_Q_SELECT, 5, 2);
	uint16_t qs5 = (uint16_t)rd(d->vm, d->common + COMMON_Q_SIZE, 2);
	CHECK("common: a queue that does not exist reads size 0", qs5 == 0, "size %u", qs5);
	wr(d->vm, d->common + COMMON_Q_SELECT, 0, 2);
	wr(d->vm, d->common + COMMON_Q_SIZE, 100, 2);
	uint16_t qs100 = (uint16_t)rd(d->vm, d->common + COMMON_Q_SIZE, 2);
	wr(d->vm, d->common + COMMON_Q_SIZE, 64, 2);
	uint16_t qs64 = (uint16_t)rd(d->vm, d->common + COMMON_Q_SIZE, 2);
	CHECK("common: queue size: a power of two below the maximum is taken, 100 is not", qs100 == 256 && qs64 == 64,
	      "after 100: %u, after 64: %u", qs100, qs64);
	/* MSI-X vectors the device cannot map read back as NO_VECTOR (virtio 1.x 4.1.4.3 / 4.1.5.1.2) */
	wr(d->vm, d->common + COMMON_Q_MSIX, 7, 2);
	uint16_t qbad = (uint16_t)rd(d->vm, d->common + COMMON_Q_MSIX, 2);
	wr(d->vm, d->common + COMMON_MSIX, 7, 2);
	uint16_t cbad = (uint16_t)rd(d->vm, d->common + COMMON_MSIX, 2);
	wr(d->vm, d->common + COMMON_MSIX, 0, 2);
	uint16_t cgood = (uint16_t)rd(d->vm, d->common + COMMON_MSIX, 2);
	CHECK("common: queue_msix_vector beyond the table reads back NO_VECTOR", qbad == VIRTIO_MSI_NO_VECTOR, "0x%x", qbad);
	CHECK("common: config_msix_vector beyond the table reads back NO_VECTOR, a valid one sticks",
	      cbad == VIRTIO_MSI_NO_VECTOR && cgood == 0, "vector 7 reads 0x%x, vector 0 reads 0x%x", cbad, cgood);

	/* device configuration: capacity, blk_size, seg_max */
	uint64_t cap = rd(d->vm, d->devcfg + 0, 8);
	uint32_t seg_max = (uint32_t)rd(d->vm, d->devcfg + 12, 4), blk_size = (uint32_t)rd(d->vm, d->devcfg + 20, 4);
	CHECK("blk config: capacity in sectors, blk_size 512, seg_max >= 1", cap == DISK_BYTES / SECTOR && blk_size == 512 &&
	      seg_max >= 1, "capacity %llu blk_size %u seg_max %u", (unsigned long long)cap, blk_size, seg_max);
	uint64_t beyond = rd(d->vm, d->devcfg + d->devcfg_len - 2, 4);
	CHECK("blk config: an access crossing the end of the device configuration reads 0", beyond == 0, "0x%llx",
	      (unsigned long long)beyond);
}

/* ====================================================================== */
/* 3. virtio-blk I/O                                                       */

static void test_blk_io(struct vdev *d, struct vdev *ro)
{
	static uint8_t pattern[8192], back[8192];
	struct blk_result r;
	uint64_t cap = DISK_BYTES / SECTOR;

	bool started = vdev_start(d, F_VERSION_1 | BLK_F_FLUSH | BLK_F_DISCARD | BLK_F_WRITE_ZEROES | F_INDIRECT, 0);
	CHECK("blk: driver start-up (features, queue 0 of 256, DRIVER_OK)", started, "status 0x%02x", status_rd(d));
	if (!started)
		return;

	fill_pattern(pattern, sizeof(pattern), 77);
	uint64_t data = buf_alloc(d, 0, 8192);
	memcpy(gp(d, data, 8192), pattern, 8192);
	r = blk_req(d, BLK_T_OUT, 8, data, 8192, false);
	CHECK("blk: write 16 sectors at sector 8: OK, used len 1 (the status byte)", r.done && r.status == BLK_S_OK &&
	      r.used_len == 1, "done %d status %u used len %u", r.done, r.status, r.used_len);
	CHECK("blk: the file holds what was written (pread)", file_equals(disk_path, 8 * SECTOR, pattern, 8192),
	      "file differs at sector 8");

	uint64_t in = buf_alloc(d, 0, 8192);
	memset(gp(d, in, 8192), 0xcc, 8192);
	r = blk_req(d, BLK_T_IN, 8, in, 8192, true);
	CHECK("blk: read it back through the queue: OK, used len 8193, same bytes", r.done && r.status == BLK_S_OK &&
	      r.used_len == 8193 && !memcmp(gp(d, in, 8192), pattern, 8192), "done %d status %u used len %u same %d",
	      r.done, r.status, r.used_len, !memcmp(gp(d, in, 8192), pattern, 8192));

	/* scattered: three data descriptors of odd sizes (multiples of the sector in total) */
	uint64_t a = buf_alloc(d, 0, 1000), b = buf_alloc(d, 0, 24), c = buf_alloc(d, 0, 512);
	memset(gp(d, a, 1000), 0, 1000);
	memset(gp(d, b, 24), 0, 24);
	memset(gp(d, c, 512), 0, 512);
	struct seg segs[3] = { { a, 1000, true }, { b, 24, true }, { c, 512, true } };
	r = blk_req_segs(d, BLK_T_IN, 8, segs, 3);
	memcpy(back, gp(d, a, 1000), 1000);
	memcpy(back + 1000, gp(d, b, 24), 24);
	memcpy(back + 1024, gp(d, c, 512), 512);
	CHECK("blk: a read scattered over three buffers fills them in order", r.done && r.status == BLK_S_OK &&
	      !memcmp(back, pattern, 1536), "done %d status %u same %d", r.done, r.status, !memcmp(back, pattern, 1536));

	/* indirect descriptors (negotiated) */
	{
		uint64_t tbl = buf_alloc(d, 0, 48), h = buf_alloc(d, 0, 16), st = buf_alloc(d, 0, 1), buf = buf_alloc(d, 0, 512);
		struct blk_hdr *hp = gp(d, h, 16);
		*hp = (struct blk_hdr){ BLK_T_IN, 0, 9 };
		*(uint8_t *)gp(d, st, 1) = 0xee;
		struct desc *t = gp(d, tbl, 48);
		t[0] = (struct desc){ h, 16, DESC_F_NEXT, 1 };
		t[1] = (struct desc){ buf, 512, DESC_F_NEXT | DESC_F_WRITE, 2 };
		t[2] = (struct desc){ st, 1, DESC_F_WRITE, 0 };
		struct vq *q = &d->q[0];
		struct desc *dt = gp(d, q->desc, 16ULL * q->size);
		uint16_t head = q->next_desc;
		dt[head] = (struct desc){ tbl, 48, DESC_F_INDIRECT, 0 };
		q->next_desc = (uint16_t)((head + 1) % q->size);
		avail_push(d, 0, head);
		vq_kick(d, 0);
		bool done = vq_wait(d, 0, q->avail_idx, WAIT_MS);
		uint32_t id = 0, len = 0;
		if (done)
			vq_take(d, 0, &id, &len);
		CHECK("blk: a request in an indirect table: OK, right data", done && id == head && len == 513 &&
		      *(uint8_t *)gp(d, st, 1) == BLK_S_OK && !memcmp(gp(d, buf, 512), pattern + 512, 512),
		      "done %d id %u len %u status %u", done, id, len, *(uint8_t *)gp(d, st, 1));
	}

	/* the kick through the eventfd a KVM ioeventfd signals (what a vCPU's notify write does) */
	{
		struct virtio_dev *vd = d->vm->disks[0];
		uint64_t h = buf_alloc(d, 0, 16), st = buf_alloc(d, 0, 1);
		*(struct blk_hdr *)gp(d, h, 16) = (struct blk_hdr){ BLK_T_FLUSH, 0, 0 };
		struct seg s[2] = { { h, 16, false }, { st, 1, true } };
		vq_post(d, 0, s, 2);
		uint64_t one = 1;
		bool wrote = write(vd->vq[0].kick_fd, &one, 8) == 8;
		bool done = vq_wait(d, 0, d->q[0].avail_idx, WAIT_MS);
		uint32_t id, len;
		if (done)
			vq_take(d, 0, &id, &len);
		CHECK("blk: flush, notified through the queue's ioeventfd: OK", wrote && done && *(uint8_t *)gp(d, st, 1) == BLK_S_OK,
		      "wrote %d done %d status %u", wrote, done, *(uint8_t *)gp(d, st, 1));
	}

	r = blk_req(d, BLK_T_FLUSH, 0, 0, 0, false);
	CHECK("blk: flush: OK", r.done && r.status == BLK_S_OK, "done %d status %u", r.done, r.status);

	uint64_t one = buf_alloc(d, 0, 1024);
	r = blk_req(d, BLK_T_IN, cap, one, 512, true);
	struct blk_result r2 = blk_req(d, BLK_T_IN, cap - 1, one, 1024, true);
	struct blk_result r3 = blk_req(d, BLK_T_OUT, UINT64_MAX / 256, one, 512, false);
	struct blk_result r4 = blk_req(d, BLK_T_IN, cap - 1, one, 512, true);
	CHECK("blk: out of range (at the end, across the end, a huge sector) IOERR; the last sector OK",
	      r.done && r.status == BLK_S_IOERR && r2.done && r2.status == BLK_S_IOERR && r3.done && r3.status == BLK_S_IOERR &&
		      r4.done && r4.status == BLK_S_OK,
	      "statuses %u %u %u %u", r.status, r2.status, r3.status, r4.status);
	r = blk_req(d, BLK_T_IN, 0, one, 100, true);
	CHECK("blk: a read whose length is not a sector multiple: IOERR", r.done && r.status == BLK_S_IOERR, "status %u", r.status);
	r = blk_req(d, 99, 0, one, 512, true);
	CHECK("blk: an unknown request type: UNSUPP", r.done && r.status == BLK_S_UNSUPP, "status %u", r.status);

	uint64_t idb = buf_alloc(d, 0, 20);
	memset(gp(d, idb, 20), 0x55, 20);
	r = blk_req(d, BLK_T_GET_ID, 0, idb, 20, true);
	char idstr[21] = { 0 };
	memcpy(idstr, gp(d, idb, 20), 20);
	CHECK("blk: GET_ID: OK, a NUL-terminated id string", r.done && r.status == BLK_S_OK && strlen(idstr) > 0 &&
	      strlen(idstr) < 20 && !strncmp(idstr, "glide-disk0", 11), "status %u id '%.20s'", r.status, idstr);

	/* discard and write zeroes */
	struct { uint64_t sector; uint32_t num, flags; } *dz;
	uint64_t dzb = buf_alloc(d, 0, 16);
	dz = gp(d, dzb, 16);
	*dz = (typeof(*dz)){ 8, 8, 0 };
	r = blk_req(d, BLK_T_WRITE_ZEROES, 0, dzb, 16, false);
	CHECK("blk: write zeroes over 8 written sectors: OK, the file reads zeros there, the rest stays",
	      r.done && r.status == BLK_S_OK && file_is_zero(disk_path, 8 * SECTOR, 4096) &&
		      file_equals(disk_path, 16 * SECTOR, pattern + 4096, 4096),
	      "status %u zero %d rest %d", r.status, file_is_zero(disk_path, 8 * SECTOR, 4096),
	      file_equals(disk_path, 16 * SECTOR, pattern + 4096, 4096));
	*dz = (typeof(*dz)){ 16, 8, 1 };
	r = blk_req(d, BLK_T_WRITE_ZEROES, 0, dzb, 16, false);
	CHECK("blk: write zeroes with the unmap flag: OK, zeros", r.done && r.status == BLK_S_OK &&
	      file_is_zero(disk_path, 16 * SECTOR, 4096), "status %u", r.status);
	r = blk_req(d, BLK_T_IN, 8, in, 8192, true);
	static const uint8_t zeros[8192];
	CHECK("blk: reading the zeroed range through the queue gives zeros", r.done && r.status == BLK_S_OK &&
	      file_is_zero(disk_path, 8 * SECTOR, 8192) && !memcmp(gp(d, in, 8192), zeros, 8192), "status %u", r.status);
	*dz = (typeof(*dz)){ 100, 16, 0 };
	r = blk_req(d, BLK_T_DISCARD, 0, dzb, 16, false);
	CHECK("blk: discard: OK", r.done && r.status == BLK_S_OK, "status %u", r.status);
	*dz = (typeof(*dz)){ cap - 4, 8, 0 };
	r = blk_req(d, BLK_T_DISCARD, 0, dzb, 16, false);
	CHECK("blk: discard across the end of the disk: IOERR", r.done && r.status == BLK_S_IOERR, "status %u", r.status);
	*dz = (typeof(*dz)){ 100, 8, 1 };
	r = blk_req(d, BLK_T_DISCARD, 0, dzb, 16, false);
	CHECK("blk: discard with the unmap flag: UNSUPP (virtio 1.2 5.2.6.2)", r.done && r.status == BLK_S_UNSUPP, "status %u",
	      r.status);
	*dz = (typeof(*dz)){ 100, 8, 4 };
	r = blk_req(d, BLK_T_WRITE_ZEROES, 0, dzb, 16, false);
	CHECK("blk: write zeroes with an unknown flag: UNSUPP (virtio 1.2 5.2.6.2)", r.done && r.status == BLK_S_UNSUPP,
	      "status %u", r.status);

	/* two segments, the second out of range: nothing is applied */
	{
		uint64_t w = buf_alloc(d, 0, 4096), segb = buf_alloc(d, 0, 32);
		memcpy(gp(d, w, 4096), pattern, 4096);
		r = blk_req(d, BLK_T_OUT, 300, w, 4096, false);
		struct { uint64_t sector; uint32_t num, flags; } *two = gp(d, segb, 32);
		two[0].sector = 300, two[0].num = 8, two[0].flags = 0;
		two[1].sector = cap - 1, two[1].num = 8, two[1].flags = 0;
		r2 = blk_req(d, BLK_T_WRITE_ZEROES, 0, segb, 32, false);
		CHECK("blk: write zeroes whose second segment is out of range: IOERR, the first segment not applied",
		      r.done && r.status == BLK_S_OK && r2.done && r2.status == BLK_S_IOERR &&
			      file_equals(disk_path, 300 * SECTOR, pattern, 4096),
		      "write %u zeroes %u first kept %d", r.status, r2.status, file_equals(disk_path, 300 * SECTOR, pattern, 4096));
	}

	/* the read-only disk */
	uint64_t rof = dev_features(ro);
	CHECK("blk ro: the read-only disk offers RO, not DISCARD or WRITE_ZEROES", (rof & BLK_F_RO) &&
	      !(rof & (BLK_F_DISCARD | BLK_F_WRITE_ZEROES)), "features 0x%llx", (unsigned long long)rof);
	if (vdev_start(ro, F_VERSION_1 | BLK_F_RO, 0)) {
		uint8_t before[512];
		fill_pattern(before, 512, 1000); /* make_file's pattern for block 0 */
		uint64_t wb = buf_alloc(ro, 0, 512);
		memset(gp(ro, wb, 512), 0xab, 512);
		r = blk_req(ro, BLK_T_OUT, 0, wb, 512, false);
		CHECK("blk ro: a write is refused (IOERR) and the file is unchanged", r.done && r.status == BLK_S_IOERR &&
		      file_equals(disk_ro_path, 0, before, 512), "done %d status %u", r.done, r.status);
		r = blk_req(ro, BLK_T_IN, 0, wb, 512, true);
		CHECK("blk ro: a read works", r.done && r.status == BLK_S_OK && !memcmp(gp(ro, wb, 512), before, 512), "status %u",
		      r.status);
	} else {
		CHECK("blk ro: driver start-up", false, "status 0x%02x", status_rd(ro));
	}
}

/* ====================================================================== */
/* 5. interrupts: MSI-X and INTx                                           */

/* A mirror with a `changed` hook (shared-nothing migration, disk.c): the
 * ranges it was told about, in order. */
struct changed_log {
	struct virtio_blk_mirror m; /* first */
	int n;
	uint64_t off[8], len[8];
};
static void changed_record(struct virtio_blk_mirror *m, uint64_t off, uint64_t len)
{
	struct changed_log *c = (struct changed_log *)m;
	if (c->n < 8) {
		c->off[c->n] = off;
		c->len[c->n] = len;
	}
	c->n++;
}

/* The write-blocking mirrors: into a file (move-disk) and through a hook
 * (shared-nothing migration), on a disk of its own with the threads engine
 * and every request 100 ms long (GLIDE_TEST_BLK_DELAY_US), so that a write
 * is still in flight when the driver resets the device: that write changed
 * the file, so each mirror must get it (a copy would otherwise miss it). */
static void test_blk_mirror(void)
{
	char path[700], mpath[700], err[512];
	static uint8_t pat[4096], pat2[4096];
	snprintf(path, sizeof(path), "%s/disk-m.raw", tmpdir);
	snprintf(mpath, sizeof(mpath), "%s/mirror.raw", tmpdir);
	int mfd = open(mpath, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (make_file(path, DISK_BYTES, 0) || mfd < 0 || ftruncate(mfd, DISK_BYTES)) {
		CHECK("blk mirror: setup files", false, "%s", strerror(errno));
		goto files;
	}
	struct vm_device_specs specs = { 0 };
	specs.ndisks = 1;
	snprintf(specs.disks[0].path, sizeof(specs.disks[0].path), "%s", path);
	specs.disks[0].aio = BLK_IO_THREADS;
	setenv("GLIDE_TEST_BLK_DELAY_US", "100000", 1);
	struct vm *vm = vm_new();
	int rc = vm_make(vm, "virtio-m", &specs, false, err, sizeof(err));
	unsetenv("GLIDE_TEST_BLK_DELAY_US");
	bool started = !rc && !vm_start_vcpus(vm, err, sizeof(err));
	struct vdev d;
	int slot = started ? find_slot(vm, 0x1042, 0) : -1;
	if (!started || slot < 0 || vdev_bind(&d, vm, slot, 0, 1) ||
	    !vdev_start(&d, F_VERSION_1 | BLK_F_FLUSH | BLK_F_DISCARD | BLK_F_WRITE_ZEROES, 0)) {
		CHECK("blk mirror: a VM with a slow disk", false, "%s", err);
		vm_end(vm, started);
		goto files;
	}
	struct virtio_blk_mirror m = { .fd = mfd };
	pthread_mutex_init(&m.lock, NULL);
	virtio_blk_mirror(vm, 0, &m);

	fill_pattern(pat, sizeof(pat), 9);
	uint64_t data = buf_alloc(&d, 0, 4096);
	memcpy(gp(&d, data, 4096), pat, 4096);
	struct blk_result r = blk_req(&d, BLK_T_OUT, 16, data, 4096, false);
	CHECK("blk mirror: a completed write is in the mirror too", r.done && r.status == BLK_S_OK &&
	      file_equals(mpath, 16 * SECTOR, pat, 4096), "done %d status %u mirrored %d",
	      r.done, r.status, file_equals(mpath, 16 * SECTOR, pat, 4096));
	struct { uint64_t sector; uint32_t num, flags; } *dz;
	uint64_t dzb = buf_alloc(&d, 0, 16);
	dz = gp(&d, dzb, 16);
	*dz = (typeof(*dz)){ 16, 8, 0 };
	r = blk_req(&d, BLK_T_WRITE_ZEROES, 0, dzb, 16, false);
	CHECK("blk mirror: write zeroes reach the mirror", r.done && r.status == BLK_S_OK && file_is_zero(mpath, 16 * SECTOR, 4096),
	      "status %u", r.status);

	/* a write in flight when the driver resets the device */
	fill_pattern(pat2, sizeof(pat2), 10);
	uint64_t h = buf_alloc(&d, 0, 16), st = buf_alloc(&d, 0, 1), d2 = buf_alloc(&d, 0, 4096);
	*(struct blk_hdr *)gp(&d, h, 16) = (struct blk_hdr){ BLK_T_OUT, 0, 128 };
	memcpy(gp(&d, d2, 4096), pat2, 4096);
	struct seg sg[3] = { { h, 16, false }, { d2, 4096, false }, { st, 1, true } };
	vq_post(&d, 0, sg, 3);
	vq_kick(&d, 0);
	sleep_us(20000); /* taken by a worker, which holds it 100 ms */
	bool reset = vdev_reset(&d);
	CHECK("blk: a write in flight at a driver reset is mirrored (it changed the file)",
	      reset && file_equals(path, 128 * SECTOR, pat2, 4096) && file_equals(mpath, 128 * SECTOR, pat2, 4096),
	      "reset %d on disk %d mirrored %d", reset, file_equals(path, 128 * SECTOR, pat2, 4096),
	      file_equals(mpath, 128 * SECTOR, pat2, 4096));

	virtio_blk_mirror(vm, 0, NULL);
	bool again = vdev_start(&d, F_VERSION_1 | BLK_F_FLUSH | BLK_F_DISCARD | BLK_F_WRITE_ZEROES, 0);
	data = buf_alloc(&d, 0, 4096);
	memcpy(gp(&d, data, 4096), pat, 4096);
	r = blk_req(&d, BLK_T_OUT, 256, data, 4096, false);
	CHECK("blk mirror: once stopped, writes reach only the disk", again && r.done && r.status == BLK_S_OK &&
	      file_equals(path, 256 * SECTOR, pat, 4096) && file_is_zero(mpath, 256 * SECTOR, 4096), "restart %d status %u", again,
	      r.status);

	/* the hook: a write, write zeroes and a discard each say their range; so does a write in flight at a reset */
	struct changed_log cl = { .m = { .fd = -1, .changed = changed_record } };
	virtio_blk_mirror(vm, 0, &cl.m);
	r = blk_req(&d, BLK_T_OUT, 512, data, 4096, false);
	dzb = buf_alloc(&d, 0, 16);
	dz = gp(&d, dzb, 16);
	*dz = (typeof(*dz)){ 600, 16, 0 };
	struct blk_result r2 = blk_req(&d, BLK_T_WRITE_ZEROES, 0, dzb, 16, false);
	*dz = (typeof(*dz)){ 640, 8, 0 };
	struct blk_result r3 = blk_req(&d, BLK_T_DISCARD, 0, dzb, 16, false);
	CHECK("blk mirror hook: a write, write zeroes and a discard each report their range before they complete",
	      r.done && r2.done && r3.done && cl.n == 3 && cl.off[0] == 512 * SECTOR && cl.len[0] == 4096 &&
		      cl.off[1] == 600 * SECTOR && cl.len[1] == 16 * SECTOR && cl.off[2] == 640 * SECTOR && cl.len[2] == 8 * SECTOR,
	      "%d calls: %llu+%llu %llu+%llu %llu+%llu", cl.n, (unsigned long long)cl.off[0], (unsigned long long)cl.len[0],
	      (unsigned long long)cl.off[1], (unsigned long long)cl.len[1], (unsigned long long)cl.off[2],
	      (unsigned long long)cl.len[2]);
	h = buf_alloc(&d, 0, 16), st = buf_alloc(&d, 0, 1), d2 = buf_alloc(&d, 0, 4096);
	*(struct blk_hdr *)gp(&d, h, 16) = (struct blk_hdr){ BLK_T_OUT, 0, 1024 };
	memcpy(gp(&d, d2, 4096), pat2, 4096);
	struct seg sg2[3] = { { h, 16, false }, { d2, 4096, false }, { st, 1, true } };
	vq_post(&d, 0, sg2, 3);
	vq_kick(&d, 0);
	sleep_us(20000);
	reset = vdev_reset(&d);
	CHECK("blk mirror hook: a write in flight at a driver reset reports its range", reset && cl.n == 4 &&
	      cl.off[3] == 1024 * SECTOR && cl.len[3] == 4096, "reset %d, %d calls, last %llu+%llu", reset, cl.n,
	      (unsigned long long)cl.off[MIN(cl.n, 8) - 1], (unsigned long long)cl.len[MIN(cl.n, 8) - 1]);
	virtio_blk_mirror(vm, 0, NULL);
	vm_end(vm, true);
	pthread_mutex_destroy(&m.lock);
files:
	if (mfd >= 0)
		close(mfd);
	unlink(path);
	unlink(mpath);
}

static void test_interrupts(struct vdev *d)
{
	struct blk_result r;
	uint64_t buf = buf_alloc(d, 0, 512);
	uint8_t isr;

	/* INTx first (MSI-X off). The line is the IOAPIC pin's level (its entry
	 * is masked, so KVM keeps the pin's state in the IOAPIC's irr); the PCI
	 * status bit is the function's interrupt condition. */
	if (!vdev_start(d, F_VERSION_1, 0)) {
		CHECK("intx: driver start-up", false, "status 0x%02x", status_rd(d));
		return;
	}
	int gsi = PCI_INTX_GSI_BASE + d->slot % 4;
	isr_read(d, &isr);
	r = blk_req(d, BLK_T_IN, 0, buf, 512, true);
	bool cond = cond_wait(d);
	int pin = ioapic_pin(d->vm, gsi);
	uint8_t isr1 = 0, isr2 = 0;
	isr_read(d, &isr1);
	bool cond_after = intx_status(d);
	int pin_after = ioapic_pin(d->vm, gsi);
	isr_read(d, &isr2);
	CHECK("intx: completion sets ISR bit 0, PCI status bit 3, and raises the pin (GSI 16 + slot % 4)",
	      r.done && (isr1 & 1) && cond && pin == 1, "done %d isr 0x%x status bit %d pin %d", r.done, isr1, cond, pin);
	CHECK("intx: reading ISR clears it, the status bit and the pin", isr2 == 0 && !cond_after && pin_after == 0,
	      "isr then 0x%x, status bit %d, pin %d", isr2, cond_after, pin_after);
	uint32_t cmd = cfg_rd(d->vm, d->slot, PCI_COMMAND, 2);
	cfg_wr(d->vm, d->slot, PCI_COMMAND, cmd | PCI_COMMAND_INTX_DISABLE, 2);
	r = blk_req(d, BLK_T_IN, 0, buf, 512, true);
	cond = cond_wait(d);
	pin = ioapic_pin(d->vm, gsi);
	CHECK("intx: with Interrupt Disable set a completion sets the status bit but leaves the pin low",
	      r.done && cond && pin == 0, "status bit %d pin %d", cond, pin);
	cfg_wr(d->vm, d->slot, PCI_COMMAND, cmd, 2);
	pin_after = ioapic_pin(d->vm, gsi);
	CHECK("intx: clearing Interrupt Disable with the condition still there raises the pin", pin_after == 1, "pin %d",
	      pin_after);
	cfg_wr(d->vm, d->slot, PCI_COMMAND, cmd | PCI_COMMAND_INTX_DISABLE, 2);
	int pin_dis = ioapic_pin(d->vm, gsi);
	cfg_wr(d->vm, d->slot, PCI_COMMAND, cmd, 2);
	CHECK("intx: setting Interrupt Disable lowers a raised pin", pin_after == 1 && pin_dis == 0, "pin %d then %d",
	      pin_after, pin_dis);
	isr_read(d, &isr1);
	r = blk_req(d, BLK_T_IN, 0, buf, 512, true);
	bool up = cond_wait(d) && ioapic_pin(d->vm, gsi) == 1;
	msix_enable(d, true);
	int pin_msix = ioapic_pin(d->vm, gsi);
	isr_read(d, &isr1);
	msix_enable(d, false);
	int pin_end = ioapic_pin(d->vm, gsi);
	CHECK("intx: enabling MSI-X lowers a raised pin (a function using MSI-X must not use INTx)", r.done && up &&
	      pin_msix == 0, "raised %d, then pin %d", up, pin_msix);
	CHECK("intx: ISR read while MSI-X was on ends the condition: the pin stays low after", pin_end == 0 &&
	      !intx_status(d), "pin %d status bit %d", pin_end, intx_status(d));

	/* MSI-X */
	if (!vdev_negotiate(d, F_VERSION_1)) {
		CHECK("msix: negotiate", false, "refused");
		return;
	}
	msix_enable(d, true);
	msix_entry(d, 0, 0xfee00000, MSI_VECTOR2, true);
	msix_entry(d, 1, 0xfee00000, MSI_VECTOR, true); /* masked: the reset state */
	wr(d->vm, d->common + COMMON_MSIX, 0, 2);
	vq_setup(d, 0, 0, 1);
	uint16_t qvec = (uint16_t)rd(d->vm, d->common + COMMON_Q_MSIX, 2);
	status_wr(d, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK);
	CHECK("msix: queue 0 takes vector 1", qvec == 1, "reads 0x%x", qvec);
	lapic_irr(d->vm, MSI_VECTOR, true);
	r = blk_req(d, BLK_T_IN, 0, buf, 512, true);
	uint64_t pba = pba_wait(d, 2);
	int irr = lapic_take(d->vm, MSI_VECTOR, false);
	isr_read(d, &isr);
	CHECK("msix: completion on a masked vector sets its PBA bit and delivers nothing", r.done && (pba & 2) && irr == 0,
	      "done %d pba 0x%llx irr %d", r.done, (unsigned long long)pba, irr);
	CHECK("msix: no INTx and no ISR bit while MSI-X is on", !intx_status(d) && !(isr & 1), "line %d isr 0x%x",
	      intx_status(d), isr);
	wr(d->vm, d->msix_table + 16 + 12, 0, 4); /* unmask vector 1 */
	irr = lapic_take(d->vm, MSI_VECTOR, true);
	pba = rd(d->vm, d->msix_pba, 8);
	CHECK("msix: unmasking delivers the pending message (LAPIC IRR) and clears the PBA bit", irr == 1 && !(pba & 2),
	      "irr %d pba 0x%llx", irr, (unsigned long long)pba);
	lapic_irr(d->vm, MSI_VECTOR, true);
	r = blk_req(d, BLK_T_IN, 0, buf, 512, true);
	irr = lapic_take(d->vm, MSI_VECTOR, true);
	CHECK("msix: completion on an unmasked vector is delivered", r.done && irr == 1, "done %d irr %d", r.done, irr);
	/* function mask */
	uint32_t ctl = cfg_rd(d->vm, d->slot, d->msix_cap + 2u, 2);
	cfg_wr(d->vm, d->slot, d->msix_cap + 2u, ctl | PCI_MSIX_FLAGS_MASKALL, 2);
	r = blk_req(d, BLK_T_IN, 0, buf, 512, true);
	pba = pba_wait(d, 2);
	int irr_masked = lapic_take(d->vm, MSI_VECTOR, false);
	cfg_wr(d->vm, d->slot, d->msix_cap + 2u, ctl, 2);
	irr = lapic_take(d->vm, MSI_VECTOR, true);
	CHECK("msix: function mask holds the message (PBA), clearing it delivers", r.done && (pba & 2) && irr_masked == 0 &&
	      irr == 1, "pba 0x%llx irr while masked %d after %d", (unsigned long long)pba, irr_masked, irr);
	/* the message moves with the table entry */
	wr(d->vm, d->msix_table + 16 + 8, MSI_VECTOR2, 4);
	lapic_irr(d->vm, MSI_VECTOR2, true);
	r = blk_req(d, BLK_T_IN, 0, buf, 512, true);
	int irr2 = lapic_take(d->vm, MSI_VECTOR2, true), irr1 = lapic_take(d->vm, MSI_VECTOR, false);
	CHECK("msix: a new data value in the table entry is used for the next message", r.done && irr2 == 1 && irr1 == 0,
	      "new vector %d old vector %d", irr2, irr1);
	/* an unaligned 8-byte table write stays inside its entry (no write past the table) */
	uint32_t e1addr = (uint32_t)rd(d->vm, d->msix_table + 16, 4);
	wr(d->vm, d->msix_table + 12, 0x1122334400000001ULL, 8);
	uint32_t e1addr_after = (uint32_t)rd(d->vm, d->msix_table + 16, 4);
	CHECK("msix: an 8-byte access that is not 8-byte aligned is ignored (it would span two entries)",
	      e1addr_after == e1addr, "entry 1 address 0x%x became 0x%x", e1addr, e1addr_after);
	msix_enable(d, false);
}

/* ====================================================================== */
/* 6. interrupt suppression: NO_INTERRUPT, EVENT_IDX                       */

/* n zero-length reads (header + status) in one batch, one kick; waits for them. */
static bool blk_batch(struct vdev *d, int n)
{
	for (int i = 0; i < n; i++) {
		uint64_t h = buf_alloc(d, 0, 16), st = buf_alloc(d, 0, 1);
		*(struct blk_hdr *)gp(d, h, 16) = (struct blk_hdr){ BLK_T_IN, 0, 0 };
		struct seg s[2] = { { h, 16, false }, { st, 1, true } };
		vq_post(d, 0, s, 2);
	}
	vq_kick(d, 0);
	bool ok = vq_wait(d, 0, d->q[0].avail_idx, WAIT_MS);
	d->q[0].last_used = d->q[0].avail_idx;
	return ok;
}

static void test_suppression(struct vdev *d)
{
	uint64_t buf = buf_alloc(d, 0, 512);
	uint8_t isr;
	struct blk_result r;

	if (!vdev_start(d, F_VERSION_1, 0)) {
		CHECK("suppression: start-up", false, "status 0x%02x", status_rd(d));
		return;
	}
	isr_read(d, &isr);
	avail_ring(d, 0)[0] = AVAIL_F_NO_INTERRUPT;
	r = blk_req(d, BLK_T_IN, 0, buf, 512, true);
	isr = isr_quiet(d);
	CHECK("suppression: NO_INTERRUPT: completion without an interrupt", r.done && !(isr & 1), "done %d isr 0x%x", r.done, isr);
	avail_ring(d, 0)[0] = 0;
	r = blk_req(d, BLK_T_IN, 0, buf, 512, true);
	isr = isr_wait(d, 1);
	CHECK("suppression: flag cleared: the next completion interrupts", r.done && (isr & 1), "done %d isr 0x%x", r.done, isr);

	if (!vdev_start(d, F_VERSION_1 | F_EVENT_IDX, 0)) {
		CHECK("event idx: start-up", false, "status 0x%02x", status_rd(d));
		return;
	}
	isr_read(d, &isr);
	struct vq *q = &d->q[0];
	uint16_t *used_event = &avail_ring(d, 0)[2 + q->size];
	uint16_t *avail_event = gp(d, q->used + 4 + 8ULL * q->size, 2);
	*used_event = 1; /* interrupt once the entry with index 1 is used: after the second request */
	r = blk_req(d, BLK_T_IN, 0, buf, 512, true);
	uint8_t isr_a = 0, isr_b = 0;
	isr_a = isr_quiet(d);
	uint16_t aev = __atomic_load_n(avail_event, __ATOMIC_ACQUIRE);
	struct blk_result r2 = blk_req(d, BLK_T_IN, 0, buf, 512, true);
	isr_b = isr_wait(d, 1);
	CHECK("event idx: used_event 1: no interrupt for entry 0, one for entry 1", r.done && r2.done && !(isr_a & 1) &&
	      (isr_b & 1), "isr after 1st 0x%x, after 2nd 0x%x", isr_a, isr_b);
	CHECK("event idx: the device publishes avail_event (the next avail index it will read)", aev == 1, "avail_event %u",
	      aev);
	/* NO_INTERRUPT is ignored when EVENT_IDX is negotiated (the spec: the flag is then not used) */
	*used_event = (uint16_t)(q->last_used + 100);
	r = blk_req(d, BLK_T_IN, 0, buf, 512, true);
	isr = isr_quiet(d);
	CHECK("event idx: used_event far ahead: no interrupt", r.done && !(isr & 1), "isr 0x%x", isr);

	/* A driver that keeps up by polling (used_event = the used index it has seen, as
	 * virtqueue_enable_cb_prepare writes it) takes no interrupt for more than 2^16
	 * completions; then it asks for one on the next entry. The device must see that
	 * the entry was written (the window since its last check, not since its last
	 * interrupt, which is more than 2^16 entries back). */
	uint64_t t0 = ms_now();
	bool ok = true;
	uint8_t isr_poll = 0;
	unsigned total = 0;
	const unsigned target = 65536 - 64 - 3; /* three requests done above: used idx 65472 at the end */
	while (ok && total < target) {
		int n = (int)MIN(128u, target - total);
		*used_event = (uint16_t)(q->avail_idx + n); /* "interrupt me after the entry past this batch" */
		ok = blk_batch(d, n);
		total += (unsigned)n;
		isr_read(d, &isr);
		isr_poll |= isr;
	}
	isr_poll |= isr_quiet(d);
	CHECK("event idx: a polling driver takes no interrupt over 65469 completions", ok && !(isr_poll & 1),
	      "ok %d isr seen 0x%x after %u requests (%llu ms)", ok, isr_poll, total, (unsigned long long)(ms_now() - t0));
	*used_event = q->avail_idx; /* the next entry */
	ok = blk_batch(d, 128);
	isr = isr_wait(d, 1);
	CHECK("event idx: after more than 2^16 completions without one, used_event = next entry interrupts",
	      ok && (isr & 1), "batch ok %d isr 0x%x (used idx now %u)", ok, isr, used_idx(d, 0));
}

/* ====================================================================== */
/* 4. malformed chains                                                     */

static bool wait_needs_reset(struct vdev *d)
{
	for (uint64_t end = ms_now() + WAIT_MS; ms_now() < end;) {
		if (status_rd(d) & VIRTIO_STATUS_NEEDS_RESET)
			return true;
		sleep_us(200);
	}
	return false;
}

/* After a malformed chain: reset and prove the device works again. */
static bool recover(struct vdev *d, uint64_t features)
{
	if (!vdev_reset(d) || !vdev_start(d, features, 8))
		return false;
	uint64_t b = buf_alloc(d, 0, 512);
	struct blk_result r = blk_req(d, BLK_T_IN, 0, b, 512, true);
	return r.done && r.status == BLK_S_OK && !(status_rd(d) & VIRTIO_STATUS_NEEDS_RESET);
}

static void test_malformed(struct vdev *d)
{
	uint64_t features = F_VERSION_1;
	struct vq *q = &d->q[0];
	uint8_t gen0, isr;

	/* a loop in a chain of an 8-entry queue */
	if (!vdev_start(d, features, 8)) {
		CHECK("malformed: start-up with an 8-entry queue", false, "status 0x%02x", status_rd(d));
		return;
	}
	isr_read(d, &isr);
	gen0 = (uint8_t)rd(d->vm, d->common + COMMON_CFGGEN, 1);
	struct desc *t = gp(d, q->desc, 16ULL * q->size);
	uint64_t h = buf_alloc(d, 0, 16);
	*(struct blk_hdr *)gp(d, h, 16) = (struct blk_hdr){ BLK_T_IN, 0, 0 };
	t[0] = (struct desc){ h, 16, DESC_F_NEXT, 1 };
	t[1] = (struct desc){ h, 16, DESC_F_NEXT | DESC_F_WRITE, 2 };
	t[2] = (struct desc){ h, 16, DESC_F_NEXT | DESC_F_WRITE, 1 };
	avail_push(d, 0, 0);
	vq_kick(d, 0);
	bool nr = wait_needs_reset(d);
	uint8_t gen1 = (uint8_t)rd(d->vm, d->common + COMMON_CFGGEN, 1);
	isr = isr_wait(d, 2);
	CHECK("malformed: a loop in the descriptor chain sets NEEDS_RESET, nothing used", nr && used_idx(d, 0) == 0,
	      "status 0x%02x used %u", status_rd(d), used_idx(d, 0));
	CHECK("malformed: NEEDS_RESET is a configuration change (generation moves, ISR bit 1)", gen1 != gen0 && (isr & 2),
	      "generation %u -> %u, isr 0x%x", gen0, gen1, isr);
	/* once broken, further requests are not processed */
	uint64_t b = buf_alloc(d, 0, 512);
	struct seg s3[3] = { { h, 16, false }, { b, 512, true }, { b, 1, true } };
	q->next_desc = 3;
	vq_post(d, 0, s3, 3);
	vq_kick(d, 0);
	sleep_us(100000);
	CHECK("malformed: a device that needs reset takes no more requests", used_idx(d, 0) == 0, "used %u", used_idx(d, 0));
	CHECK("malformed: reset (status 0 until it reads 0) brings the device back: a read works", recover(d, features),
	      "status 0x%02x", status_rd(d));

	/* a buffer outside guest RAM */
	struct seg bad[3] = { { buf_alloc(d, 0, 16), 16, false }, { OUTSIDE_RAM, 512, true }, { buf_alloc(d, 0, 1), 1, true } };
	*(struct blk_hdr *)gp(d, bad[0].gpa, 16) = (struct blk_hdr){ BLK_T_IN, 0, 0 };
	uint16_t before = used_idx(d, 0);
	vq_post(d, 0, bad, 3);
	vq_kick(d, 0);
	nr = wait_needs_reset(d);
	CHECK("malformed: a buffer outside guest RAM sets NEEDS_RESET, nothing used", nr && used_idx(d, 0) == before,
	      "status 0x%02x used %u (was %u)", status_rd(d), used_idx(d, 0), before);
	CHECK("malformed: reset after the bad buffer: usable again", recover(d, features), "status 0x%02x", status_rd(d));

	/* a buffer that starts in RAM and runs past its end */
	struct seg edge[3] = { { buf_alloc(d, 0, 16), 16, false }, { MEM_BYTES - 256, 512, true }, { buf_alloc(d, 0, 1), 1, true } };
	*(struct blk_hdr *)gp(d, edge[0].gpa, 16) = (struct blk_hdr){ BLK_T_IN, 0, 0 };
	before = used_idx(d, 0);
	vq_post(d, 0, edge, 3);
	vq_kick(d, 0);
	nr = wait_needs_reset(d);
	CHECK("malformed: a buffer running past the end of RAM sets NEEDS_RESET", nr && used_idx(d, 0) == before,
	      "status 0x%02x used %u (was %u)", status_rd(d), used_idx(d, 0), before);
	CHECK("malformed: reset after the edge buffer: usable again", recover(d, features), "status 0x%02x", status_rd(d));

	/* the avail index jumps more than the queue size ahead */
	before = used_idx(d, 0);
	uint16_t *a = avail_ring(d, 0);
	__atomic_store_n(&a[1], (uint16_t)(q->avail_idx + q->size + 1), __ATOMIC_RELEASE);
	vq_kick(d, 0);
	nr = wait_needs_reset(d);
	CHECK("malformed: avail idx more than the queue size ahead sets NEEDS_RESET", nr && used_idx(d, 0) == before,
	      "status 0x%02x used %u (was %u)", status_rd(d), used_idx(d, 0), before);
	CHECK("malformed: reset after the avail jump: usable again", recover(d, features), "status 0x%02x", status_rd(d));

	/* a head index outside the table */
	before = used_idx(d, 0);
	a = avail_ring(d, 0);
	a[2 + q->avail_idx % q->size] = 200;
	q->avail_idx++;
	__atomic_store_n(&a[1], q->avail_idx, __ATOMIC_RELEASE);
	vq_kick(d, 0);
	nr = wait_needs_reset(d);
	CHECK("malformed: a head index beyond the queue size sets NEEDS_RESET", nr && used_idx(d, 0) == before, "status 0x%02x",
	      status_rd(d));
	CHECK("malformed: reset after the bad head: usable again", recover(d, features), "status 0x%02x", status_rd(d));

	/* an indirect descriptor without INDIRECT_DESC negotiated */
	before = used_idx(d, 0);
	t = gp(d, q->desc, 16ULL * q->size);
	uint64_t tbl = buf_alloc(d, 0, 32);
	struct desc *it = gp(d, tbl, 32);
	it[0] = (struct desc){ h, 16, DESC_F_NEXT, 1 };
	it[1] = (struct desc){ b, 1, DESC_F_WRITE, 0 };
	uint16_t head = q->next_desc;
	t[head] = (struct desc){ tbl, 32, DESC_F_INDIRECT, 0 };
	q->next_desc = (uint16_t)((head + 1) % q->size);
	avail_push(d, 0, head);
	vq_kick(d, 0);
	nr = wait_needs_reset(d);
	CHECK("malformed: an indirect descriptor when INDIRECT_DESC was not negotiated sets NEEDS_RESET",
	      nr && used_idx(d, 0) == before, "status 0x%02x", status_rd(d));
	CHECK("malformed: reset after the indirect one: usable again", recover(d, features), "status 0x%02x", status_rd(d));

	/* the used ring outside RAM: the device must not run a request it can never complete */
	if (vdev_negotiate(d, features)) {
		vq_setup(d, 0, 8, VIRTIO_MSI_NO_VECTOR);
		wr(d->vm, d->common + COMMON_Q_SELECT, 0, 2);
		wr(d->vm, d->common + COMMON_Q_USEDLO, (uint32_t)OUTSIDE_RAM, 4);
		status_wr(d, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK |
				     VIRTIO_STATUS_DRIVER_OK);
		static uint8_t mark[512];
		memset(mark, 0x5a, sizeof(mark));
		uint64_t wb = buf_alloc(d, 0, 512), hh = buf_alloc(d, 0, 16), st = buf_alloc(d, 0, 1);
		memcpy(gp(d, wb, 512), mark, 512);
		*(struct blk_hdr *)gp(d, hh, 16) = (struct blk_hdr){ BLK_T_OUT, 0, 40 };
		struct seg w3[3] = { { hh, 16, false }, { wb, 512, false }, { st, 1, true } };
		vq_post(d, 0, w3, 3);
		vq_kick(d, 0);
		nr = wait_needs_reset(d);
		CHECK("malformed: a used ring outside RAM sets NEEDS_RESET before the request runs (the disk is not written)",
		      nr && !file_equals(disk_path, 40 * SECTOR, mark, 512), "needs reset %d, written %d", nr,
		      file_equals(disk_path, 40 * SECTOR, mark, 512));
		CHECK("malformed: reset after the bad used ring: usable again", recover(d, features), "status 0x%02x",
		      status_rd(d));
	}
}

/* ====================================================================== */
/* 7. state: save in the middle of use, continue in a second VM            */

static int state_roundtrip(struct vm *src, struct vm *dst, char *err, size_t errlen)
{
	struct state_buf blob = { 0 };
	struct state_writer w = { state_writer_buf, &blob };
	int rc = state_save_all(src, &w, true);
	if (rc || blob.failed) {
		errf(err, errlen, "state_save_all: %d", rc);
		sbuf_free(&blob);
		return -1;
	}
	struct state_pending *p = state_pending_new();
	rc = p ? state_parse_blob(blob.data, blob.len, p, err, errlen) : -ENOMEM;
	if (!rc) {
		/* RAM travels in the live sections: copy it as the migration would */
		memcpy(guest_memory_ptr(&dst->mem, 0, MEM_BYTES), guest_memory_ptr(&src->mem, 0, MEM_BYTES), MEM_BYTES);
		rc = state_pending_apply(dst, p, err, errlen);
	}
	state_pending_free(p);
	sbuf_free(&blob);
	return rc;
}

static void test_state(struct vm *a, struct vdev *d, struct vm_device_specs *specs, struct vm **bp)
{
	char err[512];
	static uint8_t pat1[4096], pat2[4096], pat3[4096];
	struct blk_result r;

	/* BAR 0 where the guest put it, not where glide placed it */
	uint64_t bar0_default = d->bar0, bar0_moved = PCI_MMIO_BASE + 0x18000000ULL;
	cfg_wr(d->vm, d->slot, PCI_BAR0, (uint32_t)bar0_moved, 4);
	d->common += bar0_moved - bar0_default;
	d->isr += bar0_moved - bar0_default;
	d->devcfg += bar0_moved - bar0_default;
	d->notify += bar0_moved - bar0_default;
	d->bar0 = bar0_moved;
	/* MSI-X on: the config vector and the queue's vector masked (a message
	 * will be pending in the PBA at the checkpoint) */
	if (!vdev_negotiate(d, F_VERSION_1 | F_EVENT_IDX | BLK_F_FLUSH)) {
		CHECK("state: start-up", false, "status 0x%02x", status_rd(d));
		return;
	}
	msix_enable(d, true);
	msix_entry(d, 0, 0xfee00000, MSI_VECTOR2, true);
	msix_entry(d, 1, 0xfee00000, MSI_VECTOR, true);
	wr(d->vm, d->common + COMMON_MSIX, 0, 2);
	vq_setup(d, 0, 0, 1);
	status_wr(d, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK);
	/* some requests done: a write of pat1 at sector 200 among them */
	fill_pattern(pat1, sizeof(pat1), 1);
	fill_pattern(pat2, sizeof(pat2), 2);
	fill_pattern(pat3, sizeof(pat3), 3);
	uint64_t wb = buf_alloc(d, 0, 4096);
	memcpy(gp(d, wb, 4096), pat1, 4096);
	r = blk_req(d, BLK_T_OUT, 200, wb, 4096, false);
	struct blk_result r2 = blk_req(d, BLK_T_FLUSH, 0, 0, 0, false);
	CHECK("state: requests before the checkpoint", r.done && r.status == BLK_S_OK && r2.done && r2.status == BLK_S_OK,
	      "statuses %u %u", r.status, r2.status);
	uint16_t used_before = used_idx(d, 0);
	*(uint16_t *)gp(d, d->q[0].avail + 4 + 2ULL * d->q[0].size, 2) = used_before; /* used_event: interrupt on the next */
	uint64_t pba_a = pba_wait(d, 2);
	lapic_irr(a, MSI_VECTOR, true); /* the LAPIC travels too: nothing of ours in it */

	/* the VM stops; a request the guest posted and notified just before is not handled yet */
	if (vm_pause(a)) {
		CHECK("state: pause", false, "vm_pause failed");
		return;
	}
	uint64_t wb2 = buf_alloc(d, 0, 4096), h2 = buf_alloc(d, 0, 16), st2 = buf_alloc(d, 0, 1);
	memcpy(gp(d, wb2, 4096), pat2, 4096);
	*(struct blk_hdr *)gp(d, h2, 16) = (struct blk_hdr){ BLK_T_OUT, 0, 208 };
	*(uint8_t *)gp(d, st2, 1) = 0xee;
	struct seg s2[3] = { { h2, 16, false }, { wb2, 4096, false }, { st2, 1, true } };
	uint16_t head2 = vq_post(d, 0, s2, 3);
	vq_kick(d, 0);
	sleep_us(50000);
	bool held = used_idx(d, 0) == used_before;
	CHECK("state: a paused VM's device takes no request", held, "used %u (was %u)", used_idx(d, 0), used_before);

	struct vm *b = vm_new();
	*bp = b;
	if (vm_make(b, "virtio-b", specs, true, err, sizeof(err))) {
		CHECK("state: second VM (arriving) with the same disks", false, "%s", err);
		return;
	}
	/* the first VM's writer lock: the second may not take it while the first has it */
	int acq_early = virtio_blk_acquire_locks(b, err, sizeof(err));
	int rc = state_roundtrip(a, b, err, sizeof(err));
	CHECK("state: the whole device state saved from the paused VM loads into the second", rc == 0, "%s", err);
	if (rc)
		return;
	/* the sector written before the checkpoint changes on disk behind the VM's back:
	 * replaying that request would bring pat1 back */
	int fd = open(disk_path, O_RDWR | O_CLOEXEC);
	bool wrote3 = fd >= 0 && pwrite(fd, pat3, 4096, 200 * SECTOR) == 4096;
	if (fd >= 0)
		close(fd);
	virtio_blk_release_locks(a, 0);
	int acq = virtio_blk_acquire_locks(b, err, sizeof(err));
	CHECK("state: disk lock: the destination cannot take it before the source lets go, then can",
	      acq_early != 0 && acq == 0, "before release %d, after %d", acq_early, acq);

	struct vdev db = *d;
	db.vm = b;
	uint64_t pba_b = rd(b, db.msix_pba, 8);
	CHECK("state: the MSI-X table and the pending bit of the masked vector carry over", (pba_a & 2) && (pba_b & 2) &&
	      (uint32_t)rd(b, db.msix_table + 16 + 8, 4) == MSI_VECTOR, "PBA source 0x%llx destination 0x%llx",
	      (unsigned long long)pba_a, (unsigned long long)pba_b);
	uint64_t v;
	CHECK("state: the destination decodes BAR 0 where the guest moved it, with its notify ioeventfd there",
	      mmio_rd(b, db.common + COMMON_NUMQ, 2, &v) && v == 1 && !mmio_rd(b, bar0_default + COMMON_NUMQ, 2, &v) &&
		      ioeventfd_at(b, db.bar0 + 0x3000) == 1 && ioeventfd_at(b, bar0_default + 0x3000) == 0,
	      "ioeventfd at the moved BAR %d, at the default %d", ioeventfd_at(b, db.bar0 + 0x3000),
	      ioeventfd_at(b, bar0_default + 0x3000));
	char e2[256];
	if (vm_start_vcpus(b, e2, sizeof(e2))) {
		CHECK("state: second VM runs", false, "%s", e2);
		return;
	}
	bool pend_done = vq_wait(&db, 0, (uint16_t)(used_before + 1), WAIT_MS);
	uint32_t id = 0, len = 0;
	if (pend_done)
		vq_take(&db, 0, &id, &len);
	CHECK("state: the request pending at the checkpoint completes once, in the second VM",
	      pend_done && id == head2 && *(uint8_t *)gp(&db, st2, 1) == BLK_S_OK && file_equals(disk_path, 208 * SECTOR, pat2, 4096),
	      "done %d id %u (want %u) status %u on disk %d", pend_done, id, head2, *(uint8_t *)gp(&db, st2, 1),
	      file_equals(disk_path, 208 * SECTOR, pat2, 4096));
	wr(b, db.msix_table + 16 + 12, 0, 4); /* unmask the queue's vector in the destination */
	int irr = lapic_take(b, MSI_VECTOR, true);
	CHECK("state: unmasking in the destination delivers the message pending since the source", irr == 1 &&
	      !(rd(b, db.msix_pba, 8) & 2), "irr %d pba 0x%llx", irr, (unsigned long long)rd(b, db.msix_pba, 8));
	uint64_t rb = buf_alloc(&db, 0, 4096);
	*(uint16_t *)gp(&db, db.q[0].avail + 4 + 2ULL * db.q[0].size, 2) = used_idx(&db, 0);
	r = blk_req(&db, BLK_T_IN, 200, rb, 4096, true);
	irr = lapic_take(b, MSI_VECTOR, true);
	CHECK("state: the next request completes with the next used index, nothing replayed or lost",
	      wrote3 && r.done && r.status == BLK_S_OK && used_idx(&db, 0) == (uint16_t)(used_before + 2) &&
		      !memcmp(gp(&db, rb, 4096), pat3, 4096) && file_equals(disk_path, 200 * SECTOR, pat3, 4096),
	      "done %d status %u used %u (want %u) data is the latest %d", r.done, r.status, used_idx(&db, 0),
	      (uint16_t)(used_before + 2), !memcmp(gp(&db, rb, 4096), pat3, 4096));
	CHECK("state: the next completion is delivered by MSI-X in the destination (EVENT_IDX asked for it)", irr == 1,
	      "irr %d", irr);

	/* a reset the driver started just before the checkpoint finishes on the destination */
	if (!vm_pause(b)) {
		status_wr(&db, 0); /* vCPU exit right before the pause: the event thread has not reset yet */
		struct vm *c = vm_new();
		if (vm_make(c, "virtio-c", specs, true, err, sizeof(err)) == 0 && state_roundtrip(b, c, err, sizeof(err)) == 0 &&
		    vm_start_vcpus(c, e2, sizeof(e2)) == 0) {
			struct vdev dc = db;
			dc.vm = c;
			bool reset = wait_status_zero(&dc); /* the driver only polls now, as Linux's vp_reset */
			CHECK("state: a reset the driver asked for before the checkpoint completes after it", reset,
			      "status still 0x%02x", status_rd(&dc));
			if (reset) {
				bool again = vdev_start(&dc, F_VERSION_1, 0);
				uint64_t rb2 = buf_alloc(&dc, 0, 512);
				r = blk_req(&dc, BLK_T_IN, 200, rb2, 512, true);
				CHECK("state: ... and the device works after it", again && r.done && r.status == BLK_S_OK &&
				      !memcmp(gp(&dc, rb2, 512), pat3, 512), "start %d status %u", again, r.status);
			}
			vm_end(c, true);
		} else {
			CHECK("state: third VM for the reset case", false, "%s", err);
			vm_end(c, false);
		}
		vm_resume(b);
	}
}

/* ====================================================================== */
/* 8. virtio-net on a tap, in a network namespace of its own               */

#define TAP_NAME "gvtap0"
#define TAP_SLOW "gvtap1"
#define TAP_OPEN "gvtap2"       /* a port that accepts forged transmits, MAC changes and promiscuous mode */
#define TAP_MQ "gvtap3"         /* two queue pairs */
#define ETHERTYPE_TEST 0x88b5 /* IEEE 802 local experimental */
static const uint8_t nic_mac[6] = { 0x52, 0x54, 0x00, 0x12, 0x34, 0x56 };
static const uint8_t nic_mac2[6] = { 0x52, 0x54, 0x00, 0x12, 0x34, 0x57 };
static const uint8_t nic_mac3[6] = { 0x52, 0x54, 0x00, 0x12, 0x34, 0x58 };
static const uint8_t nic_mac4[6] = { 0x52, 0x54, 0x00, 0x12, 0x34, 0x59 };
static const uint8_t peer_mac[6] = { 0x02, 0x00, 0x00, 0xaa, 0xbb, 0xcc };
static const uint8_t other_mac[6] = { 0x02, 0x00, 0x00, 0x99, 0x88, 0x77 };  /* another VM's */
static const uint8_t guest_mac[6] = { 0x02, 0x00, 0x00, 0x11, 0x22, 0x33 };  /* one a guest sets */
static const uint8_t bcast_mac[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };

static int write_file(const char *path, const char *s)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	int rc = write(fd, s, strlen(s)) == (ssize_t)strlen(s) ? 0 : -1;
	close(fd);
	return rc;
}

static int packet_socket(const char *ifname)
{
	int s = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ETH_P_ALL));
	if (s < 0)
		return -1;
	struct sockaddr_ll sll = { .sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_ALL),
				   .sll_ifindex = (int)if_nametoindex(ifname) };
	if (!sll.sll_ifindex || bind(s, (struct sockaddr *)&sll, sizeof(sll)) < 0) {
		close(s);
		return -1;
	}
	return s;
}

static size_t build_frame(uint8_t *f, const uint8_t dst[6], const uint8_t src[6], uint32_t tag, size_t len)
{
	memcpy(f, dst, 6);
	memcpy(f + 6, src, 6);
	f[12] = ETHERTYPE_TEST >> 8;
	f[13] = ETHERTYPE_TEST & 0xff;
	memcpy(f + 14, &tag, 4);
	for (size_t i = 18; i < len; i++)
		f[i] = (uint8_t)(tag + i);
	return len;
}

/* Counts (bounded) frames of ours with tags tag_base .. tag_base + n - 1 on the packet socket, coming
 * from the tap's side; returns as soon as n have come. */
static int sock_count_tags(int s, uint32_t tag_base, unsigned n, unsigned ms)
{
	uint8_t buf[2048];
	int got = 0;
	for (uint64_t end = ms_now() + ms; ms_now() < end && got < (int)n;) {
		struct pollfd p = { s, POLLIN, 0 };
		if (poll(&p, 1, 50) <= 0)
			continue;
		struct sockaddr_ll from;
		socklen_t fl = sizeof(from);
		ssize_t len = recvfrom(s, buf, sizeof(buf), MSG_DONTWAIT, (struct sockaddr *)&from, &fl);
		if (len < 18 || from.sll_pkttype == PACKET_OUTGOING)
			continue;
		uint32_t t;
		memcpy(&t, buf + 14, 4);
		if (buf[12] == (ETHERTYPE_TEST >> 8) && buf[13] == (ETHERTYPE_TEST & 0xff) && t >= tag_base && t < tag_base + n)
			got++;
	}
	return got;
}

/* Waits (bounded) for a frame of ours with `tag` on the packet socket, coming from the tap's side. */
static bool sock_wait_tag(int s, uint32_t tag, unsigned ms)
{
	return sock_count_tags(s, tag, 1, ms) == 1;
}

static bool net_tx(struct vdev *d, const uint8_t src[6], uint32_t tag, size_t len)
{
	uint64_t b = buf_alloc(d, 1, (uint32_t)(NET_HDR_LEN + len));
	uint8_t *p = gp(d, b, NET_HDR_LEN + len);
	memset(p, 0, NET_HDR_LEN);
	build_frame(p + NET_HDR_LEN, peer_mac, src, tag, len);
	struct seg s = { b, (uint32_t)(NET_HDR_LEN + len), false };
	vq_post(d, 1, &s, 1);
	vq_kick(d, 1);
	bool ok = vq_wait(d, 1, d->q[1].avail_idx, WAIT_MS);
	d->q[1].last_used = d->q[1].avail_idx;
	return ok;
}

/* rx buffers: n of 2048 bytes (one descriptor each), at fixed places by index */
static void net_rx_fill(struct vdev *d, int n)
{
	for (int i = 0; i < n; i++) {
		uint64_t b = buf_alloc(d, 0, 2048);
		memset(gp(d, b, 2048), 0xee, 2048);
		struct seg s = { b, 2048, true };
		vq_post(d, 0, &s, 1);
	}
	vq_kick(d, 0);
}

/* The next used entry of receive queue 0 (waiting until end, ms_now()
 * time) that is at least min bytes long: its buffer (size bytes of it
 * mapped) and used length; NULL when none came. */
static uint8_t *rx_next(struct vdev *d, uint64_t end, uint32_t min, size_t size, uint32_t *used_len)
{
	struct vq *q = &d->q[0];
	struct desc *t = gp(d, q->desc, 16ULL * q->size);
	while (ms_now() < end) {
		if (used_idx(d, 0) == q->last_used) {
			sleep_us(200);
			continue;
		}
		uint32_t id, len;
		vq_take(d, 0, &id, &len);
		if (id < q->size && len >= min) {
			*used_len = len;
			return gp(d, t[id].addr, size);
		}
	}
	return NULL;
}

/* Takes used rx entries until one holds a frame of ours with `tag`. */
static bool net_rx_find(struct vdev *d, uint32_t tag, unsigned ms, uint32_t *used_len, uint16_t *num_buffers,
			size_t *frame_len)
{
	uint64_t end = ms_now() + ms;
	uint8_t *p;
	uint32_t len;
	while ((p = rx_next(d, end, NET_HDR_LEN + 18, 2048, &len))) {
		uint32_t ft;
		memcpy(&ft, p + NET_HDR_LEN + 14, 4);
		if (p[NET_HDR_LEN + 12] != (ETHERTYPE_TEST >> 8) || ft != tag)
			continue;
		*used_len = len;
		memcpy(num_buffers, p + 10, 2);
		*frame_len = len - NET_HDR_LEN;
		return true;
	}
	return false;
}

/* A frame from the peer to `dst` into the tap (toward the guest). */
static bool sock_send_to(int s, const char *ifname, const uint8_t dst[6], uint32_t tag, size_t len)
{
	uint8_t f[1600];
	build_frame(f, dst, peer_mac, tag, len);
	struct sockaddr_ll to = { .sll_family = AF_PACKET, .sll_ifindex = (int)if_nametoindex(ifname), .sll_halen = 6 };
	memcpy(to.sll_addr, dst, 6);
	return sendto(s, f, len, 0, (struct sockaddr *)&to, sizeof(to)) == (ssize_t)len;
}

static bool sock_send(int s, const char *ifname, uint32_t tag, size_t len)
{
	return sock_send_to(s, ifname, nic_mac, tag, len);
}

/* One command on the control queue (class, command, data): the device's
 * ack (0 OK, 1 ERR), or -1 when it did not answer. */
static int net_ctrl_q(struct vdev *d, int cq, uint8_t cls, uint8_t cmd, const void *data, size_t len)
{
	uint64_t hdr = buf_alloc(d, cq, 2), body = len ? buf_alloc(d, cq, (uint32_t)len) : 0, ack = buf_alloc(d, cq, 1);
	uint8_t *h = gp(d, hdr, 2);
	h[0] = cls, h[1] = cmd;
	if (len)
		memcpy(gp(d, body, len), data, len);
	*(uint8_t *)gp(d, ack, 1) = 0xee;
	struct seg sg[3];
	int n = 0;
	sg[n++] = (struct seg){ hdr, 2, false };
	if (len)
		sg[n++] = (struct seg){ body, (uint32_t)len, false };
	sg[n++] = (struct seg){ ack, 1, true };
	vq_post(d, cq, sg, n);
	vq_kick(d, cq);
	bool done = vq_wait(d, cq, d->q[cq].avail_idx, WAIT_MS);
	d->q[cq].last_used = d->q[cq].avail_idx;
	return done ? *(uint8_t *)gp(d, ack, 1) : -1;
}

static int net_ctrl(struct vdev *d, uint8_t cls, uint8_t cmd, const void *data, size_t len)
{
	return net_ctrl_q(d, 2, cls, cmd, data, len);
}

static void cfg_mac(struct vdev *d, uint8_t mac[6])
{
	for (int i = 0; i < 6; i++)
		mac[i] = (uint8_t)rd(d->vm, d->devcfg + (uint64_t)i, 1);
}

/* Is every byte of the receive buffer area still the 0xee the test wrote? */
static bool rx_area_untouched(struct vdev *d)
{
	const uint8_t *p = gp(d, d->q[0].buf, BUF_STRIDE);
	for (uint64_t i = 0; i < BUF_STRIDE; i++)
		if (p[i] != 0xee)
			return false;
	return true;
}

/* Does a frame to `dst` reach the guest (within ms)? */
static bool rx_gets(struct vdev *d, int s, const char *ifname, const uint8_t dst[6], uint32_t tag, unsigned ms)
{
	uint32_t ulen;
	uint16_t nbuf;
	size_t flen;
	return sock_send_to(s, ifname, dst, tag, 100) && net_rx_find(d, tag, ms, &ulen, &nbuf, &flen);
}

/* A TCP/IPv4 frame of `payload` bytes from the peer to dst, as GSO work
 * for the receiver (segments of mss bytes, checksum left partial) after a
 * 10-byte virtio_net_hdr; returns the bytes written to f. */
static size_t gso_frame(uint8_t *f, const uint8_t dst[6], const uint8_t src[6], size_t payload, uint16_t mss, uint32_t seq)
{
	struct virtio_net_hdr h = { .flags = VIRTIO_NET_HDR_F_NEEDS_CSUM, .gso_type = VIRTIO_NET_HDR_GSO_TCPV4,
				    .hdr_len = 54, .gso_size = mss, .csum_start = 34, .csum_offset = 16 };
	memcpy(f, &h, sizeof(h));
	uint8_t *e = f + sizeof(h), *ip = e + 14, *tcp = ip + 20;
	memcpy(e, dst, 6);
	memcpy(e + 6, src, 6);
	e[12] = 0x08, e[13] = 0x00;
	memset(ip, 0, 40);
	uint16_t tot = (uint16_t)(40 + payload);
	ip[0] = 0x45, ip[2] = (uint8_t)(tot >> 8), ip[3] = (uint8_t)tot, ip[6] = 0x40, ip[8] = 64, ip[9] = 6;
	ip[12] = 10, ip[15] = 1, ip[16] = 10, ip[19] = 2; /* 10.0.0.1 -> 10.0.0.2 */
	uint32_t sum = 0;
	for (int i = 0; i < 20; i += 2)
		sum += (uint32_t)ip[i] << 8 | ip[i + 1];
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	ip[10] = (uint8_t)(~sum >> 8), ip[11] = (uint8_t)~sum;
	tcp[0] = 0x30, tcp[1] = 0x39, tcp[2] = 0x00, tcp[3] = 0x50; /* 12345 -> 80 */
	tcp[4] = (uint8_t)(seq >> 24), tcp[5] = (uint8_t)(seq >> 16), tcp[6] = (uint8_t)(seq >> 8), tcp[7] = (uint8_t)seq;
	tcp[12] = 5 << 4, tcp[13] = 0x18, tcp[14] = 0xff, tcp[15] = 0xff; /* PSH ACK */
	for (size_t i = 0; i < payload; i++)
		tcp[20 + i] = (uint8_t)(i * 7 + seq);
	return sizeof(h) + 54 + payload;
}

/* What one receive buffer of 64 KiB got: its used length and virtio header, or false. */
static bool net_rx_big(struct vdev *d, unsigned ms, uint32_t *used_len, struct virtio_net_hdr *h)
{
	uint64_t end = ms_now() + ms;
	uint8_t *p;
	while ((p = rx_next(d, end, NET_HDR_LEN + 54, 65536, used_len))) {
		if (p[NET_HDR_LEN + 12] != 0x08 || p[NET_HDR_LEN + 23] != 6) /* not our TCP */
			continue;
		memcpy(h, p, sizeof(*h));
		return true;
	}
	return false;
}

/* Offloads (NIC 2): a driver that takes GSO frames gets the peer's 3000-byte
 * TCP send as one frame with its GSO header; one that does not gets it
 * segmented by the host's stack; a GSO frame the driver sends leaves the
 * tap whole with its header. */
static void test_net_offloads(struct vdev *d, const char *ifname)
{
	int s = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ETH_P_ALL)), one = 1;
	struct sockaddr_ll sll = { .sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_ALL),
				   .sll_ifindex = (int)if_nametoindex(ifname) };
	if (s < 0 || setsockopt(s, SOL_PACKET, PACKET_VNET_HDR, &one, sizeof(one)) ||
	    bind(s, (struct sockaddr *)&sll, sizeof(sll))) {
		CHECK("net offloads: a packet socket with vnet headers on the tap", false, "%s", strerror(errno));
		if (s >= 0)
			close(s);
		return;
	}
	static uint8_t f[65536];
	struct sockaddr_ll to = { .sll_family = AF_PACKET, .sll_ifindex = sll.sll_ifindex, .sll_halen = 6,
				  .sll_protocol = htons(0x0800) };
	memcpy(to.sll_addr, nic_mac3, 6);
	const size_t payload = 3000;
	const uint16_t mss = 1000;
	uint32_t ulen = 0;
	struct virtio_net_hdr h;

	/* without GUEST_TSO4: the host's stack segments before the tap */
	bool up = vdev_start(d, F_VERSION_1 | NET_F_MAC, 0);
	for (int i = 0; up && i < 4; i++) {
		struct seg sg = { buf_alloc(d, 0, 65536), 65536, true };
		vq_post(d, 0, &sg, 1);
	}
	vq_kick(d, 0);
	size_t len = gso_frame(f, nic_mac3, peer_mac, payload, mss, 1);
	bool sent = up && sendto(s, f, len, 0, (struct sockaddr *)&to, sizeof(to)) == (ssize_t)len;
	int segs = 0;
	uint32_t largest = 0;
	while (sent && net_rx_big(d, segs ? 300 : WAIT_MS, &ulen, &h)) {
		segs++;
		largest = MAX(largest, ulen);
	}
	CHECK("net offloads: a driver without GUEST_TSO4 gets a peer's 3000-byte TCP send in 3 segments of <= 1000 bytes",
	      sent && segs == 3 && largest <= NET_HDR_LEN + 54 + mss, "started %d sent %d: %d frames, largest %u", up, sent, segs,
	      largest);

	/* with CSUM, GUEST_CSUM, GUEST_TSO4, HOST_TSO4: one frame with the GSO header */
	up = vdev_start(d, F_VERSION_1 | NET_F_MAC | NET_F_CSUM | NET_F_GUEST_CSUM | NET_F_GUEST_TSO4 | NET_F_HOST_TSO4, 0);
	for (int i = 0; up && i < 4; i++) {
		struct seg sg = { buf_alloc(d, 0, 65536), 65536, true };
		vq_post(d, 0, &sg, 1);
	}
	vq_kick(d, 0);
	len = gso_frame(f, nic_mac3, peer_mac, payload, mss, 2);
	sent = up && sendto(s, f, len, 0, (struct sockaddr *)&to, sizeof(to)) == (ssize_t)len;
	bool got = sent && net_rx_big(d, WAIT_MS, &ulen, &h);
	CHECK("net offloads: the device offers CSUM/GUEST_CSUM/GUEST_TSO4/HOST_TSO4, and a driver that took them gets the "
	      "3000-byte send as one frame: gso TCPV4, gso_size 1000",
	      got && ulen == NET_HDR_LEN + 54 + payload && h.gso_type == VIRTIO_NET_HDR_GSO_TCPV4 && h.gso_size == mss,
	      "started %d sent %d got %d: used len %u gso_type %u gso_size %u", up, sent, got, ulen, h.gso_type, h.gso_size);

	/* a GSO frame from the driver: to the tap as it is (the host's stack does the segmentation) */
	while (recv(s, f, sizeof(f), MSG_DONTWAIT) > 0) {
	}
	uint64_t b = buf_alloc(d, 1, (uint32_t)(NET_HDR_LEN + 54 + payload));
	uint8_t *p = gp(d, b, NET_HDR_LEN + 54 + payload);
	gso_frame(p + 2, peer_mac, nic_mac3, payload, mss, 3); /* the 12-byte header: 10 bytes, num_buffers */
	memmove(p, p + 2, sizeof(struct virtio_net_hdr));
	p[10] = p[11] = 0;
	struct seg sg = { b, (uint32_t)(NET_HDR_LEN + 54 + payload), false };
	vq_post(d, 1, &sg, 1);
	vq_kick(d, 1);
	bool used = vq_wait(d, 1, d->q[1].avail_idx, WAIT_MS);
	d->q[1].last_used = d->q[1].avail_idx;
	bool whole = false;
	struct virtio_net_hdr th = { 0 };
	for (uint64_t end = ms_now() + WAIT_MS; used && !whole && ms_now() < end;) {
		struct pollfd pf = { s, POLLIN, 0 };
		if (poll(&pf, 1, 50) <= 0)
			continue;
		struct sockaddr_ll from;
		socklen_t fl = sizeof(from);
		ssize_t n = recvfrom(s, f, sizeof(f), MSG_DONTWAIT, (struct sockaddr *)&from, &fl);
		if (n < (ssize_t)sizeof(th) + 54 || from.sll_pkttype == PACKET_OUTGOING || memcmp(f + sizeof(th) + 6, nic_mac3, 6))
			continue;
		memcpy(&th, f, sizeof(th));
		whole = n == (ssize_t)(sizeof(th) + 54 + payload) && th.gso_type == VIRTIO_NET_HDR_GSO_TCPV4 && th.gso_size == mss;
	}
	CHECK("net offloads: a 3000-byte GSO frame the driver sends leaves the tap whole with its GSO header (HOST_TSO4)",
	      used && whole, "used %d whole %d gso_type %u gso_size %u", used, whole, th.gso_type, th.gso_size);
	close(s);
}

/* An IPv4/UDP frame from the peer (source port sport) to dst, `tag` in its payload. */
static size_t udp_frame(uint8_t *f, const uint8_t dst[6], uint16_t sport, uint32_t tag)
{
	memset(f, 0, 74);
	memcpy(f, dst, 6);
	memcpy(f + 6, peer_mac, 6);
	f[12] = 0x08;
	uint8_t *ip = f + 14, *udp = ip + 20;
	ip[0] = 0x45, ip[3] = 60, ip[8] = 64, ip[9] = 17;
	ip[12] = 10, ip[15] = 1, ip[16] = 10, ip[19] = 2;
	udp[0] = (uint8_t)(sport >> 8), udp[1] = (uint8_t)sport, udp[3] = 9, udp[5] = 40;
	memcpy(udp + 8, &tag, 4);
	return 74;
}

/* Used receive entries of queue qi now (taken), frames with tag >= base counted in *ours. */
static int rx_take_all(struct vdev *d, int qi, uint32_t base, int *ours)
{
	struct vq *q = &d->q[qi];
	struct desc *t = gp(d, q->desc, 16ULL * q->size);
	int n = 0;
	while (used_idx(d, qi) != q->last_used) {
		uint32_t id, len;
		vq_take(d, qi, &id, &len);
		n++;
		uint32_t tag = 0;
		if (id < q->size && len >= NET_HDR_LEN + 46)
			memcpy(&tag, gp(d, t[id].addr, 2048) + NET_HDR_LEN + 42, 4);
		*ours += tag >= base && tag < base + 1000;
	}
	return n;
}

/* Multiqueue (NIC 3, queues=2 on a multi-queue tap): max_virtqueue_pairs 2
 * and MQ offered; one pair until the driver sets two (all of the peer's
 * flows on queue 0), then the tap spreads the flows over both receive
 * queues; 3 pairs is refused; the second pair's transmit queue sends. */
static void test_net_mq(struct vdev *d, int s)
{
	static uint8_t f[128];
	struct sockaddr_ll to = { .sll_family = AF_PACKET, .sll_ifindex = (int)if_nametoindex(TAP_MQ), .sll_halen = 6,
				  .sll_protocol = htons(0x0800) };
	memcpy(to.sll_addr, nic_mac4, 6);
	uint16_t pairs_cfg = (uint16_t)rd(d->vm, d->devcfg + 8, 2);
	/* a driver without MQ finds the control queue at 2, whatever the pairs */
	bool up1 = vdev_start(d, F_VERSION_1 | NET_F_MAC | NET_F_CTRL_VQ | NET_F_CTRL_RX, 0);
	int ack1 = up1 ? net_ctrl_q(d, 2, 0, 0, &(uint8_t){ 0 }, 1) : -1; /* RX_PROMISC off */
	CHECK("net multiqueue: a driver that did not take MQ has its control queue at index 2", up1 && ack1 == 0,
	      "started %d ack %d", up1, ack1);
	bool up = vdev_start(d, F_VERSION_1 | NET_F_MAC | NET_F_CTRL_VQ | NET_F_MQ, 0);
	CHECK("net multiqueue: max_virtqueue_pairs 2, MQ offered and taken", up && pairs_cfg == 2, "pairs %u started %d",
	      pairs_cfg, up);
	if (!up)
		return;
	for (int q = 0; q <= 2; q += 2) {
		for (int i = 0; i < 64; i++) {
			struct seg sg = { buf_alloc(d, q, 2048), 2048, true };
			vq_post(d, q, &sg, 1);
		}
		vq_kick(d, q);
	}
	int ours0 = 0, ours1 = 0, n0 = 0, n1 = 0;
	for (int i = 0; i < 32; i++) {
		size_t len = udp_frame(f, nic_mac4, (uint16_t)(1000 + 37 * i), 0x5000u + (uint32_t)i);
		sendto(s, f, len, 0, (struct sockaddr *)&to, sizeof(to));
	}
	for (uint64_t end = ms_now() + WAIT_MS; ms_now() < end && ours0 + ours1 < 32;) {
		n0 += rx_take_all(d, 0, 0x5000, &ours0);
		n1 += rx_take_all(d, 2, 0x5000, &ours1);
		sleep_us(1000);
	}
	CHECK("net multiqueue: before the driver sets two pairs, 32 flows all arrive on receive queue 0", ours0 == 32 && n1 == 0,
	      "queue 0: %d of ours, queue 2: %d frames", ours0, n1);

	int ack = net_ctrl_q(d, 4, 4, 0, &(uint16_t){ 2 }, 2); /* VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET 2 */
	int bad = net_ctrl_q(d, 4, 4, 0, &(uint16_t){ 3 }, 2);
	CHECK("net multiqueue: VQ_PAIRS_SET 2 is OK, 3 (more than max_virtqueue_pairs) is ERR", ack == 0 && bad == 1,
	      "acks %d %d", ack, bad);
	ours0 = ours1 = n0 = n1 = 0;
	for (int i = 0; i < 32; i++) {
		size_t len = udp_frame(f, nic_mac4, (uint16_t)(2000 + 37 * i), 0x6000u + (uint32_t)i);
		sendto(s, f, len, 0, (struct sockaddr *)&to, sizeof(to));
	}
	for (uint64_t end = ms_now() + WAIT_MS; ms_now() < end && ours0 + ours1 < 32;) {
		n0 += rx_take_all(d, 0, 0x6000, &ours0);
		n1 += rx_take_all(d, 2, 0x6000, &ours1);
		sleep_us(1000);
	}
	CHECK("net multiqueue: with two pairs the tap spreads 32 flows over both receive queues, none lost",
	      ours0 + ours1 == 32 && ours0 > 0 && ours1 > 0, "queue 0: %d, queue 2: %d", ours0, ours1);

	uint64_t b = buf_alloc(d, 3, NET_HDR_LEN + 100);
	uint8_t *p = gp(d, b, NET_HDR_LEN + 100);
	memset(p, 0, NET_HDR_LEN);
	build_frame(p + NET_HDR_LEN, peer_mac, nic_mac4, 0x7001, 100);
	struct seg sg = { b, NET_HDR_LEN + 100, false };
	vq_post(d, 3, &sg, 1);
	vq_kick(d, 3);
	bool used = vq_wait(d, 3, d->q[3].avail_idx, WAIT_MS);
	d->q[3].last_used = d->q[3].avail_idx;
	CHECK("net multiqueue: a frame on the second pair's transmit queue leaves the tap", used && sock_wait_tag(s, 0x7001, WAIT_MS),
	      "used %d", used);

	/* the pairs in use are in the state: saved, forgotten by a reset, loaded back */
	const struct state_section_ops *ops = state_find("virtio-net");
	struct state_buf sb = { 0 };
	int rc = -1, lrc = -1;
	char err[256] = "";
	if (ops && vm_pause(d->vm) == 0) {
		rc = ops->save(d->vm, 3, &sb);
		vm_resume(d->vm);
	}
	bool reset = vdev_reset(d);
	if (!rc && vm_pause(d->vm) == 0) {
		lrc = ops->load(d->vm, 3, ops->version, sb.data, sb.len, err, sizeof(err));
		vm_resume(d->vm);
	}
	sbuf_free(&sb);
	for (int q = 0; q <= 2; q += 2) {
		for (int i = 0; i < 40; i++) {
			struct seg bs = { buf_alloc(d, q, 2048), 2048, true };
			vq_post(d, q, &bs, 1);
		}
		vq_kick(d, q);
	}
	ours0 = ours1 = 0;
	for (int i = 0; i < 32; i++) {
		size_t len = udp_frame(f, nic_mac4, (uint16_t)(3000 + 37 * i), 0x8000u + (uint32_t)i);
		sendto(s, f, len, 0, (struct sockaddr *)&to, sizeof(to));
	}
	for (uint64_t end = ms_now() + WAIT_MS; ms_now() < end && ours0 + ours1 < 32;) {
		rx_take_all(d, 0, 0x8000, &ours0);
		rx_take_all(d, 2, 0x8000, &ours1);
		sleep_us(1000);
	}
	CHECK("net multiqueue: the pairs in use travel in the state (version 3): after a reset and a load, flows spread over "
	      "both queues again", rc == 0 && reset && lrc == 0 && ours0 + ours1 == 32 && ours0 > 0 && ours1 > 0,
	      "save %d reset %d load %d (%s): queue 0: %d, queue 2: %d", rc, reset, lrc, err, ours0, ours1);
}

/* Port security (vSphere's port-group policies): NIC 0 rejects all three,
 * NIC 2 accepts all three. */
static void test_net_security(struct vm *vm, struct vdev *d, int s, struct vdev *d3, int s3)
{
	const uint64_t feat = F_VERSION_1 | NET_F_MAC | NET_F_STATUS | NET_F_CTRL_VQ | NET_F_CTRL_RX | NET_F_CTRL_MAC_ADDR;
	struct net_stats st0, st1;
	uint8_t mac[6];
	char ifn[16];

	CHECK("net security: the device offers CTRL_RX and CTRL_MAC_ADDR", (dev_features(d) & (NET_F_CTRL_RX | NET_F_CTRL_MAC_ADDR)) ==
	      (NET_F_CTRL_RX | NET_F_CTRL_MAC_ADDR), "features 0x%llx", (unsigned long long)dev_features(d));
	if (!vdev_start(d, feat, 0) || !vdev_start(d3, feat, 0)) {
		CHECK("net security: drivers restart with CTRL_RX and CTRL_MAC_ADDR", false, "status 0x%02x 0x%02x",
		      status_rd(d), status_rd(d3));
		return;
	}
	net_rx_fill(d, 16);
	net_rx_fill(d3, 16);
	/* reject: a frame for another unicast MAC never touches the guest's buffers */
	memset(gp(d, d->q[0].buf, BUF_STRIDE), 0xee, BUF_STRIDE);
	uint16_t u0 = used_idx(d, 0);
	virtio_net_stats(vm, 0, &st0, mac, ifn, sizeof(ifn));
	bool sent = sock_send_to(s, TAP_NAME, other_mac, 0x5001, 100);
	sleep_us(200000);
	virtio_net_stats(vm, 0, &st1, mac, ifn, sizeof(ifn));
	CHECK("net security: promiscuous rejected: a frame for another MAC is dropped, counted, and no byte of it reaches a guest buffer",
	      sent && used_idx(d, 0) == u0 && rx_area_untouched(d) && st1.rx_filtered == st0.rx_filtered + 1,
	      "sent %d used %u -> %u untouched %d filtered %llu -> %llu", sent, u0, used_idx(d, 0), rx_area_untouched(d),
	      (unsigned long long)st0.rx_filtered, (unsigned long long)st1.rx_filtered);
	CHECK("net security: frames for the NIC's MAC and broadcast still arrive",
	      rx_gets(d, s, TAP_NAME, nic_mac, 0x5002, WAIT_MS) && rx_gets(d, s, TAP_NAME, bcast_mac, 0x5003, WAIT_MS), "%s", "not both");
	int ack = net_ctrl(d, 0, 0, &(uint8_t){ 1 }, 1); /* VIRTIO_NET_CTRL_RX_PROMISC on */
	CHECK("net security: the guest asks for promiscuous mode (OK), but the port rejects it: another MAC's frame is still dropped",
	      ack == 0 && !rx_gets(d, s, TAP_NAME, other_mac, 0x5004, 300), "ack %d", ack);

	/* MAC changes rejected: the guest's own MAC takes effect for its sending; nothing comes in meanwhile */
	ack = net_ctrl(d, 1, 1, guest_mac, 6); /* VIRTIO_NET_CTRL_MAC_ADDR_SET */
	virtio_net_stats(vm, 0, &st1, mac, ifn, sizeof(ifn));
	cfg_mac(d, mac);
	CHECK("net security: MAC_ADDR_SET is acknowledged, the config space shows the guest's MAC, counted",
	      ack == 0 && !memcmp(mac, guest_mac, 6) && st1.mac_changes == st0.mac_changes + 1, "ack %d mac %02x:..:%02x changes %llu",
	      ack, mac[0], mac[5], (unsigned long long)st1.mac_changes);
	sent = net_tx(d, guest_mac, 0x5005, 100);
	bool out_new = sent && sock_wait_tag(s, 0x5005, WAIT_MS);
	sent = net_tx(d, nic_mac, 0x5006, 100);
	bool out_old = sent && sock_wait_tag(s, 0x5006, 300);
	CHECK("net security: the guest sends from its MAC; the configured one is now forged", out_new && !out_old,
	      "from the guest's MAC out %d, from the configured MAC out %d", out_new, out_old);
	bool in_new = rx_gets(d, s, TAP_NAME, guest_mac, 0x5007, 300), in_b = rx_gets(d, s, TAP_NAME, bcast_mac, 0x5008, 300);
	CHECK("net security: MAC changes rejected: while the guest's MAC differs, no frame comes in (not to it, not broadcast)",
	      !in_new && !in_b, "to the guest's MAC %d, broadcast %d", in_new, in_b);
	ack = net_ctrl(d, 1, 1, nic_mac, 6);
	CHECK("net security: back on the configured MAC, frames come in again", ack == 0 &&
	      rx_gets(d, s, TAP_NAME, nic_mac, 0x5009, WAIT_MS), "ack %d", ack);

	/* malformed commands are refused */
	uint8_t bad_table[8] = { 5, 0, 0, 0, 0, 0, 0, 0 }; /* 5 unicast entries announced, none there */
	int a1 = net_ctrl(d, 1, 0, bad_table, sizeof(bad_table)), a2 = net_ctrl(d, 9, 0, NULL, 0),
	    a3 = net_ctrl(d, 1, 1, bcast_mac, 6), a4 = net_ctrl(d, 0, 0, &(uint8_t){ 2 }, 1);
	CHECK("net security: a truncated MAC table, an unknown class, a multicast MAC and a promiscuous value of 2 get ERR",
	      a1 == 1 && a2 == 1 && a3 == 1 && a4 == 1, "acks %d %d %d %d", a1, a2, a3, a4);

	/* NIC 2 accepts all three */
	CHECK("net security (accepting port): a driver with CTRL_RX that did not ask for promiscuous mode gets only its own frames",
	      !rx_gets(d3, s3, TAP_OPEN, other_mac, 0x6001, 300) && rx_gets(d3, s3, TAP_OPEN, nic_mac3, 0x6002, WAIT_MS), "%s", "not as said");
	ack = net_ctrl(d3, 0, 0, &(uint8_t){ 1 }, 1);
	CHECK("net security (accepting port): in promiscuous mode another MAC's frame arrives", ack == 0 &&
	      rx_gets(d3, s3, TAP_OPEN, other_mac, 0x6003, WAIT_MS), "ack %d", ack);
	net_ctrl(d3, 0, 0, &(uint8_t){ 0 }, 1);
	uint8_t table[4 + 6 + 4];
	memcpy(table, &(uint32_t){ 1 }, 4);
	memcpy(table + 4, other_mac, 6);
	memcpy(table + 10, &(uint32_t){ 0 }, 4);
	ack = net_ctrl(d3, 1, 0, table, sizeof(table));
	CHECK("net security (accepting port): a unicast MAC in the guest's filter table (MAC_TABLE_SET) arrives out of promiscuous mode",
	      ack == 0 && rx_gets(d3, s3, TAP_OPEN, other_mac, 0x6004, WAIT_MS), "ack %d", ack);
	sent = net_tx(d3, peer_mac, 0x6005, 100);
	CHECK("net security (accepting port): a forged transmit goes out", sent && sock_wait_tag(s3, 0x6005, WAIT_MS), "used %d", sent);
	ack = net_ctrl(d3, 1, 1, guest_mac, 6);
	CHECK("net security (accepting port): with the guest's MAC set, frames to it arrive",
	      ack == 0 && rx_gets(d3, s3, TAP_OPEN, guest_mac, 0x6006, WAIT_MS), "ack %d", ack);

	/* the guest's MAC and filter are in the state: saved, changed, loaded back */
	const struct state_section_ops *ops = state_find("virtio-net");
	struct state_buf sb = { 0 };
	int rc = -1;
	if (ops && vm_pause(vm) == 0) {
		rc = ops->save(vm, 2, &sb);
		vm_resume(vm);
	}
	/* a device reset forgets them (the driver's rings, untouched, match the saved state) */
	bool reset = vdev_reset(d3);
	cfg_mac(d3, mac);
	bool forgot = reset && !memcmp(mac, nic_mac3, 6);
	int lrc = -1;
	char err[256] = "";
	if (!rc && vm_pause(vm) == 0) {
		lrc = ops->load(vm, 2, ops->version, sb.data, sb.len, err, sizeof(err));
		vm_resume(vm);
	}
	sbuf_free(&sb);
	cfg_mac(d3, mac);
	CHECK("net security: the guest's MAC and unicast table travel in the state (version 2): restored after a reset forgot them",
	      rc == 0 && forgot && lrc == 0 && !memcmp(mac, guest_mac, 6) && rx_gets(d3, s3, TAP_OPEN, guest_mac, 0x6007, WAIT_MS) &&
		      rx_gets(d3, s3, TAP_OPEN, other_mac, 0x6008, WAIT_MS),
	      "save %d reset forgot %d load %d (%s) mac %02x:..:%02x", rc, forgot, lrc, err, mac[0], mac[5]);
}

static int net_child(void)
{
	char err[512];
	struct vm_device_specs specs = { 0 };

	if (unshare(CLONE_NEWNET) < 0) {
		SKIP("net: virtio-net on a tap", "unshare(CLONE_NEWNET): %s", strerror(errno));
		return 0;
	}
	/* nothing of our own on the taps but the test's frames */
	write_file("/proc/sys/net/ipv6/conf/default/disable_ipv6", "1");
	write_file("/proc/sys/net/ipv6/conf/all/disable_ipv6", "1");
	specs.nnics = 2;
	snprintf(specs.nics[0].tap, sizeof(specs.nics[0].tap), "%s", TAP_NAME);
	specs.nics[0].has_mac = true;
	memcpy(specs.nics[0].mac, nic_mac, 6);
	snprintf(specs.nics[1].tap, sizeof(specs.nics[1].tap), "%s", TAP_SLOW);
	specs.nics[1].has_mac = true;
	memcpy(specs.nics[1].mac, nic_mac2, 6);
	specs.nics[1].rate = 20000; /* bytes/s: the burst (64 KiB) and then 20 KB/s */
	specs.nnics = 3;
	snprintf(specs.nics[2].tap, sizeof(specs.nics[2].tap), "%s", TAP_OPEN);
	specs.nics[2].has_mac = true;
	memcpy(specs.nics[2].mac, nic_mac3, 6);
	specs.nics[2].accept_forged = specs.nics[2].accept_mac_changes = specs.nics[2].accept_promiscuous = true;
	specs.nnics = 4;
	snprintf(specs.nics[3].tap, sizeof(specs.nics[3].tap), "%s", TAP_MQ);
	specs.nics[3].has_mac = true;
	memcpy(specs.nics[3].mac, nic_mac4, 6);
	specs.nics[3].queues = 2;
	struct vm *vm = vm_new();
	if (vm_make(vm, "virtio-net", &specs, false, err, sizeof(err))) {
		CHECK("net: a VM with two virtio-net NICs on taps", false, "%s", err);
		vm_end(vm, false);
		return 1;
	}
	int slot = find_slot(vm, 0x1041, 0), slot2 = find_slot(vm, 0x1041, 1), slot3 = find_slot(vm, 0x1041, 2),
	    slot4 = find_slot(vm, 0x1041, 3);
	struct vdev d, d2, d3, d4;
	CHECK("net: virtio-net functions enumerate (vendor 0x1af4 device 0x1041, class 02:00)", slot > 0 && slot2 > 0 &&
	      (cfg_rd(vm, slot, PCI_REVISION_ID, 4) >> 16) == 0x0200, "slots %d %d", slot, slot2);
	if (slot <= 0 || slot2 <= 0 || slot3 <= 0 || vdev_bind(&d, vm, slot, 0, 3) || vdev_bind(&d2, vm, slot2, 1, 3) ||
	    vdev_bind(&d3, vm, slot3, 2, 3) || slot4 <= 0 || vdev_bind(&d4, vm, slot4, 3, 5)) {
		vm_end(vm, false);
		return 1;
	}
	int s = packet_socket(TAP_NAME), s2 = packet_socket(TAP_SLOW), s3 = packet_socket(TAP_OPEN), s4 = packet_socket(TAP_MQ);
	char e2[256];
	if (s < 0 || s2 < 0 || s3 < 0 || s4 < 0 || vm_start_vcpus(vm, e2, sizeof(e2))) {
		CHECK("net: packet sockets on the taps, VM running", false, "socket %d %d: %s", s, s2, strerror(errno));
		vm_end(vm, false);
		return 1;
	}
	uint8_t mac[6];
	for (int i = 0; i < 6; i++)
		mac[i] = (uint8_t)rd(vm, d.devcfg + (uint64_t)i, 1);
	CHECK("net: the MAC in the device configuration is the NIC's", !memcmp(mac, nic_mac, 6), "%02x:%02x:...:%02x", mac[0],
	      mac[1], mac[5]);
	bool up = vdev_start(&d, F_VERSION_1 | NET_F_MAC | NET_F_STATUS | NET_F_CTRL_VQ | NET_F_GUEST_ANNOUNCE, 0);
	CHECK("net: driver start-up (rx, tx, ctrl queues)", up, "status 0x%02x", status_rd(&d));
	if (!up)
		goto out;
	/* a frame that comes while the driver has no receive buffer waits in the tap */
	uint32_t ulen = 0;
	uint16_t nbuf = 0;
	size_t flen = 0;
	bool inj = sock_send(s, TAP_NAME, 0x2000, 90);
	sleep_us(100000);
	bool none_yet = used_idx(&d, 0) == 0;
	net_rx_fill(&d, 16);
	bool got = net_rx_find(&d, 0x2000, WAIT_MS, &ulen, &nbuf, &flen);
	CHECK("net: a frame sent before the driver added receive buffers arrives once it adds some", inj && none_yet && got &&
	      flen == 90, "sent %d waited %d delivered %d", inj, none_yet, got);

	bool sent = net_tx(&d, nic_mac, 0x1001, 100);
	CHECK("net: a frame from the NIC's MAC comes out of the tap", sent && sock_wait_tag(s, 0x1001, WAIT_MS),
	      "used %d", sent);
	struct net_stats st0, st1;
	char ifn[16];
	virtio_net_stats(vm, 0, &st0, mac, ifn, sizeof(ifn));
	sent = net_tx(&d, peer_mac, 0x1002, 100);
	bool seen = sock_wait_tag(s, 0x1002, 300);
	virtio_net_stats(vm, 0, &st1, mac, ifn, sizeof(ifn));
	CHECK("net: a frame with a forged source MAC is used, dropped and counted", sent && !seen &&
	      st1.tx_forged == st0.tx_forged + 1, "used %d seen %d forged %llu -> %llu", sent, seen,
	      (unsigned long long)st0.tx_forged, (unsigned long long)st1.tx_forged);

	inj = sock_send(s, TAP_NAME, 0x2001, 200);
	got = inj && net_rx_find(&d, 0x2001, WAIT_MS, &ulen, &nbuf, &flen);
	CHECK("net: a frame sent into the tap arrives in an rx buffer: 12-byte header, num_buffers 1, whole frame",
	      got && nbuf == 1 && flen == 200 && ulen == 212, "sent %d found %d num_buffers %u used len %u", inj, got, nbuf, ulen);

	/* frames arriving while the VM is paused wait and come after resume */
	if (vm_pause(vm) == 0) {
		uint16_t u0 = used_idx(&d, 0);
		inj = sock_send(s, TAP_NAME, 0x3001, 120);
		sleep_us(100000);
		bool quiet = used_idx(&d, 0) == u0;
		vm_resume(vm);
		got = net_rx_find(&d, 0x3001, WAIT_MS, &ulen, &nbuf, &flen);
		CHECK("net: a frame arriving while the VM is paused is not delivered then, and is after resume",
		      inj && quiet && got && flen == 120, "sent %d quiet %d delivered %d", inj, quiet, got);
	}
	/* ... also when the state is saved meanwhile (the section holds the frame) */
	if (vm_pause(vm) == 0) {
		inj = sock_send(s, TAP_NAME, 0x3002, 130);
		sleep_us(100000);
		const struct state_section_ops *ops = state_find("virtio-net");
		struct state_buf sb = { 0 };
		int rc = ops ? ops->save(vm, 0, &sb) : -1;
		virtio_net_stats(vm, 0, &st0, mac, ifn, sizeof(ifn));
		sbuf_free(&sb);
		vm_resume(vm);
		got = net_rx_find(&d, 0x3002, WAIT_MS, &ulen, &nbuf, &flen);
		virtio_net_stats(vm, 0, &st1, mac, ifn, sizeof(ifn));
		CHECK("net: a frame held in the saved state while paused is delivered after resume, num_buffers 1",
		      inj && rc == 0 && st0.rx_held >= 1 && got && nbuf == 1 && flen == 130 &&
			      st1.rx_held_delivered >= 1,
		      "sent %d save %d held %llu delivered %d (%llu) num_buffers %u", inj, rc, (unsigned long long)st0.rx_held,
		      got, (unsigned long long)st1.rx_held_delivered, nbuf);
	}

	/* after a switchover: a RARP from the NIC's MAC on the tap, and the guest
	 * asked (config status ANNOUNCE, a configuration interrupt) to announce
	 * itself and acknowledge on the control queue */
	{
		uint8_t isr;
		isr_read(&d, &isr);
		int sent_n = virtio_net_announce(vm, 0);
		uint8_t buf[128];
		bool rarp = false;
		for (uint64_t end = ms_now() + WAIT_MS; !rarp && ms_now() < end;) {
			struct pollfd p = { s, POLLIN, 0 };
			if (poll(&p, 1, 50) <= 0)
				continue;
			ssize_t n = recv(s, buf, sizeof(buf), MSG_DONTWAIT);
			rarp = n >= 42 && buf[12] == 0x80 && buf[13] == 0x35 && !memcmp(buf + 6, nic_mac, 6) &&
			       !memcmp(buf + 22, nic_mac, 6);
		}
		isr = isr_wait(&d, 2);
		uint16_t st = (uint16_t)rd(vm, d.devcfg + 6, 2);
		CHECK("net: announce: a RARP per NIC, the one from this NIC's MAC leaves its tap; config status ANNOUNCE and a config interrupt",
		      sent_n == 4 && rarp && (st & NET_S_ANNOUNCE) && (isr & 2), "sent %d rarp %d status 0x%x isr 0x%x", sent_n,
		      rarp, st, isr);
		uint64_t cmd = buf_alloc(&d, 2, 2), ack = buf_alloc(&d, 2, 1);
		uint8_t *cp = gp(&d, cmd, 2);
		cp[0] = 3; /* VIRTIO_NET_CTRL_ANNOUNCE */
		cp[1] = 0; /* VIRTIO_NET_CTRL_ANNOUNCE_ACK */
		*(uint8_t *)gp(&d, ack, 1) = 0xee;
		struct seg cs[2] = { { cmd, 2, false }, { ack, 1, true } };
		vq_post(&d, 2, cs, 2);
		vq_kick(&d, 2);
		bool acked = vq_wait(&d, 2, d.q[2].avail_idx, WAIT_MS);
		st = (uint16_t)rd(vm, d.devcfg + 6, 2);
		CHECK("net: the guest's ANNOUNCE_ACK on the control queue: OK, and ANNOUNCE clears",
		      acked && *(uint8_t *)gp(&d, ack, 1) == 0 && !(st & NET_S_ANNOUNCE) && (st & 1), "done %d ack %u status 0x%x",
		      acked, *(uint8_t *)gp(&d, ack, 1), st);
	}

	test_net_security(vm, &d, s, &d3, s3);
	test_net_offloads(&d3, TAP_OPEN);
	test_net_mq(&d4, s4);

	/* the rate limit holds frames back and sends them when tokens are back, without another kick */
	if (vdev_start(&d2, F_VERSION_1 | NET_F_MAC, 0)) {
		const int nframes = 60;
		uint64_t t0 = ms_now();
		for (int i = 0; i < nframes; i++) {
			uint64_t b = buf_alloc(&d2, 1, NET_HDR_LEN + 1400);
			uint8_t *p = gp(&d2, b, NET_HDR_LEN + 1400);
			memset(p, 0, NET_HDR_LEN);
			build_frame(p + NET_HDR_LEN, peer_mac, nic_mac2, 0x4000u + (uint32_t)i, 1400);
			struct seg sg = { b, NET_HDR_LEN + 1400, false };
			vq_post(&d2, 1, &sg, 1);
		}
		vq_kick(&d2, 1);
		bool all = vq_wait(&d2, 1, d2.q[1].avail_idx, 6000);
		int seen_n = sock_count_tags(s2, 0x4000, (unsigned)nframes, 2000);
		struct net_stats st;
		virtio_net_stats(vm, 1, &st, mac, ifn, sizeof(ifn));
		CHECK("net: rate limit: frames over the burst are held back, then all sent without another kick",
		      all && seen_n == nframes && st.tx_throttled >= 1, "used all %d, %d of %d seen in %llu ms, throttled %llu", all,
		      seen_n, nframes, (unsigned long long)(ms_now() - t0), (unsigned long long)st.tx_throttled);
	}
out:
	close(s);
	close(s2);
	close(s3);
	close(s4);
	vm_end(vm, true);
	return failures ? 1 : 0;
}

static void test_net(void)
{
	if (geteuid() != 0) {
		SKIP("net: virtio-net on a tap", "needs root (a network namespace and a tap)");
		return;
	}
	if (access("/dev/net/tun", R_OK | W_OK)) {
		SKIP("net: virtio-net on a tap", "/dev/net/tun: %s", strerror(errno));
		return;
	}
	fflush(stdout);
	pid_t pid = fork();
	if (pid < 0) {
		CHECK("net: fork", false, "%s", strerror(errno));
		return;
	}
	if (pid == 0) {
		alarm(120);
		int rc = net_child();
		fflush(stdout);
		_exit(rc);
	}
	int status = 0;
	pid_t w = 0;
	for (uint64_t end = ms_now() + 150000; ms_now() < end && (w = waitpid(pid, &status, WNOHANG)) == 0;)
		sleep_us(50000);
	if (w == 0) {
		kill(pid, SIGKILL);
		waitpid(pid, &status, 0);
		CHECK("net: the namespace child ends", false, "killed after 150 s");
		return;
	}
	if (!WIFEXITED(status) || WEXITSTATUS(status) > 1)
		CHECK("net: the namespace child ends", false, "status 0x%x", status);
	else if (WEXITSTATUS(status) == 1)
		failures++; /* its FAIL lines are printed */
}

/* ====================================================================== */

/* --nic items of port security: accept|reject each, nothing else */
static void test_nic_specs(void)
{
	struct nic_spec n;
	char err[256];
	int rc = nic_spec_parse("tap=t0", &n, err, sizeof(err));
	CHECK("--nic: port security rejects all three by default", !rc && !n.accept_forged && !n.accept_mac_changes &&
	      !n.accept_promiscuous, "rc %d %s", rc, err);
	rc = nic_spec_parse("bridge=br0,forged-transmits=accept,mac-changes=reject,promiscuous=accept", &n, err, sizeof(err));
	CHECK("--nic: forged-transmits=accept,mac-changes=reject,promiscuous=accept", !rc && n.accept_forged &&
	      !n.accept_mac_changes && n.accept_promiscuous, "rc %d %s", rc, err);
	rc = nic_spec_parse("tap=t0,promiscuous=on", &n, err, sizeof(err));
	CHECK("--nic: promiscuous=on refused (accept or reject)", rc == -EINVAL && strstr(err, "accept or reject"), "rc %d %s",
	      rc, err);
}

static void remove_disks(void)
{
	unlink(disk_path);
	unlink(disk_ro_path);
	rmdir(tmpdir);
}

int main(void)
{
	char err[512], e2[256];
	const char *base = getenv("GLIDE_TEST_TMP");
	snprintf(tmpdir, sizeof(tmpdir), "%s/unit-virtio.XXXXXX", base && *base ? base : "/tmp");
	if (!mkdtemp(tmpdir)) {
		perror("mkdtemp");
		return 1;
	}
	snprintf(disk_path, sizeof(disk_path), "%s/disk.raw", tmpdir);
	snprintf(disk_ro_path, sizeof(disk_ro_path), "%s/disk-ro.raw", tmpdir);
	if (make_file(disk_path, DISK_BYTES, 0) || make_file(disk_ro_path, DISK_RO_BYTES, 1000)) {
		perror("disk files");
		remove_disks();
		return 1;
	}
	test_nic_specs();
	if (access("/dev/kvm", R_OK | W_OK)) {
		SKIP("virtio", "/dev/kvm: %s", strerror(errno));
		remove_disks();
		return 0;
	}

	struct vm_device_specs specs = { 0 };
	specs.ndisks = 2;
	snprintf(specs.disks[0].path, sizeof(specs.disks[0].path), "%s", disk_path);
	snprintf(specs.disks[1].path, sizeof(specs.disks[1].path), "%s", disk_ro_path);
	specs.disks[1].readonly = true;
	/* UNIT_VIRTIO_AIO=sync|threads|io_uring: the disks' I/O engine (tests/test_virtio_engines.sh) */
	const char *aio = getenv("UNIT_VIRTIO_AIO");
	if (aio && blk_io_engine_parse(aio, strlen(aio), &specs.disks[0].aio)) {
		fprintf(stderr, "UNIT_VIRTIO_AIO=%s: not sync, threads or io_uring\n", aio);
		remove_disks();
		return 1;
	}
	specs.disks[1].aio = specs.disks[0].aio;

	struct vm *a = vm_new(), *b = NULL;
	bool started = false;
	int slot, slot_ro;
	struct vdev d, ro;
	if (vm_make(a, "virtio-a", &specs, false, err, sizeof(err))) {
		CHECK("setup: a VM with two virtio disks", false, "%s", err);
		goto out;
	}
	/* the disk's writer lock keeps a second VM away */
	struct vm *other = vm_new();
	int orc = vm_make(other, "virtio-other", &specs, false, err, sizeof(err));
	CHECK("blk: a second VM cannot open a writable disk another VM has (OFD lock)", orc != 0 && strstr(err, "in use"),
	      "rc %d: %s", orc, err);
	vm_end(other, false);

	if (vm_start_vcpus(a, e2, sizeof(e2))) {
		CHECK("setup: VM runs", false, "%s", e2);
		goto out;
	}
	started = true;
	slot = find_slot(a, 0x1042, 0);
	slot_ro = find_slot(a, 0x1042, 1);
	if (slot < 0 || slot_ro < 0 || vdev_bind(&d, a, slot, 0, 1) || vdev_bind(&ro, a, slot_ro, 1, 1)) {
		CHECK("setup: both disks enumerate with their capabilities", false, "slots %d %d", slot, slot_ro);
		goto out;
	}
	test_enumeration(a, slot);
	vdev_bind(&d, a, slot, 0, 1); /* addresses as they are now */
	test_features(&d);
	test_blk_io(&d, &ro);
	test_interrupts(&d);
	test_suppression(&d);
	test_malformed(&d);
	test_state(a, &d, &specs, &b);
	test_blk_mirror();
out:
	vm_end(b, b && b->vcpus[0].thread_started);
	vm_end(a, started);
	remove_disks();
	test_net(); /* no VM of this process exists across the fork */
	return failures ? 1 : 0;
}
