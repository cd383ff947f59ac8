#!/bin/bash
# What users do today (the benchmark's baseline): per network namespace, nsenter and dump
# the rules of both backends and families plus nft, and list the namespace's processes
# with their credentials. Output goes to stdout (the benchmark discards it).
for ns in /run/netns/*; do
	nsenter --net="$ns" iptables-nft-save
	nsenter --net="$ns" ip6tables-nft-save
	nsenter --net="$ns" iptables-legacy-save
	nsenter --net="$ns" ip6tables-legacy-save
	nsenter --net="$ns" nft list ruleset
	pids=$(ip netns pids "$(basename "$ns")" | paste -sd, -)
	[ -n "$pids" ] && ps -o pid,uid,gid,supgid,comm -p "$pids"
done
