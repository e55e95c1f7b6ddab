/* Cold moves over the provisioning network: the files of a powered-off or
 * suspended VM (its disks, and its suspended state) copied from one host
 * agent to another, the way vSphere's NFC copies a cold VM.
 *
 * The controller asks the destination's agent to receive (POST /v1/receive:
 * the VM's name, a one-time key, the datastore and each file's size); it
 * creates the files in that datastore (O_EXCL, 0600, sparse), listens on its
 * first provisioning address and answers where. Then it asks the source's
 * agent to send (POST /v1/vms/NAME/send {to, key}): its files are the VM's
 * disks in order, then its suspended state. One connection carries them,
 * with the migration wire's handshake (both sides prove the key) and
 * frames (AES-256-GCM when both can):
 *   FILE_DATA  u32 file, u32 length, u64 offset, then the bytes;
 *   FILE_END   u32 file, u32 0, u64 size, then the sender's digest (32 bytes);
 *   FILE_OK    once every file's digest matched on the receiver.
 * Holes and all-zero blocks are not sent (the receiver's file is sparse).
 * The digest is SHA-256 over every 64 KiB block that is not all zero, as
 * (u64 offset, bytes): the receiver computes it by reading back what it
 * wrote, so a match means the two files hold the same bytes. A receiver that
 * fails removes its files; one that succeeded keeps them until the
 * controller either registers the VM with them (DELETE ?keep=1) or gives
 * up (DELETE: removed). The source's files are only read. */
#include "host/host.h"
#include "api/http.h"
#include "common/net.h"
#include "common/util.h"
#include "migrate/wire.h"
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#define COPY_BLOCK 65536u                 /* digest and zero-skipping granularity */
#define COPY_RUN_MAX (1u << 20)           /* bytes of one FILE_DATA frame */
#define COPY_ACCEPT_TIMEOUT_MS 30000      /* a receiver nobody connects to gives up */
#define COPY_HDR 16

enum { COPY_RUNNING, COPY_DONE, COPY_FAILED };
static const char *const copy_state_names[] = { "running", "done", "failed" };

struct copy_file {
	char path[PATH_MAX];
	uint64_t size;
	int fd;
};

struct copy_job {
	char name[VM_NAME_MAX];
	bool receive;
	struct copy_file files[HOST_COPY_FILES_MAX];
	int nfiles;
	uint8_t key[WIRE_KEY_BYTES];
	char to[192];                /* send: the receiver's HOST:PORT */
	char address[192];           /* receive: where it listens */
	int listen_fd;
	int state;                   /* COPY_*, under the agent's lock */
	int outcome;                 /* the thread's result, published as state when it lets go (job_publish) */
	char error[600];
	uint64_t bytes, total;       /* data bytes moved so far, and allocated bytes to move (an estimate) */
	uint64_t started_ns, ended_ns;
	bool encrypted;
	volatile bool cancel;
	bool detached;               /* forgotten by the agent; the thread frees it */
	struct host_agent *agent;
	struct host_vm *vm;          /* send: the VM held while its files are read */
	struct copy_job *next;
};

static struct copy_job *job_find(struct host_agent *a, const char *name, bool receive)
{
	for (struct copy_job *j = a->copies; j; j = j->next)
		if (j->receive == receive && !strcmp(j->name, name))
			return j;
	return NULL;
}

static void job_unlink(struct host_agent *a, struct copy_job *j)
{
	for (struct copy_job **p = &a->copies; *p; p = &(*p)->next)
		if (*p == j) {
			*p = j->next;
			return;
		}
}

static void job_close(struct copy_job *j)
{
	for (int i = 0; i < j->nfiles; i++)
		if (j->files[i].fd >= 0) {
			close(j->files[i].fd);
			j->files[i].fd = -1;
		}
	if (j->listen_fd >= 0) {
		close(j->listen_fd);
		j->listen_fd = -1;
	}
}

static void remove_files(struct copy_job *j)
{
	for (int i = 0; i < j->nfiles; i++)
		if (j->files[i].path[0] && unlink(j->files[i].path) == 0)
			glide_log("host", "copy of VM %s: removed %s", j->name, j->files[i].path);
}

static int digest_block(void *ctx, uint64_t off, const uint8_t *p, uint32_t n)
{
	uint8_t le[8];
	for (int i = 0; i < 8; i++)
		le[i] = (uint8_t)(off >> (8 * i));
	return EVP_DigestUpdate(ctx, le, 8) == 1 && EVP_DigestUpdate(ctx, p, n) == 1 ? 0 : -EIO;
}

/* The copy digest of a file (see the top of this file). */
static int file_digest(int fd, uint64_t size, uint8_t out[32], volatile bool *cancel)
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	unsigned int len = 0;
	int rc = md && EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1 ? 0 : -ENOMEM;
	if (!rc)
		rc = file_nonzero_blocks(fd, size, COPY_BLOCK, digest_block, md, cancel);
	if (!rc && EVP_DigestFinal_ex(md, out, &len) != 1)
		rc = -EIO;
	EVP_MD_CTX_free(md);
	return rc;
}

static uint64_t allocated_bytes(int fd, uint64_t size)
{
	struct stat st;
	if (fstat(fd, &st))
		return size;
	return MIN(size, (uint64_t)st.st_blocks * 512);
}

/* The thread's outcome, kept aside (the job still says running). */
static void job_end(struct copy_job *j, int state, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void job_end(struct copy_job *j, int state, const char *fmt, ...)
{
	struct host_agent *a = j->agent;
	pthread_mutex_lock(&a->lock);
	if (fmt) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(j->error, sizeof(j->error), fmt, ap);
		va_end(ap);
	}
	j->outcome = state;
	pthread_mutex_unlock(&a->lock);
	glide_log("host", "%s of VM %s's files %s%s%s (%llu bytes in %.0f ms)", j->receive ? "receiving" : "sending", j->name,
		  copy_state_names[state], fmt ? ": " : "", fmt ? j->error : "", (unsigned long long)j->bytes,
		  (now_ns() - j->started_ns) / 1e6);
}

/* The thread's last touch of the job: publishes the outcome, closes the
 * files and lets the VM go, in one hold of the lock. Returns whether the
 * agent forgot the job meanwhile (then the thread frees it); otherwise the
 * job is the agent's from here on. */
static bool job_publish(struct copy_job *j)
{
	pthread_mutex_lock(&j->agent->lock);
	j->state = j->outcome;
	j->ended_ns = now_ns();
	job_close(j);
	if (j->vm) {
		j->vm->copying = false;
		j->vm->users--; /* held since the send began */
		j->vm = NULL;
	}
	bool gone = j->detached;
	pthread_mutex_unlock(&j->agent->lock);
	return gone;
}

/* ---- sending ---- */

struct send_ctx {
	struct copy_job *j;
	struct wire_stream *s;
	uint32_t file;
	EVP_MD_CTX *md;
	uint8_t *run;           /* the frame being built: COPY_HDR + up to COPY_RUN_MAX bytes */
	uint64_t run_off;
	uint32_t run_len;
	char err[300];
};

static int send_run(struct send_ctx *c)
{
	if (!c->run_len)
		return 0;
	memcpy(c->run, &c->file, 4);
	memcpy(c->run + 4, &c->run_len, 4);
	memcpy(c->run + 8, &c->run_off, 8);
	int rc = wire_send(c->s, FRAME_FILE_DATA, COPY_HDR + c->run_len, c->err, sizeof(c->err));
	if (!rc) {
		pthread_mutex_lock(&c->j->agent->lock);
		c->j->bytes += c->run_len;
		pthread_mutex_unlock(&c->j->agent->lock);
	}
	c->run_len = 0;
	return rc;
}

static int send_block(void *ctx, uint64_t off, const uint8_t *p, uint32_t n)
{
	struct send_ctx *c = ctx;
	int rc = digest_block(c->md, off, p, n);
	if (rc)
		return rc;
	if (c->run_len && (c->run_off + c->run_len != off || c->run_len + n > COPY_RUN_MAX) && (rc = send_run(c)))
		return rc;
	if (!c->run_len)
		c->run_off = off;
	memcpy(c->run + COPY_HDR + c->run_len, p, n);
	c->run_len += n;
	return 0;
}

static void *send_thread(void *arg)
{
	struct copy_job *j = arg;
	struct wire_stream s;
	struct wire_session_params p = { .stream_count = 1, .encrypt = ENCRYPT_OPPORTUNISTIC };
	struct send_ctx c = { .j = j, .s = &s };
	char err[400];
	struct wire_frame f;
	int rc;

	memcpy(p.key, j->key, WIRE_KEY_BYTES);
	RAND_bytes(p.session, sizeof(p.session));
	rc = wire_connect(&s, j->to, 0, &p, 0, 10000, err, sizeof(err));
	explicit_bzero(&p, sizeof(p));
	if (rc) {
		job_end(j, COPY_FAILED, "%s", err);
		goto out;
	}
	j->encrypted = s.encrypted;
	c.run = wire_tx_payload(&s);
	for (uint32_t i = 0; i < (uint32_t)j->nfiles && !rc; i++) {
		uint8_t end[16 + 32];
		unsigned int len = 0;
		c.file = i;
		c.md = EVP_MD_CTX_new();
		if (!c.md || EVP_DigestInit_ex(c.md, EVP_sha256(), NULL) != 1) {
			rc = -ENOMEM;
			snprintf(c.err, sizeof(c.err), "out of memory");
		}
		if (!rc && (rc = file_nonzero_blocks(j->files[i].fd, j->files[i].size, COPY_BLOCK, send_block, &c, &j->cancel)) && !c.err[0])
			snprintf(c.err, sizeof(c.err), "reading %s: %s", j->files[i].path, rc == -ECANCELED ? "cancelled" : strerror(-rc));
		if (!rc)
			rc = send_run(&c);
		if (!rc && EVP_DigestFinal_ex(c.md, end + 16, &len) != 1)
			rc = -EIO;
		EVP_MD_CTX_free(c.md);
		c.md = NULL;
		if (!rc) {
			uint32_t zero = 0;
			memcpy(end, &i, 4);
			memcpy(end + 4, &zero, 4);
			memcpy(end + 8, &j->files[i].size, 8);
			rc = wire_send_copy(&s, FRAME_FILE_END, end, sizeof(end), c.err, sizeof(c.err));
		}
	}
	if (rc) {
		json_t *e = json_pack("{s:s}", "error", c.err);
		char *text = json_dumps(e, JSON_COMPACT);
		char e2[100];
		if (text)
			wire_send_copy(&s, FRAME_ABORT, text, (uint32_t)strlen(text), e2, sizeof(e2));
		free(text);
		json_decref(e);
		job_end(j, COPY_FAILED, "%s", c.err[0] ? c.err : strerror(-rc));
	} else if ((rc = wire_recv(&s, &f, err, sizeof(err)))) {
		job_end(j, COPY_FAILED, "no answer from the receiver: %s", err);
	} else if (f.type != FRAME_FILE_OK) {
		char why[400] = "";
		if (f.type == FRAME_ABORT) {
			json_t *e = json_loadb((const char *)f.payload, f.len, 0, NULL);
			snprintf(why, sizeof(why), "%s", json_string_value(json_object_get(e, "error")) ?: "no reason given");
			json_decref(e);
		}
		job_end(j, COPY_FAILED, "the receiver refused the copy: %s", why[0] ? why : wire_frame_name(f.type));
	} else {
		job_end(j, COPY_DONE, NULL);
	}
	wire_close(&s);
out:
	explicit_bzero(j->key, sizeof(j->key));
	if (job_publish(j))
		free(j);
	return NULL;
}

/* ---- receiving ---- */

int copy_receive_frame(struct copy_target *t, int n, uint32_t type, const uint8_t *p, uint32_t len, uint64_t *moved,
		       volatile bool *cancel, char *err, size_t errlen)
{
	uint32_t file, run;
	uint64_t off;
	int rc;

	if ((type != FRAME_FILE_DATA && type != FRAME_FILE_END) || len < COPY_HDR) {
		errf(err, errlen, "unexpected %s frame of %u bytes", wire_frame_name(type), len);
		return -EPROTO;
	}
	memcpy(&file, p, 4);
	memcpy(&run, p + 4, 4);
	memcpy(&off, p + 8, 8);
	if (file >= (uint32_t)n || t[file].ended) {
		errf(err, errlen, "%s for file %u, which %s", wire_frame_name(type), file,
		     file >= (uint32_t)n ? "does not exist" : "already ended");
		return -EPROTO;
	}
	struct copy_target *cf = &t[file];
	if (type == FRAME_FILE_DATA) {
		if (!run || len != COPY_HDR + run || off > cf->size || run > cf->size - off) {
			errf(err, errlen, "file %u: a run of %u bytes at %llu (frame of %u bytes) does not fit its %llu bytes", file, run,
			     (unsigned long long)off, len, (unsigned long long)cf->size);
			return -EPROTO;
		}
		if ((rc = pwrite_full(cf->fd, p + COPY_HDR, run, off))) {
			errf(err, errlen, "writing %s: %s", cf->path, strerror(-rc));
			return rc;
		}
		*moved += run;
		return 0;
	}
	/* FILE_END: u32 file, u32 0, u64 size, digest */
	uint8_t mine[32];
	if (len != COPY_HDR + 32 || run || off != cf->size) {
		errf(err, errlen, "file %u: its end says %llu bytes, %llu expected (frame of %u bytes)", file, (unsigned long long)off,
		     (unsigned long long)cf->size, len);
		return -EPROTO;
	}
	if (fdatasync(cf->fd) && errno != EINVAL) {
		errf(err, errlen, "flushing %s: %s", cf->path, strerror(errno));
		return -errno;
	}
	if ((rc = file_digest(cf->fd, cf->size, mine, cancel))) {
		errf(err, errlen, "reading back %s: %s", cf->path, strerror(-rc));
		return rc;
	}
	if (memcmp(mine, p + COPY_HDR, 32)) {
		errf(err, errlen, "file %u (%s): its digest differs from the sender's: the copy is not what was sent", file, cf->path);
		return -EBADMSG;
	}
	cf->ended = true;
	return 0;
}

static int receive_frames(struct copy_job *j, struct wire_stream *s, char *err, size_t errlen)
{
	struct copy_target t[HOST_COPY_FILES_MAX];
	int ends = 0;
	struct wire_frame f;
	int rc;

	for (int i = 0; i < j->nfiles; i++)
		t[i] = (struct copy_target){ .fd = j->files[i].fd, .size = j->files[i].size, .path = j->files[i].path };
	while (ends < j->nfiles) {
		if (j->cancel) {
			errf(err, errlen, "cancelled");
			return -ECANCELED;
		}
		if ((rc = wire_recv(s, &f, err, errlen)))
			return rc;
		if (f.type == FRAME_ABORT) {
			json_t *e = json_loadb((const char *)f.payload, f.len, 0, NULL);
			errf(err, errlen, "the sender gave up: %s", json_string_value(json_object_get(e, "error")) ?: "no reason given");
			json_decref(e);
			return -ECONNABORTED;
		}
		uint64_t moved = 0;
		if ((rc = copy_receive_frame(t, j->nfiles, f.type, f.payload, f.len, &moved, &j->cancel, err, errlen)))
			return rc;
		ends += f.type == FRAME_FILE_END;
		pthread_mutex_lock(&j->agent->lock);
		j->bytes += moved;
		pthread_mutex_unlock(&j->agent->lock);
	}
	return 0;
}

static void *receive_thread(void *arg)
{
	struct copy_job *j = arg;
	struct wire_stream s = { .fd = -1 };
	uint8_t session[WIRE_SESSION_BYTES];
	uint32_t count = 0;
	char err[500] = "";
	int fd = -1, rc = -ETIMEDOUT;
	uint64_t end = now_ns() + (uint64_t)COPY_ACCEPT_TIMEOUT_MS * 1000000;

	while (!j->cancel && now_ns() < end) {
		struct pollfd pfd = { .fd = j->listen_fd, .events = POLLIN };
		if (poll(&pfd, 1, 200) > 0) {
			fd = accept4(j->listen_fd, NULL, NULL, SOCK_CLOEXEC);
			if (fd >= 0)
				break;
		}
	}
	if (fd < 0) {
		errf(err, sizeof(err), j->cancel ? "cancelled" : "nobody connected within %d s", COPY_ACCEPT_TIMEOUT_MS / 1000);
	} else if ((rc = wire_accept(&s, fd, j->key, true, session, &count, err, sizeof(err)))) {
		close(fd);
	} else if (count != 1) {
		errf(err, sizeof(err), "the sender opened %u streams; a copy uses one", count);
		rc = -EPROTO;
	} else {
		j->encrypted = s.encrypted;
		rc = receive_frames(j, &s, err, sizeof(err));
		char e2[100];
		if (!rc) {
			rc = wire_send_copy(&s, FRAME_FILE_OK, "{}", 2, err, sizeof(err));
		} else {
			json_t *e = json_pack("{s:s}", "error", err);
			char *text = json_dumps(e, JSON_COMPACT);
			if (text)
				wire_send_copy(&s, FRAME_ABORT, text, (uint32_t)strlen(text), e2, sizeof(e2));
			free(text);
			json_decref(e);
		}
	}
	if (s.fd >= 0)
		wire_close(&s);
	explicit_bzero(j->key, sizeof(j->key));
	for (int i = 0; i < j->nfiles; i++) /* closed before a failed copy's files go */
		if (j->files[i].fd >= 0) {
			close(j->files[i].fd);
			j->files[i].fd = -1;
		}
	if (rc)
		remove_files(j);
	job_end(j, rc ? COPY_FAILED : COPY_DONE, rc ? "%s" : NULL, err);
	if (job_publish(j)) {
		if (!rc)
			remove_files(j); /* forgotten while running: nobody will register these */
		free(j);
	}
	return NULL;
}

static json_t *job_json(struct copy_job *j)
{
	json_t *paths = json_array();
	for (int i = 0; i < j->nfiles; i++)
		json_array_append_new(paths, json_string(j->files[i].path));
	uint64_t end = j->ended_ns ? j->ended_ns : now_ns();
	json_t *o = json_pack("{s:s, s:s, s:I, s:I, s:f, s:b, s:o}", "name", j->name, "state", copy_state_names[j->state], "bytes",
			      (json_int_t)j->bytes, "total", (json_int_t)j->total, "elapsed_ms", (end - j->started_ns) / 1e6,
			      "encrypted", j->encrypted, "paths", paths);
	if (j->error[0])
		json_object_set_new(o, "error", json_string(j->error));
	if (j->receive)
		json_object_set_new(o, "address", json_string(j->address));
	return o;
}

static int key_parse(const char *hex, uint8_t key[WIRE_KEY_BYTES])
{
	if (!host_key_valid(hex))
		return -EINVAL;
	for (int i = 0; i < WIRE_KEY_BYTES; i++) {
		unsigned int b;
		if (sscanf(hex + 2 * i, "%2x", &b) != 1)
			return -EINVAL;
		key[i] = (uint8_t)b;
	}
	return 0;
}

int host_copy_receive(struct host_agent *a, json_t *body, json_t **resp)
{
	struct host_receive_request rq;
	char err[512];
	if (host_receive_request_parse(body, &rq, err, sizeof(err))) {
		*resp = http_error("%s", err);
		return 400;
	}
	if (!a->nprovisioning_hosts) {
		*resp = http_error("host %s has no provisioning address", a->name);
		return 409;
	}
	struct copy_job *j = calloc(1, sizeof(*j));
	if (!j)
		return 500;
	j->receive = true;
	j->agent = a;
	j->listen_fd = -1;
	j->started_ns = now_ns();
	snprintf(j->name, sizeof(j->name), "%s", rq.name);
	key_parse(rq.key, j->key);
	for (int i = 0; i < HOST_COPY_FILES_MAX; i++)
		j->files[i].fd = -1;

	pthread_mutex_lock(&a->lock);
	int status = 409;
	const struct host_datastore *ds = host_datastore_find(a, rq.datastore);
	struct statvfs sv;
	char have[32], need[32];
	if (host_vm_find(a, rq.name)) {
		errf(err, sizeof(err), "a VM named %s already exists on host %s; remove it there first", rq.name, a->name);
	} else if (job_find(a, rq.name, true)) {
		errf(err, sizeof(err), "host %s already receives VM %s's files", a->name, rq.name);
	} else if (!ds) {
		errf(err, sizeof(err), "host %s has no datastore %s", a->name, rq.datastore);
	} else if (statvfs(ds->path, &sv) || (uint64_t)sv.f_bavail * sv.f_frsize < rq.copy_bytes) {
		errf(err, sizeof(err), "not enough space: datastore %s on host %s has %s free, the VM's files need %s", ds->name, a->name,
		     format_size((uint64_t)sv.f_bavail * sv.f_frsize, have, sizeof(have)), format_size(rq.copy_bytes, need, sizeof(need)));
	} else {
		status = 0;
		j->nfiles = rq.nfiles;
		for (int i = 0; i < rq.nfiles && !status; i++) {
			struct copy_file *cf = &j->files[i];
			cf->size = rq.files[i].size;
			if (rq.files[i].suspend)
				snprintf(cf->path, sizeof(cf->path), "%.*s/%s.suspend", (int)(sizeof(cf->path) - VM_NAME_MAX - 10), ds->path,
					 rq.name);
			else
				snprintf(cf->path, sizeof(cf->path), "%.*s/%s-disk%d.img", (int)(sizeof(cf->path) - VM_NAME_MAX - 16),
					 ds->path, rq.name, rq.files[i].disk);
			cf->fd = open(cf->path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
			if (cf->fd < 0) {
				errf(err, sizeof(err), "cannot create %s on host %s: %s%s", cf->path, a->name, strerror(errno),
				     errno == EEXIST ? " (a copy never overwrites a file)" : "");
				cf->path[0] = 0;
				status = 409;
			} else if (ftruncate(cf->fd, (off_t)cf->size)) {
				errf(err, sizeof(err), "cannot size %s: %s", cf->path, strerror(errno));
				status = 507;
			}
		}
		if (!status) {
			char hostport[200];
			const char *h = a->provisioning_hosts[0];
			snprintf(hostport, sizeof(hostport), strchr(h, ':') ? "[%s]:0" : "%s:0", h);
			j->listen_fd = net_listen_tcp(hostport, 1, err, sizeof(err));
			struct sockaddr_storage ss;
			socklen_t sl = sizeof(ss);
			if (j->listen_fd < 0 || getsockname(j->listen_fd, (struct sockaddr *)&ss, &sl)) {
				status = 500;
			} else {
				int port = ss.ss_family == AF_INET ? ntohs(((struct sockaddr_in *)&ss)->sin_port)
								   : ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
				snprintf(j->address, sizeof(j->address), strchr(h, ':') ? "[%s]:%d" : "%s:%d", h, port);
			}
		}
		if (!status) {
			j->total = rq.copy_bytes;
			if (pthread_create(&(pthread_t){ 0 }, NULL, receive_thread, j)) {
				errf(err, sizeof(err), "cannot start the receiving thread");
				status = 500;
			}
		}
		if (status) {
			job_close(j);
			remove_files(j);
		}
	}
	if (status) {
		pthread_mutex_unlock(&a->lock);
		explicit_bzero(j->key, sizeof(j->key));
		free(j);
		*resp = http_error("%s", err);
		return status;
	}
	j->next = a->copies;
	a->copies = j;
	*resp = job_json(j);
	pthread_mutex_unlock(&a->lock);
	glide_log("host", "receiving VM %s's %d file(s) on %s into datastore %s", rq.name, rq.nfiles, j->address, rq.datastore);
	return 201;
}

int host_copy_send(struct host_agent *a, const char *name, json_t *body, json_t **resp)
{
	const char *to = json_string_value(json_object_get(body, "to"));
	const char *key = json_string_value(json_object_get(body, "key"));
	char addr[1][128], err[512];
	if (!to || wire_parse_addrs(to, addr, 1) != 1 || !host_key_valid(key)) {
		*resp = http_error("a send needs \"to\" (HOST:PORT) and \"key\" (64 hex digits)");
		return 400;
	}
	struct copy_job *j = calloc(1, sizeof(*j));
	if (!j)
		return 500;
	j->agent = a;
	j->listen_fd = -1;
	j->started_ns = now_ns();
	snprintf(j->name, sizeof(j->name), "%s", name);
	snprintf(j->to, sizeof(j->to), "%s", addr[0]);
	key_parse(key, j->key);
	for (int i = 0; i < HOST_COPY_FILES_MAX; i++)
		j->files[i].fd = -1;

	pthread_mutex_lock(&a->lock);
	struct host_vm *v = host_vm_find(a, name);
	struct copy_job *old = job_find(a, name, false);
	int status = 0;
	if (!v) {
		errf(err, sizeof(err), "no VM named %s on host %s", name, a->name);
		status = 404;
	} else if (v->pid || v->copying) {
		errf(err, sizeof(err), "VM %s is %s on host %s; only a powered-off or suspended VM's files are copied", name,
		     v->copying ? "being copied" : v->state, a->name);
		status = 409;
	} else if (old && (old->state == COPY_RUNNING || old->vm)) {
		errf(err, sizeof(err), "VM %s's files are being sent already", name);
		status = 409;
	} else {
		json_t *disks = json_object_get(v->record, "disks"), *d;
		size_t i;
		json_array_foreach(disks, i, d)
			snprintf(j->files[j->nfiles++].path, PATH_MAX, "%s", json_string_value(json_object_get(d, "path")) ?: "");
		if (host_vm_suspended(v))
			snprintf(j->files[j->nfiles++].path, PATH_MAX, "%s", host_vm_suspended(v));
		for (int k = 0; k < j->nfiles && !status; k++) {
			struct copy_file *cf = &j->files[k];
			struct stat st;
			cf->fd = open(cf->path, O_RDONLY | O_CLOEXEC);
			if (cf->fd < 0 || fstat(cf->fd, &st)) {
				errf(err, sizeof(err), "cannot read %s: %s", cf->path, strerror(errno));
				status = 409;
			} else {
				cf->size = S_ISBLK(st.st_mode) ? (uint64_t)lseek(cf->fd, 0, SEEK_END) : (uint64_t)st.st_size;
				j->total += allocated_bytes(cf->fd, cf->size);
			}
		}
	}
	if (!status) {
		j->vm = v;
		host_vm_hold(v);
		v->copying = true;
		if (pthread_create(&(pthread_t){ 0 }, NULL, send_thread, j)) {
			v->copying = false;
			v->users--;
			errf(err, sizeof(err), "cannot start the sending thread");
			status = 500;
		}
	}
	if (status) {
		job_close(j);
		pthread_mutex_unlock(&a->lock);
		explicit_bzero(j->key, sizeof(j->key));
		free(j);
		*resp = http_error("%s", err);
		return status;
	}
	if (old) { /* the previous send's record: replaced */
		job_unlink(a, old);
		free(old);
	}
	j->next = a->copies;
	a->copies = j;
	*resp = job_json(j);
	pthread_mutex_unlock(&a->lock);
	glide_log("host", "sending VM %s's %d file(s) to %s", name, j->nfiles, j->to);
	return 202;
}

int host_copy_status(struct host_agent *a, const char *name, bool receive, json_t **resp)
{
	pthread_mutex_lock(&a->lock);
	struct copy_job *j = job_find(a, name, receive);
	*resp = j ? job_json(j) : http_error("host %s has no %s of VM %s's files", a->name, receive ? "receipt" : "send", name);
	pthread_mutex_unlock(&a->lock);
	return j ? 200 : 404;
}

int host_copy_forget(struct host_agent *a, const char *name, bool keep, json_t **resp)
{
	pthread_mutex_lock(&a->lock);
	struct copy_job *j = job_find(a, name, true);
	if (!j) {
		pthread_mutex_unlock(&a->lock);
		*resp = http_error("host %s has no receipt of VM %s's files", a->name, name);
		return 404;
	}
	if (keep && j->state != COPY_DONE) {
		pthread_mutex_unlock(&a->lock);
		*resp = http_error("VM %s's files are %s here, not all received: nothing to keep", name, copy_state_names[j->state]);
		return 409;
	}
	job_unlink(a, j);
	bool running = j->state == COPY_RUNNING;
	json_t *paths = json_array();
	for (int i = 0; i < j->nfiles; i++)
		json_array_append_new(paths, json_string(j->files[i].path));
	if (running) { /* the thread removes the files and frees it */
		j->cancel = true;
		j->detached = true;
	}
	pthread_mutex_unlock(&a->lock);
	if (!running) {
		if (!keep)
			remove_files(j);
		free(j);
	}
	*resp = json_pack("{s:s, s:o, s:b}", "name", name, keep ? "kept" : "removed", paths, "was_running", running);
	return 200;
}
