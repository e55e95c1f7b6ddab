/* Private helpers of the boot loaders (boot_*.c): the low-memory layout they
 * share, memory-map construction and the builders of GDT, page tables, MP
 * table and ACPI tables. See docs/boot.md for the contracts. */
#ifndef GLIDE_VMM_BOOT_PRIV_H
#define GLIDE_VMM_BOOT_PRIV_H
#include "vmm/boot.h"
#include <stdint.h>
#include <stddef.h>
#include <string.h>

#define KiB(x) ((uint64_t)(x) << 10)
#define MiB(x) ((uint64_t)(x) << 20)
#define GiB(x) ((uint64_t)(x) << 30)

/* Low-memory layout for --elf and --kernel guests (guest-physical). The
 * whole "boot area" [BOOT_AREA_START, boot_area_end) is reported as reserved
 * in the e820 table / PVH memory map. --boot (raw) guests get none of it. */
#define BOOT_AREA_START        0x1000ULL
#define BOOT_GDT_ADDR          0x1000ULL  /* GDT, BOOT_GDT_ENTRIES descriptors */
#define BOOT_TSS_ADDR          0x1080ULL  /* 104-byte TSS referenced by TR */
#define BOOT_PML4_ADDR         0x2000ULL
#define BOOT_PDPT_ADDR         0x3000ULL
#define BOOT_START_INFO_ADDR   0x4000ULL  /* PVH hvm_start_info, memory map follows */
#define BOOT_CMDLINE_ADDR      0x5000ULL  /* Linux command line */
#define BOOT_CMDLINE_MAX       4096u      /* bytes including the NUL */
#define BOOT_PARAMS_ADDR       0x6000ULL  /* Linux boot_params (zero page) */
#define BOOT_PVH_AREA_END      0x5000ULL  /* PVH: no page tables, area ends after start_info */
#define BOOT_PD_ADDR           0x10000ULL /* page directories, one 4 KiB page per GiB mapped */
#define BOOT_PD_MAX            112u       /* up to 0x80000: 112 GiB of identity map */
#define BOOT_PAGE_TABLE_MIN_MAP GiB(4)

/* Legacy PC areas. */
#define BOOT_EBDA_START        0x9FC00ULL /* conventional memory ends here */
#define BOOT_BIOS_END          0x100000ULL
#define BOOT_ACPI_ADDR         0xE0000ULL /* RSDP and ACPI tables (0xE0000-0xEFFFF) */
#define BOOT_ACPI_END          0xF0000ULL
#define BOOT_MPTABLE_ADDR      0xF0000ULL /* MP floating pointer + configuration table */
#define BOOT_MPTABLE_END       0x100000ULL

#define BOOT_LAPIC_ADDR        0xFEE00000u
#define BOOT_IOAPIC_ADDR       0xFEC00000u
#define BOOT_IOAPIC_PINS       24

/* GDT selectors (Linux requires __BOOT_CS 0x10 and __BOOT_DS 0x18). */
#define BOOT_SEL_CODE32        0x08
#define BOOT_SEL_CODE64        0x10
#define BOOT_SEL_DATA          0x18
#define BOOT_SEL_TSS           0x20  /* 16-byte system descriptor in long mode */
#define BOOT_GDT_ENTRIES       6
#define BOOT_GDT_LIMIT         (BOOT_GDT_ENTRIES * 8 - 1)
#define BOOT_TSS_LIMIT         0x67

/* Memory-map entry types (same numbers as e820 and the PVH memmap). */
#define BOOT_MEM_RAM           1
#define BOOT_MEM_RESERVED      2
#define BOOT_MEMMAP_MAX        16

struct boot_memmap_entry {
	uint64_t addr;
	uint64_t size;
	uint32_t type;
};

static inline void put_le16(void *p, uint16_t v) { memcpy(p, &v, 2); }
static inline void put_le32(void *p, uint32_t v) { memcpy(p, &v, 4); }
static inline void put_le64(void *p, uint64_t v) { memcpy(p, &v, 8); }
static inline uint16_t get_le16(const void *p) { uint16_t v; memcpy(&v, p, 2); return v; }
static inline uint32_t get_le32(const void *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static inline uint64_t get_le64(const void *p) { uint64_t v; memcpy(&v, p, 8); return v; }

/* End of RAM below 4 GiB (region 0), and the highest RAM address + 1. */
uint64_t boot_low_ram_end(const struct guest_memory *mem);
uint64_t boot_ram_top(const struct guest_memory *mem);

/* End of the boot area when page tables are built for this memory. */
uint64_t boot_area_end_with_page_tables(const struct guest_memory *mem);

/* Reads a whole file for a loader; on failure writes "<what> <path>: reason". */
uint8_t *boot_read_file(const char *what, const char *path, size_t limit, size_t *len, char *err, size_t errlen, int *rc);

/* Guest memory map: RAM regions with the boot area [BOOT_AREA_START,
 * area_end) and the legacy hole [0x9FC00, 1 MiB) reserved. Returns entries. */
int boot_build_memmap(const struct guest_memory *mem, uint64_t area_end, struct boot_memmap_entry *out, int max);

/* Builders; each returns 0 or -errno with err set. Addresses are fixed above. */
int boot_write_gdt(struct guest_memory *mem, struct boot_plan *plan, char *err, size_t errlen);
int boot_write_page_tables(struct guest_memory *mem, struct boot_plan *plan, char *err, size_t errlen);
int boot_write_mptable(struct guest_memory *mem, int vcpus, char *err, size_t errlen);
/* Writes RSDP, XSDT, RSDT, FADT, DSDT and MADT; *rsdp_addr receives the RSDP address. */
int boot_write_acpi(struct guest_memory *mem, int vcpus, uint64_t *rsdp_addr, char *err, size_t errlen);
#endif
