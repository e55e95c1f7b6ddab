#!/usr/bin/env bash
# Networks (port groups) on host agents and VMs with NICs and disks, through
# the agent and the controller, all inside one network namespace this test
# creates (bridges brA and brB in it, agents and controller on its
# loopback). Four agents:
#   hA  prod=bridge:brA,vlan=10,rate=10M    sees the shared directory (vlan=10 only where the kernel has bridge VLAN filtering)
#   hB  prod=bridge:brB                     sees the shared directory
#   hC  dev=bridge:brB                      (lacks prod)
#   hD  prod=bridge:brA                     runs in a mount namespace where the
#                                           shared directory is an empty tmpfs
# Checked: --network refused on a missing interface, a non-bridge and bad
# syntax; networks in the facts; strict NIC/disk validation (400 naming the
# unknown network); a MAC generated once and kept across agent restarts and
# power cycles; the monitor's --nic bridge=BR[,vlan][,rate],mac=[,policies] and --disk
# as the agent builds them (first line of the VM's monitor.log), for a
# power-on and for the destination of a live migration (its own bridge);
# duplicate MACs refused by the agent and the controller; placement and
# migration refused for a host lacking a network or not seeing a disk, with
# the reason; netstats through the agent; a capture through the controller.
#
# The monitor's bridge= backend (src/hostnet) may not be built in. Then a
# monitor started by an agent exits with "bridge ports need the host
# networking library (not built in)": the test checks the command line the
# agent built, and for the parts that need a running VM with a NIC it starts
# the monitor itself with a tap NIC (tap=, same MAC and disk) where the agent
# keeps its VMs, and lets the agent re-adopt it (as after an agent restart).
. "$(dirname "$0")/lib.sh"
have_kvm || { skip "host_networks: no /dev/kvm"; exit 0; }
command -v ip >/dev/null && ip netns add "gn$$-probe" 2>/dev/null && ip netns del "gn$$-probe" ||
	{ skip "host_networks: cannot create network namespaces (needs root and iproute2)"; exit 0; }
command -v unshare >/dev/null || { skip "host_networks: unshare (util-linux) missing"; exit 0; }
IMG="$GLIDE_BUILD/guests/ab.img"
[ -f "$IMG" ] || { skip "host_networks: build/guests/ab.img missing"; exit 0; }
NS="gn$$"
SH="$T/shared"
DISK="$SH/disk0.img"
declare -A PORT=([ctl]=7000 [hA]=7001 [hB]=7002 [hC]=7003 [hD]=7004 [hX]=7009)
(umask 077; openssl rand -hex 16 >"$T/ht"; openssl rand -hex 16 >"$T/ct")
mkdir -p "$SH" && truncate -s 1M "$DISK"

in_ns() { ip netns exec "$NS" "$@"; }
monitor_pids() { cat "$T"/h*/vms/*/pid 2>/dev/null; }
ns_empty() { [ -z "$(ip netns pids "$NS" 2>/dev/null)" ]; }
cleanup_all() {
	local p
	for p in $(monitor_pids); do kill "$p" 2>/dev/null; done
	for p in $(ip netns pids "$NS" 2>/dev/null); do kill "$p" 2>/dev/null; done
	wait_for 10 ns_empty
	for p in $(ip netns pids "$NS" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
	ip netns del "$NS" 2>/dev/null
	cleanup
}
trap cleanup_all EXIT
ip netns add "$NS" || { fail "host_networks: cannot create namespace $NS"; exit 0; }
in_ns ip link set lo up
for b in brA brB; do in_ns ip link add "$b" type bridge && in_ns ip link set "$b" up; done
# prod carries VLAN 10 where the kernel has bridge VLAN filtering; this
# test machine's kernel may not (docs/networking.md): then prod has none.
if in_ns ip link set brA type bridge vlan_filtering 1 2>/dev/null; then
	in_ns ip link set brA type bridge vlan_filtering 0
	VLAN_OPT=",vlan=10" VLAN_JSON=10 VLAN_TXT="VLAN 10"
else
	VLAN_OPT="" VLAN_JSON=null VLAN_TXT="no VLAN (this kernel has no bridge VLAN filtering)"
fi
in_ns ip link add vx0 type veth peer name vx1 # an interface that is not a bridge

serve() { # serve NAME ARGS...: the agent's command line
	local n="$1"; shift
	echo "$GLIDE" host serve --data-dir "$T/$n" --listen "127.0.0.1:${PORT[$n]}" --token-file "$T/ht" --name "$n" \
		--migration-address 127.0.0.1 "$@"
}
agent_up() { in_ns curl -sf -m 2 --unix-socket "$T/$1/host.sock" http://x/v1/host >/dev/null; }
agent() { # agent NAME ARGS...
	local n="$1"; shift
	ip netns exec "$NS" $(serve "$n" "$@") >>"$T/$n.log" 2>&1 & # no shell function: $! is the agent
	PIDS+=($!); eval "AG_$n=$!"
	wait_for 10 agent_up "$n"
}
agent_hidden() { # agent NAME ARGS... in a mount namespace where $SH is an empty tmpfs
	local n="$1"; shift
	ip netns exec "$NS" unshare -m sh -c 'mount -t tmpfs tmpfs "$1" && shift && exec "$@"' sh "$SH" $(serve "$n" "$@") \
		>>"$T/$n.log" 2>&1 &
	PIDS+=($!); eval "AG_$n=$!"
	wait_for 10 agent_up "$n"
}
stop_agent() { local p; eval "p=\$AG_$1"; kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; ! agent_up "$1"; }
hapi() { # hapi NAME METHOD PATH [BODY]: the agent's API on its host.sock; prints the body, then the status on its own line
	local n="$1" m="$2" path="$3" body="${4:-}"
	in_ns curl -s -m 30 --unix-socket "$T/$n/host.sock" -X "$m" ${body:+-H 'Content-Type: application/json' -d "$body"} \
		-w '\n%{http_code}' "http://x$path"
}
g() { in_ns env GLIDE_CENTER="127.0.0.1:${PORT[ctl]}" GLIDE_TOKEN_FILE="$T/ct" "$GLIDE" "$@"; }
jq_py() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)" 2>/dev/null; }
first_cmd() { grep -m1 '^host agent starts:' "$1" 2>/dev/null; } # the agent's first monitor command line in a log
last_cmd() { grep '^host agent starts:' "$1" 2>/dev/null | tail -1; }
NOT_BUILT="bridge ports need the host networking library (not built in)"

# --network is checked before the agent serves
refused() { # refused NAME PATTERN ARGS...: the agent exits 1 at once and says PATTERN
	local name="$1" pat="$2"; shift 2
	if in_ns timeout 10 $(serve hX "$@") >"$T/refused.out" 2>&1; then
		fail "host_networks: agent started with $*"
	elif grep -q -- "$pat" "$T/refused.out" && [ "$(wc -l <"$T/refused.out")" = 1 ]; then
		pass "host_networks: $name ($(cat "$T/refused.out"))"
	else
		fail "host_networks: $name: $(cat "$T/refused.out")"
	fi
}
refused "agent refuses a network on a missing bridge" "there is no network interface nobr0" --network prod=bridge:nobr0
refused "agent refuses a network on an interface that is not a bridge" "vx0 is not a bridge" --network prod=bridge:vx0
refused "agent refuses a VLAN out of range" "vlan=4095: a VLAN id from 1 to 4094" --network prod=bridge:brA,vlan=4095
refused "agent refuses a network given twice" "given twice" --network prod=bridge:brA --network prod=bridge:brB
refused "agent refuses an invalid network name" "invalid name" --network "a/b=bridge:brA"

agent hA --network prod=bridge:brA$VLAN_OPT,rate=10M,promiscuous=accept && agent hB --network prod=bridge:brB &&
	agent hC --network dev=bridge:brB && agent_hidden hD --network prod=bridge:brA ||
	{ fail "host_networks: agents did not start: $(tail -2 "$T"/h?.log)"; exit 0; }
hapi hA GET /v1/host | head -1 | jq_py 'json.dumps(d["networks"], sort_keys=True)' >"$T/nets.json"
[ "$(cat "$T/nets.json")" = '[{"bridge": "brA", "name": "prod", "rate": 10485760, "security": {"forged_transmits": "reject", "mac_changes": "reject", "promiscuous": "accept"}, "vlan": '$VLAN_JSON'}]' ] &&
	pass "host_networks: facts of hA list its network $(cat "$T/nets.json")" || fail "host_networks: hA networks: $(cat "$T/nets.json")"
hapi hD GET "/v1/paths?path=$DISK" | head -1 | grep -q '"exists":false' && hapi hA GET "/v1/paths?path=$DISK" | head -1 | grep -q '"size":1048576' &&
	pass "host_networks: GET /v1/paths: hA sees the 1 MiB disk, hD does not" || fail "host_networks: /v1/paths: $(hapi hD GET "/v1/paths?path=$DISK")"

# the agent's own API: strict NICs and disks
CFG='"config":{"memory":268435456,"vcpus":1},"boot":{"kind":"boot","path":"'"$IMG"'"}'
bad() { # bad NAME STATUS PATTERN BODY
	local r
	r=$(hapi hA POST /v1/vms "$4")
	if [ "$(echo "$r" | tail -1)" = "$2" ] && echo "$r" | head -1 | grep -q -- "$3"; then
		pass "host_networks: agent refuses $1 ($2 $(echo "$r" | head -1 | jq_py 'd["error"]'))"
	else
		fail "host_networks: agent $1: $(echo "$r" | tr '\n' ' ')"
	fi
}
bad "a NIC on a network it lacks" 400 "host hA lacks network 'nope' used by NIC 0" '{"name":"vbad",'"$CFG"',"nics":[{"network":"nope"}]}'
bad "a multicast MAC" 400 "multicast" '{"name":"vbad",'"$CFG"',"nics":[{"network":"prod","mac":"01:00:5e:00:00:01"}]}'
bad "an unknown NIC member" 400 "unknown member 'bridge'" '{"name":"vbad",'"$CFG"',"nics":[{"network":"prod","bridge":"brA"}]}'
bad "a relative disk path" 400 "absolute file path" '{"name":"vbad",'"$CFG"',"disks":[{"path":"disk.img"}]}'
bad "a disk path with a comma" 400 "without ','" '{"name":"vbad",'"$CFG"',"disks":[{"path":"/a,readonly"}]}'
bad "five NICs" 400 "at most 4 NICs" '{"name":"vbad",'"$CFG"',"nics":[{"network":"prod"},{"network":"prod"},{"network":"prod"},{"network":"prod"},{"network":"prod"}]}'
[ ! -e "$T/hA/vms/vbad" ] && pass "host_networks: nothing registered for the refused requests" || fail "host_networks: $T/hA/vms/vbad exists"

# a MAC generated once, kept across an agent restart and power cycles
r=$(hapi hA POST /v1/vms '{"name":"vmx",'"$CFG"',"nics":[{"network":"prod"}],"disks":[{"path":"'"$DISK"'"}]}')
MX=$(echo "$r" | head -1 | jq_py 'd["nics"][0]["mac"]')
if [ "$(echo "$r" | tail -1)" = 201 ] && python3 -c 'import sys; b=int(sys.argv[1][:2],16); sys.exit(0 if b & 3 == 2 else 1)' "$MX" 2>/dev/null; then
	pass "host_networks: agent generated MAC $MX (locally administered, unicast)"
else
	fail "host_networks: vmx create: $(echo "$r" | tr '\n' ' ')"
fi
bad "a MAC another VM of the host has" 409 "MAC $MX of NIC 0 is already used by VM vmx" '{"name":"vdup",'"$CFG"',"nics":[{"network":"prod","mac":"'"${MX^^}"'"}]}'
stop_agent hA || fail "host_networks: agent hA did not stop"
agent hA --network prod=bridge:brA$VLAN_OPT,rate=10M,promiscuous=accept || fail "host_networks: agent hA did not start again"
[ "$(hapi hA GET /v1/vms/vmx | head -1 | jq_py 'd["nics"][0]["mac"]')" = "$MX" ] &&
	pass "host_networks: the MAC is the same after an agent restart" || fail "host_networks: MAC after restart: $(hapi hA GET /v1/vms/vmx)"
r=$(hapi hA POST /v1/vms/vmx/start)
BRIDGE=1
if [ "$(echo "$r" | tail -1)" = 200 ]; then
	pass "host_networks: vmx runs with a NIC on bridge brA"
elif echo "$r" | grep -q "$NOT_BUILT"; then
	BRIDGE=0
	skip "host_networks: the monitor's bridge= backend is not built in ($NOT_BUILT): the command lines the agents build are checked, and a monitor with a tap NIC stands in where a VM must run"
else
	fail "host_networks: vmx start: $(echo "$r" | tr '\n' ' ')"
fi
want="--nic bridge=brA$VLAN_OPT,rate=10485760,mac=$MX,promiscuous=accept --disk $DISK"
first_cmd "$T/hA/vms/vmx/monitor.log" | grep -q -- "$want\$" &&
	pass "host_networks: the agent started the monitor with $want" || fail "host_networks: monitor command: $(first_cmd "$T/hA/vms/vmx/monitor.log")"
if [ $BRIDGE = 1 ]; then
	st=$(in_ns "$GLIDE" vm status --api "$T/hA/vms/vmx/api.sock" --json)
	echo "$st" | jq_py 'd["nics"][0]["mac"] + " " + d["disks"][0]["path"]' | grep -qx "$MX $DISK" &&
		pass "host_networks: the monitor's status has the NIC with MAC $MX and the disk" || fail "host_networks: status: $st"
	hapi hA POST /v1/vms/vmx/stop >/dev/null
fi
hapi hA POST /v1/vms/vmx/start >/dev/null
[ "$(grep -c "^host agent starts:.*mac=$MX,promiscuous=accept --disk $DISK\$" "$T/hA/vms/vmx/monitor.log")" -ge 2 ] &&
	pass "host_networks: a second power-on keeps MAC $MX" || fail "host_networks: second power-on: $(last_cmd "$T/hA/vms/vmx/monitor.log")"
hapi hA POST /v1/vms/vmx/stop >/dev/null
hapi hA DELETE /v1/vms/vmx >/dev/null

# the controller, on an inventory of schema version 1 (before VMs had NICs and disks): upgraded in place
python3 - "$T/c.db" <<'PYEOF'
import sqlite3, sys, time
c = sqlite3.connect(sys.argv[1])
now = int(time.time() * 1000)
c.executescript("""
CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE clusters(id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL, evc_level TEXT NOT NULL DEFAULT 'none',
  max_migrations_per_host INTEGER, created_at INTEGER NOT NULL);
CREATE TABLE hosts(id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL, address TEXT UNIQUE NOT NULL, token TEXT NOT NULL,
  cluster_id INTEGER NOT NULL REFERENCES clusters(id), state TEXT NOT NULL DEFAULT 'connected', facts TEXT,
  last_seen INTEGER, added_at INTEGER NOT NULL);
CREATE TABLE vms(id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL, cluster_id INTEGER NOT NULL REFERENCES clusters(id),
  host_id INTEGER REFERENCES hosts(id), config TEXT NOT NULL, boot TEXT NOT NULL,
  devices TEXT NOT NULL DEFAULT '["serial"]', evc_level TEXT, power_state TEXT NOT NULL DEFAULT 'off', api TEXT,
  locked_by INTEGER, created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL);
CREATE TABLE tasks(id INTEGER PRIMARY KEY, kind TEXT NOT NULL, vm_id INTEGER, vm_name TEXT, state TEXT NOT NULL,
  stage TEXT, progress REAL NOT NULL DEFAULT 0, message TEXT, source_host TEXT, dest_host TEXT, detail TEXT,
  result TEXT, created_at INTEGER NOT NULL, started_at INTEGER, ended_at INTEGER);
CREATE INDEX tasks_state ON tasks(state);
INSERT INTO meta VALUES('schema_version', '1');
""")
c.execute("INSERT INTO clusters(name, created_at) VALUES('default', ?)", (now,))
c.execute("INSERT INTO vms(name, cluster_id, config, boot, created_at, updated_at) VALUES('old1', 1, ?, ?, ?, ?)",
          ('{"name":"old1","memory":268435456,"vcpus":1}', '{"kind":"boot","path":"/x.img"}', now, now))
c.commit()
PYEOF
chmod 600 "$T/c.db"
ip netns exec "$NS" "$GLIDE" center serve --db "$T/c.db" --listen "127.0.0.1:${PORT[ctl]}" --token-file "$T/ct" >>"$T/c.log" 2>&1 &
PIDS+=($!)
wait_for 10 g cluster list || { fail "host_networks: controller did not start: $(tail -2 "$T/c.log")"; exit 0; }
v=$(python3 -c 'import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute("SELECT value FROM meta WHERE key=\"schema_version\"").fetchone()[0])' "$T/c.db")
[ "$v" = 2 ] && [ "$(g vm show old1 --json | jq_py 'str(d["nics"]) + str(d["disks"]) + str(d["memory"])')" = "[][]268435456" ] &&
	grep -q "upgraded from schema version 1 to 2" "$T/c.log" &&
	pass "host_networks: a schema 1 inventory is upgraded to 2 in place; its VM has no NICs or disks" ||
	fail "host_networks: schema upgrade: version $v, $(g vm show old1 --json 2>&1 | tr -d '\n' | head -c 200)"
g vm delete old1 >/dev/null
for n in hA hB hC hD; do g host add "127.0.0.1:${PORT[$n]}" --host-token-file "$T/ht" --name $n >/dev/null || fail "host_networks: host add $n"; done
g host show hA >"$T/hA.show" 2>&1 && grep -q "networks: prod (bridge brA, ${VLAN_OPT:+VLAN 10, }10.0 MiB/s)" "$T/hA.show" &&
	pass "host_networks: host show lists hA's networks" || fail "host_networks: host show: $(grep networks "$T/hA.show")"
check "host_networks: vm create with a NIC and a disk" g vm create vm1 --memory 256M --boot "$IMG" --nic prod --disk "$DISK"
M1=$(g vm show vm1 --json | jq_py 'd["nics"][0]["mac"]')
[ "$(g vm show vm1 --json | jq_py 'd["nics"][0]["network"] + " " + d["disks"][0]["path"] + " " + str(d["disks"][0]["readonly"])')" = "prod $DISK False" ] && [ -n "$M1" ] &&
	pass "host_networks: the inventory keeps NIC 0 on prod with MAC $M1 and the disk" || fail "host_networks: vm show: $(g vm show vm1 --json | tr -d '\n' | head -c 400)"
g vm create vm2 --memory 256M --boot "$IMG" --nic "prod,mac=$M1" >"$T/dup.out" 2>&1
rc=$?
[ $rc = 4 ] && grep -q "MAC $M1 of NIC 0 is already used by VM vm1 (NIC 0)" "$T/dup.out" &&
	pass "host_networks: controller refuses a MAC another VM has ($(cat "$T/dup.out"))" || fail "host_networks: duplicate MAC: rc $rc $(cat "$T/dup.out")"
code=$(in_ns curl -s -o "$T/badnic.out" -w '%{http_code}' -H "Authorization: Bearer $(cat "$T/ct")" -d '{"name":"vm3","memory":268435456,"boot":{"kind":"boot","path":"'"$IMG"'"},"nics":[{"network":"prod","vlan":5}]}' "http://127.0.0.1:${PORT[ctl]}/v1/vms")
[ "$code" = 400 ] && grep -q "unknown member 'vlan'" "$T/badnic.out" && pass "host_networks: controller refuses an unknown NIC member (400)" ||
	fail "host_networks: controller bad NIC: $code $(cat "$T/badnic.out")"

# placement and cold migration only to hosts with the VM's networks and disks
expect_refusal() { # NAME PATTERN CMD...: CMD fails with exit 4 and says PATTERN
	local name="$1" pat="$2" rc; shift 2
	"$@" >"$T/ref.out" 2>&1
	rc=$?
	if [ $rc = 4 ] && grep -qF -- "$pat" "$T/ref.out"; then pass "host_networks: $name"; else fail "host_networks: $name: rc $rc $(tail -3 "$T/ref.out" | tr '\n' ' ')"; fi
}
expect_refusal "placement refuses hC, which lacks prod" "hC: network: host hC lacks network 'prod' used by NIC 0" g vm start vm1 --host hC
expect_refusal "placement refuses hD, which cannot see the disk" "hD: disk 0: host hD cannot see $DISK (No such file or directory)" g vm start vm1 --host hD
expect_refusal "cold migration refused to hC, which lacks prod" "host hC lacks network 'prod' used by NIC 0" g vm migrate vm1 --to hC
expect_refusal "cold migration refused to hD, which cannot see the disk" "disk 0: host hD cannot see $DISK" g vm migrate vm1 --to hD
check "host_networks: vm create vmdev on network dev" g vm create vmdev --memory 256M --boot "$IMG" --nic dev
g vm start vmdev >"$T/vmdev.out" 2>&1
if [ $BRIDGE = 1 ]; then
	[ "$(g vm show vmdev --json | jq_py 'd["host"]')" = hC ] && pass "host_networks: placement put vmdev on hC, the only host with dev" || fail "host_networks: vmdev: $(cat "$T/vmdev.out")"
	g vm stop vmdev >/dev/null 2>&1
else
	grep -q "host hC could not start VM vmdev" "$T/vmdev.out" && first_cmd "$T/hC/vms/vmdev/monitor.log" | grep -q -- "--nic bridge=brB,mac=" &&
		pass "host_networks: placement chose hC, the only host with dev (its monitor got --nic bridge=brB)" ||
		fail "host_networks: vmdev placement: $(cat "$T/vmdev.out") $(first_cmd "$T/hC/vms/vmdev/monitor.log")"
fi

# vm1 running on hA
vm1_on_hA() { [ "$(g vm show vm1 --json | jq_py 'd["state"] + " " + str(d["host"])')" = "running hA" ]; }
g vm start vm1 --host hA >"$T/start1.out" 2>&1
if [ $BRIDGE = 0 ]; then
	grep -q "$NOT_BUILT" "$T/start1.out" || fail "host_networks: vm1 start on hA: $(cat "$T/start1.out")"
	# stand-in: the same VM with a tap NIC (same MAC, same disk), adopted by hA's agent
	wait_for 10 bash -c "[ \"\$(curl -s --unix-socket $T/hA/host.sock http://x/v1/vms/vm1 | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"state\"])')\" = off ]"
	stop_agent hA || fail "host_networks: agent hA did not stop"
	D="$T/hA/vms/vm1"
	ip netns exec "$NS" "$GLIDE" vm run --api "$D/api.sock" --log "$D/monitor.log" --serial "$D/serial.log" --name vm1 --memory 256M \
		--boot "$IMG" --nic "tap=gntap0,mac=$M1" --disk "$DISK" >"$D/monitor.out" 2>&1 &
	MPID=$!
	PIDS+=($MPID)
	echo $MPID >"$D/pid"
	wait_for 20 in_ns "$GLIDE" vm status --api "$D/api.sock" || fail "host_networks: stand-in monitor: $(tail -2 "$D/monitor.out")"
	agent hA --network prod=bridge:brA$VLAN_OPT,rate=10M,promiscuous=accept
fi
wait_for 15 vm1_on_hA && pass "host_networks: vm1 runs on hA with NIC $M1" || fail "host_networks: vm1: $(g vm show vm1 --json | tr -d '\n' | head -c 300)"

# live migration: refused before anything moves to a host lacking the network or the disk
expect_refusal "live migration refused to hC, which lacks prod" "network: host hC lacks network 'prod' used by NIC 0" g vm migrate vm1 --to hC
expect_refusal "live migration refused to hD, which cannot see the disk" "disk 0: host hD cannot see $DISK (No such file or directory); the VM's disks must be on storage its hosts share" g vm migrate vm1 --to hD
vm1_on_hA && [ ! -e "$T/hC/vms/vm1" ] && [ ! -e "$T/hD/vms/vm1" ] && pass "host_networks: after the refusals vm1 still runs on hA, nothing on hC or hD" ||
	fail "host_networks: after refusals: $(g vm show vm1 --json | tr -d '\n' | head -c 200)"

# netstats through the agent
IF=$(in_ns "$GLIDE" host netstats vm1 --host "127.0.0.1:${PORT[hA]}" --host-token-file "$T/ht" --json | jq_py 'd["nics"][0]["ifname"]')
for i in 1 2 3 4 5; do # broadcast frames into the VM's port: they wait in its tap (the A-B guest has no NIC driver)
	in_ns python3 -c 'import socket,sys; s=socket.socket(socket.AF_PACKET, socket.SOCK_RAW); s.bind((sys.argv[1], 0)); s.send(bytes.fromhex("ffffffffffff020000000001") + b"\x08\x06" + bytes(46))' "${IF:-none}" 2>/dev/null
done
# a snapshot reads what waits in the tap into the NIC's held frames (docs/devices.md)
in_ns "$GLIDE" vm snapshot --api "$T/hA/vms/vm1/api.sock" --to "$T/vm1.snap" --resume >/dev/null 2>&1
in_ns "$GLIDE" host netstats --api "$T/hA/host.sock" >"$T/ns.out" 2>&1
if grep -qE "^vm1 +0 prod +$M1 +[0-9]+ +[0-9]+ +[0-9]+ +[0-9]+ +[0-9]+ +[0-9]+ +[0-9]+ +[0-9]+ +[0-9]+$" "$T/ns.out"; then
	pass "host_networks: host netstats prints vm1's NIC on prod with its counters: $(grep '^vm1' "$T/ns.out" | tr -s ' ')"
else
	fail "host_networks: netstats: $(cat "$T/ns.out")"
fi
in_ns "$GLIDE" host netstats vm1 --host "127.0.0.1:${PORT[hA]}" --host-token-file "$T/ht" --json >"$T/ns.json" 2>&1
held=$(jq_py 'd["nics"][0]["rx_held"]' <"$T/ns.json")
[ "$(jq_py 'd["nics"][0]["bridge"] + " " + d["nics"][0]["network"] + " " + d["nics"][0]["mac"] + " " + str(d["nics"][0]["vlan"])' <"$T/ns.json")" = "brA prod $M1 ${VLAN_JSON/null/None}" ] && [ "${held:-0}" -ge 5 ] &&
	pass "host_networks: netstats --json over TCP: brA, $VLAN_TXT, $held frames held ($IF)" || fail "host_networks: netstats --json: $(head -c 600 "$T/ns.json")"
# a capture of vm1's NIC through the controller and hA's agent: a pcap file
# comes back (the A-B guest has no NIC driver: no frame reaches it, so the
# capture ends after its 1 s with the file's header alone)
g vm capture vm1 --to "$T/cap.pcap" --seconds 1 --count 10 --json >"$T/cap.json" 2>"$T/cap.err"
magic=$(python3 -c 'import sys; print(open(sys.argv[1], "rb").read(4).hex())' "$T/cap.pcap" 2>/dev/null)
if [ "$(jq_py 'd["host"] + " " + str(d["frames"]) + " " + str(d["bytes"])' <"$T/cap.json")" = "hA 0 24" ] &&
	[ "$magic" = d4c3b2a1 ] && [ "$(stat -c %s:%a "$T/cap.pcap")" = 24:600 ]; then
	pass "host_networks: glide vm capture vm1 through the controller: a pcap from hA's agent (header, 0 frames), mode 600"
else
	fail "host_networks: capture through the controller: $(cat "$T/cap.json" "$T/cap.err" | head -c 400) magic $magic"
fi
g vm capture vmdev --to "$T/cap2.pcap" --seconds 1 >"$T/cap2.out" 2>&1
[ $? != 0 ] && grep -q "VM vmdev is off; only a running VM's NICs can be captured" "$T/cap2.out" && [ ! -e "$T/cap2.pcap" ] &&
	pass "host_networks: a capture of a VM that is off is refused, no file" || fail "host_networks: capture of vmdev: $(cat "$T/cap2.out")"
g vm capture vm1 --to "$T/cap3.pcap" --seconds 61 >"$T/cap3.out" 2>&1
[ $? = 1 ] && grep -q "seconds must be 0.1 to 60" "$T/cap3.out" && pass "host_networks: capture --seconds 61 refused" ||
	fail "host_networks: capture --seconds 61: $(cat "$T/cap3.out")"
in_ns "$GLIDE" host netstats vmdev --api "$T/hC/host.sock" >"$T/ns2.out" 2>&1
[ $? = 1 ] && grep -q "VM vmdev is off on host hC; only a running or paused VM has NIC counters" "$T/ns2.out" &&
	pass "host_networks: netstats of a VM that is off says so" || fail "host_networks: netstats off VM: $(cat "$T/ns2.out")"

# live migration to hB: its agent starts the destination monitor with its own bridge for prod
g vm migrate vm1 --to hB >"$T/mig.out" 2>&1
mrc=$?
if [ $BRIDGE = 1 ]; then
	[ $mrc = 0 ] && [ "$(g vm show vm1 --json | jq_py 'd["host"]')" = hB ] && pass "host_networks: vm1 migrated to hB" || fail "host_networks: migration to hB: $(cat "$T/mig.out")"
	log="$T/hB/vms/vm1/monitor.log"
else
	# the destination monitor creates its devices when the VM's configuration arrives: its bridge port fails there
	failed_dir() { ls -d "$T"/hB/vms/.failed-vm1-* >/dev/null 2>&1; }
	wait_for 15 failed_dir
	fdir=$(ls -d "$T"/hB/vms/.failed-vm1-* 2>/dev/null | head -1)
	[ $mrc != 0 ] && wait_for 10 vm1_on_hA && grep -q "$NOT_BUILT" "${fdir:-/nonexistent}"/monitor.* &&
		pass "host_networks: migration to hB failed at the destination's bridge port (not built in: $(tail -1 "$T/mig.out" | head -c 160)); vm1 keeps running on hA" ||
		fail "host_networks: migration to hB: rc $mrc $(cat "$T/mig.out") $(tail -2 "${fdir:-/nonexistent}"/monitor.* 2>/dev/null)"
	log="$fdir/monitor.log"
fi
want="--nic bridge=brB,mac=$M1 --disk $DISK"
first_cmd "$log" | grep -q -- "--incoming 127.0.0.1:[0-9]* --key-file [^ ]*/keys/key\.[A-Za-z0-9]* $want\$" &&
	pass "host_networks: hB started its incoming monitor with $want" || fail "host_networks: incoming command on hB: $(first_cmd "$log")"
if [ $BRIDGE = 1 ]; then
	st=$(in_ns "$GLIDE" vm status --api "$(g vm show vm1 --json | jq_py 'd["api"]')" --json)
	[ "$(echo "$st" | jq_py 'd["nics"][0]["mac"]')" = "$M1" ] && pass "host_networks: on hB the NIC keeps MAC $M1" || fail "host_networks: status on hB: $st"
fi
check "host_networks: vm stop vm1" g vm stop vm1
