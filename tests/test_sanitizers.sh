#!/usr/bin/env bash
# Sanitizer pass (issues 10 and 11): builds build-asan with `make asan`
# (AddressSanitizer, LeakSanitizer and UBSan, UB fatal) and runs the unit
# tests and the shell tests against it: the monitor, migration and boot
# tests, and the host agent and controller tests (those two daemons run for
# months, so their leaks matter most). One PASS/FAIL line per sub-test,
# and one FAIL line per sanitizer report (leak, memory error, undefined
# behaviour) written by any glide process the sub-test started, background
# monitors, agents and controllers included: every process logs its reports
# to a file of the sub-test's report directory (log_path), read after the
# sub-test once every process of it has exited (one still running 30 s
# after its test ended is a FAIL, then stopped). Reports are kept under
# /tmp/glide-sanitizer-reports.* when there are some, with the whole output
# of every sub-test that failed.
# GLIDE_SANITIZER_TESTS="unit_state test_monitor ..." runs a subset.
#
# Left out, and why:
#   test_fuzz_smoke   builds its own targets with clang (libFuzzer with
#                     ASan and UBSan); an asan glide would add nothing
#   test_guests_qemu  the VMM under test is QEMU; of glide it runs only
#                     abcheck (covered here by test_abcheck and every A-B
#                     check) and hbread on QEMU's dumps
#   test_linux_boot   waits minutes for a Linux banner that KVM's emulator
#                     does not reach on these hosts (reports SKIP), and an
#                     ASan monitor would only make that wait longer
# A new test_*.sh runs here once it is added to the list below, which
# should stay within about 20 minutes on 2 cores (issue 11).
# Tests that would take too long under ASan reduce their repetitions when
# GLIDE_SANITIZER is set, and say so in their PASS lines.
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
subtests+=(test_abcheck test_boot test_monitor test_monitor_hardening test_migrate test_migrate_flood
	test_host_multihost test_center_basic test_center_hardening test_migrate_verify test_center_in_doubt
	test_host_networks test_disk_migrate test_disk_inflight test_net_migrate test_guests_virtio_glide test_io_complete test_host_netcheck
	test_move_disk)
[ -n "${GLIDE_SANITIZER_TESTS:-}" ] && read -r -a subtests <<<"$GLIDE_SANITIZER_TESTS"

keep="" whole=""
# keep_dir: makes the directory that keeps reports (once)
keep_dir() { [ -n "$keep" ] || keep=$(mktemp -d /tmp/glide-sanitizer-reports.XXXXXX); }
# processes_of DIR: pids of the processes whose sanitizer log_path is in
# DIR (every glide process a sub-test started inherits it)
processes_of() {
	grep -lasF "log_path=$1/asan" /proc/[0-9]*/environ 2>/dev/null | sed 's|^/proc/\([0-9]*\)/environ$|\1|'
}
# wait_processes NAME DIR: waits (bounded) until every process of the
# sub-test has exited, since LeakSanitizer reports at exit; a process still
# there after 30 s is a FAIL (tests must stop what they start), then stopped
# with SIGTERM (its leak check runs) and, 10 s later, SIGKILL
wait_processes() {
	local name="$1" dir="$2" end=$((SECONDS + 30)) left p
	while left=$(processes_of "$dir") && [ -n "$left" ] && [ $SECONDS -lt $end ]; do sleep 0.2; done
	[ -n "$left" ] || return 0
	for p in $left; do
		fail "$name under ASan+UBSan: process $p still running 30 s after the test ended: $(tr '\0' ' ' </proc/$p/cmdline 2>/dev/null | cut -c1-160)"
		kill "$p" 2>/dev/null
	done
	end=$((SECONDS + 10))
	while left=$(processes_of "$dir") && [ -n "$left" ] && [ $SECONDS -lt $end ]; do sleep 0.2; done
	for p in $left; do kill -9 "$p" 2>/dev/null; done
}
# report_summary FILE: "what at function file:line" from a sanitizer report
report_summary() {
	local f="$1" what where
	what=$(grep -m1 -E 'ERROR: [A-Za-z]+Sanitizer|runtime error:' "$f" | sed -E 's/^==[0-9]+==//; s/^ *//')
	[ -n "$what" ] || what=$(grep -m1 -v '^[ =]*$' "$f")
	# the first frame in glide's own code of each stack in the report (a
	# leak report has one per leaked allocation site): the distinct ones
	where=$(awk '/^(Direct|Indirect) leak|ERROR:|runtime error:|^[A-Z]+ of size|freed by|allocated by/ { want = 1; next }
		want && / in .* (\/[^ ]*\/)?(src|tools|tests)\/[^ ]*:[0-9]+/ { print; want = 0 }' "$f" |
		sed -E 's/.* in ([^ ]+) (.*\/)?((src|tools|tests)\/[^ ]*)$/\1 \3/' | awk '!seen[$0]++' | head -4 | paste -sd';' | sed 's/;/; /g')
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
	# a failed sub-test keeps its whole output with the reports
	if [ "$nf" -gt 0 ] || [ $rc -ne 0 ] || { [ "$np" -eq 0 ] && [ "$ns" -eq 0 ]; }; then
		keep_dir
		printf '%s\n' "$out" >"$keep/$name.out"
		cp "$T/$name.stderr" "$keep/$name.stderr"
		whole=" [whole output: $keep/$name.out, .stderr]"
	fi
	if [ "$nf" -gt 0 ]; then
		fail "$name under ASan+UBSan: $nf of $((np + nf)) checks failed in $secs s: $(grep '^FAIL ' <<<"$out" | cut -c6- | cut -c1-160 | head -3 | paste -sd'|' | sed 's/|/ | /g')$whole"
	elif [ $rc -ne 0 ]; then
		fail "$name under ASan+UBSan: exited with status $rc after $secs s: $(tail -2 "$T/$name.stderr" | tr '\n' ' ' | head -c 200)$whole"
	elif [ "$np" -eq 0 ] && [ "$ns" -gt 0 ]; then
		: # skipped as a whole (no /dev/kvm): its SKIP lines above say why
	elif [ "$np" -eq 0 ]; then
		fail "$name under ASan+UBSan: no check ran ($secs s)$whole"
	else
		pass "$name under ASan+UBSan: $np checks passed in $secs s"
	fi
	whole=""
	wait_processes "$name" "$reports"
	for f in "$reports"/asan.*; do
		[ -f "$f" ] || continue
		keep_dir
		cp "$f" "$keep/$name.$(basename "$f")"
		fail "sanitizer report from $name (pid ${f##*.}): $(report_summary "$f") [$keep/$name.$(basename "$f")]"
	done
done
