#!/usr/bin/env bash
# Measures `pedulicovid import` of a synthetic N-row registry: wall time and
# peak RSS (/usr/bin/time -v), plus VmRSS sampled every second, so one can
# see whether memory stays flat while the file is read.
#
#   bash scripts/import-bound.sh sqlite 1000000
#   bash scripts/import-bound.sh postgres 100000
#
# Uses target/release/pedulicovid (PEDULICOVID_BIN overrides; build it with
# `cargo build --release`). The CSV comes from scripts/gen-registry.py (1 %
# bad rows) and is cached in $OUT (default /tmp/pedulicovid-import-bound).
# SQLite: a fresh file in $OUT. PostgreSQL: a throwaway database
# pc_import_bench on 127.0.0.1:5432 (user postgres), created and dropped
# here. Prints one summary line; the RSS samples stay in $OUT/rss-*.txt.
# Nothing here prints a row of the file.
set -euo pipefail
cd "$(dirname "$0")/.."

kind="${1:?usage: import-bound.sh sqlite|postgres ROWS}"
rows="${2:?usage: import-bound.sh sqlite|postgres ROWS}"
bin="${PEDULICOVID_BIN:-target/release/pedulicovid}"
out="${OUT:-/tmp/pedulicovid-import-bound}"
mkdir -p "$out"
[ -x "$bin" ] || { echo "no $bin: run cargo build --release" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "needs /usr/bin/time (apt-get install time)" >&2; exit 1; }

csv="$out/registry-$rows.csv"
[ -s "$csv" ] || python3 scripts/gen-registry.py "$rows" -o "$csv"

case "$kind" in
sqlite)
    rm -f "$out/bench.db" "$out/bench.db-wal" "$out/bench.db-shm"
    url="sqlite://$out/bench.db?mode=rwc"
    ;;
postgres)
    pg="-h 127.0.0.1 -p 5432 -U postgres"
    dropdb $pg --if-exists pc_import_bench
    createdb $pg pc_import_bench
    trap 'dropdb -h 127.0.0.1 -p 5432 -U postgres --if-exists pc_import_bench' EXIT
    url="postgres://postgres@127.0.0.1:5432/pc_import_bench"
    ;;
*) echo "kind: sqlite or postgres" >&2; exit 2 ;;
esac

tag="$kind-$rows"
rss="$out/rss-$tag.txt"
/usr/bin/time -v -o "$out/time-$tag.txt" \
    "$bin" import "$csv" --database-url "$url" --rejects "$out/rejects-$tag.csv" \
    >"$out/stdout-$tag.txt" &
timer=$!
# VmRSS of the pedulicovid process (the child of `time`), once a second.
: >"$rss"
t=0
while kill -0 "$timer" 2>/dev/null; do
    child="$(pgrep -P "$timer" || true)"
    if [ -n "$child" ] && [ -r "/proc/$child/status" ]; then
        kb="$(awk '/^VmRSS:/ {print $2}' "/proc/$child/status" 2>/dev/null || true)"
        [ -n "$kb" ] && echo "$t $kb" >>"$rss"
    fi
    sleep 1
    t=$((t + 1))
done
status=0
wait "$timer" || status=$?
# Exit 3: finished with rejected rows (the generated file has 1 % bad rows).
[ "$status" -eq 0 ] || [ "$status" -eq 3 ] || exit "$status"

wall="$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$out/time-$tag.txt")"
peak="$(awk -F': ' '/Maximum resident set size/ {print $2}' "$out/time-$tag.txt")"
summary="$(head -n 1 "$out/stdout-$tag.txt")"
samples="$(awk 'NR==1{min=$2} {if($2<min)min=$2; if($2>max)max=$2; n++; v[n]=$2}
    END {if (n) printf "%d samples, VmRSS min %d kB, max %d kB, at 25%% %d kB, 50%% %d kB, 75%% %d kB",
         n, min, max, v[int(n*0.25)+1], v[int(n*0.5)+1], v[int(n*0.75)+1]}' "$rss")"
echo "$tag: wall $wall, peak RSS ${peak} kB; $samples; $summary"
