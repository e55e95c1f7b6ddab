#!/usr/bin/env bash
# A VM's state through the monitor's snapshot path: a snapshot is restored
# by `glide vm run --restore` into a new process and snapshotted again, and
# `glide state diff` must find both states equal (clocks only grow). Done for
# a VM with every part of its state changed first (written by
# unit_state_roundtrip --write-snapshot) and for a running test guest. The
# diff itself must see a one-field change, and bad files are errors.
. "$(dirname "$0")/lib.sh"
have_kvm || { skip "snapshot state: /dev/kvm not accessible"; exit 0; }
ROUNDTRIP="$GLIDE_BUILD/tests/unit_state_roundtrip"
[ -x "$ROUNDTRIP" ] || { fail "snapshot state: $ROUNDTRIP missing (run make)"; exit 0; }

# through_monitor NAME SNAP OUT: restores SNAP paused in a new monitor, snapshots it to OUT, stops it
through_monitor() {
	local name="$1" snap="$2" out="$3"
	start_vm "$name" --restore "$snap" --paused || { echo "monitor did not start: $(tail -1 "$T/$name.out")"; return 1; }
	[ "$(vm_state "$name")" = paused ] || { echo "restored VM is $(vm_state "$name"), not paused"; return 1; }
	"$GLIDE" vm snapshot --api "$T/$name.sock" --to "$out" >"$T/$name.snap.out" 2>&1 || { cat "$T/$name.snap.out"; return 1; }
	"$GLIDE" vm shutdown --api "$T/$name.sock" >/dev/null
	local pid_var="PID_$name"
	wait_for 10 bash -c "! kill -0 ${!pid_var} 2>/dev/null"
}

# state_diff NAME A B: PASS when glide state diff finds A and B equal
state_diff() {
	local name="$1"
	"$GLIDE" state diff "$2" "$3" >"$T/diff.out" 2>&1
	local rc=$?
	if [ $rc = 0 ]; then pass "$name"; else fail "$name: exit $rc: $(head -c 1500 "$T/diff.out" | tr '\n' ';')"; fi
}

# 1. every part of the state changed (unit_state_roundtrip's plan), through the monitor
if "$ROUNDTRIP" --write-snapshot "$T/changed.snap" >"$T/write.out" 2>&1; then
	pass "snapshot state: a VM with every part of its state changed written as a snapshot"
else
	fail "snapshot state: writing the changed VM's snapshot: $(cat "$T/write.out")"; exit 0
fi
"$GLIDE" state dump "$T/changed.snap" >"$T/changed.dump" 2>&1
missing=""
for line in "vcpu[0].msr.0x2ff = 0x0000000000000c06" "vcpu[0].msr.0x277 = 0x0407050600070106" \
	"vcpu[1].sregs2.apic_base = 0x00000000fee00c00" "vcpu[0].lapic.lvt_timer = 0x000400ef" \
	"vcpu[1].lapic.timer_initial_count = 0x12345678" "vcpu[0].mp_state = 0x00000003" \
	"vcpu[0].debugregs.dr7 = 0x00000000000d0601" "irqchip.pic_master.irq_base = 0x20" "irqchip.ioapic.id = 0x00000007" \
	"pit.channel0.count = 0x00002e9c" "uart.dll = 0x03" "uart.scr = 0x5a" "uart.lcr = 0x1b"; do
	grep -qxF "$line" "$T/changed.dump" || missing="$missing [$line]"
done
if [ -z "$missing" ]; then pass "snapshot state: glide state dump shows the changed values ($(wc -l <"$T/changed.dump") lines)"
else fail "snapshot state: glide state dump lacks:$missing"; fi
if through_monitor changed "$T/changed.snap" "$T/changed-after.snap" >"$T/tm.out" 2>&1; then
	state_diff "snapshot state: changed VM restored by glide vm run --restore and snapshotted again: same state" \
		"$T/changed.snap" "$T/changed-after.snap"
	"$GLIDE" state diff --verbose "$T/changed.snap" "$T/changed-after.snap" >"$T/verbose.out" 2>&1
	if grep -q "^advanced clock.kvmclock_ns" "$T/verbose.out" && grep -q "^advanced vcpu\[0\].msr.0x10 " "$T/verbose.out"; then
		pass "snapshot state: kvmclock and the TSC moved forward across the restore"
	else
		fail "snapshot state: kvmclock or the TSC did not move forward: $(grep -E 'clock|0x10 ' "$T/verbose.out" | tr '\n' ';')"
	fi
else
	fail "snapshot state: changed VM through the monitor: $(cat "$T/tm.out")"
fi

# 2. the diff sees a single changed field (the UART scratch register, with the section's CRC redone)
python3 - "$T/changed.snap" "$T/patched.snap" <<'EOF'
import struct, sys, zlib
data = bytearray(open(sys.argv[1], "rb").read())
off = 24
while off < len(data):
	name = data[off:off + 16].rstrip(b"\0").decode()
	length = struct.unpack_from("<Q", data, off + 24)[0]
	if name == "uart":
		payload = off + 44
		data[payload + 7] ^= 0x01  # scr: 0x5a -> 0x5b
		struct.pack_into("<I", data, off + 32, zlib.crc32(bytes(data[payload:payload + length])))
		struct.pack_into("<I", data, off + 40, zlib.crc32(bytes(data[off:off + 40])))
	off += 44 + length
open(sys.argv[2], "wb").write(data)
EOF
"$GLIDE" state diff "$T/changed.snap" "$T/patched.snap" >"$T/diff.out" 2>&1
rc=$?
if [ $rc = 1 ] && grep -qxF "uart.scr: 0x5a -> 0x5b" "$T/diff.out" && grep -qx "1 difference" "$T/diff.out"; then
	pass "snapshot state: glide state diff reports a one-field change (uart.scr: 0x5a -> 0x5b), exit 1"
else
	fail "snapshot state: one-field change: exit $rc: $(tr '\n' ';' <"$T/diff.out")"
fi

# 3. a running test guest: snapshot, restore in a new process, snapshot again
G="$GLIDE_BUILD/guests"
if start_vm hb --memory 64M --vcpus 2 --boot "$G/heartbeat.img"; then
	sleep 0.5
	"$GLIDE" vm snapshot --api "$T/hb.sock" --to "$T/hb.snap" >/dev/null
	"$GLIDE" vm shutdown --api "$T/hb.sock" >/dev/null
	wait_for 10 bash -c "! kill -0 $PID_hb 2>/dev/null"
	if through_monitor hb2 "$T/hb.snap" "$T/hb-after.snap" >"$T/tm.out" 2>&1; then
		state_diff "snapshot state: running heartbeat guest (2 vCPUs) restored and snapshotted again: same state" \
			"$T/hb.snap" "$T/hb-after.snap"
	else
		fail "snapshot state: heartbeat guest through the monitor: $(cat "$T/tm.out")"
	fi
else
	fail "snapshot state: heartbeat guest did not start: $(cat "$T/hb.out")"
fi

# 4. bad input: a corrupted file and a file that is no state are errors (exit 2), not differences
cp "$T/changed.snap" "$T/corrupt.snap"
python3 -c 'import sys; f=open(sys.argv[1],"r+b"); f.seek(300); b=f.read(1); f.seek(300); f.write(bytes([b[0]^0x10]))' "$T/corrupt.snap"
"$GLIDE" state diff "$T/changed.snap" "$T/corrupt.snap" >"$T/diff.out" 2>&1
rc=$?
if [ $rc = 2 ] && grep -q "checksum" "$T/diff.out"; then pass "snapshot state: a corrupted snapshot is an error: $(head -1 "$T/diff.out")"
else fail "snapshot state: corrupted snapshot: exit $rc: $(head -3 "$T/diff.out")"; fi
"$GLIDE" state dump "$G/heartbeat.img" >"$T/dump.out" 2>&1
rc=$?
if [ $rc = 2 ] && grep -q "not a glide state" "$T/dump.out"; then pass "snapshot state: dumping a file that is no state is an error: $(head -1 "$T/dump.out")"
else fail "snapshot state: dump of a boot image: exit $rc: $(head -3 "$T/dump.out")"; fi
