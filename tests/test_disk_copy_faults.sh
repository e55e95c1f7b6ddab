#!/usr/bin/env bash
# Faults during a shared-nothing migration's disk copy (`glide migrate
# --disk-to`, the "disk" live section, src/migrate/disk.c; issue 13). One
# diskab source (32 MiB disk, 4 writes in flight) meets four failing
# destinations; in every case the migration fails with a clear reason and:
# the source VM runs on, on its own disk (A-B clean, and written further:
# more passes than before), and the destination monitor exits.
#   1. the destination monitor is killed (SIGKILL) during the bulk pass
#      (phase -1, data already in its copy; --max-bandwidth 4M makes the
#      pass take ~8 s). A killed process cannot remove its file: the
#      partial copy stays behind under its name. It is never the VM's disk
#      (the VM never ran on it: the source lets go only at GO, and the
#      source runs on), and it says so: until the VM runs on a copy, the
#      copy carries the xattr user.glide.partial while its destination
#      holds a lock on it (src/migrate/disk.c). A marked file whose
#      destination is gone (nobody holds the lock) is removed by the next
#      destination on that --disk-dir: at its start, or when a migration
#      asks it for the same path. Asserted: a destination starting while
#      the copy is written leaves it alone; the killed one's copy is left,
#      marked.
#   2. that destination, asked for the same path, removes the stale copy
#      (its log says so) and copies again; it is then killed while guest
#      writes are mirrored: those that land where the copy has been are
#      sent at once and wait for the destination's answer (the killed one
#      never answers). Asserted: more than 50 writes were mirrored before
#      the kill; as 1. (Later, the mirror is all that is left: diskab
#      dirties no memory of its own to hold the migration in pre-copy.)
#   3. a new destination removes the copy 2 left when it starts; then the
#      link goes silent in the middle of the copy to the same path
#      (tests/fault_proxy.py holds both directions, no reset: a pulled
#      cable) with 2 s stall timeouts on both sides: the source fails
#      "stalled" within a bounded time; the destination's own stall
#      timeout fails it, and it removes its copy. (A file without the mark
#      is never removed or overwritten: test_disk_copy.)
#   4. the destination's --disk-dir is an 8 MiB tmpfs (in its own mount
#      namespace) for the 32 MiB disk, all of it written: the copy runs out
#      of space; the source's error names it (ENOSPC), the destination
#      removes its copy (listed from inside the namespace after it exits).
# Then a convergence case, on a second source:
#   5. a 4 MiB disk that diskab rewrites many times a second (tens of
#      MB/s) under a 2 MiB/s cap: during the bulk copy the disk's pending
#      blocks count in the dirty rate and the predicted stun; after it the
#      write-blocking mirror sends each write at once and the guest waits
#      for it, so its writes go at the cap's pace and nothing is left for
#      the stun; the migration completes, the copy is A-B clean and the
#      guest goes on writing there. The PASS line gives the total time,
#      stun, blocks sent by the copy and by the mirror, and passes.
# run.sh timeout: 300
. "$(dirname "$0")/lib.sh"
have_kvm || { skip "disk copy faults: /dev/kvm not accessible"; exit 0; }
ELF="$GLIDE_BUILD/guests/diskab.elf"
[ -e "$ELF" ] && [ -x "$GLIDE_BUILD/tools/abcheck" ] || { fail "disk copy faults: diskab or abcheck missing (run make)"; exit 0; }
"$GLIDE_BUILD/tools/guestcfg" "$ELF" "$T/dq.elf" --queue-depth 4 >/dev/null || { fail "guestcfg"; exit 0; }
(umask 077; openssl rand -hex 32 >"$T/key")
mkdir -p "$T/dd"
STALL=2
port=$(port_base)
t_start=$SECONDS

mig() { curl -s -m 5 --unix-socket "$1" http://vm/v1/migration 2>/dev/null; } # SOCK: the latest migration
mig_field() { mig "$1" | python3 -c 'import json,sys; d=json.load(sys.stdin)
for k in sys.argv[1].split("."): d=d[k]
print(d)' "$2" 2>/dev/null; }
# in_phase SOCK MIN MAX: the migration is in pre-copy, phase MIN..MAX (-1: the bulk pass)
in_phase() {
	mig "$1" | python3 -c 'import json,sys; d=json.load(sys.stdin)
sys.exit(0 if d.get("status") == "running" and d.get("stage") == "precopy" and int(sys.argv[1]) <= d["phase"] <= int(sys.argv[2]) else 1)' "$2" "$3" 2>/dev/null
}
allocated() { stat -c %b "$1" 2>/dev/null || echo 0; } # FILE: 512-byte blocks it holds
pid_of() { eval "echo \$PID_$1"; }
# migrate_bg NAME ARGS...: `glide migrate` from the source in the background, its JSON in $T/NAME.json
migrate_bg() {
	local name="$1"; shift
	timeout 120 "$GLIDE" migrate --api "$T/src.sock" --key-file "$T/key" --streams 1 --json "$@" \
		>"$T/$name.json" 2>"$T/$name.err" &
	MIG=$!
}
# failed_clearly NAME WANT: the migration failed, its error says WANT (a regex), the source resumed
failed_clearly() {
	local st err
	st=$(json_get "$T/$1.json" status 2>/dev/null) err=$(json_get "$T/$1.json" error 2>/dev/null)
	if [ "$st" = failed ] && [ "$(json_get "$T/$1.json" source_resumed 2>/dev/null)" = True ] &&
		echo "$err" | grep -Eiq "$2"; then
		pass "$1: the migration failed, the source resumed: ${err:0:200}"
	else
		fail "$1: expected a failure saying /$2/: status '$st', error '$err' $(head -c 200 "$T/$1.err")"
	fi
}
# source_goes_on LABEL: the source VM runs, writes on, and its own disk is A-B clean, further on than before
PASSES=0
source_goes_on() {
	local w st p
	st=$(vm_state src)
	w=$(diskab_stat "$T/src.sock" writes)
	if [ "$st" = running ] && wait_for 20 diskab_writes_beyond "$T/src.sock" $((w + 2000)); then
		pass "$1: the source VM runs on and writes ($w -> $(diskab_stat "$T/src.sock" writes) writes)"
	else
		fail "$1: the source VM is '$st', writes $w -> $(diskab_stat "$T/src.sock" writes): $(tail -2 "$T/src.log")"
	fi
	abcheck_disk_paused "$T/src.sock" "$SRC" "$1: the source's own disk"
	p=$(grep '^abcheck' "$T/abcheck-disk.out" | sed -n 's/.* \([0-9]*\) full pass(es).*/\1/p')
	if [ "${p:-0}" -gt "$PASSES" ]; then
		pass "$1: the source's disk goes on being written ($PASSES -> $p passes over it)"
	else
		fail "$1: the source's disk was not written further ($PASSES -> ${p:-?} passes)"
	fi
	PASSES=${p:-$PASSES}
}
# left_marked LABEL FILE: a killed destination's copy stays, marked partial (src/migrate/disk.c)
left_marked() {
	if [ -e "$2" ] && python3 -c 'import os,sys; os.getxattr(sys.argv[1], "user.glide.partial")' "$2" 2>/dev/null; then
		pass "$1: the killed destination's copy stays behind, marked partial ($(python3 -c 'import os,sys; print(os.getxattr(sys.argv[1], "user.glide.partial").decode())' "$2"))"
	else
		fail "$1: the killed destination's copy: $(ls -l "$2" 2>&1), mark: $(python3 -c 'import os,sys; print(os.getxattr(sys.argv[1], "user.glide.partial"))' "$2" 2>&1 | tail -1)"
	fi
}
elapsed() { python3 -c "import sys; print('%.1f' % (float(sys.argv[1]) - float(sys.argv[2])))" "$EPOCHREALTIME" "$1"; } # since EPOCH
# dest_gone NAME FILE LABEL: the destination monitor NAME exited, FILE (its partial copy) is gone
dest_gone() {
	if wait_for 20 exited "$(pid_of "$1")" && wait_for 5 bash -c "[ ! -e '$2' ]"; then
		pass "$3: the destination exited and removed its partial copy"
	else
		fail "$3: destination exited: $(exited "$(pid_of "$1")" && echo yes || echo no), $(ls -l "$2" 2>&1); $(tail -2 "$T/$1.log")"
	fi
}

SRC="$T/src.img"
truncate -s 32M "$SRC"
start_vm src --memory 64M --elf "$T/dq.elf" --disk "$SRC" || { fail "diskab did not start: $(cat "$T/src.out")"; exit 0; }
# every block written at least once (8192 blocks): all 32 MiB is data to copy
wait_for 30 diskab_writes_beyond "$T/src.sock" 20000 || { fail "diskab makes no progress: $(tail -3 "$T/src.log")"; exit 0; }

# 1. SIGKILL during the bulk pass
port=$((port + 1)); C1="$T/dd/c1.img"
start_vm d1 --incoming 127.0.0.1:$port --key-file "$T/key" --disk-dir "$T/dd" --stall-timeout $STALL
migrate_bg kill-bulk --to 127.0.0.1:$port --disk-to "$C1" --max-bandwidth 4M
if wait_for 20 bash -c "[ \$(stat -c %b '$C1' 2>/dev/null || echo 0) -gt 2048 ]" && in_phase "$T/src.sock" -1 -1; then
	# case 2's destination starts now, on the same --disk-dir: it must
	# leave alone the copy d1 writes (d1 holds its lock)
	start_vm d2 --incoming 127.0.0.1:$((port + 1)) --key-file "$T/key" --disk-dir "$T/dd" --stall-timeout $STALL
	if [ -e "$C1" ] && in_phase "$T/src.sock" -1 -1 && ! grep -q removed "$T/d2.log"; then
		pass "kill-bulk: a destination starting on the same --disk-dir leaves the copy being written alone"
	else
		fail "kill-bulk: the copy being written: $(ls -l "$C1" 2>&1); $(grep removed "$T/d2.log")"
	fi
	kill -9 "$PID_d1"
	t_kill=$EPOCHREALTIME
	wait "$MIG"
	pass "kill-bulk: destination killed in the bulk pass ($(( $(allocated "$C1") / 2 )) KiB in its copy), the source noticed in $(elapsed "$t_kill") s"
else
	fail "kill-bulk: the copy never got data during the bulk pass: $(mig "$T/src.sock" | head -c 300)"
	kill -9 "$PID_d1"; wait "$MIG"
	start_vm d2 --incoming 127.0.0.1:$((port + 1)) --key-file "$T/key" --disk-dir "$T/dd" --stall-timeout $STALL
fi
failed_clearly kill-bulk "destination|connection|reset|broken pipe"
source_goes_on kill-bulk
exited "$PID_d1" && pass "kill-bulk: the destination monitor is gone" || fail "kill-bulk: the destination runs on"
left_marked kill-bulk "$C1"

# 2. SIGKILL while guest writes are mirrored; asked for the same path, the
# destination first removes the copy the killed one left
port=$((port + 1))
mirrored() { [ "$(mig_field "$T/src.sock" disk_copy.mirrored_writes)" -gt "$1" ] 2>/dev/null; }
migrate_bg kill-dirty --to 127.0.0.1:$port --disk-to "$C1" --max-bandwidth 8M
if wait_for 30 mirrored 50 && in_phase "$T/src.sock" -1 -1; then
	m1=$(mig_field "$T/src.sock" disk_copy.mirrored_writes)
	kill -9 "$PID_d2"
	wait "$MIG"
	pass "kill-dirty: destination killed after $m1 guest writes were mirrored ($(( $(allocated "$C1") / 2 )) KiB in its copy)"
else
	fail "kill-dirty: no guest write mirrored in the bulk pass: $(mig "$T/src.sock" | head -c 300)"
	kill -9 "$PID_d2"; wait "$MIG"
fi
if grep -q "removed $C1, a partial copy left by a destination that died" "$T/d2.log"; then
	pass "kill-dirty: asked for the same path, the destination removed the partial copy the killed one left first"
else
	fail "kill-dirty: no sign the destination replaced the stale partial copy: $(grep -m2 "$C1" "$T/d2.log")"
fi
failed_clearly kill-dirty "destination|connection|reset|broken pipe"
source_goes_on kill-dirty
exited "$PID_d2" && pass "kill-dirty: the destination monitor is gone" || fail "kill-dirty: the destination runs on"
left_marked kill-dirty "$C1"

# 3. the link goes silent in the middle of the copy; the destination
# removes the copy case 2 left when it starts
port=$((port + 2))
start_vm d3 --incoming 127.0.0.1:$port --key-file "$T/key" --disk-dir "$T/dd" --stall-timeout $STALL
if [ ! -e "$C1" ] && grep -q "removed $C1, a partial copy left by a destination that died" "$T/d3.log"; then
	pass "cut: a new destination on that --disk-dir removed the partial copy the killed one left, at its start"
else
	fail "cut: the killed destination's partial copy is still there: $(ls -l "$C1" 2>&1); $(tail -2 "$T/d3.log")"
fi
# LIVE #1 is the RAM of phase -1, #2.. the disk's 256 KiB frames: hold at the 8th
python3 "$TESTS_DIR/fault_proxy.py" --listen $((port + 1)) --to $port --log "$T/cut.proxy" --fault hold \
	--frame LIVE --nth 8 --hold-seconds 600 --max-seconds 120 2>"$T/cut.proxy.err" &
PROXY=$!
PIDS+=("$PROXY")
wait_for 5 grep -q started "$T/cut.proxy"
migrate_bg cut --to 127.0.0.1:$((port + 1)) --disk-to "$C1" --max-bandwidth 4M --stall-timeout $STALL
if wait_for 30 grep -q injected "$T/cut.proxy"; then
	t_cut=$(sed -n 's/^\([0-9.]*\) injected.*/\1/p' "$T/cut.proxy")
	had=$(allocated "$C1")
	wait "$MIG"
	took=$(elapsed "$t_cut")
	# stall timeout + the socket buffers filling at the cap; generous for a loaded 2-CPU machine
	if [ "$had" -gt 0 ] && python3 -c "import sys; sys.exit(0 if float(sys.argv[1]) <= 20 else 1)" "$took"; then
		pass "cut: link silent in the disk copy ($((had / 2)) KiB in the copy), the source gave up ${took} s after the cut (stall timeout ${STALL} s)"
	else
		fail "cut: copy held $had blocks at the cut, the source gave up after ${took} s"
	fi
else
	fail "cut: the proxy never held the link: $(tail -3 "$T/cut.proxy")"
	wait "$MIG"
fi
failed_clearly cut "stall"
source_goes_on cut
dest_gone d3 "$C1" cut
kill "$PROXY" 2>/dev/null

# 4. no space left for the copy on the destination
if [ "$(id -u)" = 0 ] && unshare -m true 2>/dev/null; then
	port=$((port + 2)); C4="$T/small/c4.img"
	mkdir -p "$T/small"
	# the monitor runs inside a mount namespace of its own with an 8 MiB
	# tmpfs on its --disk-dir; the shell around it lists the directory once
	# the monitor has exited, from inside the namespace
	unshare -m --propagation private bash -c '
		mount -t tmpfs -o size=8M,mode=0700 glide-test "$1" || { echo "mount failed" >"$5.ls"; exit 1; }
		"$2" vm run --api "$3" --log "$4" --incoming "$6" --key-file "$7" --disk-dir "$1" --stall-timeout "$8" \
			>"$4.out" 2>&1 &
		echo $! >"$5.pid"
		wait $!
		{ echo "files: $(ls -A "$1" | tr "\n" " ")"; echo "used: $(du -sk "$1" | cut -f1) KiB"; } >"$5.ls"' _ \
		"$T/small" "$GLIDE" "$T/d4.sock" "$T/d4.log" "$T/d4" 127.0.0.1:$port "$T/key" $STALL &
	PIDS+=("$!")
	wait_for 10 test -s "$T/d4.pid" && PID_d4=$(cat "$T/d4.pid") && PIDS+=("$PID_d4")
	if wait_for 20 "$GLIDE" vm status --api "$T/d4.sock"; then
		migrate_bg nospace --to 127.0.0.1:$port --disk-to "$C4"
		wait "$MIG"
		failed_clearly nospace "ENOSPC"
	else
		fail "nospace: the destination in its namespace did not start: $(cat "$T/d4.ls" "$T/d4.log.out" 2>&1 | tail -3)"
	fi
	source_goes_on nospace
	if wait_for 20 exited "${PID_d4:-0}" && wait_for 5 test -s "$T/d4.ls" && grep -q '^files: *$' "$T/d4.ls"; then
		pass "nospace: the destination exited and removed its partial copy ($(tr '\n' ' ' <"$T/d4.ls"))"
	else
		fail "nospace: $(cat "$T/d4.ls" 2>/dev/null | tr '\n' ' '); $(tail -2 "$T/d4.log")"
	fi
else
	skip "nospace: needs root and mount namespaces (unshare -m) for its small tmpfs"
fi

# 5. convergence: the guest writes its disk faster than the cap
"$GLIDE" vm shutdown --api "$T/src.sock" >/dev/null 2>&1
wait_for 10 exited "$PID_src"
S5="$T/src5.img" C5="$T/dd/c5.img"
truncate -s 4M "$S5"
start_vm s5 --memory 64M --elf "$T/dq.elf" --disk "$S5" || { fail "converge: diskab did not start"; exit 0; }
wait_for 30 diskab_writes_beyond "$T/s5.sock" 5000
w0=$(diskab_stat "$T/s5.sock" writes) t0=$EPOCHREALTIME
sleep 1
rate=$(python3 -c "import sys; print(int((int(sys.argv[1]) - int(sys.argv[2])) * 4096 / (float(sys.argv[4]) - float(sys.argv[3]))))" \
	"$(diskab_stat "$T/s5.sock" writes)" "$w0" "$t0" "$EPOCHREALTIME")
port=$((port + 1))
start_vm d5 --incoming 127.0.0.1:$port --key-file "$T/key" --disk-dir "$T/dd"
timeout 100 "$GLIDE" migrate --api "$T/s5.sock" --to 127.0.0.1:$port --key-file "$T/key" --disk-to "$C5" \
	--max-bandwidth 2M --timeout 90 --json >"$T/conv.json" 2>"$T/conv.err"
if [ "$(json_get "$T/conv.json" status)" = completed ]; then
	pass "converge: the guest wrote $((rate / 1000)) KB/s to its disk (4 KiB blocks), the cap is 2 MiB/s: completed in $(json_get "$T/conv.json" total_ms | cut -d. -f1) ms, stun $(json_get "$T/conv.json" stun_ms | cut -d. -f1) ms (predicted $(json_get "$T/conv.json" predicted_stun_ms | cut -d. -f1) ms), $(json_get "$T/conv.json" disk_copy.blocks_sent) blocks sent by the copy and $(json_get "$T/conv.json" disk_copy.mirrored_blocks) by the mirror ($(json_get "$T/conv.json" disk_copy.mirrored_writes) writes) in $(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["phases"]))' "$T/conv.json") passes, SDPS up to $(json_get "$T/conv.json" sdps.max_level)"
	if [ "$rate" -gt $((2 * 1048576)) ]; then pass "converge: the guest's disk write rate was above the cap"
	else skip "converge: the guest wrote only $rate B/s here, not above the 2 MiB/s cap"; fi
	# The mirror leaves nothing for the stun: had it not, the guest's
	# writes (the whole disk many times a second) would have been sent
	# while stunned: 2 s at the cap.
	stun=$(json_get "$T/conv.json" stun_ms | cut -d. -f1)
	if [ "$stun" -lt 2000 ]; then pass "converge: stun $stun ms, below the 2 s the whole disk takes at the cap"
	else fail "converge: stun $stun ms: the disk's pending blocks did not hold the switchover back"; fi
	if [ "$(json_get "$T/conv.json" disk_copy.mirrored_writes)" -gt 0 ]; then
		pass "converge: guest writes were mirrored (and waited for) after the bulk copy"
	else
		fail "converge: no guest write was mirrored: $(json_get "$T/conv.json" disk_copy)"
	fi
	# A pre-copy phase ends once its data has left at the cap (source.c,
	# wait_cap_credit): no phase measures more than the cap. Without that a
	# short phase measured up to 7.5 MB/s here and the final pass paid the
	# rest inside the stun (532 ms against a predicted 88 ms).
	fast=$(python3 -c 'import json,sys; p=json.load(open(sys.argv[1]))["phases"][:-1]
print("%.2f" % (max(x["transmit_rate"] for x in p) / 1e6))' "$T/conv.json")
	if python3 -c 'import sys; sys.exit(0 if float(sys.argv[1]) <= 1.2 * 2 * 1.048576 else 1)' "$fast"; then
		pass "converge: no pre-copy phase measured more than the cap (at most $fast MB/s)"
	else
		fail "converge: a pre-copy phase measured $fast MB/s under a 2 MiB/s cap (credit of the cap not waited for)"
	fi
	w=$(diskab_stat "$T/d5.sock" writes)
	if wait_for 20 diskab_writes_beyond "$T/d5.sock" $((w + 2000)); then
		pass "converge: diskab goes on writing on the destination's copy ($w -> $(diskab_stat "$T/d5.sock" writes) writes)"
	else
		fail "converge: diskab does not write on the destination: $(tail -2 "$T/d5.log")"
	fi
	abcheck_disk_paused "$T/d5.sock" "$C5" "converge: the destination's copy"
else
	fail "converge: $(json_get "$T/conv.json" status) $(json_get "$T/conv.json" error) $(head -c 300 "$T/conv.err")"
fi
"$GLIDE" vm shutdown --api "$T/d5.sock" >/dev/null 2>&1
echo "run time: $((SECONDS - t_start)) s" >&2
