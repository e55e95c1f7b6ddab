/* --elf FILE: a 64-bit x86 ELF executable loaded by its program headers
 * (physical addresses). With a Xen PVH note (XEN_ELFNOTE_PHYS32_ENTRY) the
 * vCPUs enter at that 32-bit address with paging off and EBX pointing to an
 * hvm_start_info; otherwise they enter e_entry in 64-bit mode on
 * identity-mapped page tables. See docs/boot.md. */
#include "vmm/boot_priv.h"
#include "common/util.h"
#include <elf.h>
#include <errno.h>
#include <stdlib.h>

#define ELF_FILE_MAX            GiB(1)
#define XEN_ELFNOTE_PHYS32_ENTRY 18
#define PVH_START_INFO_MAGIC    0x336ec578u
#define PVH_START_INFO_VERSION  1
#define PVH_START_INFO_SIZE     56
#define PVH_MEMMAP_OFFSET       64  /* memmap follows start_info at this offset */
#define PVH_MEMMAP_ENTRY_SIZE   24
#define NOTE_ALIGN(x)           (((x) + 3) & ~(uint64_t)3)

/* Finds the PVH entry in the PT_NOTE segments; 0 = none, 1 = found, <0 = malformed. */
static int elf_find_pvh_entry(const uint8_t *file, const Elf64_Phdr *ph, int phnum, uint64_t *entry,
			      const char *path, char *err, size_t errlen)
{
	for (int i = 0; i < phnum; i++) {
		uint64_t off, end;

		if (ph[i].p_type != PT_NOTE)
			continue;
		off = ph[i].p_offset;
		end = off + ph[i].p_filesz;
		while (off + sizeof(Elf64_Nhdr) <= end) {
			Elf64_Nhdr nh;
			uint64_t name_off, desc_off;

			memcpy(&nh, file + off, sizeof(nh));
			name_off = off + sizeof(nh);
			desc_off = name_off + NOTE_ALIGN(nh.n_namesz);
			if (desc_off > end || nh.n_descsz > end - desc_off) {
				errf(err, errlen, "ELF %s: malformed note in program header %d", path, i);
				return -EINVAL;
			}
			if (nh.n_namesz == 4 && !memcmp(file + name_off, "Xen", 4) && nh.n_type == XEN_ELFNOTE_PHYS32_ENTRY) {
				if (nh.n_descsz == 4)
					*entry = get_le32(file + desc_off);
				else if (nh.n_descsz == 8)
					*entry = get_le64(file + desc_off);
				else {
					errf(err, errlen, "ELF %s: PVH entry note has a %u-byte value (4 or 8 expected)", path, nh.n_descsz);
					return -EINVAL;
				}
				return 1;
			}
			off = desc_off + NOTE_ALIGN(nh.n_descsz);
		}
	}
	return 0;
}

static bool ranges_overlap(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
	return a < b + blen && b < a + alen;
}

static int elf_validate(const struct guest_memory *mem, const uint8_t *file, size_t len, const char *path,
			uint64_t area_end, char *err, size_t errlen)
{
	const Elf64_Ehdr *eh = (const Elf64_Ehdr *)file;
	const Elf64_Phdr *ph;
	int loads = 0;

	if (len < EI_NIDENT || memcmp(file, ELFMAG, SELFMAG)) {
		errf(err, errlen, "ELF %s: not an ELF file (bad magic)", path);
		return -ENOEXEC;
	}
	if (file[EI_CLASS] != ELFCLASS64) {
		errf(err, errlen, "ELF %s: not a 64-bit ELF (class %u)", path, file[EI_CLASS]);
		return -ENOEXEC;
	}
	if (len < sizeof(Elf64_Ehdr)) {
		errf(err, errlen, "ELF %s: truncated ELF header", path);
		return -ENOEXEC;
	}
	if (file[EI_DATA] != ELFDATA2LSB) {
		errf(err, errlen, "ELF %s: not little-endian", path);
		return -ENOEXEC;
	}
	if (eh->e_machine != EM_X86_64) {
		errf(err, errlen, "ELF %s: machine %u is not x86-64 (%u)", path, eh->e_machine, EM_X86_64);
		return -ENOEXEC;
	}
	if (eh->e_type != ET_EXEC) {
		errf(err, errlen, "ELF %s: not an executable (e_type %u; link with fixed addresses, not PIE)", path, eh->e_type);
		return -ENOEXEC;
	}
	if (eh->e_phnum == 0 || eh->e_phentsize != sizeof(Elf64_Phdr)) {
		errf(err, errlen, "ELF %s: no usable program headers (phnum %u, phentsize %u)", path, eh->e_phnum,
		     eh->e_phentsize);
		return -ENOEXEC;
	}
	if (eh->e_phoff > len || (uint64_t)eh->e_phnum * sizeof(Elf64_Phdr) > len - eh->e_phoff) {
		errf(err, errlen, "ELF %s: program headers lie outside the file", path);
		return -ENOEXEC;
	}
	ph = (const Elf64_Phdr *)(file + eh->e_phoff);
	for (int i = 0; i < eh->e_phnum; i++) {
		if (ph[i].p_type != PT_LOAD && ph[i].p_type != PT_NOTE)
			continue;
		if (ph[i].p_offset > len || ph[i].p_filesz > len - ph[i].p_offset) {
			errf(err, errlen, "ELF %s: segment %d (offset 0x%llx, %llu bytes) lies outside the file", path, i,
			     (unsigned long long)ph[i].p_offset, (unsigned long long)ph[i].p_filesz);
			return -ENOEXEC;
		}
		if (ph[i].p_type != PT_LOAD)
			continue;
		if (ph[i].p_filesz > ph[i].p_memsz) {
			errf(err, errlen, "ELF %s: segment %d has filesz > memsz", path, i);
			return -ENOEXEC;
		}
		if (!ph[i].p_memsz)
			continue;
		if (!guest_memory_ptr(mem, ph[i].p_paddr, ph[i].p_memsz)) {
			errf(err, errlen, "ELF %s: segment %d [0x%llx, 0x%llx) is not inside guest RAM", path, i,
			     (unsigned long long)ph[i].p_paddr, (unsigned long long)(ph[i].p_paddr + ph[i].p_memsz));
			return -ENOEXEC;
		}
		if (ranges_overlap(ph[i].p_paddr, ph[i].p_memsz, BOOT_AREA_START, area_end - BOOT_AREA_START)) {
			errf(err, errlen, "ELF %s: segment %d [0x%llx, 0x%llx) overlaps the boot tables at [0x%llx, 0x%llx)",
			     path, i, (unsigned long long)ph[i].p_paddr, (unsigned long long)(ph[i].p_paddr + ph[i].p_memsz),
			     (unsigned long long)BOOT_AREA_START, (unsigned long long)area_end);
			return -ENOEXEC;
		}
		loads++;
	}
	if (!loads) {
		errf(err, errlen, "ELF %s: no loadable segment", path);
		return -ENOEXEC;
	}
	return 0;
}

static bool elf_entry_loaded(const Elf64_Phdr *ph, int phnum, uint64_t entry)
{
	for (int i = 0; i < phnum; i++)
		if (ph[i].p_type == PT_LOAD && ph[i].p_vaddr == ph[i].p_paddr && entry >= ph[i].p_paddr &&
		    entry - ph[i].p_paddr < ph[i].p_memsz)
			return true;
	return false;
}

static int pvh_write_start_info(struct guest_memory *mem, uint64_t area_end, uint64_t *addr, char *err, size_t errlen)
{
	struct boot_memmap_entry map[BOOT_MEMMAP_MAX];
	int n = boot_build_memmap(mem, area_end, map, BOOT_MEMMAP_MAX);
	uint64_t size = PVH_MEMMAP_OFFSET + (uint64_t)n * PVH_MEMMAP_ENTRY_SIZE;
	uint8_t *si = guest_memory_ptr(mem, BOOT_START_INFO_ADDR, size);

	if (!si) {
		errf(err, errlen, "guest RAM too small for the PVH start_info at 0x%llx", (unsigned long long)BOOT_START_INFO_ADDR);
		return -ENOMEM;
	}
	memset(si, 0, size);
	put_le32(si + 0, PVH_START_INFO_MAGIC);
	put_le32(si + 4, PVH_START_INFO_VERSION);
	/* flags, nr_modules, modlist_paddr, cmdline_paddr, rsdp_paddr: all 0 */
	put_le64(si + 40, BOOT_START_INFO_ADDR + PVH_MEMMAP_OFFSET);
	put_le32(si + 48, (uint32_t)n);
	for (int i = 0; i < n; i++) {
		uint8_t *e = si + PVH_MEMMAP_OFFSET + i * PVH_MEMMAP_ENTRY_SIZE;
		put_le64(e, map[i].addr);
		put_le64(e + 8, map[i].size);
		put_le32(e + 16, map[i].type);
	}
	*addr = BOOT_START_INFO_ADDR;
	return 0;
}

int boot_load_elf(struct guest_memory *mem, int vcpus, const char *path, struct boot_plan *plan, char *err, size_t errlen)
{
	const Elf64_Ehdr *eh;
	const Elf64_Phdr *ph;
	uint64_t pvh_entry = 0, area_end;
	size_t len;
	uint8_t *file;
	int rc, pvh;

	if (boot_low_ram_end(mem) < BOOT_BIOS_END) {
		errf(err, errlen, "ELF %s: guest RAM must be at least 1 MiB", path ? path : "");
		return -ENOMEM;
	}
	file = boot_read_file("ELF", path, ELF_FILE_MAX, &len, err, errlen, &rc);
	if (!file)
		return rc;
	/* First with the smaller PVH boot area; the 64-bit one is checked once the mode is known. */
	rc = elf_validate(mem, file, len, path, BOOT_PVH_AREA_END, err, errlen);
	if (rc)
		goto out;
	eh = (const Elf64_Ehdr *)file;
	ph = (const Elf64_Phdr *)(file + eh->e_phoff);
	pvh = elf_find_pvh_entry(file, ph, eh->e_phnum, &pvh_entry, path, err, errlen);
	if (pvh < 0) {
		rc = pvh;
		goto out;
	}
	if (pvh) {
		area_end = BOOT_PVH_AREA_END;
		if (pvh_entry >= GiB(4) || !guest_memory_ptr(mem, pvh_entry, 1)) {
			errf(err, errlen, "ELF %s: PVH entry 0x%llx is not in guest RAM below 4 GiB", path,
			     (unsigned long long)pvh_entry);
			rc = -ENOEXEC;
			goto out;
		}
	} else {
		area_end = boot_area_end_with_page_tables(mem);
		rc = elf_validate(mem, file, len, path, area_end, err, errlen);
		if (rc)
			goto out;
		if (!elf_entry_loaded(ph, eh->e_phnum, eh->e_entry)) {
			errf(err, errlen, "ELF %s: entry 0x%llx is not inside a loaded segment with equal virtual and physical "
			     "addresses (64-bit entry runs on identity-mapped page tables; add a PVH note for other kernels)",
			     path, (unsigned long long)eh->e_entry);
			rc = -ENOEXEC;
			goto out;
		}
	}

	memset(plan, 0, sizeof(*plan));
	rc = boot_write_gdt(mem, plan, err, errlen);
	if (!rc && pvh)
		rc = pvh_write_start_info(mem, area_end, &plan->arg, err, errlen);
	if (!rc && !pvh)
		rc = boot_write_page_tables(mem, plan, err, errlen);
	if (rc)
		goto out;
	for (int i = 0; i < eh->e_phnum; i++) {
		uint8_t *dst;

		if (ph[i].p_type != PT_LOAD || !ph[i].p_memsz)
			continue;
		dst = guest_memory_ptr(mem, ph[i].p_paddr, ph[i].p_memsz);
		memcpy(dst, file + ph[i].p_offset, ph[i].p_filesz);
		memset(dst + ph[i].p_filesz, 0, ph[i].p_memsz - ph[i].p_filesz);
	}
	plan->mode = pvh ? BOOT_MODE_PVH32 : BOOT_MODE_LONG64;
	plan->entry = pvh ? pvh_entry : eh->e_entry;
	(void)vcpus;
out:
	free(file);
	return rc;
}
