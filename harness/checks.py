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

NAN = float("nan")
BIAS_Z = 6.0  # |β| beyond this many standard deviations of unbiased rounding is a bias


@dataclass(frozen=True)
class Outcome:
    status: str  # "pass" or "fail"
    reason: str
    max_abs_err: float
    ratio: float
    effective_bits: float = NAN  # -log2(rms(got - ref) / rms(ref)); inf when exact
    bias: float = NAN  # β = Re Σ(got - ref)·conj(ref) / Σ|ref|²
    bias_sigma: float = NAN  # β's standard deviation under unbiased rounding to the dtype

    @property
    def biased(self) -> bool:
        """A systematic relative error: invisible per element below one ulp, not in β."""
        return bool(abs(self.bias) > BIAS_Z * self.bias_sigma)


def _fail(reason: str, err: float = NAN, ratio: float = NAN) -> Outcome:
    return Outcome("fail", reason, err, ratio)


def statistics(
    got: np.ndarray, ref: np.ndarray, dtype: DType, typical: np.ndarray | None = None
) -> tuple[float, float, float]:
    """(effective bits, β, σ_β) of finite, same-shaped results.

    Effective bits are -log2 of the relative RMS error, each element's magnitude floored
    at `typical` (S/√K_eff: the size a sum of K_eff zero-mean products usually has), so an
    element that merely cancels to near zero does not read as lost precision, while a
    TF32 or bfloat16 downgrade does (its error scales with the products, not the sum).

    β is NUMERICS.md's aggregate bias statistic. Under round-to-nearest each element's
    relative rounding error is about uniform with variance u²/3 and independent, so
    σ_β = (u/√3)·√Σ|ref|⁴ / Σ|ref|²: a relative scaling far below one ulp (1e-3 in
    float16 or bfloat16) stands out once there are enough elements.
    """
    ref2 = np.abs(ref) ** 2
    norm = float(ref2.sum())
    if ref.size == 0 or norm == 0.0:
        return NAN, NAN, NAN
    diff = got - ref
    err2 = float((np.abs(diff) ** 2).sum())
    size2 = norm if typical is None else float((np.maximum(np.abs(ref), typical) ** 2).sum())
    bits = float("inf") if err2 == 0.0 else -0.5 * float(np.log2(err2 / size2))
    beta = float(np.real(np.vdot(ref, diff))) / norm
    sigma = dtype.u_out / np.sqrt(3.0) * float(np.sqrt((ref2**2).sum())) / norm
    return bits, beta, sigma


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
    bits, beta, sigma = statistics(g, ref, dtype, scale / np.sqrt(max(params.k_eff, 1)))
    err = np.abs(g - ref)
    del g
    allowed = bound(ref, scale, dtype, params, precision)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = np.divide(err, allowed, out=np.zeros_like(err), where=err != 0)
        ratios[(err != 0) & (allowed == 0)] = np.inf
    i = int(np.argmax(ratios))
    ratio, max_err = float(ratios.flat[i]), float(err.max())
    if ratio <= 1.0:
        return Outcome("pass", "", max_err, ratio, bits, beta, sigma)
    if finite.all():
        where = tuple(int(j) for j in np.unravel_index(i, ref.shape))
    else:
        where = tuple(int(j) for j in np.unravel_index(np.flatnonzero(finite)[i], finite.shape))
    reason = (
        f"{quantity}: |err|={float(err.flat[i]):.3g} at {where} is {ratio:.3g}x the allowed "
        f"{float(allowed.flat[i]):.3g} (got {_num((got.astype(ref.dtype))[where])}, "
        f"expected {_num(ref.flat[i])})"
    )
    return Outcome("fail", reason, max_err, ratio, bits, beta, sigma)


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
