/* Fuzz target: the receiving end of a cold copy between host agents
 * (copy_receive_frame, src/host/copy.c), which checks a whole FILE_DATA or
 * FILE_END frame (file index, run inside the file, lengths, a file that
 * already ended) before it writes, and at FILE_END compares the sender's
 * digest with one of what the file holds. Three targets, memfds of odd
 * sizes (one empty), reset for each input. The input is a sequence of
 * frames, each u32 type, u32 length, then that many payload bytes (what is
 * left when the input is shorter); each is copied to a buffer of exactly
 * its size. */
#include "host/host.h"
#include "migrate/wire.h"
#include "common/util.h"
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define NFILES 3

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	glide_set_log_file("/dev/null", NULL, 0);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int fd[NFILES] = { -1, -1, -1 };
	static const uint64_t bytes[NFILES] = { 2 * 65536 + 100, 0, 5000 };
	struct copy_target t[NFILES];
	char err[512];
	volatile bool cancel = false;

	for (int i = 0; i < NFILES; i++) {
		if (fd[i] < 0 && (fd[i] = memfd_create("fuzz-copy", MFD_CLOEXEC)) < 0)
			abort();
		if (ftruncate(fd[i], 0) || ftruncate(fd[i], (off_t)bytes[i]))
			abort();
		t[i] = (struct copy_target){ .fd = fd[i], .size = bytes[i], .path = "memfd" };
	}
	while (size >= 8) {
		uint32_t type, len;
		memcpy(&type, data, 4);
		memcpy(&len, data + 4, 4);
		data += 8;
		size -= 8;
		if (len > size)
			len = (uint32_t)size;
		uint8_t *copy = malloc(len ? len : 1);
		memcpy(copy, data, len);
		uint64_t moved = 0;
		int rc = copy_receive_frame(t, NFILES, type, copy, len, &moved, &cancel, err, sizeof(err));
		free(copy);
		data += len;
		size -= len;
		if (rc)
			break; /* the receiver gives up at the first bad frame */
	}
	/* the files never grow: a write beyond one would be a parser bug */
	for (int i = 0; i < NFILES; i++)
		if (lseek(fd[i], 0, SEEK_END) != (off_t)bytes[i])
			abort();
	return 0;
}
