/* Snapshot files and memsave.
 *
 * A snapshot is a state-format file: the "config" section first (so a new
 * process knows what VM to create), then every registered section, then RAM
 * as "ram" sections of up to 1 MiB (u64 ram offset, u32 pages, u32 flags,
 * a bitmap of non-zero pages, the non-zero pages), then "end". Restoring
 * loads RAM into a fresh VM that has not run, and applies the device state
 * only after the whole file has been read and every checksum verified. */
#include "vmm/snapshot.h"
#include "vmm/config.h"
#include "common/util.h"
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static bool page_is_zero(const uint8_t *p)
{
	const uint64_t *q = (const uint64_t *)p;
	for (size_t i = 0; i < GUEST_PAGE_SIZE / 8; i += 4)
		if (q[i] | q[i + 1] | q[i + 2] | q[i + 3])
			return false;
	return true;
}

int snapshot_write_ram(struct vm *vm, struct state_writer *w)
{
	uint64_t total = vm->mem.size / GUEST_PAGE_SIZE;
	struct state_buf b = { 0 };
	int rc = 0;

	for (uint64_t first = 0; !rc && first < total; first += SNAPSHOT_RAM_CHUNK_PAGES) {
		uint32_t n = (uint32_t)MIN((uint64_t)SNAPSHOT_RAM_CHUNK_PAGES, total - first);
		uint8_t bitmap[SNAPSHOT_RAM_CHUNK_PAGES / 8] = { 0 };
		bool any = false;

		for (uint32_t i = 0; i < n; i++) {
			if (!page_is_zero(vm->mem.host + (first + i) * GUEST_PAGE_SIZE)) {
				bitmap[i / 8] |= (uint8_t)(1u << (i % 8));
				any = true;
			}
		}
		if (!any)
			continue;
		b.len = 0;
		sbuf_u64(&b, first * GUEST_PAGE_SIZE);
		sbuf_u32(&b, n);
		sbuf_u32(&b, 0);
		sbuf_put(&b, bitmap, (n + 7) / 8);
		for (uint32_t i = 0; i < n; i++)
			if (bitmap[i / 8] & (1u << (i % 8)))
				sbuf_put(&b, vm->mem.host + (first + i) * GUEST_PAGE_SIZE, GUEST_PAGE_SIZE);
		rc = b.failed ? -ENOMEM : state_write_section(w, "ram", 0, 1, b.data, b.len);
	}
	sbuf_free(&b);
	return rc;
}

int snapshot_load_ram_section(struct vm *vm, const uint8_t *payload, size_t len, char *err, size_t errlen)
{
	struct state_cursor c = { payload, len, false };
	uint64_t off = scur_u64(&c);
	uint32_t n = scur_u32(&c);
	uint8_t bitmap[SNAPSHOT_RAM_CHUNK_PAGES / 8];

	scur_u32(&c);
	if (c.failed || n == 0 || n > SNAPSHOT_RAM_CHUNK_PAGES || off % GUEST_PAGE_SIZE ||
	    off > vm->mem.size || n > (vm->mem.size - off) / GUEST_PAGE_SIZE) {
		errf(err, errlen, "ram section: bad range (offset %llu, %u pages, RAM %llu bytes)",
		     (unsigned long long)off, n, (unsigned long long)vm->mem.size);
		return -EINVAL;
	}
	scur_get(&c, bitmap, (n + 7) / 8);
	for (uint32_t i = 0; i < n; i++) {
		if (!(bitmap[i / 8] & (1u << (i % 8))))
			continue;
		if (!scur_get(&c, vm->mem.host + off + (uint64_t)i * GUEST_PAGE_SIZE, GUEST_PAGE_SIZE))
			break;
	}
	if (c.failed || c.left) {
		errf(err, errlen, "ram section: length does not match its page bitmap");
		return -EINVAL;
	}
	return 0;
}

int snapshot_write(struct vm *vm, const char *path, char *err, size_t errlen)
{
	char tmp[4200];
	int fd, rc;
	struct state_writer w = { state_writer_fd, &fd };

	snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, (int)getpid());
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		rc = -errno;
		errf(err, errlen, "cannot create %s: %s", path, strerror(errno));
		return rc;
	}
	rc = state_save_all(vm, &w, false);
	if (!rc)
		rc = snapshot_write_ram(vm, &w);
	if (!rc)
		rc = state_write_section(&w, "end", 0, 1, NULL, 0);
	if (!rc && fsync(fd) < 0)
		rc = -errno;
	if (close(fd) < 0 && !rc)
		rc = -errno;
	if (!rc && rename(tmp, path) < 0)
		rc = -errno;
	if (rc) {
		unlink(tmp);
		errf(err, errlen, "writing snapshot %s failed: %s", path, strerror(-rc));
	}
	return rc;
}

int snapshot_open(const char *path, int *fd_out, struct vm_config *cfg, char *err, size_t errlen)
{
	struct state_section_header h;
	char e2[256];
	int fd = open(path, O_RDONLY | O_CLOEXEC), rc;
	struct state_reader r = { state_reader_fd, &fd };
	char *text;

	if (fd < 0) {
		rc = -errno;
		errf(err, errlen, "cannot open snapshot %s: %s", path, strerror(errno));
		return rc;
	}
	rc = state_read_header(&r, e2, sizeof(e2));
	if (!rc)
		rc = state_read_section_header(&r, &h, e2, sizeof(e2));
	if (!rc && strcmp(h.name, "config")) {
		snprintf(e2, sizeof(e2), "first section is '%s', expected 'config'", h.name);
		rc = -EINVAL;
	}
	if (rc) {
		errf(err, errlen, "snapshot %s: %s", path, e2);
		close(fd);
		return rc;
	}
	text = malloc(h.length + 1);
	if (!text) {
		close(fd);
		return -ENOMEM;
	}
	rc = state_read_payload(&r, &h, text, e2, sizeof(e2));
	if (!rc)
		rc = vm_config_from_text(text, h.length, cfg, e2, sizeof(e2));
	free(text);
	if (rc) {
		errf(err, errlen, "snapshot %s: %s", path, e2);
		close(fd);
		return rc;
	}
	*fd_out = fd;
	return 0;
}

int snapshot_load(struct vm *vm, int fd, char *err, size_t errlen)
{
	struct state_reader r = { state_reader_fd, &fd };
	struct state_pending *p = state_pending_new();
	int rc = p ? 0 : -ENOMEM;

	while (!rc) {
		struct state_section_header h;
		uint8_t *payload;

		rc = state_read_section_header(&r, &h, err, errlen);
		if (rc)
			break;
		if (!strcmp(h.name, "end")) {
			rc = state_pending_apply(vm, p, err, errlen);
			state_pending_free(p);
			return rc;
		}
		payload = malloc(h.length ? h.length : 1);
		if (!payload) {
			rc = -ENOMEM;
			break;
		}
		rc = state_read_payload(&r, &h, payload, err, errlen);
		if (!rc && !strcmp(h.name, "ram")) {
			rc = snapshot_load_ram_section(vm, payload, h.length, err, errlen);
			free(payload);
			continue;
		}
		if (!rc)
			rc = state_pending_add(p, &h, payload, err, errlen);
		if (rc)
			free(payload);
	}
	state_pending_free(p);
	return rc;
}

int memsave_check_range(struct vm *vm, uint64_t addr, uint64_t size, char *err, size_t errlen)
{
	if (!size) {
		errf(err, errlen, "memsave: size must not be zero");
		return -EINVAL;
	}
	if (size - 1 > UINT64_MAX - addr) {
		errf(err, errlen, "memsave: range 0x%llx+0x%llx wraps past the end of the address space",
		     (unsigned long long)addr, (unsigned long long)size);
		return -EINVAL;
	}
	if (size > vm->mem.size) {
		errf(err, errlen, "memsave: size 0x%llx is larger than the VM's memory (0x%llx)",
		     (unsigned long long)size, (unsigned long long)vm->mem.size);
		return -EINVAL;
	}
	uint64_t last = addr + (size - 1); /* inclusive: addr + size may be 2^64 */
	for (uint64_t a = addr;;) {
		uint64_t step = MIN(last - a + 1, GUEST_PAGE_SIZE - (a % GUEST_PAGE_SIZE));
		if (!guest_memory_ptr(&vm->mem, a, step)) {
			errf(err, errlen, "memsave: guest-physical range 0x%llx+0x%llx is not RAM (address 0x%llx)",
			     (unsigned long long)addr, (unsigned long long)size, (unsigned long long)a);
			return -EINVAL;
		}
		if (last - a < step)
			break;
		a += step;
	}
	return 0;
}

int memsave(struct vm *vm, uint64_t addr, uint64_t size, const char *path, char *err, size_t errlen)
{
	int fd, rc;
	uint64_t done = 0;

	/* Validate the whole range before the file is touched: no partial or truncated file for a bad request. */
	if ((rc = memsave_check_range(vm, addr, size, err, errlen)))
		return rc;
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		rc = -errno;
		errf(err, errlen, "memsave: cannot create %s: %s", path, strerror(errno));
		return rc;
	}
	while (!rc && done < size) {
		uint64_t a = addr + done;
		uint64_t step = MIN(size - done, 1ULL << 20);
		void *p = guest_memory_ptr(&vm->mem, a, step);
		if (!p) /* crosses a region boundary: go page by page */
			step = MIN(step, GUEST_PAGE_SIZE - (a % GUEST_PAGE_SIZE)), p = guest_memory_ptr(&vm->mem, a, step);
		rc = write_full(fd, p, step);
		done += step;
	}
	if (close(fd) < 0 && !rc)
		rc = -errno;
	if (rc)
		errf(err, errlen, "memsave: writing %s failed: %s", path, strerror(-rc));
	return rc;
}
