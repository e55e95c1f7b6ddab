/* Devices of the glide machine: port-I/O ones (COM1 UART, i8042 reset
 * line, debug-exit port, POST port), the PCI bus (pci.h) and the virtio
 * NICs and disks a VM is given with --nic and --disk. */
#ifndef GLIDE_DEVICES_H
#define GLIDE_DEVICES_H
#include "devices/blk_io.h"
#include "vmm/vm.h"

#define UART_COM1_PORT 0x3f8
#define UART_COM1_IRQ 4
#define I8042_DATA_PORT 0x60
#define I8042_CMD_PORT 0x64
#define I8042_CMD_RESET 0xfe
#define DEBUG_EXIT_PORT 0xf4  /* like QEMU's isa-debug-exit: status = (value << 1) | 1 */
#define POST_PORT 0x80

/* A kind of device the machine offers. Each registers itself (a
 * constructor next to its code); devices_init() creates one of each for a
 * VM, and the host agent reports the names as the devices this host has. */
struct device_type {
	const char *name;
	int (*create)(struct vm *vm, int serial_fd); /* adds its device(s) and state to the VM */
};
#define DEVICE_TYPES_MAX 16
int device_type_register(const struct device_type *t);
/* The registered device types, in registration order; returns how many (at most max). */
int device_types(const struct device_type **out, int max);

/* Creates every registered device for the VM. serial_fd < 0 discards COM1 output. */
int devices_init(struct vm *vm, int serial_fd);

/* Host-side backends of a VM's NICs and disks: what `--nic` and `--disk`
 * say on this host. They do not travel with the VM (the destination has
 * its own); the device shape (MACs, disk sizes) does, in struct vm_config. */
struct nic_spec {
	char tap[16];        /* tap=NAME: an existing or new tap device */
	char bridge[16];     /* bridge=BR: a tap of the monitor's own, attached to BR */
	int vlan;            /* 0: none, else 1..4094 (access port on a VLAN-filtering bridge) */
	uint64_t rate;       /* bytes/s each way, 0: unlimited */
	int queues;          /* queue pairs (virtio-net multiqueue, a multi-queue tap): 0 or 1 for one, at most 8 */
	bool has_mac;
	uint8_t mac[6];
	/* Port security, as a vSwitch port group's (each rejects unless accepted):
	 * frames sent from another source MAC than the NIC's effective one, a
	 * guest-set MAC receiving (else all inbound is dropped while the guest's
	 * MAC differs from the configured one), and frames for other unicast MACs
	 * reaching a guest that asked for promiscuous mode. */
	bool accept_forged, accept_mac_changes, accept_promiscuous;
};
struct disk_spec {
	char path[4096];
	bool readonly;
	bool direct;         /* O_DIRECT */
	enum blk_io_engine aio; /* aio=sync|threads|io_uring; BLK_IO_DEFAULT: the measured best */
};
struct vm_device_specs {
	int nnics, ndisks;
	struct nic_spec nics[VM_MAX_NICS];
	struct disk_spec disks[VM_MAX_DISKS];
};
/* --nic bridge=BR[,vlan=N][,mac=MAC][,rate=RATE][,queues=N] | tap=NAME[,mac=MAC][,rate=RATE][,queues=N], and
 * [,forged-transmits=accept|reject][,mac-changes=accept|reject][,promiscuous=accept|reject] */
int nic_spec_parse(const char *s, struct nic_spec *n, char *err, size_t errlen);
/* --disk PATH[,readonly][,direct] */
int disk_spec_parse(const char *s, struct disk_spec *d, char *err, size_t errlen);
/* A new VM: its device shape from the specs (a MAC generated where none
 * was given, disk sizes from the files). */
int devices_config_from_specs(struct vm_config *cfg, struct vm_device_specs *specs, char *err, size_t errlen);
/* A VM arriving (migration, snapshot): its shape must match this host's
 * specs (same number of NICs and disks, the same MAC where one was given,
 * the same disk sizes and read-only flags). */
int devices_config_check(const struct vm_config *cfg, const struct vm_device_specs *specs, char *err, size_t errlen);
/* Creates the virtio NICs and disks of vm->cfg with the host's specs
 * (after devices_init). 0, or -errno with err set. */
int devices_create_virtio(struct vm *vm, const struct vm_device_specs *specs, char *err, size_t errlen);
/* {"nics": [{index, mac, ifname, counters...}], "disks": [{index, path, ...}]}
 * for the monitor's status. */
struct json_t;
struct json_t *devices_status_json(struct vm *vm);
/* Stops device threads and frees what devices_create_virtio made (vm_destroy calls it). */
void devices_destroy(struct vm *vm);
#endif
