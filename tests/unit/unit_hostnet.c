/* Unit test: the host side of VM networking (src/hostnet/).
 *
 *  - MAC addresses: strict parsing (good input in either case; wrong
 *    length, separators, digits, multicast, broadcast and all-zero refused
 *    with the reason), formatting, random locally administered unicast.
 *  - the token bucket for VM transmit, on a fake clock: exact refills in
 *    tiny steps, the wait it reports, the cap, frames bigger than the
 *    burst, a clock that steps back, the long-run rate.
 *  - as root (CAP_NET_ADMIN + CAP_SYS_ADMIN), inside a network namespace a
 *    forked child makes for itself (nothing reaches the host's network):
 *    bridges, taps (named, kernel-named, multi-queue, an administrator's
 *    existing one), ports, VLAN access ports read back through netlink,
 *    tbf shaping read back, counters, MTU, bad input and its messages, and
 *    frames written into one tap coming out (or not) of another.
 * Without root those parts print SKIP with the reason. */
#include "hostnet/hostnet.h"
#include "common/util.h"
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/capability.h>
#include <linux/if_tun.h>

static int failures;
static char err[512];

#define CHECK(cond, name, ...)                                  \
	do {                                                    \
		if (cond) {                                     \
			printf("PASS hostnet: %s\n", name);     \
		} else {                                        \
			printf("FAIL hostnet: %s: ", name);     \
			printf(__VA_ARGS__);                    \
			printf("\n");                           \
			failures++;                             \
		}                                               \
	} while (0)

/* ---- MAC addresses ---- */

static void mac_good(const char *in, const char *want_text)
{
	uint8_t m[HOSTNET_MAC_BYTES];
	char txt[HOSTNET_MAC_STRLEN], name[96];
	int rc = hostnet_mac_parse(in, m, err, sizeof(err));
	snprintf(name, sizeof(name), "MAC '%s' parses and formats as %s", in, want_text);
	CHECK(rc == 0 && !strcmp(hostnet_mac_format(m, txt), want_text), name, "rc %d (%s), formatted %s", rc,
	      rc ? err : "", rc ? "-" : txt);
}

static void mac_bad(const char *in, const char *why, const char *want_in_msg)
{
	char shown[40];
	size_t i;
	uint8_t m[HOSTNET_MAC_BYTES] = { 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa };
	char name[128];
	int rc;

	err[0] = 0;
	rc = hostnet_mac_parse(in, m, err, sizeof(err));
	for (i = 0; in[i] && i + 1 < sizeof(shown); i++)
		shown[i] = in[i] == '\n' ? '?' : in[i];
	shown[i] = 0;
	snprintf(name, sizeof(name), "MAC '%s' refused (%s), saying \"%s\"", shown, why, want_in_msg);
	CHECK(rc == -EINVAL && strstr(err, want_in_msg) && m[0] == 0xaa, name, "rc %d, message '%s'", rc, err);
}

static void test_mac(void)
{
	uint8_t m[HOSTNET_MAC_BYTES], back[HOSTNET_MAC_BYTES], first[HOSTNET_MAC_BYTES];
	char txt[HOSTNET_MAC_STRLEN];
	int bad_bits = 0, bad_trip = 0, same = 0;

	mac_good("52:54:00:12:34:56", "52:54:00:12:34:56");
	mac_good("52:54:00:AB:cd:Ef", "52:54:00:ab:cd:ef");
	mac_good("02:00:00:00:00:01", "02:00:00:00:00:01");
	mac_good("fe:ff:ff:ff:ff:ff", "fe:ff:ff:ff:ff:ff");

	mac_bad("", "empty", "empty MAC address");
	mac_bad("52:54:00:12:34", "five pairs", "six two-digit hex pairs");
	mac_bad("52:54:00:12:34:56:78", "seven pairs", "six two-digit hex pairs");
	mac_bad("52-54-00-12-34-56", "dashes", "six two-digit hex pairs");
	mac_bad("525400123456", "no separators", "six two-digit hex pairs");
	mac_bad("52:54:00:12:34:5g", "not hex", "six two-digit hex pairs");
	mac_bad("52:54:0:12:34:567", "a one-digit pair", "six two-digit hex pairs");
	mac_bad(" 52:54:00:12:34:5", "leading space", "six two-digit hex pairs");
	mac_bad("52:54:00:12:34:56 ", "trailing space", "six two-digit hex pairs");
	mac_bad("52:54:00:12:34:\n6", "a control character, shown as ?", "'52:54:00:12:34:?6'");
	mac_bad("01:00:5e:00:00:01", "multicast", "is multicast");
	mac_bad("33:33:00:00:00:01", "IPv6 multicast", "is multicast");
	mac_bad("ff:ff:ff:ff:ff:ff", "broadcast", "is the broadcast address");
	mac_bad("FF:FF:FF:FF:FF:FF", "broadcast, upper case", "is the broadcast address");
	mac_bad("00:00:00:00:00:00", "all zeros", "is all zeros");

	for (int i = 0; i < 1000; i++) {
		if (hostnet_mac_generate(m, err, sizeof(err))) {
			CHECK(false, "generate MAC addresses", "%s", err);
			return;
		}
		if (i == 0)
			memcpy(first, m, sizeof(m));
		else if (!memcmp(first, m, sizeof(m)))
			same++;
		if ((m[0] & 0x01) || !(m[0] & 0x02))
			bad_bits++;
		if (hostnet_mac_parse(hostnet_mac_format(m, txt), back, err, sizeof(err)) || memcmp(m, back, sizeof(m)))
			bad_trip++;
	}
	CHECK(bad_bits == 0, "1000 generated MACs are locally administered unicast (0x02 set, 0x01 clear)",
	      "%d had the wrong bits", bad_bits);
	CHECK(bad_trip == 0, "1000 generated MACs format and parse back", "%d did not", bad_trip);
	CHECK(same == 0, "1000 generated MACs differ from the first", "%d equal to it", same);
}

/* ---- the token bucket, on a fake clock ---- */

#define MS 1000000ULL
#define S 1000000000ULL

static void test_token_bucket(void)
{
	struct token_bucket tb;
	uint64_t wait = 12345, t, sent;
	bool ok;
	int rc;

	rc = tb_init(&tb, 1000, 1500, 0);
	CHECK(rc == 0, "token bucket: 1000 B/s, burst 1500", "rc %d", rc);
	ok = tb_allow(&tb, 1500, 0, &wait);
	CHECK(ok && wait == 0, "a full bucket lets a 1500-byte frame go at once", "allowed %d wait %llu", ok,
	      (unsigned long long)wait);
	ok = tb_allow(&tb, 1, 0, &wait);
	CHECK(!ok && wait == 1 * MS, "then 1 byte must wait exactly 1 ms", "allowed %d wait %llu ns", ok,
	      (unsigned long long)wait);
	ok = tb_allow(&tb, 1, 1 * MS - 1, &wait);
	CHECK(!ok && wait == 1, "1 ns before that it still waits 1 ns", "allowed %d wait %llu ns", ok,
	      (unsigned long long)wait);
	ok = tb_allow(&tb, 1, 1 * MS, &wait);
	CHECK(ok, "at 1 ms the byte goes", "allowed %d wait %llu", ok, (unsigned long long)wait);

	/* 1000 steps of 1 us add 1 us * 1000 B/s = 1/1000 byte each: one byte in all, nothing lost */
	t = 1 * MS;
	for (int i = 0; i < 999; i++) {
		t += 1000;
		ok = tb_allow(&tb, 1, t, NULL);
		if (ok)
			break;
	}
	CHECK(!ok, "999 steps of 1 us do not make a byte", "a byte went early at %llu ns", (unsigned long long)t);
	t += 1000;
	ok = tb_allow(&tb, 1, t, NULL);
	CHECK(ok, "the 1000th step of 1 us makes exactly one byte (no rounding loss)", "refused at %llu ns",
	      (unsigned long long)t);

	t += 500 * MS;
	ok = tb_allow(&tb, 500, t, NULL);
	CHECK(ok && !tb_allow(&tb, 1, t, NULL), "0.5 s makes exactly 500 bytes", "500 bytes %s",
	      ok ? "went, and 1 more too" : "refused");

	t += 10 * S;
	ok = tb_allow(&tb, 1500, t, NULL) && !tb_allow(&tb, 1, t, &wait);
	CHECK(ok && wait == 1 * MS, "10 s idle fills the bucket to the burst, no more", "allowed %d wait %llu", ok,
	      (unsigned long long)wait);

	t += 10 * S;
	ok = tb_allow(&tb, 1, t, NULL) && !tb_allow(&tb, 3000, t, &wait);
	CHECK(ok && wait == 1 * MS, "a frame bigger than the burst waits for a full bucket", "wait %llu ns",
	      (unsigned long long)wait);
	t += 1 * MS;
	ok = tb_allow(&tb, 3000, t, NULL);
	CHECK(ok, "a frame bigger than the burst goes when the bucket is full", "refused");
	ok = tb_allow(&tb, 1, t, &wait);
	CHECK(!ok && wait == 1501 * MS, "and leaves a debt of 1500 bytes: 1 byte waits 1.501 s", "allowed %d wait %llu ns",
	      ok, (unsigned long long)wait);

	ok = tb_allow(&tb, 1, t - 5 * S, &wait);
	CHECK(!ok && tb.last_ns == t, "a clock that steps back adds nothing and keeps the last time",
	      "allowed %d, last %llu", ok, (unsigned long long)tb.last_ns);

	/* the long-run rate: frames of 1500 bytes as fast as allowed for 10 s at 1 MB/s */
	tb_init(&tb, 1000000, 15000, 0);
	sent = 0;
	for (t = 0; t <= 10 * S;) {
		if (tb_allow(&tb, 1500, t, &wait))
			sent += 1500;
		else
			t += wait;
	}
	CHECK(sent >= 10000000 && sent <= 10000000 + 15000 + 1500,
	      "10 s at 1 MB/s with a 15000-byte burst sends 10 MB plus the burst", "sent %llu bytes",
	      (unsigned long long)sent);

	rc = tb_init(&tb, TB_RATE_MAX, TB_BURST_MAX, 1);
	ok = rc == 0 && tb_allow(&tb, TB_BURST_MAX, 1, NULL) && tb_allow(&tb, TB_BURST_MAX, UINT64_MAX, NULL) &&
	     !tb_allow(&tb, 1, UINT64_MAX, NULL);
	CHECK(ok, "the largest rate and burst over the longest gap do not overflow", "rc %d", rc);

	rc = tb_init(&tb, 0, UINT64_MAX, 0);
	ok = rc == 0 && tb_allow(&tb, 1 << 30, 0, &wait) && wait == 0;
	CHECK(ok, "rate 0 is unlimited", "rc %d", rc);
	CHECK(tb_init(&tb, 1000, 0, 0) == -EINVAL, "burst 0 is refused", "accepted");
	CHECK(tb_init(&tb, 1000, TB_BURST_MAX + 1, 0) == -EINVAL, "a burst above TB_BURST_MAX is refused", "accepted");
	CHECK(tb_init(&tb, TB_RATE_MAX + 1, 1500, 0) == -EINVAL, "a rate above TB_RATE_MAX is refused", "accepted");
}

/* ---- input checked before any system call (runs without root too) ---- */

static void test_names(void)
{
	struct hostnet_tap_config cfg = { 0 };
	struct hostnet_tap tap;
	char name[IFNAMSIZ];
	int rc;

	rc = hostnet_ifname_check("tap-0123456789abcdef", false, err, sizeof(err));
	CHECK(rc == -ENAMETOOLONG && strstr(err, "too long"), "a 20-character interface name is too long",
	      "rc %d, '%s'", rc, err);
	rc = hostnet_ifname_check("0123456789abcde", false, err, sizeof(err));
	CHECK(rc == 0, "a 15-character interface name is fine", "rc %d, '%s'", rc, err);
	rc = hostnet_ifname_check("a/b", false, err, sizeof(err));
	CHECK(rc == -EINVAL, "'a/b' is not an interface name", "rc %d", rc);
	rc = hostnet_ifname_check("..", false, err, sizeof(err));
	CHECK(rc == -EINVAL, "'..' is not an interface name", "rc %d", rc);
	rc = hostnet_ifname_check("vm%d", false, err, sizeof(err));
	CHECK(rc == -EINVAL, "a template is refused where a name is needed", "rc %d", rc);
	rc = hostnet_ifname_check("vm%d-%d", true, err, sizeof(err));
	CHECK(rc == -EINVAL, "a template with two %d is refused", "rc %d", rc);
	rc = hostnet_ifname_check("vm%d", true, err, sizeof(err));
	CHECK(rc == 0, "a template with one %d is fine", "rc %d, '%s'", rc, err);

	cfg.name = "tap-0123456789abcdef";
	rc = hostnet_tap_open(&tap, &cfg, err, sizeof(err));
	CHECK(rc == -ENAMETOOLONG && tap.fds[0] == -1, "a tap name that is too long is refused before the kernel",
	      "rc %d, '%s'", rc, err);
	cfg.name = "t0";
	cfg.queues = HOSTNET_TAP_QUEUES_MAX + 1;
	rc = hostnet_tap_open(&tap, &cfg, err, sizeof(err));
	CHECK(rc == -EINVAL, "more than HOSTNET_TAP_QUEUES_MAX queues are refused", "rc %d, '%s'", rc, err);

	rc = hostnet_tap_spec_parse("tap=vm1-net0", &cfg, name, err, sizeof(err));
	CHECK(rc == 0 && cfg.existing && !strcmp(cfg.name, "vm1-net0"), "'tap=vm1-net0' names an existing tap",
	      "rc %d, '%s'", rc, err);
	rc = hostnet_tap_spec_parse("bridge=br0", &cfg, name, err, sizeof(err));
	CHECK(rc == -EINVAL, "'bridge=br0' is not a tap spec", "rc %d", rc);
	rc = hostnet_tap_spec_parse("tap=", &cfg, name, err, sizeof(err));
	CHECK(rc == -EINVAL, "'tap=' without a name is refused", "rc %d", rc);
}

/* ---- netlink, inside a private network namespace ---- */

#define BR "hn-br0"
#define TAP_A "hn-tap-a"
#define TAP_B "hn-tap-b"
#define ADMIN_TAP "hn-admin0"
#define FRAME_ETHERTYPE 0x88b5 /* IEEE 802 local experimental */
#define FRAME_BYTES 64
#define SEEN_WAIT_MS 3000
#define UNSEEN_WAIT_MS 700

static bool link_exists(const char *name)
{
	int ifindex;
	return hostnet_link_ifindex(name, &ifindex, NULL, 0) == 0;
}

#define ETH_P_8021Q_TAG 0x8100

/* A broadcast frame with the vnet header in front, its payload marked;
 * with vid, an 802.1Q tag as a VM that tags its own frames would send. */
static size_t make_frame(uint8_t *buf, const char *marker, unsigned vid)
{
	static const uint8_t src[6] = { 0x02, 0x00, 0x00, 0x00, 0x0a, 0x01 };
	size_t n = HOSTNET_VNET_HDR_BYTES;
	memset(buf, 0, HOSTNET_VNET_HDR_BYTES + FRAME_BYTES); /* vnet header: no csum, no GSO */
	memset(buf + n, 0xff, 6);
	memcpy(buf + n + 6, src, 6);
	n += 12;
	if (vid) {
		buf[n] = ETH_P_8021Q_TAG >> 8;
		buf[n + 1] = ETH_P_8021Q_TAG & 0xff;
		buf[n + 2] = (uint8_t)(vid >> 8);
		buf[n + 3] = vid & 0xff;
		n += 4;
	}
	buf[n] = FRAME_ETHERTYPE >> 8;
	buf[n + 1] = FRAME_ETHERTYPE & 0xff;
	snprintf((char *)buf + n + 2, HOSTNET_VNET_HDR_BYTES + FRAME_BYTES - n - 2, "%s", marker);
	return HOSTNET_VNET_HDR_BYTES + FRAME_BYTES;
}

/* Reads frames from fd for up to ms; true when one carries marker. Other
 * frames (IPv6 router solicitations and the like) are passed over. */
static bool frame_seen(int fd, const char *marker, int ms)
{
	static uint8_t buf[65536 + HOSTNET_VNET_HDR_BYTES];
	uint64_t end = now_ns() + (uint64_t)ms * 1000000;

	for (;;) {
		uint64_t now = now_ns();
		struct pollfd p = { .fd = fd, .events = POLLIN };
		if (now >= end)
			return false;
		if (poll(&p, 1, (int)((end - now) / 1000000) + 1) <= 0)
			continue;
		for (;;) {
			ssize_t n = read(fd, buf, sizeof(buf));
			size_t type = HOSTNET_VNET_HDR_BYTES + 12; /* the ethertype, after one 802.1Q tag if any */
			if (n <= 0)
				break;
			if ((size_t)n > type + 4 && buf[type] == ETH_P_8021Q_TAG >> 8 && buf[type + 1] == (ETH_P_8021Q_TAG & 0xff))
				type += 4;
			if ((size_t)n >= type + 2 + strlen(marker) && buf[type] == FRAME_ETHERTYPE >> 8 &&
			    buf[type + 1] == (FRAME_ETHERTYPE & 0xff) && !memcmp(buf + type + 2, marker, strlen(marker)))
				return true;
		}
	}
}

static void drain(int fd)
{
	uint8_t buf[2048];
	while (read(fd, buf, sizeof(buf)) > 0)
		;
}

/* Writes a marked frame (tagged with vid if not 0) into from, as the VM behind it would, and says
 * whether it comes out of to within ms; retried for the positive case
 * while the bridge ports come up. */
static bool frame_crosses(struct hostnet_tap *from, struct hostnet_tap *to, const char *marker, unsigned vid, int ms,
			  bool retry)
{
	uint8_t frame[HOSTNET_VNET_HDR_BYTES + FRAME_BYTES];
	size_t len = make_frame(frame, marker, vid);
	uint64_t end = now_ns() + (uint64_t)ms * 1000000;

	drain(to->fds[0]);
	do {
		if (write(from->fds[0], frame, len) != (ssize_t)len)
			return false;
		if (frame_seen(to->fds[0], marker, retry ? 200 : ms))
			return true;
	} while (retry && now_ns() < end);
	return false;
}

static int tap_create(struct hostnet_tap *tap, const char *name, unsigned queues)
{
	struct hostnet_tap_config cfg = { .name = name, .queues = queues };
	return hostnet_tap_open(tap, &cfg, err, sizeof(err));
}

/* What an administrator's `ip tuntap add NAME mode tap` does: a persistent tap. */
static int admin_tap(const char *name, bool persist)
{
	struct ifreq ifr = { .ifr_flags = IFF_TAP | IFF_NO_PI };
	int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC), rc = 0;
	if (fd < 0)
		return -errno;
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
	if (ioctl(fd, TUNSETIFF, &ifr) < 0 || ioctl(fd, TUNSETPERSIST, persist ? 1 : 0) < 0)
		rc = -errno;
	close(fd);
	return rc;
}

static void test_bridge_basics(int *br_ifindex)
{
	struct hostnet_link_info li;
	int rc, ifindex;

	rc = hostnet_link_ifindex("lo", &ifindex, err, sizeof(err));
	CHECK(rc == 0 && ifindex == 1, "the namespace's lo has ifindex 1", "rc %d ifindex %d '%s'", rc, ifindex, err);
	rc = hostnet_bridge_check("hn-missing", NULL, err, sizeof(err));
	CHECK(rc == -ENODEV && !strcmp(err, "bridge hn-missing does not exist"), "a missing bridge: -ENODEV, named",
	      "rc %d, '%s'", rc, err);
	rc = hostnet_bridge_create(BR, err, sizeof(err));
	CHECK(rc == 0, "create bridge " BR, "rc %d, '%s'", rc, err);
	rc = hostnet_bridge_create(BR, err, sizeof(err));
	CHECK(rc == -EEXIST && strstr(err, "already exists"), "creating it again: -EEXIST", "rc %d, '%s'", rc, err);
	rc = hostnet_bridge_create("hn-br-0123456789", err, sizeof(err));
	CHECK(rc == -ENAMETOOLONG, "a bridge name that is too long: -ENAMETOOLONG", "rc %d, '%s'", rc, err);
	rc = hostnet_bridge_check(BR, br_ifindex, err, sizeof(err));
	CHECK(rc == 0 && *br_ifindex > 1, "bridge_check finds it", "rc %d ifindex %d, '%s'", rc, *br_ifindex, err);
	rc = hostnet_link_get(BR, &li, err, sizeof(err));
	CHECK(rc == 0 && !strcmp(li.kind, "bridge") && li.ifindex == *br_ifindex && !li.up,
	      "netlink reads it back: kind bridge, same ifindex, down", "rc %d kind '%s' ifindex %d up %d '%s'", rc,
	      li.kind, li.ifindex, li.up, err);
	rc = hostnet_link_set_up(BR, true, err, sizeof(err));
	CHECK(rc == 0 && hostnet_link_get(BR, &li, err, sizeof(err)) == 0 && li.up, "bring the bridge up",
	      "rc %d up %d '%s'", rc, li.up, err);
}

static void test_taps(struct hostnet_tap *a, struct hostnet_tap *b)
{
	struct hostnet_link_info li;
	struct hostnet_tap mq, other;
	struct ifreq ifr = { 0 };
	char offl[96];
	int rc, hdr = 0, flags;

	rc = tap_create(a, TAP_A, 1);
	CHECK(rc == 0 && !strcmp(a->name, TAP_A) && a->nqueues == 1 && a->fds[0] >= 0 && a->created,
	      "create tap " TAP_A, "rc %d, '%s'", rc, err);
	if (rc)
		return;
	ioctl(a->fds[0], TUNGETIFF, &ifr);
	ioctl(a->fds[0], TUNGETVNETHDRSZ, &hdr);
	flags = fcntl(a->fds[0], F_GETFL);
	CHECK((ifr.ifr_flags & (IFF_TAP | IFF_NO_PI | IFF_VNET_HDR)) == (IFF_TAP | IFF_NO_PI | IFF_VNET_HDR) &&
		      !(ifr.ifr_flags & IFF_MULTI_QUEUE) && hdr == HOSTNET_VNET_HDR_BYTES && (flags & O_NONBLOCK),
	      "it is IFF_TAP|IFF_NO_PI|IFF_VNET_HDR, a 12-byte vnet header, non-blocking", "flags %#x hdr %d fl %#x",
	      ifr.ifr_flags, hdr, flags);
	rc = hostnet_link_get(TAP_A, &li, err, sizeof(err));
	CHECK(rc == 0 && li.up && li.ifindex == a->ifindex && !strcmp(li.kind, "tun"),
	      "its link is up, kind tun, with the ifindex the tap reports", "rc %d up %d ifindex %d/%d kind '%s'", rc,
	      li.up, li.ifindex, a->ifindex, li.kind);
	printf("     offloads TUNSETOFFLOAD accepts here: %s\n", hostnet_tap_offloads_str(a->offloads, offl, sizeof(offl)));
	CHECK(a->offloads & TUN_F_CSUM, "TUNSETOFFLOAD accepts at least csum (none left on)", "offloads %#x",
	      a->offloads);
	rc = hostnet_tap_set_offload(a, TUN_F_CSUM | (a->offloads & TUN_F_TSO4), err, sizeof(err));
	CHECK(rc == 0, "enable csum (and tso4) once negotiated", "rc %d '%s'", rc, err);
	rc = hostnet_tap_set_offload(a, 0x80, err, sizeof(err));
	CHECK(rc == -EOPNOTSUPP && strstr(err, "the kernel takes only"), "an offload the kernel does not take: -EOPNOTSUPP",
	      "rc %d '%s'", rc, err);
	hostnet_tap_set_offload(a, 0, NULL, 0);

	rc = tap_create(&other, TAP_A, 1);
	CHECK(rc == -EEXIST && strstr(err, "already exists"), "creating " TAP_A " again: -EEXIST", "rc %d '%s'", rc,
	      err);
	rc = tap_create(&other, BR, 1);
	CHECK(rc == -EEXIST, "creating a tap with the bridge's name: -EEXIST", "rc %d '%s'", rc, err);

	rc = tap_create(b, TAP_B, 1);
	CHECK(rc == 0, "create tap " TAP_B, "rc %d '%s'", rc, err);

	/* the kernel names it; four queues */
	rc = tap_create(&mq, NULL, 4);
	ifr.ifr_flags = 0;
	if (rc == 0)
		ioctl(mq.fds[3], TUNGETIFF, &ifr);
	CHECK(rc == 0 && !strncmp(mq.name, "glide", 5) && mq.nqueues == 4 && mq.multi_queue && mq.fds[3] >= 0 &&
		      mq.fds[3] != mq.fds[0] && (ifr.ifr_flags & IFF_MULTI_QUEUE) && !strcmp(ifr.ifr_name, mq.name),
	      "a kernel-named multi-queue tap: glide%d, 4 queues on one device", "rc %d name %s n %u '%s'", rc, mq.name,
	      mq.nqueues, err);
	if (rc == 0) {
		char name[IFNAMSIZ];
		snprintf(name, sizeof(name), "%s", mq.name);
		hostnet_tap_close(&mq);
		CHECK(!link_exists(name), "closing a tap made here deletes it", "%s is still there", name);
		hostnet_tap_close(&mq); /* twice is harmless */
	}

	/* an administrator's tap */
	rc = admin_tap(ADMIN_TAP, true);
	CHECK(rc == 0, "an administrator's persistent tap " ADMIN_TAP " (as ip tuntap add makes it)", "rc %d", rc);
	{
		char name[IFNAMSIZ];
		struct hostnet_tap_config cfg;
		hostnet_tap_spec_parse("tap=" ADMIN_TAP, &cfg, name, NULL, 0);
		rc = hostnet_tap_open(&other, &cfg, err, sizeof(err));
		CHECK(rc == 0 && !other.created && other.fds[0] >= 0, "tap=" ADMIN_TAP " opens it", "rc %d '%s'", rc, err);
		hostnet_tap_close(&other);
		CHECK(link_exists(ADMIN_TAP), "closing it leaves the administrator's tap in place", "it is gone");
		cfg.queues = 2;
		rc = hostnet_tap_open(&other, &cfg, err, sizeof(err));
		CHECK(rc == -EINVAL && strstr(err, "multi_queue"), "2 queues on a single-queue admin tap: refused, saying why",
		      "rc %d '%s'", rc, err);
		cfg.queues = 1;
		cfg.name = "hn-nosuch";
		rc = hostnet_tap_open(&other, &cfg, err, sizeof(err));
		CHECK(rc == -ENODEV && !strcmp(err, "tap hn-nosuch does not exist"), "tap=hn-nosuch: -ENODEV, named",
		      "rc %d '%s'", rc, err);
		cfg.name = BR;
		rc = hostnet_tap_open(&other, &cfg, err, sizeof(err));
		CHECK(rc == -EINVAL && strstr(err, "is not a tap"), "tap=" BR " (a bridge): not a tap", "rc %d '%s'", rc,
		      err);
		admin_tap(ADMIN_TAP, false);
		CHECK(!link_exists(ADMIN_TAP), "the administrator's tap removed again", "still there");
	}

	rc = hostnet_link_set_mtu(TAP_A, 1400, err, sizeof(err));
	CHECK(rc == 0 && hostnet_link_get(TAP_A, &li, NULL, 0) == 0 && li.mtu == 1400, "set MTU 1400 and read it back",
	      "rc %d mtu %u '%s'", rc, li.mtu, err);
	rc = hostnet_link_set_mtu(TAP_A, 20, err, sizeof(err));
	CHECK(rc == -EINVAL, "MTU 20 is refused", "rc %d", rc);
	rc = hostnet_link_set_mtu(TAP_A, 65535, err, sizeof(err));
	CHECK(rc == -EINVAL && strstr(err, "(kernel: "), "MTU 65535 on a tap: the kernel's refusal in its own words",
	      "rc %d '%s'", rc, err);
	printf("     %s\n", err);
	hostnet_link_set_mtu(TAP_A, 1500, NULL, 0);
	rc = hostnet_link_set_up(TAP_A, false, err, sizeof(err));
	CHECK(rc == 0 && hostnet_link_get(TAP_A, &li, NULL, 0) == 0 && !li.up, "link down", "rc %d up %d", rc, li.up);
	hostnet_link_set_up(TAP_A, true, NULL, 0);
}

static void test_ports(int br_ifindex, struct hostnet_tap *a, struct hostnet_tap *b)
{
	struct hostnet_port_vlans v;
	struct hostnet_link_info li;
	int rc;

	rc = hostnet_bridge_attach("hn-missing", TAP_A, err, sizeof(err));
	CHECK(rc == -ENODEV && !strcmp(err, "bridge hn-missing does not exist"), "attach to a missing bridge: -ENODEV",
	      "rc %d '%s'", rc, err);
	rc = hostnet_bridge_attach(TAP_B, TAP_A, err, sizeof(err));
	CHECK(rc == -EINVAL && !strcmp(err, TAP_B " is not a bridge (it is a device of kind tun)"),
	      "attach to a tap as if it were a bridge: -EINVAL, saying what it is", "rc %d '%s'", rc, err);
	rc = hostnet_bridge_check("lo", NULL, err, sizeof(err));
	CHECK(rc == -EINVAL && strstr(err, "lo is not a bridge"), "lo is not a bridge", "rc %d '%s'", rc, err);
	rc = hostnet_bridge_attach(BR, "hn-nosuch", err, sizeof(err));
	CHECK(rc == -ENODEV && !strcmp(err, "port hn-nosuch does not exist"), "attach a missing port: -ENODEV",
	      "rc %d '%s'", rc, err);
	rc = hostnet_bridge_port_set_access_vlan(TAP_A, 10, err, sizeof(err));
	CHECK(rc == -ENOTCONN && strstr(err, "not a port of any bridge"), "a VLAN on a tap in no bridge: -ENOTCONN",
	      "rc %d '%s'", rc, err);

	rc = hostnet_bridge_attach(BR, TAP_A, err, sizeof(err));
	CHECK(rc == 0 && hostnet_link_get(TAP_A, &li, NULL, 0) == 0 && li.master_ifindex == br_ifindex,
	      "attach " TAP_A ": netlink reads its master back as the bridge", "rc %d master %d (bridge %d) '%s'", rc,
	      li.master_ifindex, br_ifindex, err);
	rc = hostnet_bridge_attach(BR, TAP_B, err, sizeof(err));
	CHECK(rc == 0, "attach " TAP_B, "rc %d '%s'", rc, err);
	rc = hostnet_bridge_port_vlans(TAP_A, &v, err, sizeof(err));
	CHECK(rc == 0 && v.master_ifindex == br_ifindex, "the AF_BRIDGE dump lists " TAP_A " as a port of the bridge",
	      "rc %d master %d '%s'", rc, v.master_ifindex, err);
	rc = hostnet_bridge_port_set_access_vlan(TAP_A, 0, err, sizeof(err));
	CHECK(rc == -EINVAL, "VLAN 0 is refused", "rc %d", rc);
	rc = hostnet_bridge_port_set_access_vlan(TAP_A, 4095, err, sizeof(err));
	CHECK(rc == -EINVAL, "VLAN 4095 is refused", "rc %d", rc);
	(void)a;
	(void)b;
}

static bool only_vlan(const struct hostnet_port_vlans *v, unsigned vid)
{
	return v->count == 1 && v->pvid == vid && hostnet_vlan_has(v->member, vid) && hostnet_vlan_has(v->untagged, vid);
}

static void test_vlans_and_frames(struct hostnet_tap *a, struct hostnet_tap *b)
{
	struct hostnet_port_vlans v;
	bool on = true, seen;
	int rc;

	seen = frame_crosses(a, b, "plain-bridge", 0, SEEN_WAIT_MS, true);
	CHECK(seen, "a broadcast frame written into " TAP_A " comes out of " TAP_B " (same bridge)",
	      "not seen within %d ms", SEEN_WAIT_MS);

	rc = hostnet_bridge_get_vlan_filtering(BR, &on, err, sizeof(err));
	CHECK(rc == 0 && !on, "a new bridge has VLAN filtering off", "rc %d on %d '%s'", rc, on, err);
	rc = hostnet_bridge_set_vlan_filtering(BR, true, err, sizeof(err));
	if (rc == -EOPNOTSUPP) {
		CHECK(strstr(err, "CONFIG_BRIDGE_VLAN_FILTERING") != NULL,
		      "without kernel VLAN filtering, turning it on says so", "'%s'", err);
		rc = hostnet_bridge_port_set_access_vlan(TAP_A, 10, err, sizeof(err));
		CHECK(rc == -EOPNOTSUPP && strstr(err, "CONFIG_BRIDGE_VLAN_FILTERING"),
		      "without kernel VLAN filtering, an access VLAN says so", "rc %d '%s'", rc, err);
		printf("SKIP hostnet: VLAN access ports (PVID 10 untagged read back, VLAN 1 removed; VLAN 10 vs 20 "
		       "isolation, VLAN 10 vs 10 forwarding): the kernel refuses: %s\n",
		       err);
		return;
	}
	CHECK(rc == 0 && hostnet_bridge_get_vlan_filtering(BR, &on, NULL, 0) == 0 && on,
	      "turn VLAN filtering on and read it back", "rc %d on %d '%s'", rc, on, err);
	rc = hostnet_bridge_port_vlans(TAP_A, &v, err, sizeof(err));
	CHECK(rc == 0 && v.pvid == HOSTNET_VLAN_DEFAULT && hostnet_vlan_has(v.member, HOSTNET_VLAN_DEFAULT),
	      "a new port is in the default VLAN 1 (PVID 1)", "rc %d pvid %u count %u '%s'", rc, v.pvid, v.count, err);

	rc = hostnet_bridge_port_set_access_vlan(TAP_A, 10, err, sizeof(err));
	CHECK(rc == 0, TAP_A " access port of VLAN 10", "rc %d '%s'", rc, err);
	rc = hostnet_bridge_port_vlans(TAP_A, &v, err, sizeof(err));
	CHECK(rc == 0 && only_vlan(&v, 10) && !hostnet_vlan_has(v.member, 1),
	      "read back: PVID 10, untagged, the only VLAN (VLAN 1 removed)", "rc %d pvid %u count %u vlan1 %d '%s'", rc,
	      v.pvid, v.count, hostnet_vlan_has(v.member, 1), err);
	rc = hostnet_bridge_port_set_access_vlan(TAP_B, 20, err, sizeof(err));
	CHECK(rc == 0 && hostnet_bridge_port_vlans(TAP_B, &v, err, sizeof(err)) == 0 && only_vlan(&v, 20),
	      TAP_B " access port of VLAN 20, read back", "rc %d pvid %u count %u '%s'", rc, v.pvid, v.count, err);

	seen = frame_crosses(a, b, "vlan-10-to-20", 0, UNSEEN_WAIT_MS, false);
	CHECK(!seen, "VLAN 10 -> VLAN 20: the frame does not come out of " TAP_B, "it did");
	seen = frame_crosses(a, b, "tagged-20", 20, UNSEEN_WAIT_MS, false);
	CHECK(!seen, "a frame the VM in VLAN 10 tags with VLAN 20 does not come out of " TAP_B, "it did");
	seen = frame_crosses(a, b, "tagged-1", 1, UNSEEN_WAIT_MS, false);
	CHECK(!seen, "nor one it tags with the default VLAN 1 (removed from both ports)", "it did");

	rc = hostnet_bridge_port_set_access_vlan(TAP_B, 10, err, sizeof(err));
	CHECK(rc == 0 && hostnet_bridge_port_vlans(TAP_B, &v, err, sizeof(err)) == 0 && only_vlan(&v, 10) &&
		      !hostnet_vlan_has(v.member, 20),
	      TAP_B " moved to VLAN 10: only VLAN 10 left (20 removed)", "rc %d pvid %u count %u '%s'", rc, v.pvid,
	      v.count, err);
	seen = frame_crosses(a, b, "vlan-10-to-10", 0, SEEN_WAIT_MS, true);
	CHECK(seen, "VLAN 10 -> VLAN 10: the frame comes out of " TAP_B, "not seen within %d ms", SEEN_WAIT_MS);
}

static void test_shaping(void)
{
	struct hostnet_tbf t = { .rate = 1000000, .burst = 32768, .latency_us = 50000 }, got;
	bool present = true;
	int rc;

	rc = hostnet_shape_get(TAP_A, &got, &present, err, sizeof(err));
	CHECK(rc == 0 && !present, "no tbf on a new tap", "rc %d present %d '%s'", rc, present, err);
	rc = hostnet_shape_set(TAP_A, &t, err, sizeof(err));
	CHECK(rc == 0, "tbf 1 MB/s, burst 32 KiB, latency 50 ms on " TAP_A, "rc %d '%s'", rc, err);
	rc = hostnet_shape_get(TAP_A, &got, &present, err, sizeof(err));
	CHECK(rc == 0 && present && got.rate == t.rate && got.burst >= t.burst * 99 / 100 &&
		      got.burst <= t.burst * 101 / 100 && got.limit >= 82768 * 99 / 100 && got.limit <= 82768 * 101 / 100,
	      "read back: rate 1000000 B/s, burst ~32768, limit ~82768 (rate x latency + burst)",
	      "rc %d present %d rate %llu burst %u limit %u '%s'", rc, present, (unsigned long long)got.rate, got.burst,
	      got.limit, err);
	t.rate = 12500000;
	rc = hostnet_shape_set(TAP_A, &t, err, sizeof(err));
	CHECK(rc == 0 && hostnet_shape_get(TAP_A, &got, &present, NULL, 0) == 0 && present && got.rate == 12500000,
	      "set again at 100 Mbit/s: replaced in place, read back", "rc %d rate %llu '%s'", rc,
	      (unsigned long long)got.rate, err);
	t.rate = 0;
	rc = hostnet_shape_set(TAP_A, &t, err, sizeof(err));
	CHECK(rc == -ERANGE, "rate 0 is refused", "rc %d", rc);
	t.rate = HOSTNET_TBF_RATE_MAX + 1;
	rc = hostnet_shape_set(TAP_A, &t, err, sizeof(err));
	CHECK(rc == -ERANGE, "a rate above HOSTNET_TBF_RATE_MAX is refused", "rc %d", rc);
	t.rate = 1000000;
	t.burst = 1000;
	rc = hostnet_shape_set(TAP_A, &t, err, sizeof(err));
	CHECK(rc == -ERANGE && strstr(err, "full frame"), "a burst smaller than one frame is refused, saying why",
	      "rc %d '%s'", rc, err);
	t.burst = 32768;
	t.rate = HOSTNET_TBF_RATE_MAX;
	t.latency_us = 2000000;
	rc = hostnet_shape_set(TAP_A, &t, err, sizeof(err));
	CHECK(rc == -ERANGE && strstr(err, "lower the latency"), "a queue limit of 2 GiB or more is refused, saying why",
	      "rc %d '%s'", rc, err);
	t.rate = 1000000;
	t.latency_us = 50000;
	rc = hostnet_shape_set("hn-nosuch", &t, err, sizeof(err));
	CHECK(rc == -ENODEV, "shaping a missing link: -ENODEV", "rc %d '%s'", rc, err);
	rc = hostnet_shape_clear(TAP_A, err, sizeof(err));
	CHECK(rc == 0 && hostnet_shape_get(TAP_A, &got, &present, NULL, 0) == 0 && !present, "remove the tbf",
	      "rc %d present %d '%s'", rc, present, err);
	rc = hostnet_shape_clear(TAP_A, err, sizeof(err));
	CHECK(rc == 0, "removing it again is not an error", "rc %d '%s'", rc, err);
}

static void test_counters(void)
{
	struct hostnet_link_stats sa, sb;
	int ra = hostnet_link_stats(TAP_A, &sa, err, sizeof(err));
	int rb = hostnet_link_stats(TAP_B, &sb, err, sizeof(err));
	CHECK(ra == 0 && rb == 0 && sa.rx_packets >= 1 && sa.rx_bytes >= FRAME_BYTES && sb.tx_packets >= 1 &&
		      sb.tx_bytes >= FRAME_BYTES,
	      "counters: " TAP_A " received the frames its VM sent, " TAP_B " sent them on",
	      "rc %d/%d a rx %llu/%llu b tx %llu/%llu '%s'", ra, rb, (unsigned long long)sa.rx_packets,
	      (unsigned long long)sa.rx_bytes, (unsigned long long)sb.tx_packets, (unsigned long long)sb.tx_bytes, err);
	ra = hostnet_link_stats("hn-nosuch", &sa, err, sizeof(err));
	CHECK(ra == -ENODEV && !strcmp(err, "interface hn-nosuch does not exist"), "counters of a missing link: -ENODEV",
	      "rc %d '%s'", ra, err);
}

static void test_teardown(struct hostnet_tap *a, struct hostnet_tap *b)
{
	struct hostnet_link_info li;
	int rc;

	rc = hostnet_bridge_detach(TAP_A, err, sizeof(err));
	CHECK(rc == 0 && hostnet_link_get(TAP_A, &li, NULL, 0) == 0 && li.master_ifindex == 0,
	      "detach " TAP_A ": no master any more", "rc %d master %d '%s'", rc, li.master_ifindex, err);
	rc = hostnet_bridge_detach(TAP_A, err, sizeof(err));
	CHECK(rc == 0, "detaching it again is not an error", "rc %d '%s'", rc, err);
	rc = hostnet_bridge_delete(TAP_B, err, sizeof(err));
	CHECK(rc == -EINVAL && link_exists(TAP_B), "bridge_delete refuses a tap", "rc %d '%s'", rc, err);
	rc = hostnet_bridge_delete(BR, err, sizeof(err));
	CHECK(rc == 0 && !link_exists(BR), "delete the bridge", "rc %d '%s'", rc, err);
	CHECK(hostnet_link_get(TAP_B, &li, NULL, 0) == 0 && li.master_ifindex == 0,
	      "its last port is released with it", "master %d", li.master_ifindex);
	rc = hostnet_bridge_delete(BR, err, sizeof(err));
	CHECK(rc == -ENODEV, "deleting it again: -ENODEV", "rc %d '%s'", rc, err);
	hostnet_tap_close(a);
	hostnet_tap_close(b);
	CHECK(!link_exists(TAP_A) && !link_exists(TAP_B), "closing the taps deletes them", "a %d b %d",
	      link_exists(TAP_A), link_exists(TAP_B));
}

/* Without CAP_NET_ADMIN (dropped in a child, still inside the namespace)
 * the errors say what is missing. */
static void test_permission(void)
{
	struct __user_cap_header_struct h = { .version = _LINUX_CAPABILITY_VERSION_3 };
	struct __user_cap_data_struct d[2];
	struct hostnet_tap tap;
	int rc, status;
	pid_t pid;

	fflush(stdout);
	pid = fork();
	if (pid == 0) {
		failures = 0;
		if (syscall(SYS_capget, &h, d) || (d[0].effective &= ~(1u << CAP_NET_ADMIN), syscall(SYS_capset, &h, d))) {
			printf("FAIL hostnet: dropping CAP_NET_ADMIN: %s\n", strerror(errno));
			fflush(stdout);
			_exit(1);
		}
		rc = hostnet_bridge_create("hn-br-perm", err, sizeof(err));
		CHECK(rc == -EPERM && strstr(err, "permission denied (needs CAP_NET_ADMIN)"),
		      "without CAP_NET_ADMIN, creating a bridge says what is missing", "rc %d '%s'", rc, err);
		rc = tap_create(&tap, "hn-tap-perm", 1);
		CHECK(rc == -EPERM && strstr(err, "permission denied (needs CAP_NET_ADMIN)"),
		      "without CAP_NET_ADMIN, creating a tap says what is missing", "rc %d '%s'", rc, err);
		printf("     %s\n", err);
		fflush(stdout);
		exit(failures ? 1 : 0); /* exit, not _exit: LeakSanitizer checks the child too */
	}
	if (pid < 0 || waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status))
		failures++;
}

static int netlink_tests(void)
{
	struct hostnet_tap a, b;
	int br_ifindex = 0;

	failures = 0;
	if (unshare(CLONE_NEWNET) < 0) {
		printf("SKIP hostnet: netlink parts: cannot make a network namespace: %s\n", strerror(errno));
		return 0;
	}
	test_bridge_basics(&br_ifindex);
	test_taps(&a, &b);
	if (a.fds[0] < 0 || b.fds[0] < 0) {
		printf("FAIL hostnet: the taps could not be made; the rest of the netlink checks did not run\n");
		return 1;
	}
	test_ports(br_ifindex, &a, &b);
	test_shaping();
	test_vlans_and_frames(&a, &b);
	test_counters();
	test_teardown(&a, &b);
	test_permission();
	return failures;
}

/* Root with CAP_NET_ADMIN and CAP_SYS_ADMIN (for the namespace); why not, otherwise. */
static bool can_do_netlink(char *why, size_t len)
{
	char line[256];
	unsigned long long eff = 0;
	FILE *f;

	if (geteuid() != 0) {
		snprintf(why, len, "not running as root");
		return false;
	}
	f = fopen("/proc/self/status", "r");
	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "CapEff: %llx", &eff) == 1)
			break;
	if (f)
		fclose(f);
	if (!(eff & (1ULL << CAP_NET_ADMIN)) || !(eff & (1ULL << CAP_SYS_ADMIN))) {
		snprintf(why, len, "root without CAP_NET_ADMIN and CAP_SYS_ADMIN (CapEff %llx)", eff);
		return false;
	}
	if (access("/dev/net/tun", R_OK | W_OK) != 0) {
		snprintf(why, len, "/dev/net/tun not accessible: %s", strerror(errno));
		return false;
	}
	return true;
}

int main(void)
{
	char why[160];
	int status;
	pid_t pid;

	test_mac();
	test_token_bucket();
	test_names();

	if (!can_do_netlink(why, sizeof(why))) {
		printf("SKIP hostnet: bridges, taps, VLANs, tbf and counters through netlink: %s\n", why);
		return failures ? 1 : 0;
	}
	fflush(stdout);
	pid = fork();
	if (pid < 0) {
		printf("FAIL hostnet: fork: %s\n", strerror(errno));
		return 1;
	}
	if (pid == 0) {
		int n = netlink_tests();
		fflush(stdout);
		exit(n ? 1 : 0); /* exit, not _exit: LeakSanitizer checks the child too */
	}
	if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status)) {
		printf("FAIL hostnet: the namespace child did not finish normally (status %#x)\n", status);
		failures++;
	} else if (WEXITSTATUS(status) != 0) {
		failures++; /* its FAIL lines are printed */
	}
	return failures ? 1 : 0;
}
