/* Writes seed corpora for the fuzz targets: seedgen OUTDIR [SNAPSHOT]
 *   OUTDIR/state/    state blobs with every registered section (well-formed
 *                    records, correct CRCs) and snapshot files with config
 *                    and ram sections; with SNAPSHOT (a real `glide vm
 *                    snapshot` file), that file and its sections without RAM
 *   OUTDIR/pages/    fuzz_pages inputs (CONFIG then LIVE RAM frames of every kind)
 *   OUTDIR/disk/     disk section frames (data and zero runs, the short last block)
 *   OUTDIR/config/   configuration JSON
 *   OUTDIR/keyfile/  key files
 *   OUTDIR/hostnet/  MAC addresses, interface names, "tap=NAME"
 *   OUTDIR/wire/     fuzz_wire inputs (raw plain frames, sender-built
 *                    frames, a handshake)
 *   OUTDIR/monitor_api/, host_api/, center_api/
 *                    API requests (fuzz_api.h): every endpoint with a good
 *                    body, then the same endpoints with refused ones */
#include "state/state.h"
#include "vmm/config.h"
#include "migrate/wire.h"
#include "migrate/ram.h"
#include "fake_vm.h"
#include <errno.h>
#include <lz4.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char *outdir;

static void put(const char *sub, const char *name, const void *p, size_t n)
{
	char path[4096];
	FILE *f;
	snprintf(path, sizeof(path), "%s/%s", outdir, sub);
	mkdir(path, 0755);
	snprintf(path, sizeof(path), "%s/%s/%s", outdir, sub, name);
	f = fopen(path, "wb");
	if (!f || (n && fwrite(p, 1, n, f) != n) || fclose(f)) {
		perror(path);
		exit(1);
	}
}

static void rec(struct state_buf *b, uint32_t tag, const void *p, size_t n)
{
	sbuf_u32(b, tag);
	sbuf_u32(b, (uint32_t)n);
	sbuf_put(b, p, n);
}

static void section(struct state_writer *w, const char *name, uint32_t inst, struct state_buf *b)
{
	state_write_section(w, name, inst, 1, b->data, b->len);
	sbuf_free(b);
}

static const char *config_json = "{\"name\":\"seed\",\"memory\":2097152,\"vcpus\":2,\"cpuid_mask\":{\"1.ecx\":4294967295,"
				  "\"1.edx\":4294967295,\"7.ebx\":4294967295,\"7.ecx\":4294967295,\"7.edx\":4294967295,"
				  "\"80000001.ecx\":4294967295,\"80000001.edx\":4294967295},\"evc_level\":\"\"}";

static void state_seeds(void)
{
	struct state_buf blob = { 0 }, b = { 0 };
	struct state_writer w = { state_writer_buf, &blob };

	state_write_header(&w);
	sbuf_put(&b, config_json, strlen(config_json));
	section(&w, "config", 0, &b);
	for (uint32_t v = 0; v < 2; v++) {
		struct kvm_cpuid_entry2 e[2] = { { .function = 0, .eax = 0xd }, { .function = 1, .ecx = 1 } };
		sbuf_u32(&b, 2);
		sbuf_put(&b, e, sizeof(e));
		section(&w, "cpuid", v, &b);
	}
	for (uint32_t v = 0; v < 2; v++) {
		static struct kvm_sregs2 s2;
		static struct kvm_regs regs;
		static struct kvm_xcrs xcrs;
		static uint8_t xsave[FAKE_XSAVE_SIZE];
		static struct kvm_lapic_state lapic;
		static struct kvm_mp_state mp;
		static struct kvm_vcpu_events ev;
		static struct kvm_debugregs dbg;
		uint8_t t[12] = { 0 };
		regs.rip = 0x7c00 + v;
		rec(&b, 11, t, sizeof(t));
		rec(&b, 3, &s2, sizeof(s2));
		rec(&b, 1, &regs, sizeof(regs));
		rec(&b, 5, &xcrs, sizeof(xcrs));
		rec(&b, 4, xsave, sizeof(xsave));
		sbuf_u32(&b, 6);
		sbuf_u32(&b, 4 + 3 * 12);
		sbuf_u32(&b, 3);
		uint32_t idx[3] = { 0x10, 0x6e0, 0xc0000080 };
		for (int m = 0; m < 3; m++) {
			sbuf_u32(&b, idx[m]);
			sbuf_u64(&b, 1000 + m);
		}
		rec(&b, 7, &lapic, sizeof(lapic));
		rec(&b, 9, &mp, sizeof(mp));
		rec(&b, 8, &ev, sizeof(ev));
		rec(&b, 10, &dbg, sizeof(dbg));
		section(&w, "vcpu", v, &b);
	}
	for (uint32_t chip = 0; chip < 3; chip++) {
		struct kvm_irqchip c = { .chip_id = chip };
		sbuf_put(&b, &c, sizeof(c));
	}
	section(&w, "irqchip", 0, &b);
	struct kvm_pit_state2 pit = { 0 };
	sbuf_put(&b, &pit, sizeof(pit));
	section(&w, "pit", 0, &b);
	sbuf_u64(&b, 123456789);
	sbuf_u64(&b, 0);
	section(&w, "clock", 0, &b);
	uint8_t uart[12] = { 0, 1, 0, 3, 0, 0x60 };
	sbuf_put(&b, uart, sizeof(uart));
	section(&w, "uart", 0, &b);
	size_t before_end = blob.len;
	state_write_section(&w, "end", 0, 1, NULL, 0);
	put("state", "blob-all-sections", blob.data, blob.len);

	/* a snapshot file: the same sections, then two ram sections, then end */
	blob.len = before_end;
	for (uint64_t first = 0; first < 512; first += 256) {
		uint8_t bitmap[32] = { 0x05 };
		sbuf_u64(&b, first * 4096);
		sbuf_u32(&b, 256);
		sbuf_u32(&b, 0);
		sbuf_put(&b, bitmap, sizeof(bitmap));
		for (int p = 0; p < 2; p++) {
			uint8_t page[4096];
			memset(page, 0x11 * (p + 1), sizeof(page));
			sbuf_put(&b, page, sizeof(page));
		}
		section(&w, "ram", 0, &b);
	}
	state_write_section(&w, "end", 0, 1, NULL, 0);
	put("state", "snapshot-with-ram", blob.data, blob.len);

	/* small one: header, config, end */
	blob.len = 0;
	state_write_header(&w);
	sbuf_put(&b, config_json, strlen(config_json));
	section(&w, "config", 0, &b);
	state_write_section(&w, "end", 0, 1, NULL, 0);
	put("state", "blob-config-only", blob.data, blob.len);
	sbuf_free(&blob);
}

/* A real snapshot file: keep it, and its sections without "ram" as a blob. */
static void snapshot_seeds(const char *path)
{
	FILE *f = fopen(path, "rb");
	struct state_buf file = { 0 }, blob = { 0 };
	uint8_t buf[65536];
	size_t n, off;

	if (!f) {
		perror(path);
		exit(1);
	}
	while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
		sbuf_put(&file, buf, n);
	fclose(f);
	put("state", "real-snapshot", file.data, file.len);
	if (file.len < STATE_HEADER_LEN)
		return;
	sbuf_put(&blob, file.data, STATE_HEADER_LEN);
	for (off = STATE_HEADER_LEN; file.len - off >= STATE_SECTION_HEADER_LEN;) {
		uint64_t len;
		memcpy(&len, file.data + off + 24, 8);
		if (len > file.len - off - STATE_SECTION_HEADER_LEN)
			break;
		if (strncmp((char *)file.data + off, "ram", 16))
			sbuf_put(&blob, file.data + off, STATE_SECTION_HEADER_LEN + len);
		off += STATE_SECTION_HEADER_LEN + len;
	}
	put("state", "real-snapshot-sections", blob.data, blob.len);
	sbuf_free(&file);
	sbuf_free(&blob);
}

static void frame(struct state_buf *b, uint8_t type, const void *p, uint32_t len)
{
	uint8_t h[4] = { type, (uint8_t)len, (uint8_t)(len >> 8), (uint8_t)(len >> 16) };
	sbuf_put(b, h, 4);
	sbuf_put(b, p, len);
}

static void pages_frame(struct state_buf *out, int kind)
{
	struct state_buf b = { 0 };
	uint8_t page[4096];
	char lz[LZ4_COMPRESSBOUND(4096)];
	struct page_run runs[2];
	uint32_t nruns = 2, phase = 0;

	memset(page, 0x5a, sizeof(page));
	sbuf_u32(&b, 0); /* live section 0: RAM */
	sbuf_u32(&b, nruns);
	sbuf_u32(&b, phase);
	runs[0] = (struct page_run){ .first_pfn = 3, .npages = 2, .kind = (uint32_t)kind };
	runs[1] = (struct page_run){ .first_pfn = 0, .npages = 8, .kind = PAGE_RUN_ZERO };
	for (int p = 0; p < 2; p++) {
		if (kind == PAGE_RUN_DATA) {
			sbuf_put(&b, page, sizeof(page));
		} else if (kind == PAGE_RUN_LZ4) {
			int n = LZ4_compress_default((char *)page, lz, 4096, sizeof(lz));
			sbuf_u32(&b, (uint32_t)n);
			sbuf_put(&b, lz, (size_t)n);
		}
	}
	sbuf_put(&b, runs, sizeof(runs));
	frame(out, FRAME_LIVE, b.data, (uint32_t)b.len);
	sbuf_free(&b);
}

static void pages_seeds(void)
{
	char cfg[2048];
	for (int kind = 0; kind < 3; kind++) {
		struct state_buf b = { 0 };
		uint8_t hdr[2] = { 1, 15 }; /* VM prepared, 16 pages */
		sbuf_put(&b, hdr, 2);
		pages_frame(&b, kind);
		pages_frame(&b, PAGE_RUN_DATA);
		char name[32];
		snprintf(name, sizeof(name), "pages-kind%d", kind);
		put("pages", name, b.data, b.len);
		sbuf_free(&b);
	}
	struct state_buf b = { 0 };
	uint8_t hdr[2] = { 0, 0 };
	snprintf(cfg, sizeof(cfg), "{\"protocol\":%d,\"state_format\":1,\"config\":%s,\"live\":[{\"name\":\"ram\",\"version\":1}],\"cpuid\":[[0,0,13,0,0,0],[1,0,0,0,1,0]]}", WIRE_PROTOCOL_VERSION,
		 config_json);
	sbuf_put(&b, hdr, 2);
	frame(&b, FRAME_CONFIG, cfg, (uint32_t)strlen(cfg));
	pages_frame(&b, PAGE_RUN_LZ4);
	put("pages", "config-then-pages", b.data, b.len);
	sbuf_free(&b);
}

static void config_seeds(void)
{
	put("config", "full", config_json, strlen(config_json));
	const char *min = "{\"memory\":268435456,\"vcpus\":1}";
	put("config", "minimal", min, strlen(min));
	put("keyfile", "good", "00112233445566778899aabbccddeeff00112233445566778899AABBCCDDEEFF\n", 65);
	put("keyfile", "crlf", "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\r\n", 66);
	put("keyfile", "short", "0011\n", 5);
	put("hostnet", "mac", "52:54:00:12:34:56", 17);
	put("hostnet", "mac-upper", "52:54:00:AB:CD:EF", 17);
	put("hostnet", "mac-multicast", "01:00:5e:00:00:01", 17);
	put("hostnet", "ifname", "vm1-net0", 8);
	put("hostnet", "template", "glide%d", 7);
	put("hostnet", "tap-spec", "tap=vm1-net0", 12);
}

static void wire_seeds(void)
{
	struct state_buf b = { 0 };
	uint8_t mode;
	/* raw plain frames: FINAL, PROBE(3 bytes), with correct CRCs */
	mode = 0;
	sbuf_put(&b, &mode, 1);
	for (uint64_t seq = 0; seq < 2; seq++) {
		uint8_t fr[16 + 3 + 4];
		uint32_t type = seq ? FRAME_PROBE : FRAME_FINAL, len = seq ? 3 : 0;
		memcpy(fr, &type, 4);
		memcpy(fr + 4, &len, 4);
		memcpy(fr + 8, &seq, 8);
		memset(fr + 16, 0xab, len);
		uint32_t c = fuzz_crc32(fr, 16 + len);
		memcpy(fr + 16 + len, &c, 4);
		sbuf_put(&b, fr, 16 + len + 4);
	}
	put("wire", "raw-plain", b.data, b.len);
	for (int m = 0; m < 4; m++) { /* sender-built, plain/encrypted, with/without corruption */
		b.len = 0;
		mode = (uint8_t)(2 | (m & 1 ? 4 : 0) | (m & 2 ? 8 : 0));
		sbuf_put(&b, &mode, 1);
		uint8_t r1[4] = { FRAME_CONFIG, 0, 5, 0 };
		sbuf_put(&b, r1, 4);
		sbuf_put(&b, "{\"a\":", 5);
		uint8_t r2[4] = { FRAME_SYNC, 0, 0, 0 }, r3[4] = { FRAME_LIVE, 1, 8, 0 };
		sbuf_put(&b, r2, 4);
		sbuf_put(&b, r3, 4);
		sbuf_put(&b, "\1\0\0\0\0\0\0\0", 8);
		if (m & 2) {
			uint8_t corrupt[4] = { 20, 0, 0, 0x40 };
			sbuf_put(&b, corrupt, 4);
		}
		char name[32];
		snprintf(name, sizeof(name), "built-%d", m);
		put("wire", name, b.data, b.len);
	}
	/* handshake: magic, version 1, flags, session, index 0, count 2, nonce */
	b.len = 0;
	mode = 3 | 4;
	sbuf_put(&b, &mode, 1);
	sbuf_put(&b, WIRE_MAGIC, 8);
	sbuf_u32(&b, 1);
	sbuf_u32(&b, 1);
	uint8_t session[16] = { 1, 2, 3 }, nonce[32] = { 9 };
	sbuf_put(&b, session, 16);
	sbuf_u32(&b, 0);
	sbuf_u32(&b, 2);
	sbuf_put(&b, nonce, 32);
	put("wire", "handshake", b.data, b.len);
	sbuf_free(&b);
}

/* One fuzz_api input: the requests joined with NUL bytes. */
static void requests(const char *sub, const char *name, const char *const reqs[])
{
	struct state_buf b = { 0 };
	for (int i = 0; reqs[i]; i++) {
		if (i)
			sbuf_put(&b, "", 1);
		sbuf_put(&b, reqs[i], strlen(reqs[i]));
	}
	put(sub, name, b.data, b.len);
	sbuf_free(&b);
}

#define KEY_HEX "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
#define MIGRATION_OPTIONS "\"streams\":2,\"max_bandwidth\":\"50M\",\"switchover_goal_ms\":300,\"sdps\":\"dynamic\"," \
			  "\"encrypt\":\"required\",\"compress\":\"lz4\",\"timeout_s\":60,\"dscp\":10,\"stall_timeout_s\":2.5"
#define VM_CONFIG "{\"memory\":67108864,\"vcpus\":2,\"evc_level\":\"x86-64-v1\",\"cpuid_mask\":{\"1.ecx\":2300575744}}"
#define VM_BOOT "{\"kind\":\"kernel\",\"path\":\"/boot/bz\",\"initrd\":\"/boot/initrd\",\"cmdline\":\"console=ttyS0\"}"

static void api_seeds(void)
{
	static const char *const monitor_good[] = {
		"POST /v1/vm/snapshot\n{\"path\":\"/var/tmp/vm1.snap\",\"resume\":true}",
		"POST /v1/vm/memsave\n{\"addr\":3221159936,\"size\":\"64K\",\"path\":\"/var/tmp/low.bin\"}",
		"POST /v1/vm/memsave\n{\"addr\":\"0x100000000\",\"size\":4096,\"path\":\"/var/tmp/high.bin\"}",
		"POST /v1/migration\n{\"to\":\"127.0.0.1:7000,[::1]:7001\",\"key_file\":\"/run/key\"," MIGRATION_OPTIONS "}",
		"GET /v1/migration?id=3", "GET /v1/migration", NULL,
	};
	static const char *const monitor_bad[] = {
		"POST /v1/vm/snapshot\n{\"path\":\"relative.snap\",\"resume\":1}",
		"POST /v1/vm/memsave\n{\"addr\":\"0xbffff000\",\"size\":\"0x40002000\",\"path\":\"/d\"}",
		"POST /v1/vm/memsave\n{\"addr\":-1,\"size\":\"1X\"}",
		"POST /v1/vm/capture\n{\"path\":\"/var/tmp/c.pcap\",\"nic\":1,\"count\":16}",
		"POST /v1/vm/capture\n{\"path\":\"rel.pcap\",\"nic\":4,\"count\":0}",
		"POST /v1/migration\n{\"to\":\"a:1,,b:2\",\"key_file\":\"/k\",\"streams\":17,\"timeout_s\":99999999999}",
		"POST /v1/migration\n{\"to\":\"a:1\",\"key_file\":\"/k\",\"max_bandwidth\":\"1K\",\"stall_timeout_s\":0.01}",
		"POST /v1/migration\n[1,2]", "GET /v1/migration?id=+5&id=1", NULL,
	};
	static const char *const host_good[] = {
		"POST /v1/vms\n{\"name\":\"vm-1.a_b\",\"config\":" VM_CONFIG ",\"boot\":" VM_BOOT ",\"devices\":[\"serial\"]}",
		"GET /v1/vms/vm-1.a_b?monitor=1",
		"POST /v1/vms/vm-1.a_b/config\n{\"config\":{\"memory\":134217728,\"vcpus\":1},\"boot\":{\"kind\":\"boot\",\"path\":\"/img\"}}",
		"POST /v1/vms/vm-1.a_b/migrate\n{\"to\":\"10.0.0.2:7000,10.0.1.2:7000\",\"key\":\"" KEY_HEX "\"," MIGRATION_OPTIONS "}",
		"GET /v1/vms/vm-1.a_b/migration", "POST /v1/vms/vm-1.a_b/migration/cancel", "POST /v1/vms/vm-1.a_b/stop",
		"POST /v1/vms/vm-1.a_b/arrived", "GET /v1/vms", "GET /v1/host",
		"POST /v1/incoming\n{\"name\":\"vm2\",\"config\":" VM_CONFIG ",\"boot\":" VM_BOOT ",\"devices\":[\"serial\"],"
		"\"key\":\"" KEY_HEX "\",\"cpuid\":{\"1.ecx\":1,\"7.ebx\":0}}",
		"DELETE /v1/vms/vm-1.a_b?force=1",
		"POST /v1/vms\n{\"name\":\"vn\",\"config\":" VM_CONFIG ",\"boot\":" VM_BOOT ",\"nics\":[{\"network\":\"prod\"},"
		"{\"network\":\"prod\",\"mac\":\"52:54:00:12:34:56\"}],\"disks\":[{\"path\":\"/srv/d.img\",\"readonly\":true}]}",
		"POST /v1/vms/vn/config\n{\"config\":{\"memory\":134217728,\"vcpus\":1},\"nics\":[{\"network\":\"prod\"}],\"disks\":[]}",
		"GET /v1/vms/vn/netstats", "GET /v1/netstats", "GET /v1/paths?path=/tmp", NULL,
	};
	static const char *const host_bad[] = {
		"POST /v1/vms\n{\"name\":\"../x\",\"config\":{\"memory\":1,\"vcpus\":1}}",
		"POST /v1/vms\n{\"name\":\"v\",\"config\":{\"memory\":1,\"vcpus\":1},\"boot\":{\"kind\":\"x\",\"path\":\"rel\"},\"start\":1}",
		"POST /v1/vms/v/config\n{\"config\":{\"memory\":0}}", "GET /v1/vms/a%2Fb", "DELETE /v1/vms/v/",
		"POST /v1/vms/v/migrate\n{\"to\":\"nowhere\",\"key\":\"00\",\"streams\":0}",
		"POST /v1/netcheck/listen\n{\"token\":\"00112233445566778899aabbccddeeff\",\"service\":\"provisioning\"}",
		"POST /v1/netcheck/run\n{\"token\":\"00112233445566778899aabbccddeeff\",\"to\":[\"10.0.0.2:7000\",\"[fd00::2]:7001\"],"
		"\"seconds\":0.5}",
		"POST /v1/incoming\n{\"name\":\"v\",\"config\":{},\"key\":\"" KEY_HEX "\",\"cpuid\":{\"1.ecx\":-1}}",
		"POST /v1/vms\n{\"name\":\"v\",\"config\":" VM_CONFIG ",\"nics\":[{\"network\":\"nope\"}]}",
		"POST /v1/vms\n{\"name\":\"v\",\"config\":" VM_CONFIG ",\"nics\":[{\"network\":\"prod\",\"mac\":\"01:00:5e:00:00:01\"}],"
		"\"disks\":[{\"path\":\"/a,readonly\"}]}",
		"POST /v1/incoming\n{\"name\":\"v\",\"config\":" VM_CONFIG ",\"key\":\"" KEY_HEX "\",\"nics\":[{\"network\":\"prod\"}]}",
		"GET /v1/paths?path=relative", "GET /v1/paths", NULL,
	};
	static const char *const center_good[] = {
		"POST /v1/clusters\n{\"name\":\"lab_1.a-b\",\"evc\":\"x86-64-v2\",\"max_migrations_per_host\":4}",
		"POST /v1/vms\n{\"name\":\"vm1\",\"memory\":67108864,\"vcpus\":2,\"boot\":" VM_BOOT ","
		"\"cluster\":\"lab_1.a-b\",\"evc\":\"x86-64-v1\",\"devices\":[\"serial\"]}",
		"GET /v1/vms/vm1", "POST /v1/vms/vm1/config\n{\"memory\":134217728,\"vcpus\":1,\"evc\":\"cluster\"}",
		"POST /v1/vms/vm1/start\n{\"host\":\"10.0.0.11:7001\"}", "POST /v1/vms/vm1/stop",
		"POST /v1/vms/vm1/migrate\n{\"to\":\"hB\"," MIGRATION_OPTIONS "}",
		"POST /v1/netcheck\n{\"source\":\"hA\",\"destination\":\"10.0.0.12:7001\",\"service\":\"migration\",\"seconds\":2}",
		"POST /v1/hosts\n{\"address\":\"10.0.0.11:7001\",\"token\":\"" KEY_HEX "\",\"cluster\":\"lab_1.a-b\"}",
		"GET /v1/hosts", "GET /v1/hosts/10.0.0.11:7001", "DELETE /v1/hosts/hA", "GET /v1/clusters",
		"GET /v1/clusters/lab_1.a-b/evc", "POST /v1/clusters/lab_1.a-b/evc\n{\"level\":\"x86-64-v1\"}",
		"GET /v1/tasks?limit=5", "GET /v1/tasks/1", "DELETE /v1/vms/vm1", "GET /v1/vms", "GET /v1/center",
		"POST /v1/vms\n{\"name\":\"vm2\",\"memory\":67108864,\"boot\":" VM_BOOT ",\"nics\":[{\"network\":\"prod\"},"
		"{\"network\":\"dev\",\"mac\":\"52:54:00:12:34:56\"}],\"disks\":[{\"path\":\"/srv/d.img\"}]}",
		"POST /v1/vms\n{\"name\":\"vm3\",\"memory\":67108864,\"boot\":" VM_BOOT ",\"nics\":[{\"network\":\"prod\","
		"\"mac\":\"52:54:00:12:34:56\"}]}", NULL,
	};
	static const char *const center_bad[] = {
		"POST /v1/clusters\n{\"name\":\"c\",\"evc\":\"x86-64-v9\",\"max_migrations_per_host\":0}",
		"POST /v1/vms\n{\"name\":\"v\",\"memory\":\"1G\",\"boot\":{\"kind\":\"boot\",\"path\":\"x\"},\"devices\":[1]}",
		"POST /v1/vms/v/config\n{\"vcpus\":0,\"evc\":7}", "POST /v1/vms/v/migrate\n{\"to\":\"a b\",\"streams\":99}",
		"POST /v1/hosts\n{\"address\":\"h:1\",\"token\":\"t\\r\\nX-Evil: 1\"}", "GET /v1/tasks?limit=0",
		"GET /v1/tasks/1abc", "GET /v1/clusters/%2e%2e/evc",
		"POST /v1/vms\n{\"name\":\"v\",\"memory\":1,\"boot\":{\"kind\":\"boot\",\"path\":\"/x\"},\"nics\":[{\"network\":\"a\",\"vlan\":1}],"
		"\"disks\":[{\"path\":\"rel\"}]}", NULL,
	};
	requests("monitor_api", "good", monitor_good);
	requests("monitor_api", "refused", monitor_bad);
	requests("host_api", "good", host_good);
	requests("host_api", "refused", host_bad);
	requests("center_api", "good", center_good);
	requests("center_api", "refused", center_bad);
}

/* A disk frame: u32 disk, u32 nruns, runs {u64 first, u32 blocks, u32 kind}, data. */
static void disk_seeds(void)
{
	static uint8_t buf[8 + 3 * 16 + 4096 + 512];
	struct { uint64_t first; uint32_t blocks, kind; } runs[3] = { { 1, 1, 0 }, { 2, 3, 1 }, { 10, 1, 0 } };
	uint32_t disk = 0, n = 3;
	memcpy(buf, &disk, 4);
	memcpy(buf + 4, &n, 4);
	memcpy(buf + 8, runs, sizeof(runs));
	memset(buf + 8 + sizeof(runs), 0xa5, 4096 + 512); /* block 1 whole, block 10 the short last one */
	put("disk", "data-zero-short", buf, sizeof(buf));
	n = 1;
	runs[0] = (typeof(runs[0])){ 0, 3, 1 };
	disk = 2;
	memcpy(buf, &disk, 4);
	memcpy(buf + 4, &n, 4);
	memcpy(buf + 8, runs, 16);
	put("disk", "zero-disk2", buf, 8 + 16);
}

/* Cold copy frames (fuzz_copy): u32 type, u32 length, payload; FILE_DATA
 * {u32 file, u32 length, u64 offset, bytes}, FILE_END {u32 file, u32 0,
 * u64 size, SHA-256 over (u64 offset, bytes) of each non-zero 64 KiB block}. */
static size_t copy_frame(uint8_t *out, uint32_t type, uint32_t file, uint32_t run, uint64_t off, const void *p, size_t n)
{
	uint32_t len = (uint32_t)(16 + n);
	memcpy(out, &type, 4);
	memcpy(out + 4, &len, 4);
	memcpy(out + 8, &file, 4);
	memcpy(out + 12, &run, 4);
	memcpy(out + 16, &off, 8);
	memcpy(out + 24, p, n);
	return 24 + n;
}

static void copy_seeds(void)
{
	static uint8_t buf[70000], block[5000];
	uint8_t digest[32];
	unsigned int dl = 0;
	size_t n = 0;
	/* file 0: 100 bytes of data at 0 (its first block: 65536 bytes, the rest zeros) */
	memset(block, 0xa5, 100);
	n += copy_frame(buf + n, FRAME_FILE_DATA, 0, 100, 0, block, 100);
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	static uint8_t first[65536];
	uint64_t zero = 0;
	memcpy(first, block, 100);
	EVP_DigestInit_ex(md, EVP_sha256(), NULL);
	EVP_DigestUpdate(md, &zero, 8);
	EVP_DigestUpdate(md, first, sizeof(first));
	EVP_DigestFinal_ex(md, digest, &dl);
	n += copy_frame(buf + n, FRAME_FILE_END, 0, 0, 2 * 65536 + 100, digest, 32);
	/* file 1: empty, its digest of nothing */
	EVP_DigestInit_ex(md, EVP_sha256(), NULL);
	EVP_DigestFinal_ex(md, digest, &dl);
	n += copy_frame(buf + n, FRAME_FILE_END, 1, 0, 0, digest, 32);
	put("copy", "data-end-empty", buf, n);
	/* file 2: its short last part, and an end with a wrong digest */
	n = copy_frame(buf, FRAME_FILE_DATA, 2, 904, 4096, block, 904);
	n += copy_frame(buf + n, FRAME_FILE_END, 2, 0, 5000, digest, 32);
	put("copy", "short-wrong-digest", buf, n);
	EVP_MD_CTX_free(md);
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: seedgen OUTDIR [SNAPSHOT]\n");
		return 2;
	}
	outdir = argv[1];
	mkdir(outdir, 0755);
	state_seeds();
	if (argc > 2)
		snapshot_seeds(argv[2]);
	pages_seeds();
	disk_seeds();
	copy_seeds();
	config_seeds();
	wire_seeds();
	api_seeds();
	return 0;
}
