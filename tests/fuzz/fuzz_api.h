/* Fuzz support for the HTTP+JSON APIs (fuzz_monitor_api, fuzz_host_api,
 * fuzz_center_api): turns a fuzz input into requests as libmicrohttpd and
 * http_server.c would hand them to a handler, without any socket.
 *
 * Input: requests separated by NUL bytes. Each is a first line
 * "METHOD PATH[?QUERY]" and then its body (the rest, up to the next NUL;
 * empty: no body). QUERY is "key=value&key&..." (at most
 * FUZZ_API_ARGS_MAX arguments; no percent-decoding: the fuzzer can write
 * any byte itself). As in http_server.c, a body that is not a JSON object,
 * or is larger than HTTP_BODY_MAX, never reaches a handler. */
#ifndef GLIDE_FUZZ_API_H
#define GLIDE_FUZZ_API_H
#include "api/http.h"
#include <stddef.h>
#include <stdint.h>

#define FUZZ_API_ARGS_MAX 16
#define FUZZ_API_REQUESTS_MAX 32

/* Calls fn for each request of the input (at most FUZZ_API_REQUESTS_MAX)
 * until it returns non-zero; the request and its body are freed after. */
void fuzz_api_each(const uint8_t *data, size_t size, int (*fn)(void *ctx, const struct http_request *req), void *ctx);
/* What http_server.c does with a request: the first route whose path
 * matches and method is req's runs (404, 405 otherwise with an error). */
int fuzz_api_dispatch(const struct http_route *routes, void *ctx, const struct http_request *req, json_t **resp);
/* Aborts unless an answer is well-formed: a status 200..599, and for 4xx
 * and 5xx an object with an "error" string. */
void fuzz_api_check_answer(const struct http_request *req, int status, json_t *resp);
/* Aborts with a message naming the request (an invariant did not hold). */
void fuzz_api_fail(const struct http_request *req, const char *fmt, ...) __attribute__((format(printf, 2, 3), noreturn));
#endif
