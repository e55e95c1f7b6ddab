#!/usr/bin/env bash
# The test guests under QEMU (the reference VMM): ab.img, heartbeat.img and
# workload.img boot from a raw disk through SeaBIOS, print their banner,
# keep their heartbeat records; stopped and dumped over QMP, the A-B range
# passes abcheck (and a corrupted byte in the dump does not), and the
# iterations grow between two dumps. Prints measured rates.
. "$(dirname "$0")/lib.sh"
command -v qemu-system-x86_64 >/dev/null || { skip "guests under QEMU: qemu-system-x86_64 not installed"; exit 0; }
have_kvm || { skip "guests under QEMU: /dev/kvm not accessible"; exit 0; }
G="$GLIDE_BUILD/guests"
TOOLS="$GLIDE_BUILD/tools"
for f in "$G/ab.img" "$G/heartbeat.img" "$G/workload.img" "$TOOLS/abcheck" "$TOOLS/hbread"; do
	[ -e "$f" ] || { fail "guests under QEMU: $f missing (run make)"; exit 0; }
done
RANGE_START=$((1 << 20))
RANGE_SIZE=$((128 << 20))

# qmp SOCK COMMAND [JSON-ARGUMENTS]: one QMP command, its reply on stdout; fails on an error reply
qmp() { timeout 60 python3 "$TESTS_DIR/qmp.py" "$@"; }

# field DUMP VCPU INDEX: u64 number INDEX of a heartbeat record
field() { python3 -c 'import struct,sys; print(struct.unpack_from("<8Q", open(sys.argv[1],"rb").read(), 64*int(sys.argv[2]))[int(sys.argv[3])])' "$@"; }
head -c 64 /dev/zero >"$T/zero"
KHZ=$(timeout 30 "$TOOLS/hbread" "$T/zero" --json 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["tsc_khz"])' 2>/dev/null)
[ -n "$KHZ" ] && [ "$KHZ" -gt 0 ] || { fail "guests under QEMU: hbread cannot read this host's TSC rate"; exit 0; }

# start_qemu NAME IMAGE: boots IMAGE, waits (bounded) for the banner on the serial port
start_qemu() {
	local name="$1" img="$2"
	rm -f "$T/$name.sock" "$T/$name.serial"
	timeout 600 qemu-system-x86_64 -enable-kvm -cpu host,-arch-capabilities -m 512 -nodefaults \
		-display none -no-reboot -drive "file=$img,format=raw,snapshot=on" \
		-serial "file:$T/$name.serial" -qmp "unix:$T/$name.sock,server,nowait" >"$T/$name.out" 2>&1 &
	local pid=$!
	PIDS+=("$pid")
	eval "QPID_$name=$pid"
	wait_for 120 bash -c "grep -q . '$T/$name.serial' || ! kill -0 $pid 2>/dev/null"
	grep -q . "$T/$name.serial"
}
stop_qemu() {
	local pid
	eval "pid=\$QPID_$1"
	qmp "$T/$1.sock" quit >/dev/null 2>&1
	wait_for 10 bash -c "! kill -0 $pid 2>/dev/null" || kill -9 "$pid" 2>/dev/null
}
# dump NAME ADDR SIZE FILE: pmemsave with the guest stopped
dump() { rm -f "$4"; qmp "$T/$1.sock" pmemsave "{\"val\": $(($2)), \"size\": $(($3)), \"filename\": \"$4\"}" >/dev/null && [ -s "$4" ]; }

for guest in ab heartbeat workload; do
	name="QEMU $guest.img"
	t0=$(date +%s%N)
	if ! start_qemu "$guest" "$G/$guest.img"; then
		fail "$name: no banner on COM1 within 120 s: $(head -c 300 "$T/$guest.out")"
		stop_qemu "$guest"
		continue
	fi
	boot_ms=$(( ($(date +%s%N) - t0) / 1000000 ))
	banner=$(head -1 "$T/$guest.serial")
	[ "$banner" = "glide-guest $guest" ] && pass "$name: banner '$banner' after ${boot_ms} ms (SeaBIOS included)" ||
		fail "$name: banner '$banner', expected 'glide-guest $guest'"
	sleep 1 # a window of running: the rate below is measured over it
	# ta..tb: the VM stopped for the dumps (tb-ta at least, te-t0 at most
	# plus scheduling); 0.5 s of running between the two dumps
	t0=$(date +%s%N)
	if ! { qmp "$T/$guest.sock" stop && ta=$(date +%s%N) && dump "$guest" 0x8000 4096 "$T/hb1" &&
	       dump "$guest" $RANGE_START $RANGE_SIZE "$T/range" && tb=$(date +%s%N) && qmp "$T/$guest.sock" cont && sleep 0.5 &&
	       qmp "$T/$guest.sock" stop && te=$(date +%s%N) && dump "$guest" 0x8000 4096 "$T/hb2"; } >"$T/qmp.out" 2>&1; then
		fail "$name: QMP stop/pmemsave/cont failed: $(tail -c 300 "$T/qmp.out")"
		stop_qemu "$guest"
		continue
	fi

	magic=$(field "$T/hb1" 0 0)
	it1=$(field "$T/hb1" 0 1); it2=$(field "$T/hb2" 0 1)
	run1=$(( $(field "$T/hb1" 0 2) - $(field "$T/hb1" 0 5) ))
	rate=$(python3 -c "import sys; print('%.0f' % ($it1 / ($run1 / ($KHZ * 1000.0))))" 2>/dev/null)
	if [ "$magic" = $((0x3142484544494c47)) ] && [ "$it2" -gt "$it1" ]; then
		pass "$name: heartbeat iterations grow ($it1 -> $it2), $rate iterations/s in the first $((run1 / KHZ)) ms"
	else
		fail "$name: heartbeat magic $magic, iterations $it1 -> $it2"
	fi
	if "$TOOLS/hbread" "$T/hb2" --vcpus 1 --json >"$T/hb.json" 2>"$T/hb.err" &&
	   python3 -c 'import json,sys; v=json.load(open(sys.argv[1]))["vcpus"][0]; assert v["valid"] and v["mode"]==sys.argv[2] and v["iterations"]==int(sys.argv[3]) and v["max_gap_ms"] > 0, v' \
		"$T/hb.json" "$guest" "$it2" 2>>"$T/hb.err"; then
		# the stop/dump pause is the gap that starts at the stopped vCPU's
		# last iteration (hb1's last_tsc, within one iteration); the upper
		# bound allows the slack of docs/migration.md (5 ms + the largest
		# gap before) for a vCPU already off its CPU when the stop came
		python3 - "$T/hb.json" "$(field "$T/hb1" 0 2)" "$(field "$T/hb1" 0 3)" "$KHZ" "$t0" "$ta" "$tb" "$te" >"$T/gap.out" <<'PY'
import json, sys
v = json.load(open(sys.argv[1]))["vcpus"][0]
last, before, khz = int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
t0, ta, tb, te = (int(x) / 1e6 for x in sys.argv[5:9])
gap = v["max_gap_tsc"] / khz
start = v["max_gap_end_tsc"] - v["max_gap_tsc"]
lo, hi = tb - ta, te - t0 + 5 + before / khz
if abs(start - last) > khz / 1000:
    print("SKIP a larger stall hides the stop/dump pause (the record keeps only the largest gap: %.2f ms, "
          "starting %.2f ms from the stopped vCPU's last iteration)" % (gap, (start - last) / khz))
elif lo <= gap <= hi:
    print("PASS hbread: the largest gap, %.2f ms, is the QMP stop/dump pause (starts at the stopped vCPU's last "
          "iteration; the VM was stopped %.0f-%.0f ms)" % (gap, lo, hi))
else:
    print("FAIL hbread: the stop/dump pause lasted %.2f ms by the guest, the VM was stopped %.0f-%.0f ms" % (gap, lo, hi))
PY
		read -r kind text <"$T/gap.out"
		case "$kind" in
		PASS) pass "$name: $text" ;;
		SKIP) skip "$name: $text" ;;
		*) fail "$name: ${text:-$(cat "$T/gap.out")}" ;;
		esac
	else
		fail "$name: hbread: $(head -c 300 "$T/hb.err") $(head -c 300 "$T/hb.json")"
	fi

	case $guest in
	ab|workload)
		if "$TOOLS/abcheck" "$T/range" --parts 1 --require-progress >"$T/abcheck.out" 2>&1; then
			pass "$name: abcheck clean on the stopped guest ($(head -1 "$T/abcheck.out"))"
		else
			fail "$name: abcheck: $(tail -3 "$T/abcheck.out" | tr '\n' ' ')"
		fi
		# one page's first byte changed: abcheck must name that page
		python3 -c 'import sys; f=open(sys.argv[1],"r+b"); f.seek(4096*777); b=f.read(1); f.seek(4096*777); f.write(bytes([(b[0]+3)%256]))' "$T/range"
		"$TOOLS/abcheck" "$T/range" --parts 1 >"$T/abcheck.out" 2>&1
		rc=$?
		if [ $rc = 1 ] && grep -q "^bad page 777 " "$T/abcheck.out"; then
			pass "$name: abcheck detects one corrupted byte ($(grep '^bad page' "$T/abcheck.out" | head -1))"
		else
			fail "$name: corrupted dump: exit $rc, $(tail -3 "$T/abcheck.out" | tr '\n' ' ')"
		fi
		;;
	heartbeat)
		if "$TOOLS/abcheck" "$T/range" --parts 1 --require-progress >"$T/abcheck.out" 2>&1; then
			fail "$name: the range was written: $(tail -1 "$T/abcheck.out")"
		else
			grep -q "never written" "$T/abcheck.out" && pass "$name: the range stays untouched" ||
				fail "$name: range: $(tail -2 "$T/abcheck.out" | tr '\n' ' ')"
		fi
		;;
	esac
	if [ $guest = workload ]; then
		# built for 10000 page writes/s: the guest must be paced (never faster
		# than configured) and progressing; how close it gets to 10000 depends
		# on how much CPU the host gives it, so that is reported, not asserted
		if python3 -c "import sys; sys.exit(0 if 0 < $rate <= 10500 else 1)"; then
			pass "$name: paced at $rate page writes/s (configured 10000)"
		else
			fail "$name: $rate page writes/s, configured 10000"
		fi
	fi
	stop_qemu "$guest"
done
