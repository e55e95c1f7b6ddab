/* Unit tests of what a VM is attached to (src/host/attach.c) and the
 * controller's rules over it (src/center/compat.c, placement.c), without
 * KVM, agents or a network:
 *  - `--network NAME=bridge:BR[,vlan=N][,rate=RATE][,POLICY=accept|reject]`, accepted and refused;
 *  - the "nics" / "disks" members of request bodies: what is accepted, the
 *    canonical form kept, and every refusal (types, counts, lengths, MACs);
 *  - MACs generated for NICs without one;
 *  - the monitor's --nic / --disk options built from a host's networks;
 *  - the reasons a host does not fit a VM's networks and disks
 *    (compat_attachments) and placement skipping such a host.
 * Prints PASS/FAIL lines for tests/run.sh. */
#include "host/attach.h"
#include "center/center.h"
#include "common/util.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures;
#define CHECK(name, cond, ...) do { \
		if (cond) printf("PASS %s\n", name); \
		else { printf("FAIL %s: ", name); printf(__VA_ARGS__); printf("\n"); failures++; } \
	} while (0)

static void test_network_parse(void)
{
	struct attach_network n;
	char err[512] = "", name[160];
	int rc;

	rc = attach_network_parse("prod=bridge:br0", &n, err, sizeof(err));
	CHECK("network: prod=bridge:br0", !rc && !strcmp(n.name, "prod") && !strcmp(n.bridge, "br0") && !n.vlan && !n.rate,
	      "rc %d %s %s %d %llu %s", rc, n.name, n.bridge, n.vlan, (unsigned long long)n.rate, err);
	rc = attach_network_parse("lab.1=bridge:br-lab_0,vlan=4094,rate=1G", &n, err, sizeof(err));
	CHECK("network: vlan=4094,rate=1G", !rc && n.vlan == 4094 && n.rate == (1ULL << 30) && !strcmp(n.bridge, "br-lab_0"),
	      "rc %d vlan %d rate %llu %s", rc, n.vlan, (unsigned long long)n.rate, err);
	rc = attach_network_parse("p=bridge:br0,rate=100M,vlan=1", &n, err, sizeof(err));
	CHECK("network: options in any order", !rc && n.vlan == 1 && n.rate == 100ULL << 20, "rc %d %s", rc, err);
	CHECK("network: port security rejects all three by default", !n.accept_forged && !n.accept_mac_changes &&
	      !n.accept_promiscuous, "%d %d %d", n.accept_forged, n.accept_mac_changes, n.accept_promiscuous);
	rc = attach_network_parse("p=bridge:br0,promiscuous=accept,forged-transmits=reject,mac-changes=accept", &n, err,
				  sizeof(err));
	CHECK("network: promiscuous=accept,forged-transmits=reject,mac-changes=accept",
	      !rc && n.accept_promiscuous && !n.accept_forged && n.accept_mac_changes, "rc %d %s", rc, err);

	static const struct { const char *arg, *why; } bad[] = {
		{ "prod", "give NAME=bridge:BR" },
		{ "=bridge:br0", "invalid name" },
		{ "../x=bridge:br0", "invalid name" },
		{ "prod=br0", "the backing must be bridge:BR" },
		{ "prod=tap:t0", "the backing must be bridge:BR" },
		{ "prod=bridge:", "is not an interface name" },
		{ "prod=bridge:a/b", "is not an interface name" },
		{ "prod=bridge:..", "is not an interface name" },
		{ "prod=bridge:abcdefghijklmnop", "is not an interface name" },
		{ "prod=bridge:br0,vlan=0", "a VLAN id from 1 to 4094" },
		{ "prod=bridge:br0,vlan=4095", "a VLAN id from 1 to 4094" },
		{ "prod=bridge:br0,vlan=+5", "a VLAN id from 1 to 4094" },
		{ "prod=bridge:br0,vlan=10x", "a VLAN id from 1 to 4094" },
		{ "prod=bridge:br0,vlan=99999999999999999999", "a VLAN id from 1 to 4094" },
		{ "prod=bridge:br0,vlan=1,vlan=2", "unknown or repeated option 'vlan=2'" },
		{ "prod=bridge:br0,rate=0", "a rate like 100M" },
		{ "prod=bridge:br0,rate=fast", "a rate like 100M" },
		{ "prod=bridge:br0,mtu=9000", "unknown or repeated option 'mtu=9000'" },
		{ "prod=bridge:br0,", "an empty option" },
		{ "prod=bridge:br0,,vlan=1", "an empty option" },
		{ "prod=bridge:br0,promiscuous=yes", "promiscuous=yes: accept or reject" },
		{ "prod=bridge:br0,forged-transmits=", "forged-transmits=: accept or reject" },
		{ "prod=bridge:br0,mac-changes=accept,mac-changes=reject", "unknown or repeated option 'mac-changes=reject'" },
	};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		err[0] = 0;
		rc = attach_network_parse(bad[i].arg, &n, err, sizeof(err));
		snprintf(name, sizeof(name), "network: '%s' refused (%s)", bad[i].arg, bad[i].why);
		CHECK(name, rc == -EINVAL && strstr(err, bad[i].why) && !n.name[0], "rc %d: %s", rc, err);
	}
	char longarg[400];
	memset(longarg, 'a', sizeof(longarg) - 1);
	longarg[sizeof(longarg) - 1] = 0;
	CHECK("network: a 399-character option refused", attach_network_parse(longarg, &n, err, sizeof(err)) == -EINVAL &&
	      strstr(err, "too long"), "%s", err);

	struct attach_network nets[2];
	attach_network_parse("prod=bridge:br0,vlan=10", &nets[0], err, sizeof(err));
	attach_network_parse("dev=bridge:br1", &nets[1], err, sizeof(err));
	json_t *j = attach_network_json(&nets[0]), *k = attach_network_json(&nets[1]);
	char *a = json_dumps(j, JSON_SORT_KEYS | JSON_COMPACT), *b = json_dumps(k, JSON_SORT_KEYS | JSON_COMPACT);
#define SEC_REJECT "\"security\":{\"forged_transmits\":\"reject\",\"mac_changes\":\"reject\",\"promiscuous\":\"reject\"}"
	CHECK("network: facts JSON with a VLAN", !strcmp(a, "{\"bridge\":\"br0\",\"name\":\"prod\",\"rate\":null," SEC_REJECT ",\"vlan\":10}"), "%s", a);
	CHECK("network: facts JSON untagged, unlimited", !strcmp(b, "{\"bridge\":\"br1\",\"name\":\"dev\",\"rate\":null," SEC_REJECT ",\"vlan\":null}"), "%s", b);
	CHECK("network: find by name", attach_network_find(nets, 2, "dev") == &nets[1] && !attach_network_find(nets, 2, "x"), "%s", "wrong network");
	free(a);
	free(b);
	json_decref(j);
	json_decref(k);
}

/* attach_parse over JSON text ("null" for none); returns its rc. */
static int parse(const char *nics, const char *disks, bool need_mac, struct attach *at, json_t **keep, char *err, size_t errlen)
{
	json_error_t je;
	json_t *body = json_pack("{s:o, s:o}", "nics", json_loads(nics, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je), "disks",
				 json_loads(disks, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je));
	if (!body) {
		fprintf(stderr, "bad test JSON: %s / %s\n", nics, disks);
		abort();
	}
	int rc = attach_parse(json_object_get(body, "nics"), json_object_get(body, "disks"), need_mac, at, err, errlen);
	*keep = body;
	return rc;
}

static void test_attach_parse(void)
{
	struct attach at;
	json_t *body, *j;
	char err[512], name[300], *text;
	int rc;

	rc = parse("[{\"network\":\"prod\",\"mac\":\"52:54:00:AB:cd:01\"},{\"network\":\"dev\",\"mac\":null}]",
		   "[{\"path\":\"/srv/a.img\"},{\"path\":\"/srv/b.img\",\"readonly\":true}]", false, &at, &body, err, sizeof(err));
	CHECK("attach: two NICs and two disks", !rc && at.nnics == 2 && at.ndisks == 2 && at.nics[0].has_mac && !at.nics[1].has_mac &&
	      !strcmp(at.nics[1].network, "dev") && !at.disks[0].readonly && at.disks[1].readonly, "rc %d %s", rc, err);
	j = attach_nics_json(&at);
	text = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
	CHECK("attach: NICs kept with the MAC in lower case, none where none was given",
	      !strcmp(text, "[{\"mac\":\"52:54:00:ab:cd:01\",\"network\":\"prod\"},{\"network\":\"dev\"}]"), "%s", text);
	free(text);
	json_decref(j);
	j = attach_disks_json(&at);
	text = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
	CHECK("attach: disks kept with readonly",
	      !strcmp(text, "[{\"path\":\"/srv/a.img\",\"readonly\":false},{\"path\":\"/srv/b.img\",\"readonly\":true}]"), "%s", text);
	free(text);
	json_decref(j);

	/* generated MACs: locally administered, unicast, distinct from the VM's others */
	bool ok = true;
	for (int round = 0; round < 200 && ok; round++) {
		struct attach g = at;
		g.nics[1].has_mac = false;
		g.nics[0].has_mac = round & 1;
		ok = attach_fill_macs(&g) == 0 && g.nics[0].has_mac && g.nics[1].has_mac &&
		     (g.nics[1].mac[0] & 3) == 2 && memcmp(g.nics[0].mac, g.nics[1].mac, 6) &&
		     (round & 1 ? !memcmp(g.nics[0].mac, at.nics[0].mac, 6) : (g.nics[0].mac[0] & 3) == 2);
	}
	CHECK("attach: generated MACs are locally administered unicast, distinct, and a given MAC is kept (200 rounds)", ok, "%s", "a round failed");
	json_decref(body);

	rc = parse("null", "null", true, &at, &body, err, sizeof(err));
	CHECK("attach: null nics and disks are none", !rc && !at.nnics && !at.ndisks, "rc %d %s", rc, err);
	json_decref(body);
	rc = parse("[]", "[]", true, &at, &body, err, sizeof(err));
	CHECK("attach: empty arrays are none", !rc && !at.nnics && !at.ndisks, "rc %d %s", rc, err);
	json_decref(body);

	char long_path[ATTACH_PATH_MAX + 64];
	snprintf(long_path, sizeof(long_path), "[{\"path\":\"/");
	memset(long_path + strlen(long_path), 'x', ATTACH_PATH_MAX - 1);
	snprintf(long_path + 11 + ATTACH_PATH_MAX - 1, 8, "\"}]");
	const struct { const char *nics, *disks; bool need_mac; const char *why; } bad[] = {
		{ "{}", "null", false, "nics: must be an array of at most 4 NICs" },
		{ "[{\"network\":\"a\"},{\"network\":\"a\"},{\"network\":\"a\"},{\"network\":\"a\"},{\"network\":\"a\"}]", "null", false,
		  "at most 4 NICs" },
		{ "[\"prod\"]", "null", false, "NIC 0 must be an object" },
		{ "[{}]", "null", false, "NIC 0 needs \"network\"" },
		{ "[{\"network\":7}]", "null", false, "NIC 0 needs \"network\"" },
		{ "[{\"network\":\"a b\"}]", "null", false, "invalid name" },
		{ "[{\"network\":\"pr\\u0000od\"}]", "null", false, "NIC 0: network:" },
		{ "[{\"network\":\"prod\",\"vlan\":3}]", "null", false, "unknown member 'vlan'" },
		{ "[{\"network\":\"prod\",\"queues\":9}]", "null", false, "\"queues\" must be an integer from 1 to 8" },
		{ "[{\"network\":\"prod\",\"queues\":\"2\"}]", "null", false, "\"queues\" must be an integer from 1 to 8" },
		{ "[{\"network\":\"prod\",\"queues\":0}]", "null", false, "\"queues\" must be an integer from 1 to 8" },
		{ "[{\"network\":\"prod\"}]", "null", true, "NIC 0 needs its \"mac\"" },
		{ "[{\"network\":\"prod\",\"mac\":\"52:54:00:12:34\"}]", "null", false, "six hex pairs" },
		{ "[{\"network\":\"prod\",\"mac\":\"52:54:00:12:34:56:78\"}]", "null", false, "six hex pairs" },
		{ "[{\"network\":\"prod\",\"mac\":\"52-54-00-12-34-56\"}]", "null", false, "six two-digit hex pairs" },
		{ "[{\"network\":\"prod\",\"mac\":\"52:54:00:12:34:5g\"}]", "null", false, "six two-digit hex pairs" },
		{ "[{\"network\":\"prod\",\"mac\":\"52:54:00:12:34:56\\u0000\"}]", "null", false, "six hex pairs" },
		{ "[{\"network\":\"prod\",\"mac\":525400123456}]", "null", false, "six hex pairs" },
		{ "[{\"network\":\"prod\",\"mac\":\"01:00:5e:00:00:01\"}]", "null", false, "multicast" },
		{ "[{\"network\":\"prod\",\"mac\":\"00:00:00:00:00:00\"}]", "null", false, "all zeros" },
		{ "[{\"network\":\"a\",\"mac\":\"52:54:00:12:34:56\"},{\"network\":\"b\",\"mac\":\"52:54:00:12:34:56\"}]", "null",
		  false, "NICs 0 and 1 have the same MAC 52:54:00:12:34:56" },
		{ "null", "\"/srv/a\"", false, "disks: must be an array of at most 4 disks" },
		{ "null", "[{\"path\":\"/a\"},{\"path\":\"/b\"},{\"path\":\"/c\"},{\"path\":\"/d\"},{\"path\":\"/e\"}]", false,
		  "at most 4 disks" },
		{ "null", "[\"/srv/a\"]", false, "disk 0 must be an object" },
		{ "null", "[{}]", false, "disk 0 needs \"path\"" },
		{ "null", "[{\"path\":\"srv/a\"}]", false, "absolute file path" },
		{ "null", "[{\"path\":\"\"}]", false, "absolute file path" },
		{ "null", "[{\"path\":\"/srv/a,readonly\"}]", false, "without ','" },
		{ "null", "[{\"path\":\"/srv/a\\nb\"}]", false, "control characters" },
		{ "null", "[{\"path\":\"/srv/a\\u0000b\"}]", false, "absolute file path" },
		{ "null", "[{\"path\":\"/srv/a\",\"readonly\":1}]", false, "\"readonly\" must be true or false" },
		{ "null", "[{\"path\":\"/srv/a\",\"size\":512}]", false, "unknown member 'size'" },
		{ "null", "[{\"path\":\"/srv/a\"},{\"path\":\"/srv/a\",\"readonly\":true}]", false, "disks 0 and 1 are the same file" },
		{ "null", long_path, false, "shorter than 4096 bytes" },
	};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		err[0] = 0;
		rc = parse(bad[i].nics, bad[i].disks, bad[i].need_mac, &at, &body, err, sizeof(err));
		snprintf(name, sizeof(name), "attach: refused (%s)", bad[i].why);
		CHECK(name, rc == -EINVAL && strstr(err, bad[i].why) && !at.nnics && !at.ndisks, "rc %d: %s", rc, err);
		json_decref(body);
	}
	/* the longest path accepted: 4095 bytes */
	long_path[11 + ATTACH_PATH_MAX - 2] = 0;
	strcat(long_path, "\"}]");
	rc = parse("null", long_path, false, &at, &body, err, sizeof(err));
	CHECK("attach: a 4095-byte disk path is accepted", !rc && strlen(at.disks[0].path) == ATTACH_PATH_MAX - 1, "rc %d %s", rc, err);
	json_decref(body);
}

static void test_monitor_args(void)
{
	struct attach_network nets[2];
	struct attach at;
	struct attach_args *out = malloc(sizeof(*out));
	json_t *body;
	char err[512] = "", line[8192] = "";
	int rc;

	attach_network_parse("prod=bridge:brA,vlan=10,rate=10M", &nets[0], err, sizeof(err));
	attach_network_parse("dev=bridge:brB,promiscuous=accept,forged-transmits=accept", &nets[1], err, sizeof(err));
	parse("[{\"network\":\"prod\",\"mac\":\"52:54:00:00:00:01\",\"queues\":4},{\"network\":\"dev\",\"mac\":\"52:54:00:00:00:02\"}]",
	      "[{\"path\":\"/srv/a.img\"},{\"path\":\"/srv/b.img\",\"readonly\":true}]", true, &at, &body, err, sizeof(err));
	rc = attach_monitor_args(&at, nets, 2, "hA", out, err, sizeof(err));
	for (int i = 0; !rc && out->argv[i]; i++)
		snprintf(line + strlen(line), sizeof(line) - strlen(line), "%s%s", i ? " " : "", out->argv[i]);
	json_t *back = attach_nics_json(&at);
	CHECK("attach: a NIC's queue pairs are kept in its record (\"queues\": 4), one pair is not written",
	      json_integer_value(json_object_get(json_array_get(back, 0), "queues")) == 4 &&
		      !json_object_get(json_array_get(back, 1), "queues"), "%s", "queues");
	json_decref(back);
	CHECK("args: --nic from the host's network of each NIC's name (its queue pairs), --disk per disk",
	      !rc && out->argc == 8 && !strcmp(line, "--nic bridge=brA,vlan=10,rate=10485760,queues=4,mac=52:54:00:00:00:01 "
						     "--nic bridge=brB,mac=52:54:00:00:00:02,forged-transmits=accept,promiscuous=accept "
						     "--disk /srv/a.img --disk /srv/b.img,readonly"),
	      "rc %d argc %d: %s %s", rc, out->argc, line, err);
	rc = attach_monitor_args(&at, nets, 1, "hA", out, err, sizeof(err));
	CHECK("args: a host without the network of NIC 1 is refused, naming it",
	      rc == -ENOENT && strstr(err, "host hA lacks network 'dev' used by NIC 1"), "rc %d: %s", rc, err);
	at.nics[0].has_mac = false;
	rc = attach_monitor_args(&at, nets, 2, "hA", out, err, sizeof(err));
	CHECK("args: a NIC without a MAC is refused", rc == -EINVAL, "rc %d: %s", rc, err);
	json_decref(body);
	free(out);
}

static void test_compat_attachments(void)
{
	json_t *nics = json_loads("[{\"network\":\"prod\",\"mac\":\"52:54:00:00:00:01\"},{\"network\":\"dev\",\"mac\":\"52:54:00:00:00:02\"}]", 0, NULL);
	json_t *disks = json_loads("[{\"path\":\"/s/a\",\"readonly\":false},{\"path\":\"/s/b\",\"readonly\":true}]", 0, NULL);
	json_t *facts = json_loads("{\"networks\":[{\"name\":\"prod\",\"bridge\":\"br0\",\"vlan\":null,\"rate\":null},"
				   "{\"name\":\"dev\",\"bridge\":\"br1\",\"vlan\":5,\"rate\":null}]}", 0, NULL);
	json_t *only_prod = json_loads("{\"networks\":[{\"name\":\"prod\",\"bridge\":\"br0\"}]}", 0, NULL);
	json_t *sees = json_loads("{\"/s/a\":{\"path\":\"/s/a\",\"exists\":true,\"kind\":\"file\",\"size\":1048576},"
				  "\"/s/b\":{\"path\":\"/s/b\",\"exists\":true,\"kind\":\"block\",\"size\":4096}}", 0, NULL);
	json_t *src = json_loads("{\"/s/a\":{\"exists\":true,\"kind\":\"file\",\"size\":2097152},"
				 "\"/s/b\":{\"exists\":true,\"kind\":\"block\",\"size\":4096}}", 0, NULL);
	json_t *blind = json_loads("{\"/s/a\":{\"path\":\"/s/a\",\"exists\":false,\"error\":\"No such file or directory\"},"
				   "\"/s/b\":{\"path\":\"/s/b\",\"exists\":true,\"kind\":\"directory\"}}", 0, NULL);
	json_t *mute = json_loads("{\"/s/a\":{\"error\":\"host hB (10.0.0.2:7001) is not responding: timeout\"}}", 0, NULL);
	json_t *r = json_array();
	int n;

	n = compat_attachments(nics, disks, facts, sees, NULL, "hB", NULL, r);
	CHECK("compat: a host with both networks that sees both disks fits", n == 0 && !json_array_size(r), "%d reasons", n);
	n = compat_attachments(nics, disks, only_prod, sees, NULL, "hB", NULL, r);
	CHECK("compat: a host lacking network dev: one reason naming it and the NIC",
	      n == 1 && !strcmp(json_string_value(json_array_get(r, 0)), "network: host hB lacks network 'dev' used by NIC 1"),
	      "%d: %s", n, json_string_value(json_array_get(r, 0)));
	json_array_clear(r);
	n = compat_attachments(nics, disks, facts, blind, NULL, "hB", NULL, r);
	CHECK("compat: a disk the host cannot see",
	      n == 2 && !strcmp(json_string_value(json_array_get(r, 0)), "disk 0: host hB cannot see /s/a (No such file or directory); "
									  "the VM's disks must be on storage its hosts share"),
	      "%d: %s", n, json_string_value(json_array_get(r, 0)));
	CHECK("compat: a disk path that is a directory there",
	      n == 2 && !strcmp(json_string_value(json_array_get(r, 1)), "disk 1: /s/b on host hB is a directory, not a file or block device"),
	      "%s", json_string_value(json_array_get(r, 1)));
	json_array_clear(r);
	n = compat_attachments(nics, disks, facts, sees, src, "hB", "hA", r);
	CHECK("compat: a disk of another size than on the source is not the same shared file",
	      n == 1 && !strcmp(json_string_value(json_array_get(r, 0)), "disk 0: /s/a has 1048576 bytes on host hB but 2097152 on hA "
									  "(not the same shared file)"),
	      "%d: %s", n, json_string_value(json_array_get(r, 0)));
	json_array_clear(r);
	n = compat_attachments(nics, disks, facts, mute, NULL, "hB", NULL, r);
	CHECK("compat: a host that cannot say whether it sees a disk does not fit",
	      n == 2 && strstr(json_string_value(json_array_get(r, 0)), "disk 0: host hB cannot say whether it sees /s/a: host hB") &&
	      strstr(json_string_value(json_array_get(r, 1)), "disk 1: host hB cannot say whether it sees /s/b"),
	      "%d: %s", n, json_string_value(json_array_get(r, 0)));
	json_array_clear(r);
	json_t *none = json_array(), *bare = json_object();
	n = compat_attachments(none, none, bare, NULL, NULL, "hB", NULL, r);
	CHECK("compat: a VM without NICs or disks fits any host", n == 0, "%d", n);
	json_decref(none);
	json_decref(bare);

	/* placement skips a host that lacks them */
	uint32_t ones[EVC_REGS];
	for (int i = 0; i < EVC_REGS; i++)
		ones[i] = 0xffffffffu;
	struct placement_host hosts[2] = { { .name = "hA", .facts = true, .free = 8ULL << 30 },
					   { .name = "hB", .facts = true, .free = 2ULL << 30 } };
	snprintf(hosts[0].lacks, sizeof(hosts[0].lacks), "network: host hA lacks network 'dev' used by NIC 1");
	json_array_clear(r);
	int pick = placement_choose(hosts, 2, 1ULL << 30, EVC_NONE, ones, r);
	CHECK("placement: the host with more memory but without network dev is skipped, with its reason",
	      pick == 1 && json_array_size(r) == 1 &&
	      !strcmp(json_string_value(json_array_get(r, 0)), "hA: network: host hA lacks network 'dev' used by NIC 1"),
	      "pick %d: %s", pick, json_string_value(json_array_get(r, 0)));
	snprintf(hosts[1].lacks, sizeof(hosts[1].lacks), "disk 0: host hB cannot see /s/a (No such file or directory)");
	json_array_clear(r);
	pick = placement_choose(hosts, 2, 1ULL << 30, EVC_NONE, ones, r);
	CHECK("placement: no host has what the VM needs: none chosen, a reason per host", pick == -1 && json_array_size(r) == 2, "pick %d", pick);

	json_decref(r);
	json_decref(nics);
	json_decref(disks);
	json_decref(facts);
	json_decref(only_prod);
	json_decref(sees);
	json_decref(src);
	json_decref(blind);
	json_decref(mute);
}

int main(void)
{
	test_network_parse();
	test_attach_parse();
	test_monitor_args();
	test_compat_attachments();
	return failures ? 1 : 0;
}
