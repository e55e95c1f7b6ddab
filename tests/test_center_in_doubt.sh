#!/usr/bin/env bash
# A controller-run migration whose switchover ends in doubt (GO sent,
# RUNNING never came back) is settled by the controller from the
# destination's state, never leaving the VM running twice or nowhere:
#  1. the destination runs the VM but RUNNING is lost (test fault
#     skip-running on the destination's agent): the task succeeds, the VM
#     runs on hB only, the paused source copy is released;
#  2. the destination dies at GO (test fault exit-on-go): the task fails,
#     the VM runs on hA only, resumed.
. "$(dirname "$0")/lib.sh"
have_kvm || { skip "center in doubt: no /dev/kvm"; exit 0; }
IMG="$GLIDE_BUILD/guests/heartbeat.img"
[ -f "$IMG" ] || { fail "center in doubt: $IMG missing (run make)"; exit 0; }
BASE=$(port_base)
PC=$BASE
(umask 077; openssl rand -hex 16 >"$T/ht"; openssl rand -hex 16 >"$T/ct")
HT=$(cat "$T/ht")
export GLIDE_CENTER="127.0.0.1:$PC" GLIDE_TOKEN_FILE="$T/ct"
monitor_pids() { cat "$T"/h*/vms/*/pid 2>/dev/null; pgrep -f "^$GLIDE vm run --api $T/" 2>/dev/null; }
cleanup_all() {
	for p in $(monitor_pids); do kill "$p" 2>/dev/null; done
	cleanup
}
trap cleanup_all EXIT
agent() { # agent NAME PORT [ENV=VALUE...]: the env reaches the monitors it starts
	local n="$1" p="$2"; shift 2
	env "$@" "$GLIDE" host serve --data-dir "$T/$n" --listen "127.0.0.1:$p" --token-file "$T/ht" --name "$n" \
		>>"$T/$n.log" 2>&1 &
	PIDS+=($!)
	wait_for 10 curl -sf -H "Authorization: Bearer $HT" "http://127.0.0.1:$p/v1/host"
}
"$GLIDE" center serve --db "$T/c.db" --listen "127.0.0.1:$PC" --token-file "$T/ct" >>"$T/c.log" 2>&1 &
PIDS+=($!)
wait_for 10 "$GLIDE" cluster list || { fail "center in doubt: controller did not start"; exit 0; }
# running_on VM: the hosts whose agent has a live monitor for VM
running_on() {
	local h out=""
	for h in hA hB hC; do
		[ -f "$T/$h/vms/$1/pid" ] && kill -0 "$(cat "$T/$h/vms/$1/pid")" 2>/dev/null &&
			[ "$("$GLIDE" vm status --api "$T/$h/vms/$1/api.sock" --json 2>/dev/null | sed -n 's/.*"state": "\([a-z]*\)".*/\1/p')" = running ] &&
			out="$out $h"
	done
	echo "${out# }"
}

# 1. RUNNING lost: the destination (hB) runs the VM.
agent hA $((BASE + 1)) && agent hB $((BASE + 2)) GLIDE_TEST_FAULT=skip-running ||
	{ fail "center in doubt: agents did not start"; exit 0; }
"$GLIDE" host add "127.0.0.1:$((BASE + 1))" --host-token-file "$T/ht" --name hA >/dev/null &&
	"$GLIDE" host add "127.0.0.1:$((BASE + 2))" --host-token-file "$T/ht" --name hB >/dev/null ||
	{ fail "center in doubt: host add"; exit 0; }
"$GLIDE" vm create d1 --memory 64M --boot "$IMG" >/dev/null && "$GLIDE" vm start d1 --host hA >/dev/null ||
	{ fail "center in doubt: d1 did not start"; exit 0; }
if "$GLIDE" vm migrate d1 --to hB >"$T/m1.out" 2>&1 && grep -q "is in doubt" "$T/c.log" &&
	grep -q "resolved, keep the VM there" "$T/c.log"; then
	for _ in $(seq 75); do [ "$(running_on d1)" = hB ] && break; sleep 0.2; done # the released source exits
	where=$(running_on d1)
	if [ "$where" = hB ]; then pass "RUNNING lost: the controller saw the destination run the VM and released the source; it runs on hB only"
	else fail "RUNNING lost: the VM runs on '$where' (expected hB only)"; fi
else
	fail "RUNNING lost: task: $(tail -1 "$T/m1.out"); controller: $(grep -E 'in doubt|resolved' "$T/c.log" | tail -2 | tr '\n' ' ')"
fi

# 2. The destination dies at GO: the VM stays on hA.
agent hC $((BASE + 3)) GLIDE_TEST_FAULT=exit-on-go || { fail "center in doubt: agent hC did not start"; exit 0; }
"$GLIDE" host add "127.0.0.1:$((BASE + 3))" --host-token-file "$T/ht" --name hC >/dev/null || { fail "center in doubt: host add hC"; exit 0; }
"$GLIDE" vm create d2 --memory 64M --boot "$IMG" >/dev/null && "$GLIDE" vm start d2 --host hA >/dev/null ||
	{ fail "center in doubt: d2 did not start"; exit 0; }
if "$GLIDE" vm migrate d2 --to hC >"$T/m2.out" 2>&1; then
	fail "destination died at GO: the task reported success: $(tail -1 "$T/m2.out")"
elif grep -q "resolved, keep the VM here" "$T/c.log" && grep -q "keeps running on hA" "$T/m2.out"; then
	where=$(running_on d2)
	if [ "$where" = hA ]; then pass "destination died at GO: the controller resumed the source; the VM runs on hA only ($(tail -1 "$T/m2.out" | cut -c1-160))"
	else fail "destination died at GO: the VM runs on '$where' (expected hA only)"; fi
else
	fail "destination died at GO: task: $(tail -1 "$T/m2.out"); controller: $(grep -E 'in doubt|resolved' "$T/c.log" | tail -2 | tr '\n' ' ')"
fi
