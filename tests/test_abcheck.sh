#!/usr/bin/env bash
# abcheck on synthetic dumps: clean parts, one step down per part, the
# 0xff -> 0x00 wrap, a lost page, two step downs in one part, a step up, a
# part never written (--require-progress), many bad pages, JSON output and
# usage errors. Needs no KVM.
. "$(dirname "$0")/lib.sh"
AB="$GLIDE_BUILD/tools/abcheck"
[ -x "$AB" ] || { fail "abcheck: $AB missing (run make)"; exit 0; }

# mkdump FILE PAGE_SIZE PART... : each PART is "v1xN1,v2xN2,..." (first bytes
# of consecutive pages, hex values); the rest of every page is random.
mkdump() {
	python3 - "$@" <<'EOF'
import os, sys
path, page = sys.argv[1], int(sys.argv[2])
out = bytearray()
for part in sys.argv[3:]:
    for run in part.split(","):
        v, n = run.split("x")
        for _ in range(int(n)):
            p = bytearray(os.urandom(page))
            p[0] = int(v, 16)
            out += p
open(path, "wb").write(out)
EOF
}

# expect NAME EXIT-CODE OUTPUT-REGEX DUMP ARGS...
expect() {
	local name="$1" want="$2" re="$3"; shift 3
	timeout 60 "$AB" "$@" >"$T/out" 2>&1
	local rc=$?
	if [ "$rc" = "$want" ] && grep -Eq -- "$re" "$T/out"; then
		pass "abcheck $name: exit $rc, $(tail -1 "$T/out")"
	else
		fail "abcheck $name: exit $rc (want $want), output: $(head -c 400 "$T/out" | tr '\n' '|')"
	fi
}

mkdump "$T/clean" 4096 05x64 05x64
expect "clean, one value" 0 "OK: 2 part\(s\) of 64 pages, 0 bad" "$T/clean" --parts 2 --require-progress

mkdump "$T/step" 4096 06x10,05x54 09x63,08x1
expect "one step down in each part" 0 "part 1: .*0x09 up to page 126, then 0x08: clean" "$T/step" --parts 2

mkdump "$T/wrap" 4096 00x30,ffx34
expect "wrap 0xff -> 0x00 is a step down" 0 "0x00 up to page 29, then 0xff: clean" "$T/wrap" --require-progress

mkdump "$T/lost" 4096 05x64 07x20,06x1,07x9,06x34
expect "lost page" 1 "bad page 84 \(offset 0x54000, part 1\): expected 0x07, found 0x06" "$T/lost" --parts 2
expect "lost page, the other part clean" 1 "part 0: pages 0-63, all 0x05: clean" "$T/lost" --parts 2

mkdump "$T/two" 4096 07x20,06x20,05x24
expect "two step downs in one part" 1 "FAIL: .* 20 bad page" "$T/two"

mkdump "$T/up" 4096 05x20,06x44
expect "step up" 1 "FAIL: .* 20 bad page" "$T/up"

mkdump "$T/jump" 4096 09x20,05x44
expect "step down by more than one" 1 "FAIL" "$T/jump"

mkdump "$T/zero" 4096 03x32 00x32
expect "part never written, --require-progress" 1 "never written" "$T/zero" --parts 2 --require-progress
expect "part never written, no --require-progress" 0 "OK" "$T/zero" --parts 2

mkdump "$T/many" 4096 05x40,20x1,05x1,21x1,05x1,22x1,05x1,23x1,05x1,24x1,05x1,25x1,05x1,26x1,05x1,27x1,05x1,28x1,05x1,29x1,05x1,2ax1,05x1,2bx1,05x1,2cx1,05x1,2dx1,05x1,2ex1,05x1,2fx1,05x1,30x1,05x1,31x1,05x1,32x1,05x1,33x1,05x1,34x1,05x1
expect "many bad pages, 20 listed" 1 "\.\.\. and 1 more bad page" "$T/many"

mkdump "$T/small" 512 05x10,04x22
expect "--page-size 512" 0 "OK: 1 part\(s\) of 32 pages" "$T/small" --page-size 512

# a single flipped byte in a real-looking dump: in the first byte of a page
# it is found, anywhere else it is not the A-B check's business
mkdump "$T/flip" 4096 10x100,0fx156
python3 -c 'import sys; f=open(sys.argv[1],"r+b"); f.seek(4096*200); f.write(b"\x42")' "$T/flip"
expect "one corrupted first byte" 1 "bad page 200 \(offset 0xc8000, part 0\): expected 0x0f, found 0x42" "$T/flip"

timeout 60 "$AB" "$T/lost" --parts 2 --json >"$T/json" 2>&1
if python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
assert d["ok"] is False and d["bad_pages"] == 1, d
b = d["listed"][0]
assert (b["page"], b["offset"], b["part"], b["expected"], b["found"]) == (84, 84 * 4096, 1, 7, 6), b
assert d["part"][1]["high"] == 7 and d["part"][1]["low"] == 6 and d["part"][1]["step_page"] == 30, d["part"][1]
' "$T/json" 2>"$T/err"; then pass "abcheck --json reports the lost page"; else fail "abcheck --json: $(cat "$T/err" "$T/json" | head -c 400)"; fi

# usage and I/O errors: exit 2 with one line
expect "missing dump" 2 "cannot open" "$T/nonexistent"
expect "--parts 0" 2 "--parts" "$T/clean" --parts 0
expect "dump smaller than the parts" 2 "less than one 4096-byte page per part" "$T/clean" --parts 1000
expect "unknown option" 2 "unknown or incomplete option" "$T/clean" --bogus
expect "no dump" 2 "need one DUMP"

# --touch: the touch guest's fill, word by word (touch_word in guests/virtio/guest_abi.h)
python3 - "$T/touch" <<'PY'
import struct, sys
start, pages = 16 << 20, 64
w = bytearray()
for a in range(start, start + pages * 4096, 8):
    w += struct.pack("<Q", ((a ^ 0x676c6964652d7475) * 0x9e3779b97f4a7c15) & (2**64 - 1))
open(sys.argv[1], "wb").write(w)
PY
expect "--touch: a clean fill" 0 "OK: 64 pages from 0x1000000, 0 bad" "$T/touch" --touch 16M
cp "$T/touch" "$T/touch.bad"
printf '\x01' | dd of="$T/touch.bad" bs=1 seek=$((5 * 4096 + 4095)) conv=notrunc 2>/dev/null
expect "--touch: one changed byte (the page's last)" 1 "bad page at guest-physical 0x1005000" "$T/touch.bad" --touch 16M
expect "--touch: the dump taken at another address" 1 "64 bad" "$T/touch" --touch 32M
expect "--touch below 16 MiB" 2 "16 MiB or above" "$T/touch" --touch 1M
expect "--touch with --parts" 2 "takes only a DUMP" "$T/touch" --touch 16M --parts 2
