/* size_arg.h: number and size arguments of the guest tools: decimal or
 * 0x-hex, with an optional binary suffix K, M, G or T (also "KiB", "MB"...). */
#ifndef GLIDE_TOOLS_SIZE_ARG_H
#define GLIDE_TOOLS_SIZE_ARG_H
#include <ctype.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>

/* Returns 0 and sets *out, or -1 if s is not a number/size or overflows. */
static inline int parse_size_arg(const char *s, uint64_t *out)
{
	unsigned long long v;
	uint64_t mult = 1;
	int base = 10;
	char *end;

	if (!s || !isdigit((unsigned char)*s))
		return -1;
	if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X'))
		base = 16;
	errno = 0;
	v = strtoull(s, &end, base);
	if (errno || end == s || (base == 16 && end == s + 2))
		return -1;
	if (*end) {
		switch (toupper((unsigned char)*end)) {
		case 'K': mult = 1ULL << 10; break;
		case 'M': mult = 1ULL << 20; break;
		case 'G': mult = 1ULL << 30; break;
		case 'T': mult = 1ULL << 40; break;
		default: return -1;
		}
		end++;
		if (*end == 'i' || *end == 'I')
			end++;
		if (*end == 'b' || *end == 'B')
			end++;
		if (*end)
			return -1;
	}
	if (v && mult > UINT64_MAX / v)
		return -1;
	*out = (uint64_t)v * mult;
	return 0;
}
#endif
