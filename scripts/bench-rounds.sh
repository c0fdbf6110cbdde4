#!/bin/bash
# Rounds of several benchmark builds, alternating (PostgreSQL, unlimited
# rate, the in-process simulator), each round in an order rotated by one
# build, one line per run: each build's
# dispatcher + server CPU µs a notice ("ours"), ours ÷ the simulator's,
# PostgreSQL's µs, sends/s and the load at its start. A label starting with
# `floor` runs that binary's `http-floor` instead (the two HTTP exchanges
# alone). How the issue-13 passes compare a build with the issue's
# "before" and with the floor in one session:
#
#   scripts/bench-rounds.sh TAG ROUNDS LABEL=BINARY… [-- bench options…]
#   scripts/bench-rounds.sh s13 5 a95=/tmp/a95-target/release/pedulicovid-bench \
#       head=/work/ab/head/pedulicovid-bench new=target/release/pedulicovid-bench \
#       floor=target/release/pedulicovid-bench
#
# The label `a95` is the issue's "before" (`a95f5a6`), whose simulator kept
# 256 callbacks in flight: it runs with Kannel's 512 as every later build.
# At the end, the set's summary: each build's means and their change
# against the first build (see below). Each run's JSON stays in
# ${TMPDIR:-/tmp}/rounds/TAG-LABEL-ROUND.json; PG (default the local
# server) is the database.
set -u
# Every build runs at one log filter, the product's own default (`serve`
# and `worker` log at INFO unless told otherwise; the benchmark binary's
# default is WARN): RUST_LOG=warn … to measure without it.
export RUST_LOG=${RUST_LOG:-info}
echo "# RUST_LOG=$RUST_LOG" >&2
TAG=${1:?tag}; ROUNDS=${2:?rounds}; shift 2
BUILDS=()
while [ $# -gt 0 ] && [ "$1" != -- ]; do BUILDS+=("$1"); shift; done
[ "${1:-}" = -- ] && shift
PG=${PG:-postgres://postgres@127.0.0.1:5432/postgres}
DIR="${TMPDIR:-/tmp}/rounds"; mkdir -p "$DIR"
# Each round starts one build further on (round 2 with the second build,
# and so on), so that no build always runs in the same place of a round:
# the run after another build's inherits its database server's clean-up
# and the machine's minute, and a fixed order put that on one build.
N_BUILDS=${#BUILDS[@]}
for i in $(seq 1 "$ROUNDS"); do
  for k in $(seq 0 $((N_BUILDS - 1))); do
    build=${BUILDS[$(( (i - 1 + k) % N_BUILDS ))]}
    label=${build%%=*}; bin=${build#*=}; out="$DIR/$TAG-$label-$i.json"
    case $label in
      floor*) "$bin" http-floor --messages 100000 --json 2>/dev/null | tail -1 > "$out" ;;
      a95) PEDULICOVID__SIMULATOR__CALLBACK_CONCURRENCY=512 "$bin" --database-url "$PG" \
             --messages 100000 --rate 0 --json "$@" 2>/dev/null | tail -1 > "$out" ;;
      *) "$bin" --database-url "$PG" --messages 100000 --rate 0 --json "$@" 2>/dev/null \
             | tail -1 > "$out" ;;
    esac
    python3 - "$label" "$out" "$i" <<'PY'
import json, sys
label, f, i = sys.argv[1], sys.argv[2], sys.argv[3]
r = json.load(open(f))
if label.startswith("floor"):
    c = r["cpu_us_per_message"]
    print(f"{i} {label:6} client {c['client']:5.1f} server {c['server']:5.1f} "
          f"floor {c['floor']:5.1f} | load {r.get('load_avg_at_start')}")
else:
    u = r["unlimited"]; c = u["cpu_us_per_message"]; ours = c["dispatcher"] + c["server"]
    print(f"{i} {label:6} disp {c['dispatcher']:5.1f} srv {c['server']:5.1f} ours {ours:6.1f} "
          f"(÷sim {ours / max(c['simulator'], 1e-9):.3f}) db {c['database']:6.1f} "
          f"sends/s {u['sends_per_s']:.0f} | load {r.get('load_avg_at_start')} "
          f"log {r.get('log_filter', '?')}")
PY
  done
done

# The set's summary: each build's means over the rounds, and against the
# first build that is not a floor (the baseline, `a95` in the issue-13
# sets): the change of the means, each round's change against the
# baseline's run of the same round, their median, and the floor's share of
# half the baseline (the issue's target). `÷sim` is the mean of ours ÷ the
# simulator's CPU: with `-- --simulator external` and the same `carrier-sim`
# beside every binary, the simulator's work is the same program's, and the
# ratio divides out how fast the machine ran each run's minute (for builds
# that use the carrier alike: beside the issue-13 "before", which
# reconnected every few sends, the simulator costs more a message).
python3 - "$DIR" "$TAG" "$ROUNDS" "${BUILDS[@]%%=*}" <<'PY'
import json, statistics as st, sys
d, tag, rounds, labels = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:]
def load(label, i):
    # A run that failed left no JSON, or one without figures: not counted.
    try:
        r = json.load(open(f"{d}/{tag}-{label}-{i}.json"))
        if label.startswith("floor"):
            return (r["cpu_us_per_message"]["floor"], None)
        c = r["unlimited"]["cpu_us_per_message"]
        ours = c["dispatcher"] + c["server"]
        return (ours, c["database"], ours / max(c["simulator"], 1e-9))
    except (OSError, ValueError, KeyError, TypeError):
        return None
runs = {l: [load(l, i) for i in range(1, rounds + 1)] for l in labels}
base = next((l for l in labels if not l.startswith("floor")), None)
pct = lambda new, old: 100 * (new / old - 1)
print(f"# {tag}: means of {rounds} rounds")
for l in labels:
    got = [r for r in runs[l] if r]
    if not got:
        print(f"{l:6} no run")
        continue
    ours = st.mean(r[0] for r in got)
    if l.startswith("floor"):
        line = f"{l:6} floor {ours:6.1f}"
        if base and any(runs[base]):
            target = st.mean(r[0] for r in runs[base] if r) / 2
            line += f" ({100 * ours / target:.0f} % of half of {base})"
        print(line)
        continue
    db = st.mean(r[1] for r in got)
    ratio = st.mean(r[2] for r in got)
    line = f"{l:6} ours {ours:6.1f}  db {db:6.1f}  ÷sim {ratio:.3f}"
    if base and l != base and any(runs[base]):
        b = [r for r in runs[base] if r]
        line += (f"  | against {base}: ours {pct(ours, st.mean(r[0] for r in b)):+.1f} %, "
                 f"db {pct(db, st.mean(r[1] for r in b)):+.1f} %")
        paired = [pct(n[0], o[0]) for n, o in zip(runs[l], runs[base]) if n and o]
        if paired:
            line += (f"; rounds {' '.join(f'{p:+.1f}' for p in paired)}, "
                     f"median {st.median(paired):+.1f} %")
    print(line)
PY
