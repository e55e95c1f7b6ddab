/* The controller's side of talking to host agents: every call goes to the
 * host's TCP API with the token it was added with. */
#include "center/center.h"
#include "api/http.h"
#include "common/util.h"
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int host_call(json_t *host_row, const char *method, const char *path, json_t *body, json_t **resp, long timeout_ms,
	      char *err, size_t errlen)
{
	char url[256];
	const char *addr = json_string_value(json_object_get(host_row, "address"));
	long status = 0;
	char e[512];

	if (resp)
		*resp = NULL;
	if (!addr) {
		errf(err, errlen, "host has no address");
		return -EINVAL;
	}
	snprintf(url, sizeof(url), "%s%s", strstr(addr, "://") ? "" : "http://", addr);
	struct http_client_opts co = { .target = url, .token = json_string_value(json_object_get(host_row, "token")),
				       .timeout_ms = timeout_ms ? timeout_ms : CENTER_HOST_TIMEOUT_MS };
	int rc = http_call(&co, method, path, body, resp, &status, e, sizeof(e));
	if (rc) {
		errf(err, errlen, "host %s (%s) is not responding: %s", json_string_value(json_object_get(host_row, "name")),
		     addr, e);
		return rc;
	}
	if (status >= 400)
		errf(err, errlen, "%s", e);
	return (int)status;
}

json_t *host_facts(json_t *host_row, char *err, size_t errlen)
{
	json_t *r = NULL;
	int st = host_call(host_row, "GET", "/v1/host", NULL, &r, 0, err, errlen);
	if (st != 200) {
		if (st > 0 && st != 200)
			errf(err, errlen, "host %s refused: %s", json_string_value(json_object_get(host_row, "name")),
			     st == 401 ? "wrong token (add it again with the right --host-token-file)" : "error");
		json_decref(r);
		return NULL;
	}
	if (!json_is_object(r)) { /* a 200 with no JSON object is no answer: say so */
		errf(err, errlen, "host %s answered without its facts", json_string_value(json_object_get(host_row, "name")));
		json_decref(r);
		return NULL;
	}
	return r;
}

bool host_facts_regs(json_t *facts, uint32_t regs[EVC_REGS])
{
	return evc_regs_from_json(json_object_get(json_object_get(facts, "cpu"), "cpuid"), regs) == 0;
}

/* "/v1/paths?path=" and p percent-encoded, '/' kept as it is (servers keep
 * an encoded '/' encoded). */
static void paths_query(const char *p, char *out)
{
	static const char hex[] = "0123456789ABCDEF";
	char *o = out + sprintf(out, "/v1/paths?path=");
	for (const unsigned char *c = (const unsigned char *)p; *c; c++) {
		if (isalnum(*c) || strchr("-._~/", *c)) {
			*o++ = (char)*c;
		} else {
			*o++ = '%';
			*o++ = hex[*c >> 4];
			*o++ = hex[*c & 15];
		}
	}
	*o = 0;
}

json_t *host_paths(json_t *host_row, json_t *disks)
{
	json_t *out = json_object(), *d;
	char *path = malloc(32 + 3 * ATTACH_PATH_MAX), err[512];
	size_t i;

	json_array_foreach(disks, i, d) {
		const char *p = json_string_value(json_object_get(d, "path"));
		json_t *r = NULL;
		int st = -ENOMEM;
		if (!p || json_object_get(out, p))
			continue;
		if (!attach_path_valid(p)) {
			st = -EINVAL;
			errf(err, sizeof(err), "not an absolute path");
		} else if (path) {
			paths_query(p, path);
			st = host_call(host_row, "GET", path, NULL, &r, 0, err, sizeof(err));
		} else {
			errf(err, sizeof(err), "out of memory");
		}
		if (st == 200 && json_is_object(r))
			json_object_set(out, p, r);
		else
			json_object_set_new(out, p, json_pack("{s:s}", "error", st == 404 ? "its agent cannot check paths (upgrade it)" : err));
		json_decref(r);
	}
	free(path);
	return out;
}
