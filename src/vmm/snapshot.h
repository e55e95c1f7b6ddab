/* Snapshots: the whole VM (state sections + RAM) in one state-format file,
 * and memsave (a range of guest-physical memory written raw to a file). */
#ifndef GLIDE_VMM_SNAPSHOT_H
#define GLIDE_VMM_SNAPSHOT_H
#include "vmm/vm.h"
#include "state/state.h"

#define SNAPSHOT_RAM_CHUNK_PAGES 256 /* 1 MiB per "ram" section */

/* The VM must be paused. Writes atomically (temp file + rename). */
int snapshot_write(struct vm *vm, const char *path, char *err, size_t errlen);
/* Opens a snapshot and reads its configuration (the first section). */
int snapshot_open(const char *path, int *fd_out, struct vm_config *cfg, char *err, size_t errlen);
/* Reads the rest of the snapshot into a freshly created, not yet running VM. */
int snapshot_load(struct vm *vm, int fd, char *err, size_t errlen);
/* RAM pages as "ram" sections: shared with anything that writes whole memory. */
int snapshot_write_ram(struct vm *vm, struct state_writer *w);
int snapshot_load_ram_section(struct vm *vm, const uint8_t *payload, size_t len, char *err, size_t errlen);

/* 0 when [addr, addr+size) is all guest RAM; -EINVAL with the reason otherwise. */
int memsave_check_range(struct vm *vm, uint64_t addr, uint64_t size, char *err, size_t errlen);
int memsave(struct vm *vm, uint64_t addr, uint64_t size, const char *path, char *err, size_t errlen);
#endif
