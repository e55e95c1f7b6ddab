#!/usr/bin/env bash
# Runs every test of glide and ends with "N passed, N failed, N skipped".
#
# Each test is a program under tests/ named test_*.sh (or a unit-test binary
# in build/tests/) that prints one line per check:
#   PASS name            a check that held
#   FAIL name: why       a check that did not
#   SKIP name: reason    a check that cannot run here (never counted as passed)
# A test program that prints none of these lines counts as one failure
# ("printed no result"), whatever its exit status; one that exits non-zero
# without printing FAIL, or runs out of time, counts as one failure too.
# Each test gets GLIDE_TEST_TIMEOUT seconds (default 900), or what its own
# line "# run.sh timeout: SECONDS" asks for (the sanitizer pass).
#
# Leftovers: every test runs with its own GLIDE_TEST_TMP directory (numbered
# in run order, beside NAME.stderr) and a
# marker GLIDE_TEST_RUN=<run>/<test> in its environment, which every process
# it starts inherits, also the VM monitors a host agent starts in their own
# session (and network namespace). When the test ends, or is killed at its
# timeout, every process that still carries the marker or names the test's
# directory on its command line is stopped (SIGTERM, then SIGKILL after
# 10 s) and listed: a monitor left spinning would skew every later test.
# Usage: tests/run.sh [PATTERN]   (only tests whose file name contains PATTERN;
#                                   a PATTERN that matches no test is an error)
set -u
cd "$(dirname "$0")/.."
export GLIDE="${GLIDE:-$PWD/build/glide}"
export GLIDE_BUILD="${GLIDE_BUILD:-$PWD/build}"
RUN_TMP="${GLIDE_TEST_TMP:-$(mktemp -d /tmp/glide-tests.XXXXXX)}"
RUN_ID="$$.$RANDOM$RANDOM"
pattern="${1:-}"
passed=0 failed=0 skipped=0 ran=0
skips=() failures=() durations=()
per_test_timeout="${GLIDE_TEST_TIMEOUT:-900}"
LEFTOVER_GRACE_S=10

# leftover_pids MARKER DIR: processes (other than this script) whose
# environment holds GLIDE_TEST_RUN=MARKER or whose command line names DIR/
leftover_pids() {
	local want="GLIDE_TEST_RUN=$1" dir="$2/" d pid entry
	local -a env cmd
	for d in /proc/[0-9]*; do
		pid=${d#/proc/}
		[ "$pid" = $$ ] || [ "$pid" = "$BASHPID" ] && continue
		env=() cmd=()
		mapfile -d '' -t env 2>/dev/null <"$d/environ"
		mapfile -d '' -t cmd 2>/dev/null <"$d/cmdline"
		[ ${#cmd[@]} -gt 0 ] || continue # kernel thread or zombie
		for entry in "${env[@]}"; do
			[ "$entry" = "$want" ] && { echo "$pid"; continue 2; }
		done
		for entry in "${cmd[@]}"; do
			[[ "$entry" == *"$dir"* ]] && { echo "$pid"; continue 2; }
		done
	done
}

# stop_leftovers NAME MARKER DIR: stops what the test left running, says what
stop_leftovers() {
	local name="$1" marker="$2" dir="$3" pids p end list=""
	pids=$(leftover_pids "$marker" "$dir")
	[ -n "$pids" ] || return 0
	for p in $pids; do
		list="$list $p ($(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | cut -c1-100))"
		kill -TERM "$p" 2>/dev/null
	done
	end=$((SECONDS + LEFTOVER_GRACE_S))
	while [ $SECONDS -lt $end ] && [ -n "$(leftover_pids "$marker" "$dir")" ]; do sleep 0.2; done
	for p in $(leftover_pids "$marker" "$dir"); do kill -KILL "$p" 2>/dev/null; done
	echo "    $name left $(echo "$pids" | wc -w) process(es) running, stopped:$list"
}

run_one() {
	local name="$1"; shift
	local out rc limit="$per_test_timeout" dir marker
	ran=$((ran + 1))
	# a test script may ask for more time with a line "# run.sh timeout: SECONDS"
	if [ "$1" = bash ] && [ -z "${GLIDE_TEST_TIMEOUT:-}" ]; then
		local own
		own=$(sed -n 's/^# run.sh timeout: \([0-9]*\)$/\1/p' "$2" | head -1)
		[ -n "$own" ] && limit=$own
	fi
	echo "=== $name"
	local started=$SECONDS
	dir="$RUN_TMP/$ran" # short: host agents keep socket paths under their data directory
	marker="$RUN_ID/$name"
	mkdir -p "$dir"
	out=$(GLIDE_TEST_TMP="$dir" GLIDE_TEST_RUN="$marker" \
		timeout --kill-after=10 "$limit" "$@" 2>"$RUN_TMP/$name.stderr")
	rc=$?
	stop_leftovers "$name" "$marker" "$dir"
	echo "$out" | grep -E '^(PASS|FAIL|SKIP) ' || true
	local p f s
	p=$(echo "$out" | grep -c '^PASS ')
	f=$(echo "$out" | grep -c '^FAIL ')
	s=$(echo "$out" | grep -c '^SKIP ')
	passed=$((passed + p))
	failed=$((failed + f))
	skipped=$((skipped + s))
	while IFS= read -r line; do [ -n "$line" ] && failures+=("$name: $line"); done < <(echo "$out" | grep '^FAIL ')
	while IFS= read -r line; do [ -n "$line" ] && skips+=("$name: $line"); done < <(echo "$out" | grep '^SKIP ')
	local why=""
	if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
		why="timed out after $limit s (checks after that did not run)"
	elif [ $((p + f + s)) -eq 0 ]; then
		why="printed no result (exit status $rc)"
	elif [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
		why="exited with status $rc"
	fi
	if [ -n "$why" ]; then
		failed=$((failed + 1))
		failures+=("$name: $why (stderr in $RUN_TMP/$name.stderr)")
		echo "FAIL $name: $why"
		tail -5 "$RUN_TMP/$name.stderr" | sed 's/^/    /'
	fi
	echo "--- $name: $((SECONDS - started)) s"
	durations+=("$((SECONDS - started)) $name")
}

for t in "$GLIDE_BUILD"/tests/unit_*; do
	[ -x "$t" ] || continue
	n=$(basename "$t")
	[[ -z "$pattern" || "$n" == *"$pattern"* ]] || continue
	run_one "$n" "$t"
done
for t in tests/test_*.sh; do
	[ -f "$t" ] || continue
	n=$(basename "$t" .sh)
	[[ -z "$pattern" || "$n" == *"$pattern"* ]] || continue
	run_one "$n" bash "$t"
done

if [ "$ran" -eq 0 ]; then
	echo "run.sh: no test matches '$pattern' (tests: $GLIDE_BUILD/tests/unit_* and tests/test_*.sh; run make first for the unit tests)" >&2
	exit 2
fi
echo
if [ ${#durations[@]} -gt 1 ]; then # where the time went (CI has a budget)
	echo "slowest tests (s): $(printf '%s\n' "${durations[@]}" | sort -rn | head -8 | awk '{printf "%s%s %s", (NR > 1 ? ", " : ""), $2, $1}')"
fi
if [ ${#skips[@]} -gt 0 ]; then
	echo "skipped (not counted as passed):"
	printf '  %s\n' "${skips[@]}"
fi
if [ ${#failures[@]} -gt 0 ]; then
	echo "failures:"
	printf '  %s\n' "${failures[@]}"
fi
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
