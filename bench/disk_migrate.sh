#!/usr/bin/env bash
# Shared-nothing live migration, glide against QEMU 7.2 (issue 13): a disk
# (default 1 GiB, half of it written) plus memory (default 256 MiB) moved
# together, the same guest on both, over 127.0.0.1.
#
#   bench/disk_migrate.sh [--reps N] [--disk-size SIZE] [--written half|FRACTION|SIZE]
#                         [--memory SIZE] [--out DIR] [--max-minutes M]
#                         [--configs glide,glide-plain,QEMU] [--timeout S] [--disk-dir DIR]
#   bench/disk_migrate.sh --rerender DIR     (rebuild results.md from DIR/results.json)
#
# The guest is diskab (build/guests/diskab.elf), writing the A-B pattern on
# its virtio-blk disk during the migration. Before each run the source disk
# is made anew: sparse, --written of it random data in 1 MiB pieces spread
# over it. N repetitions (default 3, at most 10), the configurations in turn:
#   glide        glide migrate --disk-to DIR/copy.img, defaults (encrypted)
#   glide-plain  the same with --encrypt off
#   QEMU         libvirt's --copy-storage-all flow: NBD server and export on
#                the destination (-incoming defer, an empty pre-created file),
#                blockdev-mirror into it, migrate at BLOCK_JOB_READY with
#                pause-before-switchover, block-job-cancel, migrate-continue
# Measured: total time, the tool's downtime, the guest-observed stun (diskab's
# heartbeat record), bytes on the wire, the guest's write rate during the
# migration. Every run is checked (abcheck --disk on the copy and the source,
# the copy compared with the source block by block); a wrong disk fails the
# run. Prints a table (glide, QEMU, ratio) and writes results.md,
# results.json, runs.jsonl and disk_migrate.log to --out (default
# bench/results/disk_migrate). With the defaults (3 x 3 runs of a 1 GiB disk)
# about 3-5 minutes on a 2-CPU machine; --max-minutes (default 30) bounds it.
#
# Needs `make` done (build/glide, build/tools, build/guests),
# qemu-system-x86_64 (Debian: qemu-system-x86), ss (iproute2), findmnt
# (util-linux), python3, /dev/kvm, and twice the disk size free in --disk-dir
# (default /tmp). Installs nothing, needs no root. QEMU runs with
# -cpu host,-arch-capabilities on AMD hosts (plain -cpu host aborts on the
# nested AMD hosts here), -cpu host elsewhere; --cpu overrides it.
# BUILD=DIR uses another build directory. Every process started is stopped.
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
case "${1:-}" in -h|--help)
	sed -n '2,/^set -u/p' bench/disk_migrate.sh | sed '$d; s/^# \{0,1\}//'
	echo; python3 bench/disk_migrate.py --help | sed -n '/^options:/,$p'
	exit 0 ;;
esac
[ "${1:-}" = --rerender ] && exec python3 bench/disk_migrate.py "$@"
missing=()
command -v qemu-system-x86_64 >/dev/null || missing+=("qemu-system-x86_64 (apt-get install qemu-system-x86)")
command -v python3 >/dev/null || missing+=("python3 (apt-get install python3)")
command -v ss >/dev/null || missing+=("ss (apt-get install iproute2)")
command -v findmnt >/dev/null || missing+=("findmnt (apt-get install util-linux)")
if [ ${#missing[@]} -gt 0 ]; then
	printf 'bench/disk_migrate.sh: missing %s\n' "${missing[@]}" >&2
	exit 2
fi
for f in "$BUILD/glide" "$BUILD/tools/guestcfg" "$BUILD/tools/abcheck" "$BUILD/guests/diskab.elf" \
	 "$BUILD/guests/heartbeat.img"; do
	[ -e "$f" ] || { echo "bench/disk_migrate.sh: $f missing: run make first" >&2; exit 2; }
done
[ -r /dev/kvm ] && [ -w /dev/kvm ] || { echo "bench/disk_migrate.sh: /dev/kvm not usable" >&2; exit 2; }
qemu-system-x86_64 --version | head -1 | grep -q 'version 7\.2' ||
	echo "bench/disk_migrate.sh: note: $(qemu-system-x86_64 --version | head -1) (the reference is QEMU 7.2)" >&2
exec python3 bench/disk_migrate.py --build "$BUILD" --command "bench/disk_migrate.sh $*" "$@"
