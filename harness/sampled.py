"""The sampled check: for products too large for a full float64 reference.

Two parts, both against the same per-element bound as the full check (harness/tolerance.py):

1. **Sampled elements.** Rows and columns of each result, exactly in float64 from the
   inputs: the first rows, the rows around the first tile boundaries (16, 32, 64, 128, 256
   ± 1), the first rows of the last partial tile of each of those tile sizes, the last two
   rows, and a few seeded random ones; the same for columns. Each element must be within
   its bound, as in the full check.
2. **Projections of every element** (Freivalds): `Q·r` against `A·(B·r)` for random ±1
   vectors `r`, e.g. `dX·r` against `G·(Wᴴ·r)`, `dW·r` against `Xᴴ·(G·r)`, broadcast-reduced
   like the result. If each element is within its bound, `|Σ_j e_ij·r_j| <= Σ_j bound_ij`,
   and since `|ref| <= S`, that sum is at most `(c_out·u_out + s·growth)·(|A|·(|B|·1))_i +
   N·K_eff·η`: the projected bound costs O(size), not a product. The float64 evaluation of
   both projections adds `2·φ(K_eff + N)·u_ref·(|A|·(|B|·1))_i`.

Any NaN/Inf in the result fails (the reference is finite: its magnitude projection is).
docs/checking-at-scale.md derives the cost and the detection power of each part.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from harness.checks import Outcome, statistics
from harness.dtypes import DType
from harness.reference import Sampled, Terms, matvec, sampled, weighted_norms
from harness.tolerance import U_REF, BoundParams, bound, phi

NAN = float("nan")
# `auto` checks a case in full while its largest product (batch × M × K × N multiply-adds)
# is at most this: a 1024³ product, whose full float64 reference takes about a second on
# one core; larger cases get the sampled check.
AUTO_FULL_MAX_MACS = 2**30
TILES: tuple[int, ...] = (16, 32, 64, 128, 256)
RANDOM_LINES = 8  # seeded random rows (and columns) besides the tile edges
PROJECTIONS = 2  # random ±1 vectors


def resolve(check: str, macs: int) -> str:
    """`full` or `sampled` for a case whose product has `macs` multiply-adds."""
    if check == "auto":
        return "full" if macs <= AUTO_FULL_MAX_MACS else "sampled"
    return check


def lines(n: int, rng: np.random.Generator) -> np.ndarray:
    """The rows (or columns) of an n-long dim the sampled check looks at, sorted."""
    picks = {0, 1, n - 2, n - 1}
    for t in TILES:
        picks.update((t - 1, t, t + 1))
        last = (n - 1) // t * t  # first row of the last (partial) tile
        picks.update((last - 1, last))
    picks.update(int(i) for i in rng.integers(0, max(n, 1), RANDOM_LINES))
    return np.array(sorted(i for i in picks if 0 <= i < n), dtype=np.intp)


@dataclass(frozen=True)
class Sample:
    """The reference side of one quantity's sampled check (shape: the promoted shape)."""

    shape: tuple[int, ...]
    final: tuple[int, ...]
    rows: np.ndarray  # the sampled rows (axis -2) and columns (axis -1)
    cols: np.ndarray
    right: np.ndarray  # (Q, p) random ±1 columns
    ref: Sampled

    @property
    def nbytes(self) -> int:
        r = self.ref
        arrays = [r.rows, r.rows_mag, r.cols, r.cols_mag, r.right, r.right_mag,
                  *(a for n in r.norms for a in n)]
        return sum(a.nbytes for a in arrays)


def sample(t: Terms, rng: np.random.Generator) -> Sample:
    """Sampled rows, columns and projections of the quantity `t`, from its inputs."""
    p, q = t.shape[-2], t.shape[-1]
    rows, cols = lines(p, rng), lines(q, rng)
    right = rng.choice(np.array([-1.0, 1.0]), (q, PROJECTIONS))
    return Sample(t.shape, t.final, rows, cols, right, sampled(t, rows, cols, right))


def _fail(reason: str, err: float = NAN, ratio: float = NAN) -> Outcome:
    return Outcome("fail", reason, err, ratio)


def _num(v: complex | float) -> str:
    return f"{v:.6g}"


def check_sampled(quantity: str, got: np.ndarray, s: Sample, dtype: DType, params: BoundParams,
                  compute: str = "ieee") -> Outcome:
    """Compare one quantity with its sampled reference; the Outcome of `checks.check`."""
    if tuple(np.shape(got)) != s.final:
        return _fail(f"{quantity}: shape {tuple(np.shape(got))}, expected {s.final}")
    if got.dtype != dtype.numpy:
        return _fail(f"{quantity}: dtype {got.dtype}, expected {dtype.numpy}")
    if math.prod(s.shape) == 0:
        return Outcome("pass", "", 0.0, 0.0)
    ref = s.ref
    g2 = got.reshape(s.shape)
    if not np.isfinite(ref.right_mag).all():
        return _fail(f"{quantity}: the sampled check needs a finite reference (inputs too "
                     "large for float64); use check: full")
    got_right = matvec(g2, s.right)  # a NaN/Inf anywhere shows here
    if not np.isfinite(got_right).all():
        bad = _first_nonfinite(g2)
        if bad is not None:
            return _fail(f"{quantity}: NaN/Inf at {bad} (got {_num(g2[bad])}); every "
                         "element of the reference is finite")
    got_rows, got_cols = g2[..., s.rows, :], g2[..., :, s.cols]
    parts = [_elements(quantity, got_rows, ref.rows, ref.rows_mag, dtype, params, compute,
                       s.rows, -2, s.shape),
             _elements(quantity, got_cols, ref.cols, ref.cols_mag, dtype, params, compute,
                       s.cols, -1, s.shape),
             _projection(quantity, got_right, ref.right, ref.right_mag, dtype, params,
                         compute, s.right.shape[0], "Q·r", "row")]
    ratio = max(p[0] for p in parts)
    max_err = max(p[1] for p in parts[:2])
    got_s = np.concatenate([got_rows.ravel(), got_cols.ravel()])
    ref_s = np.concatenate([ref.rows.ravel(), ref.cols.ravel()])
    mag_s = np.concatenate([ref.rows_mag.ravel(), ref.cols_mag.ravel()])
    allowed_s = bound(ref_s, mag_s, dtype, params, compute)
    stats = statistics(got_s.astype(ref_s.dtype), ref_s, mag_s, allowed_s, dtype, params.k_eff)
    if ratio <= 1.0:
        return Outcome("pass", "", max_err, ratio, *stats)
    reason = next(p[2] for p in parts if p[0] == ratio)
    return Outcome("fail", reason, max_err, ratio, *stats)


def _first_nonfinite(a: np.ndarray) -> tuple[int, ...] | None:
    """Index of the first NaN/Inf of `a`, scanned a block of rows at a time."""
    flat = a.reshape(-1, a.shape[-1])
    step = max(1, 2**22 // max(a.shape[-1], 1))
    for i in range(0, flat.shape[0], step):
        bad = np.flatnonzero(~np.isfinite(flat[i:i + step]))
        if bad.size:
            return tuple(int(j) for j in np.unravel_index(i * a.shape[-1] + int(bad[0]),
                                                           a.shape))
    return None


def _elements(quantity: str, got: np.ndarray, ref: np.ndarray, scale: np.ndarray,
              dtype: DType, p: BoundParams, compute: str, picked: np.ndarray, axis: int,
              shape: tuple[int, ...]) -> tuple[float, float, str]:
    """(ratio, max |err|, reason) of sampled rows (axis -2) or columns (axis -1)."""
    if ref.size == 0:
        return 0.0, 0.0, ""
    err = np.abs(got.astype(ref.dtype) - ref)
    allowed = bound(ref, scale, dtype, p, compute)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = np.divide(err, allowed, out=np.zeros_like(err), where=err != 0)
        ratios[(err != 0) & (allowed == 0)] = np.inf
    i = int(np.argmax(ratios))
    sub = list(np.unravel_index(i, ref.shape))
    sub[axis] = picked[sub[axis]]
    where = tuple(int(j) for j in sub)
    ratio = float(ratios.flat[i])
    what = "sampled rows" if axis == -2 else "sampled columns"
    reason = (f"{quantity} ({what}): |err|={float(err.flat[i]):.3g} at {where} of "
              f"{shape} is {ratio:.3g}x the allowed {float(allowed.flat[i]):.3g} "
              f"(got {_num(got.flat[i])}, expected {_num(ref.flat[i])})")
    return ratio, float(err.max()), reason


def _projection(quantity: str, got: np.ndarray, ref: np.ndarray, mag: np.ndarray,
                dtype: DType, p: BoundParams, compute: str, n: int, what: str,
                along: str) -> tuple[float, float, str]:
    """(ratio, |err|, reason) of one projection against its projected bound."""
    err = np.abs(got - ref)
    unit = mag / n  # the mean |r_j|·S_ij: ‖r‖₁ = n for ±1 vectors
    allowed = np.broadcast_to(n * bound(unit, unit, dtype, p, compute) + (
        2.0 * phi(p.k_eff + n, complex_=dtype.is_complex) * U_REF * mag), err.shape)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = np.divide(err, allowed, out=np.zeros_like(err), where=err != 0)
        ratios[(err != 0) & (allowed == 0)] = np.inf
    i = int(np.argmax(ratios))
    where = tuple(int(j) for j in np.unravel_index(i, ref.shape))
    ratio = float(ratios.flat[i])
    reason = (f"{quantity} (projection {what} of every element, r = random ±1): "
              f"|err|={float(err.flat[i]):.3g} at {along} {where} is {ratio:.3g}x the "
              f"{float(allowed.flat[i]):.3g} the element bounds allow (got "
              f"{_num(got.flat[i])}, expected {_num(ref.flat[i])})")
    return ratio, float(err.flat[i]), reason


def weighted_bound(weight: np.ndarray, s: Sample, dtype: DType, p: BoundParams,
                   compute: str) -> float:
    """An upper bound of `Σ |weight|·bound` over every element (for the adjoint check).

    `|ref| <= S` and Cauchy-Schwarz `S_ij <= Σ_terms ‖A_i,:‖·‖B_:,j‖` make it
    `(c_out·u_out + s·growth)·Σ_terms aᵀ·|w|·b + K_eff·η·Σ|w|`: O(size), no product.
    """
    total, w_sum = weighted_norms(np.reshape(weight, s.shape), s.ref.norms)
    one = bound(np.ones(1), np.ones(1), dtype, BoundParams(p.k_eff, p.b_red), compute)
    eta = p.k_eff * dtype.eta
    return (float(one[0]) - eta) * total + eta * w_sum
