#!/usr/bin/env bash
# Rate shaping of a VM's NIC measured end to end (issue 12): the netecho
# guest on a bridge port with --nic bridge=br0,rate=1M (1 MiB/s each way:
# tbf on the tap for host -> VM, the device model's token bucket for VM ->
# host), a client namespace offering 1000-byte UDP datagrams at 2500/s (2.6
# MB/s of frames) for 3 s, the echoes counted. Asserted: the echo rate with
# the limit is at most 1.15x the limit (1,006 frames/s of 1,042 bytes) and
# at least 0.5x (shaped, not starved); the guest received at most 1.15x the
# limit too (its own counters, host -> VM alone); the same load without a
# limit gets at least 1.8x the shaped rate (the limit, not the guest or the
# client, was what held it). The figures are printed.
# run.sh timeout: 90
. "$(dirname "$0")/lib.sh"
P="nr$$"
HN=${P}h CN=${P}c
ns() { local n="$1"; shift; ip netns exec "$n" "$@"; }
have_kvm || { skip "rate shaping: /dev/kvm not accessible"; exit 0; }
[ "$(id -u)" = 0 ] || { skip "rate shaping: needs root (network namespaces, taps)"; exit 0; }
ELF="$GLIDE_BUILD/guests/netecho.elf"
[ -e "$ELF" ] || { fail "rate shaping: $ELF missing (run make)"; exit 0; }
nr_cleanup() {
	local n p
	for n in $HN $CN; do for p in $(ip netns pids "$n" 2>/dev/null); do kill "$p" 2>/dev/null; done; done
	wait_for 5 test -z "$(ip netns pids $HN 2>/dev/null)"
	for n in $HN $CN; do
		for p in $(ip netns pids "$n" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
		ip netns del "$n" 2>/dev/null
	done
}
trap 'nr_cleanup; cleanup' EXIT
{ ip netns add $HN && ip netns add $CN && ns $HN ip link set lo up && ns $CN ip link set lo up &&
	ns $HN ip link add br0 type bridge && ns $HN ip link set br0 up &&
	ip link add ${P}p netns $HN type veth peer name cl0 netns $CN && ns $HN ip link set ${P}p master br0 up &&
	ns $CN ip addr add 10.77.0.1/24 dev cl0 && ns $CN ip link set cl0 up; } >"$T/setup.out" 2>&1 ||
	{ fail "rate shaping: cannot build the namespaces: $(tail -2 "$T/setup.out" | tr '\n' ' ')"; exit 0; }

LIMIT=1048576 SIZE=1000 PPS=2500 SECS=3
FRAME=$((SIZE + 42))
# run_load NAME NIC_OPTIONS: the guest with that NIC, the load, its figures in $T/NAME.json and $T/NAME.rx
run_load() {
	local name=$1 nic=$2 pid
	ip netns exec $HN "$GLIDE" vm run --memory 64M --elf "$ELF" --api "$T/$name.sock" --nic "$nic" \
		--serial "$T/$name.serial" --log "$T/$name.log" >"$T/$name.out" 2>&1 &
	pid=$!
	PIDS+=($pid)
	if ! wait_for 20 grep -q "^glide-guest netecho" "$T/$name.serial" ||
		! wait_for 10 ns $CN ping -c 1 -W 1 10.77.0.2; then
		fail "rate shaping ($name): the guest does not answer: $(tail -n 2 "$T/$name.out" "$T/$name.log" | tr '\n' ' ')"
		return 1
	fi
	"$GLIDE" vm status --api "$T/$name.sock" --json >"$T/$name.st0" 2>/dev/null
	ns $CN python3 "$TESTS_DIR/udp_rate.py" 10.77.0.2 7 $SIZE $PPS $SECS >"$T/$name.json" 2>"$T/$name.err"
	"$GLIDE" vm status --api "$T/$name.sock" --json >"$T/$name.st1" 2>/dev/null
	python3 -c '
import json,sys
def rx(p):
    d=json.load(open(p)); n=(d.get("nics") or d.get("devices",{}).get("nics") or [{}])[0]
    return n.get("rx_bytes",0), n.get("rx_frames",0)
a,b=rx(sys.argv[1]),rx(sys.argv[2]); print(b[0]-a[0], b[1]-a[1])' "$T/$name.st0" "$T/$name.st1" >"$T/$name.rx" 2>/dev/null
	"$GLIDE" vm shutdown --api "$T/$name.sock" >/dev/null 2>&1
	wait_for 5 exited $pid
}
run_load shaped "bridge=br0,rate=$LIMIT,mac=52:54:00:77:00:31" || exit 0
run_load free "bridge=br0,mac=52:54:00:77:00:31" || exit 0
read -r shaped_fps shaped_bps <<<"$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["echo_frames_per_s"], d["echo_frame_bytes_per_s"])' "$T/shaped.json" 2>/dev/null)"
read -r free_fps <<<"$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["echo_frames_per_s"])' "$T/free.json" 2>/dev/null)"
read -r rx_bytes rx_frames <<<"$(cat "$T/shaped.rx")"
limit_fps=$(python3 -c "print(round($LIMIT / $FRAME, 1))")
if python3 -c "import sys; sys.exit(not ($shaped_fps <= 1.15 * $limit_fps and $shaped_fps >= 0.5 * $limit_fps))" 2>/dev/null; then
	pass "rate=1MiB/s: echoes at $shaped_fps frames/s ($shaped_bps frame bytes/s; limit $limit_fps frames/s) with $PPS/s offered"
else
	fail "rate=1MiB/s: echoes at ${shaped_fps:-?} frames/s, limit $limit_fps: $(cat "$T/shaped.json" "$T/shaped.err")"
fi
# host -> VM alone: what the guest's NIC received during the whole load ($SECS s plus 0.5 s, plus the tbf's burst)
if [ -n "${rx_bytes:-}" ] && python3 -c "import sys; sys.exit(not (0 < $rx_bytes <= 1.15 * $LIMIT * ($SECS + 0.5) + 65536))" 2>/dev/null; then
	pass "host -> VM shaped: the guest received $rx_frames frames, $rx_bytes bytes in ~$SECS.5 s (limit $LIMIT bytes/s)"
else
	fail "host -> VM: the guest received ${rx_bytes:-?} bytes in ~$SECS.5 s, limit $LIMIT bytes/s ($(head -c 300 "$T/shaped.st1"))"
fi
if python3 -c "import sys; sys.exit(not ($free_fps >= 1.8 * $shaped_fps))" 2>/dev/null; then
	pass "without a limit the same load echoes at $free_fps frames/s (>= 1.8x the shaped $shaped_fps)"
else
	fail "without a limit: ${free_fps:-?} frames/s against ${shaped_fps:-?} shaped: $(cat "$T/free.json" "$T/free.err")"
fi
