/* Per-VM CPU demand for DRS, from the kernel's scheduler statistics of the
 * VM's vCPU threads (see demand.c). */
#ifndef GLIDE_HOST_DEMAND_H
#define GLIDE_HOST_DEMAND_H
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#define HOST_DEMAND_WINDOW_MS 1000 /* rates are taken over windows at least this long */

struct vm_demand {
	uint64_t base_run_ns, base_ready_ns, base_at_ns; /* start of the current window */
	uint64_t run_ns, ready_ns;  /* totals over the monitor's vCPU threads, last read */
	int vcpus;                  /* vCPU threads found at the last read */
	double cpus;                /* demand over the last full window: (run + ready) / wall time, in CPUs */
	double ready_frac;          /* ready / (run + ready) over that window */
	bool valid;                 /* a full window has been measured */
};

/* Sums run and ready (runnable, waiting for a CPU) time of the process's
 * threads named "vcpuN" (/proc/PID/task/TID/schedstat). Returns the number
 * of such threads (0: none, or no schedstat), -1 if the process is gone. */
int demand_read(pid_t pid, uint64_t *run_ns, uint64_t *ready_ns);
/* Folds a new read (taken at now_ns) into d: a window of at least
 * HOST_DEMAND_WINDOW_MS closes into d->cpus and d->ready_frac. A read with
 * totals lower than the window's base (a new monitor) restarts the window. */
void demand_update(struct vm_demand *d, int vcpus, uint64_t run_ns, uint64_t ready_ns, uint64_t now_ns);
#endif
