/* --kernel BZIMAGE [--initrd FILE] [--cmdline STR]: the Linux x86 64-bit
 * boot protocol (Documentation/arch/x86/boot.rst). The protected-mode kernel
 * is loaded at its preferred address, boot_params ("zero page") is filled from
 * the bzImage setup header, and the BSP enters startup_64 (load address +
 * 0x200) in long mode with RSI = boot_params. Secondary CPUs are described by
 * ACPI (MADT) and an MP table and are started by the kernel with INIT/SIPI. */
#include "vmm/boot_priv.h"
#include "common/util.h"
#include <errno.h>
#include <stdlib.h>

#define KERNEL_FILE_MAX        MiB(512)
#define INITRD_FILE_MAX        GiB(2)
#define LINUX_DEFAULT_LOAD     0x100000ULL  /* 1 MiB: protocol default for bzImage */
#define LINUX_ENTRY64_OFFSET   0x200        /* startup_64 relative to the load address */
#define LINUX_SECTOR_SIZE      512
#define LINUX_DEFAULT_SETUP_SECTS 4
#define LINUX_MIN_VERSION      0x020c       /* 2.12: xloadflags / XLF_KERNEL_64 */
#define LINUX_BOOT_FLAG        0xAA55
#define LINUX_HDRS_MAGIC       0x53726448u  /* "HdrS" */
#define LINUX_LOADER_UNDEFINED 0xff
#define LINUX_HEAP_END         0xfe00       /* only meaningful for the 16-bit entry */
#define LINUX_E820_MAX         128          /* entries in the zero page */
#define LINUX_E820_ENTRY_SIZE  20

/* boot_params / setup_header offsets (boot.rst "THE REAL-MODE KERNEL HEADER",
 * arch/x86/include/uapi/asm/bootparam.h). */
#define BP_ACPI_RSDP_ADDR      0x070
#define BP_EXT_RAMDISK_IMAGE   0x0c0
#define BP_EXT_RAMDISK_SIZE    0x0c4
#define BP_EXT_CMD_LINE_PTR    0x0c8
#define BP_E820_ENTRIES        0x1e8
#define BP_HDR                 0x1f1  /* setup_header starts here */
#define BP_HDR_MAX_END         0x290  /* boot_params fields resume after the header */
#define BP_E820_TABLE          0x2d0
#define HDR_SETUP_SECTS        0x1f1
#define HDR_BOOT_FLAG          0x1fe
#define HDR_JUMP               0x200
#define HDR_HEADER             0x202
#define HDR_VERSION            0x206
#define HDR_TYPE_OF_LOADER     0x210
#define HDR_LOADFLAGS          0x211
#define HDR_CODE32_START       0x214
#define HDR_RAMDISK_IMAGE      0x218
#define HDR_RAMDISK_SIZE       0x21c
#define HDR_HEAP_END_PTR       0x224
#define HDR_CMD_LINE_PTR       0x228
#define HDR_INITRD_ADDR_MAX    0x22c
#define HDR_XLOADFLAGS         0x236
#define HDR_CMDLINE_SIZE       0x238
#define HDR_PREF_ADDRESS       0x258
#define HDR_INIT_SIZE          0x260
#define HDR_END_2_12           0x268

#define LOADFLAG_LOADED_HIGH   0x01
#define LOADFLAG_KEEP_SEGMENTS 0x40
#define LOADFLAG_CAN_USE_HEAP  0x80
#define XLF_KERNEL_64          0x01

struct linux_image {
	uint64_t load_addr;    /* where the protected-mode kernel goes */
	uint64_t kernel_off;   /* offset of the protected-mode kernel in the file */
	uint64_t kernel_size;
	uint64_t run_end;      /* end of the memory the kernel needs (init_size) */
	uint32_t cmdline_max;  /* bytes, excluding the NUL */
	uint64_t initrd_max;   /* highest initrd byte address allowed + 1 */
};

static int linux_parse_header(const struct guest_memory *mem, const uint8_t *k, size_t len, const char *path,
			      struct linux_image *img, char *err, size_t errlen)
{
	uint64_t low_end = boot_low_ram_end(mem);
	unsigned setup_sects;
	uint16_t version;
	uint64_t pref, init_size;

	if (len < HDR_END_2_12) {
		errf(err, errlen, "kernel %s: not a bzImage (only %zu bytes)", path, len);
		return -ENOEXEC;
	}
	if (get_le16(k + HDR_BOOT_FLAG) != LINUX_BOOT_FLAG) {
		errf(err, errlen, "kernel %s: not a bzImage (missing 0xAA55 boot flag)", path);
		return -ENOEXEC;
	}
	if (get_le32(k + HDR_HEADER) != LINUX_HDRS_MAGIC) {
		errf(err, errlen, "kernel %s: not a bzImage (missing HdrS signature)", path);
		return -ENOEXEC;
	}
	version = get_le16(k + HDR_VERSION);
	if (version < LINUX_MIN_VERSION) {
		errf(err, errlen, "kernel %s: boot protocol %u.%02u is too old (2.12 or newer needed for the 64-bit entry)",
		     path, version >> 8, version & 0xff);
		return -ENOEXEC;
	}
	if (!(k[HDR_LOADFLAGS] & LOADFLAG_LOADED_HIGH)) {
		errf(err, errlen, "kernel %s: a zImage (loaded low) is not supported, bzImage needed", path);
		return -ENOEXEC;
	}
	if (!(get_le16(k + HDR_XLOADFLAGS) & XLF_KERNEL_64)) {
		errf(err, errlen, "kernel %s: no 64-bit entry point (XLF_KERNEL_64 not set; a 32-bit kernel?)", path);
		return -ENOEXEC;
	}
	setup_sects = k[HDR_SETUP_SECTS] ? k[HDR_SETUP_SECTS] : LINUX_DEFAULT_SETUP_SECTS;
	img->kernel_off = (uint64_t)(setup_sects + 1) * LINUX_SECTOR_SIZE;
	if (img->kernel_off >= len) {
		errf(err, errlen, "kernel %s: truncated (setup is %llu bytes, file %zu)", path,
		     (unsigned long long)img->kernel_off, len);
		return -ENOEXEC;
	}
	img->kernel_size = len - img->kernel_off;
	pref = get_le64(k + HDR_PREF_ADDRESS);
	init_size = get_le32(k + HDR_INIT_SIZE);
	/* A relocatable kernel can run anywhere but moves itself up to at least
	 * pref_address (LOAD_PHYSICAL_ADDR) anyway; a fixed one runs only there.
	 * Loading at pref_address avoids the move. */
	img->load_addr = pref >= LINUX_DEFAULT_LOAD ? pref : LINUX_DEFAULT_LOAD;
	img->run_end = img->load_addr + MAX(init_size, img->kernel_size);
	if (img->run_end > low_end) {
		errf(err, errlen, "kernel %s: needs RAM up to 0x%llx (load address 0x%llx + init_size %llu MiB), "
		     "guest RAM below 3 GiB ends at 0x%llx", path, (unsigned long long)img->run_end,
		     (unsigned long long)img->load_addr, (unsigned long long)(MAX(init_size, img->kernel_size) >> 20),
		     (unsigned long long)low_end);
		return -ENOMEM;
	}
	img->cmdline_max = get_le32(k + HDR_CMDLINE_SIZE);
	img->initrd_max = MIN((uint64_t)get_le32(k + HDR_INITRD_ADDR_MAX) + 1, low_end);
	return 0;
}

static int linux_write_boot_params(struct guest_memory *mem, const uint8_t *k, size_t len, const struct linux_image *img,
				   uint64_t initrd_addr, uint64_t initrd_size, uint64_t rsdp, uint64_t area_end,
				   char *err, size_t errlen)
{
	uint8_t *bp = guest_memory_ptr(mem, BOOT_PARAMS_ADDR, GUEST_PAGE_SIZE);
	struct boot_memmap_entry map[BOOT_MEMMAP_MAX];
	size_t hdr_end = HDR_HEADER + k[HDR_JUMP + 1]; /* the 2-byte jump at 0x200 skips the header */
	int n;

	if (!bp) {
		errf(err, errlen, "guest RAM too small for boot_params at 0x%llx", (unsigned long long)BOOT_PARAMS_ADDR);
		return -ENOMEM;
	}
	hdr_end = MIN(MIN(hdr_end, (size_t)BP_HDR_MAX_END), len);
	memset(bp, 0, GUEST_PAGE_SIZE);
	memcpy(bp + BP_HDR, k + BP_HDR, hdr_end - BP_HDR);

	bp[HDR_TYPE_OF_LOADER] = LINUX_LOADER_UNDEFINED;
	bp[HDR_LOADFLAGS] = (uint8_t)((bp[HDR_LOADFLAGS] | LOADFLAG_CAN_USE_HEAP) & ~LOADFLAG_KEEP_SEGMENTS);
	put_le16(bp + HDR_HEAP_END_PTR, LINUX_HEAP_END);
	put_le32(bp + HDR_CODE32_START, (uint32_t)img->load_addr);
	put_le32(bp + HDR_CMD_LINE_PTR, (uint32_t)BOOT_CMDLINE_ADDR);
	put_le32(bp + BP_EXT_CMD_LINE_PTR, 0);
	put_le32(bp + HDR_RAMDISK_IMAGE, (uint32_t)initrd_addr);
	put_le32(bp + HDR_RAMDISK_SIZE, (uint32_t)initrd_size);
	put_le32(bp + BP_EXT_RAMDISK_IMAGE, (uint32_t)(initrd_addr >> 32));
	put_le32(bp + BP_EXT_RAMDISK_SIZE, (uint32_t)(initrd_size >> 32));
	put_le64(bp + BP_ACPI_RSDP_ADDR, rsdp);

	n = boot_build_memmap(mem, area_end, map, BOOT_MEMMAP_MAX);
	if (n > LINUX_E820_MAX)
		n = LINUX_E820_MAX;
	bp[BP_E820_ENTRIES] = (uint8_t)n;
	for (int i = 0; i < n; i++) {
		uint8_t *e = bp + BP_E820_TABLE + i * LINUX_E820_ENTRY_SIZE;
		put_le64(e, map[i].addr);
		put_le64(e + 8, map[i].size);
		put_le32(e + 16, map[i].type);
	}
	return 0;
}

int boot_load_linux(struct guest_memory *mem, int vcpus, const char *kernel, const char *initrd,
		    const char *cmdline, struct boot_plan *plan, char *err, size_t errlen)
{
	struct linux_image img;
	uint8_t *k = NULL, *rd = NULL, *dst;
	size_t klen = 0, rdlen = 0, cmdlen;
	uint64_t initrd_addr = 0, rsdp = 0, area_end = boot_area_end_with_page_tables(mem);
	int rc;

	if (!cmdline)
		cmdline = "";
	if (boot_low_ram_end(mem) < MiB(2)) {
		errf(err, errlen, "kernel %s: guest RAM is too small", kernel ? kernel : "");
		return -ENOMEM;
	}
	k = boot_read_file("kernel", kernel, KERNEL_FILE_MAX, &klen, err, errlen, &rc);
	if (!k)
		return rc;
	rc = linux_parse_header(mem, k, klen, kernel, &img, err, errlen);
	if (rc)
		goto out;
	cmdlen = strlen(cmdline);
	if (cmdlen > img.cmdline_max || cmdlen + 1 > BOOT_CMDLINE_MAX) {
		errf(err, errlen, "kernel %s: command line is %zu bytes, at most %u accepted", kernel, cmdlen,
		     MIN(img.cmdline_max, BOOT_CMDLINE_MAX - 1));
		rc = -E2BIG;
		goto out;
	}
	if (initrd) {
		rd = boot_read_file("initrd", initrd, INITRD_FILE_MAX, &rdlen, err, errlen, &rc);
		if (!rd)
			goto out;
		/* As high as allowed, page aligned, above everything the kernel uses. */
		if (rdlen <= img.initrd_max)
			initrd_addr = (img.initrd_max - rdlen) & ~(GUEST_PAGE_SIZE - 1);
		if (rdlen > img.initrd_max || initrd_addr < img.run_end) {
			errf(err, errlen, "initrd %s: %zu bytes do not fit between the kernel (ends at 0x%llx) and 0x%llx", initrd,
			     rdlen, (unsigned long long)img.run_end, (unsigned long long)img.initrd_max);
			rc = -ENOMEM;
			goto out;
		}
	}

	memset(plan, 0, sizeof(*plan));
	rc = boot_write_gdt(mem, plan, err, errlen);
	if (!rc)
		rc = boot_write_page_tables(mem, plan, err, errlen);
	if (!rc)
		rc = boot_write_mptable(mem, vcpus, err, errlen);
	if (!rc)
		rc = boot_write_acpi(mem, vcpus, &rsdp, err, errlen);
	if (!rc)
		rc = linux_write_boot_params(mem, k, klen, &img, initrd_addr, rdlen, rsdp, area_end, err, errlen);
	if (rc)
		goto out;
	dst = guest_memory_ptr(mem, BOOT_CMDLINE_ADDR, cmdlen + 1);
	memcpy(dst, cmdline, cmdlen + 1);
	dst = guest_memory_ptr(mem, img.load_addr, img.kernel_size);
	memcpy(dst, k + img.kernel_off, img.kernel_size);
	if (rd) {
		dst = guest_memory_ptr(mem, initrd_addr, rdlen);
		memcpy(dst, rd, rdlen);
	}
	plan->mode = BOOT_MODE_LINUX64;
	plan->entry = img.load_addr + LINUX_ENTRY64_OFFSET;
	plan->arg = BOOT_PARAMS_ADDR;
	plan->aps_wait_for_sipi = 1;
out:
	free(k);
	free(rd);
	return rc;
}
