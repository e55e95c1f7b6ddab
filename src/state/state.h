/* The versioned, self-describing binary state format shared by snapshots and
 * migration checkpoints (docs/state-format.md).
 *
 *   header:  magic "GLIDESTA" | u32 format version | u32 header length | u32 flags | u32 crc32
 *   section: char name[16] | u32 instance | u32 version | u64 length | u32 payload crc32
 *            | u32 reserved | u32 header crc32 | payload[length]
 *   ... terminated by a section named "end" with no payload.
 *
 * Components register sections (name, version, save, load) with
 * state_register(); writers and readers go through small function-pointer
 * interfaces so the same code writes to a file, a buffer or a socket. */
#ifndef GLIDE_STATE_STATE_H
#define GLIDE_STATE_STATE_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct vm;

#define STATE_MAGIC "GLIDESTA"
#define STATE_FORMAT_VERSION 2 /* 2: RAM in the live sections' page-run format */
#define STATE_HEADER_LEN 24
#define STATE_SECTION_HEADER_LEN 44
#define STATE_NAME_LEN 16
#define STATE_SECTION_MAX_LEN (64ULL << 20) /* no single section may claim more */
#define STATE_MAX_SECTIONS 4096

/* A growable byte buffer. Errors are sticky: check `failed` once at the end. */
struct state_buf {
	uint8_t *data;
	size_t len, cap;
	bool failed;
};
void sbuf_put(struct state_buf *b, const void *p, size_t n);
void sbuf_u32(struct state_buf *b, uint32_t v);
void sbuf_u64(struct state_buf *b, uint64_t v);
void sbuf_free(struct state_buf *b);

/* Bounds-checked cursor for reading a payload. */
struct state_cursor {
	const uint8_t *p;
	size_t left;
	bool failed;
};
bool scur_get(struct state_cursor *c, void *out, size_t n);
uint32_t scur_u32(struct state_cursor *c);
uint64_t scur_u64(struct state_cursor *c);

struct state_writer {
	int (*write)(void *ctx, const void *buf, size_t len); /* 0 or -errno */
	void *ctx;
};
struct state_reader {
	int (*read)(void *ctx, void *buf, size_t len); /* 0, -errno, -EPIPE at EOF */
	void *ctx;
};
int state_writer_fd(void *ctx, const void *buf, size_t len);  /* ctx = (int *)fd */
int state_reader_fd(void *ctx, void *buf, size_t len);
/* A state read from memory: ctx = struct state_blob *, consumed as it is read. */
struct state_blob {
	const uint8_t *p;
	size_t left;
};
int state_blob_read(void *ctx, void *buf, size_t len);
int state_writer_buf(void *ctx, const void *buf, size_t len); /* ctx = struct state_buf * */

struct state_section_header {
	char name[STATE_NAME_LEN + 1];
	uint32_t instance;
	uint32_t version;
	uint64_t length;
	uint32_t payload_crc;
};

int state_write_header(struct state_writer *w);
int state_write_section(struct state_writer *w, const char *name, uint32_t instance, uint32_t version,
			const void *payload, size_t len);
int state_read_header(struct state_reader *r, char *err, size_t errlen);
int state_read_section_header(struct state_reader *r, struct state_section_header *h, char *err, size_t errlen);
/* Reads and CRC-checks a payload of h->length bytes into buf (caller sized). */
int state_read_payload(struct state_reader *r, const struct state_section_header *h, void *buf,
		       char *err, size_t errlen);

/* One field of a section's payload, named for `glide state dump` and for
 * comparing two captures (state_fields.c). A section lists its fields with
 * its `fields` hook; bytes it lists in no field are still compared. */
enum state_field_kind {
	STATE_FIELD_EXACT,   /* the same in every capture of the same state */
	STATE_FIELD_CLOCK,   /* a time that moves on between capture and restore: it may only grow */
	STATE_FIELD_DERIVED, /* recomputed by KVM on restore (a running counter, a host timestamp): not compared */
};
struct state_field {
	const char *name;    /* e.g. "regs.rip", "msr.0x277" */
	size_t offset, len;  /* bytes of the payload */
	unsigned unit;       /* printed as little-endian numbers of 1, 2, 4 or 8 bytes; 0: as text */
	enum state_field_kind kind;
	const char *why;     /* CLOCK and DERIVED: why two captures differ here */
};
typedef void (*state_field_fn)(void *ctx, const struct state_field *f);
/* For `fields` hooks: reports an EXACT field whose name is a format. */
void state_field_add(state_field_fn fn, void *ctx, size_t offset, size_t len, unsigned unit, const char *fmt, ...)
	__attribute__((format(printf, 6, 7)));
/* The same for a CLOCK or DERIVED field, with the reason it differs. */
void state_field_add_kind(state_field_fn fn, void *ctx, enum state_field_kind kind, const char *why, size_t offset,
			  size_t len, unsigned unit, const char *fmt, ...) __attribute__((format(printf, 8, 9)));

/* Section registry. `order` sorts loading (lower first).
 *
 * A section is saved whole in the checkpoint (save/load: device, vCPU and
 * clock state, captured while the VM is stunned), or copied live (`live`:
 * RAM, later disks), or both. Live sections are iterated while the VM runs
 * and finished during the stun; see migrate/live.h for their hooks. */
struct live_section_ops;
struct state_section_ops {
	const char *name;
	uint32_t version;
	int order;
	bool per_vcpu;           /* one instance per vCPU, else `instances` (0: a single instance 0) */
	uint32_t instances;      /* devices: instances 0 .. instances-1, those present() in the VM */
	bool (*present)(struct vm *vm, int instance); /* with instances: this VM has it (save it, expect it) */
	int (*save)(struct vm *vm, int instance, struct state_buf *out);   /* NULL: live only */
	int (*load)(struct vm *vm, int instance, uint32_t version, const uint8_t *data, size_t len,
		    char *err, size_t errlen);
	const struct live_section_ops *live; /* NULL: not copied live */
	/* Optional: calls fn for each field of a payload (which may come from
	 * any file: check every length). Returns 0, or -EINVAL when the
	 * payload is malformed. Without it a payload is shown in 16-byte rows. */
	int (*fields)(const uint8_t *data, size_t len, state_field_fn fn, void *ctx);
};
/* Registers a section; returns -ENOSPC when the registry is full or
 * -EEXIST when the name is taken (and logs why). */
int state_register(const struct state_section_ops *ops);
const struct state_section_ops *state_find(const char *name);
/* The registered sections that are copied live, in registry order; returns how many (at most max). */
int state_live_sections(const struct state_section_ops **out, int max);

/* Device/vCPU/VM state (every registered section) as one blob: header,
 * sections, end. The VM must be paused. */
int state_save_all(struct vm *vm, struct state_writer *w, bool with_end);
/* Collected sections awaiting application (everything verified first). */
struct state_pending {
	int n;
	struct {
		const struct state_section_ops *ops;
		struct state_section_header h;
		uint8_t *data;
	} s[STATE_MAX_SECTIONS];
};
struct state_pending *state_pending_new(void);
void state_pending_free(struct state_pending *p);
/* Validates a section header against the registry and keeps its payload. */
int state_pending_add(struct state_pending *p, const struct state_section_header *h, uint8_t *data,
		      char *err, size_t errlen);
/* Applies in registry order; every section present must load. */
int state_pending_apply(struct vm *vm, struct state_pending *p, char *err, size_t errlen);
/* Parses and verifies a whole in-memory blob (header, sections, end) into pending. */
int state_parse_blob(const uint8_t *data, size_t len, struct state_pending *p, char *err, size_t errlen);

/* Printing a state and comparing two (state_fields.c): sections are read
 * and CRC-checked as on restore, live sections (RAM) are skipped. */
struct state_sections;
/* Reads a snapshot file or a checkpoint blob; NULL with err set on failure. */
struct state_sections *state_sections_read_file(const char *path, char *err, size_t errlen);
struct state_sections *state_sections_read_blob(const uint8_t *data, size_t len, char *err, size_t errlen);
void state_sections_free(struct state_sections *s);
/* Prints every field as "section[instance].field = value", one a line. */
int state_sections_print(const struct state_sections *s, FILE *out);
/* Compares two captures of the same VM field by field: EXACT fields and
 * bytes in no field must be equal, CLOCK fields may only grow, DERIVED
 * fields are skipped. Prints one line per difference (and, if verbose, per
 * skipped or grown field) to out; returns the number of differences. */
int state_sections_diff(const struct state_sections *a, const struct state_sections *b, bool verbose, FILE *out);
#endif
