/* The "disk" live section's entry points outside the live section
 * interface (disk.c): the destination's file for a disk that arrives as a
 * copy, and the frame parser (also for tests/fuzz/fuzz_disk.c). */
#ifndef GLIDE_MIGRATE_DISK_H
#define GLIDE_MIGRATE_DISK_H
#include <stddef.h>
#include <stdint.h>
#include "vmm/vm.h"

/* Creates path (it must not exist, unless it is a partial copy left by a
 * destination that died: that one is removed) as an empty file of `bytes`
 * bytes, mode 600, marked partial. Returns a descriptor that holds the
 * file's lock (the mark's owner is alive) until disk_copy_commit, or
 * -errno with err set; a file it created and could not size or lock is
 * removed again. */
int disk_copy_create(const char *path, uint64_t bytes, char *err, size_t errlen);
/* The copy at path becomes the VM's disk: its partial mark goes, then fd
 * (from disk_copy_create) is closed, its lock with it. 0, or -errno with
 * err set (the mark stays: the copy must not be run). fd is closed either way. */
int disk_copy_commit(const char *path, int fd, char *err, size_t errlen);
/* Removes the partial copies directly in dir that destinations which died left. */
void disk_copy_sweep(const char *dir);
/* Checks a whole disk frame, then writes it into fd[disk] (a disk of
 * bytes[disk] bytes; fd -1: that disk does not arrive as a copy). */
int disk_apply_frame(const int fd[VM_MAX_DISKS], const uint64_t bytes[VM_MAX_DISKS], const uint8_t *data, size_t len,
		     char *err, size_t errlen);
#endif
