#!/bin/sh
# The seed incident, live: two throwaway "pods" (network namespaces with a veth to a peer
# namespace), one with Istio's sidecar rules, a proxy running as 1337 and two apps, one of
# them with runAsGroup 1337; one with port and CIDR exclusions. `meshleak scan` shows which
# processes bypass the sidecar and the rule that decides it. Everything is removed on exit,
# also when interrupted.
set -u
bin=${1:-target/release/meshleak}
id="mldemo$$"
pods="${id}a ${id}b"
pids=""

cleanup() {
	for p in $pids; do kill "$p" 2>/dev/null; done
	for ns in $pods "${id}node"; do ip netns del "$ns" 2>/dev/null; done
}
trap cleanup EXIT INT TERM

say() { printf '\n\033[1m== %s\033[0m\n' "$1"; }

# Starts a command in a pod as uid:gid; its pid is kept for cleanup.
run_as() { # ns uid gid command...
	ns=$1 uid=$2 gid=$3
	shift 3
	ip netns exec "$ns" setpriv --reuid "$uid" --regid "$gid" --clear-groups "$@" >/dev/null 2>&1 &
	pids="$pids $!"
}

# Each pod gets an eth0 (one end of a veth pair into a throwaway "node" namespace) with a
# link-local address and a default route, as a pod has. No traffic is sent.
ip netns add "${id}node"
n=1
for ns in $pods; do
	ip netns add "$ns"
	ip -n "$ns" link set lo up
	ip link add "${id}$n" type veth peer name eth0 netns "$ns"
	ip link set "${id}$n" netns "${id}node"
	ip -n "$ns" addr add "169.254.9$n.2/24" dev eth0
	ip -n "$ns" link set eth0 up
	ip -n "${id}node" link set "${id}$n" up
	ip -n "$ns" route add default via "169.254.9$n.1"
	n=$((n + 1))
done

say "Pod ${id}a: Istio sidecar rules (uid and gid 1337 exempt)"
grep -v '^#' testdata/istio-sidecar.rules | ip netns exec "${id}a" iptables-nft-restore
grep -E '^-A ISTIO_OUTPUT' testdata/istio-sidecar.rules
run_as "${id}a" 1337 1337 socat TCP-LISTEN:15001,reuseaddr,fork EXEC:/bin/cat
run_as "${id}a" 1337 1337 socat TCP-LISTEN:15006,reuseaddr,fork EXEC:/bin/cat
run_as "${id}a" 10001 1337 sleep 300
run_as "${id}a" 10001 10001 sleep 300

say "Pod ${id}b: Istio rules with excluded port 3306 and CIDR 10.96.0.0/12"
sed 's/^-A ISTIO_OUTPUT -j ISTIO_REDIRECT$/-A ISTIO_OUTPUT -p tcp -m tcp --dport 3306 -j RETURN\n-A ISTIO_OUTPUT -d 10.96.0.0\/12 -j RETURN\n-A ISTIO_OUTPUT -j ISTIO_REDIRECT/' testdata/istio-sidecar.rules |
	grep -v '^#' | ip netns exec "${id}b" iptables-nft-restore
run_as "${id}b" 1337 1337 socat TCP-LISTEN:15001,reuseaddr,fork EXEC:/bin/cat
run_as "${id}b" 1337 1337 socat TCP-LISTEN:15006,reuseaddr,fork EXEC:/bin/cat
run_as "${id}b" 10001 10001 sleep 300
sleep 0.5

say "meshleak scan"
"$bin" scan --netns-dir /run/netns
echo "(exit status $?: 1 means something bypasses; 3 unknown, 4 incomplete: see meshleak --help)"

say "meshleak trace --pid: the runAsGroup 1337 app connecting to 10.0.0.5:80"
app=$(pgrep -f "sleep 300" | while read -r p; do
	[ "$(stat -L -c %i /proc/$p/ns/net)" = "$(stat -L -c %i /run/netns/${id}a)" ] && grep -q "^Gid:.*1337" /proc/$p/status && echo "$p"
done | head -1)
"$bin" trace --pid "$app" --dst 10.0.0.5:80 --proto tcp

say "meshleak check: the same mistake caught before deploy (examples/check/web.yaml)"
"$bin" check --mesh istio-1.28 examples/check/web.yaml
echo "(exit status $?: 1 means a container would bypass; CI fails on it, or reads -o sarif)"
exit 0
