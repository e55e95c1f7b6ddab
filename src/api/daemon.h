/* What the two server daemons (host agent, controller) share: the bearer
 * token, stop signals, the HTTP API and one background thread, from
 * start-up to an orderly stop. */
#ifndef GLIDE_API_DAEMON_H
#define GLIDE_API_DAEMON_H
#include "api/http.h"
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>

struct daemon {
	const char *role;          /* log component: "host", "center" */
	char *token;               /* bearer token for the TCP API */
	sigset_t stop_signals;     /* SIGINT, SIGTERM: taken only by daemon_run() */
	struct http_server *srv;
};

/* Reads the token file and blocks the stop signals in every thread to come
 * (call before starting any). Prints the error and returns 1 on failure. */
int daemon_begin(struct daemon *d, const char *role, const char *token_file);
/* Starts the API with the daemon's token (so->token is filled in). Prints
 * the error and returns 1 on failure. */
int daemon_serve(struct daemon *d, struct http_server_opts *so, const struct http_route *routes, void *ctx);
/* Runs background(ctx) in a thread until SIGINT or SIGTERM, then sets
 * *quit, stops the API, wipes the token and joins the thread. `stopping`
 * ends the log line "signal N: stopping...". Returns 0, or 1 (printed)
 * when the thread cannot start. */
int daemon_run(struct daemon *d, void *(*background)(void *), void *ctx, volatile bool *quit, const char *stopping);
/* Stops the API if it runs, wipes and frees the token (also when
 * start-up fails after daemon_begin). */
void daemon_end(struct daemon *d);
#endif
