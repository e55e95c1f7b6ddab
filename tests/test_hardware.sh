#!/usr/bin/env bash
# Assignable hardware (issue 15): three hosts (network namespaces). hA declares
# one acme x1 GPU, hB one acme x2 GPU and two FPGAs, hC none. VMs ask for
# devices by attributes, never by host: g3 (an x2 GPU) can only start on
# hB, g1 (any GPU) then only on hA, and g2 (any GPU) nowhere, with every
# host's reason named (in use by whom, or no such device). A migration to a
# host without a free matching device is refused naming it; the host agent
# refuses too when asked directly. Once g3 powers off, g1 moves live to hB
# (A-B clean) and the in-use counts follow. Maintenance on hB sends g1 to
# the only host with a free GPU (hA), A-B clean, but not while g1's DRS
# automation is disabled (hB then stays entering, naming it). Bad specs get
# clear errors. Also DRS initial placement: with g1 and g3 each filling
# their 1-CPU host, a VM started where DRS places it (its own automation
# level partial, or the cluster's) goes to hC, the host that leaves the
# best cluster score, while in manual mode it goes where memory is most
# free (hA).
. "$(dirname "$0")/lib.sh"
have_kvm || { skip "hardware: no /dev/kvm"; exit 0; }
. "$TESTS_DIR/cluster_lib.sh"
cluster_up hardware --drs-interval 3600 -- --cpus 1 --memory 2G --device class=gpu,vendor=acme,model=x1 \
	-- --cpus 1 --memory 2G --device class=gpu,vendor=acme,model=x2,count=1 --device class=fpga,count=2 \
	-- --cpus 2 --memory 1G || exit 0

in_use() { # HOST CLASS MODEL: the host's in_use count of that device kind, from its facts
	agent_curl "$1" -sf http://x/v1/host |
		python3 -c 'import json,sys; h=json.load(sys.stdin)["hardware"]; print(sum(d["in_use"] for d in h if d["class"] == sys.argv[1] and d.get("model", "") == sys.argv[2]))' "$2" "$3"
}
check "an agent refuses a device without a class" bash -c "! $GLIDE host serve --data-dir $T/x --listen 127.0.0.1:1 --token-file $T/ht --device vendor=acme 2>$T/dev.err && grep -q 'needs a class' $T/dev.err"
check "glide host show lists the declared devices" bash -c "$GLIDE host show hB >$T/hB.show && grep -q 'hardware: class=gpu,vendor=acme,model=x2: 0 in use of 1; class=fpga: 0 in use of 2' $T/hB.show"
check "vm create refuses an unknown device attribute" bash -c "! $GLIDE vm create bad --memory 32M --boot $IMG --hardware colour=red 2>$T/bad.err && grep -q \"unknown device attribute 'colour'\" $T/bad.err"
code=$(center_curl -s -o "$T/bad.json" -w '%{http_code}' -d '{"name":"bad","memory":33554432,"boot":{"kind":"boot","path":"'"$IMG"'"},"hardware":[{"class":"gpu","count":3}]}' "$CENTER/v1/vms")
[ "$code" = 400 ] && grep -q 'hardware 0' "$T/bad.json" && pass "the API refuses a device request with a count (400: $(cat "$T/bad.json"))" ||
	fail "a request with a count: HTTP $code $(cat "$T/bad.json")"
for v in g1:class=gpu g2:class=gpu g3:class=gpu,model=x2; do
	"$GLIDE" vm create "${v%%:*}" --memory 32M --boot "$IMG" --hardware "${v#*:}" >/dev/null || fail "hardware: vm create ${v%%:*}"
done
check "vm show names the requested device" bash -c "$GLIDE vm show g3 | grep -q 'hardware 0: class=gpu,model=x2'"
"$GLIDE" vm start g3 >/dev/null 2>"$T/g3.err" && [ "$(host_of g3)" = hB ] &&
	pass "g3 (an x2 GPU) placed on hB, the only host with one" || fail "g3: on $(host_of g3): $(cat "$T/g3.err")"
"$GLIDE" vm start g1 >/dev/null 2>"$T/g1.err" && [ "$(host_of g1)" = hA ] &&
	pass "g1 (any GPU) placed on hA: hB's GPU is g3's" || fail "g1: on $(host_of g1): $(cat "$T/g1.err")"
if ! "$GLIDE" vm start g2 >/dev/null 2>"$T/g2.err" &&
	grep -q 'hA: hardware: host hA: no free class=gpu device: the host has 1, in use by g1' "$T/g2.err" &&
	grep -q 'hB: hardware: host hB: no free class=gpu device: the host has 1, in use by g3' "$T/g2.err" &&
	grep -q 'hC: hardware: host hC: no class=gpu device on this host' "$T/g2.err"; then
	pass "g2 (any GPU) starts nowhere, each host's reason named"
else
	fail "g2: $(cat "$T/g2.err"), on $(host_of g2)"
fi
agent_curl hA -s -d '{"name":"direct","config":{"memory":33554432,"vcpus":1},"boot":{"kind":"boot","path":"'"$IMG"'"},"hardware":[{"class":"gpu"}],"start":true}' http://x/v1/vms >"$T/direct.json"
grep -q 'cannot give VM direct its assignable devices: no free class=gpu device: the host has 1, in use by g1' "$T/direct.json" &&
	pass "the agent itself refuses a VM whose device is in use" || fail "the agent started or refused otherwise: $(cat "$T/direct.json")"
agent_curl hA -s -X DELETE http://x/v1/vms/direct >/dev/null
a=$(in_use hA gpu x1) b=$(in_use hB gpu x2)
[ "$a" = 1 ] && [ "$b" = 1 ] && pass "host facts: hA's x1 GPU and hB's x2 GPU in use" || fail "in use: hA $a, hB $b (expected 1, 1)"

# DRS initial placement (automation partial or full) against placement by free memory: g1 (hA) and g3 (hB)
# each want their host's one CPU; hC has 2 CPUs but the least memory (1 GiB)
demand_of() { agent_curl "$1" -sf http://x/v1/demand | grep -Eq '"cpu_demand": ?[0-9]'; }
wait_for 15 demand_of hA && wait_for 15 demand_of hB || fail "hardware: no demand measured for g1 and g3"
for p in p1 p2; do "$GLIDE" vm create $p --memory 32M --boot "$IMG" >/dev/null; done
"$GLIDE" vm start p1 --json >"$T/p1.json" 2>&1
h=$(host_of p1)
[ "$h" = hA ] && ! grep -q '"placement"' "$T/p1.json" && pass "DRS manual: p1 placed by free memory (on $h, 2 GiB hosts before hC's 1 GiB)" ||
	fail "p1 (manual): on $h: $(head -c 300 "$T/p1.json")"
"$GLIDE" vm stop p1 >/dev/null
check "vm set p2 --drs-automation partial (its own level, the cluster's is manual)" bash -c "$GLIDE vm set p2 --drs-automation partial | grep -q 'drs:      partial'"
check "an unknown automation level is refused" bash -c "! $GLIDE vm set p2 --drs-automation sometimes 2>$T/auto.err && grep -q 'disabled (DRS leaves the VM alone)' $T/auto.err"
"$GLIDE" vm start p2 --json >"$T/p2.json" 2>&1
if [ "$(host_of p2)" = hC ] && python3 -c 'import json,sys; p=json.load(open(sys.argv[1]))["placement"]; s=p["cluster_score_on"]
sys.exit(0 if p["by"] == "drs" and p["automation"] == "partial" and s["hC"] > s["hA"] + 20 and s["hC"] > s["hB"] + 20 else 1)' "$T/p2.json"; then
	pass "DRS partial (p2's own level): placed on hC by cluster score ($(python3 -c 'import json,sys; print(", ".join("%s %.0f%%" % kv for kv in sorted(json.load(open(sys.argv[1]))["placement"]["cluster_score_on"].items())))' "$T/p2.json"))"
else
	fail "p2 (partial): on $(host_of p2): $(head -c 400 "$T/p2.json")"
fi
"$GLIDE" vm stop p2 >/dev/null
"$GLIDE" cluster set --drs partial >/dev/null
"$GLIDE" vm start p1 >/dev/null 2>&1
[ "$(host_of p1)" = hC ] && pass "cluster DRS partial: p1 placed on hC by score too" || fail "p1 (cluster partial): on $(host_of p1)"
"$GLIDE" vm stop p1 >/dev/null
"$GLIDE" cluster set --drs manual >/dev/null

check "migrating g1 to hC (no GPU) is refused naming the device" bash -c "! $GLIDE vm migrate g1 --to hC >$T/m1.out 2>&1 && grep -q 'no class=gpu device on this host' $T/m1.out"
check "migrating g1 to hB (its GPU in use by g3) is refused" bash -c "! $GLIDE vm migrate g1 --to hB >$T/m2.out 2>&1 && grep -q 'in use by g3' $T/m2.out"

"$GLIDE" vm stop g3 >/dev/null || fail "hardware: vm stop g3"
if "$GLIDE" vm migrate g1 --to hB >"$T/m3.out" 2>&1 && [ "$(host_of g1)" = hB ] && ab_check "$(vm_api g1)" 1 2>/dev/null; then
	pass "g3 powered off: g1 moves live to hB, A-B clean"
else
	fail "g1 to hB: $(tail -2 "$T/m3.out"), on $(host_of g1), $(tail -1 "$T/abcheck.out" 2>/dev/null)"
fi
a=$(in_use hA gpu x1) b=$(in_use hB gpu x2)
[ "$a" = 0 ] && [ "$b" = 1 ] && pass "the in-use counts followed g1 (hA 0, hB 1)" || fail "in use after the move: hA $a, hB $b (expected 0, 1)"
check "g3 cannot start again while g1 holds the x2 GPU" bash -c "! $GLIDE vm start g3 2>$T/g3b.err && grep -q 'hB: hardware: host hB: no free class=gpu,model=x2 device: the host has 1, in use by g1' $T/g3b.err"

# a VM whose DRS automation is disabled keeps its host entering maintenance, with the reason
"$GLIDE" vm set g1 --drs-automation disabled >/dev/null
timeout 60 "$GLIDE" host maintenance enter hB --timeout 3 >"$T/disabled.out" 2>&1
rc=$?
[ $rc = 3 ] && grep -q 'g1: DRS automation is disabled for it' "$T/disabled.out" && [ "$(host_of g1)" = hB ] &&
	pass "g1 with DRS disabled stays on hB, which stays entering until the timeout: $(grep -m1 -o 'blocked: g1: [^(]*' "$T/disabled.out")" ||
	fail "disabled g1: exit $rc, on $(host_of g1): $(tail -2 "$T/disabled.out")"
"$GLIDE" vm set g1 --drs-automation default >/dev/null
timeout 90 "$GLIDE" host maintenance enter hB --timeout 60 >"$T/enter.out" 2>&1
rc=$?
if [ $rc = 0 ] && [ "$(host_of g1)" = hA ] && ab_check "$(vm_api g1)" 1 2>/dev/null; then
	pass "maintenance on hB: g1 moved to hA, the only host with a free GPU, A-B clean"
else
	fail "maintenance on hB: exit $rc, g1 on $(host_of g1): $(tail -2 "$T/enter.out"); $(tail -1 "$T/abcheck.out" 2>/dev/null)"
fi
check "maintenance exit hB" "$GLIDE" host maintenance exit hB
for v in g1 g2 g3 p1 p2; do "$GLIDE" vm stop $v >/dev/null 2>&1; done
