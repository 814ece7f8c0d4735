"""The selftest's table for the sampled check: planted bugs at large shapes.

The same catalogue of planted bugs as `harness.selftest` (each a wrong result that a real
framework has shipped, computed in float64 and rounded to the dtype), checked by the
sampled check (harness/sampled.py) instead of the full one, once at the selftest's own
shapes (to compare with the full check's table) and once at larger shapes, where a sample
is a small part of the result. Written to `selftest_sampled.csv` beside `selftest.csv`.
"""

from __future__ import annotations

import csv
import io
from dataclasses import replace
from pathlib import Path

from harness.cases import Case, make_inputs
from harness.dtypes import DTYPES, DType
from harness.refcache import References
from harness.results import atomic_write
from harness.runfiles import SAMPLED_COLUMNS, SAMPLED_FILE, Detection
from harness.sampled import check_sampled
from harness.selftest import BUGS, LOW, Bug, detection
from harness.tolerance import params

# the selftest's shapes scaled up: a few hundred rows, of which the check samples ~40
LARGE: dict[str, Case] = {
    "square": Case("square_large", (256, 256), (256, 256)),
    "broadcast_w": Case("broadcast_w_large", (4, 160, 160), (160, 160)),
    "long_k": Case("long_k_large", (130, 2048), (2048, 130)),
}


def detect(bug: Bug, dtype: DType, trials: int) -> Detection:
    """`bug` over `trials` seeds through the sampled check (and the bias test)."""
    nan = float("nan")
    if not bug.applies(dtype):
        return detection(bug, dtype.name, 0, 0, nan, nan, False)
    hits = 0
    p = params(bug.quantity, bug.case.geometry, rounded_partials=False)
    for seed in range(trials):
        inputs = make_inputs(bug.case, dtype, seed)
        ref = References(seed).get(bug.case, dtype, "sampled", [bug.quantity])
        got = bug.value(inputs, dtype).astype(dtype.numpy)
        o = check_sampled(bug.quantity, got, ref.samples[bug.quantity], dtype, p)
        hits += o.status == "fail" or (dtype.name in LOW and o.status == "pass" and o.biased)
    return detection(bug, dtype.name, trials, hits, nan, nan, True)


def sensitivity(trials: int, large: bool) -> list[tuple[Bug, Detection]]:
    """Every bug and dtype, at the selftest's shapes or (`large`) at LARGE's."""
    # the catalogue's shapes only: the hard-shape rows are the bias test's (harness.selftest)
    mine = [b for b in BUGS if b.case.name in LARGE]
    bugs = [replace(b, case=LARGE[b.case.name]) for b in mine] if large else mine
    return [(b, detect(b, d, trials)) for b in bugs for d in DTYPES.values()]


def table(results: list[tuple[Bug, Detection]]) -> str:
    """Bug rows × dtype columns of detection counts, the case named per row."""
    dtypes = list(dict.fromkeys(r.dtype for _, r in results))
    names = list(dict.fromkeys((b.name, b.case.label) for b, _ in results))
    cell = {(b.name, b.case.label, r.dtype): r.label for b, r in results}
    rows = [["planted bug", "shape", *dtypes]] + [
        [n, shape, *(cell[(n, shape, d)] for d in dtypes)] for n, shape in names]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip()
                     for row in rows)


def problems(results: list[tuple[Bug, Detection]]) -> list[str]:
    """A required detection below 100%, or a false alarm, in the sampled check."""
    return [f"sampled check: {line}" for _, r in results if (line := r.shortfall)]


def write(results: list[tuple[Bug, Detection]], out_dir: Path) -> None:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(SAMPLED_COLUMNS)
    for _, r in results:
        w.writerow([r.bug, r.quantity, r.case, r.dtype, r.applies, r.trials, r.detected,
                    r.required])
    atomic_write(out_dir / SAMPLED_FILE, buf.getvalue())


def run(trials: int, out_dir: Path) -> list[str]:
    """Print both tables, write the CSV; the problems found (empty when all is well)."""
    small = sensitivity(trials, large=False)
    big = sensitivity(max(1, trials // 5), large=True)  # a fifth of the seeds: time
    write(small + big, out_dir)
    print("\nSampled check (sampled rows and columns, projections of every element): planted "
          "bugs caught at the shapes above, and at larger ones")
    print(table(small + big))
    return problems(small + big)
