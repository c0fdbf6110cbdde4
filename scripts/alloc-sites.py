#!/usr/bin/env python3
"""Where a thread allocates: the stacks of a `perf` probe on the allocator,
each folded to its first frames outside the allocator and `alloc`'s own
plumbing, counted, most frequent first.

    perf probe -x target/release/pedulicovid-bench -a mi_malloc_aligned
    perf record -e probe_pedulicovid:mi_malloc_aligned --call-graph dwarf,16384 -o F \
        target/release/pedulicovid-bench --database-url … --messages 3000 --rate 0 \
        --simulator external --json
    perf script -i F -F comm,ip,sym --no-inline > F.txt
    scripts/alloc-sites.py F.txt pc-http [DEPTH] [NOTICES]
    perf probe -d 'probe_pedulicovid:*'

(`pc-disp` is the dispatcher's thread, `pc-http` the server's). DEPTH is
how many frames name a site (2). With NOTICES (the run's `--messages`),
the counts are also given per notice: a lower bound, since a DWARF stack
per allocation is a lot of data and perf drops samples under load (its
"lost" line says how many); the relative counts are what to read.
"""
import collections
import re
import sys

# Frames that only move an allocation along: the allocator, `alloc`'s
# growth and conversion helpers, hashbrown's table allocation.
PLUMBING = re.compile(
    r"mi_malloc|mi_theap|__rust_alloc|__rustc::|alloc::raw_vec|alloc::alloc|RawVec|"
    r"exchange_malloc|alloc::boxed::Box<T>::new|<alloc::vec::Vec|Vec<T>::push|"
    r"alloc::vec::Vec<T,A>::with_capacity|alloc::string::String::with_capacity|"
    r"<alloc::string::String as core::clone::Clone>|alloc::sync::Arc<T>::new|"
    r"alloc::str::<impl str>::to_owned|<T as alloc::borrow::ToOwned>|"
    r"<alloc::string::String as core::convert::From|alloc::slice::|"
    r"hashbrown::raw::RawTableInner::fallible_with_capacity|"
    r"hashbrown::raw::RawTable<T,A>::reserve_rehash|SpecFromIter|finish_grow|"
    r"do_reserve_and_handle|grow_one"
)


def stacks(path):
    """(thread name, [frame symbols, innermost first]) of each sample."""
    comm, frames = None, []
    with open(path, errors="replace") as f:
        for line in f:
            if line.startswith("\t"):
                parts = line.strip().split(None, 1)
                if len(parts) == 2:
                    frames.append(parts[1])
            elif line.strip():
                if comm is not None:
                    yield comm, frames
                comm, frames = line.split()[0], []
    if comm is not None:
        yield comm, frames


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    path, thread = sys.argv[1], sys.argv[2]
    depth = int(sys.argv[3]) if len(sys.argv) > 3 else 2
    notices = int(sys.argv[4]) if len(sys.argv) > 4 else 0
    sites = collections.Counter()
    for comm, frames in stacks(path):
        if comm == thread and frames:
            own = [f[:120] for f in frames if not PLUMBING.search(f)]
            sites[" <- ".join(own[:depth])] += 1
    total = sum(sites.values())
    print(f"{thread}: {total} allocations sampled")
    for site, n in sites.most_common(40):
        per = f"{n / notices:8.2f}" if notices else ""
        print(f"{n:7} {per} {site}")


if __name__ == "__main__":
    main()
