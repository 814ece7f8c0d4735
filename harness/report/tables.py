"""Tables of the report, one structure for both outputs: HTML cells and Markdown cells.

A `Table` is a header and rows of `Cell`s; the HTML template draws `text` (plus a smaller
`sub` line, a colour class and a tooltip), and `markdown()` writes `md` (or `text`) as a
GitHub-flavoured Markdown table. Numbers are formatted here and nowhere else. The
correctness tables are here too; tables_selftest.py and tables_timing.py build the others
from the same parts.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from harness.report import analysis
from harness.results import printable
from harness.runfiles import QUANTITIES, label

TIMES = "\u00d7"  # the multiplication sign of "2.5x" speedups and "x54" counts
MD_STATUS = {"pass": "✅", "fail": "❌", "skip": "⏭️", "error": "💥"}


@dataclass
class Cell:
    text: str
    css: str = ""  # colour class in the HTML
    title: str = ""  # tooltip in the HTML
    sub: str = ""  # a second, smaller line in the HTML
    md: str | None = None  # the Markdown text (default: text, then sub)
    rowspan: int = 1  # HTML: rows this cell spans; 0 = covered by the cell above
    first: bool = False  # HTML: starts a group of rows (drawn with a rule above)


@dataclass
class Table:
    caption: str
    columns: list[str]
    rows: list[list[Cell]]
    groups: list[tuple[str, int]] = field(default_factory=list)  # HTML header row above
    md_columns: list[str] | None = None
    details: bool = False  # Markdown: fold it in <details> (long tables)
    title: str = ""  # a heading above it (the machine, when there are several)
    foot: list[str] = field(default_factory=list)  # lines of text below it


# --- numbers ---------------------------------------------------------------------------


def sig(v: float, digits: int = 3) -> str:
    """`digits` significant digits without an exponent for 0.001 <= |v| < 1e7."""
    if not math.isfinite(v):
        return "-"
    if v == 0:
        return "0"
    mag = math.floor(math.log10(abs(v)))
    if mag < -3 or mag >= 7:
        return f"{v:.{digits - 1}e}"
    return f"{v:.{max(0, digits - 1 - mag)}f}"


def fmt_time(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "-"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if seconds >= scale:
            return f"{sig(seconds / scale)} {unit}"
    return f"{sig(seconds / 1e-9)} ns"


def fmt_flops(gflops: float) -> str:
    """GFLOP/s, or TFLOP/s from 10 000 GFLOP/s on (GPU numbers stay short)."""
    if math.isfinite(gflops) and gflops >= 1e4:
        return f"{sig(gflops / 1e3)} TFLOP/s"
    return f"{sig(gflops)} GFLOP/s"


def fmt_pct(v: float, digits: int = 3) -> str:
    return "-" if not math.isfinite(v) else f"{sig(100 * v, digits)}%"


# --- correctness -------------------------------------------------------------------------


def _counts_title(r: pd.Series) -> str:
    parts = [f"{s} {int(r[f'n_{s}'])}" for s in ("pass", "fail", "skip", "error")
             if r[f"n_{s}"]]
    reasons = "; ".join(r["reasons"][:3]) + (" ..." if len(r["reasons"]) > 3 else "")
    return ", ".join(parts) + (f": {reasons}" if reasons else "")


def groups(corr: pd.DataFrame) -> list[tuple[str, str, str]]:
    """(framework, device, mode) of one machine's correctness rows, in display order."""
    out = []
    for fw in analysis.frameworks(corr):
        f = corr[corr["framework"] == fw]
        for dev in analysis.devices(f):
            modes = set(f[f["device"] == dev]["mode"])
            out += [(fw, dev, m) for m in analysis.ordered(modes, ("pinned", "default"))]
    return out


def all_skipped(corr: pd.DataFrame) -> list[tuple[str, str]]:
    """(label, reason) of the framework:device rows of one machine where every check
    skipped: a device the machine lacks, a framework not installed. Listed, not drawn."""
    out = []
    for (fw, dev, mode), g in corr.groupby(["framework", "device", "mode"], sort=False):
        if (g["status"] == "skip").all():
            reasons = list(dict.fromkeys(r for rs in g["reasons"] for r in rs))
            out.append((label(str(fw), str(dev), str(mode)), "; ".join(reasons[:2])))
    return out


def correctness_table(corr: pd.DataFrame, title: str = "") -> Table:
    """One machine: rows framework:device x quantity (not the all-skipped ones), columns
    dtype; each cell the worst error ratio (the fraction of the allowed error used)."""
    dts = analysis.dtypes(corr)
    skipped = {lab for lab, _ in all_skipped(corr)}
    by = {(r.framework, r.device, r.mode, r.dtype, r.quantity): r
          for r in corr.itertuples(index=False)}
    rows: list[list[Cell]] = []
    for fw, dev, mode in groups(corr):
        lab = label(fw, dev, mode)
        if lab in skipped:
            continue
        g = corr[(corr["framework"] == fw) & (corr["device"] == dev) & (corr["mode"] == mode)]
        qs = analysis.ordered(g["quantity"].astype(str), QUANTITIES)
        for i, q in enumerate(qs):
            row = [Cell(lab, css="rowhead", rowspan=len(qs) if i == 0 else 0, first=i == 0),
                   Cell(q, css="rowhead", first=i == 0)]
            for dt in dts:
                r = by.get((fw, dev, mode, dt, q))
                row.append(_correctness_cell(pd.Series(r._asdict()) if r else None))
                row[-1].first = i == 0
            rows.append(row)
    return Table(
        title=title,
        caption="Worst error ratio per cell (max |got - ref| / bound over all cases; "
                "pass <= 1). Hover a cell for its counts and reasons.",
        columns=["framework:device", "quantity", *dts], rows=rows)


def _correctness_cell(r: pd.Series | None) -> Cell:
    if r is None:
        return Cell("", css="none", title="not run", md="")
    status, ratio = str(r["status"]), float(r["worst_ratio"])
    title = _counts_title(r)
    text = sig(ratio) if status in ("pass", "fail") and math.isfinite(ratio) else status
    n_bad = int(r["n_fail"]) + int(r["n_error"])
    noun = "failed" if status == "fail" else "error" if n_bad == 1 else "errors"
    sub = f"{n_bad} {noun}" if n_bad else ""
    md = f"{MD_STATUS[status]} {text}" + (f" ({sub})" if sub else "")
    return Cell(text, css=status, title=title, sub=sub, md=md)


def _label_of(r: object) -> str:
    return label(str(getattr(r, "framework")), str(getattr(r, "device")),  # noqa: B009
                    str(getattr(r, "mode")))  # noqa: B009


def problem_list(table: pd.DataFrame, limit: int = 30) -> list[str]:
    """One line per failing or erroring row (first `limit`), each with the command that
    writes its cell's standalone reproducer."""
    from harness.repro import command

    v = table[(table["source"] == "verify") & table["status"].isin(["fail", "error"])]
    lines = [f"{r.status.upper()} {r.machine} {_label_of(r)} {r.dtype} {r.case} "
             f"{r.quantity}: {r.reason} · reproducer: `{_repro(r, command)}`"
             for r in v.head(limit).itertuples()]
    if len(v) > limit:
        lines.append(f"... and {len(v) - limit} more (see verify.csv)")
    return lines


def _repro(r: object, command: Callable[..., str]) -> str:
    folder = str(Path(str(getattr(r, "origin"))).parent)  # noqa: B009
    return command(folder, *(str(getattr(r, k)) for k in ("case", "framework", "dtype",
                                                          "device")))


def skip_reasons(table: pd.DataFrame) -> list[str]:
    v = table[(table["source"] == "verify") & (table["status"] == "skip")]
    g = v.groupby(["machine", "framework", "device", "mode", "reason"], sort=False).size()
    return [f"{m} {label(fw, dev, mode)} {TIMES}{n}: {why}"
            for (m, fw, dev, mode, why), n in g.items()]


def verify_notes(table: pd.DataFrame) -> list[str]:
    """verify's notes (effective bits below the compute mode's bound, known divergences),
    grouped."""
    v = table[(table["source"] == "verify") & (table["note"].fillna("") != "")]
    g = v.groupby(["machine", "framework", "device", "mode", "dtype", "note"],
                  sort=False).size()
    return [f"{m} {label(fw, dev, mode)} {dt} {TIMES}{n}: {note}"
            for (m, fw, dev, mode, dt, note), n in g.items()]


# --- Markdown ----------------------------------------------------------------------------


# What in a name or reason could make Markdown do something: raw HTML (`<img onerror>`,
# `</details>` closing a fold early), links and images (`[x](javascript:...)`), table
# columns (`|`); backslashes first, so the escapes added stay escapes. Emphasis and code
# spans only change how text looks, and our own notes use backticks: left as is.
_MD = str.maketrans({"\\": "\\\\", "<": "&lt;", ">": "&gt;", "&": "&amp;", "[": "\\[",
                     "]": "\\]", "|": "\\|"})
_HTML = str.maketrans({"<": "&lt;", ">": "&gt;", "&": "&amp;", '"': "&quot;"})


def _one_line(text: object) -> str:
    """`text` on one line: newlines become spaces, other control characters are shown
    escaped (`\\x1b`)."""
    return printable(" ".join(str(text).splitlines()))


def md_text(text: object) -> str:
    """Any text for a Markdown line or table cell: one line, inert (see _MD)."""
    return _one_line(text).translate(_MD)


def html_text(text: object) -> str:
    """Any text for raw HTML in the Markdown report (`<summary>`): one line, escaped."""
    return _one_line(text).translate(_HTML)


_md_escape = md_text


def markdown(table: Table) -> str:
    cols = table.md_columns or table.columns

    def cell(c: Cell) -> str:
        if c.md is not None:
            return _md_escape(c.md)
        return _md_escape(c.text + (f" · {c.sub}" if c.sub else ""))

    lines = ["| " + " | ".join(_md_escape(c) for c in cols) + " |",
             "|" + "|".join(":---" if i == 0 else "---:" for i in range(len(cols))) + "|"]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in table.rows]
    body = "\n".join(lines)
    foot = "".join(f"\n\n{md_text(line)}" for line in table.foot)
    if table.details:
        return (f"<details><summary>{html_text(table.caption)}</summary>\n\n{body}\n\n"
                f"</details>{foot}")
    return f"{md_text(table.caption)}\n\n{body}{foot}"


