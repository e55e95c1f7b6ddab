/* The PCI bus of a glide VM (pci.h): configuration space through the
 * 0xCF8/0xCFC ports and ECAM, memory BAR decoding for MMIO exits, MSI-X
 * tables whose vectors KVM delivers from irqfds (one GSI route per vector,
 * kept beside the irqchip's default routes), and shared INTx lines. */
#include "devices/pci.h"
#include "devices/devices.h"
#include "state/state.h"
#include "common/util.h"
#include "vmm/vm.h"
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <unistd.h>

#define PCI_HOST_BRIDGE_VENDOR 0x1b36 /* Red Hat, Inc.: "QEMU PCIe host bridge", which guests know */
#define PCI_HOST_BRIDGE_DEVICE 0x0008
#define PCI_CLASS_BRIDGE_HOST 0x060000
#define IRQCHIP_GSIS 24
#define GSI_ROUTES_MAX 1024

struct pci_bus {
	struct vm *vm;
	struct pci_dev *slots[PCI_SLOTS];
	struct pci_dev host_bridge;
	struct device config_ports;
	uint32_t config_address;       /* last write to 0xCF8 */
	pthread_mutex_t lock;          /* config_address, routes, INTx counts */
	uint64_t next_bar;             /* BAR placement cursor in the MMIO window */
	int intx_asserted[4];          /* devices holding each of the 4 shared lines */
	struct kvm_irq_routing_entry routes[GSI_ROUTES_MAX];
	int nroutes;
	int next_gsi;
};

static void msix_fire_locked(struct pci_dev *d, int v);
static void bar_access_locked(struct pci_dev *d, int bar, uint64_t off, bool is_write, uint8_t *data, int len);
static void intx_apply_locked(struct pci_bus *bus, struct pci_dev *d);

static inline uint16_t cfg16(const struct pci_dev *d, unsigned off)
{
	return (uint16_t)(d->config[off] | d->config[off + 1] << 8);
}

static inline uint32_t cfg32(const struct pci_dev *d, unsigned off)
{
	return (uint32_t)d->config[off] | (uint32_t)d->config[off + 1] << 8 | (uint32_t)d->config[off + 2] << 16 |
	       (uint32_t)d->config[off + 3] << 24;
}

static inline void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static inline void put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

struct pci_dev *pci_slot(struct vm *vm, int slot)
{
	if (!vm->pci || slot < 0 || slot >= PCI_SLOTS)
		return NULL;
	return vm->pci->slots[slot];
}

void pci_dev_init(struct pci_dev *d, const char *name, uint16_t vendor, uint16_t device, uint8_t revision,
		  uint32_t class_code, uint16_t subsys_vendor, uint16_t subsys_id)
{
	memset(d->config, 0, sizeof(d->config));
	memset(d->wmask, 0, sizeof(d->wmask));
	d->name = name;
	d->slot = -1;
	put16(d->config + PCI_VENDOR_ID, vendor);
	put16(d->config + PCI_DEVICE_ID, device);
	d->config[PCI_REVISION_ID] = revision;
	d->config[PCI_CLASS_PROG] = (uint8_t)class_code;
	put16(d->config + PCI_CLASS_PROG + 1, (uint16_t)(class_code >> 8));
	put16(d->config + PCI_SUBSYSTEM_VENDOR_ID, subsys_vendor);
	put16(d->config + PCI_SUBSYSTEM_ID, subsys_id);
	d->config[PCI_INTERRUPT_PIN] = 1; /* INTA# */
	put16(d->wmask + PCI_COMMAND, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER | PCI_COMMAND_INTX_DISABLE);
	d->wmask[PCI_INTERRUPT_LINE] = 0xff;
	d->next_cap = 0x40;
	d->last_cap = 0;
	for (int i = 0; i < PCI_MSIX_MAX_VECTORS; i++) {
		d->msix[i].gsi = -1;
		d->msix[i].irqfd = -1;
	}
	pthread_mutex_init(&d->lock, NULL);
}

void pci_dev_set_bar(struct pci_dev *d, int bar, uint64_t size, bool is_64)
{
	d->bar_size[bar] = size;
	d->bar_64[bar] = is_64;
	put32(d->config + PCI_BAR0 + 4 * bar, is_64 ? PCI_BAR_MEM_64 : 0);
}

uint8_t pci_dev_add_cap(struct pci_dev *d, uint8_t id, uint8_t len)
{
	unsigned off = (d->next_cap + 3u) & ~3u;
	if (off + len > PCI_CONFIG_SIZE)
		return 0;
	d->config[off] = id;
	d->config[off + 1] = 0;
	if (d->last_cap)
		d->config[d->last_cap + 1] = (uint8_t)off;
	else
		d->config[PCI_CAPABILITY_LIST] = (uint8_t)off;
	put16(d->config + PCI_STATUS, cfg16(d, PCI_STATUS) | PCI_STATUS_CAP_LIST);
	d->last_cap = (uint8_t)off;
	d->next_cap = (uint8_t)(off + len);
	return (uint8_t)off;
}

int pci_msix_init(struct pci_dev *d, int vectors, int bar, uint32_t table_offset, uint32_t pba_offset)
{
	if (vectors < 1 || vectors > PCI_MSIX_MAX_VECTORS || !d->bar_size[bar] ||
	    table_offset + (uint64_t)vectors * PCI_MSIX_ENTRY_SIZE > d->bar_size[bar] || pba_offset + 8 > d->bar_size[bar])
		return -EINVAL;
	uint8_t cap = pci_dev_add_cap(d, PCI_CAP_ID_MSIX, 12);
	if (!cap)
		return -ENOSPC;
	d->msix_vectors = vectors;
	d->msix_bar = bar;
	d->msix_table_offset = table_offset;
	d->msix_pba_offset = pba_offset;
	d->msix_cap = cap;
	put16(d->config + cap + 2, (uint16_t)(vectors - 1));
	put32(d->config + cap + 4, table_offset | (uint32_t)bar);
	put32(d->config + cap + 8, pba_offset | (uint32_t)bar);
	put16(d->wmask + cap + 2, PCI_MSIX_FLAGS_ENABLE | PCI_MSIX_FLAGS_MASKALL);
	for (int i = 0; i < vectors; i++)
		d->msix[i].ctrl = PCI_MSIX_VECTOR_CTRL_MASK; /* masked after reset, as the spec says */
	return 0;
}

void pci_dev_set_cfg_window(struct pci_dev *d, uint8_t cap)
{
	d->cfg_window_cap = cap;
	d->wmask[cap + PCI_CFG_WINDOW_BAR] = 0xff;
	memset(d->wmask + cap + PCI_CFG_WINDOW_OFFSET, 0xff, 12); /* offset, length, data */
}

/* ---- BAR decoding ---- */

static uint64_t bar_address(const struct pci_dev *d, int bar)
{
	uint64_t a = cfg32(d, PCI_BAR0 + 4 * bar) & ~0xfULL;
	if (d->bar_64[bar])
		a |= (uint64_t)cfg32(d, PCI_BAR0 + 4 * (bar + 1)) << 32;
	return a;
}

uint64_t pci_bar_gpa(struct pci_dev *d, int bar)
{
	if (bar < 0 || bar >= PCI_BARS || !d->bar_size[bar] || !(cfg16(d, PCI_COMMAND) & PCI_COMMAND_MEMORY))
		return 0;
	return bar_address(d, bar);
}

/* Tells the device where its BARs decode now (lock held). */
static void update_mappings(struct pci_dev *d)
{
	for (int bar = 0; bar < PCI_BARS; bar++) {
		if (!d->bar_size[bar])
			continue;
		uint64_t gpa = pci_bar_gpa(d, bar);
		if (gpa == d->bar_mapped_gpa[bar])
			continue;
		d->bar_mapped_gpa[bar] = gpa;
		if (d->ops && d->ops->bar_mapped)
			d->ops->bar_mapped(d, bar, gpa);
	}
}

/* ---- configuration space ---- */

static bool is_bar_register(const struct pci_dev *d, unsigned reg, int *bar, bool *high)
{
	if (reg < PCI_BAR0 || reg >= PCI_BAR0 + 4 * PCI_BARS)
		return false;
	int i = (int)(reg - PCI_BAR0) / 4;
	if (d->bar_size[i]) {
		*bar = i;
		*high = false;
		return true;
	}
	if (i > 0 && d->bar_64[i - 1] && d->bar_size[i - 1]) {
		*bar = i - 1;
		*high = true;
		return true;
	}
	*bar = -1; /* an unused BAR register: reads 0, ignores writes */
	return true;
}

static bool touches(unsigned off, int len, unsigned start, unsigned n)
{
	return off < start + n && off + (unsigned)len > start;
}

/* The configuration-space window into the BARs: an access of `length`
 * bytes at `offset` of BAR `bar`, through the data field. Device lock held. */
static void cfg_window_access(struct pci_dev *d, bool is_write)
{
	unsigned c = d->cfg_window_cap;
	unsigned bar = d->config[c + PCI_CFG_WINDOW_BAR];
	uint32_t off = cfg32(d, c + PCI_CFG_WINDOW_OFFSET), len = cfg32(d, c + PCI_CFG_WINDOW_LENGTH);
	if (bar >= PCI_BARS || !d->bar_size[bar] || (len != 1 && len != 2 && len != 4) || (off & (len - 1)) ||
	    (uint64_t)off + len > d->bar_size[bar])
		return; /* not an access the window can make: nothing happens */
	bar_access_locked(d, (int)bar, off, is_write, d->config + c + PCI_CFG_WINDOW_DATA, (int)len);
}

static void config_read(struct pci_dev *d, unsigned off, uint8_t *data, int len)
{
	if (d->cfg_window_cap && touches(off, len, d->cfg_window_cap + PCI_CFG_WINDOW_DATA, 4))
		cfg_window_access(d, false);
	for (int i = 0; i < len; i++)
		data[i] = off + i < PCI_CONFIG_SIZE ? d->config[off + i] : 0;
}

static void config_write(struct pci_dev *d, unsigned off, const uint8_t *data, int len)
{
	unsigned reg = off & ~3u;
	int bar;
	bool high;

	if (off >= PCI_CONFIG_SIZE)
		return;
	if (is_bar_register(d, reg, &bar, &high)) {
		if (bar < 0 || len != 4 || (off & 3))
			return; /* BARs are written as whole dwords */
		uint32_t v;
		memcpy(&v, data, 4);
		uint64_t mask = ~(d->bar_size[bar] - 1);
		if (high)
			put32(d->config + reg, v & (uint32_t)(mask >> 32));
		else
			put32(d->config + reg, (v & (uint32_t)mask & ~0xfu) | (d->bar_64[bar] ? PCI_BAR_MEM_64 : 0));
		update_mappings(d);
		return;
	}
	bool msix_ctrl_touched = d->msix_cap && off <= d->msix_cap + 3u && off + len > d->msix_cap + 2u;
	bool was_masked = d->msix_cap && (cfg16(d, d->msix_cap + 2) & PCI_MSIX_FLAGS_MASKALL);
	for (int i = 0; i < len && off + i < PCI_CONFIG_SIZE; i++) {
		unsigned o = off + i;
		d->config[o] = (uint8_t)((d->config[o] & ~d->wmask[o]) | (data[i] & d->wmask[o]));
	}
	if (d->cfg_window_cap && touches(off, len, d->cfg_window_cap + PCI_CFG_WINDOW_DATA, 4))
		cfg_window_access(d, true);
	if (reg == PCI_COMMAND)
		update_mappings(d);
	if (d->slot >= 0 && (reg == PCI_COMMAND || msix_ctrl_touched)) {
		/* Interrupt Disable or MSI-X enable changed: the line follows */
		pthread_mutex_lock(&d->vm->pci->lock);
		intx_apply_locked(d->vm->pci, d);
		pthread_mutex_unlock(&d->vm->pci->lock);
	}
	if (msix_ctrl_touched && was_masked && !(cfg16(d, d->msix_cap + 2) & PCI_MSIX_FLAGS_MASKALL)) {
		/* function unmasked: deliver what fired meanwhile */
		uint64_t pend = d->msix_pending;
		for (int v = 0; v < d->msix_vectors; v++)
			if (pend & (1ULL << v))
				msix_fire_locked(d, v);
	}
}

/* Config access for bus 0 device `slot`, function `fn` (only function 0 exists). */
static void config_access(struct pci_bus *bus, int slot, int fn, unsigned off, bool is_write, uint8_t *data, int len)
{
	struct pci_dev *d = fn == 0 ? bus->slots[slot] : NULL;
	if (!d) {
		if (!is_write)
			memset(data, 0xff, len);
		return;
	}
	pthread_mutex_lock(&d->lock);
	if (is_write)
		config_write(d, off, data, len);
	else
		config_read(d, off, data, len);
	pthread_mutex_unlock(&d->lock);
}

static void config_port_io(struct vm *vm, struct device *dev, uint16_t port, bool is_write, uint8_t *data, int size)
{
	struct pci_bus *bus = dev->opaque;

	if (port >= PCI_CONFIG_ADDRESS_PORT && port < PCI_CONFIG_ADDRESS_PORT + 4) {
		pthread_mutex_lock(&bus->lock);
		if (port == PCI_CONFIG_ADDRESS_PORT && size == 4) {
			if (is_write)
				memcpy(&bus->config_address, data, 4);
			else
				memcpy(data, &bus->config_address, 4);
		} else if (!is_write) {
			memset(data, 0xff, size); /* byte accesses to 0xCF8-0xCFB are not config cycles */
		}
		pthread_mutex_unlock(&bus->lock);
		return;
	}
	pthread_mutex_lock(&bus->lock);
	uint32_t a = bus->config_address;
	pthread_mutex_unlock(&bus->lock);
	unsigned bus_nr = (a >> 16) & 0xff, slot = (a >> 11) & 0x1f, fn = (a >> 8) & 7;
	unsigned off = (a & 0xfc) + (port - PCI_CONFIG_DATA_PORT);
	if (!(a & 0x80000000u) || bus_nr != 0 || off + (unsigned)size > PCI_CONFIG_SIZE) {
		if (!is_write)
			memset(data, 0xff, size);
		return;
	}
	config_access(bus, (int)slot, (int)fn, off, is_write, data, size);
}

/* ---- MSI-X ---- */

static int routes_commit(struct pci_bus *bus)
{
	size_t sz = sizeof(struct kvm_irq_routing) + (size_t)bus->nroutes * sizeof(struct kvm_irq_routing_entry);
	struct kvm_irq_routing *r = calloc(1, sz);
	if (!r)
		return -ENOMEM;
	r->nr = (uint32_t)bus->nroutes;
	memcpy(r->entries, bus->routes, (size_t)bus->nroutes * sizeof(struct kvm_irq_routing_entry));
	int rc = ioctl(bus->vm->vm_fd, KVM_SET_GSI_ROUTING, r) < 0 ? -errno : 0;
	free(r);
	return rc;
}

/* The irqchip's own routes (KVM's defaults): GSI 0-15 to the PICs and the
 * IOAPIC, 16-23 to the IOAPIC. KVM_SET_GSI_ROUTING replaces the whole
 * table, so they are kept in front of the MSI routes. */
static void routes_default(struct pci_bus *bus)
{
	bus->nroutes = 0;
	for (int gsi = 0; gsi < IRQCHIP_GSIS; gsi++) {
		struct kvm_irq_routing_entry *e = &bus->routes[bus->nroutes++];
		memset(e, 0, sizeof(*e));
		e->gsi = (uint32_t)gsi;
		e->type = KVM_IRQ_ROUTING_IRQCHIP;
		e->u.irqchip.irqchip = KVM_IRQCHIP_IOAPIC;
		e->u.irqchip.pin = (uint32_t)gsi;
		if (gsi < 16) {
			e = &bus->routes[bus->nroutes++];
			memset(e, 0, sizeof(*e));
			e->gsi = (uint32_t)gsi;
			e->type = KVM_IRQ_ROUTING_IRQCHIP;
			e->u.irqchip.irqchip = gsi < 8 ? KVM_IRQCHIP_PIC_MASTER : KVM_IRQCHIP_PIC_SLAVE;
			e->u.irqchip.pin = (uint32_t)(gsi % 8);
		}
	}
	bus->next_gsi = IRQCHIP_GSIS;
}

/* Points vector v's GSI at the address/data the guest wrote (device lock held). */
static int msix_route(struct pci_dev *d, int v)
{
	struct pci_bus *bus = d->vm->pci;
	struct pci_msix_vector *m = &d->msix[v];
	int rc = 0;

	pthread_mutex_lock(&bus->lock);
	if (m->gsi < 0) {
		if (bus->nroutes >= GSI_ROUTES_MAX) {
			rc = -ENOSPC;
			goto out;
		}
		m->irqfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (m->irqfd < 0) {
			rc = -errno;
			goto out;
		}
		m->gsi = bus->next_gsi++;
		struct kvm_irq_routing_entry *e = &bus->routes[bus->nroutes++];
		memset(e, 0, sizeof(*e));
		e->gsi = (uint32_t)m->gsi;
		e->type = KVM_IRQ_ROUTING_MSI;
	}
	for (int i = 0; i < bus->nroutes; i++) {
		struct kvm_irq_routing_entry *e = &bus->routes[i];
		if (e->gsi == (uint32_t)m->gsi && e->type == KVM_IRQ_ROUTING_MSI) {
			e->u.msi.address_lo = m->addr_lo;
			e->u.msi.address_hi = m->addr_hi;
			e->u.msi.data = m->data;
		}
	}
	rc = routes_commit(bus);
	if (!rc && !m->routed) {
		static const struct kvm_irqfd zero;
		struct kvm_irqfd irqfd = zero;
		irqfd.fd = (uint32_t)m->irqfd;
		irqfd.gsi = (uint32_t)m->gsi;
		/* Binding twice fails with EBUSY: the first binding stays valid. */
		if (ioctl(d->vm->vm_fd, KVM_IRQFD, &irqfd) < 0 && errno != EBUSY)
			rc = -errno;
	}
	if (!rc)
		m->routed = true;
out:
	pthread_mutex_unlock(&bus->lock);
	if (rc)
		glide_log("pci", "%s: cannot route MSI-X vector %d: %s", d->name, v, strerror(-rc));
	return rc;
}

bool pci_msix_enabled(struct pci_dev *d)
{
	return d->msix_cap && (cfg16(d, d->msix_cap + 2) & PCI_MSIX_FLAGS_ENABLE);
}

static void msix_fire_locked(struct pci_dev *d, int v)
{
	struct pci_msix_vector *m = &d->msix[v];
	if (!pci_msix_enabled(d))
		return;
	if ((cfg16(d, d->msix_cap + 2) & PCI_MSIX_FLAGS_MASKALL) || (m->ctrl & PCI_MSIX_VECTOR_CTRL_MASK)) {
		d->msix_pending |= 1ULL << v;
		return;
	}
	d->msix_pending &= ~(1ULL << v);
	if (m->gsi < 0 || !m->routed)
		if (msix_route(d, v))
			return;
	uint64_t one = 1;
	if (write(m->irqfd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		glide_log("pci", "%s: MSI-X vector %d: irqfd write: %s", d->name, v, strerror(errno));
}

void pci_msix_notify(struct pci_dev *d, int vector)
{
	if (vector < 0 || vector >= d->msix_vectors)
		return;
	pthread_mutex_lock(&d->lock);
	msix_fire_locked(d, vector);
	pthread_mutex_unlock(&d->lock);
}

static void msix_table_access(struct pci_dev *d, uint64_t off, bool is_write, uint8_t *data, int len)
{
	uint64_t table_end = d->msix_table_offset + (uint64_t)d->msix_vectors * PCI_MSIX_ENTRY_SIZE;
	if (off >= d->msix_pba_offset && off < d->msix_pba_offset + 8) {
		if (!is_write) {
			uint64_t pba = d->msix_pending;
			for (int i = 0; i < len; i++)
				data[i] = off + i < d->msix_pba_offset + 8 ? ((uint8_t *)&pba)[off - d->msix_pba_offset + i] : 0;
		}
		return; /* the PBA is read-only */
	}
	/* PCI 3.0 6.8.2: aligned dwords or aligned qwords only. An unaligned qword
	 * would span two entries, and at the last one run past the table. */
	if (off < d->msix_table_offset || off + (uint64_t)len > table_end || (len != 4 && len != 8) ||
	    (off & ((uint64_t)len - 1))) {
		if (!is_write)
			memset(data, 0, len);
		return;
	}
	for (int part = 0; part < len / 4; part++) {
		uint64_t o = off - d->msix_table_offset + 4 * (uint64_t)part;
		int v = (int)(o / PCI_MSIX_ENTRY_SIZE);
		struct pci_msix_vector *m = &d->msix[v];
		uint32_t *field = (uint32_t *[]){ &m->addr_lo, &m->addr_hi, &m->data, &m->ctrl }[(o % PCI_MSIX_ENTRY_SIZE) / 4];
		if (!is_write) {
			memcpy(data + 4 * part, field, 4);
			continue;
		}
		uint32_t val;
		memcpy(&val, data + 4 * part, 4);
		bool was_masked = m->ctrl & PCI_MSIX_VECTOR_CTRL_MASK;
		if (field == &m->ctrl) {
			m->ctrl = val & PCI_MSIX_VECTOR_CTRL_MASK;
		} else if (*field != val) {
			*field = val;
			m->routed = false;
		}
		if (was_masked && !(m->ctrl & PCI_MSIX_VECTOR_CTRL_MASK) && (d->msix_pending & (1ULL << v)))
			msix_fire_locked(d, v);
	}
}

/* Drives INTA# from the function's interrupt condition: asserted only while
 * the driver has neither set Interrupt Disable nor enabled MSI-X (PCI 3.0
 * 6.2.2 and 6.8: a function using MSI-X must not assert INTx). Called when
 * the condition or either control changes. Bus lock held. */
static void intx_apply_locked(struct pci_bus *bus, struct pci_dev *d)
{
	int line = d->slot % 4;
	int level = d->intx_want && !(cfg16(d, PCI_COMMAND) & PCI_COMMAND_INTX_DISABLE) && !pci_msix_enabled(d);
	if (level == d->intx_level)
		return;
	d->intx_level = level;
	bus->intx_asserted[line] += level ? 1 : -1;
	struct kvm_irq_level irq = { .irq = PCI_INTX_GSI_BASE + (uint32_t)line, .level = bus->intx_asserted[line] > 0 };
	ioctl(bus->vm->vm_fd, KVM_IRQ_LINE, &irq);
}

void pci_intx_set(struct pci_dev *d, int level)
{
	struct pci_bus *bus = d->vm->pci;

	pthread_mutex_lock(&bus->lock);
	d->intx_want = !!level;
	/* Interrupt Status follows the condition, whatever Interrupt Disable says */
	put16(d->config + PCI_STATUS, (uint16_t)((cfg16(d, PCI_STATUS) & ~PCI_STATUS_INTERRUPT) |
						  (d->intx_want ? PCI_STATUS_INTERRUPT : 0)));
	intx_apply_locked(bus, d);
	pthread_mutex_unlock(&bus->lock);
}

/* ---- MMIO ---- */

/* An access inside BAR `bar` (from an MMIO exit or the config window): the
 * MSI-X table and PBA are the bus's, the rest the device's. Lock held. */
static void bar_access_locked(struct pci_dev *d, int bar, uint64_t off, bool is_write, uint8_t *data, int len)
{
	if (d->msix_cap && bar == d->msix_bar &&
	    ((off >= d->msix_table_offset &&
	      off < d->msix_table_offset + (uint64_t)d->msix_vectors * PCI_MSIX_ENTRY_SIZE) ||
	     (off >= d->msix_pba_offset && off < d->msix_pba_offset + 8)))
		msix_table_access(d, off, is_write, data, len);
	else if (d->ops && d->ops->bar_access)
		d->ops->bar_access(d, bar, off, is_write, data, len);
	else if (!is_write)
		memset(data, 0, len);
}

bool pci_mmio(struct vm *vm, uint64_t gpa, bool is_write, uint8_t *data, int len)
{
	struct pci_bus *bus = vm->pci;
	if (!bus)
		return false;
	if (gpa >= PCI_ECAM_BASE && gpa < PCI_ECAM_BASE + PCI_ECAM_SIZE) {
		uint64_t o = gpa - PCI_ECAM_BASE;
		unsigned off = (unsigned)(o & 0xfff);
		if (off + (unsigned)len <= PCI_CONFIG_SIZE)
			config_access(bus, (int)(o >> 15), (int)((o >> 12) & 7), off, is_write, data, len);
		else if (!is_write)
			memset(data, 0, len); /* extended space: no capabilities there */
		return true;
	}
	if (gpa < PCI_MMIO_BASE || gpa >= PCI_MMIO_BASE + PCI_MMIO_SIZE) {
		/* 64-bit BARs a guest moved above 4 GiB decode too */
		if (gpa < GUEST_HIGH_RAM_BASE)
			return false;
	}
	for (int s = 0; s < PCI_SLOTS; s++) {
		struct pci_dev *d = bus->slots[s];
		if (!d || d == &bus->host_bridge)
			continue;
		pthread_mutex_lock(&d->lock);
		for (int bar = 0; bar < PCI_BARS; bar++) {
			uint64_t base = d->bar_mapped_gpa[bar];
			if (!base || gpa < base || gpa + (uint64_t)len > base + d->bar_size[bar])
				continue;
			bar_access_locked(d, bar, gpa - base, is_write, data, len);
			pthread_mutex_unlock(&d->lock);
			return true;
		}
		pthread_mutex_unlock(&d->lock);
	}
	return false;
}

/* ---- placement ---- */

int pci_dev_add(struct vm *vm, struct pci_dev *d, char *err, size_t errlen)
{
	struct pci_bus *bus = vm->pci;
	int slot = -1;

	if (!bus) {
		errf(err, errlen, "%s: this VM has no PCI bus", d->name);
		return -ENODEV;
	}
	for (int s = 1; s < PCI_SLOTS && slot < 0; s++)
		if (!bus->slots[s])
			slot = s;
	if (slot < 0) {
		errf(err, errlen, "%s: no free PCI slot (at most %d devices)", d->name, PCI_SLOTS - 1);
		return -ENOSPC;
	}
	/* Firmware-like placement: each BAR aligned to its size, in slot order. */
	uint64_t cursor = bus->next_bar;
	for (int bar = 0; bar < PCI_BARS; bar++) {
		uint64_t size = d->bar_size[bar];
		if (!size)
			continue;
		cursor = (cursor + size - 1) & ~(size - 1);
		if (cursor + size > PCI_MMIO_BASE + PCI_MMIO_SIZE) {
			errf(err, errlen, "%s: the PCI memory window is full", d->name);
			return -ENOSPC;
		}
		put32(d->config + PCI_BAR0 + 4 * bar, (uint32_t)cursor | (d->bar_64[bar] ? PCI_BAR_MEM_64 : 0));
		if (d->bar_64[bar])
			put32(d->config + PCI_BAR0 + 4 * (bar + 1), (uint32_t)(cursor >> 32));
		cursor += size;
	}
	bus->next_bar = cursor;
	d->vm = vm;
	d->slot = slot;
	d->config[PCI_INTERRUPT_LINE] = (uint8_t)(PCI_INTX_GSI_BASE + slot % 4);
	put16(d->config + PCI_COMMAND, PCI_COMMAND_MEMORY);
	bus->slots[slot] = d;
	pthread_mutex_lock(&d->lock);
	update_mappings(d);
	pthread_mutex_unlock(&d->lock);
	return 0;
}

/* ---- state ---- */

void pci_dev_save(struct pci_dev *d, struct state_buf *b)
{
	pthread_mutex_lock(&d->lock);
	sbuf_put(b, d->config, sizeof(d->config));
	sbuf_u32(b, (uint32_t)d->msix_vectors);
	for (int v = 0; v < d->msix_vectors; v++) {
		sbuf_u32(b, d->msix[v].addr_lo);
		sbuf_u32(b, d->msix[v].addr_hi);
		sbuf_u32(b, d->msix[v].data);
		sbuf_u32(b, d->msix[v].ctrl);
	}
	sbuf_u64(b, d->msix_pending);
	sbuf_u32(b, (uint32_t)d->intx_want); /* the line follows from it and the config space */
	pthread_mutex_unlock(&d->lock);
}

int pci_dev_load(struct pci_dev *d, struct state_cursor *c, char *err, size_t errlen)
{
	uint8_t config[PCI_CONFIG_SIZE];
	struct pci_msix_vector vec[PCI_MSIX_MAX_VECTORS];

	if (!scur_get(c, config, sizeof(config))) {
		errf(err, errlen, "%s: PCI state truncated", d->name);
		return -EINVAL;
	}
	uint32_t nvec = scur_u32(c);
	if (c->failed || nvec != (uint32_t)d->msix_vectors) {
		errf(err, errlen, "%s: PCI state has %u MSI-X vectors, this device %d", d->name, nvec, d->msix_vectors);
		return -EINVAL;
	}
	for (uint32_t v = 0; v < nvec; v++) {
		vec[v].addr_lo = scur_u32(c);
		vec[v].addr_hi = scur_u32(c);
		vec[v].data = scur_u32(c);
		vec[v].ctrl = scur_u32(c) & PCI_MSIX_VECTOR_CTRL_MASK;
	}
	uint64_t pending = scur_u64(c);
	uint32_t intx = scur_u32(c);
	if (c->failed || intx > 1 || (nvec < 64 && (pending >> nvec))) {
		errf(err, errlen, "%s: PCI state truncated or malformed", d->name);
		return -EINVAL;
	}
	/* The function must be the same one: ids, class and capabilities. */
	if (memcmp(config, d->config, 4) || memcmp(config + PCI_REVISION_ID, d->config + PCI_REVISION_ID, 4) ||
	    memcmp(config + PCI_SUBSYSTEM_VENDOR_ID, d->config + PCI_SUBSYSTEM_VENDOR_ID, 4) ||
	    config[PCI_CAPABILITY_LIST] != d->config[PCI_CAPABILITY_LIST]) {
		errf(err, errlen, "%s: PCI state is for another device (id %02x%02x:%02x%02x)", d->name, config[1], config[0],
		     config[3], config[2]);
		return -EINVAL;
	}
	pthread_mutex_lock(&d->lock);
	/* Read-only bytes stay as this device has them; BAR size bits are re-applied. */
	for (unsigned o = 0; o < PCI_CONFIG_SIZE; o++) {
		int bar;
		bool high;
		if (is_bar_register(d, o & ~3u, &bar, &high)) {
			if (bar >= 0)
				d->config[o] = config[o];
			continue;
		}
		d->config[o] = (uint8_t)((d->config[o] & ~d->wmask[o]) | (config[o] & d->wmask[o]));
	}
	d->config[PCI_STATUS] = config[PCI_STATUS];
	for (int bar = 0; bar < PCI_BARS; bar++) {
		if (!d->bar_size[bar])
			continue;
		uint64_t mask = ~(d->bar_size[bar] - 1);
		put32(d->config + PCI_BAR0 + 4 * bar,
		      (cfg32(d, PCI_BAR0 + 4 * bar) & (uint32_t)mask & ~0xfu) | (d->bar_64[bar] ? PCI_BAR_MEM_64 : 0));
		if (d->bar_64[bar])
			put32(d->config + PCI_BAR0 + 4 * (bar + 1), cfg32(d, PCI_BAR0 + 4 * (bar + 1)) & (uint32_t)(mask >> 32));
	}
	for (uint32_t v = 0; v < nvec; v++) {
		d->msix[v].addr_lo = vec[v].addr_lo;
		d->msix[v].addr_hi = vec[v].addr_hi;
		d->msix[v].data = vec[v].data;
		d->msix[v].ctrl = vec[v].ctrl;
		d->msix[v].routed = false; /* routed again on first use */
	}
	d->msix_pending = pending;
	update_mappings(d);
	pthread_mutex_unlock(&d->lock);
	if (intx)
		pci_intx_set(d, 1);
	return 0;
}

/* ---- the bus ---- */

int pci_bus_create(struct vm *vm)
{
	struct pci_bus *bus = calloc(1, sizeof(*bus));
	if (!bus)
		return -ENOMEM;
	bus->vm = vm;
	bus->next_bar = PCI_MMIO_BASE;
	pthread_mutex_init(&bus->lock, NULL);
	routes_default(bus);
	bus->config_ports = (struct device){ .name = "pci-config", .port_base = PCI_CONFIG_ADDRESS_PORT,
					     .port_count = 8, .opaque = bus, .io = config_port_io };
	pci_dev_init(&bus->host_bridge, "host-bridge", PCI_HOST_BRIDGE_VENDOR, PCI_HOST_BRIDGE_DEVICE, 0,
		     PCI_CLASS_BRIDGE_HOST, PCI_HOST_BRIDGE_VENDOR, 0x1100);
	bus->host_bridge.config[PCI_INTERRUPT_PIN] = 0;
	bus->host_bridge.vm = vm;
	bus->host_bridge.slot = 0;
	bus->slots[0] = &bus->host_bridge;
	vm->pci = bus;
	return vm_register_device(vm, &bus->config_ports);
}

void pci_dev_remove(struct pci_dev *d)
{
	struct pci_bus *bus = d->vm ? d->vm->pci : NULL;
	if (!bus || d->slot < 0 || bus->slots[d->slot] != d)
		return;
	pthread_mutex_lock(&bus->lock);
	d->intx_want = 0;
	intx_apply_locked(bus, d);
	bus->slots[d->slot] = NULL;
	pthread_mutex_unlock(&bus->lock);
	for (int v = 0; v < d->msix_vectors; v++) {
		if (d->msix[v].irqfd >= 0)
			close(d->msix[v].irqfd); /* KVM lets go of an irqfd whose eventfd closes */
		d->msix[v].irqfd = -1;
	}
	d->slot = -1;
}

void pci_bus_destroy(struct vm *vm)
{
	struct pci_bus *bus = vm->pci;
	if (!bus)
		return;
	/* Devices are removed by their owners before they are freed
	 * (pci_dev_remove); what is left here is only ever looked at, never
	 * freed memory. */
	for (int s = 0; s < PCI_SLOTS; s++)
		if (bus->slots[s] && bus->slots[s] != &bus->host_bridge)
			pci_dev_remove(bus->slots[s]);
	free(bus);
	vm->pci = NULL;
}
