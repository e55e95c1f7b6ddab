/* The virtio devices a VM can have (virtio_net.c, virtio_blk.c) and the
 * disks' lock handover and counters. */
#ifndef GLIDE_DEVICES_VIRTIO_DEV_H
#define GLIDE_DEVICES_VIRTIO_DEV_H
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct vm;
struct nic_spec;
struct disk_spec;

/* NIC `index` of the VM with the MAC of its configuration, backed by the spec's tap or bridge. */
int virtio_net_create(struct vm *vm, int index, const struct nic_spec *spec, const uint8_t mac[6], char *err,
		      size_t errlen);
/* Disk `index`, backed by the spec's raw file (locked against a second writer). */
int virtio_blk_create(struct vm *vm, int index, const struct disk_spec *spec, char *err, size_t errlen);

struct blk_stats {
	uint64_t reads, writes, flushes, errors;
	uint64_t sectors;
	bool readonly, locked;
	int engine;             /* enum blk_io_engine in use */
	uint64_t in_flight_max; /* the most requests in flight at once */
};
/* Disk i's counters and file; -ENOENT when there is none. */
int virtio_blk_stats(struct vm *vm, int i, struct blk_stats *out, char *path, size_t pathlen);

/* The switchover hands writable disks' locks from source to destination:
 * the source lets go once its VM is stopped for good (flushing each disk
 * first), the destination takes them before its VM runs. Disks in keep
 * (bit i: disk i) are neither flushed nor let go: a disk copied to the
 * destination, which never opens this file (no flush inside the stun). */
int virtio_blk_release_locks(struct vm *vm, uint32_t keep);
/* Disk i's open file (shared with the device: pread/pwrite only), size and path. */
int virtio_blk_file(struct vm *vm, int i, int *fd, uint64_t *bytes, char *path, size_t pathlen);
int virtio_blk_acquire_locks(struct vm *vm, char *err, size_t errlen);

/* A write-blocking mirror of a disk (storage migration: `glide vm
 * move-disk`, src/migrate/disk_move.c). While it is set, every write,
 * discard and write zeroes that completes on the disk is applied to the
 * mirror's file too, under its lock, before the guest sees the completion;
 * whoever copies the rest of the disk into the mirror takes the same lock
 * for each chunk it reads and writes, so the two never interleave and the
 * mirror never falls behind. A mirror write that fails breaks the mirror
 * (error), never the guest's I/O: the disk's own file stays authoritative. */
struct virtio_blk_mirror {
	int fd;
	pthread_mutex_t lock;
	int error;               /* the first failure (-errno), 0 while intact */
	uint64_t writes, bytes;  /* guest writes mirrored, and their bytes */
	/* A mirror elsewhere (shared-nothing migration, src/migrate/disk.c):
	 * when set, the device calls this instead of writing fd, with the
	 * range of the disk that changed (or may have, for a write that
	 * failed); it returns once the mirror has the disk's content of the
	 * range, read back from the disk. It counts and records errors itself. */
	void (*changed)(struct virtio_blk_mirror *m, uint64_t off, uint64_t len);
};
/* Sets disk i's mirror (NULL stops it); returns once no completion uses the
 * old one. -ENOENT: no such disk; -EROFS: a read-only disk. */
int virtio_blk_mirror(struct vm *vm, int i, struct virtio_blk_mirror *m);
/* Switches disk i to the file at path (a complete copy), with the VM
 * paused: opens it as the disk was opened, locks it, hands it to the I/O
 * engine and closes the old file (dropping its lock). 0, or -errno with err
 * set and the disk unchanged. */
int virtio_blk_switch_file(struct vm *vm, int i, const char *path, char *err, size_t errlen);
#endif
