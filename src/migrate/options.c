/* Migration options: parsing of the API body (POST /v1/migration), their
 * defaults and limits. */
#include "migrate/migration.h"
#include "common/util.h"
#include <errno.h>
#include <string.h>

int migration_options_parse(json_t *b, struct migration_params *p, char *err, size_t errlen)
{
	json_t *v;
	memset(p, 0, sizeof(*p));
	p->switchover_goal_ms = SWITCHOVER_GOAL_MS_DEFAULT;
	p->sdps = SDPS_DYNAMIC;
	p->encrypt = ENCRYPT_OPPORTUNISTIC;
	p->stall_timeout_ms = WIRE_STALL_TIMEOUT_MS_DEFAULT;
	if (!json_is_object(b)) {
		errf(err, errlen, "migration needs a JSON body with at least \"to\" and \"key_file\"");
		return -EINVAL;
	}
	v = json_object_get(b, "to");
	if (!json_is_string(v) || (p->naddrs = wire_parse_addrs(json_string_value(v), p->addrs, WIRE_MAX_STREAMS)) < 0) {
		errf(err, errlen, "\"to\" must be HOST:PORT[,HOST:PORT...] (at most %d)", WIRE_MAX_STREAMS);
		return -EINVAL;
	}
	v = json_object_get(b, "key_file");
	if (!json_is_string(v)) {
		errf(err, errlen, "\"key_file\" (a file holding the one-time key as 64 hex digits) is required");
		return -EINVAL;
	}
	if (read_key_file(json_string_value(v), p->key, err, errlen))
		return -EINVAL;
	v = json_object_get(b, "streams");
	if (v && !(json_is_string(v) && !strcmp(json_string_value(v), "auto"))) {
		if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > WIRE_MAX_STREAMS) {
			errf(err, errlen, "\"streams\" must be 1..%d or \"auto\"", WIRE_MAX_STREAMS);
			return -EINVAL;
		}
		p->streams = (int)json_integer_value(v);
	}
	v = json_object_get(b, "switchover_goal_ms");
	if (v) {
		if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > 600000) {
			errf(err, errlen, "\"switchover_goal_ms\" must be 1..600000");
			return -EINVAL;
		}
		p->switchover_goal_ms = (uint64_t)json_integer_value(v);
	}
	v = json_object_get(b, "max_bandwidth");
	if (v) {
		if (json_is_integer(v) && json_integer_value(v) >= 0)
			p->max_bandwidth = (uint64_t)json_integer_value(v);
		else if (!json_is_string(v) || parse_rate(json_string_value(v), &p->max_bandwidth)) {
			errf(err, errlen, "\"max_bandwidth\" must be bytes/s (e.g. 52428800 or \"50M\")");
			return -EINVAL;
		}
	}
	v = json_object_get(b, "sdps");
	if (v) {
		const char *s = json_string_value(v);
		if (s && !strcmp(s, "off")) p->sdps = SDPS_OFF;
		else if (s && !strcmp(s, "always")) p->sdps = SDPS_ALWAYS;
		else if (s && !strcmp(s, "dynamic")) p->sdps = SDPS_DYNAMIC;
		else {
			errf(err, errlen, "\"sdps\" must be off, always or dynamic");
			return -EINVAL;
		}
	}
	v = json_object_get(b, "encrypt");
	if (v) {
		const char *s = json_string_value(v);
		if (s && !strcmp(s, "off")) p->encrypt = ENCRYPT_OFF;
		else if (s && !strcmp(s, "opportunistic")) p->encrypt = ENCRYPT_OPPORTUNISTIC;
		else if (s && !strcmp(s, "required")) p->encrypt = ENCRYPT_REQUIRED;
		else {
			errf(err, errlen, "\"encrypt\" must be off, opportunistic or required");
			return -EINVAL;
		}
	}
	v = json_object_get(b, "compress");
	if (v) {
		const char *c = json_string_value(v);
		if (c && !strcmp(c, "lz4"))
			p->compress = true;
		else if (!c || strcmp(c, "off")) {
			errf(err, errlen, "\"compress\" must be off or lz4");
			return -EINVAL;
		}
	}
	v = json_object_get(b, "verify");
	if (v) {
		if (!json_is_boolean(v)) {
			errf(err, errlen, "\"verify\" must be true or false");
			return -EINVAL;
		}
		p->verify = json_is_true(v);
	}
	v = json_object_get(b, "timeout_s");
	if (v) {
		if (!json_is_integer(v) || json_integer_value(v) < 0) {
			errf(err, errlen, "\"timeout_s\" must be a non-negative integer");
			return -EINVAL;
		}
		p->timeout_s = (uint64_t)json_integer_value(v);
	}
	v = json_object_get(b, "dscp");
	if (v) {
		if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 63) {
			errf(err, errlen, "\"dscp\" must be 0..63");
			return -EINVAL;
		}
		p->dscp = (int)json_integer_value(v);
	}
	v = json_object_get(b, "stall_timeout_s");
	if (v) {
		if (!json_is_number(v) || json_number_value(v) < WIRE_STALL_TIMEOUT_MIN_S ||
		    json_number_value(v) > WIRE_STALL_TIMEOUT_MAX_S) {
			errf(err, errlen, "\"stall_timeout_s\" must be seconds, 0.1..3600");
			return -EINVAL;
		}
		p->stall_timeout_ms = (uint64_t)(json_number_value(v) * 1000 + 0.5);
	}
	return 0;
}

