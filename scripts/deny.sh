#!/usr/bin/env bash
# Dependency policy check (deny.toml): licences, bans, sources and
# advisories, on every run.
#
#   bash scripts/deny.sh
#
# Installs cargo-deny (`cargo install --locked`, a few minutes) when it is
# missing. Crates come from crates.io; the RustSec advisory database is a git
# repository on github.com, which some machines (ours) cannot reach. So the
# advisories are checked against, in this order:
#   1. the live database, when `cargo deny fetch db` can fetch it now;
#   2. the offline snapshot ../shared/rustsec/advisory-db.bundle (a git
#      bundle; PEDULICOVID_RUSTSEC_BUNDLE overrides the path), cloned into
#      the directory cargo-deny reads, when the live one cannot be fetched;
# Which one was used, and the date of its newest advisory commit, is printed.
# With neither the check FAILS: advisories are never silently skipped (a
# clone left by an earlier run is not trusted: its age is unknown).
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[deny.sh] %s\n' "$*" >&2; }

if ! cargo deny --version >/dev/null 2>&1; then
    log "installing cargo-deny (cargo install --locked cargo-deny)"
    cargo install --locked cargo-deny
fi
log "$(cargo deny --version)"

# cargo metadata needs every crate of the lock file (all platforms), from
# crates.io; after this, cargo-deny itself runs offline.
cargo fetch --locked >/dev/null

db_root="${CARGO_HOME:-$HOME/.cargo}/advisory-dbs"
# The directory cargo-deny uses for the default URL
# (https://github.com/rustsec/advisory-db), named by cargo-deny from a hash
# of that URL.
db_dir="$db_root/advisory-db-3157b0e258782691"
bundle="${PEDULICOVID_RUSTSEC_BUNDLE:-$(pwd)/../shared/rustsec/advisory-db.bundle}"
db_date() { git -C "$1" log -1 --format='%cs (commit %h)' 2>/dev/null || echo 'unknown date'; }

live_url=https://github.com/rustsec/advisory-db
# Live only when github.com answers now: `cargo deny fetch db` also
# "succeeds" on a clone of the snapshot, whose remote is the bundle.
if timeout 30 git ls-remote -q "$live_url" HEAD >/dev/null 2>&1; then
    if [ "$(git -C "$db_dir" remote get-url origin 2>/dev/null)" != "$live_url" ]; then
        rm -rf "$db_dir"
    fi
    timeout 300 cargo deny fetch db >/dev/null
    log "advisories: the live RustSec database, fetched now: $(db_date "$db_dir")"
elif [ -f "$bundle" ]; then
    # The bundle is the newest copy this machine can have: start from it.
    rm -rf "$db_dir"
    mkdir -p "$db_root"
    git clone -q "$bundle" "$db_dir"
    log "advisories: live database unreachable; using the offline snapshot $bundle: $(db_date "$db_dir")"
else
    log "FAILED: advisories cannot be checked: the live RustSec database could not be"
    log "        fetched (github.com unreachable) and there is no snapshot at $bundle"
    log "        (set PEDULICOVID_RUSTSEC_BUNDLE to a git bundle of advisory-db)."
    exit 1
fi
checks=(bans licenses sources advisories)

log "cargo deny check ${checks[*]}"
# --offline: the database was fetched (or not) above; nothing else is needed.
# Duplicate-version warnings are printed without their inclusion graphs.
cargo deny --offline --locked check --hide-inclusion-graph "${checks[@]}"
