#!/usr/bin/env bash
# The netlink half of unit_hostnet again, under a kernel that has bridge
# VLAN filtering: the test machines' kernel is built without
# CONFIG_BRIDGE_VLAN_FILTERING, so there unit_hostnet can only check that
# the VLAN calls fail with a clear message and SKIPs the VLAN checks.
#
# Boots the Debian 12 cloud kernel (downloaded with apt-get download, as
# tests/test_linux_boot.sh does, and kept in $GLIDE_BUILD/hostnet-kernel)
# in QEMU with TCG, from an initramfs holding build/tests/unit_hostnet,
# the libraries it links, the kernel's bridge, tun and tbf modules, and a
# static init (tests/hostnet_vm_init.c) that loads them and runs the test.
# Every result line of the test comes back prefixed with the kernel it ran
# on; among them the VLAN access ports read back through netlink and the
# frames between taps in VLAN 10 and 20. No network device reaches the
# host: the guest has none, and the test makes its own namespace anyway.
# run.sh timeout: 600
. "$(dirname "$0")/lib.sh"
UNIT="$GLIDE_BUILD/tests/unit_hostnet"
KDIR="$GLIDE_BUILD/hostnet-kernel"
BOOT_LIMIT_S=300 # TCG boots the cloud kernel in about 10 s on the test machines

[ -x "$UNIT" ] || { fail "hostnet under a VLAN-filtering kernel: $UNIT missing (run make)"; exit 0; }
command -v qemu-system-x86_64 >/dev/null || { skip "hostnet under a VLAN-filtering kernel: qemu-system-x86_64 not installed"; exit 0; }
echo 'int main(void){return 0;}' | cc -static -x c -o "$T/static-probe" - 2>/dev/null ||
	{ skip "hostnet under a VLAN-filtering kernel: cc cannot link a static program (libc6-dev)"; exit 0; }

# 1. The kernel and its modules.
kernel=$(ls "$KDIR"/k/boot/vmlinuz-* 2>/dev/null | tail -1)
if [ -z "$kernel" ]; then
	pkg=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null | awk '/Depends: linux-image/ {print $2; exit}')
	mkdir -p "$KDIR"
	if [ -n "$pkg" ] && (cd "$KDIR" && timeout 120 apt-get download "$pkg" >/dev/null 2>&1); then
		dpkg-deb -x "$KDIR"/linux-image-*.deb "$KDIR/k" && rm -f "$KDIR"/linux-image-*.deb
		kernel=$(ls "$KDIR"/k/boot/vmlinuz-* 2>/dev/null | tail -1)
	fi
fi
[ -n "$kernel" ] || { skip "hostnet under a VLAN-filtering kernel: no Debian cloud kernel and it could not be downloaded (apt-get download linux-image-cloud-amd64)"; exit 0; }
kver=${kernel##*/vmlinuz-}
config="$KDIR/k/boot/config-$kver"
if ! grep -q '^CONFIG_BRIDGE_VLAN_FILTERING=y' "$config" 2>/dev/null; then
	skip "hostnet under a VLAN-filtering kernel: $kver is built without CONFIG_BRIDGE_VLAN_FILTERING"
	exit 0
fi

# 2. The initramfs: init, modules (dependencies first), the test and its libraries.
R="$T/root"
mkdir -p "$R"/{proc,sys,dev,tmp,modules}
cc -static -O2 -o "$R/init" tests/hostnet_vm_init.c 2>"$T/init.err" ||
	{ fail "hostnet under a VLAN-filtering kernel: building the init: $(head -3 "$T/init.err" | tr '\n' ' ')"; exit 0; }
for m in net/llc/llc net/802/stp net/bridge/bridge drivers/net/tun net/sched/sch_tbf; do
	f=$(ls "$KDIR/k/lib/modules/$kver/kernel/$m".ko* 2>/dev/null | head -1)
	[ -n "$f" ] || continue # built in
	case "$f" in
	*.xz) xz -dc "$f" >"$R/modules/${m##*/}.ko" ;;
	*.zst) zstd -qdc "$f" >"$R/modules/${m##*/}.ko" ;;
	*) cp "$f" "$R/modules/${m##*/}.ko" ;;
	esac
	echo "${m##*/}.ko" >>"$R/modules/order"
done
cp "$UNIT" "$R/unit_hostnet"
for lib in $(ldd "$UNIT" | grep -oE '/[^ ]+'); do
	mkdir -p "$R$(dirname "$lib")"
	cp -L "$lib" "$R$lib"
done
python3 - "$R" "$T/initrd.cpio" <<'PY' || { fail "hostnet under a VLAN-filtering kernel: writing the initramfs"; exit 0; }
# a newc cpio archive of a directory, as the kernel unpacks an initramfs
import os, stat, sys
root, out = sys.argv[1], sys.argv[2]
ino = 0
def entry(f, name, mode, data, nlink):
    global ino
    ino += 1
    n = name.encode() + b"\0"
    h = b"070701" + b"".join(b"%08X" % v for v in (ino, mode, 0, 0, nlink, 0, len(data), 0, 0, 0, 0, len(n), 0))
    f.write(h + n + b"\0" * (-(len(h) + len(n)) % 4) + data + b"\0" * (-len(data) % 4))
with open(out, "wb") as f:
    for d, dirs, files in os.walk(root):
        dirs.sort()
        for name in dirs + sorted(files):
            p = os.path.join(d, name)
            st = os.lstat(p)
            data = os.readlink(p).encode() if stat.S_ISLNK(st.st_mode) else open(p, "rb").read() if stat.S_ISREG(st.st_mode) else b""
            entry(f, os.path.relpath(p, root), st.st_mode, data, 2 if stat.S_ISDIR(st.st_mode) else 1)
    entry(f, "TRAILER!!!", 0, b"", 1)
PY

# 3. Boot it and collect the results.
timeout --kill-after=10 "$BOOT_LIMIT_S" qemu-system-x86_64 -accel tcg -cpu max -m 512 -smp 1 -nographic -no-reboot \
	-nic none -kernel "$kernel" -initrd "$T/initrd.cpio" -append "console=ttyS0 panic=-1 quiet" \
	>"$T/serial.log" 2>&1
rc=$?
tr -d '\r' <"$T/serial.log" >"$T/serial.txt"
sed -n 's/^\(PASS\|FAIL\|SKIP\) hostnet: /\1 hostnet (kernel '"$kver"'): /p' "$T/serial.txt"
status=$(sed -n 's/^init: unit_hostnet exit status \([0-9]*\)$/\1/p' "$T/serial.txt")
grep '^init: cannot' "$T/serial.txt" | sed 's/^/    /'
if [ -z "$status" ]; then
	fail "hostnet under kernel $kver: the guest did not finish the test (qemu status $rc): $(grep -m1 -E 'Kernel panic|init: ' "$T/serial.txt")"
elif [ "$status" != 0 ] && ! grep -q '^FAIL ' "$T/serial.txt"; then
	fail "hostnet under kernel $kver: unit_hostnet exited with status $status without a FAIL line"
fi
if grep -q '^SKIP hostnet: VLAN' "$T/serial.txt"; then
	fail "hostnet under kernel $kver: the VLAN checks were skipped on a kernel with CONFIG_BRIDGE_VLAN_FILTERING"
fi
