/* Bearer tokens for the daemons' TCP APIs, kept in files (one line). */
#ifndef GLIDE_COMMON_TOKEN_H
#define GLIDE_COMMON_TOKEN_H
#include <stddef.h>
/* Reads the first line of path (trailing whitespace removed); NULL with err set. */
char *token_read_file(const char *path, char *err, size_t errlen);
#endif
