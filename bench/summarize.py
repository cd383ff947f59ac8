#!/usr/bin/env python3
"""Turns the benchmark's raw lines into medians and ratios (printed, and bench/results.json)."""
import json
import statistics
import sys
from collections import defaultdict

raw, out = sys.argv[1], sys.argv[2]
runs = defaultdict(list)
rules = defaultdict(list)
check = []
agent = None
follow = None
latency = defaultdict(list)
idle = None
storms = {}
for line in open(raw):
    f = line.split()
    if f[0] == "latency":
        latency[f[1]].append(None if f[2] == "None" else float(f[2]))
        continue
    if f[0] == "idle":
        pods, ticks, window_s, hwm, hz = map(int, f[1:])
        idle = {"pods": pods, "cpu_percent_of_a_core": 100 * ticks / hz / window_s,
                "window_seconds": window_s, "peak_rss_mib": round(hwm / 1024, 1)}
        continue
    if f[0] == "storm":
        kind, rate, ticks, elapsed, hwm, overruns, rescans, scans, hz = f[1], float(f[2]), int(f[3]), float(f[4]), int(f[5]), int(f[6]), int(f[7]), int(f[8]), int(f[9])
        storms[kind] = {"per_second": rate, "cpu_percent_of_a_core": 100 * ticks / hz / elapsed,
                        "seconds": elapsed, "peak_rss_mib": round(hwm / 1024, 1),
                        "overruns": overruns, "rescans": rescans, "whole_scans": scans}
        continue
    if f[0] == "rules":
        rules[f[1]].append((float(f[2]), int(f[3])))
        continue
    if f[0] == "check":
        check.append((float(f[1]), int(f[2]), int(f[3])))
        continue
    if f[0] == "follow":
        pods, conns, load_s, ticks, window_s, observed, unattributed, lost, hz = map(int, f[1:])
        follow = {
            "pods": pods,
            "connections_per_second": conns / load_s,
            "follower_cpu_percent_of_a_core": 100 * ticks / hz / window_s,
            "observed_bypasses_per_second": observed / window_s,
            "unattributed_per_second": unattributed / window_s,
            "events_lost": lost,
        }
        continue
    if f[0] == "agent":
        pods, idle, total, scans, hwm, hz = map(int, f[1:])
        agent = {
            "pods": pods,
            "idle_cpu_seconds_over_10s": idle / hz,
            "cpu_seconds_per_scan": total / hz / max(scans, 1),
            "scans": scans,
            "peak_rss_mib": round(hwm / 1024, 1),
        }
        continue
    runs[(int(f[0]), f[1])].append((float(f[2]), int(f[3])))

sizes = sorted({n for n, _ in runs})
result = {"sizes": {}, "agent": agent, "follow": follow}
if latency:
    def pct(values, q):
        v = sorted(values)
        return v[min(len(v) - 1, int(round(q * (len(v) - 1))))]
    result["latency_seconds"] = {}
    for kind, values in sorted(latency.items()):
        seen = [v for v in values if v is not None]
        row = {"samples": len(values), "missed": len(values) - len(seen)}
        if seen:
            row.update({"p50": round(pct(seen, 0.5), 3), "p99": round(pct(seen, 0.99), 3)})
        result["latency_seconds"][kind] = row
        print(f"latency {kind:>18}: p50 {row.get('p50')} s, p99 {row.get('p99')} s, missed {row['missed']} of {row['samples']}")
if idle:
    result["idle"] = idle
    print(f"idle: {idle['cpu_percent_of_a_core']:.2f}% of a core over {idle['window_seconds']} s with {idle['pods']} meshed pods, peak {idle['peak_rss_mib']} MiB (target <= 0.5%)")
if storms:
    result["storms"] = storms
    for kind, st in storms.items():
        print(f"storm {kind:>12}: {st['per_second']:.0f}/s, {st['cpu_percent_of_a_core']:.1f}% of a core, peak {st['peak_rss_mib']} MiB, overruns {st['overruns']}, re-reads {st['rescans']}, whole scans {st['whole_scans']} (target <= 25%)")
if rules:
    med = {k: statistics.median(t for t, _ in v) for k, v in rules.items()}
    peak = {k: round(max(m for _, m in v) / 1024, 1) for k, v in rules.items()}
    result["rules"] = {
        "median_seconds": med,
        "peak_rss_mib": peak,
        "nft_over_legacy": med["nft"] / med["legacy"],
    }
    print(f"rules: nf_tables {med['nft']:.3f} s ({peak['nft']} MiB), x_tables {med['legacy']:.3f} s "
          f"({peak['legacy']} MiB): {med['nft'] / med['legacy']:.1f}x (target <= 3x, <= 30 MiB)")
if check:
    med = statistics.median(t for t, _, _ in check)
    peak = round(max(m for _, m, _ in check) / 1024, 1)
    result["check"] = {"documents": check[0][2], "median_seconds": med, "peak_rss_mib": peak,
                       "rounds": len(check)}
    print(f"check: {check[0][2]} documents in {med:.3f} s, peak {peak} MiB (target < 1 s, < 64 MiB)")
print(f"{'N':>4} {'meshleak s':>11} {'baseline s':>11} {'floor s':>9} {'base/ml':>8} {'ml/floor':>9} {'ml ms/ns':>9} {'ml RSS MiB':>11}")
for n in sizes:
    med = {k: statistics.median(t for t, _ in runs[(n, k)]) for k in ("meshleak", "baseline", "floor")}
    rss = max(m for _, m in runs[(n, "meshleak")]) / 1024
    row = {
        "median_seconds": med,
        "baseline_over_meshleak": med["baseline"] / med["meshleak"],
        "meshleak_over_floor": med["meshleak"] / med["floor"],
        "meshleak_ms_per_namespace": 1000 * med["meshleak"] / n,
        "meshleak_peak_rss_mib": round(rss, 1),
        "rounds": len(runs[(n, "meshleak")]),
    }
    result["sizes"][n] = row
    print(f"{n:>4} {med['meshleak']:>11.3f} {med['baseline']:>11.3f} {med['floor']:>9.3f} "
          f"{row['baseline_over_meshleak']:>8.1f} {row['meshleak_over_floor']:>9.2f} "
          f"{row['meshleak_ms_per_namespace']:>9.2f} {rss:>11.1f}")
# Is the cost linear? A least-squares line through the medians (one slow round must not tilt
# it): a fixed cost (start, the host's processes, one analysis per distinct rule set) plus a
# cost per namespace.
points = [(n, row["median_seconds"]["meshleak"]) for n, row in result["sizes"].items()]
if len({n for n, _ in points}) >= 2:
    mean_n = statistics.mean(n for n, _ in points)
    mean_t = statistics.mean(t for _, t in points)
    slope = sum((n - mean_n) * (t - mean_t) for n, t in points) / sum((n - mean_n) ** 2 for n, _ in points)
    fixed = mean_t - slope * mean_n
    result["meshleak_fit"] = {"fixed_seconds": fixed, "seconds_per_namespace": slope}
    print(f"meshleak ~ {1000 * fixed:.1f} ms + {1000 * slope:.2f} ms per namespace (least squares)")
if agent:
    print(f"agent at N={agent['pods']}: idle CPU {agent['idle_cpu_seconds_over_10s']:.2f} s over 10 s, "
          f"{agent['cpu_seconds_per_scan']:.3f} CPU s per scan, peak RSS {agent['peak_rss_mib']} MiB")
if follow:
    print(f"follower at N={follow['pods']}: {follow['connections_per_second']:.0f} new connections/s, "
          f"{follow['follower_cpu_percent_of_a_core']:.2f}% of a core (target <= 5%), "
          f"{follow['observed_bypasses_per_second']:.0f} bypasses/s counted, "
          f"{follow['unattributed_per_second']:.1f}/s unattributed, {follow['events_lost']} overruns")
json.dump(result, open(out, "w"), indent=2)
