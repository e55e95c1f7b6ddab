#!/usr/bin/env bash
# Migration benchmark (glide only): total time, stun time, guest-observed
# stun, bytes sent and throughput for idle and dirtying guests at 256 MiB and
# 2 GiB, over loopback. Prints a Markdown table of medians (min-max).
# Usage: bench/migrate.sh [REPEATS] [extra `glide migrate` options...]
set -u
cd "$(dirname "$0")/.."
GLIDE=${GLIDE:-build/glide}
B=build
REPEATS=${1:-3}; shift || true
EXTRA=("$@")
D=$(mktemp -d /tmp/glide-bench.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]:-}"; do kill -9 "$p" 2>/dev/null; done; rm -rf "$D"; }
trap cleanup EXIT
(umask 077; openssl rand -hex 32 > "$D/key")
PORT=$((30000 + RANDOM % 10000))

wait_sock() { for i in $(seq 200); do $GLIDE vm status --api "$1" >/dev/null 2>&1 && return 0; sleep 0.05; done; return 1; }

# guests: idle = heartbeat guest (touches one page); dirtying = A-B guest over half of memory
$B/tools/guestcfg $B/guests/guest.img "$D/ab-2g.img" --mode ab --range-start 1M --range-size 1G >/dev/null

one_run() { # MEM IMAGE VCPUS -> prints total stun guest_stun bytes
	local mem="$1" img="$2" vcpus="$3"
	PORT=$((PORT + 1))
	rm -f "$D"/*.sock
	$GLIDE vm run --memory "$mem" --vcpus "$vcpus" --boot "$img" --api "$D/src.sock" --log "$D/src.log" & PIDS+=($!)
	$GLIDE vm run --incoming "127.0.0.1:$PORT" --key-file "$D/key" --api "$D/dst.sock" --log "$D/dst.log" & PIDS+=($!)
	wait_sock "$D/src.sock" && wait_sock "$D/dst.sock" || { echo "start failed" >&2; return 1; }
	sleep 1
	$GLIDE migrate --api "$D/src.sock" --to "127.0.0.1:$PORT" --key-file "$D/key" --json "${EXTRA[@]}" >"$D/res.json" 2>/dev/null
	$GLIDE vm pause --api "$D/dst.sock" >/dev/null 2>&1
	$GLIDE vm memsave --api "$D/dst.sock" --addr 0x8000 --size 4096 --to "$D/hb" >/dev/null 2>&1
	local khz
	khz=$($GLIDE vm status --api "$D/dst.sock" --json 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["tsc_khz"])' 2>/dev/null || echo 0)
	python3 - "$D/res.json" "$D/hb" "$khz" "$vcpus" <<'PY'
import json, struct, sys
r = json.load(open(sys.argv[1]))
try:
    d = open(sys.argv[2], "rb").read(); khz = float(sys.argv[3]); n = int(sys.argv[4])
    gap = max(struct.unpack_from("<6Q", d, 64 * i)[3] for i in range(n)) / khz
except Exception:
    gap = float("nan")
if r.get("status") != "completed":
    print("FAILED", r.get("error")); sys.exit(1)
print(r["total_ms"], r["stun_ms"], gap, r["bytes_sent"], r["streams"])
PY
	$GLIDE vm shutdown --api "$D/dst.sock" >/dev/null 2>&1
	$GLIDE vm shutdown --api "$D/src.sock" >/dev/null 2>&1
	wait 2>/dev/null
}

echo "# glide migration benchmark"
echo
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) CPUs; loopback; options: ${EXTRA[*]:-defaults}; $REPEATS runs each, median (min-max)"
echo
echo "| scenario | memory | total ms | stun ms | guest-observed stun ms | bytes sent | throughput MB/s | streams |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
for sc in "idle 256M $B/guests/heartbeat.img 1" "idle 2G $B/guests/heartbeat.img 1" \
	  "dirtying-128MiB 256M $B/guests/ab.img 2" "dirtying-1GiB 2G $D/ab-2g.img 2"; do
	set -- $sc
	rows=()
	for r in $(seq "$REPEATS"); do
		out=$(one_run "$2" "$3" "$4") || { rows+=("FAILED"); continue; }
		rows+=("$out")
	done
	printf '%s\n' "${rows[@]}" | python3 -c '
import sys, statistics as st
name, mem = sys.argv[1], sys.argv[2]
rows = [l.split() for l in sys.stdin if l.strip() and not l.startswith("FAILED")]
if not rows:
    print("| %s | %s | failed | | | | | |" % (name, mem)); sys.exit()
def f(i, fmt="%.1f"):
    v = sorted(float(r[i]) for r in rows)
    return (fmt + " (" + fmt + "-" + fmt + ")") % (st.median(v), v[0], v[-1])
tp = sorted(float(r[3]) / float(r[0]) / 1000 for r in rows)
print("| %s | %s | %s | %s | %s | %s | %.0f | %s |" % (name, mem, f(0), f(1), f(2), f(3, "%.0f"), st.median(tp), rows[0][4]))
' "$1" "$2"
done
