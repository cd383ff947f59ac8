#!/usr/bin/env python3
"""Validates daemonset/: core kinds against the Kubernetes API schemas (kubernetes-validate,
strict: unknown fields fail); the Prometheus Operator resources, whose schemas that tool lacks,
by their required structure; and that every metric an alert uses is one the agent exports."""
import re
import sys
from pathlib import Path

import kubernetes_validate
import yaml

root = Path(__file__).resolve().parent.parent
manifests = sorted((root / "daemonset").rglob("*.yaml"))
exported = set()
for name in re.findall(r'register\(\s*"([a-z_]+)"', (root / "src/agent/metrics.rs").read_text()):
    exported |= {f"meshleak_{name}", f"meshleak_{name}_total"}
failures = []
for path in manifests:
    for doc in yaml.safe_load_all(path.read_text()):
        kind = doc.get("kind")
        where = f"{path.relative_to(root)} ({kind})"
        if kind == "Kustomization":
            for res in doc["resources"]:
                if not (path.parent / res).exists():
                    failures.append(f"{where}: resource {res} does not exist")
        elif doc.get("apiVersion", "").startswith("monitoring.coreos.com/"):
            spec = doc.get("spec") or {}
            if kind == "ServiceMonitor" and not (spec.get("selector") and spec.get("endpoints")):
                failures.append(f"{where}: needs spec.selector and spec.endpoints")
            if kind == "PrometheusRule":
                for group in spec.get("groups", []):
                    for rule in group.get("rules", []):
                        if not (rule.get("alert") and rule.get("expr")):
                            failures.append(f"{where}: a rule needs alert and expr")
                        for metric in re.findall(r"meshleak_[a-z_]+", rule.get("expr", "")):
                            if metric not in exported:
                                failures.append(f"{where}: {metric} is not a metric the agent exports")
        else:
            try:
                kubernetes_validate.validate(doc, "1.33.0", strict=True)
            except kubernetes_validate.ValidationError as e:
                failures.append(f"{where}: {e.message}")
        print(f"checked {where}")
for f in failures:
    print(f"FAIL {f}", file=sys.stderr)
sys.exit(1 if failures else 0)
