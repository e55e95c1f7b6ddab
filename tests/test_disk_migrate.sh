#!/usr/bin/env bash
# virtio-blk across a live migration, a snapshot and bad input (issue 12;
# both sides see the same disk file: shared storage). The diskab guest
# writes the A-B pattern on its disk (docs/guests.md). Asserted:
#   - the guest's requests complete through glide's virtio-blk (its stats
#     record counts writes, the image is A-B clean when the VM is paused);
#   - a live migration with --verify to a destination with the same --disk:
#     the guest goes on writing there, the disk stays A-B clean, the lock
#     moved (a third VM cannot open the disk; the source exited);
#   - a destination given a disk of another size refuses the VM before
#     anything moves and the source keeps running and writing, lock held;
#   - snapshot of a paused VM, stop, restore: writing goes on, A-B clean;
#   - bad input: a missing disk, a read-only file without ,readonly, a disk
#     another VM holds: each a one-line error, no VM started.
# run.sh timeout: 240
. "$(dirname "$0")/lib.sh"
have_kvm || { skip "disk migration: /dev/kvm not accessible"; exit 0; }
ELF="$GLIDE_BUILD/guests/diskab.elf"
ABCHECK="$GLIDE_BUILD/tools/abcheck"
[ -e "$ELF" ] && [ -x "$ABCHECK" ] || { fail "disk migration: $ELF or $ABCHECK missing (run make)"; exit 0; }

DISK="$T/disk.img"
truncate -s 16M "$DISK"
umask 077
openssl rand -hex 32 >"$T/key"
umask 022


start_vm src --memory 64M --elf "$ELF" --disk "$DISK" --serial "$T/src.serial" ||
	{ fail "diskab did not start: $(cat "$T/src.out")"; exit 0; }
if wait_for 30 diskab_writes_beyond "$T/src.sock" 2000; then
	pass "diskab writes through glide's virtio-blk: $(diskab_stat "$T/src.sock" writes) writes, $(diskab_stat "$T/src.sock" flushes) flushes ($(grep -m1 '^diskab: ' "$T/src.serial"))"
else
	fail "diskab makes no progress: $(head -c 400 "$T/src.serial" | tr '\n' '|') $(tail -2 "$T/src.log")"
	exit 0
fi
abcheck_disk_paused "$T/src.sock" "$DISK" "diskab on the source, paused"

# bad input, while the disk is in use
"$GLIDE" vm run --memory 64M --elf "$ELF" --api "$T/x.sock" --disk "$DISK" >"$T/x.out" 2>&1
if [ $? != 0 ] && grep -q "in use by another VM" "$T/x.out" && [ "$(wc -l <"$T/x.out")" = 1 ]; then
	pass "a second VM on the same writable disk: '$(cat "$T/x.out")'"
else
	fail "a second VM on the same disk: $(head -c 300 "$T/x.out")"
fi
"$GLIDE" vm run --memory 64M --elf "$ELF" --api "$T/x.sock" --disk "$T/none.img" >"$T/x.out" 2>&1
if [ $? != 0 ] && grep -q "none.img" "$T/x.out" && [ "$(wc -l <"$T/x.out")" = 1 ]; then
	pass "a missing disk: '$(cat "$T/x.out")'"
else
	fail "a missing disk: $(head -c 300 "$T/x.out")"
fi
truncate -s 1M "$T/ro.img"
chmod 0444 "$T/ro.img"
if [ "$(id -u)" = 0 ]; then
	chattr +i "$T/ro.img" 2>/dev/null && ro_set=1
fi
if [ "$(id -u)" != 0 ] || [ -n "${ro_set:-}" ]; then
	"$GLIDE" vm run --memory 64M --elf "$ELF" --api "$T/x.sock" --disk "$T/ro.img" >"$T/x.out" 2>&1
	if [ $? != 0 ] && grep -q "readonly" "$T/x.out"; then
		pass "a read-only disk file without ,readonly: '$(cat "$T/x.out")'"
	else
		fail "a read-only disk file without ,readonly: $(head -c 300 "$T/x.out")"
	fi
	[ -n "${ro_set:-}" ] && chattr -i "$T/ro.img"
else
	skip "a read-only disk file: root ignores file modes and chattr +i is not available here"
fi

# a destination with a disk of another size refuses the VM; the source goes on
truncate -s 8M "$T/small.img"
port=$((29000 + RANDOM % 1000))
start_vm bad --incoming 127.0.0.1:$port --key-file "$T/key" --disk "$T/small.img"
"$GLIDE" migrate --api "$T/src.sock" --to 127.0.0.1:$port --key-file "$T/key" --json >"$T/bad.json" 2>"$T/bad.err"
before=$(diskab_stat "$T/src.sock" writes)
if [ "$(json_get "$T/bad.json" status)" = failed ] && grep -q "disk 0: the VM's disk has 16777216 bytes" "$T/bad.json" &&
	wait_for 10 diskab_writes_beyond "$T/src.sock" "$before"; then
	pass "a destination with an 8 MiB disk refuses the 16 MiB one before anything moves; the source writes on"
else
	fail "disk size mismatch: $(head -c 400 "$T/bad.json") $(cat "$T/bad.err")"
fi

# the live migration
port=$((port + 1))
start_vm dst --incoming 127.0.0.1:$port --key-file "$T/key" --disk "$DISK"
"$GLIDE" migrate --api "$T/src.sock" --to 127.0.0.1:$port --key-file "$T/key" --verify --json >"$T/mig.json" 2>"$T/mig.err"
if [ "$(json_get "$T/mig.json" status)" = completed ] && [ "$(json_get "$T/mig.json" verified)" = True ]; then
	pass "diskab migrated with its disk open on both sides: stun $(json_get "$T/mig.json" stun_ms) ms, memory verified"
else
	fail "diskab migration: $(head -c 400 "$T/mig.json") $(cat "$T/mig.err")"
	exit 0
fi
w=$(diskab_stat "$T/dst.sock" writes)
if wait_for 20 diskab_writes_beyond "$T/dst.sock" "$((w + 1000))"; then
	pass "diskab goes on writing on the destination ($w -> $(diskab_stat "$T/dst.sock" writes) writes)"
else
	fail "diskab stopped writing after the migration: $(diskab_stat "$T/dst.sock" writes) writes; $(tail -3 "$T/dst.log")"
fi
abcheck_disk_paused "$T/dst.sock" "$DISK" "after the migration"
if wait_for 10 exited "$PID_src"; then pass "the source monitor exited after the migration"
else fail "the source monitor still runs after the migration"; fi
"$GLIDE" vm run --memory 64M --elf "$ELF" --api "$T/y.sock" --disk "$DISK" >"$T/y.out" 2>&1
if grep -q "in use by another VM" "$T/y.out"; then pass "the destination holds the disk's lock now"
else fail "the disk's lock did not move to the destination: $(head -c 300 "$T/y.out")"; fi

# snapshot of the paused VM, stop, restore: the disk is where the snapshot left it
"$GLIDE" vm pause --api "$T/dst.sock" >/dev/null
"$GLIDE" vm snapshot --api "$T/dst.sock" --to "$T/snap.bin" >"$T/snap.out" 2>&1 || fail "snapshot: $(cat "$T/snap.out")"
kill "$PID_dst"
wait_for 10 exited "$PID_dst"
w=$(diskab_stat "$T/dst.sock" writes 2>/dev/null)
start_vm rst --restore "$T/snap.bin" --disk "$DISK" || { fail "restore: $(cat "$T/rst.out")"; exit 0; }
w=$(diskab_stat "$T/rst.sock" writes)
if wait_for 20 diskab_writes_beyond "$T/rst.sock" "$((w + 1000))"; then
	pass "restored from a snapshot, diskab goes on writing ($w -> $(diskab_stat "$T/rst.sock" writes) writes)"
else
	fail "after restore: $(diskab_stat "$T/rst.sock" writes) writes; $(tail -3 "$T/rst.log")"
fi
abcheck_disk_paused "$T/rst.sock" "$DISK" "after snapshot and restore"
