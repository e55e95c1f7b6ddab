#!/usr/bin/env bash
# Hostile connections against the TCP APIs of a host agent and the
# controller (issue 11): from 127.0.0.2, 50 connections to each that send
# random bytes, half an HTTP request, or dribble their headers one byte a
# second (slow loris), while the token holder on 127.0.0.1 keeps calling
# both APIs. Checks that every legitimate call is answered within 1 s and
# that the servers close every hostile connection within their documented
# limit (10 s without a byte, or without a whole request; 2 s of margin
# for a loaded machine). About 30 s. (The destination's migration port has
# its own test, test_migrate_flood.)
. "$(dirname "$0")/lib.sh"

have_kvm || { skip "api_flood: no /dev/kvm (the host agent reads its CPU from KVM)"; exit 0; }
[ -x "$GLIDE" ] || { skip "api_flood: $GLIDE not built (run make)"; exit 0; }
LIMIT=10   # HTTP_IDLE_TIMEOUT_S and HTTP_REQUEST_TIMEOUT_S (docs/host-and-center.md)
MARGIN=2
COUNT=50
BASE=$(port_base)
PC=$BASE PA=$((BASE + 1))
(umask 077; openssl rand -hex 32 >"$T/ht"; openssl rand -hex 32 >"$T/ct")
HT=$(cat "$T/ht") CT=$(cat "$T/ct")
export GLIDE_CENTER="127.0.0.1:$PC" GLIDE_TOKEN_FILE="$T/ct"
cleanup_all() {
	[ -n "${ATTACK_PID:-}" ] && kill "$ATTACK_PID" 2>/dev/null
	cleanup
}
trap cleanup_all EXIT

"$GLIDE" host serve --data-dir "$T/hA" --listen "127.0.0.1:$PA" --token-file "$T/ht" --name hA >"$T/hA.log" 2>&1 &
PIDS+=($!)
"$GLIDE" center serve --db "$T/c.db" --listen "127.0.0.1:$PC" --token-file "$T/ct" >"$T/c.log" 2>&1 &
PIDS+=($!)
if ! wait_for 10 curl -sf -H "Authorization: Bearer $HT" "http://127.0.0.1:$PA/v1/host" ||
	! wait_for 10 "$GLIDE" cluster list; then
	fail "api_flood: the agent or the controller did not start: $(tail -1 "$T/hA.log") $(tail -1 "$T/c.log")"
	exit 0
fi
"$GLIDE" host add "127.0.0.1:$PA" --host-token-file "$T/ht" --name hA >/dev/null 2>"$T/add.err" ||
	{ fail "api_flood: host add: $(cat "$T/add.err")"; exit 0; }

python3 "$TESTS_DIR/idle_flood.py" --source 127.0.0.2 --count $COUNT --mode mix --status "$T/flood.st" \
	--stop "$T/flood.stop" --report "$T/flood.json" --max-seconds $((LIMIT + 3 * MARGIN + 8)) "$PA" "$PC" 2>"$T/flood.err" &
ATTACK_PID=$!
if ! wait_for 20 test -s "$T/flood.st"; then
	fail "api_flood: the flood did not start: $(cat "$T/flood.err")"
	exit 0
fi

# The token holder's calls while the flood lasts: each must answer 200 within 1 s.
calls=0 slow="" worst=0
end=$((SECONDS + LIMIT + MARGIN))
while [ $SECONDS -lt $end ]; do
	for req in "$PA $HT /v1/host" "$PA $HT /v1/vms" "$PC $CT /v1/center" "$PC $CT /v1/hosts" "$PC $CT /v1/hosts/hA" \
		"$PC $CT /v1/vms" "$PC $CT /v1/tasks?limit=5"; do
		read -r port tok path <<<"$req"
		r=$(curl -s -o /dev/null -m 5 -w '%{http_code} %{time_total}' -H "Authorization: Bearer $tok" "http://127.0.0.1:$port$path")
		code=${r% *} secs=${r#* }
		calls=$((calls + 1))
		ms=$(awk -v s="$secs" 'BEGIN { printf "%d", s * 1000 }')
		[ "$ms" -gt "$worst" ] && worst=$ms
		{ [ "$code" = 200 ] && [ "$ms" -le 1000 ]; } || slow="$slow; $port$path: HTTP $code in $ms ms"
	done
	sleep 0.2
done
[ -z "$slow" ] && pass "api_flood: $calls legitimate calls to the agent and the controller during the flood, each answered 200 within 1 s (slowest $worst ms)" ||
	fail "api_flood: legitimate calls not served within 1 s:${slow#;} ($calls calls)"

# every hostile connection closed by the servers
all_closed() { awk '{ n = 0; for (i = 2; i <= NF; i++) { split($i, a, "[:/]"); n += a[2] } exit n != 0 }' "$T/flood.st"; }
wait_for $((2 * MARGIN + 2)) all_closed
touch "$T/flood.stop"
for i in $(seq 1 40); do kill -0 "$ATTACK_PID" 2>/dev/null || break; sleep 0.25; done
kill "$ATTACK_PID" 2>/dev/null
ATTACK_PID=""
if [ ! -s "$T/flood.json" ]; then
	fail "api_flood: no report from the flood ($(cat "$T/flood.err"))"
	exit 0
fi
# per server and kind: count, closed, open, and the longest time to close
python3 - "$T/flood.json" "$PA" "$PC" "$LIMIT" "$MARGIN" "$COUNT" >"$T/verdict" <<'EOF'
import json, sys
report, pa, pc, limit, margin, count = json.load(open(sys.argv[1])), sys.argv[2], sys.argv[3], *map(float, sys.argv[4:7])
for port, who in ((pa, "agent"), (pc, "controller")):
    kinds = report.get(port, {})
    total = sum(k["connections"] for k in kinds.values())
    if total != count:
        print("FAIL api_flood: %s: %d of %d hostile connections were accepted" % (who, total, count))
    for mode, k in sorted(kinds.items()):
        # junk and half requests stop sending at once: silence; the slow loris never stops: no whole request
        took = k["max_after_connect_s"] if mode == "slowloris" else k["max_after_last_send_s"]
        what = "after it connected" if mode == "slowloris" else "after its last byte"
        line = "api_flood: %s: %d %s connections, %d closed by the server, at most %.1f s %s" % (
            who, k["connections"], mode, k["closed"], took, what)
        if k["open"] or took > limit + margin:
            print("FAIL %s; %d still open (limit %d s)" % (line, k["open"], limit))
        else:
            print("PASS %s (limit %d s)" % (line, limit))
EOF
cat "$T/verdict"
grep -q . "$T/verdict" || fail "api_flood: the report could not be read: $(head -c 300 "$T/flood.json")"
# the servers are still fine afterwards
curl -sf -m 2 -H "Authorization: Bearer $HT" "http://127.0.0.1:$PA/v1/host" >/dev/null &&
	timeout 5 "$GLIDE" host show hA >/dev/null 2>&1 &&
	pass "api_flood: after the flood the agent and the controller still answer" ||
	fail "api_flood: a server does not answer after the flood"
