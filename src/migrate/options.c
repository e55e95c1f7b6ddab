/* Migration options: the tunables of a migration (streams, switchover
 * goal, bandwidth cap, SDPS, encryption, compression, timeouts, DSCP) with
 * their defaults and limits, and the body of the monitor's POST
 * /v1/migration (the tunables plus "to" and "key_file").
 *
 * Parsing is separate from acting: migration_options_parse() only reads
 * JSON, so the controller and the host agent check a request with the very
 * rules the monitor applies before they start anything, and
 * migration_request_parse() leaves reading the key file to its caller.
 * tests/fuzz/fuzz_monitor_api.c checks that whatever is accepted lies
 * within the limits below. */
#include "migrate/migration.h"
#include "common/util.h"
#include <errno.h>
#include <limits.h>
#include <string.h>

/* One of the names in `names` (NULL-terminated): its index, or -1. */
static int option_choice(json_t *v, const char *const names[])
{
	const char *s = json_string_value(v);
	for (int i = 0; s && names[i]; i++)
		if (!strcmp(s, names[i]))
			return i;
	return -1;
}

int migration_options_parse(json_t *b, struct migration_params *p, char *err, size_t errlen)
{
	static const char *const sdps_names[] = { "off", "always", "dynamic", NULL };
	static const enum sdps_mode sdps_modes[] = { SDPS_OFF, SDPS_ALWAYS, SDPS_DYNAMIC };
	static const char *const encrypt_names[] = { "off", "opportunistic", "required", NULL };
	static const enum wire_encrypt_mode encrypt_modes[] = { ENCRYPT_OFF, ENCRYPT_OPPORTUNISTIC, ENCRYPT_REQUIRED };
	static const char *const compress_names[] = { "off", "lz4", NULL };
	json_t *v;
	int i;

	memset(p, 0, sizeof(*p));
	p->switchover_goal_ms = SWITCHOVER_GOAL_MS_DEFAULT;
	p->sdps = SDPS_DYNAMIC;
	p->encrypt = ENCRYPT_OPPORTUNISTIC;
	p->stall_timeout_ms = WIRE_STALL_TIMEOUT_MS_DEFAULT;
	if (!json_is_object(b)) {
		errf(err, errlen, "migration options must be a JSON object");
		return -EINVAL;
	}
	v = json_object_get(b, "streams");
	/* "auto" (the default) and its older name "adaptive": streams.c chooses */
	if (v && !(json_is_string(v) && (!strcmp(json_string_value(v), "auto") || !strcmp(json_string_value(v), "adaptive")))) {
		if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > WIRE_MAX_STREAMS) {
			errf(err, errlen, "\"streams\" must be 1..%d, \"auto\" or \"adaptive\"", WIRE_MAX_STREAMS);
			return -EINVAL;
		}
		p->streams = (int)json_integer_value(v);
	}
	v = json_object_get(b, "switchover_goal_ms");
	if (v) {
		if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > SWITCHOVER_GOAL_MS_MAX) {
			errf(err, errlen, "\"switchover_goal_ms\" must be 1..%d", SWITCHOVER_GOAL_MS_MAX);
			return -EINVAL;
		}
		p->switchover_goal_ms = (uint64_t)json_integer_value(v);
	}
	v = json_object_get(b, "max_bandwidth");
	if (v) {
		if (json_is_integer(v) && json_integer_value(v) >= 0)
			p->max_bandwidth = (uint64_t)json_integer_value(v);
		else if (!json_is_string(v) || parse_rate(json_string_value(v), &p->max_bandwidth)) {
			errf(err, errlen, "\"max_bandwidth\" must be bytes/s (e.g. 52428800 or \"50M\"; 0 or \"unlimited\": no cap)");
			return -EINVAL;
		}
		if (p->max_bandwidth && p->max_bandwidth < MIGRATION_BANDWIDTH_MIN) {
			errf(err, errlen, "\"max_bandwidth\" must be at least %llu bytes/s (1M), or 0 for no cap",
			     (unsigned long long)MIGRATION_BANDWIDTH_MIN);
			return -EINVAL;
		}
	}
	v = json_object_get(b, "sdps");
	if (v) {
		if ((i = option_choice(v, sdps_names)) < 0) {
			errf(err, errlen, "\"sdps\" must be off, always or dynamic");
			return -EINVAL;
		}
		p->sdps = sdps_modes[i];
	}
	v = json_object_get(b, "encrypt");
	if (v) {
		if ((i = option_choice(v, encrypt_names)) < 0) {
			errf(err, errlen, "\"encrypt\" must be off, opportunistic or required");
			return -EINVAL;
		}
		p->encrypt = encrypt_modes[i];
	}
	v = json_object_get(b, "compress");
	if (v) {
		if ((i = option_choice(v, compress_names)) < 0) {
			errf(err, errlen, "\"compress\" must be off or lz4");
			return -EINVAL;
		}
		p->compress = i == 1;
	}
	v = json_object_get(b, "verify");
	if (v) {
		if (!json_is_boolean(v)) {
			errf(err, errlen, "\"verify\" must be true or false");
			return -EINVAL;
		}
		p->verify = json_is_true(v);
	}
	v = json_object_get(b, "disk_to");
	if (v) {
		size_t i;
		json_t *e;
		if (!json_is_array(v) || json_array_size(v) > VM_MAX_DISKS) {
			errf(err, errlen, "\"disk_to\" must be a list of at most %d paths (one per disk, \"\" for a disk "
				     "both hosts share)", VM_MAX_DISKS);
			return -EINVAL;
		}
		json_array_foreach(v, i, e) {
			const char *s = json_string_value(e);
			if (!s || (s[0] && s[0] != '/') || strlen(s) >= DISK_TO_PATH_MAX) {
				errf(err, errlen, "\"disk_to\" %zu must be an absolute path on the destination (shorter than "
					     "%d bytes) or \"\"", i, DISK_TO_PATH_MAX);
				return -EINVAL;
			}
			snprintf(p->disk_to[i], sizeof(p->disk_to[i]), "%s", s);
			if (s[0])
				p->disk_copy |= 1u << i;
		}
	}
	v = json_object_get(b, "timeout_s");
	if (v) {
		if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > MIGRATION_TIMEOUT_S_MAX) {
			errf(err, errlen, "\"timeout_s\" must be 0 (none) to %d seconds", MIGRATION_TIMEOUT_S_MAX);
			return -EINVAL;
		}
		p->timeout_s = (uint64_t)json_integer_value(v);
	}
	v = json_object_get(b, "dscp");
	if (v) {
		if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > MIGRATION_DSCP_MAX) {
			errf(err, errlen, "\"dscp\" must be 0..%d", MIGRATION_DSCP_MAX);
			return -EINVAL;
		}
		p->dscp = (int)json_integer_value(v);
	}
	v = json_object_get(b, "stall_timeout_s");
	if (v) {
		if (!json_is_number(v) || !(json_number_value(v) >= WIRE_STALL_TIMEOUT_MIN_S) ||
		    !(json_number_value(v) <= WIRE_STALL_TIMEOUT_MAX_S)) {
			errf(err, errlen, "\"stall_timeout_s\" must be seconds, 0.1..3600");
			return -EINVAL;
		}
		p->stall_timeout_ms = (uint64_t)(json_number_value(v) * 1000 + 0.5);
	}
	return 0;
}

int migration_request_parse(json_t *b, struct migration_params *p, char *key_file, size_t key_file_len, char *err,
			    size_t errlen)
{
	json_t *v;
	int rc;

	if (!json_is_object(b)) {
		memset(p, 0, sizeof(*p));
		errf(err, errlen, "migration needs a JSON body with at least \"to\" and \"key_file\"");
		return -EINVAL;
	}
	if ((rc = migration_options_parse(b, p, err, errlen)))
		return rc;
	v = json_object_get(b, "to");
	if (!json_is_string(v) || (p->naddrs = wire_parse_addrs(json_string_value(v), p->addrs, WIRE_MAX_STREAMS)) < 0) {
		p->naddrs = 0;
		errf(err, errlen, "\"to\" must be HOST:PORT[,HOST:PORT...] (at most %d)", WIRE_MAX_STREAMS);
		return -EINVAL;
	}
	v = json_object_get(b, "key_file");
	if (!json_is_string(v) || json_string_value(v)[0] != '/' || json_string_length(v) >= key_file_len) {
		errf(err, errlen, "\"key_file\" (the absolute path of a file holding the one-time key as 64 hex digits, "
			     "shorter than %zu bytes) is required", key_file_len);
		return -EINVAL;
	}
	memcpy(key_file, json_string_value(v), json_string_length(v) + 1);
	return 0;
}
