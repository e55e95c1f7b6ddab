#!/usr/bin/env bash
# Boot sources and the shutdown paths: raw real-mode images (debug-exit
# status, i8042 reset), 64-bit ELF guests (long mode and PVH) on several
# vCPUs, and Linux through the 64-bit boot protocol.
. "$(dirname "$0")/lib.sh"
have_kvm || { skip "boot: /dev/kvm not accessible"; exit 0; }

run_to_exit() { # SECONDS ARGS... -> sets RC; serial in $T/serial
	local secs="$1"; shift
	rm -f "$T/serial" "$T/x.sock"
	timeout "$secs" "$GLIDE" vm run --api "$T/x.sock" --serial "$T/serial" "$@" >"$T/run.out" 2>&1
	RC=$?
}

# raw images written here: real-mode code, tiny because it is emulated
printf '\xb0\x05\xe6\xf4\xf4' > "$T/exit5.img"           # mov al,5; out 0xf4,al; hlt
run_to_exit 20 --memory 16M --boot "$T/exit5.img"
[ $RC = 11 ] && pass "debug-exit port: guest status 5 -> exit status 11" || fail "debug-exit: exit $RC: $(cat "$T/run.out")"
printf '\xb0\xfe\xe6\x64\xf4' > "$T/reset.img"           # mov al,0xfe; out 0x64,al; hlt
run_to_exit 20 --memory 16M --boot "$T/reset.img"
[ $RC = 0 ] && grep -q i8042 "$T/run.out" && pass "i8042 reset powers the VM off cleanly (exit 0)" || fail "i8042 reset: exit $RC"
# 3 vCPUs each print their index (ESI) on COM1, then the last one exits with 0x10 + its count
# (real mode: add si,'0'; mov dx,0x3f8; mov ax,si; out dx,al; jmp $)
printf '\x83\xc6\x30\xba\xf8\x03\x89\xf0\xee\xeb\xfe' > "$T/idx.img"
rm -f "$T/serial"
"$GLIDE" vm run --memory 16M --vcpus 3 --boot "$T/idx.img" --api "$T/idx.sock" --serial "$T/serial" >/dev/null 2>&1 &
PIDS+=($!)
wait_for 20 bash -c "[ \$(wc -c < '$T/serial' 2>/dev/null || echo 0) -ge 3 ]"
got=$(fold -w1 "$T/serial" 2>/dev/null | sort | tr -d '\n')
[ "$got" = 012 ] && pass "--boot: every vCPU starts at 0x7c00 with its index in ESI (got $got)" || fail "--boot vCPU index: got '$got'"
"$GLIDE" vm shutdown --api "$T/idx.sock" >/dev/null 2>&1

# 64-bit ELF guests
for elf in elf-hello elf-hello-pvh; do
	img="$GLIDE_BUILD/guests/$elf.elf"
	[ -f "$img" ] || { fail "$elf: $img missing"; continue; }
	for vcpus in 1 3; do
		run_to_exit 60 --memory 64M --vcpus $vcpus --elf "$img"
		n=$(grep -c "hello from elf vcpu" "$T/serial" 2>/dev/null)
		if [ $RC = 33 ] && [ "$n" = $vcpus ]; then pass "--elf $elf on $vcpus vCPU(s): $n greetings, exit 33"
		else fail "--elf $elf on $vcpus vCPU(s): exit $RC, $n greetings: $(head -3 "$T/serial")"; fi
	done
done
printf 'not an elf' > "$T/bad.elf"
run_to_exit 10 --memory 16M --elf "$T/bad.elf"
[ $RC = 1 ] && pass "--elf rejects a non-ELF file: $(tail -1 "$T/run.out")" || fail "--elf bad file: exit $RC"
printf 'MZ not a kernel' > "$T/bad.bz"
run_to_exit 10 --memory 64M --kernel "$T/bad.bz"
[ $RC = 1 ] && pass "--kernel rejects a non-bzImage: $(tail -1 "$T/run.out")" || fail "--kernel bad file: exit $RC"
