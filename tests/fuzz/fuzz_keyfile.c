/* Fuzz target: the one-time migration key file parser (read_key_file() in
 * src/common/util.c). The bytes are written to a temporary file; an
 * accepted key must be exactly the 64 hex digits (plus an optional
 * newline / CRLF) of the file. */
#include "common/util.h"
#include <ctype.h>
#include <stdio.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char path[64];

static void remove_key_file(void)
{
	unlink(path);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	snprintf(path, sizeof(path), "/tmp/glide-fuzz-key.%d", (int)getpid());
	atexit(remove_key_file);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t key[32];
	char err[512];
	FILE *f = fopen(path, "wb");

	if (!f)
		abort();
	if (size && fwrite(data, 1, size, f) != size)
		abort();
	fclose(f);
	chmod(path, 0600); /* key files others can read are refused before parsing */
	if (read_key_file(path, key, err, sizeof(err)) == 0) {
		/* accepted: 64 hex digits, then nothing, "\n", "\r" or "\r\n" */
		size_t n = size;
		if (n && data[n - 1] == '\n')
			n--;
		if (n && data[n - 1] == '\r')
			n--;
		if (n != 64) {
			fprintf(stderr, "accepted a key file of %zu bytes\n", size);
			abort();
		}
		for (int i = 0; i < 32; i++) {
			char hex[3] = { (char)data[2 * i], (char)data[2 * i + 1], 0 };
			if (!isxdigit((unsigned char)hex[0]) || !isxdigit((unsigned char)hex[1]) ||
			    key[i] != (uint8_t)strtoul(hex, NULL, 16)) {
				fprintf(stderr, "key byte %d does not match the file\n", i);
				abort();
			}
		}
	}
	return 0;
}
