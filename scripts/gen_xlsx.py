#!/usr/bin/env python3
"""Writes an N-row xlsx with scripts/gen_hris.py's columns (openpyxl write_only mode, streaming), for
the parse benchmark: python3 scripts/gen_xlsx.py 300000 OUT.xlsx (needs openpyxl)."""
import datetime, os, sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # scripts/gen_hris.py
import gen_hris  # noqa: E402
from openpyxl import Workbook  # noqa: E402

n, out = int(sys.argv[1]), sys.argv[2]
wb = Workbook(write_only=True)
ws = wb.create_sheet("Employees")
ws.append(gen_hris.HEADER)
for r in gen_hris.rows(n, 7, 0.0, 0.0):
    # Hire dates as real date cells, as HR systems write them.
    r[10] = datetime.date.fromisoformat(r[10])
    ws.append(r)
wb.save(out)
