#!/usr/bin/env bash
# Boots the Debian cloud kernel through the 64-bit boot protocol and checks
# that it prints its banner on COM1 and finds the CPUs of the ACPI MADT.
#
# Linux runs its kernel at CPL 0, which the nested KVM of the test machines
# emulates very slowly and not completely. Only that is a SKIP, named
# precisely: KVM_EXIT_INTERNAL_ERROR suberror 1 (instruction emulation
# failed) at CPL 0, or no banner within the time budget while the guest is
# still making progress (serial output, exits or memory still changing).
# Everything else is a FAIL: a monitor that does not start, a kernel panic
# or oops, a triple fault or other guest reset, any other KVM error, or a
# guest that stopped making progress.
#
# The verdict is taken from the monitor's log line "VM stopped: REASON" and
# the serial output; its rules are checked first on guests that really stop
# (a triple fault, SSE at CPL 0) and on lines they cannot produce here.
. "$(dirname "$0")/lib.sh"
have_kvm || { skip "linux boot: /dev/kvm not accessible"; exit 0; }
WAIT=${GLIDE_LINUX_BOOT_WAIT:-240}
PROGRESS_WINDOW=20 # seconds: the guest must show progress within the last window of the budget
G="$GLIDE_BUILD/guests"

CRASH_RE='Kernel panic - not syncing|BUG: |kernel BUG at|Oops|general protection fault|invalid opcode:|double fault|Unable to handle'
NO_ROOT_RE='VFS: Unable to mount root fs'
EMULATOR_LIMIT_RE='KVM internal error, suberror 1 \(instruction emulation failed\) at rip 0x[0-9a-f]+, CPL 0,'

# stop_reason LOG: the REASON of the monitor's last "VM stopped: REASON (exit status N)" line
stop_reason() { sed -n 's/.* monitor: VM stopped: \(.*\) (exit status [0-9]*)$/\1/p' "$1" | tail -1; }

# verdict LOG SERIAL STDERR STATUS: how a guest that stopped ended, as "PASS|FAIL|SKIP: why"
verdict() {
	local log="$1" serial="$2" stderr="$3" status="$4" reason crash
	reason=$(stop_reason "$log")
	crash=$(grep -m1 -aE "$CRASH_RE" "$serial" 2>/dev/null | tr -d '\r')
	if [ -n "$crash" ] && echo "$crash" | grep -qE "$NO_ROOT_RE"; then
		echo "PASS: the kernel booted up to mounting a root file system (none given) and stopped there: $crash; then: ${reason:-exit status $status}"
	elif [ -n "$crash" ]; then
		echo "FAIL: the kernel crashed: $crash (then: ${reason:-exit status $status})"
	elif [ -z "$reason" ]; then
		echo "FAIL: the monitor exited with status $status before the VM ran: $(tail -1 "$stderr" 2>/dev/null)"
	elif echo "$reason" | grep -qE "$EMULATOR_LIMIT_RE"; then
		echo "SKIP: this machine's nested KVM cannot emulate an instruction the kernel runs at CPL 0 (a known limit, see KVM-HERE.md): $reason"
	elif echo "$reason" | grep -q '^guest reset'; then
		echo "FAIL: the guest reset itself, which a kernel booting without panic=-1 reasons does not: $reason"
	else
		echo "FAIL: the VM stopped: $reason (exit status $status)"
	fi
}

# progress_sample NAME: serial bytes, vCPU exits and a hash of 64 MiB from 16 MiB (the kernel's load
# address) of the VM whose API is $T/NAME.sock and whose serial output is $T/NAME.serial
progress_sample() {
	local bytes exits mem=none
	bytes=$(stat -c %s "$T/$1.serial" 2>/dev/null || echo 0)
	exits=$("$GLIDE" vm status --api "$T/$1.sock" --json 2>/dev/null |
		python3 -c 'import json,sys; print(json.load(sys.stdin)["exits"]["total"])' 2>/dev/null)
	"$GLIDE" vm memsave --api "$T/$1.sock" --addr 16M --size 64M --to "$T/$1.mem" >/dev/null 2>&1 &&
		mem=$(md5sum <"$T/$1.mem" | cut -c1-12)
	rm -f "$T/$1.mem"
	echo "$bytes ${exits:-?} $mem"
}

# running_verdict SAMPLE1 SAMPLE2 WHAT: a guest still running at the end of its budget
running_verdict() {
	if [ "$1" != "$2" ]; then
		echo "SKIP: $3 but still making progress (serial bytes, exits, memory hash: $1 -> $2); the kernel runs at CPL 0, which this machine's nested KVM emulates 1000x slower (see KVM-HERE.md)"
	else
		echo "FAIL: $3 and made no progress in the last $PROGRESS_WINDOW s (serial bytes, exits, memory hash: $2)"
	fi
}

# 1. The verdict's rules, on guests that really stop and on lines they cannot produce here.
verdict_is() { # NAME EXPECTED-PREFIX LOG SERIAL STDERR STATUS
	local name="$1" want="$2" got
	got=$(verdict "$3" "$4" "$5" "$6")
	if [ "${got%%:*}" = "$want" ]; then pass "linux boot verdict: $name is $want (${got#*: })"
	else fail "linux boot verdict: $name should be $want, got: $got"; fi
}
run_stop_guest() { # NAME ELF: runs an elf-stop guest to its end (bounded)
	timeout 60 "$GLIDE" vm run --memory 64M --elf "$2" --api "$T/$1.sock" --serial "$T/$1.serial" --log "$T/$1.log" \
		>"$T/$1.out" 2>"$T/$1.err"
	echo $?
}
if [ -f "$G/elf-triple-fault.elf" ] && [ -f "$G/elf-sse-cpl0.elf" ]; then
	st=$(run_stop_guest tf "$G/elf-triple-fault.elf")
	if grep -q "triple fault on vCPU 0 at rip 0x[0-9a-f]*, CPL 0, 64-bit mode" "$T/tf.log"; then
		pass "linux boot verdict: the monitor logs a triple fault with where it happened: $(stop_reason "$T/tf.log")"
	else
		fail "linux boot verdict: triple-fault guest (exit $st): log says: $(tail -2 "$T/tf.log" | tr '\n' ' ')"
	fi
	verdict_is "a triple fault" FAIL "$T/tf.log" "$T/tf.serial" "$T/tf.err" "$st"
	st=$(run_stop_guest sse "$G/elf-sse-cpl0.elf")
	if [ "$st" = 37 ]; then
		skip "linux boot verdict: this KVM runs SSE at CPL 0 natively: no emulator limit to classify"
	elif grep -qE "$EMULATOR_LIMIT_RE.*instruction bytes 0f 57 c8" "$T/sse.log"; then
		pass "linux boot verdict: the monitor names the instruction the emulator could not run: $(stop_reason "$T/sse.log")"
		verdict_is "SSE at CPL 0 in the emulator" SKIP "$T/sse.log" "$T/sse.serial" "$T/sse.err" "$st"
	else
		fail "linux boot verdict: SSE-at-CPL-0 guest (exit $st): log says: $(tail -2 "$T/sse.log" | tr '\n' ' ')"
	fi
else
	fail "linux boot verdict: $G/elf-triple-fault.elf or elf-sse-cpl0.elf missing (run make)"
fi
: >"$T/none.serial"
echo "00:00:00.000 glide[1] monitor: VM stopped: vCPU 0: KVM internal error, suberror 1 (instruction emulation failed) at rip 0x401000, CPL 3, 64-bit mode, instruction bytes 0f 0b (exit status 2)" >"$T/cpl3.log"
verdict_is "an emulation failure at CPL 3" FAIL "$T/cpl3.log" "$T/none.serial" /dev/null 2
echo "00:00:00.000 glide[1] monitor: VM stopped: vCPU 1: KVM internal error, suberror 3 (exit while delivering an event) at rip 0xffffffff81000000, CPL 0, 64-bit mode, data 0x80000b0e (exit status 2)" >"$T/deliv.log"
verdict_is "KVM internal error suberror 3" FAIL "$T/deliv.log" "$T/none.serial" /dev/null 2
echo "00:00:00.000 glide[1] monitor: VM stopped: guest reset through the i8042 controller (exit status 0)" >"$T/reset.log"
echo "[    1.0] Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000009" >"$T/panic.serial"
verdict_is "a kernel panic" FAIL "$T/reset.log" "$T/panic.serial" /dev/null 0
echo "[    9.0] Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)" >"$T/noroot.serial"
verdict_is "the panic for the missing root file system" PASS "$T/reset.log" "$T/noroot.serial" /dev/null 0
verdict_is "a reset without a panic" FAIL "$T/reset.log" "$T/none.serial" /dev/null 0
: >"$T/empty.log"
echo "glide: kernel /x: not a bzImage (missing HdrS signature)" >"$T/startup.err"
verdict_is "a monitor that does not start" FAIL "$T/empty.log" "$T/none.serial" "$T/startup.err" 1

# A hung guest and a busy one, sampled 2 s apart.
sample_guest() { # NAME ARGS...: starts a guest, prints two progress samples 2 s apart, stops it
	local name="$1"; shift
	start_vm "$name" --serial "$T/$name.serial" "$@" || { echo "monitor did not start"; return; }
	sleep 1
	local a b
	a=$(progress_sample "$name"); sleep 2; b=$(progress_sample "$name")
	"$GLIDE" vm shutdown --api "$T/$name.sock" >/dev/null 2>&1
	local pid_var="PID_$name" # started in this subshell: the test's cleanup does not know it
	wait_for 10 bash -c "! kill -0 ${!pid_var} 2>/dev/null" || kill -9 "${!pid_var}" 2>/dev/null
	echo "$a|$b"
}
if [ -f "$G/elf-hang.elf" ] && [ -f "$G/ab.img" ]; then
	s=$(sample_guest hang --memory 256M --elf "$G/elf-hang.elf")
	v=$(PROGRESS_WINDOW=2 running_verdict "${s%|*}" "${s#*|}" "no banner")
	[ "${v%%:*}" = FAIL ] && pass "linux boot verdict: a guest that hangs is FAIL (${v#*: })" ||
		fail "linux boot verdict: a hung guest (elf-hang) should be FAIL, got: $v"
	s=$(sample_guest busy --memory 256M --boot "$G/ab.img")
	v=$(PROGRESS_WINDOW=2 running_verdict "${s%|*}" "${s#*|}" "no banner")
	[ "${v%%:*}" = SKIP ] && pass "linux boot verdict: a guest still writing memory is making progress (${v#*: })" ||
		fail "linux boot verdict: a busy guest (ab) should count as progressing, got: $v"
else
	fail "linux boot verdict: $G/elf-hang.elf or ab.img missing (run make)"
fi

# 2. The kernel.
kernel=$(ls /boot/vmlinuz-*cloud-amd64 2>/dev/null | tail -1)
if [ -z "$kernel" ]; then
	# fetch the Debian cloud kernel package without installing it
	pkg=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null | awk '/Depends: linux-image/ {print $2; exit}')
	if [ -n "$pkg" ] && (cd "$T" && timeout 120 apt-get download "$pkg" >/dev/null 2>&1); then
		dpkg-deb -x "$T"/linux-image-*.deb "$T/k" && kernel=$(ls "$T"/k/boot/vmlinuz-* 2>/dev/null | tail -1)
	fi
fi
[ -n "$kernel" ] || { skip "linux boot: no Debian cloud kernel here and it could not be downloaded (apt-get download linux-image-cloud-amd64)"; exit 0; }

"$GLIDE" vm run --memory 512M --vcpus 2 --kernel "$kernel" --cmdline "console=ttyS0 earlyprintk=serial,ttyS0 panic=-1" \
	--api "$T/linux.sock" --serial "$T/linux.serial" --log "$T/linux.log" >"$T/linux.out" 2>"$T/linux.err" &
pid=$!
PIDS+=($pid)
start=$SECONDS
end=$((start + WAIT))
banner_at="" sample1=""
while [ $SECONDS -lt $end ] && kill -0 $pid 2>/dev/null; do
	if [ -z "$banner_at" ] && grep -aq "Linux version" "$T/linux.serial" 2>/dev/null; then banner_at=$((SECONDS - start)); fi
	grep -aqE "$CRASH_RE" "$T/linux.serial" 2>/dev/null && break # a panic reboots (panic=-1); an oops may go on
	if [ -z "$sample1" ] && [ $SECONDS -ge $((end - PROGRESS_WINDOW)) ]; then sample1=$(progress_sample linux); fi
	sleep 1
done
[ -z "$banner_at" ] && grep -aq "Linux version" "$T/linux.serial" 2>/dev/null && banner_at=$((SECONDS - start))
running=0
kill -0 $pid 2>/dev/null && running=1
if [ $running = 1 ]; then
	[ -n "$sample1" ] || sample1=$(progress_sample linux)
	sample2=$(progress_sample linux)
	kill $pid 2>/dev/null
	wait_for 10 bash -c "! kill -0 $pid 2>/dev/null"
	status=running
else
	wait $pid
	status=$?
fi
kname=$(basename "$kernel")
last_line=$(grep -a . "$T/linux.serial" 2>/dev/null | tail -1 | tr -d '\r' | cut -c1-160)

if [ -n "$banner_at" ]; then
	pass "linux boot: $kname printed its banner on COM1 after $banner_at s: $(grep -a -m1 -o 'Linux version [^ ]*' "$T/linux.serial")"
fi
if grep -aq "Allowing 2 CPUs" "$T/linux.serial"; then
	pass "linux boot: the kernel found 2 CPUs in the ACPI MADT"
fi
if [ $running = 1 ] && grep -aqE "$CRASH_RE" "$T/linux.serial"; then
	v=$(verdict "$T/linux.log" "$T/linux.serial" "$T/linux.err" running)
elif [ $running = 1 ]; then
	if [ -n "$banner_at" ]; then what="boot not finished within $WAIT s"
	else what="no banner within $WAIT s (last line: ${last_line:-none})"; fi
	v=$(running_verdict "$sample1" "$sample2" "$what")
else
	v=$(verdict "$T/linux.log" "$T/linux.serial" "$T/linux.err" "$status")
fi
msg="linux boot: ${v#*: }"
[ -n "$banner_at" ] && [ "${v%%:*}" = SKIP ] && msg="linux boot: after the banner (last line: ${last_line:-none}): ${v#*: }"
case "${v%%:*}" in
PASS) pass "$msg" ;;
SKIP) skip "$msg" ;;
*) fail "$msg" ;;
esac
if [ -z "$banner_at" ] && [ "${v%%:*}" = PASS ]; then
	fail "linux boot: the kernel stopped as expected but its banner never appeared on COM1"
fi
