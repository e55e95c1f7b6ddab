/* The VM monitor's central object: one KVM VM with its RAM, vCPU threads,
 * devices and run state (created/masked, running, paused, shut down). */
#ifndef GLIDE_VMM_VM_H
#define GLIDE_VMM_VM_H
#include <linux/kvm.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>
#include "vmm/memory.h"
#include "vmm/boot.h"

#define VM_MAX_VCPUS 64
#define VM_MAX_DEVICES 16
#define VM_NAME_MAX 64
#define VM_MAX_NICS 4
#define VM_MAX_DISKS 4

struct vm;

/* Configuration that travels with the VM (snapshot, migration, host agent). */
struct vm_config {
	char name[VM_NAME_MAX];
	uint64_t memory_bytes;
	int vcpus;
	/* CPUID feature masks applied on top of KVM_GET_SUPPORTED_CPUID (EVC):
	 * leaf 1 ECX/EDX, leaf 7.0 EBX/ECX/EDX, leaf 0x80000001 ECX/EDX. All ones = no masking. */
	uint32_t cpuid_mask[7];
	char evc_level[32];
	/* Device shape (devices/devices.h): virtio NICs by MAC, virtio disks by size. */
	int nnics, ndisks;
	uint8_t nic_mac[VM_MAX_NICS][6];
	uint64_t disk_bytes[VM_MAX_DISKS];
	bool disk_readonly[VM_MAX_DISKS];
};


enum vm_run_state {
	VM_STATE_MASKED,   /* created, not running (prepared for restore / incoming migration) */
	VM_STATE_RUNNING,
	VM_STATE_PAUSED,
	VM_STATE_SHUTDOWN,
};

struct vcpu {
	struct vm *vm;
	int index;
	int fd;
	struct kvm_run *run;
	size_t run_size;
	pthread_t thread;
	bool thread_started;
	struct kvm_cpuid2 *cpuid;
	/* statistics */
	uint64_t exits, io_exits, mmio_exits;
	bool exit_incomplete;      /* the last exit was a port or MMIO access KVM completes at the next KVM_RUN */
	uint64_t throttle_ns;      /* guest run time taken by SDPS */
	uint64_t throttle_run_ns;  /* time run in SDPS slices that ended in a sleep */
	uint64_t throttle_max_ns;  /* atomic: its longest single sleep (reset by each migration's SDPS) */
	volatile uint64_t throttle_run_since; /* SDPS: start of the current run slice (monotonic ns), 0: none yet */
	volatile bool throttle_asleep;        /* SDPS: sleeping off its slice */
	uint64_t throttle_late_kicks;         /* atomic: slices the SDPS watchdog had to end (the timer's kick was lost) */
	timer_t slice_timer;         /* SDPS: ends the run slice with a kick (the vCPU thread's own) */
	bool slice_timer_ok;
};

/* A port-I/O device. Devices keep their own state and save/load it as a state section. */
struct device {
	const char *name;
	uint16_t port_base, port_count;
	void *opaque;
	/* data has `size` bytes; is_write tells the direction. */
	void (*io)(struct vm *vm, struct device *dev, uint16_t port, bool is_write, uint8_t *data, int size);
};

/* What a device with a thread of its own needs from the VM's life: stop
 * (pause: no guest memory touched until resume), go on, and go away. */
struct vm_device_hook {
	void (*pause)(void *opaque);
	void (*resume)(void *opaque);
	void *opaque;
};
#define VM_MAX_DEVICE_HOOKS 16

struct pci_bus;
struct virtio_dev;

struct vm {
	int kvm_fd, vm_fd;
	struct vm_config cfg;
	struct guest_memory mem;
	int nvcpus;
	struct vcpu vcpus[VM_MAX_VCPUS];
	struct device *devices[VM_MAX_DEVICES];
	int ndevices;

	/* MSRs saved and restored for every vCPU (readable ones from KVM_GET_MSR_INDEX_LIST). */
	uint32_t *msr_indices;
	int nmsrs;
	uint32_t xsave_size;       /* bytes of struct kvm_xsave (XSAVE2 may be larger than 4 KiB) */
	bool have_sregs2;
	uint32_t tsc_khz;

	pthread_mutex_t lock;
	pthread_cond_t cond;
	enum vm_run_state state;
	bool pause_requested;
	int vcpus_paused;
	bool quit;
	int exit_status;
	char exit_reason[256];
	uint64_t started_ns;      /* monotonic time the VM first ran (this process) */
	uint64_t paused_at_ns;

	/* SDPS: when throttle_sleep_ns != 0, every vCPU sleeps that long after
	 * each throttle_period_ns of running (its own slice timer kicks it out
	 * of KVM_RUN when the slice is over). */
	volatile uint64_t throttle_sleep_ns;
	volatile uint64_t throttle_period_ns;

	/* Pages written by the monitor itself (device emulation); merged by the migration engine. */
	uint64_t *user_dirty_bitmap;
	pthread_mutex_t user_dirty_lock;

	struct uart *uart;         /* the COM1 device (devices/uart.c) */
	int serial_fd;
	struct pci_bus *pci;       /* devices/pci.c */
	struct vm_device_hook device_hooks[VM_MAX_DEVICE_HOOKS];
	int ndevice_hooks;
	bool devices_running;      /* the hooks' last call was resume */
	bool arriving;             /* an incoming migration: disks are locked at the switchover */
	struct virtio_dev *nics[VM_MAX_NICS];   /* devices/virtio_net.c */
	struct virtio_dev *disks[VM_MAX_DISKS]; /* devices/virtio_blk.c */
};

struct vm_create_args {
	struct vm_config cfg;
	const char *serial_path;  /* NULL: no serial output; "-": stdout */
};

int vm_create(struct vm *vm, const struct vm_create_args *args, char *err, size_t errlen);
void vm_destroy(struct vm *vm);
int vm_boot(struct vm *vm, const struct boot_plan *plan, char *err, size_t errlen);
int vm_start_vcpus(struct vm *vm, char *err, size_t errlen); /* starts threads; state RUNNING */
int vm_pause(struct vm *vm);   /* stops every vCPU and waits until all are out of KVM_RUN */
int vm_resume(struct vm *vm);
/* vCPU 0's TSC as the guest reads it now (KVM_GET_MSRS IA32_TSC); call it only while
 * the VM is paused or masked. 0 on success, or a negative errno. */
int vm_guest_tsc(struct vm *vm, uint64_t *tsc);
void vm_request_exit(struct vm *vm, int status, const char *reason);
int vm_wait_exit(struct vm *vm); /* blocks until quit, joins vCPUs, returns exit status */
void vm_kick_vcpus(struct vm *vm);
void vm_kick_vcpu(struct vm *vm, int index); /* out of KVM_RUN, back at the top of its loop */
int vm_register_device(struct vm *vm, struct device *dev);
/* Devices with threads: paused with the VM's vCPUs (after them) and
 * resumed with them (before them). They start paused. */
int vm_add_pause_hook(struct vm *vm, void (*pause)(void *), void (*resume)(void *), void *opaque);
const char *vm_state_name(enum vm_run_state s);
int vm_set_dirty_logging(struct vm *vm, bool on);
void vm_mark_dirty(struct vm *vm, uint64_t gpa, uint64_t len);

/* CPUID (cpuid.c) */
int cpuid_build(struct vm *vm, char *err, size_t errlen);
/* What cpuid_build does to each vCPU's copy of KVM_GET_SUPPORTED_CPUID: ANDs
 * leaf 1 ECX/EDX, leaf 7.0 EBX/ECX/EDX and leaf 0x80000001 ECX/EDX with
 * mask (struct vm_config order), puts vCPU `index`'s APIC ID and the vCPU
 * count (at most 255) in leaf 1 EBX bits 31-24 and 23-16, and its x2APIC ID
 * in EDX of leaves 0xb and 0x1f. Touches nothing else. */
void cpuid_apply(struct kvm_cpuid2 *c, const uint32_t mask[7], int index, int count); /* mask: CPUID_MASK_REGS, vmm/config.h */
void cpuid_mask_all_ones(struct vm_config *cfg);
/* Names the features `want` has and `have` lacks (comma separated); returns how many. */
int cpuid_missing_features(const struct kvm_cpuid2 *want, const struct kvm_cpuid2 *have, char *out, size_t len);
const char *cpuid_feature_name(uint32_t leaf, char reg, int bit);
#endif
