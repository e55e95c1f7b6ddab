/* Fuzz support for the API targets (fuzz_api.h): requests from fuzz input,
 * routed as http_server.c routes them. */
#include "fuzz_api.h"
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool path_matches(const char *pattern, const char *path)
{
	size_t n = strlen(pattern);
	if (n && pattern[n - 1] == '*')
		return !strncmp(pattern, path, n - 1);
	return !strcmp(pattern, path);
}

int fuzz_api_dispatch(const struct http_route *routes, void *ctx, const struct http_request *req, json_t **resp)
{
	bool path_found = false;
	*resp = NULL;
	for (const struct http_route *rt = routes; rt->path; rt++) {
		if (!path_matches(rt->path, req->path))
			continue;
		path_found = true;
		if (strcmp(rt->method, req->method))
			continue;
		int status = rt->fn(ctx, req, resp);
		if (status)
			return status;
		break;
	}
	*resp = http_error(path_found ? "method %s not allowed on %s" : "no such endpoint: %s %s", req->method, req->path);
	return path_found ? 405 : 404;
}

void fuzz_api_fail(const struct http_request *req, const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "\n%s %s: ", req->method, req->path);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n");
	abort();
}

void fuzz_api_check_answer(const struct http_request *req, int status, json_t *resp)
{
	if (status < 200 || status > 599)
		fuzz_api_fail(req, "status %d", status);
	if (status >= 400 && !json_is_string(json_object_get(resp, "error")))
		fuzz_api_fail(req, "status %d without an error message", status);
}

/* One request: data[0..len) is "METHOD PATH[?QUERY]\nBODY". */
static int one(const uint8_t *data, size_t len, int (*fn)(void *, const struct http_request *), void *ctx)
{
	const uint8_t *nl = memchr(data, '\n', len);
	size_t line = nl ? (size_t)(nl - data) : len;
	char *text = malloc(line + 1), *sp, *q;
	const char *args[2 * FUZZ_API_ARGS_MAX + 1];
	struct http_request req = { 0 };
	int n = 0, rc = 0;

	if (!text)
		return 1;
	memcpy(text, data, line);
	text[line] = 0;
	sp = strchr(text, ' ');
	if (!sp)
		goto out;
	*sp = 0;
	req.method = text;
	req.path = sp + 1;
	q = strchr(sp + 1, '?');
	if (q) {
		*q++ = 0;
		for (char *save = NULL, *kv = strtok_r(q, "&", &save); kv && n < FUZZ_API_ARGS_MAX; kv = strtok_r(NULL, "&", &save)) {
			char *eq = strchr(kv, '=');
			if (eq)
				*eq++ = 0;
			args[2 * n] = kv;
			args[2 * n + 1] = eq;
			n++;
		}
	}
	args[2 * n] = NULL;
	req.args = args;
	if (nl && len - line - 1 > 0) {
		size_t blen = len - line - 1;
		json_error_t je;
		if (blen > HTTP_BODY_MAX)
			goto out;
		req.body = json_loadb((const char *)nl + 1, blen, 0, &je);
		if (!json_is_object(req.body))
			goto out; /* 400 in http_server.c */
	}
	rc = fn(ctx, &req);
out:
	json_decref(req.body);
	free(text);
	return rc;
}

void fuzz_api_each(const uint8_t *data, size_t size, int (*fn)(void *ctx, const struct http_request *req), void *ctx)
{
	size_t off = 0;
	for (int i = 0; i < FUZZ_API_REQUESTS_MAX && off < size; i++) {
		const uint8_t *end = memchr(data + off, 0, size - off);
		size_t len = end ? (size_t)(end - (data + off)) : size - off;
		if (one(data + off, len, fn, ctx))
			break;
		off += len + 1;
	}
}
