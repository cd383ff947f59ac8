#!/bin/bash
# Runs every fuzz target (`make fuzz`), one after another, FUZZ_SECONDS each (default 600),
# from seeds written by examples/fuzz_seeds.rs. cargo-fuzz needs nightly features; the
# stable toolchain is told to allow them (RUSTC_BOOTSTRAP=1). A crash or hang stops that
# target and leaves the input under fuzz/artifacts/TARGET/: keep it in fuzz/regressions/
# once fixed. Logs and final stats: fuzz/logs/TARGET.log.
set -uo pipefail
cd "$(dirname "$0")/.."
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
cargo run --release --locked --example fuzz_seeds
cd fuzz
export RUSTC_BOOTSTRAP=1
cargo fuzz build
mkdir -p logs
status=0
for t in ${FUZZ_TARGETS:-nf_tables xt_table xt_ext xtables nft_json evaluate rtnl}; do
	echo "fuzz: $t for ${FUZZ_SECONDS:-600} s"
	# evaluate may use the whole analysis budget (50,000,000 rule visits: 0.7 s in a release
	# build, ~15 s under ASan); a unit over the timeout is a hang.
	timeout=10
	[ "$t" = evaluate ] && timeout=60
	cargo fuzz run "$t" "corpus/$t" -- -max_total_time="${FUZZ_SECONDS:-600}" -timeout=$timeout \
		-rss_limit_mb=2048 -print_final_stats=1 >"logs/$t.log" 2>&1 || status=1
	grep -E "^stat::(number_of_executed_units|average_exec_per_sec|new_units_added)|cov: " "logs/$t.log" | tail -4
done
exit $status
