/* A VM's NICs and disks: the --nic / --disk options of this host (host
 * backends), the device shape that travels with the VM (MACs, disk sizes,
 * in struct vm_config), the check that an arriving VM fits this host's
 * backends, and creating / destroying the virtio devices. */
#include "devices/devices.h"
#include "devices/virtio.h"
#include "devices/virtio_dev.h"
#include "devices/virtio_net.h"
#include "hostnet/hostnet.h"
#include "common/util.h"
#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static bool key_is(const char *item, const char *key, const char **value)
{
	size_t n = strlen(key);
	if (strncmp(item, key, n) || item[n] != '=')
		return false;
	*value = item + n + 1;
	return true;
}

static int copy_ifname(char *dst, size_t dstlen, const char *v, const char *what, char *err, size_t errlen)
{
	if (!*v || strlen(v) >= dstlen || strchr(v, '/') || strchr(v, ' ')) {
		errf(err, errlen, "%s=%s: an interface name of 1 to %zu characters without '/' or spaces", what, v,
		     dstlen - 1);
		return -EINVAL;
	}
	snprintf(dst, dstlen, "%s", v);
	return 0;
}

int nic_spec_parse(const char *s, struct nic_spec *n, char *err, size_t errlen)
{
	char buf[256], *save = NULL;
	const char *v;

	memset(n, 0, sizeof(*n));
	if (strlen(s) >= sizeof(buf)) {
		errf(err, errlen, "--nic: too long");
		return -EINVAL;
	}
	snprintf(buf, sizeof(buf), "%s", s);
	for (char *item = strtok_r(buf, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
		if (key_is(item, "bridge", &v)) {
			if (copy_ifname(n->bridge, sizeof(n->bridge), v, "bridge", err, errlen))
				return -EINVAL;
		} else if (key_is(item, "tap", &v)) {
			if (copy_ifname(n->tap, sizeof(n->tap), v, "tap", err, errlen))
				return -EINVAL;
		} else if (key_is(item, "vlan", &v)) {
			char *end;
			long id = strtol(v, &end, 10);
			if (!*v || *end || id < 1 || id > 4094) {
				errf(err, errlen, "--nic vlan=%s: a VLAN id from 1 to 4094", v);
				return -EINVAL;
			}
			n->vlan = (int)id;
		} else if (key_is(item, "mac", &v)) {
			char why[128];
			if (hostnet_mac_parse(v, n->mac, why, sizeof(why))) {
				errf(err, errlen, "--nic mac=%s: %s", v, why);
				return -EINVAL;
			}
			n->has_mac = true;
		} else if (key_is(item, "rate", &v)) {
			if (parse_rate(v, &n->rate) || !n->rate) {
				errf(err, errlen, "--nic rate=%s: a rate like 100M (bytes/s) or 1G", v);
				return -EINVAL;
			}
		} else if (key_is(item, "queues", &v)) {
			char *end;
			long q = strtol(v, &end, 10);
			if (!*v || *end || q < 1 || q > 8) {
				errf(err, errlen, "--nic queues=%s: queue pairs from 1 to 8", v);
				return -EINVAL;
			}
			n->queues = (int)q;
		} else if (key_is(item, "forged-transmits", &v) || key_is(item, "mac-changes", &v) ||
			   key_is(item, "promiscuous", &v)) {
			bool accept = !strcmp(v, "accept");
			if (!accept && strcmp(v, "reject")) {
				errf(err, errlen, "--nic %s: accept or reject", item);
				return -EINVAL;
			}
			bool *policy = item[0] == 'f' ? &n->accept_forged : item[0] == 'm' ? &n->accept_mac_changes
											   : &n->accept_promiscuous;
			*policy = accept;
		} else {
			errf(err, errlen, "--nic: unknown item '%s' (bridge=BR, tap=NAME, vlan=N, mac=MAC, rate=RATE, queues=N, "
				     "forged-transmits=, mac-changes=, promiscuous=accept|reject)", item);
			return -EINVAL;
		}
	}
	if (!!n->bridge[0] + !!n->tap[0] != 1) {
		errf(err, errlen, "--nic: give exactly one of bridge=BR or tap=NAME");
		return -EINVAL;
	}
	if (n->vlan && !n->bridge[0]) {
		errf(err, errlen, "--nic: vlan= needs bridge= (the VLAN is set on the bridge port)");
		return -EINVAL;
	}
	return 0;
}

int disk_spec_parse(const char *s, struct disk_spec *d, char *err, size_t errlen)
{
	memset(d, 0, sizeof(*d));
	const char *comma = strchr(s, ',');
	size_t plen = comma ? (size_t)(comma - s) : strlen(s);
	if (!plen || plen >= sizeof(d->path)) {
		errf(err, errlen, "--disk: a file path is required (PATH[,readonly][,direct][,aio=sync|threads|io_uring])");
		return -EINVAL;
	}
	memcpy(d->path, s, plen);
	while (comma) {
		const char *item = comma + 1;
		comma = strchr(item, ',');
		size_t n = comma ? (size_t)(comma - item) : strlen(item);
		if (n == 8 && !strncmp(item, "readonly", 8))
			d->readonly = true;
		else if (n == 6 && !strncmp(item, "direct", 6))
			d->direct = true;
		else if (n > 4 && !strncmp(item, "aio=", 4)) {
			if (blk_io_engine_parse(item + 4, n - 4, &d->aio)) {
				errf(err, errlen, "--disk %s: aio must be sync, threads or io_uring, not '%.*s'", d->path,
				     (int)n - 4, item + 4);
				return -EINVAL;
			}
		} else {
			errf(err, errlen, "--disk %s: unknown option '%.*s' (readonly, direct, aio=)", d->path, (int)n, item);
			return -EINVAL;
		}
	}
	return 0;
}

/* Size of a disk file, checked to be a usable raw image. */
static int disk_file_size(const struct disk_spec *d, uint64_t *bytes, char *err, size_t errlen)
{
	struct stat st;
	if (stat(d->path, &st)) {
		errf(err, errlen, "disk %s: %s", d->path, strerror(errno));
		return -errno;
	}
	if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {
		errf(err, errlen, "disk %s: not a regular file or block device", d->path);
		return -EINVAL;
	}
	if (S_ISREG(st.st_mode) && (st.st_size < 512 || st.st_size % 512)) {
		errf(err, errlen, "disk %s: its size (%lld bytes) must be a positive multiple of 512", d->path,
		     (long long)st.st_size);
		return -EINVAL;
	}
	*bytes = (uint64_t)st.st_size;
	if (S_ISBLK(st.st_mode)) {
		int fd = open(d->path, O_RDONLY | O_CLOEXEC);
		off_t end = fd >= 0 ? lseek(fd, 0, SEEK_END) : -1;
		if (fd >= 0)
			close(fd);
		if (end <= 0) {
			errf(err, errlen, "disk %s: cannot read its size", d->path);
			return -EIO;
		}
		*bytes = (uint64_t)end;
	}
	return 0;
}

int devices_config_from_specs(struct vm_config *cfg, struct vm_device_specs *specs, char *err, size_t errlen)
{
	cfg->nnics = specs->nnics;
	for (int i = 0; i < specs->nnics; i++) {
		struct nic_spec *n = &specs->nics[i];
		if (!n->has_mac) {
			int rc = hostnet_mac_generate(n->mac, err, errlen);
			if (rc)
				return rc;
			n->has_mac = true;
		}
		for (int j = 0; j < i; j++) {
			char m[18];
			if (!memcmp(specs->nics[j].mac, n->mac, 6)) {
				errf(err, errlen, "NICs %d and %d have the same MAC %s", j, i, hostnet_mac_format(n->mac, m));
				return -EINVAL;
			}
		}
		memcpy(cfg->nic_mac[i], n->mac, 6);
	}
	cfg->ndisks = specs->ndisks;
	for (int i = 0; i < specs->ndisks; i++) {
		int rc = disk_file_size(&specs->disks[i], &cfg->disk_bytes[i], err, errlen);
		if (rc)
			return rc;
		cfg->disk_readonly[i] = specs->disks[i].readonly;
	}
	return 0;
}

int devices_config_check(const struct vm_config *cfg, const struct vm_device_specs *specs, char *err, size_t errlen)
{
	char a[18], b[18];
	if (cfg->nnics != specs->nnics) {
		errf(err, errlen, "the VM has %d NIC%s but this host was given %d --nic", cfg->nnics, cfg->nnics == 1 ? "" : "s",
		     specs->nnics);
		return -EINVAL;
	}
	for (int i = 0; i < cfg->nnics; i++) {
		const struct nic_spec *n = &specs->nics[i];
		if (n->has_mac && memcmp(n->mac, cfg->nic_mac[i], 6)) {
			errf(err, errlen, "NIC %d: the VM's MAC is %s, this host's --nic says %s", i,
			     hostnet_mac_format(cfg->nic_mac[i], a), hostnet_mac_format(n->mac, b));
			return -EINVAL;
		}
	}
	if (cfg->ndisks != specs->ndisks) {
		errf(err, errlen, "the VM has %d disk%s but this host was given %d --disk", cfg->ndisks,
		     cfg->ndisks == 1 ? "" : "s", specs->ndisks);
		return -EINVAL;
	}
	for (int i = 0; i < cfg->ndisks; i++) {
		uint64_t bytes;
		int rc = disk_file_size(&specs->disks[i], &bytes, err, errlen);
		if (rc)
			return rc;
		if (bytes != cfg->disk_bytes[i]) {
			errf(err, errlen, "disk %d: the VM's disk has %llu bytes, %s here has %llu", i,
			     (unsigned long long)cfg->disk_bytes[i], specs->disks[i].path, (unsigned long long)bytes);
			return -EINVAL;
		}
		if (cfg->disk_readonly[i] != specs->disks[i].readonly) {
			errf(err, errlen, "disk %d: read-only on one side and writable on the other", i);
			return -EINVAL;
		}
	}
	return 0;
}

int devices_create_virtio(struct vm *vm, const struct vm_device_specs *specs, char *err, size_t errlen)
{
	static const struct vm_device_specs none;
	if (!specs)
		specs = &none;
	int rc = devices_config_check(&vm->cfg, specs, err, errlen);
	for (int i = 0; !rc && i < specs->nnics; i++)
		rc = virtio_net_create(vm, i, &specs->nics[i], vm->cfg.nic_mac[i], err, errlen);
	for (int i = 0; !rc && i < specs->ndisks; i++)
		rc = virtio_blk_create(vm, i, &specs->disks[i], err, errlen);
	return rc;
}

json_t *devices_status_json(struct vm *vm)
{
	json_t *nics = json_array(), *disks = json_array();
	for (int i = 0; i < VM_MAX_NICS; i++) {
		struct net_stats st;
		uint8_t mac[6];
		char m[18], ifname[16];
		if (virtio_net_stats(vm, i, &st, mac, ifname, sizeof(ifname)))
			continue;
		json_array_append_new(nics, json_pack("{s:i, s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}",
			"index", i, "mac", hostnet_mac_format(mac, m), "ifname", ifname,
			"rx_frames", (json_int_t)st.rx_frames, "rx_bytes", (json_int_t)st.rx_bytes,
			"rx_dropped", (json_int_t)st.rx_dropped, "tx_frames", (json_int_t)st.tx_frames,
			"tx_bytes", (json_int_t)st.tx_bytes, "tx_dropped", (json_int_t)st.tx_dropped,
			"tx_forged", (json_int_t)st.tx_forged, "tx_throttled", (json_int_t)st.tx_throttled,
			"rx_held", (json_int_t)st.rx_held, "rx_held_delivered", (json_int_t)st.rx_held_delivered,
			"announces", (json_int_t)st.announces, "guest_announces", (json_int_t)st.guest_announces));
		struct net_security sec;
		json_t *nic = json_array_get(nics, json_array_size(nics) - 1);
		if (nic && !virtio_net_security(vm, i, &sec)) {
			json_object_set_new(nic, "effective_mac", json_string(hostnet_mac_format(sec.effective_mac, m)));
			json_object_set_new(nic, "guest_promiscuous", json_boolean(sec.guest_promiscuous));
			json_object_set_new(nic, "rx_filtered", json_integer((json_int_t)st.rx_filtered));
			json_object_set_new(nic, "mac_changes", json_integer((json_int_t)st.mac_changes));
			json_object_set_new(nic, "security", json_pack("{s:s, s:s, s:s}",
				"forged_transmits", sec.accept_forged ? "accept" : "reject",
				"mac_changes", sec.accept_mac_changes ? "accept" : "reject",
				"promiscuous", sec.accept_promiscuous ? "accept" : "reject"));
		}
	}
	for (int i = 0; i < VM_MAX_DISKS; i++) {
		struct blk_stats st;
		char path[4096];
		if (virtio_blk_stats(vm, i, &st, path, sizeof(path)))
			continue;
		json_array_append_new(disks, json_pack("{s:i, s:s, s:I, s:b, s:b, s:I, s:I, s:I, s:I, s:s, s:I}", "index", i,
			"path", path, "bytes", (json_int_t)(st.sectors * 512), "readonly", st.readonly, "locked", st.locked,
			"reads", (json_int_t)st.reads, "writes", (json_int_t)st.writes, "flushes", (json_int_t)st.flushes,
			"errors", (json_int_t)st.errors, "aio", blk_io_engine_name(st.engine),
			"in_flight_max", (json_int_t)st.in_flight_max));
	}
	return json_pack("{s:o, s:o}", "nics", nics, "disks", disks);
}

void devices_destroy(struct vm *vm)
{
	net_announce_wait();
	for (int i = 0; i < VM_MAX_NICS; i++) {
		if (vm->nics[i]) {
			virtio_dev_destroy(vm->nics[i]);
			free(vm->nics[i]);
			vm->nics[i] = NULL;
		}
	}
	for (int i = 0; i < VM_MAX_DISKS; i++) {
		if (vm->disks[i]) {
			virtio_dev_destroy(vm->disks[i]);
			free(vm->disks[i]);
			vm->disks[i] = NULL;
		}
	}
	pci_bus_destroy(vm);
}
