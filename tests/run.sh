#!/usr/bin/env bash
# Runs every test of glide and ends with "N passed, N failed".
#
# Each test is a program under tests/ named test_*.sh (or a unit-test binary
# in build/tests/) that prints one line per check:
#   PASS name            a check that held
#   FAIL name: why       a check that did not
#   SKIP name: reason    a check that cannot run here (never counted as passed)
# A test program that exits non-zero without printing FAIL counts as one failure.
# Each test gets GLIDE_TEST_TIMEOUT seconds (default 900), or what its own
# line "# run.sh timeout: SECONDS" asks for (the sanitizer pass).
# Usage: tests/run.sh [PATTERN]   (only tests whose file name contains PATTERN)
set -u
cd "$(dirname "$0")/.."
export GLIDE="${GLIDE:-$PWD/build/glide}"
export GLIDE_BUILD="${GLIDE_BUILD:-$PWD/build}"
export GLIDE_TEST_TMP="${GLIDE_TEST_TMP:-$(mktemp -d /tmp/glide-tests.XXXXXX)}"
pattern="${1:-}"
passed=0 failed=0
skips=() failures=()
per_test_timeout="${GLIDE_TEST_TIMEOUT:-900}"

run_one() {
	local name="$1"; shift
	local out rc limit="$per_test_timeout"
	# a test script may ask for more time with a line "# run.sh timeout: SECONDS"
	if [ "$1" = bash ] && [ -z "${GLIDE_TEST_TIMEOUT:-}" ]; then
		local own
		own=$(sed -n 's/^# run.sh timeout: \([0-9]*\)$/\1/p' "$2" | head -1)
		[ -n "$own" ] && limit=$own
	fi
	echo "=== $name"
	out=$(timeout --kill-after=10 "$limit" "$@" 2>"$GLIDE_TEST_TMP/$name.stderr")
	rc=$?
	echo "$out" | grep -E '^(PASS|FAIL|SKIP) ' || true
	local p f
	p=$(echo "$out" | grep -c '^PASS ')
	f=$(echo "$out" | grep -c '^FAIL ')
	passed=$((passed + p))
	failed=$((failed + f))
	while IFS= read -r line; do [ -n "$line" ] && failures+=("$name: $line"); done < <(echo "$out" | grep '^FAIL ')
	while IFS= read -r line; do [ -n "$line" ] && skips+=("$name: $line"); done < <(echo "$out" | grep '^SKIP ')
	if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
		failed=$((failed + 1))
		failures+=("$name: exited with status $rc (stderr in $GLIDE_TEST_TMP/$name.stderr)")
		echo "FAIL $name: exited with status $rc"
		tail -5 "$GLIDE_TEST_TMP/$name.stderr" | sed 's/^/    /'
	fi
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

echo
if [ ${#skips[@]} -gt 0 ]; then
	echo "skipped (not counted):"
	printf '  %s\n' "${skips[@]}"
fi
if [ ${#failures[@]} -gt 0 ]; then
	echo "failures:"
	printf '  %s\n' "${failures[@]}"
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
