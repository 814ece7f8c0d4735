"""Judging one framework result against the reference: shape, dtype, NaN/Inf, then values.

Adapters are not trusted: a wrong shape or dtype, a non-finite value where the reference is
finite (or the reverse) is a `fail` whose reason names the quantity, what was expected and
what was received. Values are judged by `ratio = max(|got - ref| / bound)`: pass <= 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from harness.dtypes import DType
from harness.tolerance import BoundParams, bound


@dataclass(frozen=True)
class Outcome:
    status: str  # "pass" or "fail"
    reason: str
    max_abs_err: float
    ratio: float


def _fail(reason: str, err: float = float("nan"), ratio: float = float("nan")) -> Outcome:
    return Outcome("fail", reason, err, ratio)


def check(
    quantity: str,
    got: np.ndarray,
    ref: np.ndarray,
    scale: np.ndarray,
    dtype: DType,
    params: BoundParams,
    precision: str = "ieee",
) -> Outcome:
    """Compare one quantity (Y, dX or dW) with its float64 reference."""
    got = np.asarray(got)
    if got.shape != ref.shape:
        return _fail(f"{quantity}: shape {got.shape}, expected {ref.shape}")
    if got.dtype != dtype.numpy:
        return _fail(f"{quantity}: dtype {got.dtype}, expected {dtype.numpy}")
    g = got.astype(ref.dtype)
    ref_nan, got_nan = np.isnan(ref), np.isnan(g)
    if not np.array_equal(ref_nan, got_nan):
        return _fail(_mismatch(quantity, "NaN", got_nan != ref_nan, g, ref))
    ref_inf, got_inf = np.isinf(ref), np.isinf(g)
    inf_bad = (ref_inf != got_inf) | (ref_inf & (g != ref))
    if inf_bad.any():
        return _fail(_mismatch(quantity, "Inf", inf_bad, g, ref))
    finite = np.isfinite(ref)
    if not finite.all():  # NaN/Inf positions matched above; judge the finite rest
        g, ref, scale = g[finite], ref[finite], scale[finite]
    if ref.size == 0:
        return Outcome("pass", "", 0.0, 0.0)
    err = np.abs(g - ref)
    del g
    allowed = bound(ref, scale, dtype, params, precision)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = np.divide(err, allowed, out=np.zeros_like(err), where=err != 0)
        ratios[(err != 0) & (allowed == 0)] = np.inf
    i = int(np.argmax(ratios))
    ratio, max_err = float(ratios.flat[i]), float(err.max())
    if ratio <= 1.0:
        return Outcome("pass", "", max_err, ratio)
    if finite.all():
        where = tuple(int(j) for j in np.unravel_index(i, ref.shape))
    else:
        where = tuple(int(j) for j in np.unravel_index(np.flatnonzero(finite)[i], finite.shape))
    return _fail(
        f"{quantity}: |err|={float(err.flat[i]):.3g} at {where} is {ratio:.3g}x the allowed "
        f"{float(allowed.flat[i]):.3g} (got {_num((got.astype(ref.dtype))[where])}, "
        f"expected {_num(ref.flat[i])})",
        max_err,
        ratio,
    )


def _num(v: complex | float) -> str:
    return f"{v:.6g}"


def _mismatch(quantity: str, kind: str, bad_mask: np.ndarray, got: np.ndarray,
              ref: np.ndarray) -> str:
    bad = np.flatnonzero(bad_mask)
    idx = tuple(int(j) for j in np.unravel_index(bad[0], ref.shape))
    return (
        f"{quantity}: {kind} mismatch at {int(bad.size)} element(s), first at {idx}: "
        f"got {_num(got[idx])}, expected {_num(ref[idx])}"
    )
