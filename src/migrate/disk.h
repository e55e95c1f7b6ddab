/* The "disk" live section's entry points outside the live section
 * interface (disk.c): the destination's file for a disk that arrives as a
 * copy, and the frame parser (also for tests/fuzz/fuzz_disk.c). */
#ifndef GLIDE_MIGRATE_DISK_H
#define GLIDE_MIGRATE_DISK_H
#include <stddef.h>
#include <stdint.h>
#include "vmm/vm.h"

/* Creates path (it must not exist) as an empty file of `bytes` bytes,
 * mode 600. 0, or -errno with err set; a file it created and could not
 * size is removed again. */
int disk_copy_create(const char *path, uint64_t bytes, char *err, size_t errlen);
/* Checks a whole disk frame, then writes it into fd[disk] (a disk of
 * bytes[disk] bytes; fd -1: that disk does not arrive as a copy). */
int disk_apply_frame(const int fd[VM_MAX_DISKS], const uint64_t bytes[VM_MAX_DISKS], const uint8_t *data, size_t len,
		     char *err, size_t errlen);
#endif
