#!/usr/bin/env python3
"""The DaemonSet's pod template as a Pod that `podman kube play` runs as shipped.

Usage: daemonset-pod.py IMAGE NODE_NAME POD_NAME > pod.yaml

Kept as shipped: the container's args, securityContext (capabilities, read-only root, user),
hostPath volumes and mounts, resources and the rest. Mapped, because no kubelet or API
server runs here (each printed on stderr):
- `env` from the downward API (`fieldRef: spec.nodeName`): the node's name as a value;
- `ports`: dropped, the pod runs without a network (`--network none`), so nothing is
  published; the test reaches the listeners inside the pod's network namespace;
- `livenessProbe`/`readinessProbe`: dropped, kubelet runs them against the pod's address
  (podman would run curl inside the container, and the image has none); the test asks
  /healthz and /readyz itself;
- `appArmorProfile` (Kubernetes 1.30+): the annotation podman knows;
- `serviceAccountName`, `automountServiceAccountToken`, `priorityClassName`,
  `nodeSelector`, `affinity`, `tolerations`: scheduling and API access, which podman has no
  use for (tests/daemonset.rs checks the os and arches they allow against the image's
  platforms);
- `hostPID`: kept, but Debian's podman 4.3 `kube play` does not apply it (the pod gets a PID
  namespace of its own), so the agent runs as it does where policy forbids hostPID: process
  events degraded to polling, which the test reads from /report and /readyz.
"""
import sys

import yaml

image, node, name = sys.argv[1:4]
with open(__file__.rsplit("/scripts/", 1)[0] + "/daemonset/daemonset.yaml") as f:
    ds = yaml.safe_load(f)
template = ds["spec"]["template"]
spec = template["spec"]
mapped = []
for key in ("serviceAccountName", "automountServiceAccountToken", "priorityClassName",
            "nodeSelector", "affinity", "tolerations"):
    if spec.pop(key, None) is not None:
        mapped.append(f"spec.{key}: dropped")
annotations = dict(template["metadata"].get("annotations") or {})
for c in spec["containers"]:
    c["image"] = image
    for env in c.get("env", []):
        ref = env.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
        if ref == "spec.nodeName":
            del env["valueFrom"]
            env["value"] = node
            mapped.append(f"{c['name']}: env {env['name']} = {node} (downward API spec.nodeName)")
    for key in ("ports", "livenessProbe", "readinessProbe"):
        if c.pop(key, None) is not None:
            mapped.append(f"{c['name']}: {key} dropped")
    sc = c.get("securityContext", {})
    profile = sc.pop("appArmorProfile", None)
    if profile is not None:
        value = {"Unconfined": "unconfined", "RuntimeDefault": "runtime/default"}[profile["type"]]
        annotations[f"container.apparmor.security.beta.kubernetes.io/{c['name']}"] = value
        mapped.append(f"{c['name']}: appArmorProfile {profile['type']} as the annotation")
pod = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {
        "name": name,
        "labels": template["metadata"].get("labels", {}),
        "annotations": annotations,
    },
    "spec": spec,
}
if spec.get("hostPID"):
    mapped.append("spec.hostPID: kept; podman 4.3's kube play does not apply it")
for m in mapped:
    print(f"daemonset-pod: {m}", file=sys.stderr)
yaml.safe_dump(pod, sys.stdout, sort_keys=False)
