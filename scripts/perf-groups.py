#!/usr/bin/env python3
"""Where a thread's CPU goes, by library: a `perf record` profile's samples
of one thread (by name), each put in the first group its symbol matches,
scaled to the µs a notice that thread cost in the same run.

    perf record -e cpu-clock -F 4999 -o F target/release/pedulicovid-bench \
        --database-url … --messages 100000 --rate 0 --simulator external --json
    scripts/perf-groups.py F pc-disp 65.0 pc-http 49.4

(the µs from the bench's `cpu_us_per_message`: `dispatcher` for `pc-disp`,
`server` for `pc-http`; `http-floor`'s threads are `fl-client` and
`fl-server`). Prints a Markdown table, one column a thread.
"""
import re
import subprocess
import sys

GROUPS = [
    ("kernel", r"^\[k\]"),
    ("URL parsing and encoding", r"url::|form_urlencoded|percent_encoding|idna::|QueryPartIter"),
    ("hyper, reqwest, http", r"http::uri|http::header|PathAndQuery|HeaderValue|HeaderName|reqwest::|hyper::|hyper_util::|httparse|hyper_rustls"),
    ("axum, tower, tower-http", r"axum|tower|matchit"),
    ("sqlx", r"sqlx"),
    ("tera", r"tera::"),
    ("our code (pedulicovid::)", r"pedulicovid::"),
    ("tokio, futures", r"tokio::|mio::|futures_util|futures_core|futures_channel"),
    ("allocator, memcpy", r"mi_|_mi_|malloc|free|memmove|memcpy|memset|memcmp|RawVec|alloc::"),
]
REST = "the rest (std, bytes, tracing, libc, SHA-256)"


def group(symbol):
    for name, pattern in GROUPS:
        if re.search(pattern, symbol):
            return name
    return REST


def shares(data, thread):
    report = subprocess.run(
        ["perf", "report", "-i", data, "--sort", "comm,sym", "--stdio"],
        capture_output=True, text=True, check=True,
    ).stdout
    out, total = {}, 0.0
    for line in report.splitlines():
        m = re.match(r"\s*([\d.]+)%\s+(\S+)\s+(.*)$", line)
        if not m or m.group(2) != thread:
            continue
        share = float(m.group(1))
        total += share
        g = group(m.group(3))
        out[g] = out.get(g, 0.0) + share
    return {g: v / total for g, v in out.items()} if total else {}


def main():
    data, args = sys.argv[1], sys.argv[2:]
    if not args or len(args) % 2:
        sys.exit(__doc__)
    columns = [(args[i], float(args[i + 1])) for i in range(0, len(args), 2)]
    found = [shares(data, thread) for thread, _ in columns]
    print("| group | " + " | ".join(t for t, _ in columns) + " |")
    print("|---" * (len(columns) + 1) + "|")
    for name in [g for g, _ in GROUPS] + [REST]:
        cells = [f"{s.get(name, 0.0) * us:.1f}" for s, (_, us) in zip(found, columns)]
        print(f"| {name} | " + " | ".join(cells) + " |")
    print("| total | " + " | ".join(f"{us:.1f}" for _, us in columns) + " |")


if __name__ == "__main__":
    main()
