/* Boot-time tables shared by the ELF and Linux loaders: the guest memory
 * map, the GDT and TSS, identity-mapped 2 MiB page tables, the Intel MP
 * table and a minimal ACPI table set (RSDP, XSDT/RSDT, FADT, DSDT, MADT,
 * MCFG for the PCI bus's ECAM).
 * Layout constants are in boot_priv.h; docs/boot.md describes them. */
#include "vmm/boot_priv.h"
#include "devices/pci.h"
#include "common/util.h"
#include <errno.h>
#include <stdlib.h>

#define PTE_PRESENT  0x001ULL
#define PTE_WRITE    0x002ULL
#define PTE_USER     0x004ULL  /* lets a guest drop to CPL 3 without its own tables */
#define PTE_LARGE    0x080ULL  /* 2 MiB page in a page directory */
#define PT_ENTRIES   512
#define PAGE_2M      MiB(2)

uint64_t boot_low_ram_end(const struct guest_memory *mem)
{
	for (int i = 0; i < mem->nregions; i++)
		if (mem->regions[i].gpa == 0)
			return mem->regions[i].size;
	return 0;
}

uint64_t boot_ram_top(const struct guest_memory *mem)
{
	uint64_t top = 0;

	for (int i = 0; i < mem->nregions; i++)
		top = MAX(top, mem->regions[i].gpa + mem->regions[i].size);
	return top;
}

static unsigned boot_pd_count(const struct guest_memory *mem)
{
	uint64_t map = MAX(boot_ram_top(mem), BOOT_PAGE_TABLE_MIN_MAP);

	return (unsigned)((map + GiB(1) - 1) / GiB(1));
}

uint64_t boot_area_end_with_page_tables(const struct guest_memory *mem)
{
	return BOOT_PD_ADDR + (uint64_t)boot_pd_count(mem) * GUEST_PAGE_SIZE;
}

uint8_t *boot_read_file(const char *what, const char *path, size_t limit, size_t *len, char *err, size_t errlen, int *rc)
{
	uint8_t *buf;

	if (!path || !*path) {
		errf(err, errlen, "%s: no file given", what);
		*rc = -EINVAL;
		return NULL;
	}
	buf = (uint8_t *)read_file_limited(path, limit, len, rc);
	if (!buf) {
		if (*rc == -EFBIG)
			errf(err, errlen, "%s %s: file is larger than %zu bytes", what, path, limit);
		else
			errf(err, errlen, "%s %s: %s", what, path, strerror(-*rc));
		return NULL;
	}
	if (*len == 0) {
		errf(err, errlen, "%s %s: file is empty", what, path);
		free(buf);
		*rc = -EINVAL;
		return NULL;
	}
	*rc = 0;
	return buf;
}

static int memmap_add(struct boot_memmap_entry *out, int n, int max, uint64_t start, uint64_t end, uint32_t type)
{
	if (end <= start)
		return n;
	if (n > 0 && out[n - 1].type == type && out[n - 1].addr + out[n - 1].size == start) {
		out[n - 1].size += end - start;
		return n;
	}
	if (n >= max)
		return n;
	out[n] = (struct boot_memmap_entry){ .addr = start, .size = end - start, .type = type };
	return n + 1;
}

int boot_build_memmap(const struct guest_memory *mem, uint64_t area_end, struct boot_memmap_entry *out, int max)
{
	int n = 0;

	for (int i = 0; i < mem->nregions; i++) {
		uint64_t start = mem->regions[i].gpa, end = start + mem->regions[i].size;

		if (start >= BOOT_BIOS_END) {
			n = memmap_add(out, n, max, start, end, BOOT_MEM_RAM);
			continue;
		}
		/* The region holding low memory: carve out the boot area and the legacy hole. */
		n = memmap_add(out, n, max, start, MIN(end, BOOT_AREA_START), BOOT_MEM_RAM);
		n = memmap_add(out, n, max, MAX(start, BOOT_AREA_START), MIN(end, area_end), BOOT_MEM_RESERVED);
		n = memmap_add(out, n, max, MAX(start, area_end), MIN(end, BOOT_EBDA_START), BOOT_MEM_RAM);
		n = memmap_add(out, n, max, MAX(start, BOOT_EBDA_START), MIN(end, BOOT_BIOS_END), BOOT_MEM_RESERVED);
		n = memmap_add(out, n, max, MAX(start, BOOT_BIOS_END), end, BOOT_MEM_RAM);
	}
	return n;
}

static void *boot_ptr(struct guest_memory *mem, uint64_t gpa, uint64_t len, const char *what, char *err, size_t errlen)
{
	void *p = guest_memory_ptr(mem, gpa, len);

	if (!p)
		errf(err, errlen, "guest RAM too small for the %s at 0x%llx (%llu bytes)", what,
		     (unsigned long long)gpa, (unsigned long long)len);
	return p;
}

/* Flat segment descriptor: base 0, limit 4 GiB, G=1. */
static uint64_t gdt_flat(uint8_t access, uint8_t flags)
{
	return 0xffffULL | ((uint64_t)access << 40) | (0xfULL << 48) | ((uint64_t)flags << 52);
}

int boot_write_gdt(struct guest_memory *mem, struct boot_plan *plan, char *err, size_t errlen)
{
	uint64_t gdt[BOOT_GDT_ENTRIES] = { 0 };
	uint8_t *gdt_host = boot_ptr(mem, BOOT_GDT_ADDR, sizeof(gdt), "GDT", err, errlen);
	uint8_t *tss_host = boot_ptr(mem, BOOT_TSS_ADDR, BOOT_TSS_LIMIT + 1, "TSS", err, errlen);
	uint64_t tss = BOOT_TSS_ADDR;

	if (!gdt_host || !tss_host)
		return -ENOMEM;
	/* access: P | DPL0 | S | type; flags: G | D/B | L */
	gdt[BOOT_SEL_CODE32 / 8] = gdt_flat(0x9b, 0xc); /* execute/read, accessed, 32-bit */
	gdt[BOOT_SEL_CODE64 / 8] = gdt_flat(0x9b, 0xa); /* execute/read, accessed, L=1 */
	gdt[BOOT_SEL_DATA / 8] = gdt_flat(0x93, 0xc);   /* read/write, accessed */
	/* Busy TSS (type 11), 16 bytes in long mode; the high half is a null descriptor in 32-bit mode. */
	gdt[BOOT_SEL_TSS / 8] = BOOT_TSS_LIMIT | ((tss & 0xffffff) << 16) | (0x8bULL << 40) | (((tss >> 24) & 0xff) << 56);
	gdt[BOOT_SEL_TSS / 8 + 1] = tss >> 32;
	memcpy(gdt_host, gdt, sizeof(gdt));
	memset(tss_host, 0, BOOT_TSS_LIMIT + 1);
	put_le16(tss_host + 0x66, BOOT_TSS_LIMIT + 1); /* I/O map base beyond the limit: no bitmap */
	plan->gdt_base = BOOT_GDT_ADDR;
	plan->gdt_limit = BOOT_GDT_LIMIT;
	return 0;
}

int boot_write_page_tables(struct guest_memory *mem, struct boot_plan *plan, char *err, size_t errlen)
{
	unsigned npd = boot_pd_count(mem);
	uint64_t *pml4, *pdpt, *pd;

	if (npd > BOOT_PD_MAX) {
		errf(err, errlen, "the boot page tables map at most %u GiB; guest RAM ends at %llu GiB", BOOT_PD_MAX,
		     (unsigned long long)(boot_ram_top(mem) >> 30));
		return -E2BIG;
	}
	pml4 = boot_ptr(mem, BOOT_PML4_ADDR, GUEST_PAGE_SIZE, "PML4", err, errlen);
	pdpt = boot_ptr(mem, BOOT_PDPT_ADDR, GUEST_PAGE_SIZE, "PDPT", err, errlen);
	pd = boot_ptr(mem, BOOT_PD_ADDR, (uint64_t)npd * GUEST_PAGE_SIZE, "page directories", err, errlen);
	if (!pml4 || !pdpt || !pd)
		return -ENOMEM;
	memset(pml4, 0, GUEST_PAGE_SIZE);
	memset(pdpt, 0, GUEST_PAGE_SIZE);
	pml4[0] = BOOT_PDPT_ADDR | PTE_PRESENT | PTE_WRITE | PTE_USER;
	for (unsigned i = 0; i < npd; i++) {
		pdpt[i] = (BOOT_PD_ADDR + i * GUEST_PAGE_SIZE) | PTE_PRESENT | PTE_WRITE | PTE_USER;
		for (unsigned j = 0; j < PT_ENTRIES; j++)
			pd[i * PT_ENTRIES + j] = (GiB(i) + j * PAGE_2M) | PTE_PRESENT | PTE_WRITE | PTE_USER | PTE_LARGE;
	}
	plan->cr3 = BOOT_PML4_ADDR;
	return 0;
}

static uint8_t checksum8(const uint8_t *p, size_t len)
{
	uint8_t sum = 0;

	while (len--)
		sum += *p++;
	return (uint8_t)-sum;
}

/* ---- Intel MultiProcessor Specification 1.4 table ---- */

#define MP_FLOAT_SIZE        16
#define MP_HEADER_SIZE       44
#define MP_PROC_SIZE         20
#define MP_ENTRY_SIZE        8   /* bus, I/O APIC, interrupt entries */
#define MP_SPEC_REV          4
#define MP_ENTRY_PROCESSOR   0
#define MP_ENTRY_BUS         1
#define MP_ENTRY_IOAPIC      2
#define MP_ENTRY_IOINT       3
#define MP_ENTRY_LOCALINT    4
#define MP_INT_INT           0
#define MP_INT_NMI           1
#define MP_INT_EXTINT        3
#define MP_CPU_ENABLED       0x01
#define MP_CPU_BSP           0x02
#define MP_LAPIC_VERSION     0x14
#define MP_IOAPIC_VERSION    0x11
#define MP_ISA_IRQS          16
#define MP_ALL_LAPICS        0xff

static uint8_t *mp_entry8(uint8_t *p, uint8_t type, uint8_t a, uint16_t b, uint8_t c, uint8_t d, uint8_t e, uint8_t f)
{
	p[0] = type;
	p[1] = a;
	put_le16(p + 2, b);
	p[4] = c;
	p[5] = d;
	p[6] = e;
	p[7] = f;
	return p + MP_ENTRY_SIZE;
}

int boot_write_mptable(struct guest_memory *mem, int vcpus, char *err, size_t errlen)
{
	size_t size = MP_FLOAT_SIZE + MP_HEADER_SIZE + (size_t)vcpus * MP_PROC_SIZE +
		      (2 + MP_ISA_IRQS + 2) * MP_ENTRY_SIZE;
	uint8_t *base = boot_ptr(mem, BOOT_MPTABLE_ADDR, BOOT_MPTABLE_END - BOOT_MPTABLE_ADDR, "MP table", err, errlen);
	uint8_t *hdr, *p;
	uint8_t ioapic_id = (uint8_t)vcpus;
	uint16_t count = 0;

	if (!base)
		return -ENOMEM;
	if (vcpus < 1 || vcpus > 254 || size > BOOT_MPTABLE_END - BOOT_MPTABLE_ADDR) {
		errf(err, errlen, "MP table: %d vCPUs do not fit (1..254)", vcpus);
		return -E2BIG;
	}
	memset(base, 0, size);
	hdr = base + MP_FLOAT_SIZE;
	p = hdr + MP_HEADER_SIZE;
	for (int i = 0; i < vcpus; i++, count++) {
		p[0] = MP_ENTRY_PROCESSOR;
		p[1] = (uint8_t)i; /* LAPIC ID = vCPU index, as in the vCPU's CPUID */
		p[2] = MP_LAPIC_VERSION;
		p[3] = MP_CPU_ENABLED | (i == 0 ? MP_CPU_BSP : 0);
		put_le32(p + 4, 0x600);      /* family 6 signature */
		put_le32(p + 8, 0x201);      /* FPU, APIC */
		p += MP_PROC_SIZE;
	}
	p[0] = MP_ENTRY_BUS;
	p[1] = 0;
	memcpy(p + 2, "ISA   ", 6);
	p += MP_ENTRY_SIZE;
	count++;
	p[0] = MP_ENTRY_IOAPIC;
	p[1] = ioapic_id;
	p[2] = MP_IOAPIC_VERSION;
	p[3] = 1; /* enabled */
	put_le32(p + 4, BOOT_IOAPIC_ADDR);
	p += MP_ENTRY_SIZE;
	count++;
	/* ISA IRQ n -> I/O APIC pin n: KVM's default GSI routing (no IRQ0 -> pin 2 override). */
	for (uint8_t irq = 0; irq < MP_ISA_IRQS; irq++) {
		if (irq == 2) /* the PIC cascade */
			continue;
		p = mp_entry8(p, MP_ENTRY_IOINT, MP_INT_INT, 0, 0, irq, ioapic_id, irq);
		count++;
	}
	p = mp_entry8(p, MP_ENTRY_LOCALINT, MP_INT_EXTINT, 0, 0, 0, MP_ALL_LAPICS, 0);
	p = mp_entry8(p, MP_ENTRY_LOCALINT, MP_INT_NMI, 0, 0, 0, MP_ALL_LAPICS, 1);
	count += 2;

	memcpy(hdr, "PCMP", 4);
	put_le16(hdr + 4, (uint16_t)(p - hdr));
	hdr[6] = MP_SPEC_REV;
	memcpy(hdr + 8, "GLIDE   ", 8);
	memcpy(hdr + 16, "GLIDE VM    ", 12);
	put_le16(hdr + 34, count);
	put_le32(hdr + 36, BOOT_LAPIC_ADDR);
	hdr[7] = checksum8(hdr, (size_t)(p - hdr));

	memcpy(base, "_MP_", 4);
	put_le32(base + 4, (uint32_t)(BOOT_MPTABLE_ADDR + MP_FLOAT_SIZE));
	base[8] = 1; /* length in 16-byte units */
	base[9] = MP_SPEC_REV;
	base[10] = checksum8(base, MP_FLOAT_SIZE);
	return 0;
}

/* ---- ACPI ---- */

#define ACPI_HDR_SIZE        36
#define ACPI_RSDP_SIZE       36
#define ACPI_RSDP_V1_SIZE    20
#define ACPI_FADT_SIZE       276 /* ACPI 6.0 layout */
#define ACPI_FADT_REV        6
#define ACPI_MADT_REV        4
#define ACPI_OEM_ID          "GLIDE "
#define ACPI_OEM_TABLE_ID    "GLIDEVM "
#define ACPI_CREATOR_ID      "GLDE"

#define ACPI_RSDP_OFF        0x000
#define ACPI_XSDT_OFF        0x040
#define ACPI_RSDT_OFF        0x080
#define ACPI_FADT_OFF        0x100
#define ACPI_DSDT_OFF        0x240
#define ACPI_MADT_OFF        0x280
#define ACPI_MCFG_OFF        0xc00 /* after the largest MADT (254 vCPUs) */
#define ACPI_MCFG_SIZE       (ACPI_HDR_SIZE + 8 + 16)

#define FADT_SCI_IRQ         9
#define FADT_FLAG_PWR_BUTTON (1u << 4)  /* no fixed power button */
#define FADT_FLAG_SLP_BUTTON (1u << 5)  /* no fixed sleep button */
#define FADT_FLAG_RESET_REG  (1u << 10)
#define FADT_FLAG_HW_REDUCED (1u << 20)
#define FADT_BOOT_NO_VGA     (1u << 2)
#define ACPI_GAS_SYSTEM_IO   1
#define ACPI_GAS_ACCESS_BYTE 1

#define MADT_LAPIC           0
#define MADT_IOAPIC          1
#define MADT_ISO             2
#define MADT_PCAT_COMPAT     1
#define MADT_ISO_LEVEL_HIGH  0x000d /* active high, level triggered */

static void acpi_header(uint8_t *t, const char *sig, uint32_t len, uint8_t rev)
{
	memcpy(t, sig, 4);
	put_le32(t + 4, len);
	t[8] = rev;
	memcpy(t + 10, ACPI_OEM_ID, 6);
	memcpy(t + 16, ACPI_OEM_TABLE_ID, 8);
	put_le32(t + 24, 1);
	memcpy(t + 28, ACPI_CREATOR_ID, 4);
	put_le32(t + 32, 1);
	t[9] = 0;
	t[9] = checksum8(t, len);
}

int boot_write_acpi(struct guest_memory *mem, int vcpus, uint64_t *rsdp_addr, char *err, size_t errlen)
{
	uint8_t *base = boot_ptr(mem, BOOT_ACPI_ADDR, BOOT_ACPI_END - BOOT_ACPI_ADDR, "ACPI tables", err, errlen);
	uint8_t *rsdp, *xsdt, *rsdt, *fadt, *dsdt, *madt, *mcfg, *p;
	uint64_t fadt_addr = BOOT_ACPI_ADDR + ACPI_FADT_OFF, madt_addr = BOOT_ACPI_ADDR + ACPI_MADT_OFF;
	uint64_t mcfg_addr = BOOT_ACPI_ADDR + ACPI_MCFG_OFF;
	uint64_t dsdt_addr = BOOT_ACPI_ADDR + ACPI_DSDT_OFF;
	uint32_t madt_len = ACPI_HDR_SIZE + 8 + (uint32_t)vcpus * 8 + 12 + 10;

	if (!base)
		return -ENOMEM;
	if (vcpus < 1 || vcpus > 254 || ACPI_MADT_OFF + madt_len > ACPI_MCFG_OFF) {
		errf(err, errlen, "ACPI MADT: %d vCPUs do not fit (1..254)", vcpus);
		return -E2BIG;
	}
	memset(base, 0, ACPI_MCFG_OFF + ACPI_MCFG_SIZE);
	rsdp = base + ACPI_RSDP_OFF;
	xsdt = base + ACPI_XSDT_OFF;
	rsdt = base + ACPI_RSDT_OFF;
	fadt = base + ACPI_FADT_OFF;
	dsdt = base + ACPI_DSDT_OFF;
	madt = base + ACPI_MADT_OFF;
	mcfg = base + ACPI_MCFG_OFF;

	/* DSDT: an empty definition block (no AML). */
	acpi_header(dsdt, "DSDT", ACPI_HDR_SIZE, 2);

	/* FADT: hardware-reduced ACPI (no PM1 blocks, PM timer or SCI hardware),
	 * reset through the i8042 command port, no VGA (MSI allowed: the
	 * virtio devices use MSI-X). */
	put_le32(fadt + 40, (uint32_t)dsdt_addr);
	put_le16(fadt + 46, FADT_SCI_IRQ);
	put_le16(fadt + 109, FADT_BOOT_NO_VGA);
	put_le32(fadt + 112, FADT_FLAG_PWR_BUTTON | FADT_FLAG_SLP_BUTTON | FADT_FLAG_RESET_REG | FADT_FLAG_HW_REDUCED);
	fadt[116] = ACPI_GAS_SYSTEM_IO; /* RESET_REG */
	fadt[117] = 8;
	fadt[119] = ACPI_GAS_ACCESS_BYTE;
	put_le64(fadt + 120, 0x64);
	fadt[128] = 0xfe;              /* RESET_VALUE: i8042 pulse reset line */
	fadt[131] = 0;                 /* FADT minor version */
	put_le64(fadt + 140, dsdt_addr);  /* X_DSDT */
	memcpy(fadt + 268, "GLIDEKVM", 8); /* hypervisor vendor identity */
	acpi_header(fadt, "FACP", ACPI_FADT_SIZE, ACPI_FADT_REV);

	/* MADT: one LAPIC per vCPU (APIC ID = index), the I/O APIC (ID = vCPU
	 * count, GSI base 0) and the SCI override. ISA IRQs are identity mapped,
	 * matching KVM's default GSI routing, so IRQ0 is not overridden to GSI 2. */
	p = madt + ACPI_HDR_SIZE;
	put_le32(p, BOOT_LAPIC_ADDR);
	put_le32(p + 4, MADT_PCAT_COMPAT);
	p += 8;
	for (int i = 0; i < vcpus; i++, p += 8) {
		p[0] = MADT_LAPIC;
		p[1] = 8;
		p[2] = (uint8_t)i;  /* ACPI processor UID */
		p[3] = (uint8_t)i;  /* APIC ID */
		put_le32(p + 4, 1); /* enabled */
	}
	p[0] = MADT_IOAPIC;
	p[1] = 12;
	p[2] = (uint8_t)vcpus;
	put_le32(p + 4, BOOT_IOAPIC_ADDR);
	put_le32(p + 8, 0);
	p += 12;
	p[0] = MADT_ISO;
	p[1] = 10;
	p[2] = 0;             /* ISA bus */
	p[3] = FADT_SCI_IRQ;  /* source IRQ */
	put_le32(p + 4, FADT_SCI_IRQ);
	put_le16(p + 8, MADT_ISO_LEVEL_HIGH);
	acpi_header(madt, "APIC", madt_len, ACPI_MADT_REV);

	/* MCFG: ECAM (MMCONFIG) for PCI segment 0, bus 0 (devices/pci.h). */
	put_le64(mcfg + ACPI_HDR_SIZE + 8, PCI_ECAM_BASE);
	put_le16(mcfg + ACPI_HDR_SIZE + 16, 0); /* segment */
	mcfg[ACPI_HDR_SIZE + 18] = 0;           /* start bus */
	mcfg[ACPI_HDR_SIZE + 19] = 0;           /* end bus */
	acpi_header(mcfg, "MCFG", ACPI_MCFG_SIZE, 1);

	put_le64(xsdt + ACPI_HDR_SIZE, fadt_addr);
	put_le64(xsdt + ACPI_HDR_SIZE + 8, madt_addr);
	put_le64(xsdt + ACPI_HDR_SIZE + 16, mcfg_addr);
	acpi_header(xsdt, "XSDT", ACPI_HDR_SIZE + 24, 1);
	put_le32(rsdt + ACPI_HDR_SIZE, (uint32_t)fadt_addr);
	put_le32(rsdt + ACPI_HDR_SIZE + 4, (uint32_t)madt_addr);
	put_le32(rsdt + ACPI_HDR_SIZE + 8, (uint32_t)mcfg_addr);
	acpi_header(rsdt, "RSDT", ACPI_HDR_SIZE + 12, 1);

	memcpy(rsdp, "RSD PTR ", 8);
	memcpy(rsdp + 9, ACPI_OEM_ID, 6);
	rsdp[15] = 2; /* ACPI 2.0+ RSDP */
	put_le32(rsdp + 16, (uint32_t)(BOOT_ACPI_ADDR + ACPI_RSDT_OFF));
	put_le32(rsdp + 20, ACPI_RSDP_SIZE);
	put_le64(rsdp + 24, BOOT_ACPI_ADDR + ACPI_XSDT_OFF);
	rsdp[8] = checksum8(rsdp, ACPI_RSDP_V1_SIZE);
	rsdp[32] = checksum8(rsdp, ACPI_RSDP_SIZE);
	*rsdp_addr = BOOT_ACPI_ADDR + ACPI_RSDP_OFF;
	return 0;
}
