#!/usr/bin/env bash
# The virtio test guests (docs/guests.md) under QEMU, the reference VMM:
# build/guests/netecho.elf and diskab.elf boot with -kernel (PVH) and drive
# QEMU's modern virtio-net-pci and virtio-blk-pci by polling.
#
# diskab, on a zero-filled raw image: runs a few seconds, is stopped; the
# image passes abcheck --disk with at least one full pass and agrees with
# the guest's stats record; a copy with one block's counter changed fails,
# naming that block. Then migrated from one QEMU to another on the shared
# image: the destination writes on and the image stays clean.
# netecho, on tap devices of a bridge in a network namespace this test
# creates (host side 10.77.0.1/24): the banner; 20 pings answered; UDP echo
# round trips return the same bytes (0 to 1472 bytes); the stats record
# counts them; the heartbeat record's iterations grow; QMP announce-self
# makes the guest send a gratuitous ARP and ack the announcement. Then a
# patched address with the BAR above 4 GiB (SeaBIOS moves 64-bit BARs there
# when a 4 GiB ivshmem BAR fills the 32-bit window), a transitional device
# (0x1000) with the guest assigning BARs itself, and a migration from a QEMU
# on one tap to a QEMU on the other: the destination's guest announces
# itself (gratuitous ARP on its tap, each round acked) and answers pings.
# Negative: without the device each guest prints its error and exits 65
# (debug-exit 0x20); diskab on a read-only drive exits 69.
# All traffic stays in the namespace, deleted at the end; every wait is
# bounded. About 2-4 minutes on the 2-core test machines.
. "$(dirname "$0")/lib.sh"
command -v qemu-system-x86_64 >/dev/null || { skip "virtio guests under QEMU: qemu-system-x86_64 not installed"; exit 0; }
have_kvm || { skip "virtio guests under QEMU: /dev/kvm not accessible"; exit 0; }
G="$GLIDE_BUILD/guests"
TOOLS="$GLIDE_BUILD/tools"
for f in "$G/netecho.elf" "$G/diskab.elf" "$TOOLS/abcheck" "$TOOLS/hbread" "$TOOLS/guestcfg"; do
	[ -e "$f" ] || { fail "virtio guests under QEMU: $f missing (run make)"; exit 0; }
done
QEMU_VERSION=$(qemu-system-x86_64 --version | head -1 | sed 's/^QEMU emulator version //')
# -cpu host aborts on the AMD hosts here ("failed to set MSR 0x10a"); this works on both kinds
QEMU=(qemu-system-x86_64 -enable-kvm -cpu host,-arch-capabilities -m 128 -nodefaults -display none -no-reboot
	-device isa-debug-exit,iobase=0xf4,iosize=4)
STATS_ADDR=0x9000
HB_ADDR=0x8000
NS=""
QNAMES=()

qmp() { timeout 60 python3 "$TESTS_DIR/qmp.py" "$@"; }


# start_qemu NAME NETNS ELF ARGS...: QEMU in the background (inside NETNS unless it is "-"),
# COM1 in $T/NAME.serial, QMP on $T/NAME.sock; NAME is a shell identifier
start_qemu() {
	local name="$1" ns="$2" elf="$3" pid
	local -a pre=()
	shift 3
	[ "$ns" != - ] && pre=(ip netns exec "$ns")
	rm -f "$T/$name.sock"
	: >"$T/$name.serial"
	"${pre[@]}" timeout 300 "${QEMU[@]}" -kernel "$elf" -serial "file:$T/$name.serial" \
		-qmp "unix:$T/$name.sock,server,nowait" "$@" >"$T/$name.out" 2>&1 &
	pid=$!
	PIDS+=("$pid")
	QNAMES+=("$name")
	eval "QPID_$name=$pid"
}
qpid() { eval "echo \$QPID_$1"; }
# wait_banner NAME BANNER: true once BANNER is a line of COM1 (120 s at most; SeaBIOS comes first)
wait_banner() {
	local pid
	pid=$(qpid "$1")
	wait_for 120 bash -c "grep -qx '$2' '$T/$1.serial' || ! kill -0 $pid 2>/dev/null"
	grep -qx "$2" "$T/$1.serial"
}
# wait_exit NAME SECONDS: QEMU's exit status in QEMU_STATUS ("" if it is still running)
wait_exit() {
	local pid
	pid=$(qpid "$1")
	QEMU_STATUS=""
	wait_for "$2" exited "$pid" || return 1
	wait "$pid" 2>/dev/null
	QEMU_STATUS=$?
}
stop_qemu() {
	local pid
	pid=$(qpid "$1")
	exited "$pid" && return 0
	qmp "$T/$1.sock" quit >/dev/null 2>&1
	wait_for 10 exited "$pid" && return 0
	kill -TERM "$pid" 2>/dev/null # timeout passes it on to QEMU
	wait_for 5 exited "$pid" && return 0
	kill -KILL $(ps -o pid= --ppid "$pid") "$pid" 2>/dev/null
}
serial_tail() { tail -c 400 "$T/$1.serial" | tr '\n' '|'; echo " / $(tail -c 200 "$T/$1.out" | tr '\n' ' ')"; }
# stats NAME: the stats record as JSON (pmemsave works on a running VM too)
stats() {
	rm -f "$T/$1.stats"
	qmp "$T/$1.sock" pmemsave "{\"val\": $((STATS_ADDR)), \"size\": 128, \"filename\": \"$T/$1.stats\"}" >/dev/null &&
		python3 "$TESTS_DIR/virtio_stats.py" "$T/$1.stats"
}
# hb NAME: hbread --json of vCPU 0's heartbeat record (times with this host's TSC rate)
hb() {
	rm -f "$T/$1.hb"
	qmp "$T/$1.sock" pmemsave "{\"val\": $((HB_ADDR)), \"size\": 4096, \"filename\": \"$T/$1.hb\"}" >/dev/null &&
		"$TOOLS/hbread" "$T/$1.hb" --vcpus 1 --json 2>/dev/null
}
# migrate_qemu SRC DST: migrates QEMU SRC to DST (started with -incoming unix:$T/DST.mig), waits
# (60 s at most) for completion; MIG holds the last query-migrate reply
migrate_qemu() {
	local end=$((SECONDS + 60))
	MIG=""
	wait_for 30 test -S "$T/$2.mig" || { MIG="the destination's socket $T/$2.mig never appeared"; return 1; }
	qmp "$T/$1.sock" migrate "{\"uri\": \"unix:$T/$2.mig\"}" >"$T/mig.out" 2>&1 || { MIG=$(cat "$T/mig.out"); return 1; }
	while [ $SECONDS -lt $end ]; do
		MIG=$(qmp "$T/$1.sock" query-migrate) || return 1
		jcheck "$MIG" "d['return'].get('status') == 'completed'" && return 0
		jcheck "$MIG" "d['return'].get('status') in ('failed', 'cancelled')" && return 1
		sleep 0.2
	done
	return 1
}
# jcheck JSON PYTHON-EXPRESSION [JSON2]: the expression over d (and e), the parsed JSON, holds
jcheck() {
	python3 -c 'import json, sys
d = json.loads(sys.argv[1]); e = json.loads(sys.argv[3]) if len(sys.argv) > 3 else None
sys.exit(0 if eval("(" + sys.argv[2] + ")") else 1)' "$@" 2>/dev/null
}
# jget JSON PYTHON-EXPRESSION: prints the expression over d
jget() { python3 -c 'import json, sys; d = json.loads(sys.argv[1]); print(eval(sys.argv[2]))' "$@" 2>/dev/null; }

finish() {
	local n
	for n in "${QNAMES[@]:-}"; do [ -n "$n" ] && stop_qemu "$n"; done
	[ -n "$NS" ] && ip netns del "$NS" 2>/dev/null
	cleanup
}
trap finish EXIT

# ---- negative: no device, read-only disk (the three QEMUs at once) ----
truncate -s 1M "$T/ro.img"
start_qemu nodev_netecho - "$G/netecho.elf"
start_qemu nodev_diskab - "$G/diskab.elf"
start_qemu ro - "$G/diskab.elf" -drive "file=$T/ro.img,format=raw,if=none,id=d0,readonly=on" \
	-device virtio-blk-pci,disable-legacy=on,drive=d0
for guest in netecho diskab; do
	name="nodev_$guest"
	want="$guest: error: no virtio-$([ $guest = netecho ] && echo net || echo blk) PCI device on bus 0"
	if wait_exit "$name" 120 && [ "$QEMU_STATUS" = 65 ] && grep -q "^$want" "$T/$name.serial"; then
		pass "$guest without its device: '$(grep "^$guest: error" "$T/$name.serial")', exit status 65 (debug-exit 0x20)"
	else
		fail "$guest without its device: exit status '${QEMU_STATUS:-still running}', COM1: $(serial_tail "$name")"
	fi
	stop_qemu "$name"
done
if wait_exit ro 120 && [ "$QEMU_STATUS" = 69 ] && grep -q "^diskab: error: the disk is read-only" "$T/ro.serial"; then
	pass "diskab on a read-only drive: '$(grep '^diskab: error' "$T/ro.serial")', exit status 69"
else
	fail "diskab on a read-only drive: exit status '${QEMU_STATUS:-still running}', COM1: $(serial_tail ro)"
fi
stop_qemu ro

# ---- diskab ----
BLOCKS=2048
truncate -s $((BLOCKS * 4096)) "$T/disk.img"
t0=$(date +%s%N)
start_qemu disk - "$G/diskab.elf" -drive "file=$T/disk.img,format=raw,if=none,id=d0" \
	-device virtio-blk-pci,disable-legacy=on,drive=d0
if ! wait_banner disk "glide-guest diskab"; then
	fail "QEMU $QEMU_VERSION diskab: no banner within 120 s: $(serial_tail disk)"
else
	pass "QEMU $QEMU_VERSION diskab: banner after $(( ($(date +%s%N) - t0) / 1000000 )) ms ($(grep '^diskab: [0-9]* sectors' "$T/disk.serial"))"
	# a few seconds, and at least two full passes
	t1=$SECONDS
	end=$((SECONDS + 60))
	while :; do
		s=$(stats disk) || s='{}'
		jcheck "$s" "d.get('writes', 0) >= 2 * $BLOCKS" && [ $((SECONDS - t1)) -ge 3 ] && break
		[ $SECONDS -lt $end ] || break
		sleep 0.5
	done
	if qmp "$T/disk.sock" stop >/dev/null && s=$(stats disk) && h=$(hb disk); then
		stop_qemu disk
		"$TOOLS/abcheck" --disk "$T/disk.img" --require-progress --json >"$T/ab.json" 2>"$T/ab.err"
		rc=$?
		a=$(cat "$T/ab.json")
		image_writes=$(jget "$a" "d['low'] * d['blocks'] + d['step_block'] % d['blocks']")
		if [ $rc = 0 ] && jcheck "$a" "d['ok'] and d['blocks'] == $BLOCKS and d['passes'] >= 1"; then
			pass "diskab: abcheck --disk clean on the stopped guest's image: $(jget "$a" "'%d full passes, pass %d up to block %d' % (d['passes'], d['high'], d['step_block'] - 1) if d['step_block'] < d['blocks'] else '%d full passes, no step' % d['passes']")"
		else
			fail "diskab: abcheck --disk: exit $rc, $a $(cat "$T/ab.err")"
		fi
		# the device finishes what was in flight when the VM stopped; the guest may not have seen it
		if jcheck "$s" "d['valid'] and d['guest'] == 2 and d['blocks'] == $BLOCKS and d['errors'] == 0 and
			d['features'] >> 32 & 1 and 0 <= ${image_writes:--1} - d['writes'] <= 1"; then
			pass "diskab: the stats record agrees with the image ($(jget "$s" "'%d writes of %d bytes, %d flushes, features 0x%x' % (d['writes'], d['write_size'], d['flushes'], d['features'])"); the image holds $image_writes)"
		else
			fail "diskab: stats $s, image holds ${image_writes:-?} writes"
		fi
		if jcheck "$s" "(d['features'] >> 9 & 1) and d['flushes'] >= d['writes'] // 256 - 1 and d['flushes'] >= 1"; then
			pass "diskab: VIRTIO_BLK_F_FLUSH negotiated, a flush every 256 writes"
		else
			fail "diskab: flushes: $s"
		fi
		if jcheck "$h" "d['vcpus'][0]['valid'] and d['vcpus'][0]['mode'] == 'diskab' and
			abs(d['vcpus'][0]['iterations'] - e['writes']) <= 1" "$s"; then
			pass "diskab: heartbeat record, iterations = writes ($(jget "$h" "d['vcpus'][0]['iterations']"))"
		else
			fail "diskab: heartbeat $h, stats $s"
		fi
		# one block's counter changed: abcheck must name that block
		cp "$T/disk.img" "$T/bad.img"
		python3 -c 'import struct,sys; f=open(sys.argv[1],"r+b"); f.seek(4096*777); v=struct.unpack("<Q",f.read(8))[0]; f.seek(4096*777); f.write(struct.pack("<Q",v+5))' "$T/bad.img"
		"$TOOLS/abcheck" --disk "$T/bad.img" >"$T/bad.out" 2>&1
		rc=$?
		if [ $rc = 1 ] && grep -q "^bad block 777 (offset 0x309000)" "$T/bad.out"; then
			pass "diskab: abcheck --disk finds the corrupted block ($(grep '^bad block' "$T/bad.out" | head -1))"
		else
			fail "diskab: corrupted image: exit $rc, $(tail -3 "$T/bad.out" | tr '\n' ' ')"
		fi
	else
		fail "diskab: QMP stop/pmemsave failed: $(serial_tail disk)"
	fi
fi
stop_qemu disk

# ---- diskab migrated: QEMU to QEMU on this host, the image shared ----
truncate -s $((BLOCKS * 4096)) "$T/mig.img"
DISK=(-drive "file=$T/mig.img,format=raw,if=none,id=d0" -device virtio-blk-pci,disable-legacy=on,drive=d0)
start_qemu dsrc - "$G/diskab.elf" "${DISK[@]}"
start_qemu ddst - "$G/diskab.elf" "${DISK[@]}" -incoming "unix:$T/ddst.mig"
if ! wait_banner dsrc "glide-guest diskab"; then
	fail "diskab migration: no banner on the source: $(serial_tail dsrc)"
else
	end=$((SECONDS + 60))
	until jcheck "$(stats dsrc)" "d['writes'] >= $BLOCKS" || [ $SECONDS -ge $end ]; do sleep 0.5; done
	before=$(jget "$(stats dsrc)" "d['writes']")
	# the destination writes on: at least 1000 more blocks within 20 s
	grown() { jcheck "$(stats ddst)" "d['writes'] >= ${before:-0} + 1000"; }
	if ! migrate_qemu dsrc ddst; then
		fail "diskab migration: $MIG $(tail -c 300 "$T/ddst.out")"
	elif ! wait_for 20 grown; then
		fail "diskab migration: the destination does not write on: $(stats ddst)"
	elif qmp "$T/ddst.sock" stop >/dev/null && s=$(stats ddst) && h=$(hb ddst); then
		stop_qemu ddst
		stop_qemu dsrc
		"$TOOLS/abcheck" --disk "$T/mig.img" --require-progress --json >"$T/ab.json" 2>"$T/ab.err"
		rc=$?
		a=$(cat "$T/ab.json")
		image_writes=$(jget "$a" "d['low'] * d['blocks'] + d['step_block'] % d['blocks']")
		if [ $rc = 0 ] && jcheck "$s" "0 <= ${image_writes:--1} - d['writes'] <= 1"; then
			pass "diskab migrated by QEMU (downtime $(jget "$MIG" "d['return']['downtime']") ms): the image is clean after $(jget "$s" "d['writes']") writes, $before before the migration ($(jget "$a" "'%d full passes, step at block %d' % (d['passes'], d['step_block'])"); largest heartbeat gap $(jget "$h" "'%.1f ms' % d['vcpus'][0]['max_gap_ms']"))"
		else
			fail "diskab migration: abcheck exit $rc: $a $(cat "$T/ab.err"); stats $s"
		fi
	else
		fail "diskab migration: QMP stop/pmemsave on the destination failed"
	fi
fi
stop_qemu ddst
stop_qemu dsrc

# ---- netecho on a tap device in a namespace ----
why=""
[ "$(id -u)" = 0 ] || why="not root (ip netns and tap devices need root)"
[ -z "$why" ] && ! command -v ip >/dev/null && why="no ip command (iproute2)"
[ -z "$why" ] && [ ! -c /dev/net/tun ] && why="no /dev/net/tun"
[ -z "$why" ] && ! command -v ping >/dev/null && why="no ping command (iputils-ping)"
if [ -z "$why" ]; then
	NS="glide-vnet-$$"
	# a bridge with two taps: the second one is the destination's in the migration
	if ! { ip netns add "$NS" && ip netns exec "$NS" ip link set lo up &&
	       ip netns exec "$NS" ip link add br0 type bridge &&
	       ip netns exec "$NS" ip addr add 10.77.0.1/24 dev br0 &&
	       ip netns exec "$NS" ip link set br0 up &&
	       ip netns exec "$NS" ip tuntap add dev vtap0 mode tap &&
	       ip netns exec "$NS" ip tuntap add dev vtap1 mode tap &&
	       ip netns exec "$NS" ip link set vtap0 master br0 up &&
	       ip netns exec "$NS" ip link set vtap1 master br0 up; } >"$T/ns.out" 2>&1; then
		why="cannot set up the namespace, bridge and tap devices: $(head -c 200 "$T/ns.out")"
	fi
fi
if [ -n "$why" ]; then
	skip "netecho under QEMU: $why"
	exit 0
fi
in_ns() { ip netns exec "$NS" "$@"; }

# garp.py IFACE MAC IP: waits (15 s at most) for the guest's gratuitous ARP on IFACE
cat >"$T/garp.py" <<'EOF'
import socket, sys, time
iface, mac, ip = sys.argv[1], bytes.fromhex(sys.argv[2].replace(":", "")), socket.inet_aton(sys.argv[3])
# ETH_P_ALL: on a bridge port only the all-protocol taps see frames before the bridge takes them
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
s.bind((iface, 0))
s.settimeout(0.2)
print("ready", flush=True)
end = time.time() + 15
while time.time() < end:
    try:
        f = s.recv(2048)
    except socket.timeout:
        continue
    # from the guest, broadcast, ARP request with sender and target address both ours
    if (f[6:12] == mac and f[0:6] == b"\xff" * 6 and f[12:14] == b"\x08\x06" and f[20:22] == b"\x00\x01" and
            f[28:32] == ip and f[38:42] == ip):
        print("gratuitous ARP from %s for %s" % (sys.argv[2], sys.argv[3]))
        sys.exit(0)
sys.exit(1)
EOF

# ping_ok IP COUNT: every ping answered (bounded: 0.05 s apart, 2 s wait each, 30 s overall)
ping_ok() {
	in_ns timeout 30 ping -n -q -c "$2" -i 0.05 -W 2 "$1" >"$T/ping.out" 2>&1
	grep -q "^$2 packets transmitted, $2 received" "$T/ping.out"
}
# net_guest NAME ELF MAC DEVICE-OPTIONS TAP [QEMU-ARGS...]: netecho on TAP
net_guest() {
	local name="$1" elf="$2" mac="$3" dev="$4" tap="$5"
	shift 5
	start_qemu "$name" "$NS" "$elf" -netdev "tap,id=n0,ifname=$tap,script=no,downscript=no" \
		-device "virtio-net-pci,$dev,netdev=n0,mac=$mac" "$@"
}

MAC=52:54:00:4d:00:02
t0=$(date +%s%N)
net_guest net "$G/netecho.elf" $MAC disable-legacy=on vtap0
if ! wait_banner net "glide-guest netecho"; then
	fail "QEMU $QEMU_VERSION netecho: no banner within 120 s: $(serial_tail net)"
else
	pass "QEMU $QEMU_VERSION netecho: banner after $(( ($(date +%s%N) - t0) / 1000000 )) ms ($(grep '^netecho: mac' "$T/net.serial" | cut -c1-80)...)"
	if ping_ok 10.77.0.2 20; then
		pass "netecho: 20 of 20 pings answered ($(tail -1 "$T/ping.out"))"
	else
		fail "netecho: ping: $(tail -3 "$T/ping.out" | tr '\n' ' ')"
	fi
	in_ns timeout 30 python3 - 10.77.0.2 >"$T/udp.out" 2>&1 <<'EOF'
import os, socket, sys, time
ip = sys.argv[1]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(5)
times = []
for size in (0, 1, 100, 1000, 1472):  # 1472: a full 1514-byte frame
    m = os.urandom(size)
    t = time.time()
    s.sendto(m, (ip, 7))
    d, a = s.recvfrom(65536)
    times.append((time.time() - t) * 1000)
    assert a == (ip, 7), "reply from %s" % (a,)
    assert d == m, "sent %d bytes, got %d different ones" % (size, len(d))
print("5 datagrams of 0-1472 bytes echoed, round trips %s ms" % " ".join("%.2f" % t for t in times))
EOF
	if [ $? = 0 ]; then pass "netecho: UDP echo: $(tail -1 "$T/udp.out")"; else fail "netecho: UDP echo: $(tail -2 "$T/udp.out" | tr '\n' ' ')"; fi
	s=$(stats net)
	if jcheck "$s" "d['valid'] and d['guest'] == 1 and d['mac'] == '$MAC' and d['ip'] == '10.77.0.2' and d['prefix'] == 24 and
		d['icmp'] >= 20 and d['udp'] >= 5 and d['arp'] >= 1 and d['rx_frames'] >= d['icmp'] + d['udp'] + d['arp'] and
		d['tx_frames'] >= d['icmp'] + d['udp'] + d['arp'] and d['tx_dropped'] == 0 and d['features'] >> 32 & 1"; then
		pass "netecho: the stats record counts them ($(jget "$s" "', '.join('%s %s' % (k, d[k]) for k in 'rx_frames arp icmp udp tx_frames dropped'.split())"))"
	else
		fail "netecho: stats record $s"
	fi
	h1=$(hb net) && sleep 0.3 && h2=$(hb net)
	if jcheck "${h2:-null}" "d['vcpus'][0]['valid'] and d['vcpus'][0]['mode'] == 'netecho' and
		d['vcpus'][0]['iterations'] > e['vcpus'][0]['iterations']" "${h1:-null}"; then
		pass "netecho: heartbeat iterations grow (poll loop)"
	else
		fail "netecho: heartbeat $h1 -> $h2"
	fi

	# announce-self: QEMU sends its own RARP and, with GUEST_ANNOUNCE, sets VIRTIO_NET_S_ANNOUNCE
	in_ns timeout 20 python3 "$T/garp.py" vtap0 $MAC 10.77.0.2 >"$T/garp.out" 2>&1 &
	cap=$!
	wait_for 10 grep -q ready "$T/garp.out"
	announced() { jcheck "$(stats net)" "d['announces'] == 1"; }
	if qmp "$T/net.sock" announce-self '{"initial": 50, "max": 100, "rounds": 1, "step": 10}' >"$T/ann.out" 2>&1 &&
	   wait "$cap" && wait_for 10 announced; then
		pass "netecho: announce-self: $(tail -1 "$T/garp.out"), ANNOUNCE_ACK accepted (stats: 1 announcement)"
	else
		fail "netecho: announce-self: $(cat "$T/ann.out") capture: $(tail -2 "$T/garp.out" | tr '\n' ' ') stats: $(stats net)"
	fi
fi
stop_qemu net

# a patched address, the BAR above 4 GiB
"$TOOLS/guestcfg" "$G/netecho.elf" "$T/netecho-3.elf" --ip 10.77.0.3/24 >"$T/cfg.out" 2>&1 ||
	fail "guestcfg --ip: $(cat "$T/cfg.out")"
net_guest high "$T/netecho-3.elf" 52:54:00:4d:00:03 disable-legacy=on vtap0 \
	-object memory-backend-ram,id=shm,size=4G -device ivshmem-plain,memdev=shm
if ! wait_banner high "glide-guest netecho"; then
	if grep -qi "ivshmem\|memory-backend" "$T/high.out"; then
		skip "netecho with its BAR above 4 GiB: QEMU cannot add the 4 GiB ivshmem device: $(head -c 200 "$T/high.out")"
	else
		fail "netecho with --ip 10.77.0.3/24 and a 4 GiB ivshmem BAR: no banner: $(serial_tail high)"
	fi
else
	bar=$(sed -n 's/^netecho: BAR [0-9] at \(0x[0-9a-f]*\).*/\1/p' "$T/high.serial" | head -1)
	if ! grep -q "^netecho: starting: 10.77.0.3/24," "$T/high.serial"; then
		fail "netecho patched by guestcfg: $(head -1 "$T/high.serial")"
	elif [ -z "$bar" ] || [ $((bar)) -lt $((1 << 32)) ]; then
		skip "netecho with its BAR above 4 GiB: SeaBIOS placed it at ${bar:-?} (below 4 GiB), the high mapping is untested"
	elif ping_ok 10.77.0.3 5; then
		pass "netecho with --ip 10.77.0.3/24 (guestcfg) and its BAR at $bar (above 4 GiB): 5 of 5 pings answered"
	else
		fail "netecho with its BAR at $bar: ping 10.77.0.3: $(tail -2 "$T/ping.out" | tr '\n' ' ')"
	fi
fi
stop_qemu high

# a transitional device (0x1000), BARs assigned by the guest
"$TOOLS/guestcfg" "$G/netecho.elf" "$T/netecho-4.elf" --ip 10.77.0.4/24 --assign-bars yes >"$T/cfg.out" 2>&1 ||
	fail "guestcfg --assign-bars: $(cat "$T/cfg.out")"
net_guest assign "$T/netecho-4.elf" 52:54:00:4d:00:04 disable-legacy=off vtap0
if ! wait_banner assign "glide-guest netecho"; then
	fail "netecho on a transitional device, assigning BARs: no banner: $(serial_tail assign)"
elif ! grep -q "^netecho: virtio-net 1000 " "$T/assign.serial" || ! grep -q "^netecho: assigned BAR 4 of .*: 0xc" "$T/assign.serial"; then
	fail "netecho on a transitional device: $(grep -E '^netecho: (virtio-net|assigned|BAR)' "$T/assign.serial" | tr '\n' '|')"
elif ping_ok 10.77.0.4 5; then
	pass "netecho on a transitional device (0x1000, modern interface) with BARs it assigned ($(grep '^netecho: BAR' "$T/assign.serial")): 5 of 5 pings answered"
else
	fail "netecho on a transitional device: ping 10.77.0.4: $(tail -2 "$T/ping.out" | tr '\n' ' ')"
fi
stop_qemu assign

# ---- netecho migrated: QEMU to QEMU, from vtap0 to vtap1 on the bridge ----
net_guest nsrc "$G/netecho.elf" $MAC disable-legacy=on vtap0
net_guest ndst "$G/netecho.elf" $MAC disable-legacy=on vtap1 -incoming "unix:$T/ndst.mig"
if ! wait_banner nsrc "glide-guest netecho"; then
	fail "netecho migration: no banner on the source: $(serial_tail nsrc)"
elif ! ping_ok 10.77.0.2 5; then
	fail "netecho migration: ping before: $(tail -2 "$T/ping.out" | tr '\n' ' ')"
else
	in_ns timeout 40 python3 "$T/garp.py" vtap1 $MAC 10.77.0.2 >"$T/garp.out" 2>&1 &
	cap=$!
	wait_for 10 grep -q ready "$T/garp.out"
	dst_announced() { jcheck "$(stats ndst)" "d['announces'] >= 1"; }
	if ! migrate_qemu nsrc ndst; then
		fail "netecho migration: $MIG $(tail -c 300 "$T/ndst.out")"
	elif ! wait "$cap" || ! wait_for 10 dst_announced; then
		fail "netecho migration: no announcement from the destination: capture $(tail -1 "$T/garp.out"), stats $(stats ndst)"
	elif ! ping_ok 10.77.0.2 10; then
		fail "netecho migration: ping after: $(tail -2 "$T/ping.out" | tr '\n' ' ')"
	else
		# QEMU announces after an incoming migration: 5 rounds by default, each acked
		h=$(hb ndst)
		pass "netecho migrated by QEMU (downtime $(jget "$MIG" "d['return']['downtime']") ms): $(tail -1 "$T/garp.out") on the destination's tap, $(jget "$(stats ndst)" "d['announces']") announcement(s) acked, 10 of 10 pings answered after; largest heartbeat gap $(jget "$h" "'%.1f ms' % d['vcpus'][0]['max_gap_ms']")"
	fi
fi
stop_qemu ndst
stop_qemu nsrc
