#!/bin/bash
# A/B of two benchmark binaries on one machine, alternating old and new
# ROUNDS times (unlimited rate), one line per run: CPU µs per message of
# each part (dispatcher, server, database, simulator, other; the bench's
# `cpu_us_per_message`), dispatcher + server (and its ratio to the
# simulator's cost in the same run, below), PostgreSQL transactions and
# statements per message, sends/s, end-to-end/s, receipts/s, wake-up p50.
#
#   scripts/bench-ab.sh MESSAGES ROUNDS [bench options…]   (repository root)
#
# OLD and NEW are the two binaries (default NEW: this tree's
# target/release/pedulicovid-bench; OLD must be given). DB=sqlite runs on a
# temporary SQLite file; otherwise PG (default the local server) is used.
# Both binaries must report `cpu_us_per_message` (commits from "bench: the
# unlimited run as serve + worker + simulator" on).
set -u
# Every build runs at one log filter, the product's own default (`serve`
# and `worker` log at INFO unless told otherwise; the benchmark binary's
# default is WARN): RUST_LOG=warn … to measure without it.
export RUST_LOG=${RUST_LOG:-info}
echo "# RUST_LOG=$RUST_LOG" >&2
N=${1:-100000}; R=${2:-3}; shift 2 || true
PG=${PG:-postgres://postgres@127.0.0.1:5432/postgres}
OLD=${OLD:?set OLD to the old pedulicovid-bench binary}
NEW=${NEW:-"$(pwd)/target/release/pedulicovid-bench"}
for i in $(seq 1 "$R"); do
  for label in old new; do
    if [ $label = old ]; then B=$OLD; else B=$NEW; fi
    if [ "${DB:-}" = sqlite ]; then DBARG=""; else DBARG="--database-url ${DB:-$PG}"; fi
    out="${TMPDIR:-/tmp}/ab-$label-$i.json"
    # shellcheck disable=SC2086
    $B $DBARG --messages "$N" --rate 0 --json "$@" 2>/dev/null | tail -1 > "$out"
    python3 - "$label" "$out" <<'PY'
import json, sys
label, f = sys.argv[1], sys.argv[2]
r = json.load(open(f)); u = r["unlimited"]; c = u["cpu_us_per_message"]
w = (u.get("wake_latency_ms") or {}).get("p50")
ours = c['dispatcher'] + c['server']
# The simulator does the same work per message in both binaries: its cost
# tracks how fast the machine is during this run, so ours ÷ its is the
# figure that survives the machine's hour-to-hour drift.
print(f"{label:3} disp {c['dispatcher']:6.1f} srv {c['server']:6.1f} db {c['database']:6.1f} "
      f"sim {c['simulator']:6.1f} other {c['other']:5.1f} | disp+srv {ours:6.1f} "
      f"(÷sim {ours / max(c['simulator'], 1e-9):.3f}) | "
      f"tx/msg {u.get('transactions_per_message')} st/msg {u.get('statements_per_message')} | "
      f"sends/s {u['sends_per_s']:.0f} e2e/s {u['end_to_end_per_s']:.0f} receipts/s {u['receipts_per_s']:.0f} "
      f"wake p50 {w} ms | load {r.get('load_avg_at_start')}")
PY
  done
done
