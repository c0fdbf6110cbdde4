#!/usr/bin/env bash
# The dispatcher's own memory during a campaign, with the carrier simulator in
# a process of its own (in `pedulicovid-bench` it shares the process, and its
# backlog of undelivered receipts would be counted as ours).
#
#   bash scripts/bench-engine-memory.sh [MESSAGES] [SECONDS]
#
# MESSAGES (1500000) synthetic workers in one campaign on a fresh PostgreSQL
# database (PEDULICOVID_BENCH_PG, default postgres://postgres@127.0.0.1:5432/postgres),
# sent for at most SECONDS (90) through `pedulicovid carrier-sim` (Kannel
# dialect, everything delivered, receipts at once) on 127.0.0.1:13099.
# Prints the bench's JSON summary line and both processes' peak RSS.
set -euo pipefail
cd "$(dirname "$0")/.."
messages="${1:-1500000}"
secs="${2:-90}"
pg="${PEDULICOVID_BENCH_PG:-postgres://postgres@127.0.0.1:5432/postgres}"
port=13099
cargo build --release --quiet -p pedulicovid -p pedulicovid-bench
bin=target/release/pedulicovid
bench=target/release/pedulicovid-bench
out="$(mktemp -d)"

"$bin" carrier-sim --listen "127.0.0.1:$port" --mix delivered=1.0 --receipt-delay-ms 0 \
    >"$out/sim.log" 2>&1 &
sim=$!
trap 'kill "$sim" 2>/dev/null || true; wait "$sim" 2>/dev/null || true' EXIT
for _ in $(seq 50); do
    grep -q listening "$out/sim.log" && break
    sleep 0.1
done

"$bench" --gateway kannel --kannel-url "http://127.0.0.1:$port/cgi-bin/sendsms" \
    --kannel-user pedulicovid --kannel-password secret \
    --database-url "$pg" --messages "$messages" --timeout-secs "$secs" --json >"$out/bench.json"

python3 - "$out/bench.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
u = d["unlimited"]
print(f"messages {d['messages']}  enqueue {d['enqueue_s']} s  sent {u['sent']}  "
      f"sends/s {u['sends_per_s']}  end-to-end/s {u['end_to_end_per_s']}  "
      f"completed {u['completed']}")
print(f"dispatcher peak RSS {d['peak_rss_mb']} MB (bench process: engine, HTTP callbacks, store)")
PY
echo "carrier-sim peak RSS $(awk '/VmHWM/ {printf "%.1f MB", $2/1024}' /proc/$sim/status) (its backlog of receipts not yet taken)"
