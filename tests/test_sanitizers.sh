#!/usr/bin/env bash
# Sanitizer pass (issue 10): builds build-asan with `make asan` (AddressSanitizer,
# LeakSanitizer and UBSan, UB fatal) and runs the unit tests and the
# monitor, migration and boot tests with it. One PASS/FAIL line per
# sub-test, and one FAIL line per sanitizer report (leak, memory error,
# undefined behaviour) written by any glide process the sub-test started,
# background monitors included: every process logs its reports to a file
# of the sub-test's report directory (log_path), read after the sub-test.
# Reports are kept under /tmp/glide-sanitizer-reports.* when there are some.
# GLIDE_SANITIZER_TESTS="unit_state test_monitor ..." runs a subset.
# run.sh timeout: 2400
source "$(dirname "$0")/lib.sh"
cd "$TESTS_DIR/.."
ROOT=$PWD
AB="$ROOT/build-asan"

# `make asan` from here, not as part of a make that called us
unset MAKEFLAGS MFLAGS MAKELEVEL
if ! make asan -j"$(nproc)" >"$T/build.out" 2>&1; then
	fail "sanitizer build (make asan): $(grep -m3 -E 'error:|\*\*\* ' "$T/build.out" | tr '\n' ' ')"
	exit 0
fi
pass "sanitizer build (make asan: -fsanitize=address,undefined, UB fatal)"

subtests=()
for t in "$AB"/tests/unit_*; do [ -x "$t" ] && subtests+=("$(basename "$t")"); done
subtests+=(test_boot test_monitor test_monitor_hardening test_migrate)
[ -n "${GLIDE_SANITIZER_TESTS:-}" ] && read -r -a subtests <<<"$GLIDE_SANITIZER_TESTS"

keep=""
# report_summary FILE: "what at function file:line" from a sanitizer report
report_summary() {
	local f="$1" what where
	what=$(grep -m1 -E 'ERROR: [A-Za-z]+Sanitizer|runtime error:' "$f" | sed -E 's/^==[0-9]+==//; s/^ *//')
	[ -n "$what" ] || what=$(grep -m1 -v '^[ =]*$' "$f")
	# the first frame in glide's own code
	where=$(grep -m1 -E '#[0-9]+ .* in .* (/[^ ]*/)?(src|tools|tests)/[^ ]*:[0-9]+' "$f" | sed -E 's/.* in ([^ ]+) (.*\/)?((src|tools|tests)\/[^ ]*)$/\1 \3/')
	echo "${what:0:200}${where:+ at $where}"
}

for name in "${subtests[@]}"; do
	reports="$T/reports/$name"
	mkdir -p "$reports" "$T/tmp"
	if [[ "$name" == unit_* ]]; then cmd=("$AB/tests/$name"); else cmd=(bash "tests/$name.sh"); fi
	t0=$SECONDS
	out=$(GLIDE="$AB/glide" GLIDE_BUILD="$AB" GLIDE_SANITIZER=1 GLIDE_TEST_TMP="$T/tmp" \
		ASAN_OPTIONS="detect_leaks=1:halt_on_error=1:abort_on_error=0:fast_unwind_on_malloc=0:log_path=$reports/asan" \
		LSAN_OPTIONS="suppressions=$ROOT/tests/lsan.supp:print_suppressions=0" \
		UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:log_path=$reports/asan" \
		timeout --kill-after=10 900 "${cmd[@]}" 2>"$T/$name.stderr")
	rc=$?
	secs=$((SECONDS - t0))
	np=$(grep -c '^PASS ' <<<"$out")
	nf=$(grep -c '^FAIL ' <<<"$out")
	ns=$(grep -c '^SKIP ' <<<"$out")
	grep '^SKIP ' <<<"$out" | sed "s/^SKIP /SKIP sanitizers: $name: /"
	if [ "$nf" -gt 0 ]; then
		fail "$name under ASan+UBSan: $nf of $((np + nf)) checks failed in $secs s: $(grep '^FAIL ' <<<"$out" | cut -c6- | cut -c1-160 | head -3 | paste -sd'|' | sed 's/|/ | /g')"
	elif [ $rc -ne 0 ]; then
		fail "$name under ASan+UBSan: exited with status $rc after $secs s: $(tail -2 "$T/$name.stderr" | tr '\n' ' ' | head -c 200)"
	elif [ "$np" -eq 0 ] && [ "$ns" -gt 0 ]; then
		: # skipped as a whole (no /dev/kvm): its SKIP lines above say why
	elif [ "$np" -eq 0 ]; then
		fail "$name under ASan+UBSan: no check ran ($secs s)"
	else
		pass "$name under ASan+UBSan: $np checks passed in $secs s"
	fi
	for f in "$reports"/asan.*; do
		[ -f "$f" ] || continue
		[ -n "$keep" ] || keep=$(mktemp -d /tmp/glide-sanitizer-reports.XXXXXX)
		cp "$f" "$keep/$name.$(basename "$f")"
		fail "sanitizer report from $name (pid ${f##*.}): $(report_summary "$f") [$keep/$name.$(basename "$f")]"
	done
done
