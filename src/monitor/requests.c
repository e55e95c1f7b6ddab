/* The VM monitor API's request bodies (POST /v1/vm/snapshot and
 * /v1/vm/memsave), parsed and checked apart from acting on them: these
 * functions only read JSON, so a handler refuses a bad request with 400
 * before it pauses a VM or opens a file, and tests/fuzz/fuzz_monitor_api.c
 * can feed them hostile bodies. (POST /v1/migration's body is parsed by
 * migration_request_parse() in src/migrate/options.c.) */
#include "monitor/monitor.h"
#include "common/util.h"
#include <errno.h>
#include <limits.h>
#include <string.h>

/* A file named in a request: an absolute path shorter than PATH_MAX. */
static const char *request_path(json_t *body, const char *key)
{
	json_t *v = json_object_get(body, key);
	if (!json_is_string(v) || json_string_value(v)[0] != '/' || json_string_length(v) >= PATH_MAX)
		return NULL;
	return json_string_value(v);
}

/* A byte count or address: a non-negative integer, or a size string ("1M", "0x100000"). */
static int request_u64(json_t *body, const char *key, uint64_t *out)
{
	json_t *v = json_object_get(body, key);
	if (json_is_integer(v) && json_integer_value(v) >= 0) {
		*out = (uint64_t)json_integer_value(v);
		return 0;
	}
	if (json_is_string(v))
		return parse_size(json_string_value(v), out);
	return -EINVAL;
}

int monitor_snapshot_parse(json_t *body, struct monitor_snapshot_request *r, char *err, size_t errlen)
{
	json_t *resume = json_object_get(body, "resume"), *exit_ = json_object_get(body, "exit");

	memset(r, 0, sizeof(*r));
	r->path = request_path(body, "path");
	if (!r->path) {
		errf(err, errlen, "snapshot needs {\"path\": FILE} (an absolute path)");
		return -EINVAL;
	}
	if ((resume && !json_is_boolean(resume)) || (exit_ && !json_is_boolean(exit_))) {
		errf(err, errlen, "snapshot: \"%s\" must be true or false", resume && !json_is_boolean(resume) ? "resume" : "exit");
		return -EINVAL;
	}
	r->resume = json_is_true(resume);
	r->exit = json_is_true(exit_);
	if (r->resume && r->exit) {
		errf(err, errlen, "snapshot: \"resume\" and \"exit\" exclude each other");
		return -EINVAL;
	}
	return 0;
}

int monitor_memsave_parse(json_t *body, struct monitor_memsave_request *r, char *err, size_t errlen)
{
	memset(r, 0, sizeof(*r));
	r->path = request_path(body, "path");
	if (!r->path || request_u64(body, "addr", &r->addr) || request_u64(body, "size", &r->size)) {
		memset(r, 0, sizeof(*r));
		errf(err, errlen, "memsave needs {\"addr\": N, \"size\": N, \"path\": FILE} (N bytes or a size such as "
			     "\"1M\"; FILE an absolute path)");
		return -EINVAL;
	}
	return 0;
}

int monitor_capture_parse(json_t *body, struct monitor_capture_request *r, char *err, size_t errlen)
{
	json_t *nic = json_object_get(body, "nic"), *count = json_object_get(body, "count");
	memset(r, 0, sizeof(*r));
	r->path = request_path(body, "path");
	r->count = 1000;
	if (!r->path || (nic && (!json_is_integer(nic) || json_integer_value(nic) < 0 ||
				 json_integer_value(nic) >= VM_MAX_NICS)) ||
	    (count && (!json_is_integer(count) || json_integer_value(count) < 1 ||
		       json_integer_value(count) > NET_CAPTURE_MAX_FRAMES))) {
		memset(r, 0, sizeof(*r));
		errf(err, errlen, "capture needs {\"path\": FILE (absolute), \"nic\": 0-%d, \"count\": 1-%d frames}",
		     VM_MAX_NICS - 1, NET_CAPTURE_MAX_FRAMES);
		return -EINVAL;
	}
	if (nic)
		r->nic = (int)json_integer_value(nic);
	if (count)
		r->count = (uint64_t)json_integer_value(count);
	return 0;
}
