/* `glide vm run`: create a VM from a boot source, a snapshot or an incoming
 * migration, serve its HTTP+JSON API on a UNIX socket, and stay in the
 * foreground until the guest shuts down or we are told to stop.
 *
 * Exit status: 0 after a clean shutdown (API, SIGINT/SIGTERM, guest reset,
 * or the VM migrated away), (value << 1) | 1 after a debug-exit write,
 * 1 for a start-up error, 2 when a vCPU failed. */
#include "monitor/monitor.h"
#include "migrate/snapshot.h"
#include "devices/virtio_dev.h"
#include "vmm/config.h"
#include "devices/devices.h"
#include "api/http.h"
#include "migrate/migrate.h"
#include "migrate/disk_move.h"
#include "migrate/wire.h"
#include "common/util.h"
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>


json_t *monitor_status_json(struct monitor *m)
{
	struct vm *vm = &m->vm;
	uint64_t exits = 0, io = 0, mmio = 0, throttle = 0;

	for (int i = 0; i < vm->nvcpus; i++) {
		exits += vm->vcpus[i].exits;
		io += vm->vcpus[i].io_exits;
		mmio += vm->vcpus[i].mmio_exits;
		throttle += vm->vcpus[i].throttle_ns;
	}
	pthread_mutex_lock(&vm->lock);
	const char *state = m->migrated_away ? "migrated" : m->incoming ? "incoming" : vm_state_name(vm->state);
	uint64_t uptime = vm->started_ns ? (now_ns() - vm->started_ns) / 1000000 : 0;
	pthread_mutex_unlock(&vm->lock);
	json_t *j = json_pack("{s:s, s:s, s:i, s:I, s:I, s:i, s:{s:I, s:I, s:I}, s:I, s:i, s:o}",
			 "state", state, "name", vm->cfg.name, "vcpus", vm->nvcpus,
			 "memory", (json_int_t)vm->cfg.memory_bytes, "uptime_ms", (json_int_t)uptime,
			 "tsc_khz", (int)vm->tsc_khz, "exits", "total", (json_int_t)exits, "io", (json_int_t)io,
			 "mmio", (json_int_t)mmio, "sdps_throttle_us", (json_int_t)(throttle / 1000),
			 "pid", (int)getpid(), "config", vm_config_to_json(&vm->cfg));
	if (j && !m->incoming && !m->migrated_away) {
		json_t *devs = devices_status_json(vm);
		json_object_update(j, devs);
		json_decref(devs);
	}
	return j;
}

static int api_status(void *ctx, const struct http_request *req, json_t **resp)
{
	*resp = monitor_status_json(ctx);
	return 200;
}

int monitor_op_begin(struct monitor *m, const char *what, char *err, size_t errlen)
{
	pthread_mutex_lock(&m->op_lock);
	const char *busy = m->op_busy;
	if (!busy)
		m->op_busy = what;
	pthread_mutex_unlock(&m->op_lock);
	if (busy) {
		errf(err, errlen, "a %s is in progress; try again when it has ended", busy);
		return -EBUSY;
	}
	return 0;
}

void monitor_op_end(struct monitor *m)
{
	pthread_mutex_lock(&m->op_lock);
	m->op_busy = NULL;
	pthread_mutex_unlock(&m->op_lock);
}

/* Why the VM's run state cannot be changed through the API now, or NULL.
 * Called with op_lock held. */
static const char *run_state_locked_reason(struct monitor *m, char *buf, size_t len)
{
	if (m->op_busy) {
		snprintf(buf, len, "a %s is in progress", m->op_busy);
		return buf;
	}
	if (m->incoming)
		return "the VM is still arriving (incoming migration)";
	if (m->migrated_away)
		return "the VM migrated away";
	if (m->vm.quit || m->vm.state == VM_STATE_SHUTDOWN)
		return "the VM is shutting down";
	if (m->vm.state == VM_STATE_MASKED)
		return "the VM has not started";
	return NULL;
}

/* Pause and resume hold op_lock for their whole (short) duration, so they
 * never interleave with each other or with a long operation. */
static int api_pause_resume(struct monitor *m, bool pause, json_t **resp)
{
	char buf[128];
	pthread_mutex_lock(&m->op_lock);
	const char *why = run_state_locked_reason(m, buf, sizeof(buf));
	int rc = why ? 0 : pause ? vm_pause(&m->vm) : vm_resume(&m->vm);
	pthread_mutex_unlock(&m->op_lock);
	if (why || rc) {
		*resp = http_error("the VM cannot be %s now: %s", pause ? "paused" : "resumed",
				   why ? why : "it is shutting down");
		return 409;
	}
	*resp = monitor_status_json(m);
	return 200;
}

static int api_pause(void *ctx, const struct http_request *req, json_t **resp)
{
	return api_pause_resume(ctx, true, resp);
}

static int api_resume(void *ctx, const struct http_request *req, json_t **resp)
{
	return api_pause_resume(ctx, false, resp);
}

static int api_shutdown(void *ctx, const struct http_request *req, json_t **resp)
{
	struct monitor *m = ctx;
	migrate_cancel(m, "the VM was shut down through the API");
	disk_move_cancel(m);
	vm_request_exit(&m->vm, 0, "shutdown requested through the API");
	*resp = json_pack("{s:s}", "state", "shutdown");
	return 200;
}

#define MEMSAVE_PEEK_MAX (1u << 20)

static int api_snapshot(void *ctx, const struct http_request *req, json_t **resp)
{
	struct monitor *m = ctx;
	struct monitor_snapshot_request r;
	char err[512];
	uint64_t t0 = now_ns(), paused_ns;
	int rc;

	if (monitor_snapshot_parse(req->body, &r, err, sizeof(err))) {
		*resp = http_error("%s", err);
		return 400;
	}
	if (m->incoming || m->migrated_away || m->vm.state == VM_STATE_MASKED) {
		*resp = http_error("this VM cannot be snapshotted now (%s)", m->incoming ? "incoming migration"
						       : m->migrated_away ? "it migrated away" : "not started");
		return 409;
	}
	if (monitor_op_begin(m, "snapshot", err, sizeof(err))) {
		*resp = http_error("%s", err);
		return 409;
	}
	bool was_paused = m->vm.pause_requested; /* the user's pause: op_busy keeps it still */
	if (vm_pause(&m->vm)) {
		monitor_op_end(m);
		*resp = http_error("the VM is shutting down");
		return 409;
	}
	paused_ns = now_ns();
	rc = snapshot_write(&m->vm, r.path, err, sizeof(err));
	uint64_t written_ns = now_ns();
	/* A failed snapshot leaves the VM as it was; a good one resumes it on
	 * request, or (suspend) ends this monitor with the VM paused: its
	 * disks flushed and unlocked first, so that the resume finds them so */
	if (!was_paused && (rc || r.resume))
		vm_resume(&m->vm);
	if (!rc && r.exit) {
		virtio_blk_release_locks(&m->vm, 0);
		vm_request_exit(&m->vm, 0, "suspended: the VM's state is in the snapshot");
		glide_log("monitor", "suspended to %s; exiting", r.path);
	}
	monitor_op_end(m);
	if (rc) {
		*resp = http_error("%s", err);
		return 500;
	}
	*resp = json_pack("{s:s, s:s, s:f, s:f}", "path", r.path, "state", r.exit ? "suspended" : vm_state_name(m->vm.state),
			  "pause_ms", (paused_ns - t0) / 1e6, "write_ms", (written_ns - paused_ns) / 1e6);
	return 200;
}

static int api_memsave(void *ctx, const struct http_request *req, json_t **resp)
{
	struct monitor *m = ctx;
	struct monitor_memsave_request r;
	char err[512];
	int rc;

	if (monitor_memsave_parse(req->body, &r, err, sizeof(err))) {
		*resp = http_error("%s", err);
		return 400;
	}
	if (m->incoming || m->migrated_away || m->vm.state == VM_STATE_MASKED) {
		*resp = http_error("this VM has no memory to save here (%s)", m->incoming ? "incoming migration"
							 : m->migrated_away ? "it migrated away" : "not started");
		return 409;
	}
	if (memsave_check_range(&m->vm.mem, r.addr, r.size, err, sizeof(err))) {
		*resp = http_error("%s", err);
		return 400;
	}
	/* A dump is a long operation: it waits for (is refused during) a
	 * migration or snapshot. A peek of at most MEMSAVE_PEEK_MAX bytes (a
	 * heartbeat page, a counter) only reads for microseconds and is allowed
	 * at any time, so that a guest can be watched while it moves. */
	bool peek = r.size <= MEMSAVE_PEEK_MAX;
	if (!peek && monitor_op_begin(m, "memsave", err, sizeof(err))) {
		*resp = http_error("%s", err);
		return 409;
	}
	rc = memsave(&m->vm.mem, r.addr, r.size, r.path, err, sizeof(err));
	if (!peek)
		monitor_op_end(m);
	if (rc) {
		*resp = http_error("%s", err);
		return rc == -EINVAL ? 400 : 500;
	}
	*resp = json_pack("{s:s, s:I, s:I}", "path", r.path, "addr", (json_int_t)r.addr, "size", (json_int_t)r.size);
	return 200;
}

/* POST /v1/vm/capture {"path": FILE, "nic": I, "count": N}: frames of NIC I
 * into a pcap file (docs/devices.md). GET /v1/vm/capture?nic=I: progress.
 * POST /v1/vm/capture/stop {"nic": I}. */
static int api_capture(void *ctx, const struct http_request *req, json_t **resp)
{
	struct monitor *m = ctx;
	struct monitor_capture_request r;
	char err[512];
	if (monitor_capture_parse(req->body, &r, err, sizeof(err))) {
		*resp = http_error("%s", err);
		return 400;
	}
	if (m->incoming || m->migrated_away || m->vm.state == VM_STATE_MASKED) {
		*resp = http_error("this VM has no NICs here (%s)", m->incoming ? "incoming migration"
						       : m->migrated_away ? "it migrated away" : "not started");
		return 409;
	}
	int rc = virtio_net_capture_start(&m->vm, r.nic, r.path, r.count, err, sizeof(err));
	if (rc) {
		*resp = http_error("%s", err);
		return rc == -ENOENT ? 404 : rc == -EBUSY ? 409 : rc == -EINVAL ? 400 : 500;
	}
	*resp = json_pack("{s:s, s:i, s:I}", "path", r.path, "nic", r.nic, "count", (json_int_t)r.count);
	return 200;
}

static int capture_progress(struct monitor *m, int nic, bool stop, json_t **resp)
{
	uint64_t written;
	bool active;
	if (m->incoming || m->migrated_away || virtio_net_capture_status(&m->vm, nic, stop, &written, &active)) {
		*resp = http_error("this VM has no NIC %d here", nic);
		return 404;
	}
	*resp = json_pack("{s:i, s:I, s:b}", "nic", nic, "written", (json_int_t)written, "active", active);
	return 200;
}

static int api_capture_status(void *ctx, const struct http_request *req, json_t **resp)
{
	const char *q = http_query(req, "nic");
	char *end;
	long nic = q ? strtol(q, &end, 10) : 0;
	if (q && (!*q || *end || nic < 0 || nic >= VM_MAX_NICS)) {
		*resp = http_error("nic must be 0 to %d", VM_MAX_NICS - 1);
		return 400;
	}
	return capture_progress(ctx, (int)nic, false, resp);
}

static int api_capture_stop(void *ctx, const struct http_request *req, json_t **resp)
{
	json_t *v = json_object_get(req->body, "nic");
	if (v && (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) >= VM_MAX_NICS)) {
		*resp = http_error("nic must be 0 to %d", VM_MAX_NICS - 1);
		return 400;
	}
	return capture_progress(ctx, v ? (int)json_integer_value(v) : 0, true, resp);
}

static const struct http_route routes[] = {
	{ "GET", "/v1/vm", api_status },
	{ "POST", "/v1/vm/pause", api_pause },
	{ "POST", "/v1/vm/resume", api_resume },
	{ "POST", "/v1/vm/shutdown", api_shutdown },
	{ "POST", "/v1/vm/snapshot", api_snapshot },
	{ "POST", "/v1/vm/memsave", api_memsave },
	{ "POST", "/v1/vm/capture", api_capture },
	{ "GET", "/v1/vm/capture", api_capture_status },
	{ "POST", "/v1/vm/capture/stop", api_capture_stop },
	{ "POST", "/v1/migration", migrate_api_start },
	{ "GET", "/v1/migration", migrate_api_status },
	{ "POST", "/v1/migration/cancel", migrate_api_cancel },
	{ "POST", "/v1/migration/resolve", migrate_api_resolve },
	{ "POST", "/v1/vm/disk-move", disk_move_api_start },
	{ "GET", "/v1/vm/disk-move", disk_move_api_status },
	{ "POST", "/v1/vm/disk-move/cancel", disk_move_api_cancel },
	{ NULL, NULL, NULL },
};

int monitor_start_api(struct monitor *m, char *err, size_t errlen)
{
	struct http_server_opts so = { .unix_path = m->api_path };
	m->api = http_server_start(&so, routes, m, err, errlen);
	return m->api ? 0 : -EADDRINUSE;
}

static void *signal_thread(void *arg)
{
	struct monitor *m = arg;
	sigset_t set;
	int sig;

	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGHUP);
	if (sigwait(&set, &sig) == 0) {
		glide_log("monitor", "signal %d: shutting down", sig);
		if (m->incoming || m->vm.nvcpus == 0) { /* nothing runs yet: discard */
			if (m->api_path[0])
				unlink(m->api_path);
			migrate_incoming_discard(m); /* partial disk copies go too */
			_exit(1);
		}
		migrate_cancel(m, sig == SIGTERM ? "the monitor was stopped (SIGTERM)"
				  : sig == SIGINT ? "the monitor was stopped (SIGINT)" : "the monitor was stopped (SIGHUP)");
		disk_move_cancel(m);
		vm_request_exit(&m->vm, 0, "stopped by signal");
	}
	return NULL;
}

static void usage_run(FILE *out)
{
	fprintf(out,
		"usage: glide vm run --memory SIZE [--vcpus N] --api SOCKET [--serial FILE|-] [--name NAME]\n"
		"                    (--boot IMAGE | --elf FILE | --kernel BZIMAGE [--initrd FILE] [--cmdline STR]\n"
		"                     | --restore SNAPSHOT | --incoming ADDR[,ADDR...] --key-file F)\n"
		"                    [--paused] [--log FILE] [--cpuid-mask LEAF.REG=MASK,...]\n"
		"                    [--stall-timeout SECONDS]   (incoming: a silent stream fails it; default 30)\n"
		"                    [--disk-dir DIR]   (incoming: disks the source copies (--disk-to) may be created here)\n"
		"                    [--nic tap=NAME|bridge=BR[,vlan=N][,mac=MAC][,rate=RATE]\n"
		"                           [,forged-transmits|mac-changes|promiscuous=accept|reject]]... (at most %d)\n"
		"                    [--disk PATH[,readonly][,direct][,aio=io_uring|threads|sync]]... (at most %d)\n"
		"                    [--announce ROUNDS[,INITIAL_MS[,STEP_MS[,MAX_MS]]]]  (incoming: RARP after the\n"
		"                     switchover; default 5,50,100,550; 0 turns it off)\n", VM_MAX_NICS, VM_MAX_DISKS);
}

int monitor_main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "memory", required_argument, 0, 'm' }, { "vcpus", required_argument, 0, 'c' },
		{ "api", required_argument, 0, 'a' },    { "serial", required_argument, 0, 's' },
		{ "boot", required_argument, 0, 'b' },   { "elf", required_argument, 0, 'e' },
		{ "kernel", required_argument, 0, 'k' }, { "initrd", required_argument, 0, 'i' },
		{ "cmdline", required_argument, 0, 'l' }, { "restore", required_argument, 0, 'r' },
		{ "incoming", required_argument, 0, 'I' }, { "key-file", required_argument, 0, 'K' },
		{ "paused", no_argument, 0, 'p' },       { "name", required_argument, 0, 'n' },
		{ "log", required_argument, 0, 'L' },    { "cpuid-mask", required_argument, 0, 'M' },
		{ "stall-timeout", required_argument, 0, 'S' },
		{ "nic", required_argument, 0, 'N' },    { "disk", required_argument, 0, 'D' },
		{ "announce", required_argument, 0, 'A' }, { "disk-dir", required_argument, 0, 'Q' },
		{ "help", no_argument, 0, 'h' },         { 0, 0, 0, 0 },
	};
	static struct monitor mon;
	struct monitor *m = &mon;
	struct vm_create_args args = { 0 };
	const char *api = NULL, *serial = NULL, *boot = NULL, *elf = NULL, *kernel = NULL, *initrd = NULL;
	const char *cmdline = "console=ttyS0", *restore = NULL, *incoming = NULL, *key_file = NULL;
	bool paused = false, have_memory = false, have_vcpus = false;
	char err[512] = "";
	int opt, rc, snap_fd = -1, serial_fd = -1;
	uint64_t v;
	pthread_t sig_thread;
	sigset_t set;

	cpuid_mask_all_ones(&args.cfg);
	args.cfg.vcpus = 1;
	m->announce = (struct net_announce)NET_ANNOUNCE_DEFAULT;
	optind = 1;
	while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (opt) {
		case 'm':
			if (parse_size(optarg, &v) || v == 0) {
				fprintf(stderr, "glide: --memory '%s' is not a size (examples: 256M, 4G)\n", optarg);
				return 1;
			}
			args.cfg.memory_bytes = v;
			have_memory = true;
			break;
		case 'c': {
			char *end;
			long n = strtol(optarg, &end, 10);
			if (*end || n < 1 || n > VM_MAX_VCPUS) {
				fprintf(stderr, "glide: --vcpus must be an integer from 1 to %d (got '%s')\n", VM_MAX_VCPUS, optarg);
				return 1;
			}
			args.cfg.vcpus = (int)n;
			have_vcpus = true;
			break;
		}
		case 'a': api = optarg; break;
		case 's': serial = optarg; break;
		case 'b': boot = optarg; break;
		case 'e': elf = optarg; break;
		case 'k': kernel = optarg; break;
		case 'i': initrd = optarg; break;
		case 'l': cmdline = optarg; break;
		case 'r': restore = optarg; break;
		case 'I': incoming = optarg; break;
		case 'K': key_file = optarg; break;
		case 'p': paused = true; break;
		case 'n': snprintf(args.cfg.name, sizeof(args.cfg.name), "%s", optarg); break;
		case 'L':
			if (glide_log_to(optarg))
				return 1;
			break;
		case 'M':
			if (cpuid_mask_parse_arg(optarg, args.cfg.cpuid_mask)) {
				fprintf(stderr, "glide: --cpuid-mask '%s': expected LEAF.REG=MASK[,...] (MASK hex or decimal) with LEAF.REG one of %s\n",
					optarg, cpuid_mask_reg_list());
				return 1;
			}
			break;
		case 'Q':
			if (!realpath(optarg, m->disk_dir)) {
				fprintf(stderr, "glide: --disk-dir %s: %s\n", optarg, strerror(errno));
				return 1;
			}
			break;
		case 'S': {
			double sec;
			if (parse_seconds(optarg, WIRE_STALL_TIMEOUT_MIN_S, WIRE_STALL_TIMEOUT_MAX_S, &sec)) {
				fprintf(stderr, "glide: --stall-timeout must be seconds, 0.1 to 3600 (got '%s')\n", optarg);
				return 1;
			}
			m->stall_timeout_ms = (uint64_t)(sec * 1000 + 0.5);
			break;
		}
		case 'N':
			if (m->devices.nnics >= VM_MAX_NICS) {
				fprintf(stderr, "glide: at most %d --nic\n", VM_MAX_NICS);
				return 1;
			}
			if (nic_spec_parse(optarg, &m->devices.nics[m->devices.nnics], err, sizeof(err))) {
				fprintf(stderr, "glide: %s\n", err);
				return 1;
			}
			m->devices.nnics++;
			break;
		case 'D':
			if (m->devices.ndisks >= VM_MAX_DISKS) {
				fprintf(stderr, "glide: at most %d --disk\n", VM_MAX_DISKS);
				return 1;
			}
			if (disk_spec_parse(optarg, &m->devices.disks[m->devices.ndisks], err, sizeof(err))) {
				fprintf(stderr, "glide: %s\n", err);
				return 1;
			}
			m->devices.ndisks++;
			break;
		case 'A':
			if (net_announce_parse(optarg, &m->announce, err, sizeof(err))) {
				fprintf(stderr, "glide: %s\n", err);
				return 1;
			}
			break;
		case 'h': usage_run(stdout); return 0;
		default: usage_run(stderr); return 1;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "glide: unexpected argument '%s'\n", argv[optind]);
		usage_run(stderr);
		return 1;
	}
	int sources = !!boot + !!elf + !!kernel + !!restore + !!incoming;
	if (sources != 1) {
		fprintf(stderr, "glide: give exactly one of --boot, --elf, --kernel, --restore, --incoming\n");
		usage_run(stderr);
		return 1;
	}
	if (!api) {
		fprintf(stderr, "glide: --api SOCKET is required (the VM's API socket)\n");
		return 1;
	}
	if (incoming && !key_file) {
		fprintf(stderr, "glide: --incoming needs --key-file F (the one-time migration key)\n");
		return 1;
	}
	if (restore) {
		if (snapshot_open(restore, &snap_fd, &args.cfg, err, sizeof(err))) {
			fprintf(stderr, "glide: %s\n", err);
			return 1;
		}
	} else if (!incoming && !have_memory) {
		fprintf(stderr, "glide: --memory SIZE is required (e.g. --memory 256M)\n");
		return 1;
	}
	if (incoming && !have_vcpus)
		args.cfg.vcpus = 0; /* 0: take what the stream says (memory likewise) */
	if (!incoming && !restore && devices_config_from_specs(&args.cfg, &m->devices, err, sizeof(err))) {
		fprintf(stderr, "glide: %s\n", err);
		return 1;
	}
	if (boot && access(boot, R_OK)) {
		fprintf(stderr, "glide: cannot read boot image %s: %s\n", boot, strerror(errno));
		return 1;
	}
	if (elf && access(elf, R_OK)) {
		fprintf(stderr, "glide: cannot read ELF %s: %s\n", elf, strerror(errno));
		return 1;
	}
	if (kernel && access(kernel, R_OK)) {
		fprintf(stderr, "glide: cannot read kernel %s: %s\n", kernel, strerror(errno));
		return 1;
	}
	if (serial) {
		serial_fd = !strcmp(serial, "-") ? dup(STDOUT_FILENO)
						 : open(serial, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
		if (serial_fd < 0) {
			fprintf(stderr, "glide: cannot open serial output %s: %s\n", serial, strerror(errno));
			return 1;
		}
	}

	/* SIGINT/SIGTERM go to the signal thread only; vCPU threads unblock their kick signal. */
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);

	pthread_mutex_init(&m->op_lock, NULL);
	snprintf(m->api_path, sizeof(m->api_path), "%s", api);

	pthread_create(&sig_thread, NULL, signal_thread, m);
	if (incoming) {
		rc = migrate_incoming(m, incoming, key_file, have_memory || have_vcpus ? &args.cfg : NULL, serial_fd, err, sizeof(err));
		if (rc < 0) {
			fprintf(stderr, "glide: %s\n", err);
			return 1;
		}
		goto run;
	}
	rc = vm_create(&m->vm, &args, err, sizeof(err));
	if (rc) {
		fprintf(stderr, "glide: %s\n", err);
		return 1;
	}
	if (devices_init(&m->vm, serial_fd)) {
		fprintf(stderr, "glide: cannot create devices\n");
		return 1;
	}
	if (devices_create_virtio(&m->vm, &m->devices, err, sizeof(err))) {
		fprintf(stderr, "glide: %s\n", err);
		return 1;
	}
	if (restore) {
		uint64_t t0 = now_ns();
		rc = snapshot_load(&m->vm, snap_fd, err, sizeof(err));
		close(snap_fd);
		if (rc) {
			fprintf(stderr, "glide: restoring %s failed: %s\n", restore, err);
			return 1;
		}
		glide_log("monitor", "restored %s in %.1f ms", restore, (now_ns() - t0) / 1e6);
	} else {
		struct boot_plan plan;
		memset(&plan, 0, sizeof(plan));
		if (boot)
			rc = boot_load_raw(&m->vm.mem, boot, &plan, err, sizeof(err));
		else if (elf)
			rc = boot_load_elf(&m->vm.mem, m->vm.nvcpus, elf, &plan, err, sizeof(err));
		else
			rc = boot_load_linux(&m->vm.mem, m->vm.nvcpus, kernel, initrd, cmdline, &plan, err, sizeof(err));
		if (!rc)
			rc = vm_boot(&m->vm, &plan, err, sizeof(err));
		if (rc) {
			fprintf(stderr, "glide: %s\n", err);
			return 1;
		}
	}
	if (monitor_start_api(m, err, sizeof(err))) {
		fprintf(stderr, "glide: %s\n", err);
		return 1;
	}
	if (paused)
		vm_pause(&m->vm);
	if (vm_start_vcpus(&m->vm, err, sizeof(err))) {
		fprintf(stderr, "glide: %s\n", err);
		return 1;
	}
run:
	glide_log("monitor", "VM %s running: %d vCPUs, %llu MiB, API %s", m->vm.cfg.name[0] ? m->vm.cfg.name : "(unnamed)",
		  m->vm.nvcpus, (unsigned long long)(m->vm.cfg.memory_bytes >> 20), api);
	rc = vm_wait_exit(&m->vm);
	glide_log("monitor", "VM stopped: %s (exit status %d)", m->vm.exit_reason, rc);
	migrate_cancel(m, m->vm.exit_reason);
	disk_move_cancel(m);
	if (m->migrated_away) {
		/* The VM now runs elsewhere: keep the API up until this migration's
		 * result has been read once (at most MIGRATION_RESULT_WAIT_MS),
		 * then release everything. */
		for (int i = 0; i < MIGRATION_RESULT_WAIT_MS / 50 && !migrate_result_served(m); i++)
			sleep_ns(50000000);
	}
	http_server_stop(m->api);
	m->api = NULL;
	if (rc == 2)
		fprintf(stderr, "glide: %s\n", m->vm.exit_reason);
	return rc;
}
