#!/usr/bin/env bash
# tests/run.sh itself, on a copy of it with fixture tests: the summary line
# counts passed, failed and skipped checks; a test that prints no result
# line, exits non-zero without FAIL or runs out of time is a failure; a
# PATTERN that matches no test is an error; and VM monitors that a host
# agent started for a test (in their own session, so the test's process
# group does not reach them) are stopped when the test ends, also when it
# is killed at its timeout.
. "$(dirname "$0")/lib.sh"
export GLIDE GLIDE_BUILD
TREE="$T/tree"
mkdir -p "$TREE/tests" "$T/i" "$T/marks"
cp "$TESTS_DIR/run.sh" "$TESTS_DIR/lib.sh" "$TREE/tests/"

fixture() { cat >"$TREE/tests/test_fx_$1.sh"; }
fixture pass <<'EOF'
. "$(dirname "$0")/lib.sh"
pass "one check held"
skip "one check cannot run: a reason"
EOF
fixture silent <<'EOF'
echo "some output, but no result line"
exit 0
EOF
fixture exit <<'EOF'
. "$(dirname "$0")/lib.sh"
pass "a check held"
exit 3
EOF
# leak MARK [hang]: a host agent starts a VM monitor; the test exits (or
# hangs until run.sh's timeout) without stopping the monitor. The agent
# itself is stopped by lib.sh's cleanup, the monitor survives it.
cat >"$TREE/tests/leak.inc" <<'EOF'
. "$(dirname "$0")/lib.sh"
mark="$MARKS/$1"
port=$(port_base)
(umask 077; openssl rand -hex 16 >"$T/token")
"$GLIDE" host serve --data-dir "$T/h" --listen "127.0.0.1:$port" --token-file "$T/token" --name h >"$T/agent.log" 2>&1 &
PIDS+=($!)
wait_for 20 curl -sf --unix-socket "$T/h/host.sock" http://x/v1/host || { fail "agent did not start: $(tail -2 "$T/agent.log")"; exit 0; }
curl -s --unix-socket "$T/h/host.sock" -d '{"name": "leak", "config": {"memory": 67108864, "vcpus": 1},
	"boot": {"kind": "boot", "path": "'"$GLIDE_BUILD/guests/heartbeat.img"'"}, "start": true}' http://x/v1/vms >"$T/create.out"
monitor_pid() { curl -s --unix-socket "$T/h/host.sock" http://x/v1/vms/leak | python3 -c 'import json,sys; print(json.load(sys.stdin).get("pid") or "")'; }
wait_for 20 bash -c "[ \"\$(curl -s --unix-socket '$T/h/host.sock' 'http://x/v1/vms/leak?monitor=1' | python3 -c 'import json,sys; print(json.load(sys.stdin).get(\"monitor_state\"))')\" = running ]" ||
	{ fail "the monitor did not run: $(cat "$T/create.out") $(tail -2 "$T/agent.log")"; exit 0; }
mpid=$(monitor_pid)
# the monitor is in a session of its own: timeout's signal to the test's process group misses it
echo "$mpid $(ps -o sid= -p "$mpid" | tr -d ' ') $(ps -o sid= -p $$ | tr -d ' ')" >"$mark"
pass "an agent started monitor $mpid"
if [ "${2:-}" = hang ]; then sleep 600; fi
EOF
fixture leak <<'EOF'
source "$(dirname "$0")/leak.inc" leak
EOF
{ printf '# run.sh %s: 15\n' timeout; cat; } <<'EOF' >"$TREE/tests/test_fx_hang.sh"
source "$(dirname "$0")/leak.inc" hang hang
EOF

have_kvm || skip "run.sh stops leftover monitors: /dev/kvm not accessible (the leak fixtures report FAIL below)"
t0=$SECONDS
(cd "$TREE" && unset GLIDE_TEST_TIMEOUT && MARKS="$T/marks" GLIDE_TEST_TMP="$T/i" bash tests/run.sh fx) >"$T/run.out" 2>"$T/run.err"
rc=$?
secs=$((SECONDS - t0))
for m in leak hang; do # whatever happens below, stop the fixtures' monitors at the end
	[ -s "$T/marks/$m" ] && PIDS+=("$(cut -d' ' -f1 "$T/marks/$m")")
done
last=$(tail -1 "$T/run.out")
if have_kvm; then want="4 passed, 3 failed, 1 skipped"; else want="2 passed, 5 failed, 1 skipped"; fi
[ "$last" = "$want" ] && pass "summary line '$last' (fixtures: pass+skip, silent, exit 3, leak, hang until timeout)" ||
	fail "summary line '$last', expected '$want'"
[ $rc -ne 0 ] && pass "run.sh exits $rc when a test failed" || fail "run.sh exited 0 with failures"
grep -q '^FAIL test_fx_silent: printed no result (exit status 0)' "$T/run.out" &&
	pass "a test that prints no result line counts as a failure, though it exits 0" ||
	fail "silent test: $(grep test_fx_silent "$T/run.out" | tr '\n' ' ')"
grep -q '^FAIL test_fx_exit: exited with status 3' "$T/run.out" &&
	pass "a test that exits 3 without FAIL counts as a failure" || fail "exit 3: $(grep test_fx_exit "$T/run.out" | tr '\n' ' ')"
grep -q '^FAIL test_fx_hang: timed out after 15 s' "$T/run.out" &&
	pass "a test killed at its timeout counts as a failure" || fail "timeout: $(grep test_fx_hang "$T/run.out" | tr '\n' ' ')"
# each test's time, and the slowest first (the hang fixture ran 15 s)
hang_s=$(sed -n 's/^--- test_fx_hang: \([0-9]*\) s$/\1/p' "$T/run.out")
if [ "${hang_s:-0}" -ge 15 ] && grep -qE "^slowest tests \(s\): test_fx_hang $hang_s(, test_fx_[a-z]+ [0-9]+){4}\$" "$T/run.out" &&
	! [ -s "$T/run.err" ]; then
	pass "run.sh prints each test's time and the slowest first: $(grep '^slowest' "$T/run.out")"
else
	fail "test times: $(grep -E '^(---|slowest)' "$T/run.out" | tr '\n' ' ') stderr: $(head -c 200 "$T/run.err")"
fi
grep -q '^  test_fx_pass: SKIP one check cannot run: a reason' "$T/run.out" &&
	pass "the skip list shows the reason" || fail "skip list: $(grep -A2 '^skipped' "$T/run.out" | tr '\n' ' ')"

alive() { local st; st=$(ps -o stat= -p "$1" 2>/dev/null); [ -n "$st" ] && [ "${st#Z}" = "$st" ]; } # a zombie waits for init only
if have_kvm; then
	for m in leak hang; do
		read -r mpid msid tsid <"$T/marks/$m" 2>/dev/null
		if [ -z "${mpid:-}" ]; then
			fail "leftover ($m): the fixture did not record its monitor: $(grep "test_fx_$m" "$T/run.out" | tr '\n' ' ')"
		elif [ "$msid" = "$tsid" ]; then
			fail "leftover ($m): monitor $mpid shares the test's session $tsid, the case does not show anything"
		elif alive "$mpid"; then
			fail "leftover ($m): monitor $mpid ($(tr '\0' ' ' </proc/$mpid/cmdline | cut -c1-80)) still runs after run.sh returned"
		elif ! grep -q "test_fx_$m left .* stopped: .*$mpid (.*vm run" "$T/run.out"; then
			fail "leftover ($m): monitor $mpid is gone but run.sh did not say it stopped it"
		else
			pass "leftover ($m): run.sh stopped the agent-started monitor $mpid (own session $msid, test session $tsid) and said so"
		fi
	done
fi

(cd "$TREE" && GLIDE_TEST_TMP="$T/i" bash tests/run.sh no-such-test) >"$T/none.out" 2>&1
rc=$?
[ $rc -ne 0 ] && grep -q "no test matches 'no-such-test'" "$T/none.out" &&
	pass "a PATTERN that matches no test is an error (exit $rc: $(head -1 "$T/none.out"))" ||
	fail "PATTERN matching nothing: exit $rc, '$(head -2 "$T/none.out" | tr '\n' ' ')'"
echo "run.sh on the fixtures took $secs s" >&2

# port_base (lib.sh): the tests' server ports stay below the kernel's
# ephemeral range (where client connections and TIME_WAIT hold local ports),
# with room for 100 ports after the base.
read -r eph _ </proc/sys/net/ipv4/ip_local_port_range
bad=""
for _ in $(seq 300); do
	p=$(port_base)
	{ [ "$p" -ge 20000 ] && [ $((p + 100)) -le "$eph" ]; } || bad="$bad $p"
done
[ -z "$bad" ] && pass "port_base: 300 picks all in 20000..$((eph - 100)), below the ephemeral range (from $eph)" ||
	fail "port_base picked$bad (ephemeral range from $eph)"
