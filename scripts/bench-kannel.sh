#!/usr/bin/env bash
# The dispatcher through the REAL Kannel harness, in one run:
#
#   1. start the carrier harness (shared/carrier/start.sh: Kannel bearerbox +
#      smsbox on loopback, SMPP SMSC simulator sending real receipts), with
#      the same settings as its bench.sh phase A (--delay 0.1, no events
#      file, dlr_listener.py on 13980);
#   2. Kannel's own intake: wrk -t1 -c16 -d10s of GET /cgi-bin/sendsms (as
#      bench.sh phase A: unique number and dlr id per request, dlr-mask 19,
#      callbacks to the listener; numbers end in 1-6 like ours, so every
#      message is delivered and called back);
#   3. pedulicovid-bench --gateway kannel on SQLite, then on PostgreSQL
#      (a throw-away database on $PG_ADMIN_URL);
#   4. Kannel's intake again (the machine is shared: two bracketing
#      measurements show the drift);
#   5. ratio = dispatcher sends/s ÷ Kannel intake (the higher of the two
#      wrk runs), and stop the harness.
#
# Loopback only. Environment (all optional):
#   PEDULICOVID_CARRIER_DIR  harness folder          (/work/shared/carrier, else ../shared/carrier)
#   CARRIER_RUN_DIR          harness run directory   (/tmp/pedulicovid-carrier-kbench)
#   PEDULICOVID_BENCH_BIN    release benchmark binary ($CARGO_TARGET_DIR or ./target)/release/pedulicovid-bench
#   PG_ADMIN_URL             postgres://postgres@127.0.0.1:5432/postgres ("" skips PostgreSQL)
#   BENCH_MESSAGES (30000)  BENCH_WORKERS (2)  BENCH_CONCURRENCY (64)  BENCH_BATCH (500)
#   WRK_DURATION (10)  WRK_CONNECTIONS (16)  DLR_LISTENER_PORT (13980)
#   BENCH_EXTRA              extra flags for pedulicovid-bench
#   PIN_CORES=1              Kannel and its harness (bearerbox, smsbox, SMSC
#                            simulator, DLR listener) on core 0; the load
#                            generator (wrk, then pedulicovid-bench) and
#                            PostgreSQL on core 1 (`taskset`; PostgreSQL's
#                            affinity is restored at the end), so Kannel's
#                            intake and the dispatcher do not fight over cores
# Output: $CARRIER_RUN_DIR/kannel-bench/{wrk-*.txt,sqlite.json,postgres.json,summary.txt}
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ -z "${PEDULICOVID_CARRIER_DIR:-}" ]; then
    if [ -d /work/shared/carrier ]; then PEDULICOVID_CARRIER_DIR=/work/shared/carrier
    else PEDULICOVID_CARRIER_DIR="$ROOT/../shared/carrier"; fi
fi
CARRIER="$(cd "$PEDULICOVID_CARRIER_DIR" && pwd)"
export CARRIER_RUN_DIR="${CARRIER_RUN_DIR:-/tmp/pedulicovid-carrier-kbench}"
export DLR_LISTENER_PORT="${DLR_LISTENER_PORT:-13980}"
export SMSC_SIM_EVENTS=0
export SMSC_SIM_ARGS="${SMSC_SIM_ARGS:---delay 0.1}"
BIN="${PEDULICOVID_BENCH_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/pedulicovid-bench}"
PG_ADMIN_URL="${PG_ADMIN_URL-postgres://postgres@127.0.0.1:5432/postgres}"
MESSAGES="${BENCH_MESSAGES:-30000}"
WORKERS="${BENCH_WORKERS:-2}"
CONC="${BENCH_CONCURRENCY:-64}"
BATCH="${BENCH_BATCH:-500}"
WRK_DURATION="${WRK_DURATION:-10}"
WRK_CONNS="${WRK_CONNECTIONS:-16}"
OUT="$CARRIER_RUN_DIR/kannel-bench"

log() { echo "[bench-kannel] $*" >&2; }

if [ ! -x "$BIN" ]; then
    log "building the release benchmark binary ($BIN missing)"
    (cd "$ROOT" && cargo build --release -p pedulicovid-bench)
fi
if ! command -v wrk >/dev/null 2>&1; then
    log "installing wrk"
    DEBIAN_FRONTEND=noninteractive apt-get install -y wrk >/dev/null 2>&1 \
        || { apt-get update >/dev/null 2>&1; DEBIAN_FRONTEND=noninteractive apt-get install -y wrk >/dev/null; }
fi

ALL_CORES="0-$(($(nproc) - 1))"
unpin_postgres() {
    local p
    for p in $(pgrep -x postgres || true); do taskset -a -cp "$ALL_CORES" "$p" >/dev/null 2>&1 || true; done
}
trap 'bash "$CARRIER/stop.sh" || true; [ "${PIN_CORES:-0}" = 1 ] && unpin_postgres' EXIT
bash "$CARRIER/start.sh"
# shellcheck disable=SC1091
. "$CARRIER_RUN_DIR/carrier.env"
LOAD=()        # the command prefix of the load generators (wrk, the bench)
if [ "${PIN_CORES:-0}" = 1 ]; then
    for f in bearerbox smsbox smsc_sim dlr_listener; do
        pid="$(cat "$CARRIER_RUN_DIR/$f.pid" 2>/dev/null || true)"
        [ -n "$pid" ] && taskset -a -cp 0 "$pid" >/dev/null
    done
    # The postmaster's children inherit its affinity: new backends too.
    for p in $(pgrep -x postgres); do taskset -a -cp 1 "$p" >/dev/null 2>&1 || true; done
    LOAD=(taskset -c 1)
fi
mkdir -p "$OUT"
SUMMARY="$OUT/summary.txt"
: >"$SUMMARY"
say() { echo "$*" | tee -a "$SUMMARY" >&2; }

sim_stat() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$SMSC_STATS_FILE" "$1"; }
cb_count() { [ -f "$DLR_CALLBACKS_FILE" ] && wc -l <"$DLR_CALLBACKS_FILE" || echo 0; }
wait_quiet() {  # until submits and listener callbacks stop growing for 3 s (max 120 s)
    local last="" same=0 i cur
    for ((i = 0; i < 240; i++)); do
        cur="$(cb_count)/$(sim_stat submit_sm)"
        if [ "$cur" = "$last" ]; then same=$((same + 1)); else same=0; last="$cur"; fi
        [ "$same" -ge 6 ] && return 0
        sleep 0.5
    done
}
cpu_of() {      # CPU seconds of the harness processes: "name=s ..."
    local f pid
    for f in bearerbox smsbox smsc_sim dlr_listener; do
        pid="$(cat "$CARRIER_RUN_DIR/$f.pid" 2>/dev/null || true)"
        [ -n "$pid" ] && [ -r "/proc/$pid/stat" ] || continue
        awk -v n="$f" -v hz="$(getconf CLK_TCK)" '{sub(/^.*\) /, ""); printf "%s=%.1f ", n, ($12 + $13) / hz}' "/proc/$pid/stat"
    done
}

# wrk script: unique number ending in 1-6 (DELIVRD) and dlr id per request.
cat >"$OUT/sendsms.lua" <<EOF
local user, pass, port = "$KANNEL_SENDSMS_USER", "$KANNEL_SENDSMS_PASS", "$DLR_LISTENER_PORT"
local n_threads = 0
function setup(thread)
  n_threads = n_threads + 1
  thread:set("tid", n_threads)
end
function init(args) counter = 0 end
local function enc(s)
  return (s:gsub("[^%w%-%._~]", function(c) return string.format("%%%02X", string.byte(c)) end))
end
function request()
  counter = counter + 1
  local to = string.format("6281%d%s%06d%d", tid, pfx, math.floor(counter / 6), counter % 6 + 1)
  local id = string.format("w%s%d-%d", pfx, tid, counter)
  local dlr = enc("http://127.0.0.1:" .. port .. "/dlr?id=" .. id .. "&status=%d&fid=%F")
  return wrk.format("GET", "/cgi-bin/sendsms?username=" .. user .. "&password=" .. pass ..
    "&from=PEDULICOVID&to=" .. to .. "&text=PEDULICOVID+jadwal+vaksinasi+" .. id ..
    "&dlr-mask=19&dlr-url=" .. dlr)
end
EOF

intake() {      # $1 = label (digit, keeps the numbers of the two runs apart)
    local label="$1" cb0 sub0 cpu0 rps
    wait_quiet
    cb0="$(cb_count)"; sub0="$(sim_stat submit_sm)"; cpu0="$(cpu_of)"
    sed "s/^function init(args) counter = 0 end/pfx = \"$label\"\nfunction init(args) counter = 0 end/" \
        "$OUT/sendsms.lua" >"$OUT/sendsms-$label.lua"
    "${LOAD[@]}" wrk -t1 -c"$WRK_CONNS" -d"${WRK_DURATION}s" --latency -s "$OUT/sendsms-$label.lua" \
        "$KANNEL_SENDSMS_URL" >"$OUT/wrk-$label.txt"
    wait_quiet
    rps="$(awk '/^Requests\/sec/ {print $2}' "$OUT/wrk-$label.txt")"
    say "kannel intake #$label: wrk -t1 -c$WRK_CONNS -d${WRK_DURATION}s: $rps sendsms/s accepted" \
        "($(grep -E 'Non-2xx' "$OUT/wrk-$label.txt" || echo 'all 2xx')); latency $(awk '/^ +50%/ {p50=$2} /^ +99%/ {p99=$2} END {print "p50 " p50 ", p99 " p99}' "$OUT/wrk-$label.txt")"
    say "  smsc submit_sm +$(($(sim_stat submit_sm) - sub0)), listener callbacks +$(($(cb_count) - cb0))"
    say "  cpu before: $cpu0"
    say "  cpu after:  $(cpu_of)"
    echo "$rps"
}

bench() {       # $1 = sqlite|postgres
    local db=() json="$OUT/$1.json"
    [ "$1" = postgres ] && db=(--database-url "$PG_ADMIN_URL")
    wait_quiet
    log "pedulicovid-bench --gateway kannel ($1, $MESSAGES messages)"
    # shellcheck disable=SC2086
    "${LOAD[@]}" "$BIN" "${db[@]}" --gateway kannel --carrier-run-dir "$CARRIER_RUN_DIR" \
        --messages "$MESSAGES" --workers "$WORKERS" --concurrency "$CONC" --batch-size "$BATCH" \
        --json ${BENCH_EXTRA:-} >"$json"
    python3 - "$json" <<'PY' | tee -a "$SUMMARY"
import json, sys
r = json.load(open(sys.argv[1]))
u, k = r["unlimited"], r["kannel"]
print("%s: %d messages, %d loops x %d in flight, batch %d: %.0f sends/s accepted by Kannel, "
      "%.0f receipts/s, %.0f end-to-end/s, send p50 %.2f ms p99 %.2f ms; by status %s; "
      "smsc submit_sm %s; load at start %s" % (
      r["backend"], r["messages"], r["workers"], r["concurrency"], r["batch_size"], u["sends_per_s"],
      u["receipts_per_s"], u["end_to_end_per_s"], u["p50_send_ms"], u["p99_send_ms"], u["by_status"],
      k["smsc_submit_sm"], r["load_avg_at_start"]))
print("  cpu s over %.1f s: %s; machine busy %s of %s cores" % (
      k["wall_s"], ", ".join("%s %.1f" % kv for kv in sorted(k["cpu_s"].items())),
      k["machine_busy_cores"], k["cores"]))
PY
}

say "# pedulicovid through Kannel, $(date -u +%FT%TZ), $(nproc) cores, load $(cut -d' ' -f1 /proc/loadavg)"
say "# harness: $CARRIER (SMSC_SIM_ARGS=$SMSC_SIM_ARGS), binary: $BIN, pinned: ${PIN_CORES:-0}"
rps1="$(intake 1)"
bench sqlite
[ -n "$PG_ADMIN_URL" ] && bench postgres
rps2="$(intake 2)"

python3 - "$rps1" "$rps2" "$OUT" <<'PY' | tee -a "$SUMMARY"
import json, os, sys
a, b, out = float(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
kannel = max(a, b)
print("kannel intake: %.0f and %.0f sendsms/s (before / after); ratio against the higher, %.0f/s:" % (a, b, kannel))
for be in ("sqlite", "postgres"):
    p = os.path.join(out, be + ".json")
    if os.path.exists(p):
        s = json.load(open(p))["unlimited"]["sends_per_s"]
        print("  %-8s %6.0f sends/s = %5.1f %% of Kannel's intake (target >= 95 %%: %s)" % (
            be, s, 100 * s / kannel, "met" if s >= 0.95 * kannel else "MISSED"))
PY
log "results in $OUT"
