#!/usr/bin/env python3
"""Validates `meshleak scan -o policyreport` output (stdin) against the schema of the
published CRDs: wgpolicyk8s.io/v1alpha2 PolicyReport and ClusterPolicyReport, from
kubernetes-sigs/wg-policy-prototypes policy-report/crd/v1alpha2 (commit 037274b4). The
schema below is that CRD's openAPIV3Schema restated (descriptions left out), with unknown
fields refused: the API server would prune them, so a field it does not know is a field lost.
Also checks the Kubernetes naming rules the API server applies to metadata."""
import json
import re
import sys

import jsonschema

STR = {"type": "string"}
OBJECT_REF = {
    "type": "object",
    "additionalProperties": False,
    "properties": {k: STR for k in
                   ("apiVersion", "fieldPath", "kind", "name", "namespace",
                    "resourceVersion", "uid")},
}
SELECTOR = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "matchExpressions": {"type": "array", "items": {
            "type": "object", "required": ["key", "operator"], "additionalProperties": False,
            "properties": {"key": STR, "operator": STR,
                           "values": {"type": "array", "items": STR}}}},
        "matchLabels": {"type": "object", "additionalProperties": STR},
    },
}
RESULT = {
    "type": "object",
    "required": ["policy"],
    "additionalProperties": False,
    "properties": {
        "category": STR,
        "message": STR,
        "policy": STR,
        "properties": {"type": "object", "additionalProperties": STR},
        "resourceSelector": SELECTOR,
        "resources": {"type": "array", "items": OBJECT_REF},
        "result": {"enum": ["pass", "fail", "warn", "error", "skip"]},
        "rule": STR,
        "scored": {"type": "boolean"},
        "severity": {"enum": ["high", "low", "medium"]},
        "source": STR,
        "timestamp": {"type": "object", "required": ["nanos", "seconds"],
                      "additionalProperties": False,
                      "properties": {"nanos": {"type": "integer", "minimum": 0,
                                               "maximum": 999999999},
                                     "seconds": {"type": "integer"}}},
    },
}
COUNT = {"type": "integer", "minimum": 0}
REPORT = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "wgpolicyk8s.io/v1alpha2"},
        "kind": {"enum": ["PolicyReport", "ClusterPolicyReport"]},
        "metadata": {"type": "object"},
        "results": {"type": "array", "items": RESULT},
        "scope": OBJECT_REF,
        "scopeSelector": SELECTOR,
        "summary": {"type": "object", "additionalProperties": False,
                    "properties": {k: COUNT for k in ("error", "fail", "pass", "skip", "warn")}},
    },
}
LIST = {
    "type": "object",
    "required": ["apiVersion", "kind", "items"],
    "properties": {"apiVersion": {"const": "v1"}, "kind": {"const": "List"},
                   "items": {"type": "array", "items": REPORT}},
}
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")

doc = json.load(sys.stdin)
jsonschema.validate(doc, LIST)
failures = []
for item in doc["items"]:
    meta = item["metadata"]
    name = meta.get("name", "")
    if len(name) > 253 or not DNS_SUBDOMAIN.match(name):
        failures.append(f"{item['kind']}: name {name!r} is not a DNS subdomain")
    if (item["kind"] == "PolicyReport") != ("namespace" in meta):
        failures.append(f"{item['kind']} {name}: namespace only on namespaced reports")
    for k, v in (meta.get("labels") or {}).items():
        if len(v) > 63 or not LABEL_VALUE.match(v):
            failures.append(f"{name}: label {k}={v!r} is not a label value")
    counts = {r: sum(1 for x in item.get("results", []) if x.get("result") == r)
              for r in ("pass", "fail", "warn", "error", "skip")}
    if item.get("summary") != counts:
        failures.append(f"{name}: summary {item.get('summary')} is not the results' {counts}")
if failures:
    sys.exit("\n".join(failures))
print(f"valid: {len(doc['items'])} reports")
