#!/usr/bin/env bash
# guestcfg on the ELF guests (netecho, diskab): each option lands in the
# config block found by its magic and nothing else in the file changes; the
# options of the other guest, of boot images and bad values are refused
# with exit 2; a file without the block, or with the magic twice, too.
# Needs no KVM.
. "$(dirname "$0")/lib.sh"
CFG="$GLIDE_BUILD/tools/guestcfg"
G="$GLIDE_BUILD/guests"
for f in "$CFG" "$G/netecho.elf" "$G/diskab.elf" "$G/guest.img"; do
	[ -e "$f" ] || { fail "guestcfg ELF: $f missing (run make)"; exit 0; }
done

# block FILE: the config block's fields as "version size guest flags a.b.c.d prefix port flush block_size",
# and every byte outside it must equal the same byte of REFERENCE (second argument)
block() {
	python3 - "$@" <<'EOF'
import struct, sys
data, ref = open(sys.argv[1], "rb").read(), open(sys.argv[2], "rb").read()
off = data.find(b"GLIDEVCF")
assert off >= 0 and data.find(b"GLIDEVCF", off + 1) < 0, "magic not found exactly once"
assert len(data) == len(ref) and data[:off] == ref[:off] and data[off + 32:] == ref[off + 32:], "bytes outside the block changed"
v, size, guest, flags, _, ip, prefix, _, port, flush, bs = struct.unpack_from("<HHBBH4sBBHII", data, off + 8)
print(v, size, guest, flags, ".".join(str(b) for b in ip), prefix, port, flush, bs)
EOF
}

# expect_block NAME IN "FIELDS" ARGS...: guestcfg IN OUT ARGS succeeds and the block reads FIELDS
expect_block() {
	local name="$1" in="$2" want="$3" got; shift 3
	if ! timeout 30 "$CFG" "$in" "$T/out.elf" "$@" >"$T/cfg.out" 2>&1; then
		fail "guestcfg $name: exit $?: $(head -c 300 "$T/cfg.out")"
		return
	fi
	got=$(block "$T/out.elf" "$in" 2>&1)
	[ "$got" = "$want" ] && pass "guestcfg $name: $(cat "$T/cfg.out")" ||
		fail "guestcfg $name: block '$got', expected '$want'"
}

# expect_error NAME REGEX ARGS...: exit 2 and one line matching REGEX
expect_error() {
	local name="$1" re="$2"; shift 2
	timeout 30 "$CFG" "$@" >"$T/cfg.out" 2>&1
	local rc=$?
	if [ $rc = 2 ] && grep -Eq -- "$re" "$T/cfg.out" && [ "$(wc -l <"$T/cfg.out")" = 1 ]; then
		pass "guestcfg $name: exit 2, $(cat "$T/cfg.out")"
	else
		fail "guestcfg $name: exit $rc, $(head -c 300 "$T/cfg.out" | tr '\n' '|')"
	fi
}

N="$G/netecho.elf" D="$G/diskab.elf"
expect_block "netecho defaults kept" "$N" "1 32 1 0 10.77.0.2 24 7 0 0"
expect_block "netecho --ip with prefix, --udp-port" "$N" "1 32 1 0 10.1.2.3 16 9 0 0" --ip 10.1.2.3/16 --udp-port 9
expect_block "netecho --ip keeps the prefix" "$N" "1 32 1 0 192.168.7.1 24 7 0 0" --ip 192.168.7.1
expect_block "netecho --assign-bars yes" "$N" "1 32 1 1 10.77.0.2 24 7 0 0" --assign-bars yes
expect_block "diskab defaults kept" "$D" "1 32 2 0 0.0.0.0 0 0 256 4096"
expect_block "diskab --block-size, --flush-every, --assign-bars" "$D" "1 32 2 1 0.0.0.0 0 0 0 65536" \
	--block-size 64K --flush-every 0 --assign-bars yes
cp "$T/out.elf" "$T/d1.elf"
expect_block "diskab --assign-bars no on a patched file" "$T/d1.elf" "1 32 2 0 0.0.0.0 0 0 0 65536" --assign-bars no

expect_error "bad address" "--ip: '10.1.2/24' is not an IPv4 address" "$N" "$T/x" --ip 10.1.2/24
expect_error "prefix 33" "prefix '33' is not a number from 1 to 32" "$N" "$T/x" --ip 10.1.2.3/33
expect_error "--udp-port 0" "--udp-port: 0 is outside 1..65535" "$N" "$T/x" --udp-port 0
expect_error "--ip on diskab" "are for netecho, this is diskab" "$D" "$T/x" --ip 10.1.2.3
expect_error "--flush-every on netecho" "are for diskab, this is netecho" "$N" "$T/x" --flush-every 8
expect_error "--block-size not a power of two" "--block-size: 1000 is not a power of two" "$D" "$T/x" --block-size 1000
expect_error "--block-size above 1 MiB" "--block-size: 2097152 is not a power of two from 512 to 1048576" "$D" "$T/x" --block-size 2M
expect_error "--assign-bars maybe" "--assign-bars: 'maybe' is not yes or no" "$D" "$T/x" --assign-bars maybe
expect_error "--mode on an ELF guest" "an ELF guest; --mode" "$N" "$T/x" --mode ab
expect_error "--ip on a boot image" "only ELF guests" "$G/guest.img" "$T/x" --ip 10.1.2.3
expect_error "an ELF without the block" "occurs 0 times" "$GLIDE_BUILD/tools/abcheck" "$T/x"
cat "$N" "$N" >"$T/twice.elf"
expect_error "the magic twice" "occurs 2 times" "$T/twice.elf" "$T/x"
python3 -c 'import sys; d=bytearray(open(sys.argv[1],"rb").read()); o=d.find(b"GLIDEVCF"); d[o+8]=9; open(sys.argv[2],"wb").write(d)' "$N" "$T/v9.elf"
expect_error "unknown block version" "config block version 9" "$T/v9.elf" "$T/x"
[ ! -e "$T/x" ] && pass "guestcfg: no output file after an error" || fail "guestcfg: $T/x written despite errors"
