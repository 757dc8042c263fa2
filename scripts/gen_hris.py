#!/usr/bin/env python3
"""Write a synthetic HR export of N employees to stdout: CSV (default), JSON or NDJSON.

    python3 scripts/gen_hris.py 1000000 > day1.csv
    python3 scripts/gen_hris.py 1000000 --change 1 --drop 0.5 > day2.csv

The output depends only on the arguments: the same N and --seed give the same bytes, so
benchmark files can be cached and their figures compared between sessions. A day-2 file
(same N and seed, with --change and/or --drop) is the day-1 file in which the chosen rows
have a new department and job title, or are left out (leavers); every other row is
byte-for-byte the same.

What a reader meets, as in a real HRIS export: the twelve columns of mappings/demo.toml,
every CSV field quoted and CRLF line ends, commas and apostrophes inside fields, accented
names (UTF-8), mixed-case emails, about 3% inactive people, and a manager column in which
each person reports to someone listed before them (chosen at random, so chains are long;
the first person reports to no one). Every row is valid under mappings/demo.toml.
"""
import argparse
import csv
import json
import random
import sys
import unicodedata

HEADER = ["Personnel Number", "First Name", "Last Name", "Email", "Language", "Active",
          "Department", "Job Title", "Manager ID", "Location", "Hire Date", "Cost Center"]

# Name pools: accents (two-byte UTF-8), a comma and apostrophes inside quoted fields.
GIVEN = ["Amélie", "Thomas", "Zoé", "Yusuf", "Lucía", "Bartłomiej", "Renée", "Bjørn", "Aditi", "Joaquín",
         "Sarah", "Haruto", "Chidi", "Grégoire", "Dóra", "Ethan", "Naïma", "Oscar", "Minh", "Inès"]
FAMILY = ["Lefèvre", "Martin", "O'Connor", "Fernández", "Schäfer", "Nowak", "Davis, Jr.", "Yamamoto",
          "Adeyemi", "D'Almeida", "Johansson", "Bianchi", "Weber", "Costa", "Petrova", "Taylor", "Mansour",
          "Suzuki", "Ahmed", "Moreau"]
DEPARTMENTS = ["Engineering", "Sales", "Customer Success", "R&D", "Finance", "Support", "Legal", "Operations"]
TITLES = ["Engineer", "Staff Engineer", "Sales Lead", "Director, Sales", "HR Partner", "Analyst", "Head of Ops",
          "Designer"]
LANGUAGES = ["en", "fr", "de", "es", "it", "pt", "pl", "ja"]
LOCATIONS = ["Lyon", "Chicago", "München", "Bogotá", "Osaka", "Nairobi", "Gdańsk", "Québec"]
INACTIVE_SHARE = 0.03
FIRST_NUMBER = 100000


def ascii_letters(name):
    """The ASCII letters and digits of a name once accents are split off: "Zoé" -> "Zoe"."""
    return "".join(c for c in unicodedata.normalize("NFKD", name) if c.isascii() and c.isalnum())


# An email's local part is built from these; an empty one would make "..", which the RFC
# 5322 check refuses, and the row would become invalid.
assert all(ascii_letters(n) for n in GIVEN + FAMILY)


def personnel_number(index):
    return f"E{FIRST_NUMBER + index:07d}"


def employee(rng, index):
    """Row `index` of the day-1 file, drawn from `rng` (the one stream of day-1 rows)."""
    given, family = rng.choice(GIVEN), rng.choice(FAMILY)
    email = f"{ascii_letters(given)}.{ascii_letters(family)}.{index}@Example.COM"
    language = rng.choice(LANGUAGES)
    active = "No" if rng.random() < INACTIVE_SHARE else "Yes"
    department, title = rng.choice(DEPARTMENTS), rng.choice(TITLES)
    manager = personnel_number(rng.randrange(index)) if index else ""
    location = rng.choice(LOCATIONS)
    hired = f"{rng.randint(2000, 2025)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
    cost_center = f"CC-{rng.randint(100, 998)}"
    return [personnel_number(index), given, family, email, language, active, department, title, manager,
            location, hired, cost_center]


def rows(n, seed, change, drop):
    """The N rows, less the leavers; `change` and `drop` are percentages of N.

    Which rows change or leave comes from a second stream, so that day 1 and day 2 draw
    the same people from the first one."""
    people = random.Random(seed)
    day2 = random.Random(f"day2:{seed}")
    for index in range(n):
        row = employee(people, index)
        roll = day2.random() * 100
        if roll < drop:
            continue
        if roll < drop + change:
            # A real change: another department (and a title drawn again).
            row[6] = day2.choice([d for d in DEPARTMENTS if d != row[6]])
            row[7] = day2.choice(TITLES)
        yield row


def write(out, fmt, records):
    if fmt == "csv":
        w = csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="\r\n")
        w.writerow(HEADER)
        w.writerows(records)
    elif fmt == "ndjson":
        for r in records:
            out.write(json.dumps(dict(zip(HEADER, r)), ensure_ascii=False) + "\n")
    else:
        # One object whose "employees" array holds the rows (the JSON pointer /employees).
        out.write('{"employees": [')
        for k, r in enumerate(records):
            if k:
                out.write(",")
            out.write(json.dumps(dict(zip(HEADER, r)), ensure_ascii=False))
        out.write("]}\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("rows", type=int, help="number of employees (before --drop)")
    ap.add_argument("--format", choices=["csv", "json", "ndjson"], default="csv")
    ap.add_argument("--seed", type=int, default=7, help="the same seed gives the same file (default 7)")
    ap.add_argument("--change", type=float, default=0.0, help="percent of rows whose department and title change")
    ap.add_argument("--drop", type=float, default=0.0, help="percent of rows left out (leavers)")
    a = ap.parse_args()
    if a.rows < 0 or a.change < 0 or a.drop < 0 or a.change + a.drop > 100:
        ap.error("rows, --change and --drop must be >= 0, and --change + --drop <= 100")
    out = sys.stdout
    if hasattr(out, "reconfigure"):
        out.reconfigure(encoding="utf-8")  # accents whatever the locale says
    try:
        write(out, a.format, rows(a.rows, a.seed, a.change, a.drop))
        out.flush()
    except BrokenPipeError:
        # `| head` closed the pipe: not an error of ours.
        sys.stderr.close()


if __name__ == "__main__":
    main()
