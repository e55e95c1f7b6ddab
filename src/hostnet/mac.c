/* MAC addresses of VM NICs: a strict parser (the text comes from users and
 * API requests), a formatter, and random locally administered addresses.
 *
 * Bit 0x01 of the first octet marks a group (multicast) address, which
 * includes broadcast; no NIC may use one as its own. Bit 0x02 marks a
 * locally administered address, which no vendor hands out, so a generated
 * one cannot collide with a physical NIC's. */
#include "hostnet/hostnet.h"
#include "common/util.h"
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>

#define MAC_TEXT_LEN 17 /* six pairs and five colons */
#define MAC_GROUP_BIT 0x01
#define MAC_LOCAL_BIT 0x02

static int hex_digit(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = (char)tolower((unsigned char)c);
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* The input as it may appear in a message: at most 32 printable bytes. */
static const char *shown(const char *s, char *buf, size_t len)
{
	size_t i, n = 0;
	for (i = 0; s[i] && n + 5 < len && i < 32; i++)
		buf[n++] = isprint((unsigned char)s[i]) ? s[i] : '?';
	if (s[i] && n + 4 < len) {
		memcpy(buf + n, "...", 3);
		n += 3;
	}
	buf[n] = 0;
	return buf;
}

int hostnet_mac_parse(const char *s, uint8_t mac[HOSTNET_MAC_BYTES], char *err, size_t errlen)
{
	char in[48], txt[HOSTNET_MAC_STRLEN];
	uint8_t m[HOSTNET_MAC_BYTES];
	static const uint8_t zero[HOSTNET_MAC_BYTES];

	if (!s || !*s) {
		errf(err, errlen, "empty MAC address (expected six hex pairs like 52:54:00:12:34:56)");
		return -EINVAL;
	}
	if (strlen(s) != MAC_TEXT_LEN)
		goto bad;
	for (int i = 0; i < HOSTNET_MAC_BYTES; i++) {
		const char *p = s + 3 * i;
		int hi = hex_digit(p[0]), lo = hex_digit(p[1]);
		if (hi < 0 || lo < 0)
			goto bad;
		if (i < HOSTNET_MAC_BYTES - 1 && p[2] != ':')
			goto bad;
		m[i] = (uint8_t)(hi << 4 | lo);
	}
	hostnet_mac_format(m, txt);
	if (!memcmp(m, zero, sizeof(m))) {
		errf(err, errlen, "MAC address %s is all zeros; a VM NIC needs a unicast address", txt);
		return -EINVAL;
	}
	if (m[0] == 0xff && m[1] == 0xff && m[2] == 0xff && m[3] == 0xff && m[4] == 0xff && m[5] == 0xff) {
		errf(err, errlen, "MAC address %s is the broadcast address; a VM NIC needs a unicast address", txt);
		return -EINVAL;
	}
	if (m[0] & MAC_GROUP_BIT) {
		errf(err, errlen,
		     "MAC address %s is multicast (bit 0x01 of the first octet is set); a VM NIC needs a unicast address",
		     txt);
		return -EINVAL;
	}
	memcpy(mac, m, sizeof(m));
	return 0;
bad:
	errf(err, errlen, "invalid MAC address '%s': expected six two-digit hex pairs separated by ':' (like 52:54:00:12:34:56)",
	     shown(s, in, sizeof(in)));
	return -EINVAL;
}

const char *hostnet_mac_format(const uint8_t mac[HOSTNET_MAC_BYTES], char buf[HOSTNET_MAC_STRLEN])
{
	snprintf(buf, HOSTNET_MAC_STRLEN, "%02x:%02x:%02x:%02x:%02x:%02x", mac[0], mac[1], mac[2], mac[3], mac[4],
		 mac[5]);
	return buf;
}

int hostnet_mac_generate(uint8_t mac[HOSTNET_MAC_BYTES], char *err, size_t errlen)
{
	static const uint8_t zero[HOSTNET_MAC_BYTES - 1];
	uint8_t m[HOSTNET_MAC_BYTES];

	for (;;) {
		ssize_t n = getrandom(m, sizeof(m), 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n != (ssize_t)sizeof(m)) {
			int rc = n < 0 ? -errno : -EIO;
			errf(err, errlen, "generating a MAC address: getrandom: %s", strerror(-rc));
			return rc;
		}
		m[0] = (uint8_t)((m[0] & ~MAC_GROUP_BIT) | MAC_LOCAL_BIT);
		if (memcmp(m + 1, zero, sizeof(zero))) /* 02:00:00:00:00:00 reads like a placeholder */
			break;
	}
	memcpy(mac, m, sizeof(m));
	return 0;
}
