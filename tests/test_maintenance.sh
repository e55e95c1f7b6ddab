#!/usr/bin/env bash
# Maintenance mode and rules (issue 15): three hosts in network namespaces (hA
# 4 GiB, hB and hC 1 GiB each, 2 CPUs each), a cluster whose hosts each have
# a migration cost budget of 2 (a live move costs 1), below the controller's 8. hA runs four A-B guests (8 MiB range) and holds one
# powered-off VM. `glide host maintenance enter hA --evacuate-powered-off`
# empties it: every running VM moves live (DRS picks hB or hC), never more
# than 2 migrations at once (the others queued, their place in line shown),
# A-B clean on each; the powered-off VM is
# registered elsewhere; the host then is "in" maintenance and refuses new
# VMs and incoming migrations; `exit` makes it take VMs again. Rules: m1
# and m2 (anti-affinity over the VM group "pair") end on different hosts; an affinity rule over them
# made later is reported as a conflict and ignored; a must-not-run-on rule
# keeps a VM from starting on hA. A VM a must rule pins to hA (host group
# "onlyA") leaves the host "entering" with the reason until the timeout,
# after which it takes VMs again; a rule follows its group's new members.
. "$(dirname "$0")/lib.sh"
have_kvm || { skip "maintenance: no /dev/kvm"; exit 0; }
. "$TESTS_DIR/cluster_lib.sh"
cluster_up maintenance --drs-interval 3600 -- --cpus 2 --memory 4G -- --cpus 2 --memory 1G \
	-- --cpus 2 --memory 1G || exit 0
check "cluster set: each host's migration cost budget 2 (the cluster's limit, below the controller's 8)" bash -c "$GLIDE cluster set --max-migrations-per-host 2 | grep -q 'budget per host 2'"
check "a budget of 0 is refused" bash -c "! $GLIDE cluster set --max-migrations-per-host 0 2>$T/b0.err && grep -q 'budget of migration cost' $T/b0.err"
for i in 1 2 3 4; do
	"$GLIDE" vm create m$i --memory 32M --boot "$IMG" >/dev/null && "$GLIDE" vm start m$i --host hA >/dev/null ||
		fail "maintenance: vm m$i did not start on hA"
done
"$GLIDE" vm create off1 --memory 32M --boot "$IMG" >/dev/null && "$GLIDE" vm start off1 --host hA >/dev/null &&
	"$GLIDE" vm stop off1 >/dev/null || fail "maintenance: powered-off VM off1 on hA"
check "group set pair: a VM group of m1 and m2" bash -c "$GLIDE group set pair --vms m1,m2 | grep -q 'VM group pair in cluster default: 2 members'"
check "rule create apart (anti-affinity over the VM group pair)" "$GLIDE" rule create apart --kind anti-affinity --vm-group pair
check "a rule naming a group that does not exist is refused" bash -c "! $GLIDE rule create nog --kind anti-affinity --vm-group nosuch 2>$T/nog.err && grep -q 'no group named nosuch' $T/nog.err"
check "a VM group named where a host group belongs is refused" bash -c "! $GLIDE rule create wrong --kind must-run-on --vms m3 --host-group pair 2>$T/wrong.err && grep -q 'is a vm group, the rule needs a host group' $T/wrong.err"
check "a group a rule names cannot be deleted" bash -c "! $GLIDE group delete pair 2>$T/gdel.err && grep -q 'named by rule apart' $T/gdel.err"
check "rule create together (affinity m1, m2), newer: accepted, then reported as a conflict" "$GLIDE" rule create together --kind affinity --vms m1,m2
check "rule create with a bad kind is refused" bash -c "! $GLIDE rule create bad --kind sometimes --vms m1,m2 2>$T/rk.err && grep -q 'rule kind' $T/rk.err"
check "rule create anti-affinity over one VM is refused" bash -c "! $GLIDE rule create one --kind anti-affinity --vms m1 2>$T/r1.err && grep -q '2 to 256 names' $T/r1.err"
check "a VM-VM rule that names hosts is refused" bash -c "! $GLIDE rule create vh --kind affinity --vms m1,m2 --hosts hA 2>$T/vh.err && grep -q 'names no hosts' $T/vh.err"
check "rule list shows both rules" bash -c "[ \$($GLIDE rule list --json | grep -c '\"kind\"') = 2 ]"
check "cluster drs reports the newer rule as conflicting (the older wins)" bash -c "$GLIDE cluster drs --json | grep -q 'an older rule keeps m1 and m2 apart'"
sleep 1 # the guests past their first pass over the range

# the tasks' stages while hA empties (bounded: 150 looks at most)
(for _ in $(seq 150); do "$GLIDE" task list --json 2>/dev/null | grep -o '"stage": "queued: [^"]*"'; sleep 0.2; done >"$T/stages") &
watcher=$!
timeout 180 "$GLIDE" host maintenance enter hA --evacuate-powered-off --timeout 150 >"$T/enter.out" 2>&1
rc=$?
kill $watcher 2>/dev/null; wait $watcher 2>/dev/null
state=$("$GLIDE" host maintenance show hA --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["state"])')
if [ $rc = 0 ] && [ "$state" = in ]; then
	pass "maintenance enter hA: in maintenance ($(tail -1 "$T/enter.out"))"
else
	fail "maintenance enter hA: exit $rc, state $state: $(tail -3 "$T/enter.out"); $(tail -5 "$T/c.log")"
fi
bad=""; where=""
for i in 1 2 3 4; do
	h=$(host_of m$i); where="$where m$i:$h"
	case "$h" in hB|hC) ab_check "$(vm_api m$i)" 1 2>/dev/null || bad="$bad m$i(A-B: $(tail -1 "$T/abcheck.out"))" ;;
	*) bad="$bad m$i(on $h)" ;; esac
done
[ -z "$bad" ] && pass "all four running VMs moved live to hB/hC ($where), A-B clean on each" ||
	fail "evacuated VMs:$bad"
[ "$(host_of m1)" != "$(host_of m2)" ] && pass "anti-affinity kept through the evacuation: m1 on $(host_of m1), m2 on $(host_of m2)" ||
	fail "anti-affinity broken: m1 and m2 both on $(host_of m1)"
h=$(host_of off1)
case "$h" in hB|hC) pass "--evacuate-powered-off: off1 is registered on $h now" ;; *) fail "powered-off off1 is on '$h'" ;; esac
# never more than 2 migrations at once from hA (the per-host limit), from the tasks' start and end times
"$GLIDE" task list --json >"$T/tasks.json"
python3 - "$T/tasks.json" >"$T/overlap" <<'PY'
import json, sys
t = json.load(open(sys.argv[1]))
t = t.get("tasks", t) if isinstance(t, dict) else t
mig = [x for x in t if x.get("kind") == "migrate" and x.get("source_host") == "hA" and x.get("started_at")]
ev = sorted([(x["started_at"], 1) for x in mig] + [(x["ended_at"] or 1 << 62, -1) for x in mig], key=lambda e: (e[0], e[1]))
cur = peak = 0
for _, d in ev:
    cur += d
    peak = max(peak, cur)
print(len(mig), peak)
PY
read -r nmig peak <"$T/overlap"
if [ "$nmig" -ge 5 ] && [ "$peak" -le 2 ]; then pass "$nmig migrations off hA, at most $peak at once (budget 2, cost 1 each)"
else fail "migrations off hA: $nmig, at most $peak at once (budget 2): $(head -c 600 "$T/tasks.json")"; fi
if grep -Eq 'queued: [0-9]+(st|nd|rd|th) in line for host hA \(migration cost 2 of its budget 2 in use; this task costs 1\)' "$T/stages"; then
	pass "a queued migration showed its place in line: $(sort -u "$T/stages" | head -2 | tr '\n' ' ')"
else
	fail "no queued stage with a place in line for hA was seen: $(sort -u "$T/stages" | head -5)"
fi

"$GLIDE" vm create new1 --memory 32M --boot "$IMG" >/dev/null
check "a host in maintenance takes no new VM (vm start --host hA refused, naming it)" bash -c "! $GLIDE vm start new1 --host hA 2>$T/new1.err && grep -q 'maintenance mode' $T/new1.err"
check "a host in maintenance takes no incoming migration" bash -c "! $GLIDE vm migrate m1 --to hA 2>$T/mig.err && grep -q 'maintenance mode' $T/mig.err"
check "maintenance exit hA" bash -c "$GLIDE host maintenance exit hA | grep -q 'maintenance none'"
check "after exit hA takes VMs again (new1 starts there)" "$GLIDE" vm start new1 --host hA
"$GLIDE" vm create new2 --memory 32M --boot "$IMG" >/dev/null
"$GLIDE" rule create notA --kind must-not-run-on --vms new2 --hosts hA >/dev/null
check "a must-not-run-on rule keeps new2 off hA at power-on, naming the rule" bash -c "! $GLIDE vm start new2 --host hA 2>$T/new2.err && grep -q 'rule notA' $T/new2.err"

# blocked: a VM a must rule pins to hA
"$GLIDE" vm create pinned --memory 32M --boot "$IMG" >/dev/null && "$GLIDE" vm start pinned --host hA >/dev/null ||
	fail "maintenance: pinned did not start on hA"
"$GLIDE" group set onlyA --hosts hA >/dev/null
"$GLIDE" rule create pin --kind must-run-on --vms pinned --host-group onlyA >/dev/null
"$GLIDE" vm stop new1 >/dev/null 2>&1
timeout 60 "$GLIDE" host maintenance enter hA --timeout 4 >"$T/blocked.out" 2>&1
rc=$?
"$GLIDE" host maintenance show hA --json >"$T/blocked.json"
if [ $rc = 3 ] && grep -q "pinned: no other host takes it: hB: a rule forbids it; hC: a rule forbids it" "$T/blocked.out" &&
   [ "$(json_get "$T/blocked.json" state)" = timed-out ] && [ "$(host_of pinned)" = hA ]; then
	pass "a must rule that pins a VM keeps hA entering, with the reason, until the timeout ($(grep -m1 -o 'blocked: pinned: [^;]*; hC: [^;]*' "$T/blocked.out"))"
else
	fail "blocked evacuation: exit $rc, $(cat "$T/blocked.json"); $(tail -3 "$T/blocked.out")"
fi
check "after the timeout hA takes VMs again" "$GLIDE" vm start new1 --host hA
"$GLIDE" group set onlyA --hosts hA,hB >/dev/null
check "a rule follows its group's members (pin: hosts of onlyA, now hA and hB)" bash -c "$GLIDE rule list --json | python3 -c 'import json,sys; r={x[\"name\"]: x for x in json.load(sys.stdin)[\"rules\"]}[\"pin\"]; sys.exit(0 if r[\"hosts\"] == [\"hA\", \"hB\"] and r[\"host_group\"] == \"onlyA\" else 1)'"
for v in m1 m2 m3 m4 pinned new1; do "$GLIDE" vm stop $v >/dev/null 2>&1; done
