#!/bin/bash
# `meshleak check` before deploy (`make bench` runs it): a 1,000-document stream as `helm
# template` emits it (Deployments, StatefulSets, CronJobs and Lists of Pods; an
# istio-proxy and 1-2 app containers each, pod- and container-level ids, 1,000 distinct
# uids), judged against Istio 1.28's full default rules (--mesh istio-1.28), ROUNDS times.
# Appends "check SECONDS KIB DOCUMENTS" lines to the file named by $1. Targets: under one
# second, under 64 MiB.
set -euo pipefail
cd "$(dirname "$0")/.."
RAW=$1
BIN=${BIN:-target/release/meshleak}
ROUNDS=${BENCH_ROUNDS:-5}
DOCS=${BENCH_DOCS:-1000}
STREAM=$(mktemp --suffix=.yaml)
trap 'rm -f "$STREAM"' EXIT
python3 - "$DOCS" >"$STREAM" <<'PY'
import sys
n = int(sys.argv[1])
for i in range(n):
    kind = ["Deployment", "StatefulSet", "CronJob", "List"][i % 4]
    uid, gid = 20000 + i, (1337 if i % 10 == 0 else 20000 + i)
    containers = [
        f"{{name: app, image: app:{i}, securityContext: {{runAsUser: {uid}, runAsGroup: {gid}, capabilities: {{drop: [ALL]}}}}}}",
        "{name: istio-proxy, image: proxyv2:1.28, securityContext: {runAsUser: 1337, runAsGroup: 1337}}",
    ] + ([f"{{name: side, image: side:{i}}}"] if i % 3 == 0 else [])
    spec = f"{{securityContext: {{runAsUser: {uid}, fsGroup: 2000}}, containers: [{', '.join(containers)}]}}"
    meta = f"{{name: w{i}, namespace: ns{i % 20}}}"
    print(f"---\n# Source: chart/templates/{i}.yaml")
    if kind == "CronJob":
        print(f"apiVersion: batch/v1\nkind: CronJob\nmetadata: {meta}\nspec:\n  schedule: '0 3 * * *'\n  jobTemplate:\n    spec:\n      template:\n        spec: {spec}")
    elif kind == "List":
        print(f"apiVersion: v1\nkind: List\nitems:\n  - apiVersion: v1\n    kind: Pod\n    metadata: {{name: w{i}, annotations: {{traffic.sidecar.istio.io/excludeOutboundPorts: '5432'}}}}\n    spec: {spec}")
    else:
        print(f"apiVersion: apps/v1\nkind: {kind}\nmetadata: {meta}\nspec:\n  template:\n    spec: {spec}")
PY
measure() { python3 bench/measure.py --ok 0,1 "$@"; }
for ((r = 0; r < ROUNDS; r++)); do
	line=$(measure "$BIN" check --mesh istio-1.28 "$STREAM" -o json)
	echo "check $line $DOCS" >>"$RAW"
done
echo "bench: check measured ($DOCS documents)" >&2
