"""Judging one framework result against the reference: shape, dtype, NaN/Inf, then values.

Adapters are not trusted: a wrong shape or dtype, a non-finite value where the reference is
finite (or the reverse) is a `fail` whose reason names the quantity, what was expected and
what was received. Values are judged by `ratio = max(|got - ref| / bound)`: pass <= 1.

Beside the verdict, two forensic statistics, derived in docs/numerics.md: the effective bits
delivered, and the bias β measured against β₀, the bias of the correctly rounded result.
Each comes with a threshold that no result computed the way the bound assumes can cross,
whatever the dependence between its elements' errors (shared factors, rounded partials,
cancellation, a handful of elements): the thresholds are worst cases, not standard
deviations, so their false-alarm rate is that of the per-element bound itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import ml_dtypes
import numpy as np

from harness.dtypes import DType
from harness.tolerance import C_OUT, BoundParams, bound

NAN = float("nan")
# Where a sub-ulp bias matters and is tested: elsewhere one ulp is far below anything a
# kernel could get wrong unnoticed by the per-element bound, and β alone is recorded.
BIAS_DTYPES: tuple[str, ...] = ("float16", "bfloat16")


@dataclass(frozen=True)
class Outcome:
    status: str  # "pass" or "fail"
    reason: str
    max_abs_err: float
    ratio: float
    effective_bits: float = NAN  # -log2(rms(got - ref) / rms(size)); inf when exact
    bias: float = NAN  # β = Re Σ(got - ref)·conj(ref) / Σ|ref|²
    bias_null: float = NAN  # β₀: the same statistic of the correctly rounded result
    bias_limit: float = NAN  # the largest |β - β₀| a kernel within the bound's model reaches
    bits_floor: float = NAN  # the fewest effective bits a result within its bound can show

    @property
    def bias_z(self) -> float:
        """|β - β₀| in units of its limit: above 1 is a bias no correct kernel produces."""
        gap = abs(self.bias - self.bias_null)
        if self.bias_limit > 0:
            return gap / self.bias_limit
        if self.bias_limit == 0:
            return 0.0 if gap == 0 else float("inf")
        return NAN

    @property
    def biased(self) -> bool:
        """A systematic relative error: invisible per element below one ulp, not in β."""
        return bool(self.bias_z > 1.0)


def _fail(reason: str, err: float = NAN, ratio: float = NAN) -> Outcome:
    return Outcome("fail", reason, err, ratio)


def _parts(a: np.ndarray) -> np.ndarray:
    """Real and imaginary parts as separate real elements (each is rounded on its own)."""
    a = np.ascontiguousarray(a)
    return a.view(np.float64).reshape(-1) if a.dtype.kind == "c" else a.reshape(-1)


_FINFO: Any = ml_dtypes.finfo  # numpy's finfo, extended to bfloat16 (untyped upstream)


def _component(dtype: DType) -> Any:
    """finfo of the real type one component of `dtype` is stored in."""
    if dtype.is_complex:
        return _FINFO(np.float32 if dtype.name == "complex64" else np.float64)
    return _FINFO(dtype.numpy.type)


def rounding_margins(ref: np.ndarray, dtype: DType) -> tuple[np.ndarray, np.ndarray, float]:
    """(q, margin, h_min) of a real float64 `ref`, per element.

    `q` is `ref` rounded to nearest in the dtype; `margin` the distance from `ref` to the
    nearer edge of q's rounding interval (0 when q is not RN(ref), e.g. after a double
    rounding): any value closer to `ref` than `margin` rounds to q. `h_min` is half the
    subnormal spacing, the most |RN(v) - v| can be where u·|v| underestimates it.
    """
    fi = _component(dtype)
    with np.errstate(over="ignore"):
        q = ref.astype(fi.dtype).astype(np.float64)
    if not np.isfinite(q).all():  # beyond the dtype's range: the Inf check's business
        q = np.where(np.isfinite(q), q, ref)
    p, emin = int(fi.nmant) + 1, int(fi.minexp)
    aq = np.abs(q)
    mant, e = np.frexp(aq)  # aq = mant·2^e with mant in [0.5, 1)
    e -= 1  # the exponent of q's binade
    np.maximum(e, emin, out=e)  # subnormals share emin's spacing
    zero = aq == 0
    if zero.any():
        e[zero] = emin
    half_up = np.ldexp(0.5, e - (p - 1))  # half the gap to the next larger magnitude
    below_pow2 = (mant == 0.5) & (e > emin)  # the gap below a power of two is half
    ar = np.abs(ref)
    margin = aq - ar
    margin += half_up
    down = ar - aq
    down += np.where(below_pow2, 0.5 * half_up, half_up)
    np.minimum(margin, down, out=margin)
    if zero.any():
        margin[zero] = half_up[zero] - ar[zero]  # symmetric around zero
    margin[ref * q < 0] = 0.0  # a sign change: q is not RN(ref)
    return q, np.maximum(margin, 0.0), float(np.ldexp(1.0, emin - p))


def bias_test(got: np.ndarray, ref: np.ndarray, allowed: np.ndarray,
              dtype: DType) -> tuple[float, float, float]:
    """(β, β₀, limit) of finite, same-shaped results; NaN where Σ|ref|² is 0.

    The model under test is the bound's own: each result is RN(v), v's distance from the
    exact value at most R = bound - C_OUT·u_out·|ref| (accumulation, intermediate roundings,
    underflow; everything but the final rounding). Then got = q wherever ref's margin
    exceeds R, and elsewhere |got - q| <= D = R + u·(|ref| + R) + h_min + |ref - q|.
    |β - β₀| = |Σ ref·(got - q)| / Σ ref² <= Σ D·|ref| / Σ ref² over those elements: a
    worst case, so no correct kernel crosses it however its errors are correlated, while a
    relative scaling ε moves β - β₀ by ε on average.
    """
    r, g = _parts(ref), _parts(got)
    norm = float(np.dot(r, r))
    if r.size == 0 or norm == 0.0:
        return NAN, NAN, NAN
    beta = float(np.dot(r, g - r)) / norm
    if dtype.name not in BIAS_DTYPES:
        return beta, NAN, NAN
    q, margin, h_min = rounding_margins(r, dtype)
    beta0 = float(np.dot(r, q - r)) / norm
    slack = np.maximum(allowed - C_OUT * dtype.u_out * np.abs(ref), 0.0)
    if ref.dtype.kind == "c":  # each component of a complex element shares its slack
        slack = np.repeat(slack.reshape(-1), 2)
    slack = slack.reshape(-1)
    near = margin <= slack
    ar = np.abs(r[near])
    s = slack[near]
    worst = s + dtype.u_out * (ar + s) + h_min + np.abs(r[near] - q[near])
    return beta, beta0, float(np.dot(worst, ar)) / norm


def effective_bits(err: np.ndarray, allowed: np.ndarray, ref: np.ndarray,
                   typical: np.ndarray) -> tuple[float, float]:
    """(effective bits, their floor) of finite, same-shaped results.

    Effective bits are -log2 of the relative RMS error, each element's magnitude floored
    at `typical` (S/√K_eff: the size a sum of K_eff zero-mean products usually has), so an
    element that merely cancels to near zero does not read as lost precision, while a
    TF32 or bfloat16 downgrade does (its error scales with the products, not the sum).
    The floor is the same number for an error equal to the bound everywhere: a result
    within its bound can never fall below it.
    """
    size2 = float((np.maximum(np.abs(ref), typical) ** 2).sum())
    if ref.size == 0 or size2 == 0.0:
        return NAN, NAN
    err2, allowed2 = float((err**2).sum()), float((allowed**2).sum())
    bits = float("inf") if err2 == 0.0 else -0.5 * float(np.log2(err2 / size2))
    floor = float("inf") if allowed2 == 0.0 else -0.5 * float(np.log2(allowed2 / size2))
    return bits, floor


def statistics(got: np.ndarray, ref: np.ndarray, scale: np.ndarray, allowed: np.ndarray,
               dtype: DType, k_eff: int) -> tuple[float, float, float, float, float]:
    """(effective bits, β, β₀, bias limit, bits floor) of finite, same-shaped results, in
    `Outcome`'s order; the full check and the sampled one (on its sampled elements) alike."""
    beta, beta0, limit = bias_test(got, ref, allowed, dtype)
    bits, floor = effective_bits(np.abs(got - ref), allowed, ref,
                                 scale / np.sqrt(max(k_eff, 1)))
    return bits, beta, beta0, limit, floor


def check(
    quantity: str,
    got: np.ndarray,
    ref: np.ndarray,
    scale: np.ndarray,
    dtype: DType,
    params: BoundParams,
    compute: str = "ieee",
) -> Outcome:
    """Compare one quantity (Y, dX, dW, dY or d2W) with its float64 reference."""
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
    allowed = bound(ref, scale, dtype, params, compute)
    stats = statistics(g, ref, scale, allowed, dtype, params.k_eff)
    err = np.abs(g - ref)
    del g
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = np.divide(err, allowed, out=np.zeros_like(err), where=err != 0)
        ratios[(err != 0) & (allowed == 0)] = np.inf
    i = int(np.argmax(ratios))
    ratio, max_err = float(ratios.flat[i]), float(err.max())
    if ratio <= 1.0:
        return Outcome("pass", "", max_err, ratio, *stats)
    if finite.all():
        where = tuple(int(j) for j in np.unravel_index(i, ref.shape))
    else:
        where = tuple(int(j) for j in np.unravel_index(np.flatnonzero(finite)[i], finite.shape))
    reason = (
        f"{quantity}: |err|={float(err.flat[i]):.3g} at {where} is {ratio:.3g}x the allowed "
        f"{float(allowed.flat[i]):.3g} (got {_num((got.astype(ref.dtype))[where])}, "
        f"expected {_num(ref.flat[i])})"
    )
    return Outcome("fail", reason, max_err, ratio, *stats)


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
