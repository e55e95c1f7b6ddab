#!/usr/bin/env bash
# Host agents + controller on loopback: inventory, placement, EVC, refusals
# (memory, CPU feature, locked VM), token checks, restarts (agent re-adopts
# its monitors, controller keeps its inventory and fails interrupted tasks).
. "$(dirname "$0")/lib.sh"
have_kvm || { skip "center_basic: no /dev/kvm"; exit 0; }
BASE=$(port_base)
PC=$BASE PA=$((BASE + 1)) PB=$((BASE + 2)) PS=$((BASE + 3))
(umask 077; openssl rand -hex 16 >"$T/ht"; openssl rand -hex 16 >"$T/ct"; echo wrong >"$T/bad")
IMG="$GLIDE_BUILD/guests/heartbeat.img"
[ -f "$IMG" ] || { python3 -c "open('$T/halt.img','wb').write(bytes([0xfa,0xf4,0xeb,0xfd])+bytes(506)+bytes([0x55,0xaa]))"; IMG="$T/halt.img"; }
export GLIDE_CENTER="127.0.0.1:$PC" GLIDE_TOKEN_FILE="$T/ct"
monitor_pids() { cat "$T"/h*/vms/*/pid 2>/dev/null; }
cleanup_all() { for p in $(monitor_pids); do kill "$p" 2>/dev/null; done; cleanup; }
trap cleanup_all EXIT
[ -n "${KEEP:-}" ] && trap - EXIT
agent() { # agent NAME PORT EXTRA...
	local n="$1" p="$2"; shift 2
	"$GLIDE" host serve --data-dir "$T/$n" --listen "127.0.0.1:$p" --token-file "$T/ht" --name "$n" "$@" >>"$T/$n.log" 2>&1 &
	PIDS+=($!); eval "AG_$n=$!"
	wait_for 10 curl -sf -H "Authorization: Bearer $(cat "$T/ht")" "http://127.0.0.1:$p/v1/host"
}
center() {
	"$GLIDE" center serve --db "$T/c.db" --listen "127.0.0.1:$PC" --token-file "$T/ct" >>"$T/c.log" 2>&1 &
	PIDS+=($!); CPID=$!
	wait_for 10 "$GLIDE" cluster list
}
agent hA $PA && agent hB $PB || { fail "center_basic agents: did not start: $(tail -2 "$T"/hA.log)"; exit 0; }
# hS: a small host (64 MiB for VMs) with an older CPU (no CX16, no LAHF/SAHF in 64-bit mode)
agent hS $PS --memory-limit 64M --cpuid-mask 1.ecx=0xffffdfff,80000001.ecx=0xfffffffe
center || { fail "center_basic controller: did not start"; exit 0; }

# security: tokens
check "token: controller refuses a missing token" bash -c "[ \$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:$PC/v1/vms) = 401 ]"
check "token: controller refuses a wrong token" bash -c "! GLIDE_TOKEN_FILE=$T/bad $GLIDE vm list"
check "token: host agent refuses a wrong token" bash -c "[ \$(curl -s -o /dev/null -w '%{http_code}' -H 'Authorization: Bearer nope' http://127.0.0.1:$PA/v1/host) = 401 ]"
check "token: host add with a wrong host token is refused" bash -c "! $GLIDE host add 127.0.0.1:$PA --host-token-file $T/bad --name hA"
check "token: local host.sock needs no token" curl -sf --unix-socket "$T/hA/host.sock" http://x/v1/host

# the agent frees the VMs it forgot (register and delete 40: its records go back to what it knows)
churn_ok=0
for i in $(seq 1 40); do
	curl -sf --unix-socket "$T/hS/host.sock" -X POST http://x/v1/vms \
		-d "{\"name\":\"churn$i\",\"config\":{\"memory\":16777216,\"vcpus\":1},\"boot\":{\"kind\":\"boot\",\"path\":\"$IMG\"}}" >/dev/null &&
		curl -sf --unix-socket "$T/hS/host.sock" -X DELETE http://x/v1/vms/churn$i >/dev/null && churn_ok=$((churn_ok + 1))
done
records() { curl -s --unix-socket "$T/hS/host.sock" http://x/v1/host | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["vm_records"], len(d["vms"]))'; }
freed() { read -r r k <<<"$(records)"; [ "$r" = "$k" ]; }
if [ $churn_ok = 40 ] && wait_for 5 freed; then
	pass "40 VMs registered and deleted on hS: its records are freed ($(records | awk '{print $1}') in memory, as many as it knows)"
else
	fail "VM records after 40 registered and deleted: $churn_ok done; records, known: $(records)"
fi

check "host add hA" "$GLIDE" host add "127.0.0.1:$PA" --host-token-file "$T/ht" --name hA
check "host add hB" "$GLIDE" host add "127.0.0.1:$PB" --host-token-file "$T/ht" --name hB
check "host add hS" "$GLIDE" host add "127.0.0.1:$PS" --host-token-file "$T/ht" --name hS
check "host list --json shows 3 hosts" bash -c "[ \$($GLIDE host list --json | grep -c '\"address\"') = 3 ]"

# EVC: a cluster whose baseline hS cannot meet refuses it
"$GLIDE" cluster create strict --evc x86-64-v2 >/dev/null 2>&1
if "$GLIDE" host add "127.0.0.1:$PS" --host-token-file "$T/ht" --name hS2 --cluster strict 2>"$T/evc.err"; then
	fail "evc: host lacking the baseline joined"
else
	grep -q "lacks" "$T/evc.err" && pass "evc: host below the baseline cannot join ($(grep -o 'lacks [a-z0-9_, ]*' "$T/evc.err" | head -1))" || fail "evc: unclear refusal: $(cat "$T/evc.err")"
fi
check "cluster evc shows hosts and levels" bash -c "$GLIDE cluster evc default --json | grep -q max_level"

# placement and power on
check "vm create" "$GLIDE" vm create vm1 --memory 128M --boot "$IMG"
check "vm start (placement)" "$GLIDE" vm start vm1 --host hA
"$GLIDE" vm show vm1 --json >"$T/vm1.json"
check "vm show --json has name/state/host/api" bash -c "grep -q '\"host\": \"hA\"' $T/vm1.json && grep -q '\"state\": \"running\"' $T/vm1.json && grep -q '\"api\": \"/' $T/vm1.json"
API=$(json_get "$T/vm1.json" api)
check "vm status through the reported api socket" "$GLIDE" vm status --api "$API"

# refusals, each before anything moves
if "$GLIDE" vm migrate vm1 --to hS --json >"$T/r1.json" 2>"$T/r1.err"; then fail "refuse: memory"; else
	grep -q "memory: host hS has" "$T/r1.err" && pass "refuse: not enough memory on hS" || fail "refuse memory: $(cat "$T/r1.err")"; fi
grep -q "lacks" "$T/r1.err" && pass "refuse: CPU features named ($(grep -o 'lacks [0-9]* features\? the VM sees: [a-z0-9_, ]*' "$T/r1.err" | head -1))" || fail "refuse: CPU feature not named: $(cat "$T/r1.err")"
check "refuse: VM still on hA, no copy on hS" bash -c "$GLIDE vm show vm1 --json | grep -q '\"host\": \"hA\"' && ! ls $T/hS/vms/vm1 2>/dev/null"
check "refuse: config change of a running VM" bash -c "! $GLIDE vm set vm1 --memory 256M"
# a VM locked by a running task: its config cannot change and it cannot move
sqlite3 "$T/c.db" "UPDATE vms SET locked_by = 999 WHERE name = 'vm1'" 2>/dev/null || python3 -c "import sqlite3; c=sqlite3.connect('$T/c.db'); c.execute(\"UPDATE vms SET locked_by = 999 WHERE name = 'vm1'\"); c.commit()"
if "$GLIDE" vm migrate vm1 --to hB 2>"$T/r3.err"; then fail "refuse: locked VM moved"; else
	grep -q "locked by task 999" "$T/r3.err" && pass "refuse: VM locked by a task ($(head -c 80 "$T/r3.err"))" || fail "refuse locked: $(cat "$T/r3.err")"; fi
python3 -c "import sqlite3; c=sqlite3.connect('$T/c.db'); c.execute(\"UPDATE vms SET locked_by = NULL WHERE name = 'vm1'\"); c.commit()"

# host agent restart: re-adopts the running monitor
kill "$AG_hA"; wait "$AG_hA" 2>/dev/null
agent hA $PA
check "agent restart: monitor re-adopted" bash -c "curl -s --unix-socket $T/hA/host.sock http://x/v1/vms | grep -q '\"state\":\"running\"'"
check "agent restart: VM kept running" "$GLIDE" vm status --api "$API"

# controller restart: inventory survives, interrupted tasks fail with the reason
python3 -c "import sqlite3,time; c=sqlite3.connect('$T/c.db'); c.execute(\"INSERT INTO tasks(kind, vm_name, state, stage, created_at, started_at) VALUES('migrate','vm1','running','precopy',?,?)\", (int(time.time()*1000),)*2); c.commit()"
kill "$CPID"; wait "$CPID" 2>/dev/null
center
check "controller restart: inventory kept" bash -c "$GLIDE vm show vm1 --json | grep -q '\"host\": \"hA\"'"
check "controller restart: interrupted task failed with the reason" bash -c "$GLIDE task list --json | grep -q 'interrupted: the controller restarted'"

# stop, per-VM EVC while off, cold migration
check "vm stop" "$GLIDE" vm stop vm1
check "vm set --evc while off" "$GLIDE" vm set vm1 --evc x86-64-v1
check "cold migration of a powered-off VM" "$GLIDE" vm migrate vm1 --to hB
check "cold: inventory shows hB" bash -c "$GLIDE vm show vm1 --json | grep -q '\"host\": \"hB\"'"
check "start on hB with per-VM EVC" "$GLIDE" vm start vm1
"$GLIDE" vm show vm1 --json >"$T/vm1b.json"
"$GLIDE" vm status --api "$(json_get "$T/vm1b.json" api)" --json >"$T/st.json" 2>&1
M=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["config"]["cpuid_mask"]["80000001.ecx"])' "$T/st.json" 2>/dev/null)
[ "$M" = 0 ] && pass "per-VM EVC x86-64-v1 mask reached the monitor (80000001.ecx mask $M)" || fail "per-VM EVC mask: 80000001.ecx=$M"
"$GLIDE" vm stop vm1 >/dev/null 2>&1
