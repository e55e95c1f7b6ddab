/* HTTP+JSON server on libmicrohttpd. One thread per connection, so a long
 * request (a snapshot, a migration start) never blocks a status query.
 * Bodies are collected up to HTTP_BODY_MAX and parsed with jansson before a
 * route handler sees them; anything but a JSON object gets 400 without
 * reaching it.
 * Idle connections are closed after HTTP_IDLE_TIMEOUT_S and the number of
 * connections is bounded (in total and per client address on TCP), so
 * clients that connect and send nothing cannot lock others out.
 *
 * libmicrohttpd's timeout only counts silence, so a client that dribbles
 * its headers a byte a second (slow loris) would hold its connection and
 * thread for ever. A watchdog thread therefore closes (shutdown()) every
 * connection that has not delivered a whole request HTTP_REQUEST_TIMEOUT_S
 * after it connected or after its previous answer went out; the time a
 * handler runs and its answer is sent does not count. */
#include "api/http.h"
#include "common/util.h"
#include "common/net.h"
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <microhttpd.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

/* A connection the watchdog follows (MHD's socket context). */
struct conn_watch {
	int fd;
	uint64_t deadline_ns;     /* its request must be whole by then; 0: none now */
	struct conn_watch *prev, *next;
};

struct http_server {
	struct MHD_Daemon *unix_daemon, *tcp_daemon;
	const struct http_route *routes;
	void *ctx;
	char *token;
	char *unix_path;
	char *cert_pem, *key_pem;
	pthread_mutex_t watch_lock;   /* guards the list and every deadline */
	struct conn_watch *watched;
	pthread_t watchdog;
	bool watchdog_started;
	volatile bool stopping;
};

#define HTTP_WATCHDOG_PERIOD_NS 200000000ULL

/* Called by MHD when a connection starts and after it ended (before its
 * socket is closed, so the watchdog never shuts down a reused fd). */
static void connection_notify(void *cls, struct MHD_Connection *c, void **socket_context,
			      enum MHD_ConnectionNotificationCode code)
{
	struct http_server *s = cls;
	struct conn_watch *w = *socket_context;

	if (code == MHD_CONNECTION_NOTIFY_STARTED) {
		const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
		w = calloc(1, sizeof(*w));
		if (!w || !ci) {
			free(w);
			return;
		}
		w->fd = ci->connect_fd;
		w->deadline_ns = now_ns() + (uint64_t)HTTP_REQUEST_TIMEOUT_S * 1000000000ULL;
		pthread_mutex_lock(&s->watch_lock);
		w->next = s->watched;
		if (w->next)
			w->next->prev = w;
		s->watched = w;
		pthread_mutex_unlock(&s->watch_lock);
		*socket_context = w;
	} else if (w) {
		pthread_mutex_lock(&s->watch_lock);
		if (w->prev)
			w->prev->next = w->next;
		else
			s->watched = w->next;
		if (w->next)
			w->next->prev = w->prev;
		pthread_mutex_unlock(&s->watch_lock);
		free(w);
		*socket_context = NULL;
	}
}

/* A request was read whole (deadline off while it is handled and answered)
 * or its answer went out (the next request's time starts). */
static void watch_set(struct http_server *s, struct MHD_Connection *c, bool request_done)
{
	const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
	struct conn_watch *w = ci ? ci->socket_context : NULL;
	if (!w)
		return;
	pthread_mutex_lock(&s->watch_lock);
	w->deadline_ns = request_done ? now_ns() + (uint64_t)HTTP_REQUEST_TIMEOUT_S * 1000000000ULL : 0;
	pthread_mutex_unlock(&s->watch_lock);
}

static void *watchdog_main(void *arg)
{
	struct http_server *s = arg;
	while (!s->stopping) {
		uint64_t now = now_ns();
		pthread_mutex_lock(&s->watch_lock);
		for (struct conn_watch *w = s->watched; w; w = w->next)
			if (w->deadline_ns && now > w->deadline_ns) {
				shutdown(w->fd, SHUT_RDWR); /* its thread sees the end and closes it */
				w->deadline_ns = 0;
			}
		pthread_mutex_unlock(&s->watch_lock);
		sleep_ns(HTTP_WATCHDOG_PERIOD_NS);
	}
	return NULL;
}

struct conn_state {
	char *body;
	size_t len;
	bool too_big;
};

/* Length of the valid UTF-8 sequence at s (1-4), or 0 when there is none. */
static size_t utf8_sequence(const unsigned char *s)
{
	size_t n = s[0] < 0x80 ? 1 : s[0] >= 0xc2 && s[0] < 0xe0 ? 2 : s[0] >= 0xe0 && s[0] < 0xf0 ? 3 :
		   s[0] >= 0xf0 && s[0] < 0xf5 ? 4 : 0;
	for (size_t i = 1; i < n; i++)
		if ((s[i] & 0xc0) != 0x80)
			return 0;
	if ((n == 3 && ((s[0] == 0xe0 && s[1] < 0xa0) || (s[0] == 0xed && s[1] >= 0xa0))) ||
	    (n == 4 && ((s[0] == 0xf0 && s[1] < 0x90) || (s[0] == 0xf4 && s[1] >= 0x90))))
		return 0; /* overlong, surrogate or beyond U+10FFFF */
	return n;
}

json_t *http_error(const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	/* A message quotes what the client sent (a path, a name) and may cut it
	 * short: bytes that are not UTF-8 become '?', or jansson would refuse
	 * the string and the client would get no error message at all. */
	for (unsigned char *p = (unsigned char *)msg; *p;) {
		size_t n = utf8_sequence(p);
		if (n)
			p += n;
		else
			*p++ = '?';
	}
	return json_pack("{s:s}", "error", msg);
}

const char *http_query(const struct http_request *req, const char *key)
{
	if (req->connection)
		return MHD_lookup_connection_value(req->connection, MHD_GET_ARGUMENT_KIND, key);
	for (const char *const *a = req->args; a && a[0]; a += 2)
		if (!strcmp(a[0], key))
			return a[1];
	return NULL;
}

int http_parse_uint(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
	uint64_t v = 0;
	size_t n = s ? strlen(s) : 0;

	if (!n || n > 19) /* 19 digits cannot overflow 64 bits */
		return -EINVAL;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -EINVAL;
		v = v * 10 + (uint64_t)(s[i] - '0');
	}
	if (v < min || v > max)
		return -EINVAL;
	*out = v;
	return 0;
}

int http_query_uint(const struct http_request *req, const char *key, uint64_t min, uint64_t max, uint64_t *out)
{
	const char *v = http_query(req, key);
	return v ? http_parse_uint(v, min, max, out) : -ENOENT;
}

static enum MHD_Result send_json(struct MHD_Connection *c, int status, json_t *body)
{
	char *text = body ? json_dumps(body, JSON_COMPACT) : strdup("{}");
	size_t len = text ? strlen(text) : 0;
	struct MHD_Response *r;
	enum MHD_Result ret;

	r = MHD_create_response_from_buffer(len, text ? text : (char *)"", text ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
	MHD_add_response_header(r, "Content-Type", "application/json");
	ret = MHD_queue_response(c, (unsigned)status, r);
	MHD_destroy_response(r);
	return ret;
}

static bool path_matches(const char *pattern, const char *path)
{
	size_t n = strlen(pattern);
	if (n && pattern[n - 1] == '*')
		return !strncmp(pattern, path, n - 1);
	return !strcmp(pattern, path);
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url, const char *method,
			      const char *version, const char *upload, size_t *upload_size, void **con_cls,
			      bool need_token)
{
	struct http_server *s = cls;
	struct conn_state *st = *con_cls;
	json_t *resp = NULL;
	int status;

	if (!st) {
		st = calloc(1, sizeof(*st));
		if (!st)
			return MHD_NO;
		*con_cls = st;
		return MHD_YES;
	}
	if (*upload_size) {
		if (*upload_size > HTTP_BODY_MAX || st->len + *upload_size > HTTP_BODY_MAX) {
			st->too_big = true;
		} else {
			char *b = realloc(st->body, st->len + *upload_size + 1);
			if (!b)
				return MHD_NO;
			st->body = b;
			memcpy(st->body + st->len, upload, *upload_size);
			st->len += *upload_size;
			st->body[st->len] = 0;
		}
		*upload_size = 0;
		return MHD_YES;
	}
	watch_set(s, c, false); /* the request is whole: it is answered now */
	if (need_token && s->token) {
		const char *auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
		if (!auth || strncmp(auth, "Bearer ", 7) || strcmp(auth + 7, s->token)) {
			json_t *e = http_error("missing or wrong bearer token");
			enum MHD_Result r = send_json(c, 401, e);
			json_decref(e);
			return r;
		}
	}
	if (st->too_big) {
		json_t *e = http_error("request body larger than %d bytes", HTTP_BODY_MAX);
		enum MHD_Result r = send_json(c, 413, e);
		json_decref(e);
		return r;
	}
	struct http_request req = { .method = method, .path = url, .connection = c };
	if (st->len) {
		json_error_t je;
		req.body = json_loadb(st->body, st->len, 0, &je);
		if (!json_is_object(req.body)) {
			json_t *e = req.body ? http_error("the request body must be a JSON object")
					     : http_error("invalid JSON body: %s (line %d)", je.text, je.line);
			enum MHD_Result r = send_json(c, 400, e);
			json_decref(e);
			json_decref(req.body);
			return r;
		}
	}
	status = 0;
	bool path_found = false;
	for (const struct http_route *rt = s->routes; rt->path; rt++) {
		if (!path_matches(rt->path, url))
			continue;
		path_found = true;
		if (strcmp(rt->method, method))
			continue;
		/* the idle timeout does not cut a long handler (a snapshot, a
		 * migration start) short: it is off while the handler runs and
		 * restarts from now when it is set again */
		MHD_set_connection_option(c, MHD_CONNECTION_OPTION_TIMEOUT, 0);
		status = rt->fn(s->ctx, &req, &resp);
		MHD_set_connection_option(c, MHD_CONNECTION_OPTION_TIMEOUT, (unsigned)HTTP_IDLE_TIMEOUT_S);
		break;
	}
	if (!status) {
		status = path_found ? 405 : 404;
		resp = http_error(path_found ? "method %s not allowed on %s" : "no such endpoint: %s %s", method, url);
	}
	json_decref(req.body);
	enum MHD_Result r = send_json(c, status, resp);
	json_decref(resp);
	return r;
}

static enum MHD_Result handle_unix(void *cls, struct MHD_Connection *c, const char *url, const char *method,
				   const char *version, const char *upload, size_t *upload_size, void **con_cls)
{
	return handle(cls, c, url, method, version, upload, upload_size, con_cls, false);
}

static enum MHD_Result handle_tcp(void *cls, struct MHD_Connection *c, const char *url, const char *method,
				  const char *version, const char *upload, size_t *upload_size, void **con_cls)
{
	return handle(cls, c, url, method, version, upload, upload_size, con_cls, true);
}

static void request_done(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode t)
{
	struct conn_state *st = *con_cls;
	watch_set(cls, c, true);
	if (st) {
		free(st->body);
		free(st);
		*con_cls = NULL;
	}
}

/* URL unescaping for MHD: decodes %XX except %2F ('/') and %00, which stay
 * encoded so that a percent-encoded name can never add a path component
 * or end a string early (the name check then refuses the '%'). */
static size_t unescape(void *cls, struct MHD_Connection *c, char *s)
{
	char *r = s, *w = s;
	while (*r) {
		if (r[0] == '%' && isxdigit((unsigned char)r[1]) && isxdigit((unsigned char)r[2])) {
			char hex[3] = { r[1], r[2], 0 };
			unsigned long v = strtoul(hex, NULL, 16);
			if (v != '/' && v != 0) {
				*w++ = (char)v;
				r += 3;
				continue;
			}
		}
		*w++ = *r++;
	}
	*w = 0;
	return (size_t)(w - s);
}

static int unix_listen(const char *path, char *err, size_t errlen)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct stat stt;
	int fd;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		errf(err, errlen, "API socket path too long: %s", path);
		return -ENAMETOOLONG;
	}
	strcpy(sa.sun_path, path);
	if (lstat(path, &stt) == 0) {
		if (!S_ISSOCK(stt.st_mode)) {
			errf(err, errlen, "API socket path %s is in use by a file that is not a socket", path);
			return -EADDRINUSE;
		}
		/* A live server answers connect(); a stale socket file does not. */
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
			close(fd);
			errf(err, errlen, "API socket path %s is in use by a running process", path);
			return -EADDRINUSE;
		}
		if (fd >= 0)
			close(fd);
		unlink(path);
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 64) < 0) {
		int rc = -errno;
		errf(err, errlen, "cannot listen on API socket %s: %s", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return rc;
	}
	chmod(path, 0600);
	return fd;
}

/* Daemons serving TCP may hold many connections: raise the soft fd limit to
 * the hard one (once per process). */
static void raise_fd_limit_once(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

/* The TCP connection limit: HTTP_TCP_CONNECTIONS_MAX, or half the fd limit
 * when that is lower (handlers, monitors' sockets and files need fds too). */
static unsigned tcp_connection_limit(void)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	struct rlimit rl;
	unsigned limit = HTTP_TCP_CONNECTIONS_MAX;
	pthread_once(&once, raise_fd_limit_once);
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur / 2 < limit)
		limit = (unsigned)(rl.rlim_cur / 2);
	return limit > 16 ? limit : 16;
}

struct http_server *http_server_start(const struct http_server_opts *o, const struct http_route *routes,
				      void *ctx, char *err, size_t errlen)
{
	struct http_server *s = calloc(1, sizeof(*s));
	/* poll(), not select(): connection fds above FD_SETSIZE must work too */
	unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION | MHD_USE_POLL | MHD_USE_ERROR_LOG;

	if (!s)
		return NULL;
	pthread_mutex_init(&s->watch_lock, NULL);
	if (pthread_create(&s->watchdog, NULL, watchdog_main, s)) {
		errf(err, errlen, "cannot start the HTTP server's watchdog thread");
		pthread_mutex_destroy(&s->watch_lock);
		free(s);
		return NULL;
	}
	s->watchdog_started = true;
	s->routes = routes;
	s->ctx = ctx;
	if (o->token)
		s->token = strdup(o->token);
	if (o->unix_path) {
		int fd = unix_listen(o->unix_path, err, errlen);
		if (fd < 0)
			goto fail;
		s->unix_path = strdup(o->unix_path);
		s->unix_daemon = MHD_start_daemon(flags, 0, NULL, NULL, handle_unix, s, MHD_OPTION_LISTEN_SOCKET, fd,
						  MHD_OPTION_NOTIFY_COMPLETED, request_done, s,
						  MHD_OPTION_NOTIFY_CONNECTION, connection_notify, s,
						  MHD_OPTION_UNESCAPE_CALLBACK, unescape, NULL,
						  MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)HTTP_IDLE_TIMEOUT_S,
						  MHD_OPTION_CONNECTION_LIMIT, (unsigned)HTTP_UNIX_CONNECTIONS_MAX, MHD_OPTION_END);
		if (!s->unix_daemon) {
			errf(err, errlen, "cannot start the HTTP server on %s", o->unix_path);
			close(fd);
			goto fail;
		}
	}
	if (o->tcp_listen) {
		unsigned limit = tcp_connection_limit();
		int fd = net_listen_tcp(o->tcp_listen, 64, err, errlen);
		if (fd < 0)
			goto fail;
		struct MHD_OptionItem tls[] = {
			{ MHD_OPTION_HTTPS_MEM_CERT, 0, NULL },
			{ MHD_OPTION_HTTPS_MEM_KEY, 0, NULL },
			{ MHD_OPTION_END, 0, NULL },
		};
		unsigned tflags = flags;
		if (o->tls_cert && o->tls_key) {
			int rc;
			s->cert_pem = read_file_limited(o->tls_cert, 1 << 20, NULL, &rc);
			s->key_pem = read_file_limited(o->tls_key, 1 << 20, NULL, &rc);
			if (!s->cert_pem || !s->key_pem) {
				errf(err, errlen, "cannot read TLS certificate/key files");
				close(fd);
				goto fail;
			}
			tflags |= MHD_USE_TLS;
			tls[0].ptr_value = s->cert_pem;
			tls[1].ptr_value = s->key_pem;
		} else {
			tls[0].option = MHD_OPTION_END;
		}
		s->tcp_daemon = MHD_start_daemon(tflags, 0, NULL, NULL, handle_tcp, s, MHD_OPTION_LISTEN_SOCKET, fd,
						 MHD_OPTION_NOTIFY_COMPLETED, request_done, s,
						 MHD_OPTION_NOTIFY_CONNECTION, connection_notify, s,
						 MHD_OPTION_UNESCAPE_CALLBACK, unescape, NULL,
						 MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)HTTP_IDLE_TIMEOUT_S,
						 MHD_OPTION_CONNECTION_LIMIT, limit,
						 MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)HTTP_TCP_PER_IP_MAX,
						 MHD_OPTION_THREAD_STACK_SIZE, (size_t)HTTP_TCP_THREAD_STACK,
						 MHD_OPTION_ARRAY, tls, MHD_OPTION_END);
		if (!s->tcp_daemon) {
			errf(err, errlen, "cannot start the HTTP server on %s", o->tcp_listen);
			close(fd);
			goto fail;
		}
	}
	return s;
fail:
	http_server_stop(s);
	return NULL;
}

/* MHD_stop_daemon cuts every open connection, answered or not: first let
 * the requests in flight send their answers (at most HTTP_DRAIN_MS), e.g.
 * the migration result whose reading lets a source monitor exit, or the
 * answer to a shutdown request. */
#define HTTP_DRAIN_MS 2000
static void drain(struct MHD_Daemon *d)
{
	for (int i = 0; i < HTTP_DRAIN_MS / 5; i++) {
		const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_CURRENT_CONNECTIONS);
		if (!info || !info->num_connections)
			break;
		sleep_ns(5000000);
	}
}

void http_server_stop(struct http_server *s)
{
	if (!s)
		return;
	if (s->unix_daemon)
		drain(s->unix_daemon);
	if (s->tcp_daemon)
		drain(s->tcp_daemon);
	s->stopping = true;
	if (s->watchdog_started)
		pthread_join(s->watchdog, NULL);
	if (s->unix_daemon)
		MHD_stop_daemon(s->unix_daemon);
	if (s->tcp_daemon)
		MHD_stop_daemon(s->tcp_daemon);
	pthread_mutex_destroy(&s->watch_lock);
	if (s->unix_path)
		unlink(s->unix_path);
	free(s->unix_path);
	free(s->token);
	free(s->cert_pem);
	free(s->key_pem);
	free(s);
}
