#!/bin/bash
# A/B of two benchmark binaries on one machine, alternating old and new
# ROUNDS times (PostgreSQL, unlimited rate), one line per run: sends/s,
# end-to-end/s, p99 send latency, CPU and PostgreSQL CPU per message, peak RSS.
#
#   scripts/bench-ab.sh MESSAGES ROUNDS      (from the repository root)
#
# OLD and NEW are commands (word-split): by default the pre-workspace
# binary's `pedulicovid bench` (a release build of 02052d9 in /work/wt/old)
# and this tree's target/release/pedulicovid-bench. PG is the server.
set -u
N=${1:-100000}; R=${2:-3}
PG=${PG:-postgres://postgres@127.0.0.1:5432/postgres}
OLD=${OLD:-"/work/wt/old/target/release/pedulicovid bench"}
NEW=${NEW:-"$(pwd)/target/release/pedulicovid-bench"}
run() { # label cmd...
  local label=$1; shift
  ( "$@" --database-url $PG --messages $N --rate 0 --json 2>/dev/null ) | tail -1 > "${TMPDIR:-/tmp}/ab-$label-$i.json"
  python3 - "$label" "${TMPDIR:-/tmp}/ab-$label-$i.json" "$N" <<'PY'
import json,sys
label,f,n=sys.argv[1],sys.argv[2],int(sys.argv[3])
r=json.load(open(f)); u=r["unlimited"]
cpu=u["process_cpu_s"]*1e6/n; db=(u.get("db_cpu_s") or 0)*1e6/n
print(f"{label:4} sends/s {u['sends_per_s']:8.0f}  e2e/s {u['end_to_end_per_s']:8.0f}  p99 {r.get('p99_send_ms') or 0:6.1f} ms  cpu {cpu:6.1f} us/msg  db {db:6.1f} us/msg  rss {r.get('peak_rss_mb') or 0:6.1f} MB  load {r.get('load_avg_at_start') or 0:.2f}")
PY
}
for i in $(seq 1 $R); do
  run old $OLD
  run new $NEW
done
