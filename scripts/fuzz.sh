#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 60), one after another,
# starting from the committed seeds in fuzz/corpus/TARGET/ (what a run finds
# is kept there too, not committed). A crash stops the script with libFuzzer's
# report; the input that caused it is in fuzz/artifacts/TARGET/.
#
# Needs the nightly toolchain and cargo-fuzz: cargo install cargo-fuzz
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
seconds="${1:-60}"
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "scripts/fuzz.sh: needs the nightly toolchain and cargo-fuzz (cargo install cargo-fuzz)" >&2
    exit 1
fi
targets=$(cargo +nightly fuzz list)
for target in $targets; do
    printf '\n==> %s: %s s\n' "$target" "$seconds"
    cargo +nightly fuzz run "$target" -- -max_total_time="$seconds" -print_final_stats=1
done
printf '\nall fuzz targets ran %s s each with nothing found: %s\n' "$seconds" "$(echo $targets)"
