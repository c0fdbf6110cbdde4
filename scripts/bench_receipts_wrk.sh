#!/bin/sh
# Receipt ingest driven by wrk instead of the built-in load generator:
# starts `pedulicovid-bench receipts --external`, waits until it listens,
# runs wrk with scripts/receipts_wrk.lua (distinct ids per thread), then
# prints wrk's summary and the bench's JSON report (stored counts, CPU, RSS).
#
#   scripts/bench_receipts_wrk.sh [pedulicovid-bench options, e.g. --database-url URL]
#
# Environment: BIN (default target/release/pedulicovid-bench; build it with
# `cargo build --release -p pedulicovid-bench`), N callbacks
# (100000), C connections (64), T wrk threads (1).
set -eu
BIN=${BIN:-target/release/pedulicovid-bench}
N=${N:-100000}
C=${C:-64}
T=${T:-1}
here=$(cd "$(dirname "$0")" && pwd)
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
"$BIN" "$@" receipts --external --callbacks "$N" --connections "$C" \
  --ready-file "$dir/ready" --json >"$dir/report.json" &
pid=$!
while [ ! -s "$dir/ready" ]; do
  if ! kill -0 "$pid" 2>/dev/null; then
    wait "$pid" || true
    echo "bench receipts ended before it was ready" >&2
    exit 1
  fi
  sleep 0.2
done
# URL, PATHS_FILE (one signed callback path per message), COUNT
. "$dir/ready"
# wrk's own Requests/sec divides by its run time, which lasts until -d or
# SIGINT: stop it as soon as the bench has seen every callback taken. The
# bench's callbacks_per_s (first to last receipt taken) is the figure.
wrk -t"$T" -c"$C" -d600s --latency -s "$here/receipts_wrk.lua" "$URL" \
  -- "$PATHS_FILE" "$T" &
wrk_pid=$!
status=0
wait "$pid" || status=$?
kill -INT "$wrk_pid" 2>/dev/null || true
wait "$wrk_pid" || true
cat "$dir/report.json"
exit "$status"
