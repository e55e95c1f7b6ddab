/* Snapshot files (snapshot.h): a migration whose channel is a file. The
 * "config" section first (so a new process knows what VM to create), then
 * each live section's data through the live hooks (RAM as page-run
 * payloads, "ram" sections of at most 1 MiB of page data each), then the
 * checkpoint sections, then "end". Restoring feeds live payloads to the
 * same validating decoders a migration destination uses, into a fresh VM
 * that has not run, and applies the checkpoint only after the whole file
 * has been read and every checksum verified. */
#include "migrate/snapshot.h"
#include "migrate/live.h"
#include "vmm/config.h"
#include "common/util.h"
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Every live section's data, written through a file channel: the section
 * sends its whole content as in a migration's final pass. */
static int write_live_sections(struct vm *vm, struct state_writer *w, char *err, size_t errlen)
{
	const struct state_section_ops *ops[LIVE_SECTIONS_MAX];
	int n = state_live_sections(ops, LIVE_SECTIONS_MAX), rc = 0;
	bool no = false;
	uint64_t done = 0, bytes = 0;

	for (int i = 0; i < n && !rc; i++) {
		struct live_source ls = { .vm = vm, .tracing = false };
		struct channel ch = { .file = w, .section = ops[i], .index = 0, .count = 1, .final = true,
				      .cancel = &no, .failed = &no, .pass_done = &done, .wire_bytes = &bytes };
		rc = ops[i]->live->setup(&ls, err, errlen);
		if (!rc) {
			rc = channel_file_open(&ch);
			if (!rc)
				rc = ops[i]->live->complete(&ls, &ch);
			if (rc)
				errf(err, errlen, "%s: %s", ops[i]->name, ch.err[0] ? ch.err : strerror(-rc));
			channel_file_close(&ch);
		}
		ops[i]->live->cleanup(&ls);
	}
	return rc;
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
	char why[256] = "";
	/* header, "config" first (snapshot_open reads it before the VM exists), the checkpoint, then live data */
	rc = state_save_all(vm, &w, false);
	if (!rc)
		rc = write_live_sections(vm, &w, why, sizeof(why));
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
		errf(err, errlen, "writing snapshot %s failed: %s", path, why[0] ? why : strerror(-rc));
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
	const struct state_section_ops *live_ops[LIVE_SECTIONS_MAX];
	struct live_dest live[LIVE_SECTIONS_MAX];
	int nlive = state_live_sections(live_ops, LIVE_SECTIONS_MAX), ready = 0;
	int rc = p ? 0 : -ENOMEM;

	for (; !rc && ready < nlive; ready++) {
		live[ready] = (struct live_dest){ .vm = vm };
		rc = live_ops[ready]->live->load_setup(&live[ready], err, errlen);
		if (rc)
			break;
	}
	while (!rc) {
		struct state_section_header h;
		uint8_t *payload;
		int id = -1;

		rc = state_read_section_header(&r, &h, err, errlen);
		if (rc)
			break;
		if (!strcmp(h.name, "end")) {
			rc = state_pending_apply(vm, p, err, errlen);
			break;
		}
		for (int i = 0; i < nlive; i++)
			if (!strcmp(h.name, live_ops[i]->name))
				id = i;
		if (id >= 0 && (h.version == 0 || h.version > live_ops[id]->version)) {
			errf(err, errlen, "live section '%s' version %u is not supported (this glide reads up to %u)", h.name,
			     h.version, live_ops[id]->version);
			rc = -EPROTONOSUPPORT;
			break;
		}
		payload = malloc(h.length ? h.length : 1);
		if (!payload) {
			rc = -ENOMEM;
			break;
		}
		rc = state_read_payload(&r, &h, payload, err, errlen);
		if (!rc && id >= 0) { /* the same decoder as a migration's LIVE frames */
			char why[256];
			rc = live_ops[id]->live->load(&live[id], payload, h.length, why, sizeof(why));
			if (rc)
				errf(err, errlen, "%s", why);
			free(payload);
			continue;
		}
		if (!rc)
			rc = state_pending_add(p, &h, payload, err, errlen);
		if (rc)
			free(payload);
	}
	for (int i = 0; i < ready && i < nlive; i++)
		live_ops[i]->live->load_cleanup(&live[i]);
	state_pending_free(p);
	return rc;
}
