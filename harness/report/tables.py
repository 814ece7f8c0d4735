"""Tables of the report, one structure for both outputs: HTML cells and Markdown cells.

A `Table` is a header and rows of `Cell`s; the HTML template draws `text` (plus a smaller
`sub` line, a colour class and a tooltip), and `markdown()` writes `md` (or `text`) as a
GitHub-flavoured Markdown table. Numbers are formatted here and nowhere else.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import pandas as pd

from harness.dtypes import DTYPES
from harness.report import analysis as an
from harness.report.load_selftest import Detection, FDCheck
from harness.selftest import CONTROL

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
    for fw in an.frameworks(corr):
        f = corr[corr["framework"] == fw]
        for dev in an.devices(f):
            modes = set(f[f["device"] == dev]["mode"])
            out += [(fw, dev, m) for m in an.ordered(modes, ("pinned", "default"))]
    return out


def all_skipped(corr: pd.DataFrame) -> list[tuple[str, str]]:
    """(label, reason) of the framework:device rows of one machine where every check
    skipped: a device the machine lacks, a framework not installed. Listed, not drawn."""
    out = []
    for (fw, dev, mode), g in corr.groupby(["framework", "device", "mode"], sort=False):
        if (g["status"] == "skip").all():
            reasons = list(dict.fromkeys(r for rs in g["reasons"] for r in rs))
            out.append((an.label(str(fw), str(dev), str(mode)), "; ".join(reasons[:2])))
    return out


def correctness_table(corr: pd.DataFrame, title: str = "") -> Table:
    """One machine: rows framework:device x quantity (not the all-skipped ones), columns
    dtype; each cell the worst error ratio (the fraction of the allowed error used)."""
    dts = an.dtypes(corr)
    skipped = {lab for lab, _ in all_skipped(corr)}
    by = {(r.framework, r.device, r.mode, r.dtype, r.quantity): r
          for r in corr.itertuples(index=False)}
    rows: list[list[Cell]] = []
    for fw, dev, mode in groups(corr):
        lab = an.label(fw, dev, mode)
        if lab in skipped:
            continue
        g = corr[(corr["framework"] == fw) & (corr["device"] == dev) & (corr["mode"] == mode)]
        qs = an.ordered(g["quantity"].astype(str), an.QUANTITIES)
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
    return an.label(str(getattr(r, "framework")), str(getattr(r, "device")),  # noqa: B009
                    str(getattr(r, "mode")))  # noqa: B009


def problem_list(table: pd.DataFrame, limit: int = 30) -> list[str]:
    """One line per failing or erroring row (first `limit`)."""
    v = table[(table["source"] == "verify") & table["status"].isin(["fail", "error"])]
    lines = [f"{r.status.upper()} {r.machine} {_label_of(r)} {r.dtype} {r.case} "
             f"{r.quantity}: {r.reason}" for r in v.head(limit).itertuples()]
    if len(v) > limit:
        lines.append(f"... and {len(v) - limit} more (see verify.csv)")
    return lines


def skip_reasons(table: pd.DataFrame) -> list[str]:
    v = table[(table["source"] == "verify") & (table["status"] == "skip")]
    g = v.groupby(["machine", "framework", "device", "mode", "reason"], sort=False).size()
    return [f"{m} {an.label(fw, dev, mode)} {TIMES}{n}: {why}"
            for (m, fw, dev, mode, why), n in g.items()]


def precision_notes(table: pd.DataFrame) -> list[str]:
    """verify's notes (precision below the recorded mode, known divergences), grouped."""
    v = table[(table["source"] == "verify") & (table["note"].fillna("") != "")]
    g = v.groupby(["machine", "framework", "device", "mode", "dtype", "note"],
                  sort=False).size()
    return [f"{m} {an.label(fw, dev, mode)} {dt} {TIMES}{n}: {note}"
            for (m, fw, dev, mode, dt, note), n in g.items()]


# --- what a pass is worth (the selftest) -------------------------------------------------

LOW_PRECISION = ("float16", "bfloat16")  # the dtypes the selftest also runs the bias test in
MD_DETECTION = {"pass": "✅ ", "fail": "❌ ", "partial": "🟡 "}


def selftest_table(detections: Sequence[Detection], title: str = "") -> Table:
    """Rows planted bug, columns dtype; each cell detected/trials or n/a."""
    dts = an.ordered((d.dtype for d in detections), tuple(DTYPES))
    by = {(d.bug, d.dtype): d for d in detections}
    rows: list[list[Cell]] = []
    for bug in dict.fromkeys(d.bug for d in detections):
        first = next(d for d in detections if d.bug == bug)
        row = [Cell(bug, css="rowhead", sub=f"{first.quantity} of {first.case}", md=bug,
                    title=first.description)]
        row += [_detection_cell(by[(bug, dt)]) if (bug, dt) in by
                else Cell("", css="none", title="not run", md="") for dt in dts]
        if rows and rows[-1][0].text == CONTROL:  # a rule between control and the bugs
            for c in row:
                c.first = True
        rows.append(row)
    trials = sorted({d.trials for d in detections if d.applies}) or [0]
    seeds = (f"{trials[0]} seeds each" if len(trials) == 1
             else f"between {trials[0]} and {trials[-1]} seeds each")
    return Table(
        title=title,
        caption=f"Planted bugs caught out of {seeds}, by the per-element test "
                "(float16 and bfloat16 also by the bias test); the control row, the correct "
                "result rounded, is the false-alarm rate.",
        columns=["planted bug", *dts], rows=rows)


def detection_status(d: Detection) -> str:
    """pass: caught every time (the control: never flagged); fail: a required detection
    missed, or a false alarm; partial: caught sometimes where it is not required; even:
    never caught where it is not required; skip: the bug cannot occur in the dtype."""
    if not d.applies:
        return "skip"
    if d.control:
        return "fail" if d.detected else "pass"
    if d.detected == d.trials:
        return "pass"
    if d.required:
        return "fail"
    return "partial" if d.detected else "even"


def _detection_cell(d: Detection) -> Cell:
    status = detection_status(d)
    if status == "skip":
        return Cell("n/a", css="skip", md="n/a",
                    title=f"{d.bug} cannot occur in {d.dtype}")
    why = {
        "pass": "never flagged: no false alarm" if d.control else "caught every time",
        "fail": (f"false alarm: the correct result flagged {d.detected} times" if d.control
                 else f"missed {d.trials - d.detected} times; required every time"),
        "partial": "caught sometimes; not required in this dtype",
        "even": "never caught; not required in this dtype",
    }[status]
    stats = [f"median max |err|/bound {sig(d.median_ratio)}"
             if math.isfinite(d.median_ratio) else "caught on the shape"]
    if d.dtype in LOW_PRECISION and math.isfinite(d.median_bias_z):
        stats.append(f"median bias |β|/σ {sig(d.median_bias_z)}")
    return Cell(d.label, css=status, md=MD_DETECTION.get(status, "") + d.label,
                title=f"{d.bug} in {d.dtype}: {why} ({'; '.join(stats)})")


def selftest_shortfalls(detections: Sequence[Detection]) -> list[str]:
    """A required detection below every time, or any false alarm (as `selftest` prints)."""
    out = []
    for d in detections:
        if detection_status(d) != "fail":
            continue
        if d.control:
            out.append(f"false alarm: the correct {d.dtype} result was flagged "
                       f"{d.detected}/{d.trials} times")
        else:
            out.append(f"{d.bug} in {d.dtype} caught only {d.detected}/{d.trials} times; "
                       "the checker must catch it every time")
    return out


def fd_summary(fd: Sequence[FDCheck]) -> str:
    """One line: how many reference gradients agree with finite differences."""
    if not fd:
        return ("Central finite differences: no case of the config was small enough to "
                "check the reference against.")
    ok = sum(f.passed for f in fd)
    dts = ", ".join(dict.fromkeys(f.dtype for f in fd))
    worst = max(f.max_rel_err for f in fd)
    return (f"Central finite differences ({dts}) on the config's small cases: "
            f"{ok}/{len(fd)} gradients agree with the reference, worst relative error "
            f"{sig(worst, 2)}.")


def fd_disagreements(fd: Sequence[FDCheck]) -> list[str]:
    return [f"reference {f.quantity} of {f.case} ({f.dtype}) differs from finite "
            f"differences by {sig(f.max_rel_err, 3)} (relative)" for f in fd if not f.passed]


# --- timings -----------------------------------------------------------------------------


def measured(t: pd.DataFrame) -> pd.DataFrame:
    """The timing rows of every (benchmark, shape, pass) that asv ran for at least one
    framework: asv records the combinations a run did not select (or that raised
    NotImplementedError: no GPU, say) as n/a, and a table of nothing but n/a says nothing."""
    key = ["machine", "device", "dtype", "benchmark", "shape", "pass_"]
    ran = t.groupby(key)["status"].transform(lambda s: (s != "skip").any())
    return t[ran.astype(bool)]


def timing_tables(t: pd.DataFrame) -> list[Table]:
    """Per machine x device x dtype: rows shape x pass, columns framework."""
    out: list[Table] = []
    t = measured(t)
    multi_bench = len(an.timing_benchmarks(t)) > 1
    machines = list(dict.fromkeys(t["machine"]))
    for m in machines:
        tm = t[t["machine"] == m]
        for dev in an.devices(tm):
            for dt in an.dtypes(tm[tm["device"] == dev]):
                g = tm[(tm["device"] == dev) & (tm["dtype"] == dt)]
                fws = an.frameworks(g)
                by = {(r.benchmark, r.shape, r.pass_, r.framework): r
                      for r in g.itertuples(index=False)}
                order = {p: i for i, p in enumerate(an.passes(g))}
                keys = (g.drop_duplicates(["benchmark", "shape", "pass_"])
                        .assign(order=g["pass_"].map(order))
                        .sort_values(["benchmark", "size", "shape", "order"]))
                rows: list[list[Cell]] = []
                for k in keys.itertuples(index=False):
                    p = k.pass_
                    label = f"{p} ({_bench_label(k.benchmark)})" if multi_bench else p
                    row = [Cell(k.shape, css="rowhead"), Cell(label, css="rowhead")]
                    row += [_timing_cell(by.get((k.benchmark, k.shape, p, fw))) for fw in fws]
                    rows.append(row)
                where = f"{m}, {dev}" if len(machines) > 1 else dev
                out.append(Table(
                    caption=f"{dt} on {where}: {len(rows)} shape and pass rows",
                    columns=["shape (MxKxN)", "pass", *fws], rows=rows, details=True))
    return out


def _bench_label(name: str) -> str:
    """"matmul.Square.time_matmul" -> "Square": the class names the shape set."""
    parts = name.split(".")
    return parts[-2] if len(parts) >= 2 else name


def _timing_cell(r: object | None) -> Cell:
    if r is None:
        return Cell("", css="none", title="not measured", md="")
    status = str(getattr(r, "status"))  # noqa: B009 (itertuples rows are not typed)
    if status != "pass":
        text = "failed" if status == "fail" else "n/a"
        return Cell(text, css=status, title=str(getattr(r, "reason")), md=text)  # noqa: B009
    time, gf, spread = (float(getattr(r, k)) for k in ("time", "gflops", "spread"))
    sub = f"{fmt_flops(gf)} · IQR {fmt_pct(spread, 2)}"
    return Cell(fmt_time(time), sub=sub, md=f"{fmt_time(time)} · {sub}")


# --- speedup, peak, accuracy -------------------------------------------------------------


def speedup_table(geo: pd.DataFrame, baseline: str, title: str = "") -> Table:
    """One machine: rows framework:device, columns dtype and all dtypes."""
    dts = an.dtypes(geo[geo["dtype"] != "all"])
    rows: list[list[Cell]] = []
    for fw in an.frameworks(geo):
        for dev in an.devices(geo[geo["framework"] == fw]):
            g = geo[(geo["framework"] == fw) & (geo["device"] == dev)].set_index("dtype")
            row = [Cell(f"{fw}:{dev}", css="rowhead")]
            for dt in [*dts, "all"]:
                if dt not in g.index:
                    row.append(Cell("", css="none", md=""))
                    continue
                v = float(g.loc[dt, "geomean"])
                css = "faster" if v > 1.05 else "slower" if v < 1 / 1.05 else "even"
                row.append(Cell(f"{sig(v)}{TIMES}", css=css,
                                title=f"geometric mean of {int(g.loc[dt, 'n'])} timings "
                                      f"vs {baseline} on {g.loc[dt, 'base_device']}"))
            rows.append(row)
    return Table(
        title=title,
        caption=f"Geometric-mean speedup over {baseline} (its time / this time, over shapes "
                f"and passes; > 1 is faster). GPU rows compare with {baseline} on the CPU "
                "when it has no GPU timings.",
        columns=["framework:device", *dts, "all dtypes"], rows=rows)


def peak_table(pk: pd.DataFrame, title: str = "") -> Table:
    """One machine: rows framework:device, columns dtype."""
    dts = an.dtypes(pk)
    rows: list[list[Cell]] = []
    for dev in an.devices(pk):
        g = pk[pk["device"] == dev]
        for fw in an.frameworks(g):
            by = g[g["framework"] == fw].set_index("dtype")
            row = [Cell(f"{fw}:{dev}", css="rowhead")]
            for dt in dts:
                if dt not in by.index:
                    row.append(Cell("", css="none", md=""))
                    continue
                r = by.loc[dt]
                sub = f"{fmt_flops(float(r['gflops']))} of {fmt_flops(float(r['peak']))}"
                row.append(Cell(fmt_pct(float(r["fraction"])), sub=sub,
                                md=f"{fmt_pct(float(r['fraction']))} ({sub})",
                                title=f"best at {r['shape']} {r['pass_']}; peak from "
                                      f"'{r['entry']}'"))
            rows.append(row)
    return Table(title=title,
                 caption="Best GFLOP/s over shapes and passes as a fraction of the device's "
                         "peak (configs/peaks.yaml)",
                 columns=["framework:device", *dts], rows=rows)


def peak_devices(pk: pd.DataFrame) -> list[str]:
    seen = pk.drop_duplicates(["machine", "device"])
    return [f"{r.machine} {r.device}: {r.model!r} matched '{r.entry}'"
            + (f" {TIMES} {r.cores} cores" if r.cores else "") for r in seen.itertuples()]


def _sorted(df: pd.DataFrame) -> pd.DataFrame:
    """Rows in the report's order: framework, device, dtype as everywhere else."""
    rank = {k: {v: i for i, v in enumerate(f(df))}
            for k, f in (("framework", an.frameworks), ("device", an.devices),
                         ("dtype", an.dtypes))}
    return df.sort_values(["framework", "device", "dtype"],
                          key=lambda col: col.map(rank[str(col.name)]))


def accuracy_table(acc: pd.DataFrame, title: str = "") -> Table:
    rows = [[Cell(f"{r.framework}:{r.device}", css="rowhead"), Cell(r.dtype),
             Cell(sig(r.worst_ratio), css="fail" if r.worst_ratio > 1 else "pass"),
             Cell(r.ratio_from), Cell(fmt_time(r.time))]
            for r in _sorted(acc).itertuples()]
    return Table(title=title,
                 caption="Worst error ratio and median time at the reference shape",
                 columns=["framework:device", "dtype", "worst ratio", "ratio from", "time"],
                 rows=rows)


# --- Markdown ----------------------------------------------------------------------------


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


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
    foot = "".join(f"\n\n{line}" for line in table.foot)
    if table.details:
        return f"<details><summary>{table.caption}</summary>\n\n{body}\n\n</details>{foot}"
    return f"{table.caption}\n\n{body}{foot}"


def markdown_all(tables: Sequence[Table]) -> str:
    return "\n\n".join(markdown(t) for t in tables)
