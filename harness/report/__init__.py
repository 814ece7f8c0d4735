"""Comparison reports: verify.csv + run.json + selftest.csv + asv results -> report.html
and report.md.

load.py reads every input into one long-form table (schema.py its columns; load_asv.py
asv's results, load_selftest.py the selftest's files beside verify's); analysis.py
computes what is shown; tables.py (tables_selftest.py, tables_timing.py) and figures.py
present it; sections.py and sections_timing.py make the page's sections; render.py writes
both files through the Jinja2 templates in templates/. Importing `harness` or
`harness.cli` does not import this package (it pulls in pandas and matplotlib): the CLI
imports it when `report` runs.
"""

from __future__ import annotations

from harness.report.render import build_report
from harness.report.schema import ReportInputError

__all__ = ["ReportInputError", "build_report"]
