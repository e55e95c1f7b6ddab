/* HTTP+JSON plumbing shared by the VM monitor, the host agent and the
 * controller (server side on libmicrohttpd) and by the CLI (client side on
 * libcurl). Servers listen on a UNIX socket and/or TCP with a bearer token. */
#ifndef GLIDE_API_HTTP_H
#define GLIDE_API_HTTP_H
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HTTP_BODY_MAX (1 << 20)
/* Limits that keep idle or slow clients from locking others out. A
 * connection that sends nothing for HTTP_IDLE_TIMEOUT_S, or has not sent a
 * whole request HTTP_REQUEST_TIMEOUT_S after it connected or after its
 * previous answer (a slow loris), is closed (the time a handler runs does
 * not count). TCP: at most HTTP_TCP_CONNECTIONS_MAX connections (fewer
 * when the fd limit is low), HTTP_TCP_PER_IP_MAX from one address, each
 * thread with an HTTP_TCP_THREAD_STACK stack. */
#define HTTP_IDLE_TIMEOUT_S 10
#define HTTP_REQUEST_TIMEOUT_S 10
#define HTTP_TCP_CONNECTIONS_MAX 512
#define HTTP_TCP_PER_IP_MAX 64
#define HTTP_TCP_THREAD_STACK (512 * 1024)
#define HTTP_UNIX_CONNECTIONS_MAX 256

struct http_request {
	const char *method;
	const char *path;     /* without query string */
	json_t *body;         /* parsed JSON body or NULL */
	void *connection;     /* struct MHD_Connection *, for http_query() */
	/* A request built without a connection (tests, fuzz targets) carries
	 * its query arguments here: key, value, key, value, ..., NULL (a value
	 * may be NULL, as for "?force"). */
	const char *const *args;
};
/* The value of query argument key, or NULL when it is absent or has none. */
const char *http_query(const struct http_request *req, const char *key);
/* A query argument that must be a decimal integer in [min, max] (digits
 * only, at most 19 of them): 0 with *out set, -ENOENT when it is absent
 * or has no value ("?limit"; *out untouched), -EINVAL otherwise. */
int http_query_uint(const struct http_request *req, const char *key, uint64_t min, uint64_t max, uint64_t *out);
/* The same for text that is not a query argument (a path component). */
int http_parse_uint(const char *s, uint64_t min, uint64_t max, uint64_t *out);

/* Handlers return an HTTP status and set *resp (may be NULL for an empty object). */
typedef int (*http_handler_fn)(void *ctx, const struct http_request *req, json_t **resp);

struct http_route {
	const char *method;
	const char *path;     /* exact, or prefix when it ends with '*' */
	http_handler_fn fn;
};

struct http_server;
struct http_server_opts {
	const char *unix_path;    /* listen on this UNIX socket (no token required) */
	const char *tcp_listen;   /* "HOST:PORT" or NULL */
	const char *token;        /* bearer token required on TCP (NULL: none) */
	const char *tls_cert, *tls_key; /* PEM files for HTTPS on TCP (optional) */
};
struct http_server *http_server_start(const struct http_server_opts *o, const struct http_route *routes,
				      void *ctx, char *err, size_t errlen);
void http_server_stop(struct http_server *s);
/* Error body helper: {"error": msg} */
json_t *http_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Client. `target` is a base URL (http://host:port, https://...) or else a UNIX socket path.
 * URL (http://host:port). Returns 0 and the HTTP status, or -errno with err set. */
struct http_client_opts {
	const char *target;
	const char *token;
	long timeout_ms;          /* 0: 30 s */
	const char *cacert;       /* for https */
};
/* Returns 0 and the HTTP status; or -EINVAL when the URL itself is bad (nothing was sent),
 * -ECONNREFUSED/-ETIMEDOUT/... when the server could not be reached, -EPROTO on a bad answer. */
int http_call(const struct http_client_opts *o, const char *method, const char *path, json_t *body,
	      json_t **resp, long *status, char *err, size_t errlen);
/* Builds a request path: prefix, then component percent-encoded (every byte but letters,
 * digits, '-', '.', '_', '~'; curl_easy_escape), then suffix (may be NULL). Returns 0, or
 * -ENAMETOOLONG / -ENOMEM (out is then an empty string). */
int http_path(char *out, size_t len, const char *prefix, const char *component, const char *suffix);
#endif
