/* The VM monitor process (`glide vm run`): one VM, its API socket, and the
 * migration engine's source and destination sides. */
#ifndef GLIDE_VMM_MONITOR_H
#define GLIDE_VMM_MONITOR_H
#include <jansson.h>
#include <pthread.h>
#include "vmm/vm.h"
#include "devices/devices.h"
#include "devices/virtio_net.h"

struct migration;
struct disk_move;

struct monitor {
	struct vm vm;
	struct http_server *api;
	char api_path[512];
	/* Operations that pause, resume or read the whole VM exclude each
	 * other: op_busy names the long one in progress (a migration, from its
	 * start until the source runs again or is released; a snapshot; a
	 * memsave), and op_lock guards it and is held for the whole of a short
	 * one (an API pause or resume). */
	pthread_mutex_t op_lock;
	const char *op_busy;         /* "migration", "snapshot", "memsave", "disk move" or NULL */
	struct migration *migration; /* latest outgoing migration, NULL when none */
	struct disk_move *disk_move; /* latest storage move (disk_move.c), NULL when none */
	int migrations_started;      /* ids of outgoing migrations: 1, 2, ... */
	bool migrated_away;          /* source released after a completed migration */
	bool incoming;               /* waiting for / receiving an incoming migration */
	uint64_t stall_timeout_ms;   /* incoming: a stream silent this long fails it (0: default) */
	char disk_dir[4096];         /* incoming --disk-dir: where disks that arrive as copies may be created ("": none) */
	void *incoming_ctx;          /* dest.c's state while an incoming migration runs */
	struct vm_device_specs devices; /* --nic / --disk: this host's backends */
	struct net_announce announce;   /* --announce: after an incoming switchover */
};

/* Starts a long operation: 0, or -EBUSY with "a migration is in progress"
 * (or which one) in err. monitor_op_end() ends it. */
int monitor_op_begin(struct monitor *m, const char *what, char *err, size_t errlen);
void monitor_op_end(struct monitor *m);

/* requests.c: the API's request bodies, parsed without acting (0, or
 * -EINVAL with err set). Strings point into body. */
struct monitor_snapshot_request {
	const char *path;            /* absolute */
	bool resume;
	bool exit;                   /* suspend: once written, the disks are flushed and released and the
	                              * monitor exits with the VM still paused (not with resume) */
};
int monitor_snapshot_parse(json_t *body, struct monitor_snapshot_request *r, char *err, size_t errlen);
struct monitor_memsave_request {
	const char *path;            /* absolute */
	uint64_t addr, size;         /* not yet checked against the VM's memory (memsave_check_range) */
};
int monitor_memsave_parse(json_t *body, struct monitor_memsave_request *r, char *err, size_t errlen);

struct monitor_capture_request {
	const char *path;            /* absolute */
	int nic;                     /* 0 .. VM_MAX_NICS-1, default 0 */
	uint64_t count;              /* 1 .. NET_CAPTURE_MAX_FRAMES, default 1000 */
};
int monitor_capture_parse(json_t *body, struct monitor_capture_request *r, char *err, size_t errlen);

int monitor_main(int argc, char **argv);
int monitor_start_api(struct monitor *m, char *err, size_t errlen);
json_t *monitor_status_json(struct monitor *m);
#endif
