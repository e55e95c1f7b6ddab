/* Fuzz target: the parsers of src/hostnet/ that take text from users and
 * API requests: MAC addresses (hostnet_mac_parse), interface names and
 * templates (hostnet_ifname_check) and "tap=NAME" (hostnet_tap_spec_parse).
 * Invariants: an accepted MAC is 17 bytes that format back to themselves
 * in lower case, and is unicast and not all zeros; an accepted name is
 * 1-15 bytes without '/', ':' or spaces; a refusal always says why. */
#include "hostnet/hostnet.h"
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define INPUT_MAX 64

static void check_mac(const char *s)
{
	uint8_t mac[HOSTNET_MAC_BYTES];
	char err[256] = "", txt[HOSTNET_MAC_STRLEN];
	static const uint8_t zero[HOSTNET_MAC_BYTES];

	if (hostnet_mac_parse(s, mac, err, sizeof(err)) != 0) {
		if (!err[0])
			abort(); /* a refusal without a reason */
		return;
	}
	if (strlen(s) != 17 || strcasecmp(hostnet_mac_format(mac, txt), s) || (mac[0] & 1) ||
	    !memcmp(mac, zero, sizeof(mac))) {
		fprintf(stderr, "accepted MAC '%s' formats as '%s'\n", s, txt);
		abort();
	}
}

static void check_name(const char *s, bool allow_template)
{
	char err[256] = "";
	if (hostnet_ifname_check(s, allow_template, err, sizeof(err)) != 0) {
		if (!err[0])
			abort();
		return;
	}
	if (!*s || strlen(s) > HOSTNET_IFNAME_MAX || strpbrk(s, "/: \t\n") || !strcmp(s, ".") || !strcmp(s, "..") ||
	    (!allow_template && strchr(s, '%'))) {
		fprintf(stderr, "accepted interface name '%s'\n", s);
		abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char s[INPUT_MAX + 1], name[IFNAMSIZ];
	struct hostnet_tap_config cfg;
	char err[256] = "";

	if (size > INPUT_MAX)
		size = INPUT_MAX;
	memcpy(s, data, size);
	s[size] = 0; /* the parsers take C strings: stop at the first NUL */
	check_mac(s);
	check_name(s, false);
	check_name(s, true);
	if (hostnet_tap_spec_parse(s, &cfg, name, err, sizeof(err)) == 0) {
		if (strncmp(s, "tap=", 4) || strcmp(cfg.name, s + 4) || !cfg.existing) {
			fprintf(stderr, "accepted tap spec '%s' as '%s'\n", s, cfg.name);
			abort();
		}
	} else if (!err[0]) {
		abort();
	}
	return 0;
}
