#!/usr/bin/env python3
"""Writes a synthetic N-row registry CSV for `pedulicovid import`.

    python3 scripts/gen-registry.py 1000000 > /tmp/registry-1m.csv
    python3 scripts/gen-registry.py 100000 --bad 0.01 --seed 7 -o /tmp/r.csv

Every row is made up: names are drawn from a short list, NIKs are unique and
structurally valid (src/domain/nik.rs: known province, regency and district
not 00, a real birth date DDMMYY with 40 added to the day for women, serial
not 0000) and phones are Indonesian mobile numbers on known prefixes
(src/domain/msisdn.rs). A share of rows (--bad, default 1%) is deliberately
wrong, one fault per row, so the import's rejection path is exercised:
a NIK one digit short, a landline phone, a second row with an earlier NIK,
a yes/no field that is neither, a regency outside its province. The output
is the same for the same N, --bad and --seed.

It prints the counts of good and bad rows to stderr, never a row.
"""

import argparse
import random
import sys

COLUMNS = (
    "nik,full_name,phone,profession,facility_code,"
    "regency_code,province_code,validated,eligible"
)
PROVINCES = [
    11, 12, 13, 14, 15, 16, 17, 18, 19, 21, 31, 32, 33, 34, 35, 36, 51, 52,
    53, 61, 62, 63, 64, 65, 71, 72, 73, 74, 75, 76, 81, 82, 91, 92, 93, 94,
    95, 96,
]
# Mobile prefixes of every operator in DOMAIN.md's table.
PREFIXES = [
    "0811", "0812", "0813", "0821", "0822", "0852", "0814", "0815", "0856",
    "0857", "0895", "0896", "0817", "0818", "0859", "0877", "0831", "0838",
    "0881", "0882", "0888",
]
PROFESSIONS = [
    "dokter", "dokter gigi", "perawat", "bidan", "apoteker", "ahli gizi",
    "sanitarian", "analis kesehatan", "fisioterapis", "radiografer",
    "epidemiolog", "promkes", "tenaga teknis kefarmasian",
]
FIRST = [
    "Siti", "Dewi", "Putri", "Ayu", "Rina", "Wahyu", "Agus", "Budi", "Eko",
    "Made", "Ketut", "Nur", "Sri", "Andi", "Yohanes", "Maria", "Fitri",
]
LAST = [
    "Rahayu", "Lestari", "Susanto", "Hidayat", "Saputra", "Wijaya",
    "Nugroho", "Siregar", "Pratama", "Kurniawan", "Sari", "Wulandari",
]
# --varied-names: a first name (some accented, as a registry holds them),
# a family name built from syllables (~14,000 of them) and a last name, so a
# name search meets a realistic spread, from rare to very common fragments.
VARIED_FIRST = FIRST + [
    "Ahmad", "Muhammad", "Nurul", "Dian", "Indah", "Ratna", "Yuni", "Hendra",
    "Joko", "Bambang", "Slamet", "Wayan", "Nyoman", "Gusti", "Théresia",
    "José", "Chandra", "Fransiskus", "Agnès", "Yosef", "Ranti", "Lukas",
]
SYLLABLES = [
    "ka", "ma", "la", "sa", "ri", "ni", "to", "wi", "da", "ya", "su", "ha",
    "go", "pu", "te", "na", "ra", "bu", "di", "jo", "ke", "lu", "me", "se",
]
FAULTS = ["nik_short", "landline", "duplicate", "boolean", "regency"]
SERIALS = 9999  # 0001..9999
DISTRICTS = 99  # 01..99
REGENCIES = 30  # 01..30 per province


def nik_parts(i, rng):
    """The i-th unique NIK: (province, regency, nik). Serial, district and
    regency are a mixed-radix spelling of i (unique up to 9999*99*30, ~29.7
    million rows; further blocks move to regencies 31-60 and 61-90); the
    province only rotates with the serial, which keeps them unique, and the
    birth date is random."""
    serial = i % SERIALS + 1
    i //= SERIALS
    district = i % DISTRICTS + 1
    i //= DISTRICTS
    regency = i % REGENCIES + 1 + REGENCIES * (i // REGENCIES)
    if regency > 90:
        raise SystemExit("gen-registry: too many rows for unique NIKs")
    prov = PROVINCES[serial % len(PROVINCES)]
    month = rng.randint(1, 12)
    day = rng.randint(1, 28)
    if rng.random() < 0.6:
        day += 40  # women: most health workers are nurses and midwives
    year = rng.randint(60, 99) if rng.random() < 0.8 else rng.randint(0, 3)
    nik = f"{prov:02}{regency:02}{district:02}{day:02}{month:02}{year:02}{serial:04}"
    return prov, regency, nik


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("rows", type=int, help="data rows to write (header excluded)")
    ap.add_argument("--bad", type=float, default=0.01, help="share of bad rows (0-1)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument(
        "--varied-names",
        action="store_true",
        help="first + syllable-built family + last name (for search benchmarks); "
        "the other columns are the same as without it",
    )
    ap.add_argument("-o", "--output", help="file to write (default: stdout)")
    a = ap.parse_args()
    rng = random.Random(a.seed)
    # Its own generator, so the other columns do not change with the flag.
    name_rng = random.Random(a.seed + 1)
    out = open(a.output, "w", newline="") if a.output else sys.stdout
    out.write(COLUMNS + "\n")
    recent = []  # a few earlier good NIKs to duplicate
    good = bad = 0
    buf = []
    for n in range(a.rows):
        prov, reg, nik = nik_parts(n, rng)
        phone = rng.choice(PREFIXES) + f"{rng.randrange(10**8):08}"
        if rng.random() < 0.3:
            phone = f"{phone[:4]}-{phone[4:8]}-{phone[8:]}"
        name = f"{rng.choice(FIRST)} {rng.choice(LAST)}"
        if a.varied_names:
            family = "".join(
                name_rng.choice(SYLLABLES) for _ in range(name_rng.choice((2, 3)))
            ).capitalize()
            name = (
                f"{name_rng.choice(VARIED_FIRST)} {family} {name_rng.choice(LAST)}"
            )
        prof = rng.choice(PROFESSIONS)
        regency_code = f"{prov:02}{reg:02}"
        facility = f"P{regency_code}{rng.randrange(1000):03}"
        validated = "true" if rng.random() < 0.97 else "false"
        eligible = "ya" if rng.random() < 0.95 else "tidak"
        fault = rng.choice(FAULTS) if rng.random() < a.bad else None
        if fault == "duplicate" and not recent:
            fault = "nik_short"
        if fault == "nik_short":
            nik = nik[:15]
        elif fault == "landline":
            phone = f"021-{rng.randrange(10**7):07}"
        elif fault == "duplicate":
            nik = rng.choice(recent)
        elif fault == "boolean":
            validated = "mungkin"
        elif fault == "regency":
            other = PROVINCES[(PROVINCES.index(prov) + 1) % len(PROVINCES)]
            regency_code = f"{other:02}{reg:02}"
        if fault:
            bad += 1
        else:
            good += 1
            if len(recent) < 1000:
                recent.append(nik)
            elif rng.random() < 0.01:
                recent[rng.randrange(1000)] = nik
        buf.append(
            f"{nik},{name},{phone},{prof},{facility},{regency_code},{prov:02},"
            f"{validated},{eligible}\n"
        )
        if len(buf) >= 10000:
            out.write("".join(buf))
            buf.clear()
    out.write("".join(buf))
    if out is not sys.stdout:
        out.close()
    print(f"gen-registry: {a.rows} rows, {good} good, {bad} bad", file=sys.stderr)


if __name__ == "__main__":
    main()
