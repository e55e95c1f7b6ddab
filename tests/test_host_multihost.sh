#!/usr/bin/env bash
# Multi-host on one machine: three hosts, each in its own network namespace
# (veth pairs on a bridge that lives in a fourth namespace), an agent on
# each, the controller in a fifth. A VM running the A-B guest is created,
# started on hA, migrated to hB and back; A-B must be clean on the final
# host and the inventory must name the right host each time. Then faults:
# the destination agent killed during a migration, the controller restarted
# during a migration. The one-time key must never appear in logs or tasks.
. "$(dirname "$0")/lib.sh"
have_kvm || { skip "multihost: no /dev/kvm"; exit 0; }
command -v ip >/dev/null && ip netns add "gl$$-probe" 2>/dev/null && ip netns del "gl$$-probe" ||
	{ skip "multihost: cannot create network namespaces (needs root and iproute2)"; exit 0; }
IMG="$GLIDE_BUILD/guests/ab.img"
[ -f "$IMG" ] && [ -x "$GLIDE_BUILD/tools/abcheck" ] || { skip "multihost: build/guests/ab.img or build/tools/abcheck missing"; exit 0; }
P="gl$$"
NETS=()
declare -A IP=([ctl]=10.77.$(( $$ % 200 )).1 [hA]=10.77.$(( $$ % 200 )).11 [hB]=10.77.$(( $$ % 200 )).12 [hC]=10.77.$(( $$ % 200 )).13)
(umask 077; openssl rand -hex 16 >"$T/ht"; openssl rand -hex 16 >"$T/ct")
monitor_pids() { cat "$T"/h*/vms/*/pid 2>/dev/null; }
ns_empty() { local n; for n in "${NETS[@]:-}"; do [ -z "$n" ] || [ -z "$(ip netns pids "$n" 2>/dev/null)" ] || return 1; done; }
cleanup_all() {
	for p in $(monitor_pids); do kill "$p" 2>/dev/null; done
	cleanup_ns=1
	for n in "${NETS[@]:-}"; do [ -n "$n" ] && for p in $(ip netns pids "$n" 2>/dev/null); do kill "$p" 2>/dev/null; done; done
	wait_for 5 ns_empty
	for n in "${NETS[@]:-}"; do [ -n "$n" ] && ip netns del "$n" 2>/dev/null; done
	cleanup
}
trap cleanup_all EXIT
ip netns add "$P-br" && NETS+=("$P-br")
ip -n "$P-br" link add br0 type bridge && ip -n "$P-br" link set br0 up
for n in ctl hA hB hC; do
	ip netns add "$P-$n" && NETS+=("$P-$n")
	ip -n "$P-br" link add "v$n" type veth peer name eth0 netns "$P-$n"
	ip -n "$P-br" link set "v$n" master br0 up
	ip -n "$P-$n" addr add "${IP[$n]}/24" dev eth0
	ip -n "$P-$n" link set eth0 up
	ip -n "$P-$n" link set lo up
done
in_ns() { local n="$1"; shift; ip netns exec "$P-$n" "$@"; }
agent() {
	local n="$1"
	ip netns exec "$P-$n" "$GLIDE" host serve --data-dir "$T/$n" --listen "${IP[$n]}:7001" --token-file "$T/ht" --name "$n" \
		--migration-address "${IP[$n]}" >>"$T/$n.log" 2>&1 &
	PIDS+=($!); eval "AG_$n=$!"
	wait_for 10 in_ns ctl curl -sf -H "Authorization: Bearer $(cat "$T/ht")" "http://${IP[$n]}:7001/v1/host"
}
center() {
	ip netns exec "$P-ctl" "$GLIDE" center serve --db "$T/c.db" --listen "${IP[ctl]}:7000" --token-file "$T/ct" >>"$T/c.log" 2>&1 &
	PIDS+=($!); CPID=$!
	wait_for 10 g cluster list
}
g() { in_ns ctl env GLIDE_CENTER="${IP[ctl]}:7000" GLIDE_TOKEN_FILE="$T/ct" "$GLIDE" "$@"; }
vm_host() { g vm show "$1" --json 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin).get("host"))'; }
vm_api() { g vm show "$1" --json 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin).get("api"))'; }
running_copies() { # how many agents report VM $1 running or paused
	local c=0
	for n in hA hB hC; do
		curl -s --unix-socket "$T/$n/host.sock" http://x/v1/vms 2>/dev/null | python3 -c "
import json,sys
d=json.load(sys.stdin); sys.exit(0 if any(v['name']=='$1' and v['state'] in ('running','paused') for v in d['vms']) else 1)" && c=$((c + 1))
	done
	echo $c
}
for n in hA hB hC; do agent $n || { fail "multihost: agent $n did not start: $(tail -2 "$T/$n.log")"; exit 0; }; done
center || { fail "multihost: controller did not start"; exit 0; }
for n in hA hB hC; do g host add "${IP[$n]}:7001" --host-token-file "$T/ht" --name $n >/dev/null || fail "multihost: host add $n"; done
check "multihost: vm create" g vm create ab1 --memory 256M --vcpus 2 --boot "$IMG"
check "multihost: vm start on hA" g vm start ab1 --host hA
[ "$(vm_host ab1)" = hA ] && pass "multihost: inventory says hA" || fail "multihost: inventory says $(vm_host ab1) after start"
wait_for 10 guest_started "$(vm_api ab1)" || fail "multihost: the A-B guest did not start on hA"

# A -> B -> A while the A-B guest runs
for hop in hB hA; do
	t0=$(date +%s%N)
	if g vm migrate ab1 --to $hop --json >"$T/m-$hop.json" 2>"$T/m-$hop.err"; then
		ms=$(( ($(date +%s%N) - t0) / 1000000 ))
		stun=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["result"]["stun_ms"])' "$T/m-$hop.json" 2>/dev/null)
		pass "multihost: live migration to $hop (${ms} ms wall, stun ${stun} ms)"
	else
		fail "multihost: live migration to $hop: $(tail -1 "$T/m-$hop.err")"
	fi
	[ "$(vm_host ab1)" = $hop ] && pass "multihost: inventory shows $hop" || fail "multihost: inventory shows $(vm_host ab1), expected $hop"
	[ "$(running_copies ab1)" = 1 ] && pass "multihost: exactly one running copy after the move to $hop" || fail "multihost: $(running_copies ab1) running copies"
done
if ab_check "$(vm_api ab1)" 2; then pass "multihost: A-B clean on $(vm_host ab1)"; else fail "multihost: A-B check on $(vm_host ab1): $(tail -2 "$T/abcheck.out" | tr '\n' ' ')"; fi

# fault: destination agent killed during a migration
g vm migrate ab1 --to hC --no-wait --max-bandwidth 20M --json >"$T/f1.json" 2>&1
wait_for 30 precopy_sent "$T/hA/vms/ab1/api.sock" $((8 << 20)) || fail "fault: the migration to hC did not reach pre-copy"
kill -9 "$AG_hC" 2>/dev/null
task=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["task"])' "$T/f1.json" 2>/dev/null)
wait_for 60 bash -c "g task show $task --json | grep -q '\"state\": \"failed\"'" 2>/dev/null
if g task show "$task" --json 2>/dev/null | grep -q '"state": "failed"'; then
	pass "fault: destination agent killed -> task failed ($(g task show "$task" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["message"][:90])'))"
else
	fail "fault: task $task did not fail after the destination agent was killed"
	{ tail -5 "$T/c.log"; tail -5 "$T"/hA/vms/ab1/monitor.log; g task show "$task" --json | head -30; } >&2
fi
[ "$(vm_host ab1)" = hA ] && [ "$(running_copies ab1)" = 1 ] && pass "fault: VM still running on hA only" || fail "fault: VM on $(vm_host ab1), $(running_copies ab1) copies"
if ab_check "$(vm_api ab1)" 2; then pass "fault: A-B clean after the failed migration"; else fail "fault: A-B check after the failed migration"; fi
agent hC

# fault: controller restarted during a migration
g vm migrate ab1 --to hB --no-wait --max-bandwidth 200M --json >"$T/f2.json" 2>&1
wait_for 30 precopy_sent "$T/hA/vms/ab1/api.sock" 1 || fail "fault: the migration to hB did not reach pre-copy"
kill -9 "$CPID"; wait "$CPID" 2>/dev/null
center
max=0
for i in $(seq 1 20); do c=$(running_copies ab1); [ "$c" -gt "$max" ] && max=$c; sleep 0.5; done
[ "$max" -le 1 ] && pass "fault: controller restart: never running on two hosts (sampled 20 times)" || fail "fault: controller restart: $max running copies seen"
g task list --json | grep -q "interrupted: the controller restarted" && pass "fault: interrupted task failed with the reason" || fail "fault: interrupted task not marked"
in_transit() { cat "$T"/h*/vms/ab1/vm.json 2>/dev/null | grep -q '"incoming"'; }
mig_running() { curl -s --unix-socket "$T/hA/vms/ab1/api.sock" http://x/v1/migration 2>/dev/null | grep -q '"status":"running"'; }
for i in $(seq 1 180); do mig_running || in_transit || break; sleep 0.5; done
real_host() { for n in hA hB hC; do curl -s --unix-socket "$T/$n/host.sock" http://x/v1/vms | grep -q '"name":"ab1","state":"running"' && echo $n; done | head -1; }
# The controller reconciles with the hosts: the host first; an arrival it
# confirms itself gets its API path from the host's facts one pass later.
host_agrees() { local h a; h=$(vm_host ab1); a=$(vm_api ab1); [ -n "$h" ] && [ "$h" = "$(real_host)" ] && [ -n "$a" ] && [ "$a" != None ]; }
wait_for 30 host_agrees
h=$(vm_host ab1)
real=$(real_host)
[ -n "$h" ] && [ "$h" = "$real" ] && pass "fault: controller recovered the VM's host from the hosts ($h)" || fail "fault: inventory says $h, hosts say $real"
if ab_check "$(vm_api ab1)" 2; then pass "fault: A-B clean after the controller restart (VM on $(vm_host ab1))"; else fail "fault: A-B check after the controller restart: $(tail -2 "$T/abcheck.out" | tr '\n' ' ')"; fi

# the one-time key never leaves memory/key files: grep every log and task for 64-hex strings
leak=$(cat "$T"/*.log "$T"/h*/vms/*/monitor.log "$T"/h*/vms/*/monitor.out "$T"/h*/vms/.failed-*/monitor.* 2>/dev/null | grep -Eo '[0-9a-f]{64}' | head -1)
tasks_leak=$(g task list --json | grep -Eo '[0-9a-f]{64}' | head -1)
[ -z "$leak$tasks_leak" ] && pass "security: no one-time key in logs or task output" || fail "security: a 64-hex string appears in logs/tasks"
left=$(find "$T"/h*/keys -type f 2>/dev/null | wc -l)
[ "$left" = 0 ] && pass "security: no key file left behind" || fail "security: $left key files left"
