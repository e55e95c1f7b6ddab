/* Small platform devices: the i8042 controller (only its CPU-reset command,
 * which powers the VM off as QEMU's -no-reboot does), the debug-exit port
 * (a guest reports a status and the monitor exits with (value << 1) | 1),
 * and the POST port. */
#include "devices/devices.h"
#include "devices/pci.h"
#include "common/util.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void i8042_io(struct vm *vm, struct device *dev, uint16_t port, bool is_write, uint8_t *data, int size)
{
	if (is_write) {
		if (port == I8042_CMD_PORT && data[0] == I8042_CMD_RESET)
			vm_request_exit(vm, 0, "guest reset through the i8042 controller");
		return;
	}
	memset(data, 0, size);
	if (port == I8042_CMD_PORT)
		data[0] = 0x1c; /* input buffer empty, output buffer empty, system flag */
}

static void debug_exit_io(struct vm *vm, struct device *dev, uint16_t port, bool is_write, uint8_t *data, int size)
{
	if (!is_write) {
		memset(data, 0xff, size);
		return;
	}
	char reason[64];
	uint32_t v = 0;
	memcpy(&v, data, (size_t)MIN(size, 4));
	snprintf(reason, sizeof(reason), "guest wrote 0x%x to the debug-exit port", v);
	vm_request_exit(vm, (int)(((v << 1) | 1) & 0xff), reason);
}

static void post_io(struct vm *vm, struct device *dev, uint16_t port, bool is_write, uint8_t *data, int size)
{
	if (!is_write)
		memset(data, 0xff, size);
}

static struct device i8042_devices[] = {
	{ .name = "i8042-data", .port_base = I8042_DATA_PORT, .port_count = 1, .io = i8042_io },
	{ .name = "i8042-cmd", .port_base = I8042_CMD_PORT, .port_count = 1, .io = i8042_io },
};
static struct device debug_exit_device = { .name = "debug-exit", .port_base = DEBUG_EXIT_PORT, .port_count = 1,
					   .io = debug_exit_io };
static struct device post_device = { .name = "post", .port_base = POST_PORT, .port_count = 1, .io = post_io };

static int i8042_create(struct vm *vm, int serial_fd)
{
	int rc = vm_register_device(vm, &i8042_devices[0]);
	return rc ? rc : vm_register_device(vm, &i8042_devices[1]);
}

static int debug_exit_create(struct vm *vm, int serial_fd)
{
	return vm_register_device(vm, &debug_exit_device);
}

static int post_create(struct vm *vm, int serial_fd)
{
	return vm_register_device(vm, &post_device);
}

static const struct device_type *types[DEVICE_TYPES_MAX];
static int ntypes;

int device_type_register(const struct device_type *t)
{
	if (ntypes >= DEVICE_TYPES_MAX) {
		glide_log("devices", "cannot register device type %s: registry full", t->name);
		return -ENOSPC;
	}
	types[ntypes++] = t;
	return 0;
}

int device_types(const struct device_type **out, int max)
{
	int n = MIN(ntypes, max);
	memcpy(out, types, (size_t)n * sizeof(*out));
	return n;
}

int devices_init(struct vm *vm, int serial_fd)
{
	int rc = pci_bus_create(vm); /* every glide machine has the PCI host bridge */
	for (int i = 0; !rc && i < ntypes; i++)
		rc = types[i]->create(vm, serial_fd);
	return rc;
}

static const struct device_type platform_types[] = {
	{ .name = "i8042", .create = i8042_create },
	{ .name = "debug-exit", .create = debug_exit_create },
	{ .name = "post", .create = post_create },
};

__attribute__((constructor)) static void platform_register(void)
{
	for (size_t i = 0; i < ARRAY_SIZE(platform_types); i++)
		device_type_register(&platform_types[i]);
}
