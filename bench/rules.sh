#!/bin/bash
# Reading rules (`make bench` runs it; root): 20,000 native nf_tables rules against 20,000
# iptables-legacy rules of the same shape (address, port, owner), each in a throwaway
# namespace, `meshleak rules` measured ROUNDS times each, alternating. Appends
# "rules nft|legacy SECONDS KIB" lines to the file named by $1. Removes what it made, also
# when interrupted.
set -euo pipefail
cd "$(dirname "$0")/.."
RAW=$1
BIN=${BIN:-target/release/meshleak}
ROUNDS=${BENCH_ROUNDS:-5}
COUNT=${BENCH_RULES:-20000}
NFT=mlr$$-nft LEGACY=mlr$$-legacy
cleanup() { ip netns del "$NFT" 2>/dev/null || true; ip netns del "$LEGACY" 2>/dev/null || true; }
trap cleanup EXIT
trap 'exit 130' INT TERM
ip netns add "$NFT"
ip netns add "$LEGACY"
python3 - "$COUNT" <<'PY' | ip netns exec "$NFT" nft -f -
import sys
n = int(sys.argv[1])
print("table inet bench {\n\tchain out {\n\t\ttype filter hook output priority 0; policy accept;")
for i in range(n):
    print(f"\t\tip daddr 10.{i // 256 % 256}.{i % 256}.1 tcp dport {1000 + i % 50000} meta skuid {i} counter accept")
print("\t}\n}")
PY
python3 - "$COUNT" <<'PY' | ip netns exec "$LEGACY" iptables-legacy-restore
import sys
n = int(sys.argv[1])
print("*filter\n:OUTPUT ACCEPT [0:0]")
for i in range(n):
    print(f"-A OUTPUT -d 10.{i // 256 % 256}.{i % 256}.1/32 -p tcp -m tcp --dport {1000 + i % 50000} -m owner --uid-owner {i} -j ACCEPT")
print("COMMIT")
PY
measure() { python3 bench/measure.py --ok 0 "$@"; }
for ((r = 0; r < ROUNDS; r++)); do
	echo "rules nft $(measure "$BIN" rules --netns "/run/netns/$NFT")" >>"$RAW"
	echo "rules legacy $(measure "$BIN" rules --netns "/run/netns/$LEGACY")" >>"$RAW"
done
echo "bench: rules measured ($COUNT each)" >&2
