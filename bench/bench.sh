#!/bin/bash
# meshleak's node-scale benchmark (`make bench`; root). Builds throwaway pod namespaces
# (Istio rules, alternating iptables-nft, iptables-legacy and native nftables; BENCH_PROCS
# processes each: a proxy listener and apps of mixed identities), then measures, alternating,
# BENCH_ROUNDS rounds each: `meshleak scan -o json`, the shell baseline (bench/baseline.sh)
# and the floor (examples/floor.rs), at N = 10, 50, 100 (and 250 with BENCH_PODS=250), plus
# the agent's steady state at N = 100 and its connection follower under BENCH_CONNS new
# connections a second, and `meshleak check` on a 1,000-document stream (bench/check.sh).
# Writes bench/results.json. Removes everything it made,
# also when interrupted.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-target/release/meshleak}
FLOOR=target/release/examples/floor
PODS=${BENCH_PODS:-100}
ROUNDS=${BENCH_ROUNDS:-5}
PROCS=${BENCH_PROCS:-10}
PREFIX=mlb$$
RAW=$(mktemp)

cleanup() {
	for ns in $(ip netns list | awk '{print $1}' | grep "^$PREFIX-" || true); do
		for p in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
		ip netns del "$ns" 2>/dev/null || true
	done
	[ -n "${AGENT:-}" ] && kill -9 "$AGENT" 2>/dev/null || true
	rm -f "$RAW"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ids=("10001:10001" "10001:1337" "1337:1337" "0:0" "10002:10002")
make_pod() {
	local i=$1 ns=$PREFIX-$1
	ip netns add "$ns"
	ip -n "$ns" link set lo up
	case $((i % 3)) in
	0) ip netns exec "$ns" iptables-nft-restore <testdata/istio-sidecar.rules ;;
	1) ip netns exec "$ns" iptables-legacy-restore <testdata/istio-sidecar.rules ;;
	2) ip netns exec "$ns" nft -f testdata/meshes/istio-sidecar-nft.nft ;;
	esac
	(ip netns exec "$ns" setpriv --reuid 1337 --regid 1337 --clear-groups \
		socat TCP-LISTEN:15001,reuseaddr,fork EXEC:/bin/cat </dev/null >/dev/null 2>&1 &)
	for ((p = 1; p < PROCS; p++)); do
		local id=${ids[$((p % ${#ids[@]}))]}
		(ip netns exec "$ns" setpriv --reuid "${id%:*}" --regid "${id#*:}" --clear-groups \
			sleep 100000 </dev/null >/dev/null 2>&1 &)
	done
}

# Wall seconds and peak RSS (KiB) of one command, as "seconds kib" (bench/measure.py).
measure() { python3 bench/measure.py "$@"; }

# BENCH_ONLY=check: only `meshleak check` on a 1,000-document stream (bench/check.sh).
if [ "${BENCH_ONLY:-}" = check ]; then
	BIN=$BIN BENCH_ROUNDS=$ROUNDS bash bench/check.sh "$RAW"
	python3 bench/summarize.py "$RAW" bench/results-check.json
	exit 0
fi

# BENCH_ONLY=events: only the agent between scans (bench/events.py).
if [ "${BENCH_ONLY:-}" = events ]; then
	python3 bench/events.py "$BIN" "$RAW" "$PREFIX" "$PODS"
	python3 bench/summarize.py "$RAW" bench/results-events.json
	exit 0
fi

sizes="10 50 100"
[ "$PODS" -ge 250 ] && sizes="$sizes 250"
# A quick look at one size (BENCH_SIZES=10 BENCH_ROUNDS=1): not the targets' measurement.
sizes=${BENCH_SIZES:-$sizes}
made=0
for n in $sizes; do
	[ "$n" -gt "$PODS" ] && break
	while [ "$made" -lt "$n" ]; do make_pod "$made"; made=$((made + 1)); done
	sleep 1
	for ((r = 0; r < ROUNDS; r++)); do
		echo "$n meshleak $(measure "$BIN" scan -o json)" >>"$RAW"
		echo "$n baseline $(measure bash bench/baseline.sh)" >>"$RAW"
		echo "$n floor $(measure "$FLOOR")" >>"$RAW"
	done
	echo "bench: N=$n measured" >&2
done

# The agent at N = 100 (or fewer): CPU while idle between scans, CPU per scan, peak RSS.
"$BIN" agent --interval 15s --listen 127.0.0.1:19818 --report-listen 127.0.0.1:19819 2>/dev/null &
AGENT=$!
until curl -sf 127.0.0.1:19818/readyz >/dev/null 2>&1; do sleep 0.2; done
ticks() { awk '{print $14 + $15}' "/proc/$AGENT/stat"; }
sleep 2
a=$(ticks)
sleep 10
b=$(ticks)
sleep 35
c=$(ticks)
scans=$(curl -s 127.0.0.1:19818/metrics | awk '/^meshleak_scans_total/ {print $2}')
hwm=$(awk '/VmHWM/ {print $2}' "/proc/$AGENT/status")
echo "agent $made $((b - a)) $c $scans $hwm $(getconf CLK_TCK)" >>"$RAW"
kill -TERM "$AGENT"
wait "$AGENT" || true
AGENT=

# The connection follower at N = 100 (or fewer): BENCH_CONNS new connections a second in all
# (half with the proxy's identity, half bypasses with the exempt gid), spread over the pods,
# each to a shared peer namespace over its own veth, while an agent that scanned once
# follows them; the follower thread's CPU over 20 s.
CONNS=${BENCH_CONNS:-1000}
PEER=$PREFIX-peer
ip netns add "$PEER"
ip -n "$PEER" link set lo up
for ((i = 0; i < made; i++)); do
	ns=$PREFIX-$i a=${PREFIX}v$i b=${PREFIX}p$i
	ip link add "$a" netns "$ns" type veth peer name "$b" netns "$PEER"
	ip -n "$ns" addr add "169.254.$((i + 1)).1/24" dev "$a"
	ip -n "$ns" link set "$a" up
	ip -n "$PEER" addr add "169.254.$((i + 1)).2/24" dev "$b"
	ip -n "$PEER" link set "$b" up
done
(ip netns exec "$PEER" python3 bench/accept.py </dev/null >/dev/null 2>&1 &)
"$BIN" agent --interval 1h --listen 127.0.0.1:19818 --report-listen 127.0.0.1:19819 2>/dev/null &
AGENT=$!
series() { curl -s 127.0.0.1:19818/metrics | awk -v s="$1" 'index($0, s) == 1 {t += $2} END {print t + 0}'; }
for ((w = 0; w < 300; w++)); do
	[ "$(series meshleak_followed_namespaces)" = "$made" ] && break
	sleep 0.2
done
[ "$(series meshleak_followed_namespaces)" = "$made" ] || { echo "bench: the agent follows $(series meshleak_followed_namespaces) of $made namespaces" >&2; exit 1; }
for t in /proc/$AGENT/task/*; do [ "$(cat "$t/comm")" = meshleak-follow ] && FOLLOW=$t; done
LOADS=$(mktemp -d)
LPIDS=()
# Every loader starts at one time, once all are up; measured from 1 s after, for 20 s.
BEGIN=$(($(date +%s) + 10))
for ((i = 0; i < made; i++)); do
	ip netns exec "$PREFIX-$i" python3 bench/connect_load.py "169.254.$((i + 1)).2" \
		"$(python3 -c "print($CONNS / $made)")" "$BEGIN" 22 >"$LOADS/$i" 2>/dev/null &
	LPIDS+=($!)
done
while [ "$(date +%s)" -lt $((BEGIN + 1)) ]; do sleep 0.1; done
fticks() { awk '{print $14 + $15}' "$FOLLOW/stat"; }
a=$(fticks) o1=$(series meshleak_observed_bypass_connections_total) u1=$(series meshleak_unattributed_connections_total)
sleep 20
b=$(fticks) o2=$(series meshleak_observed_bypass_connections_total) u2=$(series meshleak_unattributed_connections_total)
wait "${LPIDS[@]}" || true
conns=$(cat "$LOADS"/* | awk '{t += $1} END {print t + 0}')
rm -rf "$LOADS"
echo "follow $made $conns 20 $((b - a)) 20 $((o2 - o1)) $((u2 - u1)) $(series meshleak_conntrack_events_lost_total) $(getconf CLK_TCK)" >>"$RAW"
kill -TERM "$AGENT"
wait "$AGENT" || true
AGENT=

BIN=$BIN BENCH_ROUNDS=$ROUNDS bash bench/rules.sh "$RAW"
BIN=$BIN BENCH_ROUNDS=$ROUNDS bash bench/check.sh "$RAW"
# Between scans: detection latency per kind of change, idle CPU with $PODS meshed pods,
# CPU and memory under storms.
python3 bench/events.py "$BIN" "$RAW" "$PREFIX" "$PODS"
python3 bench/summarize.py "$RAW" bench/results.json
