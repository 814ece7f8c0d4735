"""build_report: load -> analyse -> sections -> report.html (Jinja2) and report.md.

The page is one self-contained file: CSS inline, figures as data: URIs, no script and no
remote asset, so it renders offline and can be attached to a CI run as is. The header's
verdict is red when a check failed or errored, or when the selftest fell short (then a
pass of the matrix is worth less than it claims).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jinja2

from harness import __version__
from harness.report import analysis, sections, sections_timing, tables
from harness.report.load import Loaded, load
from harness.report.peaks import Peak, load_peaks
from harness.report.tables_selftest import shortfall_verdict
from harness.results import atomic_write
from harness.runfiles import REPORT_FILES


def build_report(result_dirs: Sequence[Path], out_dir: Path, *, baseline: str = "numpy",
                 asv_results: Path | None = None,
                 peaks: Path | None = None) -> tuple[Path, Path]:
    """Write out_dir/report.html and out_dir/report.md; return their paths.

    result_dirs: verify output folders (verify.csv, run.json, and selftest.csv and
    selftest_fd.csv where the selftest ran into them) or selftest-only folders.
    asv_results: asv's results folder or one result file (default: asv.conf.json's
    results_dir, else results/).
    peaks: the peak table (default: configs/peaks.yaml). Raises ReportInputError for a
    missing folder or a corrupt or foreign file; missing data only empties a section.
    """
    data = load([Path(p) for p in result_dirs], asv_results)
    peak_table = load_peaks(peaks)
    shown = build_sections(data, baseline, peak_table)
    context = _context(data, shown, baseline, [str(p) for p in result_dirs])
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("harness.report", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"], default=True),
        undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
    )
    md_env = jinja2.Environment(
        loader=jinja2.PackageLoader("harness.report", "templates"), autoescape=False,
        undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    md_env.filters["md_table"] = tables.markdown
    md_env.filters["md"] = tables.md_text  # every value in report.md.j2 goes through one
    md_env.filters["html"] = tables.html_text
    out_dir.mkdir(parents=True, exist_ok=True)
    html_path, md_path = (out_dir / name for name in REPORT_FILES)
    atomic_write(html_path, env.get_template("report.html.j2").render(**context))
    atomic_write(md_path, md_env.get_template("report.md.j2").render(**context))
    return html_path, md_path


def verdict(data: Loaded) -> tuple[str, bool]:
    """The header's one line, and whether it is bad: a failed or errored check, or a
    selftest that fell short (a required planted bug not always caught, a false alarm,
    the reference off finite differences)."""
    v = data.table[data.table["source"] == "verify"]
    counts = v["status"].value_counts()
    n_fail, n_error = int(counts.get("fail", 0)), int(counts.get("error", 0))
    if not len(v):
        line = "no correctness results"
    elif n_fail or n_error:
        line = f"{n_fail} failed and {n_error} errored checks"
    else:
        line = "every compared output and gradient is within its bound"
    short = shortfall_verdict(data.selftests)
    if short:
        line = f"{line}; {short}"
    return line, bool(n_fail or n_error or short)


def _context(data: Loaded, shown: list[sections.Section], baseline: str,
             inputs: list[str]) -> dict[str, Any]:
    v = data.table[data.table["source"] == "verify"]
    counts = v["status"].value_counts()
    c = {s: int(counts.get(s, 0)) for s in ("pass", "fail", "skip", "error")}
    n_time = int(((data.table["source"] == "asv") & (data.table["kind"] == "time")
                  & (data.table["status"] == "pass")).sum())
    line, bad = verdict(data)
    return {
        "sections": shown, "counts": c, "verdict": line, "n_timings": n_time,
        "bad": bad, "baseline": baseline,
        "inputs": inputs or ["(none)"], "asv_source": data.asv_source, "notes": data.notes,
        "machines": list(data.machines), "version": __version__,
        "generated": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "frameworks": analysis.frameworks(data.table) if len(data.table) else [],
    }


def build_sections(data: Loaded, baseline: str, peaks: list[Peak]) -> list[sections.Section]:
    every = analysis.timings(data.table)  # every release, environment and commit
    t = analysis.latest(every)  # the newest measurement per cell, for the per-dtype sections
    corr = analysis.correctness(data.table)
    machines = list(data.machines)
    timed = t[t["status"] == "pass"]
    no_timings = (f"No asv timings were found in {data.asv_source}. Run the benchmark suite "
                  "(asv run; see README) on each machine, then build the report again."
                  if t.empty else
                  "asv recorded no successful timing: every benchmark failed or was n/a "
                  "(see asv's output)." if timed.empty else "")
    return [
        sections.system_section(data),
        sections.correctness_section(data, corr, machines),
        sections.selftest_section(data),
        sections_timing.timing_section(t, no_timings),
        sections_timing.releases_section(every, data.table),
        sections_timing.speedup_section(t, baseline, machines, no_timings),
        sections_timing.gflops_section(t, no_timings),
        sections_timing.peak_section(t, data.machines, peaks, machines, no_timings),
        sections_timing.accuracy_section(data.table, corr, t, no_timings),
    ]

