/* The destination side of a live migration (`glide vm run --incoming`),
 * in the order of seed 002, read top to bottom from migrate_incoming():
 *
 *  0. listen: on the migration addresses, with the monitor's API up (the
 *     VM reports "incoming"). accept.c takes connections until every
 *     stream of one authenticated session is in; anything else is refused
 *     and logged, and waiting goes on.
 *  1. prepare: stream 0 brings the VM configuration, CPUID and list of
 *     live sections. They are checked against this host and this
 *     monitor's options, then the VM is created masked (vCPUs not
 *     running) and every live section gets its load state.
 *  2. pre-copy: one receiver thread per stream hands LIVE frames to their
 *     live section, which validates a frame whole before it writes (RAM,
 *     ram.c: straight into guest memory; zero runs only touch pages that
 *     were written before). SYNC is answered once everything before it is
 *     applied, so the source measures end to end.
 *  3. checkpoint: every stream ends with FINAL; stream 0 then brings the
 *     device and vCPU state (STATE), which is parsed, then applied once
 *     all FINALs are in.
 *  4. switchover: RESTORED tells the source the VM is ready; only on GO
 *     (the source's commit point) do the vCPUs run here (disk copies stop
 *     being partial just before), and RUNNING reports it.
 *  5. anything going wrong before GO: ABORT with the reason to the source
 *     (which resumes its VM) and the masked VM is discarded (the process
 *     exits). */
#include "migrate/migration.h"
#include "migrate/disk.h"
#include "migrate/accept.h"
#include "migrate/prefault.h"
#include "devices/devices.h"
#include "devices/virtio_dev.h"
#include "devices/virtio_net.h"
#include "state/state.h"
#include "vmm/config.h"
#include "common/net.h"
#include "common/util.h"
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define INCOMING_LISTEN_BACKLOG 512 /* a burst of connects must not overflow the accept queue */

struct incoming {
	struct monitor *mon;
	struct vm *vm;
	const struct vm_config *want_cfg;
	int serial_fd;
	uint8_t key[WIRE_KEY_BYTES];
	bool can_encrypt;
	struct wire_stream streams[WIRE_MAX_STREAMS];
	uint32_t nstreams;
	pthread_t threads[WIRE_MAX_STREAMS];
	const struct state_section_ops *live_ops[LIVE_SECTIONS_MAX]; /* by LIVE frame section id */
	struct live_dest live[LIVE_SECTIONS_MAX];
	int nlive;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool vm_created;
	bool verify;            /* the source sends a RAM digest after STATE (--verify) */
	bool forward;           /* after RUNNING the source forwards frames (NET ... NET_END) */
	bool abort_sent;        /* the source was told why (ABORT on stream 0) */
	bool final[WIRE_MAX_STREAMS];
	int finals;
	bool done, failed;
	char error[512];
	uint64_t frames;
	struct prefault prefault; /* the memory the source's guest touched, made present ahead of its pages */
	uint32_t disk_copy;     /* disks arriving as copies (bit i: disk i) */
	char *created[VM_MAX_DISKS]; /* the files made for them: removed unless the VM runs here */
	int copy_fd[VM_MAX_DISKS];   /* ... each held locked and marked partial until the VM runs on it */
};

struct receiver_arg {
	struct incoming *in;
	int index;
};

static void *receiver(void *arg);
static int handle_config(struct incoming *in, struct wire_frame *f, char *err, size_t errlen);
static int setup_live(struct incoming *in, json_t *list, char *err, size_t errlen);
static int prepare_disk_copies(struct incoming *in, json_t *list, const struct vm_config *cfg,
			       struct vm_device_specs *specs, char *err, size_t errlen);
static int apply_live(struct incoming *in, struct wire_frame *f, char *err, size_t errlen);
static int switchover(struct incoming *in, struct wire_frame *state, char *err, size_t errlen);
static int verify_memory(struct incoming *in, json_t **verified, char *err, size_t errlen);
static int commit_disk_copies(struct incoming *in, char *err, size_t errlen);
static void cleanup_live(struct incoming *in);
static int start_prefault(struct incoming *in, json_t *res, char *err, size_t errlen);
static void in_fail(struct incoming *in, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void send_json_frame(struct wire_stream *s, uint32_t type, json_t *j);
static void send_abort(struct incoming *in, const char *why);
static void receive_forwarded(struct incoming *in, struct wire_stream *s);
static bool test_fault(const char *point);

/* ---- the incoming migration, start to end ---- */

int migrate_incoming(struct monitor *m, const char *addrs, const char *key_file, const struct vm_config *cfg,
		     int serial_fd, char *err, size_t errlen)
{
	struct incoming *in = calloc(1, sizeof(*in));
	char list[WIRE_MAX_STREAMS][128];
	int listeners[WIRE_MAX_STREAMS], nl = 0, n, rc = 0;
	const char *no_enc = getenv("GLIDE_MIGRATION_NO_ENCRYPTION");

	if (!in)
		return -ENOMEM;
	in->mon = m;
	m->incoming_ctx = in;
	in->vm = &m->vm;
	in->vm->vm_fd = in->vm->kvm_fd = -1;
	in->want_cfg = cfg;
	in->serial_fd = serial_fd;
	in->can_encrypt = !(no_enc && *no_enc == '1');
	pthread_mutex_init(&in->lock, NULL);
	pthread_cond_init(&in->cond, NULL);
	for (int i = 0; i < WIRE_MAX_STREAMS; i++)
		in->streams[i].fd = -1;
	if ((rc = read_key_file(key_file, in->key, err, errlen)))
		goto out;
	/* copies that destinations which died (SIGKILL) left here go first */
	if (m->disk_dir[0])
		disk_copy_sweep(m->disk_dir);
	n = wire_parse_addrs(addrs, list, WIRE_MAX_STREAMS);
	if (n < 0) {
		errf(err, errlen, "--incoming '%s' must be HOST:PORT[,HOST:PORT...]", addrs);
		rc = -EINVAL;
		goto out;
	}
	for (int i = 0; i < n; i++) {
		int fd = net_listen_tcp(list[i], INCOMING_LISTEN_BACKLOG, err, errlen);
		if (fd < 0) {
			rc = fd;
			goto out;
		}
		listeners[nl++] = fd;
	}
	m->incoming = true;
	if ((rc = monitor_start_api(m, err, errlen)))
		goto out;
	glide_log("incoming", "waiting for a migration on %s", addrs);
	rc = incoming_accept(listeners, nl, in->key, in->can_encrypt, in->streams, &in->nstreams, err, errlen);
	if (rc) {
		glide_log("incoming", "migration failed: %s", err);
		goto out;
	}
	uint32_t started = 0;
	for (uint32_t i = 0; i < in->nstreams; i++) {
		wire_set_stall_timeout(&in->streams[i], m->stall_timeout_ms);
		struct receiver_arg *ra = malloc(sizeof(*ra));
		if (ra) {
			ra->in = in;
			ra->index = (int)i;
		}
		if (!ra || pthread_create(&in->threads[i], NULL, receiver, ra)) {
			free(ra);
			in_fail(in, "cannot start the receiver of stream %u", i);
			break;
		}
		started++;
	}
	pthread_mutex_lock(&in->lock);
	while (!in->done && !in->failed)
		pthread_cond_wait(&in->cond, &in->lock);
	pthread_mutex_unlock(&in->lock);
	for (uint32_t i = 0; i < started; i++)
		pthread_join(in->threads[i], NULL);
	if (in->failed) {
		glide_log("incoming", "migration failed: %s", in->error);
		if (in->streams[0].fd >= 0 && !in->abort_sent) /* the source has not heard why yet */
			send_abort(in, in->error);
		errf(err, errlen, "incoming migration failed: %s (the prepared VM is discarded)", in->error);
		rc = -EIO;
	}
out:
	for (int i = 0; i < nl; i++)
		close(listeners[i]);
	for (uint32_t i = 0; i < WIRE_MAX_STREAMS; i++)
		if (in->streams[i].fd >= 0 || in->streams[i].tx_buf)
			wire_close(&in->streams[i]);
	explicit_bzero(in->key, sizeof(in->key));
	/* A failed destination stops answering before it stops saying
	 * "incoming": nobody may see a discarded VM as one it has (a resolver
	 * of an in-doubt switchover decides by that state). */
	if (rc && m->api) {
		http_server_stop(m->api);
		m->api = NULL;
	}
	m->incoming = false;
	m->incoming_ctx = NULL;
	cleanup_live(in);
	for (int i = 0; i < VM_MAX_DISKS; i++) {
		if (in->created[i] && rc) { /* a copy that did not become the VM's disk */
			if (unlink(in->created[i]) == 0)
				glide_log("incoming", "removed the partial copy of disk %d, %s", i, in->created[i]);
		}
		if (in->created[i] && in->copy_fd[i] >= 0)
			close(in->copy_fd[i]);
		free(in->created[i]);
	}
	free(in);
	return rc;
}

/* After RUNNING: frames that reached the source's taps after its
 * checkpoint, handed to the guest's NICs. The VM runs already; whatever
 * goes wrong here only ends the forwarding. Bounded by the source's own
 * limit plus a stall timeout. */
static void receive_forwarded(struct incoming *in, struct wire_stream *s)
{
	struct wire_frame f;
	char err[256];
	uint64_t got = 0;

	wire_set_stall_timeout(s, 3000);
	while (wire_recv(s, &f, err, sizeof(err)) == 0 && f.type == FRAME_NET) {
		uint32_t nic;
		if (f.len < 4)
			break;
		memcpy(&nic, f.payload, 4);
		if (virtio_net_inject(in->vm, (int)nic, f.payload + 4, f.len - 4) == 0)
			got++;
	}
	glide_log("incoming", "%llu forwarded frame(s) from the source handed to the guest", (unsigned long long)got);
}

/* One receiver thread per stream: frames in the order the source sends them. */
static void *receiver(void *arg)
{
	struct receiver_arg *ra = arg;
	struct incoming *in = ra->in;
	struct wire_stream *s = &in->streams[ra->index];
	struct wire_frame f;
	char err[512];
	int rc;

	free(ra);
	for (;;) {
		rc = wire_recv(s, &f, err, sizeof(err));
		if (rc) {
			in_fail(in, "%s", err);
			return NULL;
		}
		switch (f.type) {
		case FRAME_PROBE:
			break;
		case FRAME_SYNC: /* everything before it is applied: tell the source */
			if ((rc = wire_send(s, FRAME_SYNC_ACK, 0, err, sizeof(err)))) {
				in_fail(in, "%s", err);
				return NULL;
			}
			break;
		case FRAME_LIVE:
		case FRAME_MIRROR: /* a guest write on the source waits for this one's answer */
			if ((rc = apply_live(in, &f, err, sizeof(err))) ||
			    (f.type == FRAME_MIRROR && (rc = wire_send(s, FRAME_MIRROR_ACK, 0, err, sizeof(err))))) {
				in_fail(in, "%s", err);
				return NULL;
			}
			break;
		case FRAME_CONFIG:
			if (s->index != 0 || in->vm_created) {
				in_fail(in, "protocol error: unexpected CONFIG");
				return NULL;
			}
			rc = handle_config(in, &f, err, sizeof(err));
			if (rc) {
				glide_log("incoming", "refusing the VM: %s", err);
				send_abort(in, err);
				in_fail(in, "refused the VM: %s", err);
				return NULL;
			}
			/* "verify": this destination can compare RAM digests (--verify) */
			send_json_frame(s, FRAME_CONFIG_OK, json_pack("{s:b, s:b}", "ok", 1, "verify", 1));
			break;
		case FRAME_FINAL:
			pthread_mutex_lock(&in->lock);
			if (!in->final[s->index]) {
				in->final[s->index] = true;
				in->finals++;
			}
			pthread_cond_broadcast(&in->cond);
			pthread_mutex_unlock(&in->lock);
			if (s->index != 0)
				return NULL;
			break;
		case FRAME_STATE:
			if (test_fault("exit-on-state")) /* tests: destination dies mid-switchover */
				_exit(3);
			if (s->index != 0 || !in->vm_created) {
				in_fail(in, "protocol error: unexpected STATE");
				return NULL;
			}
			rc = switchover(in, &f, err, sizeof(err));
			if (rc) {
				in_fail(in, "switchover failed: %s", err);
				return NULL;
			}
			if (in->forward)
				receive_forwarded(in, s);
			pthread_mutex_lock(&in->lock);
			in->done = true;
			pthread_cond_broadcast(&in->cond);
			pthread_mutex_unlock(&in->lock);
			return NULL;
		case FRAME_ABORT: {
			json_t *j = json_loadb((char *)f.payload, f.len, 0, NULL);
			json_t *e = j ? json_object_get(j, "error") : NULL;
			in_fail(in, "the source aborted the migration: %s", json_is_string(e) ? json_string_value(e) : "no reason");
			json_decref(j);
			return NULL;
		}
		default:
			in_fail(in, "protocol error: unexpected %s frame on stream %d", wire_frame_name(f.type), s->index);
			return NULL;
		}
	}
}

/* ---- 1. prepare: the VM is checked, then created masked ---- */

/* CONFIG: check the VM fits this host, then create it masked. */
static int handle_config(struct incoming *in, struct wire_frame *f, char *err, size_t errlen)
{
	struct vm_create_args args = { 0 };
	json_error_t je;
	json_t *j = json_loadb((char *)f->payload, f->len, 0, &je), *cpuid;
	struct kvm_cpuid2 *want = NULL;
	char missing[512];
	int rc = -EINVAL;

	if (!j) {
		errf(err, errlen, "configuration is not valid JSON: %s", je.text);
		return -EINVAL;
	}
	if (json_integer_value(json_object_get(j, "protocol")) != WIRE_PROTOCOL_VERSION ||
	    json_integer_value(json_object_get(j, "state_format")) > STATE_FORMAT_VERSION) {
		errf(err, errlen, "incompatible protocol %lld / state format %lld (this host: %d / %d)",
		     json_integer_value(json_object_get(j, "protocol")),
		     json_integer_value(json_object_get(j, "state_format")), WIRE_PROTOCOL_VERSION, STATE_FORMAT_VERSION);
		goto out;
	}
	if (vm_config_from_json(json_object_get(j, "config"), &args.cfg, err, errlen))
		goto out;
	if (in->want_cfg && ((in->want_cfg->memory_bytes && in->want_cfg->memory_bytes != args.cfg.memory_bytes) ||
			     (in->want_cfg->vcpus && in->want_cfg->vcpus != args.cfg.vcpus))) {
		char mem[32] = "any memory", cpus[32] = "any vCPU count";
		if (in->want_cfg->memory_bytes)
			snprintf(mem, sizeof(mem), "%llu MiB", (unsigned long long)(in->want_cfg->memory_bytes >> 20));
		if (in->want_cfg->vcpus)
			snprintf(cpus, sizeof(cpus), "%d vCPUs", in->want_cfg->vcpus);
		errf(err, errlen, "the VM has %llu MiB and %d vCPUs but this destination was prepared for %s and %s",
		     (unsigned long long)(args.cfg.memory_bytes >> 20), args.cfg.vcpus, mem, cpus);
		goto out;
	}
	cpuid = json_object_get(j, "cpuid");
	if (!json_is_array(cpuid) || json_array_size(cpuid) == 0 || json_array_size(cpuid) > 256) {
		errf(err, errlen, "configuration carries no valid CPUID table");
		goto out;
	}
	want = calloc(1, sizeof(*want) + json_array_size(cpuid) * sizeof(struct kvm_cpuid_entry2));
	if (!want) {
		rc = -ENOMEM;
		goto out;
	}
	want->nent = (uint32_t)json_array_size(cpuid);
	for (size_t i = 0; i < json_array_size(cpuid); i++) {
		json_t *e = json_array_get(cpuid, i);
		if (!json_is_array(e) || json_array_size(e) != 6) {
			errf(err, errlen, "CPUID entry %zu is malformed", i);
			goto out;
		}
		want->entries[i].function = (uint32_t)json_integer_value(json_array_get(e, 0));
		want->entries[i].index = (uint32_t)json_integer_value(json_array_get(e, 1));
		want->entries[i].eax = (uint32_t)json_integer_value(json_array_get(e, 2));
		want->entries[i].ebx = (uint32_t)json_integer_value(json_array_get(e, 3));
		want->entries[i].ecx = (uint32_t)json_integer_value(json_array_get(e, 4));
		want->entries[i].edx = (uint32_t)json_integer_value(json_array_get(e, 5));
	}
	rc = vm_create(in->vm, &args, err, errlen);
	if (rc)
		goto out;
	if (cpuid_missing_features(want, in->vm->vcpus[0].cpuid, missing, sizeof(missing))) {
		errf(err, errlen, "this host lacks CPU features the VM uses: %s", missing);
		vm_destroy(in->vm);
		rc = -EINVAL;
		goto out;
	}
	rc = devices_init(in->vm, in->serial_fd);
	if (rc) {
		errf(err, errlen, "cannot create devices");
		goto out;
	}
	in->vm->arriving = true; /* its disks are locked at the switchover, when the source lets go */
	struct vm_device_specs specs = { 0 };
	if (in->mon)
		specs = in->mon->devices;
	rc = prepare_disk_copies(in, json_object_get(j, "disk_copy"), &args.cfg, &specs, err, errlen);
	if (rc)
		goto out;
	for (uint32_t i = 0; in->disk_copy && i < in->nstreams; i++) /* guest writes wait for our answers */
		wire_short_queue(&in->streams[i], false);
	rc = devices_create_virtio(in->vm, &specs, err, errlen);
	if (rc)
		goto out;
	in->verify = json_is_true(json_object_get(j, "verify"));
	rc = setup_live(in, json_object_get(j, "live"), err, errlen);
	if (rc)
		goto out;
	rc = start_prefault(in, json_object_get(j, "resident"), err, errlen);
	if (rc)
		goto out;
	pthread_mutex_lock(&in->lock);
	in->vm_created = true;
	pthread_mutex_unlock(&in->lock);
	glide_log("incoming", "prepared masked VM %s: %llu MiB, %d vCPUs", args.cfg.name[0] ? args.cfg.name : "(unnamed)",
		  (unsigned long long)(args.cfg.memory_bytes >> 20), args.cfg.vcpus);
	rc = 0;
out:
	free(want);
	json_decref(j);
	return rc;
}

void migrate_incoming_discard(struct monitor *m)
{
	struct incoming *in = m->incoming_ctx;
	for (int i = 0; in && i < VM_MAX_DISKS; i++)
		if (in->created[i] && unlink(in->created[i]) == 0)
			glide_log("incoming", "removed the partial copy of disk %d, %s", i, in->created[i]);
}

/* The copy's path must name a new file directly in --disk-dir or below it. */
static int check_copy_path(const struct monitor *m, const char *path, char *err, size_t errlen)
{
	char parent[4096], real[4096];
	const char *slash = strrchr(path, '/'), *name = slash ? slash + 1 : path;
	if (!m || !m->disk_dir[0]) {
		errf(err, errlen, "this destination takes no disk copies (start it with --disk-dir DIR)");
		return -EPERM;
	}
	if (!slash || !name[0] || !strcmp(name, ".") || !strcmp(name, "..") || (size_t)(slash - path) >= sizeof(parent)) {
		errf(err, errlen, "%s is not a file path", path);
		return -EINVAL;
	}
	memcpy(parent, path, (size_t)(slash - path));
	parent[slash - path] = 0;
	size_t n = strlen(m->disk_dir);
	if (!realpath(parent[0] ? parent : "/", real) || strncmp(real, m->disk_dir, n) ||
	    (real[n] && real[n] != '/' && strcmp(m->disk_dir, "/"))) {
		errf(err, errlen, "%s is not inside this destination's --disk-dir %s", path, m->disk_dir);
		return -EPERM;
	}
	return 0;
}

/* Disks that arrive as copies (the source's --disk-to): each gets a new,
 * empty file of the disk's size at the path the source names (never an
 * existing file: nothing is overwritten, but for a partial copy that a
 * destination which died left there), which becomes the device's disk.
 * Until the VM runs here each is marked partial, under our lock (disk.c);
 * the files are removed again unless the VM runs here in the end. */
static int prepare_disk_copies(struct incoming *in, json_t *list, const struct vm_config *cfg,
			       struct vm_device_specs *specs, char *err, size_t errlen)
{
	size_t k;
	json_t *e;
	if (!list)
		return 0;
	if (!json_is_array(list) || json_array_size(list) > VM_MAX_DISKS) {
		errf(err, errlen, "configuration carries no valid list of disk copies");
		return -EINVAL;
	}
	json_array_foreach(list, k, e) {
		json_t *jp = json_object_get(e, "path"), *ji = json_object_get(e, "index");
		const char *path = json_string_value(jp);
		json_int_t i = json_integer_value(ji);
		if (!json_is_integer(ji) || i < 0 || i >= cfg->ndisks || !path || path[0] != '/' ||
		    strlen(path) >= sizeof(specs->disks[0].path) || (in->disk_copy & (1u << i))) {
			errf(err, errlen, "disk copy %zu is malformed (index %lld of %d disks, path %s)", k, (long long)i,
			     cfg->ndisks, path ? path : "missing");
			return -EINVAL;
		}
		if (i < specs->ndisks && specs->disks[i].path[0]) {
			errf(err, errlen, "disk %lld arrives as a copy to %s, but this destination was started with --disk %s "
				     "for it", (long long)i, path, specs->disks[i].path);
			return -EINVAL;
		}
		char why[512];
		int rc = check_copy_path(in->mon, path, why, sizeof(why)), fd = -1;
		if (!rc && (fd = disk_copy_create(path, cfg->disk_bytes[i], why, sizeof(why))) < 0)
			rc = fd;
		if (rc) {
			errf(err, errlen, "disk %lld: its copy: %s", (long long)i, why);
			return rc;
		}
		in->created[i] = strdup(path);
		in->copy_fd[i] = fd;
		in->disk_copy |= 1u << i;
		memset(&specs->disks[i], 0, sizeof(specs->disks[i]));
		snprintf(specs->disks[i].path, sizeof(specs->disks[i].path), "%s", path);
		specs->disks[i].readonly = cfg->disk_readonly[i];
		if (specs->ndisks <= i)
			specs->ndisks = (int)i + 1;
		glide_log("incoming", "disk %lld arrives as a copy: %s (%llu MiB)", (long long)i, path,
			  (unsigned long long)(cfg->disk_bytes[i] >> 20));
	}
	return 0;
}

/* The live sections the source announced: each must be one this glide
 * knows (at most its version); each gets its load state. */
static int setup_live(struct incoming *in, json_t *list, char *err, size_t errlen)
{
	size_t i;
	json_t *e;

	if (!json_is_array(list) || json_array_size(list) > LIVE_SECTIONS_MAX) {
		errf(err, errlen, "configuration carries no valid list of live sections");
		return -EINVAL;
	}
	json_array_foreach(list, i, e) {
		const char *name = json_string_value(json_object_get(e, "name"));
		json_int_t version = json_integer_value(json_object_get(e, "version"));
		const struct state_section_ops *ops = name ? state_find(name) : NULL;
		if (!ops || !ops->live) {
			errf(err, errlen, "the VM brings live section '%s', which this glide does not know (newer source?)",
			     name ? name : "?");
			return -EPROTONOSUPPORT;
		}
		if (version < 1 || version > ops->version) {
			errf(err, errlen, "live section '%s' version %lld is not supported (this glide reads up to %u)", name,
			     (long long)version, ops->version);
			return -EPROTONOSUPPORT;
		}
		in->live_ops[i] = ops;
		in->live[i] = (struct live_dest){ .vm = in->vm, .disk_copy = in->disk_copy };
		int rc = ops->live->load_setup(&in->live[i], err, errlen);
		in->nlive = (int)i + 1;
		if (rc)
			return rc;
	}
	return 0;
}

/* At GO, before the vCPUs run: each copy loses its partial mark and our lock. */
static int commit_disk_copies(struct incoming *in, char *err, size_t errlen)
{
	char later[256];
	int rc = 0;
	for (int i = 0; i < VM_MAX_DISKS; i++) {
		if (!in->created[i] || in->copy_fd[i] < 0)
			continue;
		int r = disk_copy_commit(in->created[i], in->copy_fd[i], rc ? later : err, rc ? sizeof(later) : errlen);
		in->copy_fd[i] = -1;
		if (!rc)
			rc = r;
	}
	return rc;
}

/* ---- 2. pre-copy: live data into the masked VM ---- */

/* LIVE: u32 section id + the section's payload, which its load hook
 * validates whole before it writes anything. */
static int apply_live(struct incoming *in, struct wire_frame *f, char *err, size_t errlen)
{
	uint32_t id;

	if (!in->vm_created) {
		errf(err, errlen, "protocol error: live data before the configuration");
		return -EPROTO;
	}
	if (f->len < LIVE_FRAME_ID_BYTES) {
		errf(err, errlen, "LIVE frame too short");
		return -EBADMSG;
	}
	memcpy(&id, f->payload, LIVE_FRAME_ID_BYTES);
	if (id >= (uint32_t)in->nlive) {
		errf(err, errlen, "LIVE frame for section %u, but the configuration named %d", id, in->nlive);
		return -EBADMSG;
	}
	int rc = in->live_ops[id]->live->load(&in->live[id], f->payload + LIVE_FRAME_ID_BYTES,
					     f->len - LIVE_FRAME_ID_BYTES, err, errlen);
	if (!rc)
		__atomic_add_fetch(&in->frames, 1, __ATOMIC_RELAXED);
	return rc;
}

/* ---- 3. checkpoint and switchover ---- */

/* Checkpoint and switchover, on stream 0: wait for FINAL everywhere, restore, RESTORED, GO, run. */
static int switchover(struct incoming *in, struct wire_frame *state, char *err, size_t errlen)
{
	struct wire_stream *s0 = &in->streams[0];
	struct state_pending *pend = state_pending_new();
	struct wire_frame f;
	uint64_t t0 = now_ns();
	int rc;

	if (!pend)
		return -ENOMEM;
	prefault_stop(&in->prefault); /* what is not present yet is the VM's to fault in */
	rc = state_parse_blob(state->payload, state->len, pend, err, errlen);
	if (rc) {
		state_pending_free(pend);
		send_abort(in, err);
		return rc;
	}
	pthread_mutex_lock(&in->lock);
	while (in->finals < (int)in->nstreams && !in->failed)
		pthread_cond_wait(&in->cond, &in->lock);
	bool failed = in->failed;
	pthread_mutex_unlock(&in->lock);
	if (failed) {
		state_pending_free(pend);
		errf(err, errlen, "%s", in->error);
		return -EIO;
	}
	uint64_t t_finals = now_ns();
	rc = state_pending_apply(in->vm, pend, err, errlen);
	state_pending_free(pend);
	glide_log("incoming", "switchover: waited %.2f ms for the last pages, applied the state in %.2f ms",
		  (t_finals - t0) / 1e6, (now_ns() - t_finals) / 1e6);
	json_t *verified = NULL;
	if (!rc && in->verify)
		rc = verify_memory(in, &verified, err, errlen);
	if (rc) {
		send_abort(in, err);
		return rc;
	}
	double restore_ms = (now_ns() - t0) / 1e6;
	json_t *restored = json_pack("{s:f}", "restore_ms", restore_ms);
	if (verified)
		json_object_set_new(restored, "verify", verified);
	send_json_frame(s0, FRAME_RESTORED, restored);
	rc = wire_recv(s0, &f, err, errlen);
	if (rc)
		return rc;
	if (f.type != FRAME_GO) {
		errf(err, errlen, "source did not release the VM (%s)", wire_frame_name(f.type));
		return -EPROTO;
	}
	/* GO: {"paused": bool}, the run state the VM had on the source. The
	 * source owns nothing now: a GO we cannot read still runs the VM. */
	json_t *go = f.len ? json_loadb((char *)f.payload, f.len, 0, NULL) : NULL;
	bool paused = json_is_true(json_object_get(go, "paused"));
	json_decref(go);
	if (test_fault("exit-on-go")) /* tests: the destination dies at GO, the source is in doubt */
		_exit(3);
	/* The copies become the VM's disks (no longer partial), then the
	 * source's disks and the copies are locked as ours. */
	rc = commit_disk_copies(in, err, errlen);
	if (rc) {
		send_abort(in, err);
		return rc;
	}
	/* The source let go of the disks before GO: they are ours now. */
	rc = virtio_blk_acquire_locks(in->vm, err, errlen);
	if (rc) {
		send_abort(in, err);
		return rc;
	}
	if (paused)
		vm_pause(in->vm); /* not started yet: the vCPUs start parked */
	rc = vm_start_vcpus(in->vm, err, errlen);
	if (rc)
		return rc;
	if (!paused && in->mon)
		net_announce_start(in->vm, &in->mon->announce);
	/* Frames that reach the source's taps from now on come over stream 0
	 * (NET ... NET_END) when the VM runs here with NICs. */
	int fds[VM_MAX_NICS];
	in->forward = !paused && virtio_net_forward_fds(in->vm, fds) > 0;
	/* The VM is ours: the API says so at once (forwarded frames may still come). */
	if (in->mon)
		in->mon->incoming = false;
	if (test_fault("skip-running")) /* tests: RUNNING is lost, the source is in doubt */
		shutdown(s0->fd, SHUT_RDWR);
	else
		send_json_frame(s0, FRAME_RUNNING, json_pack("{s:f, s:b}", "restore_ms", restore_ms, "forward", in->forward));
	glide_log("incoming", "VM %s here: restored in %.2f ms, %llu live frames received",
		  paused ? "paused (as on the source)" : "running", restore_ms, (unsigned long long)in->frames);
	return 0;
}

/* --verify: every page is in and the state applied, the vCPUs have not
 * run. Our digest of all RAM must equal the source's (VERIFY, sent after
 * STATE, hashed while its VM was stunned), or the VM is refused and the
 * source resumes. */
static int verify_memory(struct incoming *in, json_t **verified, char *err, size_t errlen)
{
	struct wire_stream *s0 = &in->streams[0];
	struct ram_digest mine, theirs;
	struct wire_frame f;
	char hex[2 * RAM_DIGEST_WHOLE_BYTES + 1];
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	int rc;

	if (test_fault("corrupt-before-verify") && in->vm->mem.size > (2u << 20) + 7) /* tests: one byte differs */
		in->vm->mem.host[(2u << 20) + 7] ^= 0x5a;
	if (ram_digest_compute(&in->vm->mem, (int)MAX(cpus, 1L), &mine)) {
		errf(err, errlen, "verify: out of memory for the RAM digest");
		return -ENOMEM;
	}
	rc = wire_recv(s0, &f, err, errlen);
	if (!rc && f.type != FRAME_VERIFY) {
		errf(err, errlen, "protocol error: %s where the RAM digest (VERIFY) was due", wire_frame_name(f.type));
		rc = -EPROTO;
	}
	if (!rc)
		rc = ram_digest_from_wire(f.payload, f.len, &theirs, err, errlen);
	if (rc) {
		ram_digest_free(&mine);
		return rc;
	}
	uint64_t first, bad = ram_digest_diff(&mine, &theirs, &first);
	ram_digest_hex(&mine, hex);
	if (bad == UINT64_MAX)
		errf(err, errlen, "memory verification failed: the source hashed %llu chunks, this VM has %llu",
		     (unsigned long long)theirs.nchunks, (unsigned long long)mine.nchunks);
	else if (bad)
		errf(err, errlen, "memory verification failed: %llu of %llu chunks of 2 MiB differ from the source, "
		     "the first at guest address 0x%llx", (unsigned long long)bad, (unsigned long long)mine.nchunks,
		     (unsigned long long)ram_digest_chunk_gpa(&in->vm->mem, first));
	else
		*verified = json_pack("{s:s, s:f, s:I}", "digest", hex, "ms", mine.ms, "chunks_read",
				      (json_int_t)mine.read_chunks);
	/* each copy as the frames left it: the source compares with its own */
	if (*verified && in->disk_copy) {
		json_t *disks = json_array();
		for (int i = 0; i < VM_MAX_DISKS && !rc; i++) {
			int fd;
			uint64_t bytes, read;
			double ms;
			char dhex[2 * RAM_DIGEST_WHOLE_BYTES + 1];
			if (!(in->disk_copy & (1u << i)))
				continue;
			rc = virtio_blk_file(in->vm, i, &fd, &bytes, NULL, 0);
			if (!rc && test_fault("corrupt-disk-before-verify") && bytes > 4096 + 7) /* tests: one byte differs */
				rc = pwrite_full(fd, (const uint8_t[]){ 0x5a }, 1, 4096 + 7);
			if (!rc)
				rc = disk_digest_compute(fd, bytes, dhex, &ms, &read);
			if (rc) {
				errf(err, errlen, "verify: disk %d's copy: %s", i, strerror(-rc));
				break;
			}
			glide_log("incoming", "verify: disk %d digest %s in %.1f ms (%llu bytes read)", i, dhex, ms, (unsigned long long)read);
			json_array_append_new(disks, json_pack("{s:i, s:s, s:f}", "index", i, "digest", dhex, "ms", ms));
		}
		json_object_set_new(*verified, "disks", disks);
		if (rc) {
			json_decref(*verified);
			*verified = NULL;
			ram_digest_free(&mine);
			ram_digest_free(&theirs);
			return rc;
		}
	}
	glide_log("incoming", "verify: RAM digest %s in %.1f ms (%llu of %llu chunks read): %s", hex, mine.ms,
		  (unsigned long long)mine.read_chunks, (unsigned long long)mine.nchunks, bad ? err : "equal to the source's");
	ram_digest_free(&mine);
	ram_digest_free(&theirs);
	return bad ? -EIO : 0;
}

/* ---- failure and small helpers ---- */

static void in_fail(struct incoming *in, const char *fmt, ...)
{
	va_list ap;
	pthread_mutex_lock(&in->lock);
	if (!in->failed && !in->done) {
		va_start(ap, fmt);
		vsnprintf(in->error, sizeof(in->error), fmt, ap);
		va_end(ap);
		in->failed = true;
		/* stop the receivers; the main thread then tells the source why */
		for (uint32_t i = 0; i < in->nstreams; i++)
			if (in->streams[i].fd >= 0)
				shutdown(in->streams[i].fd, SHUT_RD);
	}
	pthread_cond_broadcast(&in->cond);
	pthread_mutex_unlock(&in->lock);
}

static void send_json_frame(struct wire_stream *s, uint32_t type, json_t *j)
{
	char err[256], *text = json_dumps(j, JSON_COMPACT);
	wire_send_copy(s, type, text, (uint32_t)strlen(text), err, sizeof(err));
	free(text);
	json_decref(j);
}

/* ABORT with the reason, on stream 0 (the one the source reads), once. */
static void send_abort(struct incoming *in, const char *why)
{
	in->abort_sent = true;
	send_json_frame(&in->streams[0], FRAME_ABORT, json_pack("{s:s}", "error", why));
}

/* CONFIG's "resident" (an older source sends none): the chunks to make
 * present, checked, and the helper that does it started. */
static int start_prefault(struct incoming *in, json_t *res, char *err, size_t errlen)
{
	uint8_t *map;
	if (!res)
		return 0;
	json_t *chunk = json_object_get(res, "chunk_bytes"), *hex = json_object_get(res, "map");
	if (!json_is_integer(chunk) || json_integer_value(chunk) != (json_int_t)PREFAULT_CHUNK_BYTES || !json_is_string(hex)) {
		errf(err, errlen, "configuration carries a resident-memory map this destination cannot read "
		     "(it takes %llu-byte chunks)", (unsigned long long)PREFAULT_CHUNK_BYTES);
		return -EINVAL;
	}
	int rc = prefault_map_parse(json_string_value(hex), in->vm->mem.size, &map, err, errlen);
	if (rc)
		return rc;
	if (prefault_start(&in->prefault, &in->vm->mem, map))
		glide_log("incoming", "prefault: no helper thread; pages are faulted in as they arrive");
	return 0;
}

static void cleanup_live(struct incoming *in)
{
	prefault_stop(&in->prefault);
	for (int i = 0; i < in->nlive; i++)
		in->live_ops[i]->live->load_cleanup(&in->live[i]);
	in->nlive = 0;
}

/* Fault injection for tests: GLIDE_TEST_FAULT names a point where the destination dies. */
static bool test_fault(const char *point)
{
	const char *f = getenv("GLIDE_TEST_FAULT");
	return f && !strcmp(f, point);
}
