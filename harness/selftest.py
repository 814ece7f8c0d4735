"""`matmul-harness selftest`: what a pass is worth, shown.

Two parts, neither needs a framework:

1. **Checker sensitivity.** A catalogue of planted bugs, each a wrong gradient a real
   framework has shipped (docs/numerics.md lists the upstream issues), is computed in float64
   from the dtype's rounded inputs and rounded to the dtype, i.e. a kernel that is wrong in
   exactly one way and otherwise perfect. The checker (`judge`'s per-element test, and the
   bias test for float16/bfloat16) must report each as `fail`; the table is the detection
   rate over independent seeds. A control row (the correct result, rounded) shows the
   false-alarm rate. Rows for the hard shapes (K = 1 outer products, 1-D operands, a
   heavily broadcast W, a single element) show what the bias test can and cannot resolve
   there: each has its own control, which must never be flagged, and a 1e-3 scaling,
   which no bar requires there (the rows say honestly where it is invisible).
2. **The reference itself**, against central finite differences in float64 on the small
   cases: the formulas could be wrong in a way no framework comparison would reveal if
   every framework shared the bug.
"""

from __future__ import annotations

import csv
import io
import itertools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import ml_dtypes
import numpy as np

from harness.cases import Case, Inputs, make_inputs
from harness.checks import BIAS_DTYPES, check
from harness.dtypes import DTYPES, DType, get, widen
from harness.reference import QUANTITIES, matmul_grads, matmul_vjp, reference
from harness.results import atomic_write
from harness.runfiles import (
    CONTROL,
    DETECTION_COLUMNS,
    FD_COLUMNS,
    SELFTEST_FD_FILE,
    SELFTEST_FILE,
    Detection,
    FDResult,
    is_control,
)
from harness.tolerance import params

LOW = BIAS_DTYPES

# Enough elements for the bias test to see a 1e-3 scaling in bfloat16 (σ_β ≈ u/√n).
SQUARE = Case("square", (64, 64), (64, 64))
BROADCAST = Case("broadcast_w", (4, 16, 16), (16, 16))
LONG_K = Case("long_k", (8, 1024), (1024, 8))
# The hard shapes of the bias test (docs/numerics.md): elements that share factors, a
# sum reduced from 64 rounded per-batch partials, a result of one element.
OUTER = Case("outer_k1", (64, 1), (1, 64))
VECTOR = Case("x_1d", (2048,), (2048, 2))
BROADCAST_8D = Case("broadcast_8d", (2, 2, 2, 2, 2, 2, 8, 8), (8, 8))
SCALAR = Case("one_element", (1, 1), (1, 1))


def _narrow(dtype: DType) -> np.dtype[np.generic]:
    """The (real) accumulator type a low-precision-accumulation bug uses for `dtype`."""
    narrow: dict[str, type] = {
        "float16": np.float16, "bfloat16": ml_dtypes.bfloat16, "float32": ml_dtypes.bfloat16,
        "complex64": ml_dtypes.bfloat16, "float64": np.float32, "complex128": np.float32,
    }
    return np.dtype(narrow[dtype.name])


def _round(a: np.ndarray, acc: np.dtype[np.generic]) -> np.ndarray:
    """`a` rounded to the real type `acc`, componentwise for complex values."""
    if a.dtype.kind == "c":
        return _round(a.real, acc) + 1j * _round(a.imag, acc)
    return a.astype(acc).astype(np.float64)


def _low_accumulation(i: Inputs, d: DType) -> np.ndarray:
    """X @ W summed one k at a time, each partial sum rounded to a narrower type."""
    x, w, acc = widen(i.x), widen(i.w), _narrow(d)
    total = np.zeros((x.shape[0], w.shape[1]), dtype=np.result_type(x, w))
    for k in range(x.shape[1]):
        total = _round(total + np.outer(x[:, k], w[k]), acc)
    return total


@dataclass(frozen=True)
class Bug:
    name: str
    what: str
    quantity: str
    case: Case
    applies: Callable[[DType], bool]
    value: Callable[[Inputs, DType], np.ndarray]  # the buggy result, in float64/complex128
    structural: bool  # must be caught per element in every dtype it applies to
    rounded_partials: bool = False  # judged as for a framework that rounds batch partials
    shown_only: bool = False  # a hard-shape row: shown honestly, never required


def _dx(i: Inputs, d: DType | None = None) -> np.ndarray:
    return matmul_vjp(widen(i.x), widen(i.w), widen(i.g))[1]


def _exact(quantity: str, factor: float = 1.0) -> Callable[[Inputs, DType], np.ndarray]:
    """The correct `quantity`, times `factor`, before its one rounding to the dtype."""
    index = QUANTITIES.index(quantity)  # matmul_vjp's (Y, dX, dW)
    return lambda i, d: matmul_vjp(widen(i.x), widen(i.w), widen(i.g))[index] * factor


# The wrong gradients, each the reference's formula applied to the wrong operands, so that no
# product is written here (docs/architecture.md: the formulas live in harness.reference).
def _missing_transpose(i: Inputs, d: DType) -> np.ndarray:
    """G·W̄ (square W): the reference's G·Vᴴ with V = Wᵀ."""
    return matmul_grads(widen(i.x), np.swapaxes(widen(i.w), -1, -2), widen(i.g))[0]


def _missing_conjugation(i: Inputs, d: DType) -> np.ndarray:
    """G·Wᵀ: the reference's G·Vᴴ with V = W̄."""
    return matmul_grads(widen(i.x), widen(i.w).conj(), widen(i.g))[0]


def _partial_reduction(i: Inputs, d: DType) -> np.ndarray:
    """dW of batch 0 alone: the reference's dW of X[0] @ W."""
    return matmul_grads(widen(i.x[0]), widen(i.w), widen(i.g[0]))[1]


def _missing_reduction(i: Inputs, d: DType) -> np.ndarray:
    """dW per batch, never summed: the reference's dW of a W that is not broadcast."""
    x = widen(i.x)
    w = np.broadcast_to(widen(i.w), (*x.shape[:-2], *i.w.shape))
    return matmul_grads(x, w, widen(i.g))[1]


def _hard(case: Case, quantity: str, what: str, rounded: bool = False) -> tuple[Bug, Bug]:
    """A control and a 1e-3 scaling of `quantity` on one of the hard shapes."""
    return (
        Bug(f"{CONTROL}, {what}", f"the correct {quantity} of {case.label}, rounded: must "
            "not be flagged", quantity, case, lambda d: True, _exact(quantity), False,
            rounded),
        Bug(f"scaling, {what}", f"{quantity} of {case.label} off by a relative 1e-3 "
            "(not required: shows what the bias test resolves here)", quantity, case,
            lambda d: True, _exact(quantity, 1 + 1e-3), False, rounded, shown_only=True),
    )


BUGS: tuple[Bug, ...] = (
    Bug(CONTROL, "the correct result, rounded to the dtype: must not be flagged",
        "dX", SQUARE, lambda d: True, _dx, False),
    Bug("missing transpose", "dX = G·W instead of G·Wᴴ, with a square W", "dX", SQUARE,
        lambda d: True, _missing_transpose, True),
    Bug("missing conjugation", "dX = G·Wᵀ instead of G·Wᴴ "
        "(https://github.com/tensorflow/tensorflow/issues/378, "
        "https://github.com/pytorch/pytorch/issues/55754)",
        "dX", SQUARE, lambda d: d.is_complex, _missing_conjugation, True),
    Bug("partial broadcast reduction", "dW of a broadcast W from batch 0 only "
        "(https://github.com/NVIDIA/warp/issues/147)", "dW", BROADCAST, lambda d: True,
        _partial_reduction, True),
    Bug("missing broadcast reduction", "dW of a broadcast W left per batch "
        "(https://github.com/tensorflow/tfjs/issues/8721)", "dW", BROADCAST, lambda d: True,
        _missing_reduction, True),
    Bug("low-precision accumulation",
        "Y accumulated in a narrower type (float16/bfloat16 in themselves, float32 in "
        "bfloat16, float64 in float32; https://github.com/pytorch/pytorch/issues/116870)",
        "Y", LONG_K, lambda d: True,
        _low_accumulation, True),
    Bug("scaling by 1+1e-3", "dX off by a relative 1e-3: below one ulp of float16/bfloat16",
        "dX", SQUARE, lambda d: True, lambda i, d: _dx(i) * (1 + 1e-3), False),
    *_hard(OUTER, "Y", "Y of K = 1"),
    *_hard(VECTOR, "dX", "dX of 1-D X"),
    *_hard(BROADCAST_8D, "dX", "dX of 8-D broadcast"),
    *_hard(BROADCAST_8D, "dW", "dW of 8-D broadcast", rounded=True),
    *_hard(SCALAR, "Y", "one element"),
)


def detection(bug: Bug, dtype: str, trials: int, detected: int, median_ratio: float,
              median_bias_z: float, applies: bool) -> Detection:
    """The selftest.csv record of `bug` in `dtype`: counts plus what the catalogue says."""
    return Detection(bug.name, bug.what, bug.quantity, bug.case.label, dtype, applies, trials,
                     detected, required(bug, dtype), median_ratio, median_bias_z)


def detect(bug: Bug, dtype: DType, trials: int) -> Detection:
    """Run `bug` over `trials` seeds; count the seeds where the checker reports fail."""
    nan = float("nan")
    if not bug.applies(dtype):
        return detection(bug, dtype.name, 0, 0, nan, nan, False)
    hits, ratios, zs = 0, [], []
    p = params(bug.quantity, bug.case.geometry, rounded_partials=bug.rounded_partials)
    for seed in range(trials):
        inputs = make_inputs(bug.case, dtype, seed)
        ref = reference(inputs)
        got = bug.value(inputs, dtype).astype(dtype.numpy)
        o = check(bug.quantity, got, ref.values[bug.quantity], ref.scale[bug.quantity],
                  dtype, p)
        biased = dtype.name in LOW and o.status == "pass" and o.biased
        hits += o.status == "fail" or biased
        ratios.append(o.ratio)
        zs.append(o.bias_z if dtype.name in LOW else nan)
    return detection(bug, dtype.name, trials, hits, _median(ratios), _median(zs), True)


def _median(values: list[float]) -> float:
    finite = [v for v in values if v == v]
    return float(np.median(finite)) if finite else float("nan")


def sensitivity(trials: int = 10) -> list[Detection]:
    return [detect(b, d, trials) for b in BUGS for d in DTYPES.values()]


def required(bug: Bug, dtype: str) -> bool:
    """Whether `bug` must be caught in `dtype` every time (docs/numerics.md's bar)."""
    if is_control(bug.name) or bug.shown_only:
        return False
    if bug.structural:
        return True
    return bug.name.startswith("scaling") and dtype in (
        "float16", "float32", "float64", "complex64", "complex128")


def verdict(results: list[Detection]) -> list[str]:
    """What fell short: a required detection below 100%, or any false alarm."""
    return [line for r in results if (line := r.shortfall)]


FD_MAX_ELEMENTS = 400  # finite differences cost two loss evaluations per input element
FD_TOLERANCE = 1e-9


def finite_differences(case: Case, complex_: bool, seed: int = 0) -> list[FDResult]:
    """Central differences of L = Re Σ conj(G)·(X @ W) against the reference's dX and dW.

    L is linear in each input, so the central difference is exact up to rounding; the
    step is a power of two (exact in binary) and the error is relative to max |gradient|.
    """
    dtype = get("complex128" if complex_ else "float64")
    inputs = make_inputs(case, dtype, seed)
    x, w, g = inputs.x, inputs.w, inputs.g
    _, dx, dw = matmul_vjp(x, w, g)
    h = 2.0**-10
    steps = (1.0, 1j) if complex_ else (1.0,)

    def loss(x_: np.ndarray, w_: np.ndarray) -> float:
        y = matmul_vjp(x_, w_, g)[0]  # the forward alone is needed; the cases are tiny
        return float(np.real(np.sum(np.conj(g) * y)))

    out = []
    for name, arr, grad in (("dX", x, dx), ("dW", w, dw)):
        fd = np.zeros_like(grad)
        for idx in itertools.product(*map(range, arr.shape)):
            for step in steps:
                e = np.zeros_like(arr)
                e[idx] = step * h
                plus = loss(arr + e, w) if name == "dX" else loss(x, arr + e)
                minus = loss(arr - e, w) if name == "dX" else loss(x, arr - e)
                fd[idx] += step * (plus - minus) / (2 * h)
        scale = max(float(np.max(np.abs(grad), initial=0.0)), 1e-300)
        err = float(np.max(np.abs(fd - grad), initial=0.0)) / scale
        out.append(FDResult(case.name, dtype.name, name, err, err <= FD_TOLERANCE,
                            2 * arr.size * len(steps)))
    return out


def fd_cases(cases: tuple[Case, ...]) -> list[FDResult]:
    """Finite differences on every case small enough; larger ones are left out."""
    results = []
    for case in cases:
        if 0 < int(np.prod(case.x)) + int(np.prod(case.w)) <= FD_MAX_ELEMENTS:
            for complex_ in (False, True):
                results += finite_differences(case, complex_)
    return results


def table(results: list[Detection]) -> str:
    """Bug rows × dtype columns of detection counts."""
    dtypes = list(dict.fromkeys(r.dtype for r in results))
    bugs = list(dict.fromkeys(r.bug for r in results))
    cell = {(r.bug, r.dtype): r.label for r in results}
    rows = [["planted bug", *dtypes]] + [[b, *(cell[(b, d)] for d in dtypes)] for b in bugs]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip()
                     for row in rows)


def write(results: list[Detection], fd: list[FDResult], out_dir: Path) -> None:
    """selftest.csv (detections) and selftest_fd.csv (reference vs finite differences)."""
    det = io.StringIO()
    w = csv.writer(det, lineterminator="\n")
    w.writerow(DETECTION_COLUMNS)
    for r in results:
        rate = r.detected / r.trials if r.trials else float("nan")
        w.writerow([r.bug, r.description, r.quantity, r.case, r.dtype, r.applies, r.trials,
                    r.detected, f"{rate:.3g}", r.required, f"{r.median_ratio:.4g}",
                    f"{r.median_bias_z:.4g}"])
    atomic_write(out_dir / SELFTEST_FILE, det.getvalue())
    fdt = io.StringIO()
    w = csv.writer(fdt, lineterminator="\n")
    w.writerow(FD_COLUMNS)
    for f in fd:
        w.writerow([f.case, f.dtype, f.quantity, f"{f.max_rel_err:.3g}", f.passed,
                    f.evaluations])
    atomic_write(out_dir / SELFTEST_FD_FILE, fdt.getvalue())


def run(cases: tuple[Case, ...], trials: int, out_dir: Path) -> int:
    """The `selftest` command: print both parts, write the CSVs; 0 when all is well."""
    results = sensitivity(trials)
    fd = fd_cases(cases)
    write(results, fd, out_dir)
    print(f"Checker sensitivity: planted bugs caught, out of {trials} seeds each "
          "(per element; float16/bfloat16 also by the bias test)")
    print(table(results))
    bad_fd = [f for f in fd if not f.passed]
    worst = max((f.max_rel_err for f in fd), default=float("nan"))
    print(f"\nReference vs central finite differences (float64, complex128): "
          f"{len(fd) - len(bad_fd)}/{len(fd)} gradients agree, worst relative error "
          f"{worst:.2g} (tolerance {FD_TOLERANCE:g})")
    from harness import selftest_sampled  # it imports this module's catalogue

    problems = verdict(results) + selftest_sampled.run(trials, out_dir) + [
        f"reference {f.quantity} of {f.case} ({f.dtype}) differs from finite differences "
        f"by {f.max_rel_err:.3g}" for f in bad_fd]
    for line in problems:
        print(f"PROBLEM {line}")
    print(f"results: {out_dir / SELFTEST_FILE}")
    return 1 if problems else 0
