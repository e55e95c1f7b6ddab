/* Snapshots: a migration whose channel is a file. The file is one
 * state-format stream (docs/state-format.md): the "config" section, then
 * every live section's data as sections of that section's name (RAM: the
 * same page-run payloads a migration sends in LIVE frames), then the
 * checkpoint sections (vCPUs, devices, clock), then "end". Restoring is an
 * incoming migration from the file: live payloads go through the same
 * validating decoders, the checkpoint is applied only after every section
 * has been read and verified. */
#ifndef GLIDE_MIGRATE_SNAPSHOT_H
#define GLIDE_MIGRATE_SNAPSHOT_H
#include "vmm/vm.h"
#include "state/state.h"

/* The VM must be paused. Writes atomically (temp file + rename). */
int snapshot_write(struct vm *vm, const char *path, char *err, size_t errlen);
/* Opens a snapshot and reads its configuration (the first section). */
int snapshot_open(const char *path, int *fd_out, struct vm_config *cfg, char *err, size_t errlen);
/* Reads the rest of the snapshot into a freshly created, not yet running VM. */
int snapshot_load(struct vm *vm, int fd, char *err, size_t errlen);
#endif
