/* Fuzz target: the destination's handling of frames from the source
 * (src/migrate/dest.c): LIVE frames (apply_live: section id, then the RAM
 * section's validation and application in ram.c) and the CONFIG frame
 * (handle_config: JSON, configuration, live section list, CPUID table).
 *
 * dest.c keeps these static, so this file includes dest.c itself, with
 * vm_create/vm_destroy/devices_init renamed to fakes that make a small
 * fake VM instead of a KVM one (fake_vm.c), and disk_copy_create to one
 * that refuses: a CONFIG with disk copies must not create files wherever
 * the fuzzer points (disk frames have their own target, fuzz_disk).
 *
 * Input: byte 0 flags (bit 0: start with a VM already prepared, as after a
 * good CONFIG), byte 1 RAM size for that VM (1..64 pages), then frames
 * {u8 type, u24 length (LE), payload}; each payload is copied to a buffer
 * of exactly its length, so an over-read is an ASan report. Frames are
 * dispatched as receiver() does (type % 4: 1 CONFIG, 2 ignored, else
 * LIVE); the first error ends the input. */
#define vm_create fuzz_vm_create
#define vm_destroy fuzz_vm_destroy
#define devices_init fuzz_devices_init
#define disk_copy_create fuzz_disk_copy_create
#include "../../src/migrate/dest.c"
#undef vm_create
#undef vm_destroy
#undef devices_init
#undef disk_copy_create
#include "fake_vm.h"

#define FUZZ_RAM_PAGES_MAX 1024

int fuzz_vm_create(struct vm *vm, const struct vm_create_args *args, char *err, size_t errlen)
{
	/* the checks vm_create() makes before it touches KVM */
	if (args->cfg.vcpus < 1 || args->cfg.vcpus > VM_MAX_VCPUS) {
		errf(err, errlen, "bad vcpus");
		return -EINVAL;
	}
	if (args->cfg.memory_bytes < (2ULL << 20) || args->cfg.memory_bytes % GUEST_PAGE_SIZE) {
		errf(err, errlen, "bad memory");
		return -EINVAL;
	}
	uint64_t pages = args->cfg.memory_bytes / GUEST_PAGE_SIZE;
	fake_vm_init(vm, &args->cfg, pages > FUZZ_RAM_PAGES_MAX ? FUZZ_RAM_PAGES_MAX : pages, args->cfg.vcpus);
	return 0;
}

void fuzz_vm_destroy(struct vm *vm)
{
	fake_vm_free(vm);
}

int fuzz_devices_init(struct vm *vm, int serial_fd)
{
	return 0;
}

int fuzz_disk_copy_create(const char *path, uint64_t bytes, char *err, size_t errlen)
{
	errf(err, errlen, "fuzz: no files");
	return -EPERM;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	glide_set_log_file("/dev/null", NULL, 0);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct vm vm;
	static struct incoming in;
	char err[512];
	size_t off = 2;

	if (size < 2)
		return 0;
	memset(&in, 0, sizeof(in));
	memset(&vm, 0, sizeof(vm));
	in.vm = &vm;
	in.serial_fd = -1;
	pthread_mutex_init(&in.lock, NULL);
	pthread_cond_init(&in.cond, NULL);
	for (int i = 0; i < WIRE_MAX_STREAMS; i++)
		in.streams[i].fd = -1;
	in.nstreams = 1;
	if (data[0] & 1) {
		struct vm_config cfg = { .memory_bytes = 2 << 20, .vcpus = 1 };
		uint64_t pages = (uint64_t)(data[1] % 64) + 1;
		fake_vm_init(&vm, &cfg, pages, 1);
		json_t *live = json_pack("[{s:s, s:i}]", "name", "ram", "version", 1);
		if (setup_live(&in, live, err, sizeof(err)))
			abort();
		json_decref(live);
		in.vm_created = true;
	}
	while (size - off >= 4) {
		struct wire_frame f;
		uint32_t len = (uint32_t)data[off + 1] | (uint32_t)data[off + 2] << 8 | (uint32_t)data[off + 3] << 16;
		int rc = 0;

		f.type = data[off];
		off += 4;
		if (len > size - off)
			len = (uint32_t)(size - off);
		f.len = len;
		f.payload = malloc(len ? len : 1);
		memcpy(f.payload, data + off, len);
		off += len;
		switch (f.type % 4) { /* FRAME_CONFIG is 1, FRAME_LIVE 3 */
		case 0:
		case 3:
			rc = apply_live(&in, &f, err, sizeof(err));
			break;
		case 1:
			if (in.vm_created)
				rc = -EPROTO;
			else
				rc = handle_config(&in, &f, err, sizeof(err));
			break;
		default: /* PROBE, SYNC, ...: ignored */
			break;
		}
		free(f.payload);
		if (rc && getenv("FUZZ_DEBUG"))
			fprintf(stderr, "frame type %u: %s\n", f.type, err);
		if (rc)
			break;
	}
	cleanup_live(&in);
	if (vm.mem.host || vm.nvcpus)
		fake_vm_free(&vm);
	pthread_mutex_destroy(&in.lock);
	pthread_cond_destroy(&in.cond);
	return 0;
}
