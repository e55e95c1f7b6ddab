/* The destination side of a live migration (`glide vm run --incoming`).
 *
 * Prepare: listen on the migration addresses and wait. A connection that
 * cannot prove knowledge of the one-time key is refused and logged, and we
 * keep waiting. Once all streams of one session are in, a receiver thread
 * per stream applies PAGES frames straight into guest memory (zero runs
 * only touch pages that were written before). Stream 0 also carries the
 * configuration (checked, then the masked VM is created) and, at
 * switchover, the checkpoint: once every stream has delivered FINAL, the
 * state is applied, RESTORED is sent, and only on GO do the vCPUs run.
 * Any failure before that discards the masked VM (the process exits). */
#include "migrate/migration.h"
#include "devices/devices.h"
#include "state/state.h"
#include "vmm/config.h"
#include "common/net.h"
#include "common/util.h"
#include <arpa/inet.h>
#include <errno.h>
#include <lz4.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define INCOMING_STREAMS_WAIT_MS 30000

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
	uint64_t *touched;          /* pages written so far (zero runs skip the others) */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool vm_created;
	bool final[WIRE_MAX_STREAMS];
	int finals;
	bool done, failed;
	char error[512];
	uint64_t pages, bytes;
};

/* Fault injection for tests: GLIDE_TEST_FAULT names a point where the destination dies. */
static bool test_fault(const char *point)
{
	const char *f = getenv("GLIDE_TEST_FAULT");
	return f && !strcmp(f, point);
}

static void in_fail(struct incoming *in, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
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
	in->touched = calloc((in->vm->mem.size / GUEST_PAGE_SIZE + 63) / 64, sizeof(uint64_t));
	if (!in->touched) {
		rc = -ENOMEM;
		goto out;
	}
	pthread_mutex_lock(&in->lock);
	in->vm_created = true;
	pthread_mutex_unlock(&in->lock);
	glide_log("incoming", "prepared masked VM %s: %llu MiB, %d vCPUs", args.cfg.name,
		  (unsigned long long)(args.cfg.memory_bytes >> 20), args.cfg.vcpus);
	rc = 0;
out:
	free(want);
	json_decref(j);
	return rc;
}

/* PAGES: every run and every compressed length is checked against the frame
 * before any page is written. */
static int apply_pages(struct incoming *in, struct wire_frame *f, char *err, size_t errlen)
{
	uint32_t nruns;
	uint64_t total = in->vm->mem.size / GUEST_PAGE_SIZE;
	const uint8_t *data, *runs, *data_end;
	struct page_run run;

	if (!in->vm_created) {
		errf(err, errlen, "protocol error: pages before the configuration");
		return -EPROTO;
	}
	if (f->len < 8) {
		errf(err, errlen, "PAGES frame too short");
		return -EBADMSG;
	}
	memcpy(&nruns, f->payload, 4);
	if (nruns == 0 || nruns > PAGES_FRAME_MAX_RUNS || (uint64_t)nruns * sizeof(run) > f->len - 8) {
		errf(err, errlen, "PAGES frame has a bad run count %u", nruns);
		return -EBADMSG;
	}
	runs = f->payload + f->len - (size_t)nruns * sizeof(run);
	data_end = runs;
	data = f->payload + 8;
	for (uint32_t i = 0; i < nruns; i++) {
		memcpy(&run, runs + i * sizeof(run), sizeof(run));
		if (!run.npages || run.first_pfn >= total || run.npages > total - run.first_pfn ||
		    run.kind > PAGE_RUN_LZ4) {
			errf(err, errlen, "PAGES frame has an invalid run (page %llu, %u pages, kind %u)",
			     (unsigned long long)run.first_pfn, run.npages, run.kind);
			return -EBADMSG;
		}
		for (uint32_t k = 0; k < run.npages && run.kind != PAGE_RUN_ZERO; k++) {
			uint32_t n = GUEST_PAGE_SIZE;
			if (run.kind == PAGE_RUN_LZ4) {
				if (data_end - data < 4)
					goto bad_length;
				memcpy(&n, data, 4);
				data += 4;
				if (n == 0 || n >= GUEST_PAGE_SIZE)
					goto bad_length;
			}
			if ((uint64_t)(data_end - data) < n)
				goto bad_length;
			data += n;
		}
	}
	if (data != data_end)
		goto bad_length;
	data = f->payload + 8;
	for (uint32_t i = 0; i < nruns; i++) {
		memcpy(&run, runs + i * sizeof(run), sizeof(run));
		for (uint64_t p = run.first_pfn; p < run.first_pfn + run.npages; p++) {
			uint8_t *dst = in->vm->mem.host + p * GUEST_PAGE_SIZE;
			if (run.kind == PAGE_RUN_DATA) {
				memcpy(dst, data, GUEST_PAGE_SIZE);
				data += GUEST_PAGE_SIZE;
			} else if (run.kind == PAGE_RUN_LZ4) {
				uint32_t n;
				memcpy(&n, data, 4);
				if (LZ4_decompress_safe((const char *)data + 4, (char *)dst, (int)n, (int)GUEST_PAGE_SIZE) !=
				    (int)GUEST_PAGE_SIZE) {
					errf(err, errlen, "PAGES frame: page %llu does not decompress to 4 KiB",
					     (unsigned long long)p);
					return -EBADMSG;
				}
				data += 4 + n;
			} else if (in->touched[p / 64] & (1ULL << (p % 64))) {
				memset(dst, 0, GUEST_PAGE_SIZE);
				continue;
			} else {
				continue;
			}
			in->touched[p / 64] |= 1ULL << (p % 64);
		}
		__atomic_add_fetch(&in->pages, run.npages, __ATOMIC_RELAXED);
	}
	return 0;
bad_length:
	errf(err, errlen, "PAGES frame length %u does not match its runs", f->len);
	return -EBADMSG;
}

/* Switchover on stream 0: wait for FINAL everywhere, restore, RESTORED, GO, run. */
static int finish(struct incoming *in, struct wire_frame *state, char *err, size_t errlen)
{
	struct wire_stream *s0 = &in->streams[0];
	struct state_pending *pend = state_pending_new();
	struct wire_frame f;
	uint64_t t0 = now_ns();
	int rc;

	if (!pend)
		return -ENOMEM;
	rc = state_parse_blob(state->payload, state->len, pend, err, errlen);
	if (rc) {
		state_pending_free(pend);
		send_json_frame(s0, FRAME_ABORT, json_pack("{s:s}", "error", err));
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
	if (rc) {
		send_json_frame(s0, FRAME_ABORT, json_pack("{s:s}", "error", err));
		return rc;
	}
	double restore_ms = (now_ns() - t0) / 1e6;
	send_json_frame(s0, FRAME_RESTORED, json_pack("{s:f}", "restore_ms", restore_ms));
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
	if (paused)
		vm_pause(in->vm); /* not started yet: the vCPUs start parked */
	rc = vm_start_vcpus(in->vm, err, errlen);
	if (rc)
		return rc;
	send_json_frame(s0, FRAME_RUNNING, json_pack("{s:f}", "restore_ms", restore_ms));
	glide_log("incoming", "VM %s here: restored in %.2f ms, %llu pages received", paused ? "paused (as on the source)" : "running",
		  restore_ms, (unsigned long long)in->pages);
	return 0;
}

struct receiver_arg {
	struct incoming *in;
	int index;
};

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
		case FRAME_PAGES:
			if ((rc = apply_pages(in, &f, err, sizeof(err)))) {
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
				send_json_frame(s, FRAME_ABORT, json_pack("{s:s}", "error", err));
				in_fail(in, "refused the VM: %s", err);
				return NULL;
			}
			send_json_frame(s, FRAME_CONFIG_OK, json_pack("{s:b}", "ok", 1));
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
			rc = finish(in, &f, err, sizeof(err));
			if (rc) {
				in_fail(in, "switchover failed: %s", err);
				return NULL;
			}
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

static void peer_name(int fd, char *out, size_t len)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char host[INET6_ADDRSTRLEN] = "?";
	if (getpeername(fd, (struct sockaddr *)&ss, &sl) == 0) {
		if (ss.ss_family == AF_INET)
			inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, host, sizeof(host));
		else if (ss.ss_family == AF_INET6)
			inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, host, sizeof(host));
	}
	snprintf(out, len, "%s", host);
}

/* Accepts authenticated streams until one session has all of them. */
static int accept_streams(struct incoming *in, int *listeners, int nl, char *err, size_t errlen)
{
	uint8_t session[WIRE_SESSION_BYTES];
	bool have_session = false;
	uint32_t got = 0;
	uint64_t deadline = 0;

	for (;;) {
		struct pollfd pfd[WIRE_MAX_STREAMS];
		for (int i = 0; i < nl; i++)
			pfd[i] = (struct pollfd){ .fd = listeners[i], .events = POLLIN };
		int timeout = -1;
		if (have_session) {
			uint64_t now = now_ns();
			if (now >= deadline) {
				errf(err, errlen, "only %u of %u migration streams connected", got, in->nstreams);
				return -ETIMEDOUT;
			}
			timeout = (int)((deadline - now) / 1000000) + 1;
		}
		int r = poll(pfd, (nfds_t)nl, timeout);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			errf(err, errlen, "poll: %s", strerror(errno));
			return -errno;
		}
		for (int i = 0; i < nl; i++) {
			if (!(pfd[i].revents & POLLIN))
				continue;
			int fd = accept4(listeners[i], NULL, NULL, SOCK_CLOEXEC);
			if (fd < 0)
				continue;
			struct wire_stream ws;
			uint8_t sess[WIRE_SESSION_BYTES];
			uint32_t count;
			char why[256], peer[64];
			peer_name(fd, peer, sizeof(peer));
			if (wire_accept(&ws, fd, in->key, in->can_encrypt, sess, &count, why, sizeof(why))) {
				glide_log("incoming", "refused migration connection from %s: %s", peer, why);
				close(fd);
				continue;
			}
			snprintf(ws.peer, sizeof(ws.peer), "%s", peer);
			if (have_session && (memcmp(sess, session, sizeof(session)) || count != in->nstreams ||
					     in->streams[ws.index].fd >= 0)) {
				glide_log("incoming", "refused stream %d from %s: not part of the current migration", ws.index, peer);
				wire_close(&ws);
				continue;
			}
			if (!have_session) {
				have_session = true;
				memcpy(session, sess, sizeof(session));
				in->nstreams = count;
				deadline = now_ns() + INCOMING_STREAMS_WAIT_MS * 1000000ULL;
				glide_log("incoming", "migration from %s: %u stream%s, %s", peer, count, count > 1 ? "s" : "",
					  ws.encrypted ? "encrypted" : "not encrypted");
			}
			in->streams[ws.index] = ws;
			if (++got == in->nstreams)
				return 0;
		}
	}
}

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
	n = wire_parse_addrs(addrs, list, WIRE_MAX_STREAMS);
	if (n < 0) {
		errf(err, errlen, "--incoming '%s' must be HOST:PORT[,HOST:PORT...]", addrs);
		rc = -EINVAL;
		goto out;
	}
	for (int i = 0; i < n; i++) {
		int fd = net_listen_tcp(list[i], 16, err, errlen);
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
	rc = accept_streams(in, listeners, nl, err, errlen);
	if (rc)
		goto out;
	for (uint32_t i = 0; i < in->nstreams; i++) {
		wire_set_stall_timeout(&in->streams[i], m->stall_timeout_ms);
		struct receiver_arg *ra = malloc(sizeof(*ra));
		ra->in = in;
		ra->index = (int)i;
		pthread_create(&in->threads[i], NULL, receiver, ra);
	}
	pthread_mutex_lock(&in->lock);
	while (!in->done && !in->failed)
		pthread_cond_wait(&in->cond, &in->lock);
	pthread_mutex_unlock(&in->lock);
	for (uint32_t i = 0; i < in->nstreams; i++)
		pthread_join(in->threads[i], NULL);
	if (in->failed) {
		glide_log("incoming", "migration failed: %s", in->error);
		if (in->streams[0].fd >= 0)
			send_json_frame(&in->streams[0], FRAME_ABORT, json_pack("{s:s}", "error", in->error));
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
	m->incoming = false;
	if (rc && m->api) {
		http_server_stop(m->api);
		m->api = NULL;
	}
	free(in->touched);
	free(in);
	return rc;
}
