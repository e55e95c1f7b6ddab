/* --boot IMAGE: a raw image (a boot sector, or a larger flat binary that
 * starts with one) copied to 0x7c00 and entered in real mode, no BIOS. */
#include "vmm/boot_priv.h"
#include "common/util.h"
#include <errno.h>
#include <stdlib.h>

int boot_load_raw(struct guest_memory *mem, const char *path, struct boot_plan *plan, char *err, size_t errlen)
{
	uint64_t limit = MIN(boot_low_ram_end(mem), BOOT_EBDA_START);
	uint64_t room = limit > BOOT_RAW_LOAD_ADDR ? limit - BOOT_RAW_LOAD_ADDR : 0;
	size_t len;
	uint8_t *image, *dst;
	int rc;

	if (!room) {
		errf(err, errlen, "boot image %s: guest RAM ends below 0x%x", path ? path : "", BOOT_RAW_LOAD_ADDR);
		return -ENOMEM;
	}
	image = boot_read_file("boot image", path, (size_t)room, &len, err, errlen, &rc);
	if (!image) {
		if (rc == -EFBIG)
			errf(err, errlen, "boot image %s: too large, at most %llu bytes fit between 0x%x and 0x%llx",
			     path, (unsigned long long)room, BOOT_RAW_LOAD_ADDR, (unsigned long long)limit);
		return rc;
	}
	dst = guest_memory_ptr(mem, BOOT_RAW_LOAD_ADDR, len);
	if (!dst) {
		errf(err, errlen, "boot image %s: guest RAM too small", path);
		free(image);
		return -ENOMEM;
	}
	memcpy(dst, image, len);
	free(image);
	memset(plan, 0, sizeof(*plan));
	plan->mode = BOOT_MODE_REAL16;
	plan->entry = BOOT_RAW_LOAD_ADDR;
	return 0;
}
