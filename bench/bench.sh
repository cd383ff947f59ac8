#!/bin/bash
# meshleak's node-scale benchmark (`make bench`; root). Builds throwaway pod namespaces
# (Istio rules, alternating iptables-nft, iptables-legacy and native nftables; BENCH_PROCS
# processes each: a proxy listener and apps of mixed identities), then measures, alternating,
# BENCH_ROUNDS rounds each: `meshleak scan -o json`, the shell baseline (bench/baseline.sh)
# and the floor (examples/floor.rs), at N = 10, 50, 100 (and 250 with BENCH_PODS=250), plus
# the agent's steady state at N = 100. Writes bench/results.json. Removes everything it made,
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

# Wall seconds and peak RSS (KiB) of one command, as "seconds kib".
measure() {
	python3 -c '
import resource, subprocess, sys, time
t = time.monotonic()
subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
print(f"{time.monotonic() - t:.4f} {resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}")' "$@"
}

sizes="10 50 100"
[ "$PODS" -ge 250 ] && sizes="$sizes 250"
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

python3 bench/summarize.py "$RAW" bench/results.json
