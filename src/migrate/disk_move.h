/* Storage migration of a running VM's disk on its own host (disk_move.c). */
#ifndef GLIDE_MIGRATE_DISK_MOVE_H
#define GLIDE_MIGRATE_DISK_MOVE_H
#include "api/http.h"
#include "monitor/monitor.h"

/* POST /v1/vm/disk-move {disk, path}: starts moving disk `disk` to the new
 * file `path` (created; never an existing one); 202 with its status. */
int disk_move_api_start(void *ctx, const struct http_request *req, json_t **resp);
/* GET /v1/vm/disk-move: the last move's status {state: running|completed|
 * failed, disk, from, to, bytes_copied, copy_total, writes_mirrored,
 * elapsed_ms, stall_ms (completed), error (failed)}. */
int disk_move_api_status(void *ctx, const struct http_request *req, json_t **resp);
/* POST /v1/vm/disk-move/cancel: the move stops, the VM stays on its file. */
int disk_move_api_cancel(void *ctx, const struct http_request *req, json_t **resp);
/* The monitor is stopping: a running move is cancelled and waited for. */
void disk_move_cancel(struct monitor *m);
#endif
