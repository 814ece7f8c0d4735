"""The selftest's tables: what a pass of the correctness matrix is worth.

Rows planted bug, columns dtype, each cell the seeds on which the checker caught the bug
(load_selftest.py reads the files); below it one line on the reference against finite
differences, and the shortfalls that turn the report's header red.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from harness.dtypes import DTYPES
from harness.report import analysis
from harness.report.load_selftest import Selftest
from harness.report.tables import Cell, Table, sig
from harness.runfiles import CONTROL, Detection, FDResult

LOW_PRECISION = ("float16", "bfloat16")  # the dtypes the selftest also runs the bias test in
MD_DETECTION = {"pass": "✅ ", "fail": "❌ ", "partial": "🟡 "}


def selftest_table(detections: Sequence[Detection], title: str = "") -> Table:
    """Rows planted bug, columns dtype; each cell detected/trials or n/a."""
    dts = analysis.ordered((d.dtype for d in detections), tuple(DTYPES))
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


def sampled_table(detections: Sequence[Detection]) -> Table:
    """The sampled check's detections (selftest_sampled.csv): rows (planted bug, shape),
    columns dtype, coloured as the main table."""
    dts = analysis.ordered((d.dtype for d in detections), tuple(DTYPES))
    by = {(d.bug, d.case, d.dtype): d for d in detections}
    rows: list[list[Cell]] = []
    for bug, case in dict.fromkeys((d.bug, d.case) for d in detections):
        quantity = next(d.quantity for d in detections if (d.bug, d.case) == (bug, case))
        rows.append([Cell(bug, css="rowhead", sub=f"{quantity} of {case}", md=f"{bug} ({case})"),
                     *(_detection_cell(by[(bug, case, dt)]) if (bug, case, dt) in by
                       else Cell("", css="none", title="not run", md="") for dt in dts)])
    return Table(
        title="The sampled check (large cases)",
        caption="The same planted bugs through the sampled check that `check: sampled` (and "
                "`auto` above its size) applies: sampled rows and columns exactly, and "
                "projections of every element; at the selftest's shapes and larger ones.",
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
        stats.append(f"median bias |β-β₀|/limit {sig(d.median_bias_z)}")
    return Cell(d.label, css=status, md=MD_DETECTION.get(status, "") + d.label,
                title=f"{d.bug} in {d.dtype}: {why} ({'; '.join(stats)})")


def selftest_shortfalls(detections: Sequence[Detection]) -> list[str]:
    """A required detection below every time, or any false alarm (as `selftest` prints)."""
    return [line for d in detections if (line := d.shortfall)]


def fd_summary(fd: Sequence[FDResult]) -> str:
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


def fd_disagreements(fd: Sequence[FDResult]) -> list[str]:
    return [f"reference {f.quantity} of {f.case} ({f.dtype}) differs from finite "
            f"differences by {sig(f.max_rel_err, 3)} (relative)" for f in fd if not f.passed]


def result_key(st: Selftest) -> object:
    """What a folder's selftest shows: folders with equal keys share one table (the
    selftest does not depend on the machine)."""
    return (None if st.detections is None else
            tuple((d.bug, d.dtype, d.label, detection_status(d)) for d in st.detections),
            None if st.fd is None else (fd_summary(st.fd), *fd_disagreements(st.fd)))


def shortfall_verdict(selftests: Sequence[Selftest]) -> str:
    """A short line for the report's header when a selftest result fell short, else "":
    how many required planted bugs were not always caught, false alarms on the control
    row, and reference gradients off finite differences (each distinct result once)."""
    missed = alarms = fd_off = 0
    for st in {result_key(st): st for st in selftests}.values():
        failed = [d for d in st.detections or [] if detection_status(d) == "fail"]
        alarms += sum(d.control for d in failed)
        missed += sum(not d.control for d in failed)
        fd_off += sum(not f.passed for f in st.fd or [])
    parts = [f"{n} {noun}{'' if n == 1 else 's'} {rest}" for n, noun, rest in (
        (missed, "required planted bug", "not always caught"),
        (alarms, "false alarm", "on the control row"),
        (fd_off, "reference gradient", "off finite differences")) if n]
    return "the selftest fell short: " + ", ".join(parts) if parts else ""
