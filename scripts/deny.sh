#!/usr/bin/env bash
# Dependency policy check (deny.toml): licences, bans and sources always;
# advisories whenever a RustSec database can be had.
#
#   bash scripts/deny.sh
#
# Installs cargo-deny (`cargo install --locked`, a few minutes) when it is
# missing. Crates come from crates.io; the advisory database is a git clone
# from github.com, which some machines (ours) cannot reach. Then:
#   - fetched now            -> all four checks, against today's database;
#   - not fetched, but a clone is already under $CARGO_HOME/advisory-dbs
#                            -> all four checks against that clone, with its
#                               date printed (it may be stale);
#   - neither                -> licences, bans and sources only, and a notice
#                               that advisories were NOT checked.
# PEDULICOVID_DENY_ADVISORIES=require turns the last case into a failure.
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
have_db() { compgen -G "$db_root/*/crates" >/dev/null; }

advisories=no
if timeout 180 cargo deny fetch db >/dev/null 2>&1; then
    advisories=fresh
elif have_db; then
    advisories=stale
fi

checks=(bans licenses sources)
case "$advisories" in
fresh)
    log "advisory database fetched: checking advisories too"
    checks+=(advisories)
    ;;
stale)
    for d in "$db_root"/*/; do
        [ -d "$d/crates" ] || continue
        when="$(git -C "$d" log -1 --format=%cs 2>/dev/null || echo 'unknown date')"
        log "advisory database could not be fetched; using the clone at $d (last commit $when)"
    done
    checks+=(advisories)
    ;;
no)
    log "NOTICE: advisories NOT checked: the RustSec database could not be fetched"
    log "        (github.com unreachable) and there is no clone under $db_root."
    log "        Licences, bans and sources are still checked. To check advisories,"
    log "        run 'cargo deny fetch db' where github.com is reachable and copy"
    log "        $db_root here, then run this script again."
    if [ "${PEDULICOVID_DENY_ADVISORIES:-}" = require ]; then
        log "PEDULICOVID_DENY_ADVISORIES=require: failing"
        exit 1
    fi
    ;;
esac

log "cargo deny check ${checks[*]}"
# --offline: the database was fetched (or not) above; nothing else is needed.
# Duplicate-version warnings are printed without their inclusion graphs.
cargo deny --offline --locked check --hide-inclusion-graph "${checks[@]}"
