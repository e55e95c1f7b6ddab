/* The vCPU run loop. Each vCPU runs in its own thread: it parks while the VM
 * is paused (completing first a port or MMIO access KVM has not finished,
 * so the state it leaves is whole), honours SDPS throttling (a short sleep
 * after each run period), enters KVM_RUN and dispatches exits (port I/O to
 * devices, MMIO to the PCI bus, shutdown and emulation failures end the VM). */
#include "vmm/vcpu.h"
#include "vmm/vm.h"
#include "devices/pci.h"
#include "common/util.h"
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>
#include <time.h>

#define CR0_PE (1ULL << 0)
#define EFER_LMA (1ULL << 10)

static __thread struct kvm_run *vcpu_kick_run;

void vcpu_kick_handler(int sig)
{
	(void)sig;
	/* A kick that lands while the thread is outside KVM_RUN must still stop
	 * the next KVM_RUN: the loop clears immediate_exit before it checks
	 * pause and SDPS, so setting it here is never lost or stale. */
	if (vcpu_kick_run)
		__atomic_store_n(&vcpu_kick_run->immediate_exit, 1, __ATOMIC_SEQ_CST);
}

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

/* Where the vCPU stopped, for a failure's log line: "rip 0x..., CPL n,
 * 64-bit mode". The CPL is SS.DPL (what KVM uses); the mode comes from
 * CR0.PE, EFER.LMA and CS.L/D. */
static void vcpu_describe_position(struct vcpu *v, char *buf, size_t len)
{
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	const char *mode = "unknown mode";

	memset(&regs, 0, sizeof(regs));
	memset(&sregs, 0, sizeof(sregs));
	ioctl(v->fd, KVM_GET_REGS, &regs);
	if (ioctl(v->fd, KVM_GET_SREGS, &sregs) == 0) {
		if (!(sregs.cr0 & CR0_PE))
			mode = "real mode";
		else if ((sregs.efer & EFER_LMA) && sregs.cs.l)
			mode = "64-bit mode";
		else if (sregs.efer & EFER_LMA)
			mode = "compatibility mode";
		else
			mode = sregs.cs.db ? "32-bit protected mode" : "16-bit protected mode";
	}
	snprintf(buf, len, "rip 0x%llx, CPL %u, %s", (unsigned long long)regs.rip, sregs.ss.dpl, mode);
}

static void vcpu_report_failure(struct vcpu *v, const char *what, const char *detail)
{
	char where[96], reason[sizeof(v->vm->exit_reason)];

	vcpu_describe_position(v, where, sizeof(where));
	snprintf(reason, sizeof(reason), "vCPU %d: %s at %s%s%s", v->index, what, where, detail[0] ? ", " : "", detail);
	glide_log("vcpu", "%s", reason);
	vm_request_exit(v->vm, 2, reason);
}

static const char *internal_error_name(uint32_t suberror)
{
	switch (suberror) {
	case KVM_INTERNAL_ERROR_EMULATION: return "instruction emulation failed";
	case KVM_INTERNAL_ERROR_SIMUL_EX: return "simultaneous exceptions";
	case KVM_INTERNAL_ERROR_DELIVERY_EV: return "exit while delivering an event";
	case KVM_INTERNAL_ERROR_UNEXPECTED_EXIT_REASON: return "unexpected exit reason";
	}
	return "unknown suberror";
}

/* KVM_EXIT_INTERNAL_ERROR: the suberror by name, and what KVM tells about
 * it (the instruction bytes of a failed emulation, else its data words),
 * so that a log shows which instruction KVM's emulator could not run. */
static void vcpu_report_internal_error(struct vcpu *v)
{
	struct kvm_run *run = v->run;
	char what[96], detail[160] = "";
	size_t n = 0;

	snprintf(what, sizeof(what), "KVM internal error, suberror %u (%s)", run->internal.suberror,
		 internal_error_name(run->internal.suberror));
	if (run->internal.suberror == KVM_INTERNAL_ERROR_EMULATION &&
	    (run->emulation_failure.flags & KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES) &&
	    run->emulation_failure.ndata >= 3) {
		unsigned size = MIN(run->emulation_failure.insn_size, sizeof(run->emulation_failure.insn_bytes));
		n += (size_t)snprintf(detail, sizeof(detail), "instruction bytes");
		for (unsigned i = 0; i < size && n < sizeof(detail); i++)
			n += (size_t)snprintf(detail + n, sizeof(detail) - n, " %02x", run->emulation_failure.insn_bytes[i]);
	} else if (run->internal.ndata) {
		n += (size_t)snprintf(detail, sizeof(detail), "data");
		for (uint32_t i = 0; i < run->internal.ndata && i < ARRAY_SIZE(run->internal.data) && n < sizeof(detail); i++)
			n += (size_t)snprintf(detail + n, sizeof(detail) - n, " 0x%llx",
					      (unsigned long long)run->internal.data[i]);
	}
	vcpu_report_failure(v, what, detail);
}

/* A triple fault: the guest reset itself, as a PC would. The VM powers off
 * (exit status 0, as QEMU's -no-reboot); the log says where. */
static void vcpu_report_triple_fault(struct vcpu *v)
{
	char where[96], reason[sizeof(v->vm->exit_reason)];

	vcpu_describe_position(v, where, sizeof(where));
	snprintf(reason, sizeof(reason), "guest reset (triple fault on vCPU %d at %s)", v->index, where);
	glide_log("vcpu", "%s; powering off", reason);
	vm_request_exit(v->vm, 0, reason);
}

/* SDPS: sleep throttle_sleep_ns after each throttle_period_ns of running.
 * The vCPU keeps its own time: a one-shot timer of its own thread, armed at
 * the start of each run slice, kicks it out of KVM_RUN when the slice is
 * over, so slices of tens of microseconds are possible and a high level
 * needs no long sleep. Should a timer's kick be lost, SDPS's watchdog kicks
 * the vCPU (sdps.c). A late or second kick never lets the vCPU run longer
 * or sleep more than the level asks: it checks its own clock. */
/* Sleeps off an SDPS slice, but wakes at once (on the kick) when the VM is
 * being paused or stopped or SDPS ends: a switchover never waits for it. */
static void vcpu_throttle_sleep(struct vm *vm, uint64_t ns)
{
	struct timespec ts = { .tv_sec = ns / 1000000000ULL, .tv_nsec = ns % 1000000000ULL };
	while (nanosleep(&ts, &ts) && errno == EINTR)
		if (vm->pause_requested || vm->quit || !vm->throttle_sleep_ns)
			return;
}

static void vcpu_slice_timer_set(struct vcpu *v, uint64_t ns)
{
	struct itimerspec its = { .it_value = { .tv_sec = ns / 1000000000ULL, .tv_nsec = ns % 1000000000ULL } };
	if (v->slice_timer_ok)
		timer_settime(v->slice_timer, 0, &its, NULL); /* ns == 0 disarms */
}

static void vcpu_slice_timer_create(struct vcpu *v)
{
	struct sigevent sev = { .sigev_notify = SIGEV_THREAD_ID, .sigev_signo = VCPU_KICK_SIGNAL };
	sev._sigev_un._tid = gettid();
	v->slice_timer_ok = timer_create(CLOCK_MONOTONIC, &sev, &v->slice_timer) == 0;
	if (!v->slice_timer_ok)
		glide_log("vcpu", "vCPU %d: no run-slice timer (%s): SDPS can slow it only at its own exits",
			  v->index, strerror(errno));
}

static void vcpu_throttle(struct vcpu *v)
{
	struct vm *vm = v->vm;
	uint64_t sleep = vm->throttle_sleep_ns, period = vm->throttle_period_ns;
	uint64_t now, since = v->throttle_run_since;

	if (!sleep) {
		if (since)
			vcpu_slice_timer_set(v, 0);
		v->throttle_run_since = 0;
		return;
	}
	now = now_ns();
	if (!since) { /* throttling just started: this is the start of a slice */
		v->throttle_run_since = now;
		vcpu_slice_timer_set(v, period);
		return;
	}
	if (now - since < period)
		return;
	v->throttle_run_ns += now - since;
	v->throttle_asleep = true;
	vcpu_throttle_sleep(vm, sleep);
	uint64_t woke = now_ns();
	v->throttle_ns += woke - now;
	if (woke - now > __atomic_load_n(&v->throttle_max_ns, __ATOMIC_RELAXED))
		__atomic_store_n(&v->throttle_max_ns, woke - now, __ATOMIC_RELAXED);
	v->throttle_run_since = woke;
	v->throttle_asleep = false;
	vcpu_slice_timer_set(v, vm->throttle_period_ns);
}

/* Dispatches the exit KVM_RUN just returned. A port access or MMIO is
 * complete for KVM only at the next KVM_RUN (exit_incomplete). */
static void vcpu_handle_exit(struct vcpu *v)
{
	struct vm *vm = v->vm;
	struct kvm_run *run = v->run;

	v->exits++;
	v->exit_incomplete = run->exit_reason == KVM_EXIT_IO || run->exit_reason == KVM_EXIT_MMIO;
	switch (run->exit_reason) {
	case KVM_EXIT_IO:
		v->io_exits++;
		vcpu_io(v);
		break;
	case KVM_EXIT_MMIO:
		v->mmio_exits++;
		if (!pci_mmio(vm, run->mmio.phys_addr, run->mmio.is_write, run->mmio.data, (int)run->mmio.len) &&
		    !run->mmio.is_write)
			memset(run->mmio.data, 0xff, sizeof(run->mmio.data));
		break;
	case KVM_EXIT_HLT:
		/* Only without an in-kernel LAPIC; treat as a pause point. */
		sleep_ns(1000000);
		break;
	case KVM_EXIT_INTR:
		break;
	case KVM_EXIT_SHUTDOWN:
		vcpu_report_triple_fault(v);
		break;
	case KVM_EXIT_SYSTEM_EVENT:
		vm_request_exit(vm, 0, "guest system event");
		break;
	case KVM_EXIT_INTERNAL_ERROR:
		vcpu_report_internal_error(v);
		break;
	case KVM_EXIT_FAIL_ENTRY: {
		char what[80];
		snprintf(what, sizeof(what), "VM entry failed, reason 0x%llx",
			 (unsigned long long)run->fail_entry.hardware_entry_failure_reason);
		vcpu_report_failure(v, what, "");
		break;
	}
	default: {
		char what[64];
		snprintf(what, sizeof(what), "unhandled exit reason %u", run->exit_reason);
		vcpu_report_failure(v, what, "");
		break;
	}
	}
}

/* KVM finishes a port access or MMIO it handed to us (moves RIP past the
 * instruction, fills the register of an IN or a read) only when the vCPU
 * next enters KVM_RUN. A vCPU must not park with one pending: the state a
 * snapshot or switchover captures would run an OUT twice on the other side
 * or lose what an IN read. A KVM_RUN with immediate_exit set completes it
 * without running guest code (KVM's api.rst, "immediate_exit"); a string
 * instruction may need more accesses first, each handled as usual. */
static void vcpu_complete_exit(struct vcpu *v)
{
	struct kvm_run *run = v->run;

	for (int i = 0; i < 64 && v->exit_incomplete; i++) {
		__atomic_store_n(&run->immediate_exit, 1, __ATOMIC_SEQ_CST);
		if (ioctl(v->fd, KVM_RUN, 0) == 0) {
			vcpu_handle_exit(v);
			continue;
		}
		if (errno != EINTR && errno != EAGAIN)
			vcpu_report_failure(v, "KVM_RUN (completing a port or MMIO access) failed", strerror(errno));
		v->exit_incomplete = false;
	}
	if (v->exit_incomplete) {
		vcpu_report_failure(v, "a port or MMIO access did not complete", "");
		v->exit_incomplete = false;
	}
}

static bool vcpu_park_if_paused(struct vcpu *v)
{
	struct vm *vm = v->vm;

	pthread_mutex_lock(&vm->lock);
	while (vm->pause_requested && !vm->quit && v->exit_incomplete) {
		pthread_mutex_unlock(&vm->lock);
		vcpu_complete_exit(v);
		pthread_mutex_lock(&vm->lock);
	}
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

	char name[16];
	snprintf(name, sizeof(name), "vcpu%d", v->index); /* host agents find vCPU threads by name (DRS demand) */
	pthread_setname_np(pthread_self(), name);
	vcpu_kick_run = run;
	vcpu_slice_timer_create(v);
	sigemptyset(&set);
	sigaddset(&set, VCPU_KICK_SIGNAL);
	pthread_sigmask(SIG_UNBLOCK, &set, NULL);

	for (;;) {
		__atomic_store_n(&run->immediate_exit, 0, __ATOMIC_SEQ_CST);
		if (vcpu_park_if_paused(v))
			break;
		vcpu_throttle(v);
		if (ioctl(v->fd, KVM_RUN, 0) < 0) {
			if (errno == EINTR || errno == EAGAIN) {
				v->exit_incomplete = false; /* KVM completed it before it saw the kick */
				continue;
			}
			vcpu_report_failure(v, "KVM_RUN failed", strerror(errno));
			break;
		}
		vcpu_handle_exit(v);
		if (__atomic_load_n(&vm->quit, __ATOMIC_RELAXED))
			break;
	}
	/* Only a stopping VM (quit set) gets here, and vm_pause() stops waiting on quit. */
	if (v->slice_timer_ok)
		timer_delete(v->slice_timer);
	vcpu_kick_run = NULL;
	return NULL;
}
