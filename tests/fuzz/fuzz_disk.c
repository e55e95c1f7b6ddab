/* Fuzz target: the destination's parser of the disk section's frames
 * (disk_apply_frame, src/migrate/disk.c), which validates a whole frame
 * (disk index, run count, runs inside the disk, data length) before it
 * writes anything. Disk 0 and disk 2 arrive as copies, each a memfd of an
 * odd size (the last block is short); disks 1 and 3 do not. The input is
 * the frame, copied to a buffer of exactly its size. */
#include "migrate/disk.h"
#include "common/util.h"
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	glide_set_log_file("/dev/null", NULL, 0);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int fd[VM_MAX_DISKS] = { -1, -1, -1, -1 };
	static const uint64_t bytes[VM_MAX_DISKS] = { 10 * 4096 + 512, 0, 3 * 4096 + 1024, 0 };
	char err[512];

	if (fd[0] < 0) {
		fd[0] = memfd_create("fuzz-disk0", MFD_CLOEXEC);
		fd[2] = memfd_create("fuzz-disk2", MFD_CLOEXEC);
		if (fd[0] < 0 || fd[2] < 0 || ftruncate(fd[0], (off_t)bytes[0]) || ftruncate(fd[2], (off_t)bytes[2]))
			abort();
	}
	uint8_t *copy = malloc(size ? size : 1);
	memcpy(copy, data, size);
	disk_apply_frame(fd, bytes, copy, size, err, sizeof(err));
	free(copy);
	/* the copies never grow: a write beyond the disk would be a parser bug */
	if (lseek(fd[0], 0, SEEK_END) != (off_t)bytes[0] || lseek(fd[2], 0, SEEK_END) != (off_t)bytes[2])
		abort();
	return 0;
}
