/* Helpers shared by every glide component: size/rate parsing, clocks,
 * logging, and read/write loops that handle short transfers and EINTR. */
#include "common/util.h"
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/futex.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

int parse_size(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;
	uint64_t mult = 1;

	if (!s || !*s || *s == '-' || isspace((unsigned char)*s))
		return -EINVAL;
	errno = 0;
	/* decimal, or hex with 0x: a leading 0 is not octal ("010" is ten) */
	bool hex = s[0] == '0' && (s[1] == 'x' || s[1] == 'X');
	v = strtoull(s, &end, hex ? 16 : 10);
	if (errno || end == s || (hex && end == s + 2))
		return -EINVAL;
	if (*end) {
		switch (toupper((unsigned char)*end)) {
		case 'K': mult = 1ULL << 10; break;
		case 'M': mult = 1ULL << 20; break;
		case 'G': mult = 1ULL << 30; break;
		case 'T': mult = 1ULL << 40; break;
		default: return -EINVAL;
		}
		end++;
		if (*end == 'i' || *end == 'I')
			end++;
		if (*end == 'B' || *end == 'b')
			end++;
		if (*end)
			return -EINVAL;
	}
	if (v && mult > UINT64_MAX / v)
		return -EINVAL;
	*out = v * mult;
	return 0;
}

int parse_seconds(const char *s, double min, double max, double *out)
{
	char *end;
	double v;
	if (!s || !*s || isspace((unsigned char)*s))
		return -EINVAL;
	v = strtod(s, &end);
	if (end == s || *end || !(v >= min && v <= max))
		return -EINVAL;
	*out = v;
	return 0;
}

int parse_rate(const char *s, uint64_t *out)
{
	if (s && (!strcmp(s, "unlimited") || !strcmp(s, "0"))) {
		*out = 0;
		return 0;
	}
	return parse_size(s, out);
}

const char *format_size(uint64_t bytes, char *buf, size_t len)
{
	static const char *units[] = { "B", "KiB", "MiB", "GiB", "TiB" };
	double v = (double)bytes;
	unsigned u = 0;

	while (v >= 1024 && u + 1 < ARRAY_SIZE(units)) {
		v /= 1024;
		u++;
	}
	snprintf(buf, len, u ? "%.1f %s" : "%.0f %s", v, units[u]);
	return buf;
}

static bool name_char(char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '-' || ch == '_' ||
	       ch == '.';
}

bool name_valid(const char *name, char *err, size_t errlen)
{
	char shown[80] = "", why[64] = "";
	size_t n = name ? strlen(name) : 0, used = 0;

	if (!name)
		snprintf(why, sizeof(why), "no name given");
	else if (n == 0)
		snprintf(why, sizeof(why), "it is empty");
	else if (n > NAME_LEN_MAX)
		snprintf(why, sizeof(why), "it has %zu characters", n);
	else if (!isalnum((unsigned char)name[0]))
		snprintf(why, sizeof(why), "it starts with '%c'", isprint((unsigned char)name[0]) ? name[0] : '?');
	else if (strstr(name, ".."))
		snprintf(why, sizeof(why), "it contains '..'");
	else
		for (const char *p = name; *p; p++)
			if (!name_char(*p)) {
				unsigned char ch = (unsigned char)*p;
				if (ch == ' ')
					snprintf(why, sizeof(why), "it contains a space");
				else if (isprint(ch))
					snprintf(why, sizeof(why), "it contains '%c'", ch);
				else
					snprintf(why, sizeof(why), "it contains the control or non-ASCII byte 0x%02x", ch);
				break;
			}
	if (!why[0])
		return true;
	/* the name as the user would type it: control bytes escaped, long names cut */
	size_t i;
	for (i = 0; i < n && used < 60; i++) {
		unsigned char ch = (unsigned char)name[i];
		if (ch == '\n')
			used += (size_t)snprintf(shown + used, sizeof(shown) - used, "\\n");
		else if (ch < 0x20 || ch >= 0x7f || ch == '\'')
			used += (size_t)snprintf(shown + used, sizeof(shown) - used, "\\x%02x", ch);
		else
			shown[used++] = (char)ch;
	}
	snprintf(shown + used, sizeof(shown) - used, "%s", i < n ? "..." : "");
	if (err)
		errf(err, errlen, "invalid name '%s': %s (%s)", shown, why, NAME_RULE);
	return false;
}

static uint64_t clock_ns(clockid_t id)
{
	struct timespec ts;
	clock_gettime(id, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

uint64_t now_ns(void) { return clock_ns(CLOCK_MONOTONIC); }
uint64_t realtime_ns(void) { return clock_ns(CLOCK_REALTIME); }

void sleep_ns(uint64_t ns)
{
	struct timespec ts = { .tv_sec = ns / 1000000000ULL, .tv_nsec = ns % 1000000000ULL };
	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

void futex_wait_while(const int *addr, int val, uint64_t ns)
{
	struct timespec ts = { .tv_sec = ns / 1000000000ULL, .tv_nsec = ns % 1000000000ULL };
	syscall(SYS_futex, addr, FUTEX_WAIT_PRIVATE, val, &ts, NULL, 0);
}

void futex_wake_all(int *addr)
{
	syscall(SYS_futex, addr, FUTEX_WAKE_PRIVATE, INT32_MAX, NULL, NULL, 0);
}

static FILE *log_file;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

int glide_log_to(const char *path)
{
	char err[512];
	int rc = glide_set_log_file(path, err, sizeof(err));
	if (rc)
		fprintf(stderr, "glide: %s\n", err);
	return rc;
}

int glide_set_log_file(const char *path, char *err, size_t errlen)
{
	FILE *f = fopen(path, "ae");
	if (!f) {
		int rc = -errno;
		errf(err, errlen, "cannot open log file %s: %s", path, strerror(errno));
		return rc;
	}
	setvbuf(f, NULL, _IOLBF, 0);
	log_file = f;
	return 0;
}

void glide_log(const char *component, const char *fmt, ...)
{
	va_list ap;
	char line[1024];
	struct timespec ts;
	struct tm tm;
	FILE *out = log_file ? log_file : stderr;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	pthread_mutex_lock(&log_lock);
	fprintf(out, "%02d:%02d:%02d.%03ld glide[%d] %s: %s\n", tm.tm_hour, tm.tm_min, tm.tm_sec,
		ts.tv_nsec / 1000000, (int)getpid(), component, line);
	fflush(out);
	pthread_mutex_unlock(&log_lock);
}

int write_full(int fd, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	while (len) {
		ssize_t n = write(fd, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int pwrite_full(int fd, const void *buf, size_t len, uint64_t off)
{
	const uint8_t *p = buf;
	while (len) {
		ssize_t n = pwrite(fd, p, len, (off_t)off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		off += (uint64_t)n;
		len -= (size_t)n;
	}
	return 0;
}

int read_full(int fd, void *buf, size_t len)
{
	uint8_t *p = buf;
	while (len) {
		ssize_t n = read(fd, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -EPIPE;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static char *read_file_checked(const char *path, size_t limit, bool secret, size_t *len_out, int *err_out)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	char *buf = NULL;

	*err_out = 0;
	if (fd < 0) {
		*err_out = -errno;
		return NULL;
	}
	if (fstat(fd, &st) < 0) {
		*err_out = -errno;
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		*err_out = S_ISDIR(st.st_mode) ? -EISDIR : -EINVAL;
		goto out;
	}
	if (secret && (st.st_mode & (S_IRWXG | S_IRWXO))) { /* checked on the open file: no race */
		*err_out = -EPERM;
		goto out;
	}
	if ((uint64_t)st.st_size > limit) {
		*err_out = -EFBIG;
		goto out;
	}
	buf = malloc((size_t)st.st_size + 1);
	if (!buf) {
		*err_out = -ENOMEM;
		goto out;
	}
	if ((*err_out = read_full(fd, buf, (size_t)st.st_size))) {
		free(buf);
		buf = NULL;
		goto out;
	}
	buf[st.st_size] = 0;
	if (len_out)
		*len_out = (size_t)st.st_size;
out:
	close(fd);
	return buf;
}

void errf(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;
	if (!err || !errlen)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

char *read_file_limited(const char *path, size_t limit, size_t *len_out, int *err_out)
{
	return read_file_checked(path, limit, false, len_out, err_out);
}

void hex_encode(const uint8_t *in, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[in[i] >> 4];
		out[2 * i + 1] = digits[in[i] & 15];
	}
	out[2 * n] = 0;
}

static int hex_value(char c)
{
	return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

long hex_decode(const char *hex, size_t n, uint8_t *out)
{
	for (size_t i = 0; i < 2 * n; i++) {
		int d = hex_value(hex[i]);
		if (d < 0)
			return (long)i;
		out[i / 2] = (uint8_t)(i % 2 ? (out[i / 2] & 0xf0) | d : d << 4);
	}
	return -1;
}

int read_key_file(const char *path, uint8_t key[32], char *err, size_t errlen)
{
	size_t len;
	int rc;
	char *text = read_file_checked(path, 4096, true, &len, &rc);

	if (!text && rc == -EPERM) {
		/* as ssh does for private keys: a secret others can read is not used */
		errf(err, errlen, "key file %s is accessible by group or others; it must be readable by its owner only "
			     "(chmod 600 %s)", path, path);
		return rc;
	}
	if (!text) {
		errf(err, errlen, "cannot read key file %s: %s", path, strerror(-rc));
		return rc;
	}
	if (len && text[len - 1] == '\n')
		text[--len] = 0;
	if (len && text[len - 1] == '\r')
		text[--len] = 0;
	if (len != 64) {
		errf(err, errlen, "key file %s: expected 64 hex digits (a 256-bit key, e.g. from `openssl rand -hex 32`), found %zu characters", path, len);
		explicit_bzero(text, len);
		free(text);
		return -EINVAL;
	}
	long bad = hex_decode(text, 32, key);
	if (bad >= 0) {
		errf(err, errlen, "key file %s: character %ld is not a hex digit", path, bad + 1);
		explicit_bzero(text, len);
		free(text);
		return -EINVAL;
	}
	explicit_bzero(text, len);
	free(text);
	return 0;
}

int path_split(const char *path, const char *prefix, bool (*name_ok)(const char *name, char *err, size_t errlen),
	       char *name, size_t nlen, char *action, size_t alen, char *err, size_t errlen)
{
	size_t plen = strlen(prefix), n;
	const char *p, *slash;

	name[0] = 0;
	action[0] = 0;
	if (strncmp(path, prefix, plen)) {
		errf(err, errlen, "not under %s: %.80s", prefix, path);
		return -EINVAL;
	}
	p = path + plen;
	slash = strchr(p, '/');
	n = slash ? (size_t)(slash - p) : strlen(p);
	char *comp = strndup(p, n);
	if (!comp) {
		errf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	bool ok = (name_ok ? name_ok : name_valid)(comp, err, errlen); /* also refuses a long one, saying so */
	free(comp);
	if (!ok)
		return -EINVAL;
	if (n >= nlen) {
		errf(err, errlen, "name too long");
		return -EINVAL;
	}
	if (slash && (!slash[1] || strlen(slash + 1) >= alen)) { /* one spelling: no "NAME/" */
		errf(err, errlen, "no such action: '%.80s'", slash + 1);
		return -ENOENT;
	}
	memcpy(name, p, n);
	name[n] = 0;
	snprintf(action, alen, "%s", slash ? slash + 1 : "");
	return 0;
}

static bool bytes_zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return false;
	return true;
}

bool file_data_extent(int fd, uint64_t pos, uint64_t size, uint64_t *start, uint64_t *end)
{
	if (pos >= size)
		return false;
	off_t data = lseek(fd, (off_t)pos, SEEK_DATA);
	if (data < 0 && errno == ENXIO)
		return false; /* holes up to the end of the file */
	if (data < 0)
		data = (off_t)pos; /* no SEEK_DATA: everything is data */
	if ((uint64_t)data >= size)
		return false;
	off_t hole = lseek(fd, data, SEEK_HOLE);
	*start = (uint64_t)data;
	*end = hole <= data || (uint64_t)hole > size ? size : (uint64_t)hole;
	return true;
}

int file_nonzero_blocks(int fd, uint64_t size, uint32_t block, int (*each)(void *ctx, uint64_t off, const uint8_t *p, uint32_t n),
			void *ctx, volatile bool *cancel)
{
	uint8_t *buf = malloc(block);
	uint64_t next = 0, data, hole; /* next: first block not yet looked at */
	int rc = 0;
	if (!buf)
		return -ENOMEM;
	while (!rc && file_data_extent(fd, next, size, &data, &hole)) {
		uint64_t off = data / block * block;
		if (off < next)
			off = next;
		for (; off < hole && !rc; off += block) {
			uint32_t n = (uint32_t)MIN((uint64_t)block, size - off);
			if (cancel && *cancel) {
				rc = -ECANCELED;
				break;
			}
			ssize_t got = pread(fd, buf, n, (off_t)off);
			if (got != (ssize_t)n) {
				rc = got < 0 ? -errno : -EIO;
				break;
			}
			if (!bytes_zero(buf, n))
				rc = each(ctx, off, buf, n);
		}
		next = (off + block - 1) / block * block;
		if (next < hole)
			next = hole;
	}
	free(buf);
	return rc;
}
