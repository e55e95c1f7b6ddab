/* What a VM is attached to on a host: networks (port groups) and disks.
 *
 * A host agent offers named networks (`glide host serve --network
 * NAME=bridge:BR[,vlan=N][,rate=RATE]`), as vSphere hosts offer port groups:
 * a VM's NIC names a network, never a bridge, so the same VM runs on any
 * host that has a network of that name, whatever its bridge is called
 * there. A VM's record (agent and controller alike) carries
 *   "nics":  [{"network": NAME, "mac": "52:54:00:12:34:56"}, ...]
 *   "disks": [{"path": "/abs/file", "readonly": false}, ...]
 * and the agent turns them into the monitor's --nic and --disk options with
 * its own network's bridge, VLAN and rate. The parsers here are the one set
 * of rules the agent and the controller apply to request bodies (strict:
 * unknown members, wrong types and out-of-range values are refused). */
#ifndef GLIDE_HOST_ATTACH_H
#define GLIDE_HOST_ATTACH_H
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "common/util.h"
#include "vmm/vm.h"

#define ATTACH_NETWORKS_MAX 32
#define ATTACH_IFNAME_MAX 15      /* IFNAMSIZ - 1 */
#define ATTACH_PATH_MAX 4096      /* a disk path, as the monitor's --disk takes it (NUL included) */
#define ATTACH_MAC_LEN 17         /* "52:54:00:12:34:56" */
#define ATTACH_VLAN_MAX 4094

/* One network of this host. */
struct attach_network {
	char name[NAME_LEN_MAX + 1];
	char bridge[ATTACH_IFNAME_MAX + 1];
	int vlan;                  /* 0: untagged, else 1..ATTACH_VLAN_MAX (an access port on a VLAN-filtering bridge) */
	uint64_t rate;             /* bytes/s each way, 0: unlimited */
	/* port security, each rejected unless accepted (the monitor's --nic items) */
	bool accept_forged, accept_mac_changes, accept_promiscuous;
};
/* --network NAME=bridge:BR[,vlan=N][,rate=RATE][,forged-transmits=accept|reject]
 * [,mac-changes=accept|reject][,promiscuous=accept|reject]: 0, or -EINVAL with err set. */
int attach_network_parse(const char *s, struct attach_network *n, char *err, size_t errlen);
/* BR exists and is a bridge (/sys/class/net/BR/bridge): 0, or -errno with err set. */
int attach_network_check_bridge(const struct attach_network *n, char *err, size_t errlen);
/* {"name", "bridge", "vlan" (null when untagged), "rate" (bytes/s, null when unlimited),
 *  "security": {"forged_transmits", "mac_changes", "promiscuous": "accept"|"reject"}} */
json_t *attach_network_json(const struct attach_network *n);
const struct attach_network *attach_network_find(const struct attach_network *nets, int n, const char *name);

/* A VM's NICs and disks as its record keeps them. Strings point into the parsed JSON. */
struct attach_nic {
	const char *network;
	bool has_mac;
	uint8_t mac[6];
	int queues;          /* virtio-net queue pairs, 2-8; 0: one */
};
struct attach_disk {
	const char *path;
	bool readonly;
};
struct attach {
	int nnics, ndisks;
	struct attach_nic nics[VM_MAX_NICS];
	struct attach_disk disks[VM_MAX_DISKS];
};
/* "nics" and "disks" of a request body or record (absent or null: none).
 * nics: at most VM_MAX_NICS objects {network: a valid name, mac: unicast,
 * not all zeros, optional unless need_mac}, no MAC twice. disks: at most
 * VM_MAX_DISKS objects {path: absolute, shorter than ATTACH_PATH_MAX, without
 * ',' (the --disk separator) or control characters; readonly: optional
 * boolean}, no path twice. No other members. 0, or -EINVAL with err set
 * (and *at cleared). */
int attach_parse(json_t *nics, json_t *disks, bool need_mac, struct attach *at, char *err, size_t errlen);
/* Gives every NIC without a MAC a random locally administered unicast one,
 * different from the VM's others. 0, or -EIO. */
int attach_fill_macs(struct attach *at);
/* The canonical JSON of at (MACs in lower case; "mac" omitted where none). */
json_t *attach_nics_json(const struct attach *at);
json_t *attach_disks_json(const struct attach *at);
const char *attach_mac_text(const uint8_t mac[6], char buf[ATTACH_MAC_LEN + 1]);

/* The monitor's options for at on a host with these networks:
 * --nic bridge=BR[,vlan=N][,rate=R],mac=MAC per NIC (every NIC must have a
 * MAC) and --disk PATH[,readonly] per disk. argv (NULL-terminated) points
 * into the struct. 0, or -ENOENT naming the first NIC whose network this
 * host lacks (host names the host in the message). */
struct attach_args {
	char nic[VM_MAX_NICS][192];
	char disk[VM_MAX_DISKS][ATTACH_PATH_MAX + 16];
	char *argv[2 * (VM_MAX_NICS + VM_MAX_DISKS) + 1];
	int argc;
};
int attach_monitor_args(const struct attach *at, const struct attach_network *nets, int nnets, const char *host,
			struct attach_args *out, char *err, size_t errlen);

/* What a host sees at path (GET /v1/paths?path=): {path, exists, kind:
 * "file"|"block"|"directory"|"other", size (bytes; files and block
 * devices), error (strerror, when it does not exist or cannot be read)}. */
json_t *attach_path_info(const char *path);
/* A path a client may ask about: absolute, shorter than ATTACH_PATH_MAX, no control characters. */
bool attach_path_valid(const char *path);
#endif
