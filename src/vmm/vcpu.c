/* The vCPU run loop. Each vCPU runs in its own thread: it parks while the VM
 * is paused, honours SDPS throttling (a short sleep after each run period),
 * enters KVM_RUN and dispatches exits (port I/O to devices, MMIO to nothing,
 * shutdown and emulation failures end the VM). */
#include "vmm/vcpu.h"
#include "vmm/vm.h"
#include "common/util.h"
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>

static void vcpu_io(struct vcpu *v)
{
	struct kvm_run *run = v->run;
	struct vm *vm = v->vm;
	uint8_t *data = (uint8_t *)run + run->io.data_offset;
	bool is_write = run->io.direction == KVM_EXIT_IO_OUT;

	for (uint32_t n = 0; n < run->io.count; n++, data += run->io.size) {
		struct device *dev = NULL;
		for (int i = 0; i < vm->ndevices; i++) {
			struct device *d = vm->devices[i];
			if (run->io.port >= d->port_base && run->io.port < d->port_base + d->port_count) {
				dev = d;
				break;
			}
		}
		if (dev)
			dev->io(vm, dev, run->io.port, is_write, data, run->io.size);
		else if (!is_write)
			memset(data, 0xff, run->io.size);
	}
}

static void vcpu_report_failure(struct vcpu *v, const char *what)
{
	struct kvm_regs regs;
	char reason[128];

	memset(&regs, 0, sizeof(regs));
	ioctl(v->fd, KVM_GET_REGS, &regs);
	glide_log("vcpu", "vCPU %d: %s at rip=0x%llx", v->index, what, (unsigned long long)regs.rip);
	snprintf(reason, sizeof(reason), "vCPU %d: %s at rip 0x%llx", v->index, what, (unsigned long long)regs.rip);
	vm_request_exit(v->vm, 2, reason);
}

/* SDPS: sleep throttle_sleep_ns after each throttle_period_ns of running.
 * The vCPU keeps its own time; the SDPS thread only kicks it out of KVM_RUN
 * when its slice is over, so a kick that arrives late or twice never lets
 * it run longer or sleep more than the level asks. */
/* Sleeps off an SDPS slice, but wakes at once (on the kick) when the VM is
 * being paused or stopped or SDPS ends: a switchover never waits for it. */
static void vcpu_throttle_sleep(struct vm *vm, uint64_t ns)
{
	struct timespec ts = { .tv_sec = ns / 1000000000ULL, .tv_nsec = ns % 1000000000ULL };
	while (nanosleep(&ts, &ts) && errno == EINTR)
		if (vm->pause_requested || vm->quit || !vm->throttle_sleep_ns)
			return;
}

static void vcpu_throttle(struct vcpu *v)
{
	struct vm *vm = v->vm;
	uint64_t sleep = vm->throttle_sleep_ns, period = vm->throttle_period_ns;
	uint64_t now, since;

	if (!sleep) {
		v->throttle_run_since = 0;
		return;
	}
	now = now_ns();
	since = v->throttle_run_since;
	if (!since) { /* throttling just started: this is the start of a slice */
		v->throttle_run_since = now;
		return;
	}
	if (now - since < period)
		return;
	v->throttle_asleep = true;
	vcpu_throttle_sleep(vm, sleep);
	uint64_t woke = now_ns();
	v->throttle_ns += woke - now;
	v->throttle_run_since = woke;
	v->throttle_asleep = false;
}

static bool vcpu_park_if_paused(struct vcpu *v)
{
	struct vm *vm = v->vm;

	pthread_mutex_lock(&vm->lock);
	if (vm->pause_requested && !vm->quit) {
		vm->vcpus_paused++;
		pthread_cond_broadcast(&vm->cond);
		while (vm->pause_requested && !vm->quit)
			pthread_cond_wait(&vm->cond, &vm->lock);
		vm->vcpus_paused--;
	}
	bool quit = vm->quit;
	pthread_mutex_unlock(&vm->lock);
	return quit;
}

void *vcpu_thread(void *arg)
{
	struct vcpu *v = arg;
	struct vm *vm = v->vm;
	struct kvm_run *run = v->run;
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, VCPU_KICK_SIGNAL);
	pthread_sigmask(SIG_UNBLOCK, &set, NULL);

	for (;;) {
		__atomic_store_n(&run->immediate_exit, 0, __ATOMIC_SEQ_CST);
		if (vcpu_park_if_paused(v))
			break;
		vcpu_throttle(v);
		if (ioctl(v->fd, KVM_RUN, 0) < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			vcpu_report_failure(v, strerror(errno));
			break;
		}
		v->exits++;
		switch (run->exit_reason) {
		case KVM_EXIT_IO:
			v->io_exits++;
			vcpu_io(v);
			break;
		case KVM_EXIT_MMIO:
			v->mmio_exits++;
			if (!run->mmio.is_write)
				memset(run->mmio.data, 0xff, sizeof(run->mmio.data));
			break;
		case KVM_EXIT_HLT:
			/* Only without an in-kernel LAPIC; treat as a pause point. */
			sleep_ns(1000000);
			break;
		case KVM_EXIT_INTR:
			break;
		case KVM_EXIT_SHUTDOWN:
			glide_log("vcpu", "vCPU %d: triple fault (guest reset); powering off", v->index);
			vm_request_exit(vm, 0, "guest reset (triple fault)");
			break;
		case KVM_EXIT_SYSTEM_EVENT:
			vm_request_exit(vm, 0, "guest system event");
			break;
		case KVM_EXIT_INTERNAL_ERROR: {
			char what[64];
			snprintf(what, sizeof(what), "KVM internal error, suberror %u", run->internal.suberror);
			vcpu_report_failure(v, what);
			break;
		}
		case KVM_EXIT_FAIL_ENTRY: {
			char what[80];
			snprintf(what, sizeof(what), "VM entry failed, reason 0x%llx",
				 (unsigned long long)run->fail_entry.hardware_entry_failure_reason);
			vcpu_report_failure(v, what);
			break;
		}
		default: {
			char what[64];
			snprintf(what, sizeof(what), "unhandled exit reason %u", run->exit_reason);
			vcpu_report_failure(v, what);
			break;
		}
		}
		if (__atomic_load_n(&vm->quit, __ATOMIC_RELAXED))
			break;
	}
	/* Only a stopping VM (quit set) gets here, and vm_pause() stops waiting on quit. */
	return NULL;
}
