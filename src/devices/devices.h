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

/* Creates and registers all devices. serial_fd < 0 discards COM1 output. */
int devices_init(struct vm *vm, int serial_fd);
#endif
