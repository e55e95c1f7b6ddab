#!/usr/bin/env bash
# The VM monitor: the test guests boot and run, the A-B check of a paused
# guest is clean, snapshot/restore into a new process keeps memory and time
# (1 and 4 vCPUs), and bad input gets a clear one-line error.
. "$(dirname "$0")/lib.sh"
have_kvm || { skip "monitor: /dev/kvm not accessible"; exit 0; }
G="$GLIDE_BUILD/guests"
for img in ab heartbeat workload; do
	[ -f "$G/$img.img" ] || { fail "guest image $G/$img.img missing (run make)"; exit 0; }
done

# heartbeat record of vCPU i from a dump of 0x8000 (docs/guests.md)
hb_field() { # DUMP VCPU FIELD (1 iterations, 2 last_tsc, 3 max_gap_tsc, 4 max_gap_end_tsc)
	python3 -c 'import struct,sys; d=open(sys.argv[1],"rb").read(); i=int(sys.argv[2]); f=struct.unpack_from("<6Q", d, 64*i); print(f[int(sys.argv[3])])' "$@"
}
tsc_khz() { "$GLIDE" vm status --api "$T/$1.sock" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["tsc_khz"])'; }

# 1. every guest boots and runs, on 1 and 2 vCPUs
for img in ab heartbeat workload; do
	for vcpus in 1 2; do
		name="guest $img boots and runs on $vcpus vCPU(s)"
		start_vm g --memory 256M --vcpus $vcpus --boot "$G/$img.img" --serial "$T/g.serial" || { fail "$name: monitor did not start: $(cat "$T/g.out")"; continue; }
		if ! wait_for 10 guest_started "$T/g.sock"; then
			fail "$name: not every vCPU wrote its heartbeat record within 10 s; state $(vm_state g), serial '$(head -c 40 "$T/g.serial")'"
		elif [ "$(vm_state g)" = running ] && guest_progresses "$T/g.sock" && [ -s "$T/g.serial" ] &&
			[ "$(hb_iterations "$T/g.sock" | wc -w)" = $vcpus ]; then
			pass "$name (serial: $(head -c 40 "$T/g.serial" | tr -d '\n'))"
		else
			fail "$name: state $(vm_state g), iterations per vCPU: $(hb_iterations "$T/g.sock") (not all growing?), serial '$(head -c 40 "$T/g.serial")'"
		fi
		"$GLIDE" vm shutdown --api "$T/g.sock" >/dev/null
		wait_for 10 bash -c "! kill -0 $PID_g 2>/dev/null"
		rm -f "$T/g.serial"
	done
done

# 2. A-B check of a running guest, paused and dumped; the checker itself catches a lost page
start_vm ab --memory 256M --vcpus 2 --boot "$G/ab.img" && wait_for 10 guest_started "$T/ab.sock" || fail "A-B guest did not start"
check "A-B check clean on a paused guest (2 vCPUs)" ab_check "$T/ab.sock" 2
"$GLIDE" vm pause --api "$T/ab.sock" >/dev/null
"$GLIDE" vm memsave --api "$T/ab.sock" --addr 1M --size 128M --to "$T/ab.dump" >/dev/null
python3 -c 'import sys; f=open(sys.argv[1],"r+b"); f.seek(4096*1000); b=f.read(1); f.seek(4096*1000); f.write(bytes([(b[0]+7)%256]))' "$T/ab.dump"
if "$GLIDE_BUILD/tools/abcheck" "$T/ab.dump" --parts 2 >/dev/null 2>&1; then fail "abcheck missed a stale page"; else pass "abcheck reports a stale page"; fi
check "memsave accepts hex, decimal and suffixed sizes" bash -c "'$GLIDE' vm memsave --api '$T/ab.sock' --addr 0x100000 --size 4096 --to '$T/m1' && '$GLIDE' vm memsave --api '$T/ab.sock' --addr 1048576 --size 4K --to '$T/m2' && cmp '$T/m1' '$T/m2' && [ \$(stat -c %s '$T/m1') = 4096 ]"
if "$GLIDE" vm memsave --api "$T/ab.sock" --addr 0xfffff000 --size 8K --to "$T/m3" 2>"$T/err"; then fail "memsave outside RAM accepted"; else pass "memsave outside RAM refused: $(cat "$T/err")"; fi
check "status --json reports paused state, vCPUs, memory" bash -c "'$GLIDE' vm status --api '$T/ab.sock' --json | python3 -c 'import json,sys; d=json.load(sys.stdin); assert d[\"state\"]==\"paused\" and d[\"vcpus\"]==2 and d[\"memory\"]==256<<20, d'"
"$GLIDE" vm shutdown --api "$T/ab.sock" >/dev/null
wait_for 10 bash -c "! kill -0 $PID_ab 2>/dev/null"

# 3. snapshot / restore in a new process: A-B clean, heartbeat continues, gap bounded by the pause
for vcpus in 1 4; do
	name="snapshot/restore, $vcpus vCPU(s)"
	# A-B guest on vCPUs: the A-B part
	start_vm s1 --memory 256M --vcpus $vcpus --boot "$G/ab.img" && wait_for 10 guest_started "$T/s1.sock" || fail "$name: the guest did not start"
	if ! "$GLIDE" vm snapshot --api "$T/s1.sock" --to "$T/snap" >"$T/snap.out" 2>&1; then
		fail "$name: snapshot: $(cat "$T/snap.out")"; continue
	fi
	"$GLIDE" vm memsave --api "$T/s1.sock" --addr 1M --size 128M --to "$T/before.dump" >/dev/null
	"$GLIDE" vm shutdown --api "$T/s1.sock" >/dev/null
	wait_for 10 bash -c "! kill -0 $PID_s1 2>/dev/null"
	start_vm s2 --restore "$T/snap" --paused
	"$GLIDE" vm memsave --api "$T/s2.sock" --addr 1M --size 128M --to "$T/after.dump" >/dev/null
	if cmp -s "$T/before.dump" "$T/after.dump"; then pass "$name: restored memory identical to the snapshot"; else fail "$name: restored memory differs"; fi
	"$GLIDE" vm resume --api "$T/s2.sock" >/dev/null
	if ! guest_progresses "$T/s2.sock"; then fail "$name: the guest does not run after restore and resume"
	elif ab_check "$T/s2.sock" $vcpus; then pass "$name: A-B clean after restore and running"; else fail "$name: A-B check after restore"; fi
	"$GLIDE" vm shutdown --api "$T/s2.sock" >/dev/null
	wait_for 10 bash -c "! kill -0 $PID_s2 2>/dev/null"

	# heartbeat guest: the gap the snapshot made is the one that starts at
	# each vCPU's last iteration before the pause (last_tsc of the paused
	# VM); it lasts at least from the snapshot's end to the restore's start
	# and at most from the snapshot's start until every vCPU ran again.
	start_vm h1 --memory 256M --vcpus $vcpus --boot "$G/heartbeat.img" && wait_for 10 guest_started "$T/h1.sock" || fail "$name: heartbeat guest did not start"
	khz=$("$GLIDE" vm status --api "$T/h1.sock" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["tsc_khz"])')
	t0=$(date +%s%N)
	"$GLIDE" vm snapshot --api "$T/h1.sock" --to "$T/hsnap" >/dev/null # leaves the VM paused
	ta=$(date +%s%N)
	hb_dump "$T/h1.sock" "$T/hb_before"
	"$GLIDE" vm shutdown --api "$T/h1.sock" >/dev/null
	wait_for 10 bash -c "! kill -0 $PID_h1 2>/dev/null"
	tb=$(date +%s%N)
	start_vm h2 --restore "$T/hsnap"
	guest_progresses "$T/h2.sock" # every vCPU has run again, so its gap has ended
	t1=$(date +%s%N)
	"$GLIDE" vm pause --api "$T/h2.sock" >/dev/null
	hb_dump "$T/h2.sock" "$T/hb_after"
	max_ms=$(( (t1 - t0) / 1000000 )) min_ms=$(( (tb - ta) / 1000000 ))
	bad="" hidden="" gaps=""
	for ((i = 0; i < vcpus; i++)); do
		it0=$(hb_field "$T/hb_before" $i 1); it1=$(hb_field "$T/hb_after" $i 1)
		last=$(hb_field "$T/hb_before" $i 2)
		gap=$(hb_field "$T/hb_after" $i 3) end=$(hb_field "$T/hb_after" $i 4)
		gap_ms=$(( gap / khz ))
		gaps="$gaps ${gap_ms}"
		[ "$it1" -gt "$it0" ] || bad="$bad vCPU$i-stopped"
		# the gap starts at the paused vCPU's last iteration (within one
		# iteration: the pause may fall between reading the TSC and storing it)
		if [ $(( end - gap - last )) -gt $((khz / 1000)) ] || [ $(( last - (end - gap) )) -gt $((khz / 1000)) ]; then
			hidden="$hidden vCPU$i: largest gap ${gap_ms} ms starts $(( (end - gap - last) / khz )) ms after the pause;"
			continue
		fi
		[ "$gap_ms" -le "$max_ms" ] || bad="$bad vCPU$i-gap-${gap_ms}ms>${max_ms}ms"
		[ "$gap_ms" -ge "$min_ms" ] || bad="$bad vCPU$i-gap-${gap_ms}ms<${min_ms}ms"
	done
	if [ -n "$bad" ]; then fail "$name:$bad"
	elif [ -n "$hidden" ]; then skip "$name: a larger stall hides the snapshot's gap (the record keeps only the largest):$hidden"
	else pass "$name: heartbeat continues; each vCPU's gap starts at its last iteration before the pause and lasts${gaps} ms, within the measured ${min_ms}-${max_ms} ms"; fi
	"$GLIDE" vm shutdown --api "$T/h2.sock" >/dev/null
	wait_for 10 bash -c "! kill -0 $PID_h2 2>/dev/null"
done

# 4. corrupted / truncated / newer snapshot files are refused, never half-applied
cp "$T/snap" "$T/snap.bad"
python3 -c 'import sys,os; f=open(sys.argv[1],"r+b"); n=os.path.getsize(sys.argv[1]); f.seek(n//2); b=f.read(1); f.seek(n//2); f.write(bytes([b[0]^1]))' "$T/snap.bad"
if "$GLIDE" vm run --restore "$T/snap.bad" --api "$T/bad.sock" >/dev/null 2>"$T/err"; then fail "corrupted snapshot accepted"; else pass "corrupted snapshot refused: $(tail -1 "$T/err")"; fi
head -c 1000000 "$T/snap" > "$T/snap.short"
if "$GLIDE" vm run --restore "$T/snap.short" --api "$T/bad.sock" >/dev/null 2>"$T/err"; then fail "truncated snapshot accepted"; else pass "truncated snapshot refused: $(tail -1 "$T/err")"; fi
set_format_version() { # FILE VERSION: rewrite the header's format version (and its CRC)
	python3 -c 'import sys,zlib,struct; f=open(sys.argv[1],"r+b"); h=bytearray(f.read(24)); h[8:12]=struct.pack("<I",int(sys.argv[2])); h[20:24]=struct.pack("<I",zlib.crc32(bytes(h[:20]))); f.seek(0); f.write(h)' "$1" "$2"
}
cp "$T/snap" "$T/snap.new"
set_format_version "$T/snap.new" 1000
if timeout 20 "$GLIDE" vm run --restore "$T/snap.new" --api "$T/bad.sock" >/dev/null 2>"$T/err" ; then fail "newer-version snapshot accepted"; else
	grep -q newer "$T/err" && pass "newer-version snapshot refused: $(tail -1 "$T/err")" || fail "newer version: unclear error: $(cat "$T/err")"; fi
cp "$T/snap" "$T/snap.old"
set_format_version "$T/snap.old" 1
if timeout 20 "$GLIDE" vm run --restore "$T/snap.old" --api "$T/bad.sock" >/dev/null 2>"$T/err" ; then fail "old-format (version 1) snapshot accepted"; else
	grep -q "made by an older glide" "$T/err" && pass "old-format snapshot refused: $(tail -1 "$T/err")" || fail "old format: unclear error: $(cat "$T/err")"; fi

# 5. bad input: one clear line and a non-zero exit
bad_input() { # NAME EXPECTED-REGEX ARGS...
	local name="$1" re="$2"; shift 2
	timeout 20 "$@" >"$T/bi.out" 2>"$T/bi.err"
	local rc=$?
	if [ $rc -ne 0 ] && [ $rc -ne 124 ] && grep -Eq "$re" "$T/bi.err" && [ "$(wc -l <"$T/bi.err")" -le 2 ]; then
		pass "$name: $(head -1 "$T/bi.err")"
	else
		fail "$name: exit $rc, stderr: $(head -c 300 "$T/bi.err")"
	fi
}
bad_input "missing image" "cannot read boot image" "$GLIDE" vm run --memory 64M --boot "$T/nonexistent.img" --api "$T/x.sock"
mkdir -p "$T/dir.img"
bad_input "unreadable image (a directory)" "boot image" "$GLIDE" vm run --memory 64M --boot "$T/dir.img" --api "$T/x.sock"
bad_input "memory larger than the host" "larger than this host" "$GLIDE" vm run --memory 64T --boot "$G/ab.img" --api "$T/x.sock"
bad_input "zero vCPUs" "vcpus" "$GLIDE" vm run --memory 64M --vcpus 0 --boot "$G/ab.img" --api "$T/x.sock"
bad_input "bad memory size" "not a size" "$GLIDE" vm run --memory 12Q --boot "$G/ab.img" --api "$T/x.sock"
GLIDE_KVM_DEVICE="$T/no-kvm" bad_input "/dev/kvm absent" "no such device" "$GLIDE" vm run --memory 64M --boot "$G/ab.img" --api "$T/x.sock"
if command -v setpriv >/dev/null && [ "$(id -u)" = 0 ]; then
	cp "$GLIDE" "$T/glide-copy"; chmod 755 "$T" "$T/glide-copy"
	bad_input "/dev/kvm not accessible" "permission denied" setpriv --reuid=65534 --regid=65534 --clear-groups "$T/glide-copy" vm run --memory 64M --boot "$G/ab.img" --api "$T/x.sock"
else
	skip "/dev/kvm not accessible: needs root and setpriv to drop privileges"
fi
start_vm busy --memory 64M --boot "$G/heartbeat.img"
bad_input "API socket path in use" "in use" "$GLIDE" vm run --memory 64M --boot "$G/ab.img" --api "$T/busy.sock"
check "the running VM kept its socket" "$GLIDE" vm status --api "$T/busy.sock"

# 6. clean stop by signal: exit 0
kill -TERM "$PID_busy"
wait "$PID_busy"; rc=$?
[ $rc = 0 ] && pass "SIGTERM shuts the VM down cleanly (exit 0)" || fail "SIGTERM: exit $rc"
[ ! -e "$T/busy.sock" ] && pass "API socket removed on exit" || fail "API socket left behind"
