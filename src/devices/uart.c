/* A 16550A UART on COM1: transmit goes to the serial file, the receiver is
 * empty, interrupts (THR empty, receive) go to IRQ 4 through the in-kernel
 * irqchip. Its registers form the "uart" state section. */
#include "devices/devices.h"
#include "state/state.h"
#include "common/util.h"
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#define UART_LSR_DR 0x01
#define UART_LSR_THRE 0x20
#define UART_LSR_TEMT 0x40
#define UART_IER_RDI 0x01
#define UART_IER_THRI 0x02
#define UART_IIR_NO_INT 0x01
#define UART_IIR_THRI 0x02
#define UART_LCR_DLAB 0x80
#define UART_MCR_LOOP 0x10
#define UART_MCR_OUT2 0x08

struct uart_regs {
	uint8_t ier, iir, fcr, lcr, mcr, lsr, msr, scr, dll, dlm;
	uint8_t thr_irq_pending;
	uint8_t irq_level;
};

struct uart {
	struct device dev;
	struct uart_regs r;
	int out_fd;
	pthread_mutex_t lock;
};


static void uart_update_irq(struct vm *vm, struct uart *u)
{
	uint8_t iir = UART_IIR_NO_INT;
	if ((u->r.ier & UART_IER_THRI) && u->r.thr_irq_pending)
		iir = UART_IIR_THRI;
	u->r.iir = (uint8_t)((u->r.iir & 0xf0) | iir);
	uint8_t level = iir != UART_IIR_NO_INT;
	if (level != u->r.irq_level) {
		struct kvm_irq_level irq = { .irq = UART_COM1_IRQ, .level = level };
		ioctl(vm->vm_fd, KVM_IRQ_LINE, &irq);
		u->r.irq_level = level;
	}
}

static void uart_io(struct vm *vm, struct device *dev, uint16_t port, bool is_write, uint8_t *data, int size)
{
	struct uart *u = dev->opaque;
	uint16_t off = (uint16_t)(port - dev->port_base);
	bool dlab = u->r.lcr & UART_LCR_DLAB;

	pthread_mutex_lock(&u->lock);
	if (is_write) {
		uint8_t v = data[0];
		switch (off) {
		case 0:
			if (dlab) {
				u->r.dll = v;
			} else {
				if (u->out_fd >= 0 && !(u->r.mcr & UART_MCR_LOOP))
					write_full(u->out_fd, &v, 1);
				u->r.thr_irq_pending = 1;
			}
			break;
		case 1:
			if (dlab) {
				u->r.dlm = v;
			} else {
				if ((v & UART_IER_THRI) && !(u->r.ier & UART_IER_THRI))
					u->r.thr_irq_pending = 1;
				u->r.ier = v & 0x0f;
			}
			break;
		case 2: u->r.fcr = v; u->r.iir = (v & 1) ? 0xc0 : 0x00; break;
		case 3: u->r.lcr = v; break;
		case 4: u->r.mcr = v & 0x1f; break;
		case 7: u->r.scr = v; break;
		}
	} else {
		uint8_t v = 0xff;
		switch (off) {
		case 0: v = dlab ? u->r.dll : 0; break;
		case 1: v = dlab ? u->r.dlm : u->r.ier; break;
		case 2:
			v = u->r.iir; /* reading IIR acknowledges a THR-empty interrupt */
			if ((u->r.iir & 0x0f) == UART_IIR_THRI)
				u->r.thr_irq_pending = 0;
			break;
		case 3: v = u->r.lcr; break;
		case 4: v = u->r.mcr; break;
		case 5: v = UART_LSR_THRE | UART_LSR_TEMT; break;
		case 6: v = (u->r.mcr & UART_MCR_LOOP) ? 0 : 0xb0; break; /* DCD, DSR, CTS */
		case 7: v = u->r.scr; break;
		}
		memset(data, 0, size);
		data[0] = v;
	}
	uart_update_irq(vm, u);
	pthread_mutex_unlock(&u->lock);
}

static int uart_save(struct vm *vm, int i, struct state_buf *b)
{
	if (!vm->uart)
		return -ENOENT;
	pthread_mutex_lock(&vm->uart->lock);
	sbuf_put(b, &vm->uart->r, sizeof(vm->uart->r));
	pthread_mutex_unlock(&vm->uart->lock);
	return 0;
}

static int uart_load(struct vm *vm, int i, uint32_t version, const uint8_t *data, size_t len, char *err,
		     size_t errlen)
{
	if (!vm->uart || len != sizeof(struct uart_regs)) {
		errf(err, errlen, "uart section: wrong size %zu", len);
		return -EINVAL;
	}
	pthread_mutex_lock(&vm->uart->lock);
	memcpy(&vm->uart->r, data, len);
	vm->uart->r.irq_level = 0xff; /* force the line to be re-driven */
	uart_update_irq(vm, vm->uart);
	pthread_mutex_unlock(&vm->uart->lock);
	return 0;
}

static int uart_fields(const uint8_t *data, size_t len, state_field_fn fn, void *ctx)
{
	static const char *names[] = { "ier", "iir", "fcr", "lcr", "mcr", "lsr", "msr", "scr", "dll", "dlm",
				       "thr_irq_pending", "irq_level" };
	_Static_assert(sizeof(names) / sizeof(names[0]) == sizeof(struct uart_regs), "one name per UART register");
	if (len != sizeof(struct uart_regs))
		return -EINVAL;
	for (size_t i = 0; i < ARRAY_SIZE(names); i++)
		state_field_add(fn, ctx, i, 1, 1, "%s", names[i]);
	return 0;
}

static int uart_init(struct vm *vm, int out_fd)
{
	struct uart *u = calloc(1, sizeof(*u));
	if (!u)
		return -ENOMEM;
	u->dev = (struct device){ .name = "uart", .port_base = UART_COM1_PORT, .port_count = 8, .opaque = u,
				  .io = uart_io };
	u->out_fd = out_fd;
	u->r.iir = UART_IIR_NO_INT;
	u->r.lsr = UART_LSR_THRE | UART_LSR_TEMT;
	pthread_mutex_init(&u->lock, NULL);
	vm->uart = u; /* per VM: two VMs in one process each have their own */
	return vm_register_device(vm, &u->dev);
}

static const struct state_section_ops uart_section = {
	.name = "uart", .version = 1, .order = 40, .save = uart_save, .load = uart_load, .fields = uart_fields,
};

static const struct device_type uart_type = { .name = "serial", .create = uart_init };

__attribute__((constructor)) static void uart_register(void)
{
	device_type_register(&uart_type);
	state_register(&uart_section);
}
