# Three hosts and a controller for the cluster tests (DRS, maintenance,
# assignable hardware; sourced after lib.sh). Each host is a network
# namespace of its own (veth pairs on a bridge in a fifth namespace) with
# an agent listening and migrating on its own address, and the controller
# runs in a fourth, as in tests/test_host_multihost.sh; where namespaces
# cannot be made (no root or iproute2) all run on loopback instead (a SKIP
# line says so). cluster_up NAME CENTER_ARGS -- AGENT_A_ARGS --
# AGENT_B_ARGS -- AGENT_C_ARGS: agents hA, hB, hC (data in $T/hX) and the
# controller, the hosts added to the default cluster. After it:
#   $GLIDE          runs the CLI where the controller is reachable
#                   (GLIDE_CENTER and GLIDE_TOKEN_FILE set);
#   center_curl ARGS...  curl with ARGS, where "$CENTER" is the controller's URL;
#   agent_curl HOST ARGS...  curl to that agent's local socket (no token), path in ARGS as http://x/PATH;
#   $IMG, AB_START, AB_SIZE   an A-B image with an 8 MiB range (for ab_check).
# Everything started is stopped at exit (the monitors the agents start
# included). Returns non-zero (after a FAIL line naming NAME) when
# something did not come up.
BASE=$(port_base)
REAL_GLIDE="$GLIDE"
(umask 077; openssl rand -hex 16 >"$T/ht"; openssl rand -hex 16 >"$T/ct")
IMG="$T/ab8.img"
export AB_START=0x100000 AB_SIZE=8M GLIDE_TOKEN_FILE="$T/ct"
NETS=()
declare -A HOST_IP
P="glc$$"
if command -v ip >/dev/null && ip netns add "$P-probe" 2>/dev/null && ip netns del "$P-probe"; then
	CLUSTER_NETNS=1
	net=10.78.$(( $$ % 200 ))
	HOST_IP=([ctl]=$net.1 [hA]=$net.11 [hB]=$net.12 [hC]=$net.13)
	CENTER="http://${HOST_IP[ctl]}:7000"
else
	CLUSTER_NETNS=0
	HOST_IP=([ctl]=127.0.0.1 [hA]=127.0.0.1 [hB]=127.0.0.1 [hC]=127.0.0.1)
	CENTER="http://127.0.0.1:$BASE"
fi
export GLIDE_CENTER="${CENTER#http://}"
in_ns() { local n="$1"; shift; if [ $CLUSTER_NETNS = 1 ]; then ip netns exec "$P-$n" "$@"; else "$@"; fi; }
center_curl() { in_ns ctl curl -H "Authorization: Bearer $(cat "$T/ct")" "$@"; }
agent_curl() { local n="$1"; shift; curl --unix-socket "$T/$n/host.sock" "$@"; }
monitor_pids() { cat "$T"/h*/vms/*/pid 2>/dev/null; }
ns_empty() { local n; for n in "${NETS[@]:-}"; do [ -z "$n" ] || [ -z "$(ip netns pids "$n" 2>/dev/null)" ] || return 1; done; }
cleanup_all() {
	for p in $(monitor_pids); do kill "$p" 2>/dev/null; done
	for n in "${NETS[@]:-}"; do [ -n "$n" ] && for p in $(ip netns pids "$n" 2>/dev/null); do kill "$p" 2>/dev/null; done; done
	[ ${#NETS[@]} = 0 ] || wait_for 5 ns_empty
	for n in "${NETS[@]:-}"; do [ -n "$n" ] && ip netns del "$n" 2>/dev/null; done
	cleanup
}
trap cleanup_all EXIT
cluster_net() {
	ip netns add "$P-br" && NETS+=("$P-br") && ip -n "$P-br" link add br0 type bridge && ip -n "$P-br" link set br0 up ||
		return 1
	for n in ctl hA hB hC; do
		ip netns add "$P-$n" && NETS+=("$P-$n") &&
			ip -n "$P-br" link add "v$n" type veth peer name eth0 netns "$P-$n" &&
			ip -n "$P-br" link set "v$n" master br0 up &&
			ip -n "$P-$n" addr add "${HOST_IP[$n]}/24" dev eth0 &&
			ip -n "$P-$n" link set eth0 up && ip -n "$P-$n" link set lo up || return 1
	done
	# the CLI of the tests runs in the controller's namespace
	printf '#!/bin/sh\nexec ip netns exec %s env GLIDE_CENTER=%s GLIDE_TOKEN_FILE=%s %s "$@"\n' "$P-ctl" "$GLIDE_CENTER" "$T/ct" \
		"$REAL_GLIDE" >"$T/glide-cli" && chmod +x "$T/glide-cli" && GLIDE="$T/glide-cli"
}
cluster_agent() { # NAME PORT EXTRA...
	local n="$1" p="$2"; shift 2
	in_ns "$n" "$REAL_GLIDE" host serve --data-dir "$T/$n" --listen "${HOST_IP[$n]}:$p" --token-file "$T/ht" --name "$n" \
		--migration-address "${HOST_IP[$n]}" "$@" >>"$T/$n.log" 2>&1 &
	PIDS+=($!)
	eval "PORT_$n=$p"
	wait_for 10 in_ns ctl curl -sf -H "Authorization: Bearer $(cat "$T/ht")" "http://${HOST_IP[$n]}:$p/v1/host"
}
cluster_up() {
	local name="$1" args=() a=() b=() c=() which=0 pc pa pb pcc; shift
	for x in "$@"; do
		if [ "$x" = -- ]; then which=$((which + 1)); continue; fi
		case $which in 0) args+=("$x") ;; 1) a+=("$x") ;; 2) b+=("$x") ;; *) c+=("$x") ;; esac
	done
	if [ $CLUSTER_NETNS = 1 ]; then pc=7000 pa=7001 pb=7001 pcc=7001; else pc=$BASE pa=$((BASE + 1)) pb=$((BASE + 2)) pcc=$((BASE + 3)); fi
	"$GLIDE_BUILD/tools/guestcfg" "$GLIDE_BUILD/guests/guest.img" "$IMG" --mode ab --range-start 1M --range-size 8M \
		>"$T/guestcfg.out" 2>&1 || { fail "$name: guestcfg: $(cat "$T/guestcfg.out")"; return 1; }
	if [ $CLUSTER_NETNS = 1 ]; then
		cluster_net || { fail "$name: could not set up the hosts' network namespaces"; return 1; }
		pass "$name: hosts hA, hB, hC in network namespaces of their own (${HOST_IP[hA]}, ${HOST_IP[hB]}, ${HOST_IP[hC]}), the controller in another"
	else
		skip "$name: no network namespaces here (needs root and iproute2): hosts hA, hB, hC run on loopback instead"
	fi
	cluster_agent hA $pa "${a[@]}" && cluster_agent hB $pb "${b[@]}" && cluster_agent hC $pcc "${c[@]}" ||
		{ fail "$name: agents did not start: $(tail -2 "$T"/hA.log)"; return 1; }
	in_ns ctl "$REAL_GLIDE" center serve --db "$T/c.db" --listen "${HOST_IP[ctl]}:$pc" --token-file "$T/ct" "${args[@]}" \
		>>"$T/c.log" 2>&1 &
	PIDS+=($!)
	wait_for 10 "$GLIDE" cluster list || { fail "$name: controller did not start"; return 1; }
	for h in hA:$pa hB:$pb hC:$pcc; do
		"$GLIDE" host add "${HOST_IP[${h%%:*}]}:${h#*:}" --host-token-file "$T/ht" --name "${h%%:*}" >/dev/null ||
			{ fail "$name: host add ${h%%:*}"; return 1; }
	done
}
host_of() { "$GLIDE" vm show "$1" --json 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin).get("host"))'; }
vm_api() { "$GLIDE" vm show "$1" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["api"])'; }
