/* Assignable hardware (docs/drs.md): devices a host declares by their
 * attributes (`glide host serve --device class=gpu,vendor=V,model=M,count=N`)
 * and VMs ask for by attributes (`glide vm create --hardware class=gpu`),
 * never by a fixed address, so that placement, DRS and evacuation may use
 * any host with a free matching device. The host agent is the authority on
 * what is free (it refuses a start or an incoming migration that does not
 * fit); the controller runs the same match on the agents' facts to choose
 * hosts and to name the missing device. No I/O here. */
#ifndef GLIDE_COMMON_HARDWARE_H
#define GLIDE_COMMON_HARDWARE_H
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#define HW_VALUE_MAX 47        /* characters of one attribute's value */
#define HW_KINDS_MAX 16        /* device kinds (--device options) one host declares */
#define HW_COUNT_MAX 64        /* devices of one kind */
#define HW_REQUESTS_MAX 8      /* devices one VM asks for */
#define HW_ATTRS "class, vendor, model"

/* "class=gpu,vendor=acme,model=x1[,count=N]" as a JSON object. A host's
 * device (host true) needs a class and may have a count (1..HW_COUNT_MAX,
 * default 1); a VM's request needs at least one attribute and has no count.
 * Values are 1..HW_VALUE_MAX letters, digits, '-', '_', '.', '+' or ':'.
 * NULL with err set on bad input. */
json_t *hw_spec_parse(const char *spec, bool host, char *err, size_t errlen);
/* A JSON array of such objects, as an API body or a stored record gives
 * it: 0, or -EINVAL with err naming the entry and what is wrong. */
int hw_list_check(json_t *list, bool host, char *err, size_t errlen);
/* Whether a device has every attribute a request names, with equal values. */
bool hw_matches(json_t *request, json_t *device);
/* "class=gpu,vendor=acme" (the object's attributes in HW_ATTRS order). */
const char *hw_describe(json_t *obj, char *buf, size_t len);

/* Who holds or wants devices on one host: a VM's name and its requests. */
struct hw_holder {
	const char *name;
	json_t *requests;          /* array of request objects (NULL: none) */
};
/* Matches every request of holders[0..n) to a device of `devices` (the
 * host's kinds with their counts): an exact bipartite matching, so that a
 * request for any GPU does not take the one device a request for a given
 * model needs when another would do. Returns 0 when all fit; else -ENOSPC
 * and why names the first holder's request that cannot be served and what
 * the host has ("no free class=gpu: host has 1 such device, in use by g1"
 * or "no class=gpu device on this host"). used (may be NULL; devices'
 * size entries) gets the number of devices of each kind in use. Put the VMs
 * that already hold devices first: the first that does not fit is named. */
int hw_fit(json_t *devices, const struct hw_holder *holders, size_t n, int *used, char *why, size_t len);
#endif
