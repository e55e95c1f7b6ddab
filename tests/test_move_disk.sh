#!/usr/bin/env bash
# Storage migration in the monitor (POST /v1/vm/disk-move, src/migrate/
# disk_move.c; issue 13): a running VM's disk moves to another file while
# the guest writes, with a write-blocking mirror and a switch in a short
# pause. Asserted:
#   - diskab with 16 writes in flight (io_uring): the move completes, the
#     guest-observed stall at the switch is reported and is short, the new
#     file is A-B clean, the guest goes on writing there, the old file is
#     no longer written, and the VM's status names the new file;
#   - a move to a filesystem that fills up (a 4 MiB tmpfs, in a mount
#     namespace of the monitor's own): the move fails with the reason, the
#     new file is removed, the VM stays on its disk (A-B clean, still
#     writing), no guest request failed;
#   - refusals: a path that exists (never overwritten), a disk the VM lacks,
#     a second move while one runs is not possible (the op lock), bad input.
# run.sh timeout: 180
. "$(dirname "$0")/lib.sh"
have_kvm || { skip "move disk: /dev/kvm not accessible"; exit 0; }
ELF="$GLIDE_BUILD/guests/diskab.elf"
[ -e "$ELF" ] && [ -x "$GLIDE_BUILD/tools/abcheck" ] || { fail "move disk: diskab or abcheck missing (run make)"; exit 0; }
"$GLIDE_BUILD/tools/guestcfg" "$ELF" "$T/dq.elf" --queue-depth 16 >/dev/null || { fail "guestcfg"; exit 0; }
mv_api() { curl -s --unix-socket "$1" "http://vm/v1/vm/disk-move$2" "${@:3}"; }
mv_done() { ! mv_api "$1" "" | grep -q '"state":"running"'; }
disk_errors() { "$GLIDE" vm status --api "$1" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["disks"][0]["errors"])'; }

# 1. the move
truncate -s 64M "$T/a.img"
start_vm v --memory 64M --elf "$T/dq.elf" --disk "$T/a.img,aio=io_uring" || { fail "diskab did not start: $(cat "$T/v.out")"; exit 0; }
wait_for 30 diskab_writes_beyond "$T/v.sock" 20000 || { fail "diskab makes no progress"; exit 0; }
echo keep >"$T/exists.img"
mv_api "$T/v.sock" "" -X POST -d "{\"disk\":0,\"path\":\"$T/exists.img\"}" >/dev/null
wait_for 10 mv_done "$T/v.sock"
if mv_api "$T/v.sock" "" | grep -q "never overwrites" && [ "$(cat "$T/exists.img")" = keep ]; then
	pass "a move to a file that exists fails and leaves the file as it was"
else
	fail "a move onto an existing file: $(mv_api "$T/v.sock" "")"
fi
code=$(mv_api "$T/v.sock" "" -o /dev/null -w '%{http_code}' -X POST -d "{\"disk\":3,\"path\":\"$T/x.img\"}")
code2=$(mv_api "$T/v.sock" "" -o /dev/null -w '%{http_code}' -X POST -d "{\"disk\":0,\"path\":\"relative.img\"}")
[ "$code" = 404 ] && [ "$code2" = 400 ] && [ ! -e "$T/x.img" ] && pass "a disk the VM lacks (404) and a relative path (400) are refused" ||
	fail "bad moves: $code $code2"
w0=$(diskab_stat "$T/v.sock" writes)
mv_api "$T/v.sock" "" -X POST -d "{\"disk\":0,\"path\":\"$T/b.img\"}" >"$T/start.json"
second=$(mv_api "$T/v.sock" "" -o /dev/null -w '%{http_code}' -X POST -d "{\"disk\":0,\"path\":\"$T/c.img\"}")
wait_for 60 mv_done "$T/v.sock"
mv_api "$T/v.sock" "" >"$T/mv.json"
stall=$(json_get "$T/mv.json" stall_ms 2>/dev/null)
if [ "$(json_get "$T/mv.json" state)" = completed ] && [ "$("$GLIDE" vm status --api "$T/v.sock" --json | json_get /dev/stdin disks.0.path)" = "$T/b.img" ]; then
	pass "the disk moved while diskab wrote: $(json_get "$T/mv.json" bytes_copied) bytes copied, $(json_get "$T/mv.json" writes_mirrored) guest writes mirrored, in $(json_get "$T/mv.json" elapsed_ms | cut -d. -f1) ms; the switch stalled the guest $stall ms; the VM's status names the new file"
else
	fail "the move: $(cat "$T/mv.json")"
	exit 0
fi
[ "$second" = 409 ] && [ ! -e "$T/c.img" ] && pass "a second move while one runs is refused (409)" ||
	fail "a second move during the first: $second $(ls "$T")"
python3 -c "import sys; sys.exit(0 if float(sys.argv[1]) < 100 else 1)" "$stall" &&
	pass "the switch stall is short ($stall ms < 100 ms; the move's whole copy ran with the guest running)" ||
	fail "the switch stalled the guest $stall ms"
if wait_for 20 diskab_writes_beyond "$T/v.sock" "$((w0 + 5000))"; then
	pass "diskab goes on writing on the new file ($w0 -> $(diskab_stat "$T/v.sock" writes) writes, $(disk_errors "$T/v.sock") errors)"
else
	fail "diskab stopped writing after the move"
fi
abcheck_disk_paused "$T/v.sock" "$T/b.img" "the new file"
h1=$(sha256sum <"$T/a.img"); sleep 1; h2=$(sha256sum <"$T/a.img")
[ "$h1" = "$h2" ] && "$GLIDE_BUILD/tools/abcheck" --disk "$T/a.img" >/dev/null 2>&1 &&
	pass "the old file is no longer written (and is A-B clean as the switch left it)" ||
	fail "the old file after the move: changed $([ "$h1" = "$h2" ] || echo yes)"
"$GLIDE" vm shutdown --api "$T/v.sock" >/dev/null 2>&1
wait_for 10 exited "$PID_v"

# 2. the new filesystem fills up: a 4 MiB tmpfs in the monitor's own mount namespace
mkdir -p "$T/small"
truncate -s 64M "$T/f.img"
unshare -m bash -c "mount -t tmpfs -o size=4M glide-test '$T/small' && exec '$GLIDE' vm run --memory 64M --elf '$T/dq.elf' \
	--disk '$T/f.img' --api '$T/f.sock' --log '$T/f.log'" >"$T/f.out" 2>&1 &
PIDS+=($!)
if ! wait_for 20 "$GLIDE" vm status --api "$T/f.sock"; then
	skip "move disk: a full filesystem (cannot mount a tmpfs in a mount namespace: $(tail -1 "$T/f.out"))"
	exit 0
fi
wait_for 30 diskab_writes_beyond "$T/f.sock" 20000 || { fail "diskab makes no progress (full filesystem case)"; exit 0; }
mv_api "$T/f.sock" "" -X POST -d "{\"disk\":0,\"path\":\"$T/small/n.img\"}" >/dev/null
wait_for 60 mv_done "$T/f.sock"
mv_api "$T/f.sock" "" >"$T/full.json"
left=$(nsenter -t "$(pgrep -f -- "--api $T/f.sock" | head -1)" -m ls "$T/small" 2>&1)
if [ "$(json_get "$T/full.json" state)" = failed ] && grep -q "No space left" "$T/full.json" && [ -z "$left" ] &&
	[ "$("$GLIDE" vm status --api "$T/f.sock" --json | json_get /dev/stdin disks.0.path)" = "$T/f.img" ]; then
	pass "a move to a full filesystem fails ($(json_get "$T/full.json" error | cut -c1-80)); the new file is removed, the VM stays on its disk"
else
	fail "a move to a full filesystem: $(cat "$T/full.json"); left: $left"
fi
w=$(diskab_stat "$T/f.sock" writes)
if wait_for 20 diskab_writes_beyond "$T/f.sock" "$((w + 5000))" && [ "$(disk_errors "$T/f.sock")" = 0 ]; then
	pass "after the failed move diskab goes on writing, no request failed ($w -> $(diskab_stat "$T/f.sock" writes) writes)"
else
	fail "after the failed move: $(diskab_stat "$T/f.sock" writes) writes, $(disk_errors "$T/f.sock") errors"
fi
abcheck_disk_paused "$T/f.sock" "$T/f.img" "the disk after the failed move"
"$GLIDE" vm shutdown --api "$T/f.sock" >/dev/null 2>&1
