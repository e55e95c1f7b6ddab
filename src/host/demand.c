/* Per-VM demand for DRS (issue 15). A VM wants the CPU time its vCPU
 * threads ran plus the time they were runnable but waited for a CPU
 * ("ready", in vSphere's words); both come from the kernel's schedstat of
 * each thread (/proc/PID/task/TID/schedstat: ns on CPU, ns waiting on a
 * run queue, time slices). The vCPU threads are the monitor's threads
 * named "vcpuN" (src/vmm/vcpu.c names them). The supervisor reads the sums
 * every turn; a window of at least HOST_DEMAND_WINDOW_MS turns them into
 * rates: demand in CPUs and the ready share. */
#include "host/demand.h"
#include <dirent.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

static bool read_line(const char *path, char *buf, size_t len)
{
	FILE *f = fopen(path, "r");
	bool ok = f && fgets(buf, (int)len, f);
	if (f)
		fclose(f);
	return ok;
}

int demand_read(pid_t pid, uint64_t *run_ns, uint64_t *ready_ns)
{
	char dir[64], path[128], line[128];
	struct dirent *e;
	int n = 0;

	*run_ns = *ready_ns = 0;
	snprintf(dir, sizeof(dir), "/proc/%d/task", (int)pid);
	DIR *d = opendir(dir);
	if (!d)
		return -1;
	while ((e = readdir(d))) {
		if (e->d_name[0] < '0' || e->d_name[0] > '9')
			continue;
		snprintf(path, sizeof(path), "%s/%.20s/comm", dir, e->d_name);
		if (!read_line(path, line, sizeof(line)) || strncmp(line, "vcpu", 4))
			continue;
		uint64_t run, wait;
		snprintf(path, sizeof(path), "%s/%.20s/schedstat", dir, e->d_name);
		if (!read_line(path, line, sizeof(line)) || sscanf(line, "%" SCNu64 " %" SCNu64, &run, &wait) != 2)
			continue;
		*run_ns += run;
		*ready_ns += wait;
		n++;
	}
	closedir(d);
	return n;
}

void demand_update(struct vm_demand *d, int vcpus, uint64_t run_ns, uint64_t ready_ns, uint64_t now_ns)
{
	d->vcpus = vcpus;
	if (!d->base_at_ns || run_ns < d->base_run_ns || ready_ns < d->base_ready_ns) {
		d->base_run_ns = run_ns;
		d->base_ready_ns = ready_ns;
		d->base_at_ns = now_ns;
	} else if (now_ns - d->base_at_ns >= (uint64_t)HOST_DEMAND_WINDOW_MS * 1000000) {
		double run = (double)(run_ns - d->base_run_ns), ready = (double)(ready_ns - d->base_ready_ns);
		d->cpus = (run + ready) / (double)(now_ns - d->base_at_ns);
		d->ready_frac = run + ready > 0 ? ready / (run + ready) : 0;
		d->valid = true;
		d->base_run_ns = run_ns;
		d->base_ready_ns = ready_ns;
		d->base_at_ns = now_ns;
	}
	d->run_ns = run_ns;
	d->ready_ns = ready_ns;
}
