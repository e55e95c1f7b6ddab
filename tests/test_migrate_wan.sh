#!/usr/bin/env bash
# Migrations over a long-distance link (issue 11). Two network namespaces
# made here, joined by tests/link_emulator.py (a user-space WAN: this
# kernel has no netem): the source monitor runs in one, the destination in
# the other, and the migration crosses the emulated link.
#  1. 20 ms RTT: a dirtying A-B guest migrates with --verify, A-B clean.
#  2. 150 ms RTT with 1% loss each way: a paced workload guest migrates
#     with --verify and a 5 s stall timeout (no false abort), A-B clean.
#  3. The same link cut (every packet dropped) mid-migration: the source
#     notices within the stall timeout (5 s) plus 3 s, keeps the VM.
# Figures (total, stun, bytes) are printed; docs/benchmarks.md has them.
# run.sh timeout: 900
. "$(dirname "$0")/lib.sh"
have_kvm || { skip "WAN migrations: /dev/kvm not accessible"; exit 0; }
[ "$(id -u)" = 0 ] && command -v ip >/dev/null && [ -c /dev/net/tun ] ||
	{ skip "WAN migrations: need root, ip and /dev/net/tun for the namespaces and the emulated link"; exit 0; }
AB="$GLIDE_BUILD/guests/ab.img"
[ -f "$AB" ] || { fail "WAN migrations: $AB missing (run make)"; exit 0; }
(umask 077; openssl rand -hex 32 >"$T/key")
NS="glwan$$"
A_ADDR=10.201.0.1 B_ADDR=10.201.0.2
PORT=$(port_base)
EMU=""
wan_cleanup() {
	[ -n "$EMU" ] && kill "$EMU" 2>/dev/null
	cleanup
	ip netns del "${NS}a" 2>/dev/null
	ip netns del "${NS}b" 2>/dev/null
}
trap wan_cleanup EXIT
for s in a b; do
	ip netns add "$NS$s" && ip netns exec "$NS$s" ip link set lo up &&
		ip netns exec "$NS$s" ip tuntap add dev tun0 mode tun || { fail "WAN: cannot make namespace $NS$s"; exit 0; }
done
ip netns exec "${NS}a" ip addr add "$A_ADDR/24" dev tun0 && ip netns exec "${NS}b" ip addr add "$B_ADDR/24" dev tun0 &&
	ip netns exec "${NS}a" ip link set tun0 up && ip netns exec "${NS}b" ip link set tun0 up ||
	{ fail "WAN: cannot address the link"; exit 0; }
link() { # DELAY_MS_ONE_WAY LOSS
	[ -n "$EMU" ] && kill "$EMU" 2>/dev/null && wait "$EMU" 2>/dev/null
	rm -f "$T/blackhole"
	python3 "$TESTS_DIR/link_emulator.py" --ns-a "${NS}a" --ns-b "${NS}b" --delay-ms "$1" --loss "$2" \
		--blackhole "$T/blackhole" --log "$T/link.log" --max-seconds 600 2>>"$T/link.err" &
	EMU=$!
	wait_for 5 grep -q "started: delay $1" "$T/link.log"
}
# vm_in NS NAME ARGS...: a monitor inside a namespace (its API socket is a file here)
vm_in() {
	local ns="$1" name="$2"; shift 2
	ip netns exec "$ns" "$GLIDE" vm run --api "$T/$name.sock" --log "$T/$name.log" "$@" >"$T/$name.out" 2>&1 &
	PIDS+=($!)
	eval "PID_$name=$!"
	wait_for 20 "$GLIDE" vm status --api "$T/$name.sock"
}
pid_of() { eval "echo \$PID_$1"; }
stop_vm() { "$GLIDE" vm shutdown --api "$T/$1.sock" >/dev/null 2>&1; kill "$(pid_of "$1")" 2>/dev/null; }
jget() { json_get "$1" "$2" 2>/dev/null; }
figures() { printf "total %.0f ms, stun %.1f ms, %.1f MiB sent, %s phases" "$(jget "$1" total_ms)" "$(jget "$1" stun_ms)" \
	"$(python3 -c "print($(jget "$1" bytes_sent) / 1048576)")" "$(python3 -c "import json; print(len(json.load(open('$1'))['phases']))")"; }

# 1. 20 ms RTT, a dirtying A-B guest (256 MiB, 1 vCPU).
link 10 0 || { fail "WAN: the link emulator did not start: $(tail -2 "$T/link.err")"; exit 0; }
PORT=$((PORT + 1))
vm_in "${NS}a" w1 --memory 256M --boot "$AB" && vm_in "${NS}b" w1d --incoming "$B_ADDR:$PORT" --key-file "$T/key" ||
	{ fail "WAN: monitors did not start: $(tail -n 2 "$T/w1.out" "$T/w1d.out")"; exit 0; }
timeout 300 "$GLIDE" migrate --api "$T/w1.sock" --to "$B_ADDR:$PORT" --key-file "$T/key" --verify --json >"$T/w1.json" 2>"$T/w1.err"
if [ "$(jget "$T/w1.json" status)" = completed ] && [ "$(jget "$T/w1.json" verified)" = True ] && ab_check "$T/w1d.sock" 1; then
	pass "WAN 20 ms RTT: a dirtying A-B guest migrated, verified, A-B clean ($(figures "$T/w1.json"))"
else
	fail "WAN 20 ms RTT: status $(jget "$T/w1.json") verified $(jget "$T/w1.json" verified): $(jget "$T/w1.json" error) $(tail -1 "$T/abcheck.out" 2>/dev/null)"
fi
stop_vm w1d; stop_vm w1

# 2. 150 ms RTT, 1% loss each way: a workload guest (64 MiB, 8 MiB range,
#    200 page writes/s), 5 s stall timeout on both sides.
"$GLIDE_BUILD/tools/guestcfg" "$GLIDE_BUILD/guests/guest.img" "$T/wl.img" --mode workload --range-start 1M \
	--range-size 8M --write-rate 200 >/dev/null || { fail "WAN: guestcfg"; exit 0; }
link 75 0.01 || { fail "WAN: the link emulator did not restart"; exit 0; }
PORT=$((PORT + 1))
vm_in "${NS}a" w2 --memory 64M --boot "$T/wl.img" && vm_in "${NS}b" w2d --incoming "$B_ADDR:$PORT" --key-file "$T/key" --stall-timeout 5 ||
	{ fail "WAN: monitors did not start"; exit 0; }
sleep 1
timeout 400 "$GLIDE" migrate --api "$T/w2.sock" --to "$B_ADDR:$PORT" --key-file "$T/key" --verify --stall-timeout 5 --json \
	>"$T/w2.json" 2>"$T/w2.err"
if [ "$(jget "$T/w2.json" status)" = completed ] && [ "$(jget "$T/w2.json" verified)" = True ] &&
	AB_SIZE=8M ab_check "$T/w2d.sock" 1; then
	pass "WAN 150 ms RTT, 1% loss: a paced workload guest migrated, verified, A-B clean, no false abort with a 5 s stall timeout ($(figures "$T/w2.json"); link: $(tail -1 "$T/link.log"))"
else
	fail "WAN 150 ms RTT, 1% loss: status $(jget "$T/w2.json" status): $(jget "$T/w2.json" error) $(tail -1 "$T/w2.err")"
fi
stop_vm w2d; stop_vm w2

# 3. The long link cut mid-migration: detected within the stall timeout.
PORT=$((PORT + 1))
vm_in "${NS}a" w3 --memory 256M --boot "$AB" && vm_in "${NS}b" w3d --incoming "$B_ADDR:$PORT" --key-file "$T/key" --stall-timeout 5 ||
	{ fail "WAN: monitors did not start"; exit 0; }
timeout 300 "$GLIDE" migrate --api "$T/w3.sock" --to "$B_ADDR:$PORT" --key-file "$T/key" --stall-timeout 5 --json \
	>"$T/w3.json" 2>"$T/w3.err" &
mig=$!
wait_for 30 bash -c "curl -s --unix-socket '$T/w3.sock' http://vm/v1/migration | grep -q '\"stage\": *\"precopy\"'"
sleep 1
touch "$T/blackhole"
t0=$(date +%s.%N)
for _ in $(seq 300); do kill -0 $mig 2>/dev/null || break; sleep 0.1; done
d=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b - a}')
if [ "$(jget "$T/w3.json" status)" = failed ] && [[ "$(jget "$T/w3.json" error)" == *stalled* ]] &&
	awk -v d="$d" 'BEGIN{exit !(d <= 8)}' && [ "$(vm_state w3)" = running ] && ab_check "$T/w3.sock" 1; then
	pass "WAN 150 ms RTT, link cut mid-migration: noticed after $d s (stall timeout 5 s), the source runs on, A-B clean"
else
	fail "WAN link cut: after $d s status $(jget "$T/w3.json" status): $(jget "$T/w3.json" error); source $(vm_state w3); cut at $(date -d "@$t0" +%T.%3N), the source's log: $(grep -h "migrate:" "$T/w3.log" | tail -3)"
fi
stop_vm w3d; stop_vm w3
