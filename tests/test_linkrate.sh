#!/usr/bin/env bash
# tools/linkrate, the machine's limits that bench/compare.sh prints beside
# every throughput: one JSON object with four positive rates, and a clear
# error for a bad --seconds. Loopback only.
source "$(dirname "$0")/lib.sh"
LR="$GLIDE_BUILD/tools/linkrate"
[ -x "$LR" ] || { fail "linkrate: $LR missing (run make)"; exit 0; }
if "$LR" --seconds 0.2 >"$T/lr.json" 2>"$T/lr.err"; then
	why=$(python3 -c 'import json,sys
d = json.load(open(sys.argv[1]))
keys = ("tcp_loopback_bytes_per_s", "tcp_into_fresh_memory_bytes_per_s", "first_touch_bytes_per_s", "memcpy_bytes_per_s")
bad = [k for k in keys if not (isinstance(d.get(k), (int, float)) and d[k] > 1e6)]
print(", ".join(bad) if bad else "ok " + ", ".join("%s %.2f GB/s" % (k, d[k] / 1e9) for k in keys))' "$T/lr.json" 2>&1)
	[ "${why%% *}" = ok ] && pass "linkrate: four rates above 1 MB/s (${why#ok })" || fail "linkrate: missing or not positive: $why ($(cat "$T/lr.json"))"
else
	fail "linkrate: exit $?: $(cat "$T/lr.err")"
fi
for bad in 0 11 x; do
	"$LR" --seconds "$bad" >"$T/bad.out" 2>"$T/bad.err"
	rc=$?
	[ $rc = 2 ] && grep -q 'must be a number in (0, 10]' "$T/bad.err" && ! [ -s "$T/bad.out" ] &&
		pass "linkrate --seconds $bad: exit 2, $(cat "$T/bad.err")" || fail "linkrate --seconds $bad: exit $rc, $(cat "$T/bad.err" "$T/bad.out")"
done
