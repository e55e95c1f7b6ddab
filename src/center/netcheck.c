/* Network checks between two hosts of the inventory (`glide host netcheck
 * A B`, POST /v1/netcheck, and the migration compatibility check for a
 * host pair never checked): the destination's agent serves a one-time
 * check on each of its addresses of the service, the source's agent runs
 * it from its own (host/netcheck.h says what is measured), the controller
 * keeps the last result of each pair and service. */
#include "center/center.h"
#include "api/http.h"
#include "common/util.h"
#include <openssl/rand.h>
#include <stdio.h>
#include <string.h>

static const char *s(json_t *o, const char *k)
{
	const char *v = json_string_value(json_object_get(o, k));
	return v ? v : "";
}

json_t *center_netcheck(struct center *c, json_t *src, json_t *dst, const char *service, double seconds, char *err,
			size_t errlen)
{
	uint8_t raw[16];
	char token[33], e[512];
	json_t *listen = NULL, *run = NULL;
	int code;

	if (RAND_bytes(raw, sizeof(raw)) != 1) {
		errf(err, errlen, "cannot generate the check's one-time token");
		return NULL;
	}
	hex_encode(raw, 16, token);
	json_t *req = json_pack("{s:s, s:s}", "token", token, "service", service);
	code = host_call(dst, "POST", "/v1/netcheck/listen", req, &listen, 10000, e, sizeof(e));
	json_decref(req);
	if (code != 201 || !json_is_array(json_object_get(listen, "endpoints"))) {
		errf(err, errlen, "host %s cannot serve a network check: %s", s(dst, "name"),
		     code == 404 ? "its agent does not know network checks (upgrade it)" : e);
		json_decref(listen);
		return NULL;
	}
	size_t n = json_array_size(json_object_get(listen, "endpoints"));
	json_t *body = json_pack("{s:s, s:s, s:O, s:f}", "token", token, "service", service, "to",
				 json_object_get(listen, "endpoints"), "seconds", seconds);
	/* each endpoint: connect 3 s, MTU probes ~1-2 s, 20 round trips, the stream, its answer */
	code = host_call(src, "POST", "/v1/netcheck/run", body, &run, (long)(n * (seconds + 20) * 1000), e, sizeof(e));
	json_decref(body);
	json_decref(listen);
	explicit_bzero(token, sizeof(token));
	if (code != 200 || !json_is_array(json_object_get(run, "results"))) {
		errf(err, errlen, "host %s cannot run a network check: %s", s(src, "name"),
		     code == 404 ? "its agent does not know network checks (upgrade it)" : e);
		json_decref(run);
		return NULL;
	}
	bool ok = true, reachable = true;
	size_t i;
	json_t *one;
	json_array_foreach(json_object_get(run, "results"), i, one) {
		ok &= json_is_true(json_object_get(one, "ok"));
		reachable &= json_is_true(json_object_get(one, "reachable"));
	}
	json_t *rec = json_pack("{s:s, s:s, s:s, s:b, s:b, s:O, s:I}", "source", s(src, "name"), "destination", s(dst, "name"),
				"service", service, "ok", ok, "reachable", reachable, "results", json_object_get(run, "results"),
				"checked_at", (json_int_t)inv_now_ms());
	json_decref(run);
	pthread_mutex_lock(&c->lock);
	inv_netcheck_set(c, json_integer_value(json_object_get(src, "id")), json_integer_value(json_object_get(dst, "id")),
			 service, ok, reachable, rec);
	pthread_mutex_unlock(&c->lock);
	glide_log("center", "network check %s -> %s (%s): %s", s(src, "name"), s(dst, "name"), service,
		  ok ? "ok" : reachable ? "reachable, with problems" : "unreachable");
	return rec;
}

/* One line per endpoint for a task message or a log: "A.B.C.D:P: RTT x ms, MTU y, z Gbit/s" or the problem. */
void center_netcheck_summary(json_t *rec, char *out, size_t len)
{
	size_t used = 0, i;
	json_t *r;
	out[0] = 0;
	json_array_foreach(json_object_get(rec, "results"), i, r) {
		json_t *rtt = json_object_get(r, "rtt_ms"), *mtu = json_object_get(r, "mtu"), *tp = json_object_get(r, "throughput");
		json_t *problems = json_object_get(r, "problems");
		if (used >= len)
			break;
		if (!json_is_true(json_object_get(r, "reachable")))
			used += (size_t)snprintf(out + used, len - used, "%s%s", i ? "; " : "", s(r, "error"));
		else
			used += (size_t)snprintf(out + used, len - used, "%s%s: RTT %.2f ms, path MTU %lld, %.2f Gbit/s%s%s",
						 i ? "; " : "", s(r, "to"), json_number_value(json_object_get(rtt, "avg")),
						 (long long)json_integer_value(json_object_get(mtu, "path")),
						 json_number_value(json_object_get(tp, "bits_per_s")) / 1e9,
						 json_array_size(problems) ? ": " : "",
						 json_array_size(problems) ? json_string_value(json_array_get(problems, 0)) : "");
	}
}
