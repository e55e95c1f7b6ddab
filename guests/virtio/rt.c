/* rt.c: the runtime of the virtio test guests at ring 3: the IDT fill,
 * memory functions the compiler may call, COM1 output with a small printf,
 * the debug-exit port, the heartbeat record and its gap log, and the
 * page-table additions for BARs above 4 GiB (the tables are the static ones
 * of entry.S). */
#include "rt.h"

#define IDT_VECTORS    32
#define IDT_GATE_INT64 0x8e /* present, DPL 0, 64-bit interrupt gate */
#define SEL_KCODE      0x08
#define PAGE_2M        (1ULL << 21)
#define PTE_TABLE      0x27ULL /* P RW US A */
#define PDE_2M_UC      0xffULL /* P RW US PWT PCD A D PS */
#define PTE_PRESENT    1ULL
#define PTE_ADDR_MASK  0x000ffffffffff000ULL
#define MAP_POOL_TABLES 8
#define LOW_MAP_END    (4ULL << 30)
#define MAP_ADDR_LIMIT (1ULL << 48)

struct idt_gate {
	uint16_t offset_lo;
	uint16_t selector;
	uint8_t ist;
	uint8_t type;
	uint16_t offset_mid;
	uint32_t offset_hi;
	uint32_t reserved;
} __attribute__((packed));

extern struct idt_gate boot_idt[IDT_VECTORS];
extern const uint64_t fault_stub_table[IDT_VECTORS];
extern uint64_t boot_pml4[512];

static uint64_t map_pool[MAP_POOL_TABLES][512] __attribute__((aligned(4096)));
static unsigned map_pool_used;

static struct {
	uint64_t iterations, last_tsc, max_gap_tsc;
} hb;

void *memset(void *dst, int c, size_t n)
{
	uint8_t *d = dst;

	while (n--)
		*d++ = (uint8_t)c;
	return dst;
}

void *memcpy(void *dst, const void *src, size_t n)
{
	uint8_t *d = dst;
	const uint8_t *s = src;

	while (n--)
		*d++ = *s++;
	return dst;
}

void *memmove(void *dst, const void *src, size_t n)
{
	uint8_t *d = dst;
	const uint8_t *s = src;

	if (d < s)
		return memcpy(dst, src, n);
	while (n--)
		d[n] = s[n];
	return dst;
}

int memcmp(const void *a, const void *b, size_t n)
{
	const uint8_t *x = a, *y = b;

	for (; n; n--, x++, y++)
		if (*x != *y)
			return *x - *y;
	return 0;
}

void rt_init(void)
{
	for (int v = 0; v < IDT_VECTORS; v++) {
		uint64_t a = fault_stub_table[v];

		boot_idt[v] = (struct idt_gate){
			.offset_lo = (uint16_t)a,
			.selector = SEL_KCODE,
			.type = IDT_GATE_INT64,
			.offset_mid = (uint16_t)(a >> 16),
			.offset_hi = (uint32_t)(a >> 32),
		};
	}
}

void con_puts(const char *s)
{
	while (*s)
		outb(COM1_PORT, (uint8_t)*s++);
}

static void con_number(unsigned long long v, unsigned base, int width, char pad, bool negative)
{
	char buf[24];
	int n = 0;

	do {
		buf[n++] = "0123456789abcdef"[v % base];
		v /= base;
	} while (v);
	if (negative)
		buf[n++] = '-';
	for (; width > n; width--)
		outb(COM1_PORT, (uint8_t)pad);
	while (n)
		outb(COM1_PORT, (uint8_t)buf[--n]);
}

void con_vprintf(const char *fmt, va_list ap)
{
	for (; *fmt; fmt++) {
		int width = 0, longs = 0;
		char pad = ' ';
		unsigned long long u;
		long long s;

		if (*fmt != '%') {
			outb(COM1_PORT, (uint8_t)*fmt);
			continue;
		}
		fmt++;
		if (*fmt == '0')
			pad = '0', fmt++;
		while (*fmt >= '0' && *fmt <= '9')
			width = width * 10 + (*fmt++ - '0');
		while (*fmt == 'l')
			longs++, fmt++;
		switch (*fmt) {
		case 's':
			con_puts(va_arg(ap, const char *));
			break;
		case 'c':
			outb(COM1_PORT, (uint8_t)va_arg(ap, int));
			break;
		case 'd':
			s = longs ? va_arg(ap, long long) : va_arg(ap, int);
			con_number(s < 0 ? -(unsigned long long)s : (unsigned long long)s, 10, width, pad, s < 0);
			break;
		case 'u':
		case 'x':
			u = longs ? va_arg(ap, unsigned long long) : va_arg(ap, unsigned int);
			con_number(u, *fmt == 'u' ? 10 : 16, width, pad, false);
			break;
		case '%':
			outb(COM1_PORT, '%');
			break;
		default: /* unknown conversion: print it as is */
			outb(COM1_PORT, '%');
			if (!*fmt)
				return;
			outb(COM1_PORT, (uint8_t)*fmt);
		}
	}
}

void con_printf(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	con_vprintf(fmt, ap);
	va_end(ap);
}

void vguest_exit(uint8_t code)
{
	outb(DEBUG_EXIT_PORT, code);
	for (;;) /* no debug-exit device: stay here (HLT is not allowed at ring 3) */
		cpu_relax();
}

void vguest_fail(uint8_t code, const char *fmt, ...)
{
	va_list ap;

	con_printf("%s: error: ", vguest_name);
	va_start(ap, fmt);
	con_vprintf(fmt, ap);
	va_end(ap);
	con_puts("\n");
	vguest_exit(code);
}

static volatile struct vguest_hb_record *hb_record(void)
{
	return (volatile struct vguest_hb_record *)(uintptr_t)VGUEST_HB_ADDR;
}

static volatile struct vguest_gap_log *gap_log(void)
{
	return (volatile struct vguest_gap_log *)(uintptr_t)VGUEST_GAPLOG_ADDR;
}

void hb_start(uint32_t mode)
{
	volatile struct vguest_hb_record *r = hb_record();
	uint64_t now = rdtsc();

	r->magic = 0;
	barrier();
	r->iterations = 0;
	r->last_tsc = now;
	r->max_gap_tsc = 0;
	r->max_gap_end_tsc = now;
	r->started_tsc = now;
	r->index = 0;
	r->count = 1;
	r->mode = mode;
	r->reserved = 0;
	barrier();
	r->magic = VGUEST_HB_MAGIC;

	volatile struct vguest_gap_log *g = gap_log();
	g->magic = 0;
	barrier();
	g->min_gap_tsc = VGUEST_GAPLOG_MIN_TSC;
	g->count = 0;
	g->reserved = 0;
	barrier();
	g->magic = VGUEST_GAPLOG_MAGIC;
	hb.iterations = 0;
	hb.last_tsc = now;
	hb.max_gap_tsc = 0;
}

uint64_t hb_poll(void)
{
	volatile struct vguest_hb_record *r = hb_record();
	uint64_t now = rdtsc(), gap = now - hb.last_tsc;

	if (gap > hb.max_gap_tsc) {
		hb.max_gap_tsc = gap;
		r->max_gap_tsc = gap;
		r->max_gap_end_tsc = now;
	}
	if (gap >= VGUEST_GAPLOG_MIN_TSC) {
		volatile struct vguest_gap_log *g = gap_log();
		uint64_t n = g->count;
		g->entry[n % VGUEST_GAPLOG_ENTRIES].gap_tsc = gap;
		g->entry[n % VGUEST_GAPLOG_ENTRIES].end_tsc = now;
		barrier();
		g->count = n + 1;
	}
	hb.last_tsc = now;
	r->last_tsc = now;
	return now;
}

void hb_count(void)
{
	hb_record()->iterations = ++hb.iterations;
}

#define PVH_MAGIC 0x336ec578u

struct pvh_start_info {
	uint32_t magic, version, flags, nr_modules;
	uint64_t modlist_paddr, cmdline_paddr, rsdp_paddr, memmap_paddr;
	uint32_t memmap_entries, reserved;
};

extern uint32_t boot_start_info;

const struct pvh_memmap_entry *pvh_memmap(uint32_t *n)
{
	const struct pvh_start_info *si = (const struct pvh_start_info *)(uintptr_t)boot_start_info;
	if (!si || si->magic != PVH_MAGIC || si->version < 1 || !si->memmap_paddr)
		vguest_fail(VGUEST_EXIT_CONFIG, "no PVH memory map at 0x%x", boot_start_info);
	*n = si->memmap_entries;
	return (const struct pvh_memmap_entry *)(uintptr_t)si->memmap_paddr;
}

/* The next-level table an entry points to, taken from the pool when absent. */
static uint64_t *map_table(uint64_t *entry)
{
	if (!(*entry & PTE_PRESENT)) {
		if (map_pool_used == MAP_POOL_TABLES)
			return NULL;
		*entry = (uint64_t)(uintptr_t)map_pool[map_pool_used++] | PTE_TABLE;
	}
	return (uint64_t *)(uintptr_t)(*entry & PTE_ADDR_MASK);
}

int rt_map_mmio(uint64_t addr, uint64_t len)
{
	uint64_t end = addr + len;

	if (end < addr || end > MAP_ADDR_LIMIT)
		return -1;
	for (uint64_t a = addr & ~(PAGE_2M - 1); a < end; a += PAGE_2M) {
		uint64_t *pdpt, *pd;

		if (a < LOW_MAP_END)
			continue;
		pdpt = map_table(&boot_pml4[(a >> 39) & 511]);
		pd = pdpt ? map_table(&pdpt[(a >> 30) & 511]) : NULL;
		if (!pd)
			return -1;
		/* a new entry where none was present needs no TLB flush */
		if (!(pd[(a >> 21) & 511] & PTE_PRESENT))
			pd[(a >> 21) & 511] = a | PDE_2M_UC;
	}
	return 0;
}
