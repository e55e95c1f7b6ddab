# Three host agents and a controller on loopback, for the DRS and
# maintenance tests (sourced after lib.sh). cluster_up NAME CENTER_ARGS
# -- AGENT_A_ARGS -- AGENT_B_ARGS -- AGENT_C_ARGS: agents hA, hB, hC (data
# in $T/hX, migration address 127.0.0.1) and a controller, the hosts added
# to the default cluster; GLIDE_CENTER and GLIDE_TOKEN_FILE point at it;
# A-B images with an 8 MiB range ($IMG, AB_START, AB_SIZE for ab_check).
# The monitors the agents start are stopped at exit. Returns non-zero
# (after a FAIL line naming NAME) when something did not come up.
BASE=$(port_base)
PC=$BASE PA=$((BASE + 1)) PB=$((BASE + 2)) PCC=$((BASE + 3))
(umask 077; openssl rand -hex 16 >"$T/ht"; openssl rand -hex 16 >"$T/ct")
IMG="$T/ab8.img"
export AB_START=0x100000 AB_SIZE=8M GLIDE_CENTER="127.0.0.1:$PC" GLIDE_TOKEN_FILE="$T/ct"
monitor_pids() { cat "$T"/h*/vms/*/pid 2>/dev/null; }
cleanup_all() { for p in $(monitor_pids); do kill "$p" 2>/dev/null; done; cleanup; }
trap cleanup_all EXIT
cluster_agent() { # NAME PORT EXTRA...
	local n="$1" p="$2"; shift 2
	"$GLIDE" host serve --data-dir "$T/$n" --listen "127.0.0.1:$p" --token-file "$T/ht" --name "$n" \
		--migration-address 127.0.0.1 "$@" >>"$T/$n.log" 2>&1 &
	PIDS+=($!)
	wait_for 10 curl -sf -H "Authorization: Bearer $(cat "$T/ht")" "http://127.0.0.1:$p/v1/host"
}
cluster_up() {
	local name="$1" args=() a=() b=() c=() which=0; shift
	for x in "$@"; do
		if [ "$x" = -- ]; then which=$((which + 1)); continue; fi
		case $which in 0) args+=("$x") ;; 1) a+=("$x") ;; 2) b+=("$x") ;; *) c+=("$x") ;; esac
	done
	"$GLIDE_BUILD/tools/guestcfg" "$GLIDE_BUILD/guests/guest.img" "$IMG" --mode ab --range-start 1M --range-size 8M \
		>"$T/guestcfg.out" 2>&1 || { fail "$name: guestcfg: $(cat "$T/guestcfg.out")"; return 1; }
	cluster_agent hA $PA "${a[@]}" && cluster_agent hB $PB "${b[@]}" && cluster_agent hC $PCC "${c[@]}" ||
		{ fail "$name: agents did not start: $(tail -2 "$T"/hA.log)"; return 1; }
	"$GLIDE" center serve --db "$T/c.db" --listen "127.0.0.1:$PC" --token-file "$T/ct" "${args[@]}" >>"$T/c.log" 2>&1 &
	PIDS+=($!)
	wait_for 10 "$GLIDE" cluster list || { fail "$name: controller did not start"; return 1; }
	for h in hA:$PA hB:$PB hC:$PCC; do
		"$GLIDE" host add "127.0.0.1:${h#*:}" --host-token-file "$T/ht" --name "${h%%:*}" >/dev/null ||
			{ fail "$name: host add ${h%%:*}"; return 1; }
	done
}
host_of() { "$GLIDE" vm show "$1" --json 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin).get("host"))'; }
vm_api() { "$GLIDE" vm show "$1" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["api"])'; }
