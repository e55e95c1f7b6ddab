/* Token files: the shared secret a client shows as "Authorization: Bearer".
 * A token is the file's first line; empty files are refused so that a
 * daemon never starts open by mistake. */
#include "common/token.h"
#include "common/util.h"
#include <errno.h>
#include <stdlib.h>
#include <string.h>

char *token_read_file(const char *path, char *err, size_t errlen)
{
	int rc;
	size_t len;
	char *t = read_file_limited(path, 4096, &len, &rc);

	if (!t) {
		errf(err, errlen, "cannot read token file %s: %s", path, strerror(rc < 0 ? -rc : rc));
		return NULL;
	}
	t[strcspn(t, "\r\n")] = 0;
	len = strlen(t);
	while (len && (t[len - 1] == ' ' || t[len - 1] == '\t'))
		t[--len] = 0;
	if (!len) {
		errf(err, errlen, "token file %s is empty (put a long random string in it, e.g. `openssl rand -hex 32 > %s`)",
		     path, path);
		free(t);
		return NULL;
	}
	return t;
}
