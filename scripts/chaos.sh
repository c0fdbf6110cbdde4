#!/usr/bin/env bash
# Crash chaos, the long manual version of tests/exclusive/chaos.rs (RELIABILITY.md).
#
# Several `pedulicovid worker` processes (release build) share one
# PostgreSQL queue and send a large campaign to `pedulicovid carrier-sim`,
# running as its own process, while this script SIGKILLs a random worker
# every few seconds and starts a new one in its place. `pedulicovid serve`
# takes the receipts and runs housekeeping (lease expiry). At the end it
# checks that every message is final and none is lost, and that duplicates
# (counted by the simulator per destination) stay within what the killed
# workers held leased (at_least_once) or are 0 (at_most_once, the uncertain
# ones `unknown` and flagged `lease_lost`). Exit status 0 when every check
# holds, 1 when one fails, 2 on a usage or set-up error.
#
#   bash scripts/chaos.sh                       # 100,000 messages, 3 workers, 20 kills
#   bash scripts/chaos.sh --policy at_most_once --workers 4
#   bash scripts/chaos.sh --messages 20000 --kills 5 --kill-every 2
#
# Flags (defaults in brackets):
#   --messages N        campaign size, one health worker each        [100000]
#   --workers N         worker processes alive at any time (2-4)     [3]
#   --kills N           SIGKILLs, one random worker each             [20]
#   --kill-every SECS   pause between kills                          [4]
#   --policy P          at_least_once | at_most_once                 [at_least_once]
#   --rate N            gateway messages/s, all workers together     [1000]
#   --batch N           worker.batch_size (2 x this bounds duplicates per kill) [100]
#   --lease SECS        worker.lease_secs                            [5]
#   --receipt-delay-ms  simulator receipt delay (± 20 %)             [1000]
#   --timeout SECS      give up after this long in all               [900]
#   --keep              keep the database and the logs
#   --no-build          use target/release/pedulicovid as it is
#
# Needs PostgreSQL on 127.0.0.1 with trust auth, as scripts/test.sh sets up
# (PEDULICOVID_TEST_PG overrides the admin URL), plus psql, curl and jq.
# Everything listens on 127.0.0.1 only; every process it starts is stopped
# by its pid on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

MESSAGES=100000 WORKERS=3 KILLS=20 KILL_EVERY=4 POLICY=at_least_once RATE=1000
BATCH=100 LEASE=5 RECEIPT_DELAY_MS=1000 TIMEOUT=900 KEEP=0 BUILD=1
usage() { sed -n '2,33p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
while [ $# -gt 0 ]; do
    case "$1" in
        --messages) MESSAGES="$2"; shift 2 ;;
        --workers) WORKERS="$2"; shift 2 ;;
        --kills) KILLS="$2"; shift 2 ;;
        --kill-every) KILL_EVERY="$2"; shift 2 ;;
        --policy) POLICY="$2"; shift 2 ;;
        --rate) RATE="$2"; shift 2 ;;
        --batch) BATCH="$2"; shift 2 ;;
        --lease) LEASE="$2"; shift 2 ;;
        --receipt-delay-ms) RECEIPT_DELAY_MS="$2"; shift 2 ;;
        --timeout) TIMEOUT="$2"; shift 2 ;;
        --keep) KEEP=1; shift ;;
        --no-build) BUILD=0; shift ;;
        -h|--help) usage ;;
        *) echo "unknown flag $1" >&2; usage ;;
    esac
done
case "$POLICY" in at_least_once|at_most_once) ;; *) echo "--policy: at_least_once or at_most_once" >&2; exit 2 ;; esac
for n in "$MESSAGES" "$WORKERS" "$KILLS" "$KILL_EVERY" "$RATE" "$BATCH" "$LEASE" "$RECEIPT_DELAY_MS" "$TIMEOUT"; do
    [[ "$n" =~ ^[0-9]+$ ]] || { echo "not a number: $n" >&2; exit 2; }
done
[ "$WORKERS" -ge 1 ] || { echo "--workers must be at least 1" >&2; exit 2; }
[ "$MESSAGES" -le 3000000 ] || { echo "--messages: at most 3,000,000" >&2; exit 2; }
for tool in psql curl jq awk; do
    command -v "$tool" >/dev/null || { echo "needs $tool" >&2; exit 2; }
done

log() { printf '[chaos.sh %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
START=$(date +%s)
DEADLINE=$((START + TIMEOUT))
left() { echo $((DEADLINE - $(date +%s))); }

PG_ADMIN="${PEDULICOVID_TEST_PG:-postgres://postgres@127.0.0.1:5432/postgres}"
DB="pedulicovid_chaos_$(date +%s)_$$"
DB_URL="${PG_ADMIN%/*}/$DB"
WORK="$(mktemp -d /tmp/pedulicovid-chaos.XXXXXX)"
BIN="$(pwd)/target/release/pedulicovid"
PIDS=()          # every process started here (sim, serve, workers)
SLOTS=()         # worker pid per slot

cleanup() {
    local rc=$?
    for pid in "${PIDS[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    if [ "$KEEP" = 1 ]; then
        log "kept database $DB and logs in $WORK"
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
[ -x "$BIN" ] || { echo "no $BIN (drop --no-build)" >&2; exit 2; }
psql "$PG_ADMIN" -Atqc 'select 1' >/dev/null || { echo "PostgreSQL not reachable at $PG_ADMIN" >&2; exit 2; }
psql "$PG_ADMIN" -qc "CREATE DATABASE $DB" >/dev/null
q() { psql "$DB_URL" -Atqc "$1"; }

# Settings: an empty file, so a pedulicovid.toml here cannot interfere; the
# rest comes from the environment of each process.
echo "# chaos.sh: see the environment" > "$WORK/chaos.toml"
for k in $(env | grep -o '^PEDULICOVID__[A-Z0-9_]*' || true); do unset "$k"; done
unset DATABASE_URL
export RUST_LOG="warn,sqlx::query=error"
export PEDULICOVID__WORKER__BATCH_SIZE="$BATCH"
export PEDULICOVID__WORKER__LEASE_SECS="$LEASE"
export PEDULICOVID__WORKER__POLICY="$POLICY"
# Several workers on this host: each its metrics listener on a free port.
export PEDULICOVID__METRICS__LISTEN=127.0.0.1:0
pc() { "$BIN" --config "$WORK/chaos.toml" --database-url "$DB_URL" "$@"; }
# The same in the background: `exec` makes $! the binary's own pid (the one
# in its lease owner id), not a subshell's.
pc_exec() { exec "$BIN" --config "$WORK/chaos.toml" --database-url "$DB_URL" "$@"; }

# Waits until FILE contains PATTERN; prints the first matching line.
wait_line() {
    local file="$1" pattern="$2" pid="$3"
    for _ in $(seq 1 200); do
        if grep -q "$pattern" "$file" 2>/dev/null; then grep -m1 "$pattern" "$file"; return 0; fi
        kill -0 "$pid" 2>/dev/null || { cat "$file" >&2; return 1; }
        sleep 0.1
    done
    cat "$file" >&2
    return 1
}

log "database $DB; work directory $WORK"
pc migrate >/dev/null

# The carrier, its own process on a free loopback port.
jitter=$((RECEIPT_DELAY_MS / 5))
PEDULICOVID__SIMULATOR__RECEIPT_JITTER_MS="$jitter" PEDULICOVID__SIMULATOR__CALLBACK_RETRY_DELAY_MS=500 \
PEDULICOVID__SIMULATOR__CALLBACK_RETRIES=10 \
    "$BIN" --config "$WORK/chaos.toml" carrier-sim --listen 127.0.0.1:0 --answer-latency-ms 3 \
    --receipt-delay-ms "$RECEIPT_DELAY_MS" --mix delivered=1 >"$WORK/sim.out" 2>"$WORK/sim.log" &
PIDS+=($!)
SIM_URL="$(wait_line "$WORK/sim.out" 'http://' $! | grep -o 'http://[^ ]*')"
SIM_BASE="${SIM_URL%/cgi-bin/sendsms}"
# Gateway 0 is the carrier-sim process: a plain Kannel-dialect gateway.
export PEDULICOVID__GATEWAYS__0__NAME=sim
export PEDULICOVID__GATEWAYS__0__RATE_PER_SEC="$RATE"
export PEDULICOVID__GATEWAYS__0__KANNEL__SENDSMS_URL="$SIM_URL"
stats() { curl -sf "$SIM_BASE/sim/stats"; }
log "carrier-sim at $SIM_BASE"

# Receipts and housekeeping.
PEDULICOVID__HTTP__LISTEN=127.0.0.1:0 pc_exec serve >/dev/null 2>"$WORK/serve.log" &
PIDS+=($!)
PUBLIC_URL="$(wait_line "$WORK/serve.log" 'listening on http://' $! | grep -o 'http://[^ ]*')"
export PEDULICOVID__HTTP__PUBLIC_URL="$PUBLIC_URL"
log "serve at $PUBLIC_URL"

# A synthetic registry: unique NIKs (day, month, serial) and numbers.
log "importing $MESSAGES health workers"
awk -v n="$MESSAGES" 'BEGIN {
    print "nik,full_name,phone,profession,facility_code,regency_code,province_code,validated,eligible";
    for (i = 0; i < n; i++) {
        printf "310101%02d%02d90%04d,Nakes Chaos %d,0812%08d,perawat,FKS%d,3101,31,true,true\n",
            i % 28 + 1, int(i / 28) % 12 + 1, int(i / 336) + 1, i, 10000000 + i, i;
    }
}' >"$WORK/registry.csv"
accepted="$(pc import "$WORK/registry.csv" --json | jq .accepted)"
[ "$accepted" = "$MESSAGES" ] || { log "import accepted $accepted of $MESSAGES"; exit 2; }
CAMPAIGN="$(pc campaign create --name chaos --template undangan_registrasi --window 00:00-24:00 --json | jq .campaign.id)"
# Statistics for the fresh tables, as autovacuum would soon provide: without
# them PostgreSQL's claim plan sorts the whole queue on every claim, and a
# worker spends much of its time claiming, holding nothing (bench --analyze).
q "ANALYZE" >/dev/null
log "campaign $CAMPAIGN: $MESSAGES messages, $WORKERS workers, $KILLS kills every ${KILL_EVERY}s, $POLICY"

spawn_worker() { # slot
    pc_exec worker >/dev/null 2>>"$WORK/worker-$1.log" &
    PIDS+=($!)
    SLOTS[$1]=$!
}
for ((s = 0; s < WORKERS; s++)); do spawn_worker "$s"; done

until [ "$(stats | jq .submits_total)" -ge 1000 ]; do
    [ "$(left)" -gt 0 ] || { log "timed out waiting for the first sends"; exit 1; }
    sleep 0.2
done
SEND_START=$(date +%s.%N)
HELD_TOTAL=0 SENDING_TOTAL=0 KILLED=0 LATE_KILLS=0
for ((k = 1; k <= KILLS; k++)); do
    sleep "$KILL_EVERY"
    [ "$(left)" -gt 0 ] || { log "timed out during the kills"; exit 1; }
    s=$((RANDOM % WORKERS))
    pid="${SLOTS[$s]}"
    kill -0 "$pid" 2>/dev/null || { log "worker $pid (slot $s) died on its own:"; tail -20 "$WORK/worker-$s.log" >&2; exit 1; }
    kill -9 "$pid"
    wait "$pid" 2>/dev/null || true
    submits="$(stats | jq .submits_total)"
    held="$(q "SELECT COUNT(*) FROM messages WHERE lease_owner LIKE '%-$pid-%'")"
    sending="$(q "SELECT COUNT(*) FROM messages WHERE lease_owner LIKE '%-$pid-%' AND status = 'sending'")"
    HELD_TOTAL=$((HELD_TOTAL + held)) SENDING_TOTAL=$((SENDING_TOTAL + sending)) KILLED=$((KILLED + 1))
    [ "$submits" -lt "$MESSAGES" ] || LATE_KILLS=$((LATE_KILLS + 1))
    log "kill $k: pid $pid (slot $s) held $held leased rows ($sending sending); $submits submits so far"
    spawn_worker "$s"
done

log "waiting for every message to settle"
while :; do
    open="$(q "SELECT COUNT(*) FROM messages WHERE campaign_id = $CAMPAIGN AND status IN ('queued','sending','sent')")"
    leased="$(q "SELECT COUNT(*) FROM messages WHERE lease_owner IS NOT NULL")"
    st="$(stats)"
    pending=$(( $(jq .submits_total <<<"$st") - $(jq .callbacks_sent <<<"$st") - $(jq .callbacks_failed <<<"$st") ))
    [ "$open" = 0 ] && [ "$leased" = 0 ] && [ "$pending" = 0 ] && break
    [ "$(left)" -gt 0 ] || { log "timed out: $open open, $leased leased, $pending receipts pending"; exit 1; }
    for ((s = 0; s < WORKERS; s++)); do
        kill -0 "${SLOTS[$s]}" 2>/dev/null || { log "worker slot $s died on its own"; tail -20 "$WORK/worker-$s.log" >&2; exit 1; }
    done
    sleep 1
done
SEND_END=$(date +%s.%N)

st="$(stats)"
count() { q "SELECT COUNT(*) FROM messages WHERE campaign_id = $CAMPAIGN AND status = '$1'"; }
total="$(q "SELECT COUNT(*) FROM messages WHERE campaign_id = $CAMPAIGN")"
final="$(q "SELECT COUNT(*) FROM messages WHERE campaign_id = $CAMPAIGN AND status IN ('delivered','undelivered','expired','rejected','failed','cancelled','unknown')")"
delivered="$(count delivered)" unknown="$(count unknown)" failed="$(count failed)"
lease_lost="$(q "SELECT COUNT(*) FROM non_recipients WHERE campaign_id = $CAMPAIGN AND reason = 'lease_lost' AND resolved_at IS NULL")"
submits="$(jq .submits_total <<<"$st")" dups="$(jq .duplicates <<<"$st")"
elapsed=$(( $(date +%s) - START ))
sending_s="$(awk -v a="$SEND_START" -v b="$SEND_END" 'BEGIN { printf "%.1f", b - a }')"
# A pipelined worker holds the batch it sends and the one it records.
bound=$((2 * BATCH * KILLED))

echo "chaos: policy $POLICY, $MESSAGES messages, $WORKERS workers, $KILLED kills ($LATE_KILLS after the last send)," \
     "held $HELD_TOTAL leased rows ($SENDING_TOTAL sending) at the kills;" \
     "submits $submits, duplicates $dups (bound $HELD_TOTAL <= $bound); delivered $delivered, unknown $unknown" \
     "(lease_lost flags $lease_lost), failed $failed; sending+settling ${sending_s}s, elapsed ${elapsed}s"

fail=0
check() { if ! eval "$1"; then echo "CHECK FAILED: $2" >&2; fail=1; fi; }
check '[ "$total" = "$MESSAGES" ]' "messages in the queue $total != $MESSAGES"
check '[ "$final" = "$MESSAGES" ]' "final (or unknown) $final != $MESSAGES: something was lost"
check '[ "$(q "SELECT COUNT(*) FROM messages WHERE lease_owner IS NOT NULL")" = 0 ]' "leases left"
if [ "$POLICY" = at_least_once ]; then
    check '[ "$dups" -le "$HELD_TOTAL" ]' "duplicates $dups > $HELD_TOTAL rows held by the killed workers"
    check '[ "$dups" -le "$bound" ]' "duplicates $dups > 2 x batch x kills = $bound"
    check '[ "$delivered" = "$MESSAGES" ]' "delivered $delivered != $MESSAGES"
    check '[ $((submits - dups)) = "$MESSAGES" ]' "numbers submitted $((submits - dups)) != $MESSAGES"
else
    check '[ "$dups" = 0 ]' "duplicates $dups under at_most_once"
    check '[ "$unknown" = "$lease_lost" ]' "unknown $unknown != open lease_lost flags $lease_lost"
    check '[ $((delivered + unknown)) = "$MESSAGES" ]' "delivered + unknown != $MESSAGES"
    check '[ "$submits" = "$delivered" ]' "submits $submits != delivered $delivered"
    check '[ "$unknown" -le "$SENDING_TOTAL" ]' "unknown $unknown > $SENDING_TOTAL in flight at the kills"
fi
[ "$fail" = 0 ] && echo "chaos: all checks passed" || exit 1
