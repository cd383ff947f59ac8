#!/usr/bin/env python3
"""Writes the alert groups of daemonset/optional/prometheusrule.yaml as a Prometheus rules
file, for promtool and a plain Prometheus server.

Usage: prometheus-rules.py OUT [--no-for]
--no-for sets every alert's `for` to 0s: a live test cannot wait ten minutes (the unit tests
in tests/prometheus/alerts.test.yaml check the real durations)."""
import sys
from pathlib import Path

import yaml

root = Path(__file__).resolve().parent.parent
doc = yaml.safe_load((root / "daemonset/optional/prometheusrule.yaml").read_text())
groups = doc["spec"]["groups"]
if "--no-for" in sys.argv[2:]:
    for group in groups:
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = "0s"
Path(sys.argv[1]).write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
