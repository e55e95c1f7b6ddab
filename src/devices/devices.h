/* Port-I/O devices of the glide machine: COM1 UART, i8042 (reset line),
 * debug-exit port, POST port and an empty PCI config space. */
#ifndef GLIDE_DEVICES_H
#define GLIDE_DEVICES_H
#include "vmm/vm.h"

#define UART_COM1_PORT 0x3f8
#define UART_COM1_IRQ 4
#define I8042_DATA_PORT 0x60
#define I8042_CMD_PORT 0x64
#define I8042_CMD_RESET 0xfe
#define DEBUG_EXIT_PORT 0xf4  /* like QEMU's isa-debug-exit: status = (value << 1) | 1 */
#define POST_PORT 0x80

/* A kind of device the machine offers. Each registers itself (a
 * constructor next to its code); devices_init() creates one of each for a
 * VM, and the host agent reports the names as the devices this host has. */
struct device_type {
	const char *name;
	int (*create)(struct vm *vm, int serial_fd); /* adds its device(s) and state to the VM */
};
#define DEVICE_TYPES_MAX 16
int device_type_register(const struct device_type *t);
/* The registered device types, in registration order; returns how many (at most max). */
int device_types(const struct device_type **out, int max);

/* Creates every registered device for the VM. serial_fd < 0 discards COM1 output. */
int devices_init(struct vm *vm, int serial_fd);
#endif
