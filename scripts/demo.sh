#!/bin/sh
# The seed incident, offline: an Istio sidecar's rules exempt uid and gid 1337 (the proxy),
# and an app runs with runAsGroup: 1337. meshleak shows its traffic leaves the mesh and why.
set -u
bin=${1:-target/release/meshleak}
rules=testdata/istio-sidecar.rules

say() { printf '\n\033[1m== %s\033[0m\n' "$1"; }

say "Rules: an Istio sidecar's nat table ($rules)"
grep -E '^(\*|-A)' "$rules"

say "trace: app uid 10001 gid 10001 connects to 10.0.0.5:80"
"$bin" trace --rules "$rules" --uid 10001 --gid 10001 --dst 10.0.0.5:80 --proto tcp

say "trace: app uid 10001 gid 1337 (runAsGroup: 1337) connects to 10.0.0.5:80"
"$bin" trace --rules "$rules" --uid 10001 --gid 1337 --dst 10.0.0.5:80 --proto tcp
echo "(exit status $?: 1 means something bypasses)"

say "analyze: every exemption, and a verdict per identity"
"$bin" analyze --rules "$rules" --identity 1337:1337 --identity 10001:1337 --identity 10001:10001 \
	--identity 10001:10001:1337
echo "(exit status $?)"
exit 0
