/* State format core: headers, CRC-protected sections, the section registry,
 * and save/verify/apply of all registered sections. Nothing is applied to a
 * VM until every section of a blob has been read and verified. */
#include "state/state.h"
#include "common/util.h"
#include "vmm/vm.h"
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#define STATE_REGISTRY_MAX 32

static const struct state_section_ops *registry[STATE_REGISTRY_MAX];
static int registry_count;

int state_register(const struct state_section_ops *ops)
{
	if (registry_count >= STATE_REGISTRY_MAX || !ops->name || strlen(ops->name) > STATE_NAME_LEN) {
		glide_log("state", "cannot register state section %s: %s", ops->name ? ops->name : "(unnamed)",
			  registry_count >= STATE_REGISTRY_MAX ? "registry full" : "name too long");
		return -ENOSPC;
	}
	if (state_find(ops->name)) {
		glide_log("state", "cannot register state section %s: name taken", ops->name);
		return -EEXIST;
	}
	int i = registry_count++;
	/* keep sorted by order */
	while (i > 0 && registry[i - 1]->order > ops->order) {
		registry[i] = registry[i - 1];
		i--;
	}
	registry[i] = ops;
	return 0;
}

int state_live_sections(const struct state_section_ops **out, int max)
{
	int n = 0;
	for (int i = 0; i < registry_count && n < max; i++)
		if (registry[i]->live)
			out[n++] = registry[i];
	return n;
}

const struct state_section_ops *state_find(const char *name)
{
	for (int i = 0; i < registry_count; i++)
		if (!strcmp(registry[i]->name, name))
			return registry[i];
	return NULL;
}

void sbuf_put(struct state_buf *b, const void *p, size_t n)
{
	if (b->failed)
		return;
	if (b->len + n > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;
		while (cap < b->len + n)
			cap *= 2;
		uint8_t *d = realloc(b->data, cap);
		if (!d) {
			b->failed = true;
			return;
		}
		b->data = d;
		b->cap = cap;
	}
	memcpy(b->data + b->len, p, n);
	b->len += n;
}
void sbuf_u32(struct state_buf *b, uint32_t v) { sbuf_put(b, &v, 4); }
void sbuf_u64(struct state_buf *b, uint64_t v) { sbuf_put(b, &v, 8); }
void sbuf_free(struct state_buf *b)
{
	free(b->data);
	memset(b, 0, sizeof(*b));
}

bool scur_get(struct state_cursor *c, void *out, size_t n)
{
	if (c->failed || c->left < n) {
		c->failed = true;
		if (out)
			memset(out, 0, n);
		return false;
	}
	if (out)
		memcpy(out, c->p, n);
	c->p += n;
	c->left -= n;
	return true;
}
uint32_t scur_u32(struct state_cursor *c) { uint32_t v; scur_get(c, &v, 4); return v; }
uint64_t scur_u64(struct state_cursor *c) { uint64_t v; scur_get(c, &v, 8); return v; }

int state_writer_fd(void *ctx, const void *buf, size_t len) { return write_full(*(int *)ctx, buf, len); }
int state_reader_fd(void *ctx, void *buf, size_t len) { return read_full(*(int *)ctx, buf, len); }
int state_writer_buf(void *ctx, const void *buf, size_t len)
{
	struct state_buf *b = ctx;
	sbuf_put(b, buf, len);
	return b->failed ? -ENOMEM : 0;
}

static uint32_t crc(const void *p, size_t n)
{
	uLong c = crc32(0L, Z_NULL, 0);
	const uint8_t *b = p;
	while (n) { /* zlib takes uInt lengths */
		uInt chunk = n > (1u << 30) ? (1u << 30) : (uInt)n;
		c = crc32(c, b, chunk);
		b += chunk;
		n -= chunk;
	}
	return (uint32_t)c;
}

int state_write_header(struct state_writer *w)
{
	uint8_t h[STATE_HEADER_LEN] = { 0 };
	uint32_t v = STATE_FORMAT_VERSION, hl = STATE_HEADER_LEN, flags = 0, c;

	memcpy(h, STATE_MAGIC, 8);
	memcpy(h + 8, &v, 4);
	memcpy(h + 12, &hl, 4);
	memcpy(h + 16, &flags, 4);
	c = crc(h, 20);
	memcpy(h + 20, &c, 4);
	return w->write(w->ctx, h, sizeof(h));
}

int state_write_section(struct state_writer *w, const char *name, uint32_t instance, uint32_t version,
			const void *payload, size_t len)
{
	uint8_t h[STATE_SECTION_HEADER_LEN] = { 0 };
	uint64_t l = len;
	uint32_t pc = crc(payload, len), zero = 0, hc;
	int rc;

	strncpy((char *)h, name, STATE_NAME_LEN);
	memcpy(h + 16, &instance, 4);
	memcpy(h + 20, &version, 4);
	memcpy(h + 24, &l, 8);
	memcpy(h + 32, &pc, 4);
	memcpy(h + 36, &zero, 4);
	hc = crc(h, 40);
	memcpy(h + 40, &hc, 4);
	rc = w->write(w->ctx, h, sizeof(h));
	if (!rc && len)
		rc = w->write(w->ctx, payload, len);
	return rc;
}

static const char *read_error(int rc)
{
	return rc == -EPIPE ? "truncated (unexpected end of data)" : strerror(-rc);
}

int state_read_header(struct state_reader *r, char *err, size_t errlen)
{
	uint8_t h[STATE_HEADER_LEN];
	uint32_t v, hl, c;
	int rc = r->read(r->ctx, h, sizeof(h));

	if (rc) {
		errf(err, errlen, "state header: %s", read_error(rc));
		return rc == -EPIPE ? -EINVAL : rc;
	}
	if (memcmp(h, STATE_MAGIC, 8)) {
		errf(err, errlen, "not a glide state (bad magic)");
		return -EINVAL;
	}
	memcpy(&v, h + 8, 4);
	memcpy(&hl, h + 12, 4);
	memcpy(&c, h + 20, 4);
	if (c != crc(h, 20)) {
		errf(err, errlen, "state header checksum mismatch (corrupted)");
		return -EINVAL;
	}
	if (v > STATE_FORMAT_VERSION) {
		errf(err, errlen, "state format version %u is newer than this glide supports (%u); upgrade glide", v,
		     STATE_FORMAT_VERSION);
		return -EPROTONOSUPPORT;
	}
	if (v >= 1 && v < STATE_FORMAT_VERSION) {
		errf(err, errlen, "made by an older glide (state format version %u; this glide reads version %u): "
			     "restore it with the glide that wrote it, or take a new snapshot", v, STATE_FORMAT_VERSION);
		return -EPROTONOSUPPORT;
	}
		if (v == 0 || hl != STATE_HEADER_LEN) {
		errf(err, errlen, "state header: unsupported version %u / length %u", v, hl);
		return -EINVAL;
	}
	return 0;
}

int state_read_section_header(struct state_reader *r, struct state_section_header *out, char *err, size_t errlen)
{
	uint8_t h[STATE_SECTION_HEADER_LEN];
	uint32_t hc;
	int rc = r->read(r->ctx, h, sizeof(h));

	if (rc) {
		errf(err, errlen, "section header: %s", read_error(rc));
		return rc == -EPIPE ? -EINVAL : rc;
	}
	memcpy(&hc, h + 40, 4);
	if (hc != crc(h, 40)) {
		errf(err, errlen, "section header checksum mismatch (corrupted)");
		return -EINVAL;
	}
	memset(out, 0, sizeof(*out));
	memcpy(out->name, h, STATE_NAME_LEN);
	memcpy(&out->instance, h + 16, 4);
	memcpy(&out->version, h + 20, 4);
	memcpy(&out->length, h + 24, 8);
	memcpy(&out->payload_crc, h + 32, 4);
	if (out->length > STATE_SECTION_MAX_LEN) {
		errf(err, errlen, "section %s claims %llu bytes (limit %llu)", out->name,
		     (unsigned long long)out->length, (unsigned long long)STATE_SECTION_MAX_LEN);
		return -EINVAL;
	}
	return 0;
}

int state_read_payload(struct state_reader *r, const struct state_section_header *h, void *buf, char *err,
		       size_t errlen)
{
	int rc = h->length ? r->read(r->ctx, buf, h->length) : 0;
	if (rc) {
		errf(err, errlen, "section %s: %s", h->name, read_error(rc));
		return rc == -EPIPE ? -EINVAL : rc;
	}
	if (crc(buf, h->length) != h->payload_crc) {
		errf(err, errlen, "section %s instance %u: checksum mismatch (corrupted)", h->name, h->instance);
		return -EINVAL;
	}
	return 0;
}

int state_save_all(struct vm *vm, struct state_writer *w, bool with_end)
{
	int rc = state_write_header(w);

	for (int i = 0; !rc && i < registry_count; i++) {
		const struct state_section_ops *ops = registry[i];
		int n = !ops->save ? 0 : ops->per_vcpu ? vm->nvcpus : ops->instances ? (int)ops->instances : 1;
		for (int inst = 0; !rc && inst < n; inst++) {
			struct state_buf b = { 0 };
			if (ops->present && !ops->present(vm, inst))
				continue;
			rc = ops->save(vm, inst, &b);
			if (!rc && b.failed)
				rc = -ENOMEM;
			if (rc == -ENOENT) { /* section has nothing to save in this VM */
				rc = 0;
				sbuf_free(&b);
				continue;
			}
			if (!rc)
				rc = state_write_section(w, ops->name, (uint32_t)inst, ops->version, b.data, b.len);
			sbuf_free(&b);
		}
	}
	if (!rc && with_end)
		rc = state_write_section(w, "end", 0, 1, NULL, 0);
	return rc;
}

struct state_pending *state_pending_new(void)
{
	return calloc(1, sizeof(struct state_pending));
}

void state_pending_free(struct state_pending *p)
{
	if (!p)
		return;
	for (int i = 0; i < p->n; i++)
		free(p->s[i].data);
	free(p);
}

int state_pending_add(struct state_pending *p, const struct state_section_header *h, uint8_t *data, char *err,
		      size_t errlen)
{
	const struct state_section_ops *ops = state_find(h->name);

	if (!ops) {
		errf(err, errlen, "unknown state section '%s' (written by a newer glide?)", h->name);
		return -EINVAL;
	}
	if (!ops->load) {
		errf(err, errlen, "state section '%s' is copied live and cannot appear in a checkpoint", h->name);
		return -EINVAL;
	}
	if (h->version > ops->version || h->version == 0) {
		errf(err, errlen, "state section '%s' version %u is not supported (this glide reads up to %u)", h->name,
		     h->version, ops->version);
		return -EPROTONOSUPPORT;
	}
	if (h->instance >= (ops->per_vcpu ? VM_MAX_VCPUS : ops->instances ? ops->instances : 1u)) {
		errf(err, errlen, "state section '%s' has invalid instance %u", h->name, h->instance);
		return -EINVAL;
	}
	for (int i = 0; i < p->n; i++) {
		if (p->s[i].ops == ops && p->s[i].h.instance == h->instance) {
			errf(err, errlen, "state section '%s' instance %u appears twice", h->name, h->instance);
			return -EINVAL;
		}
	}
	if (p->n >= STATE_MAX_SECTIONS) {
		errf(err, errlen, "too many state sections");
		return -EINVAL;
	}
	p->s[p->n].ops = ops;
	p->s[p->n].h = *h;
	p->s[p->n].data = data;
	p->n++;
	return 0;
}

int state_pending_apply(struct vm *vm, struct state_pending *p, char *err, size_t errlen)
{
	/* Every per-vCPU section must be present for every vCPU it was saved for. */
	for (int r = 0; r < registry_count; r++) {
		const struct state_section_ops *ops = registry[r];
		for (int i = 0; i < p->n; i++) {
			if (p->s[i].ops != ops)
				continue;
			if (ops->per_vcpu && (int)p->s[i].h.instance >= vm->nvcpus) {
				errf(err, errlen, "state section '%s' is for vCPU %u but the VM has %d vCPUs", ops->name,
				     p->s[i].h.instance, vm->nvcpus);
				return -EINVAL;
			}
		}
	}
	/* Every device this VM has must find its state (a device left in its
	 * reset state under a running driver would lose its queues). */
	for (int r = 0; r < registry_count; r++) {
		const struct state_section_ops *ops = registry[r];
		for (int inst = 0; ops->present && ops->save && inst < (int)ops->instances; inst++) {
			bool found = false;
			for (int i = 0; i < p->n && !found; i++)
				found = p->s[i].ops == ops && (int)p->s[i].h.instance == inst;
			if (ops->present(vm, inst) && !found) {
				errf(err, errlen, "the state has no section '%s' instance %d for a device this VM has", ops->name,
				     inst);
				return -EINVAL;
			}
		}
	}
	for (int r = 0; r < registry_count; r++) {
		const struct state_section_ops *ops = registry[r];
		for (int i = 0; i < p->n; i++) {
			if (p->s[i].ops != ops)
				continue;
			int rc = ops->load(vm, (int)p->s[i].h.instance, p->s[i].h.version, p->s[i].data,
					   p->s[i].h.length, err, errlen);
			if (rc)
				return rc;
		}
	}
	return 0;
}

int state_blob_read(void *ctx, void *buf, size_t len)
{
	struct state_blob *b = ctx;
	if (len > b->left)
		return -EPIPE;
	memcpy(buf, b->p, len);
	b->p += len;
	b->left -= len;
	return 0;
}

int state_parse_blob(const uint8_t *data, size_t len, struct state_pending *p, char *err, size_t errlen)
{
	struct state_blob br = { data, len };
	struct state_reader r = { state_blob_read, &br };
	int rc = state_read_header(&r, err, errlen);

	while (!rc) {
		struct state_section_header h;
		uint8_t *payload;

		rc = state_read_section_header(&r, &h, err, errlen);
		if (rc)
			break;
		if (!strcmp(h.name, "end"))
			return br.left ? (errf(err, errlen, "%zu bytes of garbage after the end section", br.left), -EINVAL) : 0;
		if (h.length > br.left) {
			errf(err, errlen, "section %s: truncated (needs %llu bytes, %zu left)", h.name,
			     (unsigned long long)h.length, br.left);
			return -EINVAL;
		}
		payload = malloc(h.length ? h.length : 1);
		if (!payload)
			return -ENOMEM;
		rc = state_read_payload(&r, &h, payload, err, errlen);
		if (!rc)
			rc = state_pending_add(p, &h, payload, err, errlen);
		if (rc)
			free(payload);
	}
	return rc;
}
