/* Fuzz target: the VM monitor API's request parsing, on requests from
 * fuzz input (format in fuzz_api.h): the bodies of POST /v1/vm/snapshot
 * /v1/vm/memsave and /v1/vm/capture (src/monitor/requests.c) with memsave's range check
 * against a small guest memory laid out around the 3-4 GiB hole as a big
 * VM's is, POST /v1/migration's body (migration_request_parse() in
 * src/migrate/options.c) and GET /v1/migration?id=N.
 *
 * The parsers run on every request; then the real handlers of
 * src/monitor/monitor.c (this file includes it, they are static) and
 * migrate_api_status() run on a monitor that refuses to act (an incoming
 * migration, no outgoing one): a bad request must get 400 from them, a
 * good one 409 or 404, never an action. POST /v1/migration's handler is
 * left out: past its state check it reads the key file the body names.
 *
 * Checked: whatever is accepted is within the documented limits (absolute
 * paths, a memsave range that is all RAM, migration options in range, ids
 * that are plain numbers), refusals say why, and nothing leaks. */
#include "../../src/monitor/monitor.c"
#include "fuzz_api.h"
#include "migrate/migration.h"
#include "vmm/memory.h"
#include <limits.h>

#define FUZZ_REGION_BYTES (64 * 1024)

static struct guest_memory fuzz_mem;
static struct monitor fuzz_monitor; /* incoming: refuses snapshots and memsaves with 409 */

/* The real handler on the refusing monitor: 400 when the parser refused, else `busy`. */
static void check_handler(const struct http_request *req, http_handler_fn fn, bool parsed, int busy)
{
	json_t *resp = NULL;
	int status = fn(&fuzz_monitor, req, &resp);
	fuzz_api_check_answer(req, status, resp);
	if (status != (parsed ? busy : 400))
		fuzz_api_fail(req, "the handler answered %d to a request its parser %s", status, parsed ? "accepted" : "refused");
	json_decref(resp);
}

static int refused(const char *err, json_t **resp)
{
	if (!err[0])
		abort(); /* a refusal must say why */
	*resp = http_error("%s", err);
	return 400;
}

static bool in_one_region(uint64_t addr, uint64_t size)
{
	for (int i = 0; i < fuzz_mem.nregions; i++) {
		const struct guest_ram_region *r = &fuzz_mem.regions[i];
		if (addr >= r->gpa && size <= r->size && addr - r->gpa <= r->size - size)
			return true;
	}
	return false;
}

static int check_snapshot(void *ctx, const struct http_request *req, json_t **resp)
{
	struct monitor_snapshot_request r;
	char err[512] = "";
	int rc = monitor_snapshot_parse(req->body, &r, err, sizeof(err));
	check_handler(req, api_snapshot, rc == 0, 409);
	if (rc)
		return refused(err, resp);
	json_t *resume = json_object_get(req->body, "resume");
	if (r.path[0] != '/' || strlen(r.path) >= PATH_MAX || r.resume != json_is_true(resume) ||
	    (resume && !json_is_boolean(resume)))
		fuzz_api_fail(req, "snapshot accepted to '%.80s' (resume %d)", r.path, r.resume);
	return 200;
}

static int check_memsave(void *ctx, const struct http_request *req, json_t **resp)
{
	struct monitor_memsave_request r;
	char err[512] = "";
	int parsed = monitor_memsave_parse(req->body, &r, err, sizeof(err));
	check_handler(req, api_memsave, parsed == 0, 409);
	if (parsed)
		return refused(err, resp);
	if (r.path[0] != '/' || strlen(r.path) >= PATH_MAX)
		fuzz_api_fail(req, "memsave accepted to '%.80s'", r.path);
	int rc = memsave_check_range(&fuzz_mem, r.addr, r.size, err, sizeof(err));
	/* the guest memory has two regions with a hole between them: a range
	 * is RAM exactly when it lies in one of them */
	if ((rc == 0) != (r.size && in_one_region(r.addr, r.size)))
		fuzz_api_fail(req, "memsave range 0x%llx+0x%llx %s", (unsigned long long)r.addr, (unsigned long long)r.size,
			      rc ? "refused although it is RAM" : "accepted although it is not all RAM");
	if (rc)
		return refused(err, resp);
	return 200;
}

static int check_capture(void *ctx, const struct http_request *req, json_t **resp)
{
	struct monitor_capture_request r;
	char err[512] = "";
	int parsed = monitor_capture_parse(req->body, &r, err, sizeof(err));
	check_handler(req, api_capture, parsed == 0, 409);
	if (parsed)
		return refused(err, resp);
	json_t *nic = json_object_get(req->body, "nic"), *count = json_object_get(req->body, "count");
	if (r.path[0] != '/' || strlen(r.path) >= PATH_MAX || r.nic < 0 || r.nic >= VM_MAX_NICS || r.count < 1 ||
	    r.count > NET_CAPTURE_MAX_FRAMES || (nic && json_integer_value(nic) != r.nic) ||
	    (count && (uint64_t)json_integer_value(count) != r.count) || (!count && r.count != 1000))
		fuzz_api_fail(req, "capture accepted to '%.80s' (nic %d, count %llu)", r.path, r.nic, (unsigned long long)r.count);
	return 200;
}

static int check_migration(void *ctx, const struct http_request *req, json_t **resp)
{
	static const uint8_t zero_key[WIRE_KEY_BYTES];
	struct migration_params p;
	char err[512] = "", key_file[PATH_MAX];
	if (migration_request_parse(req->body, &p, key_file, sizeof(key_file), err, sizeof(err)))
		return refused(err, resp);
	if (p.naddrs < 1 || p.naddrs > WIRE_MAX_STREAMS)
		fuzz_api_fail(req, "%d addresses accepted", p.naddrs);
	for (int i = 0; i < p.naddrs; i++)
		if (!p.addrs[i][0] || !strchr(p.addrs[i], ':') || strlen(p.addrs[i]) >= sizeof(p.addrs[i]))
			fuzz_api_fail(req, "address %d '%s' accepted", i, p.addrs[i]);
	if (p.streams < 0 || p.streams > WIRE_MAX_STREAMS)
		fuzz_api_fail(req, "streams %d accepted", p.streams);
	if (p.switchover_goal_ms < 1 || p.switchover_goal_ms > SWITCHOVER_GOAL_MS_MAX)
		fuzz_api_fail(req, "switchover goal %llu ms accepted", (unsigned long long)p.switchover_goal_ms);
	if (p.max_bandwidth && p.max_bandwidth < MIGRATION_BANDWIDTH_MIN)
		fuzz_api_fail(req, "bandwidth cap %llu B/s accepted", (unsigned long long)p.max_bandwidth);
	if (p.timeout_s > MIGRATION_TIMEOUT_S_MAX || p.timeout_s * 1000000000ULL / 1000000000ULL != p.timeout_s)
		fuzz_api_fail(req, "timeout %llu s accepted", (unsigned long long)p.timeout_s);
	if (p.dscp < 0 || p.dscp > MIGRATION_DSCP_MAX)
		fuzz_api_fail(req, "dscp %d accepted", p.dscp);
	if (p.stall_timeout_ms < 100 || p.stall_timeout_ms > 3600000)
		fuzz_api_fail(req, "stall timeout %llu ms accepted", (unsigned long long)p.stall_timeout_ms);
	if ((p.sdps != SDPS_OFF && p.sdps != SDPS_ALWAYS && p.sdps != SDPS_DYNAMIC) ||
	    (p.encrypt != ENCRYPT_OFF && p.encrypt != ENCRYPT_OPPORTUNISTIC && p.encrypt != ENCRYPT_REQUIRED))
		fuzz_api_fail(req, "sdps %d, encrypt %d accepted", (int)p.sdps, (int)p.encrypt);
	if (key_file[0] != '/' || memcmp(p.key, zero_key, sizeof(zero_key)))
		fuzz_api_fail(req, "key file '%.80s' accepted, or a key read while parsing", key_file);
	return 202;
}

static int check_migration_status(void *ctx, const struct http_request *req, json_t **resp)
{
	uint64_t id = 0;
	const char *text = http_query(req, "id");
	int rc = http_query_uint(req, "id", 1, INT_MAX, &id);
	check_handler(req, migrate_api_status, rc != -EINVAL, 404); /* no migration yet: 404 */
	if (rc == -ENOENT && text)
		fuzz_api_fail(req, "id '%s' taken as absent", text);
	if (rc == 0) {
		char back[32];
		snprintf(back, sizeof(back), "%llu", (unsigned long long)id);
		/* digits only; leading zeros are the one other spelling */
		if (!text || strspn(text, "0123456789") != strlen(text) || id < 1 || id > INT_MAX ||
		    strcmp(text + strspn(text, "0"), back))
			fuzz_api_fail(req, "id '%s' accepted as %llu", text ? text : "(none)", (unsigned long long)id);
	}
	if (rc == -EINVAL) {
		*resp = http_error("?id= must be a migration id (1, 2, ...), got '%.40s'", text);
		return 400;
	}
	return 200;
}

static const struct http_route fuzz_routes[] = {
	{ "POST", "/v1/vm/snapshot", check_snapshot },
	{ "POST", "/v1/vm/memsave", check_memsave },
	{ "POST", "/v1/vm/capture", check_capture },
	{ "POST", "/v1/migration", check_migration },
	{ "GET", "/v1/migration", check_migration_status },
	{ NULL, NULL, NULL },
};

static int one_request(void *ctx, const struct http_request *req)
{
	json_t *resp = NULL;
	int status = fuzz_api_dispatch(fuzz_routes, ctx, req, &resp);
	fuzz_api_check_answer(req, status, resp);
	json_decref(resp);
	return 0;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	glide_set_log_file("/dev/null", NULL, 0);
	pthread_mutex_init(&fuzz_monitor.op_lock, NULL);
	fuzz_monitor.incoming = true;
	/* RAM below the hole and from 4 GiB, as a VM of more than 3 GiB has it, 64 KiB each */
	fuzz_mem.size = 2 * FUZZ_REGION_BYTES;
	fuzz_mem.host = calloc(1, fuzz_mem.size);
	fuzz_mem.nregions = 2;
	fuzz_mem.regions[0] = (struct guest_ram_region){ .gpa = GUEST_LOW_RAM_MAX - FUZZ_REGION_BYTES,
							 .size = FUZZ_REGION_BYTES, .host = fuzz_mem.host };
	fuzz_mem.regions[1] = (struct guest_ram_region){ .gpa = GUEST_HIGH_RAM_BASE, .size = FUZZ_REGION_BYTES,
							 .ram_offset = FUZZ_REGION_BYTES, .host = fuzz_mem.host + FUZZ_REGION_BYTES };
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fuzz_api_each(data, size, one_request, NULL);
	return 0;
}
