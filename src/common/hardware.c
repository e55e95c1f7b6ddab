/* Assignable hardware: parsing and checking device declarations and VM
 * requests by attributes, and matching requests to a host's devices
 * (hardware.h). The match is a bipartite matching with capacities (each
 * device kind serves up to its count), found by augmenting paths: a
 * request that finds every matching kind full tries to move one of the
 * requests already there to another kind that also suits it. */
#include "common/hardware.h"
#include "common/util.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const attrs[] = { "class", "vendor", "model" };

static bool value_ok(const char *v)
{
	size_t n = strlen(v);
	if (!n || n > HW_VALUE_MAX)
		return false;
	for (const char *p = v; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || strchr("-_.+:", *p)))
			return false;
	return true;
}

static bool is_attr(const char *k)
{
	for (size_t i = 0; i < ARRAY_SIZE(attrs); i++)
		if (!strcmp(k, attrs[i]))
			return true;
	return false;
}

/* One object: only known keys, valid values, a class (host) or some attribute (request). */
static int object_check(json_t *o, bool host, char *err, size_t errlen)
{
	const char *k;
	json_t *v;
	int nattrs = 0;

	if (!json_is_object(o)) {
		errf(err, errlen, "a device is an object of %s%s", HW_ATTRS, host ? " and count" : "");
		return -EINVAL;
	}
	json_object_foreach(o, k, v) {
		if (host && !strcmp(k, "count")) {
			if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > HW_COUNT_MAX) {
				errf(err, errlen, "count must be 1..%d", HW_COUNT_MAX);
				return -EINVAL;
			}
			continue;
		}
		if (!is_attr(k)) {
			errf(err, errlen, "unknown device attribute '%.40s' (attributes: %s%s)", k, HW_ATTRS, host ? ", count" : "");
			return -EINVAL;
		}
		if (!json_is_string(v) || !value_ok(json_string_value(v))) {
			errf(err, errlen, "device attribute %s must be 1-%d letters, digits, '-', '_', '.', '+' or ':'", k, HW_VALUE_MAX);
			return -EINVAL;
		}
		nattrs++;
	}
	if (host && !json_is_string(json_object_get(o, "class"))) {
		errf(err, errlen, "a host's device needs a class (e.g. class=gpu,vendor=acme,model=x1,count=2)");
		return -EINVAL;
	}
	if (!nattrs) {
		errf(err, errlen, "a device request names at least one of %s (e.g. class=gpu)", HW_ATTRS);
		return -EINVAL;
	}
	return 0;
}

json_t *hw_spec_parse(const char *spec, bool host, char *err, size_t errlen)
{
	json_t *o = json_object();
	char *copy = strdup(spec ? spec : ""), *save = NULL;

	if (!o || !copy) {
		errf(err, errlen, "out of memory");
		goto bad;
	}
	for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(tok, '=');
		if (!eq || eq == tok) {
			errf(err, errlen, "'%.60s' is not KEY=VALUE (keys: %s%s)", tok, HW_ATTRS, host ? ", count" : "");
			goto bad;
		}
		*eq = 0;
		if (json_object_get(o, tok)) {
			errf(err, errlen, "device attribute %.40s given twice", tok);
			goto bad;
		}
		if (host && !strcmp(tok, "count")) {
			char *end;
			long n = strtol(eq + 1, &end, 10);
			if (*end || end == eq + 1 || n < 1 || n > HW_COUNT_MAX) {
				errf(err, errlen, "count must be 1..%d", HW_COUNT_MAX);
				goto bad;
			}
			json_object_set_new(o, tok, json_integer(n));
		} else {
			json_object_set_new(o, tok, json_string(eq + 1));
		}
	}
	if (object_check(o, host, err, errlen))
		goto bad;
	if (host && !json_object_get(o, "count"))
		json_object_set_new(o, "count", json_integer(1));
	free(copy);
	return o;
bad:
	free(copy);
	json_decref(o);
	return NULL;
}

int hw_list_check(json_t *list, bool host, char *err, size_t errlen)
{
	size_t i, max = host ? HW_KINDS_MAX : HW_REQUESTS_MAX;
	json_t *o;
	char why[256];

	if (!json_is_array(list)) {
		errf(err, errlen, "%s is an array of objects of %s", host ? "hardware" : "\"hardware\"", HW_ATTRS);
		return -EINVAL;
	}
	if (json_array_size(list) > max) {
		errf(err, errlen, "at most %zu %s", max, host ? "device kinds per host" : "devices per VM");
		return -EINVAL;
	}
	json_array_foreach(list, i, o)
		if (object_check(o, host, why, sizeof(why))) {
			errf(err, errlen, "hardware %zu: %s", i, why);
			return -EINVAL;
		}
	return 0;
}

bool hw_matches(json_t *request, json_t *device)
{
	for (size_t i = 0; i < ARRAY_SIZE(attrs); i++) {
		const char *want = json_string_value(json_object_get(request, attrs[i]));
		const char *have = json_string_value(json_object_get(device, attrs[i]));
		if (want && (!have || strcmp(want, have)))
			return false;
	}
	return true;
}

const char *hw_describe(json_t *obj, char *buf, size_t len)
{
	size_t used = 0;
	if (len)
		buf[0] = 0;
	for (size_t i = 0; i < ARRAY_SIZE(attrs) && used < len; i++) {
		const char *v = json_string_value(json_object_get(obj, attrs[i]));
		if (v)
			used += (size_t)snprintf(buf + used, len - used, "%s%s=%s", used ? "," : "", attrs[i], v);
	}
	return buf;
}

struct match {
	json_t *devices;
	size_t nkinds, nreq;
	json_t **req;             /* every request, in holder order */
	int *holder_of;           /* request -> holder index */
	int *assign;              /* request -> kind, -1: none yet */
	int *used;                /* kind -> requests assigned */
	char *visited;            /* kind -> seen in this search */
};

static int kind_count(json_t *devices, size_t k)
{
	json_t *c = json_object_get(json_array_get(devices, k), "count");
	return json_is_integer(c) ? (int)json_integer_value(c) : 1;
}

/* Kuhn's augmenting path, with a kind's count as its capacity. */
static bool augment(struct match *m, size_t r)
{
	for (size_t k = 0; k < m->nkinds; k++) {
		if (m->visited[k] || !hw_matches(m->req[r], json_array_get(m->devices, k)))
			continue;
		m->visited[k] = 1;
		if (m->used[k] < kind_count(m->devices, k)) {
			m->assign[r] = (int)k;
			m->used[k]++;
			return true;
		}
		for (size_t o = 0; o < m->nreq; o++)
			if (m->assign[o] == (int)k && augment(m, o)) { /* o moved to another kind: r takes its place */
				m->assign[r] = (int)k;
				return true;
			}
	}
	return false;
}

/* why for request r that found no device. */
static void explain(struct match *m, const struct hw_holder *holders, size_t r, char *why, size_t len)
{
	char want[200];
	int have = 0;
	size_t used = 0;
	char users[300] = "";

	hw_describe(m->req[r], want, sizeof(want));
	for (size_t k = 0; k < m->nkinds; k++)
		if (hw_matches(m->req[r], json_array_get(m->devices, k)))
			have += kind_count(m->devices, k);
	if (!have) {
		snprintf(why, len, "no %s device on this host", want);
		return;
	}
	for (size_t o = 0; o < m->nreq && used < sizeof(users); o++)
		if (m->assign[o] >= 0 && hw_matches(m->req[r], json_array_get(m->devices, (size_t)m->assign[o])) &&
		    !strstr(users, holders[m->holder_of[o]].name))
			used += (size_t)snprintf(users + used, sizeof(users) - used, "%s%s", used ? ", " : "",
						 holders[m->holder_of[o]].name);
	snprintf(why, len, "no free %s device: the host has %d, in use by %s", want, have, users[0] ? users : "other requests");
}

int hw_fit(json_t *devices, const struct hw_holder *holders, size_t n, int *used, char *why, size_t len)
{
	struct match m = { .devices = devices, .nkinds = json_array_size(devices) };
	int rc = 0;

	if (len)
		why[0] = 0;
	for (size_t h = 0; h < n; h++)
		m.nreq += json_array_size(holders[h].requests);
	m.req = calloc(m.nreq + 1, sizeof(*m.req));
	m.holder_of = calloc(m.nreq + 1, sizeof(int));
	m.assign = calloc(m.nreq + 1, sizeof(int));
	m.used = calloc(m.nkinds + 1, sizeof(int));
	m.visited = calloc(m.nkinds + 1, 1);
	if (!m.req || !m.holder_of || !m.assign || !m.used || !m.visited) {
		snprintf(why, len, "out of memory");
		rc = -ENOMEM;
		goto out;
	}
	size_t r = 0, i;
	json_t *q;
	for (size_t h = 0; h < n; h++)
		json_array_foreach(holders[h].requests, i, q) {
			m.req[r] = q;
			m.holder_of[r] = (int)h;
			m.assign[r++] = -1;
		}
	for (r = 0; r < m.nreq; r++) {
		memset(m.visited, 0, m.nkinds);
		if (!augment(&m, r)) {
			char one[400];
			explain(&m, holders, r, one, sizeof(one));
			snprintf(why, len, "%s", one);
			rc = -ENOSPC;
			break;
		}
	}
	if (used)
		memcpy(used, m.used, m.nkinds * sizeof(int));
out:
	free(m.req);
	free(m.holder_of);
	free(m.assign);
	free(m.used);
	free(m.visited);
	return rc;
}
