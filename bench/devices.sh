#!/usr/bin/env bash
# glide's virtio devices against QEMU 7.2: the same guests on the same
# machine, in one run.
#
#   bench/devices.sh [--reps N] [--only net,disk,migrate] [--seconds S] [--window K]
#                    [--pings N] [--mig-pings N] [--disk-dir DIR] [--out DIR] [--max-minutes M]
#   bench/devices.sh --rerender DIR     (rebuild results.md from DIR/results.json)
#
# For glide and for QEMU, N repetitions each (default 3, at most 10), the
# two tools in turn:
#   net      netecho (build/guests/netecho.elf) behind a tap on a bridge:
#            UDP echo round trips per second with 1 and K (default 16)
#            datagrams in flight (bench/udp_rr.c, S seconds each, default 5),
#            and ping latency p50/p99 (`ping -i 0.001 -c 2000`)
#   disk     diskab (build/guests/diskab.elf) on a zero-filled 64 MiB raw
#            file in --disk-dir (default /tmp): writes per second with a
#            flush every 256 writes and with flushes off
#   migrate  netecho migrates between two "host" namespaces while a client
#            pings it every 1 ms: pings lost, largest gap between replies,
#            reported downtime/stun, guest-observed stun
# Prints one table per measurement (glide, QEMU, ratio) and writes them to
# --out (default bench/results/devices): results.md, results.json (every
# run and the machine), runs.jsonl, devices.log. About 4-5 minutes with the
# defaults on a 2-CPU machine; --max-minutes (default 25) bounds it.
#
# Needs root (it creates network namespaces, bridges, veth pairs and taps,
# all inside namespaces it deletes at the end: no traffic leaves them),
# `make` done (build/glide, build/tools, build/guests), qemu-system-x86_64
# (Debian: qemu-system-x86), ip and bridge (iproute2), ping (iputils-ping),
# cc, python3, /dev/kvm and /dev/net/tun. Installs nothing. QEMU runs with
# -cpu host,-arch-capabilities on AMD hosts (plain -cpu host aborts on the
# nested AMD hosts here), -cpu host elsewhere; --cpu overrides it.
# BUILD=DIR uses another build directory. Every process started is stopped.
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
case "${1:-}" in -h|--help)
	sed -n '2,/^set -u/p' bench/devices.sh | sed '$d; s/^# \{0,1\}//'
	echo; python3 bench/devices.py --help | sed -n '/^options:/,$p'
	exit 0 ;;
esac
[ "${1:-}" = --rerender ] && exec python3 bench/devices.py "$@"
missing=()
command -v qemu-system-x86_64 >/dev/null || missing+=("qemu-system-x86_64 (apt-get install qemu-system-x86)")
command -v python3 >/dev/null || missing+=("python3 (apt-get install python3)")
command -v ip >/dev/null && command -v bridge >/dev/null || missing+=("ip and bridge (apt-get install iproute2)")
command -v ping >/dev/null || missing+=("ping (apt-get install iputils-ping)")
command -v "${CC:-cc}" >/dev/null || missing+=("a C compiler (apt-get install gcc)")
command -v findmnt >/dev/null || missing+=("findmnt (apt-get install util-linux)")
if [ ${#missing[@]} -gt 0 ]; then
	printf 'bench/devices.sh: missing %s\n' "${missing[@]}" >&2
	exit 2
fi
for f in "$BUILD/glide" "$BUILD/tools/guestcfg" "$BUILD/tools/abcheck" "$BUILD/guests/netecho.elf" \
	 "$BUILD/guests/diskab.elf" "$BUILD/guests/heartbeat.img"; do
	[ -e "$f" ] || { echo "bench/devices.sh: $f missing: run make first" >&2; exit 2; }
done
[ "$(id -u)" = 0 ] || { echo "bench/devices.sh: needs root (network namespaces, bridges, taps)" >&2; exit 2; }
[ -r /dev/kvm ] && [ -w /dev/kvm ] || { echo "bench/devices.sh: /dev/kvm not usable" >&2; exit 2; }
[ -c /dev/net/tun ] || { echo "bench/devices.sh: /dev/net/tun missing" >&2; exit 2; }
qemu-system-x86_64 --version | head -1 | grep -q 'version 7\.2' ||
	echo "bench/devices.sh: note: $(qemu-system-x86_64 --version | head -1) (the reference is QEMU 7.2)" >&2
exec python3 bench/devices.py --build "$BUILD" --command "bench/devices.sh $*" "$@"
