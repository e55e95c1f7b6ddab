#!/usr/bin/env bash
# Soak: N ping-pong live migrations of one dirtying A-B guest between two
# sides (a fresh destination monitor each time), every one with --verify
# (a digest of all guest memory compared before GO), an A-B check every
# --ab-every migrations and at the end. Bounded in count and time.
# Prints the stun distribution (p50, p90, p99, max; as reported by glide and
# as the guest saw it), total times, failures by reason, verifications and
# bad pages, and writes a histogram (stun.png, gnuplot) and every
# migration's record (migrations.jsonl) to --out.
#
# The guest-observed figure is the guest's own longest loop gap (its
# heartbeat record, max_gap_tsc). The guest keeps only its lifetime
# maximum, so a migration's stall is known exactly when it raised that
# maximum and is otherwise only bounded by it; the summary says how many
# migrations raised it and the maximum over the whole soak.
#
# Usage: bench/soak.sh [--count N] [--max-seconds S] [--memory SIZE] [--vcpus N]
#                      [--ab-every N] [--out DIR] [-- extra glide migrate options]
# Default: 1000 migrations, at most 3 hours, 256M, 2 vCPUs, A-B check every 10.
set -u
cd "$(dirname "$0")/.."
GLIDE=${GLIDE:-$PWD/build/glide}
B=${GLIDE_BUILD:-$PWD/build}
COUNT=1000 MAX_SECONDS=10800 MEMORY=256M VCPUS=2 AB_EVERY=10 OUT=""
EXTRA=()
while [ $# -gt 0 ]; do
	case "$1" in
	--count) COUNT=$2; shift 2 ;;
	--max-seconds) MAX_SECONDS=$2; shift 2 ;;
	--memory) MEMORY=$2; shift 2 ;;
	--vcpus) VCPUS=$2; shift 2 ;;
	--ab-every) AB_EVERY=$2; shift 2 ;;
	--out) OUT=$2; shift 2 ;;
	--) shift; EXTRA=("$@"); break ;;
	-h|--help) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "soak: unknown option $1" >&2; exit 2 ;;
	esac
done
[[ "$COUNT" =~ ^[0-9]+$ ]] && [ "$COUNT" -ge 1 ] && [ "$COUNT" -le 100000 ] || { echo "soak: --count must be 1..100000" >&2; exit 2; }
D=$(mktemp -d "${GLIDE_TEST_TMP:-/tmp}/glide-soak.XXXXXX")
OUT=${OUT:-$D/out}
mkdir -p "$OUT"
PIDS=()
cleanup() {
	for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null; done
	sleep 0.3
	for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill -9 "$p" 2>/dev/null; done
	rm -rf "$D/run"
}
trap cleanup EXIT
mkdir -p "$D/run"
(umask 077; openssl rand -hex 32 >"$D/key")
# listening ports below Linux's default ephemeral range (32768-60999), where
# outgoing connections would take them
PORT=$((21000 + RANDOM % 10000))
AB_IMG="$B/guests/ab.img"
[ -f "$AB_IMG" ] || { echo "soak: $AB_IMG missing (run make)" >&2; exit 2; }

# wait_sock SOCK PID: 0 once the monitor answers; 1 when it exits first or after 20 s
wait_sock() {
	for _ in $(seq 400); do
		"$GLIDE" vm status --api "$1" >/dev/null 2>&1 && return 0
		kill -0 "$2" 2>/dev/null || return 1
		sleep 0.05
	done
	return 1
}
# start_monitor NAME ARGS...: a monitor in the background; its pid in LAST_PID
start_monitor() {
	local name="$1"; shift
	"$GLIDE" vm run --api "$D/run/$name.sock" --log "$D/run/$name.log" "$@" >"$D/run/$name.out" 2>&1 &
	LAST_PID=$!
	PIDS+=("$LAST_PID")
	wait_sock "$D/run/$name.sock" "$LAST_PID"
}
# record SOCK: "max_gap_tsc max_gap_end_tsc" over all vCPUs (the largest gap)
record() {
	"$GLIDE" vm memsave --api "$1" --addr 0x8000 --size 4096 --to "$D/rec" >/dev/null 2>&1 &&
		"$B/tools/hbread" "$D/rec" --json 2>/dev/null | python3 -c '
import json, sys
v = max(json.load(sys.stdin)["vcpus"], key=lambda r: r["max_gap_tsc"])
print(v["max_gap_tsc"], v["max_gap_end_tsc"])' 2>/dev/null
}
ab_check() { # SOCK -> 0 clean; the abcheck line in $D/ab.out
	"$GLIDE" vm pause --api "$1" >/dev/null 2>&1 || return 2
	"$GLIDE" vm memsave --api "$1" --addr 0x100000 --size 128M --to "$D/ab.dump" >/dev/null 2>&1 ||
		{ "$GLIDE" vm resume --api "$1" >/dev/null 2>&1; return 2; }
	"$B/tools/abcheck" "$D/ab.dump" --parts "$VCPUS" --require-progress >"$D/ab.out" 2>&1
	local rc=$?
	if [ $rc -ne 0 ] && [ "$kept_dumps" -lt 2 ]; then # the evidence: the dump and the full report
		kept_dumps=$((kept_dumps + 1))
		mv "$D/ab.dump" "$OUT/ab-bad-$i.dump"
		cp "$D/ab.out" "$OUT/ab-bad-$i.txt"
	fi
	rm -f "$D/ab.dump"
	"$GLIDE" vm resume --api "$1" >/dev/null 2>&1
	return $rc
}

start_monitor m0 --memory "$MEMORY" --vcpus "$VCPUS" --boot "$AB_IMG" || { echo "soak: the first monitor did not start" >&2; exit 1; }
cur=m0 cur_pid=$LAST_PID
KHZ=$("$GLIDE" vm status --api "$D/run/m0.sock" --json | python3 -c 'import json,sys; print(json.load(sys.stdin).get("tsc_khz", 0))')
sleep 1
read -r prev_gap prev_end < <(record "$D/run/$cur.sock") || { prev_gap=0 prev_end=0; }
t_start=$SECONDS
: >"$OUT/migrations.jsonl"
ab_checks=0 ab_bad=0 kept_dumps=0 dst_failures=0
mkdir -p "$OUT/logs"
for i in $(seq 1 "$COUNT"); do
	if [ $((SECONDS - t_start)) -ge "$MAX_SECONDS" ]; then
		echo "soak: stopped after $((i - 1)) migrations: --max-seconds $MAX_SECONDS reached" >&2
		break
	fi
	PORT=$((PORT + 1))
	[ $PORT -ge 32000 ] && PORT=21000
	dst="m$i"
	status="" gap="" raised=false ab=""
	: >"$D/res.json"
	start_monitor "$dst" --incoming "127.0.0.1:$PORT" --key-file "$D/key"
	started=$? dst_pid=$LAST_PID
	if [ $started -ne 0 ]; then
		# counted as a failed migration, with the monitor's own words
		reason="destination $dst did not start: $(tail -1 "$D/run/$dst.out" 2>/dev/null)"
		echo "soak: $reason" >&2
		python3 -c 'import json,sys; print(json.dumps({"status": "failed", "error": sys.argv[1]}))' "$reason" >"$D/res.json"
		dst_failures=$((dst_failures + 1))
	else
		dst_failures=0
		timeout 300 "$GLIDE" migrate --api "$D/run/$cur.sock" --to "127.0.0.1:$PORT" --key-file "$D/key" --verify --json \
			"${EXTRA[@]}" >"$D/res.json" 2>"$D/res.err"
	fi
	status=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("status",""))' "$D/res.json" 2>/dev/null)
	if [ "$status" = completed ]; then
		for _ in $(seq 100); do kill -0 "$cur_pid" 2>/dev/null || break; sleep 0.05; done # the source exits
		mv "$D/run/$cur.log" "$OUT/logs/" 2>/dev/null # every monitor's log stays, for a bad page found later
		rm -f "$D/run/$cur".*
		cur=$dst cur_pid=$dst_pid
		if read -r g e < <(record "$D/run/$cur.sock"); then
			[ "$e" != "$prev_end" ] && raised=true
			gap=$g prev_gap=$g prev_end=$e
		fi
	else
		kill "$dst_pid" 2>/dev/null
	fi
	if [ $((i % AB_EVERY)) -eq 0 ] || [ "$i" -eq "$COUNT" ]; then
		ab_checks=$((ab_checks + 1))
		if ab_check "$D/run/$cur.sock"; then ab=clean; else ab="bad: $(tail -1 "$D/ab.out")"; ab_bad=$((ab_bad + 1)); fi
	fi
	python3 - "$D/res.json" "$i" "$status" "$gap" "$raised" "$KHZ" "$ab" >>"$OUT/migrations.jsonl" <<'PY'
import json, sys
try:
    r = json.load(open(sys.argv[1]))
except Exception:
    r = {}
i, status, gap, raised, khz, ab = sys.argv[2:8]
rec = {"n": int(i), "status": status or "no result", "total_ms": r.get("total_ms"), "stun_ms": r.get("stun_ms"),
       "verified": r.get("verified", False), "error": r.get("error", ""), "ab": ab or None}
if gap and float(khz) > 0:
    rec["guest_max_gap_ms"] = int(gap) / float(khz)
    rec["raised_guest_max"] = raised == "true"
print(json.dumps(rec))
PY
	if [ "$status" != completed ] && [ -n "$(tail -1 "$D/res.err")" ]; then echo "soak: migration $i: $status: $(tail -1 "$D/res.err")" >&2; fi
	[ $((i % 50)) -eq 0 ] && echo "soak: $i migrations" >&2
	if [ "$dst_failures" -ge 3 ]; then echo "soak: stopped: 3 destinations in a row did not start" >&2; break; fi
done

python3 - "$OUT" "$MEMORY" "$VCPUS" "$((SECONDS - t_start))" <<'PY'
import json, sys, collections, os
out, memory, vcpus, secs = sys.argv[1:5]
recs = [json.loads(l) for l in open(os.path.join(out, "migrations.jsonl"))]
ok = [r for r in recs if r["status"] == "completed"]
def pct(v, p):
    if not v: return float("nan")
    v = sorted(v); k = (len(v) - 1) * p / 100.0; f = int(k); c = min(f + 1, len(v) - 1)
    return v[f] + (v[c] - v[f]) * (k - f)
stun = [r["stun_ms"] for r in ok if r.get("stun_ms") is not None]
total = [r["total_ms"] for r in ok if r.get("total_ms") is not None]
raised = [r["guest_max_gap_ms"] for r in ok if r.get("raised_guest_max")]
gmax = max([r["guest_max_gap_ms"] for r in ok if "guest_max_gap_ms" in r] or [float("nan")])
fails = collections.Counter((r["error"] or r["status"])[:120] for r in recs if r["status"] != "completed")
ab = [r for r in recs if r.get("ab")]
ab_bad = [r for r in ab if r["ab"] != "clean"]
verified = sum(1 for r in ok if r.get("verified"))
print("## glide soak: %d migrations of a %s, %s-vCPU dirtying A-B guest, --verify, %s s" % (len(recs), memory, vcpus, secs))
print()
print("| figure | p50 | p90 | p99 | max |")
print("| --- | --- | --- | --- | --- |")
print("| stun ms (reported) | %.1f | %.1f | %.1f | %.1f |" % (pct(stun, 50), pct(stun, 90), pct(stun, 99), max(stun or [float("nan")])))
print("| total ms | %.0f | %.0f | %.0f | %.0f |" % (pct(total, 50), pct(total, 90), pct(total, 99), max(total or [float("nan")])))
print("| guest-observed longest stall ms, migrations that raised the guest's maximum (%d) | %.1f | %.1f | %.1f | %.1f |" %
      (len(raised), pct(raised, 50), pct(raised, 90), pct(raised, 99), max(raised or [float("nan")])))
print()
print("completed %d, failed %d, verified %d, A-B checks %d (bad %d); the guest's longest stall over the whole soak %.1f ms" %
      (len(ok), len(recs) - len(ok), verified, len(ab), len(ab_bad), gmax))
for reason, n in fails.most_common():
    print("  failed %dx: %s" % (n, reason))
for r in ab_bad:
    print("  A-B after migration %d: %s" % (r["n"], r["ab"]))
with open(os.path.join(out, "stun.dat"), "w") as f:
    for s in stun:
        f.write("%f\n" % s)
print("SOAK completed=%d failed=%d verified=%d ab_checks=%d ab_bad=%d stun_p50=%.2f stun_p99=%.2f stun_max=%.2f" %
      (len(ok), len(recs) - len(ok), verified, len(ab), len(ab_bad), pct(stun, 50), pct(stun, 99), max(stun or [0])))
PY
if command -v gnuplot >/dev/null && [ -s "$OUT/stun.dat" ]; then
	gnuplot <<EOF 2>/dev/null && echo "histogram: $OUT/stun.png"
set terminal png size 800,450
set output "$OUT/stun.png"
set title "glide soak: reported stun, $(wc -l <"$OUT/stun.dat") migrations"
set xlabel "stun (ms)"
set ylabel "migrations"
binwidth = 2
bin(x) = binwidth * floor(x / binwidth)
set boxwidth binwidth
set style fill solid 0.6
plot "$OUT/stun.dat" using (bin(\$1)):(1.0) smooth freq with boxes notitle
EOF
fi
echo "records: $OUT/migrations.jsonl"
