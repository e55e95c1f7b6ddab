/* The migration engine's entry points, as the monitor and its API see them. */
#ifndef GLIDE_MIGRATE_MIGRATE_H
#define GLIDE_MIGRATE_MIGRATE_H
#include "api/http.h"
#include "monitor/monitor.h"

/* Destination: prepare a masked VM, listen on addrs, receive, restore, run.
 * Returns once the VM runs (>= 0) or with an error (< 0, err set).
 * cfg may be NULL (configuration comes from the stream); its non-zero
 * memory_bytes and vcpus must match what the stream brings. */
int migrate_incoming(struct monitor *m, const char *addrs, const char *key_file, const struct vm_config *cfg,
		     int serial_fd, char *err, size_t errlen);
/* Removes the disk copies an incoming migration created (the monitor is
 * being stopped before the VM runs here). */
void migrate_incoming_discard(struct monitor *m);
/* Source: API handlers. */
int migrate_api_start(void *ctx, const struct http_request *req, json_t **resp);
int migrate_api_status(void *ctx, const struct http_request *req, json_t **resp);
int migrate_api_cancel(void *ctx, const struct http_request *req, json_t **resp);
int migrate_api_resolve(void *ctx, const struct http_request *req, json_t **resp);
bool migrate_in_progress(struct monitor *m);
/* Cancels an outgoing migration (if any) because the monitor is stopping
 * (why: the reason, logged and reported) and waits until it has ended. */
void migrate_cancel(struct monitor *m, const char *why);
/* After a completed migration the source monitor keeps its API up until
 * the result has been read once (or this long has passed). */
#define MIGRATION_RESULT_WAIT_MS 30000
bool migrate_result_served(struct monitor *m);
#endif
