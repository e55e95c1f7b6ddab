#!/usr/bin/env bash
# glide vs QEMU live migration benchmark, side by side (issue 6).
#
#   bench/compare.sh [--reps N] [--quick] [--only 1,3] [--timeout S] [--cap-timeout S] [--downtime MS]
#
# Runs every scenario (1 idle 1/4/16 GiB, 2 dirtying A-B 256 MiB and 2 GiB,
# 3 50 MiB/s cap, 4 stun vs VM size, 5 streams/multifd) against glide and
# QEMU back to back, N repetitions each (default 3; median, min, max), and
# writes bench/results/results.md (Markdown tables), runs.jsonl (every run),
# *.dat and *.png (gnuplot). --quick: one repetition of a reduced set (a few
# minutes). The default run takes about 20 minutes. Installs nothing: needs
# `make` done (build/glide, build/tools, build/guests), qemu-system-x86_64
# (Debian: qemu-system-x86), gnuplot (gnuplot-nox), python3 and /dev/kvm.
# BUILD=DIR uses another build directory (e.g. a private copy of the tree).
# Everything runs on 127.0.0.1; every process started is killed on exit.
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
case "${1:-}" in -h|--help)
	sed -n '2,/^set -u/p' bench/compare.sh | sed '$d; s/^# \{0,1\}//'
	echo; python3 bench/compare.py --help | sed -n '/^options:/,$p'
	exit 0 ;;
esac
missing=()
command -v qemu-system-x86_64 >/dev/null || missing+=("qemu-system-x86_64 (apt-get install qemu-system-x86)")
command -v gnuplot >/dev/null || missing+=("gnuplot (apt-get install gnuplot-nox)")
command -v python3 >/dev/null || missing+=("python3 (apt-get install python3)")
if [ ${#missing[@]} -gt 0 ]; then
	printf 'bench/compare.sh: missing %s\n' "${missing[@]}" >&2
	exit 2
fi
for f in "$BUILD/glide" "$BUILD/tools/guestcfg" "$BUILD/tools/linkrate" "$BUILD/guests/guest.img"; do
	[ -e "$f" ] || { echo "bench/compare.sh: $f missing: run make first" >&2; exit 2; }
done
[ -r /dev/kvm ] && [ -w /dev/kvm ] || { echo "bench/compare.sh: /dev/kvm not usable" >&2; exit 2; }
qemu-system-x86_64 --version | head -1 | grep -q 'version 7\.2' ||
	echo "bench/compare.sh: note: $(qemu-system-x86_64 --version | head -1) (the reference is QEMU 7.2)" >&2
exec python3 bench/compare.py --build "$BUILD" --command "bench/compare.sh $*" "$@"
