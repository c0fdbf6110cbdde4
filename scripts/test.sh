#!/usr/bin/env bash
# The whole test suite, set-up included, on a Debian machine with Rust.
#
#   bash scripts/test.sh            # everything: unit, PostgreSQL, SQLite, real Kannel
#   bash scripts/test.sh -- NAME    # extra arguments go to `cargo test`
#
# It needs root (or sudo) the first time on a fresh machine: it installs
# PostgreSQL and Kannel from Debian's packages when they are missing, starts
# PostgreSQL if it is down, and starts the loopback Kannel harness from
# ../shared/carrier (PEDULICOVID_CARRIER_DIR overrides), which it stops again
# at the end. Nothing here reaches beyond 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/sbin:/sbin:/usr/lib/postgresql/bin"

log() { printf '[test.sh] %s\n' "$*" >&2; }
as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
        log "need root for: $*"; return 1; fi
}
apt_install() {
    export DEBIAN_FRONTEND=noninteractive
    as_root apt-get install -y --no-install-recommends "$@" >/dev/null 2>&1 || {
        as_root apt-get update >/dev/null
        as_root apt-get install -y --no-install-recommends "$@" >/dev/null
    }
}

# ---------------------------------------------------------------- PostgreSQL
PG_URL="${PEDULICOVID_TEST_PG:-postgres://postgres@127.0.0.1:5432/postgres}"
pg_up() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; }
if ! command -v pg_ctlcluster >/dev/null 2>&1; then
    log "installing PostgreSQL"
    apt_install postgresql postgresql-client
fi
if ! pg_up; then
    cluster="$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1)"
    [ -n "$cluster" ] || { log "no PostgreSQL cluster found in /etc/postgresql"; exit 1; }
    log "starting PostgreSQL $cluster"
    as_root pg_ctlcluster --skip-systemctl-redirect "$cluster" main start || true
    for _ in $(seq 1 60); do pg_up && break; sleep 0.5; done
    pg_up || { log "PostgreSQL did not come up"; exit 1; }
fi
# A fresh Debian install asks TCP clients for a password; this machine kind
# trusts loopback. When the password-less URL is refused, give the postgres
# role a password for the tests.
if [ -z "${PEDULICOVID_TEST_PG:-}" ] && ! psql "$PG_URL" -Atqc 'select 1' >/dev/null 2>&1; then
    log "PostgreSQL refuses password-less TCP: setting a test password for role postgres"
    as_root su postgres -c "psql -qc \"ALTER USER postgres PASSWORD 'postgres'\"" >/dev/null
    PG_URL="postgres://postgres:postgres@127.0.0.1:5432/postgres"
fi
export PEDULICOVID_TEST_PG="$PG_URL"

# ---------------------------------------------------------------- Chromium
# tests/it/ui_browser.rs drives Debian's headless Chromium through chromedriver
# (and fails, never skips, without them).
if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
    log "installing Chromium and chromedriver"
    apt_install chromium chromium-driver
fi

# ---------------------------------------------------------------- promtool
# tests/it/api.rs lints a real campaign's /metrics with `promtool check
# metrics` (Debian's prometheus package).
if ! command -v promtool >/dev/null 2>&1 || ! command -v prometheus >/dev/null 2>&1; then
    log "installing Prometheus and promtool (Debian package prometheus)"
    apt_install prometheus
fi
# scripts/monitoring-check.sh (run last) asks Prometheus with curl and jq.
for tool in curl jq python3; do
    command -v "$tool" >/dev/null 2>&1 || apt_install "$tool"
done

# ---------------------------------------------------------------- Kannel
CARRIER_DIR="${PEDULICOVID_CARRIER_DIR:-$(pwd)/../shared/carrier}"
if [ ! -f "$CARRIER_DIR/start.sh" ]; then
    log "Kannel harness not found at $CARRIER_DIR (set PEDULICOVID_CARRIER_DIR)"
    exit 1
fi
export PEDULICOVID_CARRIER_DIR="$(cd "$CARRIER_DIR" && pwd)"
bash "$PEDULICOVID_CARRIER_DIR/start.sh"
trap 'bash "$PEDULICOVID_CARRIER_DIR/stop.sh" >/dev/null 2>&1 || true' EXIT

# ---------------------------------------------------------------- tests
[ "${1:-}" = "--" ] && shift
log "cargo test (PostgreSQL at ${PG_URL%%@*}@…, Kannel at 127.0.0.1:13913)"
# --workspace: the simulator's and the benchmarks' own tests too (crates/).
cargo test --locked --workspace --all-targets -- "$@"

# ---------------------------------------------------------------- monitoring
# A real Prometheus scrapes serve + 2 workers on PostgreSQL during a
# campaign, with the shipped rules; every dashboard query must return data.
# The debug binary cargo test just built is enough (about a minute). Only on
# a whole run: arguments after `--` select tests.
if [ $# -eq 0 ]; then
    log "monitoring check (Prometheus, serve + 2 workers, the shipped dashboard)"
    BIN="$(pwd)/target/debug/pedulicovid" bash scripts/monitoring-check.sh --no-build
fi
