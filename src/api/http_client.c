/* HTTP+JSON client on libcurl, for the CLI and for daemons that call each
 * other (controller -> host agent -> VM monitor). UNIX sockets are used
 * through CURLOPT_UNIX_SOCKET_PATH. */
#include "api/http.h"
#include "common/util.h"
#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct grow {
	char *p;
	size_t len;
	bool too_big;
};

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *ud)
{
	struct grow *g = ud;
	size_t n = size * nmemb;
	if (g->len + n > 64u << 20) {
		g->too_big = true;
		return 0;
	}
	char *q = realloc(g->p, g->len + n + 1);
	if (!q)
		return 0;
	g->p = q;
	memcpy(g->p + g->len, ptr, n);
	g->len += n;
	g->p[g->len] = 0;
	return n;
}

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static void curl_init_once(void) { curl_global_init(CURL_GLOBAL_DEFAULT); }

int http_path(char *out, size_t len, const char *prefix, const char *component, const char *suffix)
{
	pthread_once(&curl_once, curl_init_once);
	char *esc = curl_easy_escape(NULL, component, 0);
	if (!esc) {
		if (len)
			out[0] = 0;
		return -ENOMEM;
	}
	int n = snprintf(out, len, "%s%s%s", prefix, esc, suffix ? suffix : "");
	curl_free(esc);
	if (n < 0 || (size_t)n >= len) {
		if (len)
			out[0] = 0;
		return -ENAMETOOLONG;
	}
	return 0;
}

/* Errors of the request itself (nothing reached the server) as opposed to the network. */
static bool request_error(CURLcode cc)
{
	return cc == CURLE_URL_MALFORMAT || cc == CURLE_UNSUPPORTED_PROTOCOL || cc == CURLE_BAD_FUNCTION_ARGUMENT;
}

int http_call(const struct http_client_opts *o, const char *method, const char *path, json_t *body,
	      json_t **resp, long *status, char *err, size_t errlen)
{
	CURL *c;
	CURLcode cc;
	struct curl_slist *hdrs = NULL;
	struct grow g = { 0 };
	char url[1024], auth[600];
	char *text = NULL;
	bool is_unix = strncmp(o->target, "http://", 7) && strncmp(o->target, "https://", 8);
	int rc = 0;

	pthread_once(&curl_once, curl_init_once);
	if (resp)
		*resp = NULL;
	*status = 0;
	c = curl_easy_init();
	if (!c) {
		errf(err, errlen, "cannot initialise HTTP client");
		return -ENOMEM;
	}
	int un;
	if (is_unix) {
		curl_easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, o->target);
		un = snprintf(url, sizeof(url), "http://localhost%s", path);
	} else {
		size_t n = strlen(o->target);
		un = snprintf(url, sizeof(url), "%.*s%s", (int)(n && o->target[n - 1] == '/' ? n - 1 : n), o->target, path);
	}
	if (un < 0 || (size_t)un >= sizeof(url)) {
		errf(err, errlen, "invalid request: the URL for %s would be longer than %zu bytes", o->target, sizeof(url) - 1);
		curl_easy_cleanup(c);
		return -EINVAL;
	}
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, o->timeout_ms ? o->timeout_ms : 30000L);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &g);
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
	if (o->cacert)
		curl_easy_setopt(c, CURLOPT_CAINFO, o->cacert);
	hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
	if (o->token) {
		snprintf(auth, sizeof(auth), "Authorization: Bearer %s", o->token);
		hdrs = curl_slist_append(hdrs, auth);
	}
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
	if (body) {
		text = json_dumps(body, JSON_COMPACT);
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, text ? text : "{}");
	} else if (strcmp(method, "GET")) {
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, "");
	}
	cc = curl_easy_perform(c);
	if (cc != CURLE_OK) {
		if (request_error(cc)) {
			errf(err, errlen, "invalid request URL %s: %s", url, curl_easy_strerror(cc));
			rc = -EINVAL;
		} else {
			errf(err, errlen, "cannot reach %s: %s", o->target, curl_easy_strerror(cc));
			rc = cc == CURLE_OPERATION_TIMEDOUT ? -ETIMEDOUT : -ECONNREFUSED;
		}
		goto out;
	}
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
	if (g.len && resp) {
		json_error_t je;
		*resp = json_loadb(g.p, g.len, 0, &je);
		if (!*resp) {
			errf(err, errlen, "%s answered with invalid JSON: %s", o->target, je.text);
			rc = -EPROTO;
			goto out;
		}
	}
	if (*status >= 400) {
		json_t *e = resp && *resp ? json_object_get(*resp, "error") : NULL;
		errf(err, errlen, "%s", json_is_string(e) ? json_string_value(e) : "request failed");
	}
out:
	free(text);
	free(g.p);
	curl_slist_free_all(hdrs);
	curl_easy_cleanup(c);
	return rc;
}
