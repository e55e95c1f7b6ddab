/* rt.h: the small runtime of the virtio test guests. Everything here runs
 * at ring 3 with IOPL 3 and interrupts off (entry.S): port I/O, MMIO through
 * the identity map, the TSC, COM1 output, the debug-exit port, the
 * heartbeat record and the mapping of BARs above 4 GiB. */
#ifndef GLIDE_VGUEST_RT_H
#define GLIDE_VGUEST_RT_H
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "guest_abi.h"

#define COM1_PORT       0x3f8
#define DEBUG_EXIT_PORT 0xf4

/* The guest's config block (patched in the ELF file by tools/guestcfg). */
extern volatile struct vguest_config vguest_config;

static inline void outb(uint16_t port, uint8_t v) { __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port)); }
static inline void outw(uint16_t port, uint16_t v) { __asm__ volatile("outw %0, %1" : : "a"(v), "Nd"(port)); }
static inline void outl(uint16_t port, uint32_t v) { __asm__ volatile("outl %0, %1" : : "a"(v), "Nd"(port)); }
static inline uint8_t inb(uint16_t port)
{
	uint8_t v;
	__asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}
static inline uint16_t inw(uint16_t port)
{
	uint16_t v;
	__asm__ volatile("inw %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}
static inline uint32_t inl(uint16_t port)
{
	uint32_t v;
	__asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}

static inline uint64_t rdtsc(void)
{
	uint32_t lo, hi;
	__asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return (uint64_t)hi << 32 | lo;
}

static inline void cpu_relax(void) { __asm__ volatile("pause" ::: "memory"); }
/* Compiler barrier: enough between stores (x86 keeps stores in order) and between loads. */
static inline void barrier(void) { __asm__ volatile("" ::: "memory"); }
/* Full fence: a store followed by a load of another location (publish, then check the device's flag). */
static inline void mb(void) { __atomic_thread_fence(__ATOMIC_SEQ_CST); }

static inline uint8_t mmio_read8(uintptr_t a) { return *(volatile uint8_t *)a; }
static inline uint16_t mmio_read16(uintptr_t a) { return *(volatile uint16_t *)a; }
static inline uint32_t mmio_read32(uintptr_t a) { return *(volatile uint32_t *)a; }
static inline void mmio_write8(uintptr_t a, uint8_t v) { *(volatile uint8_t *)a = v; }
static inline void mmio_write16(uintptr_t a, uint16_t v) { *(volatile uint16_t *)a = v; }
static inline void mmio_write32(uintptr_t a, uint32_t v) { *(volatile uint32_t *)a = v; }

/* Network byte order helpers (frames are byte arrays). */
static inline uint16_t get_be16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static inline void put_be16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)(v >> 8); p[1] = (uint8_t)v; }

void *memset(void *dst, int c, size_t n);
void *memcpy(void *dst, const void *src, size_t n);
void *memmove(void *dst, const void *src, size_t n);
int memcmp(const void *a, const void *b, size_t n);

/* Fills the IDT with entry.S's exception stubs; first thing vguest_main does. */
void rt_init(void);

/* COM1 output: a printf with %s %c %d %u %x (l, ll; width, 0 flag). */
void con_puts(const char *s);
void con_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void con_vprintf(const char *fmt, va_list ap);

/* Writes code to the debug-exit port (glide and QEMU's isa-debug-exit stop
 * the VM); without such a port it spins forever. */
void vguest_exit(uint8_t code) __attribute__((noreturn));
/* Which guest is running ("netecho", "diskab"), defined by each guest. */
extern const char vguest_name[];
/* Prints "<name>: error: <message>" and exits with code. */
void vguest_fail(uint8_t code, const char *fmt, ...) __attribute__((noreturn, format(printf, 2, 3)));

/* Heartbeat record of vCPU 0 at VGUEST_HB_ADDR (docs/guests.md): hb_start
 * once, hb_poll on every loop iteration (the gap), hb_count for each unit of
 * work (iterations). */
void hb_start(uint32_t mode);
uint64_t hb_poll(void);
void hb_count(void);

/* The PVH start info's memory map (E820 types; 1 = RAM): its entries, and
 * their count in *n. Fails the guest (VGUEST_EXIT_CONFIG) without one. */
#define PVH_E820_RAM 1u
struct pvh_memmap_entry {
	uint64_t addr, size;
	uint32_t type, reserved;
};
const struct pvh_memmap_entry *pvh_memmap(uint32_t *n);

/* Makes [addr, addr + len) reachable: below 4 GiB the static identity map
 * covers it, above it 2 MiB uncached pages are added from a small pool.
 * Returns 0, or -1 when the pool is used up or addr is beyond 256 TiB. */
int rt_map_mmio(uint64_t addr, uint64_t len);
#endif
