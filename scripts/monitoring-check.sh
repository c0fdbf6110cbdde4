#!/usr/bin/env bash
# A real Prometheus (Debian's package) scrapes a `serve` + 2 `worker`
# deployment on PostgreSQL during a campaign, with the shipped alert rules
# loaded; then every query of the shipped Grafana dashboard is run against
# it and must return data (README, "Monitoring").
#
#   bash scripts/monitoring-check.sh [--messages N] [--rate R] [--keep] [--no-build]
#   BIN=target/debug/pedulicovid bash scripts/monitoring-check.sh --no-build   # (scripts/test.sh)
#
# The carrier is `pedulicovid carrier-sim` in its own process (Kannel
# dialect, one number in ten undelivered, so flags exist). Everything
# listens on 127.0.0.1; every process started here is stopped on exit. Needs
# PostgreSQL with trust auth (PEDULICOVID_TEST_PG overrides the admin URL),
# prometheus and promtool (apt-get install prometheus), psql, curl, jq.
set -euo pipefail
cd "$(dirname "$0")/.."

MESSAGES=20000 RATE=100 KEEP=0 BUILD=1
while [ $# -gt 0 ]; do
    case "$1" in
        --messages) MESSAGES="$2"; shift 2 ;;
        --rate) RATE="$2"; shift 2 ;;
        --keep) KEEP=1; shift ;;
        --no-build) BUILD=0; shift ;;
        -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
        *) echo "unknown flag $1" >&2; exit 2 ;;
    esac
done
for tool in prometheus promtool psql curl jq awk; do
    command -v "$tool" >/dev/null || { echo "needs $tool (apt-get install prometheus postgresql-client curl jq)" >&2; exit 2; }
done
log() { printf '[monitoring-check %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

PG_ADMIN="${PEDULICOVID_TEST_PG:-postgres://postgres@127.0.0.1:5432/postgres}"
DB="pedulicovid_monitoring_$(date +%s)_$$"
DB_URL="${PG_ADMIN%/*}/$DB"
WORK="$(mktemp -d /tmp/pedulicovid-monitoring.XXXXXX)"
BIN="${BIN:-$(pwd)/target/release/pedulicovid}"   # BIN: another build (then --no-build)
PIDS=()
cleanup() {
    local rc=$?
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    if [ "$KEEP" = 1 ]; then
        log "kept database $DB and $WORK"
    else
        psql "$PG_ADMIN" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
        rm -rf "$WORK"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

if [ "$BUILD" = 1 ]; then
    log "building the release binary"
    cargo build --release --quiet
fi
psql "$PG_ADMIN" -qc "CREATE DATABASE $DB" >/dev/null
for k in $(env | grep -o '^PEDULICOVID__[A-Z0-9_]*' || true); do unset "$k"; done
echo "# monitoring-check.sh: see the environment" >"$WORK/empty.toml"
export RUST_LOG=warn
export PEDULICOVID__DATABASE_URL="$DB_URL"
pc() { "$BIN" --config "$WORK/empty.toml" "$@"; }
# In the background: `exec` makes $! the binary's own pid, so the cleanup
# stops the binary, not only the subshell that started it.
pc_exec() { exec "$BIN" --config "$WORK/empty.toml" "$@"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_line() { # file pattern pid
    for _ in $(seq 1 300); do
        if grep -q "$2" "$1" 2>/dev/null; then grep -m1 "$2" "$1"; return 0; fi
        kill -0 "$3" 2>/dev/null || { cat "$1" >&2; return 1; }
        sleep 0.1
    done
    cat "$1" >&2; return 1
}

pc migrate >/dev/null
pc_exec carrier-sim --listen 127.0.0.1:0 --rules 0=undelivered --mix delivered=1 \
    --receipt-delay-ms 5000 >"$WORK/sim.out" 2>"$WORK/sim.log" &
PIDS+=($!)
SIM_URL="$(wait_line "$WORK/sim.out" 'http://' $! | grep -o 'http://[^ ]*')"
export PEDULICOVID__GATEWAYS__0__NAME=sim
export PEDULICOVID__GATEWAYS__0__RATE_PER_SEC="$RATE"
export PEDULICOVID__GATEWAYS__0__KANNEL__SENDSMS_URL="$SIM_URL"

SERVE_PORT="$(free_port)"
PEDULICOVID__HTTP__LISTEN="127.0.0.1:$SERVE_PORT" pc_exec serve >/dev/null 2>"$WORK/serve.log" &
PIDS+=($!)
wait_line "$WORK/serve.log" 'listening on http://' $! >/dev/null || true
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$SERVE_PORT/healthz" >/dev/null && break; sleep 0.1; done
export PEDULICOVID__HTTP__PUBLIC_URL="http://127.0.0.1:$SERVE_PORT"

log "importing $MESSAGES health workers; a campaign"
awk -v n="$MESSAGES" 'BEGIN {
    print "nik,full_name,phone,profession,facility_code,regency_code,province_code,validated,eligible";
    for (i = 0; i < n; i++) {
        printf "310101%02d%02d90%04d,Nakes Pantau %d,0812%08d,perawat,FKS%d,3101,31,true,true\n",
            i % 28 + 1, int(i / 28) % 12 + 1, int(i / 336) + 1, i, 10000000 + i, i;
    }
}' >"$WORK/registry.csv"
pc import "$WORK/registry.csv" >/dev/null
pc campaign create --name pantau --template undangan_registrasi --window 00:00-24:00 >/dev/null
psql "$DB_URL" -qc ANALYZE >/dev/null

W1="$(free_port)" W2="$(free_port)"
for p in "$W1" "$W2"; do
    PEDULICOVID__METRICS__LISTEN="127.0.0.1:$p" pc_exec worker >/dev/null 2>"$WORK/worker-$p.log" &
    PIDS+=($!)
done

PROM_PORT="$(free_port)"
cp deploy/prometheus/alerts.yml "$WORK/alerts.yml"
cat >"$WORK/prometheus.yml" <<YAML
global:
  scrape_interval: 2s
  evaluation_interval: 2s
rule_files: [alerts.yml]
scrape_configs:
  - job_name: pedulicovid
    static_configs: [{targets: ["127.0.0.1:$SERVE_PORT"]}]
  - job_name: pedulicovid-worker
    static_configs: [{targets: ["127.0.0.1:$W1", "127.0.0.1:$W2"]}]
YAML
promtool check config "$WORK/prometheus.yml" >/dev/null
prometheus --config.file="$WORK/prometheus.yml" --storage.tsdb.path="$WORK/tsdb" \
    --web.listen-address="127.0.0.1:$PROM_PORT" >"$WORK/prometheus.log" 2>&1 &
PIDS+=($!)
PROM="http://127.0.0.1:$PROM_PORT"
for _ in $(seq 1 100); do curl -sf "$PROM/-/ready" >/dev/null && break; sleep 0.2; done

log "campaign running; Prometheus scraping serve and 2 workers for 40 s"
sleep 40
up="$(curl -sf "$PROM/api/v1/query" --data-urlencode 'query=sum(up)' | jq -r '.data.result[0].value[1]')"
[ "$up" = 3 ] || { log "targets up: $up of 3"; curl -sf "$PROM/api/v1/targets" | jq '.data.activeTargets[] | {scrapeUrl, health, lastError}' >&2; exit 1; }

log "every dashboard query against it"
failed=0
while IFS= read -r expr; do
    n="$(curl -sf "$PROM/api/v1/query" --data-urlencode "query=$expr" | jq '.data.result | length')"
    if [ "${n:-0}" -gt 0 ]; then
        printf '  %3d series  %s\n' "$n" "$expr" >&2
    else
        printf '  NO DATA     %s\n' "$expr" >&2
        failed=1
    fi
done < <(jq -r '.panels[].targets[].expr' deploy/grafana/pedulicovid.json)
rules="$(curl -sf "$PROM/api/v1/rules" | jq '[.data.groups[].rules[]] | length')"
log "alert rules loaded: $rules"
[ "$failed" = 0 ] || { log "some dashboard queries returned no data"; exit 1; }
log "ok: 3 targets up, every dashboard query returned data, $rules alert rules loaded"
