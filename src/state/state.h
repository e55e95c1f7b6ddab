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
	bool per_vcpu;           /* one instance per vCPU, else a single instance 0 */
	int (*save)(struct vm *vm, int instance, struct state_buf *out);   /* NULL: live only */
	int (*load)(struct vm *vm, int instance, uint32_t version, const uint8_t *data, size_t len,
		    char *err, size_t errlen);
	const struct live_section_ops *live; /* NULL: not copied live */
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
#endif
