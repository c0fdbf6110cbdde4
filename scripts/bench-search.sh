#!/usr/bin/env bash
# Support search latency on a large registry, through the CLI, on SQLite
# and PostgreSQL (BENCHMARKS.md, "Support search").
#
#   scripts/bench-search.sh [BINARY...]
#
# For each BINARY (default: target/release/pedulicovid) and each database:
# a fresh database, `migrate`, `import` of a synthetic registry of ROWS
# workers (scripts/gen-registry.py --varied-names, generated once and kept in
# WORKDIR), then every query of QUERIES run RUNS times with
# `pedulicovid support search QUERY --json`, timing the whole command. The
# NIK query is the baseline: an exact index look-up, so its time is the
# command's own cost (process start, connecting, checking migrations).
#
# Give two binaries (before and after a change) to compare them on the same
# data and machine; each imports into its own fresh database, so each is
# measured with its own migrations.
#
# Environment: ROWS (default 1500000), RUNS (default 7), WORKDIR (default
# /tmp/pedulicovid-search-bench), PG_ADMIN (default
# postgres://postgres@127.0.0.1:5432/postgres), BACKENDS (default
# "sqlite postgres"), KEEP=1 to keep the databases afterwards.
#
# Prints one line per (binary, backend, query): median and max wall time in
# ms over RUNS, and the number of results (or the error). Names, NIKs and
# phone numbers never appear in the output: the CLI masks them, and this
# script prints only counts and times.
set -euo pipefail

ROWS=${ROWS:-1500000}
RUNS=${RUNS:-7}
WORKDIR=${WORKDIR:-/tmp/pedulicovid-search-bench}
PG_ADMIN=${PG_ADMIN:-postgres://postgres@127.0.0.1:5432/postgres}
BACKENDS=${BACKENDS:-sqlite postgres}
here=$(cd "$(dirname "$0")/.." && pwd)
bins=("$@")
[ ${#bins[@]} -gt 0 ] || bins=("$here/target/release/pedulicovid")

mkdir -p "$WORKDIR"
chmod 700 "$WORKDIR"
csv="$WORKDIR/registry-$ROWS.csv"
if [ ! -s "$csv" ]; then
    python3 "$here/scripts/gen-registry.py" "$ROWS" --bad 0 --seed 2021 --varied-names -o "$csv"
fi
# A (synthetic) NIK from the file for the baseline query: an argument, not
# `-` on stdin, which binaries before the privacy changes do not read.
nik=$(sed -n 2p "$csv" | cut -d, -f1)

# name | query. Fragments of the generated names, from rare to very common:
# a first and family name together, a family name, a first name (~1 in 39
# rows), a last name (~1 in 12), a three-letter fragment in a large share of
# all names, an accented first name typed without its accent, and nothing.
QUERIES=(
    "nik (baseline)|NIK"
    "first+family (rare)|joko yasa"
    "family name|nisada"
    "first name (~2.5%)|siti"
    "last name (~8%)|rahayu"
    "3 letters, very common|ari"
    "accent-free|jose"
    "no match|xqzv"
)

ms_now() { date +%s%N | cut -c1-13; }

run_query() { # bin url query -> "ms count-or-error"
    local bin=$1 url=$2 q=$3 t0 t1 out rc=0
    t0=$(ms_now)
    [ "$q" = NIK ] && q=$nik
    # Logs (stderr) kept apart: stdout is the JSON answer.
    out=$("$bin" --database-url "$url" support search "$q" --json 2>"$WORKDIR/stderr") || rc=$?
    t1=$(ms_now)
    if [ $rc -eq 0 ]; then
        echo "$((t1 - t0)) $(printf '%s' "$out" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["results"]))')"
    else
        echo "$((t1 - t0)) error:$(tail -1 "$WORKDIR/stderr" | tr ' ' '_' | cut -c1-60)"
    fi
}

printf '%-14s %-9s %-24s %8s %8s %s\n' binary backend query median_ms max_ms results
for bin in "${bins[@]}"; do
    label=$(basename "$bin")
    for backend in $BACKENDS; do
        case $backend in
        sqlite)
            db="$WORKDIR/bench-$label.db"
            rm -f "$db" "$db-wal" "$db-shm"
            url="sqlite://$db"
            ;;
        postgres)
            name="pcv_search_bench_$(echo "$label" | tr -c 'a-zA-Z0-9\n' _)"
            psql "$PG_ADMIN" -qc "DROP DATABASE IF EXISTS $name WITH (FORCE)" -c "CREATE DATABASE $name" >/dev/null
            url="${PG_ADMIN%/*}/$name"
            ;;
        esac
        "$bin" --database-url "$url" migrate >/dev/null
        t0=$(ms_now)
        "$bin" --database-url "$url" import "$csv" --json >/dev/null
        t1=$(ms_now)
        printf '%-14s %-9s %-24s %8s %8s %s\n' "$label" "$backend" "(import $ROWS rows)" "$((t1 - t0))" "-" "-"
        for entry in "${QUERIES[@]}"; do
            what=${entry%%|*}
            q=${entry#*|}
            times=()
            result=
            for _ in $(seq "$RUNS"); do
                read -r ms result < <(run_query "$bin" "$url" "$q")
                times+=("$ms")
            done
            sorted=$(printf '%s\n' "${times[@]}" | sort -n)
            median=$(echo "$sorted" | sed -n "$(((RUNS + 1) / 2))p")
            max=$(echo "$sorted" | tail -1)
            printf '%-14s %-9s %-24s %8s %8s %s\n' "$label" "$backend" "$what" "$median" "$max" "$result"
        done
        if [ "${KEEP:-0}" != 1 ]; then
            case $backend in
            sqlite) rm -f "$db" "$db-wal" "$db-shm" ;;
            postgres) psql "$PG_ADMIN" -qc "DROP DATABASE IF EXISTS $name WITH (FORCE)" >/dev/null ;;
            esac
        fi
    done
done
