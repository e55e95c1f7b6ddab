#!/usr/bin/env bash
# virtio-blk with many requests in flight, for each I/O engine (io_uring,
# threads, sync: src/devices/blk_io.h), across pauses, a live migration and
# a snapshot (issue 12: "a migration or snapshot never loses or duplicates
# an in-flight request"). diskab keeps 16 writes in flight (guestcfg
# --queue-depth 16). Pausing completes every request in flight first, so:
#   - the disk of a paused VM is A-B clean (a request left unfinished, or
#     finished after the pause, leaves a hole or a second step);
#   - the device really had several requests in flight (in_flight_max > 1
#     for the asynchronous engines, in `vm status --json`);
#   - a migration from one engine to another (io_uring -> threads -> sync ->
#     io_uring) moves the VM with nothing in flight: the guest goes on
#     writing on the destination (a lost completion would leave it waiting
#     forever), the disk stays A-B clean;
#   - the same from a source whose requests take 3 ms each (the thread
#     pool with GLIDE_TEST_BLK_DELAY_US: requests are surely in flight when
#     the VM pauses; without the drain the destination never completes them);
#   - a snapshot taken of a VM that was writing, restored with another
#     engine, goes on writing, A-B clean;
#   - aio= with an unknown engine is a one-line error.
# run.sh timeout: 240
. "$(dirname "$0")/lib.sh"
have_kvm || { skip "disk requests in flight: /dev/kvm not accessible"; exit 0; }
ELF="$GLIDE_BUILD/guests/diskab.elf"
ABCHECK="$GLIDE_BUILD/tools/abcheck"
[ -e "$ELF" ] && [ -x "$ABCHECK" ] || { fail "disk requests in flight: $ELF or $ABCHECK missing (run make)"; exit 0; }
"$GLIDE_BUILD/tools/guestcfg" "$ELF" "$T/dq.elf" --queue-depth 16 --flush-every 64 >/dev/null ||
	{ fail "guestcfg --queue-depth 16"; exit 0; }

DISK="$T/disk.img"
truncate -s 16M "$DISK"
(umask 077; openssl rand -hex 32 >"$T/key")

disk_field() { # SOCK FIELD: disk 0's entry in vm status --json
	"$GLIDE" vm status --api "$1" --json | python3 -c 'import json,sys; d=json.load(sys.stdin)
print(d["disks"][0][sys.argv[1]])' "$2"
}
progress() { # SOCK LABEL: the guest goes on writing
	local w; w=$(diskab_stat "$1" writes)
	if wait_for 20 diskab_writes_beyond "$1" "$((w + 2000))"; then pass "$2: diskab goes on writing ($w -> $(diskab_stat "$1" writes) writes)"
	else fail "$2: diskab stopped writing at $(diskab_stat "$1" writes) writes; $(tail -3 "$T/$(basename "$1" .sock).log")"; fi
}

"$GLIDE" vm run --memory 64M --elf "$T/dq.elf" --api "$T/x.sock" --disk "$DISK,aio=posix" >"$T/x.out" 2>&1
if [ $? != 0 ] && grep -q "aio must be sync, threads or io_uring" "$T/x.out" && [ "$(wc -l <"$T/x.out")" = 1 ]; then
	pass "an unknown I/O engine: '$(cat "$T/x.out")'"
else
	fail "an unknown I/O engine: $(head -c 300 "$T/x.out")"
fi

start_vm v0 --memory 64M --elf "$T/dq.elf" --disk "$DISK,aio=io_uring" --serial "$T/v0.serial" ||
	{ fail "diskab did not start: $(cat "$T/v0.out")"; exit 0; }
wait_for 30 diskab_writes_beyond "$T/v0.sock" 5000 || { fail "diskab makes no progress: $(tail -3 "$T/v0.serial" "$T/v0.log")"; exit 0; }
engine=$(disk_field "$T/v0.sock" aio)
if [ "$engine" = io_uring ]; then
	skip_uring=""
else # a kernel without io_uring (or one that refuses it): the thread pool took over, as designed
	skip "io_uring: this kernel refused it, the disk uses '$engine' (the monitor's log: $(grep -m1 io_uring "$T/v0.log"))"
	skip_uring=1
fi
for i in 1 2 3; do abcheck_disk_paused "$T/v0.sock" "$DISK" "$engine, 16 in flight, pause $i"; done

cur=v0 port=$((31000 + RANDOM % 1000)) n=0
for next in threads sync io_uring; do
	n=$((n + 1)) port=$((port + 1))
	from=$(disk_field "$T/$cur.sock" aio)
	inflight=$(disk_field "$T/$cur.sock" in_flight_max)
	if [ "$from" = sync ] || [ "$inflight" -gt 1 ]; then
		pass "$from: up to $inflight requests were in flight at once"
	else
		fail "$from: only $inflight request in flight at once (diskab keeps 16 going)"
	fi
	start_vm "v$n" --incoming 127.0.0.1:$port --key-file "$T/key" --disk "$DISK,aio=$next"
	"$GLIDE" migrate --api "$T/$cur.sock" --to 127.0.0.1:$port --key-file "$T/key" --verify --json \
		>"$T/mig$n.json" 2>"$T/mig$n.err"
	if [ "$(json_get "$T/mig$n.json" status)" = completed ] && [ "$(json_get "$T/mig$n.json" verified)" = True ]; then
		pass "migrated $from -> $next with 16 writes in flight: stun $(json_get "$T/mig$n.json" stun_ms) ms, memory verified"
	else
		fail "migration $from -> $next: $(head -c 400 "$T/mig$n.json") $(cat "$T/mig$n.err")"
		exit 0
	fi
	cur="v$n"
	progress "$T/$cur.sock" "on the destination ($next)"
	abcheck_disk_paused "$T/$cur.sock" "$DISK" "after the migration $from -> $next"
done

# slow requests: 16 in flight, each 3 ms, when the migration pauses the VM
n=$((n + 1)) port=$((port + 1))
"$GLIDE" vm shutdown --api "$T/$cur.sock" >/dev/null 2>&1
wait_for 10 exited "$(eval echo "\$PID_$cur")"
truncate -s 0 "$DISK" && truncate -s 16M "$DISK"
GLIDE_TEST_BLK_DELAY_US=3000 start_vm slow --memory 64M --elf "$T/dq.elf" --disk "$DISK,aio=threads" ||
	{ fail "the slow-disk VM did not start: $(cat "$T/slow.out")"; exit 0; }
wait_for 30 diskab_writes_beyond "$T/slow.sock" 2000 || { fail "slow disk: no progress: $(tail -3 "$T/slow.log")"; exit 0; }
start_vm "v$n" --incoming 127.0.0.1:$port --key-file "$T/key" --disk "$DISK,aio=io_uring"
"$GLIDE" migrate --api "$T/slow.sock" --to 127.0.0.1:$port --key-file "$T/key" --json >"$T/slow.json" 2>"$T/slow.err"
if [ "$(json_get "$T/slow.json" status)" = completed ]; then
	pass "migrated from a disk whose requests take 3 ms each, 16 in flight: stun $(json_get "$T/slow.json" stun_ms) ms (the drain waited for them)"
else
	fail "migration from the slow disk: $(head -c 400 "$T/slow.json") $(cat "$T/slow.err")"
	exit 0
fi
cur="v$n"
progress "$T/$cur.sock" "after the slow disk's migration"
abcheck_disk_paused "$T/$cur.sock" "$DISK" "after the slow disk's migration"

# a snapshot of a VM that was writing, restored with the thread pool
"$GLIDE" vm pause --api "$T/$cur.sock" >/dev/null
"$GLIDE" vm snapshot --api "$T/$cur.sock" --to "$T/snap.bin" >"$T/snap.out" 2>&1 || fail "snapshot: $(cat "$T/snap.out")"
"$GLIDE" vm shutdown --api "$T/$cur.sock" >/dev/null 2>&1
wait_for 10 exited "$(eval echo "\$PID_$cur")"
start_vm rst --restore "$T/snap.bin" --disk "$DISK,aio=threads" || { fail "restore: $(cat "$T/rst.out")"; exit 0; }
progress "$T/rst.sock" "restored from a snapshot taken mid-writing (threads)"
abcheck_disk_paused "$T/rst.sock" "$DISK" "after snapshot and restore"
if [ -n "$skip_uring" ]; then skip "io_uring engine: not exercised (the kernel refused it; threads stood in)"; fi
