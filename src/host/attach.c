/* Networks (port groups) of a host and a VM's NICs and disks: parsing the
 * agent's --network option and the "nics" / "disks" members of request
 * bodies, and turning a VM's attachments into the monitor's --nic / --disk
 * options. See attach.h for the model; the agent (src/host/) and the
 * controller (src/center/) use the same rules. */
#include "host/attach.h"
#include "hostnet/hostnet.h"
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* An interface name this code passes on: 1-15 letters, digits, '-', '_', '.', not "." or "..". */
static bool ifname_valid(const char *s, size_t n)
{
	if (!n || n > ATTACH_IFNAME_MAX || (n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.'))
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)s[i]) && !strchr("-_.", s[i]))
			return false;
	return true;
}

int attach_network_parse(const char *s, struct attach_network *n, char *err, size_t errlen)
{
	static const char kind[] = "bridge:";
	char buf[256], why[256], *eq, *rest, *save = NULL, *item;
	bool have_vlan = false, have_rate = false, have_policy[3] = { false, false, false };
	static const char *const policies[3] = { "forged-transmits=", "mac-changes=", "promiscuous=" };

	memset(n, 0, sizeof(*n));
	if (strlen(s) >= sizeof(buf)) {
		errf(err, errlen, "--network: too long (give NAME=bridge:BR[,vlan=N][,rate=RATE][,POLICY=accept|reject])");
		return -EINVAL;
	}
	snprintf(buf, sizeof(buf), "%s", s);
	eq = strchr(buf, '=');
	if (!eq) {
		errf(err, errlen, "--network '%s': give NAME=bridge:BR[,vlan=N][,rate=RATE][,POLICY=accept|reject]", s);
		return -EINVAL;
	}
	*eq = 0;
	if (!name_valid(buf, why, sizeof(why))) {
		errf(err, errlen, "--network '%s': %s", s, why);
		return -EINVAL;
	}
	memcpy(n->name, buf, strlen(buf) + 1); /* a valid name fits */
	rest = eq + 1;
	if (strncmp(rest, kind, strlen(kind))) {
		errf(err, errlen, "--network %s: the backing must be bridge:BR (an existing Linux bridge)", n->name);
		goto bad;
	}
	rest += strlen(kind);
	size_t blen = strcspn(rest, ",");
	if (!ifname_valid(rest, blen)) {
		errf(err, errlen, "--network %s: bridge '%.*s' is not an interface name (1-%d letters, digits, '-', '_', '.')",
		     n->name, (int)MIN(blen, 40), rest, ATTACH_IFNAME_MAX);
		goto bad;
	}
	memcpy(n->bridge, rest, blen);
	n->bridge[blen] = 0;
	rest += blen;
	if ((*rest == ',' && !rest[1]) || strstr(rest, ",,")) {
		errf(err, errlen, "--network %s: an empty option (two ',' in a row or one at the end)", n->name);
		goto bad;
	}
	for (item = strtok_r(*rest ? rest + 1 : rest, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
		if (!strncmp(item, "vlan=", 5) && !have_vlan) {
			const char *v = item + 5;
			char *end;
			long id = strtol(v, &end, 10);
			if (!isdigit((unsigned char)*v) || *end || id < 1 || id > ATTACH_VLAN_MAX) {
				errf(err, errlen, "--network %s: vlan=%.20s: a VLAN id from 1 to %d", n->name, v, ATTACH_VLAN_MAX);
				goto bad;
			}
			n->vlan = (int)id;
			have_vlan = true;
		} else if (!strncmp(item, "rate=", 5) && !have_rate) {
			if (parse_size(item + 5, &n->rate) || !n->rate) {
				errf(err, errlen, "--network %s: rate=%.20s: a rate like 100M (bytes/s each way)", n->name, item + 5);
				goto bad;
			}
			have_rate = true;
		} else {
			int k = 0;
			while (k < 3 && strncmp(item, policies[k], strlen(policies[k])))
				k++;
			if (k == 3 || have_policy[k]) {
				errf(err, errlen, "--network %s: unknown or repeated option '%.40s' (vlan=N, rate=RATE, "
					     "forged-transmits=, mac-changes=, promiscuous=accept|reject)", n->name, item);
				goto bad;
			}
			const char *v = item + strlen(policies[k]);
			if (strcmp(v, "accept") && strcmp(v, "reject")) {
				errf(err, errlen, "--network %s: %.40s: accept or reject", n->name, item);
				goto bad;
			}
			bool *policy = k == 0 ? &n->accept_forged : k == 1 ? &n->accept_mac_changes : &n->accept_promiscuous;
			*policy = !strcmp(v, "accept");
			have_policy[k] = true;
		}
	}
	return 0;
bad:
	memset(n, 0, sizeof(*n));
	return -EINVAL;
}

int attach_network_check_bridge(const struct attach_network *n, char *err, size_t errlen)
{
	char path[64];
	struct stat st;

	snprintf(path, sizeof(path), "/sys/class/net/%s", n->bridge);
	if (stat(path, &st)) {
		int e = errno;
		errf(err, errlen, "--network %s: %s%s (create the bridge first, e.g. `ip link add %s type bridge`)", n->name,
		     e == ENOENT ? "there is no network interface " : "cannot read ", e == ENOENT ? n->bridge : path, n->bridge);
		return -e;
	}
	snprintf(path, sizeof(path), "/sys/class/net/%s/bridge", n->bridge);
	if (stat(path, &st) || !S_ISDIR(st.st_mode)) {
		errf(err, errlen, "--network %s: %s is not a bridge (no %s); give a Linux bridge", n->name, n->bridge, path);
		return -ENOTDIR;
	}
	return 0;
}

json_t *attach_network_json(const struct attach_network *n)
{
	return json_pack("{s:s, s:s, s:o, s:o, s:{s:s, s:s, s:s}}", "name", n->name, "bridge", n->bridge, "vlan",
			 n->vlan ? json_integer(n->vlan) : json_null(), "rate",
			 n->rate ? json_integer((json_int_t)n->rate) : json_null(), "security",
			 "forged_transmits", n->accept_forged ? "accept" : "reject",
			 "mac_changes", n->accept_mac_changes ? "accept" : "reject",
			 "promiscuous", n->accept_promiscuous ? "accept" : "reject");
}

const struct attach_network *attach_network_find(const struct attach_network *nets, int n, const char *name)
{
	for (int i = 0; i < n; i++)
		if (!strcmp(nets[i].name, name))
			return &nets[i];
	return NULL;
}

const char *attach_mac_text(const uint8_t mac[6], char buf[ATTACH_MAC_LEN + 1])
{
	return hostnet_mac_format(mac, buf);
}

/* Members of obj other than the allowed ones: the first such key, or NULL. */
/* The first member of obj other than a, b and c (c may be NULL), or NULL. */
static const char *unknown_member(json_t *obj, const char *a, const char *b, const char *c)
{
	const char *key;
	json_t *v;
	json_object_foreach(obj, key, v)
		if (strcmp(key, a) && strcmp(key, b) && (!c || strcmp(key, c)))
			return key;
	return NULL;
}

static int nic_parse(json_t *e, size_t i, bool need_mac, struct attach_nic *n, char *err, size_t errlen)
{
	char why[256];
	const char *extra;
	json_t *net, *mac;

	if (!json_is_object(e)) {
		errf(err, errlen, "nics: NIC %zu must be an object {\"network\": NAME, \"mac\": MAC}", i);
		return -EINVAL;
	}
	if ((extra = unknown_member(e, "network", "mac", "queues"))) {
		errf(err, errlen, "nics: NIC %zu has an unknown member '%.40s' (network, mac, queues)", i, extra);
		return -EINVAL;
	}
	json_t *queues = json_object_get(e, "queues");
	if (queues && !json_is_null(queues) &&
	    (!json_is_integer(queues) || json_integer_value(queues) < 1 || json_integer_value(queues) > 8)) {
		errf(err, errlen, "nics: NIC %zu: \"queues\" must be an integer from 1 to 8 (queue pairs)", i);
		return -EINVAL;
	}
	n->queues = json_is_integer(queues) && json_integer_value(queues) > 1 ? (int)json_integer_value(queues) : 0;
	net = json_object_get(e, "network");
	if (!json_is_string(net)) {
		errf(err, errlen, "nics: NIC %zu needs \"network\": the name of one of the host's networks", i);
		return -EINVAL;
	}
	if (json_string_length(net) != strlen(json_string_value(net)) || !name_valid(json_string_value(net), why, sizeof(why))) {
		errf(err, errlen, "nics: NIC %zu: network: %s", i, why);
		return -EINVAL;
	}
	n->network = json_string_value(net);
	mac = json_object_get(e, "mac");
	if (!mac || json_is_null(mac)) {
		if (need_mac) {
			errf(err, errlen, "nics: NIC %zu needs its \"mac\"", i);
			return -EINVAL;
		}
		return 0;
	}
	if (!json_is_string(mac) || json_string_length(mac) != ATTACH_MAC_LEN) {
		errf(err, errlen, "nics: NIC %zu: \"mac\" must be six hex pairs like 52:54:00:12:34:56", i);
		return -EINVAL;
	}
	if (hostnet_mac_parse(json_string_value(mac), n->mac, why, sizeof(why))) {
		errf(err, errlen, "nics: NIC %zu: %s", i, why);
		return -EINVAL;
	}
	n->has_mac = true;
	return 0;
}

bool attach_path_valid(const char *path)
{
	size_t n = path ? strlen(path) : 0;
	if (!n || path[0] != '/' || n >= ATTACH_PATH_MAX)
		return false;
	for (const char *p = path; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			return false;
	return true;
}

static int disk_parse(json_t *e, size_t i, struct attach_disk *d, char *err, size_t errlen)
{
	const char *extra;
	json_t *path, *ro;

	if (!json_is_object(e)) {
		errf(err, errlen, "disks: disk %zu must be an object {\"path\": FILE, \"readonly\": false}", i);
		return -EINVAL;
	}
	if ((extra = unknown_member(e, "path", "readonly", NULL))) {
		errf(err, errlen, "disks: disk %zu has an unknown member '%.40s' (path, readonly)", i, extra);
		return -EINVAL;
	}
	path = json_object_get(e, "path");
	if (!json_is_string(path) || json_string_length(path) != strlen(json_string_value(path)) ||
	    !attach_path_valid(json_string_value(path)) || strchr(json_string_value(path), ',')) {
		errf(err, errlen, "disks: disk %zu needs \"path\": an absolute file path shorter than %d bytes, without ',' "
			     "or control characters", i, ATTACH_PATH_MAX);
		return -EINVAL;
	}
	d->path = json_string_value(path);
	ro = json_object_get(e, "readonly");
	if (ro && !json_is_null(ro) && !json_is_boolean(ro)) {
		errf(err, errlen, "disks: disk %zu: \"readonly\" must be true or false", i);
		return -EINVAL;
	}
	d->readonly = json_is_true(ro);
	return 0;
}

int attach_parse(json_t *nics, json_t *disks, bool need_mac, struct attach *at, char *err, size_t errlen)
{
	size_t i;
	json_t *e;

	memset(at, 0, sizeof(*at));
	if (json_is_null(nics))
		nics = NULL;
	if (json_is_null(disks))
		disks = NULL;
	if (nics && (!json_is_array(nics) || json_array_size(nics) > VM_MAX_NICS)) {
		errf(err, errlen, "nics: must be an array of at most %d NICs", VM_MAX_NICS);
		goto bad;
	}
	if (disks && (!json_is_array(disks) || json_array_size(disks) > VM_MAX_DISKS)) {
		errf(err, errlen, "disks: must be an array of at most %d disks", VM_MAX_DISKS);
		goto bad;
	}
	json_array_foreach(nics, i, e) {
		if (nic_parse(e, i, need_mac, &at->nics[i], err, errlen))
			goto bad;
		for (size_t k = 0; k < i && at->nics[i].has_mac; k++)
			if (at->nics[k].has_mac && !memcmp(at->nics[k].mac, at->nics[i].mac, 6)) {
				char m[ATTACH_MAC_LEN + 1];
				errf(err, errlen, "nics: NICs %zu and %zu have the same MAC %s", k, i, attach_mac_text(at->nics[i].mac, m));
				goto bad;
			}
		at->nnics++;
	}
	json_array_foreach(disks, i, e) {
		if (disk_parse(e, i, &at->disks[i], err, errlen))
			goto bad;
		for (size_t k = 0; k < i; k++)
			if (!strcmp(at->disks[k].path, at->disks[i].path)) {
				errf(err, errlen, "disks: disks %zu and %zu are the same file %.200s", k, i, at->disks[i].path);
				goto bad;
			}
		at->ndisks++;
	}
	return 0;
bad:
	memset(at, 0, sizeof(*at));
	return -EINVAL;
}

int attach_fill_macs(struct attach *at)
{
	for (int i = 0; i < at->nnics; i++) {
		struct attach_nic *n = &at->nics[i];
		bool taken = true;
		for (int tries = 0; !n->has_mac && taken && tries < 16; tries++) {
			if (hostnet_mac_generate(n->mac, NULL, 0))
				return -EIO;
			taken = false;
			for (int k = 0; k < at->nnics; k++)
				if (k != i && at->nics[k].has_mac && !memcmp(at->nics[k].mac, n->mac, 6))
					taken = true;
		}
		if (!n->has_mac && taken)
			return -EIO;
		n->has_mac = true;
	}
	return 0;
}

json_t *attach_nics_json(const struct attach *at)
{
	json_t *list = json_array();
	for (int i = 0; list && i < at->nnics; i++) {
		char m[ATTACH_MAC_LEN + 1];
		const struct attach_nic *n = &at->nics[i];
		json_t *e = json_pack("{s:s, s:s*}", "network", n->network, "mac", n->has_mac ? attach_mac_text(n->mac, m) : NULL);
		if (n->queues > 1)
			json_object_set_new(e, "queues", json_integer(n->queues));
		json_array_append_new(list, e);
	}
	return list;
}

json_t *attach_disks_json(const struct attach *at)
{
	json_t *list = json_array();
	for (int i = 0; list && i < at->ndisks; i++)
		json_array_append_new(list, json_pack("{s:s, s:b}", "path", at->disks[i].path, "readonly", at->disks[i].readonly));
	return list;
}

int attach_monitor_args(const struct attach *at, const struct attach_network *nets, int nnets, const char *host,
			struct attach_args *out, char *err, size_t errlen)
{
	memset(out->argv, 0, sizeof(out->argv));
	out->argc = 0;
	for (int i = 0; i < at->nnics; i++) {
		const struct attach_network *net = attach_network_find(nets, nnets, at->nics[i].network);
		char m[ATTACH_MAC_LEN + 1], vlan[16] = "", rate[32] = "", sec[80], queues[24] = "";
		if (!net) {
			errf(err, errlen, "host %s lacks network '%s' used by NIC %d (start its agent with --network %s=bridge:BR)",
			     host, at->nics[i].network, i, at->nics[i].network);
			return -ENOENT;
		}
		if (!at->nics[i].has_mac) {
			errf(err, errlen, "NIC %d has no MAC", i);
			return -EINVAL;
		}
		if (net->vlan)
			snprintf(vlan, sizeof(vlan), ",vlan=%d", net->vlan);
		if (net->rate)
			snprintf(rate, sizeof(rate), ",rate=%llu", (unsigned long long)net->rate);
		/* only what differs from the monitor's default (reject) */
		snprintf(sec, sizeof(sec), "%s%s%s", net->accept_forged ? ",forged-transmits=accept" : "",
			 net->accept_mac_changes ? ",mac-changes=accept" : "",
			 net->accept_promiscuous ? ",promiscuous=accept" : "");
		if (at->nics[i].queues > 1)
			snprintf(queues, sizeof(queues), ",queues=%d", at->nics[i].queues);
		snprintf(out->nic[i], sizeof(out->nic[i]), "bridge=%s%s%s%s,mac=%s%s", net->bridge, vlan, rate, queues,
			 attach_mac_text(at->nics[i].mac, m), sec);
		out->argv[out->argc++] = "--nic";
		out->argv[out->argc++] = out->nic[i];
	}
	for (int i = 0; i < at->ndisks; i++) {
		snprintf(out->disk[i], sizeof(out->disk[i]), "%s%s", at->disks[i].path, at->disks[i].readonly ? ",readonly" : "");
		out->argv[out->argc++] = "--disk";
		out->argv[out->argc++] = out->disk[i];
	}
	out->argv[out->argc] = NULL;
	return 0;
}

json_t *attach_path_info(const char *path)
{
	struct stat st;
	json_t *j = json_pack("{s:s}", "path", path);

	if (stat(path, &st)) {
		json_object_set_new(j, "exists", json_false());
		json_object_set_new(j, "error", json_string(strerror(errno)));
		return j;
	}
	json_object_set_new(j, "exists", json_true());
	const char *kind = S_ISREG(st.st_mode) ? "file" : S_ISBLK(st.st_mode) ? "block" : S_ISDIR(st.st_mode) ? "directory" : "other";
	json_object_set_new(j, "kind", json_string(kind));
	if (S_ISREG(st.st_mode)) {
		json_object_set_new(j, "size", json_integer((json_int_t)st.st_size));
		json_object_set_new(j, "allocated", json_integer((json_int_t)st.st_blocks * 512));
	} else if (S_ISBLK(st.st_mode)) {
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		off_t end = fd >= 0 ? lseek(fd, 0, SEEK_END) : -1;
		if (end < 0)
			json_object_set_new(j, "error", json_string(strerror(errno)));
		else
			json_object_set_new(j, "size", json_integer((json_int_t)end));
		if (fd >= 0)
			close(fd);
	}
	return j;
}
