/* Start-up and orderly stop shared by the server daemons (`glide host
 * serve`, `glide center serve`): token, signals, API, background thread. */
#include "api/daemon.h"
#include "common/token.h"
#include "common/util.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int daemon_begin(struct daemon *d, const char *role, const char *token_file)
{
	char err[512];

	memset(d, 0, sizeof(*d));
	d->role = role;
	d->token = token_read_file(token_file, err, sizeof(err));
	if (!d->token) {
		fprintf(stderr, "glide: %s\n", err);
		return 1;
	}
	sigemptyset(&d->stop_signals);
	sigaddset(&d->stop_signals, SIGINT);
	sigaddset(&d->stop_signals, SIGTERM);
	/* every thread inherits the mask; only the sigwait in daemon_run() takes them */
	pthread_sigmask(SIG_BLOCK, &d->stop_signals, NULL);
	signal(SIGPIPE, SIG_IGN);
	return 0;
}

int daemon_serve(struct daemon *d, struct http_server_opts *so, const struct http_route *routes, void *ctx)
{
	char err[512];

	so->token = d->token;
	d->srv = http_server_start(so, routes, ctx, err, sizeof(err));
	if (!d->srv) {
		fprintf(stderr, "glide: %s\n", err);
		return 1;
	}
	return 0;
}

int daemon_run(struct daemon *d, void *(*background)(void *), void *ctx, volatile bool *quit, const char *stopping)
{
	pthread_t t;
	int sig = 0;

	if (pthread_create(&t, NULL, background, ctx)) {
		fprintf(stderr, "glide: cannot start the %s daemon's background thread\n", d->role);
		daemon_end(d);
		return 1;
	}
	sigwait(&d->stop_signals, &sig);
	glide_log(d->role, "signal %d: stopping%s", sig, stopping);
	*quit = true;
	daemon_end(d);
	pthread_join(t, NULL);
	return 0;
}

void daemon_end(struct daemon *d)
{
	if (d->srv) {
		http_server_stop(d->srv);
		d->srv = NULL;
	}
	if (d->token) {
		explicit_bzero(d->token, strlen(d->token));
		free(d->token);
		d->token = NULL;
	}
}
