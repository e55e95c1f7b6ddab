#!/usr/bin/env bash
# abcheck --disk on crafted disk images (the layout diskab writes: a u64
# little-endian counter at the start of every block): clean with and
# without a step, the first pass under way, a fresh image, a lost write,
# two steps, a step up, a step down by two, counters near 2^64, a trailing
# partial block, --block, JSON, and usage and I/O errors. Needs no KVM.
. "$(dirname "$0")/lib.sh"
AB="$GLIDE_BUILD/tools/abcheck"
[ -x "$AB" ] || { fail "abcheck --disk: $AB missing (run make)"; exit 0; }

# mkimg FILE BLOCK_SIZE RUNS [EXTRA_BYTES]: RUNS is "v1xN1,v2xN2,..." (decimal
# counters of consecutive blocks); the rest of every block is random, as the
# rest of a real disk block may be anything
mkimg() {
	python3 - "$@" <<'EOF'
import os, struct, sys
path, block, runs = sys.argv[1], int(sys.argv[2]), sys.argv[3]
extra = int(sys.argv[4]) if len(sys.argv) > 4 else 0
out = bytearray()
for run in runs.split(","):
    v, n = run.split("x")
    for _ in range(int(n)):
        b = bytearray(os.urandom(block))
        b[0:8] = struct.pack("<Q", int(v))
        out += b
out += os.urandom(extra)
open(path, "wb").write(out)
EOF
}

# expect NAME EXIT-CODE OUTPUT-REGEX ARGS...
expect() {
	local name="$1" want="$2" re="$3"; shift 3
	timeout 60 "$AB" "$@" >"$T/out" 2>&1
	local rc=$?
	if [ "$rc" = "$want" ] && grep -Eq -- "$re" "$T/out"; then
		pass "abcheck --disk $name: exit $rc, $(tail -1 "$T/out")"
	else
		fail "abcheck --disk $name: exit $rc (want $want), output: $(head -c 500 "$T/out" | tr '\n' '|')"
	fi
}

mkimg "$T/even" 4096 7x64
expect "one value, no step" 0 "7 full pass\(es\), no step \(all blocks hold 7\): clean" --disk "$T/even" --require-progress
expect "one value, summary line" 0 "^abcheck: OK: disk of 64 blocks, 7 full pass\(es\), no step, 0 bad block\(s\)$" --disk "$T/even"

mkimg "$T/step" 4096 8x21,7x43
expect "one step down" 0 "pass 8 up to block 20 \(blocks 0-20 hold 8, 21-63 hold 7\): clean" --disk "$T/step"
expect "summary line" 0 "^abcheck: OK: disk of 64 blocks, 7 full pass\(es\), step at block 21, 0 bad block\(s\)$" --disk "$T/step"

mkimg "$T/first" 4096 1x1,0x63
expect "first pass under way" 0 "0 full pass\(es\), pass 1 up to block 0 .*: clean" --disk "$T/first" --require-progress

mkimg "$T/last" 4096 9x63,8x1
expect "step at the last block" 0 "pass 9 up to block 62 .*: clean" --disk "$T/last"

mkimg "$T/fresh" 4096 0x32
expect "fresh image, --require-progress" 1 "never written" --disk "$T/fresh" --require-progress
expect "fresh image" 0 "OK" --disk "$T/fresh"

mkimg "$T/lost" 4096 6x10,5x20,6x1,5x33
expect "a write lost after the step" 1 "bad block 30 \(offset 0x1e000\): expected 5, found 6" --disk "$T/lost"
mkimg "$T/lost2" 4096 6x10,5x1,6x20,5x33
expect "a write lost before the step" 1 "bad block 10 \(offset 0xa000\): expected 6, found 5" --disk "$T/lost2"

mkimg "$T/two" 4096 7x20,6x20,5x24
expect "two steps down" 1 "FAIL: .* 20 bad block\(s\)" --disk "$T/two"

mkimg "$T/up" 4096 5x20,6x44
expect "step up" 1 "FAIL: .* 20 bad block\(s\)" --disk "$T/up"

mkimg "$T/jump" 4096 9x20,7x44
expect "step down by two" 1 "FAIL" --disk "$T/jump"

# a wrapped counter is not a step: diskab's counter never wraps
mkimg "$T/wrap" 4096 0x10,18446744073709551615x54
expect "0 after 2^64-1 is not a step" 1 "FAIL: .* 10 bad block" --disk "$T/wrap"
mkimg "$T/top" 4096 18446744073709551615x10,18446744073709551614x54
expect "counters near 2^64" 0 "pass 18446744073709551615 up to block 9 .*: clean" --disk "$T/top"

mkimg "$T/many" 4096 3x40,90x1,3x1,91x1,3x1,92x1,3x1,93x1,3x1,94x1,3x1,95x1,3x1,96x1,3x1,97x1,3x1,98x1,3x1,99x1,3x1,100x1,3x1,101x1,3x1,102x1,3x1,103x1,3x1,104x1,3x1,105x1,3x1,106x1,3x1,107x1,3x1,108x1,3x1,109x1,3x1,110x1,3x1
expect "many bad blocks, 20 listed" 1 "\.\.\. and 1 more bad block" --disk "$T/many"

mkimg "$T/tail" 4096 4x10,3x10 1000
expect "trailing partial block" 0 "OK: .*\(a trailing partial block ignored\)" --disk "$T/tail"

mkimg "$T/small" 512 4x10,3x30
expect "--block 512" 0 "OK: disk of 40 blocks, 3 full pass\(es\), step at block 10" --disk "$T/small" --block 512

timeout 60 "$AB" --disk "$T/lost" --json >"$T/json" 2>&1
if python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
assert d["ok"] is False and d["disk"] is True and d["bad_blocks"] == 1, d
assert (d["blocks"], d["block_size"], d["high"], d["low"], d["passes"], d["step_block"]) == (64, 4096, 6, 5, 5, 10), d
b = d["listed"][0]
assert (b["block"], b["offset"], b["expected"], b["found"]) == (30, 30 * 4096, 5, 6), b
' "$T/json" 2>"$T/err"; then pass "abcheck --disk --json reports the lost write"; else fail "abcheck --disk --json: $(cat "$T/err" "$T/json" | head -c 400)"; fi

# usage and I/O errors: exit 2 with one line
expect "missing image" 2 "cannot open" --disk "$T/nonexistent"
expect "image smaller than a block" 2 "less than one 1048576-byte block" --disk "$T/tail" --block 1M
expect "--block not a power of two" 2 "--block" --disk "$T/step" --block 3000
expect "--block without --disk" 2 "give --disk" "$T/step" --block 4096
expect "--parts with --disk" 2 "--parts is for memory dumps" --disk "$T/step" --parts 2
expect "no image" 2 "need one IMAGE" --disk
