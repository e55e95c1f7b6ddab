/* The VM monitor process (`glide vm run`): one VM, its API socket, and the
 * migration engine's source and destination sides. */
#ifndef GLIDE_VMM_MONITOR_H
#define GLIDE_VMM_MONITOR_H
#include <jansson.h>
#include <pthread.h>
#include "vmm/vm.h"

struct migration;

struct monitor {
	struct vm vm;
	struct http_server *api;
	char api_path[512];
	pthread_mutex_t op_lock;     /* one long operation (snapshot, migration) at a time */
	struct migration *migration; /* outgoing migration, NULL when none */
	json_t *last_migration;      /* final statistics of the last outgoing migration */
	bool migrated_away;          /* source released after a completed migration */
	bool final_status_served;    /* the last migration's result was read through the API */
	bool incoming;               /* waiting for / receiving an incoming migration */
};

int monitor_main(int argc, char **argv);
int monitor_start_api(struct monitor *m, char *err, size_t errlen);
json_t *monitor_status_json(struct monitor *m);
#endif
