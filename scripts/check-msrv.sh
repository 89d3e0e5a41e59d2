#!/usr/bin/env bash
# The minimum supported Rust version (`rust-version` in Cargo.toml), checked
# without installing that toolchain (only the machine's own can be had here):
#
# 1. every crate in Cargo.lock that the library or its tests build declares a
#    `rust-version` no newer than ours (a crate that declares none passes);
# 2. clippy's `incompatible_msrv` lint (on by default, denied in CI) refuses
#    any standard library API stabilised after our `rust-version`.
#
# What it cannot see: a language feature newer than the MSRV; the edition
# (2024: Rust 1.85) and let chains (1.88) set the floor we declare.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cargo metadata --format-version 1 --locked | python3 -c '
import json, sys
meta = json.load(sys.stdin)
def key(v):
    return tuple(int(p) for p in (v.split(".") + ["0", "0"])[:3])
ours = {p["id"]: p for p in meta["packages"]}
root = next(p for p in meta["packages"] if p["id"] in meta["workspace_members"])
msrv = root.get("rust_version")
if not msrv:
    sys.exit("error: Cargo.toml declares no rust-version")
# Only what the resolver actually builds for this machine.
built = {n["id"] for n in meta["resolve"]["nodes"]}
newer = sorted(
    "%s %s needs Rust %s" % (p["name"], p["version"], p["rust_version"])
    for pid, p in ours.items()
    if pid in built and p.get("rust_version") and key(p["rust_version"]) > key(msrv)
)
if newer:
    print(f"error: dependencies newer than our rust-version {msrv}:", *newer, sep="\n  ")
    sys.exit(1)
print(f"rust-version {msrv}: {len(built)} crates in the lock file, none needs a newer Rust")
'
