/* Small helpers shared by every part of glide: size parsing, time, logging,
 * full reads/writes. */
#ifndef GLIDE_COMMON_UTIL_H
#define GLIDE_COMMON_UTIL_H
#include <stdint.h>
#include <stddef.h>
#include <stdarg.h>
#include <stdbool.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))

/* "4096", "0x1000", "4K", "256M", "2G", "1T" (binary units). Returns 0 or -EINVAL. */
int parse_size(const char *s, uint64_t *out);
/* Same, and accepts a rate like "50M" (bytes/s) or "unlimited" (returns 0). */
int parse_rate(const char *s, uint64_t *out);
/* A number of seconds (decimal, e.g. "2.5") within [min, max]: 0 or -EINVAL. */
int parse_seconds(const char *s, double min, double max, double *out);
/* Human-readable size, e.g. "256.0 MiB". */
const char *format_size(uint64_t bytes, char *buf, size_t len);

/* Names of VMs, hosts and clusters (they become directory names, URL path
 * components and command-line arguments): 1-63 characters, letters, digits,
 * '-', '_' and '.', starting with a letter or digit, without "..". Returns
 * true when valid; otherwise err (if given) says "invalid name '...': why". */
#define NAME_LEN_MAX 63
#define NAME_RULE "names are 1-63 letters, digits, '-', '_' or '.', starting with a letter or digit, without '..'"
bool name_valid(const char *name, char *err, size_t errlen);
/* "PREFIX NAME[/ACTION]", the path of an API request on one named object:
 * NAME checked by name_ok (NULL: name_valid) and shorter than nlen, ACTION
 * ("" when none) not empty after a '/' and shorter than alen (else -ENOENT:
 * no such endpoint). 0, or -EINVAL, -ENOENT, -ENOMEM with err set. */
int path_split(const char *path, const char *prefix, bool (*name_ok)(const char *name, char *err, size_t errlen),
	       char *name, size_t nlen, char *action, size_t alen, char *err, size_t errlen);

uint64_t now_ns(void);        /* CLOCK_MONOTONIC */
uint64_t realtime_ns(void);   /* CLOCK_REALTIME */
void sleep_ns(uint64_t ns);
/* Sleeps while *addr still holds val, at most ns (a futex: a thread that
 * changes *addr calls futex_wake_all); returns early on a change or a signal. */
void futex_wait_while(const int *addr, int val, uint64_t ns);
void futex_wake_all(int *addr);
/* *p = MAX(*p, v), atomically, for counters several threads raise. */
static inline void atomic_max_u64(uint64_t *p, uint64_t v)
{
	uint64_t cur = __atomic_load_n(p, __ATOMIC_RELAXED);
	while (v > cur && !__atomic_compare_exchange_n(p, &cur, v, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED))
		;
}

/* Logging to stderr with a component prefix; the monitor may redirect it. */
void glide_log(const char *component, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends the log to path from now on; -errno with err set when it cannot be opened. */
int glide_set_log_file(const char *path, char *err, size_t errlen);
/* The same for a command's --log option: says why on stderr when it cannot. */
int glide_log_to(const char *path);

int write_full(int fd, const void *buf, size_t len);       /* 0 or -errno */
int read_full(int fd, void *buf, size_t len);              /* 0, -errno, or -EPIPE on early EOF */
int pwrite_full(int fd, const void *buf, size_t len, uint64_t off);
/* The next extent of fd at or after pos, within its first size bytes, that
 * may hold data: [*start, *end). false: only holes from pos on. Where
 * SEEK_DATA is not supported everything counts as data. */
bool file_data_extent(int fd, uint64_t pos, uint64_t size, uint64_t *start, uint64_t *end);
/* Walks the blocks of fd (size bytes, `block` bytes each, the last one
 * maybe short) that are not all zero, in order: holes are skipped with
 * SEEK_DATA, all-zero blocks after reading. each() gets every such block
 * (offset, bytes); a non-zero return stops the walk with it. -ECANCELED
 * once *cancel (when given) is set. 0 or -errno. */
int file_nonzero_blocks(int fd, uint64_t size, uint32_t block, int (*each)(void *ctx, uint64_t off, const uint8_t *p, uint32_t n),
			void *ctx, volatile bool *cancel);
/* Reads a whole small file (limit bytes) into a malloc'd NUL-terminated buffer. */
char *read_file_limited(const char *path, size_t limit, size_t *len_out, int *err_out);

/* Hexadecimal: hex_encode writes 2n lowercase digits and a NUL to out;
 * hex_decode reads 2n digits (either case) into out and returns -1, or
 * the index of the first character that is not a hex digit. */
void hex_encode(const uint8_t *in, size_t n, char *out);
long hex_decode(const char *hex, size_t n, uint8_t *out);
/* Parses a one-time migration key file: 64 hex digits, optional trailing newline.
 * Refused (-EPERM) when group or others have any access to it. */
int read_key_file(const char *path, uint8_t key[32], char *err, size_t errlen);

void errf(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
#endif
