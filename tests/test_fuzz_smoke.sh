#!/usr/bin/env bash
# Fuzz smoke test: builds the libFuzzer targets of tests/fuzz/ (clang with
# -fsanitize=fuzzer,address,undefined), generates seed corpora (from code,
# plus a real snapshot of a small VM when /dev/kvm and glide are here) and
# runs each target of tests/fuzz/Makefile (TARGETS) for the same fixed
# time, as many at once as there are CPUs, bounded by a timeout, its corpus starting with the seeds and the
# regression inputs of tests/fuzz/regress/TARGET/ (inputs that once found
# a defect). A crash, leak, UB report, broken invariant or timeout is a
# FAIL with the path of the reproducer. tests/fuzz/run-long.sh runs them
# for hours.
# FUZZ_SECONDS (default 8) sets the time per target; FUZZ_OUT the build dir
# (default $GLIDE_BUILD/fuzz, reused between runs). The whole test takes
# about 1.5 minutes on 2 cores from a clean build.
source "$(dirname "$0")/lib.sh"
cd "$TESTS_DIR/.."

secs="${FUZZ_SECONDS:-8}"
out="${FUZZ_OUT:-$GLIDE_BUILD/fuzz}"  # incremental: kept between runs
targets=$(sed -n 's/^TARGETS *:= *//p' tests/fuzz/Makefile | sed 's/fuzz_//g') # every target, named without fuzz_

if ! command -v clang >/dev/null 2>&1; then
	skip "fuzz targets: clang not installed (apt-get install clang libclang-rt-14-dev)"
	exit 0
fi
if ! echo 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n) { return 0; }' |
	clang -x c -fsanitize=fuzzer,address,undefined -o "$T/probe" - >"$T/probe.out" 2>&1; then
	skip "fuzz targets: clang cannot link libFuzzer here ($(head -1 "$T/probe.out"))"
	exit 0
fi
if ! make -C tests/fuzz OUT="$out" -j"$(nproc)" >"$T/build.out" 2>&1; then
	fail "fuzz targets build: $(grep -m3 -E 'error|Error' "$T/build.out" | tr '\n' ' ')"
	exit 0
fi
pass "fuzz targets build"

# Seeds: from code, plus a real snapshot of a small running VM if possible.
snap=""
if have_kvm && [ -x "$GLIDE" ] && [ -f "$GLIDE_BUILD/guests/guest.img" ]; then
	if start_vm s --memory 2M --vcpus 2 --boot "$GLIDE_BUILD/guests/guest.img" &&
		"$GLIDE" vm snapshot --api "$T/s.sock" --to "$T/real.snap" >"$T/snap.out" 2>&1; then
		snap="$T/real.snap"
	fi
	"$GLIDE" vm shutdown --api "$T/s.sock" >/dev/null 2>&1
fi
if ! "$out/seedgen" "$T/seeds" $snap >"$T/seed.out" 2>&1; then
	fail "fuzz seed corpora: $(cat "$T/seed.out")"
	exit 0
fi
[ -n "$snap" ] && pass "fuzz seeds include a real snapshot" || skip "fuzz seeds: no real snapshot (no /dev/kvm or glide build); seeds from code only"

# fuzz_one TARGET: runs one target for $secs seconds; its status in $T/rc-TARGET
fuzz_one() {
	local t="$1"
	mkdir -p "$T/corpus-$t" "$T/art-$t"
	cp "$T/seeds/$t"/* "$T/corpus-$t/" 2>/dev/null
	cp tests/fuzz/regress/"$t"/* "$T/corpus-$t/" 2>/dev/null
	# TMPDIR: fuzz_host_api's data directory, removed with $T even after a crash
	TMPDIR="$T" timeout --kill-after=5 $((secs + 30)) "$out/fuzz_$t" -max_total_time="$secs" -timeout=10 \
		-rss_limit_mb=2048 -max_len=70000 -artifact_prefix="$T/art-$t/" "$T/corpus-$t" >"$T/fuzz-$t.log" 2>&1
	echo $? >"$T/rc-$t"
}
# as many targets at once as there are CPUs (each is one process)
jobs_max=$(nproc)
for t in $targets; do
	while [ "$(jobs -rp | wc -l)" -ge "$jobs_max" ]; do wait -n; done
	fuzz_one "$t" &
done
wait
for t in $targets; do
	rc=$(cat "$T/rc-$t" 2>/dev/null || echo "?")
	runs=$(grep -oE '^Done [0-9]+ runs' "$T/fuzz-$t.log" | grep -oE '[0-9]+')
	if [ "$rc" = 0 ]; then
		pass "fuzz_$t: ${runs:-?} inputs in ${secs}s, no crash, leak or UB"
	else
		art=$(ls "$T/art-$t" 2>/dev/null | head -1)
		why=$(grep -m1 -E 'ERROR: |runtime error|SUMMARY' "$T/fuzz-$t.log")
		keep="/tmp/glide-fuzz-$t-$$"
		cp -r "$T/art-$t" "$keep" 2>/dev/null; cp "$T/fuzz-$t.log" "$keep/" 2>/dev/null
		fail "fuzz_$t: status $rc: ${why:-see log} (reproducer and log kept in $keep${art:+/$art})"
	fi
done
