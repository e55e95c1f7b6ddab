#!/usr/bin/env bash
# Network check between hosts and interfaces tagged by service (issue 12):
# two host namespaces, each with a management interface (10.78.0.0/24) and a
# migration interface (10.79.0.0/24, MTU 9000 on the hosts), each network a
# bridge in a "switch" namespace. Agents run with --migration-address on the
# migration network, the controller in hA's namespace. Asserted:
#   - host facts and `glide host show` name the interfaces of each service;
#   - `glide host netcheck hA hB` with one switch port at MTU 1500 finds the
#     path MTU 1500 below the route's 9000 and exits 3 (what vmkping -d -s
#     8972 shows on a real network); after the port is raised it is clean,
#     path MTU 9000, with RTT and throughput figures; --service management
#     checks the other network;
#   - with the migration network cut, the check says unreachable and a live
#     migration of a running VM is refused by the compatibility check with
#     that reason (the pair's last check was unreachable, so it checks again);
#   - once the network is back the migration checks again, succeeds, and
#     its task says it used hB's migration interface and carries the check.
# run.sh timeout: 180
. "$(dirname "$0")/lib.sh"
P="nk$$"
SW=${P}sw HA=${P}a HB=${P}b
ns() { local n="$1"; shift; ip netns exec "$n" "$@"; }
have_kvm || { skip "network check: /dev/kvm not accessible"; exit 0; }
[ "$(id -u)" = 0 ] || { skip "network check: needs root (network namespaces)"; exit 0; }
IMG="$GLIDE_BUILD/guests/ab.img"

nk_cleanup() {
	local n p
	for n in $HA $HB $SW; do
		for p in $(ip netns pids "$n" 2>/dev/null); do kill "$p" 2>/dev/null; done
	done
	for n in $HA $HB; do wait_for 5 test -z "$(ip netns pids "$n" 2>/dev/null)"; done
	for n in $HA $HB $SW; do
		for p in $(ip netns pids "$n" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
		ip netns del "$n" 2>/dev/null
	done
}
trap 'nk_cleanup; cleanup' EXIT

nk_setup() {
	local n h i
	for n in $SW $HA $HB; do ip netns add "$n" && ns "$n" ip link set lo up || return 1; done
	for n in mgmt mig; do ns $SW ip link add br$n type bridge && ns $SW ip link set br$n up || return 1; done
	i=1
	for h in $HA $HB; do
		ip link add ${P}m$i netns $SW type veth peer name mgmt netns $h || return 1
		ip link add ${P}v$i netns $SW type veth peer name mig netns $h || return 1
		ns $SW ip link set ${P}m$i master brmgmt up || return 1
		ns $SW ip link set ${P}v$i mtu 9000 master brmig up || return 1
		ns $h ip addr add 10.78.0.$i/24 dev mgmt && ns $h ip link set mgmt up || return 1
		ns $h ip link set mig mtu 9000 && ns $h ip addr add 10.79.0.$i/24 dev mig && ns $h ip link set mig up || return 1
		i=$((i + 1))
	done
}
nk_setup >"$T/setup.out" 2>&1 || { fail "network check: cannot build the namespaces: $(tail -2 "$T/setup.out" | tr '\n' ' ')"; exit 0; }

(umask 077; openssl rand -hex 16 >"$T/ht"; openssl rand -hex 16 >"$T/ct")
BASE=$((21000 + RANDOM % 10000))
PA=$BASE PB=$((BASE + 1)) PC=$((BASE + 2))
ip netns exec $HA "$GLIDE" host serve --data-dir "$T/hA" --listen 10.78.0.1:$PA --token-file "$T/ht" --name hA \
	--migration-address 10.79.0.1 >>"$T/hA.log" 2>&1 &
PIDS+=($!)
ip netns exec $HB "$GLIDE" host serve --data-dir "$T/hB" --listen 10.78.0.2:$PB --token-file "$T/ht" --name hB \
	--migration-address 10.79.0.2 >>"$T/hB.log" 2>&1 &
PIDS+=($!)
ip netns exec $HA "$GLIDE" center serve --db "$T/c.db" --listen 127.0.0.1:$PC --token-file "$T/ct" >>"$T/c.log" 2>&1 &
PIDS+=($!)
g() { ip netns exec $HA env GLIDE_CENTER="127.0.0.1:$PC" GLIDE_TOKEN_FILE="$T/ct" "$GLIDE" "$@"; }
if ! wait_for 15 g cluster list || ! wait_for 10 g host add 10.78.0.1:$PA --host-token-file "$T/ht" --name hA ||
	! wait_for 10 g host add 10.78.0.2:$PB --host-token-file "$T/ht" --name hB; then
	fail "controller and agents: $(tail -n 2 "$T/c.log" "$T/hA.log" "$T/hB.log" | tr '\n' ' ')"
	exit 0
fi

# the interfaces of each service, in the facts and in `glide host show`
g host show hB --json >"$T/hB.json" 2>&1
g host show hB >"$T/hB.txt" 2>&1
ifs=$(json_get "$T/hB.json" facts.interfaces 2>/dev/null)
if [ "$ifs" = "{'management': ['10.78.0.2'], 'migration': ['10.79.0.2'], 'provisioning': ['10.78.0.2']}" ] &&
	grep -q "^management *10.78.0.2" "$T/hB.txt" && grep -q "addresses 10.79.0.2" "$T/hB.txt"; then
	pass "hB's interfaces by service: $ifs (provisioning defaults to the management address)"
else
	fail "interfaces by service: $ifs; $(tr '\n' ' ' <"$T/hB.txt")"
fi

# a jumbo-frame host behind a 1500-byte switch port
ns $SW ip link set ${P}v2 mtu 1500
g host netcheck hA hB --seconds 0.5 --json >"$T/nc1.json" 2>"$T/nc1.err"
rc=$?
read -r ok route path problem <<<"$(python3 -c '
import json,sys; d=json.load(open(sys.argv[1])); r=d["results"][0]
print(d["ok"], r["mtu"].get("route"), r["mtu"].get("path"), int(any("path MTU" in p for p in r["problems"])))' "$T/nc1.json" 2>/dev/null)"
if [ $rc = 3 ] && [ "$ok" = False ] && [ "$route" = 9000 ] && [ "$path" = 1500 ] && [ "$problem" = 1 ]; then
	pass "netcheck finds the 1500-byte switch port between two MTU 9000 hosts: route $route, path $path, exit 3"
else
	fail "netcheck with a 1500-byte port: exit $rc, ok $ok, route $route, path $path; $(head -c 600 "$T/nc1.json") $(cat "$T/nc1.err")"
fi
g host netcheck hA hB --seconds 0.5 >"$T/nc1.txt" 2>&1
check "netcheck prints the problem" grep -q "problem: path MTU 1500 is below the route's MTU 9000" "$T/nc1.txt"

ns $SW ip link set ${P}v2 mtu 9000
g host netcheck hA hB --seconds 0.5 --json >"$T/nc2.json" 2>"$T/nc2.err"
rc=$?
read -r ok path from to rtt gbps <<<"$(python3 -c '
import json,sys; d=json.load(open(sys.argv[1])); r=d["results"][0]
print(d["ok"], r["mtu"]["path"], r["from"], r["to"].split(":")[0], r["rtt_ms"]["avg"], r["throughput"]["bits_per_s"]/1e9)' "$T/nc2.json" 2>/dev/null)"
if [ $rc = 0 ] && [ "$ok" = True ] && [ "$path" = 9000 ] && [ "$from" = 10.79.0.1 ] && [ "$to" = 10.79.0.2 ] &&
	python3 -c "import sys; sys.exit(not (0 < $rtt < 100 and $gbps > 0))" 2>/dev/null; then
	pass "netcheck clean once the port is raised: $from -> $to, path MTU $path, RTT $rtt ms, $gbps Gbit/s"
else
	fail "netcheck after the fix: exit $rc, ok $ok, path $path, $from -> $to, rtt $rtt, $gbps; $(head -c 600 "$T/nc2.json") $(cat "$T/nc2.err")"
fi
g host netcheck hA hB --service management --seconds 0.2 --json >"$T/nc3.json" 2>&1
check "netcheck --service management goes between the management addresses" \
	python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))["results"][0]; sys.exit(not (r["from"]=="10.78.0.1" and r["to"].startswith("10.78.0.2:") and r["ok"]))' "$T/nc3.json"

# the migration network cut: unreachable, and a live migration refused for it
ns $SW ip link set ${P}v2 down
g host netcheck hA hB --seconds 0.2 --json >"$T/nc4.json" 2>&1
check "netcheck with the migration network cut says unreachable (management still up)" \
	python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); r=d["results"][0]; sys.exit(not (d["reachable"] is False and "cannot reach 10.79.0.2" in r["error"]))' "$T/nc4.json"
if ! { g vm create vnc --memory 64M --boot "$IMG" >"$T/create.out" 2>&1 && g vm start vnc --host hA >"$T/start.out" 2>&1; }; then
	fail "VM vnc on hA: $(cat "$T/create.out" "$T/start.out" | tr '\n' ' ')"
	exit 0
fi
g vm migrate vnc --to hB --json >"$T/m1.json" 2>"$T/m1.err"
rc=$?
if [ $rc != 0 ] && grep -q "network: host hA cannot reach host hB's migration interface" "$T/m1.err" "$T/m1.json" &&
	g vm show vnc --json 2>/dev/null | grep -q '"host": "hA"'; then
	pass "migration refused before anything moved: $(grep -o "network: [^;\"]*" "$T/m1.err" "$T/m1.json" | head -1 | cut -c1-160)"
else
	fail "migration over a cut network: exit $rc; $(cat "$T/m1.err" "$T/m1.json" | tr '\n' ' ' | cut -c1-600)"
fi

# back up: the migration checks the pair again and goes through hB's migration interface
ns $SW ip link set ${P}v2 up
g vm migrate vnc --to hB --json >"$T/m2.json" 2>"$T/m2.err"
rc=$?
task=$(json_get "$T/m2.json" id 2>/dev/null || json_get "$T/m2.json" task 2>/dev/null)
g task show "$task" --json >"$T/t2.json" 2>&1
read -r state svc addrs ncok <<<"$(python3 -c '
import json,sys; t=json.load(open(sys.argv[1])); r=t.get("result") or {}
print(t["state"], r["network"]["service"], r["network"]["addresses"], r["netcheck"]["ok"])' "$T/t2.json" 2>/dev/null)"
if [ $rc = 0 ] && [ "$state" = succeeded ] && [ "$svc" = migration ] && [ "${addrs#10.79.0.2:}" != "$addrs" ] &&
	[ "$ncok" = True ] && g vm show vnc --json 2>/dev/null | grep -q '"host": "hB"'; then
	pass "migration after the repair: checked the pair again (ok), moved over $svc interface $addrs, VM on hB"
else
	fail "migration after the repair: exit $rc, task $task: $state $svc $addrs $ncok; $(head -c 800 "$T/t2.json") $(cat "$T/m2.err")"
fi
g vm stop vnc >/dev/null 2>&1
