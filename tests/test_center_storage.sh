#!/usr/bin/env bash
# Shared-nothing migration, suspend and resume through the controller (issue 13):
# `glide vm migrate NAME --to HOST --with-storage [--datastore NAME]`, with
# host agents that declare datastores (`glide host serve --datastore
# NAME=DIR`). Three agents on loopback: hA (datastore local), hB (local and
# fast), hC (small: a 4 MiB tmpfs in its own mount namespace). Asserted:
#   - host facts list each datastore with its path, size and free space;
#   - refusals before anything moves, each naming its reason: a datastore
#     the destination lacks, a destination without the space for the
#     disk's allocated bytes, --datastore without --with-storage;
#   - diskab (4 writes in flight) moves hA -> hB (datastore fast) and back
#     (the destination's first datastore): the task succeeds, the
#     inventory holds the copy's path, the guest goes on writing there, the
#     copy is A-B clean, memory is verified, and the old file (in the
#     source's datastore) is removed by the source's agent after the move;
#   - move-disk (storage migration on one host) between hA's datastores
#     local and slow while diskab writes: the task reports the stall at
#     the switch, the inventory and hA's record take the new path, the old
#     file is removed after the switch, the disk is A-B clean;
#   - suspend/resume (`glide vm suspend`, `glide vm start`): diskab's
#     memory and state go to DATASTORE/NAME.suspend and its monitor exits;
#     the VM shows suspended (controller and agent), refuses a start on
#     another host and a configuration change; the start resumes it where
#     it was (its write counter goes on from the suspended value, not from
#     zero), disk A-B clean, the file is removed; an A-B memory guest with 2
#     vCPUs (no disk: the file goes to the agent's VM directory) is A-B
#     clean after the resume and its heartbeat counters go on; powering off
#     a suspended VM discards the file;
#   - cold migration with storage (`--with-storage` on a powered-off or
#     suspended VM): its disks (and suspended state) are copied between the
#     agents over the provisioning network, each file's digest verified by
#     the receiver; the copy equals the original byte for byte, the old
#     files are removed, the VM starts (or resumes where it was) on the
#     destination: disk A-B clean, heartbeat going on, memory A-B clean.
# run.sh timeout: 360
. "$(dirname "$0")/lib.sh"
have_kvm || { skip "center storage: /dev/kvm not accessible"; exit 0; }
ELF="$GLIDE_BUILD/guests/diskab.elf"
[ -e "$ELF" ] && [ -x "$GLIDE_BUILD/tools/abcheck" ] || { fail "center storage: diskab or abcheck missing (run make)"; exit 0; }
"$GLIDE_BUILD/tools/guestcfg" "$ELF" "$T/dq.elf" --queue-depth 4 >/dev/null || { fail "guestcfg"; exit 0; }
BASE=$(port_base)
PC=$BASE PA=$((BASE + 1)) PB=$((BASE + 2)) PCC=$((BASE + 3))
(umask 077; openssl rand -hex 16 >"$T/ht"; openssl rand -hex 16 >"$T/ct")
export GLIDE_CENTER="127.0.0.1:$PC" GLIDE_TOKEN_FILE="$T/ct"
monitor_pids() { cat "$T"/h*/vms/*/pid 2>/dev/null; }
cleanup_all() { for p in $(monitor_pids); do kill "$p" 2>/dev/null; done; cleanup; }
trap cleanup_all EXIT
mkdir -p "$T/dsA" "$T/dsA2" "$T/dsB" "$T/dsB2" "$T/dsC"
agent_up() { wait_for 10 curl -sf -H "Authorization: Bearer $(cat "$T/ht")" "http://127.0.0.1:$1/v1/host"; }
agent() { # agent NAME PORT EXTRA...
	local n="$1" p="$2"; shift 2
	"$GLIDE" host serve --data-dir "$T/$n" --listen "127.0.0.1:$p" --token-file "$T/ht" --name "$n" "$@" >>"$T/$n.log" 2>&1 &
	PIDS+=($!)
	agent_up "$p"
}
agent hA $PA --datastore "local=$T/dsA" --datastore "slow=$T/dsA2" && agent hB $PB --datastore "local=$T/dsB" --datastore "fast=$T/dsB2" ||
	{ fail "center storage: agents did not start: $(tail -2 "$T"/hA.log "$T"/hB.log)"; exit 0; }
# hC: its datastore is a 4 MiB tmpfs, mounted in a mount namespace of its own
unshare -m bash -c "mount -t tmpfs -o size=4M glide-test '$T/dsC' && exec '$GLIDE' host serve --data-dir '$T/hC' \
	--listen 127.0.0.1:$PCC --token-file '$T/ht' --name hC --datastore 'small=$T/dsC'" >>"$T/hC.log" 2>&1 &
PIDS+=($!)
HC=1
agent_up $PCC || { skip "center storage: no small datastore (cannot mount a tmpfs in a mount namespace: $(tail -1 "$T/hC.log"))"; HC=; }
"$GLIDE" center serve --db "$T/c.db" --listen "127.0.0.1:$PC" --token-file "$T/ct" >>"$T/c.log" 2>&1 &
PIDS+=($!)
wait_for 10 "$GLIDE" cluster list || { fail "center storage: controller did not start"; exit 0; }
for h in "hA $PA" "hB $PB" ${HC:+"hC $PCC"}; do
	set -- $h
	"$GLIDE" host add "127.0.0.1:$2" --host-token-file "$T/ht" --name "$1" >/dev/null || { fail "host add $1"; exit 0; }
done

# facts
"$GLIDE" host show hB --json >"$T/hB.json"
if python3 - "$T/hB.json" "$T/dsB2" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
facts = d.get("facts", d)
ds = {x["name"]: x for x in facts["datastores"]}
f = ds["fast"]
assert f["path"] == __import__("os").path.realpath(sys.argv[2]), f
assert f["total"] > 0 and 0 < f["free"] <= f["total"], f
assert list(ds) == ["local", "fast"], list(ds)
EOF
then pass "host facts list hB's datastores local and fast with path, size and free space"
else fail "datastores in hB's facts: $(head -c 600 "$T/hB.json")"; fi

# the VM: diskab on a 32 MiB disk in hA's datastore, 16 MiB of it written
DISK="$T/dsA/dvm.img"
truncate -s 32M "$DISK"
head -c 16M /dev/urandom | dd of="$DISK" bs=1M seek=8 conv=notrunc status=none
"$GLIDE" vm create dvm --memory 64M --elf "$T/dq.elf" --disk "$DISK" >/dev/null &&
	"$GLIDE" vm start dvm --host hA >/dev/null || { fail "diskab VM did not start: $(tail -3 "$T/hA.log")"; exit 0; }
api() { "$GLIDE" vm show dvm --json | json_get /dev/stdin api; }
wait_for 30 diskab_writes_beyond "$(api)" 20000 || { fail "diskab makes no progress on hA"; exit 0; }

# refusals
refused() { # LABEL WANT ARGS...: the migration is refused with WANT in its message, the VM stays on hA
	local label="$1" want="$2"; shift 2
	if "$GLIDE" vm migrate dvm "$@" >"$T/ref.out" 2>&1; then
		fail "$label: the migration was not refused"
	elif grep -q -- "$want" "$T/ref.out" && "$GLIDE" vm show dvm --json | grep -q '"host": "hA"'; then
		pass "$label: refused, the VM stays on hA: $(grep -o "$want.*" "$T/ref.out" | head -1 | cut -c1-150)"
	else
		fail "$label: $(head -c 400 "$T/ref.out")"
	fi
}
refused "a datastore the destination lacks" "has no datastore nope (it has local, fast)" --to hB --with-storage --datastore nope
refused "a move with storage to the host it is on" "already is on host hA" --to hA --with-storage
[ -n "$HC" ] && refused "a destination without the space" "datastore small on host hC has" --to hC --with-storage
refused "--datastore without --with-storage" "goes with" --to hB --datastore fast
ls "$T/dsB" "$T/dsB2" | grep -q img && fail "a refused migration left a file: $(ls "$T/dsB" "$T/dsB2")"

# there and back
move() { # DEST ARGS... -> $T/mv.json
	"$GLIDE" vm migrate dvm --to "$@" --with-storage --verify --json >"$T/mv.json" 2>"$T/mv.err"
}
for leg in "hB fast $T/dsB2/dvm-disk0.img $DISK" "hA local $T/dsA/dvm-disk0.img $T/dsB2/dvm-disk0.img"; do
	set -- $leg
	dest=$1 ds=$2 copy=$3 old=$4
	w=$(diskab_stat "$(api)" writes)
	if [ "$dest" = hB ]; then move hB --datastore fast; else move hA; fi
	if [ "$(json_get "$T/mv.json" state)" = succeeded ] &&
		[ "$(json_get "$T/mv.json" result.storage.datastore)" = "$ds" ] &&
		[ "$(json_get "$T/mv.json" result.storage.disks_to.0)" = "$copy" ] &&
		[ "$(json_get "$T/mv.json" result.verified)" = True ]; then
		pass "diskab moved to $dest with its disk copied to datastore $ds: stun $(json_get "$T/mv.json" result.stun_ms) ms, total $(json_get "$T/mv.json" result.total_ms) ms, $(json_get "$T/mv.json" result.disk_copy.blocks_sent) blocks sent, memory verified"
	else
		fail "move to $dest: $(head -c 700 "$T/mv.json") $(cat "$T/mv.err")"
		exit 0
	fi
	"$GLIDE" vm show dvm --json >"$T/show.json"
	if grep -q "\"host\": \"$dest\"" "$T/show.json" && grep -q "\"path\": \"$copy\"" "$T/show.json"; then
		pass "the inventory has dvm on $dest with its disk at the copy"
	else
		fail "inventory after the move to $dest: $(head -c 500 "$T/show.json")"
	fi
	if wait_for 20 diskab_writes_beyond "$(api)" "$((w + 2000))"; then
		pass "diskab goes on writing on $dest ($w -> $(diskab_stat "$(api)" writes) writes)"
	else
		fail "diskab stopped writing on $dest"
	fi
	abcheck_disk_paused "$(api)" "$copy" "the copy on $dest"
	if [ ! -e "$old" ] && [ "$(json_get "$T/mv.json" result.storage.source_disks_removed.0)" = "$old" ]; then
		pass "the source's agent removed the old file from its datastore after the move"
	else
		fail "the old file after the move: $(ls -l "$old" 2>&1); removed $(json_get "$T/mv.json" result.storage 2>&1 | head -c 300)"
	fi
done

# storage migration on one host: dvm's disk hA local -> hA slow and back, while it writes
for leg in "slow $T/dsA2/dvm-disk0.img $T/dsA/dvm-disk0.img" "local $T/dsA/dvm-disk0.img $T/dsA2/dvm-disk0.img"; do
	set -- $leg
	ds=$1 new=$2 old=$3
	w=$(diskab_stat "$(api)" writes)
	"$GLIDE" vm move-disk dvm --datastore "$ds" --json >"$T/md.json" 2>"$T/md.err"
	if [ "$(json_get "$T/md.json" state)" = succeeded ] && [ "$(json_get "$T/md.json" result.to)" = "$new" ] &&
		"$GLIDE" vm show dvm --json | grep -q "\"path\": \"$new\""; then
		pass "move-disk to datastore $ds while diskab writes: $(json_get "$T/md.json" result.bytes_copied) bytes copied, $(json_get "$T/md.json" result.writes_mirrored) writes mirrored, guest stalled $(json_get "$T/md.json" result.stall_ms | cut -c1-5) ms at the switch; the inventory has the new path"
	else
		fail "move-disk to $ds: $(tr -d '\n' <"$T/md.json" | head -c 600) $(cat "$T/md.err")"
	fi
	if wait_for 10 bash -c "[ ! -e '$old' ]" && wait_for 10 bash -c "curl -s --unix-socket '$T/hA/host.sock' http://x/v1/vms/dvm | grep -q '$new'"; then
		pass "the old file was removed only after the switch, once hA's record named the new one"
	else
		fail "after move-disk to $ds: $(ls "$T/dsA" "$T/dsA2" | tr '\n' ' ')"
	fi
	wait_for 20 diskab_writes_beyond "$(api)" "$((w + 3000))" && pass "diskab goes on writing after move-disk ($w -> $(diskab_stat "$(api)" writes))" ||
		fail "diskab stopped writing after move-disk"
	abcheck_disk_paused "$(api)" "$new" "the disk moved to datastore $ds"
done
if "$GLIDE" vm move-disk dvm --datastore local >"$T/md2.out" 2>&1; then fail "a move-disk to the datastore the disk is on succeeded"
else grep -q "already is on datastore local" "$T/md2.out" && pass "a move-disk to the datastore the disk is on is refused" ||
	fail "move-disk to its own datastore: $(cat "$T/md2.out")"; fi

# suspend and resume: diskab, its disk in hA's datastore local
agent_vm() { curl -s --unix-socket "$T/hA/host.sock" "http://x/v1/vms/$1"; }
w0=$(diskab_stat "$(api)" writes)
"$GLIDE" vm suspend dvm --json >"$T/sus.json" 2>"$T/sus.err"
if [ "$(json_get "$T/sus.json" state)" = suspended ] && [ -s "$T/dsA/dvm.suspend" ] &&
	[ "$(agent_vm dvm | json_get /dev/stdin state)" = suspended ]; then
	pass "diskab suspended to its datastore ($(du -h "$T/dsA/dvm.suspend" | cut -f1) dvm.suspend, paused $(json_get "$T/sus.json" suspend.pause_ms | cut -c1-5) ms, written in $(json_get "$T/sus.json" suspend.write_ms | cut -c1-6) ms); the controller and its host say suspended"
else
	fail "suspend: $(tr -d "\n" <"$T/sus.json" | head -c 700) $(cat "$T/sus.err"); $(ls "$T/dsA" | tr "\n" " ")"
fi
if ! agent_vm dvm | grep -q '"pid":' && [ ! -e "/proc/$(json_get "$T/sus.json" pid 2>/dev/null || echo 0)" ] &&
	! pgrep -f -- "--api $T/hA/vms/dvm/api.sock" >/dev/null; then
	pass "the suspended VM's monitor exited"
else
	fail "the suspended VM's monitor still runs: $(agent_vm dvm | head -c 300)"
fi
if "$GLIDE" vm start dvm --host hB >"$T/so.out" 2>&1; then fail "a suspended VM started on another host"
else grep -q "is suspended on host hA" "$T/so.out" && pass "a start on another host is refused: $(head -1 "$T/so.out" | cut -c1-120)" ||
	fail "start elsewhere: $(cat "$T/so.out")"; fi
if "$GLIDE" vm set dvm --vcpus 2 >"$T/ss.out" 2>&1; then fail "a suspended VM's configuration changed"
else pass "a suspended VM's configuration cannot change: $(head -1 "$T/ss.out" | cut -c1-100)"; fi
if "$GLIDE" vm start dvm --json >"$T/res.json" 2>"$T/res.err" && [ "$(json_get "$T/res.json" state)" = running ]; then
	w1=$(diskab_stat "$(api)" writes)
	if [ "${w1:-0}" -ge "$w0" ] && wait_for 20 diskab_writes_beyond "$(api)" "$((w1 + 2000))"; then
		pass "diskab resumed where it was: $w0 writes before the suspend, $w1 right after the resume, then $(diskab_stat "$(api)" writes)"
	else
		fail "diskab after the resume: $w0 writes before, $w1 after, then $(diskab_stat "$(api)" writes)"
	fi
	abcheck_disk_paused "$(api)" "$T/dsA/dvm-disk0.img" "diskab after the resume"
	[ ! -e "$T/dsA/dvm.suspend" ] && pass "the suspended state was removed once the VM resumed" ||
		fail "the suspend file is still there after the resume"
else
	fail "resume: $(cat "$T/res.json" "$T/res.err" | head -c 500)"
fi
"$GLIDE" vm stop dvm >/dev/null 2>&1

# cold migration with storage: the powered-off diskab hA -> hB, then suspended hB -> hA
sum0=$(sha256sum <"$T/dsA/dvm-disk0.img")
"$GLIDE" vm migrate dvm --to hB --with-storage --datastore fast --json >"$T/cold.json" 2>"$T/cold.err"
if [ "$(json_get "$T/cold.json" state)" = succeeded ] && [ "$(json_get "$T/cold.json" result.kind)" = cold ] &&
	[ "$(json_get "$T/cold.json" result.storage.digests_verified)" = True ] &&
	[ "$(sha256sum <"$T/dsB2/dvm-disk0.img")" = "$sum0" ] && [ ! -e "$T/dsA/dvm-disk0.img" ] &&
	"$GLIDE" vm show dvm --json | grep -q '"host": "hB"'; then
	pass "the powered-off diskab moved cold to hB with its disk: $(json_get "$T/cold.json" result.storage.bytes) bytes over the provisioning network in $(json_get "$T/cold.json" result.total_ms | cut -d. -f1) ms (encrypted $(json_get "$T/cold.json" result.storage.encrypted)), digest verified, the copy equals the original, which is removed"
else
	fail "cold move with storage: $(tr -d '\n' <"$T/cold.json" | head -c 600) $(cat "$T/cold.err"); $(ls "$T/dsA" "$T/dsB2" | tr '\n' ' ')"
fi
"$GLIDE" vm start dvm >/dev/null 2>"$T/st.err" && wait_for 30 diskab_writes_beyond "$(api)" 5000 &&
	pass "diskab starts on hB from the copied disk and writes ($(diskab_stat "$(api)" writes) writes)" ||
	fail "diskab on hB after the cold move: $(cat "$T/st.err")"
"$GLIDE" vm suspend dvm >/dev/null 2>"$T/sus3.err"
w0=$(curl -s --unix-socket "$T/hB/host.sock" http://x/v1/vms/dvm | json_get /dev/stdin state)
"$GLIDE" vm migrate dvm --to hA --with-storage --json >"$T/cold2.json" 2>"$T/cold2.err"
if [ "$w0" = suspended ] && [ "$(json_get "$T/cold2.json" state)" = succeeded ] && [ -s "$T/dsA/dvm.suspend" ] &&
	[ -s "$T/dsA/dvm-disk0.img" ] && [ ! -e "$T/dsB2/dvm.suspend" ] && [ ! -e "$T/dsB2/dvm-disk0.img" ] &&
	[ "$("$GLIDE" vm show dvm --json | json_get /dev/stdin state)" = suspended ]; then
	pass "the suspended diskab moved cold to hA with its disk and its suspended state ($(json_get "$T/cold2.json" result.storage.bytes) bytes, digests verified); hB's files are removed"
else
	fail "cold move of the suspended VM: $w0 $(cat "$T/sus3.err") $(tr -d '\n' <"$T/cold2.json" | head -c 600) $(cat "$T/cold2.err"); $(ls "$T/dsA" "$T/dsB2" | tr '\n' ' ')"
fi
if "$GLIDE" vm start dvm >/dev/null 2>"$T/st2.err" && "$GLIDE" vm show dvm --json | grep -q '"host": "hA"'; then
	w1=$(diskab_stat "$(api)" writes)
	if wait_for 20 diskab_writes_beyond "$(api)" "$((w1 + 2000))" && [ "$w1" -gt 5000 ]; then
		pass "diskab resumed on hA where it was suspended on hB ($w1 writes at the resume, then $(diskab_stat "$(api)" writes))"
	else
		fail "diskab after the cold move and resume: $w1 writes, then $(diskab_stat "$(api)" writes)"
	fi
	abcheck_disk_paused "$(api)" "$T/dsA/dvm-disk0.img" "diskab resumed after a cold move"
else
	fail "resume after the cold move: $(cat "$T/st2.err")"
fi
"$GLIDE" vm stop dvm >/dev/null 2>&1

# the copy between agents refuses a sender without the key; a receipt given up removes its files
hapi() { curl -s --unix-socket "$T/$1/host.sock" "http://x$2" "${@:3}"; }
size=$(stat -c %s "$T/dsA/dvm-disk0.img"); sumA=$(sha256sum <"$T/dsA/dvm-disk0.img")
k1=$(openssl rand -hex 32); k2=$(openssl rand -hex 32)
addr=$(hapi hB /v1/receive -X POST -d "{\"name\":\"dvm\",\"key\":\"$k1\",\"datastore\":\"local\",\"copy_bytes\":0,\"files\":[{\"kind\":\"disk\",\"size\":$size}]}" |
	json_get /dev/stdin address)
hapi hA /v1/vms/dvm/send -X POST -d "{\"to\":\"$addr\",\"key\":\"$k2\"}" >/dev/null
recv_state() { hapi hB /v1/receive/dvm | json_get /dev/stdin state; }
send_state() { hapi hA /v1/vms/dvm/send | json_get /dev/stdin state; }
wait_for 20 bash -c "[ \"\$(curl -s --unix-socket '$T/hB/host.sock' http://x/v1/receive/dvm | grep -o '\"state\":\"[a-z]*\"')\" = '\"state\":\"failed\"' ]"
if [ "$(recv_state)" = failed ] && [ "$(send_state)" = failed ] && [ ! -e "$T/dsB/dvm-disk0.img" ] &&
	[ "$(sha256sum <"$T/dsA/dvm-disk0.img")" = "$sumA" ]; then
	pass "a sender with the wrong key is refused by the receiver ($(hapi hA /v1/vms/dvm/send | json_get /dev/stdin error | cut -c1-90)); the receiver removed its file, the source is unchanged"
else
	fail "wrong key: receiver $(hapi hB /v1/receive/dvm | head -c 300), sender $(hapi hA /v1/vms/dvm/send | head -c 300); $(ls "$T/dsB")"
fi
hapi hB /v1/receive/dvm -X DELETE >/dev/null
addr=$(hapi hB /v1/receive -X POST -d "{\"name\":\"dvm\",\"key\":\"$k1\",\"datastore\":\"local\",\"copy_bytes\":0,\"files\":[{\"kind\":\"disk\",\"size\":$size}]}" |
	json_get /dev/stdin address)
hapi hA /v1/vms/dvm/send -X POST -d "{\"to\":\"$addr\",\"key\":\"$k1\"}" >/dev/null
wait_for 20 bash -c "curl -s --unix-socket '$T/hB/host.sock' http://x/v1/receive/dvm | grep -q '\"state\":\"done\"'"
same=$([ "$(sha256sum <"$T/dsB/dvm-disk0.img" 2>/dev/null)" = "$sumA" ] && echo yes)
hapi hB /v1/receive/dvm -X DELETE >/dev/null
if [ "$same" = yes ] && [ ! -e "$T/dsB/dvm-disk0.img" ] && [ -s "$T/dsA/dvm-disk0.img" ]; then
	pass "with the key the copy arrives equal to the source; a receipt given up (DELETE without keep) removes its file"
else
	fail "copy with the key: same=$same; $(ls "$T/dsB" "$T/dsA" | tr '\n' ' ')"
fi

# an A-B memory guest, 2 vCPUs, no disk: the file goes to the agent's VM directory
AB="$GLIDE_BUILD/guests/ab.img"
"$GLIDE" vm create sab --memory 160M --vcpus 2 --boot "$AB" >/dev/null && "$GLIDE" vm start sab --host hA >/dev/null ||
	{ fail "the A-B guest did not start"; exit 0; }
sapi() { "$GLIDE" vm show sab --json | json_get /dev/stdin api; }
wait_for 20 guest_iterations_at_least "$(sapi)" 2 || { fail "the A-B guest makes no progress"; exit 0; }
"$GLIDE" vm pause --api "$(sapi)" >/dev/null
before=$(hb_iterations "$(sapi)")
"$GLIDE" vm resume --api "$(sapi)" >/dev/null
if "$GLIDE" vm suspend sab >/dev/null 2>"$T/sus2.err" && [ -s "$T/hA/vms/sab/suspend.snap" ] &&
	"$GLIDE" vm start sab >/dev/null 2>"$T/res2.err"; then
	after=$(hb_iterations "$(sapi)")
	read -r b0 b1 <<<"$before"; read -r a0 a1 <<<"$after"
	if [ "${a0:-0}" -ge "${b0:-1}" ] && [ "${a1:-0}" -ge "${b1:-1}" ] && guest_progresses "$(sapi)" 10; then
		pass "the A-B guest resumed with its heartbeat counters going on (before the suspend: $before; after the resume: $after)"
	else
		fail "heartbeat across suspend/resume: before $before, after $after"
	fi
	if ab_check "$(sapi)" 2; then pass "the A-B guest's memory is A-B clean after suspend and resume ($(grep -o 'OK.*' "$T/abcheck.out" | head -1 | cut -c1-80))"
	else fail "A-B after the resume: $(tail -2 "$T/abcheck.out")"; fi
else
	fail "suspend/resume of the A-B guest: $(cat "$T/sus2.err" "$T/res2.err")"
fi
# a suspended VM without disks moves cold with its suspended state, and resumes
"$GLIDE" vm pause --api "$(sapi)" >/dev/null
before=$(hb_iterations "$(sapi)")
"$GLIDE" vm resume --api "$(sapi)" >/dev/null
if "$GLIDE" vm suspend sab >/dev/null 2>"$T/sus4.err" && "$GLIDE" vm migrate sab --to hB --with-storage --json >"$T/cold3.json" 2>"$T/cold3.err" &&
	[ -s "$T/dsB/sab.suspend" ] && [ ! -e "$T/hA/vms/sab/suspend.snap" ] && "$GLIDE" vm start sab >/dev/null 2>"$T/st3.err"; then
	after=$(hb_iterations "$(sapi)")
	read -r b0 b1 <<<"$before"; read -r a0 a1 <<<"$after"
	if [ "${a0:-0}" -ge "${b0:-1}" ] && [ "${a1:-0}" -ge "${b1:-1}" ] && guest_progresses "$(sapi)" 10 && ab_check "$(sapi)" 2; then
		pass "the suspended A-B guest moved cold to hB ($(json_get "$T/cold3.json" result.storage.bytes) bytes of suspended state) and resumed there: heartbeat going on ($before -> $after), memory A-B clean"
	else
		fail "the A-B guest after its cold move: heartbeat $before -> $after; $(tail -2 "$T/abcheck.out")"
	fi
else
	fail "cold move of the suspended A-B guest: $(cat "$T/sus4.err" "$T/cold3.err" "$T/st3.err"; tr -d '\n' <"$T/cold3.json" | head -c 400)"
fi
# powering off a suspended VM discards its suspended state
if "$GLIDE" vm suspend sab >/dev/null 2>&1 && [ -s "$T/hB/vms/sab/suspend.snap" ] && "$GLIDE" vm stop sab >/dev/null 2>&1 &&
	[ ! -e "$T/hB/vms/sab/suspend.snap" ] && "$GLIDE" vm show sab --json | grep -q '"state": "off"'; then
	pass "powering off a suspended VM discards its suspended state"
else
	fail "power off while suspended: $(ls -l "$T/hB/vms/sab/" 2>&1 | tail -3); $("$GLIDE" vm show sab 2>&1 | head -3)"
fi
