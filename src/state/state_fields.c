/* Reading a state back as named fields: `glide state dump` prints a
 * snapshot (or a checkpoint) one field a line, and `glide state diff` and
 * the round-trip tests compare two captures of the same VM with it.
 *
 * Each section names its own fields (the `fields` hook beside its save and
 * load code); a section without the hook is shown in 16-byte rows. A field
 * is EXACT (equal in two captures of the same state), CLOCK (time that moves
 * on between capture and restore: it may only grow) or DERIVED (recomputed
 * by KVM on restore: skipped). Bytes that no field covers are compared too,
 * so a section cannot hide a difference by leaving a byte out of its list.
 * Sections are read and CRC-checked as on restore; live sections (RAM) are
 * skipped: memory is compared with memsave. */
#include "state/state.h"
#include "common/util.h"
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FIELD_ROW_BYTES 16
#define FIELD_NAME_MAX 96

static void field_addv(state_field_fn fn, void *ctx, enum state_field_kind kind, const char *why, size_t offset,
		       size_t len, unsigned unit, const char *fmt, va_list ap)
{
	char name[FIELD_NAME_MAX];
	vsnprintf(name, sizeof(name), fmt, ap);
	struct state_field f = { .name = name, .offset = offset, .len = len, .unit = unit, .kind = kind, .why = why };
	fn(ctx, &f);
}

void state_field_add(state_field_fn fn, void *ctx, size_t offset, size_t len, unsigned unit, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	field_addv(fn, ctx, STATE_FIELD_EXACT, NULL, offset, len, unit, fmt, ap);
	va_end(ap);
}

void state_field_add_kind(state_field_fn fn, void *ctx, enum state_field_kind kind, const char *why, size_t offset,
			  size_t len, unsigned unit, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	field_addv(fn, ctx, kind, why, offset, len, unit, fmt, ap);
	va_end(ap);
}

struct state_section_copy {
	char name[STATE_NAME_LEN + 1];
	uint32_t instance, version;
	const struct state_section_ops *ops; /* NULL: not known to this glide */
	uint8_t *data;
	size_t len;
};

struct state_sections {
	int n;
	struct state_section_copy s[STATE_MAX_SECTIONS];
};

void state_sections_free(struct state_sections *s)
{
	if (!s)
		return;
	for (int i = 0; i < s->n; i++)
		free(s->s[i].data);
	free(s);
}

static struct state_sections *sections_read(struct state_reader *r, char *err, size_t errlen)
{
	struct state_sections *s = calloc(1, sizeof(*s));
	int rc;

	if (!s) {
		errf(err, errlen, "out of memory");
		return NULL;
	}
	rc = state_read_header(r, err, errlen);
	while (!rc) {
		struct state_section_header h;
		uint8_t *payload;

		rc = state_read_section_header(r, &h, err, errlen);
		if (rc)
			break;
		if (!strcmp(h.name, "end"))
			return s;
		payload = malloc(h.length ? h.length : 1);
		if (!payload) {
			errf(err, errlen, "section %s: out of memory for %llu bytes", h.name, (unsigned long long)h.length);
			break;
		}
		rc = state_read_payload(r, &h, payload, err, errlen);
		const struct state_section_ops *ops = state_find(h.name);
		if (rc || (ops && ops->live && !ops->load)) { /* live data (RAM): verified, not kept */
			free(payload);
			continue;
		}
		if (s->n >= STATE_MAX_SECTIONS) {
			free(payload);
			errf(err, errlen, "too many state sections");
			break;
		}
		struct state_section_copy *c = &s->s[s->n++];
		memcpy(c->name, h.name, sizeof(c->name));
		c->instance = h.instance;
		c->version = h.version;
		c->ops = ops;
		c->data = payload;
		c->len = h.length;
	}
	state_sections_free(s);
	return NULL;
}


struct state_sections *state_sections_read_blob(const uint8_t *data, size_t len, char *err, size_t errlen)
{
	struct state_blob b = { data, len };
	struct state_reader r = { state_blob_read, &b };
	return sections_read(&r, err, errlen);
}

struct state_sections *state_sections_read_file(const char *path, char *err, size_t errlen)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct state_reader r = { state_reader_fd, &fd };
	struct state_sections *s;
	char why[256];

	if (fd < 0) {
		errf(err, errlen, "cannot open %s: %s", path, strerror(errno));
		return NULL;
	}
	s = sections_read(&r, why, sizeof(why));
	close(fd);
	if (!s)
		errf(err, errlen, "%s: %s", path, why);
	return s;
}

/* The fields of one section copy, collected from its hook (names copied). */
struct field_list {
	int n, cap;
	struct state_field *f;
	bool failed;
};

static void field_collect(void *ctx, const struct state_field *f)
{
	struct field_list *l = ctx;
	if (l->failed)
		return;
	if (l->n == l->cap) {
		int cap = l->cap ? l->cap * 2 : 64;
		struct state_field *nf = realloc(l->f, (size_t)cap * sizeof(*nf));
		if (!nf) {
			l->failed = true;
			return;
		}
		l->f = nf;
		l->cap = cap;
	}
	l->f[l->n] = *f;
	l->f[l->n].name = strdup(f->name);
	if (!l->f[l->n].name)
		l->failed = true;
	l->n++;
}

static void field_list_free(struct field_list *l)
{
	for (int i = 0; i < l->n; i++)
		free((char *)l->f[i].name);
	free(l->f);
	memset(l, 0, sizeof(*l));
}

/* Lists a copy's fields; a field outside the payload makes the list invalid. */
static int fields_of(const struct state_section_copy *c, struct field_list *l)
{
	memset(l, 0, sizeof(*l));
	if (c->ops && c->ops->fields) {
		int rc = c->ops->fields(c->data, c->len, field_collect, l);
		if (rc || l->failed)
			return rc ? rc : -ENOMEM;
		for (int i = 0; i < l->n; i++)
			if (l->f[i].offset > c->len || l->f[i].len > c->len - l->f[i].offset)
				return -EINVAL;
		return 0;
	}
	for (size_t off = 0; off < c->len; off += FIELD_ROW_BYTES) {
		char name[32];
		snprintf(name, sizeof(name), "+0x%04zx", off);
		struct state_field f = { .name = name, .offset = off, .len = MIN((size_t)FIELD_ROW_BYTES, c->len - off),
					 .unit = 1 };
		field_collect(l, &f);
	}
	return l->failed ? -ENOMEM : 0;
}

static uint64_t field_le(const uint8_t *p, size_t n)
{
	uint64_t v = 0;
	for (size_t i = 0; i < n && i < 8; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

static void field_print_value(FILE *out, const struct state_field *f, const uint8_t *data)
{
	const uint8_t *p = data + f->offset;
	unsigned unit = f->unit;

	if (!unit) {
		for (size_t i = 0; i < f->len; i++)
			fputc(isprint(p[i]) ? p[i] : '?', out);
		return;
	}
	if (unit > 8 || f->len % unit)
		unit = 1;
	for (size_t i = 0; i < f->len; i += unit)
		fprintf(out, "%s0x%0*llx", i ? " " : "", (int)unit * 2, (unsigned long long)field_le(p + i, unit));
}

static void section_label(const struct state_section_copy *c, char *buf, size_t len)
{
	if (c->ops && c->ops->per_vcpu)
		snprintf(buf, len, "%s[%u]", c->name, c->instance);
	else if (c->instance)
		snprintf(buf, len, "%s#%u", c->name, c->instance);
	else
		snprintf(buf, len, "%s", c->name);
}

int state_sections_print(const struct state_sections *s, FILE *out)
{
	int bad = 0;
	for (int i = 0; i < s->n; i++) {
		const struct state_section_copy *c = &s->s[i];
		struct field_list l;
		char label[48];

		section_label(c, label, sizeof(label));
		fprintf(out, "# %s: version %u, %zu bytes%s\n", label, c->version, c->len,
			c->ops ? "" : " (a section this glide does not know)");
		if (fields_of(c, &l)) {
			fprintf(out, "%s: malformed payload\n", label);
			bad++;
			field_list_free(&l);
			continue;
		}
		for (int k = 0; k < l.n; k++) {
			fprintf(out, "%s.%s = ", label, l.f[k].name);
			field_print_value(out, &l.f[k], c->data);
			fputc('\n', out);
		}
		field_list_free(&l);
	}
	return bad ? -EINVAL : 0;
}

static const struct state_section_copy *find_copy(const struct state_sections *s, const char *name, uint32_t instance)
{
	for (int i = 0; i < s->n; i++)
		if (!strcmp(s->s[i].name, name) && s->s[i].instance == instance)
			return &s->s[i];
	return NULL;
}

/* One section in both captures: the differences it holds. */
static int diff_section(const struct state_section_copy *a, const struct state_section_copy *b, bool verbose,
			FILE *out)
{
	struct field_list fa, fb;
	char label[48];
	int diffs = 0;

	section_label(a, label, sizeof(label));
	if (a->version != b->version || a->len != b->len) {
		fprintf(out, "%s: version %u, %zu bytes -> version %u, %zu bytes\n", label, a->version, a->len, b->version,
			b->len);
		return 1;
	}
	int ra = fields_of(a, &fa), rb = fields_of(b, &fb);
	bool same_layout = !ra && !rb && fa.n == fb.n;
	for (int k = 0; same_layout && k < fa.n; k++)
		same_layout = !strcmp(fa.f[k].name, fb.f[k].name) && fa.f[k].offset == fb.f[k].offset &&
			      fa.f[k].len == fb.f[k].len && fa.f[k].kind == fb.f[k].kind;
	if (!same_layout) {
		/* Malformed or differently shaped payloads: only whole bytes can be compared. */
		if (memcmp(a->data, b->data, a->len)) {
			fprintf(out, "%s: %s\n", label, ra || rb ? "malformed payload" : "fields differ in number or layout");
			diffs++;
		}
		goto out;
	}
	uint8_t *covered = calloc(1, a->len ? a->len : 1);
	if (!covered) {
		fprintf(out, "%s: out of memory\n", label);
		diffs++;
		goto out;
	}
	for (int k = 0; k < fa.n; k++) {
		const struct state_field *f = &fa.f[k];
		const uint8_t *pa = a->data + f->offset, *pb = b->data + f->offset;
		bool equal = !memcmp(pa, pb, f->len);

		memset(covered + f->offset, 1, f->len);
		if (f->kind == STATE_FIELD_DERIVED) {
			if (verbose && !equal)
				fprintf(out, "skipped %s.%s (%s)\n", label, f->name, f->why ? f->why : "derived");
			continue;
		}
		if (f->kind == STATE_FIELD_CLOCK && f->len <= 8) {
			uint64_t va = field_le(pa, f->len), vb = field_le(pb, f->len);
			if (vb >= va) {
				if (verbose && vb != va)
					fprintf(out, "advanced %s.%s by %llu (%s)\n", label, f->name,
						(unsigned long long)(vb - va), f->why ? f->why : "a clock");
				continue;
			}
			fprintf(out, "%s.%s went back: 0x%llx -> 0x%llx\n", label, f->name, (unsigned long long)va,
				(unsigned long long)vb);
			diffs++;
			continue;
		}
		if (equal)
			continue;
		fprintf(out, "%s.%s: ", label, f->name);
		field_print_value(out, f, a->data);
		fprintf(out, " -> ");
		field_print_value(out, f, b->data);
		fputc('\n', out);
		diffs++;
	}
	for (size_t i = 0; i < a->len; i++) {
		if (covered[i] || a->data[i] == b->data[i])
			continue;
		size_t end = i;
		while (end < a->len && !covered[end] && a->data[end] != b->data[end])
			end++;
		fprintf(out, "%s: bytes +0x%zx..+0x%zx (in no field) differ\n", label, i, end - 1);
		diffs++;
		i = end;
	}
	free(covered);
out:
	field_list_free(&fa);
	field_list_free(&fb);
	return diffs;
}

int state_sections_diff(const struct state_sections *a, const struct state_sections *b, bool verbose, FILE *out)
{
	int diffs = 0;
	char label[48];

	for (int i = 0; i < a->n; i++) {
		const struct state_section_copy *cb = find_copy(b, a->s[i].name, a->s[i].instance);
		if (!cb) {
			section_label(&a->s[i], label, sizeof(label));
			fprintf(out, "%s: only in the first state\n", label);
			diffs++;
			continue;
		}
		diffs += diff_section(&a->s[i], cb, verbose, out);
	}
	for (int i = 0; i < b->n; i++) {
		if (!find_copy(a, b->s[i].name, b->s[i].instance)) {
			section_label(&b->s[i], label, sizeof(label));
			fprintf(out, "%s: only in the second state\n", label);
			diffs++;
		}
	}
	return diffs;
}
