#!/usr/bin/env bash
# The virtio test guests (netecho, diskab) under glide's --elf PVH loader
# with no --nic / --disk: the PVH entry reaches ring 3 (its start line on
# COM1), the bus-0 scan through ports 0xCF8/0xCFC finds only the host
# bridge and the guest exits through the debug-exit port with 0x20 (glide
# exits 65); with 4 vCPUs only the bootstrap vCPU runs the guest. A config
# block with a bad value stops the guest with 0x25 (exit 75). The guests
# with glide's devices: test_net_migrate.sh, test_disk_migrate.sh.
. "$(dirname "$0")/lib.sh"
have_kvm || { skip "virtio guests under glide: /dev/kvm not accessible"; exit 0; }
G="$GLIDE_BUILD/guests"
for f in "$GLIDE" "$G/netecho.elf" "$G/diskab.elf"; do
	[ -e "$f" ] || { fail "virtio guests under glide: $f missing (run make)"; exit 0; }
done

# run_guest NAME ELF VCPUS: runs the guest to its end (60 s at most), status in RC, COM1 in $T/NAME.serial
run_guest() {
	rm -f "$T/$1.serial"
	timeout 60 "$GLIDE" vm run --memory 64M --vcpus "$3" --elf "$2" --api "$T/$1.sock" \
		--serial "$T/$1.serial" --log "$T/$1.log" >"$T/$1.out" 2>&1
	RC=$?
}

for guest in netecho diskab; do
	dev=$([ $guest = netecho ] && echo net || echo blk)
	for vcpus in 1 4; do
		name="$guest-$vcpus"
		run_guest "$name" "$G/$guest.elf" $vcpus
		starts=$(grep -c "^$guest: starting" "$T/$name.serial" 2>/dev/null)
		if [ "$RC" = 65 ] && [ "$starts" = 1 ] && grep -q "^$guest: error: no virtio-$dev PCI device on bus 0" "$T/$name.serial"; then
			pass "glide --elf $guest, $vcpus vCPU(s): ring 3 reached on the bootstrap vCPU only, '$(grep "^$guest: error" "$T/$name.serial")', exit status 65"
		else
			fail "glide --elf $guest, $vcpus vCPU(s): exit status $RC, $starts start line(s), COM1: $(head -c 300 "$T/$name.serial" | tr '\n' '|') log: $(tail -2 "$T/$name.log" | tr '\n' ' ')"
		fi
	done
done

# prefix /0 cannot come from guestcfg: patch the block directly
python3 -c 'import sys; d=bytearray(open(sys.argv[1],"rb").read()); o=d.find(b"GLIDEVCF"); d[o+0x14]=0; open(sys.argv[2],"wb").write(d)' \
	"$G/netecho.elf" "$T/bad.elf"
run_guest bad "$T/bad.elf" 1
if [ "$RC" = 75 ] && grep -q "^netecho: error: bad config block" "$T/bad.serial"; then
	pass "glide --elf netecho with prefix /0 in its config block: '$(grep '^netecho: error' "$T/bad.serial")', exit status 75"
else
	fail "glide --elf netecho with a bad config block: exit status $RC, COM1: $(head -c 300 "$T/bad.serial" | tr '\n' '|')"
fi
