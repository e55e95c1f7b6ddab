# Network continuity around a live migration, shared by test_net_migrate.sh
# (monitors driven directly) and test_center_net_migrate.sh (through the
# controller and host agents). Sourced after lib.sh; needs P (a prefix for
# namespace and link names) and MAC (the guest NIC's MAC).
#
# Namespaces play the hosts and the network: a "switch" namespace with
# bridge brsw joins host A's bridge brA, host B's bridge brB (each host's
# "uplink" veth) and a client namespace (10.77.0.1/24 on cl0); a separate
# veth pair "mig" between A (10.99.0.1) and B (10.99.0.2) is the migration
# network. The netecho guest answers on 10.77.0.2.
SW=${P}sw HA=${P}a HB=${P}b CL=${P}c
ns() { local n="$1"; shift; ip netns exec "$n" "$@"; } # (not for background jobs: $! would be the subshell)

netcont_cleanup() {
	local n p
	for n in $HA $HB $CL $SW; do
		for p in $(ip netns pids "$n" 2>/dev/null); do kill "$p" 2>/dev/null; done
	done
	for n in $HA $HB; do wait_for 5 test -z "$(ip netns pids "$n" 2>/dev/null)"; done
	for n in $HA $HB $CL $SW; do
		for p in $(ip netns pids "$n" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
		ip netns del "$n" 2>/dev/null
	done
}

# netcont_begin WHAT: what every continuity test checks first (KVM, root,
# ping, build/guests/netecho.elf in ELF), the namespaces built and removed
# at exit (with everything running in them); prints SKIP or FAIL and
# returns 1 when the test cannot go on
netcont_begin() {
	local what="$1"
	have_kvm || { skip "$what: /dev/kvm not accessible"; return 1; }
	[ "$(id -u)" = 0 ] || { skip "$what: needs root (network namespaces, taps)"; return 1; }
	command -v ping >/dev/null || { skip "$what: ping is not installed (iputils-ping)"; return 1; }
	ELF="$GLIDE_BUILD/guests/netecho.elf"
	[ -e "$ELF" ] || { fail "$what: $ELF missing (run make)"; return 1; }
	trap 'netcont_cleanup; cleanup' EXIT
	netcont_setup >"$T/setup.out" 2>&1 && return 0
	fail "$what: cannot build the namespaces: $(tail -2 "$T/setup.out" | tr '\n' ' ')"
	return 1
}

netcont_setup() {
	local n
	for n in $SW $HA $HB $CL; do ip netns add "$n" && ns "$n" ip link set lo up || return 1; done
	ns $SW ip link add brsw type bridge && ns $SW ip link set brsw up || return 1
	# host uplinks and the client, each a veth pair into the switch
	ip link add ${P}sa netns $SW type veth peer name uplink netns $HA || return 1
	ip link add ${P}sb netns $SW type veth peer name uplink netns $HB || return 1
	ip link add ${P}sc netns $SW type veth peer name cl0 netns $CL || return 1
	for n in sa sb sc; do ns $SW ip link set ${P}$n master brsw up || return 1; done
	for n in $HA:brA $HB:brB; do
		ns ${n%%:*} ip link add ${n#*:} type bridge && ns ${n%%:*} ip link set ${n#*:} up &&
			ns ${n%%:*} ip link set uplink master ${n#*:} up || return 1
	done
	ns $CL ip addr add 10.77.0.1/24 dev cl0 && ns $CL ip link set cl0 up || return 1
	# the migration network
	ip link add mig netns $HA type veth peer name mig netns $HB || return 1
	ns $HA ip addr add 10.99.0.1/24 dev mig && ns $HA ip link set mig up || return 1
	ns $HB ip addr add 10.99.0.2/24 dev mig && ns $HB ip link set mig up || return 1
}

# netcont_fdb_log FILE: the switch's forwarding entry for MAC, every 2 ms,
# with the time, in the background (bounded: 10 s); its pid in FDB_PID
netcont_fdb_log() {
	( end=$((SECONDS + 10)); while [ $SECONDS -lt $end ]; do
		echo "$(date +%s.%N) $(ns $SW bridge fdb show br brsw 2>/dev/null | grep -i "^$MAC " | awk '{print $3}')"
		sleep 0.002
	done ) >"$1" 2>/dev/null &
	FDB_PID=$!
	PIDS+=($FDB_PID)
}

# netcont_load_start SOCK PINGS DGRAMS: the switch's log (netcont_fdb_log
# $T/fdb.log), the guest's counters now ($T/stats0.bin, from the monitor at
# SOCK), then the client's load in the background: ping every 1 ms
# ($T/ping.out, PING_PID) and UDP echo every 2 ms ($T/udp.json, UDP_PID);
# returns 1 s later
netcont_load_start() {
	netcont_fdb_log "$T/fdb.log"
	"$GLIDE" vm memsave --api "$1" --addr 0x9000 --size 128 --to "$T/stats0.bin" >/dev/null 2>&1
	ip netns exec $CL ping -D -i 0.001 -c "$2" -W 1 10.77.0.2 >"$T/ping.out" 2>&1 &
	PING_PID=$!
	PIDS+=($PING_PID)
	ip netns exec $CL python3 "$TESTS_DIR/udp_echo_client.py" 10.77.0.2 7 "$3" 2 >"$T/udp.json" 2>"$T/udp.err" &
	UDP_PID=$!
	PIDS+=($UDP_PID)
	sleep 1
}

# netcont_ping_summary FILE N: of `ping -D -c N` output, "N received lost
# duplicates largest-gap-ms first-lost-seqs"
netcont_ping_summary() {
	python3 - "$1" "$2" <<'EOF'
import re, sys
seqs, times = [], []
for line in open(sys.argv[1]):
    m = re.match(r"\[(\d+\.\d+)\] .*icmp_seq=(\d+)", line)
    if m:
        times.append(float(m.group(1)))
        seqs.append(int(m.group(2)))
n = int(sys.argv[2])
lost = sorted(set(range(1, n + 1)) - set(seqs))
gaps = [b - a for a, b in zip(times, times[1:])]
print(n, len(set(seqs)), len(lost), len(seqs) - len(set(seqs)), round(max(gaps) * 1000, 2) if gaps else -1,
      ",".join(map(str, lost[:10])) or "-")
EOF
}

# netcont_guest_counts STATS0 STATS1: of two dumps of the guest's stats
# record (0x9000), "echo requests answered (ICMP + UDP) and replies the
# guest could not queue itself" in between
netcont_guest_counts() {
	python3 - "$TESTS_DIR/virtio_stats.py" "$1" "$2" <<'EOF'
import json, subprocess, sys
a, b = (json.loads(subprocess.check_output([sys.executable, sys.argv[1], f])) for f in sys.argv[2:4])
print(b["icmp"] - a["icmp"] + b["udp"] - a["udp"], b["tx_dropped"] - a["tx_dropped"])
EOF
}

# netcont_learned_after FDB_LOG HH:MM:SS.sss: ms from that time (a log
# line's) until the switch first showed MAC on host B's uplink, or nothing
netcont_learned_after() {
	local learned
	learned=$(awk -v p="${P}sb" '$2 == p { print $1; exit }' "$1")
	[ -n "$learned" ] && [ -n "$2" ] || return 0
	python3 -c 'import sys,datetime; t=datetime.datetime.fromtimestamp(float(sys.argv[1])); h,m,s=sys.argv[2].split(":"); r=t.replace(hour=int(h),minute=int(m),second=int(float(s)),microsecond=int(round(float(s)%1*1e6))); print(round((t-r).total_seconds()*1000,1))' "$learned" "$2" 2>/dev/null
}

# netcont_pcap_echo FILE: "magic linktype frames echo-requests echo-replies" of a pcap file
netcont_pcap_echo() {
	python3 - "$1" <<'EOF'
import struct, sys
d = open(sys.argv[1], "rb").read()
magic, _, _, _, _, snap, link = struct.unpack_from("<IHHiIII", d, 0)
off, req, rep, n = 24, 0, 0, 0
while off + 16 <= len(d):
    _, _, cap, _ = struct.unpack_from("<IIII", d, off)
    f = d[off + 16: off + 16 + cap]
    off += 16 + cap
    n += 1
    if len(f) >= 35 and f[12:14] == b"\x08\x00" and f[23] == 1:
        req += f[34] == 8
        rep += f[34] == 0
print(hex(magic), link, n, req, rep)
EOF
}
