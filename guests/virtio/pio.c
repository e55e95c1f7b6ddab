/* pio: the port-I/O continuity guest. It writes 1, 2, 3, ... (mod 256) to
 * COM1 forever, one OUT per byte, and after each byte reads the UART's
 * interrupt identification (IIR, one IN), which says "transmitter empty"
 * once per byte written and clears on that read, as on a 16550. It moves
 * on to the next byte only when the read says so: a read that comes back
 * "no interrupt" repeats the byte. It counts bytes in its heartbeat record.
 *
 * Nearly every instruction it runs is an exit to the monitor, so a pause,
 * snapshot or migration almost always stops it just after an OUT or an IN
 * that KVM handed out but completes only at the next KVM_RUN (it moves RIP
 * past the instruction, and loads AL for an IN, then). Stopping there must
 * complete it exactly once: else the other side runs the OUT again, or the
 * IN again, whose second read of IIR says "no interrupt". Either way the
 * serial output, source then destination, repeats a byte
 * (tests/test_io_complete.sh). */
#include "rt.h"

const char vguest_name[] = "pio";

#define UART_IER 1
#define UART_IIR 2
#define UART_IER_THRI 0x02
#define UART_IIR_THRI 0x02

void vguest_main(void) __attribute__((noreturn));
void vguest_main(void)
{
	uint8_t v = 1;

	rt_init();
	con_puts("pio: counting\n");
	hb_start(VGUEST_HB_MODE_PIO);
	/* interrupts stay off (IF 0): the THR-empty interrupt is only identified, never delivered */
	outb(COM1_PORT + UART_IER, UART_IER_THRI);
	inb(COM1_PORT + UART_IIR); /* acknowledges the banner's last byte */
	for (;;) {
		outb(COM1_PORT, v);
		if ((inb(COM1_PORT + UART_IIR) & 0x0f) == UART_IIR_THRI)
			v++;
		hb_count();
	}
}
