/* Small platform devices: the i8042 controller (only its CPU-reset command,
 * which powers the VM off as QEMU's -no-reboot does), the debug-exit port
 * (a guest reports a status and the monitor exits with (value << 1) | 1),
 * the POST port and an empty PCI configuration space. */
#include "devices/devices.h"
#include "common/util.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int uart_init(struct vm *vm, int out_fd);

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

static struct device platform_devices[] = {
	{ .name = "i8042-data", .port_base = I8042_DATA_PORT, .port_count = 1, .io = i8042_io },
	{ .name = "i8042-cmd", .port_base = I8042_CMD_PORT, .port_count = 1, .io = i8042_io },
	{ .name = "debug-exit", .port_base = DEBUG_EXIT_PORT, .port_count = 1, .io = debug_exit_io },
	{ .name = "post", .port_base = POST_PORT, .port_count = 1, .io = post_io },
	{ .name = "pci-conf", .port_base = 0xcf8, .port_count = 8, .io = post_io },
};

int devices_init(struct vm *vm, int serial_fd)
{
	int rc = uart_init(vm, serial_fd);
	for (size_t i = 0; !rc && i < ARRAY_SIZE(platform_devices); i++)
		rc = vm_register_device(vm, &platform_devices[i]);
	return rc;
}
