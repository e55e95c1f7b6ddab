#!/usr/bin/env bash
# Long fuzzing run: every libFuzzer target of tests/fuzz/ (the TARGETS of
# its Makefile) for SECONDS_PER_TARGET each, one after the other, then a
# table per target: executions, corpus size, findings.
#
#   tests/fuzz/run-long.sh [SECONDS_PER_TARGET]     (default 3600, 1 to 86400)
#
# Everything stays under build-fuzz/ (FUZZ_OUT to change), so a second run
# goes on from where the first stopped:
#   build-fuzz/corpus/NAME/    the corpus libFuzzer grows (kept between runs)
#   build-fuzz/seeds/NAME/     seeds from seedgen (and a real snapshot when
#                              /dev/kvm and build/glide are here), remade
#                              each run, plus tests/fuzz/regress/NAME/
#   build-fuzz/findings/NAME/  crash-*, leak-*, timeout-*, oom-* reproducers
#   build-fuzz/logs/NAME.log   the last run's libFuzzer output
# Replay a finding: build-fuzz/fuzz_NAME build-fuzz/findings/NAME/crash-...
# FUZZ_TARGETS="state wire" runs a subset. Ctrl-C stops the current target
# (libFuzzer writes its statistics) and skips the rest; the table still
# comes. Exit status: 0 when no target found anything new in this run, 1
# when one did, 2 on a usage or build error, 130 when interrupted.
set -u
cd "$(dirname "$0")/../.."
ROOT=$PWD
SECS_MAX=86400

secs="${1:-3600}"
if [ $# -gt 1 ] || ! [[ "$secs" =~ ^[0-9]+$ ]] || [ "$secs" -lt 1 ] || [ "$secs" -gt $SECS_MAX ]; then
	echo "usage: tests/fuzz/run-long.sh [SECONDS_PER_TARGET]   (whole seconds, 1 to $SECS_MAX; default 3600)" >&2
	exit 2
fi
out="${FUZZ_OUT:-$ROOT/build-fuzz}"
case "$out" in /*) ;; *) out="$ROOT/$out" ;; esac

if ! command -v clang >/dev/null 2>&1; then
	echo "run-long: clang is not installed (apt-get install clang libclang-rt-14-dev)" >&2
	exit 2
fi
targets=$(sed -n 's/^TARGETS *:= *//p' tests/fuzz/Makefile)
if [ -n "${FUZZ_TARGETS:-}" ]; then
	want=""
	for t in $FUZZ_TARGETS; do
		t="fuzz_${t#fuzz_}"
		[[ " $targets " == *" $t "* ]] || { echo "run-long: no fuzz target $t (targets: $targets)" >&2; exit 2; }
		want="$want $t"
	done
	targets=$want
fi
mkdir -p "$out/logs"
echo "run-long: building the fuzz targets in $out"
if ! make -C tests/fuzz OUT="$out" -j"$(nproc)" >"$out/logs/build.log" 2>&1; then
	echo "run-long: the build failed:" >&2
	grep -m5 -E 'error|Error' "$out/logs/build.log" >&2
	echo "(whole log: $out/logs/build.log)" >&2
	exit 2
fi

# Seeds: remade from code each run; a real snapshot of a small VM when we can.
tmp=$(mktemp -d /tmp/glide-fuzz-long.XXXXXX)
vm_pid=""
cleanup() {
	[ -n "$vm_pid" ] && kill "$vm_pid" 2>/dev/null && wait "$vm_pid" 2>/dev/null
	rm -rf "$tmp"
}
trap cleanup EXIT
snap=""
if [ -r /dev/kvm ] && [ -w /dev/kvm ] && [ -x build/glide ] && [ -f build/guests/guest.img ]; then
	build/glide vm run --memory 2M --vcpus 2 --boot build/guests/guest.img --api "$tmp/s.sock" \
		>"$tmp/vm.out" 2>&1 &
	vm_pid=$!
	for _ in $(seq 1 100); do build/glide vm status --api "$tmp/s.sock" >/dev/null 2>&1 && break; sleep 0.1; done
	build/glide vm snapshot --api "$tmp/s.sock" --to "$tmp/real.snap" >/dev/null 2>&1 && snap="$tmp/real.snap"
	build/glide vm shutdown --api "$tmp/s.sock" >/dev/null 2>&1
	wait "$vm_pid" 2>/dev/null
	vm_pid=""
fi
rm -rf "$out/seeds"
if ! "$out/seedgen" "$out/seeds" $snap >"$out/logs/seedgen.log" 2>&1; then
	echo "run-long: seedgen failed: $(head -3 "$out/logs/seedgen.log")" >&2
	exit 2
fi

# count_findings DIR: reproducers libFuzzer wrote there
count_findings() {
	find "$1" -type f \( -name 'crash-*' -o -name 'leak-*' -o -name 'timeout-*' -o -name 'oom-*' \) | wc -l
}
touch "$tmp/start"
stop=0
trap 'stop=1' INT
declare -A EXECS FOUND_NEW FOUND_ALL STATUS
for t in $targets; do
	name=${t#fuzz_}
	if [ $stop = 1 ]; then
		STATUS[$t]="not run (interrupted)"
		continue
	fi
	corpus="$out/corpus/$name" findings="$out/findings/$name" log="$out/logs/$name.log"
	mkdir -p "$corpus" "$findings"
	seeds=()
	[ -d "$out/seeds/$name" ] && seeds+=("$out/seeds/$name")
	[ -d "tests/fuzz/regress/$name" ] && seeds+=("$ROOT/tests/fuzz/regress/$name")
	before=$(count_findings "$findings")
	echo "run-long: $t for $secs s ($(find "$corpus" -type f | wc -l) corpus inputs, log $log)"
	# the corpus directory comes first: libFuzzer adds what it finds there
	# TMPDIR: where a target keeps scratch files (a host agent's data
	# directory), removed at the end even after a crash
	mkdir -p "$tmp/scratch-$name"
	TMPDIR="$tmp/scratch-$name" timeout --kill-after=30 $((secs + 300)) "$out/$t" -max_total_time="$secs" \
		-timeout=10 -rss_limit_mb=2048 -max_len=70000 -print_final_stats=1 -artifact_prefix="$findings/" \
		"$corpus" "${seeds[@]}" >"$log" 2>&1 &
	pid=$!
	for (( ; ; )); do
		wait "$pid"
		rc=$?
		# a Ctrl-C ends the wait early: pass it on (timeout hands it to the
		# fuzzer, which writes its statistics), then wait again
		if [ $rc -gt 128 ] && kill -0 "$pid" 2>/dev/null; then
			[ $stop = 1 ] && kill -INT "$pid" 2>/dev/null
			continue
		fi
		break
	done
	EXECS[$t]=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
	[ -n "${EXECS[$t]}" ] || EXECS[$t]=$(grep -oE '^#[0-9]+' "$log" | tail -1 | tr -d '#')
	FOUND_ALL[$t]=$(count_findings "$findings")
	FOUND_NEW[$t]=$((FOUND_ALL[$t] - before))
	if [ $stop = 1 ]; then
		STATUS[$t]="interrupted"
	elif [ "$rc" = 0 ]; then
		STATUS[$t]="ok"
	elif [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
		STATUS[$t]="hung: stopped by the $((secs + 300)) s bound"
	else
		STATUS[$t]="stopped: $(grep -m1 -oE 'ERROR: [A-Za-z]+Sanitizer: [a-z-]+|ERROR: libFuzzer: [a-z-]+|runtime error: .{0,60}' "$log" || echo "status $rc")"
	fi
done
trap - INT

echo
printf '%-22s %14s %14s %12s %14s  %s\n' TARGET EXECUTIONS "CORPUS FILES" "CORPUS KiB" FINDINGS STATUS
new_findings=0
for t in $targets; do
	name=${t#fuzz_}
	corpus="$out/corpus/$name"
	files=$(find "$corpus" -type f 2>/dev/null | wc -l)
	kib=$(du -sk "$corpus" 2>/dev/null | cut -f1)
	printf '%-22s %14s %14s %12s %14s  %s\n' "$t" "${EXECS[$t]:--}" "$files" "${kib:-0}" \
		"${FOUND_ALL[$t]:-0} ($((${FOUND_NEW[$t]:-0})) new)" "${STATUS[$t]}"
	new_findings=$((new_findings + ${FOUND_NEW[$t]:-0}))
done
echo
if [ "$new_findings" -gt 0 ]; then
	echo "run-long: $new_findings new finding(s); reproducers in $out/findings/NAME/ (replay: $out/fuzz_NAME FILE)"
	for t in $targets; do
		[ "${FOUND_NEW[$t]:-0}" -gt 0 ] && find "$out/findings/${t#fuzz_}" -type f -newer "$tmp/start" | sed 's/^/  /'
	done
	exit 1
fi
if [ $stop = 1 ]; then
	echo "run-long: interrupted; no new findings so far (corpora in $out/corpus, logs in $out/logs)"
	exit 130
fi
echo "run-long: no new findings (corpora in $out/corpus, logs in $out/logs)"
exit 0
