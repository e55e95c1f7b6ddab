#!/usr/bin/env bash
# Short soak (issue 11): 50 ping-pong migrations of a dirtying A-B guest,
# each with --verify, an A-B check every 10 (bench/soak.sh; its long form
# runs 1,000). Every migration must complete and verify, every A-B check
# be clean. The stun figures are printed, not asserted (benchmarks measure
# speed; bench/soak.sh prints the distribution).
# run.sh timeout: 900
. "$(dirname "$0")/lib.sh"
have_kvm || { skip "soak: /dev/kvm not accessible"; exit 0; }
COUNT=${GLIDE_SOAK_COUNT:-50}
GLIDE="$GLIDE" GLIDE_BUILD="$GLIDE_BUILD" GLIDE_TEST_TMP="$T" \
	timeout 840 bash "$TESTS_DIR/../bench/soak.sh" --count "$COUNT" --vcpus 1 --ab-every 10 --max-seconds 780 \
	--out "$T/soak" >"$T/soak.out" 2>"$T/soak.err"
line=$(grep '^SOAK ' "$T/soak.out")
if [ -z "$line" ]; then
	fail "soak: no summary: $(tail -2 "$T/soak.err" | tr '\n' ' ')"
	exit 0
fi
val() { sed -n "s/.* $1=\([0-9.]*\).*/\1/p" <<<" $line"; }
completed=$(val completed) failed=$(val failed) verified=$(val verified) checks=$(val ab_checks) bad=$(val ab_bad)
figures="stun p50 $(val stun_p50) ms, p99 $(val stun_p99) ms, max $(val stun_max) ms"
if [ "$completed" = "$COUNT" ] && [ "$failed" = 0 ]; then pass "soak: $COUNT of $COUNT ping-pong migrations completed ($figures)"
else fail "soak: $completed of $COUNT completed, $failed failed: $(grep 'failed [0-9]*x' "$T/soak.out" | head -3 | tr '\n' ' ') $(grep -v '^soak: [0-9]* migrations' "$T/soak.err" | tail -3 | tr '\n' ' ')"; fi
if [ "$verified" = "$completed" ] && [ "${completed:-0}" -gt 0 ]; then pass "soak: every completed migration verified its memory digest ($verified)"
else fail "soak: $verified of $completed migrations verified"; fi
if [ "${checks:-0}" -ge $((COUNT / 10)) ] && [ "$bad" = 0 ]; then pass "soak: $checks A-B checks along the way, all clean"
else fail "soak: $checks A-B checks, $bad bad: $(grep 'A-B after' "$T/soak.out" | head -2 | tr '\n' ' ') $(cat "$T"/soak/ab-bad-*.txt 2>/dev/null | grep -E '^(part|bad page)' | head -6 | tr '\n' ' ')"; fi
