#!/usr/bin/env bash
# Shared-nothing live migration: the disk travels with the VM
# (`glide migrate --disk-to PATH`, the "disk" live section,
# src/migrate/disk.c; issue 13). The source's disk and the destination's
# copy are different files. Asserted:
#   - diskab (4 writes in flight) migrates with its disk from one host
#     namespace to another (two network namespaces made here, joined by a
#     veth pair; over loopback without root): the copy on the destination
#     is A-B clean, the guest goes on writing there, memory verified, guest
#     writes were mirrored; the source monitor exits, its file no longer
#     changes and its lock is released;
#   - a sparse 10 GiB disk with 100 MiB written: only the written data
#     travels (blocks sent reported), the copy equals the source byte for
#     byte and stays sparse;
#   - a migration cancelled in the middle of the copy: the source runs on,
#     its disk A-B clean, and the destination removes its partial copy;
#   - --verify hashes each copy on both sides while the VM is stunned: a
#     copy with one byte changed (a test fault on the destination) is
#     refused before GO, the source runs on, the copy is removed; the move
#     itself reports the copy verified;
#   - a destination file that exists already: refused before anything
#     moves, the file untouched; a destination given --disk for a disk that
#     arrives as a copy, one started without --disk-dir, a path outside its
#     --disk-dir: refused, no file made; disk_to for a disk the VM lacks: 400.
# run.sh timeout: 240
. "$(dirname "$0")/lib.sh"
have_kvm || { skip "disk copy: /dev/kvm not accessible"; exit 0; }
ELF="$GLIDE_BUILD/guests/diskab.elf"
AB="$GLIDE_BUILD/guests/ab.img"
ABCHECK="$GLIDE_BUILD/tools/abcheck"
[ -e "$ELF" ] && [ -e "$AB" ] && [ -x "$ABCHECK" ] || { fail "disk copy: guests or abcheck missing (run make)"; exit 0; }
"$GLIDE_BUILD/tools/guestcfg" "$ELF" "$T/dq.elf" --queue-depth 4 >/dev/null || { fail "guestcfg"; exit 0; }
(umask 077; openssl rand -hex 32 >"$T/key")
mkdir -p "$T/dd" # the destinations' --disk-dir

port=$(port_base)

# host A and host B: the source and the monitors of the refusals run in A,
# the destination of the move in B, reached over a veth pair
NS="gldc$$" B_ADDR=127.0.0.1 NSA="" NSB=""
dc_cleanup() {
	cleanup
	[ -n "$NSA" ] && ip netns del "$NSA" 2>/dev/null
	[ -n "$NSB" ] && ip netns del "$NSB" 2>/dev/null
}
trap dc_cleanup EXIT
if [ "$(id -u)" = 0 ] && command -v ip >/dev/null && ip netns add "${NS}a" 2>/dev/null; then
	NSA="${NS}a"
	if ip netns add "${NS}b" && NSB="${NS}b" && ip link add "${NS}x" type veth peer name "${NS}y" &&
		ip link set "${NS}x" netns "$NSA" && ip link set "${NS}y" netns "$NSB" &&
		ip -n "$NSA" link set lo up && ip -n "$NSB" link set lo up &&
		ip -n "$NSA" addr add 10.203.7.1/24 dev "${NS}x" && ip -n "$NSB" addr add 10.203.7.2/24 dev "${NS}y" &&
		ip -n "$NSA" link set "${NS}x" up && ip -n "$NSB" link set "${NS}y" up; then
		B_ADDR=10.203.7.2
	else
		fail "disk copy: cannot join two network namespaces with a veth pair"; exit 0
	fi
else
	skip "disk copy between two host namespaces: needs root and ip netns (the move runs over loopback)"
fi

# 1. diskab with its disk
SRC="$T/src.img" DST="$T/dd/dst.img"
truncate -s 32M "$SRC"
export VM_NETNS="$NSA" # case 1's monitors run in host A (its own loopback), but for the move's destination
start_vm src --memory 64M --elf "$T/dq.elf" --disk "$SRC" || { fail "diskab did not start: $(cat "$T/src.out")"; exit 0; }
wait_for 30 diskab_writes_beyond "$T/src.sock" 20000 || { fail "diskab makes no progress: $(tail -3 "$T/src.log")"; exit 0; }

# bad input first, while the source runs
"$GLIDE" migrate --api "$T/src.sock" --to 127.0.0.1:1 --key-file "$T/key" --disk-to "$DST" --disk-to "$T/x.img" \
	>"$T/bad1.out" 2>&1
if [ $? != 0 ] && grep -q "names disk 1; the VM has 1 disk" "$T/bad1.out"; then
	pass "--disk-to for a disk the VM lacks: '$(head -1 "$T/bad1.out")'"
else
	fail "--disk-to for a missing disk: $(head -c 300 "$T/bad1.out")"
fi
port=$((port + 1))
echo "precious" >"$T/dd/exists.img"
start_vm ex --incoming 127.0.0.1:$port --key-file "$T/key" --disk-dir "$T/dd"
"$GLIDE" migrate --api "$T/src.sock" --to 127.0.0.1:$port --key-file "$T/key" --disk-to "$T/dd/exists.img" --json \
	>"$T/ex.json" 2>"$T/ex.err"
if [ "$(json_get "$T/ex.json" status)" = failed ] && grep -q "never overwrites a file" "$T/ex.json" &&
	[ "$(cat "$T/dd/exists.img")" = precious ] && [ "$("$GLIDE" vm status --api "$T/src.sock" --json | json_get /dev/stdin state)" = running ]; then
	pass "a destination file that exists is refused before anything moves, and left as it was: $(json_get "$T/ex.json" error | cut -c1-160)"
else
	fail "an existing destination file: $(head -c 400 "$T/ex.json") $(cat "$T/dd/exists.img")"
fi
for case in "no --disk-dir" "outside --disk-dir"; do
	port=$((port + 1))
	if [ "$case" = "no --disk-dir" ]; then
		start_vm nd --incoming 127.0.0.1:$port --key-file "$T/key"
		to="$T/dd/nd.img" want="takes no disk copies"
	else
		start_vm nd --incoming 127.0.0.1:$port --key-file "$T/key" --disk-dir "$T/dd"
		to="$T/outside.img" want="is not inside this destination's --disk-dir"
	fi
	"$GLIDE" migrate --api "$T/src.sock" --to 127.0.0.1:$port --key-file "$T/key" --disk-to "$to" --json \
		>"$T/nd.json" 2>"$T/nd.err"
	if [ "$(json_get "$T/nd.json" status)" = failed ] && grep -q "$want" "$T/nd.json" && [ ! -e "$to" ]; then
		pass "a copy to a destination with $case is refused, no file made: $(json_get "$T/nd.json" error | cut -c1-140)"
	else
		fail "a copy to a destination with $case: $(head -c 400 "$T/nd.json"); $(ls -l "$to" 2>&1)"
	fi
	wait_for 10 exited "$PID_nd"
done
port=$((port + 1))
truncate -s 32M "$T/other.img"
start_vm dd --incoming 127.0.0.1:$port --key-file "$T/key" --disk-dir "$T/dd" --disk "$T/other.img"
"$GLIDE" migrate --api "$T/src.sock" --to 127.0.0.1:$port --key-file "$T/key" --disk-to "$DST" --json \
	>"$T/dd.json" 2>"$T/dd.err"
if [ "$(json_get "$T/dd.json" status)" = failed ] && grep -q "was started with --disk" "$T/dd.json" && [ ! -e "$DST" ]; then
	pass "a destination started with --disk for a disk that arrives as a copy refuses it; no file is left"
else
	fail "--disk on the destination of a copied disk: $(head -c 400 "$T/dd.json"); $(ls -l "$DST" 2>&1)"
fi

# a cancelled copy: capped at 4 MiB/s, the 32 MiB disk takes ~8 s; cancel after 2 s
port=$((port + 1))
start_vm cx --incoming 127.0.0.1:$port --key-file "$T/key" --disk-dir "$T/dd"
"$GLIDE" migrate --api "$T/src.sock" --to 127.0.0.1:$port --key-file "$T/key" --disk-to "$T/dd/cx.img" \
	--max-bandwidth 4M --no-wait >/dev/null 2>&1
wait_for 10 test -e "$T/dd/cx.img"
sleep 2
curl -s --unix-socket "$T/src.sock" -X POST http://vm/v1/migration/cancel >/dev/null
wait_for 20 bash -c "curl -s --unix-socket '$T/src.sock' http://vm/v1/migration | grep -q '\"status\": *\"cancelled\"'"
if wait_for 20 bash -c "[ ! -e '$T/dd/cx.img' ]" && wait_for 10 exited "$PID_cx"; then
	pass "a migration cancelled during the disk copy: the destination removed its partial copy and exited"
else
	fail "cancelled copy: $(ls -l "$T/dd/cx.img" 2>&1); $(tail -3 "$T/cx.log")"
fi
w=$(diskab_stat "$T/src.sock" writes)
if wait_for 20 diskab_writes_beyond "$T/src.sock" "$((w + 1000))"; then
	pass "after the cancelled copy the source goes on writing ($w -> $(diskab_stat "$T/src.sock" writes) writes)"
else
	fail "the source stopped writing after the cancelled copy: $(tail -3 "$T/src.log")"
fi
abcheck_disk_paused "$T/src.sock" "$SRC" "the source after the cancelled copy"

# --verify compares a digest of each copy with the source's disk: a copy with one byte wrong is refused
port=$((port + 1))
GLIDE_TEST_FAULT=corrupt-disk-before-verify start_vm cv --incoming 127.0.0.1:$port --key-file "$T/key" --disk-dir "$T/dd"
"$GLIDE" migrate --api "$T/src.sock" --to 127.0.0.1:$port --key-file "$T/key" --disk-to "$T/dd/cv.img" --verify --json \
	>"$T/cv.json" 2>"$T/cv.err"
if [ "$(json_get "$T/cv.json" status)" = failed ] && grep -q "disk 0's copy on the destination differs" "$T/cv.json" &&
	[ "$(json_get "$T/cv.json" source_resumed)" = True ] && wait_for 20 bash -c "[ ! -e '$T/dd/cv.img' ]"; then
	pass "--verify: a copy with one byte changed on the destination is refused before GO ($(json_get "$T/cv.json" error | cut -c1-110)); the source runs on, the copy is removed"
else
	fail "--verify with a corrupted copy: $(head -c 500 "$T/cv.json") $(cat "$T/cv.err"); $(ls -l "$T/dd/cv.img" 2>&1)"
fi
wait_for 10 exited "$PID_cv"

# the move
port=$((port + 1))
VM_NETNS="$NSB" start_vm dst --incoming $B_ADDR:$port --key-file "$T/key" --disk-dir "$T/dd"
"$GLIDE" migrate --api "$T/src.sock" --to $B_ADDR:$port --key-file "$T/key" --disk-to "$DST" --verify --json \
	>"$T/mig.json" 2>"$T/mig.err"
if [ "$(json_get "$T/mig.json" status)" = completed ] && [ "$(json_get "$T/mig.json" verified)" = True ] &&
	[ "$(json_get "$T/mig.json" verify.disks_verified)" = True ]; then
	pass "diskab migrated with its disk copied$([ -n "$NSB" ] && echo " from host namespace A to B ($B_ADDR)"): stun $(json_get "$T/mig.json" stun_ms) ms, total $(json_get "$T/mig.json" total_ms) ms, $(json_get "$T/mig.json" disk_copy.blocks_sent) blocks of 4 KiB sent, memory and the copy verified (disk digest $(json_get "$T/mig.json" verify.disks.0.digest), hashed in $(json_get "$T/mig.json" verify.disks_source_ms | cut -c1-5) ms while stunned)"
else
	fail "the migration with --disk-to: $(head -c 400 "$T/mig.json") $(cat "$T/mig.err")"
	exit 0
fi
if [ "$(json_get "$T/mig.json" disk_copy.mirrored_writes)" -gt 0 ]; then
	pass "guest writes behind the copy were mirrored and waited for: $(json_get "$T/mig.json" disk_copy.mirrored_writes) writes, $(json_get "$T/mig.json" disk_copy.mirrored_blocks) blocks"
else
	fail "no guest write was mirrored during the copy: $(json_get "$T/mig.json" disk_copy)"
fi
unset VM_NETNS
w=$(diskab_stat "$T/dst.sock" writes)
if wait_for 20 diskab_writes_beyond "$T/dst.sock" "$((w + 2000))"; then
	pass "diskab goes on writing on the destination's copy ($w -> $(diskab_stat "$T/dst.sock" writes) writes)"
else
	fail "diskab stopped writing after the move: $(tail -3 "$T/dst.log")"
fi
abcheck_disk_paused "$T/dst.sock" "$DST" "the destination's copy"
if wait_for 10 exited "$PID_src"; then pass "the source monitor exited after the move"
else fail "the source monitor still runs after the move"; fi
h1=$(sha256sum <"$SRC"); sleep 1; h2=$(sha256sum <"$SRC")
if [ "$h1" = "$h2" ] && "$ABCHECK" --disk "$SRC" >"$T/ab_src.out" 2>&1 &&
	"$GLIDE" vm run --memory 64M --elf "$T/dq.elf" --disk "$SRC" --api "$T/y.sock" >"$T/y.out" 2>&1 &
then
	PIDS+=($!)
	if wait_for 10 "$GLIDE" vm status --api "$T/y.sock"; then
		pass "the source's file is no longer written, is A-B clean as the switchover left it, and its lock is free"
	else
		fail "the source's disk is still locked: $(cat "$T/y.out")"
	fi
	"$GLIDE" vm shutdown --api "$T/y.sock" >/dev/null 2>&1
else
	fail "the source's file after the move: changed $([ "$h1" = "$h2" ] || echo yes) $(tail -2 "$T/ab_src.out")"
fi
"$GLIDE" vm shutdown --api "$T/dst.sock" >/dev/null 2>&1

# 2. a sparse 10 GiB disk with 100 MiB written, on a VM that does not touch it
SP="$T/sparse.img" SPC="$T/dd/sparse-copy.img"
truncate -s 10G "$SP"
head -c 60M /dev/urandom | dd of="$SP" bs=1M seek=100 conv=notrunc status=none
head -c 40M /dev/urandom | dd of="$SP" bs=1M seek=9000 conv=notrunc status=none
start_vm sp --memory 64M --boot "$AB" --disk "$SP" || { fail "the sparse-disk VM did not start: $(cat "$T/sp.out")"; exit 0; }
port=$((port + 1))
start_vm spd --incoming 127.0.0.1:$port --key-file "$T/key" --disk-dir "$T/dd"
"$GLIDE" migrate --api "$T/sp.sock" --to 127.0.0.1:$port --key-file "$T/key" --disk-to "$SPC" --json \
	>"$T/sp.json" 2>"$T/sp.err"
blocks=$(json_get "$T/sp.json" disk_copy.blocks_sent 2>/dev/null)
used=$(du -k "$SPC" 2>/dev/null | cut -f1)
python3 "$TESTS_DIR/sparse_same.py" "$SP" "$SPC" >"$T/same.out" 2>&1; same=$?
if [ "$(json_get "$T/sp.json" status)" = completed ] && [ $same = 0 ] && [ "${blocks:-0}" -ge 25600 ] &&
	[ "$blocks" -le 26000 ] && [ "${used:-999999}" -le 110000 ]; then
	pass "a sparse 10 GiB disk with 100 MiB written: $blocks blocks of 4 KiB sent ($((blocks * 4 / 1024)) MiB), the copy equals the source ($(cat "$T/same.out")) and uses $((used / 1024)) MiB on disk"
else
	fail "sparse disk: status $(json_get "$T/sp.json" status) $(json_get "$T/sp.json" error 2>/dev/null), blocks $blocks, copy uses ${used} KiB, $(cat "$T/same.out")"
fi
"$GLIDE" vm shutdown --api "$T/spd.sock" >/dev/null 2>&1
