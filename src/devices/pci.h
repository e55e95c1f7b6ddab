/* The glide machine's PCI bus: one host bridge (bus 0, 32 slots, one
 * function each), configuration space through ports 0xCF8/0xCFC and
 * through ECAM (MMCONFIG, described in the ACPI MCFG table), memory BARs
 * placed by the monitor like firmware would (the guest may move them), and
 * MSI-X delivered through KVM irqfds with INTx as the fallback.
 *
 * Guest-physical layout (inside the 3-4 GiB hole of vmm/memory.h):
 *   0xC0000000 - 0xDFFFFFFF   memory BARs (PCI_MMIO_BASE, PCI_MMIO_SIZE)
 *   0xE0000000 - 0xE00FFFFF   ECAM for bus 0 (PCI_ECAM_BASE)
 *   0xFEC00000                IOAPIC, 0xFEE00000 LAPIC (in-kernel)
 * INTx: slot n pin A is IOAPIC GSI PCI_INTX_GSI_BASE + n % 4 (16..19). */
#ifndef GLIDE_DEVICES_PCI_H
#define GLIDE_DEVICES_PCI_H
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

struct vm;
struct state_buf;

#define PCI_CONFIG_ADDRESS_PORT 0xcf8
#define PCI_CONFIG_DATA_PORT 0xcfc
#define PCI_MMIO_BASE 0xC0000000ULL
#define PCI_MMIO_SIZE 0x20000000ULL
#define PCI_ECAM_BASE 0xE0000000ULL
#define PCI_ECAM_SIZE 0x100000ULL /* bus 0: 32 devices x 8 functions x 4 KiB */
#define PCI_SLOTS 32
#define PCI_BARS 6
#define PCI_CONFIG_SIZE 256       /* conventional configuration space (ECAM reads the rest as 0) */
#define PCI_INTX_GSI_BASE 16

/* Configuration-space offsets and bits used here. */
#define PCI_VENDOR_ID 0x00
#define PCI_DEVICE_ID 0x02
#define PCI_COMMAND 0x04
#define PCI_COMMAND_IO 0x1
#define PCI_COMMAND_MEMORY 0x2
#define PCI_COMMAND_MASTER 0x4
#define PCI_COMMAND_INTX_DISABLE 0x400
#define PCI_STATUS 0x06
#define PCI_STATUS_INTERRUPT 0x08
#define PCI_STATUS_CAP_LIST 0x10
#define PCI_REVISION_ID 0x08
#define PCI_CLASS_PROG 0x09
#define PCI_HEADER_TYPE 0x0e
#define PCI_BAR0 0x10
#define PCI_SUBSYSTEM_VENDOR_ID 0x2c
#define PCI_SUBSYSTEM_ID 0x2e
#define PCI_CAPABILITY_LIST 0x34
#define PCI_INTERRUPT_LINE 0x3c
#define PCI_INTERRUPT_PIN 0x3d
#define PCI_CAP_ID_VNDR 0x09
#define PCI_CAP_ID_MSIX 0x11
#define PCI_BAR_MEM_64 0x4

#define PCI_MSIX_MAX_VECTORS 64
#define PCI_MSIX_ENTRY_SIZE 16
#define PCI_MSIX_FLAGS_ENABLE 0x8000
#define PCI_MSIX_FLAGS_MASKALL 0x4000
#define PCI_MSIX_VECTOR_CTRL_MASK 0x1

struct pci_dev;

struct pci_dev_ops {
	/* A guest access inside BAR `bar` (MSI-X table and PBA are handled by
	 * the bus). Called from vCPU threads with the device's lock held. */
	void (*bar_access)(struct pci_dev *d, int bar, uint64_t offset, bool is_write, uint8_t *data, int len);
	/* The guest moved a BAR or switched memory decoding (gpa 0: not decoded now). Lock held. */
	void (*bar_mapped)(struct pci_dev *d, int bar, uint64_t gpa);
};

/* One MSI-X vector: the table entry the guest wrote, and KVM's side. */
struct pci_msix_vector {
	uint32_t addr_lo, addr_hi, data, ctrl;
	int gsi;        /* KVM GSI routed to this vector, -1 before first use */
	int irqfd;      /* eventfd bound to gsi with KVM_IRQFD */
	bool routed;    /* the routing entry holds the current address/data */
};

struct pci_dev {
	const char *name;    /* "virtio-net" ... (set by the device) */
	int slot;            /* 0..31, set by pci_dev_add */
	struct vm *vm;
	uint8_t config[PCI_CONFIG_SIZE];
	uint8_t wmask[PCI_CONFIG_SIZE];   /* bits the guest may write (BARs excluded: sized by bar_size) */
	uint64_t bar_size[PCI_BARS];      /* 0: unused; memory BARs, power of two, at least 4 KiB */
	bool bar_64[PCI_BARS];            /* 64-bit BAR (uses the next BAR's register too) */
	uint64_t bar_mapped_gpa[PCI_BARS]; /* what the device was last told (bar_mapped) */
	uint8_t next_cap;                 /* where the next capability goes (grows from 0x40) */
	uint8_t last_cap;
	/* MSI-X, when pci_msix_init was called */
	int msix_vectors;
	int msix_bar;
	uint32_t msix_table_offset, msix_pba_offset;
	uint8_t msix_cap;
	struct pci_msix_vector msix[PCI_MSIX_MAX_VECTORS];
	uint8_t cfg_window_cap;           /* a BAR window in configuration space (pci_dev_set_cfg_window), 0: none */
	uint64_t msix_pending;            /* PBA: a masked vector fired */
	int intx_want;                    /* the function's INTx condition (PCI status bit 3) */
	int intx_level;                   /* INTA# as driven: intx_want unless INTx is disabled or MSI-X on */
	const struct pci_dev_ops *ops;
	void *opaque;
	pthread_mutex_t lock;            /* config space, BARs and MSI-X */
};

/* Creates the bus for a VM: the host bridge at slot 0, the config ports
 * and ECAM. Called by devices_init before any PCI device is added. */
int pci_bus_create(struct vm *vm);
void pci_bus_destroy(struct vm *vm);
/* Fills the header of a type 0 function (vendor, device, class, subsystem,
 * interrupt pin A) and places nothing yet. */
void pci_dev_init(struct pci_dev *d, const char *name, uint16_t vendor, uint16_t device, uint8_t revision,
		  uint32_t class_code, uint16_t subsys_vendor, uint16_t subsys_id);
/* Declares memory BAR `bar` of `size` bytes (a power of two, >= 4 KiB). */
void pci_dev_set_bar(struct pci_dev *d, int bar, uint64_t size, bool is_64);
/* Adds a capability of `len` bytes (header included) with the given id;
 * returns its offset in configuration space, or 0 when it does not fit. */
uint8_t pci_dev_add_cap(struct pci_dev *d, uint8_t id, uint8_t len);
/* MSI-X with `vectors` entries: table at table_offset and PBA at
 * pba_offset, both inside BAR `bar`. Returns 0 or -errno. */
int pci_msix_init(struct pci_dev *d, int vectors, int bar, uint32_t table_offset, uint32_t pba_offset);
/* A window into the BARs through configuration space, in the capability at
 * `cap` (virtio's VIRTIO_PCI_CAP_PCI_CFG): the driver writes a BAR number
 * (byte +4), an offset (+8) and a length of 1, 2 or 4 (+12); reading or
 * writing the data dword (+16) then reads or writes the BAR there, as an
 * MMIO access would, whether or not the BAR is decoded. */
#define PCI_CFG_WINDOW_BAR 4
#define PCI_CFG_WINDOW_OFFSET 8
#define PCI_CFG_WINDOW_LENGTH 12
#define PCI_CFG_WINDOW_DATA 16
void pci_dev_set_cfg_window(struct pci_dev *d, uint8_t cap);
/* Puts the device in the first free slot and assigns its BARs (memory
 * decoding left to the guest, as firmware-assigned but disabled BARs are
 * in QEMU+SeaBIOS: glide enables it, so a guest without a PCI enumerator
 * can use the BARs at once). 0, or -errno with err set. */
int pci_dev_add(struct vm *vm, struct pci_dev *d, char *err, size_t errlen);
/* Takes the device off the bus (its INTx condition dropped, its MSI-X
 * irqfds closed) before its owner frees it. */
void pci_dev_remove(struct pci_dev *d);

/* Interrupts. pci_msix_enabled: MSI-X is on (the device should use it).
 * pci_msix_notify: fire a vector (or mark it pending when masked).
 * pci_intx_set: the function's INTx condition; INTA# follows it unless the
 * driver disabled INTx or enabled MSI-X. Thread-safe. */
bool pci_msix_enabled(struct pci_dev *d);
void pci_msix_notify(struct pci_dev *d, int vector);
void pci_intx_set(struct pci_dev *d, int level);

/* Where a memory BAR is decoded now, 0 when not (memory decoding off or not placed). */
uint64_t pci_bar_gpa(struct pci_dev *d, int bar);

/* MMIO exits of a vCPU: ECAM and BARs. Returns false when nothing decodes gpa. */
bool pci_mmio(struct vm *vm, uint64_t gpa, bool is_write, uint8_t *data, int len);

/* Device state common to every PCI function: configuration space, MSI-X
 * table and PBA, INTx level. Saved inside the device's own section. */
void pci_dev_save(struct pci_dev *d, struct state_buf *b);
struct state_cursor;
/* Restores what pci_dev_save wrote; checks ids and BAR sizes against the
 * device as created here. Re-routes MSI-X and re-maps BARs. */
int pci_dev_load(struct pci_dev *d, struct state_cursor *c, char *err, size_t errlen);

/* The PCI devices of a VM by slot (NULL where empty), for the ACPI tables and tests. */
struct pci_dev *pci_slot(struct vm *vm, int slot);
#endif
