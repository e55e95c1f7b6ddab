/* PID 1 of the small Linux guest tests/test_hostnet_vlan.sh boots in QEMU:
 * mounts /proc, /sys, /dev, loads the modules it was given (in /modules,
 * in the order of /modules/order), runs /unit_hostnet, prints its exit
 * status as "init: unit_hostnet exit status N" and powers off. Built
 * static by that script; not part of glide. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static void load_modules(void)
{
	char name[256], path[300];
	FILE *f = fopen("/modules/order", "r");

	while (f && fgets(name, sizeof(name), f)) {
		name[strcspn(name, "\n")] = 0;
		snprintf(path, sizeof(path), "/modules/%s", name);
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0 || syscall(SYS_finit_module, fd, "", 0) != 0)
			printf("init: cannot load %s: %s\n", name, strerror(errno));
		if (fd >= 0)
			close(fd);
	}
	if (f)
		fclose(f);
}

int main(void)
{
	int status = 0;
	pid_t pid;

	mount("proc", "/proc", "proc", 0, NULL);
	mount("sysfs", "/sys", "sysfs", 0, NULL);
	mount("devtmpfs", "/dev", "devtmpfs", 0, NULL);
	mount("tmpfs", "/tmp", "tmpfs", 0, NULL);
	load_modules();
	fflush(stdout);
	pid = fork();
	if (pid == 0) {
		execl("/unit_hostnet", "unit_hostnet", (char *)NULL);
		printf("init: cannot run /unit_hostnet: %s\n", strerror(errno));
		_exit(127);
	}
	if (pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status))
		printf("init: unit_hostnet exit status %d\n", WEXITSTATUS(status));
	else
		printf("init: unit_hostnet did not exit normally (status %#x)\n", status);
	fflush(stdout);
	sync();
	reboot(RB_POWER_OFF);
	return 0;
}
