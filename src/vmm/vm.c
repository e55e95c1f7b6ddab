/* VM lifecycle: create the KVM VM (memory slots first, then irqchip and PIT,
 * as the order matters for speed), vCPUs and their threads, and the pause /
 * resume machinery used by snapshot, SDPS and switchover.
 *
 * Pausing: set pause_requested, kick every vCPU out of KVM_RUN with
 * immediate_exit + a signal, and wait until each has parked itself on the
 * condition variable. A kick that races with entering KVM_RUN is caught by
 * immediate_exit, which the vCPU clears only before it re-checks the flags. */
#include "vmm/vm.h"
#include "devices/devices.h"
#include "vmm/vcpu.h"
#include "common/util.h"
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/sysinfo.h>
#include <unistd.h>

#define KVM_TSS_ADDR 0xfffbd000ULL
#define KVM_IDENTITY_MAP_ADDR 0xfffbc000ULL
#define MSR_IA32_TSC 0x10
#define MSR_MTRRCAP 0xfe
#define MTRRCAP_VCNT_MASK 0xffu
#define MTRRCAP_FIXED (1u << 8)
#define MSR_MTRR_DEF_TYPE 0x2ff
#define MSR_MTRR_PHYS_BASE(i) (0x200 + 2 * (i))
#define MSR_MTRR_PHYS_MASK(i) (0x201 + 2 * (i))
#define MSR_MTRR_VAR_MAX 32u
#define MSR_MTRR_ARCH_MAX (1 + 11 + 2 * MSR_MTRR_VAR_MAX) /* default type, fixed ranges, variable pairs */
#define MSR_MCG_CAP 0x179
#define MCG_CAP_COUNT_MASK 0xffu
#define MCG_CAP_CMCI (1u << 10)
#define MSR_MC0_CTL 0x400
#define MSR_MC0_CTL2 0x280
#define MSR_MCE_BANKS_MAX 32u
#define MSR_MCE_ARCH_MAX (5 * MSR_MCE_BANKS_MAX) /* CTL, STATUS, ADDR, MISC, CTL2 per bank */

const char *vm_state_name(enum vm_run_state s)
{
	switch (s) {
	case VM_STATE_MASKED: return "masked";
	case VM_STATE_RUNNING: return "running";
	case VM_STATE_PAUSED: return "paused";
	case VM_STATE_SHUTDOWN: return "shutdown";
	}
	return "unknown";
}

static int vm_set_slots(struct vm *vm, bool dirty_log)
{
	for (int i = 0; i < vm->mem.nregions; i++) {
		struct guest_ram_region *r = &vm->mem.regions[i];
		struct kvm_userspace_memory_region reg = {
			.slot = r->slot,
			.flags = dirty_log ? KVM_MEM_LOG_DIRTY_PAGES : 0,
			.guest_phys_addr = r->gpa,
			.memory_size = r->size,
			.userspace_addr = (uintptr_t)r->host,
		};
		if (ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &reg) < 0)
			return -errno;
	}
	return 0;
}

int vm_set_dirty_logging(struct vm *vm, bool on)
{
	return vm_set_slots(vm, on);
}

void vm_mark_dirty(struct vm *vm, uint64_t gpa, uint64_t len)
{
	if (!vm->user_dirty_bitmap || !len)
		return;
	pthread_mutex_lock(&vm->user_dirty_lock);
	for (int i = 0; i < vm->mem.nregions; i++) {
		struct guest_ram_region *r = &vm->mem.regions[i];
		uint64_t start = MAX(gpa, r->gpa), end = MIN(gpa + len, r->gpa + r->size);
		for (uint64_t a = start & ~(GUEST_PAGE_SIZE - 1); a < end; a += GUEST_PAGE_SIZE) {
			uint64_t pfn = (r->ram_offset + a - r->gpa) / GUEST_PAGE_SIZE;
			vm->user_dirty_bitmap[pfn / 64] |= 1ULL << (pfn % 64);
		}
	}
	pthread_mutex_unlock(&vm->user_dirty_lock);
}

static bool vm_msr_readable(int vcpu_fd, uint32_t index, uint64_t *value)
{
	struct { struct kvm_msrs h; struct kvm_msr_entry e; } one = { .h.nmsrs = 1 };
	one.e.index = index;
	if (ioctl(vcpu_fd, KVM_GET_MSRS, &one) != 1)
		return false;
	if (value)
		*value = one.e.data;
	return true;
}

static void vm_msr_add(struct vm *vm, int vcpu_fd, uint32_t index, int max)
{
	for (int i = 0; i < vm->nmsrs; i++)
		if (vm->msr_indices[i] == index)
			return;
	if (vm->nmsrs < max && vm_msr_readable(vcpu_fd, index, NULL))
		vm->msr_indices[vm->nmsrs++] = index;
}

/* The MSRs saved and restored for every vCPU: the readable ones of
 * KVM_GET_MSR_INDEX_LIST (TSC first), and the architectural MSRs that KVM
 * leaves out of that list because user space is expected to know them (as
 * QEMU does): the MTRRs that MTRRCAP announces (a guest kernel programs
 * them; without them a restored guest finds its MTRRs off) and the MCE
 * bank registers of MCG_CAP (a guest enables reporting in MCi_CTL; without
 * them errors KVM injects after a restore are dropped). */
static int vm_probe_msrs(struct vm *vm, int vcpu_fd)
{
	struct kvm_msr_list probe = { .nmsrs = 0 }, *list;
	uint64_t mtrrcap = 0, mcg_cap = 0;
	int max;

	if (ioctl(vm->kvm_fd, KVM_GET_MSR_INDEX_LIST, &probe) < 0 && errno != E2BIG)
		return -errno;
	list = calloc(1, sizeof(*list) + probe.nmsrs * sizeof(uint32_t));
	if (!list)
		return -ENOMEM;
	list->nmsrs = probe.nmsrs;
	if (ioctl(vm->kvm_fd, KVM_GET_MSR_INDEX_LIST, list) < 0) {
		free(list);
		return -errno;
	}
	max = (int)list->nmsrs + 1 + MSR_MTRR_ARCH_MAX + MSR_MCE_ARCH_MAX;
	vm->msr_indices = calloc((size_t)max, sizeof(uint32_t));
	if (!vm->msr_indices) {
		free(list);
		return -ENOMEM;
	}
	/* TSC first: it must be restored before anything derived from it. */
	vm->msr_indices[vm->nmsrs++] = MSR_IA32_TSC;
	for (uint32_t i = 0; i < list->nmsrs; i++)
		vm_msr_add(vm, vcpu_fd, list->indices[i], max);
	free(list);

	if (vm_msr_readable(vcpu_fd, MSR_MTRRCAP, &mtrrcap)) {
		vm_msr_add(vm, vcpu_fd, MSR_MTRR_DEF_TYPE, max);
		if (mtrrcap & MTRRCAP_FIXED) {
			/* FIX64K_00000, FIX16K_80000 and _A0000, FIX4K_C0000 .. _F8000 */
			static const uint32_t fixed[] = { 0x250, 0x258, 0x259, 0x268, 0x269, 0x26a, 0x26b,
							  0x26c, 0x26d, 0x26e, 0x26f };
			for (size_t i = 0; i < ARRAY_SIZE(fixed); i++)
				vm_msr_add(vm, vcpu_fd, fixed[i], max);
		}
		for (uint32_t i = 0; i < MIN(mtrrcap & MTRRCAP_VCNT_MASK, MSR_MTRR_VAR_MAX); i++) {
			vm_msr_add(vm, vcpu_fd, MSR_MTRR_PHYS_BASE(i), max);
			vm_msr_add(vm, vcpu_fd, MSR_MTRR_PHYS_MASK(i), max);
		}
	}
	if (vm_msr_readable(vcpu_fd, MSR_MCG_CAP, &mcg_cap)) {
		for (uint32_t bank = 0; bank < MIN(mcg_cap & MCG_CAP_COUNT_MASK, MSR_MCE_BANKS_MAX); bank++) {
			for (uint32_t reg = 0; reg < 4; reg++) /* CTL, STATUS, ADDR, MISC */
				vm_msr_add(vm, vcpu_fd, MSR_MC0_CTL + 4 * bank + reg, max);
			if (mcg_cap & MCG_CAP_CMCI)
				vm_msr_add(vm, vcpu_fd, MSR_MC0_CTL2 + bank, max);
		}
	}
	return 0;
}

int vm_create(struct vm *vm, const struct vm_create_args *args, char *err, size_t errlen)
{
	struct sysinfo si;
	int rc, mmap_size;

	memset(vm, 0, sizeof(*vm));
	vm->kvm_fd = vm->vm_fd = vm->serial_fd = -1;
	vm->cfg = args->cfg;
	pthread_mutex_init(&vm->lock, NULL);
	pthread_cond_init(&vm->cond, NULL);
	pthread_mutex_init(&vm->user_dirty_lock, NULL);
	vm->state = VM_STATE_MASKED;

	if (vm->cfg.vcpus < 1 || vm->cfg.vcpus > VM_MAX_VCPUS) {
		errf(err, errlen, "--vcpus must be between 1 and %d (got %d)", VM_MAX_VCPUS, vm->cfg.vcpus);
		return -EINVAL;
	}
	if (vm->cfg.memory_bytes < (2ULL << 20) || vm->cfg.memory_bytes % GUEST_PAGE_SIZE) {
		errf(err, errlen, "--memory must be at least 2M and a multiple of 4K");
		return -EINVAL;
	}
	if (sysinfo(&si) == 0 && vm->cfg.memory_bytes > (uint64_t)si.totalram * si.mem_unit) {
		char a[32], b[32];
		errf(err, errlen, "--memory %s is larger than this host's RAM (%s)",
		     format_size(vm->cfg.memory_bytes, a, sizeof(a)),
		     format_size((uint64_t)si.totalram * si.mem_unit, b, sizeof(b)));
		return -ENOMEM;
	}

	const char *kvm_path = getenv("GLIDE_KVM_DEVICE"); /* tests point it elsewhere */
	if (!kvm_path || !*kvm_path)
		kvm_path = "/dev/kvm";
	vm->kvm_fd = open(kvm_path, O_RDWR | O_CLOEXEC);
	if (vm->kvm_fd < 0) {
		rc = -errno;
		if (rc == -ENOENT)
			errf(err, errlen, "cannot open %s: no such device (load the kvm module or enable virtualization)", kvm_path);
		else if (rc == -EACCES || rc == -EPERM)
			errf(err, errlen, "cannot open %s: permission denied (run as root or add yourself to the kvm group)", kvm_path);
		else
			errf(err, errlen, "cannot open %s: %s", kvm_path, strerror(-rc));
		return rc;
	}
	if (ioctl(vm->kvm_fd, KVM_GET_API_VERSION, 0) != KVM_API_VERSION) {
		errf(err, errlen, "/dev/kvm: unsupported KVM API version");
		rc = -EINVAL;
		goto fail;
	}
	vm->vm_fd = ioctl(vm->kvm_fd, KVM_CREATE_VM, 0);
	if (vm->vm_fd < 0) {
		rc = -errno;
		errf(err, errlen, "KVM_CREATE_VM failed: %s", strerror(-rc));
		goto fail;
	}
	if (ioctl(vm->vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2) > 0) {
		struct kvm_enable_cap cap = { .cap = KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2,
			.args[0] = KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE | KVM_DIRTY_LOG_INITIALLY_SET };
		if (ioctl(vm->vm_fd, KVM_ENABLE_CAP, &cap) < 0)
			glide_log("vm", "manual dirty log protect not enabled: %s", strerror(errno));
	}
	if (ioctl(vm->vm_fd, KVM_SET_TSS_ADDR, KVM_TSS_ADDR) < 0 ||
	    ioctl(vm->vm_fd, KVM_SET_IDENTITY_MAP_ADDR, &(uint64_t){ KVM_IDENTITY_MAP_ADDR }) < 0) {
		rc = -errno;
		errf(err, errlen, "KVM_SET_TSS_ADDR failed: %s", strerror(-rc));
		goto fail;
	}
	rc = guest_memory_init(&vm->mem, vm->cfg.memory_bytes);
	if (rc) {
		errf(err, errlen, "cannot allocate %llu bytes of guest memory: %s",
		     (unsigned long long)vm->cfg.memory_bytes, strerror(-rc));
		goto fail;
	}
	/* pages written by device emulation: without this map a migration would miss them */
	vm->user_dirty_bitmap = calloc((vm->mem.size / GUEST_PAGE_SIZE + 63) / 64, sizeof(uint64_t));
	if (!vm->user_dirty_bitmap) {
		rc = -ENOMEM;
		errf(err, errlen, "cannot allocate the device-write page map");
		goto fail;
	}
	/* Memory slots before the irqchip: afterwards each slot change is slow. */
	rc = vm_set_slots(vm, false);
	if (rc) {
		errf(err, errlen, "KVM_SET_USER_MEMORY_REGION failed: %s", strerror(-rc));
		goto fail;
	}
	if (ioctl(vm->vm_fd, KVM_CREATE_IRQCHIP, 0) < 0) {
		rc = -errno;
		errf(err, errlen, "KVM_CREATE_IRQCHIP failed: %s", strerror(-rc));
		goto fail;
	}
	struct kvm_pit_config pit = { .flags = KVM_PIT_SPEAKER_DUMMY };
	if (ioctl(vm->vm_fd, KVM_CREATE_PIT2, &pit) < 0) {
		rc = -errno;
		errf(err, errlen, "KVM_CREATE_PIT2 failed: %s", strerror(-rc));
		goto fail;
	}
	rc = ioctl(vm->vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_XSAVE2);
	vm->xsave_size = rc > (int)sizeof(struct kvm_xsave) ? (uint32_t)rc : sizeof(struct kvm_xsave);
	vm->have_sregs2 = ioctl(vm->vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_SREGS2) > 0;

	mmap_size = ioctl(vm->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (mmap_size <= 0) {
		rc = -EINVAL;
		errf(err, errlen, "KVM_GET_VCPU_MMAP_SIZE failed");
		goto fail;
	}
	/* nvcpus counts the vCPUs that exist, so that a failure part way
	 * through releases exactly those (and never closes fd 0). */
	for (int i = 0; i < vm->cfg.vcpus; i++) {
		struct vcpu *v = &vm->vcpus[i];
		v->vm = vm;
		v->index = i;
		v->run = NULL;
		v->fd = ioctl(vm->vm_fd, KVM_CREATE_VCPU, i);
		if (v->fd >= 0)
			vm->nvcpus = i + 1;
		if (v->fd < 0) {
			rc = -errno;
			errf(err, errlen, "KVM_CREATE_VCPU %d failed: %s", i, strerror(-rc));
			goto fail;
		}
		v->run_size = (size_t)mmap_size;
		v->run = mmap(NULL, v->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, v->fd, 0);
		if (v->run == MAP_FAILED) {
			v->run = NULL;
			rc = -errno;
			errf(err, errlen, "mmap of vCPU %d run area failed: %s", i, strerror(-rc));
			goto fail;
		}
	}
	rc = ioctl(vm->vcpus[0].fd, KVM_GET_TSC_KHZ, 0);
	vm->tsc_khz = rc > 0 ? (uint32_t)rc : 0;
	rc = cpuid_build(vm, err, errlen);
	if (rc)
		goto fail;
	rc = vm_probe_msrs(vm, vm->vcpus[0].fd);
	if (rc) {
		errf(err, errlen, "cannot list MSRs: %s", strerror(-rc));
		goto fail;
	}
	struct sigaction sa = { .sa_handler = vcpu_kick_handler };
	sigaction(VCPU_KICK_SIGNAL, &sa, NULL);
	return 0;
fail:
	vm_destroy(vm);
	return rc;
}

void vm_destroy(struct vm *vm)
{
	for (int i = 0; i < vm->nvcpus; i++) {
		struct vcpu *v = &vm->vcpus[i];
		if (v->run)
			munmap(v->run, v->run_size);
		if (v->fd >= 0)
			close(v->fd);
		free(v->cpuid);
		v->run = NULL;
		v->fd = -1;
		v->cpuid = NULL;
	}
	vm->nvcpus = 0;
	devices_destroy(vm);
	guest_memory_free(&vm->mem);
	free(vm->user_dirty_bitmap);
	vm->user_dirty_bitmap = NULL;
	free(vm->msr_indices);
	vm->msr_indices = NULL;
	free(vm->uart); /* devices are freed with their VM (the others are static) */
	vm->uart = NULL;
	vm->ndevices = 0;
	if (vm->vm_fd >= 0)
		close(vm->vm_fd);
	if (vm->kvm_fd >= 0)
		close(vm->kvm_fd);
	vm->vm_fd = vm->kvm_fd = -1;
}

int vm_boot(struct vm *vm, const struct boot_plan *plan, char *err, size_t errlen)
{
	for (int i = 0; i < vm->nvcpus; i++) {
		int rc = boot_setup_vcpu(vm->vcpus[i].fd, plan, i, vm->nvcpus);
		if (rc) {
			errf(err, errlen, "cannot set up vCPU %d for boot: %s", i, strerror(-rc));
			return rc;
		}
	}
	return 0;
}

int vm_register_device(struct vm *vm, struct device *dev)
{
	if (vm->ndevices >= VM_MAX_DEVICES)
		return -ENOSPC;
	vm->devices[vm->ndevices++] = dev;
	return 0;
}

int vm_add_pause_hook(struct vm *vm, void (*pause)(void *), void (*resume)(void *), void *opaque)
{
	if (vm->ndevice_hooks >= VM_MAX_DEVICE_HOOKS)
		return -ENOSPC;
	vm->device_hooks[vm->ndevice_hooks++] = (struct vm_device_hook){ pause, resume, opaque };
	return 0;
}

/* Called with vm->lock held, on every change between running and not. */
static void devices_set_running(struct vm *vm, bool running)
{
	if (vm->devices_running == running)
		return;
	vm->devices_running = running;
	for (int i = 0; i < vm->ndevice_hooks; i++) {
		struct vm_device_hook *h = &vm->device_hooks[i];
		if (running && h->resume)
			h->resume(h->opaque);
		else if (!running && h->pause)
			h->pause(h->opaque);
	}
}

int vm_start_vcpus(struct vm *vm, char *err, size_t errlen)
{
	pthread_mutex_lock(&vm->lock);
	vm->state = vm->pause_requested ? VM_STATE_PAUSED : VM_STATE_RUNNING;
	vm->started_ns = now_ns();
	devices_set_running(vm, vm->state == VM_STATE_RUNNING);
	pthread_mutex_unlock(&vm->lock);
	for (int i = 0; i < vm->nvcpus; i++) {
		int rc = pthread_create(&vm->vcpus[i].thread, NULL, vcpu_thread, &vm->vcpus[i]);
		if (rc) {
			errf(err, errlen, "cannot start vCPU thread %d: %s", i, strerror(rc));
			vm_request_exit(vm, 1, "vCPU thread start failed");
			return -rc;
		}
		vm->vcpus[i].thread_started = true;
	}
	return 0;
}

void vm_kick_vcpu(struct vm *vm, int i)
{
	struct vcpu *v = &vm->vcpus[i];
	__atomic_store_n(&v->run->immediate_exit, 1, __ATOMIC_SEQ_CST);
	if (v->thread_started)
		pthread_kill(v->thread, VCPU_KICK_SIGNAL);
}

void vm_kick_vcpus(struct vm *vm)
{
	for (int i = 0; i < vm->nvcpus; i++)
		vm_kick_vcpu(vm, i);
}

/* Returns 0 once every vCPU is parked, -ESHUTDOWN when the VM stops, and
 * -EAGAIN when a vm_resume() withdrew the pause before it took effect (the
 * wait re-checks that the pause is still wanted: it never waits for
 * vCPUs that were told to run again). */
int vm_pause(struct vm *vm)
{
	pthread_mutex_lock(&vm->lock);
	if (vm->quit || vm->state == VM_STATE_SHUTDOWN) {
		pthread_mutex_unlock(&vm->lock);
		return -ESHUTDOWN;
	}
	bool already = vm->pause_requested;
	vm->pause_requested = true;
	bool started = vm->state != VM_STATE_MASKED;
	pthread_mutex_unlock(&vm->lock);
	if (!already)
		vm_kick_vcpus(vm);
	pthread_mutex_lock(&vm->lock);
	while (started && vm->pause_requested && vm->vcpus_paused < vm->nvcpus && !vm->quit) {
		/* Re-kick periodically: a signal can land just before KVM_RUN. */
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 2000000;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		if (pthread_cond_timedwait(&vm->cond, &vm->lock, &ts) == ETIMEDOUT) {
			pthread_mutex_unlock(&vm->lock);
			vm_kick_vcpus(vm);
			pthread_mutex_lock(&vm->lock);
		}
	}
	int rc = vm->quit ? -ESHUTDOWN : !vm->pause_requested ? -EAGAIN : 0;
	if (!rc && started)
		vm->state = VM_STATE_PAUSED;
	if (!rc)
		devices_set_running(vm, false);
	if (!rc && !already)
		vm->paused_at_ns = now_ns();
	pthread_mutex_unlock(&vm->lock);
	return rc;
}

int vm_guest_tsc(struct vm *vm, uint64_t *tsc)
{
	struct { struct kvm_msrs h; struct kvm_msr_entry e; } one = { .h.nmsrs = 1, .e.index = MSR_IA32_TSC };

	if (vm->nvcpus < 1)
		return -ENODEV;
	if (ioctl(vm->vcpus[0].fd, KVM_GET_MSRS, &one) != 1)
		return -EIO;
	*tsc = one.e.data;
	return 0;
}

int vm_resume(struct vm *vm)
{
	pthread_mutex_lock(&vm->lock);
	if (vm->quit) {
		pthread_mutex_unlock(&vm->lock);
		return -ESHUTDOWN;
	}
	vm->pause_requested = false;
	if (vm->state == VM_STATE_PAUSED)
		vm->state = VM_STATE_RUNNING;
	if (vm->state == VM_STATE_RUNNING)
		devices_set_running(vm, true);
	pthread_cond_broadcast(&vm->cond);
	pthread_mutex_unlock(&vm->lock);
	return 0;
}

void vm_request_exit(struct vm *vm, int status, const char *reason)
{
	pthread_mutex_lock(&vm->lock);
	if (!vm->quit) {
		vm->quit = true;
		vm->exit_status = status;
		snprintf(vm->exit_reason, sizeof(vm->exit_reason), "%s", reason);
	}
	pthread_cond_broadcast(&vm->cond);
	pthread_mutex_unlock(&vm->lock);
	vm_kick_vcpus(vm);
}

int vm_wait_exit(struct vm *vm)
{
	pthread_mutex_lock(&vm->lock);
	while (!vm->quit)
		pthread_cond_wait(&vm->cond, &vm->lock);
	pthread_mutex_unlock(&vm->lock);
	for (int i = 0; i < vm->nvcpus; i++) {
		if (vm->vcpus[i].thread_started) {
			vm_kick_vcpus(vm);
			pthread_join(vm->vcpus[i].thread, NULL);
			vm->vcpus[i].thread_started = false;
		}
	}
	/* A stopped VM's devices take no more requests (and touch no more memory). */
	pthread_mutex_lock(&vm->lock);
	devices_set_running(vm, false);
	vm->state = VM_STATE_SHUTDOWN;
	pthread_mutex_unlock(&vm->lock);
	return vm->exit_status;
}
