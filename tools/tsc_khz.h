/* tsc_khz.h: the TSC frequency of this host in kHz, shared by the guest
 * tools that convert between TSC cycles and time (guestcfg, hbread).
 *
 * First choice is KVM_GET_TSC_KHZ on a throw-away VM and vCPU: that is the
 * rate a KVM guest on this host reads. Fallback: "cpu MHz" in /proc/cpuinfo,
 * which is close to the TSC rate on CPUs with an invariant TSC.
 * GLIDE_KVM_DEVICE overrides /dev/kvm, as it does for glide itself. */
#ifndef GLIDE_TOOLS_TSC_KHZ_H
#define GLIDE_TOOLS_TSC_KHZ_H
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

static inline unsigned long tsc_khz_from_kvm(void)
{
	const char *dev = getenv("GLIDE_KVM_DEVICE");
	int kvm, vm = -1, vcpu = -1;
	long khz = 0;

	kvm = open(dev && *dev ? dev : "/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kvm < 0)
		return 0;
	if (ioctl(kvm, KVM_CHECK_EXTENSION, KVM_CAP_GET_TSC_KHZ) <= 0)
		goto out;
	vm = ioctl(kvm, KVM_CREATE_VM, 0);
	if (vm < 0)
		goto out;
	vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
	if (vcpu < 0)
		goto out;
	khz = ioctl(vcpu, KVM_GET_TSC_KHZ, 0);
	if (khz < 0)
		khz = 0;
out:
	if (vcpu >= 0)
		close(vcpu);
	if (vm >= 0)
		close(vm);
	close(kvm);
	return (unsigned long)khz;
}

static inline unsigned long tsc_khz_from_cpuinfo(void)
{
	FILE *f = fopen("/proc/cpuinfo", "re");
	char line[256];
	double mhz = 0;

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f)) {
		if (!strncmp(line, "cpu MHz", 7) && sscanf(line, "cpu MHz : %lf", &mhz) == 1)
			break;
	}
	fclose(f);
	return mhz > 0 ? (unsigned long)(mhz * 1000 + 0.5) : 0;
}

/* Returns the TSC rate in kHz, or 0 if neither source works; *source names
 * where it came from ("kvm" or "cpuinfo"). */
static inline unsigned long host_tsc_khz(const char **source)
{
	unsigned long khz = tsc_khz_from_kvm();

	if (khz) {
		*source = "kvm";
		return khz;
	}
	khz = tsc_khz_from_cpuinfo();
	*source = khz ? "cpuinfo" : "none";
	return khz;
}
#endif
